"""The console's sign-in session and CSRF protection.

Signing in with a staff token opens a server-side session (table ``console_session``, so every worker
sees it); the HTTP-only, SameSite=Strict cookie scoped to ``/console`` holds only the session's random id
(stored hashed), never the token, and that id is no credential for ``/v1``. Every request looks the
session up: it ends on sign-out (deleted), after ``console_idle_minutes`` without a request,
``console_session_hours`` after sign-in, and when its token is revoked (revoking a token deletes its
sessions) or expires. CSRF: every console form carries ``HMAC(session id, purpose)`` — bound to the
session, computable only by a holder of the cookie, unreadable by a cross-site page — and a request whose
``Origin`` is another host is refused. The sign-in form uses a double-submit cookie instead (there is no
session yet).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated
from urllib.parse import parse_qsl, urlsplit

from fastapi import Depends, Request
from fastapi.responses import Response

from service.app import console_sessions
from service.http.console.forms import label
from service.http.deps import SessionDep, StateDep
from service.settings import Settings
from service.store.principals import Principal
from service.store.values import unstorable

SESSION_COOKIE = "pf_console"
LOGIN_CSRF_COOKIE = "pf_console_login"
CSRF_PURPOSE = b"policyfit-console-csrf-v1"
MAX_FORM_FIELDS = 300


class ConsoleError(Exception):
    """An error shown to a person as a page: status and a Chinese message."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


class NotSignedIn(Exception):
    """No console session (``reason`` None: no cookie), or the session is over: ``reason`` is one of
    ``console_session_for``'s (unknown, idle, lifetime, token)."""

    def __init__(self, reason: str | None) -> None:
        super().__init__("not signed in")
        self.reason = reason


#: Why the sign-in page is shown again, by ``NotSignedIn.reason`` (``{idle}``/``{hours}``: the settings).
ENDED_MESSAGES = {
    "token": "登录已失效：令牌已过期或已被吊销，请重新登录",
    "idle": "登录已失效：超过{idle}分钟未操作，请重新登录",
    "lifetime": "登录已失效：登录已满{hours}小时，请重新登录",
    "unknown": "登录已失效（已退出登录、会话已过期，或令牌已被吊销），请重新登录",
}


def csrf_for(session_id: str) -> str:
    """The CSRF value of a console session: bound to it, and useless with any other session."""
    return hmac.new(session_id.encode(), CSRF_PURPOSE, hashlib.sha256).hexdigest()


def ended_message(reason: str, settings: Settings) -> str:
    return ENDED_MESSAGES.get(reason, ENDED_MESSAGES["unknown"]).format(
        idle=settings.console_idle_minutes, hours=settings.console_session_hours)


def console_principal(request: Request, state: StateDep, session: SessionDep) -> Principal:
    """The staff member behind the session cookie: the session is read from the database on every request
    (so sign-out, expiry and revocation hold in every worker at once), with its token."""
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id:
        raise NotSignedIn(None)
    principal, reason = console_sessions.resume(session, state.settings, session_id)
    if principal is None:
        raise NotSignedIn(reason)
    request.state.console_csrf = csrf_for(session_id)
    return principal


ConsoleStaff = Annotated[Principal, Depends(console_principal)]


def same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None:  # older browsers and non-browser clients send none; the CSRF token still decides
        return True
    return urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower()


async def read_form(request: Request) -> dict[str, list[str]]:
    """An ``application/x-www-form-urlencoded`` body as {name: [values]} (the only kind our forms send),
    with text no column can hold refused by name."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        raise ConsoleError(415, "表单格式不正确：应为 application/x-www-form-urlencoded")
    body = await request.body()
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS,
                          errors="strict")
    except ValueError:  # includes UnicodeDecodeError and too many fields
        raise ConsoleError(400, "表单内容无法解析（编码错误或字段过多）") from None
    form: dict[str, list[str]] = {}
    for key, value in pairs:
        form.setdefault(key, []).append(value)
    problem = unstorable(form)
    if problem:
        path, reason = problem
        name = path.split("[", 1)[0]
        raise ConsoleError(422, f"{label(name)}：{reason}", name)
    return form


FormDep = Annotated[dict[str, list[str]], Depends(read_form)]


def checked_form(request: Request, principal: ConsoleStaff, form: FormDep) -> dict[str, list[str]]:
    """The form of a signed-in POST, after the CSRF checks."""
    sent = (form.get("csrf") or [""])[0]
    if not same_origin(request) or not hmac.compare_digest(sent, request.state.console_csrf):
        raise ConsoleError(403, "表单校验失败（页面已过期或来自其他网站），请刷新页面后重试")
    return form


CheckedForm = Annotated[dict[str, list[str]], Depends(checked_form)]


def set_session(response: Response, request: Request, session_id: str, settings: Settings) -> None:
    response.set_cookie(SESSION_COOKIE, session_id, max_age=settings.console_session_hours * 3600,
                        path="/console", httponly=True, samesite="strict", secure=request.url.scheme == "https")


def safe_next(target: str | None) -> str:
    """Only a console path of this site (no scheme, no host, no //) is a place to return to."""
    if not target or "\\" in target or not (target == "/console" or target.startswith(("/console/", "/console?"))):
        return "/console"
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else "/console"


