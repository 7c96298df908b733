"""Gaps a firm can close: which failed conditions of a near miss it can meet by its own action.

The table lives in ``matching/data/gaps.yaml`` (data, not per-policy code): which fields a firm can move and
in which direction (raise a number, improve a grade, obtain a qualification, clear a problem), how close a
number must be to count, and when a qualification or a listing is plausible for the firm at all. Everything
else — size, industry, entity type, region, founding date — is fixed: never a gap.

The engine uses :func:`statically_closable` to mark near-miss candidates over whole columns; the package
keeps a near miss only when :func:`clause_gaps` finds the firm's own gaps (its values, plausibility,
closeness) and returns them as ``{field, label, observed, needed}``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from matching.reference import evaluate
from policies.rules import All, Any_, Leaf, Not, Rule, parse_rule
from profiles.fields import FIELDS, Kind
from profiles.labels import value_text, vocabulary

DATA = Path(__file__).with_name("data") / "gaps.yaml"
HOWS = ("up", "better", "acquire", "resolve")
NEGATED_OP = {"eq": "ne", "ne": "eq", "in": "not_in", "not_in": "in", "lt": "ge", "ge": "lt",
              "le": "gt", "gt": "le", "has_any": "has_none", "has_none": "has_any"}
#: counts: a "more than N" condition needs N + 1
_COUNTS = {"employees", "patents", "trademarks"}


@dataclass(frozen=True)
class Movable:
    how: str
    factor: float | None = None
    step: float | None = None
    order: tuple[str, ...] = ()


@dataclass(frozen=True)
class GapTable:
    movable: dict[str, Movable]
    plausible: dict[str, Rule]  # field -> rule
    qualifications: dict[str, Rule]  # qualification -> rule
    limit: int
    detour: dict[str, Rule] = field(default_factory=dict)  # qualification -> rule when offered as a detour
    policies: dict[str, Rule] = field(default_factory=dict)  # policy id -> when its near miss is shown at all


@cache
def table() -> GapTable:
    raw = yaml.safe_load(DATA.read_text(encoding="utf-8"))
    movable: dict[str, Movable] = {}
    for name, spec in raw["movable"].items():
        if name not in FIELDS or spec["how"] not in HOWS:
            raise ValueError(f"{DATA.name}: movable.{name}: unknown field or how {spec.get('how')!r}")
        close = spec.get("close") or {}
        movable[name] = Movable(spec["how"], close.get("factor"), close.get("step"), tuple(spec.get("order") or ()))
    plausible = {k: parse_rule(v, f"plausible.{k}") for k, v in raw["plausible"].items() if k != "qualifications"}
    quals = {k: parse_rule(v, f"plausible.qualifications.{k}") for k, v in raw["plausible"]["qualifications"].items()}
    detour = {k: parse_rule(v, f"detour.{k}") for k, v in (raw.get("detour") or {}).items()}
    policies = {k: parse_rule(v, f"policies.{k}") for k, v in (raw.get("policies") or {}).items()}
    for q in [*quals, *detour]:
        if q not in FIELDS["qualifications"].vocabulary:
            raise ValueError(f"{DATA.name}: qualification {q}: unknown qualification")
    return GapTable(movable, plausible, quals, int(raw["limit"]), detour, policies)


def order_of(field: str) -> tuple[str, ...]:
    """Best-first order of a field a firm can improve ('better'), else ()."""
    m = table().movable.get(field)
    if m is None or m.how != "better":
        return ()
    return m.order or FIELDS[field].order


def effective_op(leaf: Leaf, negated: bool) -> str | None:
    return NEGATED_OP.get(leaf.op) if negated else leaf.op


def statically_closable(leaf: Leaf, negated: bool = False) -> bool:
    """Could some firm meet this comparison by its own action (before looking at the firm)?"""
    m = table().movable.get(leaf.field)
    op = effective_op(leaf, negated)
    if m is None or op is None:
        return False
    kind = FIELDS[leaf.field].kind
    if m.how == "up":
        return op in ("gt", "ge")
    if m.how == "better":
        return kind is Kind.CATEGORY and op in ("eq", "ne", "in", "not_in")
    if m.how == "acquire":
        if kind is Kind.SET:
            return op in ("has_any", "has_all")
        return kind is Kind.BOOL and (op == "eq") == bool(leaf.value)
    return kind is Kind.SET and op == "has_none"  # resolve


def plausible(field: str, record: dict[str, Any], qualification: str | None = None, *,
              detour: bool = False) -> bool:
    """Whether suggesting this field (or this qualification) makes sense for the firm; ``detour``: the
    qualification is offered because another branch of the condition fails on a fixed field (then its
    ``detour`` rule must hold too)."""
    t = table()
    rule = t.qualifications.get(qualification) if qualification else t.plausible.get(field)
    if qualification and rule is None:
        return False  # a qualification without an entry is never suggested
    if rule is not None and evaluate(rule, record) is not True:
        return False
    extra = t.detour.get(qualification) if detour and qualification else None
    return extra is None or evaluate(extra, record) is True


def policy_plausible(policy_id: str, record: dict[str, Any]) -> bool:
    """A near miss of this policy is worth showing to this firm at all (``policies`` in the table)."""
    rule = table().policies.get(policy_id)
    return rule is None or evaluate(rule, record) is True


def fails_on_fixed(rule: Rule, record: dict[str, Any], negated: bool = False) -> bool:
    """This failing condition fails because of a field the firm cannot move (size, industry, entity type,
    region, age …): no action of the firm's makes it hold."""
    truth = evaluate(rule, record)
    if truth is None or (not truth) == negated:  # unknown, or it holds
        return False
    if isinstance(rule, Leaf):
        return rule.field not in table().movable
    if isinstance(rule, Not):
        return fails_on_fixed(rule.child, record, not negated)
    if isinstance(rule, All) != negated:  # it fails when one part fails: a fixed failing part suffices
        return any(fails_on_fixed(c, record, negated) for c in rule.children)
    return all(fails_on_fixed(c, record, negated) for c in rule.children)


def _labels(field: str, items: Any) -> str:
    return value_text(field, list(items or ()), digits=None)


def _allowed(leaf: Leaf, op: str) -> list[str]:
    wanted = set(leaf.value if isinstance(leaf.value, tuple) else (leaf.value,))
    return [v for v in vocabulary(leaf.field) if (v in wanted) == (op in ("eq", "in"))]


def leaf_gap(leaf: Leaf, negated: bool, record: dict[str, Any], detour: bool = False) -> dict[str, Any] | None:
    """The gap ``{field, label, observed, needed}`` when this failed comparison is one the firm can close."""
    field, op = leaf.field, effective_op(leaf, negated)
    observed = record.get(field)
    if observed is None or op is None or not statically_closable(leaf, negated):
        return None
    f, m = FIELDS[field], table().movable[field]
    if m.how != "acquire" and not plausible(field, record):
        return None
    if m.how == "up":
        target = float(leaf.value) + (1 if op == "gt" and field in _COUNTS else 0)
        have = float(observed)
        reach = max(have * (m.factor or 1.0), have + (m.step or 0.0))
        if target > reach or math.isnan(target):
            return None
        word = {"ge": "不少于", "gt": "多于"}[op] if f.unit != "万元" else {"ge": "不低于", "gt": "高于"}[op]
        needed = f"{word}{f.value_label(leaf.value)}"
        shown = f.value_label(observed)
    elif m.how == "better":
        order = order_of(field)
        if observed not in order:
            return None
        better = [v for v in _allowed(leaf, op) if v in order and order.index(v) < order.index(observed)]
        if not better:
            return None
        needed, shown = "或".join(f.value_label(v) for v in better), f.value_label(observed)
    elif m.how == "acquire" and f.kind is Kind.BOOL:
        if not plausible(field, record):
            return None
        needed, shown = f.value_label(True), f.value_label(observed)
    elif m.how == "acquire":
        held = set(observed)
        missing = [q for q in leaf.value if q not in held]
        fits = [q for q in missing if plausible(field, record, q, detour=detour)]
        if not fits or (op == "has_all" and len(fits) < len(missing)):
            return None
        needed = ("、".join if op == "has_all" else "或".join)(f.value_label(q) for q in fits)
        shown = _labels(field, observed)
    else:  # resolve: clear the problems the condition excludes
        present = [v for v in leaf.value if v in set(observed)]
        if not present:
            return None
        needed, shown = "不存在" + "、".join(f.value_label(v) for v in present), _labels(field, observed)
    return {"field": field, "label": f.label, "observed": shown, "needed": needed}


def clause_gaps(rule: Rule, record: dict[str, Any], negated: bool = False,
                detour: bool = False) -> list[dict[str, Any]] | None:
    """What the firm would have to change so that ``rule`` holds: [] when it holds already, None when it
    cannot be closed (a fixed field, a decrease, an implausible qualification, too far, or unknown).

    Where one branch of a "one of" condition fails on a fixed field (a micro firm and 中小型 + 科技型), the
    qualification of another branch is a detour around the firm's real blocker: it is offered only when its
    ``detour`` rule holds as well (``detour`` carries that down)."""
    truth = evaluate(rule, record)
    if truth is not None and negated:
        truth = not truth
    if truth is True:
        return []
    if truth is None:
        return None
    if isinstance(rule, Leaf):
        gap = leaf_gap(rule, negated, record, detour)
        return [gap] if gap else None
    if isinstance(rule, Not):
        return clause_gaps(rule.child, record, not negated, detour)
    either = isinstance(rule, All) == negated  # one part suffices
    if either and any(fails_on_fixed(child, record, negated) for child in rule.children):
        detour = True
    parts = [clause_gaps(child, record, negated, detour) for child in rule.children]
    if not either:  # every part must hold
        if any(p is None for p in parts):
            return None
        return [g for p in parts if p for g in p]
    assert isinstance(rule, All | Any_)
    options = [p for p in parts if p is not None]  # one part suffices: the one with fewest changes
    return min(options, key=len) if options else None
