"""Money on the pages (issue 13): every package entry's value line (估计价值 X 万元/年 · 缓缴约 X 万元 · 非金额优惠 ·
why there is no number) with its assumption and source document, the total with deferrals apart and how it is
estimated, the new profile fields in the calculator and console forms (labels and help from profiles.fields,
bad input named in Chinese), and the what-if's values before → after — in the console and in the calculator's
comparison with its last answer.

Numbers are read from the answers themselves (the API's, computed by the catalog's formulas), not written here:
the catalog's values are being added while these tests stand."""

from __future__ import annotations

import copy
import datetime as dt
import html
import json
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from matching.results import MatchResult
from profiles.features import derive
from profiles.fields import FIELDS
from profiles.labels import wan_text
from profiles.model import ProfileError, parse_profile
from service.app.values import HOW_ESTIMATED, source_line, total_line, value_changes, value_line
from service.bootstrap import ServiceState
from service.cli.report import render_match
from service.http.console.forms import PREVIOUS, previous_profile, previous_text, profile_from_form
from service.http.console.pages import TEMPLATES
from tests.console.conftest import sign_in
from tests.console.test_console import form_of, stored
from tests.service.conftest import Population, Tokens, bearer, make_uscc, sample

UNION_REFUND = "union-fee-refund-small-micro"
NEW_FIELDS = ("taxable_income_wan", "rd_expense_wan", "unemployment_insurance_paid_wan", "layoff_rate_pct",
              "vat_filing_period", "has_union", "disabled_employees", "deductible_input_vat_wan")
MONEY: dict[str, Any] = {"taxable_income_wan": 280, "rd_expense_wan": 160, "unemployment_insurance_paid_wan": 6.2,
                         "layoff_rate_pct": 1.5, "vat_filing_period": "quarterly", "has_union": True,
                         "disabled_employees": 1, "deductible_input_vat_wan": 380}


def shown(page: str) -> str:
    """What a person reads on a page: inline tags dropped, block tags as a space, entities decoded, blank runs
    folded."""
    inline = re.sub(r"</?(?:span|strong|small|a|br)\b[^>]*>", "", page)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", inline)))


def posted(profile: dict[str, Any]) -> dict[str, list[str]]:
    """A profile as the form parser receives it (every value a list)."""
    return {k: v if isinstance(v, list) else [v] for k, v in form_of(profile).items()}


def entry_html(page: str, policy_id: str) -> str:
    start = page.index(f'data-policy="{policy_id}"')
    return page[start:page.index("</li>", start)]


def answer_of(state: ServiceState, profile: dict[str, Any]) -> MatchResult:
    with Session(state.engine) as session:
        return state.matcher(session).match(derive(parse_profile(profile), dt.date.today()))


# ---- the wording, on constructed entries (every kind, whatever the catalog holds today) ---------------------------
def entry(**fields: Any) -> dict[str, Any]:
    return {"policy_id": "p", "title": "某项政策", "estimated_value_wan": None, "value_kind": None,
            "value_assumption": None, "source_document": "徐委办〔2023〕37号", "source_task": 61,
            "source_measure": None, **fields}


def test_value_lines_say_what_kind_of_money_it_is() -> None:
    assert value_line(entry()) == ""  # the catalog estimates nothing for it
    assert value_line(entry(value_kind="saving", estimated_value_wan=4.96)) == "估计价值 4.96 万元/年"
    assert value_line(entry(value_kind="saving", estimated_value_wan=1234.5)) == "估计价值 1,234.5 万元/年"
    assert value_line(entry(value_kind="saving", estimated_value_wan=0.0)) == "估计价值 0 万元/年"
    assert value_line(entry(value_kind="cash_flow", estimated_value_wan=12)) == "缓缴约 12 万元"
    assert value_line(entry(value_kind="non_monetary")) == "非金额优惠"
    assert value_line(entry(value_kind="unquantified")) == "不估算金额"
    assert value_line(entry(value_kind="saving")) == "暂不能估算金额"
    assert source_line(entry()) == "徐委办〔2023〕37号 《徐州市2023年优化营商环境重点任务》第61项"
    national = entry(source_document="财政部 税务总局公告2023年第12号", source_task=None)
    assert source_line(national) == "财政部 税务总局公告2023年第12号"


def test_the_total_keeps_deferrals_apart() -> None:
    assert total_line({"estimated_value_wan": 0, "valued_policies": 0, "cash_flow_wan": 0}) == ""
    assert total_line({"estimated_value_wan": 17.46, "valued_policies": 2, "cash_flow_wan": 12.4}) == (
        "估计价值合计约 17.46 万元/年（2 项可估算）；另可缓缴约 12.4 万元（不计入合计）")
    assert total_line({"estimated_value_wan": 0, "valued_policies": 0, "cash_flow_wan": 3}) == (
        "另可缓缴约 3 万元（不计入合计）")


def test_value_changes_list_each_entry_whose_value_moved() -> None:
    old = {"package": [entry(policy_id="a", title="甲", value_kind="saving", estimated_value_wan=5.0),
                       entry(policy_id="b", title="乙", value_kind="saving", estimated_value_wan=2.0),
                       entry(policy_id="c", title="丙"),
                       entry(policy_id="d", title="丁", value_kind="cash_flow", estimated_value_wan=3.0)]}
    new = {"package": [entry(policy_id="a", title="甲", value_kind="saving", estimated_value_wan=10.0),
                       entry(policy_id="b", title="乙", value_kind="saving", estimated_value_wan=2.0),
                       entry(policy_id="e", title="戊", value_kind="saving"),
                       entry(policy_id="c", title="丙")]}
    assert value_changes(old, new) == [
        {"policy_id": "a", "title": "甲", "before": "估计价值 5 万元/年", "after": "估计价值 10 万元/年"},
        {"policy_id": "e", "title": "戊", "before": "不在套餐中", "after": "暂不能估算金额"},
        {"policy_id": "d", "title": "丁", "before": "缓缴约 3 万元", "after": "不在套餐中"},
    ]


def every_kind(state: ServiceState) -> MatchResult:
    """The answer for sample 01 with four constructed entries added, one of each value kind."""
    data = answer_of(state, sample(0)).model_dump(mode="json")
    base = data["package"][0]
    extra = [
        {"policy_id": "t-deferral", "title": "测试缓缴", "value_kind": "cash_flow", "estimated_value_wan": 12.4,
         "value_assumption": "按缓缴6个月估算。", "counted_in_total": False},
        {"policy_id": "t-price", "title": "测试价格扣除", "value_kind": "non_monetary", "estimated_value_wan": None,
         "value_assumption": "评审时报价扣除10%–20%。", "counted_in_total": False},
        {"policy_id": "t-unknown", "title": "测试缺字段", "value_kind": "saving", "estimated_value_wan": None,
         "value_assumption": "需要融资需求才能估算金额", "counted_in_total": False},
        {"policy_id": "t-national", "title": "测试国家税收优惠", "value_kind": "saving", "estimated_value_wan": 7.5,
         "value_assumption": "按应纳税所得额估算。", "counted_in_total": True, "source_task": None,
         "source_document": "财政部 税务总局公告2023年第12号"},
    ]
    for item in extra:
        data["package"].append({**copy.deepcopy(base), "exclusive_with": [], "exclusive_group": None, **item})
    summary = data["summary"]
    summary["estimated_value_wan"] = round(summary["estimated_value_wan"] + 7.5, 2)
    summary["valued_policies"] += 1
    summary["cash_flow_wan"] = 12.4
    return MatchResult.model_validate(data)


@pytest.mark.parametrize("console", [False, True], ids=["calculator", "console"])
def test_the_package_shows_every_kind_with_its_assumption_and_source(state: ServiceState, console: bool) -> None:
    result = every_kind(state)
    page = TEMPLATES.env.from_string('{% from "_package.html" import package %}{{ package(result, console) }}'
                                     ).render(result=result, console=console)
    text = shown(page)
    total = result.summary.estimated_value_wan
    assert f"估计价值合计约 {wan_text(total)} 万元/年（{result.summary.valued_policies} 项可估算）" in text
    assert "另可缓缴约 12.4 万元（不计入合计）" in text and HOW_ESTIMATED in text
    checks = {"t-deferral": ("缓缴约 12.4 万元", "怎么估算：按缓缴6个月估算。", "不是减免"),
              "t-price": ("非金额优惠", "优惠内容：评审时报价扣除10%–20%。"),
              "t-unknown": ("暂不能估算金额", "为何没有金额：需要融资需求才能估算金额"),
              "t-national": ("估计价值 7.5 万元/年", "来源：财政部 税务总局公告2023年第12号")}
    for policy_id, words in checks.items():
        item = shown(entry_html(page, policy_id))
        assert all(w in item for w in words), (policy_id, item)
    union = next(e for e in result.package if e.policy_id == UNION_REFUND)
    item = entry_html(page, UNION_REFUND)
    summary_line = shown(item[:item.index("</summary>")])
    assert f"估计价值 {wan_text(union.estimated_value_wan)} 万元/年" in summary_line  # on the one line
    assert f"怎么估算：{union.value_assumption}" in shown(item)
    assert "来源：徐委办〔2023〕37号 《徐州市2023年优化营商环境重点任务》第61项" in shown(item)
    assert 'class="value-line assumption"' in item  # the sentence in small print


def test_the_cli_report_shows_every_kind(state: ServiceState) -> None:
    text = render_match(every_kind(state))
    assert "金额：缓缴约 12.4 万元（暂缓缴纳，不是减免，不计入合计）" in text
    assert "金额：非金额优惠" in text and "优惠内容：评审时报价扣除10%–20%。" in text
    assert "金额：暂不能估算金额" in text and "为何没有金额：需要融资需求才能估算金额" in text
    assert "来源：财政部 税务总局公告2023年第12号" in text
    assert "另可缓缴约 12.4 万元（不计入合计）" in text


# ---- the forms --------------------------------------------------------------------------------------------------
def test_the_forms_read_the_new_fields() -> None:
    form = posted({**MONEY, "layoff_rate_pct": "３.２%", "taxable_income_wan": "1,280"})
    profile = profile_from_form(form, anonymous=True)
    assert profile.layoff_rate_pct == 3.2 and profile.taxable_income_wan == 1280
    assert profile.vat_filing_period == "quarterly" and profile.has_union is True
    assert profile.disabled_employees == 1 and isinstance(profile.disabled_employees, int)
    assert profile.rd_expense_wan == 160 and profile.deductible_input_vat_wan == 380
    assert profile.unemployment_insurance_paid_wan == 6.2


@pytest.mark.parametrize(("field", "value", "message"), [
    ("layoff_rate_pct", "120", "上年裁员率超出合理范围"),
    ("layoff_rate_pct", "-1", "上年裁员率不能小于0"),
    ("disabled_employees", "1.5", "安排残疾人就业人数应为整数"),
    ("taxable_income_wan", "三百", "年应纳税所得额应为数字"),
    ("rd_expense_wan", "-3", "上年研发费用不能小于0"),
    ("unemployment_insurance_paid_wan", "abc", "上年实际缴纳失业保险费应为数字"),
    ("deductible_input_vat_wan", "inf", "当年可抵扣进项税额应为有限的数字"),
    ("vat_filing_period", "yearly", "增值税申报期"),
    ("has_union", "maybe", "是否建立工会"),
])
def test_the_forms_name_a_bad_new_field_in_chinese(field: str, value: str, message: str) -> None:
    with pytest.raises(ProfileError) as caught:
        profile_from_form(posted({**MONEY, field: value}), anonymous=True)
    errors = dict(caught.value.errors)
    assert field in errors and message in errors[field], errors
    assert f"{field}（" not in errors[field]  # the label, not the field code


def test_the_calculator_form_asks_the_new_fields_with_their_labels_and_help(web: TestClient) -> None:
    page = web.get("/calculator").text
    for name in NEW_FIELDS:
        spec = FIELDS[name]
        assert f'id="f-{name}"' in page and spec.label in page and html.escape(spec.help) in page, name
    assert '<option value="quarterly"' in page and "按季申报" in page


def test_a_bad_new_field_is_named_on_the_calculator_page(web: TestClient, fresh_limiter: None) -> None:
    response = web.post("/calculator", data=form_of({**sample(0), **MONEY, "layoff_rate_pct": "120",
                                                     "disabled_employees": "0.5"}))
    assert response.status_code == 422
    summary = response.text[response.text.index('class="error-summary"'):]
    assert "上年裁员率超出合理范围" in summary and "安排残疾人就业人数应为整数" in summary
    assert 'href="#f-layoff_rate_pct"' in summary


# ---- the calculator and the console over the real catalog ---------------------------------------------------------
def test_the_calculator_shows_the_values_and_the_total(web: TestClient, client: TestClient, tokens: Tokens,
                                                       fresh_limiter: None) -> None:
    profile = {**sample(0), **MONEY}
    response = web.post("/calculator", data=form_of(profile))
    assert response.status_code == 200
    expected = client.post("/v1/match", json={"profile": profile}, headers=bearer(tokens.staff)).json()
    text = shown(response.text)
    summary = expected["summary"]
    assert summary["valued_policies"] >= 1
    total = f"估计价值合计约 {wan_text(summary['estimated_value_wan'])} 万元/年（{summary['valued_policies']} 项可估算）"
    assert total in text and HOW_ESTIMATED in text
    start = response.text.index('class="notice"')
    notice = shown(response.text[response.text.index(">", start) + 1:])
    assert notice.startswith(f"按您填写的信息，贵企业可享受 {len(expected['package'])} 项政策，"
                             f"估计价值合计约 {wan_text(summary['estimated_value_wan'])} 万元/年")
    for item in expected["package"]:
        line = value_line(item)
        if line:
            assert line in shown(entry_html(response.text, item["policy_id"])), item["policy_id"]
        assert f"来源：{source_line(item)}" in shown(entry_html(response.text, item["policy_id"]))


def test_the_calculator_compares_a_new_answer_with_its_last(web: TestClient, client: TestClient, tokens: Tokens,
                                                            fresh_limiter: None) -> None:
    first = {**sample(0), **MONEY, "annual_payroll_wan": 500}
    page = web.post("/calculator", data=form_of(first)).text
    previous = html.unescape(re.search(r'name="previous" value="([^"]*)"', page).group(1))
    assert "uscc" not in previous and "name" not in json.loads(previous)  # nothing identifying goes round
    assert "与上次计算相比" not in page
    second = {**first, "annual_payroll_wan": 1000}
    response = web.post("/calculator", data={**form_of(second), PREVIOUS: previous})
    assert response.status_code == 200
    old = client.post("/v1/match", json={"profile": first}, headers=bearer(tokens.staff)).json()
    new = client.post("/v1/match", json={"profile": second}, headers=bearer(tokens.staff)).json()
    before = next(e for e in old["package"] if e["policy_id"] == UNION_REFUND)["estimated_value_wan"]
    after = next(e for e in new["package"] if e["policy_id"] == UNION_REFUND)["estimated_value_wan"]
    assert after == pytest.approx(2 * before)
    section = response.text[response.text.index('id="whatif-result"'):]
    section = shown(section[:section.index("</section>")])
    assert "与上次计算相比" in section and "年工资总额：500万元 → 1000万元" in section
    assert f"小微企业工会经费全额返还：估计价值 {wan_text(before)} 万元/年 → 估计价值 {wan_text(after)} 万元/年" in section
    assert (f"估计价值合计 {wan_text(old['summary']['estimated_value_wan'])} → "
            f"{wan_text(new['summary']['estimated_value_wan'])} 万元/年") in section
    # an input error in between keeps the last answer to compare with
    wrong = web.post("/calculator", data={**form_of({**second, "layoff_rate_pct": "120"}), PREVIOUS: previous})
    assert wrong.status_code == 422
    assert html.unescape(re.search(r'name="previous" value="([^"]*)"', wrong.text).group(1)) == previous
    # the same profile again: nothing to compare; a tampered one: no comparison, no error
    again = web.post("/calculator", data={**form_of(second), PREVIOUS: previous_text(parse_profile(
        {**second, "uscc": "91320300000000000F", "name": "x"}))})
    assert again.status_code == 200 and 'id="whatif-result"' not in again.text
    for tampered in ("{not json", json.dumps({"employees": -1}), json.dumps({"uscc": "91320312MA1Q7E3K29"}),
                     json.dumps([1, 2]), "x" * 9000):
        response = web.post("/calculator", data={**form_of(second), PREVIOUS: tampered})
        assert response.status_code == 200 and 'id="whatif-result"' not in response.text, tampered[:40]


def test_previous_profile_checks_what_came_back() -> None:
    assert previous_profile({}) is None
    assert previous_profile({PREVIOUS: [json.dumps({"has_union": "yes"})]}) is None
    back = previous_profile({PREVIOUS: [json.dumps({"annual_payroll_wan": 620, "has_union": True})]})
    assert back is not None and back.annual_payroll_wan == 620 and back.has_union is True


def test_the_console_whatif_shows_values_before_and_after(web: TestClient, tokens: Tokens, state: ServiceState,
                                                          population: Population, client: TestClient) -> None:
    csrf = sign_in(web, tokens.staff)
    firm = population.firm_a  # sample 01: has a union, 年工资总额 620万元
    page = web.get(f"/console/enterprises/{firm.uscc}")
    stored_answer = client.get(f"/v1/enterprises/{firm.uscc}/package", headers=bearer(tokens.staff)).json()
    union_before = next(e for e in stored_answer["package"] if e["policy_id"] == UNION_REFUND)
    assert value_line(union_before) in shown(entry_html(page.text, UNION_REFUND))
    for name in NEW_FIELDS:  # the what-if form asks them too
        assert f'id="f-{name}"' in page.text
    changed = {**firm.profile, "annual_payroll_wan": 1000, "layoff_rate_pct": 2}
    response = web.post(f"/console/enterprises/{firm.uscc}/whatif", data={**form_of(changed), "csrf": csrf})
    assert response.status_code == 200
    new = client.post("/v1/match", json={"profile": changed}, headers=bearer(tokens.staff)).json()
    union_after = next(e for e in new["package"] if e["policy_id"] == UNION_REFUND)
    assert union_after["estimated_value_wan"] > union_before["estimated_value_wan"]
    section = response.text[response.text.index('id="whatif-result"'):]
    section = shown(section[:section.index("</section>")])
    assert "年工资总额：620万元 → 1000万元" in section and "上年裁员率：未填 → 2%" in section
    assert (f"小微企业工会经费全额返还：{value_line(union_before)} → {value_line(union_after)}") in section
    assert (f"估计价值合计 {wan_text(stored_answer['summary']['estimated_value_wan'])} → "
            f"{wan_text(new['summary']['estimated_value_wan'])} 万元/年") in section
    row = stored(state, firm.uscc)
    assert row is not None and row.profile["annual_payroll_wan"] == 620  # a what-if writes nothing


def test_saving_the_new_fields_from_the_console(web: TestClient, tokens: Tokens, state: ServiceState) -> None:
    from tests.console.test_console import new_firm

    csrf = sign_in(web, tokens.staff)
    firm = new_firm(state, 7301)
    response = web.post(f"/console/enterprises/{firm['uscc']}/save", data={**form_of({**firm, **MONEY}), "csrf": csrf},
                        follow_redirects=False)
    assert response.status_code == 303, response.text
    row = stored(state, firm["uscc"])
    assert row is not None and {k: row.profile[k] for k in NEW_FIELDS} == MONEY
    page = web.get(f"/console/enterprises/{firm['uscc']}").text
    assert "按季申报" in shown(page) and 'value="1.5"' in page  # the stored values shown and in the form
    assert make_uscc(7301, "91320311") == firm["uscc"]
