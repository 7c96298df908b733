"""Dependencies of the JSON API: the service state and a database session, who is calling (bearer token)
and what they may do, the screening of hostile input, and the per-caller rate limits."""

from __future__ import annotations

import email.message
import json
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from service.app.enterprises import Access
from service.app.errors import AppError, ErrorCode
from service.bootstrap import ServiceState
from service.http.errors import ERRORS, field_label
from service.settings import Settings
from service.store import limits
from service.store.principals import ANONYMOUS, Principal
from service.store.values import unstorable


async def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]


def get_session(state: StateDep) -> Iterator[Session]:
    state.wait_for_policy_index()  # a worker still warming: wait here, holding no database connection
    # rows stay loaded after a commit (an audit row's commit must not cost a re-SELECT of what was read)
    with Session(state.engine, expire_on_commit=False) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def json_media_type(content_type: str | None) -> bool:
    """Whether a body of this Content-Type is read as JSON — exactly FastAPI's rule: no Content-Type, or
    ``application/json`` / ``application/*+json`` in any letter case and with any parameters."""
    if not content_type:
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


async def screen_input(request: Request) -> None:
    """Refuse what no column or JSON document can hold faithfully (NUL bytes, lone surrogates, integers
    beyond ±2^53, non-finite numbers, absurd nesting) in the path, the query and the body: a clear 422
    naming the field, on SQLite and PostgreSQL alike (PostgreSQL would fail on write otherwise).

    Every body is screened, whatever its declared type: raw NUL bytes and text that is not UTF-8 (a
    lone surrogate cannot be encoded in UTF-8) are refused first; a body the API would read as JSON is
    then parsed the way FastAPI parses it and screened value by value; any other declared type is
    refused with 415, since every /v1 body is JSON."""
    for name, value in [*request.path_params.items(), *request.query_params.multi_items()]:
        problem = unstorable(value, path=str(name))
        if problem:
            field, reason = problem
            raise AppError(ErrorCode.INVALID_VALUE, f"{field_label(field)}：{reason}", field)
    body = await request.body()
    if not body:
        return
    if b"\x00" in body:
        raise AppError(ErrorCode.INVALID_VALUE, "请求体不能包含空字符（\\u0000）")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise AppError(ErrorCode.INVALID_VALUE, "请求体不是有效的UTF-8文本（含无效的Unicode代理字符或其他编码）") from None
    if not json_media_type(request.headers.get("content-type")):
        raise AppError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, "请求体格式应为 application/json", "Content-Type")
    try:
        data = json.loads(body)  # what Starlette's request.json() does, so both read the same document
    except (ValueError, RecursionError):
        return  # FastAPI reports the unreadable body itself (with the position)
    problem = unstorable(data)
    if problem:
        field, reason = problem
        raise AppError(ErrorCode.INVALID_VALUE, f"{field_label(field or '请求体')}：{reason}", field or None)


async def get_principal(request: Request, state: StateDep, session: SessionDep) -> Principal:
    # async: a token this worker checked less than freshness_seconds ago costs no thread hop; otherwise
    # the lookup runs in the thread pool like any other database call
    header = request.headers.get("authorization")
    if not header:
        return ANONYMOUS
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AppError(ErrorCode.UNAUTHORIZED, "认证头格式应为 Authorization: Bearer <令牌>", "Authorization")
    found = state.known_principal(token.strip())
    principal = found[0] if found else await run_in_threadpool(state.principal, session, token.strip())
    if principal is None:
        raise AppError(ErrorCode.UNAUTHORIZED, "令牌无效、已过期或已被吊销", "Authorization")
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def require_signed_in(principal: PrincipalDep) -> Principal:
    if principal.role == "anonymous":
        raise AppError(ErrorCode.UNAUTHORIZED, "需要登录：请在 Authorization 头中提供令牌", "Authorization")
    return principal


async def require_staff(principal: Annotated[Principal, Depends(require_signed_in)]) -> Principal:
    if not principal.is_staff:
        raise AppError(ErrorCode.FORBIDDEN, "仅限工作人员使用")
    return principal


async def require_admin(principal: Annotated[Principal, Depends(require_signed_in)]) -> Principal:
    if principal.role != "admin":
        raise AppError(ErrorCode.FORBIDDEN, "需要管理员权限")
    return principal


SignedIn = Annotated[Principal, Depends(require_signed_in)]
Staff = Annotated[Principal, Depends(require_staff)]
Admin = Annotated[Principal, Depends(require_admin)]


def access_of(request: Request, principal: Principal) -> Access:
    """Who asks through which route, as the use cases' audit rows record it."""
    return Access(principal, request.url.path, request.method)


def v1_router() -> APIRouter:
    """A router under /v1. Every /v1 route: a token that is sent must be valid (revoked / expired → 401,
    even where anonymous calls are allowed), and hostile values are refused before any handler sees them."""
    return APIRouter(prefix="/v1", responses=ERRORS, dependencies=[Depends(get_principal), Depends(screen_input)])


# ---- rate limits ---------------------------------------------------------------------------------
def client_of(request: Request, settings: Settings) -> str:
    """The caller's address: the socket peer, or what trusted proxies say in X-Forwarded-For."""
    peer = request.client.host if request.client else "unknown"
    return limits.client_address(peer, request.headers.getlist("x-forwarded-for"), settings.trusted_networks)


#: Routes limited per caller, and whether anonymous callers may reach them at all.
ANONYMOUS_KINDS = ("match", "search")


def check_rate(request: Request, state: ServiceState, principal: Principal, kind: str) -> None:
    """Count one call of ``kind`` for this caller in the limiter every worker shares; ``rate_limited``
    (429 with Retry-After) when it does not fit. Anonymous callers are counted per address, token holders
    per token (``token_rate_per_minute``, or the token's own entry in ``token_rate_overrides``). The
    console's calculator counts here too (the same count as POST /v1/match)."""
    settings = state.settings
    if principal.role == "anonymous":
        if kind not in ANONYMOUS_KINDS:
            return  # the route refuses anonymous callers anyway (401)
        limit = settings.anonymous_rate_per_minute if kind == "match" else settings.anonymous_search_per_minute
        who = limits.client_key(client_of(request, settings))
    else:
        limit = settings.token_rate_overrides.get(principal.token_id or -1, settings.token_rate_per_minute)
        if limit <= 0:
            return
        who = f"token:{principal.token_id}"
    decision = request.app.state.limiter.hit(f"{kind}|{who}", limit)
    if not decision.allowed:
        caller = "匿名调用" if principal.role == "anonymous" else "该令牌的调用"
        advice = "或使用令牌" if principal.role == "anonymous" else ""
        raise AppError(ErrorCode.RATE_LIMITED, f"{caller}过于频繁：每分钟最多{limit}次，请{decision.retry_after}秒后再试"
                       f"{advice}", retry_after=decision.retry_after)


def limited(kind: str) -> Any:
    """A route dependency: ``check_rate`` for ``kind`` (in the thread pool: it asks the database)."""
    async def rate_limit(request: Request, state: StateDep, principal: PrincipalDep) -> None:
        await run_in_threadpool(check_rate, request, state, principal, kind)

    return Depends(rate_limit)
