"""Delivery of the outbox: claim messages under a lease, send them through a channel, record the outcome.

Each message goes out with its idempotency key (``pkg:<uscc>:<run>``, also the ``Idempotency-Key``
header; every item inside carries its own ``<uscc>:<policy>:<version>`` key). A claim is a lease:
``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL, a ``BEGIN IMMEDIATE`` write transaction on SQLite
(one writer at a time), so two deliverers never hold the same message. The lease outlives the request
timeout, so a slow send cannot be taken over while it is still in flight; a deliverer killed mid-send
leaves its lease to expire and the message is sent again under the same key — receivers deduplicate by
that key (at-least-once transport, exactly-once effect). Failures back off exponentially; after
``push_max_attempts`` a message is a dead letter until ``policyfit push retry-dead``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

from service.db.tables import Enterprise, Outbox, make_engine, utcnow
from service.settings import Settings

log = logging.getLogger("policyfit.push")


class DeliveryError(RuntimeError):
    """A send that did not succeed (HTTP status, timeout, connection); retried with backoff."""


class PushConfigError(ValueError):
    """A delivery option that is missing or invalid; the message names it (Chinese)."""


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


# ---- channels ----------------------------------------------------------------------------------------------
class Channel(Protocol):
    name: str

    def send(self, key: str, payload: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


@dataclass
class WebhookChannel:
    """JSON POST to the enterprise service platform, with the ``Idempotency-Key`` header."""

    url: str
    timeout: float
    name: str = "webhook"

    def send(self, key: str, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode()
        request = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Content-Type": "application/json; charset=utf-8", "Idempotency-Key": key,
            "User-Agent": "policyfit-push/1"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (configured URL)
                response.read()
        except urllib.error.HTTPError as exc:
            raise DeliveryError(f"HTTP {exc.code}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DeliveryError(f"{type(reason).__name__}: {reason}"[:300]) from None

    def close(self) -> None:
        return None


@dataclass
class FileChannel:
    """Appends one JSON line per message (``idempotency_key`` first) and fsyncs it. Keys already in the
    file are not written again, so a deliverer killed after writing and before recording the outcome
    does not duplicate a line."""

    path: Path
    name: str = "file"
    _seen: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            with self.path.open("rb") as fh:
                for raw in fh:
                    try:
                        self._seen.add(json.loads(raw)["idempotency_key"])
                    except (ValueError, KeyError, TypeError):
                        continue  # a torn last line from a crash: its message is sent again
            _terminate_last_line(self.path)

    def send(self, key: str, payload: dict[str, Any]) -> None:
        if key in self._seen:
            return
        line = json.dumps({"idempotency_key": key, **payload}, ensure_ascii=False) + "\n"
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        self._seen.add(key)

    def close(self) -> None:
        return None


def _terminate_last_line(path: Path) -> None:
    with path.open("rb+") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell() == 0:
            return
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) != b"\n":
            fh.write(b"\n")


def make_channel(settings: Settings, *, channel: str | None = None, url: str | None = None,
                 out: Path | None = None) -> Channel:
    kind = channel or settings.push_channel
    if kind == "webhook":
        target = url or settings.push_webhook_url
        if not target:
            raise PushConfigError("webhook 渠道需要推送地址：--url 或 POLICYFIT_PUSH_WEBHOOK_URL")
        if not target.startswith(("http://", "https://")):
            raise PushConfigError(f"--url（推送地址）应以 http:// 或 https:// 开头，收到“{target}”")
        return WebhookChannel(target, settings.push_timeout_seconds)
    if kind == "file":
        return FileChannel(out or settings.push_export_path)
    raise PushConfigError(f"--channel 应为 webhook 或 file，收到“{kind}”")


# ---- claims, outcomes ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Claimed:
    id: int
    key: str
    payload: dict[str, Any]
    attempts: int


def _due(now: dt.datetime) -> Any:
    o = Outbox.__table__.c  # type: ignore[attr-defined]
    return sa.and_(o.status == "pending", o.next_attempt_at <= now,
                   sa.or_(o.leased_until.is_(None), o.leased_until < now))


def claim(engine: Engine, *, owner: str, limit: int, lease_seconds: float,
          now: dt.datetime | None = None) -> list[Claimed]:
    """Lease up to ``limit`` due messages to ``owner`` (committed before anything is sent)."""
    now = now or utcnow()
    o = Outbox.__table__  # type: ignore[attr-defined]
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
    o = Outbox.__table__  # type: ignore[attr-defined]
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
    o = Outbox.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        conn.execute(sa.update(o).where(o.c.id == item.id, o.c.lease_owner == owner, o.c.status == "pending").values(
            status="dead" if dead else "pending", attempts=attempts, leased_until=None, last_error=error[:500],
            next_attempt_at=now if dead else now + dt.timedelta(seconds=backoff(attempts, settings))))
    return "dead" if dead else "pending"


@dataclass
class DeliveryReport:
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    lost_lease: int = 0


def deliver(engine: Engine, settings: Settings, channel: Channel, *, wait: bool = False,
            owner: str | None = None, say: Callable[[str], None] | None = None,
            sleep: Callable[[float], None] = time.sleep) -> DeliveryReport:
    """Send due messages until none is due; with ``wait``, until none is pending (sleeping through
    backoffs and other deliverers' leases)."""
    owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    report = DeliveryReport()
    while True:
        batch = claim(engine, owner=owner, limit=settings.push_claim_size, lease_seconds=settings.push_lease_seconds)
        if not batch:
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
    o = Outbox.__table__.c  # type: ignore[attr-defined]
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
    o = Outbox.__table__  # type: ignore[attr-defined]
    stmt = sa.update(o).where(o.c.status == "dead")
    if uscc:
        stmt = stmt.where(o.c.uscc == uscc)
    with engine.begin() as conn:
        return int(conn.execute(stmt.values(status="pending", attempts=0, next_attempt_at=utcnow(),
                                            leased_until=None, lease_owner=None)).rowcount)


def outbox_counts(engine: Engine) -> dict[str, int]:
    o = Outbox.__table__.c  # type: ignore[attr-defined]
    with engine.connect() as conn:
        return {s: int(n) for s, n in conn.execute(sa.select(o.status, sa.func.count()).group_by(o.status))}


def dead_letters(engine: Engine, limit: int = 20) -> list[tuple[str, int, str | None]]:
    o = Outbox.__table__.c  # type: ignore[attr-defined]
    with engine.connect() as conn:
        return [(r.idempotency_key, r.attempts, r.last_error) for r in conn.execute(
            sa.select(o.idempotency_key, o.attempts, o.last_error).where(o.status == "dead")
            .order_by(o.id).limit(limit))]


def set_opt_out(engine: Engine, *, uscc: str, opted_out: bool) -> bool:
    """Record an enterprise's choice to receive pushes or not; False when the enterprise is unknown."""
    e = Enterprise.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        return bool(conn.execute(sa.update(e).where(e.c.uscc == uscc).values(opted_out=opted_out)).rowcount)


# ---- what a pushed message says (issue 10, item 8) ----------------------------------------------------------
PACKAGE_PATH = "/v1/enterprises/{uscc}/package"


def package_link(settings: Settings, uscc: str) -> dict[str, str]:
    """Where the firm sees its whole package: ``POLICYFIT_PUBLIC_BASE_URL`` + the package path (the
    enterprise reads it with its own token), and one Chinese line saying so."""
    path = PACKAGE_PATH.format(uscc=uscc)
    url = settings.public_base_url.rstrip("/") + path if settings.public_base_url else path
    return {"package_url": url, "package_note": f"以上为新增政策；贵企业的全部政策套餐（含需补充信息和差一个条件的政策）请查看：{url}"}


def firm_records(conn: Any, usccs: list[str], as_of: dt.date) -> dict[str, dict[str, Any]]:
    """The rule record (stated and derived fields) of each firm, read from its stored profile: what a
    message quotes as the firm's own values. Column-wise encoding; a profile that cannot be encoded is
    left out (its items then say why without values)."""
    from matching.batch import batch_from_frame, encode_profiles

    e = Enterprise.__table__.c  # type: ignore[attr-defined]
    rows: list[tuple[str, str]] = []
    for i in range(0, len(usccs), 900):
        rows += [(str(u), p) for u, p in conn.execute(sa.select(e.uscc, sa.cast(e.profile, sa.Text))
                                                        .where(e.uscc.in_(usccs[i:i + 900]))).all()]

    def encode(part: list[tuple[str, str]]) -> dict[str, dict[str, Any]]:
        batch = batch_from_frame(encode_profiles([p for _, p in part])).with_derived(as_of)
        return {u: batch.record(j) for j, (u, _) in enumerate(part)}

    try:
        return encode(rows) if rows else {}
    except Exception:  # noqa: BLE001 (one bad profile must not silence the others' values)
        out: dict[str, dict[str, Any]] = {}
        for row in rows:
            try:
                out.update(encode([row]))
            except Exception:  # noqa: BLE001
                log.warning("profile of %s could not be encoded for its message", row[0])
        return out


def item_text(policy: Any) -> dict[str, Any]:
    """What every firm's item of this policy says: title, benefit, strength, how to apply, who leads, source."""
    from policies.schema import STRENGTHS

    return {"title": policy.title, "benefit": policy.benefit.description, "strength": policy.strength,
            "strength_label": STRENGTHS.get(policy.strength or "", None), "how_to_apply": policy.how_to_apply,
            "lead_departments": list(policy.lead_departments), "source_task": policy.source.task_no,
            "source_measure": policy.source.measure_no}


def item_for_firm(policy: Any, record: dict[str, Any] | None) -> dict[str, Any]:
    """What this firm's item adds: one line on why it qualifies (its own values), the estimated yearly
    value where the catalog gives a formula and the firm's inputs are known, and one line to act on."""
    from matching.package import estimate_value

    facts = _facts_cached(policy, record) if record is not None else []
    if facts:
        why = f"贵企业{'，'.join(facts[:3])}，符合条件"
    elif record is not None:
        why = "本政策面向所有市场主体，贵企业符合条件"
    else:
        why = "按贵企业登记的画像判断符合条件"
    value = estimate_value(policy, record) if record is not None else None
    assumption = policy.benefit.estimate.assumption if value is not None and policy.benefit.estimate else None
    lead = "、".join(policy.lead_departments)
    worth = f"，估算约{value:g}万元/年" if value else ""
    line = f"{policy.title}：{why}{worth}。办理：{policy.how_to_apply.rstrip('。；')}（牵头部门：{lead}）。"
    return {"why": why, "estimated_value_wan": value, "value_assumption": assumption, "line": line}


_FACTS: dict[tuple[Any, ...], list[str]] = {}


def _facts_cached(policy: Any, record: dict[str, Any]) -> list[str]:
    """:func:`_facts`, remembered per policy version and the values of the fields its rule reads (firms
    share them: a night's messages reuse a few thousand distinct lines)."""
    from policies.rules import fields_of

    key = (policy.id, policy.version, *(_frozen(record.get(f)) for f in fields_of(policy.rule)))
    hit = _FACTS.get(key)
    if hit is None:
        if len(_FACTS) > 200_000:
            _FACTS.clear()
        hit = _FACTS[key] = _facts(policy.rule, record)
    return hit


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _facts(rule: Any, record: dict[str, Any], negated: bool = False) -> list[str]:
    """The firm's own values that make ``rule`` hold, e.g. ``企业规模为小型``."""
    from matching.gaps import effective_op
    from matching.reference import evaluate
    from matching.rules import value_text
    from policies.rules import Leaf, Not
    from profiles.fields import FIELDS

    if isinstance(rule, Leaf):
        truth = evaluate(rule, record)
        op = effective_op(rule, negated)
        if truth is None or truth == negated or op is None:
            return []
        field = FIELDS[rule.field]
        value = record.get(rule.field)
        if field.kind.value == "bool":
            return [field.says(bool(value))]
        if isinstance(value, list):
            shown = [v for v in value if v in rule.value] if op in ("has_any", "has_all") else []
            if not shown:
                return []  # "has none of …": nothing of the firm's to quote
            return [f"{field.label}为{'、'.join(value_text(rule.field, v) for v in shown)}"]
        return [f"{field.label}为{value_text(rule.field, value)}"]
    if isinstance(rule, Not):
        return _facts(rule.child, record, not negated)
    out: list[str] = []
    for child in rule.children:
        truth = evaluate(child, record)
        if truth is not None and truth != negated:
            out += [f for f in _facts(child, record, negated) if f not in out]
    return out
