"""The typed answer of :meth:`matching.package.Matcher.match` (SPEC §2.3): one contract for the engine,
the JSON API (these models are its response schemas), the console and ``policyfit match --json``.

Field order is the order of the JSON every client has read so far: ``result.model_dump(mode="json")``
is that document key for key. Unknown keys are refused (``extra="forbid"``): a new key in the answer is a
change of contract and is added here, where the API schema comes from.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Result(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Sourced(_Result):
    policy_id: str
    source_task: int | None = Field(description="《徐州市2023年优化营商环境重点任务》 task number")
    source_measure: int | None = Field(description="《徐州市2023年优化营商环境十项举措》 measure number")
    source_document: str = Field(description="the document that grants it: 徐委办〔2023〕37号 (the plan) or a national "
                                             "or provincial announcement (e.g. 财政部 税务总局公告2023年第12号)")


class ScoreParts(_Result):
    relevance: float
    trigger: float
    specificity: float
    value: float


class PackageEntry(_Sourced):
    """An eligible policy the firm's situation or words call for, with its explanation."""

    title: str
    category: str
    strength: str | None = Field(description="entitlement | selective | procedure | channel")
    strength_label: str | None
    score: float
    reasons: list[str]
    estimated_value_wan: float | None = Field(description="万元 per year (a deferral: the amount deferred); null when "
                                                          "not estimable — value_assumption says why")
    how_to_apply: str
    why_you: str
    category_label: str
    benefit: str
    value_kind: str | None = Field(description="saving | cash_flow (缓缴, never in a total) | non_monetary | "
                                               "unquantified (no number; the assumption says why); null: no estimate")
    value_assumption: str | None = Field(description="one Chinese sentence: the assumption behind the value, or why "
                                                     "there is none")
    exclusive_group: str | None
    lead_departments: list[str]
    matched_triggers: list[str]
    score_parts: ScoreParts
    clauses: list[dict[str, Any]] = Field(description="the rule's clause trace (clause, outcome, field, observed, "
                                                      "threshold, note or children)")
    needs_review: bool
    review_note: str | None
    counted_in_total: bool
    exclusive_with: list[str]


class PossiblyEligible(_Sourced):
    """A policy whose rule is undecided: the fields it needs are unknown."""

    missing: list[str]
    title: str
    questions: list[str]
    benefit: str
    strength: str | None
    strength_label: str | None
    needs_review: bool
    review_note: str | None


class Gap(_Result):
    field: str
    label: str
    observed: str
    needed: str


class NearMiss(_Sourced):
    """A policy that fails on one clause the firm can act on."""

    title: str
    unmet: list[str]
    gaps: list[Gap]
    benefit: str
    strength: str | None
    strength_label: str | None
    estimated_value_wan: float | None
    value_kind: str | None
    value_assumption: str | None
    needs_review: bool
    review_note: str | None


class OnRequest(_Sourced):
    """A procedure or channel the firm may use when the occasion comes (依申请)."""

    title: str
    reason: str
    triggers: list[str]
    needs_review: bool
    review_note: str | None


class Question(_Result):
    """One question that settles possibly-eligible policies, phrased for staff and for the firm."""

    field: str
    label: str
    ask_staff: str
    ask_firm: str
    settles: list[str]


class Reminder(_Result):
    """Something the firm should act on soon, not a policy: a qualification whose certificate ends within the
    reminder window (高新技术企业证书将于…到期，请及时复审)."""

    kind: str = Field(description="qualification_expiring")
    code: str = Field(description="the qualification code (high_tech, specialized_sme …)")
    label: str
    valid_to: str = Field(description="YYYY-MM-DD, the certificate's last valid day")
    days_left: int = Field(description="days from the as-of day to valid_to (0: it ends today)")
    message: str


class StaleField(_Result):
    """A profile field whose last value is older than its maximum age on the as-of day: matched as unknown,
    and asked again (请核实…)."""

    field: str
    label: str
    value: Any = Field(description="the last recorded value (as stored)")
    source: str = Field(description="the source that recorded it (tax, social_insurance, registration …)")
    source_label: str = Field(description="the source in Chinese (税务, 人社 …)")
    as_of: str = Field(description="YYYY-MM-DD, the day the source recorded it")
    max_age_days: int | None = Field(default=None, description="the field's maximum age in days")


class CategorySummary(_Result):
    category: str
    label: str
    policies: list[str]
    estimated_value_wan: float


class Summary(_Result):
    policies: int
    # an empty package sums to the integer 0: kept as written (int | float, never coerced)
    estimated_value_wan: int | float = Field(description="the sum of the entries counted_in_total (each exclusive "
                                                         "group once; deferrals and non-money advantages never)")
    valued_policies: int = Field(description="entries whose value is in the total")
    cash_flow_wan: int | float = Field(description="deferred amounts (缓缴), not savings: shown apart")
    by_category: list[CategorySummary]


class MatchResult(_Result):
    """The package of one enterprise (SPEC §2.3)."""

    enterprise: dict[str, Any] = Field(description="the profile with its derived fields (portrait)")
    package: list[PackageEntry]
    possibly_eligible: list[PossiblyEligible]
    near_misses: list[NearMiss]
    available_on_request: list[OnRequest]
    questions: list[Question]
    summary: Summary
    catalog_version: str
    model_id: str | None
    reminders: list[Reminder] = Field(default_factory=list,
                                      description="qualifications whose certificate ends within 90 days")
    stale: list[StaleField] = Field(default_factory=list,
                                    description="fields too old on the as-of day: matched as unknown, asked again")
