"""Functional tests of every endpoint of the HTTP API (in-process, against this worker's database)."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from service.bootstrap import ServiceState
from service.db.tables import AuditLog
from tests.service.conftest import Population, Tokens, bearer, make_uscc, policy_body, sample

CJK = re.compile(r"[\u4e00-\u9fff]")
UNION_FEE = "union-fee-refund-small-micro"


def assert_error(response: Any, status: int, code: str | None = None, field: str | None = None) -> dict[str, Any]:
    """The uniform error body: {code, message (Chinese), field}."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"code", "message", "field"}, body
    assert CJK.search(body["message"]), body
    if code is not None:
        assert body["code"] == code, body
    if field is not None:
        assert body["field"] == field, body
    return body


def new_id(prefix: str = "test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def audit_rows(db: Session, *, label: str, uscc: str | None = None, since: dt.datetime) -> list[AuditLog]:
    stmt = select(AuditLog).where(AuditLog.label == label, AuditLog.id > 0)
    if uscc is not None:
        stmt = stmt.where(AuditLog.uscc == uscc)
    rows = [r for r in db.exec(stmt.order_by(AuditLog.id)) if _aware(r.at) >= since]
    return rows


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)


@pytest.fixture
def own_firm(state: ServiceState) -> tuple[str, dict[str, Any], str]:
    """A firm of its own for write tests: (uscc, profile, enterprise token); not stored yet."""
    from service.store.tokens import create_token

    uscc = make_uscc(uuid.uuid4().int % 31**9, prefix="91320302")
    profile = sample(0) | {"uscc": uscc, "name": f"测试写入企业{uscc[-6:]}有限公司"}
    with Session(state.engine) as session:
        token, _ = create_token(session, role="enterprise", label=f"写入测试{uscc[-6:]}", uscc=uscc)
        session.commit()
    return uscc, profile, token


# ---- operations ----------------------------------------------------------------------------------
def test_healthz_readyz_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    listed = client.get("/v1/policies").json()  # every entry kind: policies, commitments, plan work
    assert body["status"] == "ready" and body["entries"] == len(listed)
    assert body["policies"] == sum(1 for e in listed if e["kind"] == "policy") < len(listed)
    assert body["catalog_version"] and body["model_id"]
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    assert 'policyfit_requests_total{method="GET",route="/readyz",status="200"}' in metrics.text
    assert "policyfit_request_seconds_bucket" in metrics.text


def test_unknown_route_and_method_answer_in_the_error_format(client: TestClient) -> None:
    assert_error(client.get("/v1/nothing-here"), 404, "not_found")
    assert_error(client.delete("/v1/policies"), 405, "method_not_allowed")


def test_openapi_and_docs_are_served(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert "/v1/match" in schema["paths"]
    assert client.get("/docs").status_code == 200


# ---- match (the public calculator) -----------------------------------------------------------------
def test_anonymous_match_returns_the_package(client: TestClient, fresh_limiter: None) -> None:
    r = client.post("/v1/match", json={"profile": sample(0), "as_of": "2024-06-01"})
    assert r.status_code == 200, r.text
    body = r.json()
    entry = next(e for e in body["package"] if e["policy_id"] == UNION_FEE)
    assert entry["estimated_value_wan"] == pytest.approx(620 * 0.02 * 0.4)  # the increment over the union's 60%
    assert body["enterprise"]["size"] == "small"
    assert body["catalog_version"].startswith("catalog-") and body["model_id"]
    scores = [e["score"] for e in body["package"]]
    assert scores == sorted(scores, reverse=True)
    top = client.post("/v1/match", json={"profile": sample(0), "as_of": "2024-06-01", "top": 3}).json()
    assert [e["policy_id"] for e in top["package"]] == [e["policy_id"] for e in body["package"][:3]]


@pytest.mark.parametrize(("patch", "field", "words"), [
    ({"employees": -3}, "profile.employees", "不能小于0"),
    ({"tax_grade": "A"}, "profile.tax_grade", "未知字段"),
    ({"uscc": "91440300708461136A"}, "profile.uscc", "校验位"),
    ({"size": "tiny"}, "profile.size", "取值无效"),
    ({"employees": "many"}, "profile.employees", "应为整数"),
])
def test_match_rejects_an_invalid_profile_naming_the_field(client: TestClient, fresh_limiter: None,
                                                           patch: dict[str, Any], field: str, words: str) -> None:
    body = assert_error(client.post("/v1/match", json={"profile": sample(0) | patch}), 422, "invalid_profile", field)
    assert words in body["message"]


def test_match_request_validation_is_chinese(client: TestClient, fresh_limiter: None) -> None:
    assert_error(client.post("/v1/match", json={"profile": sample(0), "top": 0}), 422, "invalid_request", "top")
    assert_error(client.post("/v1/match", json={"profile": sample(0), "extra": 1}), 422, "invalid_request", "extra")
    assert_error(client.post("/v1/match", json={"profile": sample(0), "as_of": "2024-13-01"}), 422, field="as_of")
    assert_error(client.post("/v1/match", content=b"{not json", headers={"content-type": "application/json"}),
                 422, "invalid_request")
    assert_error(client.post("/v1/match", json={}), 422, "invalid_request", "profile")


def test_anonymous_match_is_rate_limited_per_client(app: FastAPI, client: TestClient, state: ServiceState,
                                                    tokens: Tokens, fresh_limiter: None,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    payload = {"profile": sample(1)}
    assert client.post("/v1/match", json=payload, headers=bearer(tokens.staff)).status_code == 200  # warm
    monkeypatch.setattr(state.settings, "anonymous_rate_per_minute", 3)
    for _ in range(3):
        assert client.post("/v1/match", json=payload).status_code == 200
    body = assert_error(client.post("/v1/match", json=payload), 429, "rate_limited")
    assert "每分钟最多3次" in body["message"]
    other = TestClient(app, client=("203.0.113.7", 40000))
    assert other.post("/v1/match", json=payload).status_code == 200  # another client has its own window
    assert client.post("/v1/match", json=payload, headers=bearer(tokens.staff)).status_code == 200  # tokens: no limit
    assert client.post("/v1/match", json=payload, headers=bearer(tokens.firm_b)).status_code == 200


# ---- enterprises ----------------------------------------------------------------------------------
def test_enterprise_puts_and_reads_its_own_profile(client: TestClient, own_firm: tuple[str, dict[str, Any], str]) -> None:
    uscc, profile, token = own_firm
    created = client.put(f"/v1/enterprises/{uscc}", json=profile, headers=bearer(token))
    assert created.status_code == 200, created.text
    body = created.json()
    assert body["changed"] is True and body["uscc"] == uscc and body["name"] == profile["name"]
    assert body["profile"]["employees"] == 86 and body["derived"]["size"] == "small"
    again = client.put(f"/v1/enterprises/{uscc.lower()}", json=profile, headers=bearer(token)).json()
    assert again["changed"] is False and again["updated_at"] == body["updated_at"]
    changed = client.put(f"/v1/enterprises/{uscc}", json=profile | {"employees": 12}, headers=bearer(token)).json()
    assert changed["changed"] is True
    got = client.get(f"/v1/enterprises/{uscc}", headers=bearer(token))
    assert got.status_code == 200 and got.json()["profile"]["employees"] == 12
    assert got.json()["derived"]["size"] in ("small", "micro")
    package = client.get(f"/v1/enterprises/{uscc}/package", params={"as_of": "2024-06-01", "top": 5},
                         headers=bearer(token))
    assert package.status_code == 200 and len(package.json()["package"]) <= 5
    assert package.json()["enterprise"]["uscc"] == uscc


def test_put_enterprise_validates_and_never_half_writes(client: TestClient, db: Session,
                                                        own_firm: tuple[str, dict[str, Any], str]) -> None:
    uscc, profile, token = own_firm
    assert client.put(f"/v1/enterprises/{uscc}", json=profile, headers=bearer(token)).status_code == 200
    before = client.get(f"/v1/enterprises/{uscc}", headers=bearer(token)).json()
    bad = profile | {"name": "改了名字", "employees": -1}
    body = assert_error(client.put(f"/v1/enterprises/{uscc}", json=bad, headers=bearer(token)),
                        422, "invalid_profile", "employees")
    assert "从业人员" in body["message"]
    assert_error(client.put(f"/v1/enterprises/{uscc}", json=profile | {"tax_grade": "A"}, headers=bearer(token)),
                 422, "invalid_profile", "tax_grade")
    other = make_uscc(12345)
    assert_error(client.put(f"/v1/enterprises/{uscc}", json=profile | {"uscc": other}, headers=bearer(token)),
                 422, "uscc_mismatch", "uscc")
    assert_error(client.put("/v1/enterprises/123", json=profile, headers=bearer(token)), 422, "invalid_uscc", "uscc")
    assert client.get(f"/v1/enterprises/{uscc}", headers=bearer(token)).json() == before


def test_enterprise_token_never_reaches_another_firm(client: TestClient, tokens: Tokens,
                                                     population: Population) -> None:
    a, b = population.firm_a, population.firm_b
    own = client.get(f"/v1/enterprises/{a.uscc}", headers=bearer(tokens.firm_a))
    assert own.status_code == 200 and own.json()["name"] == a.profile["name"]
    for response in (
        client.get(f"/v1/enterprises/{b.uscc}", headers=bearer(tokens.firm_a)),
        client.get(f"/v1/enterprises/{b.uscc}/package", headers=bearer(tokens.firm_a)),
        client.put(f"/v1/enterprises/{b.uscc}", json=b.profile | {"employees": 1}, headers=bearer(tokens.firm_a)),
        client.post("/v1/feedback", json={"uscc": b.uscc, "policy_id": UNION_FEE, "kind": "viewed"},
                    headers=bearer(tokens.firm_a)),
    ):
        assert_error(response, 404, "not_found")
        assert b.uscc not in response.text and b.profile["name"] not in response.text
    # a firm that is not stored at all answers exactly like another firm's: nothing to tell them apart
    missing = client.get(f"/v1/enterprises/{make_uscc(99)}", headers=bearer(tokens.firm_a))
    assert missing.json() == client.get(f"/v1/enterprises/{b.uscc}", headers=bearer(tokens.firm_a)).json()
    assert client.get(f"/v1/enterprises/{b.uscc}", headers=bearer(tokens.staff)).json()["profile"] == b.profile
    assert_error(client.get("/v1/enterprises", params={"q": "徐州"}, headers=bearer(tokens.firm_a)), 403, "forbidden")


def test_staff_reads_are_audited(client: TestClient, db: Session, tokens: Tokens, population: Population) -> None:
    firm = population.samples[2]
    since = _now()
    r = client.get(f"/v1/enterprises/{firm.uscc.lower()}", headers=bearer(tokens.staff))
    assert r.status_code == 200
    assert client.get(f"/v1/enterprises/{firm.uscc}/package", headers=bearer(tokens.staff)).status_code == 200
    rows = audit_rows(db, label=tokens.staff_label, uscc=firm.uscc, since=since)
    assert [(r.method, r.role) for r in rows] == [("GET", "staff"), ("GET", "staff")]
    assert rows[0].route == f"/v1/enterprises/{firm.uscc.lower()}" or rows[0].route.endswith(firm.uscc)
    assert rows[1].route.endswith("/package") and all(r.token_id is not None for r in rows)
    # an admin's read is audited too; the firm's own read is not a staff lookup
    client.get(f"/v1/enterprises/{firm.uscc}", headers=bearer(tokens.admin))
    assert len(audit_rows(db, label=tokens.admin_label, uscc=firm.uscc, since=since)) == 1
    since = _now()
    client.get(f"/v1/enterprises/{population.firm_a.uscc}", headers=bearer(tokens.firm_a))
    assert not db.exec(select(AuditLog).where(AuditLog.uscc == population.firm_a.uscc,
                                              AuditLog.role == "enterprise")).all()


def test_staff_write_is_audited(client: TestClient, db: Session, tokens: Tokens) -> None:
    uscc = make_uscc(uuid.uuid4().int % 31**9, prefix="91320305")
    since = _now()
    profile = sample(3) | {"uscc": uscc, "name": "坐席代录企业有限公司"}
    assert client.put(f"/v1/enterprises/{uscc}", json=profile, headers=bearer(tokens.staff)).status_code == 200
    rows = audit_rows(db, label=tokens.staff_label, uscc=uscc, since=since)
    assert [r.method for r in rows] == ["PUT"]


def test_staff_search_by_name_fragment_or_uscc(client: TestClient, db: Session, tokens: Tokens,
                                               population: Population) -> None:
    firm = population.samples[3]
    fragment = firm.profile["name"][2:6]
    since = _now()
    hits = client.get("/v1/enterprises", params={"q": fragment}, headers=bearer(tokens.staff))
    assert hits.status_code == 200
    assert firm.uscc in [h["uscc"] for h in hits.json()]
    assert all(fragment in h["name"] for h in hits.json())
    exact = client.get("/v1/enterprises", params={"q": f" {firm.uscc.lower()} "}, headers=bearer(tokens.staff)).json()
    assert exact == [{"uscc": firm.uscc, "name": firm.profile["name"], "region": firm.profile.get("region")}]
    limited = client.get("/v1/enterprises", params={"q": "合成", "limit": 5}, headers=bearer(tokens.staff)).json()
    assert len(limited) == 5
    # the search is audited, one row per firm shown, naming the query
    rows = audit_rows(db, label=tokens.staff_label, since=since)
    assert {r.uscc for r in rows} >= {firm.uscc}
    assert any(fragment in r.route for r in rows) and all(r.route.startswith("/v1/enterprises") for r in rows)
    # LIKE wildcards are literal text, not patterns
    for q in ("%", "_", "%%%"):
        assert client.get("/v1/enterprises", params={"q": q}, headers=bearer(tokens.staff)).json() == []
    assert_error(client.get("/v1/enterprises", params={"q": ""}, headers=bearer(tokens.staff)), 422, field="q")
    assert_error(client.get("/v1/enterprises", params={"q": "x", "limit": 1000}, headers=bearer(tokens.staff)),
                 422, field="limit")


def test_missing_enterprise_and_bad_uscc(client: TestClient, tokens: Tokens) -> None:
    assert_error(client.get(f"/v1/enterprises/{make_uscc(424242)}", headers=bearer(tokens.staff)), 404, "not_found")
    body = assert_error(client.get("/v1/enterprises/91320312MA1Q7E3K2X", headers=bearer(tokens.staff)),
                        422, "invalid_uscc", "uscc")
    assert "校验位" in body["message"]


def test_padded_uscc_in_the_path_is_read_and_audited(client: TestClient, tokens: Tokens,
                                                     population: Population) -> None:
    firm = population.samples[4]
    r = client.get(f"/v1/enterprises/{' ' * 300}{firm.uscc}", headers=bearer(tokens.staff))
    assert r.status_code == 200 and r.json()["uscc"] == firm.uscc


# ---- tokens ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["revoked", "expired", "expired_enterprise", "garbage"])
def test_revoked_expired_and_unknown_tokens_get_401(client: TestClient, tokens: Tokens, population: Population,
                                                    which: str) -> None:
    token = getattr(tokens, which, "pf_sta_not-a-real-token")
    for response in (
        client.get(f"/v1/enterprises/{population.firm_a.uscc}", headers=bearer(token)),
        client.get("/v1/enterprises", params={"q": "徐州"}, headers=bearer(token)),
        client.get("/v1/policies", headers=bearer(token)),  # a bad token is refused even where anonymous is fine
    ):
        body = assert_error(response, 401, "unauthorized", "Authorization")
        assert "令牌" in body["message"]


def test_malformed_authorization_header(client: TestClient, tokens: Tokens) -> None:
    for header in (f"Token {tokens.staff}", "Bearer", "Bearer    ", tokens.staff):
        assert_error(client.get("/v1/enterprises", params={"q": "x"}, headers={"Authorization": header}),
                     401, "unauthorized", "Authorization")
    assert_error(client.get("/v1/enterprises", params={"q": "x"}), 401, "unauthorized")


# ---- hostile input on the write endpoints: always a clear 4xx in the error format ---------------------------
def _write_calls(population: Population, tokens: Tokens) -> list[tuple[str, str, Any, dict[str, str]]]:
    a = population.firm_a
    return [
        ("PUT", f"/v1/enterprises/{a.uscc}", a.profile, bearer(tokens.firm_a)),
        ("POST", "/v1/match", {"profile": a.profile, "query": "想贷款"}, bearer(tokens.firm_a)),
        ("POST", "/v1/feedback", {"uscc": a.uscc, "policy_id": UNION_FEE, "kind": "viewed", "note": "好"},
         bearer(tokens.firm_a)),
        ("POST", "/v1/policies", policy_body("hostile-new"), bearer(tokens.admin)),
        ("PUT", f"/v1/policies/{UNION_FEE}", policy_body(UNION_FEE), bearer(tokens.admin)),
    ]


def _leaves(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    if isinstance(data, dict):
        return [leaf for k, v in data.items() for leaf in _leaves(v, (*path, k))]
    if isinstance(data, list):
        return [leaf for i, v in enumerate(data) for leaf in _leaves(v, (*path, i))]
    return [(path, data)]


def _replace(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, *rest = path
    copy = dict(data) if isinstance(data, dict) else list(data)
    copy[head] = _replace(data[head], tuple(rest), value)
    return copy


def _hostile_variants(body: Any) -> list[tuple[str, Any]]:
    """Every string leaf with a NUL byte, every number leaf huge, every leaf of the wrong type."""
    out: list[tuple[str, Any]] = []
    for path, leaf in _leaves(body):
        name = ".".join(map(str, path))
        if isinstance(leaf, str):
            out.append((f"nul:{name}", _replace(body, path, leaf + "\x00x")))
            out.append((f"wrongtype:{name}", _replace(body, path, {"not": "a string"})))
        elif isinstance(leaf, bool):
            out.append((f"wrongtype:{name}", _replace(body, path, "yes")))
        elif isinstance(leaf, int | float):
            out.append((f"huge:{name}", _replace(body, path, 10**30)))
            out.append((f"wrongtype:{name}", _replace(body, path, "一百")))
    return out


@pytest.mark.parametrize("call", range(5), ids=["put-enterprise", "match", "feedback", "create-policy",
                                                "update-policy"])
def test_hostile_values_everywhere_give_4xx(client: TestClient, tokens: Tokens, population: Population,
                                            call: int) -> None:
    method, url, body, headers = _write_calls(population, tokens)[call]
    for label, variant in _hostile_variants(body):
        response = client.request(method, url, json=variant, headers=headers)
        assert 400 <= response.status_code < 500, (label, response.status_code, response.text[:300])
        assert_error(response, response.status_code)
        if label.startswith("nul:") and response.status_code == 422:
            assert response.json()["field"], (label, response.json())


@pytest.mark.parametrize("call", range(5), ids=["put-enterprise", "match", "feedback", "create-policy",
                                                "update-policy"])
def test_nul_huge_megabyte_and_wrong_json_types_give_4xx(client: TestClient, tokens: Tokens,
                                                         population: Population, call: int) -> None:
    method, url, body, headers = _write_calls(population, tokens)[call]
    megabyte = "政" * (1 << 20)
    cases: list[tuple[str, Any]] = [
        ("nul", {**body, next(k for k, v in body.items() if isinstance(v, str)): "a\x00b"}),
        ("huge-int", {**body, "employees": 10**30, "top": 10**30, "version": 10**30}),
        ("huge-int-literal", None),
        ("megabyte", {**body, next(k for k, v in body.items() if isinstance(v, str)): megabyte}),
        ("array", [body]),
        ("string", "profile"),
        ("number", 42),
        ("null", None),
    ]
    for label, payload in cases:
        if label == "huge-int-literal":
            response = client.request(method, url, content=b'{"employees": ' + b"9" * 5000 + b"}",
                                      headers={**headers, "content-type": "application/json"})
        else:
            response = client.request(method, url, json=payload, headers=headers)
        assert 400 <= response.status_code < 500, (label, response.status_code, response.text[:300])
        err = assert_error(response, response.status_code)
        if label == "megabyte":
            assert response.status_code == 413 and err["code"] == "payload_too_large"
    # NUL in the path and the query as well
    assert_error(client.get("/v1/policies/a%00b"), 422, field="policy_id")
    assert_error(client.get("/v1/enterprises", params={"q": "徐\x00州"}, headers=bearer(tokens.staff)), 422, field="q")
    assert_error(client.get(f"/v1/enterprises/{population.firm_a.uscc}%00", headers=bearer(tokens.staff)), 422)


def test_rule_and_formula_bombs_are_refused(client: TestClient, tokens: Tokens) -> None:
    admin = bearer(tokens.admin)
    deep: Any = {"field": "employees", "ge": 1}
    for _ in range(200):
        deep = {"not": deep}
    estimate = {"description": "x", "assumption": "a"}
    bombs = {
        "deep-rule": policy_body(new_id("bomb"), deep),
        "huge-threshold": policy_body(new_id("bomb"), {"all": [{"field": "employees", "ge": 10**400}]}),
        "inf-threshold": policy_body(new_id("bomb"), {"all": [{"field": "employees", "ge": float("inf")}]}),
        "long-formula": policy_body(new_id("bomb"), benefit={**estimate, "estimate": {
            "formula": "1+" * 20000 + "1", "assumption": "a"}}),
        "nested-formula": policy_body(new_id("bomb"), benefit={**estimate, "estimate": {
            "formula": "-" * 5000 + "1", "assumption": "a"}}),
        "huge-constant": policy_body(new_id("bomb"), benefit={**estimate, "estimate": {
            "formula": "annual_payroll_wan * 1" + "0" * 400, "assumption": "a"}}),
    }
    for label, body in bombs.items():
        if label == "inf-threshold":
            response = client.post("/v1/policies", content=__import__("json").dumps(body).encode(),
                                   headers={**admin, "content-type": "application/json"})
        else:
            response = client.post("/v1/policies", json=body, headers=admin)
        assert 400 <= response.status_code < 500, (label, response.status_code, response.text[:300])
        assert_error(response, response.status_code)


def test_a_streamed_body_over_the_limit_is_cut_off_with_413(client: TestClient, tokens: Tokens) -> None:
    def chunks() -> Any:
        for _ in range(40):
            yield b" " * 10_000  # 400 KB of whitespace, sent without a Content-Length
        yield b"{}"

    response = client.post("/v1/match", content=chunks(), headers={**bearer(tokens.staff),
                                                                  "content-type": "application/json"})
    assert_error(response, 413, "payload_too_large")


@pytest.mark.parametrize(("error", "status", "code"), [
    ("IntegrityError", 409, "conflict"),
    ("DataError", 422, "invalid_value"),
    ("OperationalError", 503, "database_unavailable"),
])
def test_database_errors_map_to_clear_statuses(client: TestClient, tokens: Tokens, population: Population,
                                               monkeypatch: pytest.MonkeyPatch, error: str, status: int,
                                               code: str) -> None:
    import sqlalchemy.exc

    from service.store import audit as audit_store

    def fail(*_: Any, **__: Any) -> Any:
        raise getattr(sqlalchemy.exc, error)("INSERT INTO feedback …", {}, Exception("simulated"))

    monkeypatch.setattr(audit_store, "add_feedback", fail)
    response = client.post("/v1/feedback", json={"uscc": population.firm_a.uscc, "policy_id": UNION_FEE,
                                                  "kind": "viewed"}, headers=bearer(tokens.firm_a))
    assert_error(response, status, code)
    assert "simulated" not in response.text and "INSERT" not in response.text
