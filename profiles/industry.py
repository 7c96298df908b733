"""GB/T 4754-2017 industry codes: validation, hierarchy and Chinese names.

Codes are written as the section letter followed by 0–4 digits: ``C``, ``C34``, ``C341``,
``C3411``. Sections and divisions are checked against the full table; a group is checked
where the table lists that division's groups (the ones size classification needs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

DATA = Path(__file__).with_name("data") / "industry_codes.yaml"
_CODE = re.compile(r"^([A-Z])(\d{0,4})$")


class IndustryCodeError(ValueError):
    """An industry code that is malformed or not in GB/T 4754-2017 (message in Chinese)."""


@dataclass(frozen=True)
class IndustryCode:
    code: str
    section: str
    division: str | None  # "C34"
    group: str | None  # "C341"

    @property
    def name(self) -> str:
        """The most specific Chinese name the table knows."""
        table = _table()
        if self.group and self.group[1:] in table.groups:
            return table.groups[self.group[1:]]
        if self.division:
            return table.divisions[self.division[1:]]
        return table.sections[self.section]


@dataclass(frozen=True)
class _Table:
    sections: dict[str, str]
    section_of: dict[str, str]  # division "34" -> "C"
    divisions: dict[str, str]
    groups: dict[str, str]
    divisions_with_groups: frozenset[str]


@cache
def _table() -> _Table:
    raw = yaml.safe_load(DATA.read_text(encoding="utf-8"))
    sections = {k: v["name"] for k, v in raw["sections"].items()}
    section_of = {d: k for k, v in raw["sections"].items() for d in v["divisions"]}
    groups = {str(k): v for k, v in raw["groups"].items()}
    return _Table(
        sections=sections,
        section_of=section_of,
        divisions={str(k): v for k, v in raw["divisions"].items()},
        groups=groups,
        divisions_with_groups=frozenset(g[:2] for g in groups),
    )


def parse_industry_code(raw: str) -> IndustryCode:
    """Validate and split a code; raises :class:`IndustryCodeError` with a Chinese message.

    >>> parse_industry_code("c3411").division
    'C34'
    """
    code = str(raw).strip().upper()
    match = _CODE.match(code)
    if not match:
        raise IndustryCodeError(
            f"行业代码“{raw}”格式不对：应为门类字母加0–4位数字，如 C、C34、C3411"
        )
    letter, digits = match.groups()
    table = _table()
    if letter not in table.sections:
        raise IndustryCodeError(f"行业代码“{raw}”的门类“{letter}”不存在（应为A–T）")
    if len(digits) == 1:
        raise IndustryCodeError(f"行业代码“{raw}”不完整：大类为两位数字，如 {letter}{digits}0")
    division = group = None
    if digits:
        div = digits[:2]
        if table.section_of.get(div) != letter:
            owner = table.section_of.get(div)
            hint = f"，{div}属于门类{owner}" if owner else ""
            raise IndustryCodeError(f"行业代码“{raw}”的大类“{div}”不属于门类{letter}{hint}")
        division = letter + div
        if len(digits) >= 3:
            grp = digits[:3]
            if div in table.divisions_with_groups and grp not in table.groups:
                raise IndustryCodeError(f"行业代码“{raw}”的中类“{grp}”在国民经济行业分类中不存在")
            group = letter + grp
    return IndustryCode(code=code, section=letter, division=division, group=group)


def divisions_under(code: IndustryCode) -> list[str]:
    """Division codes ("C34") covered by a code."""
    if code.division:
        return [code.division]
    table = _table()
    return [code.section + d for d, s in table.section_of.items() if s == code.section]


def groups_under(division: str) -> list[str]:
    """Listed groups ("G591") of a division, empty when the table does not list them."""
    return [f"{division[0]}{g}" for g in _table().groups if g[:2] == division[1:]]


def section_names() -> dict[str, str]:
    return dict(_table().sections)


def division_names() -> dict[str, str]:
    t = _table()
    return {t.section_of[d] + d: name for d, name in t.divisions.items()}


UNLISTED_GROUP = "*"


def group_names() -> dict[str, str]:
    """Listed groups ("G591") plus ``*`` for any group the table does not list."""
    t = _table()
    names = {t.section_of[g[:2]] + g: name for g, name in t.groups.items()}
    names[UNLISTED_GROUP] = "其他中类"
    return names


def group_value(code: IndustryCode) -> str | None:
    """The ``industry_group`` value of a code: a listed group, ``*`` for others, None if not given."""
    if code.group is None:
        return None
    return code.group if code.group in group_names() else UNLISTED_GROUP
