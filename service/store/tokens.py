"""The ``api_token`` table: bearer tokens, stored only as their hash (written only here)."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence

from sqlmodel import Session, col, select

from service.db.tables import ApiToken, utcnow
from service.store.console_sessions import end_token_sessions
from service.store.principals import ROLES, Principal, principal_of
from service.store.values import hash_token


def create_token(session: Session, *, role: str, label: str, uscc: str | None = None,
                 expires_at: dt.datetime | None = None) -> tuple[str, ApiToken]:
    """A new bearer token; only its hash is stored, the secret is returned once."""
    if role not in ROLES:
        raise ValueError(f"角色应为 {'、'.join(ROLES)} 之一，收到“{role}”")
    if (role == "enterprise") != (uscc is not None):
        raise ValueError("企业令牌必须且只能绑定一个统一社会信用代码；工作人员和管理员令牌不绑定企业")
    secret = f"pf_{role[:3]}_{secrets.token_urlsafe(24)}"
    row = ApiToken(token_hash=hash_token(secret), role=role, uscc=uscc, label=label, expires_at=expires_at)
    session.add(row)
    return secret, row


def token_for(session: Session, *, token_hash: str) -> ApiToken | None:
    return session.exec(select(ApiToken).where(ApiToken.token_hash == token_hash)).first()


def principal_for(session: Session, *, token: str, now: dt.datetime | None = None) -> Principal | None:
    """Who a bearer token is (None: unknown, revoked or expired) — the one token check."""
    return principal_of(token_for(session, token_hash=hash_token(token)), now=now)


def revoke_token(session: Session, *, token_id: int) -> bool:
    """Revoke a token; every console session opened with it ends too."""
    row = session.get(ApiToken, token_id)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    session.add(row)
    end_token_sessions(session, token_id=token_id)
    return True


def list_tokens(session: Session) -> Sequence[ApiToken]:
    return session.exec(select(ApiToken).order_by(col(ApiToken.id))).all()


def has_token_labelled(session: Session, *, prefix: str) -> bool:
    """Whether any token's label starts with ``prefix`` (e.g. the demo tokens, created once)."""
    return session.exec(select(ApiToken).where(col(ApiToken.label).startswith(prefix))).first() is not None
