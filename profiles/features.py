"""Derived features (企业画像): size, SME status, industry levels, age and Chinese tags.

``derive`` turns a stated :class:`EnterpriseProfile` into its encoded batch of one (the engine's input), the
flat record of profile fields + derived fields (None = unknown) and the labels people see. The derived
fields are computed once, by the column encoding (:meth:`profiles.columns.ProfileBatch.with_derived`),
here as in the nightly batch.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from profiles.columns import DERIVED_FIELDS, ProfileBatch, decode
from profiles.fields import FIELDS, QUALIFICATIONS, SIZES
from profiles.industry import parse_industry_code
from profiles.merge import Seen, as_seen
from profiles.model import EnterpriseProfile, qualification_code
from profiles.size_class import SizeResult, category_for, category_names, classify


@dataclass(frozen=True)
class Portrait:
    """A profile with its derived features: what the engine evaluates and people read."""

    profile: EnterpriseProfile
    as_of: dt.date
    record: dict[str, Any]  # every profile field and derived field -> value or None
    batch: ProfileBatch  # the profile encoded as a batch of one, with its derived fields (the engine's input)
    size_result: SizeResult
    size_source: str | None  # "stated" | "derived" | None
    warnings: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    #: fields too old to count on ``as_of`` (removed from ``profile``): field → {value, source, source_label,
    #: as_of, max_age_days}
    stale: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: valid certificates ending within the reminder window: {code, label, valid_to, days_left}
    expiring: list[dict[str, Any]] = field(default_factory=list)
    #: where each stored value came from (None: a profile without sources)
    provenance: dict[str, Any] | None = None
    #: the first later day on which the seen profile may change (a value ages, a certificate starts or ends)
    next_change: dt.date | None = None

    def to_json(self) -> dict[str, Any]:
        """SPEC §2.3 ``enterprise``: the stated profile plus derived fields."""
        out = self.profile.stated()
        for name in ("size", "is_sme", "industry_section", "industry_division", "industry_group",
                     "size_category", "age_years"):
            out[name] = self.record[name]
        out["size_source"] = self.size_source
        out["size_basis"] = self.size_result.basis
        out["industry_name"] = _industry_name(self.profile.industry_code)
        out["tags"] = self.tags
        out["warnings"] = self.warnings
        out["as_of"] = self.as_of.isoformat()
        return out


def _industry_name(code: str | None) -> str | None:
    return parse_industry_code(code).name if code else None


def seen_profile(profile: EnterpriseProfile, as_of: dt.date,
                 provenance: dict[str, Any] | None = None) -> tuple[EnterpriseProfile, Seen | None]:
    """The profile as it counts on ``as_of`` (:func:`profiles.merge.as_seen`) and the :class:`Seen` answer;
    a profile without provenance and dated qualifications is returned as it is (None for the answer)."""
    if provenance is None and all(isinstance(q, str) for q in profile.qualifications or ()):
        return profile, None
    seen = as_seen(profile.stated(), provenance, as_of)
    return EnterpriseProfile.model_validate(seen.profile), seen


def derive(profile: EnterpriseProfile, as_of: dt.date | None = None,
           provenance: dict[str, Any] | None = None) -> Portrait:
    """The portrait of ``profile`` on ``as_of`` (today by default): values too old for their field
    (``provenance``) count as unknown and expired certificates as absent (:func:`profiles.merge.as_seen`);
    ``Portrait.profile`` is that seen profile."""
    as_of = as_of or dt.date.today()
    profile, seen = seen_profile(profile, as_of, provenance)
    batch = ProfileBatch.from_records([profile.model_dump()]).with_derived(as_of)
    derived = batch.record(0)
    record: dict[str, Any] = {name: getattr(profile, name) for name in FIELDS if not FIELDS[name].derived}
    record.update({name: derived[name] for name in ("size", *DERIVED_FIELDS)})
    derived_size = decode("size", batch.columns["size__derived"][0])
    warnings: list[str] = []
    code = parse_industry_code(profile.industry_code) if profile.industry_code else None
    # the basis of the size class, in words (the class itself is the column derivation's)
    result = classify(category_for(code) if code else None, profile.employees, profile.annual_revenue_wan,
                      profile.total_assets_wan)
    source = "stated" if profile.size else ("derived" if derived_size else None)
    if profile.size and derived_size and profile.size != derived_size:
        warnings.append(
            f"填报的企业规模为{SIZES[profile.size]}，但按填报数据测算为{SIZES[derived_size]}"
            f"（{result.basis}）；以填报为准，请核实"
        )
    if profile.established_on and profile.established_on > as_of:
        warnings.append(f"成立日期{profile.established_on}晚于评估日期{as_of}，请核对")
    portrait = Portrait(profile, as_of, record, batch, result, source, warnings,
                        stale=seen.stale if seen else {}, expiring=seen.expiring if seen else [],
                        provenance=provenance, next_change=seen.next_change if seen else None)
    portrait.tags.extend(portrait_tags(record))
    return portrait


def portrait_tags(record: dict[str, Any]) -> list[str]:
    """Human-readable Chinese labels (企业画像标签), most telling first."""
    tags: list[str] = []
    size = record.get("size")
    if size in ("small", "micro"):
        tags.append("小微企业")
    elif size == "medium":
        tags.append("中型企业")
    elif size == "large":
        tags.append("大型企业")
    if record.get("entity_type") == "individual_business":
        tags.append("个体工商户")
    tags += list(dict.fromkeys(QUALIFICATIONS[qualification_code(q)] for q in record.get("qualifications") or []))
    age = record.get("age_years")
    if age is not None and age < 1:
        tags.append("新办企业")
    elif age is not None and age < 3:
        tags.append("初创企业（3年内）")
    grade = record.get("tax_credit_grade")
    if grade:
        tags.append(f"{grade}级纳税人")
    if record.get("taxpayer_type") == "small_scale":
        tags.append("小规模纳税人")
    listing = record.get("listing_status")
    if listing and listing != "unlisted":
        tags.append(FIELDS["listing_status"].value_label(listing))
    tags += [FIELDS["trade"].value_label(t) for t in record.get("trade") or []]
    if (record.get("patents") or 0) > 0:
        tags.append("有发明专利")
    if record.get("ownership") and record["ownership"] != "private":
        tags.append(FIELDS["ownership"].value_label(record["ownership"]) + "企业")
    tags += [FIELDS["flags"].value_label(f) for f in record.get("flags") or []]
    if record.get("size_category"):
        tags.append(category_names()[record["size_category"]])
    return tags
