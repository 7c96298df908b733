"""Package assembly: one enterprise against the whole catalog → the SPEC §2.3 answer.

Eligibility comes from the vectorised engine (a batch of one); explanations from its trace;
ranking from :class:`RankingConfig` over the relevance channels of ``matching.relevance``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from matching.columns import ProfileBatch
from matching.embeddings import Embedder
from matching.relevance import FusionConfig, Mode, PolicyRetriever
from matching.rules import (
    ELIGIBLE,
    FAILED,
    PASSED,
    UNKNOWN,
    ClauseTrace,
    RuleEngine,
    trace_rule,
)
from policies.loader import Catalog
from policies.schema import Policy
from profiles.features import Portrait
from profiles.fields import FIELDS


class RankingConfig(BaseModel):
    """The package score: a weighted sum of signals, each in [0, 1].

    Only eligible policies are ranked; the score orders them, it never decides eligibility.
    """

    model_config = ConfigDict(frozen=True)

    relevance: float = Field(0.75, ge=0, description="fused dense+lexical relevance of the firm's needs and the query "
                             "(or, when it states none, its business scope and portrait tags) to the policy")
    trigger: float = Field(0.1, ge=0, description="the needs or the query name one of the policy's triggers")
    specificity: float = Field(0.075, ge=0, description="how many conditions the rule sets: a policy aimed at this "
                               "kind of firm beats one open to everybody")
    value: float = Field(0.075, ge=0, description="the estimated yearly value, saturating at value_scale_wan")
    specificity_saturation: int = Field(4, ge=1, description="leaf count at which specificity reaches 1")
    value_scale_wan: float = Field(10.0, gt=0, description="estimated value (万元/年) that earns the full value signal")
    semantic_trigger_top_k: int = Field(
        5, ge=0, description="an on-request policy also counts as triggered when it is among the k policies "
        "most relevant to the firm's words (callers say 销掉 or 挪到外地, not 注销 or 迁移)")
    semantic_trigger_min: float = Field(0.5, ge=0, le=1, description="…and its fused relevance is at least this")
    channel: Mode = Field("hybrid", description="relevance channel used (dense-only and lexical-only exist "
                          "for the evaluation's comparison rows)")


QUESTION_HINTS = {
    "size": "企业规模（请提供从业人员、营业收入、资产总额，或直接说明大/中/小/微型）",
    "is_sme": "企业规模（请提供从业人员、营业收入、资产总额）",
    "age_years": "成立日期",
    "industry_section": "所属行业",
    "industry_division": "所属行业（具体到大类）",
    "industry_group": "所属行业（具体到中类）",
    "size_category": "所属行业（具体到大类）",
    "flags": "企业目前是否有经营异常、行政处罚、失信、破产、经营困难、劳动争议、被拖欠账款或涉案等情况",
    "qualifications": "企业已获得哪些资质认定（高新技术企业、科技型中小企业、专精特新等）",
    "trade": "企业是否有进出口、跨境电商或铁路货运业务",
}


def question_for(field: str) -> str:
    """What a hotline operator asks the caller to settle an unknown field."""
    return "请问" + QUESTION_HINTS.get(field, FIELDS[field].label) + "？"


@dataclass
class Matcher:
    """The composition of catalog, compiled rules and relevance channels, built once."""

    catalog: Catalog
    engine: RuleEngine
    retriever: PolicyRetriever
    ranking: RankingConfig

    @classmethod
    def build(cls, catalog: Catalog, *, embedder: Embedder | None = None, index_dir: Path | None = None,
              ranking: RankingConfig | None = None, fusion: FusionConfig | None = None) -> Matcher:
        policies = list(catalog)
        retriever = PolicyRetriever.build(policies, embedder=embedder, fingerprint=catalog.fingerprint,
                                          index_dir=index_dir, fusion=fusion)
        return cls(catalog, RuleEngine(policies), retriever, ranking or RankingConfig())

    @property
    def model_id(self) -> str | None:
        return self.retriever.embedder.model_id if self.retriever.embedder else None

    # ---- one enterprise ---------------------------------------------------------------
    def match(self, portrait: Portrait, *, query: str | None = None, top: int | None = None) -> dict[str, Any]:
        as_of = portrait.as_of
        batch = ProfileBatch.from_records([portrait.profile.model_dump()]).with_derived(as_of)
        result = self.engine.evaluate(batch, as_of, keep_trace=True)
        assert result.cache is not None
        record = batch.record(0)
        context = " ".join(filter(None, [portrait.profile.needs, query])).strip()
        relevance_text = context or " ".join(filter(None, [portrait.profile.business_scope, *portrait.tags]))
        relevance = (self.retriever.scores(relevance_text).channel(self.ranking.channel) if relevance_text
                     else np.zeros(len(self.engine.compiled)))
        semantic = self._semantic_triggers(relevance) if context else set()
        package: list[dict[str, Any]] = []
        possible: list[dict[str, Any]] = []
        near: list[dict[str, Any]] = []
        on_request: list[dict[str, Any]] = []
        for i, comp in enumerate(self.engine.compiled):
            policy = comp.policy
            if not result.active[i]:
                continue
            status = int(result.status[i, 0])
            hits = _trigger_hits(policy, context)
            gated = policy.delivery == "on_trigger" and not hits and policy.id not in semantic
            if status == ELIGIBLE:
                if gated:
                    on_request.append({"policy_id": policy.id, "title": policy.title,
                                       "triggers": list(policy.triggers)})
                    continue
                traces = [trace_rule(c, result.cache, 0, record) for c in comp.clauses]
                package.append(self._entry(policy, traces, record, hits, float(relevance[i])))
            elif gated:
                continue
            elif status == UNKNOWN:
                traces = [trace_rule(c, result.cache, 0, record) for c in comp.clauses]
                missing = list(dict.fromkeys(f for t in traces for f in t.unknown_fields()))
                possible.append({**_source(policy), "missing": missing, "title": policy.title,
                                 "questions": [question_for(f) for f in missing],
                                 "benefit": policy.benefit.description})
            elif result.near_miss[i, 0]:
                traces = [trace_rule(c, result.cache, 0, record) for c in comp.clauses]
                unmet = [_gap(t) for t in traces if t.outcome == FAILED]
                near.append({**_source(policy), "unmet": unmet, "title": policy.title,
                             "benefit": policy.benefit.description})
        package.sort(key=lambda e: (-e["score"], e["policy_id"]))
        _mark_exclusive(package)
        if top is not None:
            package = package[:top]
        return {
            "enterprise": portrait.to_json(),
            "package": package,
            "possibly_eligible": possible,
            "near_misses": near,
            "available_on_request": on_request,
            "summary": _summary(package),
            "catalog_version": self.catalog.version,
            "model_id": self.model_id,
        }

    def _semantic_triggers(self, relevance: np.ndarray) -> set[str]:
        cfg = self.ranking
        order = np.argsort(-relevance, kind="stable")[: cfg.semantic_trigger_top_k]
        return {self.engine.compiled[i].id for i in order if relevance[i] >= cfg.semantic_trigger_min}

    def _entry(self, policy: Policy, traces: Sequence[ClauseTrace], record: dict[str, Any],
               hits: list[str], relevance: float) -> dict[str, Any]:
        cfg = self.ranking
        specificity = min(self.engine.compiled[self.engine.index[policy.id]].leaf_count,
                          cfg.specificity_saturation) / cfg.specificity_saturation
        value = estimate_value(policy, record)
        value_signal = min(1.0, (value or 0.0) / cfg.value_scale_wan)
        score = (cfg.relevance * relevance + cfg.trigger * float(bool(hits)) + cfg.specificity * specificity
                 + cfg.value * value_signal)
        return {
            **_source(policy),
            "title": policy.title,
            "category": policy.category,
            "score": round(score, 6),
            "reasons": [_reason(t) for t in traces] or ["面向所有市场主体，无特定条件"],
            "estimated_value_wan": value,
            "how_to_apply": policy.how_to_apply,
            "why_you": _why_you(policy, traces, hits),
            "category_label": policy.category_label,
            "benefit": policy.benefit.description,
            "value_assumption": policy.benefit.estimate.assumption if policy.benefit.estimate and value is not None else None,
            "exclusive_group": policy.benefit.exclusive_group,
            "lead_departments": list(policy.lead_departments),
            "matched_triggers": hits,
            "score_parts": {"relevance": round(relevance, 4), "trigger": float(bool(hits)),
                            "specificity": round(specificity, 4), "value": round(value_signal, 4)},
            "clauses": [t.to_json() for t in traces],
        }

    # ---- search -----------------------------------------------------------------------
    def search(self, text: str, *, top: int = 10, as_of: dt.date | None = None,
               mode: Mode = "hybrid") -> list[dict[str, Any]]:
        """Published policies in force on ``as_of``, ranked by relevance alone."""
        when = as_of or dt.date.today()
        active = {p.id for p in self.catalog if p.is_active(when)}
        hits = self.retriever.rank(text, mode=mode, allowed=active, top=top)
        return [
            {**_source(self.catalog[pid]), "title": self.catalog[pid].title, "score": round(s, 6)}
            for pid, s in hits
        ]


def _source(policy: Policy) -> dict[str, Any]:
    return {"policy_id": policy.id, "source_task": policy.source.task_no,
            "source_measure": policy.source.measure_no}


def _trigger_hits(policy: Policy, context: str) -> list[str]:
    return [t for t in policy.triggers if t in context] if context else []


def _leaf_facts(trace: ClauseTrace) -> list[str]:
    if trace.field is not None:
        if trace.outcome != PASSED:
            return []
        field = FIELDS[trace.field]
        if field.kind.value == "bool":  # 属于中小微企业, not 是否中小微企业为是
            return [("属于" if trace.observed else "不属于") + field.label.removeprefix("是否")]
        return [f"{field.label}为{trace.observed_text}"]
    return [f for c in trace.children if c.outcome == PASSED for f in _leaf_facts(c)]


def _why_you(policy: Policy, traces: Sequence[ClauseTrace], hits: list[str]) -> str:
    """One line in Chinese: which facts about this firm (and which of its words) make it fit."""
    facts = list(dict.fromkeys(f for t in traces for f in _leaf_facts(t)))
    said = f"您提到“{hits[0]}”，" if hits else ""
    if not facts:
        return f"{said}本政策面向所有市场主体：{policy.benefit.description}"
    return f"{said}贵企业{'，'.join(facts[:3])}，符合条件：{policy.benefit.description}"


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


def _mark_exclusive(package: list[dict[str, Any]]) -> None:
    """不得重复享受: within an exclusive group only the most valuable entry counts in totals."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for entry in package:
        entry["counted_in_total"] = True
        entry["exclusive_with"] = []
        if entry["exclusive_group"]:
            groups.setdefault(entry["exclusive_group"], []).append(entry)
    for members in groups.values():
        if len(members) < 2:
            continue
        best = max(members, key=lambda e: (e["estimated_value_wan"] or 0.0, e["score"], e["policy_id"]))
        for entry in members:
            entry["exclusive_with"] = [m["policy_id"] for m in members if m is not entry]
            entry["counted_in_total"] = entry is best


def _summary(package: list[dict[str, Any]]) -> dict[str, Any]:
    """Entries grouped by category, with counts and the estimated value (best of each exclusive group)."""
    by: dict[str, dict[str, Any]] = {}
    for entry in package:
        group = by.setdefault(entry["category"], {"category": entry["category"], "label": entry["category_label"],
                                                  "policies": [], "estimated_value_wan": 0.0})
        group["policies"].append(entry["policy_id"])
        if entry["counted_in_total"] and entry["estimated_value_wan"]:
            group["estimated_value_wan"] = round(group["estimated_value_wan"] + entry["estimated_value_wan"], 2)
    groups = sorted(by.values(), key=lambda g: (-len(g["policies"]), g["category"]))
    return {
        "policies": len(package),
        "estimated_value_wan": round(sum(g["estimated_value_wan"] for g in groups), 2),
        "by_category": groups,
    }


def estimate_value(policy: Policy, record: dict[str, Any]) -> float | None:
    """The yearly value in 万元 from the catalog formula, or None when an input is unknown."""
    est = policy.benefit.estimate
    if est is None:
        return None
    value = float(np.asarray(est.parsed.evaluate(record)))
    if math.isnan(value) or math.isinf(value):
        return None
    return round(max(value, 0.0), 2)
