"""The package ranking and its triggers: one implementation for the interactive package
(:class:`matching.package.Matcher`) and the nightly batch scorer (:mod:`matching.batch`).

Only eligible policies are ranked; the score orders them, it never decides eligibility. Its signals, each in
[0, 1]: the relevance of the firm's words to the policy, whether they name one of its trigger words, how
specific the policy's rule is, and the estimated yearly value. An on-request policy is called for by a
trigger word or, semantically, when a phrase of the firm's means it (:func:`called_by_phrase`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from matching.relevance import Mode


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
        5, ge=0, description="an on-request policy also counts as triggered when the firm's words mean it (callers "
        "say 销掉 or 挪到外地, not 注销 or 迁移): its calibrated score for one of the firm's phrases reaches the "
        "search floor and it is among the k best policies for that phrase")
    word_floor: float = Field(
        1.0, gt=0, le=1, description="the firm's words call a policy (a semantic trigger, an on-request entry "
        "about them) when its calibrated score for one of their phrases is at least this share of the search "
        "floor (1: exactly what search would answer; words search answers with no_match call nothing)")
    on_request_top_k: int = Field(
        10, ge=0, description="an on-request procedure is listed first, as being about the firm's words, when its "
        "calibrated score for one of the firm's phrases reaches the search floor and it is among the k best "
        "policies for that phrase")
    channel: Mode = Field("hybrid", description="relevance channel used (dense-only and lexical-only exist "
                          "for the evaluation's comparison rows)")

    def phrase_floor(self, search_floor: float) -> float:
        """The calibrated score at or above which a phrase of the firm's is about a policy."""
        return self.word_floor * search_floor


def package_score(cfg: RankingConfig, relevance: Any, triggered: Any, specificity: Any, value: Any) -> Any:
    """THE package score, for one pair (floats) or whole arrays ([policies] or [policies, firms]):
    relevance, trigger (0/1 or bool), specificity (:func:`specificity`), value (:func:`value_signal`)."""
    return (cfg.relevance * relevance + cfg.trigger * triggered + cfg.specificity * specificity
            + cfg.value * value)


def specificity(cfg: RankingConfig, leaf_count: int) -> float:
    """How specific a rule is: its leaf count, saturating at ``specificity_saturation``."""
    return min(leaf_count, cfg.specificity_saturation) / cfg.specificity_saturation


def value_signal(cfg: RankingConfig, estimate: Any) -> Any:
    """The value signal of an estimated yearly value (万元; NaN or inf = unknown → 0), saturating at
    ``value_scale_wan``: a float for a float, an array for an array."""
    est = np.asarray(estimate, dtype=np.float64)
    out = np.where(np.isfinite(est), np.minimum(1.0, est / cfg.value_scale_wan), 0.0)
    return float(out) if out.ndim == 0 else out


def trigger_hits(triggers: Sequence[str], text: str | None) -> list[str]:
    """The policy's trigger words that occur in the firm's words (needs and the operator's query)."""
    return [t for t in triggers if t in text] if text else []


def called_by_phrase(scores: np.ndarray, floor: float, top_k: int) -> np.ndarray:
    """Positions of the policies one phrase calls (a semantic trigger): among the phrase's ``top_k`` best by
    calibrated score (ties by position: deterministic) and at or above ``floor``; best first."""
    order = np.argsort(-scores, kind="stable")[:top_k]
    return order[scores[order] >= floor]


def phrases_of(text: str | None) -> list[str]:
    """The text as one phrase (whitespace normalised), or none. Each text is scored whole: scored clause by
    clause, a fragment out of its context (国外客户催得紧, 哪里有好的辅导班) often looks like a confident
    match for something unrelated under the calibrated score (measured 2026-11-30 on the evaluation profiles:
    dozens of such hits, against one more must-include procedure reached)."""
    text = " ".join((text or "").split())
    return [text] if text else []


@dataclass(frozen=True)
class Words:
    """The calibrated score of each of the firm's phrases for each policy (engine order)."""

    phrases: list[str]
    per_phrase: np.ndarray  # [phrases, policies] calibrated probability
    score: np.ndarray  # [policies] best over the phrases (0 without words)
    floor: float  # RankingConfig.phrase_floor: below it a phrase is about nothing
    ids: list[str]

    def called(self, top_k: int) -> dict[str, str]:
        """Policy id -> the phrase that calls it (:func:`called_by_phrase`; the best-scoring phrase wins)."""
        out: dict[str, tuple[float, str]] = {}
        for phrase, row in zip(self.phrases, self.per_phrase, strict=True):
            for i in called_by_phrase(row, self.floor, top_k):
                best = out.get(self.ids[i])
                if best is None or row[i] > best[0]:
                    out[self.ids[i]] = (float(row[i]), phrase)
        return {pid: phrase for pid, (_, phrase) in out.items()}
