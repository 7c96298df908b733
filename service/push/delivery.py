"""Delivery of the outbox: claim messages under a lease, send them through a channel, record the outcome.

Each message goes out with its idempotency key (``pkg:<uscc>:<run>``, also the ``Idempotency-Key``
header; every item inside carries its own ``<uscc>:<policy>:<version>`` key: :mod:`service.push.outbox`). A claim is a lease:
``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL, a ``BEGIN IMMEDIATE`` write transaction on SQLite
(one writer at a time), so two deliverers never hold the same message. The lease outlives the request
timeout, so a slow send cannot be taken over while it is still in flight; a deliverer killed mid-send
leaves its lease to expire and the message is sent again under the same key — receivers deduplicate by
that key (at-least-once transport, exactly-once effect). Failures back off exponentially; after
``push_max_attempts`` a message is a dead letter until ``policyfit push retry-dead``.

Before a claimed message is sent, its entries of a policy decided for the firm since it was queued (granted
or refused) are taken out (:func:`prune_claimed`, :mod:`service.push.outcomes`); a message left with nothing
to say is not sent (status ``dropped``).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

from service.db.bulk import table_of
from service.db.tables import Outbox, make_engine, utcnow
from service.push.channels import Channel, DeliveryError
from service.push.outcomes import DROP_REASON, DROPPED, decided_pairs, drop_items, is_empty, prune_payload
from service.settings import Settings

log = logging.getLogger("policyfit.push")


def writer_engine(url: str) -> Engine:
    """An engine whose transactions are safe to interleave with other writers.

    SQLite: every transaction starts with ``BEGIN IMMEDIATE`` — it takes the database's single write
    lock up front (waiting on the busy timeout), so a read-then-write claim cannot interleave with
    another writer. PostgreSQL: row locks (``FOR UPDATE SKIP LOCKED``) do that job.
    """
    engine = make_engine(url)
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _manual_transactions(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # pysqlite: no implicit BEGIN; we issue our own

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
    return engine


# ---- claims, outcomes ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Claimed:
    id: int
    key: str
    payload: dict[str, Any]
    attempts: int


def _due(now: dt.datetime) -> Any:
    o = table_of(Outbox).c
    return sa.and_(o.status == "pending", o.next_attempt_at <= now,
                   sa.or_(o.leased_until.is_(None), o.leased_until < now))


def claim(engine: Engine, *, owner: str, limit: int, lease_seconds: float,
          now: dt.datetime | None = None) -> list[Claimed]:
    """Lease up to ``limit`` due messages to ``owner`` (committed before anything is sent)."""
    now = now or utcnow()
    o = table_of(Outbox)
    pick = sa.select(o.c.id).where(_due(now)).order_by(o.c.next_attempt_at, o.c.id).limit(limit)
    if engine.dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    with engine.begin() as conn:  # SQLite: BEGIN IMMEDIATE (writer_engine)
        ids = list(conn.execute(pick).scalars())
        if not ids:
            return []
        conn.execute(sa.update(o).where(o.c.id.in_(ids)).values(
            leased_until=now + dt.timedelta(seconds=lease_seconds), lease_owner=owner))
        rows = conn.execute(sa.select(o.c.id, o.c.idempotency_key, o.c.payload, o.c.attempts)
                            .where(o.c.id.in_(ids)).order_by(o.c.id)).all()
    return [Claimed(r.id, r.idempotency_key, r.payload, r.attempts) for r in rows]


def mark_delivered(engine: Engine, item: Claimed, *, owner: str, now: dt.datetime | None = None) -> bool:
    """Record a successful send; False when the lease was lost meanwhile (someone else owns it now)."""
    o = table_of(Outbox)
    with engine.begin() as conn:
        done = conn.execute(sa.update(o).where(o.c.id == item.id, o.c.lease_owner == owner, o.c.status == "pending")
                            .values(status="delivered", delivered_at=now or utcnow(), attempts=o.c.attempts + 1,
                                    leased_until=None, last_error=None))
    return bool(done.rowcount)


def backoff(attempts: int, settings: Settings) -> float:
    """Delay before attempt ``attempts + 1``: base · 2^(attempts − 1), capped."""
    return float(min(settings.push_backoff_max_seconds, settings.push_backoff_seconds * 2 ** max(0, attempts - 1)))


def mark_failed(engine: Engine, item: Claimed, error: str, *, owner: str, settings: Settings,
                now: dt.datetime | None = None) -> str:
    """Count the failed attempt; schedule the retry or make it a dead letter. Returns the new status."""
    now = now or utcnow()
    attempts = item.attempts + 1
    dead = attempts >= settings.push_max_attempts
    o = table_of(Outbox)
    with engine.begin() as conn:
        conn.execute(sa.update(o).where(o.c.id == item.id, o.c.lease_owner == owner, o.c.status == "pending").values(
            status="dead" if dead else "pending", attempts=attempts, leased_until=None, last_error=error[:500],
            next_attempt_at=now if dead else now + dt.timedelta(seconds=backoff(attempts, settings))))
    return "dead" if dead else "pending"


def prune_claimed(engine: Engine, batch: list[Claimed], *, owner: str, settings: Settings,
                  now: dt.datetime | None = None) -> tuple[list[Claimed], int]:
    """The claimed messages without their entries of policies decided for the firm since they were queued (the
    payload rewritten, the entries' items moved to a ``dropped`` row); a message left empty becomes ``dropped``
    and is not returned. Returns (what to send, messages dropped). One transaction, under our leases."""
    if not batch:
        return batch, 0
    from service.push.message import package_link  # (the message's wording: only when something changed)

    now = now or utcnow()
    o = table_of(Outbox)
    send: list[Claimed] = []
    dropped = 0
    with engine.begin() as conn:
        decided = decided_pairs(conn, [str(c.payload.get("uscc", "")) for c in batch])
        for item in batch:
            payload, removed = prune_payload(item.payload, decided)
            if not removed:
                send.append(item)
                continue
            mine = sa.and_(o.c.id == item.id, o.c.lease_owner == owner, o.c.status == "pending")
            uscc = str(payload.get("uscc", ""))
            if is_empty(payload):
                conn.execute(sa.update(o).where(mine).values(status=DROPPED, leased_until=None, last_error=DROP_REASON))
                dropped += 1
                continue
            if not payload.get("items") and item.payload.get("items"):
                payload.update(package_link(settings, uscc, news=False))
            conn.execute(sa.update(o).where(mine).values(payload=payload))
            drop_items(conn, uscc, [str(e["idempotency_key"]) for e in removed], removed, now=now,
                       run_id=payload.get("run_id"))
            send.append(Claimed(item.id, item.key, payload, item.attempts))
    return send, dropped


@dataclass
class DeliveryReport:
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    lost_lease: int = 0
    dropped: int = 0  # messages not sent: every entry's policy was decided for the firm meanwhile


def deliver(engine: Engine, settings: Settings, channel: Channel, *, wait: bool = False,
            owner: str | None = None, say: Callable[[str], None] | None = None,
            sleep: Callable[[float], None] = time.sleep) -> DeliveryReport:
    """Send due messages until none is due; with ``wait``, until none is pending (sleeping through
    backoffs and other deliverers' leases)."""
    owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    report = DeliveryReport()
    while True:
        claimed = claim(engine, owner=owner, limit=settings.push_claim_size, lease_seconds=settings.push_lease_seconds)
        batch, dropped = prune_claimed(engine, claimed, owner=owner, settings=settings)
        report.dropped += dropped
        if not claimed:
            if not wait:
                return report
            delay = next_due_in(engine)
            if delay is None:
                return report
            sleep(min(max(delay, 0.05), 5.0))
            continue
        for item in batch:
            try:
                channel.send(item.key, item.payload)
            except DeliveryError as exc:
                report.failed += 1
                if mark_failed(engine, item, str(exc), owner=owner, settings=settings) == "dead":
                    report.dead += 1
                    if say:
                        say(f"死信：{item.key}（{exc}，已尝试 {item.attempts + 1} 次）")
                continue
            if mark_delivered(engine, item, owner=owner):
                report.delivered += 1
            else:
                report.lost_lease += 1
                log.warning("lease of %s lost before its delivery was recorded", item.key)


def next_due_in(engine: Engine, now: dt.datetime | None = None) -> float | None:
    """Seconds until the next pending message becomes claimable; None when nothing is pending."""
    now = now or utcnow()
    o = table_of(Outbox).c
    with engine.connect() as conn:
        row = conn.execute(sa.select(sa.func.min(o.next_attempt_at), sa.func.min(o.leased_until),
                                     sa.func.count()).where(o.status == "pending")).one()
        if not row[2]:
            return None
        free_at = conn.execute(sa.select(sa.func.min(sa.case(
            (sa.and_(o.leased_until.is_not(None), o.leased_until > o.next_attempt_at), o.leased_until),
            else_=o.next_attempt_at))).where(o.status == "pending")).scalar_one()
    when = _aware(free_at)
    return (when - now).total_seconds()


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def retry_dead(engine: Engine, *, uscc: str | None = None) -> int:
    """Dead letters back to pending, attempts reset (after the receiver is fixed)."""
    o = table_of(Outbox)
    stmt = sa.update(o).where(o.c.status == "dead")
    if uscc:
        stmt = stmt.where(o.c.uscc == uscc)
    with engine.begin() as conn:
        return int(conn.execute(stmt.values(status="pending", attempts=0, next_attempt_at=utcnow(),
                                            leased_until=None, lease_owner=None)).rowcount)


def outbox_counts(engine: Engine) -> dict[str, int]:
    o = table_of(Outbox).c
    with engine.connect() as conn:
        return {s: int(n) for s, n in conn.execute(sa.select(o.status, sa.func.count()).group_by(o.status))}


def dead_letters(engine: Engine, limit: int = 20) -> list[tuple[str, int, str | None]]:
    o = table_of(Outbox).c
    with engine.connect() as conn:
        return [(r.idempotency_key, r.attempts, r.last_error) for r in conn.execute(
            sa.select(o.idempotency_key, o.attempts, o.last_error).where(o.status == "dead")
            .order_by(o.id).limit(limit))]
