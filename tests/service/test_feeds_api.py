"""The API over merged profiles: ``PUT /v1/enterprises/{uscc}`` records the firm's own statement (its token) or
a hotline operator's (staff, admin); ``GET /v1/enterprises/{uscc}`` carries ``provenance: {field: {source,
as_of, stale}}`` and ``conflicts``; the package at ``GET …/package`` sees the merged profile as it counts on
its day. SQLite, and PostgreSQL when ``POLICYFIT_TEST_DATABASE_URL`` is set."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from service.app.feeds import import_feed
from service.bootstrap import ServiceState
from service.db.tables import EnterpriseSource
from service.store.tokens import create_token
from tests.service.conftest import Tokens, bearer, make_uscc, sample

TODAY = dt.date.today()


def new_firm(state: ServiceState) -> tuple[str, str]:
    """A fresh code and the enterprise token of that firm (nothing stored yet)."""
    uscc = make_uscc(uuid.uuid4().int % 31**9, prefix="91320324")
    with Session(state.engine) as session:
        token, _ = create_token(session, role="enterprise", label=f"来源测试{uscc[-6:]}", uscc=uscc)
        session.commit()
    return uscc, token


def feed(state: ServiceState, tmp_path: Path, source: str, as_of: dt.date, header: str, *rows: str) -> None:
    path = tmp_path / f"{source}-{uuid.uuid4().hex[:6]}.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    report = import_feed(state.engine, path, source=source, as_of=as_of)
    assert report.rejected == 0, report.errors_file.read_text(encoding="utf-8") if report.errors_file else ""


def sources_of(state: ServiceState, uscc: str) -> dict[str, dict[str, Any]]:
    with Session(state.engine) as session:
        return {r.source: r.doc for r in session.exec(select(EnterpriseSource).where(EnterpriseSource.uscc == uscc))}


def test_put_records_the_firm_itself_or_a_hotline_operator(client: TestClient, state: ServiceState,
                                                           tokens: Tokens) -> None:
    uscc, token = new_firm(state)
    profile = sample(0) | {"uscc": uscc, "name": f"来源测试{uscc[-6:]}有限公司"}
    body = client.put(f"/v1/enterprises/{uscc}", json=profile, headers=bearer(token)).json()
    assert body["changed"] is True and body["conflicts"] == []
    assert {p["source"] for p in body["provenance"].values()} == {"self"}
    assert body["provenance"]["employees"] == {"source": "self", "source_label": "企业自报",
                                               "as_of": TODAY.isoformat(), "stale": False}
    assert set(sources_of(state, uscc)) == {"self"}
    # a hotline operator records what the firm said on a call: its own document, merged with the firm's
    call = profile | {"employees": 90, "needs": "来电：想了解稳岗返还"}
    body = client.put(f"/v1/enterprises/{uscc}", json=call, headers=bearer(tokens.staff)).json()
    assert set(sources_of(state, uscc)) == {"self", "hotline"}
    assert sources_of(state, uscc)["hotline"]["values"]["employees"] == 90
    # neither is authoritative: on the same day the firm's own word is listed first in sources.yaml; either way
    # the disagreement is shown, not silently resolved
    [conflict] = [c for c in body["conflicts"] if c["field"] == "employees"]
    assert {conflict["chosen"]["source"], conflict["others"][0]["source"]} == {"self", "hotline"}
    assert "请核实" in conflict["message"]
    # the firm restating the same profile changes nothing
    again = client.put(f"/v1/enterprises/{uscc}", json=profile, headers=bearer(token)).json()
    assert again["changed"] is False


def test_get_shows_provenance_and_conflicts(client: TestClient, state: ServiceState, tokens: Tokens,
                                            tmp_path: Path) -> None:
    uscc, token = new_firm(state)
    profile = sample(0) | {"uscc": uscc, "name": f"自报名称{uscc[-6:]}有限公司", "tax_credit_grade": "A"}
    assert client.put(f"/v1/enterprises/{uscc}", json=profile, headers=bearer(token)).status_code == 200
    feed(state, tmp_path, "registration", TODAY - dt.timedelta(days=10), "统一社会信用代码,企业名称,所属区县",
         f"{uscc},登记名称{uscc[-6:]}有限公司,铜山区")
    feed(state, tmp_path, "tax", TODAY - dt.timedelta(days=30), "纳税人识别号,纳税信用级别", f"{uscc},B")
    got = client.get(f"/v1/enterprises/{uscc}", headers=bearer(tokens.staff))
    assert got.status_code == 200
    body = got.json()
    assert body["name"] == f"登记名称{uscc[-6:]}有限公司" and body["profile"]["tax_credit_grade"] == "B"
    assert body["provenance"]["tax_credit_grade"] == {
        "source": "tax", "source_label": "税务", "as_of": (TODAY - dt.timedelta(days=30)).isoformat(), "stale": False}
    assert body["provenance"]["name"]["source"] == "registration"
    assert body["provenance"]["needs"]["source"] == "self"
    assert all(set(p) >= {"source", "as_of", "stale"} for p in body["provenance"].values())
    by_field = {c["field"]: c for c in body["conflicts"]}
    assert set(by_field) >= {"name", "tax_credit_grade"}
    grade = by_field["tax_credit_grade"]
    assert grade["chosen"]["source"] == "tax" and grade["chosen"]["value"] == "B"
    assert grade["others"] == [{"source": "self", "source_label": "企业自报", "as_of": TODAY.isoformat(), "value": "A"}]
    assert grade["message"].startswith("纳税信用等级：税务") and "以税务为准，请核实" in grade["message"]
    # the firm sees the same through its own token
    assert client.get(f"/v1/enterprises/{uscc}", headers=bearer(token)).json()["conflicts"] == body["conflicts"]


def test_staleness_at_the_boundary_day_and_the_package(client: TestClient, state: ServiceState, tokens: Tokens,
                                                       tmp_path: Path) -> None:
    """Headcount from social insurance counts for 183 days: observed on d it is fresh through d+183 and stale
    from d+184; the package then asks to verify it instead of using it."""
    fresh, _ = new_firm(state)
    old, _ = new_firm(state)
    feed(state, tmp_path, "registration", TODAY - dt.timedelta(days=400), "统一社会信用代码,企业名称,所属区县",
         f"{fresh},人数未过期有限公司,泉山区", f"{old},人数已过期有限公司,泉山区")
    feed(state, tmp_path, "social_insurance", TODAY - dt.timedelta(days=183), "统一社会信用代码,参保人数",
         f"{fresh},30")
    feed(state, tmp_path, "social_insurance", TODAY - dt.timedelta(days=184), "统一社会信用代码,参保人数",
         f"{old},30")
    got = {u: client.get(f"/v1/enterprises/{u}", headers=bearer(tokens.staff)).json() for u in (fresh, old)}
    assert got[fresh]["provenance"]["employees"]["stale"] is False
    assert got[old]["provenance"]["employees"]["stale"] is True
    assert got[old]["provenance"]["name"]["stale"] is False  # a registered name never ages
    assert got[old]["profile"]["employees"] == 30  # stored as given; only what matching sees drops it
    package = client.get(f"/v1/enterprises/{old}/package", headers=bearer(tokens.staff))
    assert package.status_code == 200, package.text
    stale = {s["field"]: s for s in package.json()["stale"]}
    assert stale["employees"]["source"] == "social_insurance"
    assert stale["employees"]["as_of"] == (TODAY - dt.timedelta(days=184)).isoformat()
    assert "employees" not in {s["field"] for s in client.get(f"/v1/enterprises/{fresh}/package",
                                                              headers=bearer(tokens.staff)).json()["stale"]}


def test_dated_qualification_through_feed_api_and_package(client: TestClient, state: ServiceState, tokens: Tokens,
                                                          tmp_path: Path) -> None:
    uscc, token = new_firm(state)
    feed(state, tmp_path, "registration", TODAY, "统一社会信用代码,企业名称,所属区县,国民经济行业代码",
         f"{uscc},证书到期测试有限公司,铜山区,C3484")
    ends = TODAY + dt.timedelta(days=30)
    feed(state, tmp_path, "science", TODAY, "统一社会信用代码,认定类型,发证日期,有效期至",
         f"{uscc},高新技术企业,{(ends - dt.timedelta(days=1095)).isoformat()},{ends.isoformat()}")
    body = client.get(f"/v1/enterprises/{uscc}", headers=bearer(token)).json()
    assert body["profile"]["qualifications"] == [
        {"code": "high_tech", "valid_from": (ends - dt.timedelta(days=1095)).isoformat(), "valid_to": ends.isoformat()}]
    assert body["provenance"]["qualifications.high_tech"]["source"] == "science"
    package = client.get(f"/v1/enterprises/{uscc}/package", headers=bearer(token)).json()
    [reminder] = [r for r in package["reminders"] if r["code"] == "high_tech"]
    assert reminder["valid_to"] == ends.isoformat() and reminder["days_left"] == 30
    assert "高新技术企业" in reminder["message"] and "到期" in reminder["message"]
    # on valid_to it still counts (its last day); the day after it no longer does: no reminder, not held
    last = client.get(f"/v1/enterprises/{uscc}/package", params={"as_of": ends.isoformat()}, headers=bearer(token))
    assert [r["days_left"] for r in last.json()["reminders"] if r["code"] == "high_tech"] == [0]
    later = client.get(f"/v1/enterprises/{uscc}/package", params={"as_of": (ends + dt.timedelta(days=1)).isoformat()},
                       headers=bearer(token)).json()
    assert not [r for r in later["reminders"] if r["code"] == "high_tech"]


def test_a_whole_statement_supersedes_a_legacy_profile(client: TestClient, state: ServiceState,
                                                       tokens: Tokens, tmp_path: Path) -> None:
    """A profile stored before any feed is of unknown origin: the hotline's save of it (edited, a field cleared)
    replaces it, as a save always did; a department's feed instead keeps it as the firm's own statement."""
    from profiles.model import parse_profile
    from service.store.enterprises import upsert_enterprise

    uscc, _ = new_firm(state)
    profile = sample(0) | {"uscc": uscc, "name": f"存量画像{uscc[-6:]}有限公司"}
    with Session(state.engine) as session:
        upsert_enterprise(session, profile=parse_profile(profile))
        session.commit()
    edited = {k: v for k, v in profile.items() if k != "tax_credit_grade"}
    body = client.put(f"/v1/enterprises/{uscc}", json=edited, headers=bearer(tokens.staff)).json()
    assert "tax_credit_grade" not in body["profile"] and body["conflicts"] == []
    assert set(sources_of(state, uscc)) == {"hotline"}
    assert {p["source"] for p in body["provenance"].values()} == {"hotline"}
    feed(state, tmp_path, "tax", TODAY, "纳税人识别号,纳税信用级别", f"{uscc},B")
    assert client.get(f"/v1/enterprises/{uscc}", headers=bearer(tokens.staff)).json()["profile"]["tax_credit_grade"] == "B"
