"""The service supervisor's life cycle: every part's wait honours the node's stop event,
so stopping never hangs on a model that is still loading."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from indexer.embedder import Embedder
from indexer.errors import ModelUnavailable
from node.runtime import ModelStatusValues
from node.settings import Settings, load_settings
from node.storage import aes, connect
from node.supervisor import Node
from tests._peers import echoscu, free_port, wait_for_port
from tests._synthetic import ct_instance, to_bytes

#: far below the 600 s the automatic KOS may wait for the model, and the 30 s a part's
#: thread is given: a stop that waited on either would not make it
STOP_WITHIN_S = 10.0


def _settings(data_dir: Path) -> Settings:
    return load_settings(None, {
        "node": {"host": "127.0.0.1", "dimse_port": free_port(), "data_dir": data_dir,
                 "allow_any_source": True, "free_space_reserve_mb": 0},
        "http": {"host": "127.0.0.1", "port": free_port()},
        "kos": {"auto_send": True, "destination": "PACS"},
    })


def test_stop_ends_an_automatic_kos_waiting_on_a_model_that_never_loads(
        tmp_path: Path) -> None:
    loading = threading.Event()
    release = threading.Event()

    def never_loads(settings: Settings, **_: object) -> Embedder:
        loading.set()
        release.wait(120)  # the test lets the loader go once the node has stopped
        raise ModelUnavailable("released by the test")

    node = Node(_settings(tmp_path / "data"), embedder_loader=never_loads)
    node.start()
    try:
        assert node.wait_http(30) and loading.wait(30)
        assert node.auto_kos is not None
        study = "1.2.826.0.1.3680043.10.1.1"
        node.services.ingest.store(
            to_bytes(ct_instance(study_uid=study, series_uid=study + ".1",
                                 patient_id="LIFE", seed=1)), source="TEST")
        pending = node.auto_kos.submit(study)
        deadline = time.monotonic() + 30
        while not pending.running() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pending.running(), "the automatic KOS did not start on the study"
        assert node.services.model.status is ModelStatusValues.LOADING

        stopper = threading.Thread(target=node.stop)
        stopper.start()
        stopper.join(STOP_WITHIN_S)
        assert not stopper.is_alive(), "stop waited on the automatic KOS or the model"
        assert pending.done() and pending.result() is None  # gave up, wrote nothing
        assert node.auto_kos.results == []
    finally:
        release.set()
        node.stop()


def test_serve_logs_the_catalog_settings_and_stops_on_sigterm(tmp_path: Path) -> None:
    conn = connect(tmp_path / "catalog.sqlite")
    aes.set_node_config(conn, ae_title="FROMREST", dimse_port=str(free_port()))
    conn.close()
    dimse_port = free_port()
    serve = subprocess.Popen(
        [sys.executable, "-m", "node", "serve", "--data-dir", str(tmp_path),
         "--host", "127.0.0.1", "--dimse-port", str(dimse_port),
         "--http-port", str(free_port()), "--model", "local-dir:/nonexistent",
         "--allow-any-source"],
        stderr=subprocess.PIPE, text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("PRECEDENT_")},
    )
    try:
        wait_for_port(dimse_port, timeout=60)
        # the catalog's AE title applies; its port gives way to the flag
        assert echoscu(dimse_port, called="FROMREST").returncode == 0
        serve.send_signal(signal.SIGTERM)
        _, log = serve.communicate(timeout=STOP_WITHIN_S + 20)
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.communicate()
    assert serve.returncode == 0, log
    assert "node.ae_title = FROMREST from the catalog (set with PUT /config/ae" in log
    assert (f"node.dimse_port = {dimse_port}: the catalog's" in log
            and "is overridden by PRECEDENT_NODE__DIMSE_PORT or a command-line flag" in log)
