"""Value estimates (issue 13): every valued policy's number, its dated parameters' boundaries, and its properties.

- A golden scenario (tests/scenarios/<policy>.yaml, ``value_wan`` worked by hand in a comment) for every policy
  whose estimate has a formula.
- As-of boundaries for every parameter period a policy reads: the day before a period begins, its first day, its
  last day and the day after — offered or not, lapsed with its note, valued or null — through
  ``Matcher.match`` and ``matching.package.estimate_value``.
- Hypothesis: each value is monotone (non-decreasing) in its driving field, never negative, and null when an
  input it reads is unknown.
- The national layer: every entry names its announcement, quotes it, says where it was read, and its ``text``
  is the announcement's own wording.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matching.package import Matcher, estimate_value, value_fields
from policies.loader import Catalog
from policies.params import parameters
from policies.schema import Policy
from profiles.features import derive
from profiles.model import parse_profile
from tests.scenario_loader import _base, load_cases

DAY = dt.timedelta(days=1)
PENDING = "延续与否以主管部门公布为准"

#: For every valued policy: the field that drives its value, a profile (over the scenario base) that is eligible,
#: and a day on which its parameters are in force.
VALUED: dict[str, tuple[str, dict[str, Any], dt.date]] = {
    "vat-small-scale-exemption": (
        "monthly_sales_wan", {"taxpayer_type": "small_scale", "monthly_sales_wan": 8, "employees": 8,
                              "annual_revenue_wan": 96}, dt.date(2024, 6, 1)),
    "vat-small-scale-reduced-rate": (
        "monthly_sales_wan", {"taxpayer_type": "small_scale", "monthly_sales_wan": 20, "employees": 10,
                              "annual_revenue_wan": 240}, dt.date(2024, 6, 1)),
    "cit-small-low-profit-enterprise": ("taxable_income_wan", {}, dt.date(2024, 6, 1)),
    "cit-high-tech-enterprise-rate": ("taxable_income_wan", {"qualifications": ["high_tech"]}, dt.date(2024, 6, 1)),
    "iit-individual-business-income-halving": (
        "taxable_income_wan", {"entity_type": "individual_business", "industry_code": "F5221", "employees": 3,
                               "annual_revenue_wan": 60, "total_assets_wan": 20, "taxable_income_wan": 8},
        dt.date(2024, 6, 1)),
    "rd-expense-extra-deduction": ("rd_expense_wan", {}, dt.date(2024, 6, 1)),
    "vat-advanced-manufacturing-credit": (
        "deductible_input_vat_wan", {"qualifications": ["high_tech"]}, dt.date(2024, 6, 1)),
    "unemployment-insurance-job-retention-refund": (
        "unemployment_insurance_paid_wan", {"unemployment_insurance_paid_wan": 10}, dt.date(2025, 6, 1)),
    "disability-employment-levy-exemption-small": (
        "annual_payroll_wan", {"employees": 20, "annual_revenue_wan": 500, "annual_payroll_wan": 100},
        dt.date(2024, 6, 1)),
    "guarantee-fee-cap-small-micro-agri": ("financing_need_wan", {"financing_need_wan": 300}, dt.date(2024, 6, 1)),
    "union-fee-refund-small-micro": ("annual_payroll_wan", {"has_union": True}, dt.date(2024, 6, 1)),
    "union-fee-deferral-small-scale": (
        "annual_payroll_wan", {"taxpayer_type": "small_scale", "monthly_sales_wan": 8, "employees": 8,
                               "annual_revenue_wan": 96, "annual_payroll_wan": 40}, dt.date(2024, 6, 1)),
    "union-startup-loan": ("financing_need_wan", {"financing_need_wan": 100}, dt.date(2023, 6, 1)),
}
#: The national and provincial layer of issue 13 (source.document an announcement, not the plan).
NATIONAL = (
    "vat-small-scale-exemption", "vat-small-scale-reduced-rate", "cit-small-low-profit-enterprise",
    "cit-high-tech-enterprise-rate", "iit-individual-business-income-halving", "six-taxes-two-fees-halving",
    "rd-expense-extra-deduction", "vat-advanced-manufacturing-credit", "unemployment-insurance-job-retention-refund",
    "disability-employment-levy-exemption-small",
)


def _profile(changes: dict[str, Any]) -> dict[str, Any]:
    base, _ = _base()
    # founded long before any parameter period tested here (the oldest begins 2007-05-01)
    profile = {**copy.deepcopy(base), "established_on": "2000-01-01", **copy.deepcopy(changes)}
    if isinstance(profile.get("established_on"), dt.date):
        profile["established_on"] = profile["established_on"].isoformat()
    return profile


def _record(changes: dict[str, Any], as_of: dt.date) -> dict[str, Any]:
    return dict(derive(parse_profile(_profile(changes)), as_of).record)


def _formula_policies(catalog: Catalog) -> list[Policy]:
    return [p for p in catalog.policies.values()
            if p.benefit is not None and p.benefit.estimate is not None and p.benefit.estimate.parsed is not None]


# ---- coverage of this file and of the golden scenarios ------------------------------------------------------

def test_every_valued_policy_is_listed_here_and_has_a_golden_scenario(catalog: Catalog) -> None:
    valued = {p.id for p in _formula_policies(catalog)}
    assert valued == set(VALUED), (valued - set(VALUED), set(VALUED) - valued)
    golden = {c.policy for c in load_cases() if c.value_wan is not None}
    assert valued <= golden, valued - golden


def test_the_listed_profiles_are_eligible_and_valued(catalog: Catalog, matcher: Matcher) -> None:
    for pid, (field, changes, as_of) in VALUED.items():
        policy = catalog[pid]
        record = _record(changes, as_of)
        assert record.get(field) is not None, (pid, field)
        assert field in policy.benefit.estimate.parsed.fields, (pid, field)  # type: ignore[union-attr]
        value = estimate_value(policy, record, as_of)
        assert value is not None and value > 0, (pid, value)
        entry = _package_entry(matcher, pid, changes, as_of)
        assert entry is not None, pid
        assert entry["estimated_value_wan"] == pytest.approx(value), pid
        assert entry["source_document"] == policy.source_document


def test_every_assumption_is_one_chinese_sentence(catalog: Catalog) -> None:
    for policy in catalog.policies.values():
        est = policy.benefit.estimate if policy.benefit else None
        if est is None:
            continue
        text = est.render(dt.date(2024, 6, 1))
        assert text.endswith("。") and text.count("。") == 1, (policy.id, text)
        assert "{" not in text, (policy.id, text)  # every placeholder names a parameter and is rendered


def test_kinds_say_what_the_number_is(catalog: Catalog) -> None:
    kinds = {p.id: p.benefit.estimate.kind for p in catalog.policies.values()  # type: ignore[union-attr]
             if p.benefit is not None and p.benefit.estimate is not None}
    assert kinds["union-fee-deferral-small-scale"] == "cash_flow"  # a deferral is no saving
    assert kinds["procurement-small-micro-price-deduction"] == "non_monetary"  # a price advantage, no money
    assert kinds["six-taxes-two-fees-halving"] == "unquantified"  # the profile holds no such tax amounts
    record = _record({"taxpayer_type": "small_scale", "monthly_sales_wan": 8}, dt.date(2024, 6, 1))
    for pid in ("procurement-small-micro-price-deduction", "six-taxes-two-fees-halving"):
        policy = catalog[pid]
        assert estimate_value(policy, record, dt.date(2024, 6, 1)) is None
        shown = value_fields(policy, None, dt.date(2024, 6, 1))["value_assumption"]
        assert shown and "{" not in shown
    price = value_fields(catalog["procurement-small-micro-price-deduction"], None, dt.date(2024, 6, 1))
    assert "10%–20%" in price["value_assumption"] and "不折算为金额" in price["value_assumption"]
    guarantee = value_fields(catalog["guarantee-fee-cap-small-micro-agri"], 3.0, dt.date(2024, 6, 1))
    assert "2%" in guarantee["value_assumption"] and "本系统假设" in guarantee["value_assumption"]


def test_exclusive_groups_pair_the_reliefs_that_are_not_stacked(catalog: Catalog) -> None:
    group = {p.id: p.benefit.exclusive_group for p in catalog.policies.values() if p.benefit}  # type: ignore[union-attr]
    assert group["vat-small-scale-exemption"] == group["vat-small-scale-reduced-rate"] is not None
    assert group["cit-small-low-profit-enterprise"] == group["cit-high-tech-enterprise-rate"] is not None
    assert group["union-fee-refund-small-micro"] == group["union-fee-deferral-small-scale"] is not None


# ---- the national layer -------------------------------------------------------------------------------------

@pytest.mark.parametrize("pid", NATIONAL)
def test_national_entries_name_quote_and_locate_their_announcement(catalog: Catalog, pid: str) -> None:
    policy = catalog[pid]
    src = policy.source
    assert src.national and src.task_no is None and src.measure_no is None
    assert src.quote and src.read_at and src.related_tasks
    assert "未对照官方原文" in src.read_at  # every text here was read in a reposted copy
    squashed = src.quote.replace(" ", "")
    for sentence in filter(None, (s.strip("，；、 ") for s in policy.text.replace(" ", "").split("。"))):
        assert sentence in squashed, (pid, sentence)  # text is the announcement's own wording
    assert policy.reviewed_on == dt.date(2026, 11, 30) and policy.review_by == dt.date(2027, 5, 31)
    assert policy.questions and policy.lead_departments


# ---- as-of boundaries ---------------------------------------------------------------------------------------

def _package_entry(matcher: Matcher, pid: str, changes: dict[str, Any], as_of: dt.date) -> dict[str, Any] | None:
    portrait = derive(parse_profile(_profile(changes)), as_of)
    answer = matcher.match(portrait, query=" ".join(matcher.catalog[pid].triggers)).model_dump(mode="json")
    return next((e for e in answer["package"] if e["policy_id"] == pid), None)


def _window(policy: Policy) -> tuple[dt.date, dt.date | None]:
    """The first day every parameter it reads is in force (and the entry is effective), and the last day before
    the first of them ends (None: none ends)."""
    table = parameters()
    start = max([policy.effective_from, *(table[n].first_day for n in policy.params)])
    ends = [d for n in policy.params if (d := table[n].last_day) is not None]
    return start, (min(ends) if ends else None)


def _boundaries(policy: Policy) -> list[dt.date]:
    """Every period boundary of every parameter it reads: the day before and the first day of each period, the
    last day and the day after."""
    days: set[dt.date] = set()
    for name in policy.params:
        for period in parameters()[name].periods:
            days |= {period.start - DAY, period.start}
            if period.end is not None:
                days |= {period.end, period.end + DAY}
    return sorted(days)


@pytest.mark.parametrize("pid", sorted(VALUED))
def test_every_parameter_period_boundary(catalog: Catalog, matcher: Matcher, pid: str) -> None:
    """On each boundary day the entry is offered exactly inside its window (and, under ``lapse: pending_notice``,
    after it with the note and no value), valued inside the window and null outside."""
    policy = catalog[pid]
    field, changes, _ = VALUED[pid]
    start, end = _window(policy)
    assert policy.params, pid
    for day in _boundaries(policy):
        inside = start <= day and (end is None or day <= end)
        after = end is not None and day > end
        record = _record(changes, day)
        value = estimate_value(policy, record, day)
        entry = _package_entry(matcher, pid, changes, day)
        if inside:
            assert value is not None, (pid, day)
            assert entry is not None and entry["estimated_value_wan"] == pytest.approx(value), (pid, day)
            assert not (entry["review_note"] or "").count(PENDING), (pid, day)
        elif after and policy.lapse == "pending_notice":
            assert value is None, (pid, day)
            assert entry is not None and entry["estimated_value_wan"] is None, (pid, day)
            assert PENDING in (entry["review_note"] or ""), (pid, day)
            assert PENDING in (entry["value_assumption"] or ""), (pid, day)
        else:  # before the window, or after it when the entry is withdrawn: not offered at all
            assert entry is None, (pid, day)
            assert not policy.is_active(day), (pid, day)


#: Hand-checked boundary days: (policy, day, offered, value in 万元 or None, pending note shown).
EXPLICIT = [
    ("vat-small-scale-exemption", dt.date(2022, 12, 31), False, None, False),
    ("vat-small-scale-exemption", dt.date(2023, 1, 1), True, 2.88, False),
    ("vat-small-scale-exemption", dt.date(2025, 12, 31), True, 2.88, False),  # 《增值税暂行条例》 3%
    ("vat-small-scale-exemption", dt.date(2026, 1, 1), True, 2.88, False),  # 《增值税法》第十一条 3%
    ("vat-small-scale-exemption", dt.date(2027, 12, 31), True, 2.88, False),
    ("vat-small-scale-exemption", dt.date(2028, 1, 1), False, None, False),
    ("cit-small-low-profit-enterprise", dt.date(2022, 12, 31), False, None, False),
    ("cit-small-low-profit-enterprise", dt.date(2023, 1, 1), True, 24.0, False),
    ("cit-small-low-profit-enterprise", dt.date(2027, 12, 31), True, 24.0, False),
    ("cit-small-low-profit-enterprise", dt.date(2028, 1, 1), False, None, False),
    ("cit-high-tech-enterprise-rate", dt.date(2007, 12, 31), False, None, False),
    ("cit-high-tech-enterprise-rate", dt.date(2008, 1, 1), True, 12.0, False),
    ("rd-expense-extra-deduction", dt.date(2022, 12, 31), False, None, False),
    ("rd-expense-extra-deduction", dt.date(2023, 1, 1), True, 7.5, False),
    ("rd-expense-extra-deduction", dt.date(2030, 1, 1), True, 7.5, False),  # no end date in 2023年第7号
    ("unemployment-insurance-job-retention-refund", dt.date(2022, 12, 31), False, None, False),
    ("unemployment-insurance-job-retention-refund", dt.date(2023, 1, 1), True, 6.0, False),
    ("unemployment-insurance-job-retention-refund", dt.date(2023, 12, 31), True, 6.0, False),
    ("unemployment-insurance-job-retention-refund", dt.date(2024, 1, 1), True, 6.0, False),
    ("unemployment-insurance-job-retention-refund", dt.date(2025, 12, 31), True, 6.0, False),
    ("unemployment-insurance-job-retention-refund", dt.date(2026, 1, 1), True, None, True),  # no 2026 notice found
    ("disability-employment-levy-exemption-small", dt.date(2019, 12, 31), False, None, False),
    ("disability-employment-levy-exemption-small", dt.date(2020, 1, 1), True, 1.35, False),
    ("disability-employment-levy-exemption-small", dt.date(2022, 12, 31), True, 1.35, False),
    ("disability-employment-levy-exemption-small", dt.date(2023, 1, 1), True, 1.35, False),
    ("disability-employment-levy-exemption-small", dt.date(2027, 12, 31), True, 1.35, False),
    ("disability-employment-levy-exemption-small", dt.date(2028, 1, 1), False, None, False),
    ("union-startup-loan", dt.date(2023, 4, 18), False, None, False),
    ("union-startup-loan", dt.date(2023, 4, 19), True, 1.75, False),
    ("union-startup-loan", dt.date(2023, 12, 31), True, 1.75, False),
    ("union-startup-loan", dt.date(2024, 1, 1), True, None, True),  # the plan's 2023 figures: pending a notice
    ("guarantee-fee-cap-small-micro-agri", dt.date(2023, 4, 18), False, None, False),
    ("guarantee-fee-cap-small-micro-agri", dt.date(2023, 4, 19), True, 3.0, False),
]


@pytest.mark.parametrize(("pid", "day", "offered", "value", "pending"), EXPLICIT,
                         ids=[f"{p}@{d}" for p, d, *_ in EXPLICIT])
def test_hand_checked_boundary_days(catalog: Catalog, matcher: Matcher, pid: str, day: dt.date, offered: bool,
                                    value: float | None, pending: bool) -> None:
    policy = catalog[pid]
    changes = VALUED[pid][1]
    assert policy.is_active(day) == offered
    entry = _package_entry(matcher, pid, changes, day)
    assert (entry is not None) == offered
    got = estimate_value(policy, _record(changes, day), day) if offered else None
    assert got == (pytest.approx(value) if value is not None else None)
    if entry is not None:
        assert entry["estimated_value_wan"] == got
        assert (PENDING in (entry["review_note"] or "")) == pending
        assert policy.lapsed(day) == pending


# ---- properties ---------------------------------------------------------------------------------------------

AMOUNTS = st.floats(min_value=0, max_value=1e5, allow_nan=False, allow_infinity=False)
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
_RECORDS: dict[str, dict[str, Any]] = {}


def _valued_record(pid: str) -> dict[str, Any]:
    if pid not in _RECORDS:
        _, changes, as_of = VALUED[pid]
        _RECORDS[pid] = _record(changes, as_of)
    return dict(_RECORDS[pid])


@pytest.mark.parametrize("pid", sorted(VALUED))
@PROPERTY
@given(a=AMOUNTS, b=AMOUNTS)
def test_value_is_monotone_in_its_driving_field_and_never_negative(catalog: Catalog, pid: str, a: float,
                                                                   b: float) -> None:
    policy = catalog[pid]
    field, _, as_of = VALUED[pid]
    low, high = sorted((a, b))
    record = _valued_record(pid)
    values = []
    for x in (low, high):
        record[field] = x
        value = estimate_value(policy, record, as_of)
        assert value is not None and value >= 0, (pid, x, value)
        raw = float(policy.benefit.estimate.parsed.evaluate(record, as_of))  # type: ignore[union-attr]
        assert raw >= -1e-9, (pid, x, raw)  # the formula itself, before the floor at 0
        values.append(value)
    assert values[0] <= values[1] + 1e-9, (pid, low, high, values)


@pytest.mark.parametrize("pid", sorted(VALUED))
@PROPERTY
@given(x=AMOUNTS)
def test_value_is_null_when_an_input_is_unknown(catalog: Catalog, pid: str, x: float) -> None:
    policy = catalog[pid]
    field, _, as_of = VALUED[pid]
    formula = policy.benefit.estimate.parsed  # type: ignore[union-attr]
    for unknown in formula.fields:
        record = _valued_record(pid)
        record[field] = x
        record[unknown] = None
        assert estimate_value(policy, record, as_of) is None, (pid, unknown)
        assert math.isnan(float(formula.evaluate(record, as_of))), (pid, unknown)
