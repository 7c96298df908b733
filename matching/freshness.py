"""What a package says about the age of the firm's data (issue 14): reminders of certificates about to end,
the fields too old to count (shown, matched as unknown) and the 请核实… question that asks for each again.

The portrait (:func:`profiles.features.derive`, through :func:`profiles.merge.as_seen`) has already removed
the stale values and the expired qualifications; this module only words what it found, for the package
(:class:`matching.results.MatchResult` ``reminders`` / ``stale`` / ``questions``) and for a pushed reminder.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from profiles.columns import EPOCH
from profiles.fields import FIELDS, QUALIFICATIONS
from profiles.labels import value_text
from profiles.merge import as_seen

REMINDER_KIND = "qualification_expiring"

#: the profile fields a question settles: a question about size settles what size is derived from, so a
#: stale headcount makes the size question say 请核实 too
QUESTION_INPUTS: dict[str, tuple[str, ...]] = {
    "size": ("size", "employees", "annual_revenue_wan", "total_assets_wan"),
}


def _day(value: Any) -> str:
    return value.isoformat() if isinstance(value, dt.date) else str(value)


def reminder_message(label: str, valid_to: Any, days_left: int) -> str:
    """``高新技术企业证书将于2026-10-31到期，请及时复审`` (``已于…到期`` once the day has passed)."""
    when = "已于" if days_left < 0 else "将于"
    return f"{label}证书{when}{_day(valid_to)}到期，请及时复审"


def reminder(code: str, valid_to: Any, days_left: int, label: str | None = None) -> dict[str, Any]:
    """One reminder of a certificate ending (the package's ``reminders`` item and a pushed one's text)."""
    name = label or QUALIFICATIONS.get(code, code)
    return {"kind": REMINDER_KIND, "code": code, "label": name, "valid_to": _day(valid_to),
            "days_left": int(days_left), "message": reminder_message(name, valid_to, int(days_left))}


def reminders(expiring: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The package's reminders from the portrait's ``expiring`` items (code, label, valid_to, days_left),
    the soonest first."""
    items = [reminder(e["code"], e["valid_to"], int(e["days_left"]), e.get("label")) for e in expiring]
    return sorted(items, key=lambda r: (r["valid_to"], r["code"]))


def age_text(days: int | None) -> str:
    """A maximum age as a person says it: 1年, 16个月, 45天."""
    if days is None:
        return ""
    if days >= 365 and days % 365 == 0:
        return f"{days // 365}年"
    if days >= 28:
        return f"{max(1, round(days / 30.4))}个月"
    return f"{days}天"


def stale_fields(stale: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The package's ``stale`` list, in the order of the field table."""
    order = {name: i for i, name in enumerate(FIELDS)}
    out = []
    for name in sorted(stale, key=lambda n: (order.get(n, len(order)), n)):
        info = stale[name]
        out.append({"field": name, "label": FIELDS[name].label if name in FIELDS else name,
                    "value": info.get("value"), "source": info.get("source"),
                    "source_label": info.get("source_label") or info.get("source"),
                    "as_of": _day(info.get("as_of")), "max_age_days": info.get("max_age_days")})
    return out


def recheck_text(name: str, info: Mapping[str, Any]) -> str:
    """``纳税信用等级：上次记录为B级（税务，2024-04-01），已超过16个月`` — what is old, whose, since when."""
    label = FIELDS[name].label if name in FIELDS else name
    source = info.get("source_label") or info.get("source") or "来源不明"
    age = age_text(info.get("max_age_days"))
    over = f"，已超过{age}" if age else "，已过时"
    return f"{label}：上次记录为{value_text(name, info.get('value'), unknown='空')}（{source}，{_day(info.get('as_of'))}）{over}"


def stale_inputs(key: str, stale: Mapping[str, Any]) -> list[str]:
    """The stale fields behind the question about ``key`` (a profile field, or size)."""
    return [f for f in QUESTION_INPUTS.get(key, (key,)) if f in stale]


def recheck_question(key: str, stale: Mapping[str, Mapping[str, Any]], staff: str, firm: str) -> tuple[str, str]:
    """(staff question, firm question) for ``key``: the plain questions when nothing behind them is stale;
    otherwise ``请核实…`` with the old value, its source and date. When the stale field is the question's
    own field, the 请核实 sentence is the whole question; when it only feeds it (a headcount behind the size),
    the plain question follows."""
    old = stale_inputs(key, stale)
    if not old:
        return staff, firm
    texts = "；".join(recheck_text(f, stale[f]) for f in old)
    if old == [key]:
        return f"请核实{texts}", f"请核实贵企业的{texts}"
    return f"请核实{texts}；{staff}", f"请核实贵企业的{texts}；{firm}"


# ---- stored documents as matching sees them on a day (the nightly batch, a pushed message) ----------------
@dataclass(frozen=True)
class SeenRows:
    """Stored profiles as matching reads them on one day (:func:`profiles.merge.as_seen` per row)."""

    documents: list[str]  # JSON text: stale fields removed, qualifications the plain codes valid that day
    next_change: np.ndarray  # per row, days since 1970 of the next day the seen profile may differ (NaN: none)
    expiring: list[list[dict[str, Any]]]  # per row, the portrait's expiring items (code, label, valid_to, days_left)


def _dated(text: str) -> bool:
    """Whether a stored document may hold a dated qualification (a cheap, conservative test on its text)."""
    return '"valid_' in text


@dataclass(frozen=True)
class _Outcome:
    """What :func:`profiles.merge.as_seen` decides for a row, apart from the row's values: which fields are too
    old, the qualifications valid on the day, the reminders, the next day it may change."""

    stale: frozenset[str]
    qualifications: Any
    expiring: list[dict[str, Any]]
    next_change: float


def _outcome(data: dict[str, Any], provenance: dict[str, Any] | None, as_of: dt.date) -> _Outcome:
    # as_seen decides by the fields present, their provenance and the qualifications' dates — never by the
    # other values — so it is asked once per (provenance, fields present, qualifications) of a chunk
    stub: dict[str, Any] = dict.fromkeys(data)
    if "qualifications" in data:
        stub["qualifications"] = data["qualifications"]
    seen = as_seen(stub, provenance, as_of)
    return _Outcome(frozenset(seen.stale), seen.profile.get("qualifications"),
                    [{**e, "valid_to": _day(e["valid_to"])} for e in seen.expiring],
                    np.nan if seen.next_change is None else float((seen.next_change - EPOCH).days))


def seen_rows(documents: Sequence[Any], provenance: Sequence[Any], as_of: dt.date) -> SeenRows:
    """``documents`` (stored profile JSON text or dicts) with their ``provenance`` (JSON text, dict or None)
    as matching sees them on ``as_of`` — what :func:`profiles.merge.as_seen` makes of each row. A legacy row
    (no provenance, no dated qualification) is what it says on every day and is passed through untouched;
    the others are parsed, and as_seen is asked once per distinct (provenance, fields present,
    qualifications) — a department's feed dates many firms alike. Raises ValueError or TypeError on a row
    it cannot read (the caller isolates it)."""
    docs: list[str] = []
    changes = np.full(len(documents), np.nan)
    expiring: list[list[dict[str, Any]]] = []
    parsed: dict[Any, Any] = {}
    outcomes: dict[tuple[Any, ...], _Outcome] = {}
    for i, (doc, prov) in enumerate(zip(documents, provenance, strict=True)):
        text = doc if isinstance(doc, str) else (doc.decode() if isinstance(doc, bytes) else None)
        prov_key: Any
        if isinstance(prov, str | bytes):
            if prov not in parsed:
                parsed[prov] = json.loads(prov) or None
            prov_key, prov_data = prov, parsed[prov]
        else:
            prov_data = prov or None
            prov_key = json.dumps(prov_data, sort_keys=True, default=str) if prov_data else None
        if text is not None and prov_data is None and not _dated(text):
            docs.append(text)
            expiring.append([])
            continue
        data = json.loads(text) if text is not None else dict(doc)
        if not isinstance(data, dict):
            raise TypeError(f"a profile is a JSON object, not {type(data).__name__}")
        quals = data.get("qualifications")
        key = (prov_key if prov_data else None, frozenset(data),
               json.dumps(quals, sort_keys=True, default=str) if quals else None)
        out = outcomes.get(key)
        if out is None:
            out = outcomes[key] = _outcome(data, prov_data, as_of)
        if text is not None and not out.stale and out.qualifications == quals:
            docs.append(text)  # nothing old, no certificate out of its term: the stored text as it is
        else:
            seen = {k: v for k, v in data.items() if k not in out.stale}
            if "qualifications" in seen:
                seen["qualifications"] = out.qualifications
            docs.append(json.dumps(seen, ensure_ascii=False, default=str))
        expiring.append([dict(e) for e in out.expiring])
        changes[i] = out.next_change
    return SeenRows(docs, changes, expiring)
