"""``/console/dashboard`` and a policy page's funnel, with outcomes present: staff and admin only; in Chromium the
numbers shown (the table, the funnel, by region and size) equal ``GET /v1/policies/{id}/uptake``'s, the weekly
grants equal the outcomes recorded, and the charts are there with JavaScript off. Screenshots at 1280 px:
build/screenshots/20-dashboard.png, 21-policy-funnel.png."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from service.app.funnel import STAGES
from service.bootstrap import ServiceState
from service.db.bulk import table_of
from service.db.tables import MatchSnapshot, Outbox, Outcome, PushItem
from tests.console.conftest import csrf_of, sign_in
from tests.console.test_browser import DESKTOP, Visit
from tests.service.conftest import Population, Tokens, bearer

pytestmark = pytest.mark.xdist_group("browser")

POLICY = "guarantee-fee-cap-small-micro-agri"
OTHER = "sci-tech-innovation-voucher"
TODAY = dt.date.today()
BREAKDOWN = ("eligible", "granted", "not_yet_granted")


@pytest.fixture(scope="module")
def outcomes(client: TestClient, state: ServiceState, tokens: Tokens, population: Population) -> dict[str, Any]:
    """What a few nights and the departments leave behind for two policies: eligible firms in the snapshot,
    delivered pushes, feedback, and outcomes over several weeks (through POST /v1/outcomes)."""
    firms = population.synthetic[100:130]
    now = dt.datetime.now(dt.UTC)
    s, o, p = table_of(MatchSnapshot), table_of(Outbox), table_of(PushItem)
    with state.engine.begin() as conn:
        conn.execute(sa.delete(s).where(s.c.uscc.in_([f.uscc for f in firms]), s.c.policy_id.in_((POLICY, OTHER))))
        conn.execute(sa.insert(s), [{"uscc": f.uscc, "policy_id": pid, "policy_version": 1, "status": 1,
                                     "score": 0.5, "computed_at": now}
                                    for pid, part in ((POLICY, firms), (OTHER, firms[:12])) for f in part])
        for f in firms[:22]:
            box = conn.execute(sa.insert(o).values(
                idempotency_key=f"pkg:{f.uscc}:{uuid.uuid4().hex[:8]}", uscc=f.uscc, payload={}, status="delivered",
                attempts=1, next_attempt_at=now, created_at=now, delivered_at=now).returning(o.c.id)).scalar_one()
            conn.execute(sa.insert(p).values(idempotency_key=f"{f.uscc}:{POLICY}:{uuid.uuid4().hex[:8]}",
                                             uscc=f.uscc, policy_id=POLICY, policy_version=1, outbox_id=box,
                                             created_at=now))
    staff = bearer(tokens.staff)
    for f in firms[:15]:
        assert client.post("/v1/feedback", json={"uscc": f.uscc, "policy_id": POLICY, "kind": "viewed"},
                           headers=staff).status_code == 201
    recorded = [(f, POLICY, "granted", TODAY - dt.timedelta(days=7 * (i % 5))) for i, f in enumerate(firms[:9])]
    recorded += [(f, POLICY, "refused", TODAY - dt.timedelta(days=3)) for f in firms[9:11]]
    recorded += [(f, POLICY, "applied", TODAY) for f in firms[11:14]]
    recorded += [(f, OTHER, "granted", TODAY - dt.timedelta(days=14)) for f in firms[:2]]
    for firm, pid, outcome, day in recorded:
        response = client.post("/v1/outcomes", json={"uscc": firm.uscc, "policy_id": pid, "outcome": outcome,
                                                     "amount_wan": 5.0, "decided_on": day.isoformat(),
                                                     "department": "市财政局"}, headers=staff)
        assert response.status_code in (200, 201), response.text
    return {pid: client.get(f"/v1/policies/{pid}/uptake", headers=staff).json() for pid in (POLICY, OTHER)}


def grants_in_window(state: ServiceState) -> int:
    """Grants decided within the dashboard's twelve weeks (Monday of the eleventh week before this one on)."""
    first = TODAY - dt.timedelta(days=TODAY.weekday()) - dt.timedelta(weeks=11)
    c = table_of(Outcome).c
    with state.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).where(c.outcome == "granted", c.decided_on >= first,
                                                                 c.decided_on <= TODAY)).scalar_one())


def test_the_dashboard_is_for_staff_and_admin_only(web: TestClient, tokens: Tokens, outcomes: dict[str, Any]) -> None:
    response = web.get("/console/dashboard", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/console/login?next=")
    page = web.get("/console/login")
    refused = web.post("/console/login", data={"csrf": csrf_of(page.text), "token": tokens.firm_a, "next": ""},
                       follow_redirects=False)
    assert refused.status_code == 403  # an enterprise token opens no console page
    assert web.get("/console/dashboard", follow_redirects=False).status_code == 303
    for token in (tokens.staff, tokens.admin):
        csrf = sign_in(web, token)
        shown = web.get(f"/console/dashboard?policy={POLICY}")
        assert shown.status_code == 200 and "兑现漏斗" in shown.text and "<svg" in shown.text
        assert shown.headers["Content-Security-Policy"].startswith("default-src 'self'")
        assert web.get("/console/dashboard?policy=no-such-policy").status_code == 404
        not_a_policy = web.get("/console/dashboard?policy=enterprise-policy-application-guide")
        assert not_a_policy.status_code == 409 and "没有兑现漏斗" in not_a_policy.text
        assert web.post("/console/logout", data={"csrf": csrf}, follow_redirects=False).status_code == 303


@pytest.fixture
def visit(browser: Any, live_server: str, screenshots: Path) -> Iterator[Visit]:
    v = Visit(browser, live_server, screenshots)
    yield v
    v.context.close()
    assert not v.foreign, f"pages fetched resources outside the app: {v.foreign}"


def values(visit: Visit, selector: str) -> list[str]:
    return visit.page.locator(f"{selector} svg text.value").all_text_contents()


def test_the_dashboard_shows_the_uptake_apis_numbers(visit: Visit, tokens: Tokens, state: ServiceState,
                                                     outcomes: dict[str, Any]) -> None:
    api = outcomes[POLICY]
    assert (api["granted"], api["refused"], api["applied"]) >= (9, 2, 3) and api["eligible"] >= 30
    visit.sign_in(tokens.staff)
    page = visit.page
    visit.go("/console/dashboard")
    assert page.get_by_role("heading", level=1).inner_text() == "惠企政策兑现看板"
    for pid, numbers in outcomes.items():  # the overview table: every policy's row
        row = page.locator(f'#policy-uptake tr[data-policy="{pid}"]')
        assert [int(row.locator(f'td[data-stage="{s}"]').inner_text()) for s in STAGES] == [numbers[s] for s in STAGES]
    visit.go(f"/console/dashboard?policy={POLICY}")
    assert page.locator("#selected").get_attribute("data-policy") == POLICY
    assert values(visit, "#funnel") == [f"{api[s]:,}家" for s in STAGES]
    assert (page.locator("#funnel svg title").text_content() or "").endswith("兑现漏斗")
    for part, selector in (("by_region", "#by-region"), ("by_size", "#by-size")):
        groups = api[part]
        assert values(visit, selector) == [f"{c[s]:,}家" for c in groups.values() for s in BREAKDOWN]
        labels = page.locator(f"{selector} svg text").all_text_contents()
        assert set(groups) <= set(labels)
    weekly = [int(t) for t in values(visit, "#weekly-all")]
    assert len(weekly) == 12 and sum(weekly) == grants_in_window(state)
    assert weekly[-1] >= 1  # a grant decided today
    own = [int(t) for t in values(visit, "#weekly-policy")]
    assert sum(own) == 9  # this policy's grants: 0, 7, 14, 21, 28 days ago
    visit.shot("20-dashboard")
    assert visit.fits_width()

    visit.go(f"/console/policies/{POLICY}")
    funnel = page.locator("#policy-funnel")
    assert values(visit, "#policy-funnel") == [f"{api[s]:,}家" for s in STAGES]
    assert f"应享未享 {api['not_yet_granted']} 家" in funnel.inner_text()
    funnel.scroll_into_view_if_needed()
    visit.shot("21-policy-funnel")


def test_the_charts_need_no_javascript(browser: Any, live_server: str, tokens: Tokens,
                                       outcomes: dict[str, Any]) -> None:
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN", java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(live_server + "/console/login")
        page.get_by_label("工作人员令牌").fill(tokens.admin)
        page.get_by_role("button", name="登录").click()
        page.goto(live_server + f"/console/dashboard?policy={OTHER}")
        api = outcomes[OTHER]
        shown = page.locator("#funnel svg text.value").all_text_contents()
        assert shown == [f"{api[s]:,}家" for s in STAGES]
        box = page.locator("#funnel svg").bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 150
    finally:
        context.close()
