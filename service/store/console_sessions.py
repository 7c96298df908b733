"""The ``console_session`` table: signed-in sessions of the hotline console (written only here).

A session id is the cookie value; only its hash is stored, and it is no bearer token anywhere."""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import delete, or_
from sqlmodel import Session, col, select

from service.db.tables import ApiToken, ConsoleSession, utcnow
from service.store.principals import Principal, principal_of
from service.store.values import as_utc, hash_token


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
        col(ConsoleSession.session_hash) == hash_token(session_id))).first()
    if row is None:
        return None, "unknown"
    principal = principal_of(session.get(ApiToken, row.token_id), now=now)  # the one token check
    reason = ""
    if as_utc(row.created_at) + lifetime <= now:
        reason = "lifetime"
    elif as_utc(row.last_seen_at) + idle <= now:
        reason = "idle"
    elif principal is None or not principal.is_staff:
        reason = "token"
    if reason or principal is None:
        session.delete(row)
        return None, reason
    if now - as_utc(row.last_seen_at) >= dt.timedelta(minutes=1):
        row.last_seen_at = now
        session.add(row)
    return principal, ""


def end_console_session(session: Session, *, session_id: str) -> bool:
    """Sign out: the session is deleted, so its cookie opens nothing any more (in any worker)."""
    result = session.execute(delete(ConsoleSession).where(col(ConsoleSession.session_hash) == hash_token(session_id)))
    return bool(getattr(result, "rowcount", 0))


def end_token_sessions(session: Session, *, token_id: int) -> int:
    """End every console session opened with a token; returns how many there were."""
    result = session.execute(delete(ConsoleSession).where(col(ConsoleSession.token_id) == token_id))
    return int(getattr(result, "rowcount", 0))


def purge_console_sessions(session: Session, *, idle: dt.timedelta, lifetime: dt.timedelta,
                           now: dt.datetime | None = None) -> int:
    """Delete the sessions that are over by time (the table does not grow with every sign-in)."""
    now = now or utcnow()
    result = session.execute(delete(ConsoleSession).where(or_(col(ConsoleSession.last_seen_at) <= now - idle,
                                                              col(ConsoleSession.created_at) <= now - lifetime)))
    return int(getattr(result, "rowcount", 0))
