"""/v1 routes about what became of the policies (staff, admin): recording an outcome, and a policy's uptake — the
funnel eligible → pushed → viewed → applied → granted / refused and 应享未享 (not_yet_granted), by region and size.
Thin: each calls one use case (:mod:`service.app.outcomes`, :mod:`service.app.uptake`)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import Query, Response
from pydantic import BaseModel, ConfigDict, Field

from service.app import outcomes, uptake
from service.http.deps import SessionDep, Staff, StateDep, limited, v1_router

router = v1_router()

Amount = Annotated[float, Field(strict=True)]  # a JSON number; "12.5" as text is refused, as in a JSONL file


class OutcomeIn(BaseModel):
    """One outcome, as a row of an outcome file: checked by the same rules (``policyfit outcomes import``)."""

    model_config = ConfigDict(extra="forbid")
    uscc: str = Field(max_length=40, description="统一社会信用代码（校验位核对）", examples=["91320302MA1N5KQX2Y"])
    policy_id: str = Field(max_length=80, description="政策编号（已发布或已废止的政策）",
                           examples=["guarantee-fee-cap-small-micro-agri"])
    outcome: str = Field(max_length=20, description="applied（已申请）| granted（已兑现）| refused（未获批准）",
                         examples=["granted"])
    amount_wan: Amount | None = Field(None, description="金额（万元），不小于0", examples=[12.5])
    decided_on: str = Field(max_length=40, description="决定日期（申请为提交日期），YYYY-MM-DD，不晚于今天",
                            examples=["2024-05-20"])
    department: str | None = Field(None, max_length=80, description="作出决定的部门", examples=["市财政局"])


class OutcomeOut(BaseModel):
    uscc: str
    policy_id: str
    outcome: Literal["applied", "granted", "refused"]
    outcome_label: str
    amount_wan: float | None
    decided_on: dt.date
    department: str | None
    source: str
    recorded_at: dt.datetime
    result: Literal["created", "updated", "unchanged"] = Field(
        description="created: 新记录；updated: 同一企业、政策、结果和日期的记录被更正（金额或部门）；unchanged: 已有相同记录，未改变任何数据")


class FunnelCounts(BaseModel):
    eligible: int = Field(description="最新夜间快照中符合条件（可享）的企业数")
    pushed: int = Field(description="该政策的推送已送达的企业数")
    viewed: int = Field(description="反馈“已查看”的企业数")
    applied: int = Field(description="最新结果为申请、尚未决定的企业数")
    granted: int = Field(description="最新结果为已兑现的企业数")
    refused: int = Field(description="最新结果为未获批准的企业数")
    not_yet_granted: int = Field(description="应享未享：符合条件，且统计期内既未兑现也未被拒的企业数")


class UptakeOut(BaseModel):
    policy_id: str
    eligible: int = Field(description="最新夜间快照中符合条件（可享）的企业数")
    pushed: int = Field(description="该政策的推送已送达的企业数")
    viewed: int = Field(description="反馈“已查看”的企业数")
    applied: int = Field(description="最新结果为申请、尚未决定的企业数")
    granted: int = Field(description="最新结果为已兑现的企业数")
    refused: int = Field(description="最新结果为未获批准的企业数")
    not_yet_granted: int = Field(description="应享未享：符合条件，且统计期内既未兑现也未被拒的企业数")
    by_region: dict[str, FunnelCounts] = Field(description="按所在地区（未知地区记为“未知”）")
    by_size: dict[str, FunnelCounts] = Field(description="按企业规模（大型、中型、小型、微型、未知）")
    as_of: dt.date = Field(description="统计日（今天）")
    period_days: int = Field(description="应享未享的统计期（天）：此期间内兑现或被拒的企业不计入应享未享")


@router.post("/outcomes", response_model=OutcomeOut, status_code=201, tags=["staff"], operation_id="recordOutcome",
             summary="记录申请或兑现结果（已申请、已兑现、未获批准）",
             description="与 `policyfit outcomes import` 的一行同样校验：统一社会信用代码（校验位）、已发布或已废止的政策编号、"
                         "结果 applied | granted | refused、决定日期 YYYY-MM-DD 且不晚于今天、金额不小于0；错误为 422，"
                         "message 为中文并指明字段。同一企业、政策、结果和决定日期再次记录不改变任何数据（200，"
                         "result=unchanged）；金额或部门不同则更正该记录（200，result=updated）；新记录 201。",
             responses={200: {"model": OutcomeOut, "description": "已有该记录：未改变（unchanged）或已更正（updated）"}})
def record_outcome(body: OutcomeIn, response: Response, session: SessionDep, principal: Staff) -> dict[str, Any]:
    out = outcomes.record_outcome(session, body.model_dump())
    if out["result"] != "created":
        response.status_code = 200
    return out


@router.get("/policies/{policy_id}/uptake", response_model=UptakeOut, tags=["staff"], operation_id="getPolicyUptake",
            summary="政策兑现漏斗与应享未享：符合条件 → 已推送 → 已查看 → 已申请 → 已兑现 / 未获批准",
            description="各级按各自的事实计数（不嵌套）：eligible 为最新夜间快照中可享的企业；pushed 为该政策推送已送达；"
                        "viewed 为反馈已查看；applied / granted / refused 为企业最新的结果（部门导入或接口记录的结果，及企业"
                        "自己反馈的“已申请”）；not_yet_granted（应享未享）为符合条件、且统计期（period_days，默认365天）内"
                        "既未兑现也未被拒的企业。按地区、规模分列。",
            dependencies=[limited("reach")])
def policy_uptake(policy_id: str, state: StateDep, session: SessionDep, principal: Staff,
                  period_days: Annotated[int | None, Query(ge=1, le=3650)] = None) -> dict[str, Any]:
    days = period_days or state.settings.uptake_period_days
    return uptake.uptake(session, policy_id, as_of=dt.date.today(), period_days=days)
