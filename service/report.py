"""The readable Chinese report of a match (what ``policyfit match`` prints without --json)."""

from __future__ import annotations

from typing import Any

from profiles.fields import SIZES


def render_match(result: dict[str, Any]) -> str:
    ent = result["enterprise"]
    size = SIZES.get(ent.get("size") or "", "未知")
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
    lines.append(f"  可享受政策 {len(package)} 项{worth_total}" + (f"（{groups}）" if groups else "") + "：")
    for i, item in enumerate(package, 1):
        src = f"任务{item['source_task']}" if item["source_task"] else f"举措{item['source_measure']}"
        value = item.get("estimated_value_wan")
        worth = f"，预计每年约{value:g}万元（{item.get('value_assumption')}）" if value else ""
        lines.append(f"   {i}. {item['title']} [{src}·{item.get('category_label', '')}]{worth}")
        if item.get("why_you"):
            lines.append(f"      为什么是您：{item['why_you']}")
        lines.append(f"      依据：{'；'.join(item['reasons'])}")
        if item.get("exclusive_with"):
            note = "计入合计" if item.get("counted_in_total") else "不重复计入合计"
            lines.append(f"      注意：与{'、'.join(item['exclusive_with'])}不得重复享受（{note}）")
        lines.append(f"      牵头部门：{'、'.join(item.get('lead_departments') or [])}；办理：{item['how_to_apply']}")
    if result["possibly_eligible"]:
        lines.append(f"  可能符合、需补充信息 {len(result['possibly_eligible'])} 项：")
        for item in result["possibly_eligible"]:
            lines.append(f"   · {item['title']}：{' '.join(item['questions'])}")
    if result["near_misses"]:
        lines.append(f"  差一个条件 {len(result['near_misses'])} 项：")
        for item in result["near_misses"]:
            lines.append(f"   · {item['title']}：{'；'.join(item['unmet'])}")
    on_request = result.get("available_on_request") or []
    if on_request:
        lines.append(f"  另有 {len(on_request)} 项依申请办理的事项（注销、迁移、投标、纠纷等情形下适用），"
                     "说明具体诉求（--query）即可列入套餐")
    return "\n".join(lines)
