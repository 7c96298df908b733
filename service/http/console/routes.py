"""The console's pages (staff, signed in by session) and the public calculator: a thin adapter over the
same use cases as the JSON API (:mod:`service.app`), so validation, audit rows and writes are exactly
the API's. Everything works without JavaScript; ``static/console.js`` only adds comfort."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlmodel import Session

from matching.results import MatchResult
from profiles.model import EnterpriseProfile, ProfileError, parse_profile
from service.app import catalog_admin, console_sessions, enterprises, packages, reach
from service.app.errors import AppError
from service.bootstrap import ServiceState
from service.db.tables import Enterprise
from service.http.console import dashboard
from service.http.console.dashboard import funnel_chart, policy_funnel
from service.http.console.forms import (
    carry_over,
    form_values,
    previous_profile,
    previous_text,
    profile_from_form,
    raw_values,
    today,
    whatif_changes,
)
from service.http.console.pages import STATIC_DIR, render, words_answer
from service.http.console.portrait import conflict_rows, field_rows
from service.http.console.session import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    CheckedForm,
    ConsoleError,
    ConsoleStaff,
    FormDep,
    NotSignedIn,
    ended_message,
    safe_next,
    same_origin,
    set_session,
)
from service.http.deps import SessionDep, StateDep, access_of, check_rate
from service.http.errors import STATUS
from service.store.enterprises import get_enterprise
from service.store.principals import ANONYMOUS, Principal
from service.store.values import unstorable

MAX_QUERY_CHARS = 100
MAX_WORDS_CHARS = 500

router = APIRouter(include_in_schema=False)


@contextmanager
def as_page() -> Iterator[None]:
    """A use case's error becomes an error page with the API's status and message."""
    try:
        yield
    except AppError as exc:
        raise ConsoleError(STATUS[exc.code], exc.message, exc.field) from None


@router.get("/console/login")
def login_page(request: Request, state: StateDep, session: SessionDep, next: str = "", ended: str = "",
               out: str = "") -> Response:
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id:
        principal, _ = console_sessions.resume(session, state.settings, session_id)
        if principal is not None:
            return RedirectResponse(safe_next(next), status_code=303)
    notice = (ended_message(ended, state.settings) if ended else "已退出登录" if out else None)
    return _login_form(request, next=safe_next(next) if next else "", notice=notice)


def _login_form(request: Request, *, next: str = "", notice: str | None = None, error: str | None = None,
                status: int = 200) -> Response:
    nonce = secrets.token_urlsafe(24)
    settings = request.app.state.service.settings
    response = render(request, "login.html", {"csrf": nonce, "next": next, "notice": notice, "error": error,
                                              "idle_minutes": settings.console_idle_minutes,
                                              "session_hours": settings.console_session_hours}, status)
    response.set_cookie(LOGIN_CSRF_COOKIE, nonce, path="/console/login", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
    return response


@router.post("/console/login")
def login(request: Request, state: StateDep, session: SessionDep, form: FormDep) -> Response:
    sent = (form.get("csrf") or [""])[0]
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    next_page = (form.get("next") or [""])[0]
    if not expected or not same_origin(request) or not hmac.compare_digest(sent, expected):
        return _login_form(request, next=next_page, error="表单已过期或来自其他网站，请重新输入令牌", status=403)
    token = (form.get("token") or [""])[0].strip()
    try:
        session_id = console_sessions.sign_in(session, state.settings, token,
                                              previous=request.cookies.get(SESSION_COOKIE))
    except AppError as exc:
        return _login_form(request, next=next_page, error=exc.message, status=STATUS[exc.code])
    response = RedirectResponse(safe_next(next_page), status_code=303)
    set_session(response, request, session_id, state.settings)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/console/login")
    return response


@router.post("/console/logout")
def logout(request: Request, session: SessionDep, form: CheckedForm) -> Response:
    """Sign out: the session is deleted on the server, so a copy of the cookie opens nothing any more."""
    console_sessions.sign_out(session, request.cookies.get(SESSION_COOKIE, ""))
    response = RedirectResponse("/console/login?out=1", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/console")
    return response


def _page(request: Request, principal: Principal, template: str, status: int = 200,
          **context: Any) -> Response:
    return render(request, template, {"principal": principal, "csrf": request.state.console_csrf,
                                      "console": True, **context}, status)


@router.get("/console")
def home(request: Request, principal: ConsoleStaff) -> Response:
    return _page(request, principal, "console_home.html")


@router.get("/console/enterprises")
def find_enterprises(request: Request, session: SessionDep, principal: ConsoleStaff, q: str = "") -> Response:
    text = q.strip()
    if not text:
        return _page(request, principal, "console_home.html", 422, enterprise_error="请输入企业名称中的几个字或统一社会信用代码", q=q)
    if len(text) > MAX_QUERY_CHARS:
        return _page(request, principal, "console_home.html", 422, q=q[:MAX_QUERY_CHARS],
                     enterprise_error=f"查询内容过长（最多{MAX_QUERY_CHARS}字）")
    _screen_query(text, "q")
    with as_page():  # every firm shown is audited
        hits = enterprises.find_enterprises(session, access_of(request, principal), q=text, limit=50)
    return _page(request, principal, "enterprises.html", q=text, hits=hits)


def _screen_query(value: str, name: str) -> None:
    problem = unstorable(value, path=name)
    if problem:
        raise ConsoleError(422, f"查询内容{problem[1]}", name)


def _enterprise_view(request: Request, state: ServiceState, session: Session, principal: Principal, uscc: str,
                     *, words: str = "") -> tuple[Enterprise, EnterpriseProfile, MatchResult]:
    """The stored firm (audited), its profile as the form shows it on today's date (qualifications valid
    today) and its package, with its values' ages (a stale value is unknown and asked again)."""
    with as_page():
        row = enterprises.enterprise_for(session, access_of(request, principal), uscc)  # writes the audit row
        stored = parse_profile(row.profile).at(today())
        result = packages.match_profile(state, session, row.profile, query=words or None, top=None, as_of=today(),
                                        provenance=row.provenance)
    return row, stored, result


def _enterprise_page(request: Request, principal: Principal, row: Enterprise, result: MatchResult,
                     status: int = 200, **context: Any) -> Response:
    """The enterprise page: conflicts between sources on top, every field with its source and date."""
    return _page(request, principal, "enterprise.html", status, row=row, result=result,
                 fields=field_rows(row.profile, row.provenance, result, today()),
                 conflicts=conflict_rows(row.conflicts), **context)


def _words(value: str) -> str:
    text = value.strip()
    if len(text) > MAX_WORDS_CHARS:
        raise ConsoleError(422, f"来电诉求过长（最多{MAX_WORDS_CHARS}字）", "words")
    _screen_query(text, "words")
    return text


@router.get("/console/enterprises/{uscc}")
def enterprise_page(uscc: str, request: Request, state: StateDep, session: SessionDep,
                    principal: ConsoleStaff, words: str = "", saved: str = "") -> Response:
    words = _words(words)
    row, stored, result = _enterprise_view(request, state, session, principal, uscc, words=words)
    notice = {"1": "已保存到企业画像", "0": "内容与已存画像相同，未作修改"}.get(saved)
    return _enterprise_page(request, principal, row, result, values=form_values(stored.stated()), words=words,
                            notice=notice, errors=[], whatif=None,
                            words_found=words_answer(state.matcher(session), words))


@router.post("/console/enterprises/{uscc}/whatif")
def whatif(uscc: str, request: Request, state: StateDep, session: SessionDep, principal: ConsoleStaff,
           form: CheckedForm) -> Response:
    """The package as it would be with the caller's corrections; nothing is written (but the view is audited)."""
    words = _words((form.get("words") or [""])[0])
    row, stored, current = _enterprise_view(request, state, session, principal, uscc, words=words)
    try:
        changed = profile_from_form(form, uscc=row.uscc)
    except ProfileError as exc:
        return _enterprise_page(request, principal, row, current, 422, values=raw_values(form), words=words,
                                notice=None, errors=exc.errors, whatif=None)
    data, provenance = carry_over(row.profile, row.provenance, stored, changed)
    with as_page():
        result = packages.match_profile(state, session, data, query=words or None, top=None, as_of=today(),
                                        provenance=provenance)
    return _enterprise_page(request, principal, row, result, values=raw_values(form), words=words, notice=None,
                            errors=[], whatif=whatif_changes(stored, changed, current, result),
                            words_found=words_answer(state.matcher(session), words))


@router.post("/console/enterprises/{uscc}/save")
def save(uscc: str, request: Request, state: StateDep, session: SessionDep, principal: ConsoleStaff,
         form: CheckedForm) -> Response:
    """Save the corrected profile through the use case of PUT /v1/enterprises/{uscc} (which validates,
    writes and audits); an invalid form shows the page again with the messages and writes nothing."""
    with as_page():
        code = enterprises.uscc_of(uscc)
    if get_enterprise(session, uscc=code) is None:  # the console corrects firms, it never creates one
        raise ConsoleError(404, "未找到该企业")
    try:
        profile = profile_from_form(form, uscc=code)
    except ProfileError as exc:
        words = _words((form.get("words") or [""])[0])
        row, _, current = _enterprise_view(request, state, session, principal, code, words=words)
        return _enterprise_page(request, principal, row, current, 422, values=raw_values(form), words=words,
                                notice=None, errors=exc.errors, whatif=None)
    with as_page():
        out = enterprises.save_enterprise(session, access_of(request, principal), code, profile.stated())
    return RedirectResponse(f"/console/enterprises/{quote(code)}?saved={int(bool(out['changed']))}",
                            status_code=303)


@router.get("/console/policies")
def search_policies(request: Request, state: StateDep, session: SessionDep, principal: ConsoleStaff,
                    q: str = "") -> Response:
    text = q.strip()
    if not text:
        return _page(request, principal, "console_home.html", 422, policy_error="请输入来电人的原话或关键词",
                     pq=q)
    if len(text) > MAX_WORDS_CHARS:
        return _page(request, principal, "console_home.html", 422, pq=q[:MAX_WORDS_CHARS],
                     policy_error=f"查询内容过长（最多{MAX_WORDS_CHARS}字）")
    _screen_query(text, "q")
    matcher = state.matcher(session)
    with as_page():
        found = catalog_admin.search_policies(state, session, text, top=10)
    hits = [{**h, "summary": matcher.catalog[h["policy_id"]].summary,
             "category_label": matcher.catalog[h["policy_id"]].category_label,
             "kind_label": matcher.catalog[h["policy_id"]].kind_label}
            for h in found["results"]]
    return _page(request, principal, "policies.html", pq=text, hits=hits, no_match=found["no_match"],
                 fallback=found["fallback"])


@router.get("/console/policies/{policy_id}")
def policy_page(policy_id: str, request: Request, state: StateDep, session: SessionDep,
                principal: ConsoleStaff) -> Response:
    _screen_query(policy_id, "policy_id")
    catalog = state.matcher(session).catalog
    entry = catalog.entries.get(policy_id)
    reached = None
    if entry is None or entry.offered:
        # the API's reverse query: counts by region and size, and the best-fitting firms (each one audited)
        with as_page():
            reached = reach.policy_enterprises(state, session, access_of(request, principal), policy_id, page=1,
                                               size=10, as_of=today())
    policy = state.matcher(session).catalog[policy_id]
    funnel = policy_funnel(session, policy_id, period_days=state.settings.uptake_period_days) if reached else None
    svg = funnel_chart(funnel, f"“{policy.title}”兑现漏斗") if funnel else None
    return _page(request, principal, "policy.html", policy=policy, reach=reached, today=today(), funnel=funnel,
                 funnel_svg=svg)


# ---- the public calculator ------------------------------------------------------------------
@router.get("/calculator")
def calculator_page(request: Request) -> Response:
    return render(request, "calculator.html", {"values": {}, "errors": [], "result": None})


@router.post("/calculator")
def calculate(request: Request, state: StateDep, session: SessionDep, form: FormDep) -> Response:
    """The package for the profile in the form; nothing is stored. Rate-limited like POST /v1/match."""
    with as_page():
        check_rate(request, state, ANONYMOUS, "match")  # the same shared count as POST /v1/match
    before = previous_profile(form)  # the profile of the answer on the page the form was sent from
    try:
        profile = profile_from_form(form, anonymous=True)
    except ProfileError as exc:  # the last answer stays the one to compare with once the input is corrected
        return render(request, "calculator.html", {"values": raw_values(form), "errors": exc.errors, "result": None,
                                                   "previous": previous_text(before) if before else None}, 422)
    with as_page():
        result = packages.match_profile(state, session, profile.stated(), query=None, top=None, as_of=today())
        compared = None
        if before is not None and before.stated() != profile.stated():
            old = packages.match_profile(state, session, before.stated(), query=None, top=None, as_of=today())
            compared = whatif_changes(before, profile, old, result)
    return render(request, "calculator.html", {"values": raw_values(form), "errors": [], "result": result,
                                               "words": words_answer(state.matcher(session), profile.needs),
                                               "whatif": compared, "previous": previous_text(profile)})


# ---- wiring --------------------------------------------------------------------------------
def mount_console(app: FastAPI) -> None:
    """Add the console, the calculator and their static files to ``app`` (called by ``create_app``)."""
    app.include_router(router)
    app.include_router(dashboard.router)  # /console/dashboard
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.exception_handler(ConsoleError)
    async def _console_error(request: Request, exc: ConsoleError) -> Response:
        return render(request, "error.html", {"status": exc.status, "message": exc.message,
                                              "console": request.url.path.startswith("/console")}, exc.status)

    @app.exception_handler(NotSignedIn)
    async def _not_signed_in(request: Request, exc: NotSignedIn) -> Response:
        if request.method in ("GET", "HEAD"):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            query = f"next={quote(target, safe='')}" + (f"&ended={exc.reason}" if exc.reason else "")
            response: Response = RedirectResponse(f"/console/login?{query}", status_code=303)
        else:
            message = (ended_message(exc.reason, request.app.state.service.settings) if exc.reason
                       else "请先登录工作台")
            response = render(request, "error.html", {"status": 401, "message": message, "console": False,
                                                      "login_link": True}, 401)
        response.delete_cookie(SESSION_COOKIE, path="/console")
        return response
