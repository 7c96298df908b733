"""/v1 routes about enterprises: the policy calculator, a firm's stored profile and package, finding firms
(staff), feedback. Thin: each calls one use case of :mod:`service.app`."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.responses import Response

from service.app import enterprises, packages
from service.http.deps import (
    PrincipalDep,
    SessionDep,
    SignedIn,
    Staff,
    StateDep,
    access_of,
    limited,
    v1_router,
)
from service.http.schemas import (
    MATCH_DESCRIPTION,
    EnterpriseHit,
    EnterpriseOut,
    FeedbackIn,
    MatchRequest,
    MatchResult,
    ProfileBody,
)

router = v1_router()


def _json(body: bytes) -> Response:
    return Response(content=body, media_type="application/json")


@router.post("/match", response_model=MatchResult, tags=["enterprises"], operation_id="match",
             summary="政策计算器：匹配一家企业的政策套餐（不保存）", description=MATCH_DESCRIPTION,
             dependencies=[limited("match")])
def match(body: MatchRequest, state: StateDep, session: SessionDep, principal: PrincipalDep) -> Response:
    return _json(packages.match_json(state, session, body.profile, query=body.query, top=body.top,
                                     as_of=body.as_of or dt.date.today()))


@router.put("/enterprises/{uscc}", response_model=EnterpriseOut, tags=["enterprises"], operation_id="putEnterprise",
            summary="保存或更新企业画像",
            description="请求体是一份完整的画像陈述：企业令牌记为企业自报（self），坐席或管理员令牌记为热线坐席（hotline），"
                        "替换该来源此前的陈述，再与各部门的数据合并；自报与坐席记录只补缺，不覆盖部门的权威数据，"
                        "不一致处记入 conflicts。返回合并后的画像。")
def put_enterprise(uscc: str, body: ProfileBody, request: Request, session: SessionDep,
                   principal: SignedIn) -> dict[str, Any]:
    return enterprises.save_enterprise(session, access_of(request, principal), uscc, body)


@router.get("/enterprises/{uscc}", response_model=EnterpriseOut, tags=["enterprises"], operation_id="getEnterprise",
            summary="查看企业画像",
            description="合并后的画像（profile）、今天由它推出的信息（derived）、每个字段的来源与数据日期及是否已过期"
                        "（provenance: {字段: {source, source_label, as_of, stale}}），以及各来源的分歧（conflicts）。")
def get_enterprise(uscc: str, request: Request, session: SessionDep, principal: SignedIn) -> dict[str, Any]:
    return enterprises.enterprise_view(enterprises.enterprise_for(session, access_of(request, principal), uscc))


@router.get("/enterprises/{uscc}/package", response_model=MatchResult, tags=["enterprises"],
            operation_id="getPackage", summary="企业的政策套餐", description=MATCH_DESCRIPTION,
            dependencies=[limited("package")])
def get_package(uscc: str, request: Request, state: StateDep, session: SessionDep, principal: SignedIn,
                query: Annotated[str | None, Query(max_length=500)] = None,
                top: Annotated[int | None, Query(ge=1, le=200)] = None,
                as_of: dt.date | None = None) -> Response:
    return _json(enterprises.enterprise_package(state, session, access_of(request, principal), uscc, query=query,
                                                top=top, as_of=as_of or dt.date.today()))


@router.get("/enterprises", response_model=list[EnterpriseHit], tags=["staff"], operation_id="findEnterprises",
            summary="按名称片段或统一社会信用代码查找企业")
def find_enterprises(request: Request, session: SessionDep, principal: Staff,
                     q: Annotated[str, Query(min_length=1, max_length=100)],
                     limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[dict[str, Any]]:
    return enterprises.find_enterprises(session, access_of(request, principal), q=q, limit=limit)


@router.post("/feedback", status_code=201, tags=["enterprises"], operation_id="sendFeedback",
             summary="反馈：已查看、已申请、不感兴趣、不相关")
def feedback(body: FeedbackIn, request: Request, session: SessionDep, principal: SignedIn) -> dict[str, Any]:
    return enterprises.add_feedback(session, access_of(request, principal), uscc=body.uscc,
                                    policy_id=body.policy_id, kind=body.kind, note=body.note)
