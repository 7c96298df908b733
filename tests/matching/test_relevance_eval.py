"""The labelled relevance sets (matching/evaluation/data) and the abstention rule, as regression guards.

Sets: 93 hotline queries about policies (``queries``), 87 about the plan's commitments and plan work
(``plan``), 42 profile + needs cases (``profiles``), a fresh check set written after the first look and never
used for a decision (``fresh``), and off-topic questions (``offtopic.yaml`` and the fresh set's own). The
calibration and its floor are fitted on training data only (the catalog's 常见问法 left out one at a time,
``matching/data/offtopic_train.yaml``).

Issue 10's acceptance bars are Recall@5 ≥ 0.95 and MRR ≥ 0.90 on every in-scope set, ≥ 90 % of off-topic
questions refused and ≤ 2 % of in-scope ones. Measured on 2026-11-30 with the gated score (gate × entry
share, see matching/relevance.py) they are met on ``plan`` and ``fresh`` ranking and on in-scope refusal
(1.7 %, was 3.9 %), missed narrowly on ``queries`` Recall@5 (0.948) and on off-topic refusal (88.6 %, 31 of
35, unchanged); on the fresh set 83.9 % / 0.0 % (was 80.7 % / 6.7 %). The profile cases depend on the
package's composition rules (which procedures the firm's words call for), reworked in the working tree at
the same time: 0.952 / 0.921 at 13:49 (0.881 / 0.865 at 13:30 with the ungated score).
The guards below hold the measured level so that a regression fails; they are not the issue's bars.
"""

from __future__ import annotations

import pytest

from matching.evaluation.run import (
    entry_labels,
    load_fresh,
    load_offtopic,
    load_plan_queries,
    load_profile_cases,
    load_queries,
    run,
)
from matching.package import Matcher
from matching.rules import ELIGIBLE
from policies.loader import Catalog
from profiles.columns import ProfileBatch
from profiles.features import derive
from profiles.model import parse_profile


def test_the_sets_are_large_hard_and_labelled_against_the_catalog(catalog: Catalog) -> None:
    queries, plan, cases, offtopic = load_queries(), load_plan_queries(), load_profile_cases(), load_offtopic()
    fresh, fresh_off = load_fresh()
    assert len(queries) >= 40 and len(cases) >= 20 and len(plan) >= 60 and len(offtopic) >= 30
    kinds = [q.kind for q in queries]
    assert kinds.count("easy") <= len(queries) // 4
    for kind in ("synonym", "no_overlap", "multi_need", "firm_specific"):
        assert kinds.count(kind) >= 10, kind
    covered = {label for e in catalog.all_entries() for label in entry_labels(catalog, e.id)}
    for q in [*queries, *plan, *fresh]:
        assert q.relevant and q.relevant <= covered, (q.id, q.relevant - covered)
    texts = [q.text for q in [*queries, *plan, *fresh, *offtopic, *fresh_off]]
    assert len(texts) == len(set(texts))
    from matching.relevance import offtopic_training_questions

    assert not set(offtopic_training_questions()) & {q.text for q in [*offtopic, *fresh_off]}  # held out
    # the development sets (matching/data/dev_*.yaml, used for design decisions) share no text with the
    # evaluation sets, nor with the training negatives
    import yaml

    from matching.relevance import OFFTOPIC_TRAIN

    data = OFFTOPIC_TRAIN.parent
    dev_in = [q["query"] for q in yaml.safe_load((data / "dev_inscope.yaml").read_text(encoding="utf-8"))]
    dev_off = yaml.safe_load((data / "dev_offtopic.yaml").read_text(encoding="utf-8"))
    assert len(dev_in) >= 50 and len(dev_off) >= 40
    assert not set(dev_in + dev_off) & set(texts)
    assert not set(dev_in + dev_off) & set(offtopic_training_questions())


def test_must_include_policies_are_eligible_for_their_profiles(matcher: Matcher) -> None:
    """Eligible by the rule engine (available_on_request is a filtered short list since issue 10)."""
    for case in load_profile_cases():
        portrait = derive(parse_profile(case.profile), case.as_of)
        batch = ProfileBatch.from_records([portrait.profile.model_dump()]).with_derived(case.as_of)
        result = matcher.engine.evaluate(batch, case.as_of)
        eligible = {c.id for i, c in enumerate(matcher.engine.compiled)
                    if result.active[i] and int(result.status[i, 0]) == ELIGIBLE}
        policies = {p for p in case.must_include if p in matcher.catalog.policies}
        assert policies <= eligible, case.id
        for other in case.must_include - policies:  # commitments / plan work: findable, never offered
            assert matcher.catalog[other].kind in ("commitment", "plan_work"), (case.id, other)


@pytest.mark.slow
def test_hybrid_holds_its_level_and_beats_the_naive_search_on_every_set(matcher: Matcher) -> None:
    report = run(matcher)
    assert report["entries"] == len(matcher.catalog.all_entries())
    for part in ("queries", "plan", "fresh", "profiles"):
        rows = report[part]
        hybrid = rows["hybrid"]
        level = (0.85, 0.8) if part == "profiles" else (0.94, 0.85)
        assert hybrid["recall@5"] >= level[0] and hybrid["mrr"] >= level[1], (part, hybrid)
        for metric, value in rows["naive_plan_hybrid"].items():
            assert hybrid[metric] >= value, (part, "naive", metric, hybrid[metric], value)
        if part == "profiles":  # the package's composition rules decide here, not only relevance
            continue
        for metric, value in rows["dense"].items():
            assert hybrid[metric] >= value, (part, "dense", metric, hybrid[metric], value)
    for part in ("plan", "fresh"):  # the ranking bars, met on these sets
        assert report[part]["hybrid"]["recall@5"] >= 0.95 and report[part]["hybrid"]["mrr"] >= 0.9, part
    abstain, fresh = report["abstention"], report["abstention_fresh"]
    assert abstain["n_off_topic"] >= 30 and abstain["n_in_scope"] >= 150
    assert abstain["off_topic_refused"] >= 0.90 and abstain["in_scope_refused"] <= 0.02, abstain  # issue 10's bar
    # held-out fresh set: 23 of 29 refused since the national layer (issue 13). Two of its off-topic questions now
    # get a confident wrong answer from a national entry (g20 研发人员的个税 → 研发费用加计扣除, g26 购物卡个税 →
    # 个体工商户经营所得减半): known, reported on issue 10, not tuned away on this held-out set. Any further loss fails.
    assert fresh["off_topic_refused"] >= 0.793 and fresh["in_scope_refused"] <= 0.04, fresh
    assert set(fresh["off_topic_answered"]) <= {"g08", "g18", "g20", "g21", "g26", "g31"}, fresh
    train = report["calibration"]["train"]
    assert report["calibration"]["fitted"] and report["calibration"]["gate"] is not None
    assert train["in_scope_refused_joined"] <= 0.02 and train["in_scope_refused_single"] <= 0.03, train
