"""Merging what the sources say of a firm (profiles/merge.py, profiles/sources.yaml): precedence, newer wins
inside a rank, conflicts with their Chinese messages, per-code qualifications and flags."""

from __future__ import annotations

from typing import Any

from profiles.merge import merge, same_value
from profiles.model import parse_profile

USCC = "91110000600037341L"


def doc(as_of: str, **values: Any) -> dict[str, Any]:
    return {"values": values, "as_of": {name: as_of for name in values}}


def test_an_authoritative_source_wins_over_a_newer_self_statement_and_the_disagreement_is_a_conflict() -> None:
    merged = merge({"tax": doc("2025-04-01", tax_credit_grade="B"), "self": doc("2026-03-01", tax_credit_grade="A")})
    assert merged.profile == {"tax_credit_grade": "B"}
    assert merged.provenance["tax_credit_grade"] == {"source": "tax", "as_of": "2025-04-01"}
    [conflict] = merged.conflicts
    assert conflict["field"] == "tax_credit_grade" and conflict["label"] == "纳税信用等级"
    assert conflict["chosen"] == {"source": "tax", "source_label": "税务", "as_of": "2025-04-01", "value": "B"}
    assert conflict["others"] == [{"source": "self", "source_label": "企业自报", "as_of": "2026-03-01", "value": "A"}]
    assert conflict["message"] == "纳税信用等级：税务（2025-04-01）记为B级，企业自报（2026-03-01）为A级；以税务为准，请核实"


def test_self_fills_a_gap_and_agreement_is_no_conflict() -> None:
    merged = merge({"tax": doc("2025-04-01", tax_credit_grade="B"),
                    "self": doc("2026-03-01", tax_credit_grade="B", employees=12)})
    assert merged.profile == {"employees": 12, "tax_credit_grade": "B"}
    assert merged.provenance["employees"] == {"source": "self", "as_of": "2026-03-01"}
    assert merged.conflicts == []


def test_inside_a_rank_the_newer_statement_wins() -> None:
    older = merge({"tax": doc("2025-05-31", rd_expense_wan=80.0), "science": doc("2025-09-01", rd_expense_wan=95.0)})
    assert older.profile["rd_expense_wan"] == 95.0 and older.provenance["rd_expense_wan"]["source"] == "science"
    assert older.conflicts[0]["message"].endswith("以较新的科技为准，请核实")


def test_numbers_agree_within_a_relative_tolerance() -> None:
    assert same_value(1200.0, 1200.0000000001) and not same_value(1200.0, 1200.01)
    assert same_value(["exporter", "importer"], ["importer", "exporter"])
    merged = merge({"tax": doc("2025-04-01", annual_revenue_wan=1200.0),
                    "self": doc("2026-03-01", annual_revenue_wan=1200.0000000001)})
    assert merged.conflicts == []


def test_qualifications_merge_per_code_and_a_department_list_is_complete_for_its_codes() -> None:
    dated = {"code": "high_tech", "valid_from": "2023-11-01", "valid_to": "2026-10-31"}
    merged = merge({
        "science": doc("2025-01-01", qualifications=[dated]),
        "self": doc("2026-03-01", uscc=USCC, name="x", qualifications=["high_tech", "tech_sme", "specialized_sme"]),
    })
    # science: high_tech (with its dates), no tech_sme; specialized_sme is industry's, which said nothing: self fills
    assert merged.profile["qualifications"] == [dated, "specialized_sme"]
    assert merged.provenance["qualifications.high_tech"] == {"source": "science", "as_of": "2025-01-01"}
    assert merged.provenance["qualifications.specialized_sme"] == {"source": "self", "as_of": "2026-03-01"}
    assert merged.provenance["qualifications"] == {"source": "self", "as_of": "2026-03-01"}
    [conflict] = merged.conflicts
    assert conflict["code"] == "tech_sme"
    assert conflict["message"] == ("企业资质（科技型中小企业）：科技（2025-01-01）记为无，企业自报（2026-03-01）为有；"
                                   "以科技为准，请核实")
    parse_profile(merged.profile)  # the merged profile is a valid profile


def test_flags_the_register_does_not_know_come_from_the_firm() -> None:
    merged = merge({"registration": doc("2025-06-01", flags=[]),
                    "self": doc("2026-03-01", flags=["in_difficulty", "abnormal_operation"])})
    assert merged.profile["flags"] == ["in_difficulty"]
    assert [c["code"] for c in merged.conflicts] == ["abnormal_operation"]

