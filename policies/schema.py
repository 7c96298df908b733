"""The policy catalog entry (SPEC §2.2): one YAML file per policy, validated at load time."""

from __future__ import annotations

import datetime as dt
import re
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from policies.formula import Formula, parse_formula
from policies.params import parameters
from policies.rules import Rule, params_of, parse_rule, resolve

PLAN_DOCUMENT = "徐委办〔2023〕37号"
PLAN_DATE = dt.date(2023, 4, 19)

CATEGORIES: dict[str, str] = {
    "tax_fee": "税费减免",
    "finance": "融资支持",
    "procurement": "政府采购与招投标",
    "listing": "上市培育",
    "innovation": "科技创新与企业培育",
    "ip": "知识产权",
    "talent": "人才与用工",
    "credit": "信用服务",
    "legal": "法律服务与权益保护",
    "registration": "开办与登记",
    "exit": "市场退出",
    "construction": "工程建设",
    "utilities": "水电气接入",
    "trade": "跨境贸易",
    "property": "不动产登记",
    "tax_service": "办税服务",
    "service": "政企服务",
    "gov_service": "政务服务",
    "data": "数据共享与开放",
    "supervision": "监管执法",
    "policy_making": "政策制定与营商环境评价",
}
#: What kind of entry: only ``policy`` entries are ever offered (packages, push); the others are
#: findable so that a caller learns what the government owes firms or who is working on a matter.
KINDS: dict[str, str] = {
    "policy": "惠企政策",
    "commitment": "服务承诺",
    "plan_work": "政府工作任务",
}
#: How strong a policy's benefit is (the plan's verbs decide: 推动、鼓励、力争 are not promises).
STRENGTHS: dict[str, str] = {
    "entitlement": "符合条件即可享受",
    "selective": "可申报（择优）",
    "procedure": "办事便利（需要时办理）",
    "channel": "服务渠道",
}
BENEFIT_TYPES: dict[str, str] = {
    "refund": "返还",
    "fee_reduction": "降费",
    "fee_cap": "费率封顶",
    "deferral": "缓缴",
    "exemption": "免收",
    "price_deduction": "价格扣除",
    "loan": "贷款",
    "guarantee": "担保与风险分担",
    "subsidy": "补贴",
    "voucher": "创新券",
    "reward": "奖励",
    "training": "培训",
    "recognition": "认定培育",
    "fast_track": "快捷办理",
    "service": "服务",
    "leniency": "包容审慎",
    "protection": "权益保护",
}

NonEmpty = Annotated[str, Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Strict):
    """Where the policy comes from: a task (附件1 序号) or a measure (附件2) of the plan, or — the national and
    provincial layer the plan takes for granted — an announcement (``document`` its number, e.g.
    财政部 税务总局公告2023年第12号, both numbers null), with the sentence that grants it and where it was read."""

    document: NonEmpty = PLAN_DOCUMENT
    task_no: int | None = Field(None, ge=1, le=160, description="附件1 序号 1–160")
    measure_no: int | None = Field(None, ge=1, le=10, description="附件2 举措 1–10")
    section: NonEmpty = Field(description="the plan's heading, e.g. （十一）落实各类减税降费政策; for an announcement "
                                          "its title and article")
    related_tasks: tuple[int, ...] = Field((), description="other tasks this policy also serves")
    quote: str | None = Field(None, description="an announcement's own sentence(s) that grant the benefit")
    read_at: str | None = Field(None, description="where the announcement's text was read (address), or why it "
                                                  "could not be verified")

    @property
    def national(self) -> bool:
        """From an announcement rather than the city's plan."""
        return self.document != PLAN_DOCUMENT

    @model_validator(mode="after")
    def _one_origin(self) -> Source:
        if self.national:
            if self.task_no is not None or self.measure_no is not None:
                raise ValueError(f"来源文件为“{self.document}”（非本计划）时 task_no 和 measure_no 应为空；"
                                 "与计划任务的关联请写在 related_tasks")
            if not self.quote or not self.read_at:
                raise ValueError(f"来源文件为“{self.document}”的条目须填写 quote（文件原文）和 read_at（核对原文的出处）")
        elif (self.task_no is None) == (self.measure_no is None):
            raise ValueError("task_no（附件1 序号 1–160）与 measure_no（附件2 举措 1–10）须填写且只能填写其中一项")
        for no in self.related_tasks:
            if not 1 <= no <= 160:
                raise ValueError(f"related_tasks 中的任务序号 {no} 不在 1–160 之间")
        return self


#: What an estimate's number is: money saved or received in a year, money kept for a while (缓缴: not a
#: saving, never added to a total), an advantage that is no sum of money (价格扣除: no formula), or money the
#: profile cannot measure (六税两费: the assumption says why no number is given; no formula).
VALUE_KINDS: dict[str, str] = {
    "saving": "每年少缴或获得的金额",
    "cash_flow": "缓缴金额（暂缓缴纳，不是减免，不计入合计）",
    "non_monetary": "非金额优势（不折算为金额）",
    "unquantified": "不估算金额（说明原因）",
}
NO_FORMULA_KINDS = ("non_monetary", "unquantified")


class Estimate(_Strict):
    """A value estimate in 万元 per year, with the assumption a reader must see beside it (one Chinese
    sentence; ``{参数名}`` in it shows that parameter's value on the as-of day, e.g. ``{guarantee.policy_fee_cap}``)."""

    formula: NonEmpty | None = None
    assumption: NonEmpty
    kind: Literal["saving", "cash_flow", "non_monetary", "unquantified"] = "saving"

    @field_validator("formula")
    @classmethod
    def _parse(cls, value: str | None) -> str | None:
        if value is not None:
            parse_formula(value)
        return value

    @model_validator(mode="after")
    def _formula_fits_kind(self) -> Estimate:
        if self.kind in NO_FORMULA_KINDS and self.formula is not None:
            raise ValueError(f"kind 为 {self.kind}（{VALUE_KINDS[self.kind]}）的估值不能有公式 formula")
        if self.kind not in NO_FORMULA_KINDS and self.formula is None:
            raise ValueError(f"kind 为 {self.kind} 的估值须填写公式 formula")
        for name in _placeholders(self.assumption):
            if name not in parameters():
                raise ValueError(f"估值假设中的“{{{name}}}”不是已知参数")
        return self

    @cached_property
    def parsed(self) -> Formula | None:
        return None if self.formula is None else parse_formula(self.formula)

    def render(self, as_of: dt.date) -> str:
        """The assumption with each ``{parameter}`` shown as its value on ``as_of``."""
        return _PLACEHOLDER.sub(lambda m: parameters()[m.group(1)].show(as_of), self.assumption)


_PLACEHOLDER = re.compile(r"\{([a-z0-9_]+(?:\.[a-z0-9_]+)+)\}")


def _placeholders(text: str) -> list[str]:
    return _PLACEHOLDER.findall(text)


class Benefit(_Strict):
    description: NonEmpty
    estimate: Estimate | None = None
    exclusive_group: str | None = Field(
        None, description="policies sharing a group grant the same benefit: only one is enjoyed"
    )


Kind = Literal["policy", "commitment", "plan_work"]
Strength = Literal["entitlement", "selective", "procedure", "channel"]


class Policy(_Strict):
    """One catalog entry. Thresholds live here, never in code.

    ``kind`` = policy: something a firm can claim or invoke (benefit, rule, strength required);
    commitment / plan_work: findable only (no benefit, no rule), never offered or pushed.
    """

    id: Annotated[str, Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=80)]
    version: int = Field(ge=1)
    status: Literal["draft", "published", "retired"]
    kind: Kind = Field("policy", description="policy | commitment | plan_work")
    strength: Strength | None = Field(
        None, description="policies only: entitlement (应享) | selective (申报评审/择优) | procedure (办事便利) "
        "| channel (服务渠道)")
    title: NonEmpty
    summary: NonEmpty
    text: NonEmpty = Field(description="the plan's own wording")
    source: Source
    category: str
    benefit_type: str | None = None
    benefit: Benefit | None = None
    eligibility: Any = Field(None, description="rule expression, see policies/rules.py (policies only)")
    delivery: Literal["proactive", "on_trigger", "automatic"] = Field(
        "proactive",
        description="proactive: pushed whenever eligible; on_trigger: only when the firm's needs, "
        "a query or an event matches one of the triggers (注销, 迁移, 投标 …); automatic (免申即享): read as "
        "proactive with grant automatic — a validated entry's delivery is never automatic",
    )
    grant: Literal["application", "automatic"] = Field(
        "application", exclude_if=lambda value: value == "application",  # absent from dumps: catalog hashes unchanged
        description="how the benefit reaches an eligible firm: application (依申请兑现, the default) or automatic "
        "(免申即享: the department grants it to the firms the service lists, without an application — "
        "`policyfit outcomes handoff`). Written in a file as `delivery: automatic`, which means delivery "
        "proactive (it is pushed like any entitlement) and grant automatic. The plan asks for 惠企政策直达快享 "
        "(附件1 序号157) without naming any policy as 免申即享, so no catalog entry is marked by default.")
    triggers: tuple[NonEmpty, ...] = ()
    tags: tuple[NonEmpty, ...] = ()
    questions: tuple[NonEmpty, ...] = Field(
        (), description="常见问法: how callers ask about this policy in their own words (used by search, "
        "never by eligibility)")
    lead_departments: tuple[NonEmpty, ...] = Field(min_length=1)
    partner_departments: tuple[NonEmpty, ...] = ()
    how_to_apply: NonEmpty
    effective_from: dt.date = PLAN_DATE
    effective_to: dt.date | None = None
    reviewed_on: dt.date | None = Field(None, description="when the entry was last checked against its sources")
    review_by: dt.date | None = Field(
        None, description="after this day an answer citing the entry says it needs review (policies lint warns)")
    target_year: int | None = Field(
        None, ge=2000, le=2100,
        description="the plan's wording ties a target to this year (力争2023年…): a goal of that year, not a promise")
    lapse: Literal["withdraw", "pending_notice"] = Field(
        "withdraw", description="once a parameter it reads has ended: withdraw (no longer offered) or "
        "pending_notice (still shown, marked 延续与否以主管部门公布为准, not valued)")

    @field_validator("category", "benefit_type")
    @classmethod
    def _known_code(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.field_name == "benefit_type":
            return None
        allowed = CATEGORIES if info.field_name == "category" else BENEFIT_TYPES
        if value not in allowed:
            from policies.messages import suggest_zh

            what = "政策类别" if info.field_name == "category" else "惠企方式"
            raise ValueError(f"未知的{what}“{value}”{suggest_zh(value, allowed)}")
        return value

    @field_validator("eligibility")
    @classmethod
    def _rule(cls, value: Any) -> Any:
        if value is not None:
            parse_rule(value)  # RuleError is a ValueError: pydantic reports it at 'eligibility'
        return value

    @model_validator(mode="after")
    def _dates_and_triggers(self) -> Policy:
        if self.delivery == "automatic":  # 免申即享: told as proactively as any entitlement, granted without asking
            if "grant" in self.model_fields_set and self.grant != "automatic":
                raise ValueError(f"delivery: automatic（免申即享）与 grant: {self.grant} 矛盾，请只保留其一")
            object.__setattr__(self, "delivery", "proactive")  # frozen: set once, while validating
            object.__setattr__(self, "grant", "automatic")
        if self.effective_to is not None and self.effective_to < self.effective_from:
            raise ValueError(
                f"失效日期 effective_to（{self.effective_to}）早于生效日期 effective_from（{self.effective_from}）"
            )
        if self.delivery == "on_trigger" and not self.triggers:
            raise ValueError("delivery 为 on_trigger 的政策至少需要一个触发词（triggers）")
        if self.review_by is not None and self.reviewed_on is not None and self.review_by < self.reviewed_on:
            raise ValueError(f"复核期限 review_by（{self.review_by}）早于复核日期 reviewed_on（{self.reviewed_on}）")
        if self.grant == "automatic" and (self.kind != "policy" or self.strength not in ("entitlement", "selective")):
            raise ValueError("免申即享（delivery: automatic）只适用于企业可享受的惠企政策（kind 为 policy，strength 为 "
                             "entitlement 或 selective）")
        if self.kind == "policy":
            missing = [k for k in ("strength", "benefit_type", "benefit", "eligibility") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"kind 为 policy（惠企政策）的条目必须填写：{'、'.join(missing)}")
        else:
            extra = [k for k in ("strength", "benefit_type", "benefit", "eligibility") if getattr(self, k) is not None]
            if extra:
                raise ValueError(f"kind 为 {self.kind}（{KINDS[self.kind]}）的条目不面向申请，不能填写：{'、'.join(extra)}")
        return self

    @cached_property
    def rule(self) -> Rule:
        """The parsed eligibility rule (parsed once per policy object)."""
        return parse_rule(self.eligibility)

    @property
    def category_label(self) -> str:
        return CATEGORIES[self.category]

    @property
    def kind_label(self) -> str:
        return KINDS[self.kind]

    @property
    def automatic(self) -> bool:
        """免申即享 (``delivery: automatic``): the department grants it to the eligible firms without an application."""
        return self.grant == "automatic"

    @property
    def offered(self) -> bool:
        """Only policies are ever offered (packages, push); commitments and plan work are findable only."""
        return self.kind == "policy"

    def needs_review(self, as_of: dt.date) -> bool:
        """The entry's review date has passed: an answer citing it must say so."""
        return self.review_by is not None and as_of > self.review_by

    @cached_property
    def params(self) -> tuple[str, ...]:
        """The dated parameters its rule and its value formula read."""
        names = params_of(self.rule) if self.eligibility is not None else []
        est = self.benefit.estimate if self.benefit else None
        if est is not None and est.parsed is not None:
            names += list(est.parsed.params)
        return tuple(dict.fromkeys(names))

    def rule_at(self, as_of: dt.date) -> Rule:
        """The rule with its parameter thresholds as in force on ``as_of``."""
        return resolve(self.rule, as_of)

    def ended_params(self, as_of: dt.date) -> list[str]:
        """Parameters it reads that have ended by ``as_of`` (their last period is over)."""
        table = parameters()
        return [n for n in self.params if (end := table[n].last_day) is not None and as_of > end]

    def lapsed(self, as_of: dt.date) -> bool:
        """Shown although a parameter it reads has ended (``lapse: pending_notice``): not valued, marked."""
        return self.lapse == "pending_notice" and bool(self.ended_params(as_of))

    def lapse_note(self, as_of: dt.date) -> str | None:
        """延续与否以主管部门公布为准, with the day the current documents end, when :meth:`lapsed`."""
        if not self.lapsed(as_of):
            return None
        end = max(d for n in self.ended_params(as_of) if (d := parameters()[n].last_day) is not None)
        return f"现行文件执行至{end.year}年{end.month}月{end.day}日，延续与否以主管部门公布为准"

    def is_active(self, as_of: dt.date) -> bool:
        """Published, inside its validity window on ``as_of``, and every parameter it reads in force then (or
        ended with ``lapse: pending_notice``); a parameter not yet in force makes it inactive too."""
        if self.status != "published" or as_of < self.effective_from:
            return False
        if self.effective_to is not None and as_of > self.effective_to:
            return False
        table = parameters()
        for name in self.params:
            param = table[name]
            if as_of < param.first_day:
                return False
            if not param.in_force(as_of) and not (self.lapse == "pending_notice" and param.last_day is not None
                                                   and as_of > param.last_day):
                return False
        return True

    @property
    def source_document(self) -> str:
        """The document that grants it (the plan, or a national/provincial announcement)."""
        return self.source.document
