"""Issue 14: the nightly batch scores merged profiles, and its content hash covers what matching reads — a feed
that changes one field for k firms re-scores exactly those k firms, the same feed again scores nothing, and a
department re-confirming values that never age (the register's facts) scores nothing either. Feeds go through
the real import (``service.app.feeds.import_feed``); on SQLite, and on PostgreSQL with
POLICYFIT_TEST_DATABASE_URL."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from profiles.sources import source
from profiles.synth import synthesize
from service.app.feeds import import_feed
from service.batch.run import run_batch
from service.db.tables import BatchCursor, Enterprise
from tests.batch.conftest import make_settings

OBSERVED = dt.date(2026, 11, 1)
RUN_DAY = dt.date(2026, 11, 20)
SOURCES = ("registration", "tax", "social_insurance")
GRADES = ("A", "B", "M", "C")


def _rows(records: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """What the department ``name`` says of each firm: the fields it may give (plain values only)."""
    src = source(name)
    out = []
    for record in records:
        row = {k: v for k, v in record.items()
               if k != "uscc" and v is not None and not isinstance(v, list) and src.may_give(k)}
        out.append({"uscc": record["uscc"], **row})
    return out


def _feed(tmp_path: Path, name: str, rows: list[dict[str, Any]], tag: str = "") -> Path:
    path = tmp_path / f"{name}{tag}.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _import(engine: Engine, path: Path, name: str, as_of: dt.date) -> None:
    report = import_feed(engine, path, source=name, as_of=as_of, errors_path=path.with_suffix(".errors.jsonl"))
    assert report.rejected == 0, path.with_suffix(".errors.jsonl").read_text(encoding="utf-8")


def _scored_in(engine: Engine, run_id: int | None) -> set[str]:
    with Session(engine) as session:
        return {c.uscc for c in session.exec(select(BatchCursor).where(BatchCursor.run_id == run_id))}


def test_a_feed_changing_one_field_for_k_firms_rescores_those_k_then_nothing(engine: Engine, database_url: str,
                                                                              tmp_path: Path) -> None:
    settings = make_settings(database_url, batch_chunk_size=20)
    records = list(synthesize(50, 61).records())
    for i, r in enumerate(records):
        r["tax_credit_grade"] = GRADES[i % 2]
    for name in SOURCES:
        _import(engine, _feed(tmp_path, name, _rows(records, name)), name, OBSERVED)
    with Session(engine) as session:
        stored = {e.uscc: e for e in session.exec(select(Enterprise))}
    assert len(stored) == 50 and all(e.provenance for e in stored.values())
    first = run_batch(engine, settings, as_of=RUN_DAY, echo=lambda _: None)
    assert first.report["enterprises"]["scored"] == 50

    k = 7
    changed = {r["uscc"] for r in records[:k]}
    tax = _rows(records, "tax")
    for row in tax[:k]:
        row["tax_credit_grade"] = "M" if row["tax_credit_grade"] != "M" else "A"
    feed = _feed(tmp_path, "tax", tax, "-corrected")
    _import(engine, feed, "tax", OBSERVED)  # the tax bureau's corrected file of the same day
    second = run_batch(engine, settings, as_of=RUN_DAY, echo=lambda _: None)
    assert second.report["enterprises"]["scored"] == k
    assert _scored_in(engine, second.id) == changed

    _import(engine, feed, "tax", OBSERVED)  # the same file again: nothing changes, nothing is scored
    third = run_batch(engine, settings, as_of=RUN_DAY, echo=lambda _: None)
    assert third.report["enterprises"]["scored"] == 0

    # the register confirms its facts a week later: they never age, so matching reads nothing new
    register = _feed(tmp_path, "registration", _rows(records, "registration"), "-later")
    _import(engine, register, "registration", OBSERVED + dt.timedelta(days=7))
    fourth = run_batch(engine, settings, as_of=RUN_DAY, echo=lambda _: None)
    assert fourth.report["enterprises"]["scored"] == 0


def test_a_value_reconfirmed_later_rescores_its_firms_once(engine: Engine, database_url: str,
                                                           tmp_path: Path) -> None:
    """A headcount ages: the same value observed on a later day moves the day it turns stale, which is what
    matching reads — those firms are re-scored (their recheck day moves), once."""
    settings = make_settings(database_url)
    records = list(synthesize(12, 63).records())
    for name in ("registration", "social_insurance"):
        _import(engine, _feed(tmp_path, name, _rows(records, name)), name, OBSERVED)
    run_batch(engine, settings, as_of=RUN_DAY, echo=lambda _: None)
    before = {c.uscc: c.recheck_on for c in _cursors(engine)}
    k = 4
    again = _feed(tmp_path, "social_insurance", _rows(records[:k], "social_insurance"), "-later")
    _import(engine, again, "social_insurance", OBSERVED + dt.timedelta(days=10))
    run = run_batch(engine, settings, as_of=RUN_DAY, echo=lambda _: None)
    assert _scored_in(engine, run.id) == {r["uscc"] for r in records[:k]}
    after = {c.uscc: c.recheck_on for c in _cursors(engine)}
    for r in records[:k]:
        assert after[r["uscc"]] is not None and before[r["uscc"]] is not None
        assert after[r["uscc"]] >= before[r["uscc"]]
    assert run_batch(engine, settings, as_of=RUN_DAY, echo=lambda _: None).report["enterprises"]["scored"] == 0


def _cursors(engine: Engine) -> list[BatchCursor]:
    with Session(engine) as session:
        return list(session.exec(select(BatchCursor)))
