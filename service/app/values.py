"""How the money of a package reads, in one wording for the calculator, the console and ``policyfit match``:
an entry's value line (估计价值 X 万元/年 · 缓缴约 X 万元 · 非金额优惠 · why there is no number), the sentence
behind it (value_assumption), where it comes from (source_document), the total with deferrals apart, and
what a what-if did to the values. Entries are the answer's models or their JSON (both are read)."""

from __future__ import annotations

from typing import Any

from profiles.labels import wan_text

PLAN_TASKS = "《徐州市2023年优化营商环境重点任务》"
PLAN_MEASURES = "《徐州市2023年优化营商环境十项举措》"

#: One line on how the total is estimated (shown under it on every page and in the CLI report).
HOW_ESTIMATED = ("合计只加各项每年少缴或获得的金额，同类政策只计一次；缓缴、价格扣除等不计入合计；"
                 "每项按其注明的假设和文件在评估日的标准估算，实际金额以主管部门核定为准。")


def _get(entry: Any, key: str) -> Any:
    return entry.get(key) if isinstance(entry, dict) else getattr(entry, key, None)


def value_line(entry: Any) -> str:
    """The short value of a package entry or near miss: ``估计价值 4.96 万元/年``, ``缓缴约 12 万元`` (a deferral),
    ``非金额优惠`` (a price advantage: the assumption says which), ``不估算金额`` or ``暂不能估算金额`` (the assumption
    says why); '' when the catalog estimates nothing for it."""
    kind, value = _get(entry, "value_kind"), _get(entry, "estimated_value_wan")
    if kind is None:
        return ""
    if value is not None:
        if kind == "cash_flow":
            return f"缓缴约 {wan_text(value)} 万元"
        return f"估计价值 {wan_text(value)} 万元/年"
    if kind == "non_monetary":
        return "非金额优惠"
    if kind == "unquantified":
        return "不估算金额"
    return "暂不能估算金额"


def assumption_label(entry: Any) -> str:
    """What the value_assumption sentence is, as its label reads: how the number was estimated, what the
    advantage is, or why there is no number."""
    kind, value = _get(entry, "value_kind"), _get(entry, "estimated_value_wan")
    if kind == "non_monetary":
        return "优惠内容"
    if value is None:
        return "为何没有金额"
    return "怎么估算"


def provenance(entry: Any) -> str:
    """《…重点任务》第63项 / 《…十项举措》第3项; '' for a national or provincial document."""
    task, measure = _get(entry, "source_task"), _get(entry, "source_measure")
    if task:
        return f"{PLAN_TASKS}第{task}项"
    if measure:
        return f"{PLAN_MEASURES}第{measure}项"
    return ""


def source_line(entry: Any) -> str:
    """Where the entry comes from: the document that grants it, with the plan's task or measure when it is
    the plan's (``徐委办〔2023〕37号 《…重点任务》第61项``; ``财政部 税务总局公告2023年第12号``)."""
    parts = [p for p in (_get(entry, "source_document"), provenance(entry)) if p]
    return " ".join(parts)


def total_line(summary: Any) -> str:
    """The total as a sentence: ``估计价值合计约 4.96 万元/年（1 项可估算）；另可缓缴约 12 万元（不计入合计）``;
    '' when nothing in the package has a number."""
    total, count = _get(summary, "estimated_value_wan") or 0, _get(summary, "valued_policies") or 0
    deferred = _get(summary, "cash_flow_wan") or 0
    parts = []
    if count:
        parts.append(f"估计价值合计约 {wan_text(total)} 万元/年（{count} 项可估算）")
    if deferred:
        parts.append(f"另可缓缴约 {wan_text(deferred)} 万元（不计入合计）")
    return "；".join(parts)


def value_changes(old: Any, new: Any) -> list[dict[str, str]]:
    """Each package entry whose value a what-if changed (appearing or leaving with a value included), in the new
    package's order then the removed ones: ``{"policy_id", "title", "before", "after"}`` with value lines
    (``不在套餐中`` when the entry is on one side only)."""
    before = {_get(e, "policy_id"): e for e in _get(old, "package")}
    after = {_get(e, "policy_id"): e for e in _get(new, "package")}
    order = list(after) + [pid for pid in before if pid not in after]
    rows = []
    for pid in order:
        b, a = before.get(pid), after.get(pid)
        b_line = value_line(b) if b is not None else "不在套餐中"
        a_line = value_line(a) if a is not None else "不在套餐中"
        if not (value_line(b) if b is not None else "") and not (value_line(a) if a is not None else ""):
            continue  # no value on either side: the added/removed lists say it
        if b_line == a_line:
            continue
        title = _get(a if a is not None else b, "title")
        rows.append({"policy_id": pid, "title": title, "before": b_line or "无金额估算",
                     "after": a_line or "无金额估算"})
    return rows
