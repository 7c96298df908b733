"""Console fixtures: the service fixtures of ``tests/service`` over this directory's own database.

The database gets its own PostgreSQL schema name (``pf_console_…``), so that a worker running both
the service and the console tests holds two independent databases instead of two fixtures fighting
over one schema. The browser tests add a real uvicorn server in a thread and the system Chromium.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.bootstrap import ServiceState
from service.db.tables import postgres_schema
from service.settings import Settings
from tests.live_server import serving
from tests.service import conftest as service_fixtures
from tests.service.conftest import Tokens, worker_id

# The service fixtures, reused as they are: pytest collects fixtures from this module's namespace.
app = service_fixtures.app
client = service_fixtures.client
db = service_fixtures.db
fresh_limiter = service_fixtures.fresh_limiter
population = service_fixtures.population
settings = service_fixtures.settings
state = service_fixtures.state
tokens = service_fixtures.tokens

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """This worker's console database: a SQLite file, or a fresh PostgreSQL schema of its own."""
    base = os.environ.get("POLICYFIT_TEST_DATABASE_URL", "").strip()
    if not base:
        yield f"sqlite:///{tmp_path_factory.mktemp('console-db') / 'policyfit.db'}"
        return
    with postgres_schema(base, f"pf_console_{worker_id()}_{os.getpid()}".lower()) as url:
        yield url


CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF field in the page"
    return found.group(1)


@pytest.fixture
def web(client: TestClient, app: FastAPI) -> Iterator[TestClient]:
    """A client with its own cookie jar. Not entered as a context manager: the session client has run
    the app's lifespan already, and a second one would dispose the shared engine when it ends."""
    fresh = TestClient(app)
    try:
        yield fresh
    finally:
        fresh.close()


def sign_in(c: TestClient, token: str) -> str:
    """Sign in through the login form; returns the console's CSRF value for this session."""
    page = c.get("/console/login")
    assert page.status_code == 200
    response = c.post("/console/login", data={"csrf": csrf_of(page.text), "token": token, "next": ""},
                      follow_redirects=False)
    assert response.status_code == 303, response.text
    home = c.get("/console")
    assert home.status_code == 200
    return csrf_of(home.text)


# ---- a real server and a real browser ------------------------------------------------------
@pytest.fixture(scope="session")
def live_server(settings: Settings, state: ServiceState, app: FastAPI, tokens: Tokens) -> Iterator[str]:
    """uvicorn serving a second app over the same state and database, on a free port, in a thread."""
    from service.http.app import create_app

    served = create_app(settings, state)
    with serving(served) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's Chromium driven by playwright. Missing → the test FAILS (CI must install it); skipping
    happens only when POLICYFIT_SKIP_BROWSER=1 is set explicitly. Module-scoped: playwright's sync API
    leaves its event loop marked as running in this thread, so it is stopped before other modules run."""
    if os.environ.get("POLICYFIT_SKIP_BROWSER") == "1":
        pytest.skip("browser tests skipped on request (POLICYFIT_SKIP_BROWSER=1)")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: the console's browser tests need Debian's chromium package "
                    "(apt-get install -y chromium; .ci/run installs it). Set POLICYFIT_SKIP_BROWSER=1 to skip "
                    "them deliberately.", pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: .venv/bin/pip install -e '.[test]'", pytrace=False)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM,
                                      args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
