"""Outcome import (``policyfit outcomes import FILE``): every row validated with a Chinese reason naming the field,
every physical line accounted for (recorded, rejected with its line, or blank), nothing lost, and the same
decision recorded again changes nothing — SQLite, and PostgreSQL when ``POLICYFIT_TEST_DATABASE_URL`` is set."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from service.app.outcomes import import_outcomes
from service.bootstrap import ServiceState
from service.db.tables import Outcome
from service.settings import get_settings
from tests.service.conftest import make_uscc

POLICY = "guarantee-fee-cap-small-micro-agri"
OTHER = "vat-small-scale-exemption"
TODAY = dt.date.today()
HEADER = "uscc,policy_id,outcome,amount_wan,decided_on,department"


def firms(n: int) -> list[str]:
    base = uuid.uuid4().int % 31**8
    return [make_uscc(base * 64 + i, prefix="91320312") for i in range(n)]


def stored(state: ServiceState, codes: list[str]) -> list[Outcome]:
    """The outcomes of these firms in the order the codes are given, then by day and outcome (the codes are made
    from consecutive numbers, but their text does not always sort in that order: a carry changes letters)."""
    with Session(state.engine) as session:
        rows = list(session.exec(select(Outcome).where(col(Outcome.uscc).in_(codes))))
    return sorted(rows, key=lambda r: (codes.index(r.uscc), r.decided_on, r.outcome))


def errors_of(report: Any) -> dict[int, dict[str, Any]]:
    lines = report.errors_file.read_text(encoding="utf-8").splitlines()
    return {item["line"]: item for item in map(json.loads, lines)}


def write(tmp_path: Path, name: str, lines: list[str], encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def test_csv_rows_with_reasons_and_every_line_accounted(state: ServiceState, tmp_path: Path) -> None:
    a, b, c = firms(3)
    bad = a[:-1] + ("0" if a[-1] != "0" else "1")  # wrong check character
    lines = [HEADER,
             f"{a},{POLICY},granted,12.5,2024-05-20,市财政局",           # 2 ok
             f"{a},{POLICY},applied,,2024-04-01,",                      # 3 ok: the same firm, another outcome
             f"{b},{OTHER},已兑现,\"1,200\",2024-05-20,市税务局",          # 4 ok: Chinese outcome, thousands separator
             "",                                                        # 5 blank
             f"{bad},{POLICY},granted,1,2024-05-20,",                   # 6 check character
             f"{c},guarantee-fee-cap-small-micro,granted,1,2024-05-20,", # 7 unknown policy, suggestion
             f"{c},enterprise-policy-application-guide,granted,1,2024-05-20,",  # 8 a commitment
             f"{c},{POLICY},approved,1,2024-05-20,",                     # 9 vocabulary
             f"{c},{POLICY},granted,1,2024/05/20,",                     # 10 date format
             f"{c},{POLICY},granted,1,2024-02-30,",                     # 11 no such day
             f"{c},{POLICY},granted,1,{dt.date.today() + dt.timedelta(days=1)},",  # 12 after today
             f"{c},{POLICY},granted,-3,2024-05-20,",                    # 13 negative amount
             f"{c},{POLICY},granted,三万,2024-05-20,",                   # 14 not a number
             f"{c},{POLICY},granted,1,,",                               # 15 no date
             f"{a},{POLICY},granted,99,2024-05-20,市财政局",               # 16 the same decision again in the file
             f"{c},{POLICY},\"granted,1,2024-05-20,",                   # 17 an unbalanced quote: this line alone
             f"{c},{POLICY},granted,1,2024-05-21,,extra",               # 18 too many columns
             f"{c},{POLICY},refused,0,2024-05-22,市地方金融监管局"]          # 19 ok after the broken rows
    report = import_outcomes(state.engine, write(tmp_path, "outcomes.csv", lines))
    assert (report.rows, report.created, report.rejected, report.blank) == (17, 4, 13, 1)
    assert report.lines == len(lines) - 1  # every physical line after the header
    errors = errors_of(report)
    assert sorted(errors) == [6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]
    expect = {6: ("uscc", "校验位"), 7: ("policy_id", "是否应为“guarantee-fee-cap-small-micro-agri”"),
              8: ("policy_id", "不是企业可申请享受的政策"), 9: ("outcome", "applied（已申请）"),
              10: ("decided_on", "YYYY-MM-DD"), 11: ("decided_on", "不是有效的日期"),
              12: ("decided_on", "不能晚于"), 13: ("amount_wan", "不能小于0"), 14: ("amount_wan", "应为数字"),
              15: ("decided_on", "未填写"), 16: ("uscc", "在文件中重复出现"), 17: ("csv", "引号"), 18: ("csv", "多于表头")}
    for line, (field, words) in expect.items():
        assert errors[line]["field"] == field and words in errors[line]["error"], errors[line]
    rows = stored(state, [a, b, c])
    assert [(r.uscc, r.outcome, r.amount_wan, r.department, r.source) for r in rows] == [
        (a, "applied", None, None, "import"), (a, "granted", 12.5, "市财政局", "import"),
        (b, "granted", 1200.0, "市税务局", "import"), (c, "refused", 0.0, "市地方金融监管局", "import")]


def test_the_same_file_again_changes_nothing_and_a_correction_updates_the_row(state: ServiceState,
                                                                            tmp_path: Path) -> None:
    a, b = firms(2)
    lines = [HEADER, f"{a},{POLICY},granted,10,2024-05-20,市财政局", f"{b},{POLICY},refused,,2024-05-21,市财政局"]
    path = write(tmp_path, "once.csv", lines)
    first = import_outcomes(state.engine, path)
    before = [(r.id, r.amount_wan, r.recorded_at) for r in stored(state, [a, b])]
    again = import_outcomes(state.engine, path)
    assert (first.created, again.created, again.unchanged, again.updated, again.rejected) == (2, 0, 2, 0, 0)
    assert [(r.id, r.amount_wan, r.recorded_at) for r in stored(state, [a, b])] == before
    fixed = import_outcomes(state.engine, write(tmp_path, "fix.jsonl", [json.dumps(
        {"uscc": a, "policy_id": POLICY, "outcome": "granted", "amount_wan": 12, "decided_on": "2024-05-20",
         "department": "市财政局"})]))
    assert (fixed.updated, fixed.created) == (1, 0)
    rows = stored(state, [a])
    assert len(rows) == 1 and rows[0].amount_wan == 12 and rows[0].id == before[0][0]
    later = import_outcomes(state.engine, write(tmp_path, "next-year.csv", [HEADER, f"{a},{POLICY},granted,12,"
                                                                                      f"{TODAY},市财政局"]))
    assert later.created == 1 and len(stored(state, [a])) == 2  # a grant on another day is another decision


def test_jsonl_types_unknown_keys_and_the_handoff_columns(state: ServiceState, tmp_path: Path) -> None:
    a, b, c = firms(3)
    ok = {"uscc": a, "policy_id": POLICY, "outcome": "granted", "amount_wan": 3.2, "decided_on": "2024-05-20"}
    lines = [json.dumps(ok),
             json.dumps({**ok, "uscc": b, "amount_wan": "3.2"}),                       # 2 a number as text
             json.dumps({**ok, "uscc": c, "decided_on": 20240520}),                    # 3 a date as a number
             json.dumps({**ok, "uscc": c, "amount": 3}),                               # 4 a misspelt key
             "{not json",                                                            # 5
             "",                                                                     # 6 blank
             json.dumps({**ok, "uscc": b, "name": "某某公司", "why": "企业规模为小型", "clauses": [{"field": "size"}]}),
             json.dumps([1, 2])]                                                     # 8 not an object
    report = import_outcomes(state.engine, write(tmp_path, "o.jsonl", lines))
    assert (report.rows, report.created, report.rejected, report.blank, report.lines) == (7, 2, 5, 1, 8)
    errors = errors_of(report)
    assert errors[2]["field"] == "amount_wan" and "应为数字" in errors[2]["error"]
    assert errors[3]["field"] == "decided_on" and "应为文本" in errors[3]["error"]
    assert errors[4]["field"] == "amount" and "是否应为“amount_wan”" in errors[4]["error"]
    assert errors[5]["field"] == "json" and errors[8]["line"] == 8
    assert [r.uscc for r in stored(state, [a, b, c])] == [a, b]


def test_gbk_file_with_chinese_headers_is_decoded(state: ServiceState, tmp_path: Path) -> None:
    a, b = firms(2)
    lines = ["统一社会信用代码,政策编号,结果,金额（万元）,决定日期,部门",
             f"{a},{POLICY},已兑现,5,2024-05-20,市财政局", f"{b},{POLICY},未获批准,,2024-05-21,市财政局"]
    report = import_outcomes(state.engine, write(tmp_path, "部门结果.csv", lines, encoding="gbk"))
    assert (report.created, report.rejected, report.encoding) == (2, 0, "gb18030")
    assert [(r.outcome, r.department) for r in stored(state, [a, b])] == [("granted", "市财政局"), ("refused", "市财政局")]


@pytest.mark.parametrize(("header", "words"), [
    ("uscc,policy_id,outcome,amount,decided_on", "未知的列“amount”"),
    ("uscc,policy_id,amount_wan,decided_on", "缺少必需的列：outcome（结果）"),
])
def test_a_header_that_cannot_be_read_refuses_the_file(state: ServiceState, tmp_path: Path, header: str,
                                                      words: str) -> None:
    a, = firms(1)
    path = write(tmp_path, "h.csv", [header, f"{a},{POLICY},granted,2024-05-20,1"])
    with pytest.raises(ValueError, match=words):
        import_outcomes(state.engine, path)
    assert stored(state, [a]) == []


def test_cli_import_counts_and_exit_code(state: ServiceState, database_url: str, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from service.main import app

    a, b = firms(2)
    path = write(tmp_path, "cli.csv", [HEADER, f"{a},{POLICY},granted,1,2024-05-20,市财政局", "",
                                       f"{b},{POLICY},granted,1,2024-13-01,"])
    monkeypatch.setenv("POLICYFIT_DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["outcomes", "import", str(path)])
        again = CliRunner().invoke(app, ["outcomes", "import", str(path), "--errors", str(tmp_path / "e.jsonl")])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1, result.output
    assert "共 2 行：新增 1，更新 0，未变 0，拒绝 1" in result.output and "空行 1，合计 3 个物理行" in result.output
    assert "新增 0，更新 0，未变 1，拒绝 1" in again.output
    assert json.loads((tmp_path / "e.jsonl").read_text(encoding="utf-8"))["line"] == 4
    missing = CliRunner().invoke(app, ["outcomes", "import", str(tmp_path / "none.csv")])
    assert missing.exit_code == 2 and "找不到文件" in missing.output
