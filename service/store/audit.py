"""The ``audit_log`` and ``feedback`` tables: who read which enterprise, and what staff said about a
recommendation (written only here)."""

from __future__ import annotations

from sqlmodel import Session

from service.db.tables import AuditLog, Feedback
from service.store.principals import Principal


def audit(session: Session, *, principal: Principal, uscc: str | None, route: str, method: str) -> None:
    session.add(AuditLog(token_id=principal.token_id, role=principal.role, label=principal.label,
                         uscc=uscc, route=route, method=method))


def add_feedback(session: Session, *, principal: Principal, uscc: str, policy_id: str, kind: str,
                 note: str | None) -> Feedback:
    row = Feedback(uscc=uscc, policy_id=policy_id, kind=kind, role=principal.role, label=principal.label, note=note)
    session.add(row)
    return row
