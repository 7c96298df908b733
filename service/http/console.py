"""The hotline console (``/console``, staff) and the public policy calculator (``/calculator``).

Server-rendered pages (Jinja2, Chinese) over the same pieces as the API: the token lookup of
``store.principal_for``, the API's own functions for finding, reading, matching and saving an
enterprise (so audit rows, validation and writes are exactly the API's), and the matcher of
``ServiceState``. Everything works without JavaScript; ``static/console.js`` only adds comfort.

Session: signing in with a staff token opens a server-side session (table ``console_session``, so
every worker sees it); the HTTP-only, SameSite=Strict cookie scoped to ``/console`` holds only the
session's random id (stored hashed), never the token, and that id is no credential for ``/v1``. Every
request looks the session up: it ends on sign-out (deleted), after ``console_idle_minutes`` without a
request, ``console_session_hours`` after sign-in, and when its token is revoked (``store.revoke_token``
deletes the token's sessions) or expires. CSRF: every console form carries ``HMAC(session id,
purpose)`` — bound to the session, computable only by a holder of the cookie, unreadable by a
cross-site page — and a request whose ``Origin`` is another host is refused. The sign-in form uses a
double-submit cookie instead (there is no session yet).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
import secrets
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qsl, quote, urlsplit

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlmodel import Session

from matching.search import search as search_entries
from policies.schema import STRENGTHS
from profiles.fields import FIELDS, PROFILE_FIELDS, SIZES, Kind
from profiles.model import EnterpriseProfile, ProfileError, parse_profile
from service import store
from service.app.importer import INT_FIELDS
from service.bootstrap import ServiceState
from service.db.tables import Enterprise
from service.http import api
from service.settings import Settings

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATES = Jinja2Templates(directory=PACKAGE_DIR / "templates")
STATIC_DIR = PACKAGE_DIR / "static"

SESSION_COOKIE = "pf_console"
LOGIN_CSRF_COOKIE = "pf_console_login"
CSRF_PURPOSE = b"policyfit-console-csrf-v1"
NONE_OPTION = "__none__"  # "以上均无": a list field stated as empty (a list with nothing ticked is unknown)
MAX_QUERY_CHARS = 100
MAX_WORDS_CHARS = 500
MAX_FORM_FIELDS = 300

#: The calculator asks for no code and no name (it stores nothing and identifies nobody); the profile
#: model needs both, so an anonymous calculation carries these two fixed values, which no page shows.
ANONYMOUS = {"uscc": "91320300000000000F", "name": "政策计算器（匿名试算）"}
#: Fields the public calculator leaves out of its form.
CALCULATOR_SKIPS = ("uscc", "name")

#: Fields shown in the form as a text area rather than a one-line input.
LONG_TEXT = ("business_scope", "needs")

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                               "form-action 'self'; base-uri 'none'; object-src 'none'",
}

T = TypeVar("T")


class ConsoleError(Exception):
    """An error shown to a person as a page: status and a Chinese message."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


class NotSignedIn(Exception):
    """No console session (``reason`` None: no cookie), or the session is over: ``reason`` is one of
    ``store.console_session_for``'s (unknown, idle, lifetime, token)."""

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


def _call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one of the API's functions; its ApiError becomes a page."""
    try:
        return fn(*args, **kwargs)
    except api.ApiError as exc:
        raise ConsoleError(exc.status, exc.message, exc.field) from None


# ---- rendering -------------------------------------------------------------------------------
def value_text(name: str, value: Any) -> str:
    """A profile or derived value in Chinese (lists joined, unknown as 未填)."""
    spec = FIELDS.get(name)
    if value is None:
        return "未填"
    if isinstance(value, list):
        if spec is None:
            return "、".join(map(str, value))
        return "、".join(spec.value_label(v) for v in value) or "无"
    if spec is None:
        return str(value)
    if isinstance(value, float) and not value.is_integer():
        value = round(value, 2)
    return spec.value_label(value)


PLAN_TASKS = "《徐州市2023年优化营商环境重点任务》"
PLAN_MEASURES = "《徐州市2023年优化营商环境十项举措》"


def provenance(entry: Any) -> str:
    """Where an entry comes from, as a person reads it: 《…重点任务》第63项 (never a bare number or id).
    Accepts a match/search entry (source_task/source_measure) or a catalog entry (source)."""
    if isinstance(entry, dict):
        task, measure = entry.get("source_task"), entry.get("source_measure")
    else:
        task, measure = entry.source.task_no, entry.source.measure_no
    if task:
        return f"{PLAN_TASKS}第{task}项"
    if measure:
        return f"{PLAN_MEASURES}第{measure}项"
    return ""


def source_text(entry: dict[str, Any]) -> str:  # kept for templates written before provenance()
    return provenance(entry)


def wan_text(value: Any) -> str:
    if value is None:
        return ""
    number = float(value)
    return f"{number:,.2f}".rstrip("0").rstrip(".")


def question_groups(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The distinct questions of the possibly-eligible policies, those that concern most policies first:
    one answer from the caller often settles several of them."""
    groups: dict[str, list[str]] = {}
    for item in result["possibly_eligible"]:
        for question in item["questions"]:
            groups.setdefault(question, []).append(item["title"])
    return [{"question": q, "titles": t} for q, t in sorted(groups.items(), key=lambda g: (-len(g[1]), g[0]))]


def ask_list(result: dict[str, Any], console: bool) -> list[dict[str, Any]]:
    """The questions to put to the person in front of us, each once, in the matcher's order: phrased to the
    caller (请问…) in the console and to the firm (贵企业…) on the calculator."""
    asks = result.get("questions")
    if not asks:
        return question_groups(result)
    titles = {e["policy_id"]: e["title"] for e in result["possibly_eligible"]}
    return [{"question": a["ask_staff"] if console else a["ask_firm"],
             "titles": [titles.get(pid, pid) for pid in a.get("settles", [])]} for a in asks]


def words_answer(matcher: Any, words: str | None) -> dict[str, Any] | None:
    """What the firm's own words (诉求) find over the whole plan: None without words; otherwise the search
    answer, so that a page can say “未找到对应政策” and name the channel instead of pretending the package
    answers an off-topic request."""
    if not words or not words.strip():
        return None
    return search_entries(matcher, words, top=3)


def titles_of(result: dict[str, Any], ids: list[str]) -> list[str]:
    """Titles of package entries by id (exclusive groups name the other policy by its title)."""
    titles = {e["policy_id"]: e["title"] for e in result["package"]}
    return [f"“{titles[i]}”" if i in titles else "同类政策" for i in ids]


TEMPLATES.env.globals.update(question_groups=question_groups, ask_list=ask_list, provenance=provenance,
                             titles_of=titles_of, CALCULATOR_SKIPS=CALCULATOR_SKIPS, STRENGTHS=STRENGTHS, FIELDS=FIELDS, PROFILE_FIELDS=PROFILE_FIELDS, Kind=Kind, SIZES=SIZES,
                             NONE_OPTION=NONE_OPTION, LONG_TEXT=LONG_TEXT, value_text=value_text,
                             source_text=source_text, wan_text=wan_text)


def render(request: Request, template: str, context: dict[str, Any], status: int = 200) -> Response:
    response = TEMPLATES.TemplateResponse(request, template, context, status_code=status)
    response.headers.update(SECURITY_HEADERS)
    return response


# ---- session and CSRF ------------------------------------------------------------------------
def csrf_for(session_id: str) -> str:
    """The CSRF value of a console session: bound to it, and useless with any other session."""
    return hmac.new(session_id.encode(), CSRF_PURPOSE, hashlib.sha256).hexdigest()


def _session_limits(settings: Settings) -> tuple[dt.timedelta, dt.timedelta]:
    """(idle, lifetime) of a console session."""
    return dt.timedelta(minutes=settings.console_idle_minutes), dt.timedelta(hours=settings.console_session_hours)


def _ended_message(reason: str, settings: Settings) -> str:
    return ENDED_MESSAGES.get(reason, ENDED_MESSAGES["unknown"]).format(
        idle=settings.console_idle_minutes, hours=settings.console_session_hours)


def console_principal(request: Request, state: api.StateDep, session: api.SessionDep) -> store.Principal:
    """The staff member behind the session cookie: the session is read from the database on every request
    (so sign-out, expiry and revocation hold in every worker at once), with its token."""
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id:
        raise NotSignedIn(None)
    idle, lifetime = _session_limits(state.settings)
    principal, reason = store.console_session_for(session, session_id=session_id, idle=idle, lifetime=lifetime)
    session.commit()  # the session's last request time, or its deletion once it is over
    if principal is None:
        raise NotSignedIn(reason)
    request.state.console_csrf = csrf_for(session_id)
    return principal


ConsoleStaff = Annotated[store.Principal, Depends(console_principal)]


def _same_origin(request: Request) -> bool:
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
    problem = store.unstorable(form)
    if problem:
        path, reason = problem
        name = path.split("[", 1)[0]
        raise ConsoleError(422, f"{_label(name)}：{reason}", name)
    return form


FormDep = Annotated[dict[str, list[str]], Depends(read_form)]


def checked_form(request: Request, principal: ConsoleStaff, form: FormDep) -> dict[str, list[str]]:
    """The form of a signed-in POST, after the CSRF checks."""
    sent = (form.get("csrf") or [""])[0]
    if not _same_origin(request) or not hmac.compare_digest(sent, request.state.console_csrf):
        raise ConsoleError(403, "表单校验失败（页面已过期或来自其他网站），请刷新页面后重试")
    return form


CheckedForm = Annotated[dict[str, list[str]], Depends(checked_form)]


def _label(name: str) -> str:
    """A field as a person reads it on a page: its Chinese label only (no field code)."""
    return FIELDS[name].label if name in FIELDS else name


def page_message(name: str, message: str) -> str:
    """A validation message for a page: ``employees（从业人员）不能小于0`` → ``从业人员不能小于0`` (the
    field codes stay in the API's and CLI's messages, where integrators read them)."""
    if name in FIELDS:
        return message.replace(f"{name}（{FIELDS[name].label}）", FIELDS[name].label)
    return message


def _set_session(response: Response, request: Request, session_id: str, settings: Settings) -> None:
    response.set_cookie(SESSION_COOKIE, session_id, max_age=settings.console_session_hours * 3600,
                        path="/console", httponly=True, samesite="strict", secure=request.url.scheme == "https")


def _safe_next(target: str | None) -> str:
    """Only a console path of this site (no scheme, no host, no //) is a place to return to."""
    if not target or "\\" in target or not (target == "/console" or target.startswith(("/console/", "/console?"))):
        return "/console"
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else "/console"


# ---- forms ↔ profiles -------------------------------------------------------------------------
def form_values(profile: dict[str, Any]) -> dict[str, Any]:
    """A stored profile as the form shows it: scalars as text, lists as lists (empty = 以上均无)."""
    values: dict[str, Any] = {}
    for name in PROFILE_FIELDS:
        value = profile.get(name)
        if value is None:
            continue
        if isinstance(value, list):
            values[name] = list(value) or [NONE_OPTION]
        elif isinstance(value, bool):
            values[name] = "true" if value else "false"
        elif isinstance(value, float) and value.is_integer():
            values[name] = str(int(value))
        else:
            values[name] = str(value)
    return values


def raw_values(form: dict[str, list[str]]) -> dict[str, Any]:
    """What the person typed, to put back into the form next to an error."""
    return {name: (form.get(name, []) if FIELDS[name].kind is Kind.SET else (form.get(name) or [""])[0])
            for name in PROFILE_FIELDS if name in form}


def profile_from_form(form: dict[str, list[str]], *, uscc: str | None = None,
                      anonymous: bool = False) -> EnterpriseProfile:
    """The profile a form describes: empty inputs are unknown, numbers may use full-width digits and
    thousands separators. Raises ProfileError with every problem, each naming its field in Chinese.
    ``anonymous``: the calculator's form, without code and name (any sent are ignored)."""
    data: dict[str, Any] = {}
    errors: list[tuple[str, str]] = []
    for name in PROFILE_FIELDS:
        if anonymous and name in CALCULATOR_SKIPS:
            continue
        spec = FIELDS[name]
        if spec.kind is Kind.SET:
            chosen = [v for v in form.get(name, []) if v]
            if NONE_OPTION in chosen:
                if len(chosen) > 1:
                    errors.append((name, f"{_label(name)}：不能同时勾选“以上均无”和具体项"))
                data[name] = []
            elif chosen:
                data[name] = chosen
            continue
        raw = (form.get(name) or [""])[0].strip()
        if not raw:
            continue
        if spec.kind is Kind.BOOL:
            if raw.lower() not in ("true", "false"):
                errors.append((name, f"{_label(name)}：请选择“是”“否”或“不清楚”"))
                continue
            data[name] = raw.lower() == "true"
            continue
        if spec.kind is Kind.NUMBER:
            text = unicodedata.normalize("NFKC", raw).replace(",", "").replace(" ", "")
            whole = name in INT_FIELDS
            try:
                number: float = int(text) if whole else float(text)
            except ValueError:
                errors.append((name, f"{_label(name)}{'应为整数' if whole else '应为数字'}，收到“{raw[:20]}”"))
                continue
            if not math.isfinite(number):
                errors.append((name, f"{_label(name)}应为有限的数字"))
                continue
            data[name] = number
        else:
            data[name] = raw
    if uscc is not None:
        data["uscc"] = uscc
    if anonymous:
        data.update(ANONYMOUS)
    try:
        profile = parse_profile(data, as_of=_today())  # the founding date rule of every entry point
    except ProfileError as exc:
        errors.extend(e for e in exc.errors if e[0] not in {f for f, _ in errors})
    if errors:
        errors = [(name, page_message(name, message)) for name, message in errors]
        raise ProfileError(errors[0][0], errors[0][1], errors)
    return profile


def _comparable(profile: EnterpriseProfile) -> dict[str, Any]:
    """Every field with the model's defaults applied, so that an unstated default equals a stated one."""
    return profile.model_dump(mode="json")


def whatif_changes(before: EnterpriseProfile, after: EnterpriseProfile, old: dict[str, Any],
                   new: dict[str, Any]) -> dict[str, Any]:
    """What the operator changed and what it did to the package."""
    a, b = _comparable(before), _comparable(after)
    fields = [{"name": n, "label": FIELDS[n].label, "before": value_text(n, a.get(n)),
               "after": value_text(n, b.get(n))} for n in PROFILE_FIELDS if a.get(n) != b.get(n)]
    old_ids = [e["policy_id"] for e in old["package"]]
    new_ids = [e["policy_id"] for e in new["package"]]
    old_possible = {e["policy_id"] for e in old["possibly_eligible"]}
    return {
        "fields": fields,
        "added": [e for e in new["package"] if e["policy_id"] not in old_ids],
        "removed": [e for e in old["package"] if e["policy_id"] not in new_ids],
        "newly_possible": [e for e in new["possibly_eligible"] if e["policy_id"] not in old_possible],
        "value_before": old["summary"]["estimated_value_wan"],
        "value_after": new["summary"]["estimated_value_wan"],
        "count_before": len(old_ids),
        "count_after": len(new_ids),
    }


# ---- routes ----------------------------------------------------------------------------------
router = APIRouter(include_in_schema=False)


def _today() -> dt.date:
    return dt.date.today()


@router.get("/console/login")
def login_page(request: Request, state: api.StateDep, session: api.SessionDep, next: str = "", ended: str = "",
               out: str = "") -> Response:
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id:
        idle, lifetime = _session_limits(state.settings)
        principal, _ = store.console_session_for(session, session_id=session_id, idle=idle, lifetime=lifetime)
        session.commit()
        if principal is not None:
            return RedirectResponse(_safe_next(next), status_code=303)
    notice = (_ended_message(ended, state.settings) if ended else "已退出登录" if out else None)
    return _login_form(request, next=_safe_next(next) if next else "", notice=notice)


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
def login(request: Request, state: api.StateDep, session: api.SessionDep, form: FormDep) -> Response:
    sent = (form.get("csrf") or [""])[0]
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    next_page = (form.get("next") or [""])[0]
    if not expected or not _same_origin(request) or not hmac.compare_digest(sent, expected):
        return _login_form(request, next=next_page, error="表单已过期或来自其他网站，请重新输入令牌", status=403)
    token = (form.get("token") or [""])[0].strip()
    if not token:
        return _login_form(request, next=next_page, error="请输入工作人员令牌", status=422)
    principal = store.principal_for(session, token=token)
    if principal is None:
        return _login_form(request, next=next_page, error="令牌无效、已过期或已被吊销", status=401)
    if not principal.is_staff:
        return _login_form(request, next=next_page, status=403,
                           error="该令牌不是工作人员令牌：工作台仅限热线坐席和管理员使用（企业请使用政策计算器）")
    assert principal.token_id is not None
    previous = request.cookies.get(SESSION_COOKIE)
    if previous:  # signing in again replaces the browser's old session
        store.end_console_session(session, session_id=previous)
    idle, lifetime = _session_limits(state.settings)
    store.purge_console_sessions(session, idle=idle, lifetime=lifetime)
    session_id = store.open_console_session(session, token_id=principal.token_id)
    session.commit()
    response = RedirectResponse(_safe_next(next_page), status_code=303)
    _set_session(response, request, session_id, state.settings)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/console/login")
    return response


@router.post("/console/logout")
def logout(request: Request, session: api.SessionDep, form: CheckedForm) -> Response:
    """Sign out: the session is deleted on the server, so a copy of the cookie opens nothing any more."""
    store.end_console_session(session, session_id=request.cookies.get(SESSION_COOKIE, ""))
    session.commit()
    response = RedirectResponse("/console/login?out=1", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/console")
    return response


def _page(request: Request, principal: store.Principal, template: str, status: int = 200,
          **context: Any) -> Response:
    return render(request, template, {"principal": principal, "csrf": request.state.console_csrf,
                                      "console": True, **context}, status)


@router.get("/console")
def home(request: Request, principal: ConsoleStaff) -> Response:
    return _page(request, principal, "console_home.html")


@router.get("/console/enterprises")
def find_enterprises(request: Request, session: api.SessionDep, principal: ConsoleStaff, q: str = "") -> Response:
    text = q.strip()
    if not text:
        return _page(request, principal, "console_home.html", 422, enterprise_error="请输入企业名称中的几个字或统一社会信用代码", q=q)
    if len(text) > MAX_QUERY_CHARS:
        return _page(request, principal, "console_home.html", 422, q=q[:MAX_QUERY_CHARS],
                     enterprise_error=f"查询内容过长（最多{MAX_QUERY_CHARS}字）")
    _screen_query(text, "q")
    hits = _call(api.find_enterprises, request, session, principal, q=text, limit=50)  # audited
    return _page(request, principal, "enterprises.html", q=text, hits=hits)


def _screen_query(value: str, name: str) -> None:
    problem = store.unstorable(value, path=name)
    if problem:
        raise ConsoleError(422, f"查询内容{problem[1]}", name)


def _enterprise_view(request: Request, state: ServiceState, session: Session, principal: store.Principal, uscc: str,
                     *, words: str = "") -> tuple[Enterprise, EnterpriseProfile, dict[str, Any]]:
    row = _call(api._enterprise_for, session, principal, uscc, request)  # writes the audit row
    stored = parse_profile(row.profile)
    result = _call(api._match, state, session, row.profile, query=words or None, top=None, as_of=_today())
    return row, stored, result


def _words(value: str) -> str:
    text = value.strip()
    if len(text) > MAX_WORDS_CHARS:
        raise ConsoleError(422, f"来电诉求过长（最多{MAX_WORDS_CHARS}字）", "words")
    _screen_query(text, "words")
    return text


@router.get("/console/enterprises/{uscc}")
def enterprise_page(uscc: str, request: Request, state: api.StateDep, session: api.SessionDep,
                    principal: ConsoleStaff, words: str = "", saved: str = "") -> Response:
    words = _words(words)
    row, _, result = _enterprise_view(request, state, session, principal, uscc, words=words)
    notice = {"1": "已保存到企业画像", "0": "内容与已存画像相同，未作修改"}.get(saved)
    return _page(request, principal, "enterprise.html", row=row, result=result, values=form_values(row.profile),
                 words=words, notice=notice, errors=[], whatif=None,
                 words_found=words_answer(state.matcher(session), words))


@router.post("/console/enterprises/{uscc}/whatif")
def whatif(uscc: str, request: Request, state: api.StateDep, session: api.SessionDep, principal: ConsoleStaff,
           form: CheckedForm) -> Response:
    """The package as it would be with the caller's corrections; nothing is written (but the view is audited)."""
    words = _words((form.get("words") or [""])[0])
    row, stored, current = _enterprise_view(request, state, session, principal, uscc, words=words)
    try:
        changed = profile_from_form(form, uscc=row.uscc)
    except ProfileError as exc:
        return _page(request, principal, "enterprise.html", 422, row=row, result=current, values=raw_values(form),
                     words=words, notice=None, errors=exc.errors, whatif=None)
    result = _call(api._match, state, session, changed.stated(), query=words or None, top=None, as_of=_today())
    return _page(request, principal, "enterprise.html", row=row, result=result, values=raw_values(form),
                 words=words, notice=None, errors=[], whatif=whatif_changes(stored, changed, current, result),
                 words_found=words_answer(state.matcher(session), words))


@router.post("/console/enterprises/{uscc}/save")
def save(uscc: str, request: Request, state: api.StateDep, session: api.SessionDep, principal: ConsoleStaff,
         form: CheckedForm) -> Response:
    """Save the corrected profile through the API's own PUT /v1/enterprises/{uscc} code (which validates,
    writes and audits); an invalid form shows the page again with the messages and writes nothing."""
    code = _call(api._uscc, uscc)
    if store.get_enterprise(session, uscc=code) is None:  # the console corrects firms, it never creates one
        raise ConsoleError(404, "未找到该企业")
    try:
        profile = profile_from_form(form, uscc=code)
    except ProfileError as exc:
        words = _words((form.get("words") or [""])[0])
        row, _, current = _enterprise_view(request, state, session, principal, code, words=words)
        return _page(request, principal, "enterprise.html", 422, row=row, result=current, values=raw_values(form),
                     words=words, notice=None, errors=exc.errors, whatif=None)
    out = _call(api.put_enterprise, code, profile.stated(), request, session, principal)
    return RedirectResponse(f"/console/enterprises/{quote(code)}?saved={int(bool(out['changed']))}",
                            status_code=303)


@router.get("/console/policies")
def search_policies(request: Request, state: api.StateDep, session: api.SessionDep, principal: ConsoleStaff,
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
    found = search_entries(matcher, text, top=10)
    hits = [{**h, "summary": matcher.catalog[h["policy_id"]].summary,
             "category_label": matcher.catalog[h["policy_id"]].category_label,
             "kind_label": matcher.catalog[h["policy_id"]].kind_label}
            for h in found["results"]]
    return _page(request, principal, "policies.html", pq=text, hits=hits, no_match=found["no_match"],
                 fallback=found["fallback"])


@router.get("/console/policies/{policy_id}")
def policy_page(policy_id: str, request: Request, state: api.StateDep, session: api.SessionDep,
                principal: ConsoleStaff) -> Response:
    _screen_query(policy_id, "policy_id")
    catalog = state.matcher(session).catalog
    entry = catalog.entries.get(policy_id)
    reach = None
    if entry is None or entry.offered:
        # the API's reverse query: counts by region and size, and the best-fitting firms (each one audited)
        reach = _call(api.policy_enterprises, policy_id, state, session, principal, request, page=1, size=10,
                      as_of=None)
    policy = state.matcher(session).catalog[policy_id]
    return _page(request, principal, "policy.html", policy=policy, reach=reach, today=_today())


# ---- the public calculator ------------------------------------------------------------------
@router.get("/calculator")
def calculator_page(request: Request) -> Response:
    return render(request, "calculator.html", {"values": {}, "errors": [], "result": None})


@router.post("/calculator")
def calculate(request: Request, state: api.StateDep, session: api.SessionDep, form: FormDep) -> Response:
    """The package for the profile in the form; nothing is stored. Rate-limited like POST /v1/match."""
    _call(api.check_rate, request, state, store.ANONYMOUS, "match")  # the same shared count as POST /v1/match
    try:
        profile = profile_from_form(form, anonymous=True)
    except ProfileError as exc:
        return render(request, "calculator.html", {"values": raw_values(form), "errors": exc.errors,
                                                   "result": None}, 422)
    result = _call(api._match, state, session, profile.stated(), query=None, top=None, as_of=_today())
    return render(request, "calculator.html", {"values": raw_values(form), "errors": [], "result": result,
                                               "words": words_answer(state.matcher(session), profile.needs)})


# ---- wiring --------------------------------------------------------------------------------
def mount_console(app: FastAPI) -> None:
    """Add the console, the calculator and their static files to ``app`` (called by ``create_app``)."""
    app.include_router(router)
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
            message = (_ended_message(exc.reason, request.app.state.service.settings) if exc.reason
                       else "请先登录工作台")
            response = render(request, "error.html", {"status": 401, "message": message, "console": False,
                                                      "login_link": True}, 401)
        response.delete_cookie(SESSION_COOKIE, path="/console")
        return response
