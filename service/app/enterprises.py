"""Use cases around stored enterprises: who may see which firm, the audit trail of staff views, saving a
profile, finding firms, feedback. Each use case that writes commits its own transaction.

``Access`` is who asks and through which route (the audit row names it); adapters build it from their
request. No HTTP here: errors are :class:`~service.app.errors.AppError`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from profiles.features import derive
from profiles.merge import provenance_on
from profiles.model import ProfileError, parse_profile
from profiles.sources import HOTLINE, SELF, source_label
from profiles.uscc import UsccError, normalize_uscc
from service.app.errors import AppError, ErrorCode, not_found
from service.app.packages import package_json, parse_profile_json
from service.app.statements import Statement, record
from service.bootstrap import ServiceState
from service.db.tables import Enterprise, PolicyVersion
from service.store import audit as audit_store
from service.store.catalog import policy_versions
from service.store.enterprises import get_enterprise, search_enterprises
from service.store.principals import Principal


@dataclass(frozen=True)
class Access:
    """Who asks (``principal``), and the route and method an audit row records for them."""

    principal: Principal
    route: str
    method: str


def uscc_of(raw: str) -> str:
    """A unified social credit code from a path or form, normalised; ``invalid_uscc`` otherwise."""
    try:
        return normalize_uscc(raw)
    except UsccError as exc:
        raise AppError(ErrorCode.INVALID_USCC, str(exc), "uscc") from None


def audit(session: Session, access: Access, usccs: Iterable[str | None], route: str | None = None) -> None:
    """One audit row per firm a staff member or admin was shown (who, when, which firm, which route).
    Not committed here: it belongs to the caller's transaction."""
    if not access.principal.is_staff:
        return
    label = (route or access.route)[:200]
    for uscc in dict.fromkeys(usccs) or [None]:
        audit_store.audit(session, principal=access.principal, uscc=uscc, route=label, method=access.method)


def enterprise_for(session: Session, access: Access, raw_uscc: str) -> Enterprise:
    """The stored enterprise if this principal may see it; ``not_found`` otherwise (never reveals others).
    A staff view is audited (committed)."""
    uscc = uscc_of(raw_uscc)
    principal = access.principal
    if principal.role == "enterprise" and principal.uscc != uscc:
        raise not_found("未找到该企业")
    row = get_enterprise(session, uscc=uscc)
    if row is None:
        raise not_found("未找到该企业")
    if principal.is_staff:
        audit(session, access, [uscc])
        session.commit()
    return row


def provenance_view(row: Enterprise, today: dt.date) -> dict[str, dict[str, Any]]:
    """Per field of the stored profile: which source gave the value, observed when, and whether it is stale
    today (older than its field's maximum age: it counts as unknown). A profile stored before any feed has no
    provenance of its own: it is the firm's statement dated the day it was saved, and nothing in it ages."""
    if row.provenance is None:
        day = row.updated_at.date().isoformat()
        return {name: {"source": SELF, "source_label": source_label(SELF), "as_of": day, "stale": False}
                for name in row.profile if name != "uscc"}
    return provenance_on(row.provenance, today)


def enterprise_view(row: Enterprise, changed: bool | None = None) -> dict[str, Any]:
    """A stored enterprise as the API shows it: the stated (merged) profile, what is derived from it today,
    where each value comes from (``provenance``) and what the sources disagree about (``conflicts``)."""
    today = dt.date.today()
    portrait = derive(parse_profile(row.profile), today, provenance=row.provenance)
    derived = {k: v for k, v in portrait.to_json().items() if k not in row.profile}
    return {"uscc": row.uscc, "name": row.name, "profile": row.profile, "derived": derived,
            "provenance": provenance_view(row, today), "conflicts": list(row.conflicts or []),
            "updated_at": row.updated_at.isoformat(), "changed": changed}


def statement_source(principal: Principal) -> str:
    """Who states a profile through the API or the console: the firm itself (its token) or, for staff and
    admins, a hotline operator recording what the firm said on a call."""
    return SELF if principal.role == "enterprise" else HOTLINE


def save_enterprise(session: Session, access: Access, raw_uscc: str, data: Any) -> dict[str, Any]:
    """Validate ``data`` as the profile of ``raw_uscc`` and record it as the whole statement of its source
    (:func:`statement_source`), merged with what the departments say (created or updated, audited, committed)."""
    code = uscc_of(raw_uscc)
    principal = access.principal
    if principal.role == "enterprise" and principal.uscc != code:
        raise not_found("未找到该企业")
    today = dt.date.today()
    profile = parse_profile_json(data, as_of=today)
    if profile.uscc != code:
        raise AppError(ErrorCode.USCC_MISMATCH, f"路径中的统一社会信用代码{code}与画像中的{profile.uscc}不一致", "uscc")
    values = {k: v for k, v in profile.stated().items() if k != "uscc"}
    [done] = record(session, [Statement(code, statement_source(principal), today, values, whole=True)])
    if isinstance(done, ProfileError):
        raise AppError(ErrorCode.INVALID_PROFILE, str(done), done.field)
    assert done.row is not None  # a whole statement names the firm
    audit(session, access, [code])
    session.commit()
    session.refresh(done.row)
    return enterprise_view(done.row, done.outcome != "unchanged")


def enterprise_package(state: ServiceState, session: Session, access: Access, raw_uscc: str, *,
                       query: str | None, top: int | None, as_of: dt.date) -> bytes:
    """The package of a stored enterprise this principal may see, as JSON (cached by content: the hash covers
    the dates that make a value stale)."""
    row = enterprise_for(session, access, raw_uscc)
    return package_json(state, session, row.content_hash, lambda: parse_profile(row.profile), query=query,
                        top=top, as_of=as_of, provenance=row.provenance)


def find_enterprises(session: Session, access: Access, *, q: str, limit: int) -> list[dict[str, Any]]:
    """Firms by a name fragment or code; every firm shown is audited (committed)."""
    rows = search_enterprises(session, q=q, limit=limit)
    audit(session, access, [r.uscc for r in rows], route=f"{access.route}?q={q.strip()[:50]}")
    session.commit()
    return [describe_enterprise(r) for r in rows]


def visible_versions(session: Session, principal: Principal, policy_id: str) -> list[PolicyVersion]:
    """The versions of a policy this caller may know of: all for staff; for anyone else the drafts are
    absent (a policy that only has drafts does not exist for them — every route answers 404 alike)."""
    rows = policy_versions(session, policy_id=policy_id)
    return rows if principal.is_staff else [r for r in rows if r.status != "draft"]


def add_feedback(session: Session, access: Access, *, uscc: str, policy_id: str, kind: str,
                 note: str | None) -> dict[str, Any]:
    """A firm's (or staff member's) feedback on a policy it may see (committed)."""
    enterprise_for(session, access, uscc)
    if not visible_versions(session, access.principal, policy_id):  # an unpublished draft is absent too
        raise not_found(f"未找到政策“{policy_id}”", "policy_id")
    row = audit_store.add_feedback(session, principal=access.principal, uscc=uscc_of(uscc), policy_id=policy_id,
                             kind=kind, note=note)
    session.commit()
    return {"id": row.id, "kind": row.kind}


def describe_enterprise(row: Any) -> dict[str, Any]:
    """A stored firm as a search hit: code, name, region."""
    return {"uscc": row.uscc, "name": row.name, "region": row.region}
