"""Delivery: leases, retries with backoff, dead letters, the file channel, configuration errors."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from service.batch.run import run_batch
from service.db.tables import Outbox
from service.push.channels import FileChannel, PushConfigError, WebhookChannel, make_channel
from service.push.delivery import backoff, deliver, outbox_counts, retry_dead, writer_engine
from tests.batch.conftest import AS_OF, Receiver, expected_items, make_settings, seed


def _keys(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return [m.idempotency_key for m in session.exec(select(Outbox).order_by(Outbox.id))]  # type: ignore[arg-type]


def test_500s_and_timeouts_are_retried_and_dead_letters_appear_after_n_attempts(
        engine: Engine, database_url: str, receiver: Receiver) -> None:
    settings = make_settings(database_url, push_timeout_seconds=0.5, push_lease_seconds=5, push_max_attempts=3,
                             push_backoff_seconds=0.05, push_backoff_max_seconds=0.2, push_claim_size=4)
    seed(engine, 24, seed=21)
    run_batch(engine, settings, as_of=AS_OF, echo=lambda _: None)
    keys = _keys(engine)
    assert len(keys) == 24
    flaky, slow, broken = keys[:4], keys[4:7], keys[7:9]
    receiver.fail_times = {k: 2 for k in flaky}  # 500, 500, then 200: succeeds on the last allowed attempt
    receiver.slow = {k: 1 for k in slow}  # the first answer comes after the client's timeout
    receiver.slow_seconds = 1.0
    receiver.always_fail = set(broken)

    report = deliver(engine, settings, WebhookChannel(receiver.url, settings.push_timeout_seconds), wait=True)

    sent = Counter(k for k, _ in receiver.requests)
    assert set(receiver.accepted) == set(keys) - set(broken)
    assert all(sent[k] == 3 for k in flaky) and all(sent[k] == 2 for k in slow)
    assert all(sent[k] == 3 for k in broken)  # N attempts, then a dead letter
    assert report.dead == 2 and report.delivered == 22 and not receiver.replays
    with Session(engine) as session:
        dead = session.exec(select(Outbox).where(Outbox.status == "dead")).all()
        assert sorted(m.idempotency_key for m in dead) == sorted(broken)
        assert all(m.attempts == 3 and m.last_error == "HTTP 500" for m in dead)
        slow_rows = session.exec(select(Outbox).where(Outbox.idempotency_key.in_(slow))).all()  # type: ignore[attr-defined]
        assert all(m.status == "delivered" and m.attempts == 2 for m in slow_rows)
    assert outbox_counts(engine) == {"delivered": 22, "dead": 2}

    receiver.always_fail.clear()  # the platform is fixed: the dead letters go out after retry-dead
    assert retry_dead(engine) == 2
    deliver(engine, settings, WebhookChannel(receiver.url, settings.push_timeout_seconds), wait=True)
    assert set(receiver.accepted) == set(keys)
    assert sorted(receiver.item_keys()) == sorted(expected_items(engine, settings))


def test_backoff_doubles_and_is_capped(database_url: str) -> None:
    settings = make_settings(database_url, push_backoff_seconds=30, push_backoff_max_seconds=100)
    assert [backoff(n, settings) for n in (1, 2, 3, 4)] == [30, 60, 100, 100]


def test_two_deliverers_never_send_the_same_message(engine: Engine, database_url: str, receiver: Receiver) -> None:
    settings = make_settings(database_url, push_claim_size=3, push_lease_seconds=30, push_timeout_seconds=5)
    seed(engine, 40, seed=4)
    run_batch(engine, settings, as_of=AS_OF, echo=lambda _: None)
    receiver.delay = 0.01
    engines = [writer_engine(database_url) for _ in range(2)]
    reports = []

    def work(eng: Engine) -> None:
        reports.append(deliver(eng, settings, WebhookChannel(receiver.url, 5), owner=f"d{id(eng)}"))

    threads = [threading.Thread(target=work, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in engines:
        e.dispose()
    keys = [k for k, _ in receiver.requests]
    assert len(keys) == len(set(keys)) == 40
    assert sum(r.delivered for r in reports) == 40


def test_file_channel_writes_each_message_once_even_when_it_is_claimed_again(
        engine: Engine, database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url)
    seed(engine, 15, seed=8)
    run_batch(engine, settings, as_of=AS_OF, echo=lambda _: None)
    out = tmp_path / "push.jsonl"
    deliver(engine, settings, FileChannel(out))
    assert len(out.read_text(encoding="utf-8").splitlines()) == 15
    # a deliverer killed after writing the line and before recording it: the message is claimed again
    with engine.begin() as conn:
        conn.execute(sa.update(Outbox.__table__).values(status="pending", leased_until=None))  # type: ignore[attr-defined]
    with out.open("a", encoding="utf-8") as fh:
        fh.write('{"idempotency_key": "pkg:torn')  # and a torn last line
    report = deliver(engine, settings, FileChannel(out))
    assert report.delivered == 15
    lines = [ln for ln in out.read_text(encoding="utf-8").splitlines() if ln.startswith('{"idempotency_key": "pkg:')]
    import json

    keys = [json.loads(ln)["idempotency_key"] for ln in lines if ln.endswith("}")]
    assert sorted(keys) == sorted(_keys(engine))


def test_channel_options_are_checked_with_chinese_errors(database_url: str) -> None:
    settings = make_settings(database_url)
    with pytest.raises(PushConfigError, match="--url"):
        make_channel(settings, channel="webhook", url="ftp://example")
    with pytest.raises(PushConfigError, match="POLICYFIT_PUSH_WEBHOOK_URL"):
        make_channel(settings, channel="webhook")
    with pytest.raises(PushConfigError, match="--channel"):
        make_channel(settings, channel="sms")
    with pytest.raises(ValueError, match="POLICYFIT_PUSH_LEASE_SECONDS"):
        make_settings(database_url, push_lease_seconds=5, push_timeout_seconds=10)
