"""The push uses outcomes (issue 15): a decision is never pushed again, and a firm told of a policy that has
done nothing about it gets one reminder (应享未享).

- Decided: a policy granted to or refused for a firm (an ``outcome`` row ``granted`` or ``refused``, any day)
  is never pushed to that firm again. The nightly writer leaves it out of the new items; a held item of it is
  not released; and a message queued before the decision arrived loses that entry when it is delivered
  (:func:`prune_claimed`). What is taken out is kept, not deleted: its items are moved to an outbox row with
  status ``dropped`` (never sent, not counted by the weekly cap, not “pushed” in the funnel), so the item's key
  still exists and the offer is never news again; a message left with nothing to say is itself ``dropped``.
- Uptake reminders: a firm that the latest snapshot still finds eligible, to which the policy was pushed (its
  message delivered) at least ``POLICYFIT_UPTAKE_REMINDER_DAYS`` ago — counted from the night the message was
  queued — and that has neither applied (an ``applied`` outcome or its own feedback ``applied``) nor been
  decided, nor said the policy is not for it (feedback ``dismissed`` / ``not_relevant``), gets one reminder
  item. Its columns: ``policy_id`` ``uptake:<policy>``, ``policy_version`` the day the policy was first pushed
  (YYYYMMDD) — key ``<uscc>:uptake:<policy>:<YYYYMMDD>``; once per firm and policy whatever that day (the
  query skips a firm that has any ``uptake:<policy>`` item). It goes through the same opt-out (an opted-out
  firm is never found) and weekly cap (held, and released by a later run) as every item. A 免申即享 policy
  (grant automatic) has nothing to apply for: no reminder.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection, Sequence
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from service.db.bulk import IN_LIST, table_of
from service.db.tables import Enterprise, Feedback, MatchSnapshot, Outbox, Outcome, PushItem

UPTAKE_PREFIX = "uptake:"
UPTAKE_KIND = "uptake_reminder"
DECIDED = ("granted", "refused")
#: Feedback by which a firm says it acted on, or does not want, a policy: no reminder.
SETTLED_FEEDBACK = ("applied", "dismissed", "not_relevant")
#: The outbox status of what was taken out because the policy was decided for the firm: never sent.
DROPPED = "dropped"
DROP_REASON = "该政策已有办理结果（已兑现或未获批准），不再推送"
PAYLOAD_LISTS = ("items", "reminders", "uptake_reminders")


def policy_of(item_policy_id: str) -> str:
    """The policy an item speaks of: its own id, or the policy of an uptake reminder."""
    return item_policy_id.removeprefix(UPTAKE_PREFIX)


def uptake_of(policy_id: str, version: int) -> tuple[str, dt.date] | None:
    """(policy, day first pushed) of an uptake reminder item; None for any other item."""
    if not policy_id.startswith(UPTAKE_PREFIX):
        return None
    day = f"{int(version):08d}"
    return policy_of(policy_id), dt.date(int(day[:4]), int(day[4:6]), int(day[6:8]))


# ---- decided ------------------------------------------------------------------------------------------------
def decided_pairs(conn: Connection, usccs: Collection[str]) -> set[tuple[str, str]]:
    """(firm, policy) pairs among these firms with a decision (granted or refused, any day)."""
    o = table_of(Outcome).c
    firms = sorted(set(usccs))
    found: set[tuple[str, str]] = set()
    for i in range(0, len(firms), IN_LIST):
        found.update((str(u), str(p)) for u, p in conn.execute(
            sa.select(o.uscc, o.policy_id).where(o.uscc.in_(firms[i:i + IN_LIST]), o.outcome.in_(DECIDED))
            .distinct()))
    return found


def decided_mask(items: pd.DataFrame, decided: set[tuple[str, str]]) -> pd.Series:
    """Which items (columns uscc, policy_id) speak of a decided policy (certificate reminders never do)."""
    if items.empty or not decided:
        return pd.Series(False, index=items.index, dtype=bool)
    pairs = zip(items["uscc"].astype(str).tolist(), items["policy_id"].astype(str).tolist(), strict=True)
    return pd.Series([(u, policy_of(p)) in decided for u, p in pairs], index=items.index, dtype=bool)


def drop_items(conn: Connection, uscc: str, keys: Sequence[str], entries: list[dict[str, Any]], *,
               now: dt.datetime, run_id: int | None) -> int:
    """Move the items ``keys`` of one firm to a new ``dropped`` outbox row that says what was taken out and
    why; returns the row's id."""
    o, t = table_of(Outbox), table_of(PushItem)
    payload = {"type": "dropped", "uscc": uscc, "reason": DROP_REASON, "items": entries}
    new_id = conn.execute(sa.insert(o).values(
        idempotency_key=f"drop:{uscc}:{uuid.uuid4().hex[:16]}", uscc=uscc, payload=payload, status=DROPPED,
        attempts=0, next_attempt_at=now, run_id=run_id, created_at=now, last_error=DROP_REASON)
        .returning(o.c.id)).scalar_one()
    for i in range(0, len(keys), IN_LIST):
        conn.execute(sa.update(t).where(t.c.idempotency_key.in_(list(keys[i:i + IN_LIST]))).values(outbox_id=new_id))
    return int(new_id)


def prune_payload(payload: dict[str, Any], decided: set[tuple[str, str]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The message without its entries of decided policies, and the entries taken out."""
    uscc = str(payload.get("uscc", ""))
    kept: dict[str, Any] = dict(payload)
    removed: list[dict[str, Any]] = []
    for name in ("items", "uptake_reminders"):
        entries = payload.get(name) or []
        keep = [e for e in entries if (uscc, str(e.get("policy_id", ""))) not in decided]
        removed += [e for e in entries if (uscc, str(e.get("policy_id", ""))) in decided]
        if name in payload:
            kept[name] = keep
    return kept, removed


def is_empty(payload: dict[str, Any]) -> bool:
    return not any(payload.get(name) for name in PAYLOAD_LISTS)


# ---- uptake reminders -----------------------------------------------------------------------------------------
def due_uptake(conn: Connection, *, policies: Collection[str], cutoff: dt.datetime) -> pd.DataFrame:
    """The uptake reminders due (columns uscc, policy_id ``uptake:<policy>``, policy_version YYYYMMDD of the
    first push, score), in USCC order: see the module's docstring for who qualifies."""
    columns = {"uscc": object, "policy_id": object, "policy_version": "int64", "score": "float64"}
    if not policies:
        return pd.DataFrame({k: pd.Series(dtype=v) for k, v in columns.items()})
    p, m, s = table_of(PushItem).c, table_of(Outbox).c, table_of(MatchSnapshot).c
    e, o, f = table_of(Enterprise).c, table_of(Outcome).c, table_of(Feedback).c
    q = table_of(PushItem).alias("reminded").c
    first = sa.func.min(m.created_at)
    pushed = (sa.select(p.uscc, p.policy_id, first.label("first"))
              .join_from(table_of(PushItem), table_of(Outbox), m.id == p.outbox_id)
              .where(m.status == "delivered", p.policy_id.in_(sorted(policies)))
              .group_by(p.uscc, p.policy_id).having(first <= cutoff).subquery("pushed"))
    stmt = (sa.select(pushed.c.uscc, pushed.c.policy_id, pushed.c.first)
            .join_from(pushed, table_of(Enterprise), e.uscc == pushed.c.uscc)
            .where(sa.or_(e.opted_out.is_(None), e.opted_out == sa.false()),
                   sa.exists().where(s.uscc == pushed.c.uscc, s.policy_id == pushed.c.policy_id, s.status == 1),
                   ~sa.exists().where(o.uscc == pushed.c.uscc, o.policy_id == pushed.c.policy_id),
                   ~sa.exists().where(f.uscc == pushed.c.uscc, f.policy_id == pushed.c.policy_id,
                                      f.kind.in_(SETTLED_FEEDBACK)),
                   ~sa.exists().where(q.uscc == pushed.c.uscc,
                                      q.policy_id == sa.literal(UPTAKE_PREFIX, sa.String) + pushed.c.policy_id))
            .order_by(pushed.c.uscc, pushed.c.policy_id))
    rows = conn.execute(stmt).all()
    return pd.DataFrame({
        "uscc": pd.Series([str(r[0]) for r in rows], dtype=object),
        "policy_id": pd.Series([UPTAKE_PREFIX + str(r[1]) for r in rows], dtype=object),
        "policy_version": pd.Series([int(_local_day(r[2]).strftime("%Y%m%d")) for r in rows], dtype="int64"),
        "score": pd.Series([0.5] * len(rows), dtype="float64")})


def _local_day(at: Any) -> dt.date:
    """The day of a stored UTC timestamp in the service's time zone (the zone of every date it shows)."""
    if isinstance(at, str):
        at = dt.datetime.fromisoformat(at)
    aware = at if at.tzinfo else at.replace(tzinfo=dt.UTC)
    return aware.astimezone().date()
