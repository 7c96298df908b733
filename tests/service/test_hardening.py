"""Regression tests of issue 11 (HTTP hardening), in-process over this worker's database (SQLite, or
PostgreSQL with POLICYFIT_TEST_DATABASE_URL):

- fault 2: screening cannot be sidestepped — every /v1 route × every casing of the Content-Type ×
  NUL / lone-surrogate bodies (escaped and raw) → 422/415 and nothing stored; the CLI refuses too;
- fault 3: rate limits shared through the database (two app instances over one database), no bypass by
  rotating X-Forwarded-For, trusted proxies honoured, per-token limits, Retry-After, search limited;
- fault 7: feedback naming a draft is 404 for an enterprise, exactly like GET /v1/policies/<draft>;
- fault 8: /metrics restricted by setting; /docs served from the package's own files;
- fault 9: Cache-Control: no-store and X-Content-Type-Options: nosniff on every /v1 answer, errors included.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import Session, SQLModel, select

from policies.schema import Policy
from service.bootstrap import ServiceState
from service.db.tables import Enterprise, Feedback
from service.http.app import create_app
from service.settings import Settings, parse_networks
from service.store import catalog as store_catalog
from service.store.catalog import add_draft, set_status
from service.store.enterprises import get_enterprise
from service.store.limits import RateLimiter, client_address
from service.store.tokens import token_for
from service.store.values import hash_token, unstorable
from tests.service.conftest import Population, Tokens, bearer, policy_body, sample
from tests.service.test_authz import ENDPOINTS, Endpoint, Target, build_request

V1 = [e for e in ENDPOINTS if e.path.startswith("/v1/")]
CONTENT_TYPES = ["application/json", "APPLICATION/JSON", "Application/Json; charset=UTF-8", "text/plain", None]
UNION_FEE = "union-fee-refund-small-micro"


def a_policy(policy_id: str) -> dict[str, Any]:
    """A valid body for the admin API: a copy of a catalog policy (kind policy) under a new id."""
    return policy_body(policy_id) | _catalog_entry(UNION_FEE) | {"id": policy_id, "title": f"测试政策{policy_id}",
                                                                  "status": "draft"}


def _catalog_entry(policy_id: str) -> dict[str, Any]:
    import yaml

    path = Path(__file__).resolve().parents[2] / "policies" / "catalog" / f"{policy_id}.yaml"
    data = json.loads(json.dumps(yaml.safe_load(path.read_text(encoding="utf-8")), default=str))
    data.pop("version", None)
    return data  # type: ignore[no-any-return]


# ---- fault 2: screening -----------------------------------------------------------------------------
def _poison(body: Any, bad: str) -> Any:
    """``body`` with ``bad`` planted in its first text value (a name, needs, note or title first)."""
    if not isinstance(body, dict):
        return {"note": f"a{bad}b"}
    out = json.loads(json.dumps(body))
    for holder in (out, out.get("profile")):
        if isinstance(holder, dict):
            for key in ("name", "needs", "note", "title"):
                if isinstance(holder.get(key), str):
                    holder[key] = f"{holder[key]}{bad}x"
                    return out
    key = next(k for k, v in out.items() if isinstance(v, str))
    out[key] = f"{out[key]}{bad}x"
    return out


def _encodings(body: Any) -> dict[str, bytes]:
    """The same poisoned document four ways: NUL and lone surrogate, each JSON-escaped and raw."""
    nul = json.dumps(_poison(body, "\x00"))  # ensure_ascii: NUL becomes the escape \u0000
    surrogate = json.dumps(_poison(body, "\ud800"))  # the escape \ud800
    raw_surrogate = json.dumps(_poison(body, "\ud800"), ensure_ascii=False).encode("utf-8", "surrogatepass")
    return {"nul-escaped": nul.encode(), "surrogate-escaped": surrogate.encode(),
            "nul-raw": nul.replace("\\u0000", "\x00").encode(), "surrogate-raw": raw_surrogate}


def _fingerprint(state: ServiceState) -> dict[str, str]:
    """A digest of every row of every table but the rate-limit counters: any write shows."""
    digests = {}
    with state.engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            if table.name == "rate_limit_window":
                continue
            rows = conn.execute(table.select().order_by(*table.primary_key.columns)).all()
            digests[table.name] = hashlib.sha256(repr(rows).encode()).hexdigest()
    return digests


def _sweep_target(e: Endpoint, population: Population, sandbox_policy: str) -> Target:
    return Target(population.samples[2], sandbox_policy if "policy_id" in e.path_params else UNION_FEE, 2)


@pytest.fixture
def sandbox_policy(state: ServiceState) -> str:
    """A policy of this test: version 1 published, version 2 a draft (publish / retire stay harmless)."""
    pid = f"screen-{uuid.uuid4().hex[:10]}"
    with Session(state.engine) as session:
        policy = Policy.model_validate({**a_policy(pid), "version": 1})
        first = add_draft(session, policy=policy, author="screen")
        session.flush()
        set_status(session, row=first, status="published")
        add_draft(session, policy=policy, author="screen")
        session.commit()
    state.invalidate()
    return pid


def test_every_route_and_content_type_refuses_nul_and_lone_surrogates(
        client: TestClient, state: ServiceState, population: Population, tokens: Tokens, sandbox_policy: str,
        fresh_limiter: None) -> None:
    """As the admin (who could write anything), every route, every casing of the media type: 4xx, no write."""
    assert len(V1) >= 15
    before = _fingerprint(state)
    seen: dict[int, int] = {}
    for e in V1:
        method, url, query, body = build_request(e, _sweep_target(e, population, sandbox_policy))
        for label, payload in _encodings(body).items():
            for content_type in CONTENT_TYPES:
                headers = bearer(tokens.admin) | ({"content-type": content_type} if content_type else {})
                response = client.request(method, url, params=query, content=payload, headers=headers)
                where = (e.id, label, content_type, response.status_code, response.text[:200])
                assert response.status_code in (415, 422), where
                error = response.json()
                assert set(error) == {"code", "message", "field"} and error["message"], where
                seen[response.status_code] = seen.get(response.status_code, 0) + 1
    assert _fingerprint(state) == before, "a poisoned request changed the database"
    assert seen[422] > seen.get(415, 0) > 0, seen


def test_the_fault_2_reproduction_put_with_uppercase_media_type(client: TestClient, state: ServiceState,
                                                                population: Population, tokens: Tokens,
                                                                fresh_limiter: None) -> None:
    firm = population.samples[3]
    for field in ("name", "needs"):
        payload = json.dumps({**firm.profile, field: "徐州\x00测试"}).encode()
        for content_type in ("APPLICATION/JSON", "application/JSON; charset=utf-8", "application/vnd.x+JSON"):
            response = client.put(f"/v1/enterprises/{firm.uscc}", content=payload,
                                  headers=bearer(tokens.staff) | {"content-type": content_type})
            assert response.status_code == 422, (field, content_type, response.text)
            assert response.json()["field"] == field and "空字符" in response.json()["message"]
        match = client.post("/v1/match", content=json.dumps({"profile": {**firm.profile, field: "a\x00"}}).encode(),
                            headers={"content-type": "APPLICATION/JSON"})
        assert match.status_code == 422 and match.json()["field"] == f"profile.{field}", match.text
    with Session(state.engine) as session:
        row = get_enterprise(session, uscc=firm.uscc)
        assert row is not None and row.profile == firm.profile
    # a clean body with an odd-cased type is still read as JSON and accepted
    ok = client.put(f"/v1/enterprises/{firm.uscc}", content=json.dumps(firm.profile).encode(),
                    headers=bearer(tokens.staff) | {"content-type": "Application/Json; charset=UTF-8"})
    assert ok.status_code == 200, ok.text


def test_a_postgres_text_column_never_sees_a_nul(client: TestClient, state: ServiceState) -> None:
    """After the sweeps: no stored profile holds a NUL or a lone surrogate (both databases)."""
    with Session(state.engine) as session:
        for row in session.exec(select(Enterprise)):
            assert unstorable(row.profile) is None, row.uscc


def test_cli_match_refuses_nul_and_lone_surrogates(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from service.main import app

    for bad, words in (("\x00", "空字符"), ("\ud800", "Unicode")):
        path = tmp_path / "profile.json"
        path.write_bytes(json.dumps({**sample(0), "needs": f"想贷款{bad}"}).encode())
        result = CliRunner().invoke(app, ["match", "--profile", str(path)])
        assert result.exit_code == 2, result.output
        assert "needs" in result.stderr and words in result.stderr, result.stderr


def test_the_importer_refuses_nul_and_lone_surrogates_row_by_row(state: ServiceState, tmp_path: Path) -> None:
    """CSV and JSONL, NUL and lone surrogate (escaped in JSON, raw bytes in CSV): those rows are rejected
    with their line, the clean rows around them are stored, no stored text holds either."""
    from service.app.importer import import_file
    from tests.service.test_import import good, stored, usccs

    codes = usccs(7)
    rows = [good(c, i) for i, c in enumerate(codes)]
    jsonl = tmp_path / "poison.jsonl"
    lines = [json.dumps(rows[0]), json.dumps({**rows[1], "name": "坏\x00名"}),
             json.dumps({**rows[2], "business_scope": "坏\ud800范围"}), json.dumps(rows[3])]
    jsonl.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = import_file(state.engine, jsonl)
    assert (report.rows, report.rejected, report.created) == (4, 2, 2)
    errors = [json.loads(x) for x in report.errors_file.read_text(encoding="utf-8").splitlines()]  # type: ignore[union-attr]
    assert [(e["line"], e["field"]) for e in errors] == [(2, "name"), (3, "business_scope")]
    csv_path = tmp_path / "poison.csv"
    header = b"uscc,name,entity_type,region,employees\n"
    body = (f"{codes[4]},好企业有限公司,enterprise,泉山区,12\n".encode()
            + f"{codes[5]},坏".encode() + b"\x00" + "企业,enterprise,泉山区,12\n".encode()
            + f"{codes[6]},坏".encode() + b"\xed\xa0\x80" + "企业,enterprise,泉山区,12\n".encode())
    csv_path.write_bytes(header + body)
    report = import_file(state.engine, csv_path)
    assert report.rejected == 2 and report.created == 1, report
    found = stored(state.engine, codes)
    assert set(found) == {codes[0], codes[3], codes[4]}
    for row in found.values():
        assert unstorable(row.profile) is None


# ---- fault 9: protective headers -----------------------------------------------------------------------
def _assert_protected(response: Any, where: Any) -> None:
    assert response.headers.get("cache-control") == "no-store", (where, dict(response.headers))
    assert response.headers.get("x-content-type-options") == "nosniff", (where, dict(response.headers))


def test_every_v1_answer_is_no_store_and_nosniff(client: TestClient, app: FastAPI, population: Population,
                                                 tokens: Tokens, sandbox_policy: str, fresh_limiter: None) -> None:
    rightful = {"anonymous": None, "signed_in": tokens.firm_a, "staff": tokens.staff, "admin": tokens.admin}
    statuses = set()
    for e in V1:
        method, url, query, body = build_request(e, Target(population.firm_a, sandbox_policy
                                                           if "policy_id" in e.path_params else UNION_FEE, 2))
        for token in {None, tokens.firm_b, rightful[e.role]}:
            response = client.request(method, url, params=query, json=body,
                                      headers=bearer(token) if token else {})
            _assert_protected(response, (e.id, response.status_code))
            statuses.add(response.status_code)
    assert {200, 401, 404} <= statuses, statuses
    errors = [
        client.get("/v1/no-such-route"),  # 404 of the router
        client.delete("/v1/policies"),  # 405
        client.post("/v1/match", content=b"x" * 300_000, headers={"content-type": "application/json"}),  # 413
        client.post("/v1/match", content=b'{"profile": {}}', headers={"content-type": "text/plain"}),  # 415
        client.post("/v1/match", content=b"{nope", headers={"content-type": "application/json"}),  # 422
        client.get("/v1/policies/search", params={"q": "x" * 201}),  # 422 (over the query cap)
    ]
    assert [r.status_code for r in errors] == [404, 405, 413, 415, 422, 422]
    for response in errors:
        _assert_protected(response, response.status_code)
    _assert_protected(client.get("/metrics"), "/metrics")
    assert client.get("/healthz").headers["x-content-type-options"] == "nosniff"


def test_an_unexpected_error_is_a_chinese_500_with_the_headers(app: FastAPI, client: TestClient,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(store_catalog, "published_versions", broken)
    raw = TestClient(app, raise_server_exceptions=False)  # not entered: the session client ran the lifespan
    response = raw.get("/v1/policies")
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error" and "simulated" not in response.text
    _assert_protected(response, 500)


# ---- fault 7: drafts are absent for non-staff callers ------------------------------------------------------
def test_feedback_on_a_draft_is_404_like_reading_it(client: TestClient, state: ServiceState, db: Session,
                                                    population: Population, tokens: Tokens) -> None:
    pid = f"draft-{uuid.uuid4().hex[:10]}"
    created = client.post("/v1/policies", json=a_policy(pid), headers=bearer(tokens.admin))
    assert created.status_code == 201 and created.json()["status"] == "draft"
    ghost = f"ghost-{uuid.uuid4().hex[:10]}"
    firm = population.firm_a
    read = client.get(f"/v1/policies/{pid}", headers=bearer(tokens.firm_a))
    assert read.status_code == 404
    answers = {}
    for policy_id in (pid, ghost):
        response = client.post("/v1/feedback", json={"uscc": firm.uscc, "policy_id": policy_id, "kind": "viewed"},
                               headers=bearer(tokens.firm_a))
        assert response.status_code == 404, response.text
        answers[policy_id] = response.json()["message"].replace(policy_id, "<id>")
    assert answers[pid] == answers[ghost], "a draft must look exactly like a policy that does not exist"
    assert not db.exec(select(Feedback).where(Feedback.policy_id == pid)).all()
    # staff see drafts, so for them the policy exists
    staff = client.post("/v1/feedback", json={"uscc": firm.uscc, "policy_id": pid, "kind": "viewed"},
                        headers=bearer(tokens.staff))
    assert staff.status_code == 201, staff.text
    # once published, the enterprise may give feedback on it
    assert client.post(f"/v1/policies/{pid}/versions/1/publish", headers=bearer(tokens.admin)).status_code == 200
    ok = client.post("/v1/feedback", json={"uscc": firm.uscc, "policy_id": pid, "kind": "applied"},
                     headers=bearer(tokens.firm_a))
    assert ok.status_code == 201, ok.text


# ---- fault 3: limits that hold across workers ------------------------------------------------------------
def _second_app(settings: Settings, state: ServiceState) -> TestClient:
    """Another app instance (as another worker would be) over the same database."""
    return TestClient(create_app(settings, state))


def test_the_anonymous_limit_is_shared_by_two_app_instances(app: FastAPI, client: TestClient, settings: Settings,
                                                            state: ServiceState, fresh_limiter: None,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    payload = {"profile": sample(1)}
    monkeypatch.setattr(state.settings, "anonymous_rate_per_minute", 6)
    with _second_app(settings, state) as other:
        accepted, refused = 0, []
        for i in range(14):
            response = (client if i % 2 else other).post("/v1/match", json=payload)
            if response.status_code == 200:
                accepted += 1
            else:
                refused.append(response)
    assert accepted == 6, "the two instances must share one count"
    for response in refused:
        assert response.status_code == 429 and response.json()["code"] == "rate_limited"
        assert "每分钟最多6次" in response.json()["message"]
        wait = int(response.headers["retry-after"])
        assert 1 <= wait <= 120
        assert f"{wait}秒后" in response.json()["message"]


def test_rotating_x_forwarded_for_does_not_escape_the_limit(app: FastAPI, state: ServiceState,
                                                            fresh_limiter: None,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state.settings, "anonymous_search_per_minute", 4)
    local = TestClient(app, client=("127.0.0.1", 50000))
    codes = [local.get("/v1/policies/search", params={"q": "贷款"},
                       headers={"X-Forwarded-For": f"198.51.100.{i}"}).status_code for i in range(10)]
    assert codes.count(200) == 4 and codes.count(429) == 6, codes


def test_a_trusted_proxy_is_believed_and_only_it(app: FastAPI, state: ServiceState, fresh_limiter: None,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state.settings, "anonymous_search_per_minute", 2)
    monkeypatch.setattr(state.settings, "trusted_proxies", "10.0.0.0/8")
    proxy = TestClient(app, client=("10.1.2.3", 40000))
    stranger = TestClient(app, client=("192.0.2.9", 40000))

    def search(c: TestClient, xff: str | None) -> int:
        return c.get("/v1/policies/search", params={"q": "稳岗"},
                     headers={"X-Forwarded-For": xff} if xff else {}).status_code

    # behind the proxy, each real client has its own window
    assert [search(proxy, "203.0.113.1") for _ in range(3)] == [200, 200, 429]
    assert [search(proxy, "203.0.113.2") for _ in range(3)] == [200, 200, 429]
    # a client's own forged hop left of the proxy's entry changes nothing: the proxy's entry decides
    assert search(proxy, "1.2.3.4, 203.0.113.1") == 429
    # an untrusted peer's header is ignored: counted as itself
    assert [search(stranger, f"203.0.113.{i}") for i in range(10, 13)] == [200, 200, 429]


def test_client_address_walks_back_through_trusted_hops_only() -> None:
    trusted = parse_networks("10.0.0.0/8, ::1", setting="test")
    assert client_address("127.0.0.1", ["6.6.6.6"], ()) == "127.0.0.1"
    assert client_address("127.0.0.1", ["6.6.6.6"], trusted) == "127.0.0.1"  # loopback not trusted here
    assert client_address("10.0.0.5", ["6.6.6.6, 203.0.113.7"], trusted) == "203.0.113.7"
    assert client_address("10.0.0.5", ["203.0.113.7, 10.0.0.9"], trusted) == "203.0.113.7"
    assert client_address("10.0.0.5", ["garbage, 10.0.0.9"], trusted) == "10.0.0.9"
    assert client_address("::1", ["2001:db8::1"], trusted) == "2001:db8::1"


def test_token_holders_are_limited_per_token_with_overrides(client: TestClient, state: ServiceState,
                                                            tokens: Tokens, fresh_limiter: None,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    payload = {"profile": sample(1)}
    monkeypatch.setattr(state.settings, "token_rate_per_minute", 3)
    with Session(state.engine) as session:
        staff_id = token_for(session, token_hash=hash_token(tokens.staff)).id  # type: ignore[union-attr]
    monkeypatch.setattr(state.settings, "token_rate_overrides", {staff_id: 5})
    firm_codes = [client.post("/v1/match", json=payload, headers=bearer(tokens.firm_b)).status_code for _ in range(5)]
    staff_codes = [client.post("/v1/match", json=payload, headers=bearer(tokens.staff)).status_code for _ in range(7)]
    assert firm_codes == [200] * 3 + [429] * 2
    assert staff_codes == [200] * 5 + [429] * 2
    refused = client.post("/v1/match", json=payload, headers=bearer(tokens.firm_b))
    assert refused.status_code == 429 and "该令牌" in refused.json()["message"]
    assert int(refused.headers["Retry-After"]) >= 1
    # the limit counts per route: the search bucket of the same token is untouched
    assert client.get("/v1/policies/search", params={"q": "贷款"}, headers=bearer(tokens.firm_b)).status_code == 200
    monkeypatch.setattr(state.settings, "token_rate_overrides", {staff_id: 0})  # 0 = no limit for this token
    assert client.post("/v1/match", json=payload, headers=bearer(tokens.staff)).status_code == 200


def test_the_limiter_counts_the_last_60_seconds_and_forgets_old_slots(state: ServiceState,
                                                                      fresh_limiter: None) -> None:
    start = 1_800_000_000.0  # a minute boundary
    now = [start]
    limiter = RateLimiter(state.engine, clock=lambda: now[0])
    assert [limiter.hit("t|a", 3).allowed for _ in range(4)] == [True, True, True, False]
    now[0] = start + 30  # the three calls are all within the last 60 s
    assert [limiter.hit("t|a", 3).allowed for _ in range(2)] == [False, False]
    now[0] = start + 61  # their slot is 9/10 inside the window: 2.7 calls, no room for a 3rd
    decision = limiter.hit("t|a", 3)
    assert not decision.allowed and decision.retry_after == 3  # at +64 s they weigh 1.8
    now[0] = start + 64
    assert limiter.hit("t|a", 3).allowed
    now[0] = start + 300  # much later: the old slots are purged
    assert limiter.hit("t|a", 3).allowed
    with state.engine.connect() as conn:
        slots = conn.execute(text("SELECT DISTINCT window_no FROM rate_limit_window")).scalars().all()
    assert slots and min(slots) >= int(now[0] // 10) - 6


def test_calls_late_in_one_minute_still_count_early_in_the_next(state: ServiceState, fresh_limiter: None) -> None:
    """Ten calls in the last ten seconds of a minute fill the limit for the next 50 s: straddling the
    minute boundary gains nothing (a two-window estimate would let an eleventh through at +65 s)."""
    start = 1_800_000_000.0
    now = [start]
    limiter = RateLimiter(state.engine, clock=lambda: now[0])
    for i in range(10):
        now[0] = start + 50 + i
        assert limiter.hit("t|late", 10).allowed
    for later in (65, 90, 109):
        now[0] = start + later
        assert not limiter.hit("t|late", 10).allowed, later
    now[0] = start + 111  # the calls made before +51 s have left the last 60 s
    assert limiter.hit("t|late", 10).allowed


def test_search_is_limited_for_anonymous_callers(client: TestClient, state: ServiceState, fresh_limiter: None,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state.settings, "anonymous_search_per_minute", 3)
    assert client.get("/v1/policies/search", params={"q": "x" * 201}).status_code == 422  # over the query cap
    codes = [client.get("/v1/policies/search", params={"q": f"融资{i}"}).status_code for i in range(3)]
    assert codes == [200, 200, 429]  # the refused query counted as a call too


# ---- fault 8: metrics restriction and offline docs -----------------------------------------------------------
def test_metrics_can_be_restricted_to_addresses_or_a_token(app: FastAPI, client: TestClient, state: ServiceState,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    assert client.get("/metrics").status_code == 200  # open by default
    settings = app.state.service.settings
    monkeypatch.setattr(settings, "metrics_allow", "192.0.2.0/24")
    monkeypatch.setattr(settings, "metrics_token", "scrape-secret")
    inside = TestClient(app, client=("192.0.2.10", 1234))
    outside = TestClient(app, client=("198.51.100.1", 1234))
    assert inside.get("/metrics").status_code == 200
    refused = outside.get("/metrics")
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    assert outside.get("/metrics", headers=bearer("wrong")).status_code == 403
    assert outside.get("/metrics", headers=bearer("scrape-secret")).status_code == 200


def test_docs_use_only_files_the_app_serves(client: TestClient) -> None:
    import re

    page = client.get("/docs")
    assert page.status_code == 200
    urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", page.text)
    assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls), urls
    for asset in ("/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css", "/docs-assets/favicon.png"):
        assert client.get(asset).status_code == 200, asset
    assert "https://" not in page.text and "http://" not in page.text


def test_cli_token_label_refuses_a_lone_surrogate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """argv bytes that are not UTF-8 reach Python as lone surrogates; they never become a stored label."""
    from typer.testing import CliRunner

    from service.main import app
    from service.settings import get_settings

    monkeypatch.setenv("POLICYFIT_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["tokens", "create", "--role", "staff", "--label", "坐席\udced\udca0"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2 and "--label" in result.stderr and "Unicode" in result.stderr, result.output


def test_the_schema_documents_retry_after_on_429(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path, method in (("/v1/match", "post"), ("/v1/policies/search", "get")):
        assert "Retry-After" in paths[path][method]["responses"]["429"]["headers"], path
