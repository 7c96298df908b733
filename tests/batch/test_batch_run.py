"""The nightly batch in-process: what is new, what is skipped, push governance, the run report."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from policies.schema import Policy
from profiles.model import parse_profile
from service.batch.report import render_report
from service.batch.run import run_batch
from service.db.tables import (
    BatchCursor,
    BatchRun,
    Enterprise,
    MatchSnapshot,
    Outbox,
    PolicyVersion,
    PushItem,
)
from service.push.outbox import set_opt_out
from service.store.catalog import add_draft, published_versions, set_status
from service.store.enterprises import upsert_enterprise
from tests.batch.conftest import AS_OF, expected_items, make_settings, seed

POLICY = "sci-tech-innovation-voucher"  # offered to a fraction of the population, not to everyone


def _items(engine: Engine) -> list[PushItem]:
    with Session(engine) as session:
        return list(session.exec(select(PushItem)))


def _messages(engine: Engine) -> list[Outbox]:
    with Session(engine) as session:
        return list(session.exec(select(Outbox).order_by(Outbox.id)))  # type: ignore[arg-type]


def _publish_new_version(engine: Engine, policy_id: str, *, benefit_text: str | None = None,
                         title: str | None = None) -> int:
    with Session(engine) as session:
        current = next(r for r in published_versions(session) if r.policy_id == policy_id)
        policy = Policy.model_validate(current.data)
        update: dict[str, object] = {}
        if benefit_text is not None:
            update["benefit"] = policy.benefit.model_copy(update={"description": benefit_text})
        if title is not None:
            update["title"] = title
        row = add_draft(session, policy=policy.model_copy(update=update), author="test")
        session.commit()
        set_status(session, row=row, status="published")
        session.commit()
        return row.version


def test_first_run_pushes_every_offer_once_then_nothing_when_nothing_changed(engine: Engine, database_url: str) -> None:
    settings = make_settings(database_url, batch_chunk_size=40)
    records = seed(engine, 120)
    opted = records[3]["uscc"]
    assert set_opt_out(engine, uscc=opted, opted_out=True)
    first = run_batch(engine, settings, as_of=AS_OF, echo=lambda _: None)
    assert first.status == "succeeded"
    assert first.report["enterprises"]["scored"] == 120
    items = _items(engine)
    assert {i.idempotency_key for i in items} == expected_items(engine, settings)
    assert opted not in {i.uscc for i in items}
    messages = _messages(engine)
    per_firm = Counter(m.uscc for m in messages)
    assert max(per_firm.values()) == 1  # one bundled message per firm per run
    assert opted not in per_firm
    for m in messages:  # the message carries exactly the firm's items of this run
        assert {it["idempotency_key"] for it in m.payload["items"]} == {
            i.idempotency_key for i in items if i.outbox_id == m.id}
    with Session(engine) as session:
        snapshot = session.exec(select(sa.func.count()).select_from(MatchSnapshot)).one()
    assert snapshot == first.report["items"]["offered"]
    assert "新增" in render_report(first)

    again = run_batch(engine, settings, as_of=AS_OF, echo=lambda _: None)
    assert again.report["enterprises"]["scored"] == 0
    assert again.report["enterprises"]["skipped"] == 120
    assert len(_messages(engine)) == len(messages)
    assert len(_items(engine)) == len(items)
    with Session(engine) as session:
        runs = session.exec(select(BatchRun).order_by(BatchRun.id)).all()  # type: ignore[arg-type]
    assert [r.status for r in runs] == ["succeeded", "succeeded"]
    assert runs[0].report["by_policy"][POLICY]["new"] > 0


def test_changing_one_policy_pushes_only_what_the_change_makes_new(engine: Engine, database_url: str) -> None:
    settings = make_settings(database_url, batch_chunk_size=50, push_weekly_cap=0)
    seed(engine, 150, seed=11)
    run_batch(engine, settings, as_of=AS_OF, echo=lambda _: None)
    before_items = {i.idempotency_key for i in _items(engine)}
    before_messages = len(_messages(engine))
    with Session(engine) as session:
        offered = {s.uscc for s in session.exec(select(MatchSnapshot).where(MatchSnapshot.policy_id == POLICY))}
    assert 0 < len(offered) < 150

    # a new version whose benefit is the same (a retitled policy) is not news
    v2 = _publish_new_version(engine, POLICY, title="省科技创新券（新版标题）")
    cosmetic = run_batch(engine, settings, as_of=AS_OF, echo=lambda _: None)
    assert cosmetic.report["enterprises"]["scored"] == 150  # a new catalog re-scores everyone …
    assert cosmetic.report["items"]["new"] == 0  # … and pushes nothing
    assert len(_messages(engine)) == before_messages
    with Session(engine) as session:  # the baseline follows the version in force
        versions = {s.policy_version for s in session.exec(select(MatchSnapshot).where(MatchSnapshot.policy_id == POLICY))}
    assert versions == {v2}

    # a version whose benefit changed is news, for exactly the firms it is offered to
    v3 = _publish_new_version(engine, POLICY, benefit_text="科技创新券抵扣比例提高（测试版本）")
    material = run_batch(engine, settings, as_of=AS_OF, echo=lambda _: None)
    new = {i.idempotency_key for i in _items(engine)} - before_items
    assert new == {f"{u}:{POLICY}:{v3}" for u in offered}
    assert material.report["by_policy"][POLICY]["new"] == len(offered)
    assert set(material.report["by_policy"]) >= {POLICY}
    assert all(c.get("new", 0) == 0 for pid, c in material.report["by_policy"].items() if pid != POLICY)
    fresh = [m for m in _messages(engine) if m.run_id == material.id]
    assert sorted(m.uscc for m in fresh) == sorted(offered)
    assert all(len(m.payload["items"]) == 1 and m.payload["items"][0]["policy_version"] == v3 for m in fresh)


def test_changed_profile_is_the_only_one_rescored(engine: Engine, database_url: str) -> None:
    settings = make_settings(database_url)
    records = seed(engine, 60, seed=5)
    run_batch(engine, settings, as_of=AS_OF, echo=lambda _: None)
    changed = dict(records[10], qualifications=["high_tech", "tech_sme"], patents=12)
    with Session(engine) as session:
        _, did = upsert_enterprise(session, profile=parse_profile(changed))
        session.commit()
    assert did
    run = run_batch(engine, settings, as_of=AS_OF, echo=lambda _: None)
    assert run.report["enterprises"]["scored"] == 1
    new = [i for i in _items(engine) if i.run_id == run.id]
    assert {i.uscc for i in new} <= {changed["uscc"]}
    assert {i.idempotency_key for i in _items(engine)} == expected_items(engine, settings)


def test_age_threshold_crossing_rescores_an_unchanged_firm(engine: Engine, database_url: str) -> None:
    settings = make_settings(database_url)
    records = seed(engine, 40, seed=3)
    run_batch(engine, settings, as_of=AS_OF, echo=lambda _: None)
    with Session(engine) as session:
        cursors = {c.uscc: c for c in session.exec(select(BatchCursor))}
    due = {c.uscc: c.recheck_on for c in cursors.values() if c.recheck_on is not None}
    assert due, "some firm's age crosses a threshold of the catalog"
    first_due = min(due.values())
    run = run_batch(engine, settings, as_of=first_due, echo=lambda _: None)
    rescored = {u for u, day in due.items() if day <= first_due}
    # the firms due, or everyone when the set of policies in force on the new date differs
    assert run.report["enterprises"]["scored"] in (len(rescored), len(records))
    assert len(rescored) < len(records)
    assert {i.idempotency_key for i in _items(engine)} == (
        expected_items(engine, settings) | expected_items(engine, settings, first_due))


def test_weekly_cap_holds_items_and_releases_them_in_one_later_message(engine: Engine, database_url: str) -> None:
    settings = make_settings(database_url, push_weekly_cap=1)
    seed(engine, 50, seed=9)
    monday = dt.datetime(2024, 6, 3, 2, 0, tzinfo=dt.UTC)
    run_batch(engine, settings, as_of=AS_OF, now=monday, echo=lambda _: None)
    first = len(_messages(engine))
    v2 = _publish_new_version(engine, POLICY, benefit_text="科技创新券额度提高（测试）")
    capped = run_batch(engine, settings, as_of=AS_OF, now=monday + dt.timedelta(days=1), echo=lambda _: None)
    held = capped.report["items"]["held"]
    assert held > 0 and capped.report["messages"] == 0
    assert len(_messages(engine)) == first
    waiting = [i for i in _items(engine) if i.outbox_id is None]
    assert len(waiting) == held and all(i.policy_version == v2 for i in waiting)

    later = run_batch(engine, settings, as_of=AS_OF, now=monday + dt.timedelta(days=8), echo=lambda _: None)
    assert later.report["enterprises"]["scored"] == 0  # nothing to score: only the held items go out
    assert later.report["items"]["released"] == held
    released = [m for m in _messages(engine) if m.run_id == later.id]
    assert len(released) == len({i.uscc for i in waiting})
    assert not [i for i in _items(engine) if i.outbox_id is None]


def test_a_run_killed_midway_is_marked_interrupted_by_the_next(engine: Engine, database_url: str) -> None:
    settings = make_settings(database_url)
    seed(engine, 10, seed=2)
    with Session(engine) as session:
        session.add(BatchRun(as_of=AS_OF, catalog_version="catalog-x", status="running"))
        session.commit()
    run_batch(engine, settings, as_of=AS_OF, echo=lambda _: None)
    with Session(engine) as session:
        statuses = [r.status for r in session.exec(select(BatchRun).order_by(BatchRun.id))]  # type: ignore[arg-type]
        assert session.exec(select(sa.func.count()).select_from(PolicyVersion)).one() > 0
        assert session.exec(select(sa.func.count()).select_from(Enterprise)).one() == 10
    assert statuses == ["interrupted", "succeeded"]
