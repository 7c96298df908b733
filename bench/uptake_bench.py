"""The funnel of one policy at city scale: ``python bench/uptake_bench.py --n 1400000 [--policy ID]``.

Builds a database (SQLite in a temporary directory, or ``--database-url``; ``--keep DIR`` keeps the SQLite file and
``--reuse`` times it again) of ``n`` synthetic enterprises (``profiles/synth.py``; their names end in （合成）) and,
all synthetic and labelled so (department ``（合成）…``, outcome source ``import``):

- the enterprise rows (the stored profiles, as ``bench/batch_bench.py`` loads them), updated a day ago;
- the nightly snapshot: the policy offered to every firm its rule holds for on the day (the rule engine over the
  synthetic population), plus ``--other-policies`` other policies' rows, so the index has to pick one policy's;
- deliveries: a push item for most eligible firms, its message delivered (a few pending), with a payload of
  ``--payload-bytes`` (a real message is about a kilobyte);
- feedback (viewed, and applied for some) and outcomes (applied, granted, refused over the last 600 days, and some
  grants to firms no longer eligible).

Then it times, in this process: the first fill of the firms' region and size classes (every profile read once),
and ``GET /v1/policies/{id}/uptake``'s use case (the class refresh check, then the funnel counted by the database)
— median and all of ``--repeat`` runs — and the funnel's SQL alone. The goal is ≤ 2 s at 1.4M firms.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("matching") is None:  # not installed: the tree this script is in
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # batch_bench's loader of synthetic profiles

import numpy as np  # noqa: E402

AS_OF = dt.date.today()
DEPARTMENT = "（合成）市地方金融监管局"


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _insert(engine: Any, sql: str, rows: list[tuple[Any, ...]], step: int = 100_000) -> None:
    if engine.dialect.name != "sqlite":
        sql = sql.replace("?", "%s")
    for start in range(0, len(rows), step):
        with engine.begin() as conn:
            conn.exec_driver_sql(sql, rows[start:start + step])


def build(url: str, n: int, seed: int, policy_id: str, others: int, payload_bytes: int) -> dict[str, Any]:
    """Load the synthetic city; returns what it holds."""
    from batch_bench import profile_lines

    from matching.rules import ELIGIBLE, RuleEngine
    from profiles.columns import decode
    from profiles.synth import synthesize
    from service.bootstrap import catalog_from_files, sync_catalog
    from service.db.migrate import upgrade
    from service.db.tables import make_engine
    from service.settings import Settings

    t0 = time.perf_counter()
    engine = make_engine(url)
    upgrade(engine)
    settings = Settings(database_url=url)
    sync_catalog(engine, settings)
    catalog = catalog_from_files(settings.catalog_dir)
    policy = catalog[policy_id]
    population = synthesize(n, seed)
    usccs = population.uscc
    log(f"  synthesized {n:,} firms ({time.perf_counter() - t0:.0f} s)")
    lines = profile_lines(population)
    regions = decode("region", population.batch.columns["region"])
    loaded = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).replace(tzinfo=None).isoformat(sep=" ")
    _insert(engine, "INSERT INTO enterprise (uscc, name, region, profile, content_hash, opted_out, created_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(usccs[i], population.names[i], regions[i], lines[i], hashlib.sha256(lines[i].encode()).hexdigest(),
              False, loaded, loaded) for i in range(n)])
    del lines
    log(f"  enterprises stored ({time.perf_counter() - t0:.0f} s)")

    batch = population.batch.with_derived(AS_OF)
    status = RuleEngine([policy]).evaluate(batch, AS_OF, near_misses=False).status[0]
    eligible = np.flatnonzero(status == ELIGIBLE)
    rng = np.random.default_rng(seed + 1)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(sep=" ")
    snapshot = [(usccs[i], policy_id, policy.version, 1, 0.5, now) for i in eligible]
    other_ids = [p.id for p in catalog if p.offered and p.id != policy_id][:others]
    for other in other_ids:  # other policies' rows: the funnel must not read them
        picked = np.flatnonzero(rng.random(n) < 0.5)
        snapshot += [(usccs[i], other, 1, 1, 0.5, now) for i in picked]
    _insert(engine, "INSERT INTO match_snapshot (uscc, policy_id, policy_version, status, score, computed_at) "
            "VALUES (?, ?, ?, ?, ?, ?)", snapshot)
    del snapshot
    log(f"  snapshot: {len(eligible):,} eligible for {policy_id} (+{len(other_ids)} other policies) "
        f"({time.perf_counter() - t0:.0f} s)")

    pushed = eligible[rng.random(len(eligible)) < 0.85]
    delivered = rng.random(len(pushed)) < 0.95
    payload = json.dumps({"synthetic": "（合成）", "pad": "x" * max(0, payload_bytes - 40)})
    _insert(engine, "INSERT INTO outbox (id, idempotency_key, uscc, payload, status, attempts, next_attempt_at, "
            "created_at, delivered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(k + 1, f"pkg:{usccs[i]}:1", usccs[i], payload, "delivered" if d else "pending", 1, now, now,
              now if d else None) for k, (i, d) in enumerate(zip(pushed, delivered, strict=True))])
    _insert(engine, "INSERT INTO push_item (idempotency_key, uscc, policy_id, policy_version, score, outbox_id, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(f"{usccs[i]}:{policy_id}:{policy.version}", usccs[i], policy_id, policy.version, 0.5, k + 1, now)
             for k, i in enumerate(pushed)])
    told = pushed[delivered]
    viewed = told[rng.random(len(told)) < 0.3]
    applied_fb = viewed[rng.random(len(viewed)) < 0.05]
    _insert(engine, "INSERT INTO feedback (at, uscc, policy_id, kind, role, label) VALUES (?, ?, ?, ?, ?, ?)",
            [(now, usccs[i], policy_id, "viewed", "enterprise", "（合成）") for i in viewed]
            + [(now, usccs[i], policy_id, "applied", "enterprise", "（合成）") for i in applied_fb])
    log(f"  deliveries {len(pushed):,} ({int(delivered.sum()):,} delivered), viewed {len(viewed):,} "
        f"({time.perf_counter() - t0:.0f} s)")

    with_outcome = eligible[rng.random(len(eligible)) < 0.08]
    elsewhere = np.setdiff1d(np.arange(n), eligible)
    granted_elsewhere = elsewhere[rng.random(len(elsewhere)) < 0.01]
    kinds = rng.choice(["applied", "granted", "refused"], size=len(with_outcome), p=[0.6, 0.3, 0.1])
    ages = rng.integers(0, 600, size=len(with_outcome))
    rows = []
    for i, kind, age in zip(with_outcome, kinds, ages, strict=True):
        day = AS_OF - dt.timedelta(days=int(age))
        if kind != "applied":  # a decision follows an application
            rows.append((usccs[i], policy_id, "applied", None, (day - dt.timedelta(days=20)).isoformat(), DEPARTMENT))
        rows.append((usccs[i], policy_id, kind, 1.5 if kind == "granted" else None, day.isoformat(), DEPARTMENT))
    rows += [(usccs[i], policy_id, "granted", 1.0, (AS_OF - dt.timedelta(days=100)).isoformat(), DEPARTMENT)
             for i in granted_elsewhere]
    _insert(engine, "INSERT INTO outcome (uscc, policy_id, outcome, amount_wan, decided_on, department, source, "
            f"recorded_at) VALUES (?, ?, ?, ?, ?, ?, 'import', '{now}')", rows)
    log(f"  synthetic outcomes {len(rows):,} ({time.perf_counter() - t0:.0f} s)")
    if engine.dialect.name == "sqlite":
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    else:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()
    return {"firms": n, "eligible": int(len(eligible)), "pushed": int(len(pushed)), "viewed": int(len(viewed)),
            "outcomes": len(rows), "build_s": round(time.perf_counter() - t0, 1)}


def measure(url: str, policy_id: str, repeat: int) -> dict[str, Any]:
    from sqlmodel import Session

    from service.app.uptake import refresh_classes, uptake
    from service.db.tables import make_engine
    from service.store.outcomes import stage_counts

    engine = make_engine(url)
    out: dict[str, Any] = {}
    with Session(engine) as session:
        t0 = time.perf_counter()
        out["classes_filled"] = refresh_classes(session)
        out["classes_fill_s"] = round(time.perf_counter() - t0, 2)
    log(f"  classes: {out['classes_filled']:,} firms classified in {out['classes_fill_s']} s (once)")
    runs, sql_runs = [], []
    answer: dict[str, Any] = {}
    for _ in range(repeat):
        with Session(engine) as session:
            t0 = time.perf_counter()
            answer = uptake(session, policy_id, as_of=AS_OF, period_days=365)
            runs.append(time.perf_counter() - t0)
        with engine.begin() as conn:
            t0 = time.perf_counter()
            stage_counts(conn, policy_id=policy_id, as_of=AS_OF, since=AS_OF - dt.timedelta(days=365))
            sql_runs.append(time.perf_counter() - t0)
    engine.dispose()
    out.update(uptake_median_s=round(statistics.median(runs), 3), uptake_runs_s=[round(r, 3) for r in runs],
               funnel_sql_median_s=round(statistics.median(sql_runs), 3),
               funnel={k: v for k, v in answer.items() if k not in ("by_region", "by_size")},
               regions=len(answer.get("by_region", {})), sizes=list(answer.get("by_size", {})))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_400_000)
    parser.add_argument("--seed", type=int, default=20230419)
    parser.add_argument("--policy", default="guarantee-fee-cap-small-micro-agri")
    parser.add_argument("--database-url", default="", help="default: a SQLite file in a temporary directory")
    parser.add_argument("--keep", default="", help="directory for the SQLite file (kept)")
    parser.add_argument("--reuse", action="store_true", help="time the database already built there")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--other-policies", type=int, default=2)
    parser.add_argument("--payload-bytes", type=int, default=1000)
    args = parser.parse_args()
    directory = args.keep or tempfile.mkdtemp(prefix="policyfit-uptake-")
    url = args.database_url or f"sqlite:///{Path(directory) / 'uptake.db'}"
    built: dict[str, Any] = {}
    if not args.reuse:
        log(f"building {args.n:,} synthetic enterprises and their funnel in {url.split('@')[-1]} …")
        built = build(url, args.n, args.seed, args.policy, args.other_policies, args.payload_bytes)
    result = {"n": args.n, "policy": args.policy, "backend": url.split(":")[0], "cores": os.cpu_count(),
              "load_average": [round(x, 1) for x in os.getloadavg()], **built, **measure(url, args.policy,
                                                                                          args.repeat)}
    print(f"\nuptake of {args.policy} over {args.n:,} synthetic firms ({result['backend']}, {os.cpu_count()} cores, "
          f"load {result['load_average']}): GET /v1/policies/{{id}}/uptake's use case {result['uptake_median_s']} s "
          f"median of {args.repeat} (runs {result['uptake_runs_s']}), the funnel SQL alone "
          f"{result['funnel_sql_median_s']} s; first fill of the classes {result['classes_fill_s']} s (once)")
    print(json.dumps(result, ensure_ascii=False, default=str))


if __name__ == "__main__":
    main()
