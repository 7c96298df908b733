"""The enterprise page's profile with its origin (issue 14): every field with the Chinese name of the source
that gave it and the day it was observed, a value too old to count marked as such, each qualification with
its certificate's dates, and the disagreements between sources the merge did not resolve silently (shown on
top of the page)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from matching.freshness import age_text
from matching.results import MatchResult
from profiles.fields import FIELDS, PROFILE_FIELDS, Kind
from profiles.labels import value_text
from profiles.sources import source_label

NO_SOURCE = "来源未记录"


def _origin(provenance: Mapping[str, Any], key: str) -> dict[str, str] | None:
    """``{source, source_label, as_of}`` of one provenance entry, or None."""
    found = provenance.get(key)
    if not isinstance(found, Mapping) or not found.get("source"):
        return None
    source = str(found["source"])
    return {"source": source, "source_label": source_label(source), "as_of": str(found.get("as_of") or "")}


def _code_of(item: Any) -> str:
    return str(item.get("code")) if isinstance(item, Mapping) else str(item)


def _day(value: Any) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def certificate_state(item: Any, as_of: dt.date, expiring: set[str]) -> str:
    """A qualification's dates as a person reads them: 有效期2023-11-01至2026-10-31, with 已过期 / 尚未生效 /
    即将到期 where they apply ('' for a plain code without dates)."""
    if not isinstance(item, Mapping):
        return ""
    start, end = _day(item.get("valid_from")), _day(item.get("valid_to"))
    span = (f"有效期{start or '—'}至{end or '—'}" if start or end else "")
    if end is not None and end < as_of:
        return f"{span}，已过期，不再计入"
    if start is not None and start > as_of:
        return f"{span}，尚未生效"
    if _code_of(item) in expiring:
        return f"{span}，即将到期，请及时复审"
    return span


def field_rows(profile: Mapping[str, Any], provenance: Mapping[str, Any] | None, result: MatchResult,
               as_of: dt.date) -> list[dict[str, Any]]:
    """One row per profile field: label, value (Chinese), where it comes from and since when, whether it is
    too old to count (``stale`` with a note); list fields given per code (qualifications, flags) carry one
    ``parts`` row per code with its own source and date, and a qualification its certificate's dates."""
    prov = provenance or {}
    stale = {s.field: s for s in result.stale}
    expiring = {r.code for r in result.reminders}
    rows: list[dict[str, Any]] = []
    for name in PROFILE_FIELDS:
        if name == "uscc":  # the key every source files its rows under, shown in the page's heading
            continue
        value = profile.get(name)
        origin = _origin(prov, name)
        row: dict[str, Any] = {"name": name, "label": FIELDS[name].label, "origin": origin, "stale": None,
                               "parts": []}
        if FIELDS[name].kind is Kind.SET and isinstance(value, list):
            row["value"] = value_text(name, [_code_of(v) for v in value])
            for item in value:
                code = _code_of(item)
                row["parts"].append({"label": value_text(name, code), "origin": _origin(prov, f"{name}.{code}"),
                                     "dates": certificate_state(item, as_of, expiring)})
        else:
            row["value"] = value_text(name, value)
        row["source_text"] = (origin["source_label"] if origin else
                              NO_SOURCE if value is not None else "—")
        if name in stale:
            old = stale[name]
            age = age_text(old.max_age_days)
            row["stale"] = (f"已过时：{'超过' + age + '未更新' if age else '超过有效期限'}，"
                            f"匹配时按未知处理，请核实")
        rows.append(row)
    return rows


def conflict_rows(conflicts: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """The merge's conflicts as the page lists them: the field, and the one-line message (which source says
    what, on which day, and which one is used)."""
    out = []
    for c in conflicts or []:
        name = str(c.get("field") or "")
        label = c.get("label") or (FIELDS[name.split(".", 1)[0]].label if name.split(".", 1)[0] in FIELDS else name)
        out.append({"field": name, "label": label, "message": str(c.get("message") or "")})
    return out
