"""The readable Chinese report of a match (what ``policyfit match`` and ``policyfit demo`` print without
--json)."""

from __future__ import annotations

from typing import Any

from matching.results import MatchResult
from profiles.labels import value_text

PLAN_TASKS = "《徐州市2023年优化营商环境重点任务》"
PLAN_MEASURES = "《徐州市2023年优化营商环境十项举措》"


def provenance(entry: dict[str, Any]) -> str:
    """《…重点任务》第63项 / 《…十项举措》第3项 — where an entry comes from, as a person reads it."""
    if entry.get("source_task"):
        return f"{PLAN_TASKS}第{entry['source_task']}项"
    if entry.get("source_measure"):
        return f"{PLAN_MEASURES}第{entry['source_measure']}项"
    return ""


def _item_lines(i: int, item: dict[str, Any]) -> list[str]:
    value = item.get("estimated_value_wan")
    worth = f"，预计每年约{value:g}万元（{item.get('value_assumption')}）" if value else ""
    lines = [f"   {i}. {item['title']}{worth}"]  # the group heading says how sure it is
    if item.get("why_you"):
        lines.append(f"      为什么是您：{item['why_you']}")
    lines.append(f"      依据：{'；'.join(item['reasons'])}")
    if item.get("exclusive_with"):
        note = "计入合计" if item.get("counted_in_total") else "不重复计入合计"
        lines.append(f"      注意：与{'、'.join(item['exclusive_with'])}不得重复享受（{note}）")
    lines.append(f"      牵头部门：{'、'.join(item.get('lead_departments') or [])}；办理：{item['how_to_apply']}")
    lines.append(f"      出处：{provenance(item)}")
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
    package = result["package"]
    summary = result.get("summary") or {}
    total = summary.get("estimated_value_wan") or 0
    worth_total = f"，可估算价值合计约 {total:g} 万元/年" if total else ""
    groups = "、".join(f"{g['label']}{len(g['policies'])}项" for g in summary.get("by_category", []))
    # what the firm gets by meeting the rules, apart from what it may apply for and be selected
    sure = [e for e in package if e.get("strength") != "selective"]
    chosen = [e for e in package if e.get("strength") == "selective"]
    lines.append(f"  政策套餐 {len(package)} 项{worth_total}" + (f"（{groups}）" if groups else "") + "：")
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
            lines.append(f"   · {item['title']}：{'；'.join(item['unmet'])}")
    on_request = result.get("available_on_request") or []
    if on_request:
        lines.append(f"  需要时可办理 {len(on_request)} 项（说明具体诉求即 --query 即可列入套餐）：")
        for item in on_request:
            reason = f"：{item['reason']}" if item.get("reason") else ""
            lines.append(f"   · {item['title']}{reason}")
    return "\n".join(lines)
