"""The coverage table: every task and measure of the plan → its policies, or why none."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import yaml

from policies.loader import Catalog
from policies.plan import measures, tasks

SCOPE_DIR = Path(__file__).with_name("scope")
COVERAGE_FILE = Path(__file__).with_name("COVERAGE.md")


class CoverageError(ValueError):
    """A task or measure that is neither covered nor explained (or both)."""


def _reasons() -> tuple[dict[int, str], dict[int, str]]:
    tasks_out: dict[int, str] = {}
    measures_out: dict[int, str] = {}
    for path in sorted(SCOPE_DIR.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for key, target in (("not_enterprise_facing", tasks_out), ("measures_not_enterprise_facing", measures_out)):
            for no, reason in (data.get(key) or {}).items():
                if int(no) in target:
                    raise CoverageError(f"{path.name}: {key} {no} is listed twice")
                target[int(no)] = str(reason).strip()
    return tasks_out, measures_out


def render_coverage(catalog: Catalog) -> str:
    by_task: dict[int, list[str]] = defaultdict(list)
    related: dict[int, list[str]] = defaultdict(list)
    by_measure: dict[int, list[str]] = defaultdict(list)
    for p in catalog.entries.values():  # every kind covers its task (policy, commitment, plan_work)
        if p.source.task_no:
            by_task[p.source.task_no].append(p.id)
        if p.source.measure_no:
            by_measure[p.source.measure_no].append(p.id)
        for no in p.source.related_tasks:
            related[no].append(p.id)
    task_reasons, measure_reasons = _reasons()
    problems: list[str] = []
    rows = []
    for t in tasks():
        ids = by_task.get(t.no, []) + [f"{i}（相关）" for i in related.get(t.no, [])]
        reason = task_reasons.get(t.no)
        if ids and reason:
            problems.append(f"task {t.no} has policies and a not-enterprise-facing reason")
        if not ids and not reason:
            problems.append(f"task {t.no} ({t.title}) has neither a policy nor a reason")
        cell = "<br>".join(f"`{i}`" for i in ids) if ids else f"非面向企业：{reason}"
        rows.append(f"| {t.no} | {t.section} | {t.title} | {cell} |")
    mrows = []
    for m in measures():
        ids = by_measure.get(m.no, [])
        reason = measure_reasons.get(m.no)
        if ids and reason:
            problems.append(f"measure {m.no} has policies and a not-enterprise-facing reason")
        if not ids and not reason:
            problems.append(f"measure {m.no} ({m.title}) has neither a policy nor a reason")
        cell = "<br>".join(f"`{i}`" for i in ids) if ids else f"非面向企业：{reason}"
        mrows.append(f"| {m.no} | {m.title} | {cell} |")
    if problems:
        raise CoverageError("; ".join(problems))
    covered = sum(1 for t in tasks() if t.no in by_task or t.no in related)
    header = [
        "# 政策目录覆盖表（自动生成，勿手工编辑）",
        "",
        "由 `policyfit policies coverage --write` 根据 `policies/catalog/` 与 `policies/scope/` 生成；",
        "`make test` 检查本文件与目录一致。",
        "",
        f"- 目录：{len(catalog)} 条政策（{catalog.version}）",
        f"- 附件1 重点任务：160 项，其中 {covered} 项形成政策，{160 - covered} 项非面向企业（附理由）",
        f"- 附件2 十项举措：{sum(1 for m in measures() if m.no in by_measure)} 项形成政策",
        "",
        "## 附件1 重点任务清单",
        "",
        "| 序号 | 分项 | 重点任务 | 政策 |",
        "|---|---|---|---|",
    ]
    return "\n".join(header + rows + ["", "## 附件2 十项举措", "", "| 序号 | 举措 | 政策 |", "|---|---|---|"] + mrows) + "\n"
