"""Batch scoring: one pure function over a column batch of profiles → (uscc, policy, status, score).

The nightly push (政府主动送) scores every enterprise against the whole catalog. The work is split in
two parts so that the same code runs in-process, in a process pool and inside Spark's ``mapInPandas``:

- :func:`text_signals` — per *distinct* enterprise text (the firm's own words: its needs, else its
  business scope), the relevance to every policy and which on-request policies it triggers. A register
  repeats the same wording thousands of times, so this costs one embedding per distinct text, not one
  per enterprise.
- :func:`score_batch` — eligibility (the vectorised three-valued engine) and package ranking for a
  table of encoded profiles. Whole columns only: no per-row Python.

Statuses in the output: ``IN_PACKAGE`` (eligible and offered: what is pushed) and ``POSSIBLE`` (unknown:
a question to ask). Only entitlements (应享) and selective programmes (择优) are ever pushed (issue 10):
procedures and service channels (注销, 迁移, 报装 …) are offered in the interactive package when called for,
never pushed, so they are not emitted; nor are eligible on-trigger policies that the firm's words did not
trigger, nor ineligible pairs. The score and the triggers are :mod:`matching.ranking`'s, the functions
:class:`matching.package.Matcher` ranks with; the interactive package also reads portrait tags when a firm
states no needs, which the nightly ranking leaves out to keep the text table small (tags vary per firm,
scopes do not). Profiles are encoded by :mod:`profiles.columns` (:func:`profiles.columns.encode_profiles`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from matching import offering
from matching.package import benefit_of, counts_as_money, round_wan
from matching.ranking import (
    RankingConfig,
    called_by_phrase,
    package_score,
    specificity,
    trigger_hits,
    value_signal,
)
from matching.relevance import PolicyRetriever
from matching.rules import ELIGIBLE, UNKNOWN, RuleEngine
from policies.formula import Formula, parse_formula
from policies.loader import Catalog
from policies.rules import Leaf, leaves
from policies.schema import Policy
from profiles.columns import NEEDS_PREFIX, ProfileBatch
from profiles.fields import FIELDS, Kind

IN_PACKAGE, POSSIBLE = 1, 2
#: the columns of :func:`score_batch`'s answer, in order
RESULT_COLUMNS = ("uscc", "policy_id", "policy_version", "status", "score", "size", "value_wan")


@dataclass(frozen=True)
class TextSignals:
    """Rows = distinct texts, columns = policies (catalog order)."""

    relevance: np.ndarray  # float64 [t, m] fused relevance in [0, 1]
    trigger_hits: np.ndarray  # bool [t, m] a trigger word of the policy occurs in the firm's needs
    semantic: np.ndarray  # bool [t, m] among the top-k for the needs, calibrated score at the search floor or above

    def take(self, rows: np.ndarray) -> TextSignals:
        return TextSignals(self.relevance[rows], self.trigger_hits[rows], self.semantic[rows])

    @classmethod
    def stack(cls, parts: Sequence[TextSignals], m: int) -> TextSignals:
        if not parts:
            return cls(np.zeros((0, m), np.float64), np.zeros((0, m), bool), np.zeros((0, m), bool))
        return cls(np.concatenate([p.relevance for p in parts]), np.concatenate([p.trigger_hits for p in parts]),
                   np.concatenate([p.semantic for p in parts]))


def text_signals(keys: Sequence[str], retriever: PolicyRetriever, policies: Sequence[Policy],
                 ranking: RankingConfig) -> TextSignals:
    """Relevance and triggers for each distinct text key (see :func:`profiles.columns.text_key`).

    The texts are embedded in one call first (the embedder's cache then answers per text), so a
    population needs one model call per distinct wording.
    """
    m = len(policies)
    n = len(keys)
    relevance = np.zeros((n, m), dtype=np.float64)
    hits = np.zeros((n, m), dtype=bool)
    semantic = np.zeros((n, m), dtype=bool)
    texts = [k[2:] for k in keys]
    rows = retriever.positions([p.id for p in policies])  # policy position -> retriever row
    fresh = sorted({t for t in texts if t})
    if fresh and retriever.embedder is not None:
        retriever.embedder.embed(fresh, "query")  # one batched call fills the cache
    for row, (key, text) in enumerate(zip(keys, texts, strict=True)):
        if not text:
            continue
        scores = retriever.scores(text)
        rel = scores.channel(ranking.channel, rows)  # scaled over these policies
        relevance[row] = rel
        if key.startswith(NEEDS_PREFIX):
            hits[row] = [bool(trigger_hits(p.triggers, text)) for p in policies]
            if retriever.calibration is not None:  # the needs mean a policy: its absolute score reaches the
                # search floor (as Matcher.words does for the needs: see RankingConfig.word_floor)
                semantic[row, called_by_phrase(scores.calibrated[rows], ranking.phrase_floor(
                    retriever.calibration.floor), ranking.semantic_trigger_top_k)] = True
    return TextSignals(relevance, hits, semantic)


@dataclass(frozen=True)
class BatchScorer:
    """The catalog compiled for batch scoring (picklable: shipped once to each pool or Spark worker)."""

    engine: RuleEngine
    policy_ids: tuple[str, ...]
    versions: np.ndarray  # int32 [m]
    on_trigger: np.ndarray  # bool [m]
    proactive: np.ndarray  # bool [m]: an entitlement or a selective programme (the only pushable strengths)
    specificity: np.ndarray  # float64 [m] in [0, 1]
    formulas: tuple[str | None, ...]  # value estimate per policy (catalog formula), None = no estimate
    ranking: RankingConfig
    saving: np.ndarray  # bool [m]: the estimate is money kept or received (not a deferral): ranks and totals
    groups: tuple[str | None, ...]  # exclusive group per policy: one value per group and firm counts

    @classmethod
    def build(cls, catalog: Catalog, ranking: RankingConfig | None = None) -> BatchScorer:
        cfg = ranking or RankingConfig()
        policies = list(catalog)
        engine = RuleEngine(policies)
        spec = np.array([specificity(cfg, c.leaf_count) for c in engine.compiled], dtype=np.float64)
        return cls(engine, tuple(p.id for p in policies), np.array([p.version for p in policies], np.int32),
                   np.array([p.delivery == "on_trigger" for p in policies], dtype=bool),
                   np.array([offering.proactive(p) for p in policies], dtype=bool), spec,
                   tuple(e.formula if (e := benefit_of(p).estimate) else None for p in policies), cfg,
                   np.array([counts_as_money(p) for p in policies], dtype=bool),
                   tuple(benefit_of(p).exclusive_group for p in policies))

    @property
    def m(self) -> int:
        return len(self.policy_ids)


def score_batch(frame: pd.DataFrame, scorer: BatchScorer, signals: TextSignals, as_of: dt.date, *,
                timings: MutableMapping[str, float] | None = None) -> pd.DataFrame:
    """Score every (enterprise, policy) of ``frame``: the pure batch scorer.

    ``frame`` has ``uscc``, the encoded profile columns (:data:`profiles.columns.INPUT_COLUMNS`, as written by
    :func:`profiles.columns.encode_profiles`) and ``text_row``, the row of each firm's text in ``signals``. Returns
    :data:`RESULT_COLUMNS`: one row per offered or possibly-eligible pair, enterprise by enterprise;
    ``score`` is the package score of offered pairs (0 for possible ones); ``size`` is the firm's size code (-1 unknown).
    ``timings`` (optional) accumulates seconds spent in ``rules`` and ``ranking``.
    """
    t0 = time.perf_counter()
    batch = ProfileBatch.from_frame(frame).with_derived(as_of)
    result = scorer.engine.evaluate(batch, as_of, near_misses=False)
    status = result.status  # int8 [m, n]
    t1 = time.perf_counter()
    n = batch.n
    text_row = frame["text_row"].to_numpy(dtype=np.int64)
    eligible = status == ELIGIBLE
    cfg = scorer.ranking
    rel = signals.relevance[text_row].T  # [m, n]
    hits = signals.trigger_hits[text_row].T
    called = scorer.proactive[:, None] & (~scorer.on_trigger[:, None] | hits | signals.semantic[text_row].T)
    offered = eligible & called
    money = np.full((scorer.m, n), np.nan)  # 万元 per year, as matching.package.estimate_value (saving kinds only)
    env = {name: batch.columns[name] for name in FIELDS if FIELDS[name].kind in (Kind.NUMBER, Kind.BOOL)
           and name in batch.columns}
    compiled = scorer.engine.at(as_of)
    for i, source in enumerate(scorer.formulas):
        if source is None or not scorer.saving[i] or not eligible[i].any() or compiled[i].policy.lapsed(as_of):
            continue
        raw = np.broadcast_to(np.asarray(_formula(source).evaluate(env, as_of), dtype=np.float64), (n,))
        with np.errstate(invalid="ignore"):
            money[i] = np.where(np.isfinite(raw), round_wan(np.maximum(raw, 0.0)), np.nan)
    value = value_signal(cfg, money)
    score = package_score(cfg, rel, hits, scorer.specificity[:, None], value)
    # eligible on-request pairs are not offered, so not emitted (they are most pairs: 注销, 迁移 … apply to all);
    # procedures are never pushed, so an unknown one is no question for the push either
    code = np.where(offered, IN_PACKAGE, np.where((status == UNKNOWN) & called, POSSIBLE, 0)).astype(np.int8)
    counted = counted_values(np.where(offered, money, np.nan), scorer.groups)
    pol, row = np.nonzero(code)  # policy-major; reordered to enterprise-major below
    order = np.lexsort((pol, row))
    pol, row = pol[order], row[order]
    out = pd.DataFrame({
        "uscc": frame["uscc"].to_numpy(dtype=object)[row],
        "policy_id": np.asarray(scorer.policy_ids, dtype=object)[pol],
        "policy_version": scorer.versions[pol],
        "status": code[pol, row].astype(np.int8),
        "score": np.where(eligible[pol, row], np.round(score[pol, row], 6), 0.0),
        "size": batch.columns["size"][row].astype(np.int8),
        "value_wan": counted[pol, row],
    })
    if timings is not None:
        timings["rules"] = timings.get("rules", 0.0) + (t1 - t0)
        timings["ranking"] = timings.get("ranking", 0.0) + (time.perf_counter() - t1)
    return out


def counted_values(money: np.ndarray, groups: Sequence[str | None]) -> np.ndarray:
    """The values a firm's total counts [m, n]: within an exclusive group only the largest of the firm's offered
    values (ties: the first policy in catalog order), as :func:`matching.package._mark_exclusive`; NaN elsewhere."""
    out = money.copy()
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        if g is not None:
            members.setdefault(g, []).append(i)
    for rows in members.values():
        if len(rows) < 2:
            continue
        part = money[rows]
        filled = np.where(np.isnan(part), -np.inf, part)
        best = filled.argmax(axis=0)
        keep = np.zeros_like(part, dtype=bool)
        keep[best, np.arange(part.shape[1])] = True
        out[rows] = np.where(keep, part, np.nan)
    return out


@lru_cache(maxsize=512)
def _formula(source: str) -> Formula:
    return parse_formula(source)


def result_schema() -> dict[str, str]:
    """Column name → Spark SQL type of :func:`score_batch`'s answer (for ``mapInPandas``)."""
    return {"uscc": "string", "policy_id": "string", "policy_version": "int", "status": "tinyint",
            "score": "double", "size": "tinyint", "value_wan": "double"}


# ---- what changed since the last push ------------------------------------------------------------------
def benefit_digest(policy: Policy) -> str:
    """Identity of what a firm gets from a policy: a new version changes it only when the benefit did."""
    data = benefit_of(policy).model_dump(mode="json")
    return hashlib.sha256(json.dumps(data, ensure_ascii=False, sort_keys=True).encode()).hexdigest()[:16]


def age_thresholds(catalog: Catalog) -> np.ndarray:
    """Every age (years) the catalog's rules compare with: crossing one can change a firm's outcome."""
    found: set[float] = set()
    for policy in catalog:
        for leaf in leaves(policy.rule):
            if isinstance(leaf, Leaf) and leaf.field == "age_years" and isinstance(leaf.value, int | float):
                found.add(float(leaf.value))
    return np.array(sorted(found), dtype=np.float64)


def recheck_days(established_on: np.ndarray, as_of: dt.date, thresholds: np.ndarray) -> np.ndarray:
    """Per firm, the first day (days since 1970) after ``as_of`` on which its age may cross a threshold
    of the catalog (NaN = never: unknown founding date or no threshold ahead). A day early is harmless:
    re-scoring an unchanged firm finds nothing new."""
    today = float((as_of - dt.date(1970, 1, 1)).days)
    out = np.full(len(established_on), np.nan)
    for t in thresholds:
        day = np.floor(established_on + t * 365.25) - 1
        ahead = day > today
        out = np.where(ahead & (np.isnan(out) | (day < out)), day, out)
    return out
