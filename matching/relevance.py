"""Relevance of policies to free text: a dense channel (embeddings + faiss) and a lexical
channel (TF-IDF), fused. Used by ``policyfit search`` and by the package ranking."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from matching.embeddings import Embedder, Kind, Vectors
from matching.lexical import LexicalIndex, policy_document
from matching.vector_index import VectorIndex
from policies.schema import Policy

Mode = Literal["hybrid", "dense", "lexical"]


class FusionConfig(BaseModel):
    """How the two channels are combined into one relevance in [0, 1]."""

    model_config = ConfigDict(frozen=True)

    dense_weight: float = Field(0.7, ge=0, description="weight of the floor-and-max-normalised dense cosine")
    lexical_weight: float = Field(0.3, ge=0, description="weight of the max-normalised TF-IDF cosine")
    dense_floor: float = Field(
        0.8, ge=-1, le=1,
        description="cosine treated as 'unrelated' for multilingual-e5 (its cosines rarely fall below ~0.75)",
    )


def dense_passage(policy: Policy) -> str:
    """What a policy is embedded as: its plain-language face and keywords. The plan's own wording
    is left to the lexical channel (measured: adding it to the passage lowers dense recall)."""
    keywords = "、".join(dict.fromkeys([*policy.tags, *policy.triggers]))
    return f"{policy.title}。{policy.summary}{policy.benefit.description}。关键词：{keywords}"


def dense_rows(policies: Sequence[Policy]) -> tuple[list[str], list[str], list[Kind], np.ndarray]:
    """Row ids, texts, embedding modes and owner policy positions of the dense index.

    Each policy is one passage row plus one row per 常见问法; a question is embedded in query
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


@dataclass
class RelevanceScores:
    dense: np.ndarray  # raw cosine
    lexical: np.ndarray  # raw TF-IDF cosine
    fused: np.ndarray  # in [0, 1]
    dense_scaled: np.ndarray  # in [0, 1]
    lexical_scaled: np.ndarray  # in [0, 1]

    def channel(self, mode: Mode) -> np.ndarray:
        """One channel (or the fusion) as a relevance in [0, 1]."""
        return {"hybrid": self.fused, "dense": self.dense_scaled, "lexical": self.lexical_scaled}[mode]


@dataclass
class PolicyRetriever:
    """Both channels over one list of policies (ids in catalog order)."""

    ids: list[str]
    lexical: LexicalIndex
    dense: VectorIndex | None
    embedder: Embedder | None
    fusion: FusionConfig
    owners: np.ndarray | None = None  # dense row -> position in ids (None: one row per id)
    _memo: dict[str, RelevanceScores] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, policies: Sequence[Policy], *, embedder: Embedder | None, fingerprint: str,
              index_dir: Path | None = None, fusion: FusionConfig | None = None) -> PolicyRetriever:
        ids = [p.id for p in policies]
        lexical = LexicalIndex.build(ids, [policy_document(p) for p in policies])
        dense = None
        row_ids, texts, kinds, owners = dense_rows(policies)
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
                return VectorIndex.build(row_ids, Vectors(emb.model_id, matrix), fingerprint=fingerprint)

            dense, _ = VectorIndex.load_or_build(index_dir, model_id=embedder.model_id,
                                                 fingerprint=fingerprint, build=build_index)
        return cls(ids, lexical, dense, embedder, fusion or FusionConfig(), owners)

    def scores(self, text: str) -> RelevanceScores:
        """Both channels and their fusion for ``text`` (memoised: a stored profile's words recur)."""
        cached = self._memo.get(text)
        if cached is None:
            cached = self._compute(text)
            if len(self._memo) >= 4096:
                self._memo.pop(next(iter(self._memo)))
            self._memo[text] = cached
        return cached

    def _compute(self, text: str) -> RelevanceScores:
        n = len(self.ids)
        lexical = self.lexical.scores(text) if text.strip() else np.zeros(n)
        if self.dense is None or self.embedder is None or not text.strip():
            dense = np.zeros(n)
        else:
            rows = self.dense.all_scores(self.embedder.embed([text], "query")).astype(float)
            if self.owners is None:
                dense = rows
            else:  # a policy is as close as its closest row (passage or 常见问法)
                dense = np.full(n, -1.0)
                np.maximum.at(dense, self.owners, rows)
        d, lex = _scaled(dense, self.fusion.dense_floor), _scaled(lexical)
        return RelevanceScores(dense, lexical, self.fuse(d, lex), d, lex)

    def fuse(self, dense_scaled: np.ndarray, lexical_scaled: np.ndarray) -> np.ndarray:
        """Weighted sum of the scaled channels (lexical alone when there is no dense channel)."""
        cfg = self.fusion
        if self.dense is None:
            return lexical_scaled
        total = cfg.dense_weight + cfg.lexical_weight
        return (cfg.dense_weight * dense_scaled + cfg.lexical_weight * lexical_scaled) / (total or 1)

    def rank(self, text: str, *, mode: Mode = "hybrid", allowed: set[str] | None = None,
             top: int | None = None) -> list[tuple[str, float]]:
        """Policy ids by relevance (ties by id); zero-relevance policies are dropped."""
        s = self.scores(text)
        score = {"hybrid": s.fused, "dense": s.dense, "lexical": s.lexical}[mode]  # raw cosine for single channels
        order = sorted(range(len(self.ids)), key=lambda i: (-score[i], self.ids[i]))
        hits = [(self.ids[i], float(score[i])) for i in order
                if score[i] > 0 and (allowed is None or self.ids[i] in allowed)]
        return hits[:top] if top else hits
