"""Issue 10: answers a person can act on — properties over a synthetic population (hypothesis).

Near-miss gaps never name a fixed field and never ask a firm to shrink; every list is capped and every
entry names its source; only entitlements and selective programmes are offered unasked; questions are
asked once each and rare situations last; an answer after an entry's review date says so."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matching import gaps, offering
from matching.package import RARE_QUESTION_FIELDS, REVIEW_NOTE, Matcher
from policies.schema import PLAN_DOCUMENT
from profiles.features import derive
from profiles.model import parse_profile
from profiles.synth import synthesize

POP = synthesize(600, seed=42)
AS_OF = dt.date(2024, 6, 1)
NEEDS = [None, "想贷款", "准备注销", "被拖欠货款", "想上市", "出口通关", "投标", "招不到人"]
#: fields a firm cannot change by its own action (issue 10, item 4)
FIXED = {"size", "is_sme", "industry_section", "industry_division", "industry_group", "size_category",
         "entity_type", "region", "age_years", "ownership", "trade"}
LISTS = ("package", "possibly_eligible", "near_misses", "available_on_request")
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _answer(matcher: Matcher, row: int, query: str | None, as_of: dt.date = AS_OF) -> tuple[dict[str, Any], Any]:
    portrait = derive(parse_profile(POP.record(row)), as_of)
    return matcher.match(portrait, query=query).model_dump(mode="json"), portrait


@SETTINGS
@given(st.integers(0, len(POP) - 1), st.sampled_from(NEEDS))
def test_gaps_never_name_a_fixed_field_nor_ask_a_decrease(matcher: Matcher, row: int, query: str | None) -> None:
    out, portrait = _answer(matcher, row, query)
    assert len(out["near_misses"]) <= gaps.table().limit
    for entry in out["near_misses"]:
        assert entry["gaps"], entry["policy_id"]
        for gap in entry["gaps"]:
            assert gap["field"] not in FIXED, (entry["policy_id"], gap)
            assert gap["field"] in gaps.table().movable
            assert not gap["needed"].startswith(("少于", "不超过", "低于")), gap  # never shrink
            assert gap["label"] and gap["observed"] and gap["needed"]
        # and closing the gaps really is an improvement on the firm's own value
        for gap in entry["gaps"]:
            observed = portrait.record.get(gap["field"])
            assert observed is not None, gap


@SETTINGS
@given(st.integers(0, len(POP) - 1), st.sampled_from(NEEDS))
def test_lists_are_capped_and_every_entry_names_its_source(matcher: Matcher, row: int, query: str | None) -> None:
    out, _ = _answer(matcher, row, query)
    assert len(out["available_on_request"]) <= offering.table().limit
    for name in LISTS:
        for entry in out[name]:
            assert "source_task" in entry and "source_measure" in entry, (name, entry["policy_id"])
            assert entry["source_document"], (name, entry["policy_id"])
            if entry["source_document"] == PLAN_DOCUMENT:  # the plan's: one task or one measure
                assert (entry["source_task"] is None) != (entry["source_measure"] is None)
            else:  # a national or provincial announcement: neither
                assert entry["source_task"] is None and entry["source_measure"] is None
            # in review on AS_OF: only an entry whose documents have ended (pending a notice) is marked
            lapse = matcher.catalog[entry["policy_id"]].lapse_note(AS_OF)
            assert entry["needs_review"] is bool(lapse) and entry["review_note"] == lapse
    for entry in out["available_on_request"]:
        assert entry["reason"].endswith(("可用", "可申请")), entry
    listed = [e["policy_id"] for name in LISTS for e in out[name]]
    assert len(listed) == len(set(listed))  # no policy in two lists


@SETTINGS
@given(st.integers(0, len(POP) - 1))
def test_unasked_the_package_holds_entitlements_and_selective_programmes_and_situations(matcher: Matcher,
                                                                                         row: int) -> None:
    record = {k: v for k, v in POP.record(row).items() if k not in ("needs",)}
    portrait = derive(parse_profile(record), AS_OF)
    out = matcher.match(portrait).model_dump(mode="json")
    for entry in out["package"]:
        policy = matcher.catalog[entry["policy_id"]]
        if entry["strength"] in ("entitlement", "selective") and policy.delivery == "proactive":
            assert entry["strength_label"] in ("符合条件即可享受", "可申报（择优）")
            continue
        # a procedure or channel offered unasked: the firm's situation calls for it
        assert offering.situation(policy, portrait.record) is not None, entry["policy_id"]


@SETTINGS
@given(st.integers(0, len(POP) - 1), st.sampled_from(NEEDS))
def test_questions_are_asked_once_rare_ones_last(matcher: Matcher, row: int, query: str | None) -> None:
    out, _ = _answer(matcher, row, query)
    fields = [q["field"] for q in out["questions"]]
    assert len(fields) == len(set(fields))
    rare = [f in RARE_QUESTION_FIELDS for f in fields]
    assert rare == sorted(rare)  # never a rare situation before a common question
    common = [len(q["settles"]) for q in out["questions"] if q["field"] not in RARE_QUESTION_FIELDS]
    assert common == sorted(common, reverse=True)
    settled = {pid for q in out["questions"] for pid in q["settles"]}
    assert settled == {e["policy_id"] for e in out["possibly_eligible"] if e["missing"]}
    for q in out["questions"]:
        assert q["ask_staff"].startswith("请问") and q["ask_firm"].startswith("贵企业")


def test_an_answer_after_the_review_date_says_the_entry_needs_review(matcher: Matcher) -> None:
    late = max((p.review_by for p in matcher.catalog if p.review_by), default=None)
    assert late is not None, "the catalog gives review dates"
    out, _ = _answer(matcher, 3, "想贷款", as_of=late + dt.timedelta(days=1))
    entries = [e for name in LISTS for e in out[name]]
    assert entries
    for entry in entries:
        policy, day = matcher.catalog[entry["policy_id"]], late + dt.timedelta(days=1)
        due = policy.needs_review(day)
        notes = [n for n in (policy.lapse_note(day), REVIEW_NOTE if due else None) if n]
        assert entry["needs_review"] is bool(notes) and entry["review_note"] == ("；".join(notes) or None)
    assert any(e["needs_review"] for e in entries)


RESTAURANT = {"uscc": "92320303MA1N5RT4C2", "name": "示例小饭馆", "entity_type": "individual_business",
              "industry_code": "H6210", "established_on": "2020-03-01", "employees": 3, "annual_revenue_wan": 25,
              "taxpayer_type": "small_scale", "monthly_sales_wan": 2, "qualifications": [], "trade": [],
              "patents": 0, "trademarks": 0, "flags": []}


def test_a_three_person_restaurant_gets_a_short_list_that_fits_it(matcher: Matcher) -> None:
    out = matcher.match(derive(parse_profile(RESTAURANT), AS_OF)).model_dump(mode="json")
    listed = {e["policy_id"]: matcher.catalog[e["policy_id"]] for e in out["available_on_request"]}
    assert 0 < len(listed) <= 12
    for policy in listed.values():
        assert policy.category != "construction", policy.id
        assert not {"外籍人才", "外国人工作许可", "数据交易", "数据要素"} & set(policy.tags), policy.id
    # 3 people and 25万元 are micro in every industry: the size is derived without asking
    assert out["enterprise"]["size"] == "micro"
    asked = " ".join(g["needed"] for e in out["near_misses"] for g in e["gaps"])
    assert "博士后" not in asked and "专精特新" not in asked
    assert not out["questions"] or out["questions"][0]["field"] not in RARE_QUESTION_FIELDS


def test_a_construction_firm_is_told_why_construction_approvals_are_listed(matcher: Matcher) -> None:
    firm = RESTAURANT | {"uscc": "91320382MA21KQ5W7R", "entity_type": "enterprise", "industry_code": "E4710",
                         "employees": 180, "annual_revenue_wan": 9800, "total_assets_wan": 7200}
    out = matcher.match(derive(parse_profile(firm), AS_OF)).model_dump(mode="json")
    construction = [e for e in out["available_on_request"]
                    if matcher.catalog[e["policy_id"]].category == "construction"]
    assert construction and all(e["reason"].startswith("贵企业属于建筑业") for e in construction)
