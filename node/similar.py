"""Similar-case retrieval: from a query to ranked cases, with reports and a consensus.

No HTTP here (the routes in ``node/web/similar.py`` are thin). A query is one of:

- a **stored object** (study, series or instance on the node): its vector comes from
  the catalog's ``vectors`` table, so no model time is spent;
- an **image** that is not stored (a DICOM data set, or a PNG/JPEG picture): it is
  normalised as the indexer does and embedded with the image tower;
- a **text**: embedded with the text tower; with ``hybrid`` the vector ranking is
  fused with a BM25 ranking of the reports (SQLite FTS5) by reciprocal rank fusion
  (``k = 60``).

Then relevance feedback (Rocchio) moves the vector towards ``positive`` and away from
``negative`` UIDs of the same level, :func:`indexer.search.search` finds the cases
that pass the filters, and each case gets its best-matching instance and its report.

Errors: :class:`node.errors.QueryError` and its subclasses (InvalidQuery 400,
UnknownObject 404, NotIndexed 409).
"""

from __future__ import annotations

import io
import logging
import re
import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from indexer import LevelValues
from node.errors import InvalidQuery, NotIndexed, UnknownObject
from node.reports import Report, get_reports

if TYPE_CHECKING:
    from indexer.embedder import Embedder
    from indexer.index import IndexSet
    from indexer.search import Hit, SearchFilters

__all__ = [
    "EXCERPT_CHARS",
    "MAX_LIMIT",
    "RRF_K",
    "Case",
    "Consensus",
    "SimilarAnswer",
    "SimilarQuery",
    "StoredObject",
    "bm25_studies",
    "consensus",
    "decode_upload",
    "excerpt",
    "find_stored_object",
    "reciprocal_rank_fusion",
    "similar_to_image",
    "similar_to_stored",
    "similar_to_text",
    "stored_vector",
]

log = logging.getLogger(__name__)

MAX_LIMIT = 100
RRF_K = 60
EXCERPT_CHARS = 1000
#: candidates each ranking contributes to a hybrid fusion, per requested result
_FUSION_DEPTH = 5
_DATE = re.compile(r"^\d{8}$")


# ------------------------------------------------------------------ the query


def _parse_date_range(value: str | None) -> tuple[str | None, str | None]:
    if value is None or not value.strip():
        return None, None
    text = value.strip()
    first, dash, second = text.partition("-")
    low: str | None = first.strip() or None
    high: str | None = (second.strip() or None) if dash else low
    for part in (low, high):
        if part is not None and not _DATE.match(part):
            raise InvalidQuery(
                f"StudyDate {value!r} is not a date or a range: use YYYYMMDD, "
                "YYYYMMDD-YYYYMMDD, -YYYYMMDD or YYYYMMDD-"
            )
    if low and high and low > high:
        raise InvalidQuery(f"StudyDate {value!r}: the range starts after it ends")
    return low, high


@dataclass(frozen=True, kw_only=True)
class SimilarQuery:
    """What every similar-case query shares (validated here, named as on the wire)."""

    level: LevelValues = LevelValues.STUDY
    limit: int = 10
    modality: str | None = None
    body_part: str | None = None
    #: ``YYYYMMDD`` or a range ``YYYYMMDD-YYYYMMDD`` (either side may be left open)
    study_date: str | None = None
    #: leave out the query's own patient; ``None`` means yes when the patient is known
    exclude_patient: bool | None = None
    positive: tuple[str, ...] = ()
    negative: tuple[str, ...] = ()
    date_range: tuple[str | None, str | None] = field(init=False, default=(None, None))

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "level", LevelValues(self.level))
        except ValueError as exc:
            allowed = ", ".join(v.value for v in LevelValues)
            raise InvalidQuery(f"level {self.level!r} is not a level: use {allowed}") from exc
        if not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidQuery(f"limit {self.limit} is out of range: use 1 to {MAX_LIMIT}")
        object.__setattr__(self, "modality", (self.modality or "").strip().upper() or None)
        object.__setattr__(self, "body_part", (self.body_part or "").strip().upper() or None)
        object.__setattr__(self, "date_range", _parse_date_range(self.study_date))
        object.__setattr__(self, "positive", tuple(dict.fromkeys(self.positive)))
        object.__setattr__(self, "negative", tuple(dict.fromkeys(self.negative)))

    def filters(self, *, exclude_patient_id: str | None,
                exclude_uids: Iterable[str] = ()) -> SearchFilters:
        from indexer.search import SearchFilters

        return SearchFilters(
            modality=self.modality,
            body_part=self.body_part,
            study_date_from=self.date_range[0],
            study_date_to=self.date_range[1],
            exclude_patient_id=exclude_patient_id,
            exclude_uids=frozenset(exclude_uids),
        )


# ------------------------------------------------------------------ the answer


@dataclass(frozen=True, slots=True)
class Case:
    """One retrieved case at the query's level."""

    rank: int
    score: float
    level: LevelValues
    uid: str
    study_instance_uid: str
    series_instance_uid: str | None
    sop_instance_uid: str | None
    best_instance_uid: str | None
    best_series_uid: str | None
    report: Report | None = None

    @property
    def labels(self) -> tuple[str, ...]:
        return self.report.labels if self.report is not None else ()


@dataclass(frozen=True, slots=True)
class Consensus:
    """The majority vote over the results' labels."""

    label: str
    count: int
    of: int

    def as_json(self) -> dict[str, Any]:
        return {"label": self.label, "count": self.count, "of": self.of}


@dataclass(frozen=True, slots=True)
class SimilarAnswer:
    level: LevelValues
    cases: tuple[Case, ...]
    consensus: Consensus | None


def consensus(cases: Sequence[Case]) -> Consensus | None:
    """The label most cases carry (each case counts a label once, case-insensitively);
    a tie goes to the label of the better-ranked case. ``None`` when no case has labels."""
    counts: Counter[str] = Counter()
    first_seen: dict[str, tuple[int, str]] = {}
    for position, case in enumerate(cases):
        for label in {lab.casefold(): lab for lab in case.labels if lab.strip()}.items():
            key, shown = label
            counts[key] += 1
            first_seen.setdefault(key, (position, shown))
    if not counts:
        return None
    key = min(counts, key=lambda k: (-counts[k], first_seen[k][0]))
    return Consensus(first_seen[key][1], counts[key], len(cases))


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """``text`` whole when it fits in ``limit`` characters, else cut at a word and ``…``."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"


def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], *, k: int = RRF_K
                           ) -> list[tuple[str, float]]:
    """Fuse rankings (best first) by ``sum(1 / (k + rank))``; best first, ties keep the
    order of first appearance."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, uid in enumerate(ranking, start=1):
            scores[uid] = scores.get(uid, 0.0) + 1.0 / (k + rank)
    order = {uid: i for i, uid in enumerate(scores)}
    return sorted(scores.items(), key=lambda item: (-item[1], order[item[0]]))


# ------------------------------------------------------------------ stored objects


@dataclass(frozen=True, slots=True)
class StoredObject:
    """A study, series or instance on the node, as a query."""

    level: LevelValues
    uid: str
    study_instance_uid: str
    patient_id: str | None


def find_stored_object(conn: sqlite3.Connection, *, study: str, series: str | None = None,
                       sop: str | None = None) -> StoredObject:
    """The object the route names, or :class:`UnknownObject` (a wrong parent counts)."""
    row = conn.execute("SELECT patient_id FROM studies WHERE study_instance_uid = ?",
                       (study,)).fetchone()
    if row is None:
        raise UnknownObject(f"study {study} is not on this node")
    patient_id = row[0]
    if series is None:
        return StoredObject(LevelValues.STUDY, study, study, patient_id)
    found = conn.execute(
        "SELECT 1 FROM series WHERE series_instance_uid = ? AND study_instance_uid = ?",
        (series, study),
    ).fetchone()
    if found is None:
        raise UnknownObject(f"series {series} is not in study {study} on this node")
    if sop is None:
        return StoredObject(LevelValues.SERIES, series, study, patient_id)
    found = conn.execute(
        "SELECT 1 FROM instances WHERE sop_instance_uid = ? AND series_instance_uid = ?",
        (sop, series),
    ).fetchone()
    if found is None:
        raise UnknownObject(f"instance {sop} is not in series {series} on this node")
    return StoredObject(LevelValues.INSTANCE, sop, study, patient_id)


def _not_indexed_reason(conn: sqlite3.Connection, obj: StoredObject) -> str:
    column = {LevelValues.STUDY: "study_instance_uid", LevelValues.SERIES: "series_instance_uid",
              LevelValues.INSTANCE: "sop_instance_uid"}[obj.level]
    states = dict(conn.execute(
        f"""SELECT w.state, count(*) FROM instances i JOIN work w
            ON w.sop_instance_uid = i.sop_instance_uid WHERE i.{column} = ?
            GROUP BY w.state""", (obj.uid,)).fetchall())
    waiting = states.get("pending", 0) + states.get("in_progress", 0)
    if waiting:
        return (f"{obj.level.value} {obj.uid} is not indexed yet ({waiting} instance(s) "
                "waiting on the work queue); try again shortly")
    if states.get("skipped") or states.get("failed"):
        reason = conn.execute(
            f"""SELECT w.reason FROM instances i JOIN work w
                ON w.sop_instance_uid = i.sop_instance_uid
                WHERE i.{column} = ? AND w.reason IS NOT NULL LIMIT 1""", (obj.uid,)
        ).fetchone()
        why = f": {reason[0]}" if reason and reason[0] else ""
        return (f"{obj.level.value} {obj.uid} has no picture the model can use, so it has "
                f"no vector{why}")
    return f"{obj.level.value} {obj.uid} has no vector in the index"


def stored_vector(index_set: IndexSet, conn: sqlite3.Connection,
                  obj: StoredObject) -> npt.NDArray[np.float32]:
    """The object's stored vector, or :class:`NotIndexed` saying why there is none."""
    vector = index_set.get_vector(obj.level, obj.uid)
    if vector is None:
        raise NotIndexed(_not_indexed_reason(conn, obj))
    return vector


def _feedback(index_set: IndexSet, vector: npt.NDArray[np.float32],
              query: SimilarQuery) -> npt.NDArray[np.float32]:
    if not query.positive and not query.negative:
        return vector
    from indexer.search import rocchio

    found: dict[str, list[npt.NDArray[np.float32]]] = {"positive": [], "negative": []}
    for name, uids in (("positive", query.positive), ("negative", query.negative)):
        for uid in uids:
            v = index_set.get_vector(query.level, uid)
            if v is None:
                raise InvalidQuery(f"{name} UID {uid} has no vector at the "
                                   f"{query.level.value} level: give UIDs of results "
                                   "of this query's level")
            found[name].append(v)
    try:
        return rocchio(vector, found["positive"], found["negative"])
    except ValueError as exc:
        raise InvalidQuery(f"relevance feedback: {exc}") from exc


# ------------------------------------------------------------------ ranking


def _search(index_set: IndexSet, vector: npt.NDArray[np.float32], query: SimilarQuery,
            k: int, flt: SearchFilters) -> list[Hit]:
    from indexer.search import search

    return search(index_set, vector, level=query.level, k=k, filters=flt)


def _parents(conn: sqlite3.Connection, level: LevelValues, uids: Sequence[str]
             ) -> dict[str, str | None]:
    """The series UID of each instance UID (for the instance level)."""
    if level is not LevelValues.INSTANCE or not uids:
        return {}
    out: dict[str, str | None] = {}
    for start in range(0, len(uids), 500):
        chunk = list(uids[start:start + 500])
        marks = ",".join("?" * len(chunk))
        out.update(dict(conn.execute(
            f"SELECT sop_instance_uid, series_instance_uid FROM instances "
            f"WHERE sop_instance_uid IN ({marks})", chunk).fetchall()))
    return out


def _series_of(conn: sqlite3.Connection, sop_uids: Iterable[str | None]) -> dict[str, str]:
    uids = [u for u in dict.fromkeys(sop_uids) if u]
    out: dict[str, str] = {}
    for start in range(0, len(uids), 500):
        chunk = uids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        out.update(dict(conn.execute(
            f"SELECT sop_instance_uid, series_instance_uid FROM instances "
            f"WHERE sop_instance_uid IN ({marks})", chunk).fetchall()))
    return out


def _cases(conn: sqlite3.Connection, level: LevelValues,
           ranked: Sequence[tuple[str, float, str, str | None, str | None]]) -> list[Case]:
    """``ranked`` items are (uid, score, study uid, parent uid, best instance uid)."""
    reports = get_reports(conn, (r[2] for r in ranked))
    series_of = _series_of(conn, (r[4] for r in ranked))
    cases = []
    for rank, (uid, score, study_uid, parent, best) in enumerate(ranked, start=1):
        series_uid = (uid if level is LevelValues.SERIES
                      else parent if level is LevelValues.INSTANCE else None)
        cases.append(Case(
            rank=rank, score=float(score), level=level, uid=uid,
            study_instance_uid=study_uid,
            series_instance_uid=series_uid,
            sop_instance_uid=uid if level is LevelValues.INSTANCE else None,
            best_instance_uid=best,
            best_series_uid=series_of.get(best) if best else None,
            report=reports.get(study_uid),
        ))
    return cases


def _answer(conn: sqlite3.Connection, level: LevelValues,
            ranked: Sequence[tuple[str, float, str, str | None, str | None]]) -> SimilarAnswer:
    cases = _cases(conn, level, ranked)
    return SimilarAnswer(level, tuple(cases), consensus(cases))


def _ranked_hits(conn: sqlite3.Connection, level: LevelValues, hits: Sequence[Hit]
                 ) -> list[tuple[str, float, str, str | None, str | None]]:
    parents = _parents(conn, level, [h.uid for h in hits])
    return [(h.uid, h.score, h.study_instance_uid, parents.get(h.uid), h.best_instance_uid)
            for h in hits]


def _similar_to_vector(conn: sqlite3.Connection, index_set: IndexSet,
                       vector: npt.NDArray[np.float32], query: SimilarQuery, *,
                       exclude_patient_id: str | None, exclude_uids: Iterable[str] = ()
                       ) -> SimilarAnswer:
    vector = _feedback(index_set, vector, query)
    flt = query.filters(exclude_patient_id=exclude_patient_id,
                        exclude_uids=[*exclude_uids, *query.negative])
    hits = _search(index_set, vector, query, query.limit, flt)
    return _answer(conn, query.level, _ranked_hits(conn, query.level, hits))


def similar_to_stored(conn: sqlite3.Connection, index_set: IndexSet, obj: StoredObject,
                      query: SimilarQuery) -> SimilarAnswer:
    """Cases similar to a stored object, at the object's level (the query object itself
    is never a result; its patient is left out unless ``exclude_patient`` is false)."""
    if query.level is not obj.level:
        raise InvalidQuery(f"a stored {obj.level.value} is searched at its own level, "
                           f"not {query.level.value}")
    vector = stored_vector(index_set, conn, obj)
    # a study without a Patient ID has no "own patient" to leave out
    exclude_patient = query.exclude_patient is not False and bool(obj.patient_id)
    patient = obj.patient_id if exclude_patient else None
    return _similar_to_vector(conn, index_set, vector, query,
                              exclude_patient_id=patient, exclude_uids=[obj.uid])


# ------------------------------------------------------------------ uploads

#: the media types ``POST /similar`` accepts
UPLOAD_MEDIA_TYPES = ("application/dicom", "image/png", "image/jpeg")


@dataclass(frozen=True, slots=True)
class DecodedUpload:
    pixels: npt.NDArray[np.uint8]  #: H×W×3 RGB
    patient_id: str | None


def decode_upload(data: bytes, media_type: str) -> DecodedUpload:
    """An uploaded DICOM data set, PNG or JPEG as a model-ready RGB picture."""
    if not data:
        raise InvalidQuery("the request body is empty: send a DICOM file, PNG or JPEG")
    if media_type == "application/dicom":
        import pydicom
        from pydicom.errors import InvalidDicomError

        from indexer.normalise import NormalisedImage, normalise_dataset

        try:
            ds = pydicom.dcmread(io.BytesIO(data))
        except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, OSError) as exc:
            raise InvalidQuery(f"the uploaded DICOM data set cannot be decoded: {exc}") from exc
        result = normalise_dataset(ds)
        if not isinstance(result, NormalisedImage):
            raise InvalidQuery(f"the uploaded DICOM data set has no usable picture ({result})")
        patient = str(ds.get("PatientID", "") or "") or None
        return DecodedUpload(result.pixels, patient)
    if media_type in ("image/png", "image/jpeg"):
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                rgb = image.convert("RGB")
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            kind = media_type.split("/")[1].upper()
            raise InvalidQuery(f"the uploaded {kind} image cannot be decoded: {exc}") from exc
        return DecodedUpload(np.asarray(rgb, dtype=np.uint8), None)
    raise InvalidQuery(f"media type {media_type!r} is not accepted: send one of "
                       + ", ".join(UPLOAD_MEDIA_TYPES))


def similar_to_image(conn: sqlite3.Connection, embedder: Embedder, index_set: IndexSet,
                     upload: DecodedUpload, query: SimilarQuery) -> SimilarAnswer:
    """Cases similar to an uploaded picture. For a DICOM upload its patient is left out
    unless ``exclude_patient`` is false; a picture has no patient."""
    vector = embedder.embed_images([upload.pixels])[0]
    exclude = query.exclude_patient is not False and upload.patient_id is not None
    return _similar_to_vector(conn, index_set, vector, query,
                              exclude_patient_id=upload.patient_id if exclude else None)


# ------------------------------------------------------------------ text


def _fts_query(text: str) -> str | None:
    words = re.findall(r"\w+", text)
    if not words:
        return None
    return " OR ".join('"' + w.replace('"', "") + '"' for w in words[:64])


def bm25_studies(conn: sqlite3.Connection, text: str, limit: int) -> list[str]:
    """Study UIDs whose report matches ``text``, best BM25 first."""
    match = _fts_query(text)
    if match is None:
        return []
    rows = conn.execute(
        """SELECT r.study_instance_uid FROM reports_fts
           JOIN reports r ON r.rowid = reports_fts.rowid
           WHERE reports_fts MATCH ? ORDER BY bm25(reports_fts) LIMIT ?""",
        (match, limit),
    ).fetchall()
    return [r[0] for r in rows]


def _text_candidates(index_set: IndexSet, level: LevelValues, studies: Sequence[str],
                     flt: SearchFilters, q: npt.NDArray[np.float32]
                     ) -> list[tuple[str, float, str, str | None]]:
    """Items of ``level`` in ``studies`` that pass ``flt``, ordered by study (BM25 rank)
    and then by cosine to ``q``: (uid, score, study uid, parent uid)."""
    if not studies:
        return []
    where, params = flt.sql()
    marks = ",".join("?" * len(studies))
    rows = index_set.connection().execute(
        f"SELECT uid, study_instance_uid, parent_uid, vector FROM vectors "
        f"WHERE level = ? AND study_instance_uid IN ({marks}) AND {where}",
        [level.value, *studies, *params],
    ).fetchall()
    rank = {uid: i for i, uid in enumerate(studies)}
    items = [(str(uid), float(np.frombuffer(blob, dtype="<f4") @ q), str(study), parent)
             for uid, study, parent, blob in rows if uid not in flt.exclude_uids]
    items.sort(key=lambda it: (rank[it[2]], -it[1]))
    return items


def _best_instance(index_set: IndexSet, level: LevelValues, uid: str,
                   q: npt.NDArray[np.float32]) -> str | None:
    if level is LevelValues.INSTANCE:
        return uid
    column = "study_instance_uid" if level is LevelValues.STUDY else "parent_uid"
    best, best_sim = None, -2.0
    for sop, blob in index_set.connection().execute(
        f"SELECT uid, vector FROM vectors WHERE level = 'instance' AND {column} = ?", (uid,)
    ):
        sim = float(np.frombuffer(blob, dtype="<f4") @ q)
        if sim > best_sim:
            best, best_sim = str(sop), sim
    return best


def similar_to_text(conn: sqlite3.Connection, embedder: Embedder, index_set: IndexSet,
                    text: str, query: SimilarQuery, *, hybrid: bool) -> SimilarAnswer:
    """Cases matching ``text``: the text tower's vector, fused with BM25 over the reports
    when ``hybrid`` (reciprocal rank fusion). The score is always the cosine."""
    text = text.strip()
    if not text:
        raise InvalidQuery("text is empty: give a few words to search for")
    if len(text) > 2000:
        raise InvalidQuery("text is longer than 2000 characters")
    vector = embedder.embed_texts([text])[0]
    if not hybrid:
        return _similar_to_vector(conn, index_set, vector, query, exclude_patient_id=None)
    vector = _feedback(index_set, vector, query)
    q = np.asarray(vector, dtype=np.float32) / max(float(np.linalg.norm(vector)), 1e-12)
    flt = query.filters(exclude_patient_id=None, exclude_uids=query.negative)
    depth = max(query.limit * _FUSION_DEPTH, 50)
    dense = _search(index_set, q, query, depth, flt)
    studies = bm25_studies(conn, text, depth)
    sparse = _text_candidates(index_set, query.level, studies, flt, q)[:depth]
    fused = reciprocal_rank_fusion([[h.uid for h in dense], [s[0] for s in sparse]])
    by_uid: dict[str, tuple[float, str, str | None, str | None]] = {}
    for s_uid, s_score, s_study, s_parent in sparse:
        by_uid[s_uid] = (s_score, s_study, s_parent, None)
    dense_parents = _parents(conn, query.level, [h.uid for h in dense])
    for h in dense:
        by_uid[h.uid] = (h.score, h.study_instance_uid, dense_parents.get(h.uid),
                         h.best_instance_uid)
    ranked = []
    for uid, _ in fused[: query.limit]:
        score, study, parent, best = by_uid[uid]
        if best is None:
            best = _best_instance(index_set, query.level, uid, q)
        if query.level is LevelValues.INSTANCE and parent is None:
            parent = _parents(conn, query.level, [uid]).get(uid)
        ranked.append((uid, score, study, parent, best))
    return _answer(conn, query.level, ranked)
