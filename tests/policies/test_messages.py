"""Every error a policy officer reads — rule, formula and lint messages — is Chinese."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest

from policies import lint
from policies.formula import FormulaError, parse_formula
from policies.loader import CATALOG_DIR
from policies.rules import RuleError, parse_rule

CJK = re.compile(r"[\u4e00-\u9fff]")
EXAMPLE = CATALOG_DIR / "union-fee-refund-small-micro.yaml"

BAD_RULES: list[Any] = [
    "size is small",
    None,
    [{"field": "size", "in": ["small"]}],
    {"all": [], "any": []},
    {"all": {"field": "size", "in": ["small"]}},
    {"any": []},
    {"not": {"field": "size", "eq": "small"}, "note": "x"},
    {"feild": "size", "in": ["small"]},
    {},
    {"field": "tax_grade", "eq": "A"},
    {"field": ["size"], "eq": "small"},
    {"field": "name", "eq": "x"},
    {"field": "established_on", "ge": "2020-01-01"},
    {"field": "size"},
    {"field": "size", "in": ["small"], "eq": "small"},
    {"field": "size", "within": ["small"]},
    {"field": "size", "gt": 3},
    {"field": "flags", "eq": "bankruptcy"},
    {"field": "size", "in": []},
    {"field": "size", "in": "small"},
    {"field": "size", "eq": ["small"]},
    {"field": "employees", "lt": [10]},
    {"field": "employees", "ge": "many"},
    {"field": "employees", "ge": True},
    {"field": "employees", "ge": 10**400},
    {"field": "is_sme", "eq": "yes"},
    {"field": "size", "in": ["smal"]},
    {"field": "qualifications", "has_any": ["hightech"]},
    {"field": "industry_section", "eq": "Z"},
    {"all": [{"not": {"field": "employees", "lt": "many"}}]},
]

BAD_FORMULAS = [
    "annual_payroll_wan *", "(annual_payroll_wan", "annual_payroll_wan)", "annual_payroll_wan * 0.02）",
    "annual_payroll_wan（1）", "size * 2", "employes * 2", "__import__('os').system('true')", "'x' * 2",
    "min(employees, key=1)", "min()", "employees ** 2", "not employees", "employees < 5", "[employees][0]",
    "employees if employees else 1", "employees.real", "1, 2", "lambda: 1",
]


def _chinese(text: str) -> bool:
    return bool(CJK.search(text))


@pytest.mark.parametrize("rule", BAD_RULES, ids=[str(i) for i in range(len(BAD_RULES))])
def test_every_rule_error_is_chinese(rule: Any) -> None:
    with pytest.raises(RuleError) as err:
        parse_rule(rule)
    assert _chinese(str(err.value)), str(err.value)


@pytest.mark.parametrize("formula", BAD_FORMULAS)
def test_every_formula_error_is_chinese(formula: str) -> None:
    with pytest.raises(FormulaError) as err:
        parse_formula(formula)
    assert _chinese(str(err.value)), str(err.value)


def test_rule_messages_name_the_field_with_its_label_and_suggest() -> None:
    cases = {
        "未知字段“tax_grade”，是否应为“tax_credit_grade”？": {"field": "tax_grade", "eq": "A"},
        "“in”需要非空的取值列表": {"field": "size", "in": []},
        "取值“smal”不是字段“size”（企业规模）的可选值，是否应为“small”？": {"field": "size", "in": ["smal"]},
        "字段“employees”（从业人员）是数值字段，取值应为数字，实际为 “many”": {"field": "employees", "ge": "many"},
        "运算符“ge”不适用于类别字段“size”（企业规模），可用的运算符：eq、ne、in、not_in": {"field": "size", "ge": 1},
        "“any”至少需要一条规则": {"any": []},
    }
    for message, rule in cases.items():
        with pytest.raises(RuleError) as err:
            parse_rule(rule)
        assert str(err.value) == message


def _variants() -> dict[str, str]:
    text = EXAMPLE.read_text(encoding="utf-8")
    swaps = {
        "bad-id": ("id: union-fee-refund-small-micro", "id: Union_Fee"),
        "version": ("version: 2", "version: 0"),
        "version-text": ("version: 2", "version: one"),
        "status": ("status: published", "status: publishd"),
        "title": ("title: 小微企业工会经费全额返还", 'title: ""'),
        "no-task": ("  task_no: 61\n", ""),
        "both-origins": ("  task_no: 61\n", "  task_no: 61\n  measure_no: 2\n"),
        "task-range": ("task_no: 61", "task_no: 161"),
        "related": ("  task_no: 61\n", "  task_no: 61\n  related_tasks: [0]\n"),
        "source-extra": ("  task_no: 61\n", "  task_no: 61\n  page: 3\n"),
        "category": ("category: tax_fee", "category: tax"),
        "benefit-type": ("benefit_type: refund", "benefit_type: refunds"),
        "formula": ("annual_payroll_wan * union.fee_rate", "size * union.fee_rate"),
        "rule": ("in: [small, micro]", "in: [smal]"),
        "delivery": ("delivery: proactive", "delivery: sometimes"),
        "triggers": ("delivery: proactive\ntriggers: [工会经费, 返还, 减负]", "delivery: on_trigger\ntriggers: []"),
        "tags": ("tags: [小微企业, 减负降费, 工会经费]", "tags: 小微企业"),
        "departments": ("lead_departments: [市总工会]", "lead_departments: []"),
        "dates": ("effective_to: null", "effective_to: 2020-01-01"),
        "bad-date": ("effective_from: 2023-04-19", "effective_from: 2023-02-30"),
        "date-text": ("effective_from: 2023-04-19", "effective_from: 下个月"),
        "unknown-key": ("category: tax_fee", "category: tax_fee\ncatgory: x"),
        "duplicate-key": ("version: 2", "version: 2\nversion: 3"),
        "yaml": ("title: 小微企业工会经费全额返还", "title: [小微企业"),
        "yaml-colon": ("title: 小微企业工会经费全额返还", "title: 小微企业: 工会经费"),
        "yaml-tab": ("tags: [", "tags:\t["),
    }
    out = {}
    for name, (old, new) in swaps.items():
        assert old in text, name
        out[name] = text.replace(old, new)
    out["not-a-mapping"] = "- 工会经费\n"
    out["empty"] = ""
    return out


def test_every_lint_problem_is_chinese_and_keeps_file_line_key(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    variants = _variants()
    for name, text in variants.items():
        (tmp_path / f"{name}.yaml").write_text(text, encoding="utf-8")
    (tmp_path / "gbk.yaml").write_bytes("title: 标题\n".encode("gbk"))
    (tmp_path / EXAMPLE.name).write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "copy.yaml").write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    assert lint.main([str(tmp_path)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1].startswith("目录校验失败：")
    problems = lines[:-1]
    files = {line.split(":", 1)[0] for line in problems}
    assert files == {f"{name}.yaml" for name in variants} | {"gbk.yaml", "copy.yaml"}
    for line in problems:
        match = re.fullmatch(r"([\w.-]+\.yaml):(\d+): ([\w.]+): (.+)", line)
        assert match, line
        assert _chinese(match.group(4)), line
    assert lint.main([str(tmp_path / "nowhere")]) == 1
    assert _chinese(capsys.readouterr().err.splitlines()[0])


SOURCES = ["rules.py", "formula.py", "schema.py", "loader.py", "lint.py"]


@pytest.mark.parametrize("module", SOURCES)
def test_no_english_message_is_left_in_the_source(module: str) -> None:
    """Static guard: the literal text of every raised error and Problem message contains Chinese."""
    tree = ast.parse((CATALOG_DIR.parent / module).read_text(encoding="utf-8"))
    checked = 0
    for node in ast.walk(tree):
        message: ast.expr | None = None
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args:
            name = node.exc.func.id if isinstance(node.exc.func, ast.Name) else ""
            if name in ("RuleError", "FormulaError", "ValueError"):
                message = node.exc.args[0]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Problem":
            message = node.args[3] if len(node.args) > 3 else None
        if message is None:
            continue
        literal = "".join(
            part.value for part in ast.walk(message) if isinstance(part, ast.Constant) and isinstance(part.value, str)
        )
        assert _chinese(literal) or not literal, f"{module}:{node.lineno}: {ast.unparse(message)}"
        checked += 1
    assert checked or module == "lint.py"
