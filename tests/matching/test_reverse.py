"""Policy → enterprises: deduplicated texts, exact ranking, HNSW agreement with exact."""

from __future__ import annotations

import datetime as dt

import numpy as np

import matching.vector_index as vi
from matching.relevance import dense_passage
from matching.reverse import EnterpriseIndex, rank_eligible
from matching.rules import ELIGIBLE, RuleEngine
from profiles.synth import synthesize

AS_OF = dt.date(2024, 6, 1)


def _texts(pop) -> list[str]:  # type: ignore[no-untyped-def]
    return [f"{pop.business_scope[i]} {pop.needs[i]}".strip() for i in range(len(pop))]


def test_reverse_ranking_is_exact_and_embeds_each_distinct_text_once(catalog, embedder) -> None:  # type: ignore[no-untyped-def]
    pop = synthesize(1500, seed=4)
    texts = _texts(pop)
    index = EnterpriseIndex.build(list(pop.uscc), texts, embedder, fingerprint="pop")
    assert index.embedded == len(set(texts)) < len(texts)
    policy = catalog["ip-pledge-financing-xuzhidai"]
    query = embedder.embed([dense_passage(policy)], "query")
    sim = index.similarity(query)
    # oracle: brute force over every enterprise's own vector
    own = embedder.embed(texts, "passage").matrix @ query.matrix[0]
    np.testing.assert_allclose(sim, own, atol=1e-5)
    result = RuleEngine([policy]).evaluate(pop.batch.with_derived(AS_OF), AS_OF)
    eligible = result.status[0] == ELIGIBLE
    order = rank_eligible(eligible, sim, list(pop.uscc))
    assert set(order) == set(np.flatnonzero(eligible))
    assert np.all(np.diff(sim[order]) <= 1e-6)


def test_hnsw_enterprise_index_agrees_with_exact(monkeypatch, embedder) -> None:  # type: ignore[no-untyped-def]
    pop = synthesize(1200, seed=8)
    texts = [f"{t} 编号{i % 300}" for i, t in enumerate(_texts(pop))]  # a few hundred distinct texts
    exact = EnterpriseIndex.build(list(pop.uscc), texts, embedder, fingerprint="e")
    monkeypatch.setattr(vi, "EXACT_LIMIT", 100)
    approx = EnterpriseIndex.build(list(pop.uscc), texts, embedder, fingerprint="a")
    assert exact.texts.kind == "flat" and approx.texts.kind == "hnsw"
    q = embedder.embed(["想用专利质押贷款的科技企业"], "query")
    top_exact = set(np.argsort(-exact.similarity(q), kind="stable")[:30])
    a = np.nan_to_num(approx.similarity(q, candidates=150), nan=-2)
    top_approx = set(np.argsort(-a, kind="stable")[:30])
    assert len(top_exact & top_approx) / 30 >= 0.95
