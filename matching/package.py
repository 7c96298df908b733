"""Package assembly: one enterprise against the whole catalog → the SPEC §2.3 answer.

Eligibility comes from the vectorised engine (a batch of one: the portrait's own encoded batch); explanations
from its trace; ranking and triggers from :mod:`matching.ranking` (the same functions the batch scorer uses)
over the relevance channels of ``matching.relevance``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from matching import freshness, offering
from matching import gaps as gap_table
from matching.embeddings import Embedder
from matching.ranking import (
    RankingConfig,
    Words,
    package_score,
    phrases_of,
    specificity,
    trigger_hits,
    value_signal,
)
from matching.reference import evaluate
from matching.relevance import FusionConfig, PolicyRetriever
from matching.results import MatchResult
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
from policies.schema import NO_FORMULA_KINDS, STRENGTHS, Benefit, Policy
from profiles.features import Portrait
from profiles.fields import FIELDS, Kind

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


def _plain_question(field: str, subject: str) -> str:
    """A question about one field from its label, for ``subject`` 请问企业 (a caller) or 贵企业 (the firm)."""
    f = FIELDS[field]
    if f.kind is Kind.NUMBER:
        return f"{subject}的{f.label}是多少{f.unit}？"
    if f.kind is Kind.BOOL:
        return f"{subject}{f.label}？"
    return f"{subject}的{f.label}是什么？"


def question_for(field: str) -> str:
    """What a hotline operator asks the caller to settle an unknown field."""
    if field in QUESTION_HINTS:
        return "请问" + QUESTION_HINTS[field] + "？"
    return _plain_question(field, "请问企业")


#: the profile field a question settles, for derived fields (one question about size settles is_sme too)
QUESTION_FIELD = {"is_sme": "size", "age_years": "established_on", "industry_section": "industry_code",
                  "industry_division": "industry_code", "industry_group": "industry_code",
                  "size_category": "industry_code"}
QUESTION_HINTS.update({
    "established_on": "企业的成立日期",
    "industry_code": "企业所属行业（国民经济行业代码，如 C3484；不清楚可说主营业务）",
})
#: questions put to the person filling the calculator (贵企业…)
FIRM_QUESTIONS = {
    "size": "贵企业的从业人员、营业收入和资产总额各是多少？（也可直接选择大型、中型、小型或微型）",
    "established_on": "贵企业的成立日期是哪一天？",
    "industry_code": "贵企业属于哪个行业？（国民经济行业代码，如 C3484；不清楚可填门类，如 C 制造业）",
    "flags": "贵企业目前是否有经营异常、行政处罚、失信、破产、经营困难、劳动争议、被拖欠账款或涉案等情况？"
             "（都没有请选“以上均无”）",
    "qualifications": "贵企业已获得哪些资质认定（高新技术企业、科技型中小企业、专精特新等）？",
    "trade": "贵企业是否有进出口、跨境电商或铁路货运业务？",
}
#: fields whose question concerns rare situations (破产, 涉案 are among the flags): always asked last
RARE_QUESTION_FIELDS = ("flags",)
QUESTION_LABELS = {"industry_code": "所属行业"}
REVIEW_NOTE = "该政策信息已超过复核期限，请以主管部门最新公布为准"


def question_for_firm(field: str) -> str:
    """The same question put to the firm itself (the public calculator)."""
    if field in FIRM_QUESTIONS:
        return FIRM_QUESTIONS[field]
    return _plain_question(field, "贵企业")


def ask_questions(possible: Sequence[dict[str, Any]],
                  stale: Mapping[str, Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The questions that settle the possibly-eligible policies: each profile field asked once, those that
    settle the most policies first; rare situations (the ``flags`` question: 破产, 涉案 …) always last. A field
    unknown because its last value is too old (``stale``) is asked as 请核实… with that value, source and date."""
    groups: dict[str, dict[str, Any]] = {}
    for entry in possible:
        for name in entry["missing"]:
            key = QUESTION_FIELD.get(name, name)
            if key not in groups:
                staff, firm = freshness.recheck_question(key, stale or {}, question_for(key), question_for_firm(key))
                groups[key] = {"field": key, "label": QUESTION_LABELS.get(key, FIELDS[key].label),
                               "ask_staff": staff, "ask_firm": firm, "settles": []}
            group = groups[key]
            if entry["policy_id"] not in group["settles"]:
                group["settles"].append(entry["policy_id"])
    order = list(FIELDS)
    return sorted(groups.values(), key=lambda g: (g["field"] in RARE_QUESTION_FIELDS, -len(g["settles"]),
                                                   order.index(g["field"])))


@dataclass
class Matcher:
    """The composition of catalog, compiled rules and relevance channels, built once."""

    catalog: Catalog
    engine: RuleEngine
    retriever: PolicyRetriever  # indexes every entry (policies, commitments, plan work)
    ranking: RankingConfig
    policy_rows: np.ndarray | None = None  # engine position -> retriever row (None: derived from the ids)

    def __post_init__(self) -> None:
        if self.policy_rows is None:
            self.policy_rows = self.retriever.positions([c.id for c in self.engine.compiled])

    @classmethod
    def build(cls, catalog: Catalog, *, embedder: Embedder | None = None, index_dir: Path | None = None,
              ranking: RankingConfig | None = None, fusion: FusionConfig | None = None) -> Matcher:
        policies = list(catalog)  # the rule engine sees policies only; search sees every entry
        retriever = PolicyRetriever.build(catalog.all_entries(), embedder=embedder,
                                          fingerprint=catalog.fingerprint, index_dir=index_dir, fusion=fusion)
        engine = RuleEngine(policies)
        rows = retriever.positions([c.id for c in engine.compiled])
        return cls(catalog, engine, retriever, ranking or RankingConfig(), rows)

    @property
    def model_id(self) -> str | None:
        return self.retriever.embedder.model_id if self.retriever.embedder else None

    # ---- one enterprise ---------------------------------------------------------------
    def match(self, portrait: Portrait, *, query: str | None = None, top: int | None = None) -> MatchResult:
        as_of = portrait.as_of
        batch = portrait.batch  # encoded and derived once, by profiles.features.derive
        result = self.engine.evaluate(batch, as_of, keep_trace=True)
        assert result.cache is not None
        record = batch.record(0)
        context = " ".join(filter(None, [portrait.profile.needs, query])).strip()
        relevance_text = context or " ".join(filter(None, [portrait.profile.business_scope, *portrait.tags]))
        relevance = (self.retriever.scores(relevance_text).channel(self.ranking.channel, self.policy_rows)
                     if relevance_text else np.zeros(len(self.engine.compiled)))
        words = self.words(portrait.profile.needs, query)
        semantic = words.called(self.ranking.semantic_trigger_top_k)
        package: list[dict[str, Any]] = []
        possible: list[dict[str, Any]] = []
        near: list[dict[str, Any]] = []
        candidates: list[tuple[Policy, float]] = []  # eligible, not called for: on request at most
        said_ids: list[str] = []  # policies the firm's words call for, whatever their status
        about = words.called(self.ranking.on_request_top_k)
        for i, comp in enumerate(result.compiled):
            policy = comp.policy
            if not result.active[i] or not policy.offered:
                continue
            status = int(result.status[i, 0])
            hits = trigger_hits(policy.triggers, context)
            # what calls for a policy: it is an entitlement or a selective programme (not held for a
            # trigger), the firm's words name it, or the firm is in a situation it serves (破产, 外贸 …)
            standing = offering.proactive(policy) and policy.delivery == "proactive"
            said = bool(hits) or policy.id in semantic
            if said:
                said_ids.append(policy.id)
            occasion = None if standing or said else offering.situation(policy, record)
            called = standing or said or occasion is not None
            if status == ELIGIBLE:
                if not called:
                    candidates.append((policy, float(words.score[i])))
                    continue
                traces = [trace_rule(c, result.cache, 0, record) for c in comp.clauses]
                entry = self._entry(policy, traces, record, hits, float(relevance[i]), as_of)
                if occasion is not None:
                    entry["why_you"] = f"{occasion.render(record)}；{entry['why_you']}"
                elif not standing and not hits:  # called by the meaning of the firm's words, not a trigger word
                    entry["why_you"] = f"与您提到的“{offering.short(semantic[policy.id])}”相关；{entry['why_you']}"
                entry.update(review_fields(policy, as_of))
                package.append(entry)
            elif not called:
                continue
            elif status == UNKNOWN:
                traces = [trace_rule(c, result.cache, 0, record) for c in comp.clauses]
                missing = list(dict.fromkeys(f for t in traces for f in t.unknown_fields()))
                possible.append({**_source(policy), "missing": missing, "title": policy.title,
                                 "questions": [self._question(f, portrait.stale) for f in missing],
                                 "benefit": benefit_of(policy).description, **_strength(policy),
                                 **review_fields(policy, as_of)})
            elif result.near_miss[i, 0]:
                gap = _near_miss(comp.policy, comp.clauses, result.cache, record, as_of)
                if gap is not None:
                    near.append(gap)
        package.sort(key=lambda e: (-e["score"], e["policy_id"]))
        _mark_exclusive(package)
        if top is not None:
            package = package[:top]
        near.sort(key=_near_order)
        on_request = [
            {**_source(self.catalog[e["policy_id"]]), **e, **review_fields(self.catalog[e["policy_id"]], as_of)}
            for e in offering.on_request(candidates, record, about=about,
                                         asked={self.catalog[pid].category for pid in [*said_ids, *about]} or None)]
        return MatchResult.model_validate({
            "enterprise": portrait.to_json(),
            "package": package,
            "possibly_eligible": possible,
            "near_misses": near[: gap_table.table().limit],
            "available_on_request": on_request,
            "questions": ask_questions(possible, portrait.stale),
            "summary": _summary(package),
            "catalog_version": self.catalog.version,
            "model_id": self.model_id,
            "reminders": freshness.reminders(portrait.expiring),
            "stale": freshness.stale_fields(portrait.stale),
        })

    @staticmethod
    def _question(name: str, stale: Mapping[str, Mapping[str, Any]]) -> str:
        """A possibly-eligible entry's question about ``name``: 请核实… when what settles it is too old."""
        key = QUESTION_FIELD.get(name, name)
        plain = question_for(name)
        return freshness.recheck_question(key, stale, plain, plain)[0]

    def words(self, needs: str | None, query: str | None) -> Words:
        """What the firm's own words are about, on the calibrated score search uses: absolute, so words about
        nothing in the catalog (我想移民加拿大) call nothing. Its stated needs and the operator's query are
        scored apart (an off-topic query does not dilute on-topic needs; the batch scores the needs alone)."""
        phrases = list(dict.fromkeys(p for text in (needs, query) for p in phrases_of(text)))
        m = len(self.engine.compiled)
        cal = self.retriever.calibration
        if not phrases or cal is None:
            return Words(phrases, np.zeros((0, m)), np.zeros(m), 1.0, [c.id for c in self.engine.compiled])
        per = np.stack([self.retriever.scores(p).calibrated[self.policy_rows] for p in phrases])
        return Words(phrases, per, per.max(axis=0), self.ranking.phrase_floor(cal.floor),
                     [c.id for c in self.engine.compiled])

    def _entry(self, policy: Policy, traces: Sequence[ClauseTrace], record: dict[str, Any],
               hits: list[str], relevance: float, as_of: dt.date) -> dict[str, Any]:
        cfg = self.ranking
        spec = specificity(cfg, self.engine.compiled[self.engine.index[policy.id]].leaf_count)
        value = estimate_value(policy, record, as_of)
        value_part = value_signal(cfg, np.nan if value is None or not counts_as_money(policy) else value)
        score = package_score(cfg, relevance, float(bool(hits)), spec, value_part)
        return {
            **_source(policy),
            "title": policy.title,
            "category": policy.category,
            **_strength(policy),
            "score": round(score, 6),
            "reasons": [_reason(t) for t in traces] or ["面向所有市场主体，无特定条件"],
            "estimated_value_wan": value,
            "how_to_apply": policy.how_to_apply,
            "why_you": _why_you(policy, traces, hits),
            "category_label": policy.category_label,
            "benefit": benefit_of(policy).description,
            **value_fields(policy, value, as_of),
            "exclusive_group": benefit_of(policy).exclusive_group,
            "lead_departments": list(policy.lead_departments),
            "matched_triggers": hits,
            "score_parts": {"relevance": round(relevance, 4), "trigger": float(bool(hits)),
                            "specificity": round(spec, 4), "value": round(value_part, 4)},
            "clauses": [t.to_json() for t in traces],
        }


def _source(policy: Policy) -> dict[str, Any]:
    return {"policy_id": policy.id, "source_task": policy.source.task_no,
            "source_measure": policy.source.measure_no, "source_document": policy.source_document}


def benefit_of(policy: Policy) -> Benefit:
    """The benefit of a policy entry (every kind ``policy`` has one; commitments never reach the engine)."""
    if policy.benefit is None:
        raise ValueError(f"{policy.id}: kind {policy.kind} has no benefit and cannot be offered")
    return policy.benefit


def _strength(policy: Policy) -> dict[str, Any]:
    return {"strength": policy.strength, "strength_label": STRENGTHS[policy.strength] if policy.strength else None}


def review_fields(policy: Policy, as_of: dt.date) -> dict[str, Any]:
    """An answer given after the entry's review date says so (Policy.needs_review), and so does one given after
    a document it rests on has ended while the catalog shows it pending a notice (Policy.lapse_note)."""
    lapse = policy.lapse_note(as_of)
    late = policy.needs_review(as_of)
    notes = [n for n in (lapse, REVIEW_NOTE if late else None) if n]
    return {"needs_review": bool(notes), "review_note": "；".join(notes) or None}


def _near_miss(policy: Policy, clauses: Sequence[Any], cache: Any, record: dict[str, Any],
               as_of: dt.date) -> dict[str, Any] | None:
    """A near miss worth showing: its one failed clause is closed by gaps this firm can act on
    (``matching.gaps``: never size, industry, entity type, region or age, never a decrease, a
    qualification only where the profile makes it plausible), else None."""
    failing = [c for c in clauses if evaluate(c, record) is False]
    if len(failing) != 1 or not gap_table.policy_plausible(policy.id, record):
        return None
    gaps = gap_table.clause_gaps(failing[0], record)
    if not gaps:
        return None
    traces = [trace_rule(c, cache, 0, record) for c in clauses]
    return {**_source(policy), "title": policy.title, "unmet": [_gap(t) for t in traces if t.outcome == FAILED],
            "gaps": gaps, "benefit": benefit_of(policy).description, **_strength(policy),
            **_valued(policy, record, as_of), **review_fields(policy, as_of)}


STRENGTH_ORDER = {"entitlement": 0, "selective": 1, "procedure": 2, "channel": 3}


def _near_order(entry: dict[str, Any]) -> tuple[Any, ...]:
    """Best first: entitlements before selective programmes before procedures, then the larger
    estimated value, then the fewer changes, then the id (deterministic)."""
    return (STRENGTH_ORDER.get(entry["strength"], 9), -(entry["estimated_value_wan"] or 0.0), len(entry["gaps"]),
            entry["policy_id"])


def leaf_facts(trace: ClauseTrace) -> list[str]:
    """The firm's own values that make a passed clause hold (e.g. ``企业规模为小型``): the why-line of the
    package and of a pushed item."""
    if trace.field is not None:
        if trace.outcome != PASSED:
            return []
        field = FIELDS[trace.field]
        if field.kind.value == "set" and "不含" in trace.text:  # "has none of …": nothing of the firm's to quote
            return []
        if field.kind.value == "bool":  # 属于中小微企业, not 是否中小微企业为是
            return [field.says(bool(trace.observed))]
        return [f"{field.label}为{trace.observed_text}"]
    return [f for c in trace.children if c.outcome == PASSED for f in leaf_facts(c)]


def _why_you(policy: Policy, traces: Sequence[ClauseTrace], hits: list[str]) -> str:
    """One line in Chinese: which facts about this firm (and which of its words) make it fit."""
    facts = list(dict.fromkeys(f for t in traces for f in leaf_facts(t)))
    said = f"您提到“{hits[0]}”，" if hits else ""
    if not facts:
        return f"{said}本政策面向所有市场主体：{benefit_of(policy).description}"
    return f"{said}贵企业{'，'.join(facts[:3])}，符合条件：{benefit_of(policy).description}"


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
    """不得重复享受: within an exclusive group only the most valuable entry counts in totals; a deferral
    (缓缴, ``value_kind`` cash_flow), an advantage that is no money and a value not estimable never count."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for entry in package:
        entry["counted_in_total"] = _countable(entry)
        entry["exclusive_with"] = []
        if entry["exclusive_group"]:
            groups.setdefault(entry["exclusive_group"], []).append(entry)
    for members in groups.values():
        if len(members) < 2:
            continue
        best = max(members, key=lambda e: (_countable(e), e["estimated_value_wan"] or 0.0, e["score"],
                                           e["policy_id"]))
        for entry in members:
            entry["exclusive_with"] = [m["policy_id"] for m in members if m is not entry]
            entry["counted_in_total"] = entry is best and _countable(entry)


def _countable(entry: dict[str, Any]) -> bool:
    """A yearly saving with a number: what a total adds (a deferral, a price advantage or a value that cannot be
    estimated is shown, never added)."""
    return entry["value_kind"] == "saving" and entry["estimated_value_wan"] is not None


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
    counted = [e["estimated_value_wan"] for e in package if e["counted_in_total"]]
    deferred = [e["estimated_value_wan"] for e in package if e["value_kind"] == "cash_flow"
                and e["estimated_value_wan"]]
    return {
        "policies": len(package),
        "estimated_value_wan": round(sum(counted), 2),
        "valued_policies": len(counted),
        "cash_flow_wan": round(sum(deferred), 2),
        "by_category": groups,
    }


def estimate_value(policy: Policy, record: dict[str, Any], as_of: dt.date) -> float | None:
    """The yearly value in 万元 from the catalog formula on ``as_of``, or None when it cannot be estimated: no
    formula (or an advantage that is no money), an input unknown, or a parameter not in force that day (a lapsed
    policy is never valued on its last rates)."""
    est = benefit_of(policy).estimate
    if est is None or est.parsed is None or policy.lapsed(as_of):
        return None
    value = float(np.asarray(est.parsed.evaluate(record, as_of)))
    if math.isnan(value) or math.isinf(value):
        return None
    return float(round_wan(max(value, 0.0)))


def round_wan(value: Any) -> Any:
    """万元 to two decimals, half up on the decimal value as a person works it by hand (0.325 → 0.33, 2.675 →
    2.68): the one rounding of the package and the batch (scalar or column; a tiny epsilon undoes the binary
    representation, where 2.675 is stored as 2.67499…)."""
    return np.floor(np.asarray(value, dtype=np.float64) * 100 + 0.5 + 1e-9) / 100


def counts_as_money(policy: Policy) -> bool:
    """A value that is money the firm keeps or receives (not a deferral, not a price advantage)."""
    est = benefit_of(policy).estimate
    return est is not None and est.kind == "saving"


def value_fields(policy: Policy, value: float | None, as_of: dt.date) -> dict[str, Any]:
    """``value_kind`` and ``value_assumption`` beside a value: the assumption (its parameters shown as in force on
    ``as_of``) whenever there is a number or an advantage to qualify, else the reason there is no number."""
    est = benefit_of(policy).estimate
    if est is None:
        return {"value_kind": None, "value_assumption": None}
    if value is None and est.kind not in NO_FORMULA_KINDS:
        if policy.lapsed(as_of):
            why = f"{policy.lapse_note(as_of)}，暂不估算金额。"
        else:
            missing = "、".join(FIELDS[f].label for f in est.parsed.fields) if est.parsed else ""
            why = f"需要{missing}才能估算金额" if missing else "暂不能估算金额"
        return {"value_kind": est.kind, "value_assumption": why}
    return {"value_kind": est.kind, "value_assumption": est.render(as_of)}


def _valued(policy: Policy, record: dict[str, Any], as_of: dt.date) -> dict[str, Any]:
    value = estimate_value(policy, record, as_of)
    return {"estimated_value_wan": value, **value_fields(policy, value, as_of)}
