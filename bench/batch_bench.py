"""Nightly batch at city scale: ``python bench/batch_bench.py --n 1400000 [--workers 2]``.

Builds a database of ``n`` synthetic enterprises (SQLite in a temporary directory, or
``--database-url``), then runs ``policyfit batch run`` twice in fresh processes — the first run
(everything is new) and a warm re-run (nothing changed) — and prints for each: wall time, peak RSS
(the run's process and its worker processes) and the time per phase (load, rules, ranking, write) from
the run report. Enterprise texts are deduplicated before embedding, so the population costs one model
call per distinct wording, not per firm.

``--score-only`` times the pure scorer alone (:func:`matching.batch.score_batch` over the synthetic population in
chunks, in one process, no database; medians of ``--repeat`` passes): the part of a night that the rules and the
value formulas cost. ``PYTHONPATH=<another checkout>`` benches that checkout with this script (e.g. a baseline).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("matching") is None:  # not installed: the tree this script is in
    sys.path.insert(0, str(ROOT))  # (PYTHONPATH=<another checkout> benches that checkout, e.g. a baseline)

AS_OF = dt.date(2024, 6, 1)


def profile_lines(population: object) -> list[str]:
    """The synthetic profiles as JSON text, decoded column-wise (the stored form; unknown = null)."""
    import numpy as np
    import pandas as pd

    from profiles import synth
    from profiles.columns import STATED_RULE_FIELDS, decode, values
    from profiles.fields import FIELDS, Kind

    counts = getattr(synth, "COUNT_FIELDS", ("employees", "patents", "trademarks"))

    pop: Any = population
    batch = pop.batch
    cols: dict[str, Any] = {"uscc": pop.uscc, "name": pop.names}
    for name in STATED_RULE_FIELDS:
        kind, col = FIELDS[name].kind, batch.columns[name]
        if kind is Kind.NUMBER:  # counts are integers in a profile (as SyntheticPopulation.record writes them)
            cols[name] = pd.array(col, dtype="Int64") if name in counts else col
        elif kind is Kind.BOOL:
            cols[name] = np.array([None, False, True], dtype=object)[col.astype(np.int64) + 1]
        elif kind is Kind.CATEGORY:
            cols[name] = decode(name, col)
        else:
            masks, inverse = np.unique(col, return_inverse=True)
            lists = np.empty(len(masks), dtype=object)
            lists[:] = [[v for bit, v in enumerate(values(name)) if int(m) >> bit & 1] for m in masks]
            out = lists[inverse]
            out[~batch.columns[name + "__known"]] = None
            cols[name] = out
    est = batch.columns["established_on"]
    dates = (np.datetime64("1970-01-01") + np.nan_to_num(est).astype("timedelta64[D]")).astype(str).astype(object)
    dates[np.isnan(est)] = None
    cols["industry_code"], cols["established_on"] = batch.columns["industry_code"], dates
    cols["business_scope"] = pop.business_scope
    cols["needs"] = np.where(pop.needs == "", None, pop.needs)
    return pd.DataFrame(cols).to_json(orient="records", lines=True, force_ascii=False).splitlines()


def build(url: str, n: int, seed: int) -> float:
    """Migrate and load ``n`` synthetic enterprises with bulk inserts; returns seconds."""
    import hashlib

    from profiles.synth import synthesize
    from service.db.migrate import upgrade
    from service.db.tables import make_engine, utcnow

    t0 = time.perf_counter()
    engine = make_engine(url)
    upgrade(engine)
    population = synthesize(n, seed)
    lines = profile_lines(population)
    now = utcnow().replace(tzinfo=None).isoformat(sep=" ")
    step = 100_000
    placeholder = "?" if engine.dialect.name == "sqlite" else "%s"
    sql = ("INSERT INTO enterprise (uscc, name, region, profile, content_hash, opted_out, created_at, updated_at) "
           f"VALUES ({', '.join([placeholder] * 8)})")
    from profiles.columns import decode

    regions = decode("region", population.batch.columns["region"])
    for start in range(0, n, step):
        stop = min(n, start + step)
        rows = [(population.uscc[i], population.names[i], regions[i], lines[i],
                 hashlib.sha256(lines[i].encode()).hexdigest(), False, now, now) for i in range(start, stop)]
        with engine.begin() as conn:
            conn.exec_driver_sql(sql, rows)
        print(f"  loaded {stop}/{n}", file=sys.stderr, flush=True)
    engine.dispose()
    return time.perf_counter() - t0


class TreeRss:
    """Peak resident memory of this process and its children (the scoring pool), sampled every 0.2 s
    from /proc — ``ru_maxrss`` would also count the parent's memory at the fork that started us."""

    def __init__(self) -> None:
        import threading

        self.peak_total = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _rss_kb(pid: int) -> int:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            return 0
        return 0

    def _children(self) -> list[int]:
        me = os.getpid()
        out = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == me:
                        out.append(int(entry.name))
                except (OSError, IndexError, ValueError):
                    continue
        return out

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            total = self._rss_kb(os.getpid()) + sum(self._rss_kb(c) for c in self._children())
            self.peak_total = max(self.peak_total, total)

    def stop(self) -> tuple[int, int]:
        """(peak MB of this process — VmHWM, peak MB of the whole tree — sampled)."""
        self._stop.set()
        self._thread.join()
        hwm = 0
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
        return hwm // 1024, self.peak_total // 1024


def run_once(url: str, workers: int, engine_kind: str) -> dict[str, object]:
    """One ``batch run`` in this process (called in a child): the numbers as JSON."""
    from service.batch.run import run_batch
    from service.db.migrate import upgrade
    from service.push.delivery import writer_engine
    from service.settings import Settings

    settings = Settings(database_url=url)
    engine = writer_engine(url)
    upgrade(engine)
    rss = TreeRss()
    t0 = time.perf_counter()
    run = run_batch(engine, settings, as_of=AS_OF, engine_kind=engine_kind, workers=workers, progress=False,
                    echo=lambda line: None)
    wall = time.perf_counter() - t0
    main_mb, tree_mb = rss.stop()
    rep = run.report
    return {"wall_s": round(wall, 1), "peak_rss_mb": main_mb, "tree_peak_rss_mb": tree_mb,
            "workers_max_rss_mb": _rss_mb(resource.RUSAGE_CHILDREN), "timings_s": rep["timings"],
            "scored": rep["enterprises"]["scored"], "skipped": rep["enterprises"]["skipped"],
            "offered": rep["items"]["offered"], "new": rep["items"]["new"], "messages": rep["messages"]}


def score_only(n: int, seed: int, chunk: int, repeat: int, profile: bool) -> dict[str, object]:
    """The pure scorer alone (no database): ``n`` synthetic firms in chunks of ``chunk``, in this process,
    ``repeat`` times; the medians of the scoring time and of its phases (rules: the rule engine; ranking: the
    values, exclusive groups and package scores). With ``profile``, the functions that cost most in one pass."""
    import statistics

    import pandas as pd

    from matching.batch import BatchScorer, score_batch, text_signals
    from profiles.columns import text_keys
    from profiles.synth import synthesize
    from service.bootstrap import get_matcher

    matcher = get_matcher()
    population = synthesize(n, seed)
    frame = population.batch.to_frame()
    frame["uscc"] = population.uscc
    rows, texts = pd.factorize(pd.Series(text_keys(population.needs, population.business_scope), dtype=object),
                               sort=True)
    frame["text_row"] = rows.astype("int64")
    scorer = BatchScorer.build(matcher.catalog)
    signals = text_signals([str(t) for t in texts], matcher.retriever, list(matcher.catalog), scorer.ranking)
    parts = [frame.iloc[i:i + chunk] for i in range(0, n, chunk)]
    score_batch(parts[0], scorer, signals, AS_OF)  # warm caches (formulas, compiled rules)
    walls, rules, ranking, valued = [], [], [], 0
    for _ in range(repeat):
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        offered = 0
        for part in parts:
            out = score_batch(part, scorer, signals, AS_OF, timings=timings)
            offered += int((out["status"] == 1).sum())
            valued = int(out["value_wan"].notna().sum()) if "value_wan" in out else 0
        walls.append(time.perf_counter() - t0)
        rules.append(timings.get("rules", 0.0))
        ranking.append(timings.get("ranking", 0.0))
    result: dict[str, object] = {
        "n": n, "chunk": chunk, "repeat": repeat, "policies": scorer.m, "offered": offered,
        "valued_pairs_last_chunk": valued,
        "wall_s": [round(w, 2) for w in walls], "median_wall_s": round(statistics.median(walls), 2),
        "median_rules_s": round(statistics.median(rules), 2), "median_ranking_s": round(statistics.median(ranking), 2),
        "load_avg": os.getloadavg()}
    if profile:
        import cProfile
        import io
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        for part in parts:
            score_batch(part, scorer, signals, AS_OF)
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(25)
        print(buf.getvalue(), file=sys.stderr)
    return result


def forget_batches(url: str) -> None:
    """Empty the batch tables so that the next run is a first run again."""
    import sqlalchemy as sa

    from service.db.tables import make_engine

    engine = make_engine(url)
    with engine.begin() as conn:
        for table in ("match_snapshot", "push_item", "outbox", "batch_cursor", "batch_run"):
            conn.execute(sa.text(f"DELETE FROM {table}"))
    engine.dispose()


def _rss_mb(who: int) -> int:
    return int(resource.getrusage(who).ru_maxrss / 1024)  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=20230419)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--engine", default="local", choices=["local", "spark"])
    parser.add_argument("--database-url", default="", help="default: a SQLite file in a temporary directory")
    parser.add_argument("--reuse", action="store_true",
                        help="use the enterprises already in --database-url; forget earlier batch results first")
    parser.add_argument("--score-only", action="store_true",
                        help="time the pure scorer alone, in this process, without a database (see --repeat)")
    parser.add_argument("--repeat", type=int, default=3, help="--score-only: passes over the population")
    parser.add_argument("--chunk", type=int, default=20_000, help="--score-only: firms per chunk")
    parser.add_argument("--profile", action="store_true", help="--score-only: cProfile one more pass (stderr)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--setup", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.score_only:
        print(json.dumps(score_only(args.n, args.seed, args.chunk, args.repeat, args.profile)))
        return
    if args.child:
        print(json.dumps(run_once(args.database_url, args.workers, args.engine)))
        return
    if args.setup:
        print(f"setup (not part of the batch): {build(args.database_url, args.n, args.seed):.0f} s", file=sys.stderr)
        return
    tmp = tempfile.mkdtemp(prefix="policyfit-bench-")
    url = args.database_url or f"sqlite:///{tmp}/bench.db"
    if args.reuse:
        forget_batches(url)
    else:  # in a child, so that the population's memory is not counted in the runs' (fork + exec)
        print(f"building {args.n} synthetic enterprises in {url.split('@')[-1]} …", file=sys.stderr)
        subprocess.run([sys.executable, __file__, "--setup", "--database-url", url, "--n", str(args.n),
                        "--seed", str(args.seed)], check=True, cwd=ROOT)
    results = {}
    for label in ("first run", "warm re-run"):
        cmd = [sys.executable, __file__, "--child", "--database-url", url, "--workers", str(args.workers),
               "--engine", args.engine]
        done = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ), cwd=ROOT)
        if done.returncode != 0:
            sys.exit(f"{label} failed:\n{done.stderr[-3000:]}")
        results[label] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"\nbatch over {args.n:,} synthetic enterprises · engine {args.engine} · {args.workers} workers · "
          f"{os.cpu_count()} cores")
    for label, r in results.items():
        t = r["timings_s"]
        print(f"{label:>12}: wall {r['wall_s']:>7.1f} s · peak RSS {r['peak_rss_mb']:,} MB (with the scoring "
              f"workers {r['tree_peak_rss_mb']:,} MB) · load {t['load']:.1f} s · rules {t['rules']:.1f} s · "
              f"ranking {t['ranking']:.1f} s · write {t['write']:.1f} s · scored {r['scored']:,} · "
              f"skipped {r['skipped']:,} · offers {r['offered']:,} · new {r['new']:,} · messages {r['messages']:,}")
    print(json.dumps(results, ensure_ascii=False))


if __name__ == "__main__":
    main()
