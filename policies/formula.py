"""Value-estimate formulas: arithmetic over numeric profile fields, parsed safely.

``annual_payroll_wan * 0.02`` or ``min(financing_need_wan, 1000) * 0.01``. Only numbers,
numeric field names, ``+ - * /``, parentheses and ``min``/``max`` are allowed, so a
catalog file can never run code. The same parsed formula evaluates a scalar profile or
whole numpy columns (NaN where an input is unknown).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

import numpy as np

from policies.messages import KIND_NAMES, field_ref, show_value, suggest_zh, syntax_problem
from profiles.fields import FIELDS, Kind

_BINOPS = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide}
_FUNCS = {"min": np.minimum, "max": np.maximum}
NUMERIC_FIELDS = tuple(n for n, f in FIELDS.items() if f.kind is Kind.NUMBER)


class FormulaError(ValueError):
    """A formula that is not allowed; the (Chinese) message names the offending part."""


#: Python syntax a formula may not use, by what an officer would call it.
_NODE_NAMES = {
    "Attribute": "属性访问（.）",
    "Subscript": "下标（[…]）",
    "Compare": "比较运算（< > == 等）",
    "BoolOp": "逻辑运算（and / or）",
    "IfExp": "条件表达式（if … else）",
    "Lambda": "lambda 表达式",
    "List": "列表 […]",
    "Tuple": "元组（逗号分隔的多个值）",
    "Dict": "字典 {…}",
    "Set": "集合 {…}",
    "ListComp": "推导式",
    "SetComp": "推导式",
    "DictComp": "推导式",
    "GeneratorExp": "推导式",
    "JoinedStr": "f 字符串",
    "Starred": "星号展开（*）",
    "NamedExpr": "赋值表达式（:=）",
    "Await": "await",
    "Yield": "yield",
    "YieldFrom": "yield",
    "Slice": "切片",
}


@dataclass(frozen=True)
class Formula:
    source: str
    tree: ast.expr
    fields: tuple[str, ...]

    def evaluate(self, env: dict[str, Any]) -> Any:
        """Evaluate over scalars or arrays; unknown inputs (None/NaN) give NaN."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return _eval(self.tree, env)


def parse_formula(source: str) -> Formula:
    try:
        tree = ast.parse(str(source), mode="eval").body
    except SyntaxError as exc:
        raise FormulaError(f"估值公式不是有效的算术表达式：{syntax_problem(exc.msg)}") from None
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if node.id in _FUNCS:
                continue
            if node.id in FIELDS and node.id not in NUMERIC_FIELDS:
                kind = KIND_NAMES[FIELDS[node.id].kind]
                raise FormulaError(f"字段{field_ref(node.id)}是{kind}字段，公式中只能使用数值字段")
            if node.id not in NUMERIC_FIELDS:
                raise FormulaError(
                    f"公式中的“{node.id}”不是已知的数值字段{suggest_zh(node.id, NUMERIC_FIELDS)}"
                )
            names.append(node.id)
        elif isinstance(node, ast.Call):
            if not (isinstance(node.func, ast.Name) and node.func.id in _FUNCS) or node.keywords:
                raise FormulaError("公式中只能调用 min(…) 和 max(…)，且不能使用关键字参数")
            if not node.args:
                raise FormulaError(f"{node.func.id}(…) 至少需要一个参数")
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise FormulaError(f"公式中的常量只能是数字，实际为 {show_value(node.value)}")
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _BINOPS:
                raise FormulaError("公式中只允许 + - * / 四则运算")
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, ast.USub):
                raise FormulaError("公式中只允许负号（-）这一种一元运算")
        elif not isinstance(node, (ast.Load, ast.operator, ast.unaryop)):
            name = type(node).__name__
            raise FormulaError(f"公式中不允许使用{_NODE_NAMES.get(name, f'语法结构“{name}”')}")
    return Formula(str(source), tree, tuple(dict.fromkeys(names)))


def _eval(node: ast.expr, env: dict[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return float(node.value)  # type: ignore[arg-type]  # numbers only, checked at parse
    if isinstance(node, ast.Name):
        value = env.get(node.id)
        return np.nan if value is None else value
    if isinstance(node, ast.UnaryOp):
        return np.negative(_eval(node.operand, env))
    if isinstance(node, ast.BinOp):
        return _BINOPS[type(node.op)](_eval(node.left, env), _eval(node.right, env))
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)
        args = [_eval(a, env) for a in node.args]
        out = args[0]
        for arg in args[1:]:
            out = _FUNCS[node.func.id](out, arg)
        return out
    raise FormulaError(f"无法计算公式的这一部分：{ast.dump(node)}")  # unreachable after parse
