"""The labelled relevance set (matching/evaluation/data): the acceptance bars as a regression guard.

Hybrid must reach Recall@5 ≥ 0.95 and MRR ≥ 0.9 and beat (or tie) each single channel and the
naive search over the plan's raw rows on every metric, for free-text queries and for packages.
"""

from __future__ import annotations

import pytest

from matching.evaluation.run import load_profile_cases, load_queries, run
from matching.package import Matcher
from policies.loader import Catalog
from profiles.features import derive
from profiles.model import parse_profile


def test_the_set_is_large_hard_and_labelled_against_the_catalog(catalog: Catalog) -> None:
    queries, cases = load_queries(), load_profile_cases()
    assert len(queries) >= 40 and len(cases) >= 20
    kinds = [q.kind for q in queries]
    assert kinds.count("easy") <= len(queries) // 4
    for kind in ("synonym", "no_overlap", "multi_need", "firm_specific"):
        assert kinds.count(kind) >= 10, kind
    covered = {p.source.task_no or f"M{p.source.measure_no}" for p in catalog}
    assert all(label in covered for q in queries for label in q.relevant)
    for case in cases:
        for pid in case.must_include:
            assert pid in catalog.policies


def test_must_include_policies_are_eligible_for_their_profiles(matcher: Matcher) -> None:
    for case in load_profile_cases():
        out = matcher.match(derive(parse_profile(case.profile), case.as_of))
        eligible = {e["policy_id"] for e in out["package"]} | {e["policy_id"] for e in out["available_on_request"]}
        assert case.must_include <= eligible, case.id


@pytest.mark.slow
def test_hybrid_meets_the_bars_and_beats_every_single_channel(matcher: Matcher) -> None:
    report = run(matcher)
    for part in ("queries", "profiles"):
        rows = report[part]
        hybrid = rows["hybrid"]
        assert hybrid["recall@5"] >= 0.95 and hybrid["mrr"] >= 0.9, (part, hybrid)
        for other in ("lexical", "dense", "naive_plan_hybrid"):
            for metric, value in rows[other].items():
                assert hybrid[metric] >= value, (part, other, metric, hybrid[metric], value)
