"""Values as people read them: the one Chinese rendering of a field's value and the vocabulary of coded fields.

Explanations (a clause's observed value, a pushed message's why-line), the console's profile pages and the
run reports all render values here; :mod:`profiles.columns` decodes column codes back to these values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from profiles.fields import FIELDS

#: derived fields whose values are codes of a table (行业门类 C, 大类 C34 …), shown by their name
CODED = ("industry_section", "industry_division", "industry_group", "size_category")


def vocabulary(field_name: str) -> dict[str, str]:
    """The allowed values of a category or set field, value → Chinese label (industry codes from their table)."""
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


def value_text(name: str, value: Any, unknown: str = "未填", digits: int | None = 2) -> str:
    """A profile or derived value in Chinese: 小型 for small, 制造业（C） for an industry section, lists joined
    with 、 (an empty list is 无), ``unknown`` for None; a fractional number is rounded to ``digits`` (None: as is).
    """
    if value is None:
        return unknown
    spec = FIELDS.get(name)
    if isinstance(value, list):
        return "、".join(value_text(name, v, unknown, digits) for v in value) or "无"
    if isinstance(value, Mapping) or hasattr(value, "code"):
        return _dated_text(name, value)
    if spec is None:
        return str(value)
    if name in CODED:
        label = vocabulary(name).get(str(value))
        if label:
            return label if name == "size_category" else f"{label}（{value}）"
    if digits is not None and isinstance(value, float) and not value.is_integer():
        value = round(value, digits)
    return spec.value_label(value)


def _dated_text(name: str, item: Any) -> str:
    """A dated qualification: 高新技术企业（2023-11-01至2026-10-31）."""
    def get(key: str) -> Any:
        return item.get(key) if isinstance(item, Mapping) else getattr(item, key, None)

    label = value_text(name, get("code"))
    start, end = get("valid_from"), get("valid_to")
    if start and end:
        return f"{label}（{start}至{end}）"
    if end:
        return f"{label}（有效期至{end}）"
    if start:
        return f"{label}（{start}起）"
    return label


def wan_text(value: Any) -> str:
    """An amount in 万元 with thousands separators and no trailing zeros (1,234.5); '' when unknown."""
    if value is None:
        return ""
    number = float(value)
    return f"{number:,.2f}".rstrip("0").rstrip(".")
