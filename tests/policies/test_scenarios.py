"""Golden eligibility scenarios: every policy, at least one eligible and one ineligible case.

Each case runs through the vectorised engine (a batch of one), the per-record reference
evaluator and the package assembly, which must all agree with the expectation.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

from matching import reference
from matching.package import Matcher, estimate_value
from matching.rules import ELIGIBLE, UNKNOWN
from policies.loader import Catalog
from profiles.columns import ProfileBatch
from profiles.features import derive
from profiles.model import parse_profile
from tests.scenario_loader import Case, load_cases

CASES = load_cases()
STATUS = {ELIGIBLE: "eligible", UNKNOWN: "possibly_eligible", 0: "ineligible"}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_scenario(case: Case, catalog: Catalog, matcher: Matcher) -> None:
    assert case.policy in catalog.policies, f"{case.file}: unknown policy {case.policy}"
    policy = catalog[case.policy]
    portrait = derive(parse_profile(case.profile), case.as_of)
    batch = ProfileBatch.from_records([portrait.profile.model_dump()]).with_derived(case.as_of)
    engine_index = matcher.engine.index[case.policy]
    result = matcher.engine.evaluate(batch, case.as_of)
    got = STATUS[int(result.status[engine_index, 0])]
    assert got == case.expect, f"{case.file} / {case.name}: engine says {got}"
    # the reference evaluator and the scalar derivation agree with the batch
    want = (reference.outcome(policy.rule_at(case.as_of), portrait.record) if policy.is_active(case.as_of)
            else "ineligible")
    assert want == case.expect
    if case.near_miss is not None:
        assert bool(result.near_miss[engine_index, 0]) == case.near_miss
    answer = matcher.match(portrait, query=case.query or " ".join(policy.triggers)).model_dump(mode="json")
    if case.expect == "eligible":
        assert case.policy in {e["policy_id"] for e in answer["package"]}
    if case.expect == "possibly_eligible":
        entry = next(e for e in answer["possibly_eligible"] if e["policy_id"] == case.policy)
        if case.missing is not None:
            assert sorted(entry["missing"]) == sorted(case.missing)
    if case.value_wan is not None:
        assert estimate_value(policy, portrait.record, case.as_of) == pytest.approx(case.value_wan)


def test_every_policy_has_an_eligible_and_an_ineligible_scenario(catalog: Catalog) -> None:
    seen: dict[str, set[str]] = defaultdict(set)
    for case in CASES:
        seen[case.policy].add(case.expect)
    lacking = [
        pid for pid in catalog.policies
        if not {"eligible", "ineligible"} <= seen.get(pid, set())
    ]
    assert not lacking, f"policies without both an eligible and an ineligible scenario: {lacking}"
