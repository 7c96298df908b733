"""The nightly batch (政府主动送): score every enterprise, find what is new, queue it for delivery.

``run_batch`` reads the enterprises that need scoring (new or changed content, a new catalog, or an
age threshold crossed) in keyset-ordered chunks, scores each chunk with the pure
:func:`matching.batch.score_batch` (in-process, in a process pool, or through Spark), and commits per
chunk, in one transaction: the snapshot of what is offered, the push items (unique per enterprise,
policy and version), the outbox messages (one per enterprise per run, within the weekly cap), the
enterprise's cursor and the run report. A run killed at any point leaves only whole chunks behind; the
next run skips them through the cursor and carries on, so nothing is pushed twice or lost.

A row that cannot be scored never stops the run: every profile read is first validated as the API would
(:func:`profiles.model.parse_profile`, founding date not after the run's day), and a chunk whose encoding
or scoring still fails is split until the failing rows are found. Those rows are *quarantined*: listed with
their USCC and the reason (Chinese) in the run report and in ``batch status``, left without a cursor (so
they are looked at again every night until fixed) and skipped; every other firm is scored as usual.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, select

from matching.batch import (
    IN_PACKAGE,
    POSSIBLE,
    BatchScorer,
    TextSignals,
    age_thresholds,
    benefit_digest,
    encode_profiles,
    recheck_days,
    result_schema,
    score_batch,
    text_signals,
)
from matching.columns import EPOCH, values
from matching.embeddings import Embedder, load_embedder
from matching.package import REVIEW_NOTE, Matcher
from policies.loader import Catalog, load_catalog
from policies.schema import Policy
from profiles.fields import FIELDS
from profiles.model import ProfileError, parse_profile
from service import store
from service.app.importer import check_json_types
from service.bootstrap import published_catalog
from service.db.tables import (
    BatchCursor,
    BatchRun,
    Enterprise,
    MatchSnapshot,
    Outbox,
    PolicyVersion,
    PushItem,
    utcnow,
)
from service.push.delivery import firm_records, item_for_firm, item_text, package_link
from service.settings import Settings

log = logging.getLogger("policyfit.batch")
ENGINES = ("local", "spark")
IN_LIST = 900  # ids per IN (...) list: below every backend's parameter limit
_ITEM_COLUMNS = ["id", "uscc", "idempotency_key", "policy_id", "policy_version", "score"]
QUARANTINE_LISTED = 1000  # quarantined rows listed by USCC and reason in a run report; more are counted


class BatchError(RuntimeError):
    """A batch run that cannot start or finish; the message is for a person (Chinese)."""


# ---- the text table: one row per distinct wording, grown as chunks arrive ---------------------------------
@dataclass
class TextTable:
    matcher: Matcher
    scorer: BatchScorer
    rows: dict[str, int] = field(default_factory=dict)
    parts: list[TextSignals] = field(default_factory=list)

    def rows_for(self, keys: np.ndarray) -> np.ndarray:
        """Row of each key, computing signals for keys not seen before (one embedding call)."""
        uniques, inverse = np.unique(keys.astype(str), return_inverse=True)
        fresh = [k for k in uniques if k not in self.rows]
        if fresh:
            self.parts.append(text_signals(fresh, self.matcher.retriever, list(self.matcher.catalog),
                                           self.scorer.ranking))
            for k in fresh:
                self.rows[k] = len(self.rows)
        return np.array([self.rows[k] for k in uniques], dtype=np.int64)[inverse]

    def signals(self) -> TextSignals:
        if len(self.parts) > 1:
            self.parts = [TextSignals.stack(self.parts, self.scorer.m)]
        return self.parts[0] if self.parts else TextSignals.stack([], self.scorer.m)

    def local(self, rows: np.ndarray) -> tuple[np.ndarray, TextSignals]:
        """(chunk-local text rows, the signals of just those texts): what a worker needs."""
        uniques, inverse = np.unique(rows, return_inverse=True)
        return inverse.astype(np.int64), self.signals().take(uniques)


# ---- reading the enterprises that need scoring ---------------------------------------------------------
def _stale(catalog_key: str, as_of: dt.date) -> Any:
    e, c = Enterprise.__table__.c, BatchCursor.__table__.c  # type: ignore[attr-defined]
    return sa.or_(c.uscc.is_(None), c.content_hash != e.content_hash, c.catalog_key != catalog_key,
                  sa.and_(c.recheck_on.is_not(None), c.recheck_on <= as_of))


def _candidates_query(catalog_key: str, as_of: dt.date) -> Any:
    e, c = Enterprise.__table__.c, BatchCursor.__table__.c  # type: ignore[attr-defined]
    joined = Enterprise.__table__.outerjoin(BatchCursor.__table__, c.uscc == e.uscc)  # type: ignore[attr-defined]
    return joined, _stale(catalog_key, as_of)


def count_candidates(conn: Connection, catalog_key: str, as_of: dt.date) -> tuple[int, int]:
    """(enterprises stored, enterprises to score)."""
    joined, stale = _candidates_query(catalog_key, as_of)
    total = conn.execute(sa.select(sa.func.count()).select_from(Enterprise.__table__)).scalar_one()  # type: ignore[attr-defined]
    todo = conn.execute(sa.select(sa.func.count()).select_from(joined).where(stale)).scalar_one()
    return int(total), int(todo)


def iter_candidates(engine: Engine, catalog_key: str, as_of: dt.date, chunk: int) -> Iterator[pd.DataFrame]:
    """Chunks of (uscc, name, region, content_hash, opted_out, profile JSON text), in USCC order.

    Keyset pagination from a fresh transaction per chunk: the cursor rows written for the chunk before
    do not disturb the next read, and memory stays bounded by ``chunk``.
    """
    e = Enterprise.__table__.c  # type: ignore[attr-defined]
    joined, stale = _candidates_query(catalog_key, as_of)
    after = ""
    while True:
        stmt = (sa.select(e.uscc, e.name, e.region, e.content_hash, e.opted_out, sa.cast(e.profile, sa.Text))
                .select_from(joined).where(stale, e.uscc > after).order_by(e.uscc).limit(chunk))
        with engine.connect() as conn:
            rows = conn.execute(stmt).all()
        if not rows:
            return
        frame = pd.DataFrame(rows, columns=["uscc", "name", "region", "content_hash", "opted_out", "profile"])
        after = str(frame["uscc"].iloc[-1])
        yield frame


# ---- quarantine: rows that cannot be scored ------------------------------------------------------------
Quarantined = list[dict[str, str]]  # [{"uscc": …, "reason": …}] — the reason is for a person (Chinese)


def profile_problem(uscc: str, text: Any, latest_founding: dt.date) -> str | None:
    """Why a stored profile (its JSON text) cannot be scored, or None: it must be a JSON object that
    passes the same validation as the API (:func:`parse_profile`, founding date not after
    ``latest_founding``) and name the enterprise it is stored under. (The model's lax coercions — a number
    stored as text — are left to the column decoder, which fails on them: see :func:`_encode_chunk`.)"""
    if text is None:
        return "画像为空"
    try:
        data = json.loads(text) if isinstance(text, str | bytes) else text
    except (ValueError, RecursionError) as exc:
        return f"画像不是有效的JSON：{str(exc)[:120]}"
    try:
        profile = parse_profile(data, as_of=latest_founding)
    except ProfileError as exc:
        return "；".join(message for _, message in exc.errors[:3])
    except (TypeError, ValueError, RecursionError) as exc:  # anything the model did not foresee
        return f"画像无法校验：{str(exc)[:120]}"
    if profile.uscc != uscc:
        return f"画像中的统一社会信用代码{profile.uscc}与记录的{uscc}不一致"
    return None


def isolate(rows: pd.DataFrame, attempt: Callable[[pd.DataFrame], pd.DataFrame],
            what: str) -> tuple[pd.DataFrame | None, Quarantined]:
    """``attempt(rows)``; if it raises, the rows are split in halves until the ones it fails on are found
    (each alone): returns (the results of the rows it succeeds on, in order, or None; the failing rows)."""
    try:
        return attempt(rows), []
    except Exception as exc:  # noqa: BLE001 (whatever a poison row raises, the others must go on)
        if len(rows) <= 1:
            uscc = str(rows["uscc"].iloc[0]) if len(rows) else ""
            log.warning("quarantined %s: %s failed: %r", uscc, what, exc)
            return None, [{"uscc": uscc, "reason": f"{what}失败：{type(exc).__name__}: {str(exc)[:160]}"}]
    mid = len(rows) // 2
    head, bad_head = isolate(rows.iloc[:mid], attempt, what)
    tail, bad_tail = isolate(rows.iloc[mid:], attempt, what)
    parts = [p for p in (head, tail) if p is not None]
    return (pd.concat(parts, ignore_index=True) if parts else None), bad_head + bad_tail


def score_isolating(frame: pd.DataFrame, scorer: BatchScorer, signals: TextSignals, as_of: dt.date,
                    timings: dict[str, float] | None = None) -> tuple[pd.DataFrame, Quarantined]:
    """:func:`score_batch`, with the rows it fails on (if any) quarantined instead of failing the chunk."""
    if frame.empty:
        return no_results(), []
    results, bad = isolate(frame, lambda part: score_batch(part, scorer, signals, as_of, timings=timings), "评分")
    return (no_results() if results is None else results), bad


def no_results() -> pd.DataFrame:
    """An empty answer of :func:`score_batch` (a chunk with nothing left to score)."""
    dtypes = {"string": object, "int": "int32", "tinyint": "int8", "double": "float64"}
    return pd.DataFrame({c: pd.Series(dtype=dtypes[t]) for c, t in result_schema().items()})


# ---- scoring workers ------------------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _init_worker(scorer: BatchScorer, as_of: dt.date) -> None:
    _WORKER["scorer"], _WORKER["as_of"] = scorer, as_of


def _score_in_worker(frame: pd.DataFrame,
                     signals: TextSignals) -> tuple[pd.DataFrame, Quarantined, dict[str, float]]:
    timings: dict[str, float] = {}
    out, bad = score_isolating(frame, _WORKER["scorer"], signals, _WORKER["as_of"], timings)
    return out, bad, timings


# ---- one run ---------------------------------------------------------------------------------------------
@dataclass
class Prepared:
    catalog: Catalog
    catalog_key: str
    matcher: Matcher
    scorer: BatchScorer
    benefits: dict[tuple[str, int], str]  # (policy, version) -> benefit digest, every stored version
    thresholds: np.ndarray


def prepare(engine: Engine, settings: Settings, as_of: dt.date) -> Prepared:
    """The published catalog (YAML synced first), its batch scorer and the relevance channels."""
    with Session(engine) as session:
        # every entry kind, as the service syncs them: commitments and plan work are stored beside the
        # policies (findable), and the batch must live with that database whoever synced it first
        store.sync_catalog_files(session, policies=_catalog_files(settings.catalog_dir).all_entries())
        session.commit()
        catalog = published_catalog(session, settings)
        stored = ((r, Policy.model_validate(r.data)) for r in session.exec(select(PolicyVersion)))
        # only policies have a benefit to compare: a commitment or plan work is never offered
        benefits = {(r.policy_id, r.version): benefit_digest(p) for r, p in stored if p.offered}
    matcher = _matcher(catalog, settings.embedding_model, settings.data_dir)
    active = ",".join(p.id for p in catalog if p.is_active(as_of))
    key = hashlib.sha256(f"{catalog.fingerprint}|{matcher.model_id}|{active}".encode()).hexdigest()
    return Prepared(catalog, key, matcher, BatchScorer.build(catalog), benefits, age_thresholds(catalog))


_MATCHERS: dict[tuple[str, str, Path], Matcher] = {}


def _catalog_files(directory: Path) -> Catalog:
    """The YAML catalog, parsed again only when a file changed (runs in one process share it)."""
    files = tuple(sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in Path(directory).glob("*.yaml")))
    return _load_catalog(Path(directory), files)


@lru_cache(maxsize=2)
def _load_catalog(directory: Path, _files: tuple[tuple[str, int, int], ...]) -> Catalog:
    return load_catalog(directory)


@lru_cache(maxsize=4)
def _embedder(spec: str, data_dir: Path) -> Embedder:
    return load_embedder(spec, cache_dir=data_dir / "cache")


def _matcher(catalog: Catalog, spec: str, data_dir: Path) -> Matcher:
    """One matcher per (catalog content, model, data dir) and process: runs in one process share it."""
    key = (catalog.fingerprint, spec, data_dir)
    if key not in _MATCHERS:
        index_dir = data_dir / "indexes" / "published" / catalog.fingerprint[:16]
        _MATCHERS.clear()  # the previous catalog's matcher is no longer needed
        _MATCHERS[key] = Matcher.build(catalog, embedder=_embedder(spec, data_dir), index_dir=index_dir)
    return _MATCHERS[key]


@dataclass
class Report:
    """The run report, accumulated chunk by chunk and saved with each chunk."""

    data: dict[str, Any]

    @classmethod
    def start(cls, *, engine_kind: str, workers: int, total: int, todo: int) -> Report:
        return cls({"engine": engine_kind, "workers": workers,
                    "enterprises": {"stored": total, "to_score": todo, "scored": 0, "skipped": total - todo,
                                    "opted_out": 0, "quarantined": 0},
                    "quarantined": [],
                    "items": {"offered": 0, "new": 0, "repeated": 0, "held": 0, "released": 0, "possible": 0},
                    "messages": 0, "chunks": 0, "by_policy": {}, "by_region": {}, "by_size": {},
                    "timings": {"load": 0.0, "rules": 0.0, "ranking": 0.0, "write": 0.0}})

    def add_timings(self, timings: dict[str, float]) -> None:
        for k, v in timings.items():
            self.data["timings"][k] = round(self.data["timings"].get(k, 0.0) + v, 3)

    def quarantine(self, rows: Quarantined) -> None:
        """Rows skipped because they cannot be scored: counted, and listed (up to QUARANTINE_LISTED)."""
        if not rows:
            return
        self.data["enterprises"]["quarantined"] += len(rows)
        listed = self.data["quarantined"]
        listed.extend(rows[:max(0, QUARANTINE_LISTED - len(listed))])

    def _bump(self, section: str, key: str, field_name: str, by: int) -> None:
        if by:
            entry = self.data[section].setdefault(key, {})
            entry[field_name] = entry.get(field_name, 0) + int(by)


def run_batch(engine: Engine, settings: Settings, *, as_of: dt.date, engine_kind: str = "local",
              workers: int = 1, now: dt.datetime | None = None, echo: Callable[[str], None] | None = None,
              progress: bool | None = None, prepared: Prepared | None = None) -> BatchRun:
    """Score, diff and queue; returns the finished run (its report saved in ``batch_run``)."""
    if engine_kind not in ENGINES:
        raise BatchError(f"--engine 应为 {'、'.join(ENGINES)} 之一，收到“{engine_kind}”")
    now = now or utcnow()
    say = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    t_load = time.perf_counter()
    prep = prepared or prepare(engine, settings, as_of)
    with Session(engine) as session:
        session.execute(sa.update(BatchRun.__table__).where(BatchRun.__table__.c.status == "running")  # type: ignore[attr-defined]
                        .values(status="interrupted", finished_at=now))
        run = BatchRun(as_of=as_of, catalog_version=prep.catalog.version, started_at=now)
        session.add(run)
        session.commit()
        session.refresh(run)
    run_id = int(run.id or 0)
    with engine.connect() as conn:
        total, todo = count_candidates(conn, prep.catalog_key, as_of)
    report = Report.start(engine_kind=engine_kind, workers=workers, total=total, todo=todo)
    report.data["timings"]["load"] = round(time.perf_counter() - t_load, 3)
    writer = ChunkWriter(engine, settings, prep, run_id=run_id, as_of=as_of, now=now, report=report)
    try:
        writer.release_held()
        with Progress(todo, say, enabled=progress) as bar:
            if engine_kind == "spark":
                from service.batch.spark import score_with_spark

                for meta, results, timings, bad in score_with_spark(engine, settings, prep, as_of=as_of,
                                                                    run_id=run_id, workers=workers,
                                                                    chunk=settings.batch_chunk_size):
                    report.add_timings(timings)
                    writer.write(meta, results, bad)
                    bar.advance(len(meta) + len(bad))
            else:
                for meta, results, bad in _score_local(engine, settings, prep, as_of, workers, report):
                    writer.write(meta, results, bad)
                    bar.advance(len(meta) + len(bad))
    except BaseException:
        with Session(engine) as session:
            row = session.get(BatchRun, run_id)
            if row is not None and row.status == "running":
                row.status, row.finished_at = "failed", utcnow()
                session.add(row)
                session.commit()
        raise
    with Session(engine) as session:
        row = session.get(BatchRun, run_id)
        assert row is not None
        row.status, row.finished_at, row.report = "succeeded", utcnow(), report.data
        session.add(row)
        session.commit()
        session.refresh(row)
        return row


def _without(meta: pd.DataFrame, bad: Quarantined) -> pd.DataFrame:
    """The chunk metadata without the quarantined rows."""
    if not bad:
        return meta
    return meta[~meta["uscc"].isin({b["uscc"] for b in bad})].reset_index(drop=True)


def _score_local(engine: Engine, settings: Settings, prep: Prepared, as_of: dt.date, workers: int,
                 report: Report) -> Iterator[tuple[pd.DataFrame, pd.DataFrame, Quarantined]]:
    """(chunk metadata, scores, quarantined rows) in chunk order: inline for one worker, else a process
    pool with up to ``workers`` chunks in flight while the main process reads and writes."""
    texts = TextTable(prep.matcher, prep.scorer)

    def encoded() -> Iterator[tuple[pd.DataFrame, pd.DataFrame, TextSignals, Quarantined]]:
        for raw in iter_candidates(engine, prep.catalog_key, as_of, settings.batch_chunk_size):
            t0 = time.perf_counter()
            frame, meta, bad = _encode_chunk(raw, prep, as_of)
            frame["text_row"], signals = texts.local(texts.rows_for(frame.pop("text_key").to_numpy()))
            report.add_timings({"load": time.perf_counter() - t0})
            yield frame, meta, signals, bad

    if workers <= 1:
        for frame, meta, signals, bad in encoded():
            timings: dict[str, float] = {}
            results, failed = score_isolating(frame, prep.scorer, signals, as_of, timings)
            report.add_timings(timings)
            yield _without(meta, failed), results, bad + failed
        return
    Pending = tuple[pd.DataFrame, pd.DataFrame, TextSignals, Quarantined,
                    Future[tuple[pd.DataFrame, Quarantined, dict[str, float]]]]

    def finish(item: Pending) -> tuple[pd.DataFrame, pd.DataFrame, Quarantined]:
        frame, meta, signals, bad, fut = item
        try:
            results, failed, timings = fut.result()
        except Exception as exc:  # noqa: BLE001 (e.g. a worker died on the chunk): score it here, isolating
            log.warning("scoring worker failed on a chunk (%r); scoring it in the main process", exc)
            timings = {}
            results, failed = score_isolating(frame, prep.scorer, signals, as_of, timings)
        report.add_timings(timings)
        return _without(meta, failed), results, bad + failed

    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(prep.scorer, as_of)) as pool:
        pending: list[Pending] = []
        for frame, meta, signals, bad in encoded():
            pending.append((frame, meta, signals, bad, pool.submit(_score_in_worker, frame, signals)))
            if len(pending) > workers:
                yield finish(pending.pop(0))
        for item in pending:
            yield finish(item)


def _encode_chunk(raw: pd.DataFrame, prep: Prepared,
                  as_of: dt.date) -> tuple[pd.DataFrame, pd.DataFrame, Quarantined]:
    """(encoded profile columns + uscc + text_key, metadata for the write: who, where, recheck day,
    the rows quarantined: invalid profiles, and any the encoder still fails on).

    A founding date may not be after the later of the run's day and today: a run over a past day (a
    replay) still scores the firms founded since, as before."""
    latest = max(as_of, dt.date.today())
    problems = [profile_problem(u, t, latest) for u, t in zip(raw["uscc"].tolist(), raw["profile"].tolist(),
                                                               strict=True)]
    bad: Quarantined = [{"uscc": str(u), "reason": r} for u, r in zip(raw["uscc"].tolist(), problems, strict=True)
                        if r is not None]
    for b in bad:
        log.warning("quarantined %s: %s", b["uscc"], b["reason"])
    good = raw[[r is None for r in problems]].reset_index(drop=True) if bad else raw

    def encode(rows: pd.DataFrame) -> pd.DataFrame:
        frame = encode_profiles(rows["profile"])
        frame["uscc"] = rows["uscc"].to_numpy(dtype=object)
        return frame

    encoded, failed = isolate(good, encode, "画像编码") if len(good) else (None, [])
    if failed:  # the usual cause: a JSON type the model coerced ("1.5" as a number); name the field then
        texts = dict(zip(good["uscc"].tolist(), good["profile"].tolist(), strict=True))
        for item in failed:
            try:
                check_json_types(json.loads(texts[item["uscc"]]))
            except ProfileError as exc:
                item["reason"] = str(exc)
            except (ValueError, TypeError, KeyError, RecursionError):
                pass
    frame = encoded if encoded is not None else encode(good.iloc[0:0]).assign(text_key=pd.Series(dtype=object))
    meta = _without(good.drop(columns=["profile"]), failed).copy()
    meta["recheck"] = recheck_days(frame["established_on"].to_numpy(dtype=np.float64), as_of, prep.thresholds)
    return frame, meta, bad + failed


# ---- writing a chunk: snapshot, push items, messages, cursor, report — one transaction ------------------------
def bulk_insert(conn: Connection, table: sa.Table, columns: dict[str, list[Any]], constants: dict[str, Any]) -> None:
    """Insert rows given column-wise, through the driver's executemany: each column's bind processing
    (JSON, datetimes) is applied once per value — once in all for ``constants`` — instead of per
    parameter set by the ORM layer, which dominates when a chunk writes hundreds of thousands of rows."""
    names = [*columns, *constants]
    if not columns or not len(next(iter(columns.values()))):
        return
    dialect = conn.dialect
    processed: dict[str, list[Any] | Any] = {}
    for name, vals in columns.items():
        if dialect.name == "sqlite" and isinstance(table.c[name].type, sa.JSON):
            # SQLite keeps JSON as text: UTF-8 as is, not \uXXXX escapes (a third of the bytes for Chinese)
            processed[name] = [json.dumps(v, ensure_ascii=False) for v in vals]
            continue
        proc = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        processed[name] = [proc(v) for v in vals] if proc else vals
    fixed = {}
    for name, value in constants.items():
        proc = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        fixed[name] = proc(value) if proc else value
    compiled = table.insert().compile(dialect=dialect, column_keys=names)
    n = len(next(iter(columns.values())))
    if compiled.positional:
        order = list(compiled.positiontup or [])
        cols = [processed[k] if k in processed else [fixed[k]] * n for k in order]
        rows: list[Any] = list(zip(*cols, strict=True))
    else:
        keys = list(processed)
        rows = [{**dict(zip(keys, values, strict=True)), **fixed}
                for values in zip(*(processed[k] for k in keys), strict=True)]
    conn.exec_driver_sql(str(compiled), rows)

_LAST_DAY = float((dt.date.max - EPOCH).days)


class ChunkWriter:
    def __init__(self, engine: Engine, settings: Settings, prep: Prepared, *, run_id: int, as_of: dt.date,
                 now: dt.datetime, report: Report) -> None:
        self.engine, self.settings, self.prep = engine, settings, prep
        self.run_id, self.as_of, self.now, self.report = run_id, as_of, now, report
        self.policies = {p.id: p for p in prep.catalog}

    def write(self, meta: pd.DataFrame, results: pd.DataFrame, quarantined: Quarantined | None = None) -> None:
        t0 = time.perf_counter()
        self.report.quarantine(quarantined or [])
        if meta.empty:  # every row of the chunk was quarantined: only the report changes
            with self.engine.begin() as conn:
                conn.execute(sa.update(BatchRun.__table__).where(BatchRun.__table__.c.id == self.run_id)  # type: ignore[attr-defined]
                             .values(report=self.report.data))
            return
        usccs = meta["uscc"].astype(str).tolist()
        offered = results[results["status"] == IN_PACKAGE]
        with self.engine.begin() as conn:
            prev = self._previous(conn, usccs)
            new = self._new_items(offered, prev)
            opted = set(meta.loc[meta["opted_out"].astype(bool), "uscc"].astype(str))
            pushable = new[~new["uscc"].isin(opted)]
            names = dict(zip(meta["uscc"], meta["name"], strict=True))
            inserted, queued, held, released = self._queue_chunk(conn, usccs, pushable, names)
            self._replace_snapshot(conn, usccs, offered)
            self._save_cursor(conn, meta)
            self._account(meta, results, offered, inserted, opted, queued, held, released)
            self.report.add_timings({"write": time.perf_counter() - t0})
            conn.execute(sa.update(BatchRun.__table__).where(BatchRun.__table__.c.id == self.run_id)  # type: ignore[attr-defined]
                         .values(report=self.report.data))

    # -- reads
    def _previous(self, conn: Connection, usccs: Sequence[str]) -> pd.DataFrame:
        s = MatchSnapshot.__table__.c  # type: ignore[attr-defined]
        rows = conn.execute(sa.select(s.uscc, s.policy_id, s.policy_version)
                            .where(s.uscc >= min(usccs), s.uscc <= max(usccs))).all()
        prev = pd.DataFrame(rows, columns=["uscc", "policy_id", "prev_version"])
        return prev[prev["uscc"].isin(set(usccs))]

    def _new_items(self, offered: pd.DataFrame, prev: pd.DataFrame) -> pd.DataFrame:
        """Offered now and not before (newly eligible or a new policy), or offered under a new version
        whose benefit changed. A new version with the same benefit is not news."""
        merged = offered.merge(prev, on=["uscc", "policy_id"], how="left")
        was = merged["prev_version"].notna()
        bumped = was & (merged["prev_version"] != merged["policy_version"])
        changed = np.zeros(len(merged), dtype=bool)
        if bumped.any():
            sub = merged[bumped]
            old = [self.prep.benefits.get((p, int(v))) for p, v in zip(sub["policy_id"], sub["prev_version"], strict=True)]
            cur = [self.prep.benefits.get((p, int(v))) for p, v in zip(sub["policy_id"], sub["policy_version"], strict=True)]
            changed[np.flatnonzero(bumped.to_numpy())] = [a != b for a, b in zip(old, cur, strict=True)]
        return merged[(~was) | changed].drop(columns=["prev_version"])

    # -- push items (the unique key) and messages (the governance)
    def _queue_chunk(self, conn: Connection, usccs: Sequence[str], pushable: pd.DataFrame,
                     names: dict[str, str]) -> tuple[pd.DataFrame, int, int, int]:
        """Record the chunk's new items and queue one message per firm. An item whose key exists
        already (the same firm, policy and version offered before, e.g. lost and regained) is not news
        again. Returns (items recorded, messages queued, items held by the cap, held items released)."""
        lo, hi = min(usccs), max(usccs)
        t = PushItem.__table__  # type: ignore[attr-defined]
        keys = pushable["uscc"] + ":" + pushable["policy_id"] + ":" + pushable["policy_version"].astype(str)
        pushable = pushable.assign(idempotency_key=keys.to_numpy())
        existing = set(conn.execute(sa.select(t.c.idempotency_key).where(t.c.uscc >= lo, t.c.uscc <= hi)).scalars())
        fresh = pushable[~pushable["idempotency_key"].isin(existing)]
        waiting = pd.DataFrame(conn.execute(
            sa.select(t.c.id, t.c.uscc, t.c.idempotency_key, t.c.policy_id, t.c.policy_version, t.c.score)
            .where(t.c.uscc >= lo, t.c.uscc <= hi, t.c.outbox_id.is_(None))).all(), columns=_ITEM_COLUMNS)
        waiting = waiting[waiting["uscc"].isin(set(usccs))]
        queued, held, released = self._messages(conn, fresh, waiting, names)
        return fresh, queued, held, released

    def _messages(self, conn: Connection, fresh: pd.DataFrame, waiting: pd.DataFrame,
                  names: dict[str, str]) -> tuple[int, int, int]:
        """One message per firm with unsent items (new ones, and ones held back before), unless the
        firm reached the weekly cap; new items are recorded with their message (none = held)."""
        firms = sorted(set(fresh["uscc"]) | set(waiting["uscc"]))
        if not firms:
            return 0, 0, 0
        lo, hi = firms[0], firms[-1]
        o, t = Outbox.__table__, PushItem.__table__  # type: ignore[attr-defined]
        since = self.now - dt.timedelta(days=7)
        recent: dict[str, int] = dict(conn.execute(sa.select(o.c.uscc, sa.func.count()).where(
            o.c.uscc >= lo, o.c.uscc <= hi, o.c.created_at >= since).group_by(o.c.uscc)).all())
        taken = set(conn.execute(sa.select(o.c.uscc).where(o.c.run_id == self.run_id, o.c.uscc >= lo,
                                                           o.c.uscc <= hi)).scalars())
        cap = self.settings.push_weekly_cap
        send = {f for f in firms if f not in taken and (not cap or recent.get(f, 0) < cap)}
        items = pd.concat([fresh[_ITEM_COLUMNS[1:]], waiting[_ITEM_COLUMNS[1:]]], ignore_index=True)
        items = items[items["uscc"].isin(send)]
        records = firm_records(conn, sorted(set(items["uscc"])), self.as_of) if not items.empty else {}
        messages = [(uscc, self._payload(uscc, names.get(uscc), entries))
                    for uscc, entries in self._entries(items, records)]
        ids: dict[str, int] = {}
        if messages:
            bulk_insert(conn, o, {"idempotency_key": [f"pkg:{u}:{self.run_id}" for u, _ in messages],
                                  "uscc": [u for u, _ in messages], "payload": [p for _, p in messages]},
                        {"status": "pending", "attempts": 0, "next_attempt_at": self.now, "run_id": self.run_id,
                         "created_at": self.now})
            ids = dict(conn.execute(sa.select(o.c.uscc, o.c.id).where(
                o.c.run_id == self.run_id, o.c.uscc >= lo, o.c.uscc <= hi)).all())  # type: ignore[arg-type]
        if not fresh.empty:
            usccs = fresh["uscc"].tolist()
            bulk_insert(conn, t, {
                "idempotency_key": fresh["idempotency_key"].tolist(), "uscc": usccs,
                "policy_id": fresh["policy_id"].tolist(), "policy_version": fresh["policy_version"].tolist(),
                "score": fresh["score"].tolist(), "outbox_id": [ids.get(u) if u in send else None for u in usccs]},
                {"run_id": self.run_id, "created_at": self.now})
        attach = waiting[waiting["uscc"].isin(send)]
        if not attach.empty:
            conn.execute(sa.update(t).where(t.c.id == sa.bindparam("item_id")).values(outbox_id=sa.bindparam("oid")),
                         [{"item_id": int(i), "oid": ids[u]} for i, u in zip(attach["id"], attach["uscc"], strict=True)])
        held = int((~fresh["uscc"].isin(send)).sum())
        return len(messages), held, len(attach)

    def _entries(self, items: pd.DataFrame, records: dict[str, dict[str, Any]] | None = None,
                 ) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        """(firm, its message entries best first), firm by firm — one sort, no per-firm frames. Each entry
        says why the firm qualifies with its own values (``records``), how to apply, who leads, the value
        where known and the source in the plan (``service.push.delivery.item_text`` / ``item_for_firm``)."""
        items = items.sort_values(["uscc", "score", "policy_id"], ascending=[True, False, True])
        current: str | None = None
        entries: list[dict[str, Any]] = []
        for uscc, key, pid, version, score in zip(items["uscc"].tolist(), items["idempotency_key"].tolist(),
                                                   items["policy_id"].tolist(), items["policy_version"].tolist(),
                                                   items["score"].tolist(), strict=True):
            if uscc != current:
                if current is not None:
                    yield current, entries
                current, entries = str(uscc), []
            entry: dict[str, Any] = {"idempotency_key": key, "policy_id": pid, "policy_version": int(version),
                                     "score": round(float(score), 6)}
            entry.update(self._policy_text(pid))
            policy = self.policies.get(pid)
            if policy is not None:
                entry.update(item_for_firm(policy, (records or {}).get(str(uscc))))
            entries.append(entry)
        if current is not None:
            yield current, entries

    @lru_cache(maxsize=1024)  # noqa: B019 (one writer per run; the cache dies with it)
    def _policy_text(self, policy_id: str) -> dict[str, Any]:
        policy = self.policies.get(policy_id)
        if policy is None:
            return {}
        return {**item_text(policy), "needs_review": policy.needs_review(self.as_of),
                "review_note": REVIEW_NOTE if policy.needs_review(self.as_of) else None}

    def _payload(self, uscc: str, name: str | None, entries: list[dict[str, Any]]) -> dict[str, Any]:
        return {"type": "policy_package", "uscc": uscc, "name": name, "run_id": self.run_id,
                "as_of": self.as_of.isoformat(), "catalog_version": self.prep.catalog.version, "items": entries,
                **package_link(self.settings, uscc)}

    def release_held(self) -> None:
        """Items held back by the weekly cap go out in this run when the cap allows (one transaction).
        Firms scored in this run are left to their chunk, which bundles held and new items together."""
        t, e = PushItem.__table__.c, Enterprise.__table__.c  # type: ignore[attr-defined]
        joined, stale = _candidates_query(self.prep.catalog_key, self.as_of)
        with self.engine.begin() as conn:
            scored = sa.select(e.uscc).select_from(joined).where(stale)
            waiting = pd.DataFrame(conn.execute(
                sa.select(t.id, t.uscc, t.idempotency_key, t.policy_id, t.policy_version, t.score)
                .where(t.outbox_id.is_(None), t.uscc.not_in(scored))).all(), columns=_ITEM_COLUMNS)
            if waiting.empty:
                return
            firms = sorted(set(waiting["uscc"]))
            names: dict[str, str] = {}
            for i in range(0, len(firms), IN_LIST):
                names.update(dict(conn.execute(sa.select(e.uscc, e.name).where(  # type: ignore[arg-type]
                    e.uscc.in_(firms[i:i + IN_LIST]))).all()))
            queued, _, released = self._messages(conn, waiting.iloc[0:0], waiting, names)
            self.report.data["messages"] += queued
            self.report.data["items"]["released"] += released

    # -- snapshot and cursor
    def _replace_snapshot(self, conn: Connection, usccs: Sequence[str], offered: pd.DataFrame) -> None:
        s = MatchSnapshot.__table__  # type: ignore[attr-defined]
        for i in range(0, len(usccs), IN_LIST):
            conn.execute(sa.delete(s).where(s.c.uscc.in_(usccs[i:i + IN_LIST])))
        bulk_insert(conn, s, {"uscc": offered["uscc"].tolist(), "policy_id": offered["policy_id"].tolist(),
                              "policy_version": offered["policy_version"].tolist(), "score": offered["score"].tolist()},
                    {"status": IN_PACKAGE, "run_id": self.run_id, "computed_at": self.now})

    def _save_cursor(self, conn: Connection, meta: pd.DataFrame) -> None:
        c = BatchCursor.__table__  # type: ignore[attr-defined]
        usccs = meta["uscc"].astype(str).tolist()
        for i in range(0, len(usccs), IN_LIST):
            conn.execute(sa.delete(c).where(c.c.uscc.in_(usccs[i:i + IN_LIST])))
        recheck = [None if np.isnan(d) or d >= _LAST_DAY else EPOCH + dt.timedelta(days=int(d))
                   for d in meta["recheck"].tolist()]  # a day past the calendar's end: never
        bulk_insert(conn, c, {"uscc": usccs, "content_hash": meta["content_hash"].astype(str).tolist(),
                              "recheck_on": recheck},
                    {"catalog_key": self.prep.catalog_key, "run_id": self.run_id, "scored_at": self.now})

    # -- report
    def _account(self, meta: pd.DataFrame, results: pd.DataFrame, offered: pd.DataFrame, inserted: pd.DataFrame,
                 opted: set[str], queued: int, held: int, released: int) -> None:
        r = self.report
        d = r.data
        d["chunks"] += 1
        d["messages"] += queued
        d["enterprises"]["scored"] += len(meta)
        d["enterprises"]["opted_out"] += len(opted)
        d["items"]["offered"] += len(offered)
        d["items"]["new"] += len(inserted)
        d["items"]["repeated"] += len(offered) - len(inserted)
        d["items"]["held"] += held
        d["items"]["released"] += released
        d["items"]["possible"] += int((results["status"] == POSSIBLE).sum())
        for pid, n in offered["policy_id"].value_counts().items():
            r._bump("by_policy", str(pid), "offered", int(n))
        for pid, n in inserted["policy_id"].value_counts().items():
            r._bump("by_policy", str(pid), "new", int(n))
        repeated = offered[~offered.set_index(["uscc", "policy_id"]).index.isin(
            inserted.set_index(["uscc", "policy_id"]).index)] if not inserted.empty else offered
        for pid, n in repeated["policy_id"].value_counts().items():
            r._bump("by_policy", str(pid), "repeated", int(n))
        region = meta.set_index("uscc")["region"].fillna("未知")
        sizes = results.drop_duplicates("uscc").set_index("uscc")["size"]
        size_names = ["未知", *(FIELDS["size"].value_label(v) for v in values("size"))]
        size_of = pd.Series([size_names[int(s) + 1] for s in sizes.to_numpy()], index=sizes.index, dtype=object)
        size_all = size_of.reindex(meta["uscc"]).fillna("未知")
        new_firms = inserted["uscc"].value_counts()
        for key, series in (("by_region", region), ("by_size", size_all)):
            for label, n in series.value_counts().items():
                r._bump(key, str(label), "scored", int(n))
            for label, n in series.reindex(new_firms.index).value_counts().items():
                r._bump(key, str(label), "firms_with_new", int(n))
            for label, n in new_firms.groupby(series.reindex(new_firms.index).to_numpy()).sum().items():
                r._bump(key, str(label), "new_items", int(n))


# ---- progress: a bar with ETA on a terminal, plain lines otherwise ---------------------------------------------
class Progress:
    def __init__(self, total: int, say: Callable[[str], None], *, enabled: bool | None) -> None:
        self.total, self.say, self.done, self.start = total, say, 0, time.perf_counter()
        self.tty = sys.stderr.isatty() if enabled is None else enabled
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if self.tty and self.total:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(TextColumn("评分"), BarColumn(), MofNCompleteColumn(), TextColumn("剩余"),
                                     TimeRemainingColumn(), transient=False)
            self._bar.__enter__()
            self._task = self._bar.add_task("batch", total=self.total)
        else:
            self.say(f"待评分企业 {self.total} 家")
        return self

    def advance(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.advance(self._task, n)
            return
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        pct = 100.0 * self.done / self.total if self.total else 100.0
        self.say(f"已评分 {self.done}/{self.total}（{pct:.1f}%），用时 {elapsed:.0f} 秒，预计剩余 {eta:.0f} 秒")

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


# ---- status and report text ---------------------------------------------------------------------------------
def recent_runs(engine: Engine, limit: int = 10) -> list[BatchRun]:
    with Session(engine) as session:
        return list(session.exec(select(BatchRun).order_by(BatchRun.id.desc()).limit(limit)))  # type: ignore[union-attr]


STATUS_LABELS = {"running": "运行中", "succeeded": "成功", "failed": "失败", "interrupted": "中断"}


def quarantine_lines(run: BatchRun, *, limit: int | None = None) -> list[str]:
    """The run's quarantined rows (USCC and reason), for ``batch run`` / ``batch status``; none = no lines."""
    d = run.report or {}
    count = int(d.get("enterprises", {}).get("quarantined", 0))
    if not count:
        return []
    listed: list[dict[str, str]] = d.get("quarantined", [])
    shown = listed if limit is None else listed[:limit]
    lines = [f"隔离（画像无法评分，本次跳过，修正后下次运行自动评分）：{count} 家"]
    lines += [f"  {q.get('uscc', '')}  {q.get('reason', '')}" for q in shown]
    if count > len(shown):
        more = f"，完整列表见 policyfit batch status --run {run.id}" if len(listed) > len(shown) else ""
        lines.append(f"  ……另有 {count - len(shown)} 家未列出{more}")
    return lines


def render_report(run: BatchRun, *, top: int = 10) -> str:
    d = run.report or {}
    ent, items = d.get("enterprises", {}), d.get("items", {})
    lines = [
        f"批处理 #{run.id}（{STATUS_LABELS.get(run.status, run.status)}）评估日期 {run.as_of} · 目录 {run.catalog_version}"
        f" · 引擎 {d.get('engine', '-')}",
        f"企业：共 {ent.get('stored', 0)}，评分 {ent.get('scored', 0)}，未变跳过 {ent.get('skipped', 0)}，"
        f"拒收推送 {ent.get('opted_out', 0)}",
        f"推荐：在套餐中 {items.get('offered', 0)}，新增 {items.get('new', 0)}，重复（已推送过）{items.get('repeated', 0)}，"
        f"因每周上限暂缓 {items.get('held', 0)}，释放暂缓 {items.get('released', 0)}；可能符合 {items.get('possible', 0)}",
        f"消息：{d.get('messages', 0)} 条（每家企业每次最多一条）",
        *quarantine_lines(run),
    ]
    timings = d.get("timings", {})
    if timings:
        lines.append("用时（秒）：" + "，".join(f"{k} {v:.1f}" for k, v in timings.items()))
    by_policy = d.get("by_policy", {})
    if by_policy:
        lines.append(f"按政策（新增最多的前{top}项）：")
        ranked = sorted(by_policy.items(), key=lambda kv: (-kv[1].get("new", 0), -kv[1].get("offered", 0), kv[0]))
        for pid, c in ranked[:top]:
            lines.append(f"  {pid:<40} 新增 {c.get('new', 0):>7}  重复 {c.get('repeated', 0):>7}  套餐 {c.get('offered', 0):>7}")
    for key, title in (("by_region", "按区县"), ("by_size", "按规模")):
        part = d.get(key, {})
        if part:
            lines.append(f"{title}：" + "；".join(
                f"{k} 评分{v.get('scored', 0)}/新增{v.get('new_items', 0)}"
                for k, v in sorted(part.items(), key=lambda kv: -kv[1].get("scored", 0))))
    return "\n".join(lines)


def spark_result_schema() -> str:
    return ", ".join(f"{k} {v}" for k, v in {**result_schema(), "chunk": "int"}.items())
