"""The coverage table: every task and measure of the plan → its catalog entries and their kind.

Every one of the 160 tasks (附件1) and 10 measures (附件2) must have at least one entry of some kind —
``policy`` (a firm can claim or invoke it), ``commitment`` (what the government owes firms) or ``plan_work``
(government-internal work) — so that a caller's question about any part of the plan finds it. A task counts
as covered by an entry that cites it as ``task_no`` or lists it in ``related_tasks`` (the entry is built from
that task's wording too: the quote test checks it), the latter marked （相关）. The old list of tasks that
were "not enterprise-facing" (policies/scope/) is gone: a task without an entry fails the check.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from policies.loader import Catalog
from policies.plan import measures, tasks
from policies.schema import KINDS, Policy

COVERAGE_FILE = Path(__file__).with_name("COVERAGE.md")
KIND_ORDER = ("policy", "commitment", "plan_work")


class CoverageError(ValueError):
    """A task or measure without any catalog entry."""


#: short strength labels for the table cells (the header spells them out)
SHORT_STRENGTHS = {"entitlement": "应享", "selective": "择优", "procedure": "办事便利", "channel": "服务渠道"}
STRENGTH_HEADINGS = {"entitlement": "应享（符合条件即可享受）", "selective": "择优（申报评审）",
                     "procedure": "办事便利（需要时办理）", "channel": "服务渠道"}


def _label(entry: Policy, related: bool = False) -> str:
    detail = SHORT_STRENGTHS[entry.strength] if entry.kind == "policy" and entry.strength else ""
    parts = [p for p in (detail, "相关" if related else "") if p]
    return f"`{entry.id}`" + (f"（{'，'.join(parts)}）" if parts else "")


def _cell(own: list[Policy], related: list[Policy]) -> tuple[str, str]:
    """(kinds, entries) cells: the kinds of the entries that cover the item, then the entries grouped by kind."""
    kinds = [k for k in KIND_ORDER if any(e.kind == k for e in own + related)]
    lines = []
    for kind in KIND_ORDER:
        mine = [_label(e) for e in own if e.kind == kind] + [_label(e, True) for e in related if e.kind == kind]
        if mine:
            lines.append(f"{KINDS[kind]}：" + "、".join(mine))
    return "、".join(KINDS[k] for k in kinds), "<br>".join(lines)


def coverage_problems(catalog: Catalog) -> list[str]:
    """Every task or measure the catalog leaves uncovered (empty list = complete)."""
    try:
        render_coverage(catalog)
    except CoverageError as exc:
        return str(exc).split("; ")
    return []


def render_coverage(catalog: Catalog) -> str:
    by_task: dict[int, list[Policy]] = defaultdict(list)
    related: dict[int, list[Policy]] = defaultdict(list)
    by_measure: dict[int, list[Policy]] = defaultdict(list)
    for entry in catalog.all_entries():  # every kind covers its task (policy, commitment, plan_work)
        if entry.source.task_no:
            by_task[entry.source.task_no].append(entry)
        if entry.source.measure_no:
            by_measure[entry.source.measure_no].append(entry)
        for no in entry.source.related_tasks:
            related[no].append(entry)
    problems: list[str] = []
    rows = []
    kind_counts = {k: 0 for k in KIND_ORDER}
    for t in tasks():
        own = by_task.get(t.no, [])
        rel = related.get(t.no, [])
        if not (own or rel):
            problems.append(f"task {t.no} ({t.title}) has no catalog entry (policy, commitment or plan_work)")
        kinds, cell = _cell(own, rel)
        for k in KIND_ORDER:
            kind_counts[k] += any(e.kind == k for e in own + rel)
        rows.append(f"| {t.no} | {t.section} | {t.title} | {kinds} | {cell} |")
    mrows = []
    for m in measures():
        own = by_measure.get(m.no, [])
        if not own:
            problems.append(f"measure {m.no} ({m.title}) has no catalog entry (policy, commitment or plan_work)")
        kinds, cell = _cell(own, [])
        mrows.append(f"| {m.no} | {m.title} | {kinds} | {cell} |")
    if problems:
        raise CoverageError("; ".join(problems))
    entries = catalog.all_entries()
    count = {k: sum(1 for e in entries if e.kind == k) for k in KIND_ORDER}
    strengths = {s: sum(1 for e in entries if e.kind == "policy" and e.strength == s) for s in STRENGTH_HEADINGS}
    covered = sum(1 for t in tasks() if by_task.get(t.no) or related.get(t.no))
    measures_covered = sum(1 for m in measures() if by_measure.get(m.no))
    header = [
        "# 政策目录覆盖表（自动生成，勿手工编辑）",
        "",
        "由 `policyfit policies coverage --write` 根据 `policies/catalog/` 生成；`make test` 检查本文件与目录一致，",
        "且每一项重点任务和举措都至少有一个条目（惠企政策、服务承诺或政府工作任务）。",
        "",
        f"- 目录：{len(entries)} 个条目（{catalog.version}）："
        + "，".join(f"{KINDS[k]} {count[k]} 条" for k in KIND_ORDER),
        "- 惠企政策按力度：" + "，".join(f"{STRENGTH_HEADINGS[s]} {n} 条" for s, n in strengths.items()),
        f"- 附件1 重点任务：160 项，{covered} 项已有条目；其中含惠企政策的 {kind_counts['policy']} 项，"
        f"含服务承诺的 {kind_counts['commitment']} 项，含政府工作任务的 {kind_counts['plan_work']} 项",
        f"- 附件2 十项举措：{measures_covered} 项已有条目",
        "- 惠企政策进入“政策套餐”（符合条件即可享受、可申报（择优）的主动推送；办事便利和服务渠道在企业的诉求、"
        "行业或处境需要时提供）；服务承诺和政府工作任务只供查询，不进入套餐、不推送。",
        "",
        "## 附件1 重点任务清单",
        "",
        "| 序号 | 分项 | 重点任务 | 类型 | 条目 |",
        "|---|---|---|---|---|",
    ]
    return "\n".join(header + rows + ["", "## 附件2 十项举措", "", "| 序号 | 举措 | 类型 | 条目 |",
                                      "|---|---|---|---|"] + mrows) + "\n"
