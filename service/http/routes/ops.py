"""Operational routes: liveness, readiness (database and indexes), Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlmodel import Session

from service.app.errors import ErrorCode
from service.http import ops
from service.http.deps import StateDep
from service.http.errors import ErrorBody, error_response
from service.store.catalog import catalog_revision

router = APIRouter()


@router.get("/healthz", tags=["ops"], operation_id="healthz", summary="进程存活")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", tags=["ops"], operation_id="readyz", summary="就绪：数据库与页面所需索引",
            responses={503: {"description": "数据库不可用（{code, message, field}），或仍在预热（status: warming 与 progress）"}})
def readyz(state: StateDep) -> Any:
    try:
        with Session(state.engine) as session:
            catalog_revision(session)  # a real round trip: ready means the database answers now
            answer = state.readiness(session)
    except (OperationalError, DBAPIError, PoolTimeout):
        return error_response(ErrorCode.DATABASE_UNAVAILABLE, "数据库暂时不可用")
    return answer if answer["status"] == "ready" else JSONResponse(answer, status_code=503)


@router.get("/metrics", tags=["ops"], operation_id="metrics", summary="Prometheus 指标（多工作进程汇总）",
            response_class=PlainTextResponse, responses={403: {"model": ErrorBody}})
def metrics(request: Request) -> Response:
    if not ops.metrics_allowed(request, request.app.state.settings):
        return error_response(ErrorCode.FORBIDDEN,
                              "无权读取运维指标：地址不在 POLICYFIT_METRICS_ALLOW 内，且未提供指标令牌")
    return ops.metrics_response()
