"""``/console/dashboard`` (staff, admin): the business-environment office's view of what the push achieved —
per policy the funnel, uptake by region and size, new grants by week — with charts drawn on the server
(:mod:`service.http.console.charts`), and the funnel chart of one policy for its console page. The numbers are
those of ``GET /v1/policies/{id}/uptake`` (the same use case)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from markupsafe import Markup
from sqlmodel import Session

from service.app import dashboard
from service.app.errors import AppError
from service.http.console.charts import bar_chart, column_chart, grouped_bar_chart
from service.http.console.pages import render
from service.http.console.session import ConsoleError, ConsoleStaff
from service.http.deps import SessionDep, StateDep
from service.http.errors import STATUS
from service.store.principals import Principal
from service.store.values import unstorable

router = APIRouter(include_in_schema=False)

#: Funnel colours: told (blue), acted (amber), granted (green), refused (red), not yet granted (grey-red).
STAGE_COLOURS = ("#1f5fa8", "#3b7dc4", "#6c4f9e", "#d98e04", "#2e8b57", "#b03a2e", "#8a3b57")
BREAKDOWN = (("eligible", "符合条件"), ("granted", "已兑现"), ("not_yet_granted", "应享未享"))


def funnel_chart(counts: dict[str, Any], title: str) -> Markup:
    """The funnel of one policy: one bar per stage with its number."""
    return bar_chart(title, [(label, counts[stage]) for stage, label in dashboard.STAGE_LABELS.items()],
                     colours=STAGE_COLOURS)


def breakdown_chart(part: dict[str, dict[str, int]], title: str) -> Markup:
    """Eligible, granted and 应享未享 per region (or size class)."""
    return grouped_bar_chart(title, [(label, [c[stage] for stage, _ in BREAKDOWN]) for label, c in part.items()],
                             [name for _, name in BREAKDOWN], width=520)


def weekly_chart(weeks: list[tuple[dt.date, int]], title: str) -> Markup:
    return column_chart(title, [(f"{d.month}/{d.day}", n) for d, n in weeks], unit="项")


def policy_funnel(session: Session, policy_id: str, *, period_days: int) -> dict[str, Any] | None:
    """The uptake of one policy for its console page; None when it has none (not published here)."""
    try:
        return dashboard.policy_uptake(session, policy_id, as_of=dt.date.today(), period_days=period_days)
    except AppError:
        return None


def _policy_arg(value: str) -> str:
    text = value.strip()
    if len(text) > 80 or unstorable(text, path="policy"):
        raise ConsoleError(422, "政策编号无效", "policy")
    return text


@router.get("/console/dashboard")
def dashboard_page(request: Request, state: StateDep, session: SessionDep, principal: ConsoleStaff,
                   policy: str = "") -> Response:
    today, days = dt.date.today(), state.settings.uptake_period_days
    catalog = state.matcher(session).catalog
    try:
        rows = dashboard.policy_uptakes(session, as_of=today, period_days=days)
        chosen = _policy_arg(policy) if policy else (rows[0]["policy_id"] if rows else "")
        selected = next((r for r in rows if r["policy_id"] == chosen), None)
        if chosen and selected is None:
            selected = dashboard.policy_uptake(session, chosen, as_of=today, period_days=days)
        overall = dashboard.grants_by_week(session, as_of=today)
        own = dashboard.grants_by_week(session, as_of=today, policy_id=chosen) if chosen else []
    except AppError as exc:
        raise ConsoleError(STATUS[exc.code], exc.message, exc.field) from None
    titles = {pid: catalog.entries[pid].title if pid in catalog.entries else pid
              for pid in {r["policy_id"] for r in rows} | ({chosen} if chosen else set())}
    charts: dict[str, Markup] = {
        "not_yet": bar_chart("各政策应享未享企业数", [(titles[r["policy_id"]], r["not_yet_granted"]) for r in rows],
                             colours=(STAGE_COLOURS[-1],)),
        "weekly": weekly_chart(overall, f"每周新增兑现（全部政策，近{dashboard.WEEKS}周，按决定日期）"),
    }
    if selected is not None:
        name = titles[chosen]
        charts.update(funnel=funnel_chart(selected, f"“{name}”兑现漏斗"),
                      region=breakdown_chart(selected["by_region"], f"“{name}”按地区"),
                      size=breakdown_chart(selected["by_size"], f"“{name}”按企业规模"),
                      own_weekly=weekly_chart(own, f"“{name}”每周新增兑现（近{dashboard.WEEKS}周）"))
    return _page(request, principal, "dashboard.html", rows=rows, selected=selected, chosen=chosen, titles=titles,
                 charts=charts, today=today, period_days=days, labels=dashboard.STAGE_LABELS, rate=dashboard.rate,
                 weeks=overall, own_weeks=own)


def _page(request: Request, principal: Principal, template: str, **context: Any) -> Response:
    return render(request, template, {"principal": principal, "csrf": request.state.console_csrf, "console": True,
                                      **context})
