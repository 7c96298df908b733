"""The portrait on a day (profiles.features.derive with provenance): what matching sees is the seen profile;
stale fields and expiring certificates travel with it; dated qualifications never crash the encoding, the
labels or the tags; a profile of plain codes without provenance is derived exactly as before."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from profiles.columns import ProfileBatch, encode_profiles, values
from profiles.features import derive, portrait_tags
from profiles.labels import value_text
from profiles.model import DatedQualification, parse_profile

D = dt.date.fromisoformat
BASE: dict[str, Any] = {"uscc": "91110000600037341L", "name": "徐州某某机械有限公司", "industry_code": "C3411",
                        "employees": 40, "annual_revenue_wan": 1800, "tax_credit_grade": "B"}
HIGH_TECH = {"code": "high_tech", "valid_from": "2023-11-01", "valid_to": "2026-10-31"}


def test_derive_sees_the_profile_as_it_counts_on_the_day() -> None:
    profile = parse_profile({**BASE, "qualifications": ["tech_sme", HIGH_TECH]})
    provenance = {"employees": {"source": "social_insurance", "as_of": "2026-01-01"},
                  "tax_credit_grade": {"source": "tax", "as_of": "2026-04-01"}}
    portrait = derive(profile, D("2026-08-02"), provenance=provenance)
    assert portrait.profile.employees is None and portrait.record["employees"] is None
    assert portrait.record["qualifications"] == ["tech_sme", "high_tech"]
    assert portrait.stale["employees"]["as_of"] == "2026-01-01" and portrait.provenance == provenance
    assert portrait.expiring == [{"code": "high_tech", "label": "高新技术企业", "valid_to": "2026-10-31",
                                  "days_left": 90}]
    assert portrait.next_change == D("2026-11-01")
    assert "高新技术企业" in portrait.tags
    later = derive(profile, D("2026-11-01"))
    assert later.record["qualifications"] == ["tech_sme"] and "高新技术企业" not in later.tags
    assert later.stale == {} and later.expiring == []


def test_plain_codes_without_provenance_derive_as_before() -> None:
    profile = parse_profile({**BASE, "qualifications": ["tech_sme"]})
    portrait = derive(profile, D("2026-08-01"))
    assert portrait.profile is profile and portrait.stale == {} and portrait.expiring == []
    assert portrait.provenance is None and portrait.next_change is None


def test_objects_are_tolerated_by_the_encoding_the_labels_and_the_tags() -> None:
    batch = ProfileBatch.from_records([{"qualifications": [HIGH_TECH, "tech_sme"]},
                                       {"qualifications": [DatedQualification(code="little_giant")]}])
    assert batch.record(0)["qualifications"] == ["high_tech", "tech_sme"]
    assert batch.record(1)["qualifications"] == ["little_giant"]
    assert value_text("qualifications", [HIGH_TECH, "tech_sme"]) == "高新技术企业（2023-11-01至2026-10-31）、科技型中小企业"
    assert value_text("qualifications", [{"code": "high_tech", "valid_to": "2026-10-31"}]) == "高新技术企业（有效期至2026-10-31）"
    assert value_text("qualifications", [DatedQualification(code="tech_sme", valid_from=D("2025-01-01"))]) == (
        "科技型中小企业（2025-01-01起）")
    assert portrait_tags({"qualifications": [HIGH_TECH, "high_tech"]}) == ["高新技术企业"]


def test_stored_profiles_with_dated_qualifications_encode_column_wise() -> None:
    docs = [json.dumps({**BASE, "qualifications": [HIGH_TECH, "tech_sme"]}, ensure_ascii=False),
            json.dumps({**BASE, "qualifications": ["tech_sme"], "needs": '想了解"code"相关政策'}, ensure_ascii=False)]
    names = values("qualifications")

    def codes(frame: object, row: int) -> list[str]:
        mask = int(frame["qualifications"][row])  # type: ignore[index]
        return [n for bit, n in enumerate(names) if mask >> bit & 1]

    assert codes(encode_profiles(docs, as_of=D("2026-10-31")), 0) == ["high_tech", "tech_sme"]
    assert codes(encode_profiles(docs, as_of=D("2026-11-01")), 0) == ["tech_sme"]
    assert codes(encode_profiles(docs), 0) == ["high_tech", "tech_sme"]
    assert codes(encode_profiles(docs), 1) == ["tech_sme"]
