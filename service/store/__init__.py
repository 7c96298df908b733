"""All reads and writes of the service's tables, keyword-only, in one place.

Domain validation happens before anything is written: a write either applies whole or not at all.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, or_, update
from sqlmodel import Session, col, select

from policies.schema import Policy
from profiles.model import EnterpriseProfile
from service.db.tables import (
    ApiToken,
    AuditLog,
    CatalogState,
    ConsoleSession,
    Enterprise,
    Feedback,
    PolicyVersion,
    utcnow,
)

ROLES = ("enterprise", "staff", "admin")


def canonical_hash(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, ensure_ascii=False, sort_keys=True, default=str).encode()).hexdigest()


#: Text no column can hold: PostgreSQL refuses NUL in text, and lone surrogates are not UTF-8.
_UNSTORABLE_TEXT = re.compile("[\x00\ud800-\udfff]")
#: JSON integers beyond ±2^53 lose precision in most clients and overflow float conversions.
MAX_SAFE_INTEGER = 2**53
MAX_NESTING = 32


def unstorable(data: Any, *, path: str = "", depth: int = 0) -> tuple[str, str] | None:
    """The first value in a JSON-like document that cannot be stored faithfully, as (dotted path,
    reason in Chinese), or None. Checked before a write so both databases refuse the same input
    with the same clear message (PostgreSQL would otherwise fail inside the transaction)."""
    if depth > MAX_NESTING:
        return path, f"嵌套层级过深（最多{MAX_NESTING}层）"
    if isinstance(data, str):
        found = _UNSTORABLE_TEXT.search(data)
        if found:
            what = "空字符（\\u0000）" if found.group() == "\x00" else "无效的Unicode代理字符"
            return path, f"不能包含{what}"
    elif isinstance(data, bool) or data is None:
        return None
    elif isinstance(data, int):
        if abs(data) > MAX_SAFE_INTEGER:
            return path, f"数值超出范围（绝对值不能超过{MAX_SAFE_INTEGER}）"
    elif isinstance(data, float):
        if not math.isfinite(data):
            return path, "应为有限的数字"
    elif isinstance(data, dict):
        for key, value in data.items():
            name = str(key)
            here = f"{path}.{name}" if path else name
            if _UNSTORABLE_TEXT.search(name):
                return here, "字段名不能包含空字符或无效的Unicode字符"
            problem = unstorable(value, path=here, depth=depth + 1)
            if problem:
                return problem
    elif isinstance(data, list | tuple):
        for i, value in enumerate(data):
            problem = unstorable(value, path=f"{path}[{i}]", depth=depth + 1)
            if problem:
                return problem
    return None


# ---- enterprises -----------------------------------------------------------------------------
def upsert_enterprise(session: Session, *, profile: EnterpriseProfile) -> tuple[Enterprise, bool]:
    """Store a validated profile; returns (row, changed). Unchanged content writes nothing."""
    data = profile.stated()
    digest = canonical_hash(data)
    row = session.get(Enterprise, profile.uscc)
    if row is not None and row.content_hash == digest:
        return row, False
    now = utcnow()
    if row is None:
        row = Enterprise(uscc=profile.uscc, name=profile.name, region=profile.region, profile=data,
                         content_hash=digest, created_at=now, updated_at=now)
        session.add(row)
    else:
        row.name, row.region, row.profile, row.content_hash, row.updated_at = (
            profile.name, profile.region, data, digest, now)
        session.add(row)
    return row, True


def get_enterprise(session: Session, *, uscc: str) -> Enterprise | None:
    return session.get(Enterprise, uscc)


def search_enterprises(session: Session, *, q: str, limit: int = 20) -> list[Enterprise]:
    """By USCC (exact, normalised) or a fragment of the name."""
    text = q.strip()
    # autoescape: % and _ typed by a caller are literal characters, not LIKE wildcards
    stmt = select(Enterprise).where(or_(Enterprise.uscc == text.upper(),
                                        Enterprise.name.contains(text, autoescape=True)))  # type: ignore[attr-defined]
    return list(session.exec(stmt.order_by(Enterprise.name, Enterprise.uscc).limit(limit)))


def all_enterprises(session: Session) -> list[Enterprise]:
    return list(session.exec(select(Enterprise).order_by(Enterprise.uscc)))


def enterprise_revision(session: Session) -> tuple[int, str]:
    """(count, latest update) — changes whenever any stored enterprise changes."""
    count, latest = session.exec(select(func.count(), func.max(Enterprise.updated_at))).one()  # type: ignore[call-overload]
    return int(count or 0), str(latest)


# ---- policy versions ---------------------------------------------------------------------------
def _bump_catalog(session: Session) -> None:
    state = session.get(CatalogState, 1)
    if state is None:
        session.add(CatalogState(id=1, revision=1))
    else:
        state.revision += 1
        state.updated_at = utcnow()
        session.add(state)


def catalog_revision(session: Session) -> int:
    state = session.get(CatalogState, 1)
    return state.revision if state else 0


def sync_catalog_files(session: Session, *, policies: Iterable[Policy]) -> int:
    """Load the YAML catalog into policy versions; returns how many rows changed.

    A file's (id, version) that is not stored yet becomes a new version with the file's status; a
    stored catalog-origin version whose content changed is updated in place (the files are the
    reviewed source); versions created through the API are never touched.
    """
    changed = 0
    for policy in policies:
        data = policy.model_dump(mode="json")
        digest = canonical_hash(data)
        row = session.exec(select(PolicyVersion).where(
            PolicyVersion.policy_id == policy.id, PolicyVersion.version == policy.version)).first()
        if row is None:
            if policy.status == "published":
                _retire_published(session, policy.id)
            session.add(PolicyVersion(policy_id=policy.id, version=policy.version, status=policy.status,
                                      data=data, content_hash=digest, origin="catalog", created_by="catalog"))
            changed += 1
        elif row.origin == "catalog" and row.content_hash != digest:
            row.data, row.content_hash, row.status, row.updated_at = data, digest, policy.status, utcnow()
            session.add(row)
            changed += 1
    if changed:
        _bump_catalog(session)
    return changed


def _retire_published(session: Session, policy_id: str) -> None:
    session.execute(update(PolicyVersion).where(
        PolicyVersion.policy_id == policy_id, PolicyVersion.status == "published").values(
        status="retired", updated_at=utcnow()))


def policy_versions(session: Session, *, policy_id: str) -> list[PolicyVersion]:
    return list(session.exec(select(PolicyVersion).where(PolicyVersion.policy_id == policy_id)
                             .order_by(PolicyVersion.version)))


def published_versions(session: Session) -> list[PolicyVersion]:
    return list(session.exec(select(PolicyVersion).where(PolicyVersion.status == "published")
                             .order_by(PolicyVersion.policy_id)))


def latest_versions(session: Session) -> list[PolicyVersion]:
    """The newest version of every policy (whatever its status)."""
    rows = session.exec(select(PolicyVersion).order_by(PolicyVersion.policy_id, PolicyVersion.version)).all()
    latest: dict[str, PolicyVersion] = {}
    for row in rows:
        latest[row.policy_id] = row
    return list(latest.values())


def add_draft(session: Session, *, policy: Policy, author: str) -> PolicyVersion:
    """A new draft version (number = newest + 1) of a new or existing policy."""
    current = session.exec(select(func.max(PolicyVersion.version)).where(
        PolicyVersion.policy_id == policy.id)).one()
    version = int(current or 0) + 1
    data = policy.model_copy(update={"version": version, "status": "draft"}).model_dump(mode="json")
    row = PolicyVersion(policy_id=policy.id, version=version, status="draft", data=data,
                        content_hash=canonical_hash(data), origin="api", created_by=author)
    session.add(row)
    return row


def set_status(session: Session, *, row: PolicyVersion, status: str) -> PolicyVersion:
    """Publish (retiring the version in force) or retire a version; bumps the catalog revision."""
    if status == "published":
        _retire_published(session, row.policy_id)
    row.status = status
    row.data = {**row.data, "status": status}
    row.content_hash = canonical_hash(row.data)
    row.updated_at = utcnow()
    session.add(row)
    _bump_catalog(session)
    return row


# ---- tokens, audit, feedback -------------------------------------------------------------------
@dataclass(frozen=True)
class Principal:
    token_id: int | None
    role: str  # anonymous | enterprise | staff | admin
    label: str
    uscc: str | None = None

    @property
    def is_staff(self) -> bool:
        return self.role in ("staff", "admin")


ANONYMOUS = Principal(None, "anonymous", "anonymous")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


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


def as_utc(moment: dt.datetime) -> dt.datetime:
    """A stored timestamp as an aware UTC datetime (SQLite hands them back naive; they are UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def token_for(session: Session, *, token_hash: str) -> ApiToken | None:
    return session.exec(select(ApiToken).where(ApiToken.token_hash == token_hash)).first()


def principal_for(session: Session, *, token: str, now: dt.datetime | None = None) -> Principal | None:
    row = token_for(session, token_hash=hash_token(token))
    now = now or utcnow()
    if row is None or row.revoked_at is not None or (row.expires_at is not None and as_utc(row.expires_at) <= now):
        return None
    return Principal(row.id, row.role, row.label, row.uscc)


def revoke_token(session: Session, *, token_id: int) -> bool:
    """Revoke a token; every console session opened with it ends too."""
    row = session.get(ApiToken, token_id)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    session.add(row)
    end_token_sessions(session, token_id=token_id)
    return True


# ---- console sessions --------------------------------------------------------------------------
def open_console_session(session: Session, *, token_id: int) -> str:
    """A new console session of a staff token; returns its id (the cookie value), which is stored only
    as its hash and is no bearer token anywhere."""
    session_id = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(ConsoleSession(session_hash=hash_token(session_id), token_id=token_id, created_at=now,
                               last_seen_at=now))
    return session_id


def console_session_for(session: Session, *, session_id: str, idle: dt.timedelta, lifetime: dt.timedelta,
                        now: dt.datetime | None = None) -> tuple[Principal | None, str]:
    """Who a console session belongs to, or why it is over: (principal, "") or (None, reason), reason
    one of ``unknown`` (no such session: signed out, ended, or never opened), ``idle`` (no request for
    longer than ``idle``), ``lifetime`` (opened longer than ``lifetime`` ago), ``token`` (its token was
    revoked or expired, or is not a staff token). A session found over is deleted. A live one has its
    ``last_seen_at`` moved forward (at most once a minute, to spare the writes; not committed here)."""
    now = now or utcnow()
    row = session.exec(select(ConsoleSession).where(
        ConsoleSession.session_hash == hash_token(session_id))).first()
    if row is None:
        return None, "unknown"
    token = session.get(ApiToken, row.token_id)
    reason = ""
    if as_utc(row.created_at) + lifetime <= now:
        reason = "lifetime"
    elif as_utc(row.last_seen_at) + idle <= now:
        reason = "idle"
    elif (token is None or token.revoked_at is not None or token.role not in ("staff", "admin")
          or (token.expires_at is not None and as_utc(token.expires_at) <= now)):
        reason = "token"
    if reason:
        session.delete(row)
        return None, reason
    assert token is not None
    if now - as_utc(row.last_seen_at) >= dt.timedelta(minutes=1):
        row.last_seen_at = now
        session.add(row)
    return Principal(token.id, token.role, token.label, token.uscc), ""


def end_console_session(session: Session, *, session_id: str) -> bool:
    """Sign out: the session is deleted, so its cookie opens nothing any more (in any worker)."""
    result = session.execute(delete(ConsoleSession).where(ConsoleSession.session_hash == hash_token(session_id)))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def end_token_sessions(session: Session, *, token_id: int) -> int:
    """End every console session opened with a token; returns how many there were."""
    result = session.execute(delete(ConsoleSession).where(ConsoleSession.token_id == token_id))
    return int(result.rowcount)  # type: ignore[attr-defined]


def purge_console_sessions(session: Session, *, idle: dt.timedelta, lifetime: dt.timedelta,
                           now: dt.datetime | None = None) -> int:
    """Delete the sessions that are over by time (the table does not grow with every sign-in)."""
    now = now or utcnow()
    result = session.execute(delete(ConsoleSession).where(or_(ConsoleSession.last_seen_at <= now - idle,
                                                              ConsoleSession.created_at <= now - lifetime)))
    return int(result.rowcount)  # type: ignore[attr-defined]


def list_tokens(session: Session) -> Sequence[ApiToken]:
    return session.exec(select(ApiToken).order_by(ApiToken.id)).all()


def has_token_labelled(session: Session, *, prefix: str) -> bool:
    """Whether any token's label starts with ``prefix`` (e.g. the demo tokens, created once)."""
    return session.exec(select(ApiToken).where(col(ApiToken.label).startswith(prefix))).first() is not None


def audit(session: Session, *, principal: Principal, uscc: str | None, route: str, method: str) -> None:
    session.add(AuditLog(token_id=principal.token_id, role=principal.role, label=principal.label,
                         uscc=uscc, route=route, method=method))


def add_feedback(session: Session, *, principal: Principal, uscc: str, policy_id: str, kind: str,
                 note: str | None) -> Feedback:
    row = Feedback(uscc=uscc, policy_id=policy_id, kind=kind, role=principal.role, label=principal.label, note=note)
    session.add(row)
    return row
