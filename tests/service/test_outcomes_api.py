"""``POST /v1/outcomes`` and ``GET /v1/policies/{id}/uptake`` (staff, admin): roles, the Chinese error body naming
the field (the same rules as a file's row), idempotence, and the funnel's counts moving with what is recorded —
SQLite, and PostgreSQL when ``POLICYFIT_TEST_DATABASE_URL`` is set."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from service.app.funnel import STAGES
from service.bootstrap import ServiceState
from service.db.bulk import table_of
from service.db.tables import MatchSnapshot, Outbox, PushItem
from tests.service.conftest import Population, Tokens, bearer, make_uscc, policy_body

POLICY = "guarantee-fee-cap-small-micro-agri"
TODAY = dt.date.today()


def fresh_uscc() -> str:
    return make_uscc(uuid.uuid4().int % 31**9, prefix="91320313")


def body(**changes: Any) -> dict[str, Any]:
    return {"uscc": fresh_uscc(), "policy_id": POLICY, "outcome": "granted", "amount_wan": 8.5,
            "decided_on": "2024-05-20", "department": "市财政局", **changes}


def assert_error(response: Any, status: int, code: str, field: str | None = None, words: str = "") -> None:
    assert response.status_code == status, response.text
    data = response.json()
    assert data["code"] == code and (field is None or data["field"] == field), data
    assert words in data["message"], data


def test_post_outcome_roles_and_idempotence(client: TestClient, tokens: Tokens) -> None:
    item = body()
    assert_error(client.post("/v1/outcomes", json=item), 401, "unauthorized")
    assert_error(client.post("/v1/outcomes", json=item, headers=bearer(tokens.firm_a)), 403, "forbidden")
    assert_error(client.post("/v1/outcomes", json=item, headers=bearer(tokens.revoked)), 401, "unauthorized")
    created = client.post("/v1/outcomes", json=item, headers=bearer(tokens.staff))
    assert created.status_code == 201, created.text
    out = created.json()
    assert (out["result"], out["source"], out["outcome_label"], out["amount_wan"]) == ("created", "api", "已兑现", 8.5)
    again = client.post("/v1/outcomes", json=item, headers=bearer(tokens.admin))
    assert again.status_code == 200 and again.json()["result"] == "unchanged"
    assert again.json()["recorded_at"] == out["recorded_at"]
    fixed = client.post("/v1/outcomes", json={**item, "amount_wan": 9}, headers=bearer(tokens.admin))
    assert fixed.status_code == 200 and fixed.json()["result"] == "updated" and fixed.json()["amount_wan"] == 9


@pytest.mark.parametrize(("change", "code", "field", "words"), [
    ({"uscc": "91320313MA1N5KQX2Y"}, "invalid_uscc", "uscc", "校验位"),
    ({"policy_id": "no-such-policy"}, "invalid_value", "policy_id", "未找到政策"),
    ({"policy_id": "enterprise-policy-application-guide"}, "invalid_value", "policy_id", "不是企业可申请享受的政策"),
    ({"outcome": "approved"}, "invalid_value", "outcome", "granted（已兑现）"),
    ({"decided_on": "2024-5-20"}, "invalid_value", "decided_on", "YYYY-MM-DD"),
    ({"decided_on": "tomorrow"}, "invalid_value", "decided_on", "不能晚于"),
    ({"amount_wan": -1}, "invalid_value", "amount_wan", "不能小于0"),
    ({"amount_wan": "8.5"}, "invalid_request", "amount_wan", ""),
    ({"decided_on": None}, "invalid_request", "decided_on", ""),
    ({"grant": 1}, "invalid_request", "grant", ""),
])
def test_post_outcome_errors_name_the_field(client: TestClient, tokens: Tokens, change: dict[str, Any], code: str,
                                            field: str, words: str) -> None:
    if change.get("decided_on") == "tomorrow":  # read now: a run may pass midnight
        change = {"decided_on": (dt.date.today() + dt.timedelta(days=1)).isoformat()}
    response = client.post("/v1/outcomes", json=body(**change), headers=bearer(tokens.staff))
    assert_error(response, 422, code, field, words)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in response.json()["message"])  # Chinese


def uptake(client: TestClient, token: str, policy: str = POLICY) -> dict[str, Any]:
    response = client.get(f"/v1/policies/{policy}/uptake", headers=bearer(token))
    assert response.status_code == 200, response.text
    return response.json()


def test_uptake_roles_and_refusals(client: TestClient, tokens: Tokens) -> None:
    assert_error(client.get(f"/v1/policies/{POLICY}/uptake"), 401, "unauthorized")
    assert_error(client.get(f"/v1/policies/{POLICY}/uptake", headers=bearer(tokens.firm_a)), 403, "forbidden")
    assert_error(client.get("/v1/policies/no-such-policy/uptake", headers=bearer(tokens.staff)), 404, "not_found")
    assert_error(client.get("/v1/policies/enterprise-policy-application-guide/uptake", headers=bearer(tokens.staff)),
                 409, "not_a_policy")
    draft = f"outcome-draft-{uuid.uuid4().hex[:8]}"
    rule = {"field": "employees", "ge": 1}
    created = client.post("/v1/policies", json=policy_body(draft, rule), headers=bearer(tokens.admin))
    assert created.status_code == 201, created.text
    assert_error(client.get(f"/v1/policies/{draft}/uptake", headers=bearer(tokens.admin)), 404, "not_found")
    assert_error(client.post("/v1/outcomes", json=body(policy_id=draft), headers=bearer(tokens.staff)), 422,
                 "invalid_value", "policy_id")
    data = uptake(client, tokens.admin)
    assert list(data)[:10] == ["policy_id", *STAGES, "by_region", "by_size"]
    assert data["period_days"] == 365 and data["as_of"] in (TODAY.isoformat(), dt.date.today().isoformat())


def test_uptake_counts_move_with_what_is_recorded(client: TestClient, state: ServiceState, tokens: Tokens,
                                                  population: Population) -> None:
    before = uptake(client, tokens.staff)
    f1, f2, f3, f4 = population.synthetic[40:44]
    now = dt.datetime.now(dt.UTC)
    with state.engine.begin() as conn:  # what the nightly batch and the deliverer leave behind
        conn.execute(sa.delete(table_of(MatchSnapshot)).where(table_of(MatchSnapshot).c.uscc.in_(
            [f.uscc for f in (f1, f2, f3, f4)]), table_of(MatchSnapshot).c.policy_id == POLICY))
        conn.execute(sa.insert(table_of(MatchSnapshot)), [
            {"uscc": f.uscc, "policy_id": POLICY, "policy_version": 2, "status": 1, "score": 0.5, "computed_at": now}
            for f in (f1, f2, f3, f4)])
        key = f"pkg:{f1.uscc}:{uuid.uuid4().hex[:6]}"
        outbox = conn.execute(sa.insert(table_of(Outbox)).values(
            idempotency_key=key, uscc=f1.uscc, payload={}, status="delivered", attempts=1, next_attempt_at=now,
            created_at=now, delivered_at=now).returning(table_of(Outbox).c.id)).scalar_one()
        conn.execute(sa.insert(table_of(PushItem)).values(
            idempotency_key=f"{f1.uscc}:{POLICY}:{uuid.uuid4().hex[:6]}", uscc=f1.uscc, policy_id=POLICY,
            policy_version=2, outbox_id=outbox, created_at=now))
    staff = bearer(tokens.staff)
    assert client.post("/v1/feedback", json={"uscc": f1.uscc, "policy_id": POLICY, "kind": "viewed"},
                       headers=staff).status_code == 201
    for firm, outcome in ((f2, "granted"), (f3, "applied")):
        assert client.post("/v1/outcomes", json=body(uscc=firm.uscc, outcome=outcome,
                                                     decided_on=dt.date.today().isoformat()),
                                   headers=staff).status_code == 201
    after = uptake(client, tokens.staff)
    delta = {k: after[k] - before[k] for k in STAGES}
    assert delta == {"eligible": 4, "pushed": 1, "viewed": 1, "applied": 1, "granted": 1, "refused": 0,
                     "not_yet_granted": 3}  # f1, f3 (waiting for a decision), f4
    expected_regions: dict[str, int] = {}
    for firm in (f1, f2, f3, f4):
        region = firm.profile.get("region") or "未知"
        expected_regions[region] = expected_regions.get(region, 0) + 1
    for region, n in expected_regions.items():
        was = before["by_region"].get(region, {}).get("eligible", 0)
        assert after["by_region"][region]["eligible"] - was == n
    for stage in STAGES:
        assert sum(v[stage] for v in after["by_size"].values()) == after[stage]
        assert sum(v[stage] for v in after["by_region"].values()) == after[stage]
