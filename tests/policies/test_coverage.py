"""The coverage table accounts for all 160 tasks and 10 measures, and is up to date."""

from __future__ import annotations

from policies.coverage import COVERAGE_FILE, render_coverage
from policies.loader import Catalog
from policies.plan import measures, tasks


def test_plan_parses_into_160_tasks_and_10_measures() -> None:
    assert [t.no for t in tasks()] == list(range(1, 161))
    assert [m.no for m in measures()] == list(range(1, 11))
    assert tasks()[60].title == "全额返还小微企业工会经费"
    assert "政策套餐" in measures()[2].text


def test_coverage_md_is_current(catalog: Catalog) -> None:
    text = render_coverage(catalog)  # raises when a task is neither covered nor explained
    assert COVERAGE_FILE.read_text(encoding="utf-8") == text, "run: policyfit policies coverage --write"
    for t in tasks():
        assert f"\n| {t.no} | " in text


def test_every_policy_quotes_the_plan(catalog: Catalog) -> None:
    """`text` is the plan's own wording: each sentence appears in the task(s) or measure it cites."""
    task_text = {t.no: t.text for t in tasks()}
    measure_text = {m.no: m.text for m in measures()}
    for policy in catalog:
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
