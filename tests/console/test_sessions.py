"""Server-side console sessions (issue 11, fault 5): the cookie holds a random session id, not the token;
sign-out, revocation, idle and absolute expiry end the session on the server; the cookie is no
credential for ``/v1``; the CSRF value is bound to one session. SQLite, or PostgreSQL when
``POLICYFIT_TEST_DATABASE_URL`` is set (see conftest)."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session, select
from typer.testing import CliRunner

from service.bootstrap import ServiceState
from service.db.tables import ConsoleSession, make_engine
from service.http.console.session import SESSION_COOKIE, csrf_for
from service.settings import Settings
from service.store.console_sessions import console_session_for, end_console_session
from service.store.tokens import create_token, revoke_token
from service.store.values import as_utc
from tests.console.conftest import csrf_of, sign_in
from tests.service.conftest import Population, Tokens, bearer


def _staff_token(state: ServiceState, label: str, role: str = "staff") -> tuple[str, int]:
    with Session(state.engine) as session:
        token, row = create_token(session, role=role, label=label)
        session.commit()
        assert row.id is not None
        return token, row.id


def _row(state: ServiceState, session_id: str) -> ConsoleSession | None:
    with Session(state.engine) as session:
        return session.exec(select(ConsoleSession).where(
            ConsoleSession.session_hash == hashlib.sha256(session_id.encode()).hexdigest())).first()


def _rows_of(state: ServiceState, token_id: int) -> list[ConsoleSession]:
    with Session(state.engine) as session:
        return list(session.exec(select(ConsoleSession).where(ConsoleSession.token_id == token_id)))


def _age(state: ServiceState, session_id: str, **by: dt.timedelta) -> None:
    """Move a stored session's timestamps into the past (``created_at=…``, ``last_seen_at=…``)."""
    with Session(state.engine) as session:
        row = session.exec(select(ConsoleSession).where(
            ConsoleSession.session_hash == hashlib.sha256(session_id.encode()).hexdigest())).one()
        for name, delta in by.items():
            setattr(row, name, dt.datetime.now(dt.UTC) - delta)
        session.add(row)
        session.commit()


@pytest.fixture
def other(app: FastAPI) -> Iterator[TestClient]:
    """A second browser (its own cookie jar), e.g. someone holding a copy of the cookie."""
    fresh = TestClient(app)
    try:
        yield fresh
    finally:
        fresh.close()


def _replay(c: TestClient, session_id: str, path: str = "/console", method: str = "GET",
            data: dict[str, str] | None = None) -> int:
    c.cookies.clear()
    c.cookies.set(SESSION_COOKIE, session_id, path="/console")
    return c.request(method, path, data=data, follow_redirects=False).status_code


# ---- the cookie -------------------------------------------------------------------------------
def test_the_cookie_is_a_random_session_id_stored_only_hashed(web: TestClient, state: ServiceState) -> None:
    token, token_id = _staff_token(state, "会话编号检查")
    sign_in(web, token)
    first = web.cookies[SESSION_COOKIE]
    assert token not in first and len(first) >= 40
    row = _row(state, first)
    assert row is not None and row.token_id == token_id
    assert row.session_hash == hashlib.sha256(first.encode()).hexdigest() != first
    # each sign-in gets a new id; a sign-in posted by a browser that still holds a session (say, a login
    # form left open in another tab) ends that previous session
    web.cookies.clear()
    page = web.get("/console/login")
    web.cookies.set(SESSION_COOKIE, first, path="/console")
    response = web.post("/console/login", data={"csrf": csrf_of(page.text), "token": token, "next": ""},
                        follow_redirects=False)
    assert response.status_code == 303
    second = response.cookies[SESSION_COOKIE]
    assert second != first
    assert _row(state, first) is None and _row(state, second) is not None
    assert [r.session_hash for r in _rows_of(state, token_id)] == [hashlib.sha256(second.encode()).hexdigest()]


def test_the_cookie_lives_for_the_absolute_lifetime_and_is_secure_under_https(
        client: TestClient, app: FastAPI, tokens: Tokens, state: ServiceState) -> None:
    # `client` runs the app's lifespan (app.state.service): this client is not entered, as in test_hardening
    secure = TestClient(app, base_url="https://testserver")
    try:
        page = secure.get("/console/login")
        response = secure.post("/console/login", data={"csrf": csrf_of(page.text), "token": tokens.staff,
                                                       "next": ""}, follow_redirects=False)
        assert response.status_code == 303
        cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(f"{SESSION_COOKIE}="))
        flags = {part.strip().lower() for part in cookie.split(";")}
        hours = state.settings.console_session_hours
        assert {"httponly", "samesite=strict", "path=/console", "secure", f"max-age={hours * 3600}"} <= flags
    finally:
        secure.close()


def test_the_session_lives_in_the_database_for_every_worker(web: TestClient, state: ServiceState,
                                                            settings: Settings) -> None:
    """Another process (here: a separate engine, as another uvicorn worker has) sees the same session."""
    token, token_id = _staff_token(state, "跨进程会话")
    sign_in(web, token)
    session_id = web.cookies[SESSION_COOKIE]
    engine = make_engine(settings.database_url)
    try:
        limits = {"idle": dt.timedelta(minutes=30), "lifetime": dt.timedelta(hours=12)}
        with Session(engine) as session:
            principal, reason = console_session_for(session, session_id=session_id, **limits)
            assert principal is not None and principal.token_id == token_id and reason == ""
            assert end_console_session(session, session_id=session_id)  # "worker B" ends it
            session.commit()
    finally:
        engine.dispose()
    assert web.get("/console", follow_redirects=False).status_code == 303  # "worker A" sees it ended


# ---- sign-out ---------------------------------------------------------------------------------
def test_sign_out_ends_the_session_on_the_server_and_a_replayed_cookie_opens_nothing(
        web: TestClient, other: TestClient, state: ServiceState, population: Population) -> None:
    token, token_id = _staff_token(state, "退出后重放")
    csrf = sign_in(web, token)
    session_id = web.cookies[SESSION_COOKIE]
    page = f"/console/enterprises/{population.firm_b.uscc}"
    assert _replay(other, session_id, page) == 200  # a copy of the cookie works while the session lives
    response = web.post("/console/logout", data={"csrf": csrf}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/console/login?out=1"
    assert _row(state, session_id) is None and _rows_of(state, token_id) == []
    # the copy (and the browser if it kept the cookie) is sent to the sign-in page, and cannot post
    for path in ("/console", page, "/console/policies?q=贷款"):
        assert _replay(other, session_id, path) == 303, path
    redirect = other.get(page, follow_redirects=False)
    assert redirect.headers["location"].startswith("/console/login?next=")
    assert population.firm_b.profile["name"] not in other.get(page).text
    assert _replay(other, session_id, f"{page}/whatif", "POST", {"csrf": csrf, "employees": "3"}) == 401
    assert _replay(other, session_id, "/console/logout", "POST", {"csrf": csrf}) == 401
    # the token itself is still valid: signing in again works
    sign_in(web, token)


# ---- revocation -------------------------------------------------------------------------------
def test_revoking_a_token_ends_every_session_opened_with_it(app: FastAPI, state: ServiceState,
                                                            population: Population) -> None:
    token, token_id = _staff_token(state, "吊销后结束全部会话")
    keep, keep_id = _staff_token(state, "不受影响的坐席")
    browsers = [TestClient(app) for _ in range(3)]
    try:
        for b in browsers[:2]:
            sign_in(b, token)
        sign_in(browsers[2], keep)
        assert len(_rows_of(state, token_id)) == 2
        with Session(state.engine) as session:
            assert revoke_token(session, token_id=token_id)
            session.commit()
        assert _rows_of(state, token_id) == []  # deleted on the server, not merely refused
        for b in browsers[:2]:
            response = b.get("/console", follow_redirects=False)
            assert response.status_code == 303 and "ended=" in response.headers["location"]
        assert browsers[2].get("/console").status_code == 200  # another token's session goes on
        assert len(_rows_of(state, keep_id)) == 1
    finally:
        for b in browsers:
            b.close()


def test_the_revoke_command_ends_the_sessions(web: TestClient, state: ServiceState, database_url: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from service.main import app as cli
    from service.settings import get_settings

    token, token_id = _staff_token(state, "命令行吊销")
    sign_in(web, token)
    assert web.get("/console").status_code == 200
    monkeypatch.setenv("POLICYFIT_DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["tokens", "revoke", str(token_id)])
        assert result.exit_code == 0, result.output
    finally:
        get_settings.cache_clear()
    assert _rows_of(state, token_id) == []
    response = web.get("/console", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/console/login?")


def test_a_token_that_expires_ends_its_session_even_if_the_row_remains(web: TestClient,
                                                                       state: ServiceState) -> None:
    from service.db.tables import ApiToken

    token, token_id = _staff_token(state, "令牌到期")
    sign_in(web, token)
    session_id = web.cookies[SESSION_COOKIE]
    with Session(state.engine) as session:
        row = session.get(ApiToken, token_id)
        assert row is not None
        row.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        session.add(row)
        session.commit()
    response = web.get("/console", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].endswith("&ended=token")
    assert _row(state, session_id) is None
    assert "令牌已过期或已被吊销" in web.get(response.headers["location"]).text


# ---- idle and absolute expiry -------------------------------------------------------------------
def test_idle_expiry(web: TestClient, other: TestClient, state: ServiceState) -> None:
    idle = state.settings.console_idle_minutes
    token, _ = _staff_token(state, "闲置过期")
    sign_in(web, token)
    session_id = web.cookies[SESSION_COOKIE]
    # just inside the idle time: still open, and the request moves the last activity forward
    _age(state, session_id, last_seen_at=dt.timedelta(minutes=idle - 1))
    assert web.get("/console").status_code == 200
    row = _row(state, session_id)
    assert row is not None
    assert dt.datetime.now(dt.UTC) - as_utc(row.last_seen_at) < dt.timedelta(minutes=1)
    # past it: the session is over and deleted; a copy of the cookie opens nothing either
    _age(state, session_id, last_seen_at=dt.timedelta(minutes=idle, seconds=1))
    response = web.get("/console", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].endswith("&ended=idle")
    assert _row(state, session_id) is None
    assert f"超过{idle}分钟未操作" in web.get(response.headers["location"]).text
    assert _replay(other, session_id) == 303


def test_absolute_expiry_however_active(web: TestClient, state: ServiceState, population: Population) -> None:
    hours = state.settings.console_session_hours
    token, _ = _staff_token(state, "绝对过期")
    csrf = sign_in(web, token)
    session_id = web.cookies[SESSION_COOKIE]
    _age(state, session_id, created_at=dt.timedelta(hours=hours) - dt.timedelta(minutes=1),
         last_seen_at=dt.timedelta(seconds=5))
    assert web.get("/console").status_code == 200
    _age(state, session_id, created_at=dt.timedelta(hours=hours, seconds=1), last_seen_at=dt.timedelta(seconds=5))
    post = web.post(f"/console/enterprises/{population.firm_b.uscc}/whatif", data={"csrf": csrf, "employees": "3"},
                    follow_redirects=False)
    assert post.status_code == 401 and f"登录已满{hours}小时" in post.text
    assert _row(state, session_id) is None
    assert web.get("/console", follow_redirects=False).status_code == 303


def test_the_expiry_settings_are_honoured(web: TestClient, state: ServiceState,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLICYFIT_CONSOLE_IDLE_MINUTES", "5")
    monkeypatch.setenv("POLICYFIT_CONSOLE_SESSION_HOURS", "2")
    configured = Settings()
    assert (configured.console_idle_minutes, configured.console_session_hours) == (5, 2)
    assert (Settings.model_fields["console_idle_minutes"].default,
            Settings.model_fields["console_session_hours"].default) == (30, 12)
    monkeypatch.setattr(state.settings, "console_idle_minutes", 5)
    monkeypatch.setattr(state.settings, "console_session_hours", 2)
    token, _ = _staff_token(state, "设置生效")
    sign_in(web, token)
    session_id = web.cookies[SESSION_COOKIE]
    _age(state, session_id, last_seen_at=dt.timedelta(minutes=6))
    assert web.get("/console", follow_redirects=False).headers["location"].endswith("&ended=idle")
    sign_in(web, token)
    session_id = web.cookies[SESSION_COOKIE]
    _age(state, session_id, created_at=dt.timedelta(hours=2, seconds=1))
    assert web.get("/console", follow_redirects=False).headers["location"].endswith("&ended=lifetime")
    web.cookies.clear()
    help_text = web.get("/console/login").text  # the sign-in page tells staff the limits in force
    assert "5分钟无操作" in help_text and "登录满2小时" in help_text


def test_sessions_over_by_time_are_purged_at_the_next_sign_in(web: TestClient, other: TestClient,
                                                              state: ServiceState) -> None:
    token, token_id = _staff_token(state, "清理过期会话")
    sign_in(web, token)
    stale = web.cookies[SESSION_COOKIE]
    _age(state, stale, last_seen_at=dt.timedelta(minutes=state.settings.console_idle_minutes + 1))
    sign_in(other, token)  # a different browser: its sign-in sweeps away the stale session
    assert _row(state, stale) is None
    assert len(_rows_of(state, token_id)) == 1


# ---- the cookie is no credential for /v1 --------------------------------------------------------
@pytest.mark.parametrize("role", ["staff", "admin"])
def test_the_cookie_value_is_refused_as_a_bearer_token_on_v1(web: TestClient, app: FastAPI, state: ServiceState,
                                                             population: Population, role: str) -> None:
    token, _ = _staff_token(state, f"持有{role}会话", role=role)
    sign_in(web, token)
    session_id = web.cookies[SESSION_COOKIE]
    uscc = population.firm_b.uscc
    staff_routes = [("GET", f"/v1/enterprises?q={uscc}"), ("GET", f"/v1/enterprises/{uscc}"),
                    ("GET", f"/v1/enterprises/{uscc}/package"),
                    ("GET", "/v1/policies/union-fee-refund-small-micro/enterprises")]
    admin_routes = [("POST", "/v1/policies"), ("PUT", "/v1/policies/bank-fee-reduction"),
                    ("POST", "/v1/policies/bank-fee-reduction/retire"),
                    ("POST", "/v1/policies/bank-fee-reduction/versions/1/publish")]
    api = TestClient(app)  # no cookies: only the Authorization header
    try:
        for method, path in staff_routes + admin_routes:
            response = api.request(method, path, headers=bearer(session_id), json={})
            assert response.status_code == 401, (method, path, response.text)
            assert population.firm_b.profile["name"] not in response.text
        # the token the session was opened with is what the API accepts (the check above can fail)
        for method, path in staff_routes:
            assert api.request(method, path, headers=bearer(token)).status_code == 200, path
    finally:
        api.close()


def test_a_token_put_into_the_cookie_opens_no_console(web: TestClient, tokens: Tokens) -> None:
    """The old cookie format (the staff token itself) is no session."""
    for token in (tokens.staff, tokens.admin):
        web.cookies.clear()
        web.cookies.set(SESSION_COOKIE, token, path="/console")
        response = web.get("/console", follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/console/login?")


# ---- CSRF bound to the session --------------------------------------------------------------------
def test_csrf_of_another_session_of_the_same_token_is_refused(web: TestClient, other: TestClient,
                                                              state: ServiceState, population: Population) -> None:
    token, _ = _staff_token(state, "同令牌两会话")
    mine = sign_in(web, token)
    theirs = sign_in(other, token)
    assert mine != theirs  # bound to the session, not to the token
    assert mine == csrf_for(web.cookies[SESSION_COOKIE])
    url = f"/console/enterprises/{population.firm_b.uscc}/whatif"
    form = {k: [*v] if isinstance(v, list) else str(v) for k, v in population.firm_b.profile.items()
            if not isinstance(v, list) or v}
    refused = web.post(url, data={**form, "csrf": theirs}, follow_redirects=False)
    assert refused.status_code == 403 and "表单校验失败" in refused.text
    assert web.post("/console/logout", data={"csrf": theirs}, follow_redirects=False).status_code == 403
    assert web.post(url, data={**form, "csrf": mine}).status_code == 200
    # a CSRF value outlives nothing: after sign-out and a new sign-in, the old value is refused
    assert web.post("/console/logout", data={"csrf": mine}, follow_redirects=False).status_code == 303
    fresh = sign_in(web, token)
    assert fresh != mine
    assert web.post(url, data={**form, "csrf": mine}, follow_redirects=False).status_code == 403
    assert web.post(url, data={**form, "csrf": fresh}).status_code == 200
