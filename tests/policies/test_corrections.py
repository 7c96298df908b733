"""The catalog corrections of issue 10, and the strength rules every entry must keep.

Each correction is checked against the rule engine's reference evaluator on concrete profiles (the golden
scenarios in tests/scenarios/ cover the same entries through the vectorised engine and the package).
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from typing import Any

import pytest

from matching import reference
from matching.package import estimate_value
from policies.loader import Catalog
from policies.schema import Policy
from profiles.features import derive
from profiles.model import parse_profile
from tests.scenario_loader import _base

AS_OF = dt.date(2024, 6, 1)
NOT_PROMISES = ("推动", "鼓励", "倡导", "力争")


def _outcome(policy: Policy, **changes: Any) -> str:
    base, _ = _base()
    profile = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None:
            profile.pop(key, None)
        else:
            profile[key] = value
    portrait = derive(parse_profile(profile), AS_OF)
    return reference.outcome(policy.rule_at(AS_OF), portrait.record)


def _record(**changes: Any) -> dict[str, Any]:
    base, _ = _base()
    profile = {**copy.deepcopy(base), **changes}
    return derive(parse_profile(profile), AS_OF).record


# ---- 1. tax-credit-repair: repairing deductions is open at every grade ---------------------------------------

def test_tax_credit_repair_is_open_at_every_grade(catalog: Catalog) -> None:
    policy = catalog["tax-credit-repair"]
    for grade in ("A", "B", "M", "C", "D"):
        assert _outcome(policy, tax_credit_grade=grade) == "eligible", grade
    assert _outcome(policy, tax_credit_grade=None) == "eligible"  # the grade does not decide
    assert "tax_credit_grade" not in str(policy.eligibility)
    assert "不限于C级、D级" in policy.benefit.description  # type: ignore[union-attr]
    assert "所有纳税人" in policy.summary and "探索" in policy.summary  # the plan only 探索建立 the reminder
    assert policy.strength == "procedure" and policy.delivery == "on_trigger" and policy.version >= 2


# ---- 2. labor-dispute-mediation-aid: what the employer gets, not the employee's legal aid ---------------------

def test_labor_dispute_entry_offers_the_employer_mediation_not_legal_aid(catalog: Catalog) -> None:
    policy = catalog["labor-dispute-mediation-aid"]
    assert policy.strength == "procedure" and policy.delivery == "on_trigger"
    assert "调解" in policy.title and "法律援助" not in policy.title
    assert "法律援助" not in policy.tags
    # every mention of legal aid says it is the employees' (工会为职工 / 面向职工), never the firm's benefit
    for text in (policy.summary, policy.benefit.description, policy.how_to_apply):  # type: ignore[union-attr]
        for m in re.finditer("法律援助", text):
            window = text[max(0, m.start() - 8): m.end() + 12]
            assert "职工" in window, window
    # an employer with staff can use it when a dispute arises, whether or not a dispute is on file yet
    assert _outcome(policy, flags=["labor_dispute"]) == "eligible"
    assert _outcome(policy) == "eligible"
    assert _outcome(policy, entity_type="individual_business", industry_code="F5221", employees=0,
                    annual_revenue_wan=30, total_assets_wan=10) == "ineligible"


# ---- 3. sme-telecom-fee-reduction: 倡导/鼓励 is not an entitlement, and is never pushed -------------------------

def test_telecom_fee_reduction_is_a_commitment_never_offered(catalog: Catalog) -> None:
    entry = catalog["sme-telecom-fee-reduction"]
    assert entry.kind == "commitment" and not entry.offered
    assert entry.id not in catalog.policies and entry.id not in {p.id for p in catalog}
    assert entry.strength is entry.benefit is entry.eligibility is entry.benefit_type is None
    assert "倡导" in entry.text and "鼓励" in entry.text
    assert "不是企业可直接申领" in entry.summary
    assert entry.questions and entry.lead_departments and "营业厅" in entry.how_to_apply


def test_no_entitlement_rests_on_a_verb_that_is_not_a_promise(catalog: Catalog) -> None:
    for policy in catalog.policies.values():
        if policy.strength == "entitlement":
            assert not any(verb in policy.text for verb in NOT_PROMISES), (policy.id, policy.text)


# ---- 4. union-fee-deferral-small-scale: today's VAT threshold (10万元/月), no 个体工商户 -------------------------

def test_union_fee_deferral_uses_the_current_vat_threshold_and_excludes_individual_businesses(catalog: Catalog) -> None:
    policy = catalog["union-fee-deferral-small-scale"]
    small_scale = dict(taxpayer_type="small_scale", employees=10, annual_revenue_wan=120)
    assert _outcome(policy, monthly_sales_wan=10, **small_scale) == "eligible"
    assert _outcome(policy, monthly_sales_wan=10.5, **small_scale) == "ineligible"
    assert _outcome(policy, monthly_sales_wan=15, **small_scale) == "ineligible"  # the plan's outdated 15万
    assert _outcome(policy, monthly_sales_wan=5, entity_type="individual_business", industry_code="F5221",
                    taxpayer_type="small_scale", employees=3, annual_revenue_wan=60,
                    total_assets_wan=20) == "ineligible"
    assert "未超过15万元" in policy.text  # the plan is still quoted verbatim …
    assert "10万元" in policy.summary and "10万元" in policy.benefit.description  # type: ignore[union-attr]
    assert "15万" not in policy.how_to_apply  # … but nobody is told to apply at 15万
    assert policy.version >= 2


# ---- 5. union-fee-refund-small-micro: only where the firm has a union, valued at the increment --------------

def test_union_fee_refund_needs_a_union(catalog: Catalog) -> None:
    policy = catalog["union-fee-refund-small-micro"]
    assert _outcome(policy, has_union=True) == "eligible"
    assert _outcome(policy, has_union=False) == "ineligible"
    assert _outcome(policy) == "possibly_eligible"  # absent = unknown: asked, never silently dropped
    assert policy.version >= 2


def test_union_fee_refund_is_valued_at_the_increment_over_what_the_union_keeps(catalog: Catalog) -> None:
    policy = catalog["union-fee-refund-small-micro"]
    estimate = policy.benefit.estimate  # type: ignore[union-attr]
    assert estimate is not None
    assert estimate_value(policy, _record(annual_payroll_wan=300, has_union=True), AS_OF) == pytest.approx(2.4)
    assert estimate_value(policy, _record(annual_payroll_wan=1000, has_union=True), AS_OF) == pytest.approx(8.0)
    # the full 2% is no longer claimed as the firm's gain
    assert estimate_value(policy, _record(annual_payroll_wan=300, has_union=True), AS_OF) < 300 * 0.02
    # one Chinese sentence naming the retention share it rests on, and saying it could not be verified
    assumption = estimate.render(AS_OF)  # the parameters shown as in force that day
    assert "2%" in assumption and "60%" in assumption and "未核实" in assumption
    assert assumption.count("。") == 1 and assumption.endswith("。")


# ---- rules every entry keeps --------------------------------------------------------------------------------

def test_strength_and_delivery_agree(catalog: Catalog) -> None:
    """Entitlements and selective programmes are pushed; procedures and channels wait for a trigger."""
    for policy in catalog.policies.values():
        assert policy.strength is not None, policy.id
        want = "proactive" if policy.strength in ("entitlement", "selective") else "on_trigger"
        assert policy.delivery == want, (policy.id, policy.strength, policy.delivery)
        if want == "on_trigger":
            assert policy.triggers, policy.id


def test_every_entry_carries_review_dates(catalog: Catalog) -> None:
    for entry in catalog.all_entries():
        assert entry.reviewed_on is not None and entry.review_by is not None, entry.id
        assert entry.reviewed_on < entry.review_by, entry.id


def test_year_targets_are_marked_and_said(catalog: Catalog) -> None:
    """Wording that ties a target to 2023 (力争2023年…) marks the entry and says so in the summary."""
    for entry in catalog.all_entries():
        if "力争2023年" in entry.text or "2023年底前" in entry.text:
            assert entry.target_year == 2023, entry.id
        if entry.target_year is not None:
            assert f"{entry.target_year}年" in entry.summary, entry.id


def test_commitments_and_plan_work_are_never_offered_and_carry_questions(catalog: Catalog) -> None:
    entries = [e for e in catalog.all_entries() if e.kind != "policy"]
    assert entries
    for entry in entries:
        assert not entry.offered and entry.id not in catalog.policies
        assert 3 <= len(entry.questions) <= 6, entry.id
        assert entry.lead_departments and entry.how_to_apply
