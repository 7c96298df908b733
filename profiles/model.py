"""EnterpriseProfile v1 (SPEC §2.1): the enterprise as it is stated, strictly validated.

A field that is absent is *unknown*, not false; a list field that is present is complete
(empty = none). Errors name the field in Chinese so a hotline operator can act on them.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from profiles.fields import FIELDS, PROFILE_FIELDS, suggest
from profiles.industry import IndustryCodeError, parse_industry_code
from profiles.messages import type_text
from profiles.uscc import UsccError, normalize_uscc

EntityType = Literal["enterprise", "individual_business", "farmer_coop", "branch", "other"]
Region = Literal[
    "鼓楼区", "云龙区", "贾汪区", "泉山区", "铜山区", "丰县", "沛县", "睢宁县", "新沂市", "邳州市",
    "徐州经济技术开发区", "徐州高新技术产业开发区", "徐州淮海国际港务区", "市外",
]
Size = Literal["large", "medium", "small", "micro"]
Ownership = Literal["private", "state_owned", "foreign", "collective", "other"]
ListingStatus = Literal["unlisted", "reserve", "neeq", "listed"]
TaxCreditGrade = Literal["A", "B", "M", "C", "D"]
TaxpayerType = Literal["general", "small_scale"]
VatFilingPeriod = Literal["monthly", "quarterly"]
Qualification = Literal[
    "high_tech", "tech_sme", "specialized_sme", "little_giant", "single_champion",
    "tech_center", "postdoc_station", "skill_master_studio",
]
Trade = Literal["importer", "exporter", "cross_border_ecommerce", "rail_freight"]
Flag = Literal[
    "abnormal_operation", "administrative_penalty", "seriously_dishonest", "bankruptcy",
    "in_difficulty", "labor_dispute", "unpaid_receivables", "criminal_case",
]

# Upper bounds keep absurd input out (and numbers inside float precision): 10 million staff,
# 1e9 万元 (10 quadrillion yuan) are far above any real firm.
Count = Annotated[int, Field(ge=0, le=10_000_000, strict=True)]
Wan = Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)]
Percent = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
Text = Annotated[str, StringConstraints(strip_whitespace=True)]


class ProfileError(ValueError):
    """An invalid profile: ``field`` names the first offending field, message in Chinese."""

    def __init__(self, field: str, message: str, errors: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.errors = errors or [(field, message)]


_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def strict_date(value: Any) -> dt.date:
    """A date given as ``YYYY-MM-DD`` text (or a ``date``, not a ``datetime``): nothing else is a date.

    ``2024-06-01T00:00:00``, ``20240601``, ``2024-6-1`` and numbers (timestamps) are refused, where the
    lax parsers (pydantic, ``date.fromisoformat``) would take some of them. Raises a pydantic error whose
    message is Chinese (see :func:`parse_profile`)."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        text = value.strip()
        if _ISO_DATE.fullmatch(text):
            try:
                return dt.date.fromisoformat(text)
            except ValueError:
                raise PydanticCustomError("pf_message", "不是有效的日期（收到“{shown}”）",
                                          {"shown": text[:40]}) from None
        shown = text[:40]
    else:
        shown = repr(value)[:40]
    raise PydanticCustomError("pf_message", "须为 YYYY-MM-DD 格式的日期（收到“{shown}”）", {"shown": shown})


def check_founding(established_on: dt.date | None, as_of: dt.date) -> None:
    """The founding date rule of every entry point: not after ``as_of`` (today when a profile is
    stored, the evaluation day when one is matched). Raises :class:`ProfileError`."""
    if established_on is not None and established_on > as_of:
        label = FIELDS["established_on"].label
        raise ProfileError("established_on", f"established_on（{label}）不能晚于{as_of.isoformat()}"
                                             f"（收到 {established_on.isoformat()}）")


class DatedQualification(BaseModel):
    """A qualification with its certificate's dates: ``{"code": "high_tech", "valid_from": "2023-11-01",
    "valid_to": "2026-10-31"}``. ``valid_to`` is the last valid day; either date may be absent (open)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: Qualification
    valid_from: dt.date | None = None
    valid_to: dt.date | None = None

    @field_validator("valid_from", "valid_to", mode="before")
    @classmethod
    def _strict_date(cls, value: Any) -> Any:
        return None if value is None else strict_date(value)

    @model_validator(mode="after")
    def _ordered(self) -> DatedQualification:
        if self.valid_from and self.valid_to and self.valid_from > self.valid_to:
            raise PydanticCustomError(
                "pf_message", "{code} 的有效期起始日期 {start} 晚于截止日期 {end}",
                {"code": self.code, "start": self.valid_from.isoformat(), "end": self.valid_to.isoformat()})
        return self

    def valid_on(self, day: dt.date) -> bool:
        """Does the certificate count on ``day`` (valid_from ≤ day ≤ valid_to, an absent bound open)?"""
        return (self.valid_from is None or self.valid_from <= day) and (self.valid_to is None or day <= self.valid_to)


def _qualification_kind(value: Any) -> str:
    return "dated" if isinstance(value, dict | DatedQualification) else "code"


#: One item of ``qualifications``: a plain code or a dated certificate.
QualificationItem = Annotated[
    Annotated[Qualification, Tag("code")] | Annotated[DatedQualification, Tag("dated")],
    Discriminator(_qualification_kind),
]
#: Plain codes in one list (there are 8); dated items may repeat a code (successive certificates).
MAX_PLAIN_QUALIFICATIONS, MAX_QUALIFICATION_ITEMS = 8, 24


def qualification_code(item: Any) -> str:
    """The code of a qualification item: a plain code, a :class:`DatedQualification` or its JSON object."""
    if isinstance(item, DatedQualification):
        return item.code
    if isinstance(item, dict):
        return str(item.get("code"))
    return str(item)


def item_dates(item: Any) -> tuple[dt.date | None, dt.date | None]:
    """(valid_from, valid_to) of a qualification item (None, None for a plain code); JSON dates are parsed."""
    if isinstance(item, DatedQualification):
        return item.valid_from, item.valid_to
    if isinstance(item, dict):
        start, end = item.get("valid_from"), item.get("valid_to")
        return (None if start is None else strict_date(start)), (None if end is None else strict_date(end))
    return None, None


def valid_codes(items: Any, as_of: dt.date) -> list[str]:
    """The codes of ``items`` that count on ``as_of``, in order, each once (a plain code always counts)."""
    out: dict[str, None] = {}
    for item in items:
        start, end = item_dates(item)
        if (start is None or start <= as_of) and (end is None or as_of <= end):
            out[qualification_code(item)] = None
    return list(out)


class EnterpriseProfile(BaseModel):
    """The stated profile. Derived fields (size if absent, tags …) live in ``profiles.features``."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    uscc: str
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    entity_type: EntityType = "enterprise"
    region: Region | None = None
    industry_code: str | None = None
    established_on: dt.date | None = None
    employees: Count | None = None
    annual_revenue_wan: Wan | None = None
    total_assets_wan: Wan | None = None
    size: Size | None = None
    ownership: Ownership = "private"
    listing_status: ListingStatus | None = None
    tax_credit_grade: TaxCreditGrade | None = None
    taxpayer_type: TaxpayerType | None = None
    monthly_sales_wan: Wan | None = None
    vat_filing_period: VatFilingPeriod | None = None
    taxable_income_wan: Wan | None = None
    rd_expense_wan: Wan | None = None
    annual_payroll_wan: Wan | None = None
    unemployment_insurance_paid_wan: Wan | None = None
    layoff_rate_pct: Percent | None = None
    disabled_employees: Count | None = None
    deductible_input_vat_wan: Wan | None = None
    financing_need_wan: Wan | None = None
    has_union: Annotated[bool, Field(strict=True)] | None = None
    qualifications: list[QualificationItem] | None = Field(None, max_length=MAX_QUALIFICATION_ITEMS)
    trade: list[Trade] | None = Field(None, max_length=4)
    patents: Count | None = None
    trademarks: Count | None = None
    flags: list[Flag] | None = Field(None, max_length=8)
    business_scope: Annotated[str, Field(max_length=2000)] | None = None
    needs: Annotated[str, Field(max_length=1000)] | None = None

    @field_validator("uscc", mode="before")
    @classmethod
    def _uscc(cls, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError("统一社会信用代码应为文本")
        try:
            return normalize_uscc(value)
        except UsccError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("industry_code", mode="before")
    @classmethod
    def _industry(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError("行业代码应为文本，如 C3411")
        try:
            return parse_industry_code(value).code
        except IndustryCodeError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("established_on", mode="before")
    @classmethod
    def _strict_date(cls, value: Any) -> Any:
        return None if value is None else strict_date(value)

    @field_validator("established_on")
    @classmethod
    def _not_too_old(cls, value: dt.date | None) -> dt.date | None:
        if value is not None and value.year < 1900:
            raise ValueError("成立日期早于1900年，请核对")
        return value

    @field_validator("qualifications", mode="before")
    @classmethod
    def _plain_codes(cls, value: Any) -> Any:
        if isinstance(value, list) and sum(isinstance(v, str) for v in value) > MAX_PLAIN_QUALIFICATIONS:
            raise PydanticCustomError("too_long", "too long", {"max_length": MAX_PLAIN_QUALIFICATIONS})
        return value

    @field_validator("qualifications", "trade", "flags")
    @classmethod
    def _dedupe(cls, value: list[Any] | None) -> list[Any] | None:
        return None if value is None else list(dict.fromkeys(value))

    def stated(self) -> dict[str, Any]:
        """The fields that were stated (unknown ones omitted), JSON-ready. A dated qualification stays an
        object with the dates it was given; a plain code stays a plain string."""
        return self.model_dump(mode="json", exclude_unset=True)

    @property
    def qualification_codes(self) -> list[str] | None:
        """The codes of ``qualifications`` regardless of dates (None = unknown)."""
        if self.qualifications is None:
            return None
        return list(dict.fromkeys(qualification_code(q) for q in self.qualifications))

    def at(self, as_of: dt.date) -> EnterpriseProfile:
        """The profile as it counts on ``as_of``: ``qualifications`` reduced to the plain codes valid that day
        (valid_from ≤ as_of ≤ valid_to; an expired or not yet valid certificate does not count). Matching
        only ever sees this form."""
        if self.qualifications is None or all(isinstance(q, str) for q in self.qualifications):
            return self
        return self.model_copy(update={"qualifications": valid_codes(self.qualifications, as_of)})


def _message(err: dict[str, Any]) -> tuple[str, str]:
    loc = [str(p) for p in err["loc"]]
    field = loc[0] if loc else "profile"
    label = FIELDS[field].label if field in FIELDS else field
    kind, ctx = err["type"], err.get("ctx") or {}
    if field == "qualifications" and "dated" in loc[1:3]:
        return field, _item_message(loc, kind, ctx, err)
    if kind == "extra_forbidden":
        return field, f"未知字段“{field}”{suggest(field, PROFILE_FIELDS).replace(' — did you mean', '，是否应为').replace('?', '？')}"
    if kind == "literal_error":
        allowed = FIELDS[field].vocabulary if field in FIELDS else {}
        shown = "、".join(f"{k}（{v}）" if k != v else k for k, v in allowed.items()) or ctx.get("expected", "")
        return field, f"{field}（{label}）取值无效：{err.get('input')!r}，应为 {shown}"
    if kind in ("greater_than_equal", "greater_than"):
        return field, f"{field}（{label}）不能小于{ctx.get('ge', ctx.get('gt'))}"
    if kind in ("less_than_equal", "less_than"):
        return field, f"{field}（{label}）超出合理范围（不能大于{ctx.get('le', ctx.get('lt'))}）"
    if kind in ("string_too_long", "too_long"):
        limit = ctx.get("max_length")
        unit = "字" if kind == "string_too_long" else "项"
        return field, f"{field}（{label}）过长，最多{limit}{unit}"
    if kind == "pf_message":  # our own Chinese messages (strict_date)
        return field, f"{field}（{label}）{err['msg']}"
    if kind == "value_error":
        return field, f"{field}（{label}）：{str(ctx.get('error', err['msg']))}"
    text = type_text(kind, ctx) or err["msg"]
    return field, f"{field}（{label}）{text}"


def _item_message(loc: list[str], kind: str, ctx: dict[str, Any], err: dict[str, Any]) -> str:
    """An error inside a dated qualification object, naming the item and its key."""
    head = f"qualifications（{FIELDS['qualifications'].label}）第{int(loc[1]) + 1}项"
    key = loc[3] if len(loc) > 3 else ""
    if kind == "extra_forbidden":
        return f"{head}含未知的键“{key}”，只能有 code、valid_from、valid_to"
    if kind == "missing":
        return f"{head}缺少 {key}（资质代码）"
    if kind == "literal_error":
        shown = "、".join(f"{k}（{v}）" for k, v in FIELDS["qualifications"].vocabulary.items())
        return f"{head}的 code 取值无效：{err.get('input')!r}，应为 {shown}"
    text = err["msg"] if kind == "pf_message" else (type_text(kind, ctx) or err["msg"])
    return f"{head}{'的 ' + key + ' ' if key else '：'}{text}"


def parse_profile(data: Any, *, as_of: dt.date | None = None) -> EnterpriseProfile:
    """Validate a JSON-like mapping; raises :class:`ProfileError` naming the field in Chinese.

    ``as_of``: input from outside (API, importer, console form, CLI) passes the day its founding date
    must not be after — today when the profile is to be stored, the evaluation day when it is matched
    (:func:`check_founding`). Profiles read back from storage are parsed without it."""
    if not isinstance(data, dict):
        raise ProfileError("profile", "企业画像应为JSON对象")
    try:
        profile = EnterpriseProfile.model_validate(data)
    except ValidationError as exc:
        errors = [_message(dict(e)) for e in exc.errors(include_url=False)]
        field, message = errors[0]
        raise ProfileError(field, message, errors) from None
    if as_of is not None:
        check_founding(profile.established_on, as_of)
    return profile
