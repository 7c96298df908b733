"""profiles/sources.yaml: every source and field rule loads, its mistakes are reported with file:line and
the key in Chinese, and a department's own headers and wording map onto the profile."""

from __future__ import annotations

from pathlib import Path

import pytest

from profiles.fields import FIELDS, PROFILE_FIELDS
from profiles.sources import (
    RULES_PATH,
    SourcesError,
    UnknownSource,
    load_rules,
    rules,
    source,
    source_label,
    source_names,
)

TEXT = RULES_PATH.read_text(encoding="utf-8")


def test_the_sources_of_the_issue_with_their_chinese_labels() -> None:
    assert source_names() == ("registration", "tax", "social_insurance", "science", "industry", "hotline", "self")
    assert [source_label(s) for s in source_names()] == ["市场监管", "税务", "人社", "科技", "工信", "热线坐席", "企业自报"]
    assert source("self").fields == frozenset(PROFILE_FIELDS) and source("hotline").is_open


def test_every_profile_field_has_a_rule_with_a_reason() -> None:
    table = rules()
    assert set(table.fields) == set(PROFILE_FIELDS)
    assert all(rule.why for rule in table.fields.values())
    assert table.fields["tax_credit_grade"].ranks == (("tax",),)
    assert table.fields["rd_expense_wan"].ranks == (("tax", "science"),)  # one rank: the newer wins
    assert table.max_age_days("employees") == 183 and table.max_age_days("name") is None
    assert table.max_age_days("qualifications.high_tech") is None and table.max_age_days("flags.in_difficulty") == 365
    assert table.reminder_window_days == 90
    assert table.ranks("qualifications", "high_tech") == (("science",),)
    assert table.ranks("flags", "in_difficulty") == ()


def test_a_department_may_give_only_its_fields_and_codes() -> None:
    tax, science = source("tax"), source("science")
    assert tax.may_give("tax_credit_grade") and not tax.may_give("employees")
    assert tax.refusal("employees") is not None and tax.refusal("employees").startswith("employees（从业人员）不由税务数据提供")
    assert science.may_give("qualifications", "high_tech") and not science.may_give("qualifications", "little_giant")
    assert science.refusal("qualifications", "little_giant") == (
        "qualifications（企业资质）：科技数据不能给出“专精特新“小巨人”企业”（只能给出高新技术企业、科技型中小企业）")
    assert source("self").may_give("qualifications", "little_giant")
    assert source("registration").codes["flags"] == {"abnormal_operation", "administrative_penalty",
                                                     "seriously_dishonest"}


@pytest.mark.parametrize(("name", "header", "field"), [
    ("tax", "纳税信用级别", "tax_credit_grade"),
    ("tax", "营业收入（万元）", "annual_revenue_wan"),  # the field's own unit in brackets
    ("tax", "营业收入(万元)", "annual_revenue_wan"),
    ("tax", "\ufeff纳税人识别号 ", "uscc"),
    ("tax", "tax_credit_grade", "tax_credit_grade"),  # English names are always themselves
    ("tax", "employees", "employees"),  # … also when the source may not give them: the feed refuses the cell
    ("social_insurance", "参保人数（人）", "employees"),
    ("social_insurance", "裁员率(%)", "layoff_rate_pct"),
    ("registration", "统一社会信用代码", "uscc"),
    ("science", "有效期至", "qualifications.valid_to"),
    ("industry", "认定日期", "qualifications.valid_from"),
    ("self", "从业人员", "employees"),  # a field's own Chinese label, for every source
    ("self", "营业收入（万元）", "annual_revenue_wan"),
    ("hotline", "行业代码（GB/T 4754-2017）", "industry_code"),
    ("self", "企业资质", "qualifications"),
])
def test_headers_map_to_fields(name: str, header: str, field: str) -> None:
    assert source(name).field_of(header) == field


def test_unknown_ignored_and_wrong_unit_headers() -> None:
    tax = source("tax")
    assert tax.field_of("营业收入（元）") is None  # another unit is not silently taken as 万元
    assert tax.field_of("纳税人名称") is None and tax.ignores("纳税人名称") and tax.ignores("序号")
    assert tax.field_of("不存在的列") is None and not tax.ignores("不存在的列")


def test_values_in_the_departments_wording() -> None:
    tax = source("tax")
    assert tax.value_of("tax_credit_grade", " B级 ") == "B"
    assert tax.value_of("taxpayer_type", "一般纳税人") == "general"  # the field's own label
    assert tax.value_of("taxpayer_type", "增值税小规模纳税人") == "small_scale"  # the department's wording
    assert tax.value_of("vat_filing_period", "按季") == "quarterly"
    assert source("science").value_of("qualifications", "高企") == "high_tech"
    assert source("science").value_of("qualifications", "高新技术企业") == "high_tech"
    assert source("industry").value_of("qualifications", "国家级专精特新“小巨人”企业") == "little_giant"
    assert tax.value_of("tax_credit_grade", "甲") == "甲"  # left for the profile's own validation to refuse
    for src in rules().sources.values():
        for name, table in src.values.items():
            assert set(table.values()) <= set(FIELDS[name].vocabulary)


def test_an_unknown_source_is_refused_in_chinese_with_a_suggestion() -> None:
    with pytest.raises(UnknownSource, match="未知的数据来源“taxes”（是否应为“tax”？）"):
        source("taxes")


def _broken(tmp_path: Path, old: str, new: str) -> list[str]:
    assert old in TEXT
    path = tmp_path / "sources.yaml"
    path.write_text(TEXT.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(SourcesError) as caught:
        load_rules(path)
    return caught.value.problems


def _line(old: str) -> int:
    return TEXT[: TEXT.index(old)].count("\n") + 1


def test_mistakes_are_reported_with_file_line_and_key(tmp_path: Path) -> None:
    old = "  tax_credit_grade:\n    sources: [tax]"
    problems = _broken(tmp_path, old, "  tax_credit_grade:\n    sources: [taxes]")
    assert problems == [f"sources.yaml:{_line(old) + 1}: merge.tax_credit_grade.sources: 未知的数据来源“taxes”"
                        "（是否应为“tax”？）"]
    problems = _broken(tmp_path, "\n  tax_credit_grade:\n    sources", "\n  tax_grade:\n    sources")
    assert any("merge.tax_grade: 未知字段“tax_grade”（是否应为“tax_credit_grade”？）" in p for p in problems)
    assert any("merge.tax_credit_grade: 缺少字段 tax_credit_grade 的合并规则" in p for p in problems)


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("    sources: [social_insurance]\n    max_age_days: 183", "    sources: [self]\n    max_age_days: 183",
     "merge.employees.sources: self（企业自报）只能补缺，不能列为权威来源"),
    ("    sources: [social_insurance]\n    max_age_days: 183", "    sources: [tax]\n    max_age_days: 183",
     "merge.employees.sources: tax（税务）不提供字段 employees，不能列为其权威来源"),
    ("  name:\n    sources: [registration]\n    max_age_days: null",
     "  name:\n    sources: [registration]\n    max_age_days: 30", "merge.name.max_age_days: 必填字段不能过期"),
    ("    max_age_days: 183", "    max_age_days: -1", "merge.employees.max_age_days: 应为不小于0的整数"),
    ("  high_tech: [science]", "  high_tec: [science]", "qualification_sources.high_tec: 未知代码“high_tec”"),
    ("  high_tech: [science]", "  high_tech: [tax]", "qualification_sources.high_tech: tax（税务）的 fields 中没有"),
    ("      纳税信用级别: tax_credit_grade", "      纳税信用级别: tax_credit_grad",
     "sources.tax.columns.纳税信用级别: 未知字段“tax_credit_grad”"),
    ("      纳税信用级别: tax_credit_grade", "      纳税信用级别: employees",
     "sources.tax.columns.纳税信用级别: “employees”不在本来源的 fields 中"),
    ("        A级: A", "        A级: AA", "sources.tax.values.tax_credit_grade.A级: “AA”不是纳税信用等级的取值"),
    ("    why: 成立日期不会改变", "    why: ''", "merge.established_on.why: 请写明这样合并的理由"),
    ("    label: 税务", "    lable: 税务", "sources.tax.lable: 未知的键“lable”"),
])
def test_each_kind_of_mistake(tmp_path: Path, old: str, new: str, expected: str) -> None:
    problems = _broken(tmp_path, old, new)
    assert any(expected in p for p in problems), problems
    assert all(p.startswith("sources.yaml:") for p in problems)
