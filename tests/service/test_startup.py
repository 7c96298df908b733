"""Starting the service on a fresh database: what `make run` does for a newcomer.

Several workers start at once and each loads the YAML catalog into the database; on a fresh database
they race on the same (policy, version) rows. `policyfit serve` loads the catalog once before the
workers start, and each worker's own load survives losing the race (a unique-key violation → roll
back and load again, finding the winner's rows).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from profiles.model import parse_profile
from service.bootstrap import sync_catalog
from service.db.migrate import upgrade
from service.db.tables import PolicyVersion, make_engine
from service.settings import Settings
from service.store import catalog as store_catalog

ROOT = Path(__file__).resolve().parents[2]


def test_a_worker_that_loses_the_catalog_race_loads_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'race.db'}", data_dir=tmp_path)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    real = store_catalog.sync_catalog_files
    calls = 0

    def racing(session: Session, *, policies: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            policies = list(policies)
            with Session(engine) as other:  # another worker wins the race and commits first
                real(other, policies=policies)
                other.commit()
            raise IntegrityError("INSERT INTO policy_version …", {}, Exception("UNIQUE constraint failed"))
        return real(session, policies=policies)

    monkeypatch.setattr(store_catalog, "sync_catalog_files", racing)
    assert sync_catalog(engine, settings) == 0  # the second attempt finds every row in place
    assert calls == 2
    with Session(engine) as session:
        published = session.exec(select(PolicyVersion).where(PolicyVersion.status == "published")).all()
    assert len(published) == len(list((ROOT / "policies" / "catalog").glob("*.yaml")))
    engine.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
@pytest.mark.xdist_group("serve")
def test_serve_with_two_workers_starts_on_a_fresh_database(tmp_path: Path) -> None:
    """The real `policyfit serve --workers 2` on an empty SQLite file: every worker comes up, the API,
    the console and the calculator answer (the shared data dir keeps the embedding cache warm)."""
    port = _free_port()
    env = {**os.environ, "POLICYFIT_DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}"}
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "service", "serve", "--port", str(port), "--workers", "2"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        ready = False
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    if client.get("/readyz").status_code == 200:
                        ready = True
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.5)
            log.flush()
            assert ready and proc.poll() is None, (tmp_path / "serve.log").read_text(errors="replace")[-3000:]
            # both workers must have started: hit the service enough to reach each
            for _ in range(20):
                assert client.get("/readyz").status_code == 200
            assert client.get("/console/login").status_code == 200
            assert client.get("/calculator").status_code == 200
            body = client.post("/v1/match", json={"profile": {"uscc": "91320312MA1Q7E3K29", "name": "测试",
                                                               "employees": 20}}).json()
            assert body["catalog_version"] and "package" in body
        text = (tmp_path / "serve.log").read_text(errors="replace")
        assert "Traceback" not in text and "failed" not in text.lower(), text[-3000:]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_readyz_says_warming_until_the_pages_indexes_are_built(tmp_path: Path, settings: Settings,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A started worker builds the policy matcher and the enterprise-side index in the background:
    /healthz answers at once, /readyz answers 503 ``warming`` with the progress until both are built,
    then 200 ``ready`` — and the first policy page finds the enterprise index already there."""
    from fastapi.testclient import TestClient

    from service.bootstrap import ServiceState
    from service.http.app import create_app
    from service.store.enterprises import upsert_enterprise

    fresh = settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'warm.db'}"})  # shared data dir
    engine = make_engine(fresh.database_url)
    upgrade(engine)
    with Session(engine) as session:
        for path in sorted((ROOT / "profiles" / "samples").glob("*.json")):
            upsert_enterprise(session, profile=parse_profile(json.loads(path.read_text("utf-8"))))
        session.commit()
    engine.dispose()
    gate = threading.Event()
    real = ServiceState.enterprise_index

    def slow(self: ServiceState, population: Any) -> Any:  # the enterprise index takes its time
        assert gate.wait(120)
        return real(self, population)

    monkeypatch.setattr(ServiceState, "enterprise_index", slow)
    state = ServiceState.start(fresh)  # warm=True: what `policyfit serve` workers do
    try:
        with TestClient(create_app(fresh, state)) as client:
            assert client.get("/healthz").status_code == 200
            deadline = time.monotonic() + 600  # a cold embedding cache on a busy machine: minutes
            while True:  # the policy index is built first (from the shared embedding cache)
                warming = client.get("/readyz")
                assert warming.status_code == 503, warming.text
                progress = warming.json()["progress"]
                assert warming.json()["status"] == "warming"
                if progress["enterprise_index"] == "building" or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert progress["policy_index"] == "ready" and progress["enterprise_index"] == "building"
            assert progress["enterprises"] == 6
            gate.set()
            assert state._warm_thread is not None
            state._warm_thread.join(120)
            ready = client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["status"] == "ready", ready.text
            assert ready.json()["catalog_version"].startswith("catalog-")
            assert state._enterprise_index is not None  # built before ready, not on the first page
    finally:
        gate.set()
        state.engine.dispose()


def test_requests_reaching_a_warming_worker_wait_without_holding_a_connection(
        tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """A request that needs the policy matcher while the warm-up is still building it waits for the build
    before it takes a database connection (a burst of them used to drain the pool: 503 数据库暂时不可用),
    then gets its answer."""
    from fastapi.testclient import TestClient

    import service.bootstrap as bootstrap
    from service.bootstrap import ServiceState
    from service.http.app import create_app

    fresh = settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'wait.db'}"})
    gate = threading.Event()
    real = bootstrap.matcher_for

    def slow(*args: Any, **kwargs: Any) -> Any:  # the policy matcher takes its time
        assert gate.wait(120)
        return real(*args, **kwargs)

    monkeypatch.setattr(bootstrap, "matcher_for", slow)
    state = ServiceState.start(fresh)  # warm=True
    profile = json.loads((ROOT / "profiles" / "samples" / "01-small-manufacturer.json").read_text("utf-8"))
    answers: list[Any] = []
    try:
        with TestClient(create_app(fresh, state)) as client:
            deadline = time.monotonic() + 60
            while client.get("/readyz").json().get("progress", {}).get("policy_index") != "building":
                assert time.monotonic() < deadline, "the warm-up did not start building the policy matcher"
                time.sleep(0.05)
            asking = threading.Thread(target=lambda: answers.append(
                TestClient(client.app).post("/v1/match", json={"profile": profile})))
            asking.start()
            asking.join(1.0)
            assert asking.is_alive()  # waiting for the build ...
            assert state.engine.pool.checkedout() == 1  # ... holding no connection (the one is the warm-up's)
            gate.set()
            asking.join(120)
            assert not asking.is_alive() and answers[0].status_code == 200, answers
            assert answers[0].json()["package"]
    finally:
        gate.set()
        state.engine.dispose()
