"""Loader errors cite file:line and the key, with a suggestion where one is close."""

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
        "unknown field 'tax_grade' — did you mean 'tax_credit_grade'?"
    ]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("in: [small, micro]", "within: [small, micro]", "operator 'within' does not apply"),
        ("in: [small, micro]", "gt: 3", "operator 'gt' does not apply to category field 'size'"),
        ("in: [small, micro]", "in: [smal]", "'smal' is not a value of 'size' — did you mean 'small'?"),
        ("in: [enterprise]", "in: []", "'in' takes a non-empty list"),
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
    assert any("must match the file name 'copy.yaml'" in p for p in problems)


def test_missing_task_number(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8").replace("  task_no: 61\n", "")
    problems = _problems(_catalog_with(tmp_path, text))
    assert len(problems) == 1
    assert f":{_line(text, 'source:')}: source: give exactly one of task_no" in problems[0]


def test_task_number_out_of_range_and_unknown_top_level_key(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8").replace("task_no: 61", "task_no: 161")
    text = text.replace("category: tax_fee", "category: tax_fee\ncatgory: x")
    problems = _problems(_catalog_with(tmp_path, text))
    assert any(f":{_line(text, 'task_no')}: source.task_no:" in p and "160" in p for p in problems)
    assert any("unknown field 'catgory' — did you mean 'category'?" in p for p in problems)


def test_duplicate_yaml_key_and_bad_yaml(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8").replace("version: 1", "version: 1\nversion: 2")
    problems = _problems(_catalog_with(tmp_path, text))
    assert any(f":{_line(text, 'version: 2')}: version: duplicate key" in p for p in problems)
    (tmp_path / "union-fee-refund-small-micro.yaml").write_text("id: [unclosed\n", encoding="utf-8")
    assert any(": yaml:" in p for p in _problems(tmp_path))


def test_unsafe_formula_is_rejected(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8").replace(
        "annual_payroll_wan * 0.02", "__import__('os').system('true')")
    problems = _problems(_catalog_with(tmp_path, text))
    assert any("benefit.estimate.formula" in p for p in problems)


def test_on_trigger_policy_needs_triggers(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8").replace("delivery: proactive", "delivery: on_trigger")
    text = text.replace("triggers: [工会经费, 返还, 减负]", "triggers: []")
    assert any("needs at least one trigger" in p for p in _problems(_catalog_with(tmp_path, text)))
