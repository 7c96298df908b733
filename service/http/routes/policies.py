"""/v1 routes about the catalog: the list in force, search over the whole plan, one entry with its
versions, and (staff) the firms a policy reaches."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import Query, Request

from service.app import catalog_admin, reach
from service.http.deps import PrincipalDep, SessionDep, Staff, StateDep, access_of, limited, v1_router
from service.http.schemas import PolicyDetail, PolicySummary, ReachOut, SearchOut

#: A search query is what a caller says on the hotline; a new long query costs CPU in the embedder
#: (~0.5 s for 500 characters against ~0.07 s for 100), so it is capped well below that.
MAX_SEARCH_CHARS = 200

router = v1_router()


@router.get("/policies", response_model=list[PolicySummary], tags=["policies"], operation_id="listPolicies",
            summary="政策目录（现行版本）")
def list_policies(session: SessionDep) -> list[dict[str, Any]]:
    return catalog_admin.list_policies(session)


# before /policies/{policy_id}: "search" is no policy id
@router.get("/policies/search", response_model=SearchOut, tags=["policies"], operation_id="searchPolicies",
            summary="按诉求检索全计划条目（校准相关度；无对应条目时 no_match 与求助渠道）",
            dependencies=[limited("search")])
def search_policies(state: StateDep, session: SessionDep,
                    q: Annotated[str, Query(min_length=1, max_length=MAX_SEARCH_CHARS)],
                    top: Annotated[int, Query(ge=1, le=50)] = 10) -> dict[str, Any]:
    return catalog_admin.search_policies(state, session, q, top=top)


@router.get("/policies/{policy_id}", response_model=PolicyDetail, tags=["policies"], operation_id="getPolicy",
            summary="政策详情与版本历史")
def get_policy(policy_id: str, session: SessionDep, principal: PrincipalDep) -> dict[str, Any]:
    return catalog_admin.policy_detail(session, principal, policy_id)


@router.get("/policies/{policy_id}/enterprises", response_model=ReachOut, tags=["staff"],
            operation_id="getPolicyEnterprises", summary="反向匹配：该政策应告知的企业（政府主动送）",
            dependencies=[limited("reach")])
def policy_enterprises(policy_id: str, state: StateDep, session: SessionDep, principal: Staff, request: Request,
                       page: Annotated[int, Query(ge=1, le=100_000)] = 1,
                       size: Annotated[int, Query(ge=1, le=200)] = 50,
                       as_of: dt.date | None = None) -> dict[str, Any]:
    return reach.policy_enterprises(state, session, access_of(request, principal), policy_id, page=page, size=size,
                                    as_of=as_of or dt.date.today())
