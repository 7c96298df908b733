"""The service's per-worker caches never answer with something stale beyond what the settings allow.

- packages are keyed by content (profile hash, catalog revision, date, query, cut): a changed profile
  or a published catalog change is a different key, so the cached answer is always the computed one;
- a token revoked by another process is refused once ``freshness_seconds`` have passed (at once when
  it is 0), and at once by the worker that was told (``invalidate``);
- the catalog revision is re-read after ``freshness_seconds``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from profiles.features import derive
from profiles.model import parse_profile
from service.bootstrap import PackageCache, ServiceState
from service.db.tables import utcnow
from service.http.app import create_app
from service.store.catalog import _bump_catalog, catalog_revision
from service.store.enterprises import get_enterprise
from service.store.tokens import create_token, revoke_token
from service.store.values import hash_token
from tests.service.conftest import Population, Tokens, bearer, make_uscc, sample


def test_cached_package_equals_the_freshly_computed_one(client: TestClient, state: ServiceState, tokens: Tokens,
                                                        population: Population) -> None:
    firm = population.firm_a
    url = f"/v1/enterprises/{firm.uscc}/package"
    params = {"as_of": "2024-06-01", "query": "贷款"}
    first = client.get(url, params=params, headers=bearer(tokens.firm_a))
    again = client.get(url, params=params, headers=bearer(tokens.firm_a))
    assert first.status_code == again.status_code == 200
    assert first.content == again.content
    with Session(state.engine) as session:
        row = get_enterprise(session, uscc=firm.uscc)
        assert row is not None
        fresh = state.matcher(session).match(derive(parse_profile(row.profile), dt.date(2024, 6, 1)), query="贷款")
    assert json.loads(again.content)["package"] == fresh.model_dump(mode="json")["package"]
    # the cut and the query are part of the key
    top2 = client.get(url, params={**params, "top": 2}, headers=bearer(tokens.firm_a)).json()
    assert [e["policy_id"] for e in top2["package"]] == [e["policy_id"] for e in first.json()["package"][:2]]


def test_a_changed_profile_is_never_answered_from_the_cache(client: TestClient) -> None:
    uscc = make_uscc(7701)
    with Session(client.app.state.service.engine) as session:  # type: ignore[attr-defined]
        secret, _ = create_token(session, role="enterprise", label="缓存测试", uscc=uscc)
        session.commit()
    profile = sample(0) | {"uscc": uscc, "name": "缓存测试企业（合成）", "employees": 86}
    assert client.put(f"/v1/enterprises/{uscc}", json=profile, headers=bearer(secret)).status_code == 200
    url = f"/v1/enterprises/{uscc}/package"
    small = client.get(url, params={"as_of": "2024-06-01"}, headers=bearer(secret)).json()
    big = profile | {"employees": 5000, "annual_revenue_wan": 900000, "total_assets_wan": 900000}
    assert client.put(f"/v1/enterprises/{uscc}", json=big, headers=bearer(secret)).status_code == 200
    large = client.get(url, params={"as_of": "2024-06-01"}, headers=bearer(secret)).json()
    assert small["enterprise"]["size"] != large["enterprise"]["size"] == "large"
    assert {e["policy_id"] for e in small["package"]} != {e["policy_id"] for e in large["package"]}


@pytest.fixture
def strict_app(settings: Any, state: ServiceState) -> Any:
    """An app over the same database whose worker re-reads tokens and the catalog on every request."""
    strict = ServiceState(settings.model_copy(update={"freshness_seconds": 0.0}), state.engine, state.embedder)
    with TestClient(create_app(strict.settings, strict)) as client:
        yield client, strict


def _new_staff_token(engine: Any) -> tuple[str, int]:
    with Session(engine) as session:
        secret, row = create_token(session, role="staff", label="缓存测试坐席")
        session.commit()
        assert row.id is not None
        return secret, row.id


def _revoke(engine: Any, token_id: int) -> None:
    with Session(engine) as session:
        assert revoke_token(session, token_id=token_id)
        session.commit()


def test_revocation_by_another_process_is_seen_at_once_when_freshness_is_zero(strict_app: Any,
                                                                              population: Population) -> None:
    client, strict = strict_app
    secret, token_id = _new_staff_token(strict.engine)
    url = f"/v1/enterprises/{population.firm_a.uscc}"
    assert client.get(url, headers=bearer(secret)).status_code == 200
    _revoke(strict.engine, token_id)  # as `policyfit tokens revoke` would, behind the worker's back
    assert client.get(url, headers=bearer(secret)).status_code == 401


def test_revocation_is_seen_after_the_freshness_window(client: TestClient, state: ServiceState,
                                                       population: Population) -> None:
    secret, token_id = _new_staff_token(state.engine)
    url = f"/v1/enterprises/{population.firm_a.uscc}"
    assert client.get(url, headers=bearer(secret)).status_code == 200
    _revoke(state.engine, token_id)
    # inside the window the worker may still trust what it read; past it (simulated by forgetting
    # when it last checked) it must ask again and refuse
    key = hash_token(secret)
    checked, principal = state._tokens[key]
    state._tokens[key] = (checked - state.settings.freshness_seconds - 1, principal)
    assert client.get(url, headers=bearer(secret)).status_code == 401


def test_an_expiry_is_checked_on_every_request_even_when_cached(client: TestClient, state: ServiceState,
                                                                population: Population) -> None:
    secret, token_id = _new_staff_token(state.engine)
    url = f"/v1/enterprises/{population.firm_a.uscc}"
    assert client.get(url, headers=bearer(secret)).status_code == 200
    key = hash_token(secret)
    checked, principal = state._tokens[key]
    assert principal is not None
    just_expired = dataclasses.replace(principal, expires_at=utcnow() - dt.timedelta(seconds=1))
    state._tokens[key] = (checked, just_expired)  # it just expired
    assert client.get(url, headers=bearer(secret)).status_code == 401


def test_catalog_revision_is_reread_after_the_window(state: ServiceState) -> None:
    with Session(state.engine) as session:
        # an earlier publish that no request has rebuilt the matcher for yet leaves the database's revision
        # ahead of the one this worker built with; the worker catches up on its next matcher() call
        state.matcher(session)
        _bump_catalog(session)
        session.commit()
        state.invalidate()
        state.matcher(session)
        revision = state.catalog_revision(session)
        assert revision == catalog_revision(session)
        assert state.catalog_revision(session) == revision  # inside the window: trusted, no database read
        state.invalidate()
        assert state.catalog_revision(session) == catalog_revision(session)


def test_package_cache_is_a_bounded_lru() -> None:
    cache = PackageCache(2)
    calls: list[str] = []

    def compute(value: str) -> Any:
        return lambda: calls.append(value) or value.encode()

    assert cache.get_or_compute(("a",), compute("a")) == b"a"
    assert cache.get_or_compute(("b",), compute("b")) == b"b"
    assert cache.get_or_compute(("a",), compute("a")) == b"a"  # hit; "b" is now the oldest
    assert cache.get_or_compute(("c",), compute("c")) == b"c"  # evicts "b"
    assert cache.get_or_compute(("b",), compute("b")) == b"b"  # computed again
    assert calls == ["a", "b", "c", "b"]
    off = PackageCache(0)
    assert off.get_or_compute(("a",), compute("x")) == b"x"
    assert off.get_or_compute(("a",), compute("y")) == b"y"  # size 0: never cached
    assert calls[-2:] == ["x", "y"]
