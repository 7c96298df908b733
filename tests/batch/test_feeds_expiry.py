"""Issue 14 in the nightly run: the batch reads each firm as matching sees it on the run's day — a dated
qualification counts through its valid_to and not the day after (batch and Matcher agree), a value older
than its field's maximum age is unknown — the firm is re-scored on the day its seen profile changes, and a
certificate ending within 90 days is pushed as a reminder exactly once per (firm, code, valid_to), under the
weekly cap and opt-out. On SQLite, and on PostgreSQL with POLICYFIT_TEST_DATABASE_URL."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from matching.package import Matcher
from profiles.features import derive
from profiles.model import parse_profile
from profiles.synth import synthesize
from service.batch.run import run_batch
from service.db.tables import BatchCursor, Enterprise, MatchSnapshot, Outbox, PushItem
from service.push.channels import WebhookChannel
from service.push.delivery import deliver
from service.push.outbox import set_opt_out
from service.settings import Settings
from service.store.enterprises import upsert_enterprise
from service.store.values import canonical_hash
from tests.batch.conftest import Receiver, make_settings

HIGH_TECH = "cit-high-tech-enterprise-rate"  # an entitlement of a 高新技术企业 in its certificate's term
LEVY = "disability-employment-levy-exemption-small"  # an entitlement for ≤ 30 staff
PUSHED = ("entitlement", "selective")
VALID_TO = dt.date(2026, 10, 31)


def _certified(record: dict[str, Any], valid_to: dt.date = VALID_TO) -> dict[str, Any]:
    return dict(record, entity_type="enterprise", needs="想了解高新技术企业的税收优惠",
                qualifications=[{"code": "high_tech", "valid_from": "2023-11-01", "valid_to": valid_to.isoformat()}])


def _store(engine: Engine, records: list[dict[str, Any]],
           provenance: dict[str, dict[str, Any]] | None = None) -> None:
    """Store profiles (and, for some firms, where their values came from: the content hash then covers it,
    as the feed import's does)."""
    with Session(engine) as session:
        for record in records:
            row, _ = upsert_enterprise(session, profile=parse_profile(record))
            prov = (provenance or {}).get(record["uscc"])
            if prov is not None:
                row.provenance = prov
                row.content_hash = canonical_hash({"profile": row.profile, "provenance": prov})
                session.add(row)
        session.commit()


def _population(n: int, seed: int) -> list[dict[str, Any]]:
    return list(synthesize(n, seed).records())


def _offered(engine: Engine, usccs: set[str]) -> dict[str, set[str]]:
    with Session(engine) as session:
        rows = session.exec(select(MatchSnapshot).where(MatchSnapshot.uscc.in_(usccs))).all()  # type: ignore[attr-defined]
    out: dict[str, set[str]] = {u: set() for u in usccs}
    for r in rows:
        out[r.uscc].add(r.policy_id)
    return out


def _matcher_offers(matcher: Matcher, engine: Engine, uscc: str, as_of: dt.date) -> set[str]:
    """What the Matcher packages for the stored firm on ``as_of`` and the batch would push."""
    with Session(engine) as session:
        row = session.get(Enterprise, uscc)
        assert row is not None
        profile, provenance = row.profile, row.provenance
    answer = matcher.match(derive(parse_profile(profile), as_of, provenance=provenance))
    return {e.policy_id for e in answer.package if e.strength in PUSHED}


def _cursors(engine: Engine) -> dict[str, BatchCursor]:
    with Session(engine) as session:
        return {c.uscc: c for c in session.exec(select(BatchCursor))}


def test_an_expired_certificate_stops_counting_the_day_after_valid_to_as_in_the_matcher(
        engine: Engine, database_url: str, matcher: Matcher) -> None:
    settings = make_settings(database_url, batch_chunk_size=16)
    records = _population(30, 41)
    dated = [_certified(r) for r in records[:4]]
    later = [_certified(r, VALID_TO + dt.timedelta(days=400)) for r in records[4:6]]
    _store(engine, dated + later + records[6:])
    certified = {r["uscc"] for r in dated}

    run_batch(engine, settings, as_of=VALID_TO, echo=lambda _: None)
    on_last_day = _offered(engine, certified)
    assert all(HIGH_TECH in on_last_day[u] for u in certified)
    assert on_last_day == {u: _matcher_offers(matcher, engine, u, VALID_TO) for u in certified}
    cursors = _cursors(engine)
    # re-checked the day the certificate ends; the later one when its reminder window opens
    assert {cursors[u].recheck_on for u in certified} == {VALID_TO + dt.timedelta(days=1)}
    assert all(cursors[r["uscc"]].recheck_on <= VALID_TO + dt.timedelta(days=400 - 90) for r in later)

    day_after = VALID_TO + dt.timedelta(days=1)
    second = run_batch(engine, settings, as_of=day_after, echo=lambda _: None)
    rescored = {u for u, c in _cursors(engine).items() if c.run_id == second.id}
    assert certified <= rescored
    after = _offered(engine, certified)
    assert not any(HIGH_TECH in after[u] for u in certified)
    assert after == {u: _matcher_offers(matcher, engine, u, day_after) for u in certified}
    assert all(HIGH_TECH in _offered(engine, {r["uscc"]})[r["uscc"]] for r in later)


def test_a_stale_value_is_unknown_in_the_batch_from_the_day_after_its_maximum_age(
        engine: Engine, database_url: str, matcher: Matcher) -> None:
    settings = make_settings(database_url)
    observed = dt.date(2026, 1, 10)
    base = dict(_population(1, 43)[0], entity_type="enterprise", employees=12, needs="残疾人就业保障金能免吗")
    provenance = {base["uscc"]: {"employees": {"source": "social_insurance", "as_of": observed.isoformat()},
                                 "name": {"source": "registration", "as_of": "2020-01-01"}}}
    _store(engine, [base], provenance)
    from profiles.sources import rules

    age = rules().max_age_days("employees")
    assert age is not None
    last = observed + dt.timedelta(days=age)

    run_batch(engine, settings, as_of=last, echo=lambda _: None)
    assert LEVY in _offered(engine, {base["uscc"]})[base["uscc"]]
    assert _cursors(engine)[base["uscc"]].recheck_on == last + dt.timedelta(days=1)
    again = run_batch(engine, settings, as_of=last + dt.timedelta(days=1), echo=lambda _: None)
    assert again.report["enterprises"]["scored"] == 1
    offered = _offered(engine, {base["uscc"]})[base["uscc"]]
    assert LEVY not in offered
    assert offered == _matcher_offers(matcher, engine, base["uscc"], last + dt.timedelta(days=1))


def _reminders_received(receiver: Receiver) -> list[tuple[str, dict[str, Any]]]:
    return [(r["idempotency_key"], r) for body in receiver.accepted.values() for r in body.get("reminders", [])]


def _deliver(engine: Engine, settings: Settings, receiver: Receiver) -> None:
    deliver(engine, settings, WebhookChannel(receiver.url, settings.push_timeout_seconds), wait=True)


def _at(day: dt.date) -> dt.datetime:
    """The night of ``day`` (a run's clock: the weekly cap counts from it)."""
    return dt.datetime.combine(day, dt.time(2, 0), tzinfo=dt.UTC)


def test_a_certificate_ending_soon_is_pushed_once_through_the_nightly_run(
        engine: Engine, database_url: str, receiver: Receiver) -> None:
    settings = make_settings(database_url, push_weekly_cap=0, push_timeout_seconds=5)
    records = _population(12, 45)
    firm, opted, renewed = (_certified(r) for r in records[:3])
    _store(engine, [firm, opted, renewed, *records[3:]])
    assert set_opt_out(engine, uscc=opted["uscc"], opted_out=True)
    opens = VALID_TO - dt.timedelta(days=90)

    run_batch(engine, settings, as_of=opens - dt.timedelta(days=10), now=_at(opens - dt.timedelta(days=10)),
              echo=lambda _: None)
    _deliver(engine, settings, receiver)
    assert _reminders_received(receiver) == []
    assert _cursors(engine)[firm["uscc"]].recheck_on == opens  # the day the reminder window opens

    window = run_batch(engine, settings, as_of=opens, now=_at(opens), echo=lambda _: None)
    assert window.report["items"]["reminders"] == 2  # the firm and the renewed one; not the opted-out firm
    _deliver(engine, settings, receiver)
    got = _reminders_received(receiver)
    key = f"{firm['uscc']}:reminder:high_tech:20261031"
    assert sorted(k for k, _ in got) == sorted([key, f"{renewed['uscc']}:reminder:high_tech:20261031"])
    reminder = dict(got)[key]
    assert reminder["message"] == "高新技术企业证书将于2026-10-31到期，请及时复审"
    assert (reminder["kind"], reminder["code"], reminder["valid_to"], reminder["days_left"]) == (
        "qualification_expiring", "high_tech", "2026-10-31", 90)
    assert reminder["line"].startswith("高新技术企业证书将于2026-10-31到期")
    message = next(b for b in receiver.accepted.values() if b["uscc"] == firm["uscc"] and b.get("reminders"))
    assert message["items"] == []  # nothing new to offer: the reminder alone is the message
    assert message["package_note"].startswith("贵企业的全部政策套餐")  # (not "以上为新增政策")

    # re-scored later (its profile changed): the same certificate is not news again …
    _store(engine, [dict(firm, trademarks=(firm.get("trademarks") or 0) + 1)])
    # … and a renewed certificate (a later valid_to) is a new reminder once it is due
    renewal = dict(renewed, qualifications=[{"code": "high_tech", "valid_from": "2023-11-01", "valid_to": "2026-10-31"},
                                            {"code": "high_tech", "valid_from": "2026-11-01", "valid_to": "2026-12-31"}])
    _store(engine, [renewal])
    later = dt.date(2026, 10, 15)  # within 90 days of both: the first certificate and the renewal's end
    run = run_batch(engine, settings, as_of=later, now=_at(later), echo=lambda _: None)
    assert run.report["items"]["reminders"] == 1
    _deliver(engine, settings, receiver)
    keys = Counter(k for k, _ in _reminders_received(receiver))
    assert keys == Counter({key: 1, f"{renewed['uscc']}:reminder:high_tech:20261031": 1,
                            f"{renewed['uscc']}:reminder:high_tech:20261231": 1})
    assert opted["uscc"] not in {k.split(":")[0] for k in keys}
    assert not receiver.replays


def test_a_reminder_at_the_weekly_cap_is_held_and_goes_out_once_with_a_later_message(
        engine: Engine, database_url: str, receiver: Receiver) -> None:
    settings = make_settings(database_url, push_weekly_cap=1, push_timeout_seconds=5)
    firm = _certified(_population(1, 47)[0])
    _store(engine, [firm])
    opens = VALID_TO - dt.timedelta(days=90)
    start = opens - dt.timedelta(days=2)
    run_batch(engine, settings, as_of=start, now=_at(start), echo=lambda _: None)  # the first message this week
    held = run_batch(engine, settings, as_of=opens, now=_at(opens), echo=lambda _: None)
    assert held.report["items"]["reminders"] == 1 and held.report["items"]["held"] >= 1
    with Session(engine) as session:
        item = session.exec(select(PushItem).where(PushItem.policy_id == "reminder:high_tech")).one()
    assert item.outbox_id is None
    week_later = start + dt.timedelta(days=8)
    run_batch(engine, settings, as_of=week_later, now=_at(week_later), echo=lambda _: None)
    _deliver(engine, settings, receiver)
    got = _reminders_received(receiver)
    assert [k for k, _ in got] == [f"{firm['uscc']}:reminder:high_tech:20261031"]
    assert got[0][1]["days_left"] == (VALID_TO - week_later).days
    with Session(engine) as session:
        per_run = Counter(m.run_id for m in session.exec(select(Outbox).where(Outbox.uscc == firm["uscc"])))
        stored = session.exec(select(PushItem).where(PushItem.policy_id == "reminder:high_tech")).all()
    assert max(per_run.values()) == 1 and len(stored) == 1
    assert json.dumps(got[0][1], ensure_ascii=False).count("请及时复审") == 2  # message and line


def _night(engine: Engine) -> tuple[set[str], set[tuple[str, str]], dict[str, Any]]:
    """(push item keys, snapshot pairs, recheck day per firm) of what the runs so far wrote."""
    with Session(engine) as session:
        keys = {i.idempotency_key for i in session.exec(select(PushItem))}
        pairs = {(s.uscc, s.policy_id) for s in session.exec(select(MatchSnapshot))}
        recheck = {c.uscc: c.recheck_on for c in session.exec(select(BatchCursor))}
    return keys, pairs, recheck


def test_the_spark_engine_reads_the_seen_profiles_as_the_local_engine(engine: Engine, database_url: str) -> None:
    settings = make_settings(database_url, batch_chunk_size=10, push_weekly_cap=0)
    as_of = VALID_TO - dt.timedelta(days=30)
    records = _population(30, 49)
    expired = [_certified(r, as_of - dt.timedelta(days=1)) for r in records[:3]]
    ending = [_certified(r) for r in records[3:6]]
    aged = [dict(r, employees=10) for r in records[6:9]]
    provenance = {r["uscc"]: {"employees": {"source": "social_insurance", "as_of": "2025-01-01"}} for r in aged}
    _store(engine, expired + ending + aged + records[9:], provenance)

    local = run_batch(engine, settings, as_of=as_of, echo=lambda _: None)
    wrote = _night(engine)
    assert local.report["items"]["reminders"] == 3
    with engine.begin() as conn:  # forget the night: the Spark engine starts from the same state
        for table in (PushItem, Outbox, MatchSnapshot, BatchCursor):
            conn.execute(table.__table__.delete())  # type: ignore[attr-defined]
    spark = run_batch(engine, settings, as_of=as_of, engine_kind="spark", workers=2, echo=lambda _: None)
    assert spark.status == "succeeded" and spark.report["items"]["reminders"] == 3
    assert _night(engine) == wrote
    assert {k for k in wrote[0] if ":reminder:" in k} == {f"{r['uscc']}:reminder:high_tech:20261031" for r in ending}
    assert not any((r["uscc"], HIGH_TECH) in wrote[1] for r in expired)


def test_a_row_whose_provenance_cannot_be_read_is_quarantined_not_the_night(engine: Engine, database_url: str) -> None:
    settings = make_settings(database_url)
    records = _population(6, 51)
    bad = records[2]["uscc"]
    _store(engine, records, {bad: {"employees": {"source": "social_insurance", "as_of": "2026-13-45"}}})
    run = run_batch(engine, settings, as_of=VALID_TO, echo=lambda _: None)
    assert run.status == "succeeded"
    assert run.report["enterprises"]["scored"] == 5 and run.report["enterprises"]["quarantined"] == 1
    [item] = run.report["quarantined"]
    assert item["uscc"] == bad and item["reason"].startswith("画像时效判断失败")
    assert bad not in _cursors(engine)  # looked at again every night until fixed
