"""The JSON API's request and response schemas. The match answer is :class:`matching.results.MatchResult`
itself (one contract for the engine, the API and the CLI); request bodies that the domain validates with
Chinese messages (profiles, policies) are documented here and parsed by the use cases."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, WithJsonSchema

from matching.results import MatchResult
from policies.schema import BENEFIT_TYPES, CATEGORIES, Policy
from profiles.model import EnterpriseProfile

__all__ = ["MatchResult"]


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

    inlined: dict[str, Any] = walk(schema)
    return inlined


def _profile_schema() -> dict[str, Any]:
    """EnterpriseProfile's schema, inlined; a ``qualifications`` item is a plain code or a dated certificate
    (``anyOf``, each branch titled, so that client generators name both)."""
    schema = _inline_refs(EnterpriseProfile.model_json_schema())
    items = schema["properties"]["qualifications"]["anyOf"][0]["items"]
    if "oneOf" in items:
        code, dated = items.pop("oneOf")
        dated = {k: v for k, v in dated.items() if k != "description"}
        items["anyOf"] = [{**code, "title": "QualificationCode"},
                          {**dated, "title": "DatedQualification",
                           "description": "带证书有效期的资质：valid_to 为最后有效日；任一日期可缺省"}]
    return {**schema, "title": "EnterpriseProfile", "description": "EnterpriseProfile v1（SPEC §2.1）；缺少的字段视为未知"}


PROFILE_SCHEMA = _profile_schema()


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


EXAMPLE_PROFILE: dict[str, JsonValue] = {
    "uscc": "91320312MA1Q7E3K29", "name": "徐州示例精密机械有限公司", "entity_type": "enterprise",
    "region": "铜山区", "industry_code": "C3484", "employees": 86, "annual_revenue_wan": 4200,
    "total_assets_wan": 3600, "tax_credit_grade": "A", "taxpayer_type": "general", "monthly_sales_wan": 350,
    "vat_filing_period": "monthly",
    # the amounts the value estimates read (absent = unknown: that entry's value is null, and says what it needs)
    "taxable_income_wan": 280, "rd_expense_wan": 160, "annual_payroll_wan": 620,
    "unemployment_insurance_paid_wan": 6.2, "layoff_rate_pct": 0, "disabled_employees": 1,
    "deductible_input_vat_wan": 380, "financing_need_wan": 500, "has_union": True,
    "qualifications": ["high_tech"], "trade": [], "patents": 3, "flags": [],
    "needs": "想贷款扩大生产线，专利能不能拿去质押",
}

#: What /v1/match and /v1/enterprises/{uscc}/package say about the money in the answer.
MATCH_DESCRIPTION = (
    "返回企业的政策套餐（SPEC §2.3）。每个套餐项（以及差一个条件的项）带有：`estimated_value_wan`（估计价值，万元/年；"
    "缓缴为缓缴金额；无法估算时为 null）、`value_kind`（saving 每年少缴或获得的金额 | cash_flow 缓缴，不计入合计 | "
    "non_monetary 非金额优势，如政府采购价格扣除 | unquantified 不估算金额；null：该政策不估算）、`value_assumption`"
    "（一句中文：估算所依据的假设与文件标准，或为何没有金额）与 `source_document`（授予该优惠的文件，如 徐委办〔2023〕37号 "
    "或 财政部 税务总局公告2023年第12号）。`summary.estimated_value_wan` 为 counted_in_total 各项之和（同一互斥组只计一次），"
    "`summary.valued_policies` 为计入合计的项数，`summary.cash_flow_wan` 为缓缴金额合计（另列）。"
    "估算用到的画像字段：taxable_income_wan、rd_expense_wan、annual_payroll_wan、unemployment_insurance_paid_wan、"
    "layoff_rate_pct、vat_filing_period、has_union、disabled_employees、deductible_input_vat_wan、monthly_sales_wan、"
    "financing_need_wan；缺少时该项金额为 null。`as_of` 选择当日有效的文件标准。"
)


class MatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"profile": EXAMPLE_PROFILE,
                                                                               "query": "想贷款", "top": 5}]})
    profile: ProfileBody = Field(description="EnterpriseProfile v1 (SPEC §2.1)")
    query: str | None = Field(None, max_length=500, description="补充诉求")
    top: int | None = Field(None, ge=1, le=200)
    as_of: dt.date | None = None


class FieldProvenance(BaseModel):
    """Where one value of the stored profile comes from."""

    source: str = Field(description="数据来源：registration（市场监管）、tax（税务）、social_insurance（人社）、"
                                    "science（科技）、industry（工信）、self（企业自报）、hotline（热线坐席）")
    source_label: str | None = Field(None, description="来源的中文名称（市场监管、税务 …）")
    as_of: str | None = Field(description="该来源记录这个值的数据日期 YYYY-MM-DD")
    stale: bool = Field(description="今天是否已超过该字段的最长有效期（过期的值按未知处理，政策会请核实）")


class EnterpriseOut(Open):
    uscc: str
    name: str
    profile: dict[str, Any]
    derived: dict[str, Any]
    provenance: dict[str, FieldProvenance] = Field(
        default_factory=dict, description="每个字段的来源与数据日期（键为字段名；资质按代码另有 qualifications.<code>）")
    conflicts: list[dict[str, Any]] = Field(
        default_factory=list, description="各来源不一致且未被自动采信的字段：field、label、chosen（采用的来源、日期、值）、"
                                          "others（其他来源的说法）、message（中文说明，如“…以税务为准，请核实”）")
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
    source_document: str = Field(description="the plan (徐委办〔2023〕37号) or a national or provincial announcement")
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
