"""Errors as the JSON API answers them: ``{code, message, field}`` with the HTTP status of the code.

Use cases raise :class:`~service.app.errors.AppError`; FastAPI's own errors (validation, unknown routes,
the body limits) and database failures are mapped here too, so every answer has the same shape.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout  # every pooled connection busy for pool_timeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from policies.messages import pydantic_message
from profiles.fields import FIELDS
from service.app.errors import AppError, ErrorCode
from service.http import ops

#: The largest request body accepted. A profile is a few KB and a policy some tens of KB; anything
#: near a megabyte is a mistake or an attack and is refused before it is read (413).
MAX_BODY_BYTES = 256 * 1024

#: The HTTP status of every error code.
STATUS: dict[ErrorCode, int] = {
    ErrorCode.BAD_REQUEST: 400, ErrorCode.INVALID_REQUEST: 422, ErrorCode.INVALID_VALUE: 422,
    ErrorCode.INVALID_QUERY: 422, ErrorCode.PAYLOAD_TOO_LARGE: 413, ErrorCode.REQUEST_TIMEOUT: 408,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415, ErrorCode.METHOD_NOT_ALLOWED: 405, ErrorCode.NOT_ACCEPTABLE: 406,
    ErrorCode.HTTP_ERROR: 400, ErrorCode.UNAUTHORIZED: 401, ErrorCode.FORBIDDEN: 403, ErrorCode.RATE_LIMITED: 429,
    ErrorCode.INVALID_PROFILE: 422, ErrorCode.INVALID_USCC: 422, ErrorCode.USCC_MISMATCH: 422,
    ErrorCode.INVALID_POLICY: 422, ErrorCode.INVALID_RULE: 422, ErrorCode.ID_MISMATCH: 422, ErrorCode.EXISTS: 409,
    ErrorCode.ALREADY_PUBLISHED: 409, ErrorCode.NOT_A_POLICY: 409, ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409, ErrorCode.DATABASE_UNAVAILABLE: 503, ErrorCode.INTERNAL_ERROR: 500,
}

#: Errors Starlette raises itself (unknown route, wrong method, the body limits), by status.
HTTP_ERRORS: dict[int, tuple[ErrorCode, str]] = {
    400: (ErrorCode.BAD_REQUEST, "请求体无法解析（数字过长、嵌套过深或编码错误）"),
    401: (ErrorCode.UNAUTHORIZED, "需要登录"),
    403: (ErrorCode.FORBIDDEN, "没有权限"),
    404: (ErrorCode.NOT_FOUND, "未找到该接口，请核对路径（接口文档见 /docs）"),
    405: (ErrorCode.METHOD_NOT_ALLOWED, "该接口不支持此请求方法"),
    406: (ErrorCode.NOT_ACCEPTABLE, "无法提供所要求的响应格式"),
    413: (ErrorCode.PAYLOAD_TOO_LARGE, f"请求体过大：最多{MAX_BODY_BYTES // 1024}KB"),
    415: (ErrorCode.UNSUPPORTED_MEDIA_TYPE, "请求体格式应为 application/json"),
    408: (ErrorCode.REQUEST_TIMEOUT, "请求体发送超时，请重试"),
}


class ErrorBody(BaseModel):
    code: ErrorCode = Field(examples=["invalid_profile"])
    message: str = Field(examples=["employees（从业人员）不能小于0"])
    field: str | None = Field(None, examples=["employees"])


#: The error answers every /v1 operation documents.
ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorBody} for s in (400, 401, 403, 404, 408, 409, 413, 415, 422, 429, 503)
}
ERRORS[429] = {"model": ErrorBody, "description": "调用过于频繁（按客户端或令牌限流）",
               "headers": {"Retry-After": {"description": "多少秒后可再次调用", "schema": {"type": "integer"}}}}


def error_response(code: ErrorCode, message: str, field: str | None = None, *, status: int | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status or STATUS[code], content={"code": code.value, "message": message,
                                                                     "field": field}, headers=headers)


def app_error_response(exc: AppError) -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return error_response(exc.code, exc.message, exc.field, headers=headers)


def field_label(field: str) -> str:
    """``employees`` → ``employees（从业人员）``; the last segment of a dotted path decides the label."""
    last = field.rsplit(".", 1)[-1].split("[", 1)[0]
    return f"{field}（{FIELDS[last].label}）" if last in FIELDS else field


def validation_message(err: dict[str, Any]) -> tuple[str, str | None]:
    """A request validation error (FastAPI's) as (Chinese message naming the field, field)."""
    if err["type"] == "json_invalid":  # the location is a character offset, not a field
        where = err["loc"][-1] if isinstance(err["loc"][-1], int) else "?"
        return f"请求体不是有效的JSON（第{where}个字符附近）", None
    loc = [str(p) for p in err["loc"] if p not in ("body", "query", "path", "header")]
    field = ".".join(loc) or None
    text = pydantic_message({**err, "loc": tuple(loc)}, json_body=True)
    return f"{field_label(field) if field else '请求体'}：{text}", field


def install(app: FastAPI) -> None:
    """Every error of ``app`` answered as ``{code, message, field}``."""

    @app.exception_handler(AppError)
    async def _app_error(_: Request, exc: AppError) -> JSONResponse:
        return app_error_response(exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # answered by Starlette's outermost ServerErrorMiddleware, outside SecurityHeaders: headers set here
        return error_response(ErrorCode.INTERNAL_ERROR, "服务内部错误，请稍后重试；如持续出现请联系管理员",
                              headers=ops.PROTECTIVE_HEADERS)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, message = HTTP_ERRORS.get(exc.status_code, (ErrorCode.HTTP_ERROR, "请求无法处理"))
        return error_response(code, message, status=exc.status_code, headers=dict(exc.headers or {}) or None)

    @app.exception_handler(IntegrityError)
    async def _conflict(_: Request, exc: Exception) -> JSONResponse:
        return error_response(ErrorCode.CONFLICT, "数据刚被另一请求修改（如同时新建同一政策），请刷新后重试")

    @app.exception_handler(DataError)
    async def _bad_data(_: Request, exc: Exception) -> JSONResponse:
        return error_response(ErrorCode.INVALID_VALUE, "数据超出数据库允许的长度、范围或格式，请检查输入")

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, field = validation_message(exc.errors()[0])
        return error_response(ErrorCode.INVALID_REQUEST, message, field)

    @app.exception_handler(OperationalError)
    @app.exception_handler(DBAPIError)
    @app.exception_handler(PoolTimeout)
    async def _db_down(_: Request, exc: Exception) -> JSONResponse:
        return error_response(ErrorCode.DATABASE_UNAVAILABLE, "数据库暂时不可用，请稍后重试")
