"""Chinese wording shared by the catalog's error messages (rules, formulas, loader, lint).

Policy officers read these messages, so they are Chinese; the machine-readable parts a
message names (field names, keys, operators, values) stay as written in the YAML, quoted
with “…” so they can be searched for in the file.

>>> suggest_zh("smal", ["small", "micro"])
'，是否应为“small”？'
>>> field_ref("employees")
'“employees”（从业人员）'
>>> show_value("many"), show_value(True), show_value(3.0)
('“many”', 'true', '3.0')
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from typing import Any

from profiles.fields import FIELDS, Kind
from profiles.messages import type_text

#: Field kinds as a policy officer reads them (``数值字段``, ``类别字段`` …).
KIND_NAMES: dict[Kind, str] = {
    Kind.NUMBER: "数值",
    Kind.CATEGORY: "类别",
    Kind.SET: "多选",
    Kind.BOOL: "是/否",
    Kind.TEXT: "文本",
    Kind.DATE: "日期",
}

#: Python / YAML value types by their Chinese name.
TYPE_NAMES: dict[type, str] = {
    str: "文本",
    int: "整数",
    float: "数字",
    bool: "true/false",
    list: "列表",
    tuple: "列表",
    dict: "映射",
    type(None): "空值",
}


def quoted(items: Iterable[object]) -> str:
    """``“a”、“b”`` — several keys or values named in one message."""
    return "、".join(f"“{item}”" for item in items)


def suggest_zh(name: object, candidates: Iterable[object]) -> str:
    """``，是否应为“x”？`` for the closest candidate, or an empty string."""
    close = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=1, cutoff=0.5)
    return f"，是否应为“{close[0]}”？" if close else ""


def field_ref(name: str) -> str:
    """A profile field as ``“employees”（从业人员）``: the name to type, then its Chinese label."""
    field = FIELDS.get(name)
    return f"“{name}”（{field.label}）" if field and field.label else f"“{name}”"


def type_name(value: object) -> str:
    """Chinese name of a value's type (``文本``, ``列表`` …)."""
    for kind, label in TYPE_NAMES.items():
        if type(value) is kind:
            return label
    if isinstance(value, dict):
        return "映射"
    if isinstance(value, list | tuple):
        return "列表"
    return type(value).__name__


def show_value(value: object, limit: int = 60) -> str:
    """A value as the officer wrote it: text in “…”, true/false, numbers, lists and mappings as JSON."""
    if isinstance(value, str):
        text = value if len(value) <= limit else value[:limit] + "…"
        return f"“{text}”"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "空值（null）"
    try:
        text = (json.dumps(value, ensure_ascii=False, default=str) if isinstance(value, list | tuple | dict)
                else str(value))
    except ValueError:  # an integer too long to print
        return "（超长数值）"
    return text if len(text) <= limit else text[:limit] + "…"


def _fill(text: str, match: re.Match[str]) -> str:
    return text.format(*match.groups()) if match.groups() else text


# -- YAML syntax errors -------------------------------------------------------------------------------

_YAML_PROBLEMS: list[tuple[str, str]] = [
    (r"mapping values are not allowed here", "此处不能出现“键: 值”（冒号后缺少空格、缩进有误，或含冒号的文本未加引号？）"),
    (r"found character '\\t' that cannot start any token", "含有制表符（Tab），请改用空格缩进"),
    (r"found unexpected end of stream", "文件意外结束（引号未闭合？）"),
    (r"expected ',' or '\]'", "方括号列表 […] 未闭合或缺少逗号"),
    (r"expected ',' or '\}'", "花括号映射 {…} 未闭合或缺少逗号"),
    (r"could not find expected ':'", "缺少冒号“:”"),
    (r"did not find expected key", "缩进有误：此处应为一个键"),
    (r"did not find expected '-' indicator", "缩进有误：此处应为以“-”开头的列表项"),
    (r"expected <block end>", "缩进有误：此行与上文的层级对不齐"),
    (r"found undefined alias", "引用了未定义的锚点（*别名）"),
    (r"found unknown escape character", "双引号文本中含有无效的转义字符（\\）"),
    (r"found unexpected ':'", "此处不能出现冒号“:”（请给含冒号的文本加引号）"),
    (r"found character '(.*)' that cannot start any token", "字符“{0}”不能出现在此处（请给文本加引号）"),
    (r"expected a single document", "文件中只能有一份 YAML 文档（请删除多余的“---”）"),
    (r"invalid value '(.*)': ", "取值“{0}”无法解析（日期须为真实存在的日期，格式 YYYY-MM-DD）"),
    (r"while constructing|could not determine a constructor", "含有不支持的 YAML 标签（!…）"),
]


def yaml_problem(exc: Exception) -> str:
    """A PyYAML error in Chinese (the line is reported separately)."""
    problem = str(getattr(exc, "problem", None) or exc).strip()
    mark = getattr(exc, "problem_mark", None)
    where = f"第{mark.column + 1}列：" if mark is not None else ""
    for pattern, text in _YAML_PROBLEMS:
        match = re.search(pattern, problem)
        if match:
            return f"YAML 格式错误，{where}{_fill(text, match)}"
    return f"YAML 格式错误，{where}无法解析（解析器提示：{problem.splitlines()[0] if problem else '无'}）"


# -- Python syntax errors in a formula ----------------------------------------------------------------

_SYNTAX: list[tuple[str, str]] = [
    (r"'(.)' was never closed", "括号“{0}”没有闭合"),
    (r"unmatched '(.)'", "多余的右括号“{0}”"),
    (r"closing parenthesis '(.)' does not match opening parenthesis '(.)'", "右括号“{0}”与左括号“{1}”不匹配"),
    (r"invalid character '(.)'", "含有无效字符“{0}”（请使用半角的括号和运算符）"),
    (r"invalid (decimal|hexadecimal|octal|binary) literal", "数字写法有误"),
    (r"leading zeros", "数字不能以0开头"),
    (r"unexpected indent", "公式开头不能有空格"),
    (r"unexpected EOF|incomplete input", "公式不完整"),
    (r"unterminated string", "引号没有闭合"),
]


def syntax_problem(message: str) -> str:
    """Python's SyntaxError message for a formula, in Chinese."""
    for pattern, text in _SYNTAX:
        match = re.search(pattern, message)
        if match:
            return _fill(text, match)
    return "请检查运算符、括号和字段名"


# -- pydantic validation errors of the Policy model ---------------------------------------------------

def _choices(expected: object) -> str:
    """pydantic's ``'a', 'b' or 'c'`` as ``a、b、c``."""
    names = re.findall(r"'([^']*)'", str(expected))
    return "、".join(names) if names else str(expected)


def pydantic_message(err: Any, *, json_body: bool = False) -> str:
    """One pydantic error (``err`` from ``ValidationError.errors()``) in Chinese: the one rendering of
    validation errors, for catalog files and for the API's request bodies (``json_body``: an object is a
    JSON对象 there, not a YAML mapping). Value errors raised by our own validators are Chinese already.
    """
    kind, ctx = err["type"], err.get("ctx") or {}
    loc = [str(p) for p in err.get("loc", ())]
    got = err.get("input")
    if kind == "missing":
        return f"缺少必填字段“{'.'.join(loc)}”"
    if kind == "value_error":
        return str(ctx.get("error") or err["msg"]).removeprefix("Value error, ")
    if kind == "string_pattern_mismatch" and loc[-1:] == ["id"]:
        return f"政策ID{show_value(got)}格式不正确：只能由小写字母、数字和连字符组成，如 union-fee-refund-small-micro"
    if kind in ("literal_error", "enum"):
        return f"取值{show_value(got)}无效，应为 {_choices(ctx.get('expected', ''))} 之一"
    if kind == "extra_forbidden":
        return f"未知字段“{loc[-1] if loc else ''}”"
    text = type_text(kind, ctx, json_body=json_body) or f"取值无效（{kind}）"
    if kind in ("string_too_short", "too_short", "missing_argument"):
        return text
    return f"{text}，实际为 {show_value(got)}" if "input" in err else text
