"""The vectorised engine against the per-record reference evaluator (property tests)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matching import reference
from matching.rules import (
    ELIGIBLE,
    UNKNOWN,
    LeafCache,
    RuleEngine,
    eval_rule,
    improvable_value,
    ordinal_leaf,
)
from policies.loader import Catalog
from policies.rules import KIND_OPERATORS, All, Any_, Leaf, Not, Rule
from profiles.columns import ProfileBatch, values
from profiles.features import derive
from profiles.fields import FIELDS, RULE_FIELDS, Kind
from profiles.model import parse_profile
from profiles.synth import synthesize

AS_OF = dt.date(2024, 6, 1)
NUMBERS = [-1.0, 0.0, 0.5, 1.0, 3.0, 10.0, 15.0, 20.0, 300.0, 1000.0, 2e4]


def _leaf_strategy() -> st.SearchStrategy[Leaf]:
    def for_field(name: str) -> st.SearchStrategy[Leaf]:
        kind = FIELDS[name].kind
        ops = st.sampled_from(KIND_OPERATORS[kind])
        if kind is Kind.NUMBER:
            return st.builds(Leaf, st.just(name), ops, st.sampled_from(NUMBERS))
        if kind is Kind.BOOL:
            return st.builds(Leaf, st.just(name), ops, st.booleans())
        vocab = list(values(name))

        def build(op: str, picked: list[str]) -> Leaf:
            value: Any = picked[0] if op in ("eq", "ne") else tuple(picked)
            return Leaf(name, op, value)

        return st.builds(build, ops, st.lists(st.sampled_from(vocab), min_size=1, max_size=3, unique=True))

    return st.sampled_from(RULE_FIELDS).flatmap(for_field)


RULES: st.SearchStrategy[Rule] = st.recursive(
    _leaf_strategy(),
    lambda kids: st.one_of(
        st.lists(kids, min_size=0, max_size=4).map(lambda c: All(tuple(c))),
        st.lists(kids, min_size=1, max_size=4).map(lambda c: Any_(tuple(c))),
        kids.map(Not),
    ),
    max_leaves=10,
)


def _population() -> tuple[ProfileBatch, list[dict[str, Any]]]:
    pop = synthesize(3000, seed=11)
    batch = pop.batch.with_derived(AS_OF)
    return batch, [batch.record(i) for i in range(batch.n)]


BATCH, RECORDS = _population()
DECODE = {True: ELIGIBLE, None: UNKNOWN, False: 0}


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(RULES, st.integers(0, len(RECORDS) - 200))
def test_random_rules_agree_with_the_reference(rule: Rule, start: int) -> None:
    rows = slice(start, start + 200)
    batch = BATCH.take(rows)
    t, f = eval_rule(rule, LeafCache(batch))
    assert not (t & f).any()
    got = np.where(t, ELIGIBLE, np.where(f, 0, UNKNOWN))
    want = [DECODE[reference.evaluate(rule, r)] for r in RECORDS[rows]]
    assert got.tolist() == want


def test_every_catalog_rule_agrees_with_the_reference_on_a_synthetic_population(catalog: Catalog) -> None:
    engine = RuleEngine(list(catalog))
    result = engine.evaluate(BATCH, AS_OF)
    for i, comp in enumerate(result.compiled):  # parameter thresholds as in force on AS_OF
        want = [DECODE[reference.evaluate(comp.rule, r)] for r in RECORDS]
        if not comp.policy.is_active(AS_OF):
            want = [0] * len(RECORDS)
        assert result.status[i].tolist() == want, comp.id


def test_inactive_policies_are_never_eligible(catalog: Catalog) -> None:
    policies = list(catalog)
    draft = policies[0].model_copy(update={"status": "draft"})
    retired = policies[1].model_copy(update={"status": "retired"})
    expired = policies[2].model_copy(update={"effective_to": dt.date(2024, 1, 1)})
    future = policies[3].model_copy(update={"effective_from": dt.date(2025, 1, 1)})
    engine = RuleEngine([draft, retired, expired, future])
    result = engine.evaluate(BATCH, AS_OF)
    assert not result.active.any()
    assert (result.status == 0).all()


def test_absent_fields_are_unknown_and_present_empty_lists_are_complete() -> None:
    rule = Not(Leaf("flags", "has_any", ("seriously_dishonest",)))
    base = {"uscc": "91110000600037341L", "name": "x"}
    unknown = derive(parse_profile(base), AS_OF).record
    clean = derive(parse_profile(base | {"flags": []}), AS_OF).record
    assert reference.evaluate(rule, unknown) is None
    assert reference.evaluate(rule, clean) is True
    batch = ProfileBatch.from_records([base, base | {"flags": []}]).with_derived(AS_OF)
    t, f = eval_rule(rule, LeafCache(batch))
    assert t.tolist() == [False, True] and f.tolist() == [False, False]


def test_near_misses_agree_with_a_per_record_definition(catalog: Catalog) -> None:
    """Near miss = exactly one top-level clause false, all others true, and the false one is a
    gap the firm can close (actionable; for ordered categories, it allows a better value)."""
    engine = RuleEngine(list(catalog))
    result = engine.evaluate(BATCH.take(slice(0, 800)), AS_OF)
    for i, comp in enumerate(result.compiled):
        for row, record in enumerate(RECORDS[:800]):
            outcomes = [reference.evaluate(c, record) for c in comp.clauses]
            false = [j for j, o in enumerate(outcomes) if o is False]
            fixable = False
            if len(false) == 1 and comp.actionable[false[0]]:
                ordinal = ordinal_leaf(comp.clauses[false[0]])
                fixable = ordinal is None or improvable_value(*ordinal, record.get(ordinal[0].field))
            want = (comp.policy.is_active(AS_OF) and fixable
                    and all(o is True for j, o in enumerate(outcomes) if j != false[0]))
            assert bool(result.near_miss[i, row]) == want, (comp.id, row)


def test_stacked_small_batch_path_equals_the_per_policy_path(catalog: Catalog, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The two evaluation paths (chosen by batch size) give identical status and near misses."""
    import matching.rules as rules

    engine = RuleEngine(list(catalog))
    batch = BATCH.take(slice(0, 600))
    monkeypatch.setattr(rules, "SMALL_BATCH", 10_000)
    stacked = engine.evaluate(batch, AS_OF)
    monkeypatch.setattr(rules, "SMALL_BATCH", 0)
    per_policy = engine.evaluate(batch, AS_OF)
    assert np.array_equal(stacked.status, per_policy.status)
    assert np.array_equal(stacked.near_miss, per_policy.near_miss)
    for n in (1, 2, 7):  # and tiny batches row by row
        for start in range(0, 60, n):
            one = engine.evaluate(batch.take(slice(start, start + n)), AS_OF)
            assert np.array_equal(one.status, per_policy.status[:, start:start + n])
            assert np.array_equal(one.near_miss, per_policy.near_miss[:, start:start + n])
