"""Merging what the sources say of a firm (profiles/merge.py, profiles/sources.yaml): precedence, newer wins
inside a rank, conflicts with their Chinese messages, per-code qualifications and flags."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from profiles.merge import aging_provenance, merge, provenance_on, same_value
from profiles.model import parse_profile
from profiles.sources import UnknownSource

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



def test_two_departments_disagreeing() -> None:
    # social insurance is authoritative for headcount; a tax file that carries one only fills a gap
    alone = merge({"tax": doc("2026-02-01", employees=35)})
    assert alone.profile == {"employees": 35} and alone.conflicts == []
    merged = merge({"social_insurance": doc("2025-12-31", employees=30), "tax": doc("2026-02-01", employees=35)})
    assert merged.profile == {"employees": 30}
    assert merged.conflicts[0]["message"] == "从业人员：人社（2025-12-31）记为30人，税务（2026-02-01）为35人；以人社为准，请核实"


def test_the_others_are_listed_by_rank_then_newest_and_the_order_of_the_documents_does_not_matter() -> None:
    docs = {"self": doc("2026-03-01", tax_credit_grade="A"), "hotline": doc("2026-05-01", tax_credit_grade="C"),
            "tax": doc("2025-04-01", tax_credit_grade="B")}
    merged = merge(docs)
    assert [o["source"] for o in merged.conflicts[0]["others"]] == ["hotline", "self"]
    assert merged.conflicts[0]["message"] == ("纳税信用等级：税务（2025-04-01）记为B级，热线坐席（2026-05-01）为C级，"
                                              "企业自报（2026-03-01）为A级；以税务为准，请核实")
    assert merge(dict(reversed(docs.items()))) == merged


def test_without_an_authority_the_newest_fills_and_a_same_day_tie_goes_to_the_hotline() -> None:
    newer = merge({"self": doc("2026-03-02", financing_need_wan=300), "hotline": doc("2026-03-01", financing_need_wan=200)})
    assert newer.profile == {"financing_need_wan": 300}
    assert newer.conflicts[0]["message"].endswith("以较新的企业自报为准，请核实")
    tie = merge({"self": doc("2026-03-01", financing_need_wan=300), "hotline": doc("2026-03-01", financing_need_wan=200)})
    assert tie.provenance["financing_need_wan"]["source"] == "hotline"


def test_a_null_value_says_nothing_and_every_value_needs_its_date() -> None:
    merged = merge({"tax": doc("2025-04-01", tax_credit_grade=None), "self": doc("2026-03-01", tax_credit_grade="A")})
    assert merged.profile == {"tax_credit_grade": "A"} and merged.conflicts == []
    with pytest.raises(ValueError, match="as_of"):
        merge({"tax": {"values": {"tax_credit_grade": "B"}, "as_of": {}}})
    with pytest.raises(UnknownSource):
        merge({"taxes": doc("2025-04-01", tax_credit_grade="B")})


def test_dated_certificates_keep_their_dates_and_different_dates_are_a_conflict() -> None:
    science = {"code": "high_tech", "valid_from": "2023-11-01", "valid_to": "2026-10-31"}
    mine = {"code": "high_tech", "valid_from": "2023-11-01", "valid_to": "2027-10-31"}
    merged = merge({"science": doc("2025-01-01", qualifications=[science]),
                    "self": doc("2026-03-01", qualifications=[mine])})
    assert merged.profile["qualifications"] == [science]
    assert merged.conflicts[0]["message"] == (
        "企业资质（高新技术企业）：科技（2025-01-01）记为有（2023-11-01至2026-10-31），"
        "企业自报（2026-03-01）为有（2023-11-01至2027-10-31）；以科技为准，请核实")
    plain = merge({"science": doc("2025-01-01", qualifications=[science]), "self": doc("2026-03-01", qualifications=["high_tech"])})
    assert plain.profile["qualifications"] == [science] and plain.conflicts == []  # a plain code agrees


def test_successive_certificates_of_one_code_are_all_kept() -> None:
    old = {"code": "high_tech", "valid_from": "2020-11-01", "valid_to": "2023-10-31"}
    new = {"code": "high_tech", "valid_from": "2023-11-01", "valid_to": "2026-10-31"}
    merged = merge({"science": doc("2024-01-01", qualifications=[old, new, "tech_sme"])})
    assert merged.profile["qualifications"] == [old, new, "tech_sme"]
    parse_profile({"uscc": USCC, "name": "x", **merged.profile})


def test_science_saying_none_removes_a_self_stated_high_tech_and_records_the_conflict() -> None:
    merged = merge({"science": doc("2025-01-01", qualifications=[]),
                    "self": doc("2026-03-01", qualifications=["high_tech", "little_giant"])})
    assert merged.profile["qualifications"] == ["little_giant"]
    assert [(c["code"], c["chosen"]["value"], c["others"][0]["value"]) for c in merged.conflicts] == [
        ("high_tech", [], ["high_tech"])]


def test_a_department_list_says_nothing_of_codes_it_does_not_give() -> None:
    merged = merge({"industry": doc("2025-05-01", qualifications=["specialized_sme"])})
    assert merged.profile["qualifications"] == ["specialized_sme"]
    assert "qualifications.high_tech" not in merged.provenance
    assert merged.provenance["qualifications.little_giant"] == {"source": "industry", "as_of": "2025-05-01"}


def test_provenance_on_a_day_and_the_dates_that_decide_what_matching_sees() -> None:
    merged = merge({"registration": doc("2020-01-01", name="徐州某某机械有限公司"),
                    "social_insurance": doc("2026-01-01", employees=40)})
    view = provenance_on(merged.provenance, dt.date(2026, 7, 3))  # 2026-01-01 + 183 days = 2026-07-03
    assert view["employees"] == {"source": "social_insurance", "source_label": "人社", "as_of": "2026-01-01",
                                 "stale": False}
    assert provenance_on(merged.provenance, dt.date(2026, 7, 4))["employees"]["stale"] is True
    assert view["name"]["stale"] is False
    assert aging_provenance(merged.provenance) == {"employees": "2026-01-01"}  # the name never ages
