"""A profile as it counts on a day (profiles/merge.as_seen, EnterpriseProfile.at): staleness exactly at the
boundary, qualification validity through valid_to, the reminder window, next_change."""

from __future__ import annotations

import datetime as dt

import pytest

from profiles.merge import as_seen, provenance_on
from profiles.model import ProfileError, parse_profile

D = dt.date.fromisoformat
USCC = "91110000600037341L"
HIGH_TECH = {"code": "high_tech", "valid_from": "2023-11-01", "valid_to": "2026-10-31"}


def test_a_value_is_fresh_through_d_plus_n_and_stale_from_the_day_after() -> None:
    profile = {"uscc": USCC, "name": "x", "employees": 40}
    provenance = {"employees": {"source": "social_insurance", "as_of": "2026-01-01"}}  # max age 183 days
    last = D("2026-01-01") + dt.timedelta(days=183)
    fresh = as_seen(profile, provenance, last)
    assert fresh.profile["employees"] == 40 and fresh.stale == {}
    assert fresh.next_change == last + dt.timedelta(days=1)
    stale = as_seen(profile, provenance, last + dt.timedelta(days=1))
    assert "employees" not in stale.profile
    assert stale.stale["employees"] == {"value": 40, "source": "social_insurance", "source_label": "人社",
                                        "as_of": "2026-01-01", "max_age_days": 183}


def test_without_provenance_nothing_ages() -> None:
    profile = {"uscc": USCC, "name": "x", "employees": 40}
    assert as_seen(profile, None, D("2040-01-01")).profile == profile


def test_a_qualification_counts_through_valid_to_not_the_day_after() -> None:
    profile = parse_profile({"uscc": USCC, "name": "x", "qualifications": ["tech_sme", HIGH_TECH]})
    assert profile.at(D("2026-10-31")).qualifications == ["tech_sme", "high_tech"]
    assert profile.at(D("2026-11-01")).qualifications == ["tech_sme"]
    assert profile.at(D("2023-10-31")).qualifications == ["tech_sme"]
    assert profile.stated()["qualifications"] == ["tech_sme", HIGH_TECH]  # stored as given
    seen = as_seen(profile.stated(), None, D("2026-10-31"))
    assert seen.profile["qualifications"] == ["tech_sme", "high_tech"] and seen.next_change == D("2026-11-01")
    assert as_seen(profile.stated(), None, D("2026-11-01")).profile["qualifications"] == ["tech_sme"]


def test_the_reminder_window_is_90_days_inclusive() -> None:
    profile = {"uscc": USCC, "name": "x", "qualifications": [HIGH_TECH]}
    opens = D("2026-10-31") - dt.timedelta(days=90)
    before = as_seen(profile, None, opens - dt.timedelta(days=1))
    assert before.expiring == [] and before.next_change == opens
    assert as_seen(profile, None, opens).expiring == [
        {"code": "high_tech", "label": "高新技术企业", "valid_to": "2026-10-31", "days_left": 90}]
    assert as_seen(profile, None, D("2026-10-31")).expiring[0]["days_left"] == 0
    assert as_seen(profile, None, D("2026-11-01")).expiring == []


def test_a_renewed_certificate_joins_the_old_one_no_reminder_and_no_gap() -> None:
    renewed = {"code": "high_tech", "valid_from": "2026-11-01", "valid_to": "2029-10-31"}
    profile = {"uscc": USCC, "name": "x", "qualifications": [HIGH_TECH, renewed]}
    day = D("2026-10-01")
    seen = as_seen(profile, None, day)
    assert seen.profile["qualifications"] == ["high_tech"] and seen.expiring == []
    assert as_seen(profile, None, D("2026-11-01")).profile["qualifications"] == ["high_tech"]
    assert as_seen(profile, None, D("2029-08-02")).expiring == [
        {"code": "high_tech", "label": "高新技术企业", "valid_to": "2029-10-31", "days_left": 90}]


def test_a_certificate_not_yet_valid_counts_from_its_first_day() -> None:
    profile = {"uscc": USCC, "name": "x", "qualifications": [{"code": "little_giant", "valid_from": "2026-07-01"}]}
    before = as_seen(profile, None, D("2026-06-30"))
    assert before.profile["qualifications"] == [] and before.next_change == D("2026-07-01")
    after = as_seen(profile, None, D("2026-07-01"))
    assert after.profile["qualifications"] == ["little_giant"] and after.next_change is None and after.expiring == []


def test_a_per_code_field_is_unknown_once_any_of_its_codes_is_too_old() -> None:
    profile = {"uscc": USCC, "name": "x", "flags": ["in_difficulty"]}
    provenance = {"flags.abnormal_operation": {"source": "registration", "as_of": "2025-01-01"},
                  "flags.in_difficulty": {"source": "self", "as_of": "2025-06-01"},
                  "flags": {"source": "self", "as_of": "2025-06-01"}}
    assert as_seen(profile, provenance, D("2026-01-01")).profile["flags"] == ["in_difficulty"]  # 2025-01-01 + 365
    seen = as_seen(profile, provenance, D("2026-01-02"))
    assert "flags" not in seen.profile
    view = provenance_on(provenance, D("2026-01-02"))
    assert view["flags"]["stale"] and view["flags.abnormal_operation"]["stale"]
    assert not view["flags.in_difficulty"]["stale"]
    assert seen.stale["flags"] == {"value": ["in_difficulty"], "source": "registration", "source_label": "市场监管",
                                   "as_of": "2025-01-01", "max_age_days": 365}


def test_next_change_is_the_earliest_of_ageing_and_certificate_days() -> None:
    profile = {"uscc": USCC, "name": "x", "employees": 40, "tax_credit_grade": "B", "qualifications": [HIGH_TECH]}
    provenance = {"employees": {"source": "social_insurance", "as_of": "2026-06-01"},
                  "tax_credit_grade": {"source": "tax", "as_of": "2026-04-01"},
                  "name": {"source": "registration", "as_of": "2010-01-01"}}
    seen = as_seen(profile, provenance, D("2026-07-01"))
    # employees turns stale 2026-12-02; the reminder window opens 2026-08-02; the grade ages 2027-08-02
    assert seen.next_change == D("2026-08-02") and seen.stale == {} and seen.expiring == []
    assert as_seen(profile, provenance, D("2026-08-02")).next_change == D("2026-11-01")
    assert as_seen(profile, provenance, D("2026-11-01")).next_change == D("2026-12-02")


def test_a_value_without_provenance_or_without_a_max_age_never_ages() -> None:
    profile = {"uscc": USCC, "name": "x", "employees": 40, "established_on": "2001-01-01"}
    provenance = {"established_on": {"source": "registration", "as_of": "2001-01-01"}}
    seen = as_seen(profile, provenance, D("2040-01-01"))
    assert seen.profile == profile and seen.next_change is None


def test_dated_qualification_errors_name_the_item_in_chinese() -> None:
    def error(item: object) -> str:
        with pytest.raises(ProfileError) as caught:
            parse_profile({"uscc": USCC, "name": "x", "qualifications": ["tech_sme", item]})
        assert caught.value.field == "qualifications"
        return str(caught.value)

    assert error({"code": "high_tech", "valid_to": "2026-10-31", "issuer": "x"}) == (
        "qualifications（企业资质）第2项含未知的键“issuer”，只能有 code、valid_from、valid_to")
    assert error({"valid_to": "2026-10-31"}) == "qualifications（企业资质）第2项缺少 code（资质代码）"
    assert error({"code": "hightech"}).startswith("qualifications（企业资质）第2项的 code 取值无效：'hightech'，应为 high_tech")
    assert error({"code": "high_tech", "valid_to": "2026-10-31T00:00:00"}) == (
        "qualifications（企业资质）第2项的 valid_to 须为 YYYY-MM-DD 格式的日期（收到“2026-10-31T00:00:00”）")
    assert error({"code": "high_tech", "valid_from": "2026-11-01", "valid_to": "2026-10-31"}) == (
        "qualifications（企业资质）第2项：high_tech 的有效期起始日期 2026-11-01 晚于截止日期 2026-10-31")
    assert error("hightech").startswith("qualifications（企业资质）取值无效：'hightech'，应为 high_tech")  # as before


def test_plain_codes_stay_plain_and_at_returns_the_same_profile() -> None:
    profile = parse_profile({"uscc": USCC, "name": "x", "qualifications": ["tech_sme", "high_tech", "tech_sme"]})
    assert profile.qualifications == ["tech_sme", "high_tech"] and profile.at(D("2030-01-01")) is profile
    with pytest.raises(ProfileError, match="最多8项"):
        parse_profile({"uscc": USCC, "name": "x", "qualifications": ["tech_sme"] * 9})
