"""The money of a package through every entry point (issue 13): the new profile fields (taxable_income_wan,
rd_expense_wan, unemployment_insurance_paid_wan, layoff_rate_pct, vat_filing_period, has_union,
disabled_employees, deductible_input_vat_wan) accepted by the CLI, the API and the importer, bad values refused
naming the field; every package entry carries estimated_value_wan / value_kind / value_assumption /
source_document, and the summary's total is the sum of the counted entries.

Expected numbers are computed with the catalog's own formula (matching.package.estimate_value) or read from the
answer itself, so that these tests hold while the catalog's values are written."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from matching.package import estimate_value
from profiles.features import derive
from profiles.model import parse_profile
from service.app.importer import import_file
from service.bootstrap import ServiceState, get_matcher
from service.main import app
from tests.service.conftest import Tokens, bearer, make_uscc, sample
from tests.service.test_import import _csv_line, errors_of, stored, usccs

AS_OF = "2026-11-30"
UNION_REFUND = "union-fee-refund-small-micro"
VALUE_KEYS = ("estimated_value_wan", "value_kind", "value_assumption", "source_document")
KINDS = (None, "saving", "cash_flow", "non_monetary", "unquantified")

#: The new fields with plausible values for sample 01 (a small gear maker that has a union).
NEW_FIELDS: dict[str, Any] = {
    "taxable_income_wan": 280, "rd_expense_wan": 160, "unemployment_insurance_paid_wan": 6.2,
    "layoff_rate_pct": 1.5, "vat_filing_period": "monthly", "has_union": True, "disabled_employees": 1,
    "deductible_input_vat_wan": 380,
}

BAD_VALUES = [
    ("layoff_rate_pct", 120, "上年裁员率"),
    ("layoff_rate_pct", -1, "上年裁员率"),
    ("vat_filing_period", "yearly", "增值税申报期"),
    ("disabled_employees", 1.5, "安排残疾人就业人数"),
    ("taxable_income_wan", -5, "年应纳税所得额"),
    ("rd_expense_wan", "160", "上年研发费用"),
    ("unemployment_insurance_paid_wan", True, "上年实际缴纳失业保险费"),
    ("deductible_input_vat_wan", -0.5, "当年可抵扣进项税额"),
    ("has_union", "是", "是否建立工会"),
]

runner = CliRunner()


def money_profile(**changes: Any) -> dict[str, Any]:
    return {**sample(0), **NEW_FIELDS, **changes}


def expected_union_value(profile: dict[str, Any], as_of: str = AS_OF) -> float | None:
    """The union-fee refund's value by the catalog's own formula, for this profile on this day."""
    day = dt.date.fromisoformat(as_of)
    matcher = get_matcher()
    record = derive(parse_profile(profile), day).batch.record(0)
    return estimate_value(matcher.catalog[UNION_REFUND], record, day)


def check_money(answer: dict[str, Any]) -> None:
    """Every entry carries the four value keys; the total is the sum of the counted entries."""
    for entry in answer["package"] + answer["near_misses"]:
        assert all(key in entry for key in VALUE_KEYS), entry["policy_id"]
        assert entry["source_document"], entry["policy_id"]
        assert entry["value_kind"] in KINDS, entry["value_kind"]
        if entry["value_kind"] is not None:  # a value or why there is none, in one Chinese sentence
            assert entry["value_assumption"], entry["policy_id"]
        if entry["estimated_value_wan"] is not None:
            assert entry["estimated_value_wan"] >= 0
    summary = answer["summary"]
    counted = [e["estimated_value_wan"] for e in answer["package"] if e["counted_in_total"]
               and e["estimated_value_wan"]]
    assert summary["estimated_value_wan"] == pytest.approx(round(sum(counted), 2))
    assert summary["valued_policies"] == len(counted)
    deferred = [e["estimated_value_wan"] for e in answer["package"] if e["value_kind"] == "cash_flow"
                and e["estimated_value_wan"]]
    assert summary["cash_flow_wan"] == pytest.approx(round(sum(deferred), 2))
    assert all(e["value_kind"] == "saving" for e in answer["package"] if e["counted_in_total"])


def write_profile(tmp_path: Path, profile: dict[str, Any]) -> Path:
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile, ensure_ascii=False), encoding="utf-8")
    return path


# ---- policyfit match ------------------------------------------------------------------------
def test_cli_json_carries_the_value_keys_for_a_profile_with_the_new_fields(tmp_path: Path) -> None:
    profile = money_profile()
    result = runner.invoke(app, ["match", "--profile", str(write_profile(tmp_path, profile)), "--json",
                                 "--as-of", AS_OF])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    for name, value in NEW_FIELDS.items():
        assert answer["enterprise"][name] == value, name
    check_money(answer)
    union = next(e for e in answer["package"] if e["policy_id"] == UNION_REFUND)
    assert union["estimated_value_wan"] == pytest.approx(expected_union_value(profile))
    assert union["estimated_value_wan"] > 0 and union["value_kind"] == "saving" and union["counted_in_total"]
    assert "工资总额" in union["value_assumption"] and union["source_document"] == "徐委办〔2023〕37号"
    assert answer["summary"]["estimated_value_wan"] >= union["estimated_value_wan"]
    assert answer["summary"]["valued_policies"] >= 1


def test_cli_value_is_null_with_the_reason_when_its_input_is_unknown(tmp_path: Path) -> None:
    profile = {k: v for k, v in money_profile().items() if k != "annual_payroll_wan"}
    result = runner.invoke(app, ["match", "--profile", str(write_profile(tmp_path, profile)), "--json",
                                 "--as-of", AS_OF])
    answer = json.loads(result.stdout)
    union = next(e for e in answer["package"] if e["policy_id"] == UNION_REFUND)
    assert union["estimated_value_wan"] is None  # (counted_in_total may still be true: it adds nothing)
    assert "年工资总额" in union["value_assumption"]  # says what it needs
    check_money(answer)


def test_the_installed_command_as_outside_checks_call_it(tmp_path: Path) -> None:
    """`policyfit match --json --as-of …` in a process of its own, reading the keys the checks read."""
    exe = Path(sys.executable).with_name("policyfit")
    path = write_profile(tmp_path, money_profile())
    proc = subprocess.run([str(exe), "match", "--profile", str(path), "--json", "--as-of", AS_OF],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    check_money(answer)
    assert any(e["estimated_value_wan"] for e in answer["package"])


def test_cli_report_shows_each_value_its_assumption_and_the_total(tmp_path: Path) -> None:
    profile = money_profile()
    result = runner.invoke(app, ["match", "--profile", str(write_profile(tmp_path, profile)), "--as-of", AS_OF])
    assert result.exit_code == 0, result.output
    text = result.stdout
    answer = json.loads(runner.invoke(app, ["match", "--profile", str(write_profile(tmp_path, profile)),
                                            "--json", "--as-of", AS_OF]).stdout)
    union = next(e for e in answer["package"] if e["policy_id"] == UNION_REFUND)
    value = f"{union['estimated_value_wan']:,.2f}".rstrip("0").rstrip(".")
    block = text[text.index("小微企业工会经费全额返还"):]
    block = block[:block.index("来源：")]
    assert f"金额：估计价值 {value} 万元/年" in block
    assert f"怎么估算：{union['value_assumption']}" in block
    total = f"{answer['summary']['estimated_value_wan']:,.2f}".rstrip("0").rstrip(".")
    assert f"估计价值合计约 {total} 万元/年（{answer['summary']['valued_policies']} 项可估算）" in text
    assert "同类政策只计一次" in text  # the one line on how the total is estimated
    assert "来源：徐委办〔2023〕37号 《徐州市2023年优化营商环境重点任务》第61项" in text


@pytest.mark.parametrize(("field", "value", "label"), BAD_VALUES, ids=[f"{f}={v!r}" for f, v, _ in BAD_VALUES])
def test_cli_refuses_a_bad_new_field_naming_it(tmp_path: Path, field: str, value: Any, label: str) -> None:
    result = runner.invoke(app, ["match", "--profile", str(write_profile(tmp_path, money_profile(**{field: value}))),
                                 "--json", "--as-of", AS_OF])
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and field in line and label in line, line


# ---- the API --------------------------------------------------------------------------------
def test_match_api_returns_the_value_keys(client: TestClient, tokens: Tokens) -> None:
    profile = money_profile(uscc=make_uscc(8821, "91320311"))
    response = client.post("/v1/match", json={"profile": profile, "as_of": AS_OF}, headers=bearer(tokens.staff))
    assert response.status_code == 200, response.text
    answer = response.json()
    check_money(answer)
    for name, value in NEW_FIELDS.items():
        assert answer["enterprise"][name] == value
    union = next(e for e in answer["package"] if e["policy_id"] == UNION_REFUND)
    assert union["estimated_value_wan"] == pytest.approx(expected_union_value(profile))


def test_match_api_values_follow_their_driving_field(client: TestClient, tokens: Tokens) -> None:
    def union_value(payroll: float) -> float:
        profile = money_profile(uscc=make_uscc(8822, "91320311"), annual_payroll_wan=payroll)
        answer = client.post("/v1/match", json={"profile": profile, "as_of": AS_OF},
                             headers=bearer(tokens.staff)).json()
        return next(e for e in answer["package"] if e["policy_id"] == UNION_REFUND)["estimated_value_wan"]

    assert union_value(1000) == pytest.approx(2 * union_value(500))


@pytest.mark.parametrize(("field", "value", "label"), BAD_VALUES, ids=[f"{f}={v!r}" for f, v, _ in BAD_VALUES])
def test_match_api_refuses_a_bad_new_field_naming_it(client: TestClient, tokens: Tokens, field: str, value: Any,
                                                     label: str) -> None:
    response = client.post("/v1/match", json={"profile": money_profile(**{field: value})},
                           headers=bearer(tokens.staff))
    assert response.status_code == 422
    body = response.json()
    assert body["field"] == f"profile.{field}" and label in body["message"], body


def test_a_stored_firm_keeps_the_new_fields_and_its_package_has_values(client: TestClient, tokens: Tokens) -> None:
    uscc = make_uscc(8823, "91320311")
    profile = money_profile(uscc=uscc, name="金额测试机械有限公司")
    put = client.put(f"/v1/enterprises/{uscc}", json=profile, headers=bearer(tokens.admin))
    assert put.status_code == 200, put.text
    assert {k: put.json()["profile"][k] for k in NEW_FIELDS} == NEW_FIELDS
    package = client.get(f"/v1/enterprises/{uscc}/package", params={"as_of": AS_OF}, headers=bearer(tokens.admin))
    assert package.status_code == 200
    check_money(package.json())


# ---- the importer ---------------------------------------------------------------------------
def test_csv_import_reads_the_new_fields_with_chinese_cells(state: ServiceState, tmp_path: Path) -> None:
    codes = usccs(3)
    header = ["uscc", "name", "industry_code", "taxable_income_wan", "rd_expense_wan",
              "unemployment_insurance_paid_wan", "layoff_rate_pct", "vat_filing_period", "has_union",
              "disabled_employees", "deductible_input_vat_wan", "taxpayer_type"]
    rows = [
        [codes[0], "金额导入一有限公司", "C3484", "280", "160", "6.2", "3.2%", "按季申报", "是", "2", "380", "小规模纳税人"],
        [codes[1], "金额导入二有限公司", "C3484", "0", "", "", "0", "monthly", "false", "0", "", "general"],
        [codes[2], "金额导入三有限公司", "C3484", "", "", "", "", "", "", "", "", ""],
    ]
    path = tmp_path / "money.csv"
    path.write_text("".join(_csv_line(r) for r in [header, *rows]), encoding="utf-8")
    report = import_file(state.engine, path)
    assert report.rejected == 0 and report.created == 3, errors_of(report)
    found = stored(state.engine, codes)
    first = found[codes[0]].profile
    assert first["taxable_income_wan"] == 280 and first["rd_expense_wan"] == 160
    assert first["unemployment_insurance_paid_wan"] == 6.2 and first["layoff_rate_pct"] == 3.2
    assert first["vat_filing_period"] == "quarterly" and first["taxpayer_type"] == "small_scale"
    assert first["has_union"] is True and first["disabled_employees"] == 2 and first["deductible_input_vat_wan"] == 380
    second = found[codes[1]].profile
    assert second["vat_filing_period"] == "monthly" and second["has_union"] is False
    assert second["taxable_income_wan"] == 0 and "rd_expense_wan" not in second  # empty cell = unknown
    assert not any(name in found[codes[2]].profile for name in NEW_FIELDS)


@pytest.mark.parametrize(("cell", "field", "label"), [
    ("layoff_rate_pct=150", "layoff_rate_pct", "上年裁员率"),
    ("disabled_employees=2.5", "disabled_employees", "安排残疾人就业人数"),
    ("vat_filing_period=每年", "vat_filing_period", "增值税申报期"),
    ("rd_expense_wan=很多", "rd_expense_wan", "上年研发费用"),
    ("has_union=也许", "has_union", "是否建立工会"),
])
def test_csv_import_rejects_a_bad_new_field_naming_it(state: ServiceState, tmp_path: Path, cell: str, field: str,
                                                      label: str) -> None:
    name, value = cell.split("=")
    code = usccs(1)[0]
    path = tmp_path / "bad.csv"
    path.write_text(_csv_line(["uscc", "name", name]) + _csv_line([code, "金额导入坏行有限公司", value]),
                    encoding="utf-8")
    report = import_file(state.engine, path)
    assert report.rejected == 1 and report.created == 0
    error = errors_of(report)[0]
    assert error["field"] == field and label in error["error"], error
    assert code not in stored(state.engine, [code])


def test_jsonl_import_reads_the_new_fields_and_names_a_bad_one(state: ServiceState, tmp_path: Path) -> None:
    codes = usccs(2)
    good = {**NEW_FIELDS, "uscc": codes[0], "name": "金额导入JSON一有限公司"}
    bad = {**NEW_FIELDS, "uscc": codes[1], "name": "金额导入JSON二有限公司", "disabled_employees": "3"}
    path = tmp_path / "money.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in (good, bad)) + "\n", encoding="utf-8")
    report = import_file(state.engine, path)
    assert report.created == 1 and report.rejected == 1
    assert {k: stored(state.engine, codes)[codes[0]].profile[k] for k in NEW_FIELDS} == NEW_FIELDS
    error = errors_of(report)[0]
    assert error["field"] == "disabled_employees" and "应为整数" in error["error"]
