"""The HTTP API (FastAPI): app factory, lifespan, routes under /v1, errors as {code, message, field}.

The lifespan builds one :class:`~service.bootstrap.ServiceState` (database, embedder, catalog and
indexes); routes reach it through dependencies. Domain errors become status codes here only.
"""

from __future__ import annotations

import ast
import asyncio
import copy
import datetime as dt
import email.message
import json
import math
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import Counter, Histogram
from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout  # every pooled connection busy for pool_timeout
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from matching.relevance import dense_passage
from matching.rules import ELIGIBLE, UNKNOWN, RuleEngine
from matching.search import search as search_answer
from policies.formula import FormulaError, parse_formula
from policies.rules import RuleError, parse_rule
from policies.schema import BENEFIT_TYPES, CATEGORIES, Policy
from profiles.features import derive
from profiles.fields import FIELDS
from profiles.model import EnterpriseProfile, ProfileError, parse_profile
from profiles.uscc import UsccError, normalize_uscc
from service import store
from service.app.importer import check_json_types
from service.bootstrap import ServiceState, describe_enterprise, sizes_and_regions
from service.http import ops
from service.settings import Settings, get_settings
from service.store import limits

REQUESTS = Counter("policyfit_requests_total", "HTTP requests", ["route", "method", "status"])
LATENCY = Histogram("policyfit_request_seconds", "HTTP request latency", ["route", "method"],
                    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5))


class ApiError(Exception):
    """An error the client can act on: HTTP status, machine code, Chinese message, the field."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = headers


class ErrorBody(BaseModel):
    code: str = Field(examples=["invalid_profile"])
    message: str = Field(examples=["employees（从业人员）不能小于0"])
    field: str | None = Field(None, examples=["employees"])


ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorBody} for s in (400, 401, 403, 404, 408, 409, 413, 415, 422, 429, 503)
}
ERRORS[429] = {"model": ErrorBody, "description": "调用过于频繁（按客户端或令牌限流）",
               "headers": {"Retry-After": {"description": "多少秒后可再次调用", "schema": {"type": "integer"}}}}


#: The largest request body accepted. A profile is a few KB and a policy some tens of KB; anything
#: near a megabyte is a mistake or an attack and is refused before it is read (413).
MAX_BODY_BYTES = 256 * 1024
#: A value-estimate formula is a short expression; its numbers stay far inside float range.
MAX_FORMULA_CHARS = 500
#: A search query is what a caller says on the hotline; a new long query costs CPU in the embedder
#: (~0.5 s for 500 characters against ~0.07 s for 100), so it is capped well below that.
MAX_SEARCH_CHARS = 200
MAX_FORMULA_CONSTANT = 1e12


def _error(status: int, code: str, message: str, field: str | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"code": code, "message": message, "field": field},
                        headers=headers)


def _field_label(field: str) -> str:
    """``employees`` → ``employees（从业人员）``; the last segment of a dotted path decides the label."""
    last = field.rsplit(".", 1)[-1].split("[", 1)[0]
    return f"{field}（{FIELDS[last].label}）" if last in FIELDS else field


class _BodyTooLarge(StarletteHTTPException):
    """Raised while the body is streamed in (no or a lying Content-Length)."""

    def __init__(self) -> None:
        super().__init__(413, "request body too large")


class BodyLimit:
    """Pure ASGI middleware: refuse request bodies over ``max_bytes`` with 413, never reading them whole,
    and bodies that do not arrive completely within ``body_timeout`` seconds with 408 (slow clients)."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES, body_timeout: float = 30.0) -> None:
        self.app, self.max_bytes, self.body_timeout = app, max_bytes, body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and (not declared.strip().isdigit() or int(declared) > self.max_bytes):
            response = _too_large() if declared.strip().isdigit() else _error(
                400, "bad_request", "请求头 Content-Length 格式不正确", "Content-Length")
            await response(scope, receive, send)
            return
        received = 0
        complete = False
        deadline = asyncio.get_running_loop().time() + self.body_timeout

        async def limited() -> Message:
            nonlocal received, complete
            if complete:  # the body is in: what follows is waiting for a disconnect, which may take long
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - asyncio.get_running_loop().time()))
            except TimeoutError:
                raise _BodyTimeout() from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge()
                complete = not message.get("more_body", False)
            return message

        await self.app(scope, limited, send)


class _BodyTimeout(StarletteHTTPException):
    """The body did not arrive within the body timeout (a slow or stalled client)."""

    def __init__(self) -> None:
        super().__init__(408, "request body timeout", headers={"Connection": "close"})


class Metrics:
    """Pure ASGI middleware: request count and latency per route template, method and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            LATENCY.labels(path, scope["method"]).observe(time.perf_counter() - start)
            REQUESTS.labels(path, scope["method"], str(status)).inc()


def _too_large() -> JSONResponse:
    return _error(413, "payload_too_large", f"请求体过大：最多{MAX_BODY_BYTES // 1024}KB")


_HTTP_ERRORS: dict[int, tuple[str, str]] = {
    400: ("bad_request", "请求体无法解析（数字过长、嵌套过深或编码错误）"),
    401: ("unauthorized", "需要登录"),
    403: ("forbidden", "没有权限"),
    404: ("not_found", "未找到该接口，请核对路径（接口文档见 /docs）"),
    405: ("method_not_allowed", "该接口不支持此请求方法"),
    406: ("not_acceptable", "无法提供所要求的响应格式"),
    413: ("payload_too_large", f"请求体过大：最多{MAX_BODY_BYTES // 1024}KB"),
    415: ("unsupported_media_type", "请求体格式应为 application/json"),
    408: ("request_timeout", "请求体发送超时，请重试"),
}


# ---- dependencies -----------------------------------------------------------------------------
async def get_state(request: Request) -> ServiceState:
    return request.app.state.service  # type: ignore[no-any-return]


StateDep = Annotated[ServiceState, Depends(get_state)]


def get_session(state: StateDep) -> Iterator[Session]:
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
        problem = store.unstorable(value, path=str(name))
        if problem:
            field, reason = problem
            raise ApiError(422, "invalid_value", f"{_field_label(field)}：{reason}", field)
    body = await request.body()
    if not body:
        return
    if b"\x00" in body:
        raise ApiError(422, "invalid_value", "请求体不能包含空字符（\\u0000）")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(422, "invalid_value", "请求体不是有效的UTF-8文本（含无效的Unicode代理字符或其他编码）") from None
    if not json_media_type(request.headers.get("content-type")):
        raise ApiError(415, "unsupported_media_type", "请求体格式应为 application/json", "Content-Type")
    try:
        data = json.loads(body)  # what Starlette's request.json() does, so both read the same document
    except (ValueError, RecursionError):
        return  # FastAPI reports the unreadable body itself (with the position)
    problem = store.unstorable(data)
    if problem:
        field, reason = problem
        raise ApiError(422, "invalid_value", f"{_field_label(field or '请求体')}：{reason}", field or None)


async def get_principal(request: Request, state: StateDep, session: SessionDep) -> store.Principal:
    # async: a token this worker checked less than freshness_seconds ago costs no thread hop; otherwise
    # the lookup runs in the thread pool like any other database call
    header = request.headers.get("authorization")
    if not header:
        return store.ANONYMOUS
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "认证头格式应为 Authorization: Bearer <令牌>", "Authorization")
    found = state.known_principal(token.strip())
    principal = found[0] if found else await run_in_threadpool(state.principal, session, token.strip())
    if principal is None:
        raise ApiError(401, "unauthorized", "令牌无效、已过期或已被吊销", "Authorization")
    return principal


PrincipalDep = Annotated[store.Principal, Depends(get_principal)]


async def require_signed_in(principal: PrincipalDep) -> store.Principal:
    if principal.role == "anonymous":
        raise ApiError(401, "unauthorized", "需要登录：请在 Authorization 头中提供令牌", "Authorization")
    return principal


async def require_staff(principal: Annotated[store.Principal, Depends(require_signed_in)]) -> store.Principal:
    if not principal.is_staff:
        raise ApiError(403, "forbidden", "仅限工作人员使用")
    return principal


async def require_admin(principal: Annotated[store.Principal, Depends(require_signed_in)]) -> store.Principal:
    if principal.role != "admin":
        raise ApiError(403, "forbidden", "需要管理员权限")
    return principal


SignedIn = Annotated[store.Principal, Depends(require_signed_in)]
Staff = Annotated[store.Principal, Depends(require_staff)]
Admin = Annotated[store.Principal, Depends(require_admin)]


def _uscc(raw: str) -> str:
    try:
        return normalize_uscc(raw)
    except UsccError as exc:
        raise ApiError(422, "invalid_uscc", str(exc), "uscc") from None


def _audit(session: Session, principal: store.Principal, request: Request, usccs: Iterable[str | None],
           route: str | None = None) -> None:
    """One audit row per firm a staff member or admin was shown (who, when, which firm, which route)."""
    if not principal.is_staff:
        return
    label = (route or request.url.path)[:200]
    for uscc in dict.fromkeys(usccs) or [None]:
        store.audit(session, principal=principal, uscc=uscc, route=label, method=request.method)


def _enterprise_for(session: Session, principal: store.Principal, raw_uscc: str, request: Request) -> Any:
    """The stored enterprise if this principal may see it; 404 otherwise (never reveals others)."""
    uscc = _uscc(raw_uscc)
    if principal.role == "enterprise" and principal.uscc != uscc:
        raise ApiError(404, "not_found", "未找到该企业")
    row = store.get_enterprise(session, uscc=uscc)
    if row is None:
        raise ApiError(404, "not_found", "未找到该企业")
    if principal.is_staff:
        _audit(session, principal, request, [uscc])
        session.commit()
    return row


def _as_of(value: dt.date | None) -> dt.date:
    return value or dt.date.today()


# ---- request body schemas (documentation; validation is parse_profile / Policy, with Chinese errors) ----
def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """A model's JSON schema with its ``$defs`` inlined, so it can stand inside the OpenAPI document."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return walk(copy.deepcopy(defs[ref.rsplit("/", 1)[-1]]))
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)  # type: ignore[no-any-return]


PROFILE_SCHEMA = {**EnterpriseProfile.model_json_schema(), "title": "EnterpriseProfile",
                  "description": "EnterpriseProfile v1（SPEC §2.1）；缺少的字段视为未知"}


def _policy_schema(*, id_required: bool) -> dict[str, Any]:
    schema = _inline_refs(Policy.model_json_schema())
    schema["required"] = [f for f in schema["required"] if f not in ("version", "status") and (id_required or f != "id")]
    schema["properties"]["source"]["properties"]["related_tasks"]["items"].update(minimum=1, maximum=160)
    schema["properties"]["category"]["enum"] = list(CATEGORIES)
    schema["properties"]["benefit_type"]["enum"] = list(BENEFIT_TYPES)
    schema["title"] = "PolicyBody"
    schema["description"] = "政策条目（SPEC §2.2）；version 与 status 由服务分配，保存为新的草稿版本"
    return schema


ProfileBody = Annotated[dict[str, Any], WithJsonSchema(PROFILE_SCHEMA)]
NewPolicyBody = Annotated[dict[str, Any], WithJsonSchema(_policy_schema(id_required=True))]
PolicyVersionBody = Annotated[dict[str, Any], WithJsonSchema(_policy_schema(id_required=False))]


# ---- models -------------------------------------------------------------------------------------
class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class PackageEntry(Open):
    policy_id: str
    title: str
    source_task: int | None
    source_measure: int | None
    category: str
    score: float
    reasons: list[str]
    estimated_value_wan: float | None
    how_to_apply: str


class PossiblyEligible(Open):
    policy_id: str
    source_task: int | None
    source_measure: int | None
    missing: list[str]


class NearMiss(Open):
    policy_id: str
    source_task: int | None
    source_measure: int | None
    unmet: list[str]


class MatchResult(Open):
    enterprise: dict[str, Any]
    package: list[PackageEntry]
    possibly_eligible: list[PossiblyEligible]
    near_misses: list[NearMiss]
    catalog_version: str
    model_id: str | None


EXAMPLE_PROFILE = {
    "uscc": "91320312MA1Q7E3K29", "name": "徐州示例精密机械有限公司", "entity_type": "enterprise",
    "region": "铜山区", "industry_code": "C3484", "employees": 86, "annual_revenue_wan": 4200,
    "total_assets_wan": 3600, "tax_credit_grade": "A", "annual_payroll_wan": 620, "qualifications": ["high_tech"],
    "trade": [], "patents": 3, "flags": [], "needs": "想贷款扩大生产线，专利能不能拿去质押",
}


class MatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"profile": EXAMPLE_PROFILE,
                                                                               "query": "想贷款", "top": 5}]})
    profile: ProfileBody = Field(description="EnterpriseProfile v1 (SPEC §2.1)")
    query: str | None = Field(None, max_length=500, description="补充诉求")
    top: int | None = Field(None, ge=1, le=200)
    as_of: dt.date | None = None


class EnterpriseOut(Open):
    uscc: str
    name: str
    profile: dict[str, Any]
    derived: dict[str, Any]
    updated_at: str
    changed: bool | None = None


class EnterpriseHit(BaseModel):
    uscc: str
    name: str
    region: str | None


class SearchHit(BaseModel):
    kind: str = Field(description="policy | commitment | plan_work")
    policy_id: str
    title: str
    source_task: int | None
    source_measure: int | None
    score: float = Field(description="calibrated relevance in [0, 1], comparable across queries")
    lead_departments: list[str]


class FallbackChannel(BaseModel):
    name: str
    also: str | None
    policy_id: str | None


class FallbackDepartment(BaseModel):
    name: str
    basis_policy_id: str
    basis_title: str
    score: float


class SearchFallback(BaseModel):
    channels: list[FallbackChannel]
    department: FallbackDepartment | None = Field(
        description="on no_match only: the closest remit, when the best entry below the floor is close enough")
    message: str


class SearchOut(BaseModel):
    results: list[SearchHit] = Field(description="entries at or above the relevance floor, best first")
    no_match: bool = Field(description="true when no entry reaches the floor (results is empty)")
    fallback: SearchFallback
    catalog_version: str
    model_id: str | None


class PolicySummary(BaseModel):
    policy_id: str
    version: int
    status: str
    title: str
    category: str
    source_task: int | None
    source_measure: int | None
    delivery: str
    kind: str = Field(description="policy（惠企政策）| commitment（服务承诺）| plan_work（政府工作任务）")
    strength: str | None = Field(None, description="policies only: entitlement | selective | procedure | channel")


class PolicyDetail(Open):
    policy_id: str
    current: dict[str, Any] | None
    versions: list[dict[str, Any]]


class ReachItem(BaseModel):
    uscc: str
    name: str
    region: str | None
    size: str | None
    similarity: float | None


class ReachOut(BaseModel):
    policy_id: str
    version: int
    eligible: int
    possibly_eligible: int
    by_region: dict[str, int]
    by_size: dict[str, int]
    page: int
    size: int
    items: list[ReachItem]
    catalog_version: str
    model_id: str | None


class PreviewOut(BaseModel):
    policy_id: str
    draft_version: int
    published_version: int | None
    draft: dict[str, int]
    published: dict[str, int]
    newly_reached: int
    no_longer_reached: int
    sample_newly_reached: list[EnterpriseHit]
    sample_no_longer_reached: list[EnterpriseHit]


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    uscc: str = Field(max_length=40)
    policy_id: str = Field(max_length=80)
    kind: Literal["viewed", "applied", "dismissed", "not_relevant"]
    note: str | None = Field(None, max_length=500)


class VersionOut(BaseModel):
    policy_id: str
    version: int
    status: str


# ---- routes -------------------------------------------------------------------------------------
# Every /v1 route: a token that is sent must be valid (revoked / expired → 401, even where anonymous
# calls are allowed), and hostile values are refused before any handler sees them.
v1 = APIRouter(prefix="/v1", responses=ERRORS, dependencies=[Depends(get_principal), Depends(screen_input)])


def client_of(request: Request, settings: Settings) -> str:
    """The caller's address: the socket peer, or what trusted proxies say in X-Forwarded-For."""
    peer = request.client.host if request.client else "unknown"
    return limits.client_address(peer, request.headers.getlist("x-forwarded-for"), settings.trusted_networks)


#: Routes limited per caller, and whether anonymous callers may reach them at all.
ANONYMOUS_KINDS = ("match", "search")


def check_rate(request: Request, state: ServiceState, principal: store.Principal, kind: str) -> None:
    """Count one call of ``kind`` for this caller in the limiter every worker shares; 429 with
    Retry-After when it does not fit. Anonymous callers are counted per address, token holders per
    token (``token_rate_per_minute``, or the token's own entry in ``token_rate_overrides``)."""
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
        raise ApiError(429, "rate_limited", f"{caller}过于频繁：每分钟最多{limit}次，请{decision.retry_after}秒后再试"
                       f"{advice}", headers={"Retry-After": str(decision.retry_after)})


def limited(kind: str) -> Any:
    """A route dependency: ``check_rate`` for ``kind`` (in the thread pool: it asks the database)."""
    async def rate_limit(request: Request, state: StateDep, principal: PrincipalDep) -> None:
        await run_in_threadpool(check_rate, request, state, principal, kind)

    return Depends(rate_limit)


def _parse_profile(data: Any, field_prefix: str = "", *, as_of: dt.date | None = None) -> EnterpriseProfile:
    """A profile from JSON: JSON types checked strictly, then the model (founding date not after
    ``as_of`` when given); 422 naming the field."""
    try:
        check_json_types(data)
        return parse_profile(data, as_of=as_of)
    except ProfileError as exc:
        raise ApiError(422, "invalid_profile", str(exc), f"{field_prefix}{exc.field}") from None


def _match(state: ServiceState, session: Session, profile_data: Any, *, query: str | None, top: int | None,
           as_of: dt.date) -> dict[str, Any]:
    """The package for a profile given as JSON (validated here), as a dict (the console renders it)."""
    profile = _parse_profile(profile_data, "profile.")
    return state.matcher(session).match(derive(profile, as_of), query=query, top=top)


def _package_response(state: ServiceState, session: Session, content_hash: str, profile: Any, *,
                      query: str | None, top: int | None, as_of: dt.date) -> Response:
    """The package as JSON, computed once per (content, catalog revision, date, query, cut) per worker.

    ``profile`` is a validated :class:`EnterpriseProfile` or a callable that gives one (parsed only
    when the answer is not cached yet).
    """
    revision, matcher = state.current(session)
    query = query.strip() if query else None

    def compute() -> bytes:
        portrait = derive(profile() if callable(profile) else profile, as_of)
        result = matcher.match(portrait, query=query or None, top=top)
        return MatchResult.model_validate(result).model_dump_json().encode()

    body = state.package((content_hash, revision, matcher.model_id, as_of, query, top), compute)
    return Response(content=body, media_type="application/json")


@v1.post("/match", response_model=MatchResult, tags=["企业"], summary="政策计算器：匹配一家企业的政策套餐（不保存）",
         dependencies=[limited("match")])
def match(body: MatchRequest, request: Request, state: StateDep, session: SessionDep,
          principal: PrincipalDep) -> Response:
    when = _as_of(body.as_of)
    profile = _parse_profile(body.profile, "profile.", as_of=when)
    return _package_response(state, session, store.canonical_hash(profile.stated()), profile, query=body.query,
                             top=body.top, as_of=when)


def _enterprise_out(row: Any, changed: bool | None = None) -> dict[str, Any]:
    portrait = derive(parse_profile(row.profile), dt.date.today())
    derived = {k: v for k, v in portrait.to_json().items() if k not in row.profile}
    return {"uscc": row.uscc, "name": row.name, "profile": row.profile, "derived": derived,
            "updated_at": row.updated_at.isoformat(), "changed": changed}


@v1.put("/enterprises/{uscc}", response_model=EnterpriseOut, tags=["企业"], summary="保存或更新企业画像")
def put_enterprise(uscc: str, body: ProfileBody, request: Request, session: SessionDep,
                   principal: SignedIn) -> dict[str, Any]:
    code = _uscc(uscc)
    if principal.role == "enterprise" and principal.uscc != code:
        raise ApiError(404, "not_found", "未找到该企业")
    profile = _parse_profile(body, as_of=dt.date.today())
    if profile.uscc != code:
        raise ApiError(422, "uscc_mismatch", f"路径中的统一社会信用代码{code}与画像中的{profile.uscc}不一致", "uscc")
    row, changed = store.upsert_enterprise(session, profile=profile)
    _audit(session, principal, request, [code])
    session.commit()
    session.refresh(row)
    return _enterprise_out(row, changed)


@v1.get("/enterprises/{uscc}", response_model=EnterpriseOut, tags=["企业"], summary="查看企业画像")
def get_enterprise(uscc: str, request: Request, session: SessionDep, principal: SignedIn) -> dict[str, Any]:
    return _enterprise_out(_enterprise_for(session, principal, uscc, request))


@v1.get("/enterprises/{uscc}/package", response_model=MatchResult, tags=["企业"], summary="企业的政策套餐",
        dependencies=[limited("package")])
def get_package(uscc: str, request: Request, state: StateDep, session: SessionDep, principal: SignedIn,
                query: Annotated[str | None, Query(max_length=500)] = None,
                top: Annotated[int | None, Query(ge=1, le=200)] = None,
                as_of: dt.date | None = None) -> Response:
    row = _enterprise_for(session, principal, uscc, request)
    return _package_response(state, session, row.content_hash, lambda: parse_profile(row.profile), query=query,
                             top=top, as_of=_as_of(as_of))


@v1.get("/enterprises", response_model=list[EnterpriseHit], tags=["工作人员"], summary="按名称片段或统一社会信用代码查找企业")
def find_enterprises(request: Request, session: SessionDep, principal: Staff,
                     q: Annotated[str, Query(min_length=1, max_length=100)],
                     limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[dict[str, Any]]:
    rows = store.search_enterprises(session, q=q, limit=limit)
    _audit(session, principal, request, [r.uscc for r in rows], route=f"{request.url.path}?q={q.strip()[:50]}")
    session.commit()
    return [describe_enterprise(r) for r in rows]


def _summary(row: Any) -> dict[str, Any]:
    d = row.data
    return {"policy_id": row.policy_id, "version": row.version, "status": row.status, "title": d["title"],
            "category": d["category"], "source_task": d["source"].get("task_no"),
            "source_measure": d["source"].get("measure_no"), "delivery": d.get("delivery", "proactive"),
            "kind": d.get("kind", "policy"), "strength": d.get("strength")}


@v1.get("/policies", response_model=list[PolicySummary], tags=["政策"], summary="政策目录（现行版本）")
def list_policies(session: SessionDep) -> list[dict[str, Any]]:
    return [_summary(r) for r in store.published_versions(session)]


@v1.get("/policies/search", response_model=SearchOut, tags=["政策"], summary="按诉求检索全计划条目（校准相关度；无对应条目时 no_match 与求助渠道）",
        dependencies=[limited("search")])
def search_policies(state: StateDep, session: SessionDep,
                    q: Annotated[str, Query(min_length=1, max_length=MAX_SEARCH_CHARS)],
                    top: Annotated[int, Query(ge=1, le=50)] = 10) -> dict[str, Any]:
    if not q.strip():
        raise ApiError(422, "invalid_query", "查询内容不能为空", "q")
    matcher = state.matcher(session)
    return {**search_answer(matcher, q, top=top), "catalog_version": matcher.catalog.version,
            "model_id": matcher.model_id}


def _visible_versions(session: Session, principal: store.Principal, policy_id: str) -> list[Any]:
    """The versions of a policy this caller may know of: all for staff; for anyone else the drafts are
    absent (a policy that only has drafts does not exist for them — every route answers 404 alike)."""
    rows = store.policy_versions(session, policy_id=policy_id)
    return rows if principal.is_staff else [r for r in rows if r.status != "draft"]


@v1.get("/policies/{policy_id}", response_model=PolicyDetail, tags=["政策"], summary="政策详情与版本历史")
def get_policy(policy_id: str, session: SessionDep, principal: PrincipalDep) -> dict[str, Any]:
    visible = _visible_versions(session, principal, policy_id)
    if not visible:
        raise ApiError(404, "not_found", f"未找到政策“{policy_id}”")
    current = next((r.data for r in visible if r.status == "published"), None)
    history = [{"version": r.version, "status": r.status, "origin": r.origin, "created_at": r.created_at.isoformat(),
                "updated_at": r.updated_at.isoformat(), **({"data": r.data} if principal.is_staff else {})}
               for r in visible]
    return {"policy_id": policy_id, "current": current, "versions": history}


def _reach(state: ServiceState, session: Session, policy: Policy, as_of: dt.date) -> tuple[np.ndarray, Any]:
    if not policy.offered:  # a commitment or plan work has no rule: it reaches no firm
        raise ApiError(409, "not_a_policy",
                       f"“{policy.title}”是{policy.kind_label}，不是企业申请享受的政策，没有适用企业名单")
    population = state.population(session, as_of)
    result = RuleEngine([policy]).evaluate(population.batch, as_of, near_misses=False)
    return result.status[0], population


@v1.get("/policies/{policy_id}/enterprises", response_model=ReachOut, tags=["工作人员"],
        summary="反向匹配：该政策应告知的企业（政府主动送）", dependencies=[limited("reach")])
def policy_enterprises(policy_id: str, state: StateDep, session: SessionDep, principal: Staff, request: Request,
                       page: Annotated[int, Query(ge=1, le=100_000)] = 1,
                       size: Annotated[int, Query(ge=1, le=200)] = 50,
                       as_of: dt.date | None = None) -> dict[str, Any]:
    matcher = state.matcher(session)
    entry = matcher.catalog.entries.get(policy_id)
    if entry is not None and not entry.offered:  # a commitment or plan work: findable, never matched to firms
        _reach(state, session, entry, _as_of(as_of))  # says so (409 not_a_policy)
    if policy_id not in matcher.catalog.policies:
        raise ApiError(404, "not_found", f"未找到现行政策“{policy_id}”")
    policy = matcher.catalog[policy_id]
    when = _as_of(as_of)
    status, population = _reach(state, session, policy, when)
    eligible = status == ELIGIBLE
    rows = np.flatnonzero(eligible)
    sim = None
    if matcher.retriever.embedder is not None and len(rows):
        from matching.reverse import rank_eligible

        index = state.enterprise_index(population)
        sim = index.similarity(matcher.retriever.embedder.embed([dense_passage(policy)], "query"))
        rows = rank_eligible(eligible, sim, population.usccs)
    counts = sizes_and_regions(population, np.flatnonzero(eligible))
    start = (page - 1) * size
    page_rows = rows[start:start + size]
    from matching.columns import values

    items = [{"uscc": population.usccs[i], "name": population.names[i],
              "region": None if population.batch.columns["region"][i] < 0 else values("region")[population.batch.columns["region"][i]],
              "size": None if population.batch.columns["size"][i] < 0 else values("size")[population.batch.columns["size"][i]],
              "similarity": None if sim is None else round(float(sim[i]), 4)} for i in page_rows]
    _audit(session, principal, request, [item["uscc"] for item in items])
    session.commit()
    return {"policy_id": policy_id, "version": policy.version, "eligible": int(eligible.sum()),
            "possibly_eligible": int((status == UNKNOWN).sum()), "by_region": counts["region"],
            "by_size": counts["size"], "page": page, "size": size, "items": items,
            "catalog_version": matcher.catalog.version, "model_id": matcher.model_id}


def _check_formula(formula: str) -> None:
    """A value-estimate formula that parses, is short, and whose numbers stay inside float range —
    otherwise a published policy would fail every match that evaluates it."""
    field = "benefit.estimate.formula"
    if len(formula) > MAX_FORMULA_CHARS:
        raise ApiError(422, "invalid_policy", f"{field}：估值公式过长（最多{MAX_FORMULA_CHARS}字符）", field)
    try:
        tree = parse_formula(formula).tree
    except FormulaError:
        return  # the model reports it with its reason
    except (RecursionError, MemoryError, SyntaxError):
        raise ApiError(422, "invalid_policy", f"{field}：估值公式嵌套过深", field) from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            try:
                number = float(node.value)
            except OverflowError:
                number = math.inf
            if not math.isfinite(number) or abs(number) > MAX_FORMULA_CONSTANT:
                raise ApiError(422, "invalid_policy",
                               f"{field}：公式中的常数超出范围（绝对值不能超过{MAX_FORMULA_CONSTANT:.0e}）", field)


def _policy_message(err: Any, loc: str) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    last = loc.rsplit(".", 1)[-1]
    if kind == "value_error" and last in ("category", "benefit_type"):
        table = CATEGORIES if last == "category" else BENEFIT_TYPES
        allowed = "、".join(f"{k}（{v}）" for k, v in table.items())
        return f"取值无效：{err.get('input')!r}，应为 {allowed}"
    if kind == "string_pattern_mismatch" and last == "id":
        return "政策ID只能由小写字母、数字和连字符组成，如 union-fee-refund-small-micro"
    if kind == "too_short":
        return "不能为空"
    if kind == "value_error":
        return f"取值无效：{ctx.get('error', err['msg'])}"
    return _chinese(err)


def _validate_policy(body: dict[str, Any], policy_id: str | None) -> Policy:
    if policy_id is not None and body.get("id", policy_id) != policy_id:
        raise ApiError(422, "id_mismatch", f"路径中的政策ID“{policy_id}”与内容中的“{body.get('id')}”不一致", "id")
    # version and status are assigned by the service (a new draft numbered newest + 1); sent ones are
    # only checked for type, so a policy fetched from GET /v1/policies/{id} can be sent back edited
    data = {**body, **({"id": policy_id} if policy_id else {}), "version": body.get("version", 1),
            "status": body.get("status", "draft")}
    try:
        parse_rule(data.get("eligibility"))
    except RuleError as exc:
        raise ApiError(422, "invalid_rule", f"规则错误（{exc.path or 'eligibility'}）：{exc}",
                       f"eligibility.{exc.path}".rstrip(".")) from None
    benefit = data.get("benefit")
    estimate = benefit.get("estimate") if isinstance(benefit, dict) else None
    if isinstance(estimate, dict) and isinstance(estimate.get("formula"), str):
        _check_formula(estimate["formula"])
    try:
        # strict JSON validation: "5" is not a task number and true is not a version
        return Policy.model_validate_json(json.dumps(data, ensure_ascii=False), strict=True)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".") or "policy"
        raise ApiError(422, "invalid_policy", f"{loc}：{_policy_message(err, loc)}", loc) from None


@v1.post("/policies", response_model=VersionOut, status_code=201, tags=["管理员"], summary="新建政策（草稿）")
def create_policy(body: NewPolicyBody, session: SessionDep, principal: Admin) -> dict[str, Any]:
    policy = _validate_policy(body, None)
    if store.policy_versions(session, policy_id=policy.id):
        raise ApiError(409, "exists", f"政策“{policy.id}”已存在，请用 PUT /v1/policies/{policy.id} 新增版本", "id")
    row = store.add_draft(session, policy=policy, author=principal.label)
    session.commit()
    return {"policy_id": row.policy_id, "version": row.version, "status": row.status}


@v1.put("/policies/{policy_id}", response_model=VersionOut, status_code=201, tags=["管理员"],
        summary="修改政策：保存为新的草稿版本")
def update_policy(policy_id: str, body: PolicyVersionBody, session: SessionDep, principal: Admin) -> dict[str, Any]:
    if not store.policy_versions(session, policy_id=policy_id):
        raise ApiError(404, "not_found", f"未找到政策“{policy_id}”")
    policy = _validate_policy(body, policy_id)
    row = store.add_draft(session, policy=policy, author=principal.label)
    session.commit()
    return {"policy_id": row.policy_id, "version": row.version, "status": row.status}


def _version(session: Session, policy_id: str, version: int | None, status: str | None = None) -> Any:
    rows = store.policy_versions(session, policy_id=policy_id)
    if version is not None:
        rows = [r for r in rows if r.version == version]
    if status is not None:
        rows = [r for r in rows if r.status == status]
    if not rows:
        what = f"版本{version}" if version is not None else {"draft": "草稿", "published": "现行版本"}.get(status or "", "")
        raise ApiError(404, "not_found", f"未找到政策“{policy_id}”的{what}")
    return rows[-1]


@v1.post("/policies/{policy_id}/preview", response_model=PreviewOut, tags=["管理员"],
         summary="发布前预览：草稿与现行版本分别触达哪些企业", dependencies=[limited("preview")])
def preview(policy_id: str, state: StateDep, session: SessionDep, principal: Admin, request: Request,
            version: int | None = None, as_of: dt.date | None = None) -> dict[str, Any]:
    draft_row = _version(session, policy_id, version, None if version is not None else "draft")
    draft = Policy.model_validate({**draft_row.data, "status": "published"})
    when = _as_of(as_of)
    draft_status, population = _reach(state, session, draft, when)
    published_rows = [r for r in store.policy_versions(session, policy_id=policy_id) if r.status == "published"]
    if published_rows:
        current = Policy.model_validate(published_rows[-1].data)
        current_status, _ = _reach(state, session, current, when)
    else:
        current_status = np.zeros_like(draft_status)
    new = np.flatnonzero((draft_status == ELIGIBLE) & (current_status != ELIGIBLE))
    lost = np.flatnonzero((draft_status != ELIGIBLE) & (current_status == ELIGIBLE))

    def counts(s: np.ndarray) -> dict[str, int]:
        return {"eligible": int((s == ELIGIBLE).sum()), "possibly_eligible": int((s == UNKNOWN).sum())}

    from matching.columns import values

    regions = population.batch.columns["region"]

    def sample(rows: np.ndarray) -> list[dict[str, Any]]:
        return [{"uscc": population.usccs[i], "name": population.names[i],
                 "region": None if regions[i] < 0 else values("region")[regions[i]]} for i in rows[:20]]

    shown = [population.usccs[i] for i in [*new[:20], *lost[:20]]]
    _audit(session, principal, request, shown)
    session.commit()
    return {"policy_id": policy_id, "draft_version": draft_row.version,
            "published_version": published_rows[-1].version if published_rows else None,
            "draft": counts(draft_status), "published": counts(current_status), "newly_reached": len(new),
            "no_longer_reached": len(lost), "sample_newly_reached": sample(new), "sample_no_longer_reached": sample(lost)}


@v1.post("/policies/{policy_id}/versions/{version}/publish", response_model=VersionOut, tags=["管理员"],
         summary="发布某一版本（原现行版本自动废止）")
def publish(policy_id: str, version: int, state: StateDep, session: SessionDep, principal: Admin) -> dict[str, Any]:
    row = _version(session, policy_id, version)
    if row.status == "published":
        raise ApiError(409, "already_published", f"版本{version}已是现行版本")
    store.set_status(session, row=row, status="published")
    session.commit()
    state.invalidate()  # this worker answers with the new catalog at once (others within freshness_seconds)
    return {"policy_id": policy_id, "version": row.version, "status": row.status}


@v1.post("/policies/{policy_id}/retire", response_model=VersionOut, tags=["管理员"], summary="废止现行版本")
def retire(policy_id: str, state: StateDep, session: SessionDep, principal: Admin) -> dict[str, Any]:
    row = _version(session, policy_id, None, "published")
    store.set_status(session, row=row, status="retired")
    session.commit()
    state.invalidate()
    return {"policy_id": policy_id, "version": row.version, "status": row.status}


@v1.post("/feedback", status_code=201, tags=["企业"], summary="反馈：已查看、已申请、不感兴趣、不相关")
def feedback(body: FeedbackIn, request: Request, state: StateDep, session: SessionDep,
             principal: SignedIn) -> dict[str, Any]:
    _enterprise_for(session, principal, body.uscc, request)
    if not _visible_versions(session, principal, body.policy_id):  # an unpublished draft is absent too
        raise ApiError(404, "not_found", f"未找到政策“{body.policy_id}”", "policy_id")
    row = store.add_feedback(session, principal=principal, uscc=_uscc(body.uscc), policy_id=body.policy_id,
                             kind=body.kind, note=body.note)
    session.commit()
    return {"id": row.id, "kind": row.kind}


# ---- app ----------------------------------------------------------------------------------------
def create_app(settings: Settings | None = None, state: ServiceState | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.service = state or ServiceState.start(settings)
        app.state.limiter = limits.RateLimiter(app.state.service.engine)
        yield
        app.state.service.engine.dispose()

    app = FastAPI(title="policyfit 惠企政策双向适配", version="1.0",
                  description="企业画像 × 政策目录的双向匹配（徐委办〔2023〕37号 附件2 第三项）。错误统一为 {code, message, field}。",
                  lifespan=lifespan, docs_url=None, redoc_url=None, swagger_ui_oauth2_redirect_url=None)
    # anonymous access is limited to the documented public routes: /docs and /openapi.json, no /redoc;
    # /docs is Swagger UI from files inside the installed packages (works without internet)
    ops.mount_docs(app, title="policyfit 惠企政策双向适配")
    app.include_router(v1)
    from service.http.console import mount_console  # HTML: staff console and public calculator

    mount_console(app)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES, body_timeout=settings.body_timeout_seconds)
    app.add_middleware(Metrics)
    app.add_middleware(ops.SecurityHeaders)  # outermost of ours: the answers of the others get the headers too

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, exc.field, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # answered by Starlette's outermost ServerErrorMiddleware, outside SecurityHeaders: headers set here
        return _error(500, "internal_error", "服务内部错误，请稍后重试；如持续出现请联系管理员",
                      headers=ops.PROTECTIVE_HEADERS)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, message = _HTTP_ERRORS.get(exc.status_code, ("http_error", "请求无法处理"))
        return _error(exc.status_code, code, message, headers=exc.headers)

    @app.exception_handler(IntegrityError)
    async def _conflict(_: Request, exc: Exception) -> JSONResponse:
        return _error(409, "conflict", "数据刚被另一请求修改（如同时新建同一政策），请刷新后重试")

    @app.exception_handler(DataError)
    async def _bad_data(_: Request, exc: Exception) -> JSONResponse:
        return _error(422, "invalid_value", "数据超出数据库允许的长度、范围或格式，请检查输入")

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0]
        if err["type"] == "json_invalid":  # the location is a character offset, not a field
            where = err["loc"][-1] if isinstance(err["loc"][-1], int) else "?"
            return _error(422, "invalid_request", f"请求体不是有效的JSON（第{where}个字符附近）")
        loc = [str(p) for p in err["loc"] if p not in ("body", "query", "path", "header")]
        field = ".".join(loc) or None
        return _error(422, "invalid_request", f"{_field_label(field) if field else '请求体'}：{_chinese(err)}", field)

    @app.exception_handler(OperationalError)
    @app.exception_handler(DBAPIError)
    @app.exception_handler(PoolTimeout)
    async def _db_down(_: Request, exc: Exception) -> JSONResponse:
        return _error(503, "database_unavailable", "数据库暂时不可用，请稍后重试")

    @app.get("/healthz", tags=["运维"], summary="进程存活")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["运维"], summary="就绪：数据库与索引", responses={503: {"model": ErrorBody}})
    def readyz(state: StateDep) -> Any:
        try:
            with Session(state.engine) as session:
                store.catalog_revision(session)  # a real round trip: ready means the database answers now
                matcher = state.matcher(session)
        except (OperationalError, DBAPIError, PoolTimeout):
            return _error(503, "database_unavailable", "数据库暂时不可用")
        return {"status": "ready", "catalog_version": matcher.catalog.version, "model_id": matcher.model_id,
                "policies": len(matcher.catalog.policies), "entries": len(matcher.catalog.entries)}

    @app.get("/metrics", tags=["运维"], summary="Prometheus 指标（多工作进程汇总）", response_class=PlainTextResponse,
             responses={403: {"model": ErrorBody}})
    def metrics(request: Request) -> Response:
        if not ops.metrics_allowed(request, settings):
            return _error(403, "forbidden", "无权读取运维指标：地址不在 POLICYFIT_METRICS_ALLOW 内，且未提供指标令牌")
        return ops.metrics_response()

    return app


def _chinese(err: dict[str, Any]) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    return {
        "missing": "必填",
        "int_parsing": "应为整数",
        "int_type": "应为整数",
        "float_parsing": "应为数字",
        "string_type": "应为文本",
        "date_parsing": "应为日期（YYYY-MM-DD）",
        "date_from_datetime_parsing": "应为日期（YYYY-MM-DD）",
        "json_invalid": "不是有效的JSON",
        "dict_type": "应为JSON对象",
        "model_attributes_type": "应为JSON对象",
        "extra_forbidden": "未知字段",
        "literal_error": f"取值应为 {ctx.get('expected', '')}",
        "string_too_long": f"过长（最多{ctx.get('max_length')}字）",
        "string_too_short": "不能为空",
        "too_short": "不能为空",
        "too_long": f"过长（最多{ctx.get('max_length')}项）",
        "greater_than_equal": f"不能小于{ctx.get('ge')}",
        "greater_than": f"应大于{ctx.get('gt')}",
        "less_than_equal": f"不能大于{ctx.get('le')}",
        "less_than": f"应小于{ctx.get('lt')}",
        "int_from_float": "应为整数",
        "float_type": "应为数字",
        "bool_type": "应为 true 或 false",
        "bool_parsing": "应为 true 或 false",
        "list_type": "应为列表",
        "tuple_type": "应为列表",
        "date_type": "应为日期（YYYY-MM-DD）",
        "date_from_datetime_inexact": "应为日期（YYYY-MM-DD），不含时间",
        "finite_number": "应为有限的数字",
        "missing_argument": "必填",
        "model_type": "应为JSON对象",
        "string_pattern_mismatch": "格式不正确",
        "enum": f"取值应为 {ctx.get('expected', '')}",
        "value_error": f"取值无效：{ctx.get('error', '')}",
    }.get(kind, f"格式不正确（{kind}）")

