"""A per-record reference evaluator, used only to test the vectorised engine against.

Plain Python over one flat record (None = unknown); returns True, False or None (unknown).
"""

from __future__ import annotations

from typing import Any

from policies.rules import All, Any_, Leaf, Not, Rule
from profiles.fields import FIELDS, Kind


def evaluate(rule: Rule, record: dict[str, Any]) -> bool | None:
    if isinstance(rule, Leaf):
        return _leaf(rule, record)
    if isinstance(rule, Not):
        inner = evaluate(rule.child, record)
        return None if inner is None else not inner
    results = [evaluate(child, record) for child in rule.children]
    if isinstance(rule, All):
        if any(r is False for r in results):
            return False
        return True if all(r is True for r in results) else None
    assert isinstance(rule, Any_)
    if any(r is True for r in results):
        return True
    return False if all(r is False for r in results) else None


def _leaf(leaf: Leaf, record: dict[str, Any]) -> bool | None:
    value = record.get(leaf.field)
    if value is None:
        return None
    kind, op, want = FIELDS[leaf.field].kind, leaf.op, leaf.value
    if kind is Kind.SET:
        have = set(value)
        wanted = set(want)
        if op == "has_any":
            return bool(have & wanted)
        if op == "has_all":
            return wanted <= have
        return not (have & wanted)
    if op == "in":
        return value in want
    if op == "not_in":
        return value not in want
    if op == "eq":
        return bool(value == want)
    if op == "ne":
        return bool(value != want)
    if op == "lt":
        return bool(value < want)
    if op == "le":
        return bool(value <= want)
    if op == "gt":
        return bool(value > want)
    return bool(value >= want)


def outcome(rule: Rule, record: dict[str, Any]) -> str:
    """'eligible' | 'ineligible' | 'possibly_eligible' for one record."""
    result = evaluate(rule, record)
    return {True: "eligible", False: "ineligible", None: "possibly_eligible"}[result]
