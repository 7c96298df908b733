"""One bad row never stops the night (issue 11, fault 1): rows the batch cannot validate or score are
quarantined — listed with their USCC and a Chinese reason in the run report and in ``batch status`` —
and skipped, and every other firm's result is exactly what a run without them gives.

The fault injection writes ~1% poison rows straight into the ``enterprise`` table with SQL (as a
faulty upstream sync or a hand edit would: no validation on the way in): extreme dates, huge numbers,
values of the wrong type, and — on SQLite, whose JSON column is plain text — JSON that does not parse
(PostgreSQL's ``json`` type refuses it on input; there the JSON is valid but not a profile). Runs on
SQLite and, with ``POLICYFIT_TEST_DATABASE_URL``, on PostgreSQL (see ``conftest.py``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from profiles.model import parse_profile
from profiles.synth import synthesize
from service.batch.report import render_report
from service.batch.run import run_batch
from service.db.bulk import bulk_insert
from service.db.migrate import upgrade
from service.db.tables import BatchCursor, Enterprise, MatchSnapshot, Outbox, PushItem, postgres_schema
from service.push.delivery import writer_engine
from service.store.values import canonical_hash
from tests.batch.conftest import AS_OF, make_settings

N = 20_000
NOW = dt.datetime(2024, 6, 1, 2, 0, tzinfo=dt.UTC)


def _poison(i: int, record: dict[str, Any], sqlite: bool) -> tuple[str, str]:
    """(profile JSON text, a word the quarantine reason must contain) of poison kind ``i``."""
    doc = json.dumps(record, ensure_ascii=False)
    without_revenue = json.dumps({k: v for k, v in record.items() if k != "annual_revenue_wan"}, ensure_ascii=False)
    kinds: list[tuple[str, str]] = [
        (json.dumps(record | {"established_on": "9999-12-31"}), "不能晚于"),
        (json.dumps(record | {"established_on": "2100-01-01"}), "不能晚于"),
        (json.dumps(record | {"established_on": "2024-06-01T00:00:00"}), "YYYY-MM-DD"),
        (json.dumps(record | {"established_on": "0001-01-01"}), "1900"),
        (json.dumps(record | {"established_on": 99999999999}), "YYYY-MM-DD"),
        (json.dumps(record | {"employees": 10**30}), "employees"),
        (without_revenue[:-1] + ', "annual_revenue_wan": 1e400}', "annual_revenue_wan"),  # beyond any float
        (json.dumps(record | {"total_assets_wan": 1e308}), "total_assets_wan"),
        (json.dumps(record | {"region": "火星"}, ensure_ascii=False), "region"),
        (json.dumps(record | {"qualifications": "high_tech"}), "qualifications"),
        (json.dumps(record | {"annual_revenue_wan": "1.5"}), "annual_revenue_wan"),  # text, not a number
        (json.dumps(record | {"uscc": "91320300MA1XXXXXX0"}), "统一社会信用代码"),
        (json.dumps([record]), "JSON对象"),
        (json.dumps("企业画像", ensure_ascii=False), "JSON对象"),
    ]
    if sqlite:  # JSON that does not parse: only a text column takes it
        kinds += [(doc[: len(doc) // 2], "JSON"), ("{not json", "JSON")]
    return kinds[i % len(kinds)]


@pytest.fixture
def two_databases(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two fresh databases (clean, poisoned) on the backend under test."""
    base = os.environ.get("POLICYFIT_TEST_DATABASE_URL", "").strip()
    if not base:
        yield f"sqlite:///{tmp_path / 'clean.db'}", f"sqlite:///{tmp_path / 'poisoned.db'}"
        return
    tag = uuid.uuid4().hex[:10]
    with postgres_schema(base, f"pf_q_clean_{tag}") as clean, postgres_schema(base, f"pf_q_poison_{tag}") as poisoned:
        yield clean, poisoned


def _engine(url: str) -> Engine:
    migrate = writer_engine(url)
    upgrade(migrate)
    migrate.dispose()
    return writer_engine(url)


def _store_clean(engine: Engine, records: list[dict[str, Any]]) -> None:
    """Valid profiles, stored as the API stores them (stated fields, content hash), in bulk."""
    stated = [parse_profile(r).stated() for r in records]
    now = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    with engine.begin() as conn:
        bulk_insert(conn, Enterprise.__table__, {  # type: ignore[attr-defined]
            "uscc": [d["uscc"] for d in stated], "name": [d["name"] for d in stated],
            "region": [d.get("region") for d in stated], "profile": stated,
            "content_hash": [canonical_hash(d) for d in stated]},
            {"opted_out": False, "created_at": now, "updated_at": now})


def _store_raw(engine: Engine, rows: list[tuple[str, str, str]]) -> None:
    """(uscc, name, profile text) written with plain SQL: nothing checks the profile on the way in."""
    value = "CAST(:profile AS json)" if engine.dialect.name == "postgresql" else ":profile"
    insert = sa.text("INSERT INTO enterprise (uscc, name, region, profile, content_hash, opted_out, created_at, "
                     f"updated_at) VALUES (:uscc, :name, NULL, {value}, :hash, :opted, :at, :at)")
    at = dt.datetime(2024, 5, 1)
    with engine.begin() as conn:
        conn.execute(insert, [{"uscc": u, "name": n, "profile": p, "hash": uuid.uuid4().hex, "opted": False, "at": at}
                              for u, n, p in rows])


def _outcome(engine: Engine) -> dict[str, Any]:
    """Everything a run leaves per firm: snapshot, push items, messages, cursors."""
    s, t, o, c = (x.__table__.c for x in (MatchSnapshot, PushItem, Outbox, BatchCursor))  # type: ignore[attr-defined]
    with engine.connect() as conn:
        snapshot = sorted(tuple(r) for r in conn.execute(sa.select(s.uscc, s.policy_id, s.policy_version, s.score,
                                                                   s.status)))
        items = sorted(tuple(r) for r in conn.execute(sa.select(
            t.idempotency_key, t.uscc, t.policy_id, t.policy_version, t.score, t.outbox_id.is_not(None))))
        messages = sorted((r[0], r[1], json.dumps(r[2], sort_keys=True, ensure_ascii=False), r[3])
                          for r in conn.execute(sa.select(o.idempotency_key, o.uscc, o.payload, o.status)))
        cursors = sorted(tuple(r) for r in conn.execute(sa.select(c.uscc, c.content_hash, c.recheck_on)))
    return {"snapshot": snapshot, "items": items, "messages": messages, "cursors": cursors}


@pytest.mark.slow
def test_poison_rows_are_quarantined_and_everyone_else_is_scored_as_in_a_clean_run(
        two_databases: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    clean_url, poisoned_url = two_databases
    records = list(synthesize(N, 29).records())
    poison_at = set(range(37, N, 100))  # 1%: 200 firms spread over the whole key range
    clean = [r for i, r in enumerate(records) if i not in poison_at]
    clean_db, poisoned_db = _engine(clean_url), _engine(poisoned_url)
    try:
        sqlite = poisoned_db.dialect.name == "sqlite"
        _store_clean(clean_db, clean)
        _store_clean(poisoned_db, clean)
        expect: dict[str, str] = {}
        raw = []
        for k, i in enumerate(sorted(poison_at)):
            text, word = _poison(k, records[i], sqlite)
            raw.append((records[i]["uscc"], records[i]["name"], text))
            expect[records[i]["uscc"]] = word
        _store_raw(poisoned_db, raw)

        settings = make_settings(clean_url, batch_chunk_size=5_000)
        base = run_batch(clean_db, settings, as_of=AS_OF, now=NOW, echo=lambda _: None)
        assert base.status == "succeeded" and base.report["enterprises"]["quarantined"] == 0
        run = run_batch(poisoned_db, make_settings(poisoned_url, batch_chunk_size=5_000), as_of=AS_OF, now=NOW,
                        echo=lambda _: None)
        assert run.status == "succeeded"
        report = run.report
        assert report["enterprises"]["scored"] == len(clean) == base.report["enterprises"]["scored"]
        assert report["enterprises"]["quarantined"] == len(poison_at)
        listed = {q["uscc"]: q["reason"] for q in report["quarantined"]}
        assert set(listed) == set(expect)
        for uscc, word in expect.items():
            assert word in listed[uscc], (uscc, listed[uscc])
        # every other firm: the same snapshot, push items, messages and cursors as the clean run
        got, want = _outcome(poisoned_db), _outcome(clean_db)
        assert got["snapshot"] and got["items"] and got["messages"]
        for part in ("snapshot", "items", "messages", "cursors"):
            assert got[part] == want[part], part
        assert not {row[1] for row in got["items"]} & set(expect)
        for key in ("offered", "new", "held", "possible"):
            assert report["items"][key] == base.report["items"][key], key
        assert report["messages"] == base.report["messages"]
        text = render_report(run)
        assert f"隔离（画像无法评分，本次跳过，修正后下次运行自动评分）：{len(poison_at)} 家" in text
        assert all(u in text for u in expect)

        # the next night: the poison is still there and still quarantined; nothing else happens
        again = run_batch(poisoned_db, make_settings(poisoned_url), as_of=AS_OF, now=NOW + dt.timedelta(days=1),
                          echo=lambda _: None)
        assert again.status == "succeeded"
        assert again.report["enterprises"]["quarantined"] == len(poison_at)
        assert again.report["enterprises"]["scored"] == 0 and again.report["items"]["new"] == 0
        # a fixed row is scored by the next run
        fixed = records[min(poison_at)]
        with poisoned_db.begin() as conn:
            conn.execute(sa.delete(Enterprise.__table__).where(Enterprise.__table__.c.uscc == fixed["uscc"]))  # type: ignore[attr-defined]
        _store_clean(poisoned_db, [fixed])
        third = run_batch(poisoned_db, make_settings(poisoned_url), as_of=AS_OF, now=NOW + dt.timedelta(days=2),
                          echo=lambda _: None)
        assert third.report["enterprises"]["scored"] == 1
        assert third.report["enterprises"]["quarantined"] == len(poison_at) - 1

        # batch status: the overview names the quarantined rows, --run lists every one, --json carries them
        from service.batch.commands import app
        from service.settings import get_settings

        monkeypatch.setenv("POLICYFIT_DATABASE_URL", poisoned_url)
        get_settings.cache_clear()
        try:
            runner = CliRunner()
            overview = runner.invoke(app, ["status"])
            assert overview.exit_code == 0, overview.output
            assert f"{len(poison_at)} 家" in overview.stdout and "另有" in overview.stdout
            shown = [u for u in expect if u in overview.stdout]
            assert len(shown) >= 20 and all(expect[u] in overview.stdout for u in shown)
            full = runner.invoke(app, ["status", "--run", str(run.id)])
            assert full.exit_code == 0 and all(f"{u}  {listed[u]}" in full.stdout for u in expect)
            as_json = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
            first = next(r for r in as_json["runs"] if r["id"] == run.id)
            assert {q["uscc"]: q["reason"] for q in first["report"]["quarantined"]} == listed
        finally:
            get_settings.cache_clear()
    finally:
        clean_db.dispose()
        poisoned_db.dispose()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_scoring_failure_quarantines_only_the_rows_it_fails_on(engine: Engine, database_url: str, workers: int,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows that pass validation but make the scorer raise are found by splitting the chunk, and only
    they are skipped (the local engine, inline and in a process pool: its forked workers inherit the
    patched scorer)."""
    import service.batch.scoring as batch

    records = list(synthesize(60, 5).records())
    _store_clean(engine, records)
    bad = {records[7]["uscc"], records[41]["uscc"]}
    real = batch.score_batch

    def failing(frame: Any, *args: Any, **kwargs: Any) -> Any:
        if set(frame["uscc"]) & bad:
            raise FloatingPointError("injected")
        return real(frame, *args, **kwargs)

    monkeypatch.setattr(batch, "score_batch", failing)
    run = run_batch(engine, make_settings(database_url, batch_chunk_size=25), as_of=AS_OF, now=NOW,
                    workers=workers, echo=lambda _: None)
    assert run.status == "succeeded"
    assert run.report["enterprises"]["scored"] == 58 and run.report["enterprises"]["quarantined"] == 2
    assert {q["uscc"] for q in run.report["quarantined"]} == bad
    assert all(q["reason"].startswith("评分失败") for q in run.report["quarantined"])
    with engine.connect() as conn:
        c = BatchCursor.__table__.c  # type: ignore[attr-defined]
        cursored = set(conn.execute(sa.select(c.uscc)).scalars())
    assert cursored == {r["uscc"] for r in records} - bad


@pytest.mark.slow
@pytest.mark.xdist_group("spark")
def test_the_spark_engine_quarantines_the_same_rows(two_databases: tuple[str, str]) -> None:
    """The Spark engine shares the validation: poison rows are quarantined with the same reasons and the
    rest is queued exactly as the local engine queues a clean population."""
    clean_url, poisoned_url = two_databases
    records = list(synthesize(90, 31).records())
    poison_at = {4, 33, 34, 71}
    clean = [r for i, r in enumerate(records) if i not in poison_at]
    clean_db, poisoned_db = _engine(clean_url), _engine(poisoned_url)
    try:
        sqlite = poisoned_db.dialect.name == "sqlite"
        _store_clean(clean_db, clean)
        _store_clean(poisoned_db, clean)
        kinds = [0, 6, 12, 14 if sqlite else 9]  # 9999-12-31, 1e400, a JSON array, broken JSON / wrong type
        raw, words = [], {}
        for k, i in zip(kinds, sorted(poison_at), strict=True):
            text, word = _poison(k, records[i], sqlite)
            raw.append((records[i]["uscc"], records[i]["name"], text))
            words[records[i]["uscc"]] = word
        _store_raw(poisoned_db, raw)
        base = run_batch(clean_db, make_settings(clean_url, batch_chunk_size=30), as_of=AS_OF, now=NOW,
                         echo=lambda _: None)
        run = run_batch(poisoned_db, make_settings(poisoned_url, batch_chunk_size=30), as_of=AS_OF, now=NOW,
                        engine_kind="spark", workers=2, echo=lambda _: None)
        assert run.status == "succeeded" and run.report["engine"] == "spark"
        assert run.report["enterprises"]["scored"] == len(clean)
        listed = {q["uscc"]: q["reason"] for q in run.report["quarantined"]}
        assert set(listed) == set(words) and all(w in listed[u] for u, w in words.items())
        got, want = _outcome(poisoned_db), _outcome(clean_db)
        for part in ("snapshot", "items", "messages", "cursors"):
            assert got[part] == want[part], part
        assert base.report["items"]["new"] == run.report["items"]["new"]
    finally:
        clean_db.dispose()
        poisoned_db.dispose()


def test_batch_run_cli_succeeds_with_a_firm_founded_in_9999(engine: Engine, database_url: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault 1 as reported: a firm founded 9999-12-31 made ``policyfit batch run`` exit 1 every night."""
    from service.batch.commands import app
    from service.settings import get_settings

    records = list(synthesize(30, 3).records())
    _store_clean(engine, records[1:])
    _store_raw(engine, [(records[0]["uscc"], records[0]["name"],
                         json.dumps(records[0] | {"established_on": "9999-12-31"}, ensure_ascii=False))])
    monkeypatch.setenv("POLICYFIT_DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["run", "--as-of", "2024-06-01", "--no-progress"])
        assert result.exit_code == 0, result.output
        assert "隔离（画像无法评分，本次跳过，修正后下次运行自动评分）：1 家" in result.stdout
        assert f"{records[0]['uscc']}  established_on（成立日期）不能晚于" in result.stdout
        assert "评分 29" in result.stdout
    finally:
        get_settings.cache_clear()
