"""The JSON API, part 2: the catalog (list, detail, search, reverse direction), the admin lifecycle and
feedback. Part 1 (operations, match, enterprises, tokens, hostile input) is tests/service/test_api.py."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from service.db.tables import Feedback, PolicyVersion
from tests.service.conftest import Population, Tokens, bearer, policy_body
from tests.service.test_api import UNION_FEE, _now, assert_error, audit_rows, new_id


# ---- policies ---------------------------------------------------------------------------------------
def test_policy_list_and_detail_with_history(client: TestClient, tokens: Tokens) -> None:
    listing = client.get("/v1/policies").json()
    assert len(listing) >= 100 and all(p["status"] == "published" for p in listing)
    assert [p["policy_id"] for p in listing] == sorted(p["policy_id"] for p in listing)
    union = next(p for p in listing if p["policy_id"] == UNION_FEE)
    assert union["source_task"] == 61 and union["category"] == "tax_fee"
    detail = client.get(f"/v1/policies/{UNION_FEE}").json()
    assert detail["current"]["id"] == UNION_FEE and detail["current"]["status"] == "published"
    assert detail["versions"][0]["version"] == 2 and "data" not in detail["versions"][0]  # issue 10 correction
    staff = client.get(f"/v1/policies/{UNION_FEE}", headers=bearer(tokens.staff)).json()
    assert staff["versions"][0]["data"]["id"] == UNION_FEE
    assert_error(client.get("/v1/policies/no-such-policy"), 404, "not_found")


def test_policy_search_ranks_by_relevance(client: TestClient) -> None:
    r = client.get("/v1/policies/search", params={"q": "工会经费返还", "top": 5})
    assert r.status_code == 200
    results = r.json()["results"]
    assert 1 <= len(results) <= 5 and results[0]["policy_id"] == UNION_FEE
    assert [x["score"] for x in results] == sorted((x["score"] for x in results), reverse=True)
    assert_error(client.get("/v1/policies/search", params={"q": "   "}), 422, "invalid_query", "q")
    assert_error(client.get("/v1/policies/search", params={"q": "贷款", "top": 0}), 422, "invalid_request", "top")
    assert_error(client.get("/v1/policies/search"), 422, "invalid_request", "q")


def test_policy_search_says_no_match_with_the_channels(client: TestClient) -> None:
    body = client.get("/v1/policies/search", params={"q": "我想移民加拿大"}).json()
    assert body["results"] == [] and body["no_match"] is True
    assert [c["name"] for c in body["fallback"]["channels"]] == ["“一企来”企业服务热线", "12345政务热线"]
    assert body["fallback"]["message"].startswith("未找到对应政策")
    found = client.get("/v1/policies/search", params={"q": "一个月被检查好几回，能不能合并检查"}).json()
    assert found["no_match"] is False and found["results"][0]["kind"] in ("policy", "commitment", "plan_work")
    assert {"kind", "lead_departments", "source_task", "source_measure"} <= set(found["results"][0])
    assert 101 in {r["source_task"] for r in found["results"][:3]}


def test_reverse_direction_ranks_paginates_and_counts(client: TestClient, db: Session, tokens: Tokens,
                                                      population: Population) -> None:
    url = f"/v1/policies/{UNION_FEE}/enterprises"
    since = _now()
    first = client.get(url, params={"size": 10, "as_of": "2024-06-01"}, headers=bearer(tokens.staff))
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["eligible"] > 20 and body["version"] == 2 and body["page"] == 1 and body["size"] == 10
    assert sum(body["by_region"].values()) == body["eligible"] == sum(body["by_size"].values())
    assert set(body["by_size"]) <= {"small", "micro"}  # the rule: small and micro enterprises only
    second = client.get(url, params={"size": 10, "page": 2, "as_of": "2024-06-01"}, headers=bearer(tokens.staff)).json()
    both = client.get(url, params={"size": 20, "as_of": "2024-06-01"}, headers=bearer(tokens.staff)).json()
    assert [i["uscc"] for i in body["items"]] + [i["uscc"] for i in second["items"]] == [i["uscc"] for i in both["items"]]
    sims = [i["similarity"] for i in both["items"]]
    assert sims == sorted(sims, reverse=True)
    # every listed firm is eligible for the policy according to its own package
    item = body["items"][0]
    package = client.get(f"/v1/enterprises/{item['uscc']}/package", params={"as_of": "2024-06-01"},
                         headers=bearer(tokens.staff)).json()
    assert UNION_FEE in [e["policy_id"] for e in package["package"]]
    assert all(i["size"] in ("small", "micro") for i in both["items"])
    beyond = client.get(url, params={"size": 200, "page": 1000}, headers=bearer(tokens.staff)).json()
    assert beyond["items"] == [] and beyond["eligible"] > 0
    # the listing is audited: who saw which firms
    rows = audit_rows(db, label=tokens.staff_label, since=since)
    assert {i["uscc"] for i in body["items"]} <= {r.uscc for r in rows}
    assert_error(client.get(url, headers=bearer(tokens.firm_a)), 403, "forbidden")
    assert_error(client.get(url), 401, "unauthorized")
    assert_error(client.get("/v1/policies/no-such-policy/enterprises", headers=bearer(tokens.staff)), 404)
    # a commitment (supply reliability, task 24) is findable but reaches no firm: said so, not a 404
    listed = {e["policy_id"]: e for e in client.get("/v1/policies").json()}
    commitment = next(pid for pid, e in listed.items() if e["kind"] == "commitment")
    answer = client.get(f"/v1/policies/{commitment}/enterprises", headers=bearer(tokens.staff))
    assert_error(answer, 409, "not_a_policy")
    assert "不是企业申请享受的政策" in answer.json()["message"]
    assert_error(client.get(url, params={"size": 0}, headers=bearer(tokens.staff)), 422, field="size")


# ---- admin: create, update, preview, publish, retire -------------------------------------------------------
def test_admin_lifecycle_create_preview_publish_update_retire(client: TestClient, db: Session, tokens: Tokens,
                                                             population: Population) -> None:
    admin = bearer(tokens.admin)
    pid = new_id("lifecycle")
    firm = population.firm_a  # 86 employees
    rule_v1 = {"all": [{"field": "employees", "ge": 50}, {"field": "entity_type", "in": ["enterprise"]}]}
    created = client.post("/v1/policies", json=policy_body(pid, rule_v1), headers=admin)
    assert created.status_code == 201, created.text
    assert created.json() == {"policy_id": pid, "version": 1, "status": "draft"}
    assert_error(client.post("/v1/policies", json=policy_body(pid, rule_v1), headers=admin), 409, "exists", "id")
    # a draft is invisible to the public and to the matcher
    assert_error(client.get(f"/v1/policies/{pid}"), 404)
    assert client.get(f"/v1/policies/{pid}", headers=bearer(tokens.staff)).json()["current"] is None
    before = client.post("/v1/match", json={"profile": firm.profile}, headers=admin).json()
    assert pid not in [e["policy_id"] for e in before["package"]]

    preview = client.post(f"/v1/policies/{pid}/preview", params={"as_of": "2024-06-01"}, headers=admin)
    assert preview.status_code == 200, preview.text
    p = preview.json()
    assert p["draft_version"] == 1 and p["published_version"] is None
    assert p["published"] == {"eligible": 0, "possibly_eligible": 0}
    assert p["draft"]["eligible"] > 0 and p["newly_reached"] == p["draft"]["eligible"]
    assert p["no_longer_reached"] == 0 and len(p["sample_newly_reached"]) == min(20, p["newly_reached"])
    assert all(s["region"] is None or isinstance(s["region"], str) for s in p["sample_newly_reached"])

    published = client.post(f"/v1/policies/{pid}/versions/1/publish", headers=admin)
    assert published.status_code == 200 and published.json()["status"] == "published"
    assert_error(client.post(f"/v1/policies/{pid}/versions/1/publish", headers=admin), 409, "already_published")
    after = client.post("/v1/match", json={"profile": firm.profile}, headers=admin).json()
    assert after["catalog_version"] != before["catalog_version"]  # the catalog revision moved: matcher rebuilt
    assert pid in [e["policy_id"] for e in after["package"]]
    assert pid in [x["policy_id"] for x in client.get("/v1/policies").json()]
    reach = client.get(f"/v1/policies/{pid}/enterprises", params={"as_of": "2024-06-01"},
                       headers=bearer(tokens.staff)).json()
    assert reach["eligible"] == p["draft"]["eligible"] and reach["version"] == 1

    # an update is a new draft; the published version stays in force until the draft is published
    rule_v2 = {"all": [{"field": "employees", "ge": 5_000_000}]}
    update = client.put(f"/v1/policies/{pid}", json=policy_body(pid, rule_v2), headers=admin)
    assert update.status_code == 201 and update.json() == {"policy_id": pid, "version": 2, "status": "draft"}
    still = client.post("/v1/match", json={"profile": firm.profile}, headers=admin).json()
    assert pid in [e["policy_id"] for e in still["package"]]
    p2 = client.post(f"/v1/policies/{pid}/preview", params={"as_of": "2024-06-01"}, headers=admin).json()
    assert p2["draft_version"] == 2 and p2["published_version"] == 1
    assert p2["draft"]["eligible"] == 0 and p2["no_longer_reached"] == p["draft"]["eligible"]
    assert p2["published"]["eligible"] == p["draft"]["eligible"]
    assert client.post(f"/v1/policies/{pid}/versions/2/publish", headers=admin).status_code == 200
    v2 = client.post("/v1/match", json={"profile": firm.profile}, headers=admin).json()
    assert pid not in [e["policy_id"] for e in v2["package"]]
    # issue 10: 86 → 5,000,000 staff is no gap within the firm's reach, so no near miss either
    assert pid not in [e["policy_id"] for e in v2["near_misses"]]
    history = client.get(f"/v1/policies/{pid}").json()
    assert [(v["version"], v["status"]) for v in history["versions"]] == [(1, "retired"), (2, "published")]
    assert history["current"]["eligibility"] == rule_v2 and history["current"]["version"] == 2
    assert all(v["origin"] == "api" for v in history["versions"])
    authors = {r.created_by for r in db.exec(select(PolicyVersion).where(PolicyVersion.policy_id == pid))}
    assert authors == {tokens.admin_label}

    retired = client.post(f"/v1/policies/{pid}/retire", headers=admin)
    assert retired.status_code == 200 and retired.json() == {"policy_id": pid, "version": 2, "status": "retired"}
    assert pid not in [x["policy_id"] for x in client.get("/v1/policies").json()]
    gone = client.post("/v1/match", json={"profile": firm.profile}, headers=admin).json()
    assert pid not in {e["policy_id"] for part in ("package", "possibly_eligible", "near_misses") for e in gone[part]}
    assert_error(client.get(f"/v1/policies/{pid}/enterprises", headers=bearer(tokens.staff)), 404)
    assert_error(client.post(f"/v1/policies/{pid}/retire", headers=admin), 404, "not_found")
    assert client.get(f"/v1/policies/{pid}").json()["current"] is None


@pytest.mark.parametrize(("rule", "field", "words"), [
    ({"all": [{"field": "employes", "ge": 5}]}, "eligibility.all[0].field", "未知字段“employes”，是否应为“employees”？"),
    ({"all": [{"field": "size", "in": ["tiny"]}]}, "eligibility.all[0].in", "取值“tiny”不是字段“size”（企业规模）的可选值"),
    ({"any": []}, "eligibility.any", "“any”至少需要一条规则"),
    ({"all": [{"not": {"field": "employees", "lt": "many"}}]}, "eligibility.all[0].not.lt",
     "字段“employees”（从业人员）是数值字段，取值应为数字，实际为 “many”"),
    ("size is small", "eligibility", "规则"),
])
def test_rule_is_validated_on_write_naming_the_clause(client: TestClient, tokens: Tokens, rule: Any, field: str,
                                                      words: str) -> None:
    pid = new_id("badrule")
    body = assert_error(client.post("/v1/policies", json=policy_body(pid, rule), headers=bearer(tokens.admin)),
                        422, "invalid_rule", field)
    assert words in body["message"] and "规则错误" in body["message"]
    assert_error(client.get(f"/v1/policies/{pid}", headers=bearer(tokens.admin)), 404)


@pytest.mark.parametrize(("changes", "field"), [
    ({"category": "nonsense"}, "category"),
    ({"title": ""}, "title"),
    ({"lead_departments": []}, "lead_departments"),
    ({"source": {"document": "x", "section": "y"}}, "source"),
    ({"benefit": {"description": "x", "estimate": {"formula": "os.system('ls')", "assumption": "a"}}},
     "benefit.estimate.formula"),
    ({"id": "Not A Slug"}, "id"),
    ({"unexpected": 1}, "unexpected"),
])
def test_invalid_policy_is_refused_naming_the_field(client: TestClient, tokens: Tokens, changes: dict[str, Any],
                                                    field: str) -> None:
    body = policy_body(new_id("badpolicy")) | changes
    err = assert_error(client.post("/v1/policies", json=body, headers=bearer(tokens.admin)), 422, field=field)
    assert err["code"] in ("invalid_policy", "invalid_request")


def test_update_checks_the_id_and_existence(client: TestClient, tokens: Tokens) -> None:
    admin = bearer(tokens.admin)
    pid = new_id("upd")
    assert client.post("/v1/policies", json=policy_body(pid), headers=admin).status_code == 201
    assert_error(client.put(f"/v1/policies/{pid}", json=policy_body("other-id"), headers=admin), 422, "id_mismatch", "id")
    assert_error(client.put("/v1/policies/no-such-policy", json=policy_body("no-such-policy"), headers=admin), 404)
    body = policy_body(pid)
    del body["id"]  # the path names the policy
    assert client.put(f"/v1/policies/{pid}", json=body, headers=admin).json()["version"] == 2
    assert_error(client.post(f"/v1/policies/{pid}/versions/9/publish", headers=admin), 404, "not_found")
    assert_error(client.post(f"/v1/policies/{pid}/retire", headers=admin), 404, "not_found")  # nothing published


def test_staff_and_enterprises_cannot_do_admin_actions(client: TestClient, tokens: Tokens) -> None:
    pid = new_id("noadmin")
    for token in (tokens.staff, tokens.firm_a):
        h = bearer(token)
        for response in (
            client.post("/v1/policies", json=policy_body(pid), headers=h),
            client.put(f"/v1/policies/{UNION_FEE}", json=policy_body(UNION_FEE), headers=h),
            client.post(f"/v1/policies/{UNION_FEE}/preview", headers=h),
            client.post(f"/v1/policies/{UNION_FEE}/versions/1/publish", headers=h),
            client.post(f"/v1/policies/{UNION_FEE}/retire", headers=h),
        ):
            assert_error(response, 403, "forbidden")
    assert client.get(f"/v1/policies/{UNION_FEE}").json()["current"]["status"] == "published"


# ---- feedback ------------------------------------------------------------------------------------------
def test_feedback(client: TestClient, db: Session, tokens: Tokens, population: Population) -> None:
    a = population.firm_a
    r = client.post("/v1/feedback", json={"uscc": a.uscc, "policy_id": UNION_FEE, "kind": "applied",
                                          "note": "已提交材料"}, headers=bearer(tokens.firm_a))
    assert r.status_code == 201 and r.json()["kind"] == "applied"
    row = db.get(Feedback, r.json()["id"])
    assert row is not None and (row.uscc, row.role, row.policy_id, row.note) == (a.uscc, "enterprise", UNION_FEE, "已提交材料")
    assert_error(client.post("/v1/feedback", json={"uscc": a.uscc, "policy_id": "no-such", "kind": "viewed"},
                             headers=bearer(tokens.firm_a)), 404, "not_found", "policy_id")
    assert_error(client.post("/v1/feedback", json={"uscc": a.uscc, "policy_id": UNION_FEE, "kind": "liked"},
                             headers=bearer(tokens.firm_a)), 422, "invalid_request", "kind")
    assert_error(client.post("/v1/feedback", json={"uscc": a.uscc, "policy_id": UNION_FEE, "kind": "viewed"}), 401)
    since = _now()
    staff = client.post("/v1/feedback", json={"uscc": a.uscc, "policy_id": UNION_FEE, "kind": "not_relevant"},
                        headers=bearer(tokens.staff))
    assert staff.status_code == 201
    # (other tests may read firm A as staff within the same second: count this route's rows only)
    rows = audit_rows(db, label=tokens.staff_label, uscc=a.uscc, since=since)
    assert [(r.route, r.method) for r in rows if r.route == "/v1/feedback"] == [("/v1/feedback", "POST")]
