"""What a pydantic error type means, in Chinese: the one table behind every validation message.

Profiles (:mod:`profiles.model`), catalog entries and the API's request bodies
(:func:`policies.messages.pydantic_message`) add the field's name their own way; the wording of the
error itself comes from here."""

from __future__ import annotations

from typing import Any


def type_text(kind: str, ctx: dict[str, Any] | None = None, *, json_body: bool = True) -> str | None:
    """The Chinese text of pydantic error type ``kind`` (``ctx`` its context), or None for a type this
    table does not know. ``json_body``: an object is a JSON对象 (profiles, API bodies), not a YAML mapping
    (catalog files)."""
    ctx = ctx or {}
    mapping = "应为JSON对象" if json_body else "应为映射（键: 值）"
    table = {
        "missing": "必填，不能缺少",
        "int_parsing": "应为整数",
        "int_type": "应为整数",
        "int_from_float": "应为整数",
        "float_parsing": "应为数字",
        "float_type": "应为数字",
        "finite_number": "应为有限的数字",
        "string_type": "应为文本",
        "bool_type": "应为 true 或 false",
        "bool_parsing": "应为 true 或 false",
        "date_parsing": "应为日期（YYYY-MM-DD）",
        "date_type": "应为日期（YYYY-MM-DD）",
        "date_from_datetime_parsing": "应为日期（YYYY-MM-DD）",
        "date_from_datetime_inexact": "应为日期（YYYY-MM-DD），不含时间",
        "dict_type": mapping,
        "model_type": mapping,
        "model_attributes_type": mapping,
        "json_invalid": "不是有效的JSON",
        "missing_argument": "必填",
        "list_type": "应为列表",
        "tuple_type": "应为列表",
        "string_pattern_mismatch": "格式不正确",
        "string_too_short": "不能为空",
        "too_short": "不能为空" if ctx.get("min_length", 1) <= 1 else f"至少需要{ctx.get('min_length')}项",
        "string_too_long": f"过长（最多{ctx.get('max_length')}个字符）",
        "too_long": f"过长（最多{ctx.get('max_length')}项）",
        "greater_than_equal": f"不能小于{ctx.get('ge')}",
        "greater_than": f"应大于{ctx.get('gt')}",
        "less_than_equal": f"不能大于{ctx.get('le')}",
        "less_than": f"应小于{ctx.get('lt')}",
    }
    return table.get(kind)
