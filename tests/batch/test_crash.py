"""Crash tests: the real CLI in subprocesses, SIGKILLed at random points and restarted.

The batch: every (firm, policy, version) the scorer offers ends up queued exactly once, each firm in
exactly one message. The deliverer: a local receiver (honouring Idempotency-Key) accepts exactly the
expected set — none lost, none accepted twice; a re-send of the one message in flight at a kill is
recognised by its key. Kills are spread over start-up, scoring, writing and sending; what is asserted
is the end state, never a timing.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from service.batch.run import run_batch
from service.db.tables import BatchCursor, BatchRun, Outbox, PushItem
from service.push.outbox import set_opt_out
from tests.batch.conftest import AS_OF, Receiver, expected_items, make_settings, seed

ROOT = Path(__file__).resolve().parents[2]
KILLS = 10
RNG_SEED = int(os.environ.get("POLICYFIT_CRASH_SEED", "20230419"))


def _env(database_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ, POLICYFIT_DATABASE_URL=database_url, PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "service", *args]


def _run_and_kill(cmd: list[str], env: dict[str, str], *, started: threading.Event | None, marker: str | None,
                  delay: float, after_marker: bool) -> int:
    """Start ``cmd``; SIGKILL it ``delay`` s after start, or after ``marker`` first appears on stderr
    (or after ``started`` is set). Returns the exit code (−9 when killed)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if marker and marker in line:
                seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if after_marker:
        event = started or seen
        while not event.wait(0.02):
            if proc.poll() is not None:
                break
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    reader.join(timeout=5)
    return proc.returncode


def _count(engine: Engine, table: type) -> int:
    with Session(engine) as session:
        return int(session.exec(select(sa.func.count()).select_from(table)).one())


def test_batch_killed_at_random_points_queues_everything_exactly_once(engine: Engine, database_url: str) -> None:
    settings = make_settings(database_url)
    records = seed(engine, 400, seed=31)
    for r in records[:5]:
        set_opt_out(engine, uscc=r["uscc"], opted_out=True)
    expected = expected_items(engine, settings)
    env = _env(database_url, POLICYFIT_BATCH_CHUNK_SIZE="8", POLICYFIT_PUSH_WEEKLY_CAP="3")
    cmd = _cli("batch", "run", "--as-of", AS_OF.isoformat(), "--no-progress")
    rng = random.Random(RNG_SEED)
    kills, attempts, mid_run = 0, 0, 0
    while kills < KILLS and attempts < 4 * KILLS:
        attempts += 1
        before = _count(engine, BatchCursor)
        after_marker = attempts % 3 != 0  # two in three kills land while chunks are being scored and written
        code = _run_and_kill(cmd, env, started=None, marker="已评分", after_marker=after_marker,
                             delay=rng.uniform(0.0, 0.6) if after_marker else rng.uniform(0.2, 4.0))
        if code == -signal.SIGKILL:
            kills += 1
            mid_run += 0 < _count(engine, BatchCursor) - before
        else:
            assert code == 0, f"batch exited with {code}"
            if _count(engine, BatchCursor) == len(records):
                break  # all scored: later kills would only interrupt runs with nothing to do
    final = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    print(f"batch: {kills} SIGKILLs in {attempts} starts, {mid_run} of them after chunks were committed")
    assert kills >= KILLS or _count(engine, BatchCursor) == len(records)
    assert kills >= 5

    with Session(engine) as session:
        items = session.exec(select(PushItem)).all()
        messages = session.exec(select(Outbox)).all()
        runs = session.exec(select(BatchRun).order_by(BatchRun.id)).all()  # type: ignore[arg-type]
    assert sorted(i.idempotency_key for i in items) == sorted(expected)  # none lost, none twice
    per_firm = Counter(m.uscc for m in messages)
    assert set(per_firm) == {i.uscc for i in items} and set(per_firm.values()) == {1}
    by_message = {m.id: {it["idempotency_key"] for it in m.payload["items"]} for m in messages}
    for i in items:
        assert i.idempotency_key in by_message[i.outbox_id]
    assert runs[-1].status == "succeeded"
    assert {r.status for r in runs[:-1]} <= {"interrupted", "succeeded"}
    assert _count(engine, BatchCursor) == len(records)

    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)  # nothing changed
    assert again.returncode == 0 and "评分 0" in again.stdout
    assert _count(engine, Outbox) == len(messages) and _count(engine, PushItem) == len(items)


def test_deliverer_killed_at_random_points_loses_nothing_and_duplicates_nothing(
        engine: Engine, database_url: str, receiver: Receiver) -> None:
    settings = make_settings(database_url)
    seed(engine, 300, seed=32)
    run_batch(engine, settings, as_of=AS_OF, echo=lambda _: None)
    expected = expected_items(engine, settings)
    with Session(engine) as session:
        message_keys = {m.idempotency_key for m in session.exec(select(Outbox))}
    receiver.delay = 0.05  # enough work left for every kill: messages carry fewer items since only entitlements and selective programmes are pushed
    env = _env(database_url, POLICYFIT_PUSH_LEASE_SECONDS="1.5", POLICYFIT_PUSH_TIMEOUT_SECONDS="1",
               POLICYFIT_PUSH_CLAIM_SIZE="4", POLICYFIT_PUSH_CHANNEL="webhook",
               POLICYFIT_PUSH_WEBHOOK_URL=receiver.url)
    cmd = _cli("push", "deliver")
    rng = random.Random(RNG_SEED + 1)
    kills = attempts = 0
    while kills < KILLS and attempts < 4 * KILLS and len(receiver.accepted) < len(message_keys):
        attempts += 1
        first_request = threading.Event()
        seen_before = len(receiver.requests)

        def watch(seen: int = seen_before, flag: threading.Event = first_request) -> None:
            while not flag.is_set() and len(receiver.requests) == seen:
                time.sleep(0.01)
            flag.set()

        threading.Thread(target=watch, daemon=True).start()
        after_request = attempts % 3 != 0
        code = _run_and_kill(cmd, env, started=first_request, marker=None, after_marker=after_request,
                             delay=rng.uniform(0.0, 0.8) if after_request else rng.uniform(0.2, 3.0))
        first_request.set()
        if code == -signal.SIGKILL:
            kills += 1
        else:
            assert code == 0
    final = subprocess.run([*cmd, "--wait"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    print(f"deliver: {kills} SIGKILLs in {attempts} starts; {len(receiver.requests)} requests for "
          f"{len(message_keys)} messages, {len(receiver.replays)} re-sends recognised by key")
    assert kills >= KILLS
    assert set(receiver.accepted) == message_keys  # every message arrived …
    assert sorted(receiver.item_keys()) == sorted(expected)  # … and every item exactly once
    assert len(receiver.replays) <= kills  # at most the one message in flight at each kill is re-sent
    with Session(engine) as session:
        statuses = Counter(m.status for m in session.exec(select(Outbox)))
    assert statuses == {"delivered": len(message_keys)}

    idle = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)  # nothing left to send
    assert idle.returncode == 0 and "已投递 0" in idle.stdout
    assert len(receiver.accepted) == len(message_keys)
