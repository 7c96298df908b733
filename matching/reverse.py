"""The reverse direction (政府主动送): for one policy, its eligible enterprises ranked.

Enterprise texts (business scope + own words + portrait tags) are deduplicated before they are
embedded — a register repeats the same scope wording thousands of times — and indexed once:
exact below ``EXACT_LIMIT`` distinct texts, HNSW above (recall measured against exact).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from matching.embeddings import Embedder, Vectors
from matching.vector_index import VectorIndex


@dataclass
class EnterpriseIndex:
    keys: list[str]  # enterprise ids in row order
    texts: VectorIndex  # over distinct texts
    inverse: np.ndarray  # enterprise row -> distinct-text row
    embedded: int  # distinct texts embedded for this index

    @classmethod
    def build(cls, keys: Sequence[str], texts: Sequence[str], embedder: Embedder, *,
              fingerprint: str) -> EnterpriseIndex:
        if len(keys) != len(texts):
            raise ValueError(f"{len(keys)} keys for {len(texts)} texts")
        uniques, inverse = np.unique(np.asarray(texts, dtype=object).astype(str), return_inverse=True)
        vectors = embedder.embed(list(uniques), "passage")
        index = VectorIndex.for_population([str(i) for i in range(len(uniques))], vectors, fingerprint=fingerprint)
        return cls(list(keys), index, inverse.astype(np.int64), len(uniques))

    def similarity(self, query: Vectors, *, candidates: int = 5000) -> np.ndarray:
        """Cosine of every enterprise's text to ``query`` (NaN where an approximate index did not
        reach it within ``candidates`` nearest texts)."""
        if self.texts.kind == "flat":
            per_text = self.texts.all_scores(query)
        else:
            scores, pos = self.texts.search(query, candidates)
            per_text = np.full(len(self.texts), np.nan, dtype=np.float32)
            keep = pos[0] >= 0
            per_text[pos[0][keep]] = scores[0][keep]
        return per_text[self.inverse]


def rank_eligible(eligible: np.ndarray, similarity: np.ndarray, keys: Sequence[str]) -> np.ndarray:
    """Row positions of eligible enterprises, most similar first (unreached rows last, ties by key)."""
    rows = np.flatnonzero(eligible)
    sim = np.nan_to_num(similarity[rows], nan=-2.0)
    key_order = np.argsort(np.asarray(keys, dtype=object)[rows].astype(str), kind="stable")
    rank_of_key = np.empty_like(key_order)
    rank_of_key[key_order] = np.arange(len(rows))
    return rows[np.lexsort((rank_of_key, -sim))]
