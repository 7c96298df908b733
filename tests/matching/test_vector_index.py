"""Fast retrieval against the exact numpy oracle; HNSW recall measured against exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matching.embeddings import ModelMismatchError, Vectors
from matching.vector_index import VectorIndex, brute_force


def _unit(rng: np.random.Generator, n: int, dim: int = 32, clusters: int = 0) -> np.ndarray:
    if clusters:
        centres = rng.normal(size=(clusters, dim))
        x = centres[rng.integers(0, clusters, n)] + 0.35 * rng.normal(size=(n, dim))
    else:
        x = rng.normal(size=(n, dim))
    x = x.astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 400), st.integers(1, 15), st.integers(0, 2**31 - 1))
def test_flat_index_equals_brute_force(n: int, k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    base, queries = _unit(rng, n), _unit(rng, 7)
    index = VectorIndex.build([str(i) for i in range(n)], Vectors("m", base), fingerprint="f")
    scores, pos = index.search(Vectors("m", queries), k)
    want_scores, want_pos = brute_force(base, queries, min(k, n))
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)
    # positions agree except where two stored vectors tie exactly
    for got_row, want_row, s in zip(pos, want_pos, want_scores, strict=True):
        if len(set(np.round(s, 6))) == len(s):
            assert list(got_row) == list(want_row)
    np.testing.assert_allclose(index.all_scores(Vectors("m", queries[:1])), base @ queries[0], atol=1e-5)


def test_hnsw_recall_at_10_against_exact() -> None:
    rng = np.random.default_rng(0)
    base, queries = _unit(rng, 30_000, dim=64, clusters=200), _unit(rng, 300, dim=64, clusters=200)
    ids = [str(i) for i in range(len(base))]
    hnsw = VectorIndex.build(ids, Vectors("m", base), fingerprint="f", kind="hnsw")
    _, approx = hnsw.search(Vectors("m", queries), 10)
    _, exact = brute_force(base, queries, 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact, strict=True)])
    assert recall >= 0.95, recall


def test_population_index_is_exact_up_to_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    import matching.vector_index as vi

    rng = np.random.default_rng(1)
    base = _unit(rng, 50)
    monkeypatch.setattr(vi, "EXACT_LIMIT", 49)
    assert VectorIndex.for_population([str(i) for i in range(50)], Vectors("m", base), fingerprint="f").kind == "hnsw"
    monkeypatch.setattr(vi, "EXACT_LIMIT", 50)
    assert VectorIndex.for_population([str(i) for i in range(50)], Vectors("m", base), fingerprint="f").kind == "flat"


def test_persisted_and_rebuilt_when_the_catalog_or_the_model_changes(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    builds = []

    def build(model: str, fp: str):  # type: ignore[no-untyped-def]
        def inner() -> VectorIndex:
            builds.append((model, fp))
            return VectorIndex.build(["a", "b"], Vectors(model, _unit(rng, 2)), fingerprint=fp)
        return inner

    d = tmp_path / "idx"
    _, rebuilt = VectorIndex.load_or_build(d, model_id="m1", fingerprint="c1", build=build("m1", "c1"))
    assert rebuilt
    loaded, rebuilt = VectorIndex.load_or_build(d, model_id="m1", fingerprint="c1", build=build("m1", "c1"))
    assert not rebuilt and loaded.ids == ["a", "b"]
    assert VectorIndex.load_or_build(d, model_id="m1", fingerprint="c2", build=build("m1", "c2"))[1]
    assert VectorIndex.load_or_build(d, model_id="m2", fingerprint="c2", build=build("m2", "c2"))[1]
    assert builds == [("m1", "c1"), ("m1", "c2"), ("m2", "c2")]
    with pytest.raises(ModelMismatchError):
        loaded.search(Vectors("m9", _unit(rng, 1)), 1)


def test_the_policy_index_follows_the_catalog_fingerprint(catalog, embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from matching.relevance import PolicyRetriever

    policies = list(catalog)[:5]
    first = PolicyRetriever.build(policies, embedder=embedder, fingerprint="v1", index_dir=tmp_path)
    assert first.dense is not None and first.dense.fingerprint.startswith("v1:")
    second = PolicyRetriever.build(policies[:4], embedder=embedder, fingerprint="v2", index_dir=tmp_path)
    assert second.dense is not None and second.dense.fingerprint.startswith("v2:")
    assert {i.split("#")[0] for i in second.dense.ids} == {p.id for p in policies[:4]}
    # the same catalog fingerprint with other rows (e.g. every entry kind instead of policies only) rebuilds
    third = PolicyRetriever.build(policies[:3], embedder=embedder, fingerprint="v2", index_dir=tmp_path)
    assert third.dense is not None and {i.split("#")[0] for i in third.dense.ids} == {p.id for p in policies[:3]}
