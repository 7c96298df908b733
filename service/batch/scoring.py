"""Scoring a chunk: validate and encode the profiles, look up the text signals, run the pure
:func:`matching.batch.score_batch` — inline or in a process pool — and quarantine the rows that cannot be scored.

A row that cannot be scored never stops the run: every profile read is first validated as the API would
(:func:`profiles.model.parse_profile`, founding date not after the run's day), and a chunk whose encoding
or scoring still fails is split until the failing rows are found. Those rows are *quarantined*: listed with
their USCC and the reason (Chinese) in the run report and in ``batch status``, left without a cursor (so
they are looked at again every night until fixed) and skipped; every other firm is scored as usual.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from matching.batch import (
    BatchScorer,
    TextSignals,
    recheck_days,
    result_schema,
    score_batch,
    text_signals,
)
from matching.freshness import seen_rows
from matching.package import Matcher
from profiles.columns import encode_profiles
from profiles.model import ProfileError, parse_profile
from service.app.importer import check_json_types
from service.batch.candidates import Prepared, iter_candidates
from service.settings import Settings

log = logging.getLogger("policyfit.batch")
Timings = Callable[[dict[str, float]], None]  # adds seconds per phase to the run report


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


# ---- quarantine: rows that cannot be scored ------------------------------------------------------------
Quarantined = list[dict[str, str]]  # [{"uscc": …, "reason": …}] — the reason is for a person (Chinese)


def profile_problem(uscc: str, text: Any, latest_founding: dt.date) -> str | None:
    """Why a stored profile (its JSON text) cannot be scored, or None: it must be a JSON object that
    passes the same validation as the API (:func:`parse_profile`, founding date not after
    ``latest_founding``) and name the enterprise it is stored under. (The model's lax coercions — a number
    stored as text — are left to the column decoder, which fails on them: see :func:`encode_chunk`.)"""
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


def without(meta: pd.DataFrame, bad: Quarantined) -> pd.DataFrame:
    """The chunk metadata without the quarantined rows."""
    if not bad:
        return meta
    return meta[~meta["uscc"].isin({b["uscc"] for b in bad})].reset_index(drop=True)


def encode_chunk(raw: pd.DataFrame, prep: Prepared,
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
    good, unseen = as_seen_on(good, as_of)

    def encode(rows: pd.DataFrame) -> pd.DataFrame:
        frame = encode_profiles(rows["profile"])
        frame["uscc"] = rows["uscc"].to_numpy(dtype=object)
        return frame

    encoded, failed = isolate(good, encode, "画像编码") if len(good) else (None, [])
    failed = unseen + failed
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
    meta = without(good.drop(columns=["profile", "provenance", "next_change"]), failed).copy()
    ages = recheck_days(frame["established_on"].to_numpy(dtype=np.float64), as_of, prep.thresholds)
    # the earlier of an age threshold and the day the seen profile changes (a value turns stale, a
    # certificate starts or ends, a reminder window opens)
    changes = without(good, failed)["next_change"].to_numpy(dtype=np.float64)
    meta["recheck"] = np.fmin(ages, changes)
    return frame, meta, bad + failed


def as_seen_on(rows: pd.DataFrame, as_of: dt.date) -> tuple[pd.DataFrame, Quarantined]:
    """The rows' profiles as matching sees them on ``as_of`` (:func:`matching.freshness.seen_rows`: stale
    values removed, qualifications valid that day), with ``next_change`` (days since 1970, NaN: none) and
    ``reminders`` (JSON text of the certificates ending within the window); a row that cannot be read so is
    quarantined like any other."""

    def see(part: pd.DataFrame) -> pd.DataFrame:
        seen = seen_rows(part["profile"].tolist(), part["provenance"].tolist(), as_of)
        return part.assign(profile=seen.documents, next_change=seen.next_change,
                           reminders=[json.dumps(e, ensure_ascii=False) if e else "" for e in seen.expiring])

    if "provenance" not in rows.columns:  # (rows read without it: profiles of unknown origin)
        rows = rows.assign(provenance=None)
    if rows.empty:
        return rows.assign(next_change=pd.Series(dtype=np.float64), reminders=pd.Series(dtype=object)), []
    seen, failed = isolate(rows, see, "画像时效判断")
    if seen is None:
        return see(rows.iloc[0:0]), failed
    return seen, failed


# ---- scoring workers ------------------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _init_worker(scorer: BatchScorer, as_of: dt.date) -> None:
    _WORKER["scorer"], _WORKER["as_of"] = scorer, as_of


def _score_in_worker(frame: pd.DataFrame,
                     signals: TextSignals) -> tuple[pd.DataFrame, Quarantined, dict[str, float]]:
    timings: dict[str, float] = {}
    out, bad = score_isolating(frame, _WORKER["scorer"], signals, _WORKER["as_of"], timings)
    return out, bad, timings


def score_local(engine: Engine, settings: Settings, prep: Prepared, as_of: dt.date, workers: int,
                add_timings: Timings) -> Iterator[tuple[pd.DataFrame, pd.DataFrame, Quarantined]]:
    """(chunk metadata, scores, quarantined rows) in chunk order: inline for one worker, else a process
    pool with up to ``workers`` chunks in flight while the main process reads and writes."""
    texts = TextTable(prep.matcher, prep.scorer)

    def encoded() -> Iterator[tuple[pd.DataFrame, pd.DataFrame, TextSignals, Quarantined]]:
        for raw in iter_candidates(engine, prep.catalog_key, as_of, settings.batch_chunk_size):
            t0 = time.perf_counter()
            frame, meta, bad = encode_chunk(raw, prep, as_of)
            frame["text_row"], signals = texts.local(texts.rows_for(frame.pop("text_key").to_numpy()))
            add_timings({"load": time.perf_counter() - t0})
            yield frame, meta, signals, bad

    if workers <= 1:
        for frame, meta, signals, bad in encoded():
            timings: dict[str, float] = {}
            results, failed = score_isolating(frame, prep.scorer, signals, as_of, timings)
            add_timings(timings)
            yield without(meta, failed), results, bad + failed
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
        add_timings(timings)
        return without(meta, failed), results, bad + failed

    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(prep.scorer, as_of)) as pool:
        pending: list[Pending] = []
        for frame, meta, signals, bad in encoded():
            pending.append((frame, meta, signals, bad, pool.submit(_score_in_worker, frame, signals)))
            if len(pending) > workers:
                yield finish(pending.pop(0))
        for item in pending:
            yield finish(item)
