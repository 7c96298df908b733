"""Ranking invariants under hypothesis: only eligible policies, no policy twice, scores descending, the
same answer twice, --top N keeps the best N, and the exclusive-group totals count each benefit once."""

from __future__ import annotations

import datetime as dt

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matching import reference
from matching.package import Matcher
from profiles.features import derive
from profiles.model import parse_profile
from profiles.synth import synthesize

POP = synthesize(600, seed=99)
NEEDS = ["", "想贷款", "准备注销", "被拖欠货款", "工会经费", "想上市", "出口通关", "投标"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, len(POP) - 1), st.sampled_from(NEEDS), st.integers(1, 12))
def test_package_invariants(matcher: Matcher, row: int, query: str, top: int) -> None:
    as_of = dt.date(2024, 6, 1)
    portrait = derive(parse_profile(POP.record(row)), as_of)
    full = matcher.match(portrait, query=query or None).model_dump(mode="json")
    ids = [e["policy_id"] for e in full["package"]]
    assert len(ids) == len(set(ids))
    for entry in full["package"]:
        policy = matcher.catalog[entry["policy_id"]]
        assert reference.outcome(policy.rule_at(as_of), portrait.record) == "eligible" and policy.is_active(as_of)
    scores = [e["score"] for e in full["package"]]
    assert scores == sorted(scores, reverse=True)
    again = matcher.match(portrait, query=query or None).model_dump(mode="json")  # deterministic: the same answer twice
    assert [(e["policy_id"], e["score"]) for e in again["package"]] == [(e["policy_id"], e["score"])
                                                                        for e in full["package"]]
    assert again["available_on_request"] == full["available_on_request"]
    assert again["near_misses"] == full["near_misses"] and again["questions"] == full["questions"]
    cut = matcher.match(portrait, query=query or None, top=top).model_dump(mode="json")
    assert [e["policy_id"] for e in cut["package"]] == ids[:top]
    others = {e["policy_id"] for e in full["possibly_eligible"]} | {e["policy_id"] for e in full["near_misses"]}
    assert not others & set(ids)
    counted = {}
    for entry in full["package"]:
        if entry["exclusive_group"] and entry["counted_in_total"]:
            assert entry["exclusive_group"] not in counted
            counted[entry["exclusive_group"]] = entry["policy_id"]
