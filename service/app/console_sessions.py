"""Console sign-in as use cases: a staff token opens a server-side session, every request resumes it (its
idle time restarts, or it ends), signing out deletes it. Each commits its own transaction; the cookie and
the CSRF values are the adapter's (``service.http.console.session``)."""

from __future__ import annotations

import datetime as dt

from sqlmodel import Session

from service.app.errors import AppError, ErrorCode
from service.settings import Settings
from service.store import console_sessions as sessions_store
from service.store.principals import Principal
from service.store.tokens import principal_for


def session_limits(settings: Settings) -> tuple[dt.timedelta, dt.timedelta]:
    """(idle, lifetime) of a console session."""
    return dt.timedelta(minutes=settings.console_idle_minutes), dt.timedelta(hours=settings.console_session_hours)


def resume(session: Session, settings: Settings, session_id: str) -> tuple[Principal | None, str | None]:
    """The staff member of a console session and None, or None and why the session is over (unknown, idle,
    lifetime, token). Its last request time is updated, or the ended session deleted (committed)."""
    idle, lifetime = session_limits(settings)
    principal, reason = sessions_store.console_session_for(session, session_id=session_id, idle=idle,
                                                           lifetime=lifetime)
    session.commit()
    return principal, reason


def sign_in(session: Session, settings: Settings, token: str, *, previous: str | None) -> str:
    """A new console session for a staff token (replacing the browser's ``previous`` one); its id.
    ``invalid_value`` without a token, ``unauthorized`` for an unknown, revoked or expired token,
    ``forbidden`` for a token that is not a staff token."""
    if not token:
        raise AppError(ErrorCode.INVALID_VALUE, "请输入工作人员令牌", "token")
    principal = principal_for(session, token=token)
    if principal is None:
        raise AppError(ErrorCode.UNAUTHORIZED, "令牌无效、已过期或已被吊销", "token")
    if not principal.is_staff or principal.token_id is None:
        raise AppError(ErrorCode.FORBIDDEN,
                       "该令牌不是工作人员令牌：工作台仅限热线坐席和管理员使用（企业请使用政策计算器）", "token")
    if previous:  # signing in again replaces the browser's old session
        sessions_store.end_console_session(session, session_id=previous)
    idle, lifetime = session_limits(settings)
    sessions_store.purge_console_sessions(session, idle=idle, lifetime=lifetime)
    session_id = sessions_store.open_console_session(session, token_id=principal.token_id)
    session.commit()
    return session_id


def sign_out(session: Session, session_id: str) -> None:
    """End a console session: deleted, so a copy of its cookie opens nothing any more (committed)."""
    sessions_store.end_console_session(session, session_id=session_id)
    session.commit()
