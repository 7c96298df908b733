"""Package assembly: gates, near-miss gaps, questions, values — as a hotline operator reads them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from matching.package import Matcher
from profiles.features import derive
from profiles.model import parse_profile

AS_OF = dt.date(2024, 6, 1)
BASE: dict[str, Any] = {
    "uscc": "91110000600037341L", "name": "测试机械有限公司", "entity_type": "enterprise",
    "industry_code": "C3411", "established_on": "2015-01-01", "employees": 50,
    "annual_revenue_wan": 1500, "total_assets_wan": 2000, "ownership": "private",
    "listing_status": "unlisted", "tax_credit_grade": "B", "taxpayer_type": "general",
    "monthly_sales_wan": 125, "annual_payroll_wan": 300, "qualifications": [], "trade": [],
    "patents": 0, "trademarks": 0, "flags": [],
}


def _match(matcher: Matcher, query: str | None = None, **patch: Any) -> dict[str, Any]:
    profile = parse_profile({**BASE, **patch})
    return matcher.match(derive(profile, AS_OF), query=query).model_dump(mode="json")


def _ids(entries: list[dict[str, Any]]) -> set[str]:
    return {e["policy_id"] for e in entries}


def test_near_miss_names_the_gap_in_the_words_of_the_issue(matcher: Matcher) -> None:
    out = _match(matcher, "想把公司迁到上海", tax_credit_grade="M")
    gap = next(e for e in out["near_misses"] if e["policy_id"] == "tax-migration-cross-province-ab")
    assert gap["unmet"] == ["需纳税信用等级为A级或B级，当前为M级"]


def test_a_worse_state_is_never_suggested_as_a_gap(matcher: Matcher) -> None:
    out = _match(matcher, tax_credit_grade="M", listing_status="listed")
    assert "tax-credit-repair" not in _ids(out["near_misses"])  # would mean "get a C grade"
    assert "capital-market-training" not in _ids(out["near_misses"])  # would mean "de-list"
    assert "labor-dispute-mediation-aid" not in _ids(out["near_misses"])  # would mean "have a dispute"


def test_size_is_never_a_gap_a_firm_is_asked_to_close(matcher: Matcher) -> None:
    # issue 10: a medium firm is not told to become 小型或微型 (it used to be, for the union-fee refund)
    out = _match(matcher, employees=400, annual_revenue_wan=5000, has_union=True)
    assert out["enterprise"]["size"] == "medium"
    assert "union-fee-refund-small-micro" not in _ids(out["near_misses"])
    big = _match(matcher, employees=3200, annual_revenue_wan=860000, total_assets_wan=1250000)
    assert not any(g["field"] in ("size", "is_sme") for e in big["near_misses"] for g in e["gaps"])


def test_near_misses_carry_structured_gaps(matcher: Matcher) -> None:
    out = _match(matcher, "想把公司迁到上海", tax_credit_grade="M")
    entry = next(e for e in out["near_misses"] if e["policy_id"] == "tax-migration-cross-province-ab")
    assert entry["gaps"] == [{"field": "tax_credit_grade", "label": "纳税信用等级", "observed": "M级",
                              "needed": "A级或B级"}]
    assert {"source_task", "source_measure", "strength", "strength_label", "needs_review"} <= set(entry)


def test_a_qualification_is_suggested_only_where_the_profile_makes_it_plausible(matcher: Matcher) -> None:
    restaurant = _match(matcher, entity_type="individual_business", industry_code="H6210", employees=3,
                        annual_revenue_wan=25, total_assets_wan=10, taxpayer_type="small_scale", monthly_sales_wan=2)
    asked = {g["needed"] for e in restaurant["near_misses"] for g in e["gaps"]}
    assert not any(word in text for text in asked for word in ("博士后", "专精特新", "高新技术", "小巨人"))
    # a manufacturer with patents and a 高企 title may be told that 专精特新 is the missing step
    maker = _match(matcher, qualifications=["high_tech"], patents=3)
    gaps = [g for e in maker["near_misses"] for g in e["gaps"] if g["field"] == "qualifications"]
    assert gaps and all("专精特新" in g["needed"] or "科技型" in g["needed"] for g in gaps)


def test_on_trigger_policies_enter_the_package_only_when_triggered(matcher: Matcher) -> None:
    quiet = _match(matcher)
    assert "simplified-deregistration" not in _ids(quiet["package"])
    closing = _match(matcher, "生意做不下去了，想注销公司")
    assert "simplified-deregistration" in _ids(closing["package"])
    assert "simplified-deregistration" not in _ids(closing["available_on_request"])
    # the firm's own stated needs count as much as the operator's query
    assert "simplified-deregistration" in _ids(_match(matcher, needs="准备注销")["package"])


def test_unknown_fields_become_questions_not_silent_exclusions(matcher: Matcher) -> None:
    out = _match(matcher, industry_code="J6620", has_union=True)  # finance: size cannot be derived
    assert out["enterprise"]["size"] is None
    entry = next(e for e in out["possibly_eligible"] if e["policy_id"] == "union-fee-refund-small-micro")
    assert entry["missing"] == ["size"]
    assert entry["questions"] and entry["questions"][0].startswith("请问企业规模")
    ask = next(q for q in out["questions"] if q["field"] == "size")
    assert "union-fee-refund-small-micro" in ask["settles"]
    assert ask["ask_staff"].startswith("请问") and ask["ask_firm"].startswith("贵企业")
    assert "union-fee-refund-small-micro" not in _ids(out["package"])
    assert "union-fee-refund-small-micro" not in _ids(out["near_misses"])


def test_reasons_name_the_fields_and_values_that_decided(matcher: Matcher) -> None:
    out = _match(matcher, has_union=True)
    entry = next(e for e in out["package"] if e["policy_id"] == "union-fee-refund-small-micro")
    assert entry["reasons"][:2] == ["企业规模为小型或微型（当前：小型）", "市场主体类型为企业（当前：企业）"]
    estimate = matcher.catalog["union-fee-refund-small-micro"].benefit.estimate
    assert estimate is not None
    assert entry["estimated_value_wan"] == round(float(estimate.parsed.evaluate({"annual_payroll_wan": 300.0}, AS_OF)), 2)
    assert entry["estimated_value_wan"] > 0 and entry["value_assumption"] == estimate.render(AS_OF)
    assert entry["strength"] == "entitlement" and entry["strength_label"] == "符合条件即可享受"
    clause = entry["clauses"][0]
    assert clause == {"clause": "企业规模为小型或微型", "outcome": "passed", "field": "size",
                      "observed": "small", "threshold": ["small", "micro"]}


def test_value_is_null_when_its_input_is_unknown(matcher: Matcher) -> None:
    profile = {k: v for k, v in BASE.items() if k != "annual_payroll_wan"} | {"has_union": True}
    out = matcher.match(derive(parse_profile(profile), AS_OF)).model_dump(mode="json")
    entry = next(e for e in out["package"] if e["policy_id"] == "union-fee-refund-small-micro")
    # no number, and the assumption line says what is missing instead of an assumption about nothing
    assert entry["estimated_value_wan"] is None and entry["value_assumption"] == "需要年工资总额才能估算金额"
    assert not entry["counted_in_total"] and out["summary"]["estimated_value_wan"] == 0


def test_adverse_flags_open_remedial_policies(matcher: Matcher) -> None:
    out = _match(matcher, flags=["administrative_penalty", "unpaid_receivables"])
    assert {"credit-repair-guidance", "sme-overdue-payment-complaint"} <= _ids(out["package"])
