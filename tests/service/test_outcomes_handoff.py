"""免申即享 hand-off (``policyfit outcomes handoff``) and the 应享未享 report (``policyfit outcomes report``): the
eligible firms not yet granted, each with the clauses that made it eligible; the department's filled-in file,
imported as it is, closes the firms it granted. On a database of this module (SQLite, or a fresh PostgreSQL schema
when ``POLICYFIT_TEST_DATABASE_URL`` is set) with a catalog where one policy is marked ``delivery: automatic``."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from sqlmodel import Session
from typer.testing import CliRunner

from matching.rules import ELIGIBLE, RuleEngine
from policies.schema import Policy
from profiles.columns import ProfileBatch
from profiles.model import parse_profile
from profiles.synth import synthesize
from service.db.bulk import table_of
from service.db.tables import MatchSnapshot, Outcome, postgres_schema
from service.settings import get_settings
from service.store.enterprises import upsert_enterprise

POLICY = "guarantee-fee-cap-small-micro-agri"
CATALOG = Path(__file__).resolve().parents[2] / "policies" / "catalog"
TODAY = dt.date.today()
runner = CliRunner()
pytestmark = pytest.mark.xdist_group("outcomes_handoff")  # one database, the tests in order


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A catalog where POLICY is 免申即享, a database of 40 synthetic firms whose snapshot offers it to all of them
    (some no longer pass today), a grant within the period, a refusal before it and a pending application."""
    root = tmp_path_factory.mktemp("handoff")
    catalog = root / "catalog"
    shutil.copytree(CATALOG, catalog)
    path = catalog / f"{POLICY}.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("delivery: proactive", "delivery: automatic"),
                    encoding="utf-8")
    base = os.environ.get("POLICYFIT_TEST_DATABASE_URL", "").strip()
    if base:
        with postgres_schema(base, f"pf_handoff_{uuid.uuid4().hex[:10]}") as url:
            yield from _seed(root, catalog, url)
    else:
        yield from _seed(root, catalog, f"sqlite:///{root / 'handoff.db'}")


def _seed(root: Path, catalog: Path, url: str) -> Iterator[dict[str, Any]]:
    patch = pytest.MonkeyPatch()
    patch.setenv("POLICYFIT_DATABASE_URL", url)
    patch.setenv("POLICYFIT_CATALOG_DIR", str(catalog))
    get_settings.cache_clear()
    from service.bootstrap import migrated_engine, sync_catalog

    engine = migrated_engine()
    sync_catalog(engine, get_settings())
    records = list(synthesize(40, 11).records())
    policy = Policy.model_validate(yaml.safe_load((catalog / f"{POLICY}.yaml").read_text(encoding="utf-8")))
    batch = ProfileBatch.from_records(records).with_derived(TODAY)
    status = RuleEngine([policy]).evaluate(batch, TODAY, near_misses=False).status[0]
    passing = [r["uscc"] for r, s in zip(records, status, strict=True) if s == ELIGIBLE]
    assert len(passing) >= 8 and len(passing) < len(records)  # some firms no longer pass: left out
    granted, refused_long_ago, applied = passing[:3]
    now = dt.datetime.now(dt.UTC)
    with Session(engine) as session:
        for r in records:
            upsert_enterprise(session, profile=parse_profile(r))
        session.commit()
    with engine.begin() as conn:
        conn.execute(sa.insert(table_of(MatchSnapshot)), [
            {"uscc": r["uscc"], "policy_id": POLICY, "policy_version": policy.version, "status": 1, "score": 0.5,
             "computed_at": now} for r in records])
        conn.execute(sa.insert(table_of(Outcome)), [
            {"uscc": granted, "policy_id": POLICY, "outcome": "granted", "decided_on": TODAY - dt.timedelta(days=30),
             "amount_wan": 2.0, "department": "市财政局", "source": "import", "recorded_at": now},
            {"uscc": refused_long_ago, "policy_id": POLICY, "outcome": "refused", "amount_wan": None,
             "decided_on": TODAY - dt.timedelta(days=400), "department": None, "source": "import", "recorded_at": now},
            {"uscc": applied, "policy_id": POLICY, "outcome": "applied", "decided_on": TODAY - dt.timedelta(days=3),
             "amount_wan": None, "department": None, "source": "api", "recorded_at": now}])
    engine.dispose()
    try:
        yield {"root": root, "url": url, "passing": passing, "records": len(records), "granted": granted,
               "refused": refused_long_ago, "applied": applied}
    finally:
        patch.undo()
        get_settings.cache_clear()


def cli(*args: str) -> Any:
    from service.main import app

    return runner.invoke(app, list(args))


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:  # written with a BOM for Excel
        return list(csv.DictReader(fh))


def test_automatic_is_read_from_the_catalog_and_only_for_entitlements() -> None:
    data = yaml.safe_load((CATALOG / f"{POLICY}.yaml").read_text(encoding="utf-8"))
    assert not Policy.model_validate(data).automatic and "grant" not in Policy.model_validate(data).model_dump()
    auto = Policy.model_validate({**data, "delivery": "automatic"})
    assert (auto.automatic, auto.delivery, auto.model_dump(mode="json")["grant"]) == (True, "proactive", "automatic")
    commitment = yaml.safe_load((CATALOG / "enterprise-policy-application-guide.yaml").read_text(encoding="utf-8"))
    with pytest.raises(ValueError, match="免申即享"):
        Policy.model_validate({**commitment, "delivery": "automatic"})


def test_handoff_lists_the_eligible_firms_with_their_clauses(world: dict[str, Any]) -> None:
    out = world["root"] / "handoff.csv"
    result = cli("outcomes", "handoff", "--policy", POLICY, "--out", str(out))
    assert result.exit_code == 0, result.output
    rows = read_csv(out)
    expected = set(world["passing"]) - {world["granted"]}  # granted within the period: closed
    assert {r["统一社会信用代码"] for r in rows} == expected
    assert list(rows[0])[:6] == ["统一社会信用代码", "政策编号", "结果", "金额（万元）", "决定日期", "部门"]
    assert all(r["政策编号"] == POLICY and r["部门"] == "市地方金融监管局" and not r["结果"] for r in rows)
    assert all(r["符合条件的依据"] and "（当前：" in r["条件明细"] and r["企业名称"] for r in rows)
    states = {r["统一社会信用代码"]: r["当前状态"] for r in rows}
    assert states[world["applied"]] == "已申请，待决定" and "已超过365天" in states[world["refused"]]
    left_out = world["records"] - len(world["passing"])
    assert f"另有 {left_out} 家企业" in result.output  # the snapshot offers it, today's profile no longer passes
    jsonl = world["root"] / "handoff.jsonl"
    assert cli("outcomes", "handoff", "--policy", POLICY, "--out", str(jsonl)).exit_code == 0
    items = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    assert {i["uscc"] for i in items} == expected
    for item in items:  # the rule: small or micro, or 三农 (agriculture, a farmers' cooperative)
        assert {c["field"] for c in item["clauses"]} <= {"size", "industry_section", "entity_type"}
        assert all(set(c) == {"field", "label", "clause", "observed", "observed_text", "threshold"}
                   for c in item["clauses"])
        if [c["field"] for c in item["clauses"]] == ["size"]:
            assert item["size"] in ("小型", "微型") and item["clauses"][0]["observed"] in ("small", "micro")


def test_the_filled_in_handoff_imported_as_it_is_closes_the_granted_firms(world: dict[str, Any]) -> None:
    out = world["root"] / "to-fill.csv"
    assert cli("outcomes", "handoff", "--policy", POLICY, "--out", str(out)).exit_code == 0
    rows = read_csv(out)
    done = rows[: len(rows) // 2]
    for row in done:
        row.update({"结果": "已兑现", "金额（万元）": "1.5", "决定日期": TODAY.isoformat()})
    with out.open("w", encoding="utf-8-sig", newline="") as fh:  # as Excel saves it
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = cli("outcomes", "import", str(out))
    assert result.exit_code == 1, result.output  # the rows not filled in are refused, each with its reason
    assert f"共 {len(rows)} 行：新增 {len(done)}" in result.output and f"拒绝 {len(rows) - len(done)}" in result.output
    errors = [json.loads(x) for x in out.with_name("to-fill.errors.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {e["field"] for e in errors} == {"outcome"} and all("未填写" in e["error"] for e in errors)
    again = world["root"] / "again.csv"
    assert cli("outcomes", "handoff", "--policy", POLICY, "--out", str(again)).exit_code == 0
    left = {r["统一社会信用代码"] for r in read_csv(again)}
    assert left == {r["统一社会信用代码"] for r in rows[len(done):]}
    report = world["root"] / "report.csv"
    result = cli("outcomes", "report", "--policy", POLICY, "--csv", str(report))
    assert result.exit_code == 0, result.output
    listed = read_csv(report)
    assert {r["统一社会信用代码"] for r in listed} == left
    assert list(listed[0]) == ["政策编号", "政策名称", "统一社会信用代码", "企业名称", "所在地区", "企业规模", "联系渠道",
                               "当前状态", "符合条件的依据", "条件明细", "估算金额（万元）", "应享起始日期", "牵头部门"]
    assert all(r["联系渠道"] == "尚未推送" and r["应享起始日期"] == TODAY.isoformat() for r in listed)
    assert f"已兑现 {len(done) + 1}" in result.output and f"应享未享 {world['records'] - len(done) - 1}" in result.output


def test_handoff_refuses_a_policy_that_is_not_automatic(world: dict[str, Any]) -> None:
    result = cli("outcomes", "handoff", "--policy", "vat-small-scale-exemption", "--out",
                 str(world["root"] / "no.csv"))
    assert result.exit_code == 2 and "不是免申即享政策" in result.output
    assert not (world["root"] / "no.csv").exists()
    unknown = cli("outcomes", "report", "--policy", "no-such-policy")
    assert unknown.exit_code == 2 and "未找到政策“no-such-policy”" in unknown.output


def test_report_of_every_offered_policy(world: dict[str, Any]) -> None:
    result = cli("outcomes", "report")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{POLICY}（") and result.output.count("应享未享") == 1
