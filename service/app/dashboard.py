"""The console's dashboard for the business-environment office (issue 15): per policy its funnel (the numbers of
``GET /v1/policies/{id}/uptake``, computed by the same use case, :func:`service.app.uptake.uptake`), uptake by
region and size, and new grants by week."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlmodel import Session

from service.app import uptake
from service.app.funnel import STAGES
from service.store.grants import grants_per_day

#: The funnel's stages as the dashboard names them, in order.
STAGE_LABELS = {"eligible": "符合条件", "pushed": "已推送", "viewed": "已查看", "applied": "已申请（待决定）",
                "granted": "已兑现", "refused": "未获批准", "not_yet_granted": "应享未享"}
assert tuple(STAGE_LABELS) == STAGES
WEEKS = 12


def rate(part: int, whole: int) -> str:
    """``25.0%``; ``—`` when there is nothing to divide by."""
    return f"{100.0 * part / whole:.1f}%" if whole else "—"


def policy_uptakes(session: Session, *, as_of: dt.date, period_days: int) -> list[dict[str, Any]]:
    """The uptake of every policy the latest snapshot offers to a firm, most eligible firms first."""
    rows = [uptake.uptake(session, pid, as_of=as_of, period_days=period_days)
            for pid in uptake.offered_policies(session)]
    return sorted(rows, key=lambda r: (-r["eligible"], r["policy_id"]))


def policy_uptake(session: Session, policy_id: str, *, as_of: dt.date, period_days: int) -> dict[str, Any]:
    """One policy's uptake (404 / not_a_policy as the API's)."""
    return uptake.uptake(session, policy_id, as_of=as_of, period_days=period_days)


def week_start(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


def grants_by_week(session: Session, *, as_of: dt.date, weeks: int = WEEKS,
                   policy_id: str | None = None) -> list[tuple[dt.date, int]]:
    """New grants per week (Monday to Sunday) for the ``weeks`` weeks ending with the week of ``as_of``, oldest
    first, a week without grants as 0 — of one policy or of all."""
    first = week_start(as_of) - dt.timedelta(weeks=weeks - 1)
    per_day = grants_per_day(session.connection(), since=first, until=as_of, policy_id=policy_id)
    counts = dict.fromkeys((first + dt.timedelta(weeks=i) for i in range(weeks)), 0)
    for day, n in per_day.items():
        counts[week_start(day)] += n
    return list(counts.items())
