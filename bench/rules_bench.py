"""Rule-engine throughput: enterprise×policy checks per second, vectorised vs reference.

    python bench/rules_bench.py --n 200000 [--repeat 5] [--reference-n 4000]

Both engines run in this process on the same synthetic population (labelled synthetic) and
the same catalog. The reference evaluator is timed on a subsample (it is pure Python and
would take minutes on the full population); the ratio compares checks per second. Reports
medians; the machine is noisy, so compare the ratio, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import time

import numpy as np

from matching import reference
from matching.rules import RuleEngine
from policies.loader import load_catalog
from profiles.synth import synthesize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--reference-n", type=int, default=4000)
    parser.add_argument("--as-of", default="2024-06-01")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    as_of = dt.date.fromisoformat(args.as_of)

    catalog = load_catalog()
    policies = list(catalog)
    engine = RuleEngine(policies)
    t0 = time.perf_counter()
    population = synthesize(args.n, seed=1)
    t_synth = time.perf_counter() - t0
    t0 = time.perf_counter()
    batch = population.batch.with_derived(as_of)
    t_derive = time.perf_counter() - t0

    checks = args.n * len(policies)
    vec_times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        result = engine.evaluate(batch, as_of)
        vec_times.append(time.perf_counter() - t0)
    vec_eligibility_only = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        engine.evaluate(batch, as_of, near_misses=False)
        vec_eligibility_only.append(time.perf_counter() - t0)

    sub = batch.take(slice(0, args.reference_n))
    records = [sub.record(i) for i in range(sub.n)]
    rules = [(p.rule_at(as_of), p.is_active(as_of)) for p in policies]
    ref_times = []
    for _ in range(max(1, args.repeat // 2)):
        t0 = time.perf_counter()
        ref = [[reference.evaluate(rule, r) if active else False for r in records] for rule, active in rules]
        ref_times.append(time.perf_counter() - t0)
    # the two agree on the subsample (a benchmark that measures a wrong answer is worthless)
    decode = {True: 1, False: 0, None: 2}
    assert np.array_equal(np.array([[decode[v] for v in row] for row in ref], dtype=np.int8),
                          result.status[:, : args.reference_n])

    vec_med = statistics.median(vec_times)
    elig_med = statistics.median(vec_eligibility_only)
    ref_med = statistics.median(ref_times)
    vec_rate = checks / vec_med
    ref_rate = args.reference_n * len(policies) / ref_med
    report = {
        "profiles": args.n,
        "policies": len(policies),
        "checks": checks,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "synthesize_s": round(t_synth, 3),
        "derive_s": round(t_derive, 3),
        "vectorised_median_s": round(vec_med, 4),
        "vectorised_checks_per_s": round(vec_rate),
        "vectorised_eligibility_only_median_s": round(elig_med, 4),
        "vectorised_eligibility_only_checks_per_s": round(checks / elig_med),
        "reference_profiles": args.reference_n,
        "reference_median_s": round(ref_med, 4),
        "reference_checks_per_s": round(ref_rate),
        "speedup": round(vec_rate / ref_rate, 1),
        "eligible_share": round(float((result.status == 1).mean()), 4),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"catalog {len(policies)} policies × {args.n:,} synthetic profiles = {checks:,} checks")
    print(f"synthesize {t_synth:.2f}s, derive fields {t_derive:.2f}s")
    print(f"vectorised (with near misses): median {vec_med*1000:.1f} ms → {vec_rate/1e6:,.0f}M checks/s")
    print(f"vectorised (eligibility only): median {elig_med*1000:.1f} ms → {checks/elig_med/1e6:,.0f}M checks/s")
    print(f"reference ({args.reference_n:,} profiles): median {ref_med:.2f} s → {ref_rate/1e6:,.2f}M checks/s")
    print(f"speedup vectorised / reference: {vec_rate/ref_rate:,.0f}×")


if __name__ == "__main__":
    main()
