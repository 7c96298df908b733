"""Fixtures of the nightly batch and push tests: a fresh database per test (SQLite file, or a fresh
PostgreSQL schema when ``POLICYFIT_TEST_DATABASE_URL`` is set, as in ``tests/service``), a seeded
synthetic population, and a local HTTP receiver that records every request."""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from matching.batch import BatchScorer, score_batch, text_signals
from matching.package import Matcher
from profiles.columns import encode_profiles
from profiles.model import parse_profile
from profiles.synth import synthesize
from service.batch.candidates import Prepared, prepare
from service.db.migrate import upgrade
from service.db.tables import postgres_schema
from service.push.delivery import writer_engine
from service.settings import Settings
from service.store.enterprises import upsert_enterprise

AS_OF = dt.date(2024, 6, 1)


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """A database of this test alone."""
    base = os.environ.get("POLICYFIT_TEST_DATABASE_URL", "").strip()
    if not base:
        yield f"sqlite:///{tmp_path / 'policyfit.db'}"
        return
    with postgres_schema(base, f"pf_batch_{uuid.uuid4().hex[:12]}") as url:
        yield url


def make_settings(database_url: str, **changes: Any) -> Settings:
    return Settings(database_url=database_url, data_dir=Path(os.environ["POLICYFIT_DATA_DIR"]), **changes)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    migrate = writer_engine(database_url)
    upgrade(migrate)
    migrate.dispose()
    eng = writer_engine(database_url)
    try:
        yield eng
    finally:
        eng.dispose()


def seed(engine: Engine, n: int, seed: int = 7) -> list[dict[str, Any]]:
    """Store ``n`` synthetic firms; returns their profiles."""
    records = list(synthesize(n, seed).records())
    with Session(engine) as session:
        for record in records:
            upsert_enterprise(session, profile=parse_profile(record))
        session.commit()
    return records


def expected_scores(engine: Engine, settings: Settings, as_of: dt.date = AS_OF) -> tuple[Any, set[str]]:
    """The pure scorer's answer for every stored profile (straight from the database, in one batch), and the
    firms that opted out."""
    import numpy as np
    import sqlalchemy as sa

    from matching.batch import score_batch, text_signals
    from profiles.columns import encode_profiles
    from service.db.tables import Enterprise

    prep: Prepared = prepare(engine, settings, as_of)
    e = Enterprise.__table__.c  # type: ignore[attr-defined]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(e.uscc, e.opted_out, sa.cast(e.profile, sa.Text)).order_by(e.uscc)).all()
    frame = encode_profiles([r[2] for r in rows])
    frame["uscc"] = [r[0] for r in rows]
    keys, inverse = np.unique(frame.pop("text_key").to_numpy().astype(str), return_inverse=True)
    frame["text_row"] = inverse
    signals = text_signals(list(keys), prep.matcher.retriever, list(prep.catalog), prep.scorer.ranking)
    return score_batch(frame, prep.scorer, signals, as_of), {r[0] for r in rows if r[1]}


def expected_items(engine: Engine, settings: Settings, as_of: dt.date = AS_OF) -> set[str]:
    """The oracle: every (firm, policy, version) the pure scorer offers a firm that did not opt out,
    computed straight from the stored profiles — what must reach the receiver exactly once."""
    from matching.batch import IN_PACKAGE

    out, opted = expected_scores(engine, settings, as_of)
    offered = out[(out["status"] == IN_PACKAGE) & ~out["uscc"].isin(opted)]
    return set(offered["uscc"] + ":" + offered["policy_id"] + ":" + offered["policy_version"].astype(str))


# ---- a local receiver ----------------------------------------------------------------------------------
@dataclass
class Receiver:
    """Records every request; honours Idempotency-Key like a real platform (a repeated key is answered
    200 and recorded as a replay, not accepted twice). Failure modes per message key: ``fail_times``
    (500 for the first k requests), ``always_fail``, ``slow`` (sleeps ``slow_seconds`` before answering)."""

    delay: float = 0.0
    fail_times: dict[str, int] = field(default_factory=dict)
    always_fail: set[str] = field(default_factory=set)
    slow: dict[str, int] = field(default_factory=dict)  # key -> number of slow (timed-out) answers
    slow_seconds: float = 1.5
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)
    replays: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def handle(self, key: str, body: dict[str, Any]) -> int:
        with self.lock:
            self.requests.append((key, body))
            seen = sum(1 for k, _ in self.requests if k == key)
            slow = self.slow.get(key, 0) >= seen
        if slow:
            time.sleep(self.slow_seconds)
            return 503
        if self.delay:
            time.sleep(self.delay)
        with self.lock:
            if key in self.always_fail or self.fail_times.get(key, 0) >= seen - self.slow.get(key, 0):
                return 500
            if key in self.accepted:
                self.replays.append(key)
            else:
                self.accepted[key] = body
        return 200

    def item_keys(self) -> list[str]:
        return [item["idempotency_key"] for body in self.accepted.values() for item in body["items"]]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            code = rec.handle(self.headers.get("Idempotency-Key", ""), body)
            try:
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:  # the client gave up (timeout) before the answer
                pass

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/push"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()


def score_records(records: list[dict[str, Any]], matcher: Matcher, as_of: dt.date = AS_OF) -> pd.DataFrame:
    """The pure batch scorer over profile records (encoded as the nightly run encodes them)."""
    frame = encode_profiles([json.dumps(r, ensure_ascii=False) for r in records])
    frame["uscc"] = [r["uscc"] for r in records]
    keys, rows = np.unique(frame.pop("text_key").to_numpy().astype(str), return_inverse=True)
    frame["text_row"] = rows
    scorer = BatchScorer.build(matcher.catalog)
    signals = text_signals(list(keys), matcher.retriever, list(matcher.catalog), scorer.ranking)
    return score_batch(frame, scorer, signals, as_of)
