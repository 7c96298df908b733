"""Departments' feeds (``policyfit enterprises import FILE --source S --as-of D``): headers in the department's
own words, GBK, every line accounted for, re-imports that change nothing, dates that never go backwards, firms
waiting for the register, legacy profiles as the firm's own statement. SQLite, and PostgreSQL when
``POLICYFIT_TEST_DATABASE_URL`` is set (as every test of tests/service)."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from profiles.model import parse_profile
from service.app.feeds import FeedReport, import_feed
from service.app.importer import import_file
from service.bootstrap import ServiceState
from service.db.tables import Enterprise, EnterpriseSource
from service.store.enterprises import upsert_enterprise
from tests.service.conftest import make_uscc, sample

FEEDS = Path(__file__).resolve().parents[2] / "profiles" / "samples" / "feeds"
DAY = dt.date(2026, 4, 15)
SAMPLE_CODE = re.compile(r"9[0-9A-Z]{17}")


def usccs(n: int) -> list[str]:
    base = uuid.uuid4().int % 31**8
    return [make_uscc(base * 64 + i, prefix="91320322") for i in range(n)]


def rows_of(engine: Any, codes: list[str]) -> dict[str, Enterprise]:
    with Session(engine) as session:
        found = session.exec(select(Enterprise).where(Enterprise.uscc.in_(codes))).all()  # type: ignore[attr-defined]
        return {r.uscc: r for r in found}


def docs_of(engine: Any, uscc: str) -> dict[str, EnterpriseSource]:
    with Session(engine) as session:
        return {r.source: r for r in session.exec(select(EnterpriseSource).where(EnterpriseSource.uscc == uscc))}


def errors_of(report: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in report.errors_file.read_text(encoding="utf-8").splitlines()]


def accounted(report: FeedReport, path: Path, header: bool = True) -> None:
    """Every physical line after the header is a recorded row's, a rejected row's (listed) or blank."""
    assert report.lines == len(path.read_bytes().splitlines()) - header
    assert report.rows == (report.created + report.updated + report.unchanged + report.waiting + report.rejected)
    assert len(errors_of(report)) == report.rejected


def write_csv(path: Path, lines: list[str], encoding: str = "utf-8") -> Path:
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def register(engine: Any, tmp_path: Path, codes: list[str], day: dt.date = DAY) -> FeedReport:
    """The register names these firms (so that other feeds update them)."""
    lines = ["统一社会信用代码,企业名称,市场主体类型,所属区县,成立日期"]
    lines += [f"{c},登记测试企业{c[-6:]}有限公司,有限责任公司,泉山区,2018-03-01" for c in codes]
    return import_feed(engine, write_csv(tmp_path / f"reg-{uuid.uuid4().hex[:6]}.csv", lines), source="registration",
                       as_of=day)


# ---- mapping -------------------------------------------------------------------------------------------
def test_chinese_headers_and_wording_map_to_fields(state: ServiceState, tmp_path: Path) -> None:
    codes = usccs(2)
    path = write_csv(tmp_path / "reg.csv", [
        "序号,统一社会信用代码,企业名称,市场主体类型,国民经济行业代码,成立日期,所属区县,经营范围,所有制类型,信用状况,登记机关",
        f"1,{codes[0]},映射测试一有限公司,有限责任公司（自然人投资或控股）,C3484,2016-05-18,铜山区,精密机械制造,私营企业,无,铜山区局",
        f"2,{codes[1]},映射测试二有限公司,个体,F5211,2020-01-02,云龙区,便利店,私营,列入经营异常名录,云龙区局",
    ])
    report = import_feed(state.engine, path, source="registration", as_of=DAY)
    assert (report.rows, report.created, report.rejected) == (2, 2, 0), errors_of(report)
    accounted(report, path)
    rows = rows_of(state.engine, codes)
    first, second = rows[codes[0]].profile, rows[codes[1]].profile
    assert first == {"uscc": codes[0], "name": "映射测试一有限公司", "entity_type": "enterprise", "industry_code": "C3484",
                     "established_on": "2016-05-18", "region": "铜山区", "business_scope": "精密机械制造",
                     "ownership": "private", "flags": []}
    assert second["entity_type"] == "individual_business" and second["flags"] == ["abnormal_operation"]
    assert rows[codes[0]].provenance["name"] == {"source": "registration", "as_of": DAY.isoformat()}
    assert docs_of(state.engine, codes[0])["registration"].doc["as_of"]["region"] == DAY.isoformat()

    tax = write_csv(tmp_path / "tax.csv", [
        "纳税人识别号,纳税人名称,纳税人资格,纳税信用级别,月均销售额（万元）,营业收入（万元）,增值税申报期,主管税务机关",
        f"{codes[0]},映射测试一有限公司,增值税一般纳税人,B级,330,4100,按月,铜山区税务局",
        f"{codes[1]},映射测试二有限公司,小规模,A,8.5,,季报,云龙区税务局",
    ])
    report = import_feed(state.engine, tax, source="tax", as_of=DAY)
    assert (report.updated, report.rejected) == (2, 0), errors_of(report)
    rows = rows_of(state.engine, codes)
    assert {k: rows[codes[0]].profile[k] for k in ("taxpayer_type", "tax_credit_grade", "monthly_sales_wan",
                                                   "annual_revenue_wan", "vat_filing_period")} == {
        "taxpayer_type": "general", "tax_credit_grade": "B", "monthly_sales_wan": 330.0,
        "annual_revenue_wan": 4100.0, "vat_filing_period": "monthly"}
    assert rows[codes[0]].profile["name"] == "映射测试一有限公司"  # the tax file's name column is read and ignored
    assert "annual_revenue_wan" not in rows[codes[1]].profile  # an empty cell says nothing
    assert rows[codes[1]].provenance["tax_credit_grade"] == {"source": "tax", "as_of": DAY.isoformat()}


def test_a_gbk_feed_is_decoded(state: ServiceState, tmp_path: Path) -> None:
    codes = usccs(3)
    register(state.engine, tmp_path, codes)
    lines = ["统一社会信用代码,单位名称,参保人数,缴费工资总额（万元）,上年裁员率（%）,平台类型,批准日期,有效期至"]
    lines += [f"{c},社保测试{c[-6:]}有限公司（徐州）,{20 + i},{200 + i},1.5%,,," for i, c in enumerate(codes)]
    lines[-1] = f"{codes[2]},技能大师企业,40,400,0,技能大师工作室,2024-01-01,2026-12-31"
    path = write_csv(tmp_path / "si-gbk.csv", lines, encoding="gbk")
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")
    report = import_feed(state.engine, path, source="social_insurance", as_of=DAY)
    assert report.encoding == "gb18030"
    assert (report.updated, report.rejected) == (3, 0), errors_of(report)
    rows = rows_of(state.engine, codes)
    assert [rows[c].profile["employees"] for c in codes] == [20, 21, 40]
    assert rows[codes[0]].profile["layoff_rate_pct"] == 1.5
    assert rows[codes[2]].profile["qualifications"] == [
        {"code": "skill_master_studio", "valid_from": "2024-01-01", "valid_to": "2026-12-31"}]
    # the import of whole profiles still refuses GBK as a whole (it has no department's wording to decode)
    with pytest.raises(ValueError, match="GBK"):
        import_file(state.engine, path)


def test_the_sample_feeds_import_cleanly(state: ServiceState, tmp_path: Path) -> None:
    """The README's example of each source, in order (the tax file is GBK), under fresh codes so that the
    stored sample firms other tests read stay as they are."""
    order = ["registration.csv", "tax.csv", "social_insurance.csv", "science.csv", "industry.csv", "self.jsonl",
             "hotline.jsonl"]
    assert sorted(order) == sorted(p.name for p in FEEDS.iterdir())
    texts = {name: (FEEDS / name).read_bytes().decode("gbk" if name == "tax.csv" else "utf-8") for name in order}
    named = sorted({c for text in texts.values() for c in SAMPLE_CODE.findall(text)})
    fresh = dict(zip(named, usccs(len(named)), strict=True))
    for name in order:
        encoding, text = "gbk" if name == "tax.csv" else "utf-8", texts[name]
        path = tmp_path / name
        path.write_bytes(SAMPLE_CODE.sub(lambda m: fresh[m.group()], text).encode(encoding))
        report = import_feed(state.engine, path, source=name.split(".")[0], as_of=dt.date(2026, 11, 1))
        assert report.rejected == 0, (name, errors_of(report))
        accounted(report, path, header=name.endswith(".csv"))
        again = import_feed(state.engine, path, source=name.split(".")[0], as_of=dt.date(2026, 11, 1))
        assert (again.created, again.updated, again.facts_changed) == (0, 0, 0), name
    code = fresh["91320312MA1Q7E3K29"]
    firm = rows_of(state.engine, [code])[code]
    assert firm.profile["tax_credit_grade"] == "B" and firm.provenance["tax_credit_grade"]["source"] == "tax"
    assert {c["field"] for c in firm.conflicts or []} >= {"tax_credit_grade", "employees"}
    assert firm.profile["qualifications"] == [
        {"code": "high_tech", "valid_from": "2023-12-13", "valid_to": "2026-12-12"},
        {"code": "specialized_sme", "valid_from": "2025-03-20", "valid_to": "2028-03-19"}]


# ---- every line accounted for, nothing lost ----------------------------------------------------------------
def test_malformed_rows_are_each_reported_and_the_rest_recorded(state: ServiceState, tmp_path: Path) -> None:
    codes = usccs(10)
    register(state.engine, tmp_path, codes)
    header = "纳税人识别号,纳税信用级别,月均销售额（万元）,employees"
    lines = [header,
             f"{codes[0]},A,100,",                       # 2 good
             f"{codes[1]},E,100,",                       # 3 a grade that does not exist
             f'{codes[2]},"B,100,',                      # 4 an unbalanced quote
             f"{codes[3]},B,-5,",                        # 5 negative sales
             f"{codes[4]},B,100,30",                     # 6 a field the tax bureau does not give
             f"{codes[0]},B,200,",                       # 7 the same firm twice
             f"{codes[5]},B,100,,多一列",                  # 8 too many columns
             "",                                         # 9 blank
             ",B,100,",                                 # 10 no USCC
             f"{codes[6][:-1]}0,B,100,",                 # 11 a USCC with a wrong check character
             f"{codes[7]},M,12.5,",                      # 12 good
             ]
    if codes[6][-1] == "0":
        lines[10] = f"{codes[6][:-1]}1,B,100,"
    path = write_csv(tmp_path / "bad.csv", lines)
    before = {c: r.content_hash for c, r in rows_of(state.engine, codes).items()}
    report = import_feed(state.engine, path, source="tax", as_of=DAY)
    accounted(report, path)
    assert (report.rows, report.updated, report.rejected, report.blank) == (10, 2, 8, 1)
    errors = {e["line"]: e for e in errors_of(report)}
    assert sorted(errors) == [3, 4, 5, 6, 7, 8, 10, 11]
    assert errors[3]["field"] == "tax_credit_grade" and "取值无效" in errors[3]["error"]
    assert errors[4]["field"] == "csv" and "引号" in errors[4]["error"]
    assert errors[5]["field"] == "monthly_sales_wan" and "不能小于0" in errors[5]["error"]
    assert errors[6]["field"] == "employees" and "不由税务数据提供" in errors[6]["error"]
    assert errors[7]["field"] == "uscc" and "重复" in errors[7]["error"]
    assert errors[8]["field"] == "csv" and "多于表头" in errors[8]["error"]
    assert errors[10]["field"] == "uscc" and "缺少统一社会信用代码" in errors[10]["error"]
    assert errors[11]["field"] == "uscc" and "校验位" in errors[11]["error"]
    after = rows_of(state.engine, codes)
    assert after[codes[0]].profile["tax_credit_grade"] == "A" and after[codes[7]].profile["monthly_sales_wan"] == 12.5
    for c in (codes[1], codes[2], codes[3], codes[4], codes[5]):  # refused rows change nothing of their firm
        assert after[c].content_hash == before[c] and "tax" not in docs_of(state.engine, c)


def test_jsonl_feed_with_chinese_keys_and_bad_lines(state: ServiceState, tmp_path: Path) -> None:
    codes = usccs(5)
    register(state.engine, tmp_path, codes)
    lines = [json.dumps({"统一社会信用代码": codes[0], "认定类型": "高企", "发证日期": "2024-12-01",
                         "有效期至": "2027-11-30", "有效发明专利数": 4}, ensure_ascii=False),
             json.dumps({"uscc": codes[1], "qualifications": [{"code": "tech_sme", "valid_to": "2026-12-31"}]}),
             json.dumps({"uscc": codes[2], "qualifications": ["specialized_sme"]}),       # 3 not the science's code
             json.dumps({"uscc": codes[3], "patents": "4"}),                             # 4 a number as text
             '{"uscc": "' + codes[4] + '", "patents": 1',                               # 5 broken JSON
             json.dumps({"uscc": codes[4], "纳税信用级别": "A"}, ensure_ascii=False),       # 6 not a science column
             json.dumps({"uscc": codes[4], "qualifications": [{"code": "high_tech", "valid_from": "2026-01-01",
                                                               "valid_to": "2025-01-01"}]}),  # 7 dates reversed
             ]
    path = tmp_path / "science.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = import_feed(state.engine, path, source="science", as_of=DAY)
    accounted(report, path, header=False)
    assert (report.updated, report.rejected) == (2, 5), errors_of(report)
    errors = {e["line"]: e for e in errors_of(report)}
    assert errors[3]["field"] == "qualifications" and "科技数据不能给出" in errors[3]["error"]
    assert errors[4]["field"] == "patents" and "应为" in errors[4]["error"]
    assert errors[5]["field"] == "json"
    assert errors[6]["field"] == "纳税信用级别" and "不是科技数据的已知列" in errors[6]["error"]
    assert errors[7]["field"] == "qualifications"
    rows = rows_of(state.engine, codes)
    assert rows[codes[0]].profile["qualifications"] == [
        {"code": "high_tech", "valid_from": "2024-12-01", "valid_to": "2027-11-30"}]
    assert rows[codes[0]].profile["patents"] == 4
    assert rows[codes[1]].profile["qualifications"] == [{"code": "tech_sme", "valid_to": "2026-12-31"}]


def test_files_refused_as_a_whole(state: ServiceState, tmp_path: Path) -> None:
    codes = usccs(1)
    unknown = write_csv(tmp_path / "unknown.csv", ["统一社会信用代码,纳税信用级别,法人手机号", f"{codes[0]},A,13800000000"])
    with pytest.raises(ValueError, match="法人手机号") as caught:
        import_feed(state.engine, unknown, source="tax", as_of=DAY)
    assert "未导入任何行" in str(caught.value)
    twice = write_csv(tmp_path / "twice.csv", ["统一社会信用代码,纳税信用级别,纳税信用等级", f"{codes[0]},A,A"])
    with pytest.raises(ValueError, match="都对应 tax_credit_grade"):
        import_feed(state.engine, twice, source="tax", as_of=DAY)
    with pytest.raises(ValueError, match="未知的数据来源“taxes”"):
        import_feed(state.engine, twice, source="taxes", as_of=DAY)
    with pytest.raises(ValueError, match="不能晚于今天"):
        import_feed(state.engine, twice, source="tax", as_of=dt.date.today() + dt.timedelta(days=1))
    assert not rows_of(state.engine, codes) and not docs_of(state.engine, codes[0])


# ---- idempotence, dates ---------------------------------------------------------------------------------
def test_reimporting_the_same_feed_changes_nothing(state: ServiceState, tmp_path: Path) -> None:
    codes = usccs(4)
    register(state.engine, tmp_path, codes)
    path = write_csv(tmp_path / "si.csv", ["统一社会信用代码,参保人数"] + [f"{c},{10 + i}" for i, c in enumerate(codes)])
    first = import_feed(state.engine, path, source="social_insurance", as_of=DAY)
    assert (first.updated, first.facts_changed) == (4, 4)
    rows = {c: (r.updated_at, r.content_hash, r.profile, r.provenance) for c, r in rows_of(state.engine, codes).items()}
    docs = {c: {s: (d.updated_at, d.content_hash) for s, d in docs_of(state.engine, c).items()} for c in codes}
    again = import_feed(state.engine, path, source="social_insurance", as_of=DAY)
    assert (again.created, again.updated, again.unchanged, again.facts_changed) == (0, 0, 4, 0)
    assert {c: (r.updated_at, r.content_hash, r.profile, r.provenance)
            for c, r in rows_of(state.engine, codes).items()} == rows
    assert {c: {s: (d.updated_at, d.content_hash) for s, d in docs_of(state.engine, c).items()} for c in codes} == docs
    # the registration feed again: no row of any firm changes either
    assert register(state.engine, tmp_path, codes).unchanged == 4


def test_an_older_feed_never_overrides_a_newer_fact(state: ServiceState, tmp_path: Path) -> None:
    [code] = usccs(1)
    register(state.engine, tmp_path, [code], day=dt.date(2024, 1, 1))

    def tax(grade: str, day: dt.date, sales: str = "") -> FeedReport:
        path = write_csv(tmp_path / f"tax-{uuid.uuid4().hex[:6]}.csv", ["纳税人识别号,纳税信用级别,月均销售额（万元）",
                                                                        f"{code},{grade},{sales}"])
        return import_feed(state.engine, path, source="tax", as_of=day)

    tax("B", dt.date(2026, 4, 1), "50")
    assert tax("A", dt.date(2025, 4, 1)).unchanged == 1  # last year's file imported late: the grade stays B
    row = rows_of(state.engine, [code])[code]
    assert row.profile["tax_credit_grade"] == "B"
    assert row.provenance["tax_credit_grade"] == {"source": "tax", "as_of": "2026-04-01"}
    assert tax("A", dt.date(2026, 5, 1)).updated == 1  # a newer one does
    row = rows_of(state.engine, [code])[code]
    assert row.profile["tax_credit_grade"] == "A" and row.profile["monthly_sales_wan"] == 50.0
    assert row.provenance["monthly_sales_wan"]["as_of"] == "2026-04-01"  # the fields a row leaves empty keep theirs


def test_a_reconfirmed_value_moves_the_hash_only_when_it_ages(state: ServiceState, tmp_path: Path) -> None:
    [code] = usccs(1)
    register(state.engine, tmp_path, [code], day=dt.date(2025, 1, 1))
    si = write_csv(tmp_path / "si.csv", ["统一社会信用代码,参保人数", f"{code},30"])
    import_feed(state.engine, si, source="social_insurance", as_of=dt.date(2026, 1, 31))
    before = rows_of(state.engine, [code])[code]
    # the register confirms the same facts later: its fields never age, what matching reads is unchanged
    register(state.engine, tmp_path, [code], day=dt.date(2026, 2, 1))
    confirmed = rows_of(state.engine, [code])[code]
    assert confirmed.profile == before.profile and confirmed.content_hash == before.content_hash
    assert confirmed.provenance["name"]["as_of"] == "2026-02-01"  # … though the newer date is recorded
    # social insurance confirms the same headcount a month later: the day it turns stale moves, so does the hash
    import_feed(state.engine, si, source="social_insurance", as_of=dt.date(2026, 2, 28))
    moved = rows_of(state.engine, [code])[code]
    assert moved.profile == before.profile and moved.content_hash != before.content_hash
    assert moved.provenance["employees"] == {"source": "social_insurance", "as_of": "2026-02-28"}


# ---- firms waiting for the register, legacy profiles, the whole-profile import --------------------------------
def test_a_firm_the_register_has_not_named_waits(state: ServiceState, tmp_path: Path) -> None:
    [code] = usccs(1)
    path = write_csv(tmp_path / "tax.csv", ["纳税人识别号,纳税信用级别", f"{code},A"])
    report = import_feed(state.engine, path, source="tax", as_of=DAY)
    assert (report.waiting, report.created, report.rejected) == (1, 0, 0)
    accounted(report, path)
    assert not rows_of(state.engine, [code]) and set(docs_of(state.engine, code)) == {"tax"}
    assert import_feed(state.engine, path, source="tax", as_of=DAY).waiting == 1  # still waiting, nothing lost
    assert register(state.engine, tmp_path, [code]).created == 1
    row = rows_of(state.engine, [code])[code]
    assert row.profile["tax_credit_grade"] == "A" and row.provenance["tax_credit_grade"]["source"] == "tax"


def legacy_firm(engine: Any, i: int) -> tuple[str, dict[str, Any]]:
    """A firm stored before any feed (no provenance, no source documents), its own for this test."""
    [code] = usccs(1)
    profile = sample(i) | {"uscc": code, "name": f"存量企业{code[-6:]}有限公司"}
    with Session(engine) as session:
        upsert_enterprise(session, profile=parse_profile(profile))
        session.commit()
    return code, profile


def test_a_legacy_profile_is_the_firms_own_statement(state: ServiceState, tmp_path: Path) -> None:
    code, profile = legacy_firm(state.engine, 0)
    before = rows_of(state.engine, [code])[code]
    assert before.provenance is None and not docs_of(state.engine, code)
    assert profile["tax_credit_grade"] == "A"
    path = write_csv(tmp_path / "tax.csv", ["纳税人识别号,纳税信用级别", f"{code},B"])
    assert import_feed(state.engine, path, source="tax", as_of=DAY).updated == 1
    after = rows_of(state.engine, [code])[code]
    saved_on = before.updated_at.date().isoformat()
    own = docs_of(state.engine, code)["self"].doc
    assert own["values"] == {k: v for k, v in profile.items() if k != "uscc"}
    assert set(own["as_of"].values()) == {saved_on}
    assert after.profile["tax_credit_grade"] == "B" and after.profile["name"] == profile["name"]
    assert after.provenance["name"] == {"source": "self", "as_of": saved_on}
    [conflict] = [c for c in after.conflicts or [] if c["field"] == "tax_credit_grade"]
    assert conflict["chosen"]["source"] == "tax" and conflict["others"][0]["value"] == "A"
    assert "以税务为准" in conflict["message"] and "请核实" in conflict["message"]


def test_the_whole_profile_import_records_the_firms_own_statement(state: ServiceState, tmp_path: Path) -> None:
    [code] = usccs(1)
    profile = sample(1) | {"uscc": code, "name": f"自报导入{code[-6:]}有限公司"}
    path = tmp_path / "own.jsonl"
    path.write_text(json.dumps(profile, ensure_ascii=False) + "\n", encoding="utf-8")
    assert import_file(state.engine, path, as_of=DAY).created == 1
    row = rows_of(state.engine, [code])[code]
    assert row.profile == profile and {p["source"] for p in row.provenance.values()} == {"self"}
    assert docs_of(state.engine, code)["self"].doc["as_of"]["employees"] == DAY.isoformat()
    again = import_file(state.engine, path, as_of=DAY)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 1)
    # a department's fact then overrides the firm's own; its own statement again does not win it back
    tax = write_csv(tmp_path / "tax.csv", ["纳税人识别号,纳税人类型", f"{code},一般纳税人"])
    import_feed(state.engine, tax, source="tax", as_of=DAY)
    assert import_file(state.engine, path, as_of=DAY).unchanged == 1
    row = rows_of(state.engine, [code])[code]
    assert row.profile["taxpayer_type"] == "general" and row.conflicts[0]["field"] == "taxpayer_type"


def test_restating_a_legacy_profile_changes_nothing(state: ServiceState, tmp_path: Path) -> None:
    code, profile = legacy_firm(state.engine, 4)
    before = rows_of(state.engine, [code])[code]
    path = tmp_path / "same.jsonl"
    path.write_text(json.dumps(profile, ensure_ascii=False) + "\n", encoding="utf-8")
    assert import_file(state.engine, path).unchanged == 1
    after = rows_of(state.engine, [code])[code]
    assert (after.updated_at, after.content_hash, after.provenance) == (before.updated_at, before.content_hash, None)
    assert not docs_of(state.engine, code)


def test_the_firm_changing_its_legacy_profile(state: ServiceState, tmp_path: Path) -> None:
    """The firm's own new statement replaces the legacy profile as its statement (one self document)."""
    code, profile = legacy_firm(state.engine, 2)
    path = tmp_path / "changed.jsonl"
    path.write_text(json.dumps(profile | {"employees": 3}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert import_file(state.engine, path, as_of=DAY).updated == 1
    row = rows_of(state.engine, [code])[code]
    assert row.profile["employees"] == 3 and row.provenance["employees"] == {"source": "self", "as_of": DAY.isoformat()}
    assert set(docs_of(state.engine, code)) == {"self"}


def test_inside_a_rank_the_newer_department_wins(state: ServiceState, tmp_path: Path) -> None:
    """R&D expense: the tax bureau and science are one rank — the newer observation is the value, the other
    a conflict; the firm's own figure never overrides either."""
    [code] = usccs(1)
    register(state.engine, tmp_path, [code], day=dt.date(2025, 1, 1))

    def rd(source: str, header: str, amount: int, day: dt.date) -> None:
        path = write_csv(tmp_path / f"{source}-{uuid.uuid4().hex[:6]}.csv", [f"统一社会信用代码,{header}", f"{code},{amount}"])
        assert import_feed(state.engine, path, source=source, as_of=day).rejected == 0

    rd("tax", "研发费用", 150, dt.date(2026, 4, 1))
    rd("science", "研发投入", 158, dt.date(2026, 5, 1))
    rd("self", "rd_expense_wan", 300, dt.date(2026, 6, 1))
    row = rows_of(state.engine, [code])[code]
    assert row.profile["rd_expense_wan"] == 158.0
    assert row.provenance["rd_expense_wan"] == {"source": "science", "as_of": "2026-05-01"}
    [conflict] = [c for c in row.conflicts or [] if c["field"] == "rd_expense_wan"]
    assert {o["source"] for o in conflict["others"]} == {"tax", "self"}
    rd("tax", "研发费用", 150, dt.date(2026, 6, 15))  # the tax bureau confirms its figure later: now the newer one
    row = rows_of(state.engine, [code])[code]
    assert row.profile["rd_expense_wan"] == 150.0 and row.provenance["rd_expense_wan"]["source"] == "tax"


def test_the_command_line(state: ServiceState, database_url: str, tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    """``policyfit enterprises import FILE --source S --as-of D`` exactly as outside checks call it."""
    from typer.testing import CliRunner

    from service.main import app
    from service.settings import get_settings

    codes = usccs(2)
    register(state.engine, tmp_path, codes)
    path = write_csv(tmp_path / "tax.csv", ["纳税人识别号,纳税信用级别", f"{codes[0]},B级", f"{codes[1]},E"])
    monkeypatch.setenv("POLICYFIT_DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        result = runner.invoke(app, ["enterprises", "import", str(path), "--source", "tax", "--as-of", "2026-04-15"])
        assert result.exit_code == 1, result.output  # one row was refused
        assert "来源 税务（tax，数据日期 2026-04-15）：共 2 行：新增 0，更新 1，未变 0，拒绝 1" in result.stdout
        assert rows_of(state.engine, codes)[codes[0]].provenance["tax_credit_grade"] == {"source": "tax",
                                                                                         "as_of": "2026-04-15"}
        good = write_csv(tmp_path / "good.csv", ["纳税人识别号,纳税信用级别", f"{codes[0]},B级"])
        again = runner.invoke(app, ["enterprises", "import", str(good), "--source", "tax", "--as-of", "2026-04-15"])
        assert again.exit_code == 0 and "未变 1" in again.stdout
        for args, words in ((["--source", "customs"], "未知的数据来源“customs”"),
                            (["--source", "tax", "--as-of", "20260415"], "YYYY-MM-DD"),
                            (["--source", "tax", "--as-of", (dt.date.today() + dt.timedelta(days=1)).isoformat()],
                             "不能晚于今天")):
            refused = runner.invoke(app, ["enterprises", "import", str(good), *args])
            assert refused.exit_code == 2 and words in refused.stderr, refused.output
    finally:
        get_settings.cache_clear()
