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

from profiles.fields import FIELDS, Kind, suggest

_BINOPS = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide}
_FUNCS = {"min": np.minimum, "max": np.maximum}
NUMERIC_FIELDS = tuple(n for n, f in FIELDS.items() if f.kind is Kind.NUMBER)


class FormulaError(ValueError):
    """A formula that is not allowed; the message names the offending part."""


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
        raise FormulaError(f"formula is not valid arithmetic: {exc.msg}") from None
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if node.id in _FUNCS:
                continue
            if node.id not in NUMERIC_FIELDS:
                raise FormulaError(
                    f"unknown numeric field '{node.id}' in formula{suggest(node.id, NUMERIC_FIELDS)}"
                )
            names.append(node.id)
        elif isinstance(node, ast.Call):
            if not (isinstance(node.func, ast.Name) and node.func.id in _FUNCS) or node.keywords:
                raise FormulaError("only min(...) and max(...) may be called in a formula")
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise FormulaError(f"only numbers may appear as constants, got {node.value!r}")
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _BINOPS:
                raise FormulaError("only + - * / are allowed in a formula")
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, ast.USub):
                raise FormulaError("only unary minus is allowed in a formula")
        elif not isinstance(node, (ast.Load, ast.operator, ast.unaryop)):
            raise FormulaError(f"'{type(node).__name__}' is not allowed in a formula")
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
    raise FormulaError(f"cannot evaluate {ast.dump(node)}")  # unreachable after parse
