"""Issue 14 through the Matcher: a value older than its field's maximum age is unknown (the policy becomes
possibly eligible, asked again with 请核实… naming the old value, its source and date); a dated qualification
counts through its valid_to and not a day later; a certificate ending within 90 days adds a reminder."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from matching.package import Matcher
from matching.results import MatchResult
from profiles.features import derive
from profiles.model import parse_profile
from profiles.sources import rules

BASE: dict[str, Any] = {
    "uscc": "91110000600037341L", "name": "测试机械有限公司", "entity_type": "enterprise",
    "industry_code": "C3411", "established_on": "2015-01-01", "employees": 20,
    "annual_revenue_wan": 1500, "total_assets_wan": 2000, "ownership": "private",
    "listing_status": "unlisted", "tax_credit_grade": "B", "taxpayer_type": "general",
    "monthly_sales_wan": 125, "annual_payroll_wan": 300, "qualifications": [], "trade": [],
    "patents": 0, "trademarks": 0, "flags": [], "taxable_income_wan": 120,
}
LEVY = "disability-employment-levy-exemption-small"  # an entitlement for ≤ 30 staff: reads employees
HIGH_TECH = "cit-high-tech-enterprise-rate"  # an entitlement for a 高新技术企业 in its certificate's term
OBSERVED = dt.date(2025, 3, 1)
VALID_TO = dt.date(2026, 10, 31)


def _match(matcher: Matcher, as_of: dt.date, provenance: dict[str, Any] | None = None,
           **patch: Any) -> MatchResult:
    return matcher.match(derive(parse_profile({**BASE, **patch}), as_of, provenance=provenance))


def _ids(entries: Any) -> set[str]:
    return {e.policy_id for e in entries}


def _headcount_from(day: dt.date) -> dict[str, Any]:
    return {"employees": {"source": "social_insurance", "as_of": day.isoformat()},
            "name": {"source": "registration", "as_of": "2015-01-01"}}


def test_a_value_is_fresh_through_its_maximum_age_and_stale_the_day_after(matcher: Matcher) -> None:
    age = rules().max_age_days("employees")
    assert age is not None
    last_fresh = OBSERVED + dt.timedelta(days=age)
    fresh = _match(matcher, last_fresh, _headcount_from(OBSERVED))
    assert LEVY in _ids(fresh.package) and not fresh.stale

    stale = _match(matcher, last_fresh + dt.timedelta(days=1), _headcount_from(OBSERVED))
    assert LEVY not in _ids(stale.package)
    entry = next(e for e in stale.possibly_eligible if e.policy_id == LEVY)
    assert entry.missing == ["employees"]
    assert [(s.field, s.value, s.source, s.source_label, s.as_of) for s in stale.stale] == [
        ("employees", 20, "social_insurance", "人社", OBSERVED.isoformat())]
    question = next(q for q in stale.questions if q.field == "employees")
    assert question.ask_staff.startswith("请核实从业人员：上次记录为20人（人社，2025-03-01），已超过")
    assert question.ask_firm.startswith("请核实贵企业的从业人员：上次记录为20人")
    assert LEVY in question.settles
    assert entry.questions == [question.ask_staff]


def test_a_legacy_profile_without_provenance_never_ages(matcher: Matcher) -> None:
    old = _match(matcher, OBSERVED + dt.timedelta(days=400))
    assert LEVY in _ids(old.package) and not old.stale


def test_the_question_behind_a_derived_field_says_which_input_is_old(matcher: Matcher) -> None:
    """A stale headcount behind the size: the size question asks to re-check it, then asks as before."""
    out = _match(matcher, OBSERVED + dt.timedelta(days=400), _headcount_from(OBSERVED), annual_revenue_wan=None,
                 total_assets_wan=None)
    size = [q for q in out.questions if q.field == "size"]
    if size:  # (a catalog that asks about size for this firm)
        assert size[0].ask_staff.startswith("请核实从业人员：上次记录为20人")


def _certificate(**dates: str) -> dict[str, Any]:
    return {"qualifications": [{"code": "high_tech", **dates}]}


@pytest.mark.parametrize(("as_of", "counts"), [(VALID_TO, True), (VALID_TO + dt.timedelta(days=1), False)])
def test_a_qualification_counts_through_valid_to_and_not_on_the_day_after(matcher: Matcher, as_of: dt.date,
                                                                          counts: bool) -> None:
    out = _match(matcher, as_of, **_certificate(valid_from="2023-11-01", valid_to=VALID_TO.isoformat()))
    assert (HIGH_TECH in _ids(out.package)) is counts
    assert HIGH_TECH not in _ids(out.possibly_eligible)  # expired is known: not a high-tech firm, not unknown
    assert ("high_tech" in out.enterprise["qualifications"]) is counts


def test_a_certificate_not_yet_valid_does_not_count(matcher: Matcher) -> None:
    out = _match(matcher, dt.date(2023, 10, 31), **_certificate(valid_from="2023-11-01", valid_to="2026-10-31"))
    assert HIGH_TECH not in _ids(out.package)


@pytest.mark.parametrize(("days_before", "reminded"), [(91, False), (90, True), (1, True), (0, True)])
def test_a_certificate_ending_within_90_days_adds_a_reminder(matcher: Matcher, days_before: int,
                                                             reminded: bool) -> None:
    as_of = VALID_TO - dt.timedelta(days=days_before)
    out = _match(matcher, as_of, **_certificate(valid_from="2023-11-01", valid_to=VALID_TO.isoformat()))
    assert HIGH_TECH in _ids(out.package)
    if not reminded:
        assert out.reminders == []
        return
    assert [r.model_dump() for r in out.reminders] == [{
        "kind": "qualification_expiring", "code": "high_tech", "label": "高新技术企业", "valid_to": "2026-10-31",
        "days_left": days_before, "message": "高新技术企业证书将于2026-10-31到期，请及时复审"}]


def test_no_reminder_once_the_certificate_has_ended(matcher: Matcher) -> None:
    out = _match(matcher, VALID_TO + dt.timedelta(days=1), **_certificate(valid_to=VALID_TO.isoformat()))
    assert out.reminders == []


def test_the_json_answer_carries_reminders_and_stale_after_the_existing_keys(matcher: Matcher) -> None:
    out = _match(matcher, VALID_TO - dt.timedelta(days=10), _headcount_from(OBSERVED),
                 **_certificate(valid_to=VALID_TO.isoformat())).model_dump(mode="json")
    keys = list(out)
    assert keys[:9] == ["enterprise", "package", "possibly_eligible", "near_misses", "available_on_request",
                        "questions", "summary", "catalog_version", "model_id"]
    assert keys[9:] == ["reminders", "stale"]
    assert out["reminders"][0]["message"] == "高新技术企业证书将于2026-10-31到期，请及时复审"
    assert out["stale"][0]["field"] == "employees" and out["stale"][0]["as_of"] == "2025-03-01"


def test_the_batch_reading_of_stored_rows_is_as_seen_row_by_row() -> None:
    """matching.freshness.seen_rows (the nightly batch's and the push's reading, which asks as_seen once per
    distinct provenance, fields and qualifications) gives for every row exactly what as_seen gives."""
    import json
    import random

    from matching.freshness import seen_rows
    from profiles.merge import as_seen
    from profiles.synth import synthesize

    rnd = random.Random(14)
    as_of = dt.date(2026, 11, 30)
    aging = ["employees", "tax_credit_grade", "taxpayer_type", "monthly_sales_wan", "annual_revenue_wan", "name",
             "flags", "annual_payroll_wan"]
    sources = {"employees": "social_insurance", "annual_payroll_wan": "social_insurance", "name": "registration",
               "flags": "registration"}
    shared = [{f: {"source": sources.get(f, "tax"), "as_of": (as_of - dt.timedelta(days=d)).isoformat()}
               for f in aging} for d in (30, 200, 500)]
    docs, provs = [], []
    for i, record in enumerate(synthesize(600, 15).records()):
        record = {k: v for k, v in record.items() if v is not None and rnd.random() > 0.1 or k in ("uscc", "name")}
        if i % 3 == 0:
            end = as_of + dt.timedelta(days=rnd.randint(-30, 200))
            record["qualifications"] = [{"code": "high_tech", "valid_from": "2023-11-01", "valid_to": end.isoformat()},
                                        *(["tech_sme"] if i % 2 else [])]
        if i % 4 == 0:
            prov = None
        elif i % 4 == 1:
            prov = shared[i % 3]
        else:
            prov = {f: {"source": sources.get(f, "tax"),
                        "as_of": (as_of - dt.timedelta(days=rnd.randint(0, 700))).isoformat()}
                    for f in rnd.sample(aging, 4)}
        docs.append(json.dumps(record, ensure_ascii=False))
        provs.append(None if prov is None else json.dumps(prov))
    rows = seen_rows(docs, provs, as_of)
    for doc, prov, got, change, expiring in zip(docs, provs, rows.documents, rows.next_change, rows.expiring,
                                                strict=True):
        want = as_seen(json.loads(doc), json.loads(prov) if prov else None, as_of)
        assert json.loads(got) == want.profile
        assert expiring == want.expiring
        expected = None if want.next_change is None else float((want.next_change - dt.date(1970, 1, 1)).days)
        assert (change != change and expected is None) or change == expected


def test_the_text_report_shows_reminders_and_stale_values(matcher: Matcher) -> None:
    from service.cli.report import render_match

    certificate = {"code": "high_tech", "valid_from": "2023-11-01", "valid_to": VALID_TO.isoformat()}
    as_of = VALID_TO - dt.timedelta(days=30)
    result = _match(matcher, as_of, _headcount_from(OBSERVED), qualifications=[certificate])
    text = render_match(result)
    assert "高新技术企业证书将于2026-10-31到期，请及时复审" in text
    assert "数据已过时、按未知处理（请核实）：从业人员 20人（人社，2025-03-01）" in text
    assert "已过时" not in render_match(_match(matcher, as_of))
