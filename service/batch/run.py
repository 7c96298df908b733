"""The nightly batch (政府主动送): score every enterprise, find what is new, queue it for delivery.

``run_batch`` reads the enterprises that need scoring (new or changed content, a new catalog, or an
age threshold crossed) in keyset-ordered chunks, scores each chunk with the pure
:func:`matching.batch.score_batch` (in-process, in a process pool, or through Spark), and commits per
chunk, in one transaction: the snapshot of what is offered, the push items (unique per enterprise,
policy and version), the outbox messages (one per enterprise per run, within the weekly cap), the
enterprise's cursor and the run report; after the chunks, the uptake reminders due (应享未享). A run killed
at any point leaves only whole chunks behind; the next run skips them through the cursor and carries on, so
nothing is pushed twice or lost.

The parts: :mod:`~service.batch.candidates` (the catalog and who needs scoring), :mod:`~service.batch.scoring`
(encoding, scoring, quarantine of rows that cannot be scored), :mod:`~service.batch.spark` (the same scorer
under PySpark), :mod:`~service.batch.writer` (one transaction per chunk), :mod:`~service.batch.report`.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from service.batch.candidates import Prepared, count_candidates, prepare
from service.batch.report import Report
from service.batch.scoring import score_local
from service.batch.spark import score_with_spark
from service.batch.writer import ChunkWriter
from service.db.bulk import table_of
from service.db.tables import BatchRun, utcnow
from service.settings import Settings

ENGINES = ("local", "spark")


class BatchError(RuntimeError):
    """A batch run that cannot start or finish; the message is for a person (Chinese)."""


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
        runs = table_of(BatchRun)
        session.execute(sa.update(runs).where(runs.c.status == "running").values(status="interrupted", finished_at=now))
        run = BatchRun(as_of=as_of, catalog_version=prep.version, started_at=now)
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
                for meta, results, timings, bad in score_with_spark(engine, settings, prep, as_of=as_of,
                                                                    run_id=run_id, workers=workers,
                                                                    chunk=settings.batch_chunk_size):
                    report.add_timings(timings)
                    writer.write(meta, results, bad)
                    bar.advance(len(meta) + len(bad))
            else:
                for meta, results, bad in score_local(engine, settings, prep, as_of, workers, report.add_timings):
                    writer.write(meta, results, bad)
                    bar.advance(len(meta) + len(bad))
        writer.remind_uptake()  # after the chunks: the snapshot is this run's
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
