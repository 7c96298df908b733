"""Value-estimate formulas: arithmetic over numeric profile fields and dated parameters, parsed safely.

``annual_payroll_wan * 0.02`` or ``financing_need_wan * (guarantee.market_fee_rate - guarantee.policy_fee_cap)``.
Allowed: numbers, numeric field names, parameter names (dotted: ``vat.small_scale_levy_rate``, see
:mod:`policies.params`), ``+ - * /``, parentheses, ``min``/``max``, ``where(flag, a, b)`` (``flag`` a yes/no
field such as ``is_sme``: ``a`` where it holds, ``b`` where not) and ``marginal(amount, scale)`` (the tax of a
progressive rate table). A catalog file can never run code. The same parsed formula evaluates a scalar
profile or whole numpy columns on an as-of day: NaN where an input is unknown or a parameter is not in force
that day (an ended parameter is never silently extended).
"""

from __future__ import annotations

import ast
import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np

from policies.messages import KIND_NAMES, field_ref, show_value, suggest_zh, syntax_problem
from policies.params import Bracket, parameters, unknown_parameter
from profiles.fields import FIELDS, Kind

_BINOPS = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide}
_FUNCS = {"min": np.minimum, "max": np.maximum}
NUMERIC_FIELDS = tuple(n for n, f in FIELDS.items() if f.kind is Kind.NUMBER)
FLAG_FIELDS = tuple(n for n, f in FIELDS.items() if f.kind is Kind.BOOL)
_SPECIAL = ("where", "marginal")


class FormulaError(ValueError):
    """A formula that is not allowed; the (Chinese) message names the offending part."""


#: Python syntax a formula may not use, by what an officer would call it.
_NODE_NAMES = {
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
    fields: tuple[str, ...]  # profile fields read (numeric, and yes/no fields of where(…))
    params: tuple[str, ...] = ()  # parameters read

    def evaluate(self, env: dict[str, Any], as_of: dt.date | None = None) -> Any:
        """Evaluate over scalars or arrays on ``as_of``; unknown inputs (None/NaN) and parameters not in
        force give NaN. ``as_of`` is required when the formula reads a parameter."""
        if self.params and as_of is None:
            raise ValueError(f"估值公式“{self.source}”用到了参数，须指定评估日期（as_of）")
        with np.errstate(divide="ignore", invalid="ignore"):
            return _eval(self.tree, env, as_of)

    def in_force(self, as_of: dt.date) -> bool:
        """Every parameter it reads has a value on ``as_of``."""
        table = parameters()
        return all(table[name].in_force(as_of) for name in self.params)


def dotted(node: ast.expr) -> str | None:
    """``a.b.c`` as text when the node is a plain dotted name, else None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or not parts:
        return None
    return ".".join([node.id, *reversed(parts)])


def parse_formula(source: str) -> Formula:
    try:
        tree = ast.parse(str(source), mode="eval").body
    except SyntaxError as exc:
        raise FormulaError(f"估值公式不是有效的算术表达式：{syntax_problem(exc.msg)}") from None
    names: list[str] = []
    params: list[str] = []
    _check(tree, names, params, scale_ok=False, flag_ok=False)
    return Formula(str(source), tree, tuple(dict.fromkeys(names)), tuple(dict.fromkeys(params)))


def _check(node: ast.expr, names: list[str], params: list[str], *, scale_ok: bool, flag_ok: bool) -> None:
    """Validate one node (recursively); ``scale_ok``/``flag_ok``: a rate table / a yes/no field may stand here."""
    if isinstance(node, ast.Attribute):
        name = dotted(node)
        if name is None:
            raise FormulaError("公式中不允许使用属性访问（.）：参数名应写成“文件名.参数名”，如 vat.small_scale_levy_rate")
        if name not in parameters():
            raise FormulaError(unknown_parameter(name))
        if parameters()[name].is_scale and not scale_ok:
            raise FormulaError(f"参数“{name}”是税率表，只能用在 marginal(金额, {name}) 中")
        if not parameters()[name].is_scale and scale_ok:
            raise FormulaError(f"marginal(…) 的第二个参数应为税率表，“{name}”不是税率表")
        params.append(name)
        return
    if scale_ok:
        raise FormulaError("marginal(…) 的第二个参数应为税率表参数，如 iit.business_income_scale")
    if isinstance(node, ast.Name):
        if node.id in _FUNCS or node.id in _SPECIAL:
            raise FormulaError(f"“{node.id}”是函数，应写成 {node.id}(…)")
        if node.id in FLAG_FIELDS:
            if not flag_ok:
                raise FormulaError(f"字段{field_ref(node.id)}是是/否字段，只能作为 where(…) 的第一个参数")
            names.append(node.id)
            return
        if node.id in FIELDS and node.id not in NUMERIC_FIELDS:
            kind = KIND_NAMES[FIELDS[node.id].kind]
            raise FormulaError(f"字段{field_ref(node.id)}是{kind}字段，公式中只能使用数值字段")
        if node.id not in NUMERIC_FIELDS:
            raise FormulaError(
                f"公式中的“{node.id}”不是已知的数值字段{suggest_zh(node.id, NUMERIC_FIELDS)}"
            )
        if flag_ok:
            raise FormulaError(f"where(…) 的第一个参数应为是/否字段（如 is_sme、has_union），“{node.id}”是数值字段")
        names.append(node.id)
        return
    if flag_ok:
        raise FormulaError("where(…) 的第一个参数应为是/否字段（如 is_sme、has_union）")
    if isinstance(node, ast.Call):
        func = node.func.id if isinstance(node.func, ast.Name) else None
        if func not in _FUNCS and func not in _SPECIAL or node.keywords:
            raise FormulaError("公式中只能调用 min(…)、max(…)、where(…) 和 marginal(…)，且不能使用关键字参数")
        if func in _FUNCS:
            if not node.args:
                raise FormulaError(f"{func}(…) 至少需要一个参数")
            for arg in node.args:
                _check(arg, names, params, scale_ok=False, flag_ok=False)
        elif func == "where":
            if len(node.args) != 3:
                raise FormulaError("where(…) 需要三个参数：where(是/否字段, 成立时的值, 不成立时的值)")
            _check(node.args[0], names, params, scale_ok=False, flag_ok=True)
            for arg in node.args[1:]:
                _check(arg, names, params, scale_ok=False, flag_ok=False)
        else:
            if len(node.args) != 2:
                raise FormulaError("marginal(…) 需要两个参数：marginal(金额, 税率表参数)")
            _check(node.args[0], names, params, scale_ok=False, flag_ok=False)
            _check(node.args[1], names, params, scale_ok=True, flag_ok=False)
        return
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise FormulaError(f"公式中的常量只能是数字，实际为 {show_value(node.value)}")
        return
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _BINOPS:
            raise FormulaError("公式中只允许 + - * / 四则运算")
        _check(node.left, names, params, scale_ok=False, flag_ok=False)
        _check(node.right, names, params, scale_ok=False, flag_ok=False)
        return
    if isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, ast.USub):
            raise FormulaError("公式中只允许负号（-）这一种一元运算")
        _check(node.operand, names, params, scale_ok=False, flag_ok=False)
        return
    name = type(node).__name__
    raise FormulaError(f"公式中不允许使用{_NODE_NAMES.get(name, f'语法结构“{name}”')}")


def _flag(value: Any) -> Any:
    """A yes/no input as 1.0 / 0.0 / NaN (unknown), scalar or column (batch columns are codes 1/0/-1)."""
    if value is None:
        return np.nan
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    arr = np.asarray(value, dtype=np.float64)
    return np.where(arr < 0, np.nan, arr)


def marginal(amount: Any, brackets: tuple[Bracket, ...]) -> Any:
    """The tax of ``amount`` under a progressive rate table (each rate on the part inside its bracket)."""
    x = np.asarray(amount, dtype=np.float64)
    tax = np.zeros_like(x)
    for i, b in enumerate(brackets):
        top = brackets[i + 1].above if i + 1 < len(brackets) else np.inf
        tax = tax + b.rate * np.clip(x - b.above, 0.0, top - b.above)
    out = np.where(np.isnan(x), np.nan, tax)
    return out if out.ndim else float(out)


def _eval(node: ast.expr, env: dict[str, Any], as_of: dt.date | None) -> Any:
    if isinstance(node, ast.Constant):
        return float(node.value)  # type: ignore[arg-type]  # numbers only, checked at parse
    if isinstance(node, ast.Attribute):  # a parameter (checked at parse); NaN when not in force
        assert as_of is not None
        value = parameters()[dotted(node) or ""].at(as_of)
        return np.nan if value is None else value
    if isinstance(node, ast.Name):
        value = env.get(node.id)
        if node.id in FLAG_FIELDS:
            return _flag(value)
        return np.nan if value is None else value
    if isinstance(node, ast.UnaryOp):
        return np.negative(_eval(node.operand, env, as_of))
    if isinstance(node, ast.BinOp):
        return _BINOPS[type(node.op)](_eval(node.left, env, as_of), _eval(node.right, env, as_of))
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)
        func = node.func.id
        if func == "where":
            flag, yes, no = (_eval(a, env, as_of) for a in node.args)
            out = np.where(flag == 1.0, yes, no)
            return np.where(np.isnan(flag), np.nan, out)
        if func == "marginal":
            table = _eval(node.args[1], env, as_of)
            amount = _eval(node.args[0], env, as_of)
            if not isinstance(table, tuple):  # the scale is not in force on as_of
                return np.full_like(np.asarray(amount, dtype=np.float64), np.nan)
            return marginal(amount, table)
        args = [_eval(a, env, as_of) for a in node.args]
        out = args[0]
        for arg in args[1:]:
            out = _FUNCS[func](out, arg)
        return out
    raise FormulaError(f"无法计算公式的这一部分：{ast.dump(node)}")  # unreachable after parse
