"""Search over the whole plan (policies, commitments, plan work) with an honest "nothing fits".

:func:`search` is the one use case behind ``policyfit search``, ``GET /v1/policies/search``, the
console's policy search and the calculator: it returns ``{"results", "no_match", "fallback"}``.

- ``results``: entries in force whose calibrated score (see :mod:`matching.relevance`) reaches the
  floor, best first, at most ``top``; each has ``kind``, ``policy_id``, ``source_task``,
  ``source_measure``, ``source_document``, ``title``, ``score`` (the calibrated probability, comparable across queries) and
  ``lead_departments``.
- ``no_match``: true when no entry reaches the floor (``results`` is then empty).
- ``fallback``: always present. It names the channels the plan gives every firm (the “一企来”企业服务热线
  with the 综合性企业服务平台 of task 129, and the 12345政务热线 of task 151) and a Chinese sentence an
  operator can read out. On ``no_match`` it also names the department whose remit is closest — the lead
  department of the best entry below the floor — but only when the runner-up comes from a different task
  (or measure) of the plan and still has the same lead department, and the best score is at least
  ``department_ratio`` × floor; otherwise ``department`` is null (no guess passed on as advice). Two
  entries of one task agreeing are one piece of evidence, not two (稳岗返还怎么领 reached two union-fee
  entries of the same task, which named 市总工会 wrongly). With results, ``department`` is null: each result names its own.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from policies.schema import Policy

if TYPE_CHECKING:
    from matching.package import Matcher

#: The channels, in the plan's words: task 129 (发挥“一企来”企业服务热线作用 … 综合性企业服务平台) and
#: task 151 (“12345”政务热线). ``entry`` is the catalog entry that describes the first channel.
CHANNELS = ({"name": "“一企来”企业服务热线", "also": "综合性企业服务平台", "entry": "yiqilai-enterprise-hotline"},
            {"name": "12345政务热线", "also": None, "entry": None})
NO_MATCH_TEXT = "未找到对应政策"


def result(policy: Policy, score: float) -> dict[str, Any]:
    return {"kind": policy.kind, "policy_id": policy.id, "source_task": policy.source.task_no,
            "source_measure": policy.source.measure_no, "source_document": policy.source_document,
            "title": policy.title, "score": round(score, 4),
            "lead_departments": list(policy.lead_departments)}


def _source(policy: Policy) -> tuple[int | None, int | None]:
    return policy.source.task_no, policy.source.measure_no


def fallback(matcher: Matcher, *, no_match: bool, closest: list[tuple[Policy, float]]) -> dict[str, Any]:
    """Where the caller can turn when the results do not answer them (see the module docstring).

    ``closest``: the best entries below the floor, best first."""
    channels = [{"name": c["name"], "also": c["also"],
                 "policy_id": c["entry"] if c["entry"] and c["entry"] in matcher.catalog else None}
                for c in CHANNELS]
    names = "或".join(f"{c['name']}（{c['also']}）" if c["also"] else str(c["name"]) for c in channels)
    department = None
    cal = matcher.retriever.calibration
    if no_match and cal is not None and len(closest) >= 2:
        (policy, score), (runner_up, _) = closest[:2]
        # named only when two closest entries from different tasks agree on the department and the best
        # is not far off (one lead department alone is too often wrong to be passed on as advice)
        if (policy.lead_departments and runner_up.lead_departments
                and _source(policy) != _source(runner_up)
                and policy.lead_departments[0] == runner_up.lead_departments[0]
                and score >= matcher.retriever.calibration_config.department_ratio * cal.floor):
            department = {"name": policy.lead_departments[0], "basis_policy_id": policy.id,
                          "basis_title": policy.title, "score": round(score, 4)}
    if no_match:
        message = f"{NO_MATCH_TEXT}。可拨打{names}反映诉求，由平台受理并交办相关部门"
        if department:
            message += f"；与来电内容最接近的职责部门可能是{department['name']}"
        message += "。"
    else:
        message = f"如以上条目不能解决问题，可拨打{names}反映诉求。"
    return {"channels": channels, "department": department, "message": message}


def search(matcher: Matcher, text: str, *, top: int = 10, as_of: dt.date | None = None) -> dict[str, Any]:
    """Entries in force on ``as_of`` (default today) that answer ``text``, or an honest no_match."""
    when = as_of or dt.date.today()
    active = {p.id for p in matcher.catalog.all_entries() if p.is_active(when)}
    ranked = matcher.retriever.rank(text, mode="hybrid", allowed=active)
    cal = matcher.retriever.calibration
    floor = cal.floor if cal is not None else 0.0
    above = [(pid, s) for pid, s in ranked if s >= floor][:top]
    no_match = not above
    closest = [(matcher.catalog[pid], s) for pid, s in ranked[:2]]
    return {
        "results": [result(matcher.catalog[pid], s) for pid, s in above],
        "no_match": no_match,
        "fallback": fallback(matcher, no_match=no_match, closest=closest),
    }
