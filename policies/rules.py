"""Eligibility rule expressions: the declarative data, parsed and validated.

A rule is a tree of ``all`` / ``any`` / ``not`` over leaf comparisons of one field:

    all:
      - {field: size, in: [small, micro]}
      - not: {field: flags, has_any: [seriously_dishonest]}

A numeric threshold set by law names its dated parameter instead of a number (``policies/params.py``):
``{field: monthly_sales_wan, le: {param: vat.small_scale_exemption_monthly_wan}}``; :func:`resolve` puts in the
value in force on the evaluation day.

This module only parses and checks the tree (field names, operators, value types and
vocabularies). Evaluating it lives in ``matching.rules``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Any

from policies.messages import KIND_NAMES, field_ref, quoted, show_value, suggest_zh, type_name
from policies.params import ParamRef, parameters, unknown_parameter
from profiles.fields import FIELDS, RULE_FIELDS, Kind
from profiles.labels import vocabulary

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
    """A rule that cannot be compiled; ``path`` points into the YAML (e.g. ``all[1].in``).

    The message is Chinese (policy officers read it) and names the key, field and value at fault.
    """

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


def parse_rule(data: Any, path: str = "") -> Rule:
    """Parse and validate one rule tree; raises :class:`RuleError` naming the clause."""
    if not isinstance(data, dict):
        raise RuleError(
            f"规则应为映射（如 all: […]，或 {{field: 字段, 运算符: 取值}}），实际为{type_name(data)} {show_value(data)}",
            path,
        )
    keys = set(data)
    for combinator in ("all", "any"):
        if combinator in keys:
            if keys != {combinator}:
                extra = sorted(map(str, keys - {combinator}))
                raise RuleError(f"“{combinator}”不能与其他键同时出现：{quoted(extra)}", path)
            items = data[combinator]
            if not isinstance(items, list):
                raise RuleError(
                    f"“{combinator}”后应为规则列表，实际为{type_name(items)} {show_value(items)}",
                    f"{path}.{combinator}".lstrip("."),
                )
            children = tuple(
                parse_rule(item, f"{path}.{combinator}[{i}]".lstrip(".")) for i, item in enumerate(items)
            )
            if combinator == "any" and not children:
                raise RuleError("“any”至少需要一条规则", f"{path}.any".lstrip("."))
            return All(children) if combinator == "all" else Any_(children)
    if "not" in keys:
        if keys != {"not"}:
            raise RuleError(f"“not”不能与其他键同时出现：{quoted(sorted(map(str, keys - {'not'})))}", path)
        return Not(parse_rule(data["not"], f"{path}.not".lstrip(".")))
    return _parse_leaf(data, path)


def _parse_leaf(data: dict[str, Any], path: str) -> Leaf:
    if "field" not in data:
        first = next(iter(data), "")
        raise RuleError(
            f"无法识别的规则键：{quoted(sorted(map(str, data))) or '（空）'}；应为“all”“any”“not”，"
            f"或以“field”指明字段的比较条件{suggest_zh(first, ['all', 'any', 'not', 'field'])}",
            path,
        )
    name = data["field"]
    here = f"{path}.field".lstrip(".")
    if not isinstance(name, str):
        raise RuleError(f"“field”后应为字段名，实际为{type_name(name)} {show_value(name)}", here)
    if name not in FIELDS:
        raise RuleError(f"未知字段{show_value(name)}{suggest_zh(name, RULE_FIELDS)}", here)
    if name not in RULE_FIELDS:
        raise RuleError(
            f"字段{field_ref(name)}是{KIND_NAMES[FIELDS[name].kind]}字段，不能在规则中比较"
            + (f"，请改用{field_ref('age_years')}" if name == "established_on" else ""),
            here,
        )
    kind = FIELDS[name].kind
    ops = [k for k in data if k not in ("field", "note")]
    if len(ops) != 1:
        raise RuleError(
            f"比较条件须有且只有一个运算符，实际{'为' + quoted(ops) if ops else '没有运算符'}"
            f"（可用：{'、'.join(KIND_OPERATORS[kind])}）",
            path,
        )
    op = ops[0]
    here = f"{path}.{op}".lstrip(".")
    allowed = KIND_OPERATORS[kind]
    if op not in allowed:
        hint = suggest_zh(op, allowed) if op not in OPERATORS else ""
        raise RuleError(
            f"{'运算符' if op in OPERATORS else '未知运算符'}“{op}”不适用于{KIND_NAMES[kind]}字段{field_ref(name)}，"
            f"可用的运算符：{'、'.join(allowed)}{hint}",
            here,
        )
    raw = data[op]
    value: Any
    if op in ("in", "not_in", "has_any", "has_all", "has_none"):
        if not isinstance(raw, list) or not raw:
            got = "" if isinstance(raw, list) else f"，实际为{type_name(raw)} {show_value(raw)}"
            if isinstance(raw, str | int | float) and not isinstance(raw, bool):
                got += f"（请写成 [{raw}]）"
            raise RuleError(f"“{op}”需要非空的取值列表{got}", here)
        value = tuple(_check_value(name, kind, v, here) for v in raw)
    else:
        if isinstance(raw, list):
            raise RuleError(
                f"“{op}”只接受单个取值，不能是列表" + ("；多个取值请用“in”" if kind is Kind.CATEGORY else ""), here
            )
        value = _check_value(name, kind, raw, here)
    return Leaf(field=name, op=op, value=value, note=str(data.get("note", "")))


def _check_value(name: str, kind: Kind, value: Any, path: str) -> Any:
    if kind is Kind.NUMBER and isinstance(value, dict):
        if set(value) != {"param"} or not isinstance(value["param"], str):
            raise RuleError(f"字段{field_ref(name)}的取值应为数字，或 {{param: 参数名}}，实际为 {show_value(value)}", path)
        ref = value["param"]
        if ref not in parameters():
            raise RuleError(unknown_parameter(ref), path)
        if parameters()[ref].is_scale:
            raise RuleError(f"参数“{ref}”是税率表，不能作为比较的取值", path)
        return ParamRef(ref)
    if kind is Kind.NUMBER:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RuleError(f"字段{field_ref(name)}是数值字段，取值应为数字，实际为 {show_value(value)}", path)
        try:
            return float(value)
        except OverflowError:
            raise RuleError(f"字段{field_ref(name)}的取值 {show_value(value)} 超出数值范围", path) from None
    if kind is Kind.BOOL:
        if not isinstance(value, bool):
            raise RuleError(f"字段{field_ref(name)}的取值应为 true 或 false，实际为 {show_value(value)}", path)
        return value
    text = str(value)
    vocab = vocabulary(name)
    if text not in vocab:
        raise RuleError(f"取值{show_value(text)}不是字段{field_ref(name)}的可选值{suggest_zh(text, vocab)}", path)
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


def params_of(rule: Rule) -> list[str]:
    """The parameters a rule's thresholds name, in first-use order."""
    return list(dict.fromkeys(leaf.value.name for leaf in leaves(rule) if isinstance(leaf.value, ParamRef)))


def resolve(rule: Rule, as_of: dt.date) -> Rule:
    """The rule with each parameter threshold replaced by its value on ``as_of`` (an ended parameter by its
    last value: whether the policy is offered at all is :meth:`policies.schema.Policy.is_active`'s decision).
    A rule without parameters is returned as it is."""
    if not params_of(rule):
        return rule
    return _resolve(rule, as_of)


def _resolve(rule: Rule, as_of: dt.date) -> Rule:
    if isinstance(rule, Leaf):
        if isinstance(rule.value, ParamRef):
            value = parameters()[rule.value.name].latest(as_of).value
            return replace(rule, value=value)
        return rule
    if isinstance(rule, Not):
        return Not(_resolve(rule.child, as_of))
    kids = tuple(_resolve(c, as_of) for c in rule.children)
    return All(kids) if isinstance(rule, All) else Any_(kids)
