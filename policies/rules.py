"""Eligibility rule expressions: the declarative data, parsed and validated.

A rule is a tree of ``all`` / ``any`` / ``not`` over leaf comparisons of one field:

    all:
      - {field: size, in: [small, micro]}
      - not: {field: flags, has_any: [seriously_dishonest]}

This module only parses and checks the tree (field names, operators, value types and
vocabularies). Evaluating it lives in ``matching.rules``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from profiles.fields import FIELDS, RULE_FIELDS, Kind, suggest

#: Operators per field kind, with the Chinese phrase used in explanations.
OPERATORS: dict[str, str] = {
    "eq": "为",
    "ne": "不为",
    "in": "属于",
    "not_in": "不属于",
    "lt": "小于",
    "le": "不超过",
    "gt": "大于",
    "ge": "不少于",
    "has_any": "包含其一",
    "has_all": "全部包含",
    "has_none": "不包含",
}
KIND_OPERATORS: dict[Kind, tuple[str, ...]] = {
    Kind.NUMBER: ("eq", "ne", "lt", "le", "gt", "ge"),
    Kind.CATEGORY: ("eq", "ne", "in", "not_in"),
    Kind.BOOL: ("eq", "ne"),
    Kind.SET: ("has_any", "has_all", "has_none"),
}


class RuleError(ValueError):
    """A rule that cannot be compiled; ``path`` points into the YAML (e.g. ``all[1].in``)."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class Leaf:
    """``field op value``; ``value`` is a tuple for list operators, a scalar otherwise."""

    field: str
    op: str
    value: Any
    note: str = ""

    @property
    def key(self) -> tuple[str, str, Any]:
        """A hashable identity: equal leaves evaluate equally over the same batch."""
        return (self.field, self.op, self.value)


@dataclass(frozen=True)
class All:
    children: tuple[Rule, ...]


@dataclass(frozen=True)
class Any_:
    children: tuple[Rule, ...]


@dataclass(frozen=True)
class Not:
    child: Rule


Rule = Leaf | All | Any_ | Not


def vocabulary(field_name: str) -> dict[str, str]:
    """The allowed values of a category or set field (industry codes come from their table)."""
    from profiles import industry, size_class  # late: data tables load on first use

    special = {
        "industry_section": industry.section_names,
        "industry_division": industry.division_names,
        "industry_group": industry.group_names,
        "size_category": size_class.category_names,
    }
    if field_name in special:
        return special[field_name]()
    return FIELDS[field_name].vocabulary


def parse_rule(data: Any, path: str = "") -> Rule:
    """Parse and validate one rule tree; raises :class:`RuleError` naming the clause."""
    if not isinstance(data, dict):
        raise RuleError(f"a rule must be a mapping, got {type(data).__name__}", path)
    keys = set(data)
    for combinator in ("all", "any"):
        if combinator in keys:
            if keys != {combinator}:
                extra = sorted(keys - {combinator})
                raise RuleError(f"'{combinator}' cannot be combined with {extra}", path)
            items = data[combinator]
            if not isinstance(items, list):
                raise RuleError(f"'{combinator}' takes a list of rules", f"{path}.{combinator}")
            children = tuple(
                parse_rule(item, f"{path}.{combinator}[{i}]".lstrip(".")) for i, item in enumerate(items)
            )
            if combinator == "any" and not children:
                raise RuleError("'any' needs at least one rule", f"{path}.any".lstrip("."))
            return All(children) if combinator == "all" else Any_(children)
    if "not" in keys:
        if keys != {"not"}:
            raise RuleError(f"'not' cannot be combined with {sorted(keys - {'not'})}", path)
        return Not(parse_rule(data["not"], f"{path}.not".lstrip(".")))
    return _parse_leaf(data, path)


def _parse_leaf(data: dict[str, Any], path: str) -> Leaf:
    if "field" not in data:
        raise RuleError(
            f"unknown rule keys {sorted(data)}: expected 'all', 'any', 'not' or a comparison "
            f"with 'field'{suggest(next(iter(data), ''), ['all', 'any', 'not', 'field'])}",
            path,
        )
    name = data["field"]
    here = f"{path}.field".lstrip(".")
    if name not in FIELDS:
        raise RuleError(f"unknown field '{name}'{suggest(name, RULE_FIELDS)}", here)
    if name not in RULE_FIELDS:
        raise RuleError(
            f"field '{name}' is {FIELDS[name].kind.value} and cannot be compared in a rule"
            + (" — use 'age_years'" if name == "established_on" else ""),
            here,
        )
    kind = FIELDS[name].kind
    ops = [k for k in data if k not in ("field", "note")]
    if len(ops) != 1:
        raise RuleError(f"a comparison needs exactly one operator, got {ops or 'none'}", path)
    op = ops[0]
    here = f"{path}.{op}".lstrip(".")
    allowed = KIND_OPERATORS[kind]
    if op not in allowed:
        hint = suggest(op, allowed) if op not in OPERATORS else ""
        raise RuleError(
            f"operator '{op}' does not apply to {kind.value} field '{name}' "
            f"(allowed: {', '.join(allowed)}){hint}",
            here,
        )
    raw = data[op]
    value: Any
    if op in ("in", "not_in", "has_any", "has_all", "has_none"):
        if not isinstance(raw, list) or not raw:
            raise RuleError(f"'{op}' takes a non-empty list of values", here)
        value = tuple(_check_value(name, kind, v, here) for v in raw)
    else:
        if isinstance(raw, list):
            raise RuleError(f"'{op}' takes one value, not a list — use 'in'", here)
        value = _check_value(name, kind, raw, here)
    return Leaf(field=name, op=op, value=value, note=str(data.get("note", "")))


def _check_value(name: str, kind: Kind, value: Any, path: str) -> Any:
    if kind is Kind.NUMBER:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RuleError(f"field '{name}' is a number; got {value!r}", path)
        return float(value)
    if kind is Kind.BOOL:
        if not isinstance(value, bool):
            raise RuleError(f"field '{name}' is true/false; got {value!r}", path)
        return value
    text = str(value)
    vocab = vocabulary(name)
    if text not in vocab:
        raise RuleError(f"'{text}' is not a value of '{name}'{suggest(text, vocab)}", path)
    return text


def leaves(rule: Rule) -> list[Leaf]:
    """All leaf comparisons, depth first."""
    if isinstance(rule, Leaf):
        return [rule]
    if isinstance(rule, Not):
        return leaves(rule.child)
    return [leaf for child in rule.children for leaf in leaves(child)]


def top_clauses(rule: Rule) -> tuple[Rule, ...]:
    """The conjuncts of the rule: an ``all`` gives its children, anything else is one clause."""
    return rule.children if isinstance(rule, All) else (rule,)


def fields_of(rule: Rule) -> list[str]:
    """The distinct fields a rule reads, in first-use order."""
    return list(dict.fromkeys(leaf.field for leaf in leaves(rule)))
