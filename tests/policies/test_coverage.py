"""The coverage table accounts for all 160 tasks and 10 measures with entries of a stated kind, and is up to date."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from policies.coverage import COVERAGE_FILE, CoverageError, coverage_problems, render_coverage
from policies.loader import Catalog
from policies.plan import measures, tasks


def test_plan_parses_into_160_tasks_and_10_measures() -> None:
    assert [t.no for t in tasks()] == list(range(1, 161))
    assert [m.no for m in measures()] == list(range(1, 11))
    assert tasks()[60].title == "全额返还小微企业工会经费"
    assert "政策套餐" in measures()[2].text


def test_coverage_md_is_current(catalog: Catalog) -> None:
    text = render_coverage(catalog)  # raises when a task or measure has no entry
    assert COVERAGE_FILE.read_text(encoding="utf-8") == text, "run: policyfit policies coverage --write"
    for t in tasks():
        assert f"\n| {t.no} | " in text


def test_every_task_and_measure_has_an_entry(catalog: Catalog) -> None:
    assert coverage_problems(catalog) == []
    assert not (Path(COVERAGE_FILE).parent / "scope").exists(), "the not-enterprise-facing list is gone for good"
    covered = {e.source.task_no for e in catalog.all_entries()} | {
        no for e in catalog.all_entries() for no in e.source.related_tasks}
    assert covered >= set(range(1, 161))
    assert {e.source.measure_no for e in catalog.all_entries()} >= set(range(1, 11))


def test_a_task_without_an_entry_fails_the_check(catalog: Catalog) -> None:
    """Dropping the entries of task 61 and measure 9 makes the table refuse to render, naming both."""
    kept = {pid: e for pid, e in catalog.entries.items() if e.source.task_no != 61 and e.source.measure_no != 9
            and 61 not in e.source.related_tasks}  # the national tax reliefs serve task 61 too
    assert len(kept) < len(catalog.entries)
    gapped = dataclasses.replace(catalog, entries=kept)
    with pytest.raises(CoverageError) as err:
        render_coverage(gapped)
    assert "task 61 (全额返还小微企业工会经费) has no catalog entry" in str(err.value)
    assert "measure 9 " in str(err.value)
    assert {p.split(" (")[0] for p in coverage_problems(gapped)} >= {"task 61", "measure 9"}


def test_the_table_shows_the_kind_and_strength_of_each_entry(catalog: Catalog) -> None:
    rows = {line.split(" | ")[0].lstrip("| "): line for line in render_coverage(catalog).split("\n## 附件2")[0]
            .splitlines() if line.startswith("| ") and line[2:3].isdigit()}
    assert len(rows) == 160
    kinds = {"惠企政策", "服务承诺", "政府工作任务"}
    for no, row in rows.items():
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        assert cells[3] and set(cells[3].split("、")) <= kinds, (no, cells[3])
        for entry in catalog.all_entries():
            if entry.source.task_no == int(no):
                assert f"`{entry.id}`" in cells[4]
                assert entry.kind_label in cells[3]
    row61 = rows["61"]
    assert "惠企政策：`union-fee-deferral-small-scale`（应享）、`union-fee-refund-small-micro`（应享）" in row61
    assert "服务承诺：`sme-telecom-fee-reduction`" in rows["59"]


def test_every_policy_quotes_the_plan(catalog: Catalog) -> None:
    """`text` is the plan's own wording: each sentence of every entry (all kinds) appears in what it cites."""
    task_text = {t.no: t.text for t in tasks()}
    measure_text = {m.no: m.text for m in measures()}
    for policy in catalog.all_entries():
        if policy.source.national:  # an announcement's entry quotes the announcement (tests/policies/test_values.py)
            continue
        source = task_text[policy.source.task_no] if policy.source.task_no else measure_text[policy.source.measure_no]  # type: ignore[index]
        source += "".join(task_text[no] for no in policy.source.related_tasks)
        squashed = source.replace(" ", "")
        # sentences, and fragments around an elision (……), must each be verbatim
        fragments = policy.text.replace(" ", "").replace("……", "。").split("。")
        for sentence in filter(None, (s.strip("，；、 ") for s in fragments)):
            assert sentence in squashed, f"{policy.id}: '{sentence[:30]}…' is not in the plan's wording"


def test_departments_come_from_the_plan(catalog: Catalog) -> None:
    for policy in catalog:
        for dept in policy.lead_departments + policy.partner_departments:
            assert dept.startswith(("市", "徐州", "人民银行", "电信", "移动", "联通", "各")) or "局" in dept or "院" in dept, (policy.id, dept)
