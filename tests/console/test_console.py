"""The console and the calculator without a browser: sessions, CSRF, audit, what-if, saving, the
plain-form calculator and its errors (TestClient against the app over a real database)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from urllib.parse import unquote

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from profiles.features import derive
from profiles.fields import FIELDS, PROFILE_FIELDS
from profiles.model import ProfileError, parse_profile
from service.bootstrap import ServiceState
from service.db.tables import ApiToken, AuditLog, Enterprise
from service.http.console.forms import NONE_OPTION, profile_from_form
from service.http.console.pages import ask_list
from service.http.console.routes import router as console_router
from service.http.console.session import SESSION_COOKIE
from service.store.enterprises import get_enterprise, upsert_enterprise
from service.store.tokens import create_token, revoke_token
from tests.console.conftest import csrf_of, sign_in
from tests.service.conftest import Population, Tokens, bearer, make_uscc, sample


def form_of(profile: dict[str, Any]) -> dict[str, Any]:
    """A profile as the console's form posts it (lists as repeated fields, [] as 以上均无)."""
    return {k: ([*v] or [NONE_OPTION]) if isinstance(v, list) else str(v) for k, v in profile.items()}


def audit_rows(state: ServiceState, **where: Any) -> list[AuditLog]:
    with Session(state.engine) as session:
        stmt = select(AuditLog)
        for key, value in where.items():
            stmt = stmt.where(getattr(AuditLog, key) == value)
        return list(session.exec(stmt.order_by(AuditLog.id)))


def stored(state: ServiceState, uscc: str) -> Enterprise | None:
    with Session(state.engine) as session:
        return get_enterprise(session, uscc=uscc)


def enterprise_count(state: ServiceState) -> int:
    with Session(state.engine) as session:
        return int(session.exec(select(func.count()).select_from(Enterprise)).one())


def new_firm(state: ServiceState, seed: int, **changes: Any) -> dict[str, Any]:
    """A firm of its own for a test that writes (a copy of sample 0 under a new USCC)."""
    profile = {**sample(0), "uscc": make_uscc(seed, "91320311"), "name": f"控制台测试企业{seed}有限公司", **changes}
    with Session(state.engine) as session:
        upsert_enterprise(session, profile=parse_profile(profile))
        session.commit()
    return profile


def titles(result: dict[str, Any]) -> list[str]:
    return [e["title"] for e in result["package"]]


# ---- signing in and out ---------------------------------------------------------------------
def test_pages_need_a_session_get_redirects_and_post_is_refused(web: TestClient, population: Population,
                                                               state: ServiceState) -> None:
    uscc = population.firm_a.uscc
    before = len(audit_rows(state, uscc=uscc))
    page = web.get(f"/console/enterprises/{uscc}", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == f"/console/login?next=%2Fconsole%2Fenterprises%2F{uscc}"
    post = web.post(f"/console/enterprises/{uscc}/whatif", data={"employees": "5"}, follow_redirects=False)
    assert post.status_code == 401
    assert "请先登录工作台" in post.text
    assert web.get("/console/policies?q=贷款", follow_redirects=False).status_code == 303
    assert len(audit_rows(state, uscc=uscc)) == before


#: The console's only pages open without a staff session (generated check below covers the rest).
OPEN_PAGES = {("GET", "/console/login"), ("POST", "/console/login"), ("GET", "/calculator"), ("POST", "/calculator")}
GUARDED = sorted({(m, r.path) for r in console_router.routes for m in getattr(r, "methods", set()) - {"HEAD"}}
                 - OPEN_PAGES)


@pytest.mark.parametrize(("method", "path"), GUARDED, ids=[f"{m} {p}" for m, p in GUARDED])
def test_every_other_console_route_needs_a_staff_session(web: TestClient, tokens: Tokens, population: Population,
                                                         state: ServiceState, method: str, path: str) -> None:
    firm = population.firm_a
    url = path.replace("{uscc}", firm.uscc).replace("{policy_id}", "union-fee-refund-small-micro")
    data = {**form_of(firm.profile), "csrf": "x"} if method == "POST" else None
    before = len(audit_rows(state, uscc=firm.uscc))
    # nobody; the API's bearer tokens (no console session); tokens put into the cookie (a cookie holds a
    # session id, never a token: not even a valid staff or admin token opens the console that way)
    for headers, cookie in [({}, None), (bearer(tokens.staff), None), (bearer(tokens.admin), None),
                            ({}, tokens.firm_a), ({}, tokens.revoked), ({}, tokens.expired),
                            ({}, tokens.staff), ({}, tokens.admin)]:
        web.cookies.clear()
        if cookie:
            web.cookies.set(SESSION_COOKIE, cookie, path="/console")
        response = web.request(method, url, headers=headers, data=data, follow_redirects=False)
        if method == "GET":
            assert response.status_code == 303, (headers, cookie)
            assert response.headers["location"].startswith("/console/login?next=")
        else:
            assert response.status_code == 401, (headers, cookie)
        assert firm.profile["name"] not in response.text
    assert len(audit_rows(state, uscc=firm.uscc)) == before


def test_sign_in_sets_an_http_only_strict_cookie_scoped_to_the_console(web: TestClient, tokens: Tokens) -> None:
    page = web.get("/console/login")
    response = web.post("/console/login", data={"csrf": csrf_of(page.text), "token": tokens.staff,
                                                "next": "/console/policies?q=贷款"}, follow_redirects=False)
    assert response.status_code == 303
    assert unquote(response.headers["location"]) == "/console/policies?q=贷款"
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(f"{SESSION_COOKIE}="))
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "samesite=strict", "path=/console"} <= flags
    home = web.get("/console")
    assert home.status_code == 200 and "测试坐席01" in home.text
    assert tokens.staff not in home.text  # the token never appears in a page


def test_sign_in_never_redirects_off_the_console(web: TestClient, tokens: Tokens) -> None:
    for target in ("https://evil.example/", "//evil.example/console", "/v1/policies"):
        web.cookies.clear()
        page = web.get("/console/login")
        response = web.post("/console/login", data={"csrf": csrf_of(page.text), "token": tokens.staff,
                                                    "next": target}, follow_redirects=False)
        assert response.headers["location"] == "/console", target


@pytest.mark.parametrize("which", ["wrong", "revoked", "expired"])
def test_a_bad_token_is_refused(web: TestClient, tokens: Tokens, which: str) -> None:
    token = {"wrong": "pf_sta_not-a-token", "revoked": tokens.revoked, "expired": tokens.expired}[which]
    page = web.get("/console/login")
    response = web.post("/console/login", data={"csrf": csrf_of(page.text), "token": token, "next": ""},
                        follow_redirects=False)
    assert response.status_code == 401
    assert "令牌无效、已过期或已被吊销" in response.text
    assert not any(c.startswith(f"{SESSION_COOKIE}=") for c in response.headers.get_list("set-cookie"))
    assert web.get("/console", follow_redirects=False).status_code == 303


def test_an_enterprise_token_cannot_open_the_console(web: TestClient, tokens: Tokens) -> None:
    page = web.get("/console/login")
    response = web.post("/console/login", data={"csrf": csrf_of(page.text), "token": tokens.firm_a, "next": ""},
                        follow_redirects=False)
    assert response.status_code == 403
    assert "不是工作人员令牌" in response.text
    assert web.get("/console", follow_redirects=False).status_code == 303


def test_sign_in_without_the_login_form_cookie_is_refused(web: TestClient, tokens: Tokens) -> None:
    response = web.post("/console/login", data={"csrf": "forged", "token": tokens.staff, "next": ""},
                        follow_redirects=False)
    assert response.status_code == 403
    assert "表单已过期或来自其他网站" in response.text
    assert web.get("/console", follow_redirects=False).status_code == 303


def _own_staff_token(state: ServiceState, label: str) -> tuple[str, int]:
    with Session(state.engine) as session:
        token, row = create_token(session, role="staff", label=label)
        session.commit()
        assert row.id is not None
        return token, row.id


def test_revoking_the_token_ends_the_session(web: TestClient, state: ServiceState, population: Population) -> None:
    token, token_id = _own_staff_token(state, "将被吊销的坐席")
    sign_in(web, token)
    page = f"/console/enterprises/{population.firm_b.uscc}"
    assert web.get(page).status_code == 200
    with Session(state.engine) as session:
        assert revoke_token(session, token_id=token_id)
        session.commit()
    response = web.get(page, follow_redirects=False)
    assert response.status_code == 303
    # revoking deleted the token's sessions: the cookie names a session that no longer exists
    assert response.headers["location"].endswith("&ended=unknown")
    assert f'{SESSION_COOKIE}=""' in response.headers["set-cookie"]  # the cookie is cleared
    login = web.get(response.headers["location"])
    assert "登录已失效" in login.text and "令牌已被吊销" in login.text


def test_an_expired_token_ends_the_session(web: TestClient, state: ServiceState, population: Population) -> None:
    token, token_id = _own_staff_token(state, "将过期的坐席")
    csrf = sign_in(web, token)
    assert web.get("/console").status_code == 200
    with Session(state.engine) as session:
        row = session.get(ApiToken, token_id)
        assert row is not None
        row.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        session.add(row)
        session.commit()
    post = web.post(f"/console/enterprises/{population.firm_b.uscc}/whatif", data={"csrf": csrf, "employees": "3"},
                    follow_redirects=False)
    assert post.status_code == 401
    assert "登录已失效" in post.text
    assert web.get("/console", follow_redirects=False).status_code == 303


def test_sign_out_ends_the_session(web: TestClient, tokens: Tokens) -> None:
    csrf = sign_in(web, tokens.staff)
    assert web.post("/console/logout", data={"csrf": "x"}, follow_redirects=False).status_code == 403  # CSRF
    response = web.post("/console/logout", data={"csrf": csrf}, follow_redirects=False)
    assert response.status_code == 303
    assert web.get("/console", follow_redirects=False).status_code == 303


def test_a_staff_session_cannot_reach_admin_actions(web: TestClient, app: FastAPI, tokens: Tokens) -> None:
    sign_in(web, tokens.staff)
    session_cookie = {"Cookie": f"{SESSION_COOKIE}={web.cookies[SESSION_COOKIE]}"}
    # the console's cookie is no credential for the API: admin routes still want an admin bearer token
    for method, path in [("post", "/v1/policies"), ("put", "/v1/policies/bank-fee-reduction"),
                         ("post", "/v1/policies/bank-fee-reduction/retire"),
                         ("post", "/v1/policies/bank-fee-reduction/versions/1/publish")]:
        response = web.request(method.upper(), path, headers=session_cookie, json={})
        assert response.status_code == 401, (method, path, response.text)
    # and the staff token itself, used as the API's bearer token, is refused there too
    assert web.post("/v1/policies/bank-fee-reduction/retire", headers=bearer(tokens.staff)).status_code == 403
    # the console itself changes no policy: its only writes are the session and an enterprise profile
    writes = {(r.path, m) for r in console_router.routes for m in getattr(r, "methods", set())
              if r.path.startswith("/console") and m not in ("GET", "HEAD")}
    assert writes == {("/console/login", "POST"), ("/console/logout", "POST"),
                      ("/console/enterprises/{uscc}/whatif", "POST"), ("/console/enterprises/{uscc}/save", "POST")}


# ---- CSRF -------------------------------------------------------------------------------------
def test_console_forms_without_a_valid_csrf_value_are_refused(web: TestClient, tokens: Tokens, state: ServiceState,
                                                              population: Population) -> None:
    csrf = sign_in(web, tokens.staff)
    firm = population.firm_b
    changed = form_of({**firm.profile, "employees": 999})
    url = f"/console/enterprises/{firm.uscc}"
    before = stored(state, firm.uscc)
    assert before is not None
    for data, headers in [({}, {}), ({"csrf": "0" * 64}, {}), ({"csrf": csrf}, {"Origin": "https://evil.example"}),
                          ({"csrf": csrf}, {"Origin": "null"})]:
        for action in ("whatif", "save"):
            response = web.post(f"{url}/{action}", data={**changed, **data}, headers=headers, follow_redirects=False)
            assert response.status_code == 403, (action, data, headers)
            assert "表单校验失败" in response.text
    after = stored(state, firm.uscc)
    assert after is not None and after.content_hash == before.content_hash
    ok = web.post(f"{url}/whatif", data={**changed, "csrf": csrf}, headers={"Origin": "http://testserver"})
    assert ok.status_code == 200


def test_another_sessions_csrf_value_does_not_work(web: TestClient, app: FastAPI, tokens: Tokens,
                                                   population: Population, state: ServiceState) -> None:
    other = TestClient(app)
    try:
        other_csrf = sign_in(other, tokens.admin)
    finally:
        other.close()
    sign_in(web, tokens.staff)
    response = web.post(f"/console/enterprises/{population.firm_b.uscc}/whatif",
                        data={**form_of(population.firm_b.profile), "csrf": other_csrf})
    assert response.status_code == 403


# ---- audit ------------------------------------------------------------------------------------
def test_every_enterprise_view_is_audited_like_the_api(web: TestClient, tokens: Tokens, state: ServiceState,
                                                      population: Population) -> None:
    csrf = sign_in(web, tokens.staff)
    firm = population.samples[2]
    page_route = f"/console/enterprises/{firm.uscc}"
    before = audit_rows(state, uscc=firm.uscc)
    assert web.get(page_route).status_code == 200
    assert web.post(f"{page_route}/whatif", data={**form_of(firm.profile), "csrf": csrf}).status_code == 200
    new = audit_rows(state, uscc=firm.uscc)[len(before):]
    assert [(r.route, r.method, r.role, r.label) for r in new] == [
        (page_route, "GET", "staff", tokens.staff_label), (f"{page_route}/whatif", "POST", "staff", tokens.staff_label)]
    assert new[0].token_id is not None and new[0].token_id == new[1].token_id

    search = web.get("/console/enterprises", params={"q": "示例"})
    shown = re.findall(r'<a href="/console/enterprises/([0-9A-Z]{18})">', search.text)
    assert firm.uscc in shown
    rows = audit_rows(state, route="/console/enterprises?q=示例")
    assert set(shown) <= {r.uscc for r in rows}


def test_the_policy_page_audits_the_firms_it_lists(web: TestClient, tokens: Tokens, state: ServiceState) -> None:
    sign_in(web, tokens.staff)
    route = "/console/policies/union-fee-refund-small-micro"
    page = web.get(route)
    assert page.status_code == 200
    listed = re.findall(r'<a href="/console/enterprises/([0-9A-Z]{18})">', page.text)
    assert listed
    assert set(listed) <= {r.uscc for r in audit_rows(state, route=route)}


# ---- the enterprise page, what-if and saving ------------------------------------------------------
def test_enterprise_page_shows_profile_package_questions_and_gaps(web: TestClient, tokens: Tokens,
                                                                 client: TestClient, population: Population) -> None:
    sign_in(web, tokens.staff)
    firm = population.samples[5]  # the guarantee firm of unknown size: questions to ask
    expected = client.get(f"/v1/enterprises/{firm.uscc}/package", headers=bearer(tokens.staff)).json()
    page = web.get(f"/console/enterprises/{firm.uscc}").text
    assert f"可享受 {len(expected['package'])} 项" in page
    positions = [page.index(t) for t in titles(expected)]
    assert positions == sorted(positions)  # ranked as the API ranks them
    assert expected["possibly_eligible"], "the sample is meant to leave questions open"
    assert "要问来电人的问题" in page
    assert expected["questions"]
    for ask in expected["questions"]:  # each field asked once, phrased to the caller
        assert page.count(ask["ask_staff"]) == 1
    for item in expected["near_misses"]:
        for gap in item["gaps"]:
            assert f"{gap['label']}：需{gap['needed']}" in page and gap["observed"] in page
    for tag in expected["enterprise"]["tags"]:
        assert tag in page


def test_callers_words_reorder_the_package(web: TestClient, tokens: Tokens, client: TestClient,
                                           population: Population) -> None:
    sign_in(web, tokens.staff)
    firm = population.firm_a
    expected = client.get(f"/v1/enterprises/{firm.uscc}/package", params={"query": "要注销公司"},
                          headers=bearer(tokens.staff)).json()
    page = web.get(f"/console/enterprises/{firm.uscc}", params={"words": "要注销公司"}).text
    assert f"可享受 {len(expected['package'])} 项" in page
    positions = [page.index(f'data-policy="{e["policy_id"]}"') for e in expected["package"]]
    assert positions == sorted(positions)


def test_whatif_changes_the_package_and_stores_nothing(web: TestClient, tokens: Tokens, state: ServiceState,
                                                      population: Population, client: TestClient) -> None:
    csrf = sign_in(web, tokens.staff)
    firm = population.firm_a
    before = stored(state, firm.uscc)
    assert before is not None and before.profile["listing_status"] == "unlisted"
    response = web.post(f"/console/enterprises/{firm.uscc}/whatif",
                        data={**form_of({**firm.profile, "listing_status": "reserve"}), "csrf": csrf})
    assert response.status_code == 200
    old = client.get(f"/v1/enterprises/{firm.uscc}/package", headers=bearer(tokens.staff)).json()
    new = client.post("/v1/match", json={"profile": {**firm.profile, "listing_status": "reserve"}},
                      headers=bearer(tokens.staff)).json()
    added = [t for t in titles(new) if t not in titles(old)]
    assert added, "becoming a listing-reserve firm should open policies"
    text = response.text
    assert "假设分析结果（尚未保存）" in text
    assert "上市状态：未上市 → <strong>上市后备库企业</strong>" in text
    added_line = text[text.index("新增可享受"):]
    for title in added:
        assert title in added_line.split("</p>", 1)[0]
    after = stored(state, firm.uscc)
    assert after is not None
    assert (after.content_hash, after.updated_at) == (before.content_hash, before.updated_at)


def test_saving_goes_through_the_api_validation_and_bad_input_stores_nothing(
        web: TestClient, tokens: Tokens, state: ServiceState) -> None:
    csrf = sign_in(web, tokens.staff)
    profile = new_firm(state, 7001)
    uscc = profile["uscc"]
    url = f"/console/enterprises/{uscc}/save"
    before = stored(state, uscc)
    assert before is not None
    for value, message in [("-5", "从业人员不能小于0"), ("很多", "从业人员应为整数"),
                           ("12.5", "从业人员应为整数")]:
        response = web.post(url, data={**form_of({**profile, "employees": value}), "csrf": csrf},
                            follow_redirects=False)
        assert response.status_code == 422
        assert message in response.text
        assert "未保存任何内容" in response.text
        assert 'href="#f-employees"' in response.text  # the summary links to the field
    bad_code = web.post(url, data={**form_of({**profile, "industry_code": "Z99"}), "csrf": csrf})
    assert bad_code.status_code == 422 and "行业代码（GB/T 4754-2017）" in bad_code.text
    assert "industry_code（" not in bad_code.text  # pages show Chinese labels only
    after = stored(state, uscc)
    assert after is not None and after.content_hash == before.content_hash

    saved = web.post(url, data={**form_of({**profile, "employees": "１２０", "tax_credit_grade": "B"}), "csrf": csrf},
                     follow_redirects=False)
    assert saved.status_code == 303
    assert saved.headers["location"] == f"/console/enterprises/{uscc}?saved=1"
    row = stored(state, uscc)
    assert row is not None
    assert (row.profile["employees"], row.profile["tax_credit_grade"]) == (120, "B")
    assert "已保存到企业画像" in web.get(saved.headers["location"]).text
    again = web.post(url, data={**form_of(row.profile), "csrf": csrf}, follow_redirects=False)
    assert again.headers["location"].endswith("?saved=0")
    # each refused save showed the firm's page again (4 views), then two saves: all audited, by this session
    writes = audit_rows(state, uscc=uscc, route=url)
    assert [(r.method, r.label) for r in writes] == [("POST", tokens.staff_label)] * 6


def test_clearing_a_field_makes_it_unknown(web: TestClient, tokens: Tokens, state: ServiceState) -> None:
    csrf = sign_in(web, tokens.staff)
    profile = new_firm(state, 7002)
    data = form_of(profile)
    data["tax_credit_grade"] = ""
    data["flags"] = []
    response = web.post(f"/console/enterprises/{profile['uscc']}/save", data={**data, "csrf": csrf},
                        follow_redirects=False)
    assert response.status_code == 303
    row = stored(state, profile["uscc"])
    assert row is not None and "tax_credit_grade" not in row.profile and "flags" not in row.profile


def test_the_console_does_not_create_firms(web: TestClient, tokens: Tokens, state: ServiceState) -> None:
    csrf = sign_in(web, tokens.staff)
    uscc = make_uscc(7003, "91320311")
    response = web.post(f"/console/enterprises/{uscc}/save",
                        data={**form_of({**sample(0), "uscc": uscc}), "csrf": csrf})
    assert response.status_code == 404 and "未找到该企业" in response.text
    assert stored(state, uscc) is None


# ---- policy search and policy page ----------------------------------------------------------
def test_policy_search_by_callers_words(web: TestClient, tokens: Tokens, client: TestClient) -> None:
    sign_in(web, tokens.staff)
    expected = client.get("/v1/policies/search", params={"q": "工会经费能退吗"}).json()["results"]
    page = web.get("/console/policies", params={"q": "工会经费能退吗"}).text
    found = re.findall(r'<li><a href="/console/policies/([a-z0-9-]+)">', page)
    assert found == [r["policy_id"] for r in expected]
    assert found[0] == "union-fee-refund-small-micro"


def test_policy_page_shows_wording_task_departments_and_reach(web: TestClient, tokens: Tokens,
                                                              client: TestClient) -> None:
    sign_in(web, tokens.staff)
    detail = client.get("/v1/policies/union-fee-refund-small-micro").json()["current"]
    reach = client.get("/v1/policies/union-fee-refund-small-micro/enterprises",
                       headers=bearer(tokens.staff)).json()
    page = web.get("/console/policies/union-fee-refund-small-micro").text
    assert detail["text"].strip()[:40] in page
    assert f"重点任务》第{detail['source']['task_no']}项" in page
    for dept in detail["lead_departments"]:
        assert dept in page
    assert f"符合条件 <strong>{reach['eligible']}</strong> 家" in page
    for region, n in reach["by_region"].items():
        assert re.search(rf"<td>{re.escape(region)}</td><td class=\"num\">{n}</td>", page)
    assert web.get("/console/policies/no-such-policy").status_code == 404


# ---- the public calculator --------------------------------------------------------------------
def test_calculator_form_lists_every_field_with_help(web: TestClient) -> None:
    page = web.get("/calculator")
    assert page.status_code == 200
    for name in PROFILE_FIELDS:
        if name in ("uscc", "name"):  # the calculator stores nothing and asks for no code and no name
            assert f'id="f-{name}"' not in page.text
            continue
        assert f'id="f-{name}"' in page.text
        assert FIELDS[name].help in page.text
    assert "电子税务局" in page.text  # how to find the tax credit grade
    assert 'id="f-has_union"' in page.text


def test_calculator_works_as_a_plain_form_post_and_stores_nothing(web: TestClient, client: TestClient,
                                                                  state: ServiceState,
                                                                  fresh_limiter: None) -> None:
    profile = {**sample(0), "uscc": make_uscc(7101, "91320311")}
    count = enterprise_count(state)
    response = web.post("/calculator", data=form_of(profile))
    assert response.status_code == 200
    expected = client.post("/v1/match", json={"profile": profile}).json()
    assert f"可享受 {len(expected['package'])} 项" in response.text
    positions = [response.text.index(f'data-policy="{e["policy_id"]}"') for e in expected["package"]]
    assert positions == sorted(positions)
    assert stored(state, profile["uscc"]) is None
    assert enterprise_count(state) == count
    assert f'value="{profile["employees"]}"' in response.text  # the form keeps what was typed
    # nothing identifying is asked or shown: no code, no name, no field codes, no slugs
    assert profile["name"] not in response.text and profile["uscc"] not in response.text
    shown = re.sub(r"<[^>]+>", " ", response.text)  # what a person reads (attributes are not shown)
    for word in ("uscc", "entity_type", "任务序号", *[e["policy_id"] for e in expected["package"]]):
        assert word not in shown, word


def test_calculator_bad_input_names_the_field_in_chinese(web: TestClient, state: ServiceState,
                                                         fresh_limiter: None) -> None:
    profile = {**sample(1), "uscc": make_uscc(7102, "91320311")}
    count = enterprise_count(state)
    for changes, message in [({"employees": "-5"}, "从业人员不能小于0"),
                             ({"annual_revenue_wan": "三百"}, "营业收入应为数字"),
                             ({"has_union": "maybe"}, "是否建立工会"),
                             ({"established_on": "2015-13-40"}, "成立日期")]:
        response = web.post("/calculator", data=form_of({**profile, **changes}))
        assert response.status_code == 422, changes
        assert message in response.text, (changes, message)
        assert f"{next(iter(changes))}（" not in response.text  # Chinese labels only, no field codes
    assert enterprise_count(state) == count


def test_calculator_is_rate_limited_like_the_match_api(web: TestClient, app: FastAPI, state: ServiceState,
                                                       fresh_limiter: None) -> None:
    from service.store.limits import RateLimiter

    limit = state.settings.anonymous_rate_per_minute
    limiter = RateLimiter(state.engine)  # the count every worker shares, in the database
    for _ in range(limit):  # the window the API's own anonymous calls would have filled
        assert limiter.hit("match|ip:testclient", limit).allowed
    response = web.post("/calculator", data=form_of(sample(0)))
    assert response.status_code == 429
    assert f"每分钟最多{limit}次" in response.text


def test_forms_refuse_what_cannot_be_stored_or_parsed(web: TestClient, fresh_limiter: None) -> None:
    nul = web.post("/calculator", data={**form_of(sample(0)), "needs": "a\x00b"})
    assert nul.status_code == 422 and "企业诉求" in nul.text
    as_json = web.post("/calculator", json=sample(0))
    assert as_json.status_code == 415 and "application/x-www-form-urlencoded" in as_json.text
    broken = web.post("/calculator", content=b"name=%ff%fe", headers={"content-type": "application/x-www-form-urlencoded"})
    assert broken.status_code == 400


def test_pages_use_local_resources_only_and_send_protective_headers(web: TestClient) -> None:
    for path in ("/calculator", "/console/login"):
        page = web.get(path)
        assert not re.search(r'(?:src|href)="(?:https?:)?//', page.text), path
        assert page.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"
    css = web.get("/static/console.css")
    assert css.status_code == 200 and ":focus-visible" in css.text
    assert web.get("/static/console.js").status_code == 200


# ---- form conversion --------------------------------------------------------------------------
def test_form_conversion_reads_numbers_lists_and_unknowns() -> None:
    base = form_of(sample(0))
    profile = profile_from_form({**{k: v if isinstance(v, list) else [v] for k, v in base.items()},
                                 "employees": ["１，２００"], "annual_revenue_wan": ["4,200.5"],
                                 "flags": [], "qualifications": [NONE_OPTION], "tax_credit_grade": [""]})
    stated = profile.stated()
    assert stated["employees"] == 1200 and stated["annual_revenue_wan"] == 4200.5
    assert "flags" not in stated and "tax_credit_grade" not in stated  # unknown, not "none"
    assert stated["qualifications"] == []
    with pytest.raises(ProfileError) as err:
        profile_from_form({"uscc": [sample(0)["uscc"]], "name": ["x"], "flags": [NONE_OPTION, "bankruptcy"],
                           "patents": ["two"]})
    fields = [f for f, _ in err.value.errors]
    assert fields == ["patents", "flags"]


def test_questions_are_grouped_so_one_answer_settles_many_policies(state: ServiceState) -> None:
    # the guarantee firm's size cannot be derived (金融业): one answer about its size settles several policies
    profile = {k: v for k, v in sample(5).items() if k not in ("flags", "trade")}
    with Session(state.engine) as session:
        answer = state.matcher(session).match(derive(parse_profile(profile), dt.date.today()))
    result = answer.model_dump(mode="json")
    staff, firm = ask_list(answer, True), ask_list(answer, False)
    fields = [a["field"] for a in result["questions"]]
    assert len(fields) == len(set(fields))  # each field asked once
    assert [a["question"] for a in staff] == [a["ask_staff"] for a in result["questions"]]
    assert all(a["question"].startswith("请问") for a in staff)
    assert all(a["question"].startswith("贵企业") for a in firm)
    missing = {f for item in result["possibly_eligible"] for f in item["missing"]}
    settled = {pid for a in result["questions"] for pid in a["settles"]}
    assert settled == {item["policy_id"] for item in result["possibly_eligible"]}
    assert missing  # the sample leaves questions open
    assert len(staff[0]["titles"]) > 1  # an unknown size holds back several policies at once
    if "flags" in fields:  # rare situations (破产, 涉案) are asked last
        assert fields[-1] == "flags"


def test_calculator_says_so_when_the_firms_words_match_nothing(web: TestClient, fresh_limiter: None) -> None:
    """Off-topic words get "未找到对应政策" and the channel, not a package pretending to answer them."""
    profile = {**sample(0), "needs": "我想移民加拿大，孩子出国读书怎么办"}
    response = web.post("/calculator", data=form_of(profile))
    assert response.status_code == 200
    assert "未找到对应政策" in response.text
    assert "12345" in response.text and "一企来" in response.text
    on_topic = web.post("/calculator", data=form_of(sample(0)))  # 想贷款…专利能不能质押: found
    assert on_topic.status_code == 200 and "未找到对应政策" not in on_topic.text


def test_console_policy_search_abstains_on_off_topic_words(web: TestClient, tokens: Tokens) -> None:
    sign_in(web, tokens.staff)
    page = web.get("/console/policies", params={"q": "我想移民加拿大"})
    assert page.status_code == 200
    assert "未找到对应政策" in page.text and "12345" in page.text
    assert 'class="hits"' not in page.text
    found = web.get("/console/policies", params={"q": "一个月被检查好几回"})
    assert "未找到对应政策" not in found.text
    assert "服务承诺" in found.text  # commitments are findable, labelled as such
