"""The catalog as callers read it (the published list, one entry with its versions, search over the whole
plan) and as admins change it: a policy validated with Chinese messages, saved as a new draft, published
or retired. Writes commit here; publishing tells this worker's state to rebuild its matcher.
"""

from __future__ import annotations

import ast
import json
import math
from typing import Any

from pydantic import ValidationError
from sqlmodel import Session

from matching.search import search as search_answer
from policies.formula import FormulaError, parse_formula
from policies.messages import pydantic_message
from policies.rules import RuleError, parse_rule
from policies.schema import BENEFIT_TYPES, CATEGORIES, Policy
from service.app.enterprises import visible_versions
from service.app.errors import AppError, ErrorCode, not_found
from service.bootstrap import ServiceState
from service.db.tables import PolicyVersion
from service.store import catalog as catalog_store
from service.store.principals import Principal

#: A value-estimate formula is a short expression; its numbers stay far inside float range.
MAX_FORMULA_CHARS = 500
MAX_FORMULA_CONSTANT = 1e12


# ---- reading --------------------------------------------------------------------------------------
def summary(row: PolicyVersion) -> dict[str, Any]:
    d = row.data
    return {"policy_id": row.policy_id, "version": row.version, "status": row.status, "title": d["title"],
            "category": d["category"], "source_task": d["source"].get("task_no"),
            "source_measure": d["source"].get("measure_no"), "delivery": d.get("delivery", "proactive"),
            "kind": d.get("kind", "policy"), "strength": d.get("strength")}


def list_policies(session: Session) -> list[dict[str, Any]]:
    """The catalog in force (published versions)."""
    return [summary(r) for r in catalog_store.published_versions(session)]


def policy_detail(session: Session, principal: Principal, policy_id: str) -> dict[str, Any]:
    """An entry in force and its version history (staff also see every version's content and drafts)."""
    visible = visible_versions(session, principal, policy_id)
    if not visible:
        raise not_found(f"未找到政策“{policy_id}”")
    current = next((r.data for r in visible if r.status == "published"), None)
    history = [{"version": r.version, "status": r.status, "origin": r.origin, "created_at": r.created_at.isoformat(),
                "updated_at": r.updated_at.isoformat(), **({"data": r.data} if principal.is_staff else {})}
               for r in visible]
    return {"policy_id": policy_id, "current": current, "versions": history}


def search_policies(state: ServiceState, session: Session, q: str, *, top: int) -> dict[str, Any]:
    """Entries of the whole plan for what a caller says (calibrated; ``no_match`` with the channels)."""
    if not q.strip():
        raise AppError(ErrorCode.INVALID_QUERY, "查询内容不能为空", "q")
    matcher = state.matcher(session)
    return {**search_answer(matcher, q, top=top), "catalog_version": matcher.catalog.version,
            "model_id": matcher.model_id}


def version_of(session: Session, policy_id: str, version: int | None, status: str | None = None) -> PolicyVersion:
    """The newest version of a policy with this number and/or status; ``not_found`` saying which."""
    rows = catalog_store.policy_versions(session, policy_id=policy_id)
    if version is not None:
        rows = [r for r in rows if r.version == version]
    if status is not None:
        rows = [r for r in rows if r.status == status]
    if not rows:
        what = f"版本{version}" if version is not None else {"draft": "草稿", "published": "现行版本"}.get(status or "", "")
        raise not_found(f"未找到政策“{policy_id}”的{what}")
    return rows[-1]


# ---- validating a policy sent by an admin ---------------------------------------------------------
def check_formula(formula: str) -> None:
    """A value-estimate formula that parses, is short, and whose numbers stay inside float range —
    otherwise a published policy would fail every match that evaluates it."""
    field = "benefit.estimate.formula"
    if len(formula) > MAX_FORMULA_CHARS:
        raise AppError(ErrorCode.INVALID_POLICY, f"{field}：估值公式过长（最多{MAX_FORMULA_CHARS}字符）", field)
    try:
        tree = parse_formula(formula).tree
    except FormulaError:
        return  # the model reports it with its reason
    except (RecursionError, MemoryError, SyntaxError):
        raise AppError(ErrorCode.INVALID_POLICY, f"{field}：估值公式嵌套过深", field) from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            try:
                number = float(node.value)
            except OverflowError:
                number = math.inf
            if not math.isfinite(number) or abs(number) > MAX_FORMULA_CONSTANT:
                raise AppError(ErrorCode.INVALID_POLICY,
                               f"{field}：公式中的常数超出范围（绝对值不能超过{MAX_FORMULA_CONSTANT:.0e}）", field)


def _policy_message(err: Any, loc: str) -> str:
    """A pydantic error of a policy body: the category and benefit type list their allowed codes with
    their Chinese names; everything else is the one rendering of validation errors."""
    last = loc.rsplit(".", 1)[-1]
    if err["type"] == "value_error" and last in ("category", "benefit_type"):
        table = CATEGORIES if last == "category" else BENEFIT_TYPES
        allowed = "、".join(f"{k}（{v}）" for k, v in table.items())
        return f"取值无效：{err.get('input')!r}，应为 {allowed}"
    return pydantic_message(err, json_body=True)


def validate_policy(body: dict[str, Any], policy_id: str | None) -> Policy:
    """A policy body from an admin (new: ``policy_id`` None), or ``invalid_*`` naming the field."""
    if policy_id is not None and body.get("id", policy_id) != policy_id:
        raise AppError(ErrorCode.ID_MISMATCH, f"路径中的政策ID“{policy_id}”与内容中的“{body.get('id')}”不一致", "id")
    # version and status are assigned by the service (a new draft numbered newest + 1); sent ones are
    # only checked for type, so a policy fetched from GET /v1/policies/{id} can be sent back edited
    data = {**body, **({"id": policy_id} if policy_id else {}), "version": body.get("version", 1),
            "status": body.get("status", "draft")}
    try:
        parse_rule(data.get("eligibility"))
    except RuleError as exc:
        raise AppError(ErrorCode.INVALID_RULE, f"规则错误（{exc.path or 'eligibility'}）：{exc}",
                       f"eligibility.{exc.path}".rstrip(".")) from None
    benefit = data.get("benefit")
    estimate = benefit.get("estimate") if isinstance(benefit, dict) else None
    if isinstance(estimate, dict) and isinstance(estimate.get("formula"), str):
        check_formula(estimate["formula"])
    try:
        # strict JSON validation: "5" is not a task number and true is not a version
        return Policy.model_validate_json(json.dumps(data, ensure_ascii=False), strict=True)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".") or "policy"
        raise AppError(ErrorCode.INVALID_POLICY, f"{loc}：{_policy_message(err, loc)}", loc) from None


# ---- changing the catalog -------------------------------------------------------------------------
def _version_out(row: PolicyVersion) -> dict[str, Any]:
    return {"policy_id": row.policy_id, "version": row.version, "status": row.status}


def create_policy(session: Session, principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
    """A new policy, saved as its first draft."""
    policy = validate_policy(body, None)
    if catalog_store.policy_versions(session, policy_id=policy.id):
        raise AppError(ErrorCode.EXISTS, f"政策“{policy.id}”已存在，请用 PUT /v1/policies/{policy.id} 新增版本", "id")
    row = catalog_store.add_draft(session, policy=policy, author=principal.label)
    session.commit()
    return _version_out(row)


def update_policy(session: Session, principal: Principal, policy_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """A changed policy, saved as a new draft version."""
    if not catalog_store.policy_versions(session, policy_id=policy_id):
        raise not_found(f"未找到政策“{policy_id}”")
    row = catalog_store.add_draft(session, policy=validate_policy(body, policy_id), author=principal.label)
    session.commit()
    return _version_out(row)


def publish(state: ServiceState, session: Session, policy_id: str, version: int) -> dict[str, Any]:
    """Put a version in force (the one in force so far is retired)."""
    row = version_of(session, policy_id, version)
    if row.status == "published":
        raise AppError(ErrorCode.ALREADY_PUBLISHED, f"版本{version}已是现行版本")
    catalog_store.set_status(session, row=row, status="published")
    session.commit()
    state.invalidate()  # this worker answers with the new catalog at once (others within freshness_seconds)
    return {"policy_id": policy_id, "version": row.version, "status": row.status}


def retire(state: ServiceState, session: Session, policy_id: str) -> dict[str, Any]:
    """Retire the version in force."""
    row = version_of(session, policy_id, None, "published")
    catalog_store.set_status(session, row=row, status="retired")
    session.commit()
    state.invalidate()
    return {"policy_id": policy_id, "version": row.version, "status": row.status}
