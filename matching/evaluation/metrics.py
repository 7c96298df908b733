"""Ranking metrics over label lists (binary relevance)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def dedupe(labels: Sequence[object]) -> list[object]:
    """First occurrence of each label, order kept (several policies may share a task)."""
    return list(dict.fromkeys(labels))


def recall_at(ranked: Sequence[object], relevant: set[object], k: int = 5) -> float:
    """
    >>> recall_at([1, 2, 3], {2, 9}, k=2)
    0.5
    """
    return len(set(ranked[:k]) & relevant) / len(relevant) if relevant else 0.0


def reciprocal_rank(ranked: Sequence[object], relevant: set[object]) -> float:
    """
    >>> reciprocal_rank(["a", "b"], {"b"})
    0.5
    """
    for i, label in enumerate(ranked, 1):
        if label in relevant:
            return 1.0 / i
    return 0.0


def ndcg_at(ranked: Sequence[object], relevant: set[object], k: int = 5) -> float:
    """
    >>> round(ndcg_at([9, 1], {1}, k=5), 4)
    0.6309
    """
    dcg = sum(1.0 / math.log2(i + 1) for i, label in enumerate(ranked[:k], 1) if label in relevant)
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(k, len(relevant)) + 1))
    return dcg / ideal if ideal else 0.0
