from __future__ import annotations

import pytest

from profiles.industry import (
    IndustryCodeError,
    division_names,
    group_names,
    parse_industry_code,
    section_names,
)


def test_all_20_sections_and_97_divisions_with_chinese_names() -> None:
    assert list(section_names()) == list("ABCDEFGHIJKLMNOPQRST")
    divisions = division_names()
    assert len(divisions) == 97
    assert sorted(int(code[1:]) for code in divisions) == list(range(1, 98))
    assert divisions["C34"] == "通用设备制造业" and divisions["I65"] == "软件和信息技术服务业"
    assert all(name and not name.isascii() for name in divisions.values())


def test_groups_needed_for_size_classification() -> None:
    groups = group_names()
    assert groups["G591"] == "装卸搬运" and groups["K701"] == "房地产开发经营" and groups["K702"] == "物业管理"


@pytest.mark.parametrize(("raw", "division", "group"), [
    ("C", None, None), ("c34", "C34", None), ("C3411", "C34", "C341"), (" G5910 ", "G59", "G591"),
])
def test_valid_codes(raw: str, division: str | None, group: str | None) -> None:
    code = parse_industry_code(raw)
    assert (code.division, code.group) == (division, group)


@pytest.mark.parametrize(("raw", "words"), [
    ("Z12", "门类“Z”不存在"),
    ("C99", "不属于门类C"),
    ("C65", "65属于门类I"),
    ("C3", "不完整"),
    ("G5980", "中类“598”"),
    ("C34111", "格式不对"),
    ("制造业", "格式不对"),
])
def test_unknown_codes_are_rejected_in_chinese(raw: str, words: str) -> None:
    with pytest.raises(IndustryCodeError, match=words):
        parse_industry_code(raw)
