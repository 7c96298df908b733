"""Writing a scored chunk, in one transaction: the diff against the last snapshot (what is new, less what a
department already granted or refused: :mod:`service.push.outcomes`), the push items (new offers, and
reminders of certificates ending soon) and messages (through :mod:`service.push.outbox`: keys, weekly cap,
opt-out), the new snapshot, the firms' cursors and the run report. A run killed at any point leaves only whole
chunks behind. After the chunks, the uptake reminders due (应享未享) are queued, a firm's chunk at a time."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from matching.batch import IN_PACKAGE
from profiles.columns import EPOCH
from service.batch.candidates import Prepared, scored_firms
from service.batch.report import Report
from service.batch.scoring import Quarantined
from service.db.bulk import IN_LIST, bulk_insert, table_of
from service.db.tables import BatchCursor, BatchRun, MatchSnapshot
from service.push.message import Composer
from service.push.outbox import OutboxWriter
from service.push.outcomes import decided_mask, decided_pairs, due_uptake
from service.push.reminders import is_reminder, reminder_items
from service.settings import Settings

_LAST_DAY = float((dt.date.max - EPOCH).days)


class ChunkWriter:
    def __init__(self, engine: Engine, settings: Settings, prep: Prepared, *, run_id: int, as_of: dt.date,
                 now: dt.datetime, report: Report) -> None:
        self.engine, self.prep = engine, prep
        self.run_id, self.as_of, self.now, self.report = run_id, as_of, now, report
        composer = Composer({p.id: p for p in prep.catalog}, settings, run_id, as_of, prep.version)
        self.outbox = OutboxWriter(composer, run_id, now, settings.push_weekly_cap)
        self.reminder_days, self.chunk_size = settings.uptake_reminder_days, settings.batch_chunk_size

    def write(self, meta: pd.DataFrame, results: pd.DataFrame, quarantined: Quarantined | None = None) -> None:
        t0 = time.perf_counter()
        self.report.quarantine(quarantined or [])
        if meta.empty:  # every row of the chunk was quarantined: only the report changes
            with self.engine.begin() as conn:
                self._save_report(conn)
            return
        usccs = meta["uscc"].astype(str).tolist()
        offered = results[results["status"] == IN_PACKAGE]
        with self.engine.begin() as conn:
            new = self._new_items(offered, self._previous(conn, usccs))
            decided = decided_mask(new, decided_pairs(conn, usccs))  # granted or refused: never pushed again
            withheld, new = new[decided], new[~decided]
            opted = set(meta.loc[meta["opted_out"].astype(bool), "uscc"].astype(str))
            names = dict(zip(meta["uscc"], meta["name"], strict=True))
            inserted, queued, held, released = self.outbox.queue_chunk(conn, usccs, new, opted, names,
                                                                       reminder_items(meta))
            self._replace_snapshot(conn, usccs, offered)
            self._save_cursor(conn, meta)
            reminded = is_reminder(inserted["policy_id"])
            self.report.account(meta, results, offered, inserted[~reminded], opted, queued, held, released,
                                withheld=withheld)
            self.report.reminded(int(reminded.sum()))
            self.report.add_timings({"write": time.perf_counter() - t0})
            self._save_report(conn)

    def release_held(self) -> None:
        """Items held back by the weekly cap go out in this run when the cap allows (one transaction).
        Firms scored in this run are left to their chunk, which bundles held and new items together."""
        with self.engine.begin() as conn:
            queued, released = self.outbox.release_held(conn, scored_firms(self.prep.catalog_key, self.as_of))
        self.report.released(queued, released)

    def remind_uptake(self) -> None:
        """Queue the uptake reminders due (:func:`service.push.outcomes.due_uptake`), after the chunks (so the
        snapshot is this run's), ``batch_chunk_size`` firms per transaction. A firm that got its message in
        this run has its reminder held for the next one."""
        if not self.reminder_days:
            return
        policies = [p.id for p in self.prep.catalog if p.offered and not p.automatic]
        with self.engine.begin() as conn:
            due = due_uptake(conn, policies=policies, cutoff=self.now - dt.timedelta(days=self.reminder_days))
        firms = due["uscc"].drop_duplicates().tolist()
        for i in range(0, len(firms), self.chunk_size):
            part = due[due["uscc"].isin(set(firms[i:i + self.chunk_size]))]
            with self.engine.begin() as conn:
                recorded, queued, held = self.outbox.queue_uptake(conn, part)
                self.report.uptake(recorded, queued, held)
                self._save_report(conn)

    def _save_report(self, conn: Connection) -> None:
        t = table_of(BatchRun)
        conn.execute(sa.update(t).where(t.c.id == self.run_id).values(report=self.report.data))

    # -- the diff
    def _previous(self, conn: Connection, usccs: Sequence[str]) -> pd.DataFrame:
        """The last snapshot of these firms, looked up by USCC (the snapshot's index): a chunk of the few firms a
        feed changed is spread over the whole key range, and reading that range read the whole snapshot."""
        s = table_of(MatchSnapshot).c
        rows: list[Any] = []
        for i in range(0, len(usccs), IN_LIST):
            rows += conn.execute(sa.select(s.uscc, s.policy_id, s.policy_version)
                                 .where(s.uscc.in_(usccs[i:i + IN_LIST]))).all()
        return pd.DataFrame(rows, columns=["uscc", "policy_id", "prev_version"])

    def _new_items(self, offered: pd.DataFrame, prev: pd.DataFrame) -> pd.DataFrame:
        """Offered now and not before (newly eligible or a new policy), or offered under a new version
        whose benefit changed. A new version with the same benefit is not news."""
        merged = offered.merge(prev, on=["uscc", "policy_id"], how="left")
        was = merged["prev_version"].notna()
        bumped = was & (merged["prev_version"] != merged["policy_version"])
        changed = np.zeros(len(merged), dtype=bool)
        if bumped.any():
            sub = merged[bumped]
            benefits = self.prep.benefits
            old = [benefits.get((p, int(v))) for p, v in zip(sub["policy_id"], sub["prev_version"], strict=True)]
            cur = [benefits.get((p, int(v))) for p, v in zip(sub["policy_id"], sub["policy_version"], strict=True)]
            changed[np.flatnonzero(bumped.to_numpy())] = [a != b for a, b in zip(old, cur, strict=True)]
        return merged[(~was) | changed].drop(columns=["prev_version"])

    # -- snapshot and cursor
    def _replace_snapshot(self, conn: Connection, usccs: Sequence[str], offered: pd.DataFrame) -> None:
        s = table_of(MatchSnapshot)
        for i in range(0, len(usccs), IN_LIST):
            conn.execute(sa.delete(s).where(s.c.uscc.in_(usccs[i:i + IN_LIST])))
        bulk_insert(conn, s, {"uscc": offered["uscc"].tolist(), "policy_id": offered["policy_id"].tolist(),
                              "policy_version": offered["policy_version"].tolist(), "score": offered["score"].tolist()},
                    {"status": IN_PACKAGE, "run_id": self.run_id, "computed_at": self.now})

    def _save_cursor(self, conn: Connection, meta: pd.DataFrame) -> None:
        c = table_of(BatchCursor)
        usccs = meta["uscc"].astype(str).tolist()
        for i in range(0, len(usccs), IN_LIST):
            conn.execute(sa.delete(c).where(c.c.uscc.in_(usccs[i:i + IN_LIST])))
        recheck = [None if np.isnan(d) or d >= _LAST_DAY else EPOCH + dt.timedelta(days=int(d))
                   for d in meta["recheck"].tolist()]  # a day past the calendar's end: never
        bulk_insert(conn, c, {"uscc": usccs, "content_hash": meta["content_hash"].astype(str).tolist(),
                              "recheck_on": recheck},
                    {"catalog_key": self.prep.catalog_key, "run_id": self.run_id, "scored_at": self.now})
