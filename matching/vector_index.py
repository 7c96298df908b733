"""Vector indexes (faiss): exact inner product for policies, exact or HNSW for enterprises.

An index records the model id of its vectors and the fingerprint of what it was built from;
``load_or_build`` rebuilds it when either changed. Fast search is tested against brute-force
numpy on the same vectors.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from matching.embeddings import ModelMismatchError, Vectors

EXACT_LIMIT = 100_000  # above this many vectors, the enterprise index switches to HNSW


@dataclass
class VectorIndex:
    """Ids + a faiss index over their unit vectors (inner product = cosine)."""

    ids: list[str]
    model_id: str
    fingerprint: str
    index: faiss.Index
    kind: str  # "flat" | "hnsw"
    _stored: np.ndarray | None = field(default=None, repr=False)  # flat vectors, for all_scores

    @classmethod
    def build(cls, ids: Sequence[str], vectors: Vectors, *, fingerprint: str, kind: str = "flat",
              hnsw_m: int = 32, ef_construction: int = 200, ef_search: int = 256) -> VectorIndex:
        matrix = np.ascontiguousarray(vectors.matrix, dtype=np.float32)
        if len(ids) != len(matrix):
            raise ValueError(f"{len(ids)} ids for {len(matrix)} vectors")
        dim = matrix.shape[1] if matrix.size else 0
        index: faiss.Index
        if kind == "flat":
            index = faiss.IndexFlatIP(dim)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = ef_construction
            index.hnsw.efSearch = ef_search
        else:
            raise ValueError(f"unknown index kind '{kind}'")
        if len(matrix):
            index.add(matrix)
        return cls(list(ids), vectors.model_id, fingerprint, index, kind)

    @classmethod
    def for_population(cls, ids: Sequence[str], vectors: Vectors, *, fingerprint: str) -> VectorIndex:
        """Exact below :data:`EXACT_LIMIT` vectors, HNSW above (recall measured in tests and bench)."""
        kind = "flat" if len(ids) <= EXACT_LIMIT else "hnsw"
        return cls.build(ids, vectors, fingerprint=fingerprint, kind=kind)

    def __len__(self) -> int:
        return len(self.ids)

    def search(self, queries: Vectors, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, positions) per query row; positions -1 where fewer than k exist."""
        matrix = np.ascontiguousarray(queries.require(self.model_id), dtype=np.float32)
        k = max(1, min(k, len(self.ids))) if self.ids else 1
        return self.index.search(matrix, k)

    def all_scores(self, query: Vectors) -> np.ndarray:
        """Cosine of one query against every stored vector, in id order (flat indexes only)."""
        if self.kind != "flat":
            raise ValueError("all_scores needs an exact (flat) index")
        q = query.require(self.model_id)
        if self._stored is None or len(self._stored) != len(self.ids):
            self._stored = self.index.reconstruct_n(0, len(self.ids)) if self.ids else np.zeros((0, q.shape[1]))
        return (self._stored @ q[0]).astype(np.float32)

    # ---- persistence ----------------------------------------------------------------
    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        tmp_index = directory / f"index.faiss.{os.getpid()}.tmp"
        faiss.write_index(self.index, str(tmp_index))
        tmp_index.replace(directory / "index.faiss")  # atomic: a concurrent reader never sees half a file
        meta = {"ids": self.ids, "model_id": self.model_id, "fingerprint": self.fingerprint, "kind": self.kind}
        tmp = directory / f"meta.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        tmp.replace(directory / "meta.json")

    @classmethod
    def load(cls, directory: Path) -> VectorIndex:
        meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
        index = faiss.read_index(str(directory / "index.faiss"))
        return cls(meta["ids"], meta["model_id"], meta["fingerprint"], index, meta["kind"])

    @classmethod
    def load_or_build(cls, directory: Path | None, *, model_id: str, fingerprint: str,
                      build: Callable[[], VectorIndex]) -> tuple[VectorIndex, bool]:
        """The stored index if it matches ``model_id`` and ``fingerprint``; else build and store it.

        Returns (index, rebuilt)."""
        if directory is not None and (directory / "meta.json").exists():
            try:
                stored = cls.load(directory)
            except (OSError, ValueError, RuntimeError, KeyError):
                stored = None
            if stored is not None and stored.model_id == model_id and stored.fingerprint == fingerprint:
                return stored, False
        index = build()
        if index.model_id != model_id:
            raise ModelMismatchError(f"built index has model '{index.model_id}', expected '{model_id}'")
        if directory is not None:
            index.save(directory)
        return index, True


def brute_force(matrix: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The exact oracle: top-k inner products by numpy (ties broken by position)."""
    scores = queries @ matrix.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), order
