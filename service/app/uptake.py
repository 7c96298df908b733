"""Uptake of a policy: its funnel (``GET /v1/policies/{id}/uptake``, :mod:`service.app.funnel` for the
definitions), the 应享未享 firms with what a department needs to reach them (``policyfit outcomes report``), and
the 免申即享 hand-off (``policyfit outcomes handoff``): the eligible firms of a ``delivery: automatic`` policy with
the clauses that made them eligible, for the department to grant without an application.

The funnel is counted by the database (:func:`service.store.outcomes.funnel_groups`); the firms' region and size
class come from ``enterprise_class``, brought up to date first from the enterprises updated since it last looked
(:func:`refresh_classes`: a profile is read again only when its content changed).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy.engine import Connection
from sqlmodel import Session

from matching.freshness import seen_rows
from matching.package import estimate_value, leaf_facts
from matching.rules import PASSED, ClauseTrace, LeafCache, trace_rule
from policies.schema import Policy
from profiles.columns import ProfileBatch, decode, encode_profiles
from service.app.errors import AppError, ErrorCode, not_found
from service.app.funnel import (
    DECIDED,
    OUTCOMES,
    Event,
    funnel_from_stages,
    latest_state,
    region_label,
    size_label,
)
from service.db.tables import utcnow
from service.store import outcomes as store

log = logging.getLogger("policyfit.outcomes")
#: Enterprises updated this long before the last refresh started are looked at again: a transaction that
#: stamped its rows before that but committed after it is not missed.
CLASS_MARGIN = dt.timedelta(minutes=10)


# ---- region and size classes ----------------------------------------------------------------------------
def refresh_classes(session: Session, *, chunk: int = 20_000) -> int:
    """Bring ``enterprise_class`` up to date (committed per chunk); returns how many firms were (re)classified. The
    size class is the profile's stated size, else derived from its industry, headcount, revenue and assets (as the
    matcher derives it), computed column-wise per chunk. The first time every firm is read; afterwards only the
    firms updated since the last refresh (less :data:`CLASS_MARGIN`) are looked at, and only those whose profile
    changed are read."""
    started = utcnow()
    checked = store.classes_checked_at(session.connection())
    done = 0

    def classify(part: list[tuple[Any, ...]]) -> None:
        nonlocal done
        sizes = _sizes([r[4] for r in part])
        store.put_classes(session.connection(), [
            {"uscc": u, "region": region, "size": size, "content_hash": digest, "source_updated_at": at}
            for (u, region, digest, at, _), size in zip(part, sizes, strict=True)])
        session.commit()  # one transaction per chunk: a long first fill holds no lock for its whole time
        done += len(part)

    if checked is None:
        after = ""
        while part := store.unclassified_page(session.connection(), after=after, limit=chunk):
            classify(part)
            after = part[-1][0]
    else:
        stale = sorted(store.unclassified_since(session.connection(), since=checked - CLASS_MARGIN))
        for start in range(0, len(stale), chunk):
            classify(store.firms_to_classify(session.connection(), stale[start:start + chunk]))
    store.mark_classes_checked(session.connection(), started)
    session.commit()
    return done


def _sizes(documents: list[str]) -> list[str | None]:
    """Each profile's size class code (None unknown); a profile that cannot be encoded has no size."""
    try:
        batch = ProfileBatch.from_frame(encode_profiles(documents)).with_derived(dt.date.today())
        return [None if v is None else str(v) for v in decode("size", batch.columns["size"])]
    except Exception:  # noqa: BLE001 (one unreadable profile must not leave the others unclassified)
        if len(documents) == 1:
            return [None]
        return [s for doc in documents for s in _sizes([doc])]


# ---- the funnel ---------------------------------------------------------------------------------------------
def funnel_policy(session: Session, policy_id: str) -> Policy:
    """The policy a funnel is asked of: one published or retired here (404 otherwise), and a policy a firm
    can take up (a commitment or plan work has no funnel: not_a_policy)."""
    data = store.policies_in_force_or_retired(session).get(policy_id)
    if data is None:
        raise not_found(f"未找到政策“{policy_id}”")
    policy = Policy.model_validate(data)
    if not policy.offered:
        raise AppError(ErrorCode.NOT_A_POLICY, f"“{policy.title}”是{policy.kind_label}，不是企业申请享受的政策，没有兑现漏斗")
    return policy


def uptake(session: Session, policy_id: str, *, as_of: dt.date, period_days: int) -> dict[str, Any]:
    """``{policy_id, eligible, pushed, viewed, applied, granted, refused, not_yet_granted, by_region, by_size}``
    (and the day and period it was counted for); see :mod:`service.app.funnel`."""
    funnel_policy(session, policy_id)
    refresh_classes(session)
    rows = store.stage_counts(session.connection(), policy_id=policy_id, as_of=as_of,
                              since=as_of - dt.timedelta(days=period_days))
    counts = funnel_from_stages(rows)
    session.commit()
    return {"policy_id": policy_id, **counts, "as_of": as_of, "period_days": period_days}


# ---- the 应享未享 firms, with why they are eligible --------------------------------------------------------
@dataclass
class Listing:
    """What a report or a hand-off listed: firms, and firms left out because today's profile no longer passes
    the rule (changed since the nightly snapshot: the next night decides)."""

    policy: Policy
    firms: int = 0
    changed: int = 0
    by_state: dict[str, int] = field(default_factory=dict)


def _passed_leaves(trace: ClauseTrace) -> list[ClauseTrace]:
    if trace.field is not None:
        return [trace] if trace.outcome == PASSED else []
    return [leaf for child in trace.children if child.outcome == PASSED for leaf in _passed_leaves(child)]


def _clause(trace: ClauseTrace) -> dict[str, Any]:
    from profiles.fields import FIELDS

    assert trace.field is not None
    return {"field": trace.field, "label": FIELDS[trace.field].label, "clause": trace.text,
            "observed": trace.observed, "observed_text": trace.observed_text, "threshold": trace.threshold}


def _explained(policy: Policy, rows: list[dict[str, Any]], as_of: dt.date) -> list[dict[str, Any] | None]:
    """Per row: why the policy's rule passes for the firm's stored profile as matching sees it today (``why``: its
    own values, ``clauses``: each passed condition with the observed value and the threshold, and the estimated
    yearly value), or None when it no longer passes."""
    try:
        seen = seen_rows([r["profile"] for r in rows], [r["provenance"] for r in rows], as_of)
        batch = ProfileBatch.from_frame(encode_profiles(seen.documents)).with_derived(as_of)
    except Exception:  # noqa: BLE001 (isolate the row that cannot be read)
        if len(rows) == 1:
            log.warning("profile of %s could not be read for its clauses", rows[0]["uscc"])
            return [None]
        return [x for r in rows for x in _explained(policy, [r], as_of)]
    cache, rule = LeafCache(batch), policy.rule_at(as_of)
    out: list[dict[str, Any] | None] = []
    for j in range(len(rows)):
        record = batch.record(j)
        trace = trace_rule(rule, cache, j, record)
        if trace.outcome != PASSED:
            out.append(None)
            continue
        facts = list(dict.fromkeys(leaf_facts(trace)))
        out.append({"why": "，".join(facts) if facts else "面向所有市场主体，无特定条件",
                    "clauses": [_clause(t) for t in _passed_leaves(trace)],
                    "estimated_value_wan": estimate_value(policy, record, as_of)})
    return out


def _day(value: Any) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def _states(conn: Connection, policy_id: str, usccs: list[str], as_of: dt.date) -> dict[str, str | None]:
    events: dict[str, list[Event]] = {}
    for uscc, outcome, day, at, seq in store.event_rows(conn, policy_id=policy_id, usccs=usccs, as_of=as_of):
        events.setdefault(uscc, []).append(Event(uscc, outcome, _day(day) or as_of, at, seq))
    return {u: latest_state(events.get(u, [])) for u in usccs}


def _contact(row: dict[str, Any]) -> str:
    """How the department reaches the firm through this service."""
    if row["opted_out"]:
        return "已退订推送，请经“一企来”热线或部门渠道联系"
    if row["delivered_at"] is not None:
        return f"已推送送达（{_day(row['delivered_at'])}）"
    if row["first_pushed"] is not None:
        return "推送待送达"
    return "尚未推送"


def not_yet_granted_firms(session: Session, policy: Policy, *, as_of: dt.date, period_days: int,
                          listing: Listing, chunk: int = 2000) -> Iterator[dict[str, Any]]:
    """The 应享未享 firms of ``policy`` (eligible; neither granted nor refused within the period), each with what a
    department needs to reach it: name, region, size, contact channel, its current state, why it is eligible
    (its own values and the passed clauses) and since when (the first recommendation of this policy, else the
    snapshot's day). Firms whose profile no longer passes today are counted in ``listing.changed`` and left out."""
    refresh_classes(session)
    conn = session.connection()
    since = as_of - dt.timedelta(days=period_days)
    lead = "、".join(policy.lead_departments)
    for rows in store.not_yet_granted(conn, policy_id=policy.id, as_of=as_of, since=since, chunk=chunk):
        states = _states(conn, policy.id, [r["uscc"] for r in rows], as_of)
        for row, why in zip(rows, _explained(policy, rows, as_of), strict=True):
            if why is None:
                listing.changed += 1
                continue
            state = states[row["uscc"]]
            state_text = "已申请，待决定" if state == "applied" else (
                f"上次{OUTCOMES[state]}已超过{period_days}天" if state in DECIDED else "未申请")
            listing.firms += 1
            listing.by_state[state_text] = listing.by_state.get(state_text, 0) + 1
            yield {"policy_id": policy.id, "title": policy.title, "uscc": row["uscc"], "name": row["name"],
                   "region": region_label(row["region"]), "size": size_label(row["size"]),
                   "contact": _contact(row), "state": state_text, **why,
                   "eligible_since": _day(row["first_pushed"]) or _day(row["computed_at"]), "lead_departments": lead}


def offered_policies(session: Session) -> list[str]:
    """The policies the latest snapshot offers to at least one firm."""
    return store.policies_with_eligible(session.connection())


def clauses_text(clauses: list[dict[str, Any]]) -> str:
    """``纳税信用等级为A级或B级（当前：A级）；…``: the passed conditions in one cell."""
    return "；".join(f"{c['clause']}（当前：{c['observed_text']}）" for c in clauses)


def json_line(item: dict[str, Any]) -> str:
    return json.dumps(item, ensure_ascii=False, default=lambda v: v.isoformat() if hasattr(v, "isoformat") else
                      (v.item() if isinstance(v, np.generic) else str(v)))
