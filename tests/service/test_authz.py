"""Authorization, generated from ``app.routes``: a new route is covered without editing this file.

For every route × method:
- anonymous callers get 401 unless the route is on the public allow-list (and the allow-list is
  exactly the set of routes that ask for no sign-in);
- revoked and expired tokens get 401;
- a route that takes a USCC or an id, called with another tenant's token, gets 403/404 and no byte of
  the other firm's data — while the rightful caller gets 2xx with the very same request, so the
  refusal is about who asks, not about a malformed request;
- staff cannot do admin actions, enterprises cannot do staff actions (403).

The request for each route is built from its signature (path, query and body parameters); a route
whose parameters the builder does not know fails loudly, asking to be taught, rather than being skipped.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel
from sqlmodel import Session

from policies.schema import Policy
from service.bootstrap import ServiceState
from service.http.app import create_app
from service.http.deps import require_admin, require_signed_in, require_staff
from service.settings import Settings
from service.store.catalog import add_draft, set_status
from tests.service.conftest import Firm, Population, Tokens, bearer, policy_body

#: The only (method, path) pairs an anonymous caller may use.
PUBLIC = {
    ("POST", "/v1/match"),
    ("GET", "/v1/policies"),
    ("GET", "/v1/policies/search"),
    ("GET", "/v1/policies/{policy_id}"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
}
Role = Literal["anonymous", "signed_in", "staff", "admin"]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    role: Role
    path_params: tuple[str, ...]
    required_query: tuple[str, ...]
    body: Any  # the body annotation, or None

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def takes_uscc(self) -> bool:
        return "uscc" in self.path_params or _model_fields(self.body) >= {"uscc"}

    @property
    def takes_id(self) -> bool:
        return self.takes_uscc or bool(set(self.path_params) & {"policy_id", "version"})


def _model_fields(annotation: Any) -> set[str]:
    return set(annotation.model_fields) if isinstance(annotation, type) and issubclass(annotation, BaseModel) else set()


def _flatten(routes: list[Any]) -> list[Any]:
    """The routes of ``app.routes``, looking into included routers that recent FastAPI keeps lazily."""
    out = []
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        out.extend([ctx.original_route for ctx in contexts()] if contexts is not None else [route])
    return out


def _role(route: Any) -> Role:
    calls: set[Any] = set()

    def walk(dependant: Any) -> None:
        for dep in dependant.dependencies:
            calls.add(dep.call)
            walk(dep)

    walk(route.dependant)
    if require_admin in calls:
        return "admin"
    if require_staff in calls:
        return "staff"
    if require_signed_in in calls:
        return "signed_in"
    return "anonymous"


def endpoints(app: FastAPI) -> list[Endpoint]:
    found = []
    for route in _flatten(list(app.routes)):
        module = getattr(getattr(route, "endpoint", None), "__module__", None) or ""
        if module.startswith("service.http.console."):
            continue  # HTML pages signed in by session cookie, not bearer token: tests/console covers them
        for method in sorted((getattr(route, "methods", None) or set()) - {"HEAD", "OPTIONS"}):
            dependant = getattr(route, "dependant", None)
            if dependant is None:  # plain Starlette routes: /openapi.json, /docs
                found.append(Endpoint(method, route.path, "anonymous", (), (), None))
                continue
            body = route.body_field.field_info.annotation if route.body_field is not None else None
            found.append(Endpoint(
                method, route.path, _role(route),
                tuple(p.name for p in dependant.path_params),
                tuple(p.alias for p in dependant.query_params if p.field_info.is_required()),
                body,
            ))
    return found


# collected from a bare app (no lifespan, no database): the route table is all that is needed here
ENDPOINTS = endpoints(create_app(Settings(database_url="sqlite:///:memory:")))
BY_ID = [pytest.param(e, id=e.id) for e in ENDPOINTS]


# ---- building a well-formed request for any endpoint -------------------------------------------------
@dataclass
class Target:
    """What the request is about: a firm (its USCC, profile) and a sandbox policy."""

    firm: Firm
    policy_id: str
    draft_version: int


def build_request(e: Endpoint, t: Target) -> tuple[str, str, dict[str, Any], Any]:
    """(method, url, query, json body) of a well-formed call of ``e`` about ``t``."""
    values = {"uscc": t.firm.uscc, "policy_id": t.policy_id, "version": str(t.draft_version)}
    url = e.path
    for name in e.path_params:
        if name not in values:
            pytest.fail(f"{e.id}: the authz generator does not know path parameter '{name}' — teach build_request")
        url = url.replace("{" + name + "}", values[name])
    query: dict[str, Any] = {}
    for name in e.required_query:
        if name != "q":
            pytest.fail(f"{e.id}: the authz generator does not know query parameter '{name}'")
        query[name] = t.firm.profile["name"]  # searching for the firm: its data would show if allowed
    return e.method, url, query, _body(e, t)


def _body(e: Endpoint, t: Target) -> Any:
    annotation = e.body
    if annotation is None:
        return None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        known = {"uscc": t.firm.uscc, "policy_id": t.policy_id, "profile": t.firm.profile,
                 "outcome": "granted", "decided_on": "2026-01-15"}  # an outcome a department records
        body: dict[str, Any] = {}
        for name, field in annotation.model_fields.items():
            if name in known:
                body[name] = known[name]
            elif get_origin(field.annotation) is Literal:
                body[name] = get_args(field.annotation)[0]
            elif field.is_required():
                pytest.fail(f"{e.id}: the authz generator does not know body field '{name}'")
        return body
    if annotation is dict or get_origin(annotation) is dict:
        if "uscc" in e.path_params:
            return t.firm.profile
        if e.path.startswith("/v1/policies"):
            return policy_body(t.policy_id if "policy_id" in e.path_params else f"authz-new-{uuid.uuid4().hex[:10]}")
    pytest.fail(f"{e.id}: the authz generator does not know how to build a {annotation!r} body")


def call(client: TestClient, e: Endpoint, t: Target, token: str | None) -> Any:
    method, url, query, body = build_request(e, t)
    headers = bearer(token) if token else {}
    return client.request(method, url, params=query, json=body, headers=headers)


def firm_bytes(firm: Firm) -> list[str]:
    """Strings that identify the firm or come from its profile."""
    p = firm.profile
    return [s for s in (firm.uscc, firm.uscc.lower(), p["name"], p.get("business_scope"), p.get("needs")) if s]


def assert_error_body(response: Any) -> None:
    body = response.json()
    assert set(body) == {"code", "message", "field"} and body["message"], body


@pytest.fixture
def sandbox(state: ServiceState) -> Any:
    """A fresh policy of its own per test: version 1 published, version 2 a draft."""

    def make() -> str:
        pid = f"authz-{uuid.uuid4().hex[:10]}"
        rule = {"all": [{"field": "employees", "ge": 50}]}
        with Session(state.engine) as session:
            policy = Policy.model_validate({**policy_body(pid, rule), "version": 1})
            first = add_draft(session, policy=policy, author="authz")
            session.flush()
            set_status(session, row=first, status="published")
            add_draft(session, policy=policy, author="authz")
            session.commit()
        state.invalidate()  # published behind the app's back: the worker's catalog would lag freshness_seconds
        return pid

    return make


def _target(e: Endpoint, firm: Firm, sandbox: Any = None) -> Target:
    """About ``firm``; a sandbox policy of its own when the call may change a policy (publish, retire …),
    a published catalog policy otherwise."""
    needs_policy = bool(set(e.path_params) & {"policy_id", "version"}) or "policy_id" in _model_fields(e.body)
    return Target(firm, sandbox() if needs_policy and sandbox else "union-fee-refund-small-micro", 2)


def _rightful(e: Endpoint, tokens: Tokens) -> str | None:
    """Who may make ``e``'s call about firm A."""
    return {"anonymous": None, "signed_in": tokens.firm_a, "staff": tokens.staff, "admin": tokens.admin}[e.role]


# ---- the tests -----------------------------------------------------------------------------------------
def test_the_public_allow_list_is_exactly_the_routes_without_sign_in() -> None:
    public = {(e.method, e.path) for e in ENDPOINTS if e.role == "anonymous"}
    assert public == PUBLIC, ("routes open to anonymous callers differ from the allow-list", public ^ PUBLIC)
    assert len(ENDPOINTS) >= 19


@pytest.mark.parametrize("e", BY_ID)
def test_anonymous_callers(client: TestClient, population: Population, tokens: Tokens, fresh_limiter: None,
                           e: Endpoint) -> None:
    t = _target(e, population.firm_a)
    response = call(client, e, t, None)
    if (e.method, e.path) in PUBLIC:
        assert response.status_code < 400, response.text[:300]
        return
    assert response.status_code == 401, response.text[:300]
    assert_error_body(response)
    assert response.json()["code"] == "unauthorized"
    for text in firm_bytes(population.firm_a):
        assert text not in response.text


@pytest.mark.parametrize("e", [p for p in BY_ID if p.values[0].path.startswith("/v1/")])
@pytest.mark.parametrize("which", ["revoked", "expired", "expired_enterprise"])
def test_revoked_and_expired_tokens(client: TestClient, population: Population, tokens: Tokens, e: Endpoint,
                                    which: str) -> None:
    response = call(client, e, _target(e, population.firm_a), getattr(tokens, which))
    assert response.status_code == 401, response.text[:300]
    assert_error_body(response)
    for text in firm_bytes(population.firm_a):
        assert text not in response.text


@pytest.mark.parametrize("e", [p for p in BY_ID if p.values[0].takes_id])
def test_another_tenant_gets_nothing(client: TestClient, population: Population, tokens: Tokens, sandbox: Any,
                                     e: Endpoint) -> None:
    """Firm B's token asking about firm A: 403/404, not a byte of A's data; firm A (or the staff/admin
    the route is for) gets 2xx with the same request."""
    a = population.firm_a
    target = _target(e, a, sandbox)
    intruder = call(client, e, target, tokens.firm_b)
    for text in firm_bytes(a):
        assert text not in intruder.text, (e.id, text)
    if (e.method, e.path) in PUBLIC:
        assert intruder.status_code < 400  # public data (a published policy): nothing of A's in it
    else:
        assert intruder.status_code in (403, 404), intruder.text[:300]
        assert_error_body(intruder)
    rightful = call(client, e, target, _rightful(e, tokens))
    assert 200 <= rightful.status_code < 300, (e.id, rightful.status_code, rightful.text[:300])


@pytest.mark.parametrize("e", [p for p in BY_ID if p.values[0].role in ("staff", "admin")])
def test_roles_below_the_route_get_403(client: TestClient, population: Population, tokens: Tokens, sandbox: Any,
                                       e: Endpoint) -> None:
    below = [tokens.firm_a, tokens.firm_b] + ([tokens.staff] if e.role == "admin" else [])
    target = _target(e, population.firm_a, sandbox)
    for token in below:
        response = call(client, e, target, token)
        assert response.status_code == 403, (e.id, response.status_code, response.text[:300])
        assert_error_body(response)
        assert "权限" in response.json()["message"] or "工作人员" in response.json()["message"]
        for text in firm_bytes(population.firm_a):
            assert text not in response.text
    allowed = call(client, e, target, _rightful(e, tokens))
    assert 200 <= allowed.status_code < 300, (e.id, allowed.status_code, allowed.text[:300])
