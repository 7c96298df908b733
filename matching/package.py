"""Package assembly: one enterprise against the whole catalog → the SPEC §2.3 answer.

Eligibility comes from the vectorised engine (a batch of one); explanations from its trace;
ranking is a deterministic score (see :class:`RankingConfig`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from matching.columns import ProfileBatch
from matching.lexical import LexicalIndex
from matching.rules import (
    ELIGIBLE,
    FAILED,
    PASSED,
    UNKNOWN,
    ClauseTrace,
    RuleEngine,
    leaf_count,
    trace_rule,
)
from policies.loader import Catalog
from policies.schema import Policy
from profiles.features import Portrait
from profiles.fields import FIELDS


class RankingConfig(BaseModel):
    """Weights of the package score (each signal is in [0, 1]; the score is their weighted sum)."""

    model_config = ConfigDict(frozen=True)

    specificity: float = Field(0.5, ge=0, description="how many conditions the rule sets (targeted beats generic)")
    trigger: float = Field(0.3, ge=0, description="the firm's needs or the query name one of the policy's triggers")
    lexical: float = Field(0.2, ge=0, description="TF-IDF similarity of needs + query + scope to the policy")
    specificity_saturation: int = Field(4, ge=1, description="leaf count at which specificity reaches 1")


QUESTION_HINTS = {
    "size": "企业规模（请提供从业人员、营业收入、资产总额，或直接说明大/中/小/微型）",
    "is_sme": "企业规模（请提供从业人员、营业收入、资产总额）",
    "age_years": "成立日期",
    "industry_section": "所属行业",
    "industry_division": "所属行业（具体到大类）",
    "industry_group": "所属行业（具体到中类）",
    "size_category": "所属行业（具体到大类）",
}


def question_for(field: str) -> str:
    """What a hotline operator asks the caller to settle an unknown field."""
    return "请问" + QUESTION_HINTS.get(field, FIELDS[field].label) + "？"


@dataclass
class Matcher:
    """The composition of catalog, compiled rules and lexical index, built once."""

    catalog: Catalog
    engine: RuleEngine
    lexical: LexicalIndex
    ranking: RankingConfig = RankingConfig()

    @classmethod
    def build(cls, catalog: Catalog, ranking: RankingConfig | None = None) -> Matcher:
        policies = list(catalog)
        return cls(catalog, RuleEngine(policies), LexicalIndex.for_policies(policies),
                   ranking or RankingConfig())

    # ---- one enterprise ---------------------------------------------------------------
    def match(self, portrait: Portrait, *, query: str | None = None, top: int | None = None) -> dict[str, Any]:
        as_of = portrait.as_of
        batch = ProfileBatch.from_records([portrait.profile.model_dump()]).with_derived(as_of)
        result = self.engine.evaluate(batch, as_of, keep_trace=True)
        assert result.cache is not None
        record = batch.record(0)
        context = " ".join(filter(None, [portrait.profile.needs, query]))
        lexical = self.lexical.scores(" ".join(filter(None, [context, portrait.profile.business_scope])))
        package: list[dict[str, Any]] = []
        possible: list[dict[str, Any]] = []
        near: list[dict[str, Any]] = []
        on_request: list[dict[str, Any]] = []
        for i, comp in enumerate(self.engine.compiled):
            policy = comp.policy
            status = int(result.status[i, 0])
            if not result.active[i]:
                continue
            triggered = _triggered(policy, context)
            gated = policy.delivery == "on_trigger" and not triggered
            if status == ELIGIBLE:
                if gated:
                    on_request.append({"policy_id": policy.id, "title": policy.title,
                                       "triggers": list(policy.triggers)})
                    continue
                traces = [trace_rule(c, result.cache, 0, record) for c in comp.clauses]
                package.append(self._entry(policy, traces, record, triggered, float(lexical[i])))
            elif gated:
                continue
            elif status == UNKNOWN:
                traces = [trace_rule(c, result.cache, 0, record) for c in comp.clauses]
                missing = list(dict.fromkeys(f for t in traces for f in t.unknown_fields()))
                possible.append({**_source(policy), "missing": missing, "title": policy.title,
                                 "questions": [question_for(f) for f in missing]})
            elif result.near_miss[i, 0]:
                traces = [trace_rule(c, result.cache, 0, record) for c in comp.clauses]
                unmet = [_gap(t) for t in traces if t.outcome == FAILED]
                near.append({**_source(policy), "unmet": unmet, "title": policy.title})
        package.sort(key=lambda e: (-e["score"], e["policy_id"]))
        if top is not None:
            package = package[:top]
        return {
            "enterprise": portrait.to_json(),
            "package": package,
            "possibly_eligible": possible,
            "near_misses": near,
            "available_on_request": on_request,
            "catalog_version": self.catalog.version,
        }

    def _entry(self, policy: Policy, traces: Sequence[ClauseTrace], record: dict[str, Any],
               triggered: bool, lexical: float) -> dict[str, Any]:
        cfg = self.ranking
        specificity = min(leaf_count(policy.rule), cfg.specificity_saturation) / cfg.specificity_saturation
        score = cfg.specificity * specificity + cfg.trigger * float(triggered) + cfg.lexical * lexical
        value = estimate_value(policy, record)
        return {
            **_source(policy),
            "title": policy.title,
            "category": policy.category,
            "score": round(score, 6),
            "reasons": [_reason(t) for t in traces] or ["面向所有市场主体，无特定条件"],
            "estimated_value_wan": value,
            "value_assumption": policy.benefit.estimate.assumption if policy.benefit.estimate and value is not None else None,
            "how_to_apply": policy.how_to_apply,
            "category_label": policy.category_label,
            "benefit": policy.benefit.description,
            "lead_departments": list(policy.lead_departments),
            "clauses": [t.to_json() for t in traces],
        }

    # ---- search -----------------------------------------------------------------------
    def search(self, text: str, *, top: int = 10, as_of: dt.date | None = None) -> list[dict[str, Any]]:
        active = {p.id for p in self.catalog if p.is_active(as_of or dt.date.today())}
        hits = [(pid, s) for pid, s in self.lexical.search(text) if pid in active][:top]
        return [
            {**_source(self.catalog[pid]), "title": self.catalog[pid].title, "score": round(s, 6)}
            for pid, s in hits
        ]


def _source(policy: Policy) -> dict[str, Any]:
    return {"policy_id": policy.id, "source_task": policy.source.task_no,
            "source_measure": policy.source.measure_no}


def _triggered(policy: Policy, context: str) -> bool:
    return bool(context) and any(t in context for t in policy.triggers)


def _reason(trace: ClauseTrace) -> str:
    """Why a passed clause passed, with the observed values that decided it."""
    if trace.field is not None:
        return f"{trace.text}（当前：{trace.observed_text}）"
    passed = [c for c in trace.children if c.outcome == PASSED]
    if trace.text.startswith("满足其一"):
        return "满足其一：" + "；".join(_reason(c) for c in passed)
    return "；".join(_reason(c) for c in passed) or trace.text


def _gap(trace: ClauseTrace) -> str:
    """差距: what would have to change, e.g. ``需纳税信用等级为A级或B级，当前为M级``."""
    return "需" + _gap_body(trace)


def _gap_body(trace: ClauseTrace) -> str:
    if trace.field is not None:
        return f"{trace.text}，当前为{trace.observed_text}"
    if trace.text.startswith("并非"):  # a negation: name what must not hold, and what holds now
        inner = trace.children[0]
        return trace.text + (f"，当前为{inner.observed_text}" if inner.field else "")
    failing = [c for c in trace.children if c.outcome == FAILED]
    if trace.text.startswith("满足其一"):
        return "以下满足其一：" + "；或".join(_gap_body(c) for c in failing)
    return "；".join(_gap_body(c) for c in failing)


def estimate_value(policy: Policy, record: dict[str, Any]) -> float | None:
    """The yearly value in 万元 from the catalog formula, or None when an input is unknown."""
    est = policy.benefit.estimate
    if est is None:
        return None
    value = est.parsed.evaluate(record)
    value = float(np.asarray(value))
    if math.isnan(value) or math.isinf(value):
        return None
    return round(max(value, 0.0), 2)
