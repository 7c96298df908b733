"""End to end in a real browser: Debian's Chromium driven by playwright against uvicorn on a free port.

Each page visited is saved as a screenshot under build/screenshots/ (1280×800, and phone width where
the layout changes). Every request the pages make must go to the test server: nothing from a CDN.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from profiles.features import derive
from profiles.model import parse_profile
from service.bootstrap import ServiceState
from service.store.enterprises import get_enterprise
from tests.service.conftest import Population, Tokens, bearer, make_uscc, sample

pytestmark = pytest.mark.xdist_group("browser")

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


class Visit:
    """A browser context on the live server that records every request leaving it."""

    def __init__(self, browser: Any, base: str, shots: Path, *, javascript: bool = True) -> None:
        self.base, self.shots = base, shots
        self.context = browser.new_context(viewport=DESKTOP, locale="zh-CN", java_script_enabled=javascript)
        self.page = self.context.new_page()
        self.foreign: list[str] = []
        self.page.on("request", self._record)

    def _record(self, request: Any) -> None:
        if not request.url.startswith((self.base, "data:")):
            self.foreign.append(request.url)

    def go(self, path: str) -> Any:
        return self.page.goto(self.base + path)

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)

    def fits_width(self) -> bool:
        """No horizontal scrolling: the page is usable at this viewport's width."""
        return bool(self.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))

    def sign_in(self, token: str) -> None:
        self.go("/console")
        self.page.get_by_label("工作人员令牌").fill(token)
        self.page.get_by_role("button", name="登录").click()
        self.page.wait_for_url(self.base + "/console")


@pytest.fixture
def visit(browser: Any, live_server: str, screenshots: Path) -> Iterator[Visit]:
    v = Visit(browser, live_server, screenshots)
    yield v
    v.context.close()
    assert not v.foreign, f"pages fetched resources outside the app: {v.foreign}"


def package_of(state: ServiceState, profile: dict[str, Any]) -> dict[str, Any]:
    with Session(state.engine) as session:
        return state.matcher(session).match(derive(parse_profile(profile), dt.date.today())).model_dump(mode="json")


def test_a_wrong_token_is_refused(visit: Visit, tokens: Tokens) -> None:
    page = visit.page
    visit.go("/console/enterprises?q=示例")
    assert page.url.startswith(visit.base + "/console/login?next=")
    # keyboard only: the token field has the focus, Enter submits
    assert page.evaluate("document.activeElement.id") == "token"
    page.keyboard.type("pf_sta_this-is-not-a-token")
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.keyboard.press("Enter")
    assert posted.value.status == 401
    assert page.get_by_role("alert").inner_text() == "令牌无效、已过期或已被吊销"
    assert page.get_by_label("工作人员令牌").get_attribute("aria-invalid") == "true"
    visit.shot("01-login-refused")
    page.get_by_label("工作人员令牌").fill(tokens.revoked)
    page.get_by_role("button", name="登录").click()
    assert page.get_by_role("alert").inner_text() == "令牌无效、已过期或已被吊销"
    assert "pf_console" not in {c["name"] for c in visit.context.cookies()}


def test_find_a_firm_open_its_package_and_run_a_whatif(visit: Visit, tokens: Tokens, state: ServiceState,
                                                       population: Population) -> None:
    page = visit.page
    firm = population.firm_a  # 徐州示例精密机械有限公司
    visit.sign_in(tokens.staff)
    visit.shot("02-console-home")

    page.get_by_label("企业名称中的几个字，或统一社会信用代码").fill("精密机械")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/console/enterprises\?q=.*"))
    visit.shot("03-enterprise-search")
    page.get_by_role("link", name=firm.profile["name"]).click()
    page.wait_for_url(visit.base + f"/console/enterprises/{firm.uscc}")
    expected = package_of(state, firm.profile)
    assert page.get_by_role("heading", level=1).inner_text() == firm.profile["name"]
    heading = page.locator("#h-package").inner_text()
    assert heading.startswith(f"政策套餐：可享受 {len(expected['package'])} 项")
    shown = page.locator("ol.package > li summary .title").all_inner_texts()
    assert shown == [e["title"] for e in expected["package"]]
    assert page.locator("#possible > summary").inner_text().startswith("要问来电人的问题")
    assert "小微企业" in page.locator(".tag").all_inner_texts()
    visit.shot("04-enterprise-package")

    # the caller says the firm just entered the city's listing-reserve pool
    page.get_by_label("上市状态").select_option("reserve")
    assert page.locator(".changed-count").inner_text() == "已改动 1 项（尚未保存）"  # the JS comfort
    page.get_by_role("button", name="试算（不保存）").click()
    result = page.locator("#whatif-result")
    result.wait_for()
    changed = package_of(state, {**firm.profile, "listing_status": "reserve"})
    added = [e["title"] for e in changed["package"] if e["policy_id"] not in {p["policy_id"] for p in expected["package"]}]
    assert added
    assert "上市状态：未上市 → 上市后备库企业" in result.inner_text()
    added_line = result.locator(".added").inner_text()
    assert all(title in added_line for title in added)
    assert page.locator("#h-package").inner_text().startswith(f"政策套餐：可享受 {len(changed['package'])} 项")
    assert page.evaluate("document.activeElement.id") == "whatif-result"
    visit.shot("05-whatif")
    with Session(state.engine) as session:  # a what-if writes nothing
        row = get_enterprise(session, uscc=firm.uscc)
        assert row is not None and row.profile["listing_status"] == "unlisted"

    page.set_viewport_size(PHONE)
    visit.go(f"/console/enterprises/{firm.uscc}")
    assert visit.fits_width()
    visit.shot("06-enterprise-phone")


def test_search_a_policy_by_the_callers_words(visit: Visit, tokens: Tokens, client: TestClient) -> None:
    page = visit.page
    visit.sign_in(tokens.staff)
    page.get_by_label("来电人的原话", exact=False).fill("工会经费能不能退一点")
    page.get_by_role("button", name="检索").click()
    page.wait_for_url(re.compile(r".*/console/policies\?q=.*"))
    first = page.locator("ol.hits > li a").first
    assert first.inner_text() == "小微企业工会经费全额返还"
    visit.shot("07-policy-search")
    first.click()
    page.wait_for_url(visit.base + "/console/policies/union-fee-refund-small-micro")
    detail = client.get("/v1/policies/union-fee-refund-small-micro").json()["current"]
    reach = client.get("/v1/policies/union-fee-refund-small-micro/enterprises", headers=bearer(tokens.staff)).json()
    text = page.locator("main").inner_text()
    assert f"重点任务》第{detail['source']['task_no']}项" in text
    assert f"符合条件 {reach['eligible']} 家" in text
    assert all(dept in text for dept in detail["lead_departments"])
    assert page.get_by_role("table", name="按地区").locator("tbody tr").count() == len(reach["by_region"])
    visit.shot("08-policy-page")


def test_the_calculator_works_without_signing_in_or_javascript(browser: Any, live_server: str, screenshots: Path,
                                                              state: ServiceState) -> None:
    visit = Visit(browser, live_server, screenshots, javascript=False)
    try:
        page = visit.page
        visit.go("/calculator")
        assert page.get_by_role("heading", level=1).inner_text() == "惠企政策计算器"
        # keyboard: the first Tab reaches the skip link, following it lands on the first field
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "跳到主要内容"
        page.keyboard.press("Enter")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "f-entity_type"  # no code, no name: nothing stored
        visit.shot("09-calculator-form")

        profile = {**sample(1), "uscc": make_uscc(9101, "91320311")}
        page.get_by_label("所在地区").select_option(profile["region"])
        page.get_by_label("行业代码（GB/T 4754-2017）").fill(profile["industry_code"])
        page.get_by_label("从业人员（人）").fill(str(profile["employees"]))
        page.get_by_label("营业收入（万元）").fill(str(profile["annual_revenue_wan"]))
        page.get_by_label("企业诉求").fill("想贷款，利息能不能低一点")
        page.get_by_role("button", name="计算政策套餐").click()
        page.locator("#result").wait_for()
        submitted = {k: profile[k] for k in ("uscc", "name", "region", "industry_code", "employees",
                                             "annual_revenue_wan")}
        expected = package_of(state, {**submitted, "needs": "想贷款，利息能不能低一点"})
        assert page.locator("#h-package").inner_text().startswith(f"政策套餐：可享受 {len(expected['package'])} 项")
        assert page.locator("ol.package > li summary .title").first.inner_text() == expected["package"][0]["title"]
        assert page.locator("#possible > summary").inner_text().startswith("还需补充的信息")
        visit.shot("10-calculator-result")
        with Session(state.engine) as session:  # nothing stored
            assert get_enterprise(session, uscc=profile["uscc"]) is None

        page.locator("#edit > summary").click()  # the form, collapsed under the answer, opens without JS
        page.get_by_label("从业人员（人）").fill("-3")
        page.get_by_role("button", name="计算政策套餐").click()
        summary = page.locator(".error-summary")
        summary.wait_for()
        assert "从业人员不能小于0" in summary.inner_text()
        assert "employees" not in summary.inner_text()  # Chinese labels only

        page.set_viewport_size(PHONE)
        visit.go("/calculator")
        assert visit.fits_width()
        visit.shot("11-calculator-phone")
        assert not visit.foreign, f"pages fetched resources outside the app: {visit.foreign}"
    finally:
        visit.context.close()


def fill_profile(page: Any, profile: dict[str, Any]) -> None:
    """Type a profile into the calculator form the way a person would (selects, boxes, text)."""
    from profiles.fields import FIELDS, Kind

    for name, value in profile.items():
        if name in ("uscc", "name"):
            continue
        spec = FIELDS[name]
        if spec.kind is Kind.SET:
            for code in value or ["__none__"]:
                page.locator(f'input[name="{name}"][value="{code}"]').check()
        elif spec.kind in (Kind.CATEGORY, Kind.BOOL):
            page.locator(f"#f-{name}").select_option(str(value).lower() if spec.kind is Kind.BOOL else value)
        else:
            page.locator(f"#f-{name}").fill(str(value))


PUBLIC_WORDS = ("uscc", "entity_type", "任务序号", "policy_id")


def test_sample_01_result_fits_one_screenful_per_section(browser: Any, live_server: str, screenshots: Path,
                                                         state: ServiceState) -> None:
    """The calculator answer for sample 01: the package first, one line per policy that opens; the long
    lists collapsed — at most 3,000 px tall at 1280 px, 6,000 px at 390 px; no code or slug shown."""
    visit = Visit(browser, live_server, screenshots, javascript=False)
    try:
        page = visit.page
        profile = sample(0)
        visit.go("/calculator")
        fill_profile(page, profile)
        page.get_by_role("button", name="计算政策套餐").click()
        page.locator("#result").wait_for()
        expected = package_of(state, profile)
        titles = page.locator("ol.package > li summary .title").all_inner_texts()
        assert titles == [e["title"] for e in expected["package"]]
        assert page.locator("ol.package details[open]").count() == 0  # one line each until opened
        for section in ("#possible", "#near", "#on-request"):
            if page.locator(section).count():
                assert page.locator(section).get_attribute("open") is None, section
        text = page.locator("main").inner_text()
        for word in PUBLIC_WORDS + tuple(e["policy_id"] for e in expected["package"]):
            assert word not in text, word
        height = page.evaluate("document.documentElement.scrollHeight")
        assert height <= 3000, f"result page is {height} px tall at 1280 px"
        visit.shot("12-calculator-sample01-1280")
        page.locator("ol.package > li summary").first.click()  # a line opens without JavaScript
        assert page.locator("ol.package details[open]").count() == 1
        assert "怎么办理" in page.locator("ol.package details[open]").inner_text()
        page.locator("ol.package > li summary").first.click()
        page.set_viewport_size(PHONE)
        assert visit.fits_width()
        height = page.evaluate("document.documentElement.scrollHeight")
        assert height <= 6000, f"result page is {height} px tall at 390 px"
        visit.shot("13-calculator-sample01-390")
        assert not visit.foreign, f"pages fetched resources outside the app: {visit.foreign}"
    finally:
        visit.context.close()


def test_an_off_topic_question_gets_no_policy_and_the_channel(visit: Visit, tokens: Tokens) -> None:
    page = visit.page
    visit.sign_in(tokens.staff)
    page.get_by_label("来电人的原话", exact=False).fill("我想移民加拿大，需要办什么手续")
    page.get_by_role("button", name="检索").click()
    page.wait_for_url(re.compile(r".*/console/policies\?q=.*"))
    box = page.locator("#no-match")
    assert box.locator("h2").inner_text() == "未找到对应政策"
    assert "12345" in box.inner_text() and "一企来" in box.inner_text()
    assert page.locator("ol.hits > li").count() == 0
    visit.shot("14-off-topic-search")


MONEY = {"taxable_income_wan": 280, "rd_expense_wan": 160, "unemployment_insurance_paid_wan": 6.2,
         "layoff_rate_pct": 1.5, "vat_filing_period": "monthly", "has_union": True, "disabled_employees": 1,
         "deductible_input_vat_wan": 380}


def entry_value(answer: dict[str, Any], policy_id: str) -> Any:
    return next(e for e in answer["package"] if e["policy_id"] == policy_id)["estimated_value_wan"]


def test_the_calculator_shows_values_and_compares_a_change(visit: Visit, state: ServiceState) -> None:
    """Issue 13: the new money fields typed into the calculator give each item its value and the total; changing
    年工资总额 and calculating again shows the values and the total before → after."""
    from profiles.labels import wan_text
    from service.app.values import total_line, value_line

    page = visit.page
    profile = {**sample(0), **MONEY}
    visit.go("/calculator")
    fill_profile(page, profile)
    assert page.get_by_label("上年裁员率（%）").input_value() == "1.5"  # labelled from profiles.fields
    page.get_by_role("button", name="计算政策套餐").click()
    page.locator("#result").wait_for()
    expected = package_of(state, profile)
    assert expected["summary"]["valued_policies"] >= 1
    assert page.locator("#value-total").inner_text() == total_line(expected["summary"])
    assert "同类政策只计一次" in page.locator("#package").inner_text()
    union = page.locator('li[data-policy="union-fee-refund-small-micro"]')
    before = entry_value(expected, "union-fee-refund-small-micro")
    assert union.locator("summary .value").inner_text() == f"估计价值 {wan_text(before)} 万元/年"
    for item in expected["package"]:  # every valued entry shows its line without opening it
        if value_line(item):
            line = page.locator(f'li[data-policy="{item["policy_id"]}"] summary .value').inner_text()
            assert line == value_line(item), item["policy_id"]
    union.locator("summary").click()
    assert "怎么估算：" in union.inner_text() and "来源：徐委办〔2023〕37号" in union.inner_text()
    assert page.evaluate("document.documentElement.scrollHeight") <= 3200
    visit.shot("15-calculator-values")

    page.locator("#edit > summary").click()
    page.get_by_label("年工资总额（万元）").fill("1000")
    page.get_by_role("button", name="计算政策套餐").click()
    compared = page.locator("#whatif-result")
    compared.wait_for()
    changed = package_of(state, {**profile, "annual_payroll_wan": 1000})
    after = entry_value(changed, "union-fee-refund-small-micro")
    assert after > before
    text = compared.inner_text()
    assert "与上次计算相比" in text and "年工资总额：620万元 → 1000万元" in text
    assert f"小微企业工会经费全额返还：估计价值 {wan_text(before)} 万元/年 → 估计价值 {wan_text(after)} 万元/年" in text
    assert (f"估计价值合计 {wan_text(expected['summary']['estimated_value_wan'])} → "
            f"{wan_text(changed['summary']['estimated_value_wan'])} 万元/年") in text
    assert page.locator("#value-total").inner_text() == total_line(changed["summary"])
    visit.shot("16-calculator-compared")
    page.set_viewport_size(PHONE)
    assert visit.fits_width()
    visit.shot("17-calculator-compared-phone")


def test_the_console_whatif_shows_the_financing_need_value_before_and_after(visit: Visit, tokens: Tokens,
                                                                           state: ServiceState,
                                                                           population: Population) -> None:
    """Raising 融资需求 from 500 to 1000万元 in the console's what-if: the total before → after, and every entry
    whose value reads 融资需求 (the guarantee fee, once the catalog values it) before → after."""
    from profiles.labels import wan_text
    from service.app.values import value_changes

    page = visit.page
    firm = population.firm_a  # sample 01: 融资需求 500万元
    visit.sign_in(tokens.staff)
    visit.go(f"/console/enterprises/{firm.uscc}")
    expected = package_of(state, firm.profile)
    if expected["summary"]["valued_policies"]:
        assert page.locator("#value-total").inner_text().startswith(
            f"估计价值合计约 {wan_text(expected['summary']['estimated_value_wan'])} 万元/年")
    page.get_by_label("融资需求（万元）").fill("1000")
    page.get_by_label("年工资总额（万元）").fill("700")
    page.get_by_role("button", name="试算（不保存）").click()
    result = page.locator("#whatif-result")
    result.wait_for()
    changed = package_of(state, {**firm.profile, "financing_need_wan": 1000, "annual_payroll_wan": 700})
    text = result.inner_text()
    assert "融资需求：500万元 → 1000万元" in text
    assert (f"估计价值合计 {wan_text(expected['summary']['estimated_value_wan'])} → "
            f"{wan_text(changed['summary']['estimated_value_wan'])} 万元/年") in text
    rows = value_changes(expected, changed)
    assert any(r["policy_id"] == "union-fee-refund-small-micro" for r in rows)
    for row in rows:
        assert f"{row['title']}：{row['before']} → {row['after']}" in text, row
    visit.shot("18-console-whatif-values")
