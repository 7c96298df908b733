"""Loader errors cite file:line and the key, with a suggestion where one is close; the message is Chinese."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from policies.loader import CATALOG_DIR, CatalogError, load_catalog

EXAMPLE = CATALOG_DIR / "union-fee-refund-small-micro.yaml"


def _catalog_with(tmp_path: Path, text: str, name: str = "union-fee-refund-small-micro.yaml") -> Path:
    (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def _problems(directory: Path) -> list[str]:
    with pytest.raises(CatalogError) as err:
        load_catalog(directory)
    return [str(p) for p in err.value.problems]


def _line(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_the_real_catalog_loads(catalog) -> None:  # type: ignore[no-untyped-def]
    assert len(catalog) >= 1
    assert catalog.version.startswith("catalog-")


def test_unknown_profile_field_in_a_rule_names_line_and_suggests(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8").replace("field: entity_type", "field: tax_grade")
    problems = _problems(_catalog_with(tmp_path, text))
    assert problems == [
        f"union-fee-refund-small-micro.yaml:{_line(text, 'tax_grade')}: eligibility.all.1.field: "
        "未知字段“tax_grade”，是否应为“tax_credit_grade”？"
    ]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("in: [small, micro]", "within: [small, micro]", "未知运算符“within”不适用于类别字段“size”（企业规模）"),
        ("in: [small, micro]", "gt: 3",
         "运算符“gt”不适用于类别字段“size”（企业规模），可用的运算符：eq、ne、in、not_in"),
        ("in: [small, micro]", "in: [smal]", "取值“smal”不是字段“size”（企业规模）的可选值，是否应为“small”？"),
        ("in: [enterprise]", "in: []", "“in”需要非空的取值列表"),
        ("in: [small, micro]", "in: small", "“in”需要非空的取值列表，实际为文本 “small”（请写成 [small]）"),
        ("in: [small, micro]", "eq: [small]", "“eq”只接受单个取值，不能是列表；多个取值请用“in”"),
    ],
)
def test_bad_operators_and_values(tmp_path: Path, old: str, new: str, message: str) -> None:
    text = EXAMPLE.read_text(encoding="utf-8").replace(old, new)
    problems = _problems(_catalog_with(tmp_path, text))
    assert len(problems) == 1 and message in problems[0]
    assert problems[0].startswith(f"union-fee-refund-small-micro.yaml:{_line(text, new)}: eligibility.all.")


def test_duplicate_ids_across_files(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE, tmp_path / EXAMPLE.name)
    text = EXAMPLE.read_text(encoding="utf-8")
    (tmp_path / "copy.yaml").write_text(text, encoding="utf-8")
    problems = _problems(tmp_path)
    assert any("copy.yaml:1: id: 政策ID“union-fee-refund-small-micro”与文件名“copy.yaml”不一致" in p for p in problems)


def test_missing_task_number(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8").replace("  task_no: 61\n", "")
    problems = _problems(_catalog_with(tmp_path, text))
    assert len(problems) == 1
    assert f":{_line(text, 'source:')}: source: task_no（附件1 序号 1–160）与 measure_no（附件2 举措 1–10）" \
        "须填写且只能填写其中一项" in problems[0]


def test_task_number_out_of_range_and_unknown_top_level_key(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8").replace("task_no: 61", "task_no: 161")
    text = text.replace("category: tax_fee", "category: tax_fee\ncatgory: x")
    problems = _problems(_catalog_with(tmp_path, text))
    assert f"union-fee-refund-small-micro.yaml:{_line(text, 'task_no')}: source.task_no: 不能大于160，实际为 161" \
        in problems
    assert f"union-fee-refund-small-micro.yaml:{_line(text, 'catgory')}: catgory: 未知字段“catgory”，是否应为“category”？" \
        in problems


def test_duplicate_yaml_key_and_bad_yaml(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8").replace("version: 2", "version: 2\nversion: 3")
    problems = _problems(_catalog_with(tmp_path, text))
    assert any(f":{_line(text, 'version: 3')}: version: 键“version”重复出现" in p for p in problems)
    (tmp_path / "union-fee-refund-small-micro.yaml").write_text("id: [unclosed\n", encoding="utf-8")
    assert _problems(tmp_path) == [
        "union-fee-refund-small-micro.yaml:2: yaml: YAML 格式错误，第1列：方括号列表 […] 未闭合或缺少逗号"]
    (tmp_path / "union-fee-refund-small-micro.yaml").write_text("id: a\ntitle: 标题: 副标题\n", encoding="utf-8")
    assert _problems(tmp_path) == ["union-fee-refund-small-micro.yaml:2: yaml: YAML 格式错误，第10列："
                                   "此处不能出现“键: 值”（冒号后缺少空格、缩进有误，或含冒号的文本未加引号？）"]


def test_an_impossible_date_and_a_non_utf8_file_are_problems_not_crashes(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8").replace("effective_from: 2023-04-19", "effective_from: 2023-13-01")
    problems = _problems(_catalog_with(tmp_path, text))
    assert len(problems) == 1 and problems[0].startswith(
        f"union-fee-refund-small-micro.yaml:{_line(text, 'effective_from')}: yaml: ")
    assert "取值“2023-13-01”无法解析" in problems[0]
    (tmp_path / "union-fee-refund-small-micro.yaml").write_bytes("title: 标题\n".encode("gbk"))
    assert _problems(tmp_path) == ["union-fee-refund-small-micro.yaml:1: file: 文件不是 UTF-8 编码，请另存为 UTF-8 后重试"]


def test_unsafe_formula_is_rejected(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8").replace(
        "annual_payroll_wan * union.fee_rate * (1 - union.grassroots_retention_share)",
        "__import__('os').system('true')")
    problems = _problems(_catalog_with(tmp_path, text))
    assert f"union-fee-refund-small-micro.yaml:{_line(text, 'formula:')}: benefit.estimate.formula: " \
        "公式中只能调用 min(…)、max(…)、where(…) 和 marginal(…)，且不能使用关键字参数" in problems


def test_on_trigger_policy_needs_triggers(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8").replace("delivery: proactive", "delivery: on_trigger")
    text = text.replace("triggers: [工会经费, 返还, 减负]", "triggers: []")
    assert any("delivery 为 on_trigger 的政策至少需要一个触发词（triggers）" in p
               for p in _problems(_catalog_with(tmp_path, text)))
