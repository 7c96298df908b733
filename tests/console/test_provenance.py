"""Issue 14 on the enterprise page and in the package: a firm built from departments' feeds shows, beside every
field, the Chinese name of its source and the day it was observed; a value too old to count is marked 已过时
(and asked again: 请核实…); the sources' disagreements come first on the page; a certificate ending within 90
days is a reminder in the package (``GET /v1/enterprises/{uscc}/package``) and on the page. In-process pages,
the JSON API and a real browser (Debian's Chromium through playwright)."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from profiles.model import parse_profile
from service.app.feeds import import_feed
from service.bootstrap import ServiceState
from service.store.enterprises import get_enterprise, upsert_enterprise
from tests.console.conftest import sign_in
from tests.console.test_console import form_of
from tests.service.conftest import Tokens, bearer, make_uscc, sample

pytestmark = pytest.mark.xdist_group("browser")

TODAY = dt.date.today()
TAX_DAY = TODAY - dt.timedelta(days=600)  # a tax credit grade older than its maximum age (16 months)
HEADCOUNT_DAY = TODAY - dt.timedelta(days=20)
ENDS = TODAY + dt.timedelta(days=45)  # the 高新技术企业 certificate ends within the 90-day window


def _feed(engine: Any, tmp: Path, source: str, as_of: dt.date, rows: list[dict[str, Any]]) -> None:
    path = tmp / f"{source}-{as_of}.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    report = import_feed(engine, path, source=source, as_of=as_of, errors_path=tmp / f"{source}.errors.jsonl")
    assert report.rejected == 0, (tmp / f"{source}.errors.jsonl").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def fed_firm(state: ServiceState, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A firm as the departments' feeds describe it: the register, an old tax file, a recent social
    insurance file, the science bureau's certificate, and the firm's own (disagreeing) statement."""
    tmp = tmp_path_factory.mktemp("feeds")
    base = sample(0)
    uscc = make_uscc(14001, "91320311")
    name = "来源测试精密机械有限公司"
    engine = state.engine
    _feed(engine, tmp, "registration", TODAY - dt.timedelta(days=3), [{
        "uscc": uscc, "name": name, "entity_type": "enterprise", "industry_code": base["industry_code"],
        "established_on": base["established_on"], "region": base["region"], "ownership": "private",
        "business_scope": base["business_scope"]}])
    _feed(engine, tmp, "tax", TAX_DAY, [{
        "uscc": uscc, "tax_credit_grade": "B", "taxpayer_type": "general", "annual_revenue_wan": 4200}])
    _feed(engine, tmp, "social_insurance", HEADCOUNT_DAY, [{"uscc": uscc, "employees": 86}])
    _feed(engine, tmp, "science", TODAY - dt.timedelta(days=10), [{
        "uscc": uscc, "qualifications": [{"code": "high_tech", "valid_from": (ENDS - dt.timedelta(days=1095)).isoformat(),
                                          "valid_to": ENDS.isoformat()}]}])
    _feed(engine, tmp, "self", TODAY - dt.timedelta(days=1), [{
        "uscc": uscc, "name": name, "tax_credit_grade": "A", "employees": 90, "needs": base["needs"]}])
    yield {"uscc": uscc, "name": name}


def test_the_package_carries_the_reminder_and_the_stale_field(client: TestClient, tokens: Tokens,
                                                               fed_firm: dict[str, Any]) -> None:
    response = client.get(f"/v1/enterprises/{fed_firm['uscc']}/package", headers=bearer(tokens.staff))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["reminders"] == [{
        "kind": "qualification_expiring", "code": "high_tech", "label": "高新技术企业", "valid_to": ENDS.isoformat(),
        "days_left": 45, "message": f"高新技术企业证书将于{ENDS.isoformat()}到期，请及时复审"}]
    stale = {s["field"]: s for s in body["stale"]}
    assert stale["tax_credit_grade"]["value"] == "B"
    assert (stale["tax_credit_grade"]["source"], stale["tax_credit_grade"]["as_of"]) == ("tax", TAX_DAY.isoformat())
    assert "tax_credit_grade" not in body["enterprise"]  # matched as unknown
    assert "high_tech" in body["enterprise"]["qualifications"]
    asked = [q for q in body["questions"] if q["field"] == "tax_credit_grade"]
    if asked:  # (a catalog policy that reads the grade and is called for this firm)
        assert asked[0]["ask_staff"].startswith(f"请核实纳税信用等级：上次记录为B级（税务，{TAX_DAY.isoformat()}）")
    view = client.get(f"/v1/enterprises/{fed_firm['uscc']}", headers=bearer(tokens.staff)).json()
    assert view["provenance"]["tax_credit_grade"]["stale"] is True
    assert any(c["field"] == "tax_credit_grade" for c in view["conflicts"])


def test_the_page_shows_source_and_date_beside_every_field_and_conflicts_on_top(
        web: TestClient, tokens: Tokens, fed_firm: dict[str, Any]) -> None:
    sign_in(web, tokens.staff)
    page = web.get(f"/console/enterprises/{fed_firm['uscc']}")
    assert page.status_code == 200
    html = page.text
    # the disagreements come before the portrait, the package and the fields
    assert html.index('id="conflicts"') < html.index('id="h-portrait"') < html.index('id="fields"')
    conflicts = html[html.index('id="conflicts"'):html.index('id="h-portrait"')]
    assert "纳税信用等级" in conflicts and "税务" in conflicts and "企业自报" in conflicts
    rows = _rows(html)
    assert rows["纳税信用等级"]["source"] == "税务" and rows["纳税信用等级"]["as_of"] == TAX_DAY.isoformat()
    assert "已过时" in rows["纳税信用等级"]["value"] and "请核实" in rows["纳税信用等级"]["value"]
    assert (rows["从业人员"]["source"], rows["从业人员"]["as_of"]) == ("人社", HEADCOUNT_DAY.isoformat())
    assert "已过时" not in rows["从业人员"]["value"]
    assert rows["企业名称"]["source"] == "市场监管"
    assert rows["企业诉求"]["source"] == "企业自报"
    assert f"至{ENDS.isoformat()}，即将到期" in rows["企业资质"]["value"]
    assert "来源：科技" in rows["企业资质"]["value"]
    for label, row in rows.items():  # every field with a value names where it comes from
        if row["value"] not in ("未填", ""):
            assert row["source"] not in ("", "—"), label
            assert row["as_of"] != "—", label
    assert f"高新技术企业证书将于{ENDS.isoformat()}到期，请及时复审" in html
    assert "以下信息已超过时效" in html


def _rows(html: str) -> dict[str, dict[str, str]]:
    """The fields table as a person reads it: label → value, source, date (tags stripped)."""
    table = html[html.index('<table class="sources">'):]
    table = table[:table.index("</table>")]
    out: dict[str, dict[str, str]] = {}
    for row in re.findall(r"<tr data-field=.*?</tr>", table, flags=re.S):
        cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, flags=re.S)]
        out[cells[0]] = {"value": re.sub(r"\s+", " ", cells[1]), "source": cells[2], "as_of": cells[3]}
    return out


def test_a_legacy_firm_says_its_source_is_not_recorded(web: TestClient, tokens: Tokens, state: ServiceState) -> None:
    profile = {**sample(0), "uscc": make_uscc(14002, "91320311"), "name": "来源未记录测试有限公司"}
    with Session(state.engine) as session:
        upsert_enterprise(session, profile=parse_profile(profile))
        session.commit()
    sign_in(web, tokens.staff)
    html = web.get(f"/console/enterprises/{profile['uscc']}").text
    assert 'id="conflicts"' not in html and 'class="stale"' not in html
    rows = _rows(html)
    assert rows["从业人员"]["source"] == "来源未记录"


# ---- in a real browser -----------------------------------------------------------------------------------
def test_in_the_browser_conflicts_come_first_and_every_field_names_its_source(
        browser: Any, live_server: str, screenshots: Path, tokens: Tokens, fed_firm: dict[str, Any]) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    page = context.new_page()
    foreign: list[str] = []
    page.on("request", lambda r: None if r.url.startswith((live_server, "data:")) else foreign.append(r.url))
    try:
        page.goto(f"{live_server}/console")
        page.get_by_label("工作人员令牌").fill(tokens.staff)
        page.get_by_role("button", name="登录").click()
        page.wait_for_url(f"{live_server}/console")
        page.goto(f"{live_server}/console/enterprises/{fed_firm['uscc']}")
        conflicts = page.locator("#conflicts")
        assert conflicts.is_visible()
        first_card = page.locator("main .card").first
        assert first_card.get_attribute("id") == "conflicts"
        assert "纳税信用等级" in conflicts.inner_text()
        grade = page.locator('table.sources tr[data-field="tax_credit_grade"]')
        assert grade.is_visible()
        assert grade.locator("td.source").inner_text() == "税务"
        assert grade.locator("td.as-of").inner_text() == TAX_DAY.isoformat()
        assert "已过时" in grade.inner_text()
        assert "stale" in (grade.get_attribute("class") or "")
        headcount = page.locator('table.sources tr[data-field="employees"]')
        assert headcount.locator("td.source").inner_text() == "人社"
        assert page.locator("#reminders").inner_text().count("请及时复审") == 1
        page.screenshot(path=str(screenshots / "20-console-provenance.png"), full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})
        page.reload()
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        assert page.locator('table.sources tr[data-field="tax_credit_grade"]').inner_text().count("税务") == 1
        page.screenshot(path=str(screenshots / "21-console-provenance-phone.png"), full_page=True)
    finally:
        context.close()
    assert not foreign, f"pages fetched resources outside the app: {foreign}"


def test_a_whatif_keeps_the_dates_and_sources_of_what_the_operator_left(
        web: TestClient, tokens: Tokens, state: ServiceState, fed_firm: dict[str, Any]) -> None:
    csrf = sign_in(web, tokens.staff)
    with Session(state.engine) as session:
        row = get_enterprise(session, uscc=fed_firm["uscc"])
        assert row is not None
        shown = parse_profile(row.profile).at(TODAY).stated()  # what the form shows: codes valid today
    form = {**form_of(shown), "employees": "25", "csrf": csrf, "words": ""}
    page = web.post(f"/console/enterprises/{fed_firm['uscc']}/whatif", data=form)
    assert page.status_code == 200, page.text[:500]
    html = page.text
    changes = re.sub(r"<[^>]+>", "", html[html.index('id="whatif-result"'):html.index('id="h-portrait"')])
    assert "从业人员：86人 → 25人" in changes
    assert "企业资质" not in changes and "纳税信用等级" not in changes  # left as shown: not a change
    # the certificate kept its dates (still a reminder); the old tax grade is still too old to count
    assert f"高新技术企业证书将于{ENDS.isoformat()}到期，请及时复审" in html
    assert 'id="stale-summary"' in html and "纳税信用等级（税务" in html
    rows = _rows(html)
    assert "已过时" not in rows["从业人员"]["value"]
