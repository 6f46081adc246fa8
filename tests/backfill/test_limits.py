"""Polite to the PACS: the time window (local time, may wrap midnight, read on an
injected clock), the rate, at most N associations, and a pause while free disk is below
the reserve; plus the checks on what an admin asks for."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import date, datetime
from pathlib import Path

import pytest

from node.backfill import plan
from node.backfill._schema import ensure_schema
from node.backfill.limits import RateLimit, TimeWindow
from node.backfill.pacs import DateWindow, RemoteStudy, Retrieved
from node.backfill.request import BackfillRequest, date_windows
from node.backfill.runner import JobRunner
from node.backfill.states import RetrieveModeValues
from node.errors import InvalidBackfill
from node.settings import BackfillSettings
from node.storage import ThreadConnections
from tests.backfill.conftest import FakeClock, Pacs, wait_backfill

# ------------------------------------------------------------------ no peers


def test_time_window_wraps_midnight_and_says_when_it_opens() -> None:
    nights = TimeWindow.parse("22:00-06:00")
    assert str(nights) == "22:00-06:00"
    assert nights.contains(datetime(2024, 5, 1, 23, 30))
    assert nights.contains(datetime(2024, 5, 2, 5, 59))
    assert not nights.contains(datetime(2024, 5, 2, 6, 0))
    assert not nights.contains(datetime(2024, 5, 2, 12, 0))
    assert nights.opens_in(datetime(2024, 5, 2, 12, 0)) == 10 * 3600
    assert nights.opens_in(datetime(2024, 5, 2, 23, 0)) == 0
    days = TimeWindow.parse("8:30-17:00")
    assert days.contains(datetime(2024, 5, 2, 8, 30)) and not days.contains(
        datetime(2024, 5, 2, 17, 0))
    assert days.opens_in(datetime(2024, 5, 2, 18, 0)) == (14 * 60 + 30) * 60


@pytest.mark.parametrize(("text", "message"), [
    ("22:00", "is not HH:MM-HH:MM"),
    ("25:00-06:00", "window start '25:00' is not a time"),
    ("22:00-6", "window end '6' is not a time"),
    ("10:00-10:00", "the same time"),
])
def test_a_wrong_window_says_what_to_give(text: str, message: str) -> None:
    with pytest.raises(InvalidBackfill, match=message):
        TimeWindow.parse(text)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"since": "2023-13-01"}, "--since '2023-13-01' is not a date: use YYYY-MM-DD"),
    ({"since": "2023-02-01", "until": "2023-01-01"}, "is after --until"),
    ({"modality": "CT,M R"}, "--modality 'M R' is not a DICOM modality"),
    ({"via": "ftp"}, "--via 'ftp' is not a way to reach the PACS: use dimse or dicomweb"),
    ({"rate": 0}, "--rate must be a positive number"),
    ({"concurrency": 0}, "--concurrency must be between 1 and 32"),
])
def test_a_wrong_request_says_what_to_give(kwargs: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"source": "PACS", "since": "2023-01-01", **kwargs}
    with pytest.raises(InvalidBackfill, match=message):
        BackfillRequest.build(**values)  # type: ignore[arg-type]


def test_request_defaults_and_windows_newest_first() -> None:
    request = BackfillRequest.build(source="PACS", since="20230101", modality="ct, mr,CT",
                                    today=date(2023, 1, 20))
    assert request.until == date(2023, 1, 20) and request.modalities == ("CT", "MR")
    assert date_windows(request.since, request.until, 7) == [
        (date(2023, 1, 14), date(2023, 1, 20)), (date(2023, 1, 7), date(2023, 1, 13)),
        (date(2023, 1, 1), date(2023, 1, 6))]


def test_a_capped_window_splits_by_date_then_by_time_of_day() -> None:
    assert DateWindow("20230101", "20230110").split() == [
        DateWindow("20230101", "20230105"), DateWindow("20230106", "20230110")]
    halves = DateWindow("20230110", "20230110").split()
    assert halves == [DateWindow("20230110", "20230110", "000000", "115959"),
                      DateWindow("20230110", "20230110", "120000", "235959")]
    assert halves[1].study_time == "120000-235959" and halves[1].study_date == "20230110"
    assert DateWindow("20230110", "20230110", "120000", "120100").split() is None


def test_rate_limit_spaces_starts_and_takes_back_only_the_latest_booking() -> None:
    now = [100.0]
    rate = RateLimit(3600, monotonic=lambda: now[0])  # one a second
    first, second, third = rate.reserve(), rate.reserve(), rate.reserve()
    assert (first, second, third) == (100.0, 101.0, 102.0)
    rate.give_back(second)  # not the latest: kept, so starts never bunch up
    assert rate.reserve() == 103.0
    rate.give_back(103.0)
    assert rate.reserve() == 103.0
    assert RateLimit(None).reserve() <= time.monotonic()


class _CountingPacs:
    """A PACS seam: counts the sessions open at once and the retrieves in flight."""

    def __init__(self, studies: int) -> None:
        self.studies = studies
        self.lock = threading.Lock()
        self.open_now = self.open_max = self.busy_now = self.busy_max = 0

    def open(self) -> _CountingPacs._Session:
        with self.lock:
            self.open_now += 1
            self.open_max = max(self.open_max, self.open_now)
        return self._Session(self)

    class _Session:
        def __init__(self, pacs: _CountingPacs) -> None:
            self.pacs = pacs

        def find_studies(self, window: DateWindow, modalities: object) -> list[RemoteStudy]:
            if window.date_to != "20230131":
                return []
            return [RemoteStudy(f"1.2.826.0.1.66.{i}", "20230131", 0) for i in
                    range(self.pacs.studies)]

        def find_series(self, study: str) -> None:
            return None

        def find_instances(self, study: str, series: str) -> list[str]:
            return []

        def retrieve(self, *args: object, **kwargs: object) -> Retrieved:
            p = self.pacs
            with p.lock:
                p.busy_now += 1
                p.busy_max = max(p.busy_max, p.busy_now)
            time.sleep(0.05)
            with p.lock:
                p.busy_now -= 1
            return Retrieved()

        def abort(self) -> None:
            self.close()

        def close(self) -> None:
            with self.pacs.lock:
                self.pacs.open_now -= 1


def test_at_most_concurrency_associations_to_the_pacs(tmp_path: Path) -> None:
    connections = ThreadConnections(tmp_path / "catalog.sqlite")
    conn = connections.get()
    ensure_schema(conn)
    job = plan.create_job(conn, BackfillRequest.build(
        source="PACS", since="2023-01-01", until="2023-01-31", concurrency=3),
        retrieve=RetrieveModeValues.MOVE, window_days=7)
    pacs = _CountingPacs(studies=15)
    runner = JobRunner(job, connections=connections, pacs=pacs,  # type: ignore[arg-type]
                       settings=BackfillSettings(poll_s=0.05), data_dir=tmp_path,
                       reserve_bytes=0, stop=threading.Event(),
                       clock=lambda: datetime(2024, 1, 1, 12))
    runner.start()
    assert runner.join(30), "the backfill did not finish"
    assert plan.get_job(conn, job.id).state.value == "done"  # type: ignore[union-attr]
    states = {r[0] for r in conn.execute("SELECT state FROM backfill_studies")}
    assert states == {"done"}
    assert 2 <= pacs.busy_max <= 3 and pacs.open_max <= 3
    assert pacs.open_now == 0  # every session closed at the end


# ------------------------------------------------------------------ against Orthanc


def test_the_time_window_is_kept_on_the_nodes_clock(pacs: Pacs, backfill_node) -> None:
    clock = FakeClock(datetime(2024, 5, 2, 12, 0))
    node = backfill_node(pacs.orthanc, clock=clock)
    job = node.services.backfill.start_backfill(BackfillRequest.build(
        source="ORTHANC", since="2022-09-01", until="2022-09-30", window="22:00-06:00"))
    held = wait_backfill(node, job["id"], until=lambda s: s["note"] is not None)
    assert held["note"] == ("outside its window 22:00-06:00: it starts studies again at "
                            "22:00")
    time.sleep(0.5)  # well past a few polls: still nothing asked of the PACS
    still = node.services.backfill.status(job["id"])
    assert still["windows"]["done"] == 0 and still["studies"]["total"] == 0
    clock.now = datetime(2024, 5, 2, 23, 30)  # night falls
    status = wait_backfill(node, job["id"])
    assert status["state"] == "done" and status["studies"]["done"] > 3
    window = TimeWindow.parse("22:00-06:00")
    started = [datetime.fromisoformat(r[0]) for r in node.services.connections.get().execute(
        "SELECT started_local FROM backfill_studies")]
    assert started and all(window.contains(t) for t in started)


def test_the_rate_spaces_study_starts(pacs: Pacs, backfill_node) -> None:
    node = backfill_node(pacs.orthanc)
    job = node.services.backfill.start_backfill(BackfillRequest.build(
        source="ORTHANC", since="2022-10-01", until="2022-10-20", rate=9000,
        concurrency=3))  # one every 0.4 s, shared by three workers
    status = wait_backfill(node, job["id"])
    assert status["state"] == "done" and status["rate_limit"] == 9000
    starts = sorted(r[0] for r in node.services.connections.get().execute(
        "SELECT started_at FROM backfill_studies"))
    assert len(starts) >= 4
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 0.4 - 0.02, gaps


def test_below_the_disk_reserve_the_backfill_pauses_itself_and_says_so(
        pacs: Pacs, backfill_node) -> None:
    node = backfill_node(pacs.orthanc, node={"free_space_reserve_mb": 2**40})
    job = node.services.backfill.start_backfill(BackfillRequest.build(
        source="ORTHANC", since="2022-09-01", until="2022-09-30"))
    held = wait_backfill(node, job["id"], until=lambda s: s["note"] is not None)
    assert held["state"] == "running"
    assert "free disk space" in held["note"] and "below the node's reserve" in held["note"]
    assert held["studies"]["total"] == 0
