"""The CLI contract (SPEC §2.3): JSON shape, exit codes, one-line errors naming the field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict
from typer.testing import CliRunner

from service.main import app

SAMPLES = sorted((Path(__file__).resolve().parents[2] / "profiles" / "samples").glob("*.json"))
runner = CliRunner()
PLAN = "徐委办〔2023〕37号"


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class PackageEntry(_Open):
    policy_id: str
    title: str
    source_task: int | None
    source_measure: int | None
    category: str
    score: float
    reasons: list[str]
    estimated_value_wan: float | int | None
    value_kind: str | None
    value_assumption: str | None
    source_document: str
    how_to_apply: str


class Possible(_Open):
    policy_id: str
    source_task: int | None
    source_measure: int | None
    source_document: str
    missing: list[str]


class NearMiss(_Open):
    policy_id: str
    source_task: int | None
    source_measure: int | None
    source_document: str
    estimated_value_wan: float | int | None
    value_kind: str | None
    value_assumption: str | None
    unmet: list[str]


class MatchOutput(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    enterprise: dict[str, Any]
    package: list[PackageEntry]
    possibly_eligible: list[Possible]
    near_misses: list[NearMiss]


def _match(*args: str) -> Any:
    result = runner.invoke(app, ["match", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.stem for s in SAMPLES])
def test_match_json_validates_against_the_contract(sample: Path) -> None:
    # an evaluation day after every sample's founding date (one founded later is refused: test_dates.py)
    out = MatchOutput.model_validate(_match("--profile", str(sample), "--as-of", "2026-06-01"))
    assert out.enterprise["uscc"] == json.loads(sample.read_text())["uscc"]
    assert "size" in out.enterprise
    scores = [e.score for e in out.package]
    assert scores == sorted(scores, reverse=True)
    ids = [e.policy_id for e in out.package] + [e.policy_id for e in out.possibly_eligible] + [
        e.policy_id for e in out.near_misses]
    assert len(ids) == len(set(ids))
    for entry in out.package + out.possibly_eligible + out.near_misses:  # type: ignore[operator]
        if entry.source_document == PLAN:  # the plan's own: its task or its measure
            assert (entry.source_task is None) != (entry.source_measure is None)
        else:  # a national or provincial announcement: neither
            assert entry.source_task is None and entry.source_measure is None


def test_top_keeps_the_best() -> None:
    sample = str(SAMPLES[0])
    full = _match("--profile", sample, "--as-of", "2024-06-01")["package"]
    top3 = _match("--profile", sample, "--as-of", "2024-06-01", "--top", "3")["package"]
    assert top3 == full[:3] and len(full) > 3


def test_small_manufacturer_gets_the_union_fee_refund_with_its_value() -> None:
    out = _match("--profile", str(SAMPLES[0]), "--as-of", "2024-06-01")
    entry = next(e for e in out["package"] if e["policy_id"] == "union-fee-refund-small-micro")
    assert entry["estimated_value_wan"] == pytest.approx(620 * 0.02 * 0.4)  # the increment over the union's 60%
    assert entry["source_task"] == 61 and entry["source_measure"] is None
    assert out["enterprise"]["size"] == "small" and out["enterprise"]["size_source"] == "derived"


@pytest.mark.parametrize(
    ("patch", "field", "words"),
    [
        ({"uscc": "91440300708461136A"}, "uscc", "校验位"),
        ({"tax_grade": "A"}, "tax_grade", "未知字段"),
        ({"employees": -3}, "employees", "不能小于0"),
        ({"employees": "many"}, "employees", "应为整数"),
        ({"size": "tiny"}, "size", "取值无效"),
        ({"industry_code": "C99"}, "industry_code", "不属于门类C"),
        ({"established_on": "2020-13-01"}, "established_on", "日期"),
        ({"business_scope": "x" * 2001}, "business_scope", "过长"),
        ({"employees": True}, "employees", "应为整数"),  # JSON true is no number (no lax coercion)
        ({"annual_revenue_wan": "1200"}, "annual_revenue_wan", "应为数字"),
    ],
)
def test_invalid_profiles_exit_2_with_one_line_naming_the_field(
    tmp_path: Path, patch: dict[str, Any], field: str, words: str
) -> None:
    data = json.loads(SAMPLES[0].read_text()) | patch
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    result = runner.invoke(app, ["match", "--profile", str(path), "--json"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and field in lines[0] and words in lines[0], lines
    assert result.stdout == ""


def test_not_json_and_missing_file_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    for path in (bad, tmp_path / "missing.json"):
        result = runner.invoke(app, ["match", "--profile", str(path)])
        assert result.exit_code == 2 and result.stderr.startswith("错误：")


def test_search_json_shape_and_ranking() -> None:
    result = runner.invoke(app, ["search", "工会经费返还", "--top", "5", "--json"])
    assert result.exit_code == 0
    results = json.loads(result.stdout)["results"]
    assert 1 <= len(results) <= 5
    assert results[0]["policy_id"] == "union-fee-refund-small-micro"
    assert set(results[0]) >= {"policy_id", "title", "source_task", "source_measure", "score"}
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)


def test_human_report_is_chinese() -> None:
    result = runner.invoke(app, ["match", "--profile", str(SAMPLES[0]), "--as-of", "2024-06-01"])
    assert result.exit_code == 0
    assert "政策套餐" in result.stdout and "小微企业工会经费全额返还" in result.stdout


def test_installed_console_script_exit_code(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"uscc": "123", "name": "x"}), encoding="utf-8")
    exe = Path(sys.executable).with_name("policyfit")
    proc = subprocess.run([str(exe), "match", "--profile", str(path), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "uscc" in proc.stderr and "18位" in proc.stderr


@pytest.mark.parametrize("args", [
    ["match", "--profile", str(SAMPLES[0]), "--top", "0"],
    ["match", "--profile", str(SAMPLES[0]), "--as-of", "2024/06/01"],
    ["search", "贷款", "--top", "0"],
    ["search", "   "],
    ["profiles", "synth", "--n", "0"],
])
def test_bad_options_are_refused_in_chinese(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.stderr.startswith("错误：") and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("args", "words"), [
    (["batch", "run", "--as-of", "2024-13-01"], "--as-of"),
    (["batch", "run", "--engine", "gpu"], "--engine"),
    (["batch", "run", "--workers", "0"], "--workers"),
    (["push", "deliver", "--channel", "fax"], "--channel"),
    (["push", "deliver", "--channel", "webhook", "--url", "notaurl"], "--url"),
    (["push", "opt-out", "123"], "统一社会信用代码"),
    (["push", "retry-dead", "--uscc", "abc"], "--uscc"),
])
def test_batch_and_push_refuse_bad_arguments_in_chinese(args: list[str], words: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and lines[0].startswith("错误"), lines
