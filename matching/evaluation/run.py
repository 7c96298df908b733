"""Run the evaluation: Recall@5, MRR and nDCG@5 for lexical-only, dense-only, hybrid and the naive
plan-text peer (the same hybrid search over the plan's raw task rows instead of the catalog), on three
in-scope sets — hotline queries about policies (``queries``), hotline queries about the plan's
commitments and plan work (``plan``), profile + needs cases (``profiles``) — and the abstention rates:
how many off-topic questions search refuses (``no_match``) and how many in-scope ones it wrongly refuses.

The calibration and the floor are fitted on training data only (the catalog's own 常见问法 and
``matching/data/offtopic_train.yaml``); every number here is on held-out sets."""

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
SETS = ("queries", "plan", "profiles")


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


def load_plan_queries(path: Path = DATA / "plan.yaml") -> list[Query]:
    """Hotline questions about the commitments and plan work of the whole plan."""
    return load_queries(path)


def load_offtopic(path: Path = DATA / "offtopic.yaml") -> list[Query]:
    """Questions this catalog does not answer (no relevant label)."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [Query(q["id"], q["query"], frozenset(), "off_topic") for q in raw]


def load_fresh(path: Path = DATA / "fresh.yaml") -> tuple[list[Query], list[Query]]:
    """The fresh check set (in-scope, off-topic): never used for a design decision."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    return ([Query(q["id"], q["query"], frozenset(q["relevant"]), q["kind"]) for q in raw["in_scope"]],
            [Query(q["id"], q["query"], frozenset(), "off_topic") for q in raw["off_topic"]])


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
    if src.task_no:
        return src.task_no
    return f"M{src.measure_no}" if src.measure_no else f"N:{policy_id}"  # N: a national or provincial entry


def entry_labels(catalog: Catalog, entry_id: str) -> list[object]:
    """The task (or measure) an entry comes from, then the tasks it also serves (``related_tasks``:
    e.g. the 一企来 entry quotes task 150 too). A ranked entry counts as a hit for any of them."""
    return [policy_label(catalog, entry_id), *catalog[entry_id].source.related_tasks]


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
        rankings = [dedupe([label for pid, _ in matcher.retriever.rank(q.text, mode=mode)
                            for label in entry_labels(matcher.catalog, pid)])[:k_search]
                    for q in queries]
        out[mode] = _scores(rankings, truths)
    rankings = [[_label(pid) for pid, _ in naive.rank(q.text, mode="hybrid")][:k_search] for q in queries]
    out["naive_plan_hybrid"] = _scores(rankings, truths)
    return out


def _combined(parts: Sequence[tuple[Sequence[object], set[object]]]) -> dict[str, float]:
    """One case judged on several (ranking, relevant) parts: recall and nDCG weighted by how many
    relevant items each part holds, reciprocal rank of the best part."""
    total = sum(len(t) for _, t in parts) or 1
    return {"recall@5": sum(recall_at(r, t) * len(t) for r, t in parts) / total,
            "mrr": max(reciprocal_rank(r, t) for r, t in parts),
            "ndcg@5": sum(ndcg_at(r, t) * len(t) for r, t in parts) / total}


def evaluate_profiles(matcher: Matcher, naive: PolicyRetriever,
                      cases: Sequence[ProfileCase]) -> dict[str, dict[str, float]]:
    """Must-include policies in the top 5 of each package (ranking varies only by channel); a must-include
    commitment or plan-work entry (never in a package) in the top 5 of the search over the firm's words."""
    out: dict[str, dict[str, float]] = {}
    policies = matcher.catalog.policies
    for mode in ("lexical", "dense", "hybrid"):
        variant = replace(matcher, ranking=matcher.ranking.model_copy(update={"channel": mode}))
        per_case = []
        for c in cases:
            package = [e.policy_id for e in variant.match(derive(parse_profile(c.profile), c.as_of)).package]
            mine: set[object] = {p for p in c.must_include if p in policies}
            parts: list[tuple[Sequence[object], set[object]]] = [(package, mine)]
            others: set[object] = {p for p in c.must_include if p not in policies}
            if others:
                found: list[object] = [pid for pid, _ in matcher.retriever.rank(c.profile.get("needs", ""), mode=mode)]
                parts.append((found, others))
            per_case.append(_combined([(r, t) for r, t in parts if t]))
        out[mode] = {k: round(mean(m[k] for m in per_case), 4) for k in ("recall@5", "mrr", "ndcg@5")}
    task_truths = [{policy_label(matcher.catalog, p) for p in c.must_include} for c in cases]
    rankings = [[_label(pid) for pid, _ in naive.rank(c.profile.get("needs", ""), mode="hybrid")] for c in cases]
    out["naive_plan_hybrid"] = _scores(rankings, task_truths)
    return out


def abstention(matcher: Matcher, sets: dict[str, Sequence[Query]], offtopic: Sequence[Query],
               as_of: dt.date | None = None) -> dict[str, Any]:
    """Share of each set that search answers with no_match (off-topic: should be high; in-scope: low)."""
    from matching.search import search

    def refused(queries: Sequence[Query]) -> list[str]:
        return [q.id for q in queries if search(matcher, q.text, top=5, as_of=as_of)["no_match"]]

    out: dict[str, Any] = {}
    in_scope: list[str] = []
    n_in = 0
    for name, queries in sets.items():
        ids = refused(queries)
        out[f"{name}_refused"] = round(len(ids) / len(queries), 4) if queries else 0.0
        in_scope += ids
        n_in += len(queries)
    off = refused(offtopic)
    out["in_scope_refused"] = round(len(in_scope) / n_in, 4) if n_in else 0.0
    out["off_topic_refused"] = round(len(off) / len(offtopic), 4) if offtopic else 0.0
    out["n_in_scope"], out["n_off_topic"] = n_in, len(offtopic)
    out["wrongly_refused"] = in_scope
    out["off_topic_answered"] = [q.id for q in offtopic if q.id not in set(off)]
    cal = matcher.retriever.calibration
    out["floor"] = round(cal.floor, 4) if cal is not None else None
    return out


def run(matcher: Matcher) -> dict[str, Any]:
    naive = naive_plan_retriever(matcher.retriever.embedder, matcher.retriever.fusion)
    queries, plan, cases, offtopic = load_queries(), load_plan_queries(), load_profile_cases(), load_offtopic()
    fresh, fresh_off = load_fresh()
    cal = matcher.retriever.calibration
    as_of = dt.date(2024, 6, 1)  # inside every entry's validity window, as the profile cases
    return {
        "model_id": matcher.model_id,
        "catalog_version": matcher.catalog.version,
        "entries": len(matcher.retriever.ids),
        "queries": {"n": len(queries), **evaluate_queries(matcher, naive, queries)},
        "plan": {"n": len(plan), **evaluate_queries(matcher, naive, plan)},
        "profiles": {"n": len(cases), **evaluate_profiles(matcher, naive, cases)},
        "fresh": {"n": len(fresh), **evaluate_queries(matcher, naive, fresh)},
        "abstention": abstention(matcher, {"queries": queries, "plan": plan}, offtopic, as_of),
        "abstention_fresh": abstention(matcher, {"fresh": fresh}, fresh_off, as_of),
        "calibration": cal.to_json() if cal is not None else None,
    }
