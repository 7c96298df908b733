"""The push uses outcomes (issue 15), through the real nightly flow (``run_batch`` + ``deliver``) on SQLite and
PostgreSQL: a policy granted or refused for a firm is never pushed to it again (not queued by the writer,
dropped from a message queued before the decision), and a firm told of a policy that has not acted gets one
uptake reminder after POLICYFIT_UPTAKE_REMINDER_DAYS, within opt-out and the weekly cap."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from service.batch.run import run_batch
from service.db.tables import Outbox, PushItem
from service.push.channels import WebhookChannel
from service.push.delivery import deliver
from service.push.outbox import set_opt_out
from service.push.outcomes import DROPPED, UPTAKE_KIND
from service.settings import Settings
from service.store.audit import add_feedback
from service.store.outcomes import put_outcome
from service.store.principals import Principal
from tests.batch.conftest import AS_OF, Receiver, make_settings, seed
from tests.batch.test_batch_run import POLICY, _publish_new_version

T0 = dt.datetime(2024, 6, 3, 2, 0, tzinfo=dt.UTC)
STAFF = Principal(1, "staff", "测试坐席", None, None)


def _night(engine: Engine, settings: Settings, days: float) -> Any:
    return run_batch(engine, settings, as_of=AS_OF, now=T0 + dt.timedelta(days=days), echo=lambda _: None)


def _deliver(engine: Engine, settings: Settings, receiver: Receiver) -> Any:
    return deliver(engine, settings, WebhookChannel(receiver.url, settings.push_timeout_seconds), wait=True)


def _items(engine: Engine) -> list[PushItem]:
    with Session(engine) as session:
        return list(session.exec(select(PushItem).order_by(PushItem.id)))  # type: ignore[arg-type]


def _decide(engine: Engine, uscc: str, policy_id: str, outcome: str, day: dt.date = dt.date(2024, 6, 20)) -> None:
    with Session(engine) as session:
        put_outcome(session, key=(uscc, policy_id, outcome, day), amount_wan=None, department="测试部门",
                    source="api", stored=None)
        session.commit()


def _received(receiver: Receiver, name: str = "items") -> list[tuple[str, str]]:
    """(firm, policy) of every entry of ``name`` the receiver accepted."""
    return [(body["uscc"], e["policy_id"]) for body in receiver.accepted.values() for e in body.get(name, [])]


def _policy_firms(engine: Engine, policy_id: str) -> list[str]:
    return sorted({i.uscc for i in _items(engine) if i.policy_id == policy_id})


def test_a_granted_or_refused_policy_is_never_pushed_to_that_firm_again(
        engine: Engine, database_url: str, receiver: Receiver) -> None:
    settings = make_settings(database_url, push_weekly_cap=0, push_timeout_seconds=5, uptake_reminder_days=0)
    seed(engine, 60, seed=9)
    _night(engine, settings, 0)
    _deliver(engine, settings, receiver)
    firms = _policy_firms(engine, POLICY)
    assert len(firms) >= 4, "the population must offer the policy to a few firms"
    granted, refused, late, other = firms[:4]
    _decide(engine, granted, POLICY, "granted")
    _decide(engine, refused, POLICY, "refused")
    _decide(engine, other, POLICY, "applied")  # an application alone does not stop the push

    # a new version whose benefit changed is news for every eligible firm, except where it was decided
    _publish_new_version(engine, POLICY, benefit_text="科技创新券额度提高（测试）")
    run = _night(engine, settings, 1)
    assert run.report["items"]["decided"] == 2 and run.report["by_policy"][POLICY]["decided"] == 2
    v2 = {i.uscc for i in _items(engine) if i.policy_id == POLICY and i.run_id == run.id}
    assert v2 == set(firms) - {granted, refused}

    # decided after its message was queued, before delivery: the entry is dropped and nothing goes out
    _decide(engine, late, POLICY, "granted")
    before = len(receiver.accepted)
    report = _deliver(engine, settings, receiver)
    assert report.dropped == 1
    sent = [b for b in list(receiver.accepted.values())[before:]]
    assert {b["uscc"] for b in sent} == set(firms) - {granted, refused, late}
    assert (late, POLICY) not in [(b["uscc"], e["policy_id"]) for b in sent for e in b["items"]]
    with Session(engine) as session:
        dropped = session.exec(select(Outbox).where(Outbox.uscc == late, Outbox.run_id == run.id)).one()
        assert dropped.status == DROPPED and dropped.delivered_at is None

    # and nothing of the policy reaches the decided firms on any later night (a third version, too)
    _publish_new_version(engine, POLICY, benefit_text="科技创新券额度再次提高（测试）")
    _night(engine, settings, 2)
    _deliver(engine, settings, receiver)
    pushed_after = Counter(u for u, p in _received(receiver) if p == POLICY)
    assert pushed_after[granted] == pushed_after[refused] == pushed_after[late] == 1  # the first night's only
    assert pushed_after[other] == 3


def test_a_message_queued_before_a_decision_loses_only_that_entry(
        engine: Engine, database_url: str, receiver: Receiver) -> None:
    settings = make_settings(database_url, push_weekly_cap=0, push_timeout_seconds=5, uptake_reminder_days=0)
    seed(engine, 30, seed=4)
    _night(engine, settings, 0)
    with Session(engine) as session:
        message = next(m for m in session.exec(select(Outbox).order_by(Outbox.id))  # type: ignore[arg-type]
                       if len(m.payload["items"]) >= 2)
    uscc, items = message.uscc, message.payload["items"]
    _decide(engine, uscc, items[0]["policy_id"], "refused")
    _deliver(engine, settings, receiver)
    body = receiver.accepted[message.idempotency_key]
    assert [e["policy_id"] for e in body["items"]] == [e["policy_id"] for e in items[1:]]
    with Session(engine) as session:
        item = session.exec(select(PushItem).where(PushItem.idempotency_key == items[0]["idempotency_key"])).one()
        holder = session.get(Outbox, item.outbox_id)
        assert holder is not None and holder.status == DROPPED and holder.id != message.id
        assert session.get(Outbox, message.id).payload == body  # type: ignore[union-attr]


def test_one_uptake_reminder_after_the_interval_once_and_never_to_an_opted_out_firm(
        engine: Engine, database_url: str, receiver: Receiver) -> None:
    settings = make_settings(database_url, push_weekly_cap=0, push_timeout_seconds=5, uptake_reminder_days=30)
    seed(engine, 40, seed=9)
    _night(engine, settings, 0)
    _deliver(engine, settings, receiver)
    told = set(_received(receiver))
    firms = _policy_firms(engine, POLICY)
    granted, applied, dismissed, opted = firms[:4]
    _decide(engine, granted, POLICY, "granted")
    with Session(engine) as session:
        add_feedback(session, principal=STAFF, uscc=applied, policy_id=POLICY, kind="applied", note=None)
        add_feedback(session, principal=STAFF, uscc=dismissed, policy_id=POLICY, kind="dismissed", note=None)
        session.commit()
    assert set_opt_out(engine, uscc=opted, opted_out=True)

    early = _night(engine, settings, 29.9)
    assert early.report["items"].get("uptake_reminders", 0) == 0
    due = _night(engine, settings, 30)
    _deliver(engine, settings, receiver)
    reminded = _received(receiver, "uptake_reminders")
    expected = {(u, p) for u, p in told if u != opted} - {(granted, POLICY), (applied, POLICY), (dismissed, POLICY)}
    assert sorted(reminded) == sorted(expected)
    assert due.report["items"]["uptake_reminders"] == len(expected)
    entry = next(e for b in receiver.accepted.values() for e in b.get("uptake_reminders", []))
    assert entry["kind"] == UPTAKE_KIND and entry["first_pushed"] == "2024-06-03"
    assert entry["idempotency_key"] == f"{entry['idempotency_key'].split(':')[0]}:uptake:{entry['policy_id']}:20240603"
    assert "已推送告知" in entry["message"] and entry["line"].startswith(entry["message"])
    body = next(b for b in receiver.accepted.values() if b.get("uptake_reminders"))
    assert body["items"] == [] and "以上为新增政策" not in body["package_note"]

    for days in (31, 45, 90):  # exactly once
        _night(engine, settings, days)
    _deliver(engine, settings, receiver)
    assert Counter(_received(receiver, "uptake_reminders")) == Counter(expected)


def test_the_uptake_reminder_is_held_by_the_weekly_cap_and_released_later(
        engine: Engine, database_url: str, receiver: Receiver) -> None:
    settings = make_settings(database_url, push_weekly_cap=1, push_timeout_seconds=5, uptake_reminder_days=30)
    seed(engine, 40, seed=9)
    _night(engine, settings, 0)
    _deliver(engine, settings, receiver)
    told = set(_received(receiver))
    _publish_new_version(engine, POLICY, benefit_text="科技创新券额度提高（测试）")
    _night(engine, settings, 25)  # the policy's eligible firms get a message on day 25
    _deliver(engine, settings, receiver)
    busy = set(_policy_firms(engine, POLICY))

    capped = _night(engine, settings, 31)  # reminders due for all; the busy firms are at their cap (day 25)
    held = [i for i in _items(engine) if i.policy_id.startswith("uptake:") and i.outbox_id is None]
    assert {i.uscc for i in held} == busy
    assert capped.report["items"]["held"] == len(held) > 0
    _deliver(engine, settings, receiver)
    assert not busy & {u for u, _ in _received(receiver, "uptake_reminders")}

    _night(engine, settings, 32)  # still within seven days of day 25
    assert len([i for i in _items(engine) if i.policy_id.startswith("uptake:") and i.outbox_id is None]) == len(held)
    later = _night(engine, settings, 33)
    assert later.report["items"]["released"] == len(held)
    _deliver(engine, settings, receiver)
    assert Counter(_received(receiver, "uptake_reminders")) == Counter(told)  # each once, none lost
    with engine.connect() as conn:
        per_run = conn.execute(sa.select(Outbox.__table__.c.uscc, Outbox.__table__.c.run_id)).all()  # type: ignore[attr-defined]
    assert len(per_run) == len(set(per_run))  # never two messages to a firm in one run
