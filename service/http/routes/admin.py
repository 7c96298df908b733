"""/v1 routes for admins: new policies and new versions as drafts, the preview of a draft's reach, publishing
and retiring."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import Request

from service.app import catalog_admin, reach
from service.http.deps import Admin, SessionDep, StateDep, access_of, limited, v1_router
from service.http.schemas import NewPolicyBody, PolicyVersionBody, PreviewOut, VersionOut

router = v1_router()


@router.post("/policies", response_model=VersionOut, status_code=201, tags=["admin"], operation_id="createPolicy",
             summary="新建政策（草稿）")
def create_policy(body: NewPolicyBody, session: SessionDep, principal: Admin) -> dict[str, Any]:
    return catalog_admin.create_policy(session, principal, body)


@router.put("/policies/{policy_id}", response_model=VersionOut, status_code=201, tags=["admin"],
            operation_id="updatePolicy", summary="修改政策：保存为新的草稿版本")
def update_policy(policy_id: str, body: PolicyVersionBody, session: SessionDep, principal: Admin) -> dict[str, Any]:
    return catalog_admin.update_policy(session, principal, policy_id, body)


@router.post("/policies/{policy_id}/preview", response_model=PreviewOut, tags=["admin"], operation_id="previewPolicy",
             summary="发布前预览：草稿与现行版本分别触达哪些企业", dependencies=[limited("preview")])
def preview(policy_id: str, state: StateDep, session: SessionDep, principal: Admin, request: Request,
            version: int | None = None, as_of: dt.date | None = None) -> dict[str, Any]:
    return reach.preview(state, session, access_of(request, principal), policy_id, version=version,
                         as_of=as_of or dt.date.today())


@router.post("/policies/{policy_id}/versions/{version}/publish", response_model=VersionOut, tags=["admin"],
             operation_id="publishPolicy", summary="发布某一版本（原现行版本自动废止）")
def publish(policy_id: str, version: int, state: StateDep, session: SessionDep, principal: Admin) -> dict[str, Any]:
    return catalog_admin.publish(state, session, policy_id, version)


@router.post("/policies/{policy_id}/retire", response_model=VersionOut, tags=["admin"], operation_id="retirePolicy",
             summary="废止现行版本")
def retire(policy_id: str, state: StateDep, session: SessionDep, principal: Admin) -> dict[str, Any]:
    return catalog_admin.retire(state, session, policy_id)
