"""Near misses a firm can act on (issue 10, item 4): qualifications only where they are plausible, and never
as a detour around a blocker the firm cannot move (matching/data/gaps.yaml)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matching import gaps
from matching.package import Matcher
from policies.rules import parse_rule
from profiles.features import derive
from profiles.model import parse_profile
from profiles.synth import synthesize
from tests.matching.test_package import _ids, _match

SAMPLES = Path(__file__).resolve().parents[2] / "profiles" / "samples"
POP = synthesize(600, seed=7)
AS_OF = dt.date(2024, 6, 1)
SPECIALIZED = ("专精特新", "小巨人")


def _asked(out: dict[str, Any]) -> list[str]:
    return [g["needed"] for e in out["near_misses"] for g in e["gaps"]]


def test_a_young_micro_startup_is_not_asked_to_become_specialized(matcher: Matcher) -> None:
    raw = json.loads((SAMPLES / "02-micro-software-startup.json").read_text(encoding="utf-8"))
    today = dt.date(2026, 11, 30)
    out = matcher.match(derive(parse_profile(raw, as_of=today), today)).model_dump(mode="json")
    assert not any(word in text for text in _asked(out) for word in SPECIALIZED), _asked(out)


def test_a_qualification_offered_as_a_detour_needs_hard_evidence(matcher: Matcher) -> None:
    # sme-upgrade-hundred-firms: 中小型 + 科技型, or 专精特新. A micro firm fails the first branch on its size
    # (fixed); 专精特新 is then a detour, offered only with patents or a 高企 title
    micro = {"industry_code": "I6510", "employees": 7, "annual_revenue_wan": 80, "total_assets_wan": 60,
             "qualifications": ["tech_sme"], "patents": 0, "trademarks": 0}
    assert "sme-upgrade-hundred-firms" not in _ids(_match(matcher, **micro)["near_misses"])
    with_patent = _match(matcher, **{**micro, "patents": 2})
    entry = next(e for e in with_patent["near_misses"] if e["policy_id"] == "sme-upgrade-hundred-firms")
    assert entry["gaps"][0]["field"] == "qualifications" and "专精特新" in entry["gaps"][0]["needed"]
    # too young for 专精特新 (≥ 2 years in the niche), whatever the evidence
    young = _match(matcher, **{**micro, "patents": 2, "established_on": "2023-06-01"})
    assert not any(word in text for text in _asked(young) for word in SPECIALIZED)


def test_fails_on_fixed_names_the_blocker_the_firm_cannot_move() -> None:
    record = {"size": "micro", "qualifications": ("tech_sme",), "patents": 0.0, "age_years": 5.0}
    size = parse_rule({"field": "size", "in": ["small", "medium"]}, "t")
    branch = parse_rule({"all": [{"field": "size", "in": ["small", "medium"]},
                                 {"field": "qualifications", "has_any": ["tech_sme"]}]}, "t")
    movable = parse_rule({"field": "patents", "ge": 1}, "t")
    assert gaps.fails_on_fixed(size, record) and gaps.fails_on_fixed(branch, record)
    assert not gaps.fails_on_fixed(movable, record)
    assert not gaps.fails_on_fixed(parse_rule({"field": "size", "eq": "micro"}, "t"), record)  # it holds
    assert gaps.fails_on_fixed(parse_rule({"not": {"field": "size", "eq": "micro"}}, "t"), record)


def test_ip_pledge_gaps_only_for_a_firm_with_research(matcher: Matcher) -> None:
    words = "想用专利质押贷款"
    shop = _match(matcher, words, industry_code="F5211", patents=0, trademarks=0)
    assert "ip-pledge-financing-xuzhidai" not in _ids(shop["near_misses"])
    maker = _match(matcher, words, patents=0, trademarks=0)  # BASE: a C-industry manufacturer
    entry = next(e for e in maker["near_misses"] if e["policy_id"] == "ip-pledge-financing-xuzhidai")
    assert {g["field"] for g in entry["gaps"]} <= {"patents", "trademarks"}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, len(POP) - 1), st.sampled_from([None, "想上市", "想贷款", "想申请专精特新"]))
def test_specialized_gaps_only_for_firms_old_enough_with_evidence(matcher: Matcher, row: int,
                                                                  query: str | None) -> None:
    portrait = derive(parse_profile(POP.record(row)), AS_OF)
    out = matcher.match(portrait, query=query).model_dump(mode="json")
    rec = portrait.record
    for text in _asked(out):
        if "专精特新" in text:
            assert rec["age_years"] >= 2 and rec["is_sme"] is True, (rec["age_years"], text)
            assert (rec["patents"] or 0) >= 1 or {"high_tech", "tech_sme"} & set(rec["qualifications"] or ())
