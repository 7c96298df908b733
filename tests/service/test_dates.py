"""Dates are dates (issue 11, fault 6): ``established_on`` is strict ``YYYY-MM-DD`` and not after the day
it is judged on (today when a profile is stored, the evaluation day when it is matched), with the same
rule — :func:`profiles.model.parse_profile` — behind every entry point: the API (SQLite and PostgreSQL
through the suite's database fixture), the importer, the console form and ``policyfit match``. A refused
profile stores nothing."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session
from typer.testing import CliRunner

from profiles.model import ProfileError, parse_profile
from service.app.importer import import_file
from service.bootstrap import ServiceState
from service.db.tables import Enterprise
from service.store.tokens import create_token
from tests.service.conftest import bearer, make_uscc, sample

FUTURE = ["2100-01-01", "9999-12-31"]
NOT_A_DATE = ["2024-06-01T00:00:00", "20240601", "2024-6-1", "2024/06/01", "2024-02-30", "2024-06-01 00:00"]
BAD = FUTURE + NOT_A_DATE


def _tomorrow() -> str:
    return (dt.date.today() + dt.timedelta(days=1)).isoformat()


def _fresh(state: ServiceState) -> tuple[str, dict[str, Any], str]:
    """A firm not stored yet, with its own enterprise token."""
    uscc = make_uscc(uuid.uuid4().int % 31**9, prefix="91320302")
    profile = sample(0) | {"uscc": uscc, "name": f"日期测试企业{uscc[-6:]}有限公司"}
    with Session(state.engine) as session:
        token, _ = create_token(session, role="enterprise", label=f"日期测试{uscc[-6:]}", uscc=uscc)
        session.commit()
    return uscc, profile, token


def _stored(state: ServiceState, uscc: str) -> Enterprise | None:
    with Session(state.engine) as session:
        return session.get(Enterprise, uscc)


def _expect_message(message: str, value: str) -> None:
    assert message.startswith("established_on（成立日期）"), message
    if value in FUTURE or value == _tomorrow():
        assert "不能晚于" in message and value in message, message
    elif value == "2024-02-30":
        assert "不是有效的日期" in message, message
    else:
        assert "须为 YYYY-MM-DD 格式的日期" in message, message


# ---- the one validator ----------------------------------------------------------------------------------
@pytest.mark.parametrize("value", BAD)
def test_the_validator_refuses(value: str) -> None:
    with pytest.raises(ProfileError) as caught:
        parse_profile(sample(0) | {"established_on": value}, as_of=dt.date.today())
    assert caught.value.field == "established_on"
    _expect_message(str(caught.value), value)


def test_the_validator_takes_real_dates_up_to_the_day() -> None:
    today = dt.date.today()
    assert parse_profile(sample(0) | {"established_on": today.isoformat()}, as_of=today).established_on == today
    assert parse_profile(sample(0) | {"established_on": "2024-06-01"}, as_of=dt.date(2024, 6, 1)).established_on
    with pytest.raises(ProfileError, match="不能晚于2024-05-31"):
        parse_profile(sample(0) | {"established_on": "2024-06-01"}, as_of=dt.date(2024, 5, 31))
    # the format rule holds everywhere, also without a day to judge the founding date against
    with pytest.raises(ProfileError, match="YYYY-MM-DD"):
        parse_profile(sample(0) | {"established_on": "2024-06-01T00:00:00"})


# ---- API -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [*BAD, "tomorrow"])
def test_api_put_refuses_and_stores_nothing(client: TestClient, state: ServiceState, value: str) -> None:
    uscc, profile, token = _fresh(state)
    shown = _tomorrow() if value == "tomorrow" else value
    r = client.put(f"/v1/enterprises/{uscc}", json=profile | {"established_on": shown}, headers=bearer(token))
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["field"] == "established_on"
    _expect_message(body["message"], shown if value == "tomorrow" else value)
    assert _stored(state, uscc) is None
    ok = client.put(f"/v1/enterprises/{uscc}", json=profile | {"established_on": dt.date.today().isoformat()},
                    headers=bearer(token))
    assert ok.status_code == 200, ok.text
    assert _stored(state, uscc) is not None


def test_api_put_does_not_change_a_stored_firm(client: TestClient, state: ServiceState) -> None:
    uscc, profile, token = _fresh(state)
    assert client.put(f"/v1/enterprises/{uscc}", json=profile, headers=bearer(token)).status_code == 200
    before = _stored(state, uscc)
    assert before is not None
    r = client.put(f"/v1/enterprises/{uscc}", json=profile | {"established_on": "9999-12-31", "employees": 99},
                   headers=bearer(token))
    assert r.status_code == 422
    after = _stored(state, uscc)
    assert after is not None and (after.profile, after.content_hash) == (before.profile, before.content_hash)


@pytest.mark.parametrize("value", BAD)
def test_api_match_refuses(client: TestClient, tokens: Any, value: str) -> None:
    r = client.post("/v1/match", json={"profile": sample(0) | {"established_on": value}}, headers=bearer(tokens.staff))
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "profile.established_on"
    _expect_message(r.json()["message"], value)


def test_api_match_judges_the_founding_date_by_the_evaluation_day(client: TestClient, tokens: Any) -> None:
    profile = sample(0) | {"established_on": "2024-06-01"}
    auth = bearer(tokens.staff)
    assert client.post("/v1/match", json={"profile": profile, "as_of": "2024-06-01"}, headers=auth).status_code == 200
    late = client.post("/v1/match", json={"profile": profile, "as_of": "2024-05-31"}, headers=auth)
    assert late.status_code == 422 and "不能晚于2024-05-31" in late.json()["message"]
    bad = client.post("/v1/match", json={"profile": sample(0) | {"established_on": "9999-12-31"}}, headers=auth)
    assert bad.status_code == 422 and bad.json()["field"] == "profile.established_on"


# ---- importer --------------------------------------------------------------------------------------------
def test_importer_refuses_bad_dates(state: ServiceState, tmp_path: Path) -> None:
    codes = [make_uscc(uuid.uuid4().int % 31**9, prefix="91320303") for _ in range(len(BAD) + 1)]
    rows = [sample(0) | {"uscc": c, "name": f"导入日期{c[-6:]}有限公司", "established_on": v}
            for c, v in zip(codes, [*BAD, "2020-01-02"], strict=True)]
    jsonl = tmp_path / "dates.jsonl"
    jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    report = import_file(state.engine, jsonl)
    assert (report.rows, report.created, report.rejected) == (len(BAD) + 1, 1, len(BAD))
    errors = [json.loads(line) for line in report.errors_file.read_text(encoding="utf-8").splitlines()]
    assert [e["line"] for e in errors] == list(range(1, len(BAD) + 1))
    for e, value in zip(errors, BAD, strict=True):
        assert e["field"] == "established_on"
        _expect_message(e["error"], value)
    assert [_stored(state, c) is not None for c in codes] == [False] * len(BAD) + [True]

    csv_codes = [make_uscc(uuid.uuid4().int % 31**9, prefix="91320304") for _ in range(3)]
    csv_path = tmp_path / "dates.csv"
    csv_path.write_text("uscc,name,established_on\n"
                        f"{csv_codes[0]},导入日期甲有限公司,2100-01-01\n"
                        f"{csv_codes[1]},导入日期乙有限公司,2024-06-01T00:00:00\n"
                        f"{csv_codes[2]},导入日期丙有限公司,2024-06-01\n", encoding="utf-8")
    report = import_file(state.engine, csv_path)
    assert (report.rows, report.created, report.rejected) == (3, 1, 2)
    errors = [json.loads(line) for line in report.errors_file.read_text(encoding="utf-8").splitlines()]
    assert [(e["line"], e["field"]) for e in errors] == [(2, "established_on"), (3, "established_on")]
    assert [_stored(state, c) is not None for c in csv_codes] == [False, False, True]


# ---- console form (calculator and the staff edit form) ------------------------------------------------
@pytest.mark.parametrize("value", ["2100-01-01", "9999-12-31", "2024-06-01T00:00:00"])
def test_console_form_refuses(value: str) -> None:
    from service.http.console.forms import profile_from_form

    form = {"name": ["表单日期测试有限公司"], "industry_code": ["C3411"], "established_on": [value]}
    with pytest.raises(ProfileError) as caught:
        profile_from_form(form, uscc=sample(0)["uscc"])
    assert "established_on" in {f for f, _ in caught.value.errors}
    message = dict(caught.value.errors)["established_on"]  # the form names the field by its label
    assert "成立日期" in message, message
    assert ("不能晚于" if value in FUTURE else "YYYY-MM-DD") in message, message


# ---- CLI ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["2100-01-01", "9999-12-31", "2024-06-01T00:00:00"])
def test_cli_match_refuses(tmp_path: Path, value: str) -> None:
    from service.main import app

    path = tmp_path / "firm.json"
    path.write_text(json.dumps(sample(0) | {"established_on": value}, ensure_ascii=False), encoding="utf-8")
    result = CliRunner().invoke(app, ["match", "--profile", str(path)])
    assert result.exit_code == 2, result.output
    _expect_message(result.stderr.strip().removeprefix("错误："), value)


def test_cli_match_judges_by_as_of(tmp_path: Path) -> None:
    from service.main import app

    path = tmp_path / "firm.json"
    path.write_text(json.dumps(sample(0) | {"established_on": "2024-06-01"}, ensure_ascii=False), encoding="utf-8")
    runner = CliRunner()
    late = runner.invoke(app, ["match", "--profile", str(path), "--as-of", "2024-05-31"])
    assert late.exit_code == 2 and "不能晚于2024-05-31" in late.stderr
    ok = runner.invoke(app, ["match", "--profile", str(path), "--as-of", "2024-06-01", "--json"])
    assert ok.exit_code == 0, ok.output


def test_cli_import_refuses_a_firm_founded_in_9999(state: ServiceState, database_url: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from service.main import app
    from service.settings import get_settings

    uscc = make_uscc(uuid.uuid4().int % 31**9, prefix="91320305")
    path = tmp_path / "future.jsonl"
    path.write_text(json.dumps(sample(0) | {"uscc": uscc, "name": "九九九九年成立有限公司",
                                            "established_on": "9999-12-31"}, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    monkeypatch.setenv("POLICYFIT_DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["enterprises", "import", str(path)])
        assert result.exit_code == 1, result.output
        assert "拒绝 1" in result.stdout
        errors = path.with_name("future.errors.jsonl").read_text(encoding="utf-8")
        assert "established_on（成立日期）不能晚于" in errors
        assert _stored(state, uscc) is None
    finally:
        get_settings.cache_clear()
