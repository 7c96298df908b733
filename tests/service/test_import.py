"""Bulk import (``policyfit enterprises import FILE.csv|FILE.jsonl``): every row validated, valid rows
written, rejected rows written with reasons to an errors file, a row never half-applied, counts
reported, and re-importing the same file changes nothing."""

from __future__ import annotations

import csv
import io
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from service.app.importer import import_file
from service.bootstrap import ServiceState
from service.db.tables import Enterprise
from service.store.enterprises import enterprise_revision
from tests.service.conftest import Population, make_uscc, sample

COLUMNS = ["uscc", "name", "entity_type", "region", "industry_code", "established_on", "employees",
           "annual_revenue_wan", "total_assets_wan", "qualifications", "flags", "business_scope"]


def usccs(n: int) -> list[str]:
    base = uuid.uuid4().int % 31**8
    return [make_uscc(base * 64 + i, prefix="91320311") for i in range(n)]


def good(uscc: str, i: int) -> dict[str, Any]:
    return {"uscc": uscc, "name": f"导入测试企业{uscc[-6:]}有限公司", "entity_type": "enterprise", "region": "泉山区",
            "industry_code": "C3411", "established_on": "2018-03-01", "employees": 20 + i,
            "annual_revenue_wan": 1500.0 + i, "total_assets_wan": 900.0, "qualifications": ["tech_sme"],
            "flags": [], "business_scope": "通用设备制造"}


def stored(engine: Any, codes: list[str]) -> dict[str, Enterprise]:
    with Session(engine) as session:
        rows = session.exec(select(Enterprise).where(Enterprise.uscc.in_(codes))).all()  # type: ignore[attr-defined]
        return {r.uscc: r for r in rows}


def errors_of(report: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in report.errors_file.read_text(encoding="utf-8").splitlines()]


def _csv_line(cells: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(cells)
    return buf.getvalue()


def _cells(row: dict[str, Any]) -> list[str]:
    out = []
    for c in COLUMNS:
        v = row.get(c, "")
        out.append((";".join(v) or "-") if isinstance(v, list) else ("" if v is None else str(v)))  # "-": none
    return out


@pytest.fixture
def csv_file(tmp_path: Path) -> tuple[Path, list[str], list[str]]:
    """A CSV with good rows and bad ones; returns (path, codes that must be stored, codes that must not)."""
    codes = usccs(8)
    rows = [_csv_line(COLUMNS)]
    rows.append(_csv_line(_cells(good(codes[0], 0))))                                    # line 2: good
    rows.append(_csv_line(_cells(good(codes[1], 1) | {"uscc": codes[1][:-1] + ("0" if codes[1][-1] != "0" else "1")})))  # 3: bad check char
    rows.append(_csv_line(_cells(good(codes[2], 2) | {"employees": "-5"})))               # 4: negative employees
    rows.append(_csv_line(_cells(good(codes[3], 3))))                                    # 5: good
    rows.append(_csv_line(_cells(good(codes[3], 3) | {"name": "重复的一行有限公司"})))     # 6: duplicate USCC
    rows.append(_csv_line([*_cells(good(codes[4], 4)), "多出来的一列"]))                  # 7: too many columns
    rows.append(_csv_line(_cells(good(codes[5], 5))[:5]))                                 # 8: too few (truncated)
    rows.append(_csv_line(_cells(good(codes[6], 6) | {"employees": "²", "region": "火星"})))  # 9: odd digit, region
    rows.append("\n")                                                                    # 10: blank line, skipped
    multi = good(codes[7], 7) | {"business_scope": "第一行\n第二行"}
    rows.append(_csv_line(_cells(multi)))                                                # 11-12: good, quoted newline
    path = tmp_path / "enterprises.csv"
    path.write_text("".join(rows), encoding="utf-8-sig")  # Excel writes a BOM
    return path, [codes[0], codes[3], codes[7]], [codes[2], codes[4], codes[5], codes[6]]


def test_csv_import_writes_good_rows_and_explains_bad_ones(state: ServiceState,
                                                           csv_file: tuple[Path, list[str], list[str]]) -> None:
    path, ok, bad = csv_file
    report = import_file(state.engine, path)
    assert (report.rows, report.created, report.updated, report.unchanged, report.rejected) == (9, 3, 0, 0, 6)
    assert report.errors_file == path.with_name("enterprises.errors.jsonl")
    found = stored(state.engine, ok + bad)
    assert set(found) == set(ok)
    assert found[ok[1]].name.startswith("导入测试企业")  # the first occurrence wins, the duplicate is rejected
    assert found[ok[2]].profile["business_scope"] == "第一行\n第二行"
    assert found[ok[0]].profile["qualifications"] == ["tech_sme"] and found[ok[0]].profile["flags"] == []
    errors = {e["line"]: e for e in errors_of(report)}
    assert sorted(errors) == [3, 4, 6, 7, 8, 9]
    assert errors[3]["field"] == "uscc" and "校验位" in errors[3]["error"]
    assert errors[4]["field"] == "employees" and "不能小于0" in errors[4]["error"]
    assert errors[6]["field"] == "uscc" and "重复" in errors[6]["error"]
    assert errors[7]["field"] == "csv" and "多于表头" in errors[7]["error"]
    assert errors[8]["field"] == "csv" and "少于表头" in errors[8]["error"]
    assert {e["field"] for e in errors[9]["errors"]} >= {"employees", "region"}  # every reason, not just the first
    assert all(e["error"] for e in errors.values())


def test_reimporting_the_same_file_changes_nothing(state: ServiceState,
                                                   csv_file: tuple[Path, list[str], list[str]]) -> None:
    path, ok, _ = csv_file
    import_file(state.engine, path)
    before = {u: (r.updated_at, r.content_hash) for u, r in stored(state.engine, ok).items()}
    with Session(state.engine) as session:
        revision = enterprise_revision(session)
    again = import_file(state.engine, path)
    assert (again.created, again.updated, again.unchanged, again.rejected) == (0, 0, 3, 6)
    assert {u: (r.updated_at, r.content_hash) for u, r in stored(state.engine, ok).items()} == before
    with Session(state.engine) as session:
        assert enterprise_revision(session) == revision


def test_jsonl_import_with_good_and_bad_lines(state: ServiceState, tmp_path: Path) -> None:
    codes = usccs(12)
    lines = [
        json.dumps(good(codes[0], 0), ensure_ascii=False),                        # 1 good
        json.dumps(good(codes[1], 1) | {"uscc": "91320300XXXXXXXXX"}),            # 2 bad USCC (length)
        json.dumps(good(codes[2], 2) | {"employees": -1}),                        # 3 negative employees
        json.dumps(good(codes[3], 3) | {"tax_grade": "A"}),                       # 4 unknown field
        json.dumps(good(codes[0], 9) | {"name": "同一代码第二次出现有限公司"}, ensure_ascii=False),  # 5 duplicate
        '{"uscc": "' + codes[4] + '", "name": "缺了括号"',                         # 6 malformed JSON
        "",                                                                       # 7 blank: skipped
        json.dumps([good(codes[5], 5)]),                                          # 8 not an object
        json.dumps(good(codes[6], 6) | {"annual_revenue_wan": "1.5"}),            # 9 wrong JSON type
        json.dumps(good(codes[7], 7) | {"employees": True}),                      # 10 bool as a count
        json.dumps(good(codes[8], 8) | {"name": "带\u0000空字符有限公司"}),         # 11 NUL byte
        '{"uscc": "' + codes[9] + '", "name": "大数", "employees": ' + "9" * 5000 + "}",  # 12 5000-digit integer
        json.dumps(good(codes[10], 10), ensure_ascii=False),                      # 13 good
    ]
    path = tmp_path / "firms.jsonl"
    raw = ("\n".join(lines) + "\n").encode("utf-8")
    raw += b'{"uscc": "' + codes[11].encode() + b'", "name": "\xff\xfe bad bytes"}\n'  # 14 not UTF-8
    path.write_bytes(raw)
    errors_path = tmp_path / "rejected.jsonl"
    report = import_file(state.engine, path, errors_path=errors_path)
    assert (report.rows, report.created, report.rejected) == (13, 2, 11)
    assert report.errors_file == errors_path
    assert set(stored(state.engine, codes)) == {codes[0], codes[10]}
    assert stored(state.engine, [codes[0]])[codes[0]].name == good(codes[0], 0)["name"]
    errors = {e["line"]: e for e in errors_of(report)}
    assert sorted(errors) == [2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 14]
    expect = {2: ("uscc", "18位"), 3: ("employees", "不能小于0"), 4: ("tax_grade", "未知字段"), 5: ("uscc", "重复"),
              6: ("json", "不是有效的JSON"), 8: ("profile", "JSON对象"), 9: ("annual_revenue_wan", "应为数字"),
              10: ("employees", "应为整数"), 11: ("name", "空字符"), 12: ("json", "无法解析"),
              14: ("encoding", "UTF-8")}
    for line, (field, words) in expect.items():
        assert errors[line]["field"] == field, errors[line]
        assert words in errors[line]["error"], errors[line]
    again = import_file(state.engine, path, errors_path=errors_path)
    assert (again.created, again.updated, again.unchanged, again.rejected) == (0, 0, 2, 11)


def test_a_bad_row_never_touches_the_stored_firm(state: ServiceState, population: Population, tmp_path: Path) -> None:
    firm = population.samples[5]
    before = stored(state.engine, [firm.uscc])[firm.uscc]
    snapshot = (before.name, before.profile, before.updated_at)
    path = tmp_path / "update.jsonl"
    # a new name (valid) together with a bad value: the row is refused whole, the name is not written
    path.write_text(json.dumps(firm.profile | {"name": "改名但数据有误有限公司", "patents": -2}, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    report = import_file(state.engine, path)
    assert (report.rejected, report.updated) == (1, 0)
    after = stored(state.engine, [firm.uscc])[firm.uscc]
    assert (after.name, after.profile, after.updated_at) == snapshot


def test_updates_are_counted_and_applied(state: ServiceState, tmp_path: Path) -> None:
    codes = usccs(2)
    first = tmp_path / "a.jsonl"
    first.write_text("".join(json.dumps(good(c, i), ensure_ascii=False) + "\n" for i, c in enumerate(codes)),
                     encoding="utf-8")
    assert import_file(state.engine, first).created == 2
    second = tmp_path / "b.jsonl"
    second.write_text(json.dumps(good(codes[0], 0) | {"employees": 500}, ensure_ascii=False) + "\n"
                      + json.dumps(good(codes[1], 1), ensure_ascii=False) + "\n", encoding="utf-8")
    report = import_file(state.engine, second, chunk=1)
    assert (report.created, report.updated, report.unchanged) == (0, 1, 1)
    assert stored(state.engine, [codes[0]])[codes[0]].profile["employees"] == 500


def test_refused_files(state: ServiceState, tmp_path: Path) -> None:
    other = tmp_path / "firms.xlsx"
    other.write_bytes(b"PK")
    with pytest.raises(ValueError, match="只支持"):
        import_file(state.engine, other)
    dup = tmp_path / "dup.csv"
    dup.write_text("uscc,name,name\n", encoding="utf-8")
    with pytest.raises(ValueError, match="重复的列"):
        import_file(state.engine, dup)
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    report = import_file(state.engine, empty)
    assert (report.rows, report.rejected) == (0, 0)


def test_cli_import_reports_counts_and_exit_code(state: ServiceState, database_url: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from service.main import app
    from service.settings import get_settings

    codes = usccs(2)
    path = tmp_path / "cli.jsonl"
    path.write_text(json.dumps(good(codes[0], 0), ensure_ascii=False) + "\n"
                    + json.dumps(good(codes[1], 1) | {"employees": -3}) + "\n", encoding="utf-8")
    monkeypatch.setenv("POLICYFIT_DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        result = runner.invoke(app, ["enterprises", "import", str(path)])
        assert result.exit_code == 1, result.output  # some rows were rejected
        assert "共 2 行：新增 1，更新 0，未变 0，拒绝 1" in result.stdout
        assert set(stored(state.engine, codes)) == {codes[0]}
        clean = tmp_path / "clean.jsonl"
        clean.write_text(json.dumps(good(codes[0], 0), ensure_ascii=False) + "\n", encoding="utf-8")
        result = runner.invoke(app, ["enterprises", "import", str(clean)])
        assert result.exit_code == 0 and "未变 1" in result.stdout
        missing = runner.invoke(app, ["enterprises", "import", str(tmp_path / "nope.csv")])
        assert missing.exit_code == 2 and "找不到文件" in missing.stderr
    finally:
        get_settings.cache_clear()


def test_samples_import_cleanly(state: ServiceState, tmp_path: Path) -> None:
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps(sample(i), ensure_ascii=False) + "\n" for i in range(6)), encoding="utf-8")
    report = import_file(state.engine, path)
    assert report.rejected == 0 and report.rows == 6
    assert report.unchanged + report.updated + report.created == 6


# ---- every physical line is accounted for (issue 11, fault 4) ----------------------------------------------
def physical_lines(path: Path) -> int:
    """Lines of the file as a person counts them (a last line without a newline counts)."""
    return len(path.read_bytes().splitlines())


def accounted(report: Any) -> None:
    """Every line after the header is a stored row's, a rejected row's (listed with its lines) or blank."""
    assert report.rows == report.created + report.updated + report.unchanged + report.rejected
    errors = errors_of(report)
    assert len(errors) == report.rejected
    assert all(e["line"] <= e["last_line"] for e in errors)


def test_an_unbalanced_quote_loses_only_its_own_line(state: ServiceState, tmp_path: Path) -> None:
    """A header, one row with an unbalanced quote, then five valid rows: the five are stored, the one is
    rejected naming its line (before, the quote swallowed the rest of the file into one rejected row)."""
    codes = usccs(6)
    lines = [_csv_line(COLUMNS), _csv_line(_cells(good(codes[0], 0))).replace("导入测试企业", '"导入测试企业', 1)]
    lines += [_csv_line(_cells(good(c, i))) for i, c in enumerate(codes[1:], start=1)]
    path = tmp_path / "quote.csv"
    path.write_text("".join(lines), encoding="utf-8")
    report = import_file(state.engine, path)
    assert (report.rows, report.created, report.rejected) == (6, 5, 1)
    assert report.lines == physical_lines(path) - 1 == 6
    accounted(report)
    [error] = errors_of(report)
    assert (error["line"], error["last_line"], error["field"]) == (2, 2, "csv")
    assert "第2行" in error["error"] and "引号不成对" in error["error"]
    assert set(stored(state.engine, codes)) == set(codes[1:])


def test_malformed_csv_lines_are_each_reported(state: ServiceState, tmp_path: Path) -> None:
    """Unbalanced quotes in the middle (closed by a later quote), a misplaced quote, wrong column counts, a
    line that is not UTF-8, blank lines and a legitimate multi-line field: each line is accounted for."""
    codes = usccs(10)
    rows = [_csv_line(COLUMNS)]                                                            # 1 header
    rows.append(_csv_line(_cells(good(codes[0], 0))))                                     # 2 good
    rows.append(f'{codes[1]},"未闭合的引号有限公司,enterprise,泉山区\n')                      # 3 quote opens …
    rows.append(_csv_line(_cells(good(codes[2], 2))))                                     # 4 good
    rows.append(f'{codes[3]},带"引号"的名称有限公司",enterprise\n')                           # 5 … a later quote
    rows.append(_csv_line(_cells(good(codes[4], 4))))                                     # 6 good
    rows.append(f'{codes[5]},"名称"多余,enterprise\n')                                      # 7 misplaced quote
    rows.append("\n")                                                                     # 8 blank
    rows.append(_csv_line([*_cells(good(codes[6], 6)), "多一列"]))                           # 9 too many columns
    multi = good(codes[7], 7) | {"business_scope": "第一行\n第二行"}
    rows.append(_csv_line(_cells(multi)))                                                 # 10-11 good, two lines
    raw = "".join(rows).encode("utf-8")
    raw += _csv_line(_cells(good(codes[8], 8))).replace("导入测试企业", "\udcff", 1).encode("utf-8", "surrogateescape")  # 12
    raw += _csv_line(_cells(good(codes[9], 9))).encode("utf-8").rstrip(b"\n")             # 13 good, no final newline
    path = tmp_path / "messy.csv"
    path.write_bytes(raw)
    report = import_file(state.engine, path)
    assert report.lines == physical_lines(path) - 1 == 12
    assert (report.blank, report.created) == (1, 5)
    accounted(report)
    errors = {e["line"]: e for e in errors_of(report)}
    assert sorted(errors) == [3, 5, 7, 9, 12]
    assert all(e["line"] == e["last_line"] for e in errors.values())
    assert "引号" in errors[3]["error"] and "引号" in errors[7]["error"]
    assert errors[9]["field"] == "csv" and "多于表头" in errors[9]["error"]
    assert errors[12]["field"] == "encoding" and "UTF-8" in errors[12]["error"]
    assert set(stored(state.engine, codes)) == {codes[0], codes[2], codes[4], codes[7], codes[9]}
    assert stored(state.engine, [codes[7]])[codes[7]].profile["business_scope"] == "第一行\n第二行"
    # every line is in exactly one place: a stored record's lines, a rejected line, or the blank one
    covered = {n for e in errors.values() for n in range(e["line"], e["last_line"] + 1)}
    assert covered.isdisjoint({2, 4, 6, 8, 10, 11, 13})
    assert len(covered) + 7 == report.lines


def test_an_unclosed_quote_in_the_header_refuses_the_file(state: ServiceState, tmp_path: Path) -> None:
    codes = usccs(1)
    path = tmp_path / "header.csv"
    path.write_text('uscc,"name\n' + f"{codes[0]},表头坏了有限公司\n", encoding="utf-8")
    with pytest.raises(ValueError, match="表头") as caught:
        import_file(state.engine, path)
    assert "第1行" in str(caught.value) and "未导入" in str(caught.value)
    assert not stored(state.engine, codes)


def test_a_gbk_file_is_refused_as_a_whole_naming_the_encoding(state: ServiceState, tmp_path: Path) -> None:
    codes = usccs(3)
    text = "".join([_csv_line(COLUMNS), *(_csv_line(_cells(good(c, i))) for i, c in enumerate(codes))])
    for suffix in (".csv", ".jsonl"):
        path = tmp_path / f"gbk{suffix}"
        if suffix == ".csv":
            path.write_bytes(text.encode("gbk"))
        else:
            path.write_bytes("".join(json.dumps(good(c, i), ensure_ascii=False) + "\n"
                                     for i, c in enumerate(codes)).encode("gbk"))
        with pytest.raises(ValueError) as caught:
            import_file(state.engine, path)
        message = str(caught.value)
        assert "UTF-8" in message and "GBK" in message and "未导入任何行" in message, message
        assert not stored(state.engine, codes)
    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes(text.encode("utf-16"))  # with its byte order mark
    with pytest.raises(ValueError, match="UTF-16") as caught:
        import_file(state.engine, utf16)
    assert "未导入任何行" in str(caught.value)
    assert not stored(state.engine, codes)


def test_a_broken_jsonl_line_is_one_rejected_line(state: ServiceState, tmp_path: Path) -> None:
    codes = usccs(5)
    lines = [json.dumps(good(codes[0], 0), ensure_ascii=False),
             json.dumps(good(codes[1], 1), ensure_ascii=False)[:40],                   # 2 cut short
             '{"uscc": "' + codes[2] + '", "name": "引号没闭合}',                        # 3 unbalanced quote
             "   ",                                                                     # 4 blank
             json.dumps(good(codes[3], 3), ensure_ascii=False),
             json.dumps(good(codes[4], 4), ensure_ascii=False)]
    path = tmp_path / "broken.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = import_file(state.engine, path)
    assert report.lines == physical_lines(path) == 6
    assert (report.rows, report.created, report.rejected, report.blank) == (5, 3, 2, 1)
    accounted(report)
    assert [(e["line"], e["field"]) for e in errors_of(report)] == [(2, "json"), (3, "json")]
    assert set(stored(state.engine, codes)) == {codes[0], codes[3], codes[4]}
