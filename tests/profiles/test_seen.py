"""A profile as it counts on a day (profiles/merge.as_seen, EnterpriseProfile.at): staleness exactly at the
boundary, qualification validity through valid_to, the reminder window, next_change."""

from __future__ import annotations

import datetime as dt

from profiles.merge import as_seen
from profiles.model import parse_profile

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
