"""The readable Chinese report of a match (what ``policyfit match`` and ``policyfit demo`` print without
--json)."""

from __future__ import annotations

from typing import Any

from matching.results import MatchResult
from profiles.labels import value_text
from service.app.values import (
    HOW_ESTIMATED,
    assumption_label,
    provenance,
    source_line,
    total_line,
    value_line,
)

__all__ = ["provenance", "render_match"]


def _value_lines(item: dict[str, Any]) -> list[str]:
    """The value beside the title (估计价值 X 万元/年 · 缓缴约 X 万元 · 非金额优惠 · 暂不能估算金额) and the sentence behind it."""
    line = value_line(item)
    if not line:
        return []
    if item.get("value_kind") == "cash_flow" and item.get("estimated_value_wan") is not None:
        line += "（暂缓缴纳，不是减免，不计入合计）"
    lines = [f"      金额：{line}"]
    if item.get("value_assumption"):
        lines.append(f"      {assumption_label(item)}：{item['value_assumption']}")
    return lines


def _item_lines(i: int, item: dict[str, Any]) -> list[str]:
    lines = [f"   {i}. {item['title']}"]  # the group heading says how sure it is
    lines += _value_lines(item)
    if item.get("why_you"):
        lines.append(f"      为什么是您：{item['why_you']}")
    lines.append(f"      依据：{'；'.join(item['reasons'])}")
    if item.get("exclusive_with"):
        note = "计入合计" if item.get("counted_in_total") else "不重复计入合计"
        lines.append(f"      注意：与{'、'.join(item['exclusive_with'])}不得重复享受（{note}）")
    lines.append(f"      牵头部门：{'、'.join(item.get('lead_departments') or [])}；办理：{item['how_to_apply']}")
    lines.append(f"      来源：{source_line(item)}")
    if item.get("needs_review"):
        lines.append(f"      ⚠ {item.get('review_note') or '该政策信息已超过复核期限，请以主管部门最新公布为准'}")
    return lines


def render_match(match: MatchResult) -> str:
    result = match.model_dump(mode="json")
    ent = result["enterprise"]
    size = value_text("size", ent.get("size") or None, "未知")
    lines = [
        f"■ {ent['name']}（{ent['uscc']}）",
        f"  规模：{size}（{ent.get('size_basis') or ''}）",
        f"  画像：{'、'.join(ent.get('tags') or []) or '—'}",
    ]
    lines += [f"  ⚠ {w}" for w in ent.get("warnings") or []]
    lines += [f"  ⏰ {r['message']}" for r in result.get("reminders") or []]
    stale = result.get("stale") or []
    if stale:
        shown = "；".join(f"{s['label']} {value_text(s['field'], s['value'], '—')}（{s.get('source_label') or s['source']}，"
                         f"{s['as_of']}）" for s in stale)
        lines.append(f"  ⌛ 数据已过时、按未知处理（请核实）：{shown}")
    package = result["package"]
    summary = result.get("summary") or {}
    money = total_line(summary)
    worth_total = f"，{money}" if money else ""
    groups = "、".join(f"{g['label']}{len(g['policies'])}项" for g in summary.get("by_category", []))
    # what the firm gets by meeting the rules, apart from what it may apply for and be selected
    sure = [e for e in package if e.get("strength") != "selective"]
    chosen = [e for e in package if e.get("strength") == "selective"]
    lines.append(f"  政策套餐 {len(package)} 项{worth_total}" + (f"（{groups}）" if groups else "") + "：")
    if money:
        lines.append(f"  （{HOW_ESTIMATED}）")
    if sure:
        lines.append(f"  ▸ 符合条件、可以办理 {len(sure)} 项：")
        for i, item in enumerate(sure, 1):
            lines += _item_lines(i, item)
    if chosen:
        lines.append(f"  ▸ 可申报（择优，不保证获得）{len(chosen)} 项：")
        for i, item in enumerate(chosen, len(sure) + 1):
            lines += _item_lines(i, item)
    asks = result.get("questions") or []
    if result["possibly_eligible"]:
        lines.append(f"  可能符合、需补充信息 {len(result['possibly_eligible'])} 项；"
                     f"要问的问题 {len(asks) or '若干'} 个（一个回答可能决定多项）：")
        titles = {e["policy_id"]: e["title"] for e in result["possibly_eligible"]}
        if asks:
            for ask in asks:
                settles = [titles.get(pid, pid) for pid in ask.get("settles", [])]
                shown = "、".join(settles[:3]) + (" 等" if len(settles) > 3 else "")
                lines.append(f"   · {ask['ask_staff']}（涉及 {len(settles)} 项：{shown}）")
        else:
            for item in result["possibly_eligible"]:
                lines.append(f"   · {item['title']}：{' '.join(item['questions'])}")
    if result["near_misses"]:
        lines.append(f"  差一个条件 {len(result['near_misses'])} 项：")
        for item in result["near_misses"]:
            worth = f"（达到后{value_line(item)}）" if item.get("estimated_value_wan") is not None else ""
            lines.append(f"   · {item['title']}：{'；'.join(item['unmet'])}{worth}")
    on_request = result.get("available_on_request") or []
    if on_request:
        lines.append(f"  需要时可办理 {len(on_request)} 项（说明具体诉求即 --query 即可列入套餐）：")
        for item in on_request:
            reason = f"：{item['reason']}" if item.get("reason") else ""
            lines.append(f"   · {item['title']}{reason}")
    return "\n".join(lines)
