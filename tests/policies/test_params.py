"""Dated parameters: periods and their boundaries, the formula functions over them (with exact oracles for the
column path), parameter thresholds in rules, and what happens to a policy once a parameter it reads has ended."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matching.package import estimate_value, review_fields, value_fields
from matching.rules import ELIGIBLE, RuleEngine
from policies.formula import FormulaError, parse_formula
from policies.params import (
    Bracket,
    ParameterError,
    Parameters,
    load_parameters,
    parameters,
    parse_parameter,
    using,
)
from policies.rules import RuleError, parse_rule
from policies.schema import Policy
from profiles.columns import ProfileBatch

D = dt.date


def _param(values: dict[Any, Any], unit: str = "rate", **extra: Any) -> Any:
    return parse_parameter("t.p", {"description": "测试参数", "unit": unit, "values": values, **extra})


def test_every_parameter_file_loads_and_every_value_has_a_reference() -> None:
    table = load_parameters()
    assert len(table) >= 30
    for param in table.values():
        assert param.description and param.periods
        for period in param.periods:
            assert period.reference.strip()
            if param.kind == "assumption":
                assert "本系统假设" in period.reference, param.name  # an assumption says it is one


def test_a_value_is_in_force_from_its_day_to_the_day_before_the_next() -> None:
    p = _param({D(2023, 1, 1): {"value": 0.6, "reference": "甲"}, D(2024, 1, 1): {"value": 0.5, "reference": "乙"},
                D(2026, 1, 1): None})
    assert p.at(D(2022, 12, 31)) is None  # the day before the first day: nothing (never extended backwards)
    assert p.at(D(2023, 1, 1)) == 0.6  # the first day
    assert p.at(D(2023, 12, 31)) == 0.6 and p.at(D(2024, 1, 1)) == 0.5
    assert p.at(D(2025, 12, 31)) == 0.5  # the last day
    assert p.at(D(2026, 1, 1)) is None  # the day after: ended, not silently extended
    assert p.last_day == D(2025, 12, 31) and p.first_day == D(2023, 1, 1)
    assert p.latest(D(2030, 1, 1)).value == 0.5 and p.latest(D(2030, 1, 1)).reference == "乙"
    assert p.show(D(2023, 6, 1)) == "60%"


@pytest.mark.parametrize(("values", "unit", "message"), [
    ({"2023-13-01": {"value": 1, "reference": "x"}}, "万元", "生效日期“2023-13-01”应为 YYYY-MM-DD"),
    ({D(2023, 1, 1): {"value": 1}}, "万元", "缺少 reference"),
    ({D(2023, 1, 1): {"value": 2, "reference": "x"}}, "rate", "比例（rate）应在0到1之间"),
    ({D(2023, 1, 1): None}, "rate", "第一个日期不能是 null"),
    ({D(2023, 1, 1): {"value": "十", "reference": "x"}}, "万元", "取值应为数字"),
    ({D(2023, 1, 1): {"brackets": [{"above": 3, "rate": 0.1}], "reference": "x"}}, "万元", "起点须从0开始"),
    ({D(2023, 1, 1): {"value": 1, "brackets": [], "reference": "x"}}, "万元", "须有且只有 value 或 brackets"),
    ({D(2023, 1, 1): {"value": 1, "reference": "x"}}, "元/月", "不是可用的单位"),
])
def test_a_bad_parameter_is_refused_in_chinese_naming_it(values: dict[Any, Any], unit: str, message: str) -> None:
    with pytest.raises(ParameterError) as err:
        _param(values, unit)
    assert message in str(err.value) and "t.p" in str(err.value)


# ---- formulas ---------------------------------------------------------------------------------------------------
def marginal_reference(amount: float, scale: tuple[Bracket, ...]) -> float:
    """The tax bureau's way: the top bracket reached, its rate on the whole amount minus the quick deduction
    (速算扣除数), the deduction derived bracket by bracket."""
    deduction, rate = 0.0, scale[0].rate
    for lower, upper in zip(scale, scale[1:], strict=False):
        if amount <= upper.above:
            break
        deduction += upper.above * (upper.rate - lower.rate)
        rate = upper.rate
    return amount * rate - deduction


SCALE = (Bracket(0, 0.05), Bracket(3, 0.10), Bracket(9, 0.20), Bracket(30, 0.30), Bracket(50, 0.35))


def test_marginal_tax_follows_the_business_income_table() -> None:
    # 经营所得税率表二: 8万元 → 3万×5% + 5万×10% = 0.65万元; 100万元 → 0.15+0.6+4.2+6+17.5 = 28.45万元
    from policies.formula import marginal

    assert marginal(8.0, SCALE) == pytest.approx(0.65)
    assert marginal(100.0, SCALE) == pytest.approx(28.45)
    # the quick-deduction form the tax bureau uses (速算扣除数 0/0.15/1.05/4.05/6.55万元) agrees
    assert marginal(40.0, SCALE) == pytest.approx(40 * 0.30 - 4.05)
    assert parameters()["iit.business_income_scale"].at(D(2024, 1, 1)) == SCALE


@given(st.lists(st.floats(0, 5000, allow_nan=False), min_size=1, max_size=40))
def test_marginal_over_a_column_equals_the_scalar_reference(amounts: list[float]) -> None:
    from policies.formula import marginal

    column = marginal(np.array(amounts), SCALE)
    for got, amount in zip(column, amounts, strict=True):
        assert got == pytest.approx(marginal_reference(amount, SCALE), abs=1e-9)


FORMULAS = [
    "annual_payroll_wan * union.fee_rate * (1 - union.grassroots_retention_share)",
    "unemployment_insurance_paid_wan * where(is_sme, unemployment.refund_rate_sme, unemployment.refund_rate_large)",
    "marginal(min(taxable_income_wan, iit.individual_business_relief_cap_wan), iit.business_income_scale)"
    " * iit.individual_business_relief_share",
    "max(employees * disability.quota_rate - disabled_employees, 0) * annual_payroll_wan / employees",
]
value = st.one_of(st.none(), st.floats(0, 1e5, allow_nan=False))


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(FORMULAS), st.lists(st.tuples(value, value, value, st.sampled_from([None, True, False])),
                                          min_size=1, max_size=12),
       st.sampled_from([D(2022, 12, 31), D(2023, 1, 1), D(2025, 12, 31), D(2026, 1, 1), D(2026, 11, 30)]))
def test_a_formula_over_columns_equals_it_row_by_row(source: str, rows: list[tuple[Any, ...]], as_of: dt.date) -> None:
    """The batch evaluates formulas over whole columns (bool fields as codes 1/0/-1, unknown numbers NaN); the
    package one firm at a time (None for unknown): the exact oracle of the fast path."""
    formula = parse_formula(source)
    numeric = [f for f in formula.fields if f not in ("is_sme",)]
    names = (numeric + ["x", "y", "z"])[:3]
    env_rows = [{n: r[i] for i, n in enumerate(names)} | {"is_sme": r[3]} for r in rows]
    columns: dict[str, Any] = {n: np.array([np.nan if e[n] is None else e[n] for e in env_rows]) for n in names}
    columns["is_sme"] = np.array([-1 if e["is_sme"] is None else int(e["is_sme"]) for e in env_rows], dtype=np.int8)
    got = np.broadcast_to(np.asarray(formula.evaluate(columns, as_of), dtype=np.float64), (len(rows),))
    for g, env in zip(got, env_rows, strict=True):
        want = float(np.asarray(formula.evaluate(env, as_of)))
        assert (math.isnan(g) and math.isnan(want)) or g == pytest.approx(want), (source, env)


def test_where_is_unknown_when_its_flag_is_unknown_and_a_lapsed_parameter_gives_no_number() -> None:
    f = parse_formula(FORMULAS[1])
    assert f.evaluate({"unemployment_insurance_paid_wan": 10, "is_sme": True}, D(2024, 6, 1)) == pytest.approx(6.0)
    assert f.evaluate({"unemployment_insurance_paid_wan": 10, "is_sme": False}, D(2024, 6, 1)) == pytest.approx(3.0)
    assert math.isnan(f.evaluate({"unemployment_insurance_paid_wan": 10, "is_sme": None}, D(2024, 6, 1)))
    assert math.isnan(f.evaluate({"unemployment_insurance_paid_wan": 10, "is_sme": True}, D(2026, 1, 1)))
    with pytest.raises(ValueError, match="须指定评估日期"):
        f.evaluate({"unemployment_insurance_paid_wan": 10, "is_sme": True})


@pytest.mark.parametrize(("source", "message"), [
    ("annual_payroll_wan * union.fee_rat", "未知参数“union.fee_rat”，是否应为“union.fee_rate”？"),
    ("annual_payroll_wan * iit.business_income_scale", "是税率表，只能用在 marginal"),
    ("marginal(taxable_income_wan, union.fee_rate)", "不是税率表"),
    ("where(employees, 1, 2)", "是数值字段"),
    ("has_union * 2", "只能作为 where(…) 的第一个参数"),
    ("where(is_sme, 1)", "需要三个参数"),
    ("employees.real * 2", "未知参数“employees.real”"),
    ("(employees + 1).real", "不允许使用属性访问"),
])
def test_a_bad_formula_names_what_is_wrong_in_chinese(source: str, message: str) -> None:
    with pytest.raises(FormulaError) as err:
        parse_formula(source)
    assert message in str(err.value)


# ---- rules ------------------------------------------------------------------------------------------------------
def test_a_rule_threshold_may_name_a_parameter_and_is_checked() -> None:
    rule = parse_rule({"field": "monthly_sales_wan", "le": {"param": "vat.small_scale_exemption_monthly_wan"}})
    assert str(rule.value) == "vat.small_scale_exemption_monthly_wan"  # type: ignore[union-attr]
    with pytest.raises(RuleError, match="未知参数"):
        parse_rule({"field": "monthly_sales_wan", "le": {"param": "vat.nothing"}})
    with pytest.raises(RuleError, match="税率表"):
        parse_rule({"field": "taxable_income_wan", "le": {"param": "iit.business_income_scale"}})
    with pytest.raises(RuleError, match="应为数字，或"):
        parse_rule({"field": "monthly_sales_wan", "le": {"value": 10}})


def _policy(**over: Any) -> Policy:
    data: dict[str, Any] = {
        "id": "test-dated", "version": 1, "status": "published", "kind": "policy", "strength": "entitlement",
        "title": "测试：按参数判断", "summary": "测试", "text": "测试", "category": "tax_fee", "benefit_type": "refund",
        "source": {"task_no": 61, "section": "测试"}, "lead_departments": ["测试"], "how_to_apply": "测试",
        "effective_from": "2020-01-01",
        "benefit": {"description": "测试", "estimate": {
            "formula": "unemployment_insurance_paid_wan * where(is_sme, unemployment.refund_rate_sme, "
                       "unemployment.refund_rate_large)",
            "assumption": "按中小微企业{unemployment.refund_rate_sme}估算。"}},
        "eligibility": {"field": "layoff_rate_pct", "le": {"param": "unemployment.max_layoff_rate_pct"}},
    }
    data.update(over)
    return Policy.model_validate(data)


RECORD = {"unemployment_insurance_paid_wan": 10.0, "is_sme": True, "layoff_rate_pct": 3.0}


@pytest.mark.parametrize(("day", "active", "value"), [
    (D(2022, 12, 31), False, None),  # the day before its parameters' first day: not offered
    (D(2023, 1, 1), True, 6.0),  # the first day
    (D(2025, 12, 31), True, 6.0),  # the last day of the last notice
    (D(2026, 1, 1), False, None),  # the day after: withdrawn
])
def test_withdrawn_after_its_parameters_end(day: dt.date, active: bool, value: float | None) -> None:
    policy = _policy()
    assert policy.params == ("unemployment.max_layoff_rate_pct", "unemployment.refund_rate_sme",
                             "unemployment.refund_rate_large")
    assert policy.is_active(day) is active and not policy.lapsed(day)
    assert estimate_value(policy, RECORD, day) == value if active else True


@pytest.mark.parametrize(("day", "lapsed"), [(D(2025, 12, 31), False), (D(2026, 1, 1), True),
                                             (D(2026, 11, 30), True)])
def test_pending_notice_keeps_it_shown_but_never_values_it_on_last_rates(day: dt.date, lapsed: bool) -> None:
    policy = _policy(lapse="pending_notice")
    assert policy.is_active(day) and policy.lapsed(day) is lapsed
    review = review_fields(policy, day)
    if lapsed:
        assert estimate_value(policy, RECORD, day) is None
        assert review["needs_review"] and review["review_note"].startswith(
            "现行文件执行至2025年12月31日，延续与否以主管部门公布为准")
        assert value_fields(policy, None, day)["value_assumption"].endswith("暂不估算金额。")
    else:
        assert estimate_value(policy, RECORD, day) == 6.0
        assert value_fields(policy, 6.0, day)["value_assumption"] == "按中小微企业60%估算。"
        assert not review["needs_review"]


def test_the_engine_compares_with_the_threshold_in_force_on_the_day() -> None:
    """A threshold that changes between periods: a firm at 12万元 a month is under the 15万 of one period and
    over the 10万 of the next; the engine (and its explanation) follows the as-of day."""
    base = load_parameters()
    table = Parameters({**{n: base[n] for n in base}, "vat.small_scale_exemption_monthly_wan": parse_parameter(
        "vat.small_scale_exemption_monthly_wan", {"description": "免税标准", "unit": "万元", "values": {
            D(2021, 4, 1): {"value": 15, "reference": "测试甲"}, D(2023, 1, 1): {"value": 10, "reference": "测试乙"}}})})
    with using(table):
        policy = _policy(eligibility={"field": "monthly_sales_wan",
                                      "le": {"param": "vat.small_scale_exemption_monthly_wan"}},
                         benefit={"description": "测试"})
        engine = RuleEngine([policy])
        for day, want in ((D(2022, 12, 31), ELIGIBLE), (D(2023, 1, 1), 0)):
            batch = ProfileBatch.from_records([{"monthly_sales_wan": 12.0}]).with_derived(day)
            result = engine.evaluate(batch, day)
            assert int(result.status[0, 0]) == want
            assert result.compiled[0].rule.value == (15.0 if want else 10.0)  # type: ignore[union-attr]
