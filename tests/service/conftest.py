"""Service fixtures: one database per pytest-xdist worker, one app per worker (in-process).

SQLite by default (a file in a temp dir); PostgreSQL when ``POLICYFIT_TEST_DATABASE_URL`` is set,
in a fresh schema ``pf_test_<worker>_<pid>`` that the engine reaches through the libpq option
``options=-csearch_path=<schema>`` and that is dropped at the end. The app is session-scoped:
building the matcher embeds texts, and the embedding cache in ``POLICYFIT_DATA_DIR`` is shared by
the workers.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session

from profiles.model import parse_profile
from profiles.synth import synthesize
from profiles.uscc import ALPHABET, check_character
from service.bootstrap import ServiceState
from service.db.tables import postgres_schema
from service.settings import Settings
from service.store.enterprises import upsert_enterprise
from service.store.tokens import create_token, revoke_token

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "profiles" / "samples"
SAMPLE_FILES = sorted(SAMPLES_DIR.glob("*.json"))
SYNTHETIC_N = 300
SYNTHETIC_SEED = 20230419


def sample(i: int) -> dict[str, Any]:
    """Sample profile ``i`` (0-based, file order) as a fresh dict."""
    return json.loads(SAMPLE_FILES[i].read_text(encoding="utf-8"))


def make_uscc(seed: int, prefix: str = "91320300") -> str:
    """A valid USCC (check character computed), distinct for each seed."""
    body = prefix
    n = seed
    while len(body) < 17:
        body += ALPHABET[n % 31]
        n //= 31
    return body + check_character(body)


def worker_id() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """This worker's own database: a SQLite file, or a fresh PostgreSQL schema."""
    base = os.environ.get("POLICYFIT_TEST_DATABASE_URL", "").strip()
    if not base:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'policyfit.db'}"
        return
    with postgres_schema(base, f"pf_test_{worker_id()}_{os.getpid()}".lower()) as url:
        yield url


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, data_dir=Path(os.environ["POLICYFIT_DATA_DIR"]))


@dataclass
class Firm:
    uscc: str
    profile: dict[str, Any]


@dataclass
class Tokens:
    admin: str
    staff: str
    firm_a: str  # enterprise token of sample 0
    firm_b: str  # enterprise token of sample 1
    revoked: str  # a staff token, revoked
    expired: str  # a staff token, expired yesterday
    expired_enterprise: str  # firm A's token, expired
    staff_label: str = "测试坐席01"
    admin_label: str = "测试管理员"


@dataclass
class Population:
    firm_a: Firm
    firm_b: Firm
    samples: list[Firm]
    synthetic: list[Firm]

    @property
    def all(self) -> list[Firm]:
        return [*self.samples, *self.synthetic]


@pytest.fixture(scope="session")
def state(settings: Settings) -> Iterator[ServiceState]:
    """The composition root over this worker's database, with the test population loaded."""
    service = ServiceState.start(settings, warm=False)  # the app fixture warms it (_warm), one worker at a time
    try:
        yield service
    finally:
        service.engine.dispose()


@pytest.fixture(scope="session")
def population(state: ServiceState) -> Population:
    """The six sample firms and a few hundred synthetic ones, stored."""
    samples = [Firm(parse_profile(sample(i)).uscc, sample(i)) for i in range(len(SAMPLE_FILES))]
    synthetic = [Firm(r["uscc"], r) for r in synthesize(SYNTHETIC_N, SYNTHETIC_SEED).records()]
    with Session(state.engine) as session:
        for firm in [*samples, *synthetic]:
            upsert_enterprise(session, profile=parse_profile(firm.profile))
        session.commit()
    return Population(samples[0], samples[1], samples, synthetic)


@pytest.fixture(scope="session")
def tokens(state: ServiceState, population: Population) -> Tokens:
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    with Session(state.engine) as session:
        admin, _ = create_token(session, role="admin", label="测试管理员")
        staff, _ = create_token(session, role="staff", label="测试坐席01")
        firm_a, _ = create_token(session, role="enterprise", label="企业A", uscc=population.firm_a.uscc)
        firm_b, _ = create_token(session, role="enterprise", label="企业B", uscc=population.firm_b.uscc)
        revoked, row = create_token(session, role="staff", label="已吊销坐席")
        expired, _ = create_token(session, role="staff", label="过期坐席", expires_at=yesterday)
        expired_ent, _ = create_token(session, role="enterprise", label="过期企业A",
                                            uscc=population.firm_a.uscc, expires_at=yesterday)
        session.commit()
        assert revoke_token(session, token_id=row.id)
        session.commit()
    return Tokens(admin, staff, firm_a, firm_b, revoked, expired, expired_ent)


@pytest.fixture(scope="session")
def app(settings: Settings, state: ServiceState, population: Population) -> FastAPI:
    from service.http.app import create_app

    _warm(settings, state)
    return create_app(settings, state)


def _warm(settings: Settings, state: ServiceState) -> None:
    """Build the matcher and the reverse index once, one worker at a time: the first fills the shared
    embedding cache, the others then read it instead of embedding the same texts concurrently."""
    import fcntl

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with (settings.data_dir / "warmup.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with Session(state.engine) as session:
            state.matcher(session)
            state.enterprise_index(state.population(session, dt.date.today()))


@pytest.fixture(scope="session")
def client(app: FastAPI) -> Iterator[TestClient]:
    """The in-process client (its lifespan runs once per worker)."""
    with TestClient(app) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def db(state: ServiceState) -> Iterator[Session]:
    """A session for assertions on what the API wrote."""
    with Session(state.engine) as session:
        yield session


@pytest.fixture
def fresh_limiter(state: ServiceState) -> Iterator[None]:
    """Empty rate-limit counters (shared by every app over this database) before and after the test."""
    from service.store.limits import RateLimiter

    RateLimiter(state.engine).reset()
    yield
    RateLimiter(state.engine).reset()


def policy_body(policy_id: str, eligibility: Any = None, **changes: Any) -> dict[str, Any]:
    """A valid policy body for the admin API (a copy of a catalog entry under a new id)."""
    import yaml

    path = Path(__file__).resolve().parent / "data" / "policy_template.yaml"  # frozen policy body
    data = json.loads(json.dumps(yaml.safe_load(path.read_text(encoding="utf-8")), default=str))
    data.update(id=policy_id, title=f"测试政策{policy_id}", status="draft")
    data.pop("version", None)
    if eligibility is not None:
        data["eligibility"] = eligibility
    data.update(changes)
    return data
