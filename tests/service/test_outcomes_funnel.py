"""The funnel of one policy (应享未享): the database's counts against the per-record reference
(:func:`service.app.funnel.facts_from_records`, one firm at a time), on random snapshots, deliveries, feedback and
outcomes (hypothesis) — SQLite, and PostgreSQL when ``POLICYFIT_TEST_DATABASE_URL`` is set."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from service.app.funnel import (
    STAGES,
    Event,
    FirmFacts,
    facts_from_records,
    funnel,
    funnel_from_stages,
    stage_rows,
)
from service.db.bulk import table_of
from service.db.migrate import upgrade
from service.db.tables import (
    EnterpriseClass,
    Feedback,
    MatchSnapshot,
    Outbox,
    Outcome,
    PushItem,
    make_engine,
    postgres_schema,
)
from service.store.outcomes import stage_counts
from tests.service.conftest import make_uscc

AS_OF = dt.date(2024, 6, 1)
FIRMS = [make_uscc(7000 + i, prefix="91320305") for i in range(10)]
#: region and size of the classified firms; the last two firms have no class (未知)
CLASSES = {u: (r, s) for u, r, s in zip(FIRMS[:8], ["鼓楼区", "鼓楼区", "泉山区", "铜山区", "市外", None, "丰县", "沛县"],
                                         ["small", "micro", "small", None, "large", "medium", "micro", "small"],
                                         strict=True)}
UTC = dt.UTC
_ids = itertools.count()


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A database of this module alone (the funnel counts a policy's rows in the whole database)."""
    base = os.environ.get("POLICYFIT_TEST_DATABASE_URL", "").strip()
    if base:
        with postgres_schema(base, f"pf_funnel_{uuid.uuid4().hex[:10]}") as url:
            yield from _migrated(url)
    else:
        yield from _migrated(f"sqlite:///{tmp_path_factory.mktemp('funnel') / 'funnel.db'}")


def _migrated(url: str) -> Iterator[Engine]:
    eng = make_engine(url)
    upgrade(eng)
    now = dt.datetime.now(UTC)
    with eng.begin() as conn:
        conn.execute(sa.insert(table_of(EnterpriseClass)), [
            {"uscc": u, "region": r, "size": s, "content_hash": "x", "source_updated_at": now}
            for u, (r, s) in CLASSES.items()])
    try:
        yield eng
    finally:
        eng.dispose()


def local_day(at: dt.datetime) -> dt.date:
    """What the store computes in SQL: the day in the service's time zone."""
    return (at + (dt.datetime.now().astimezone().utcoffset() or dt.timedelta())).date()


firm = st.sampled_from(FIRMS)
moment = st.builds(lambda d, h: dt.datetime.combine(AS_OF, dt.time(12), UTC) + dt.timedelta(days=d, hours=h),
                   st.integers(-400, 2), st.sampled_from([-13, 0, 11]))
world = st.fixed_dictionaries({
    "eligible": st.sets(firm),
    "pushes": st.lists(st.tuples(firm, st.sampled_from(["delivered", "pending", "dead", None])), max_size=12),
    "feedback": st.lists(st.tuples(firm, st.sampled_from(["viewed", "applied", "dismissed", "not_relevant"]), moment),
                         max_size=12),
    "outcomes": st.lists(st.tuples(firm, st.sampled_from(["applied", "granted", "refused"]), st.integers(-400, 2),
                                   st.sampled_from([0, 1, 2])), max_size=14),
    "period": st.sampled_from([1, 30, 365]),
})


def store_world(engine: Engine, policy: str, w: dict[str, Any]) -> list[Event]:
    """Write the records of one random world for ``policy``; returns the events as the reference reads them."""
    base = dt.datetime(2024, 6, 1, 8, tzinfo=UTC)
    events: list[Event] = []
    with engine.begin() as conn:
        if w["eligible"]:
            conn.execute(sa.insert(table_of(MatchSnapshot)), [
                {"uscc": u, "policy_id": policy, "policy_version": 1, "status": 1, "score": 0.0,
                 "computed_at": base} for u in sorted(w["eligible"])])
        for i, (u, status) in enumerate(w["pushes"]):
            outbox_id = None
            if status is not None:
                outbox_id = conn.execute(sa.insert(table_of(Outbox)).values(
                    idempotency_key=f"t:{policy}:{i}:{next(_ids)}", uscc=u, payload={}, status=status, attempts=0,
                    next_attempt_at=base, created_at=base).returning(table_of(Outbox).c.id)).scalar_one()
            conn.execute(sa.insert(table_of(PushItem)).values(
                idempotency_key=f"{u}:{policy}:{i}:{next(_ids)}", uscc=u, policy_id=policy, policy_version=1,
                score=0.0, outbox_id=outbox_id, created_at=base))
        for u, kind, at in w["feedback"]:
            fid = conn.execute(sa.insert(table_of(Feedback)).values(
                at=at, uscc=u, policy_id=policy, kind=kind, role="enterprise", label="测试").returning(
                table_of(Feedback).c.id)).scalar_one()
            if kind == "applied":
                events.append(Event(u, "applied", local_day(at), at, fid))
        seen = set()
        for u, outcome, days, tick in w["outcomes"]:
            day = AS_OF + dt.timedelta(days=days)
            if (u, outcome, day) in seen:
                continue
            seen.add((u, outcome, day))
            at = base + dt.timedelta(minutes=tick)  # few distinct times: ties broken by the id
            oid = conn.execute(sa.insert(table_of(Outcome)).values(
                uscc=u, policy_id=policy, outcome=outcome, decided_on=day, amount_wan=None, department=None,
                source="import", recorded_at=at).returning(table_of(Outcome).c.id)).scalar_one()
            events.append(Event(u, outcome, day, at, oid))
    return events


def db_funnel(engine: Engine, policy: str, period: int) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = stage_counts(conn, policy_id=policy, as_of=AS_OF, since=AS_OF - dt.timedelta(days=period))
    assert len({r[:3] for r in rows}) == len(rows) and all(r[3] > 0 for r in rows)  # one row per stage and class
    return funnel_from_stages(rows)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(w=world)
def test_database_funnel_equals_the_per_record_reference(engine: Engine, w: dict[str, Any]) -> None:
    policy = f"hyp-{uuid.uuid4().hex[:10]}"
    events = store_world(engine, policy, w)
    delivered = {u for u, status in w["pushes"] if status == "delivered"}
    viewed = {u for u, kind, at in w["feedback"] if kind == "viewed" and local_day(at) <= AS_OF}
    facts = facts_from_records(eligible=w["eligible"], delivered=delivered, viewed=viewed, events=events,
                               classes=CLASSES, as_of=AS_OF, period_days=w["period"])
    expected = funnel((f, 1) for f in facts.values())
    assert db_funnel(engine, policy, w["period"]) == expected


def test_definitions_on_a_worked_example(engine: Engine) -> None:
    """One firm per situation, the counts written out by hand."""
    a, b, c, d, e, f, g = FIRMS[:7]
    policy = f"ex-{uuid.uuid4().hex[:10]}"
    w = {"eligible": {a, b, c, d, e},
         "pushes": [(a, "delivered"), (b, "pending"), (f, "delivered"), (a, "delivered")],
         "feedback": [(a, "viewed", dt.datetime(2024, 5, 1, 12, tzinfo=UTC)),
                      (b, "applied", dt.datetime(2024, 5, 2, 12, tzinfo=UTC))],
         # c granted on the first day of the period (counts), d refused the day before it (应享未享 again),
         # e applied after a grant (latest: applied, but granted within the period), g granted, not eligible
         "outcomes": [(c, "granted", -365, 0), (d, "refused", -366, 0), (e, "granted", -10, 0), (e, "applied", -2, 0),
                      (g, "granted", 0, 0)],
         "period": 365}
    store_world(engine, policy, w)
    got = db_funnel(engine, policy, 365)
    assert {k: got[k] for k in STAGES} == {"eligible": 5, "pushed": 2, "viewed": 1, "applied": 2, "granted": 2,
                                           "refused": 1, "not_yet_granted": 3}  # a, b, d
    assert got["by_region"]["鼓楼区"]["not_yet_granted"] == 2  # a, b
    assert got["by_size"]["未知"]["eligible"] == 1  # d: classified without a size
    assert got["by_region"]["未知"] == {**dict.fromkeys(STAGES, 0), "pushed": 1}  # f: no region, told only


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([None, "鼓楼区", "市外"]), st.sampled_from([None, "small", "large"]),
                          st.booleans(), st.booleans(), st.booleans(),
                          st.sampled_from([None, "applied", "granted", "refused"]), st.booleans()), max_size=40))
def test_funnel_of_groups_equals_counting_firm_by_firm(rows: list[tuple[Any, ...]]) -> None:
    """Grouped facts with their counts give what the same facts one firm at a time give."""
    facts = [FirmFacts(*r) for r in rows]
    grouped = funnel(Counter(facts).items())
    assert grouped == funnel((f, 1) for f in facts)
    assert funnel_from_stages(stage_rows(Counter(facts).items())) == grouped  # the database's road
    for stage in STAGES:
        assert grouped[stage] == sum(f.stages()[stage] for f in facts)
        assert sum(v[stage] for v in grouped["by_region"].values()) == grouped[stage]
        assert sum(v[stage] for v in grouped["by_size"].values()) == grouped[stage]



def test_classes_follow_the_profiles_and_are_read_again_only_when_changed(engine: Engine) -> None:
    from sqlmodel import Session

    from profiles.model import parse_profile
    from profiles.synth import synthesize
    from service.app.uptake import refresh_classes
    from service.store.enterprises import upsert_enterprise

    records = list(synthesize(25, 3).records())
    with Session(engine) as session:
        for r in records:
            upsert_enterprise(session, profile=parse_profile(r))
        session.commit()
        assert refresh_classes(session, chunk=10) == 25  # three pages
        assert refresh_classes(session) == 0  # nothing changed: no profile is read again
        first = records[0]
        upsert_enterprise(session, profile=parse_profile({**first, "size": "large"}))  # a stated size wins
        session.commit()
        assert refresh_classes(session) == 1
        got = session.get(EnterpriseClass, first["uscc"])
        assert got is not None and (got.size, got.region) == ("large", first["region"])
        # a transaction that stamped its row before the last refresh started but committed after it
        late = records[1]
        row, _ = upsert_enterprise(session, profile=parse_profile({**late, "size": "medium"}))
        row.updated_at = dt.datetime.now(UTC) - dt.timedelta(minutes=5)
        session.add(row)
        session.commit()
        assert refresh_classes(session) == 1
        late_class = session.get(EnterpriseClass, late["uscc"])
        assert late_class is not None and late_class.size == "medium"
