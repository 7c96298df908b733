"""Run the evaluation: Recall@5, MRR and nDCG@5 for lexical-only, dense-only, hybrid and the naive
plan-text peer (the same hybrid search over the plan's raw task rows instead of the catalog)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import mean
from typing import Any

import yaml

from matching.embeddings import Embedder
from matching.evaluation.metrics import dedupe, ndcg_at, recall_at, reciprocal_rank
from matching.lexical import LexicalIndex
from matching.package import Matcher
from matching.relevance import FusionConfig, PolicyRetriever
from matching.vector_index import VectorIndex
from policies.loader import Catalog
from policies.plan import measures, tasks
from profiles.features import derive
from profiles.model import parse_profile
from profiles.uscc import check_character

DATA = Path(__file__).with_name("data")
ROWS = ("lexical", "dense", "hybrid", "naive_plan_hybrid")


@dataclass(frozen=True)
class Query:
    id: str
    text: str
    relevant: frozenset[object]
    kind: str


@dataclass(frozen=True)
class ProfileCase:
    id: str
    profile: dict[str, Any]
    as_of: dt.date
    must_include: frozenset[str]


def load_queries(path: Path = DATA / "queries.yaml") -> list[Query]:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [Query(q["id"], q["query"], frozenset(q["relevant"]), q["kind"]) for q in raw]


def load_profile_cases(path: Path = DATA / "profiles.yaml") -> list[ProfileCase]:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    out = []
    for i, case in enumerate(raw):
        profile = dict(case["profile"])
        body = f"9132031200000{i:04d}"
        profile.setdefault("uscc", body + check_character(body))
        if case.get("needs"):
            profile["needs"] = case["needs"]
        for key, value in list(profile.items()):
            if isinstance(value, dt.date):
                profile[key] = value.isoformat()
        out.append(ProfileCase(case["id"], profile, case.get("as_of", dt.date(2024, 6, 1)),
                               frozenset(case["must_include"])))
    return out


def policy_label(catalog: Catalog, policy_id: str) -> object:
    src = catalog[policy_id].source
    return src.task_no if src.task_no else f"M{src.measure_no}"


def _scores(rankings: Sequence[Sequence[object]], truths: Sequence[set[object]]) -> dict[str, float]:
    return {
        "recall@5": round(mean(recall_at(r, t) for r, t in zip(rankings, truths, strict=True)), 4),
        "mrr": round(mean(reciprocal_rank(r, t) for r, t in zip(rankings, truths, strict=True)), 4),
        "ndcg@5": round(mean(ndcg_at(r, t) for r, t in zip(rankings, truths, strict=True)), 4),
    }


def naive_plan_retriever(embedder: Embedder | None, fusion: FusionConfig | None = None) -> PolicyRetriever:
    """The same hybrid machinery over the plan's raw rows: 160 tasks and 10 measures, nothing else."""
    ids = [str(t.no) for t in tasks()] + [f"M{m.no}" for m in measures()]
    docs = [f"{t.title}。{t.text}" for t in tasks()] + [m.text for m in measures()]
    lexical = LexicalIndex.build(ids, docs)
    dense = None
    if embedder is not None:
        dense = VectorIndex.build(ids, embedder.embed(docs, "passage"), fingerprint="plan")
    return PolicyRetriever(ids, lexical, dense, embedder, fusion or FusionConfig(), None)


def _label(raw: str) -> object:
    return int(raw) if raw.isdigit() else raw


def evaluate_queries(matcher: Matcher, naive: PolicyRetriever, queries: Sequence[Query],
                     k_search: int = 20) -> dict[str, dict[str, float]]:
    truths = [set(q.relevant) for q in queries]
    out: dict[str, dict[str, float]] = {}
    for mode in ("lexical", "dense", "hybrid"):
        rankings = [dedupe([policy_label(matcher.catalog, pid)
                            for pid, _ in matcher.retriever.rank(q.text, mode=mode)])[:k_search]  # type: ignore[arg-type]
                    for q in queries]
        out[mode] = _scores(rankings, truths)
    rankings = [[_label(pid) for pid, _ in naive.rank(q.text, mode="hybrid")][:k_search] for q in queries]
    out["naive_plan_hybrid"] = _scores(rankings, truths)
    return out


def evaluate_profiles(matcher: Matcher, naive: PolicyRetriever,
                      cases: Sequence[ProfileCase]) -> dict[str, dict[str, float]]:
    """Must-include policies in the top 5 of each package (ranking varies only by channel)."""
    out: dict[str, dict[str, float]] = {}
    truths: list[set[object]] = [set(c.must_include) for c in cases]
    for mode in ("lexical", "dense", "hybrid"):
        variant = replace(matcher, ranking=matcher.ranking.model_copy(update={"channel": mode}))
        rankings = [[e["policy_id"] for e in variant.match(derive(parse_profile(c.profile), c.as_of))["package"]]
                    for c in cases]
        out[mode] = _scores(rankings, truths)
    task_truths = [{policy_label(matcher.catalog, p) for p in c.must_include} for c in cases]
    rankings = [[_label(pid) for pid, _ in naive.rank(c.profile.get("needs", ""), mode="hybrid")] for c in cases]
    out["naive_plan_hybrid"] = _scores(rankings, task_truths)
    return out


def run(matcher: Matcher) -> dict[str, Any]:
    naive = naive_plan_retriever(matcher.retriever.embedder, matcher.retriever.fusion)
    queries, cases = load_queries(), load_profile_cases()
    return {
        "model_id": matcher.model_id,
        "catalog_version": matcher.catalog.version,
        "queries": {"n": len(queries), **evaluate_queries(matcher, naive, queries)},
        "profiles": {"n": len(cases), **evaluate_profiles(matcher, naive, cases)},
    }
