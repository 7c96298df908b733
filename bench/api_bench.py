"""HTTP load on the real service over loopback: p50/p95/p99 latency and throughput per endpoint and backend.

    python bench/api_bench.py [--n 2000] [--duration 10] [--max-requests 20000] [--concurrency 32]
                              [--backends sqlite,postgresql] [--generators python,wrk]
                              [--endpoints package,match,package-enterprise] [--json]

For each backend the script starts the service itself, exactly as ``policyfit serve --workers 2``
does (``python -m service serve``: migrate once, then uvicorn ``service.asgi:app`` with 2
workers) on a free port of 127.0.0.1, against
- SQLite: a file in a temporary data dir;
- PostgreSQL: the machine's server (``--pg-url``, default database ``test`` on 127.0.0.1:5432), in a
  schema of its own (``options=-csearch_path=<schema>`` in the URL) that it creates and drops.
It seeds ``--n`` synthetic enterprises (``profiles.synth``) and creates a staff token, warms up
(every seeded enterprise and every match body once, so the embedding cache and both workers are
warm), then loads each endpoint with ``--concurrency`` clients, bounded by ``--duration`` seconds
and ``--max-requests`` requests, whichever comes first:
- ``package``: ``GET /v1/enterprises/{uscc}/package`` with the staff token, over all seeded
  enterprises (a staff read also writes an audit row and commits);
- ``match``: ``POST /v1/match`` with the staff token, synthetic profiles as bodies;
- ``package-enterprise`` (extra): the package read with an enterprise token (its own enterprise:
  no audit write), to show what the audit write costs;
- ``healthz`` (reference): no database, no matching — the framework's own floor per request.
Load generators: ``python`` (asyncio + httpx in this process) and ``wrk`` (Debian's ``wrk``, if
installed; 2 threads). Both share the machine's cores with the 2 workers, so the CPU each side used
is printed too, as a share of one core and as server CPU milliseconds per request (the figure least
disturbed by other load on the machine; the 1-minute load average before each run is recorded too).
Everything it started (server processes, schema, temp dir) is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@dataclass
class Target:
    """What one endpoint's load sends: (method, path, body) rotated over, with these headers."""

    name: str
    method: str
    requests: list[tuple[str, bytes | None]]
    headers: dict[str, str]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- the server ---------------------------------------------------------------------------------
def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(OSError):
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for p in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


class Server:
    def __init__(self, env: dict[str, str], workers: int, log: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", str(workers)],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)
        self.workers = workers

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        streak = 0
        with httpx.Client(base_url=self.base_url, timeout=10) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited ({self.proc.returncode}):\n{self.tail()}")
                try:  # a new connection per probe: readiness is per worker process, and every worker must say it
                    ready = client.get("/readyz", headers={"Connection": "close"}).status_code == 200
                    streak = streak + 1 if ready else 0
                except httpx.TransportError:
                    streak = 0
                if streak >= 20 and len(_tree(self.proc.pid)) > self.workers:
                    return
                time.sleep(0.05 if streak else 0.3)
        raise RuntimeError(f"server not ready after {timeout:.0f} s:\n{self.tail()}")

    def pids(self) -> list[int]:
        return _tree(self.proc.pid)

    def tail(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()


# ---- databases ----------------------------------------------------------------------------------
@contextlib.contextmanager
def postgres_schema(base_url: str) -> Iterator[str]:
    """A fresh schema on the given server; yields the service URL pinned to it; drops it after."""
    from service.db.tables import postgres_schema as schema_on

    with schema_on(base_url, f"policyfit_bench_{uuid.uuid4().hex[:10]}") as url:
        yield url


def seed(url: str, data_dir: Path, n: int) -> dict[str, Any]:
    """Schema and catalog (the service's own start-up), ``n`` synthetic enterprises, a staff and an
    enterprise token; builds the policy index and the embedding cache in ``data_dir``."""
    from sqlmodel import Session

    from profiles.model import parse_profile
    from profiles.synth import synthesize
    from service.bootstrap import ServiceState
    from service.settings import Settings
    from service.store.enterprises import upsert_enterprise
    from service.store.tokens import create_token

    t0 = time.perf_counter()
    state = ServiceState.start(Settings(database_url=url, data_dir=data_dir), warm=False)
    records = list(synthesize(n, seed=20230419).records())
    try:
        with Session(state.engine) as session:
            for i, record in enumerate(records):
                upsert_enterprise(session, profile=parse_profile(record))
                if i % 1000 == 999:
                    session.commit()
            staff, _ = create_token(session, role="staff", label="api-bench")
            ent, _ = create_token(session, role="enterprise", label="api-bench-ent", uscc=records[0]["uscc"])
            session.commit()
            state.matcher(session)
    finally:
        state.engine.dispose()
    return {"records": records, "staff": staff, "enterprise": ent, "seconds": time.perf_counter() - t0}


def targets(seeded: dict[str, Any], names: list[str]) -> list[Target]:
    records = seeded["records"]
    staff = {"Authorization": f"Bearer {seeded['staff']}"}
    usccs = [r["uscc"] for r in records]
    random.Random(1).shuffle(usccs)
    bodies = [json.dumps({"profile": r}, ensure_ascii=False).encode() for r in records[:500]]
    make = {
        "package": lambda: Target("package", "GET", [(f"/v1/enterprises/{u}/package", None) for u in usccs], staff),
        "match": lambda: Target("match", "POST", [("/v1/match", b) for b in bodies],
                                {**staff, "Content-Type": "application/json"}),
        "package-enterprise": lambda: Target(
            "package-enterprise", "GET", [(f"/v1/enterprises/{records[0]['uscc']}/package", None)],
            {"Authorization": f"Bearer {seeded['enterprise']}"}),
        "healthz": lambda: Target("healthz", "GET", [("/healthz", None)], {}),
    }
    return [make[name]() for name in names]


# ---- load generators ----------------------------------------------------------------------------
def summarize(latencies: list[float], statuses: Counter[Any], elapsed: float) -> dict[str, Any]:
    ok = statuses.get(200, 0)
    ms = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {"requests": sum(statuses.values()), "ok": ok,
            "non_200": {str(k): v for k, v in statuses.items() if k != 200},
            "seconds": round(elapsed, 2), "rps": round(ok / elapsed, 1) if elapsed else 0.0,
            "p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2), "max_ms": round(float(np.max(ms)), 2)}


async def _python_load(base_url: str, target: Target, concurrency: int, duration: float,
                       max_requests: int, timeout: float = 30) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    statuses: Counter[Any] = Counter()
    issued = 0
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout,
                                 headers=target.headers) as client:
        start = time.perf_counter()
        deadline = start + duration

        async def worker() -> None:
            nonlocal issued
            while issued < max_requests and time.perf_counter() < deadline:
                path, body = target.requests[issued % len(target.requests)]
                issued += 1
                t = time.perf_counter()
                try:
                    response = await client.request(target.method, path, content=body)
                    await response.aread()
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1
                    continue
                latencies.append(time.perf_counter() - t)
                statuses[response.status_code] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return summarize(latencies, statuses, elapsed)


def run_python(base_url: str, target: Target, concurrency: int, duration: float, max_requests: int) -> dict[str, Any]:
    coro = _python_load(base_url, target, concurrency, duration, max_requests)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _lua_string(text: str) -> str:
    level = 1
    while f"]{'=' * level}]" in text:
        level += 1
    return f"[{'=' * level}[{text}]{'=' * level}]"


WRK_LUA = """
local method = {method}
local reqs = {{ {requests} }}
local hdrs = {{ {headers} }}
local limit = {limit}
local n, seen = 0, 0
request = function()
  n = n + 1
  local r = reqs[(n % #reqs) + 1]
  return wrk.format(method, r[1], hdrs, r[2])
end
response = function(status, headers, body)
  seen = seen + 1
  if seen >= limit then wrk.thread:stop() end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
    '"p50":%d,"p95":%d,"p99":%d,"max":%d}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
"""


def run_wrk(base_url: str, target: Target, concurrency: int, duration: float, max_requests: int,
            workdir: Path, threads: int = 2) -> dict[str, Any]:
    reqs = ", ".join(f"{{{_lua_string(p)}, {_lua_string(b.decode()) if b else 'nil'}}}"
                     for p, b in target.requests)
    hdrs = ", ".join(f"[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in target.headers.items())
    script = workdir / f"wrk-{target.name}.lua"
    script.write_text(WRK_LUA.format(method=_lua_string(target.method), requests=reqs, headers=hdrs,
                                     limit=math.ceil(max_requests / threads)), encoding="utf-8")
    seconds = max(1, math.ceil(duration))
    proc = subprocess.run(["wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{seconds}s", "--timeout", "30s",
                           "-s", str(script), base_url], capture_output=True, text=True, timeout=seconds + 60,
                          stdin=subprocess.DEVNULL)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
    w = json.loads(line.removeprefix("WRKJSON "))
    elapsed = w["duration_us"] / 1e6
    errors = {k: w[k] for k in ("connect", "read", "write", "timeout") if w[k]}
    non_200 = {"non-2xx/3xx": w["status"]} if w["status"] else {}
    ok = w["requests"] - w["status"]
    # wrk reports its whole -d as the duration even when the request cap stopped its threads earlier:
    # then the rate is only a lower bound
    return {"requests": w["requests"], "ok": ok, "non_200": {**non_200, **errors}, "seconds": round(elapsed, 2),
            "rps": round(ok / elapsed, 1) if elapsed else 0.0, "rps_lower_bound": w["requests"] >= max_requests,
            "p50_ms": w["p50"] / 1000, "p95_ms": w["p95"] / 1000, "p99_ms": w["p99"] / 1000, "max_ms": w["max"] / 1000}


def measured(server: Server, fn: Any, *args: Any) -> dict[str, Any]:
    """Run a load and record the CPU the server (all its processes) and the generator used."""
    pids = server.pids()
    load = os.getloadavg()[0]
    server_before = cpu_seconds(pids)
    own_before = resource.getrusage(resource.RUSAGE_SELF)
    kids_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    result: dict[str, Any] = fn(*args)
    wall = time.perf_counter() - wall
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = (own.ru_utime + own.ru_stime - own_before.ru_utime - own_before.ru_stime
              + kids.ru_utime + kids.ru_stime - kids_before.ru_utime - kids_before.ru_stime)
    server_cpu = cpu_seconds(pids) - server_before
    result["server_cpu_pct"] = round(100 * server_cpu / wall, 0)
    result["server_cpu_ms_per_request"] = round(1000 * server_cpu / max(result["requests"], 1), 2)
    result["loadavg_1m_before"] = round(load, 2)
    result["client_cpu_pct"] = round(100 * client / wall, 0)
    return result


# ---- one backend --------------------------------------------------------------------------------
def warm_up(base_url: str, target: Target, concurrency: int, budget_s: float) -> dict[str, Any]:
    """Every distinct request once (embedding cache, both workers' matchers), then 2 s of load."""
    once = run_python(base_url, target, concurrency, budget_s, len(target.requests))
    more = run_python(base_url, target, concurrency, 2.0, 10**9)
    return {"distinct_requests": once, "steady": more}


def bench_backend(backend: str, url: str, data_dir: Path, args: argparse.Namespace, log: Any) -> list[dict[str, Any]]:
    log(f"[{backend}] seeding {args.n} enterprises …")
    seeded = seed(url, data_dir, args.n)
    log(f"[{backend}] seeded in {seeded['seconds']:.1f} s; starting the service ({args.workers} workers) …")
    env = {**os.environ, "POLICYFIT_DATABASE_URL": url, "POLICYFIT_DATA_DIR": str(data_dir),
           # the bench's tokens are counted by the shared rate limiter (its cost is measured) but never refused
           "POLICYFIT_TOKEN_RATE_PER_MINUTE": "1000000000"}
    if args.package_cache_size is not None:
        env["POLICYFIT_PACKAGE_CACHE_SIZE"] = str(args.package_cache_size)
    server = Server(env, args.workers, data_dir / f"server-{backend}.log")
    rows = []
    try:
        t0 = time.perf_counter()
        server.wait_ready()
        log(f"[{backend}] ready in {time.perf_counter() - t0:.1f} s")
        for target in targets(seeded, args.endpoints):
            w = warm_up(server.base_url, target, args.concurrency, args.warmup_s)
            # HTTP errors abort; a transport error is tolerated here only (a keep-alive connection the
            # server closed while the first requests were slow, reused by the client in that instant)
            bad = {k: v for k, v in {**w["distinct_requests"]["non_200"], **w["steady"]["non_200"]}.items()
                   if k.isdigit()}
            if bad:
                raise RuntimeError(f"[{backend}] {target.name}: warm-up answered {bad}\n{server.tail()}")
            for generator in args.generators:
                if generator == "python":
                    r = measured(server, run_python, server.base_url, target, args.concurrency, args.duration,
                                 args.max_requests)
                else:
                    r = measured(server, run_wrk, server.base_url, target, args.concurrency, args.duration,
                                 args.max_requests, data_dir)
                row = {"backend": backend, "endpoint": target.name, "generator": generator,
                       "package_cache_size": args.package_cache_size, **r}
                rows.append(row)
                log(_line(row))
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited during the run:\n{server.tail()}")
    finally:
        server.stop()
    return rows


HEADER = (f"{'backend':<11}{'endpoint':<20}{'gen':<7}{'requests':>9}{'non-200':>9}{'req/s':>9}"
          f"{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}{'srv CPU':>9}{'gen CPU':>9}{'CPU ms/req':>11}{'load':>6}")


def _line(r: dict[str, Any]) -> str:
    bad = sum(r["non_200"].values())
    rate = f"{'≥' if r.get('rps_lower_bound') else ''}{r['rps']:.0f}"
    return (f"{r['backend']:<11}{r['endpoint']:<20}{r['generator']:<7}{r['requests']:>9}{bad:>9}{rate:>9}"
            f"{r['p50_ms']:>9.2f}{r['p95_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['max_ms']:>9.1f}"
            f"{r['server_cpu_pct']:>8.0f}%{r['client_cpu_pct']:>8.0f}%{r['server_cpu_ms_per_request']:>11.2f}"
            f"{r['loadavg_1m_before']:>6.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="synthetic enterprises to seed")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per endpoint and generator")
    parser.add_argument("--max-requests", type=int, default=20_000, help="request cap per endpoint and generator")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--warmup-s", type=float, default=120.0, help="cap on the warm-up pass per endpoint")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--generators", default="python,wrk", help="python and/or wrk (skipped if not installed)")
    parser.add_argument("--endpoints", default="package,match,package-enterprise,healthz")
    parser.add_argument("--pg-url", default=os.environ.get("POLICYFIT_BENCH_PG_URL", DEFAULT_PG),
                        help="the PostgreSQL server to use (a schema is created in it and dropped)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="reuse this dir's embedding cache and indexes (default: a new temp dir)")
    parser.add_argument("--package-cache-size", type=int, default=None,
                        help="POLICYFIT_PACKAGE_CACHE_SIZE for the server (0: every package computed anew; "
                        "default: the service's own default)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    args = parser.parse_args()
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    args.endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    args.generators = [g.strip() for g in args.generators.split(",") if g.strip()]
    for value, allowed in ((args.backends, {"sqlite", "postgresql"}), (args.generators, {"python", "wrk"}),
                           (args.endpoints, {"package", "match", "package-enterprise", "healthz"})):
        if not set(value) <= allowed:
            parser.error(f"unknown {sorted(set(value) - allowed)}; choose from {sorted(allowed)}")
    notes = []
    if "wrk" in args.generators and not shutil.which("wrk"):
        args.generators.remove("wrk")
        notes.append("wrk not installed (apt-get install wrk): Python generator only")

    def log(message: str) -> None:
        print(message, file=sys.stderr if args.json else sys.stdout, flush=True)

    # SIGTERM (a CI timeout, say) unwinds through the finally blocks like Ctrl-C does
    signal.signal(signal.SIGTERM, _interrupt)
    tmp = Path(tempfile.mkdtemp(prefix="policyfit-api-bench-"))
    shared = args.data_dir or tmp / "shared"  # the embedding cache and policy index, shared by backends
    rows: list[dict[str, Any]] = []
    for note in notes:
        log(f"note: {note}")
    log(f"{os.cpu_count()} cores; {args.workers} workers; {args.concurrency} clients; "
        f"{args.duration:g} s or {args.max_requests} requests per run")
    log(HEADER)
    try:
        for backend in args.backends:
            if backend == "sqlite":
                data_dir = tmp / "sqlite"
                _link_shared(shared, data_dir)
                rows += bench_backend(backend, f"sqlite:///{data_dir / 'policyfit.db'}", data_dir, args, log)
            else:
                data_dir = tmp / "postgresql"
                _link_shared(shared, data_dir)
                with postgres_schema(args.pg_url) as url:
                    rows += bench_backend(backend, url, data_dir, args, log)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps({"cores": os.cpu_count(), "workers": args.workers,
                          "package_cache_size": args.package_cache_size, "concurrency": args.concurrency,
                          "duration_s": args.duration, "max_requests": args.max_requests, "enterprises": args.n,
                          "notes": notes, "results": rows}, indent=2))
    else:
        print("\n" + HEADER)
        for r in rows:
            print(_line(r))


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _link_shared(shared: Path, data_dir: Path) -> None:
    """A backend's data dir: its own database file, the shared embedding cache and policy index."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in ("cache", "indexes"):
        (shared / name).mkdir(parents=True, exist_ok=True)
        link = data_dir / name
        if not link.exists():
            link.symlink_to((shared / name).resolve(), target_is_directory=True)


if __name__ == "__main__":
    main()
