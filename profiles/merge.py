"""One profile from what several sources say of a firm, and the profile as it counts on a day.

:func:`merge` applies the rules of ``profiles/sources.yaml``: per field the first authoritative rank that
has a value wins (inside a rank the newer ``as_of``); without an authoritative value the newest statement of
any other source fills the gap (self, hotline, or a department not listed for the field). Whenever another
source says something else, the disagreement is kept as a conflict with a Chinese message — never resolved
silently. Qualifications and flags merge per code. Every merged value carries its ``(source, as_of)``.

:func:`as_seen` turns a merged profile into what matching may read on ``as_of``: a value observed on day d
with maximum age N counts through d + N and is unknown from d + N + 1; a qualification counts from
``valid_from`` through ``valid_to``. Both functions are pure: data in, data out.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from profiles.fields import FIELDS, PROFILE_FIELDS, QUALIFICATIONS
from profiles.labels import value_text
from profiles.model import item_dates, qualification_code, strict_date
from profiles.sources import PER_CODE, Ranks, Rules, rules

#: What one source says of one firm: ``{"values": {field: value}, "as_of": {field: "YYYY-MM-DD"}}`` (per
#: field the newest as_of of that source). ``as_of`` may also be one date for every field.
SourceDoc = Mapping[str, Any]


class Fact(NamedTuple):
    """One source's statement of one field (or of one code of a per-code field)."""

    source: str
    as_of: dt.date
    value: Any


@dataclass(frozen=True)
class Merged:
    """The merged profile (JSON-ready), where each value came from, and the disagreements."""

    profile: dict[str, Any]
    #: field (and ``qualifications.<code>`` / ``flags.<code>``) → {"source", "as_of"}
    provenance: dict[str, dict[str, str]]
    #: {"field", ["code",] "label", "chosen": {...}, "others": [{...}], "message"}, in field order
    conflicts: list[dict[str, Any]]


@dataclass(frozen=True)
class Seen:
    """A merged profile as it counts on one day."""

    profile: dict[str, Any]
    #: field → {"value", "source", "source_label", "as_of", "max_age_days"}: removed as too old
    stale: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: valid qualifications ending within the reminder window: {"code", "label", "valid_to", "days_left"}
    expiring: list[dict[str, Any]] = field(default_factory=list)
    #: the first later day on which the profile, the stale fields or the expiring certificates may change
    next_change: dt.date | None = None


# ---- merge ---------------------------------------------------------------------------------------------
def merge(docs: Mapping[str, SourceDoc]) -> Merged:
    """Merge what each source says (``{source: SourceDoc}``) into one profile with provenance and conflicts."""
    table = rules()
    for name in docs:
        table.source(name)  # an unknown source is an error, not a silent gap
    profile: dict[str, Any] = {}
    provenance: dict[str, dict[str, str]] = {}
    conflicts: list[dict[str, Any]] = []
    for name in PROFILE_FIELDS:
        facts = _facts(docs, name)
        if not facts:
            continue
        if name in PER_CODE:
            profile[name] = _merge_codes(table, name, facts, provenance, conflicts)
            continue
        ranks = table.ranks(name)
        chosen = _pick(table, ranks, facts)
        profile[name] = chosen.value
        provenance[name] = _where(chosen)
        others = [f for f in facts if f.source != chosen.source and not same_value(f.value, chosen.value)]
        if others:
            conflicts.append(_conflict(table, name, None, ranks, chosen, others, FIELDS[name].label,
                                       lambda v, n=name: _shown(n, v)))
    return Merged(profile, provenance, conflicts)


def _facts(docs: Mapping[str, SourceDoc], name: str) -> list[Fact]:
    out = []
    for source, doc in docs.items():
        values = doc.get("values") or {}
        if values.get(name) is None:
            continue
        dates = doc.get("as_of")
        day = dates if isinstance(dates, str | dt.date) else (dates or {}).get(name)
        if day is None:
            raise ValueError(f"{source}: no as_of for {name}")
        out.append(Fact(source, strict_date(day), values[name]))
    return out


def _pick(table: Rules, ranks: Ranks, facts: list[Fact]) -> Fact:
    """The first authoritative rank with a statement, newest inside it; else the newest of all. Same day:
    the source listed first (in the rank, else in the file) wins — so the result never depends on the
    order of the documents."""
    for rank in ranks:
        inside = [f for f in facts if f.source in rank]
        if inside:
            return max(inside, key=lambda f: (f.as_of, -rank.index(f.source)))
    return max(facts, key=lambda f: (f.as_of, -table.order(f.source)))


def _where(fact: Fact) -> dict[str, str]:
    return {"source": fact.source, "as_of": fact.as_of.isoformat()}


def same_value(a: Any, b: Any) -> bool:
    """Do two statements agree? Numbers within a relative 1e-9, lists as sets, dates as dates."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-9)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return {_key(x) for x in a} == {_key(x) for x in b}
    return _key(a) == _key(b)


def _key(value: Any) -> Any:
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, Mapping):
        return tuple(sorted((k, _key(v)) for k, v in value.items() if v is not None))
    return value


def _speaks(table: Rules, source: str, name: str, code: str, items: list[Any]) -> bool:
    """Does a source's list say anything about ``code``? Self and hotline speak for every code (their list
    is complete); a department for the codes it is authoritative for (its list is complete for those), and
    of any other code only when it lists it."""
    spec = table.source(source)
    return spec.is_open or code in spec.codes.get(name, ()) or bool(items)


def _merge_codes(table: Rules, name: str, facts: list[Fact], provenance: dict[str, dict[str, str]],
                 conflicts: list[dict[str, Any]]) -> list[Any]:
    """Qualifications and flags: each code merged on its own; the list is known once any source gave it."""
    vocabulary = FIELDS[name].vocabulary
    merged: list[Any] = []
    newest: Fact | None = None
    for code, label in vocabulary.items():
        statements = []
        for fact in facts:
            items = list(dict.fromkeys(_hashable(i) for i in fact.value if qualification_code(i) == code))
            if _speaks(table, fact.source, name, code, items):
                statements.append(Fact(fact.source, fact.as_of, [_plain(i) for i in items]))
        if not statements:
            continue
        ranks = table.ranks(name, code)
        chosen = _pick(table, ranks, statements)
        merged.extend(chosen.value)
        provenance[f"{name}.{code}"] = _where(chosen)
        if newest is None or (chosen.as_of, -table.order(chosen.source)) > (newest.as_of, -table.order(newest.source)):
            newest = chosen
        others = [f for f in statements if f.source != chosen.source and _code_differs(f.value, chosen.value)]
        if others:
            conflicts.append(_conflict(table, name, code, ranks, chosen, others,
                                       f"{FIELDS[name].label}（{label}）", _code_shown))
    if newest is not None:
        provenance[name] = _where(newest)
    return merged


def _hashable(item: Any) -> Any:
    return tuple(sorted(item.items())) if isinstance(item, Mapping) else item


def _plain(item: Any) -> Any:
    return dict(item) if isinstance(item, tuple) else item


def _code_differs(a: list[Any], b: list[Any]) -> bool:
    """Has / has not, or both dated with different dates (a plain code agrees with a dated one)."""
    if bool(a) != bool(b):
        return True
    dates_a = {item_dates(i) for i in a if isinstance(i, Mapping)}
    dates_b = {item_dates(i) for i in b if isinstance(i, Mapping)}
    return bool(dates_a and dates_b and dates_a != dates_b)


def _code_shown(items: list[Any]) -> str:
    if not items:
        return "无"
    periods = []
    for item in items:
        start, end = item_dates(item)
        if start and end:
            periods.append(f"{start.isoformat()}至{end.isoformat()}")
        elif end:
            periods.append(f"有效期至{end.isoformat()}")
        elif start:
            periods.append(f"{start.isoformat()}起")
    return f"有（{'，'.join(periods)}）" if periods else "有"


def _shown(name: str, value: Any) -> str:
    text = value_text(name, value)
    return text if len(text) <= 40 else text[:40] + "…"


def _conflict(table: Rules, name: str, code: str | None, ranks: Ranks, chosen: Fact, others: list[Fact],
              label: str, shown: Any) -> dict[str, Any]:
    def rank(source: str) -> int:
        return next((i for i, r in enumerate(ranks) if source in r), len(ranks))

    others = sorted(others, key=lambda f: (rank(f.source), -f.as_of.toordinal(), table.order(f.source)))

    def entry(fact: Fact) -> dict[str, Any]:
        return {"source": fact.source, "source_label": table.label(fact.source), "as_of": fact.as_of.isoformat(),
                "value": fact.value}

    def said(fact: Fact) -> str:
        return f"{table.label(fact.source)}（{fact.as_of.isoformat()}）"

    by_rank = all(rank(f.source) > rank(chosen.source) for f in others)
    basis = f"以{table.label(chosen.source)}为准" if by_rank else f"以较新的{table.label(chosen.source)}为准"
    message = (f"{label}：{said(chosen)}记为{shown(chosen.value)}，"
               + "，".join(f"{said(f)}为{shown(f.value)}" for f in others) + f"；{basis}，请核实")
    out: dict[str, Any] = {"field": name}
    if code is not None:
        out["code"] = code
    out.update({"label": label, "chosen": entry(chosen), "others": [entry(f) for f in others], "message": message})
    return out


# ---- as seen on a day ----------------------------------------------------------------------------------
def as_seen(profile: Mapping[str, Any], provenance: Mapping[str, Any] | None, as_of: dt.date) -> Seen:
    """The profile as it counts on ``as_of``: too old values removed (listed in ``stale``), qualifications
    reduced to the plain codes valid that day, certificates ending within the reminder window listed in
    ``expiring``. Without provenance (a legacy profile) nothing ages; qualification dates still apply."""
    table = rules()
    seen = dict(profile)
    stale: dict[str, dict[str, Any]] = {}
    later: list[dt.date] = []
    for name in list(seen):
        age = table.max_age_days(name)
        observed = _observed(provenance, name) if provenance and age is not None else []
        if age is None or not observed:
            continue
        day, source = min(observed)
        last = day + dt.timedelta(days=age)
        if as_of > last:
            stale[name] = {"value": seen.pop(name), "source": source, "source_label": table.label(source),
                           "as_of": day.isoformat(), "max_age_days": age}
        else:
            later.append(last + dt.timedelta(days=1))
    expiring: list[dict[str, Any]] = []
    items = seen.get("qualifications")
    if isinstance(items, list):
        seen["qualifications"], expiring = _qualifications_on(items, as_of, table.reminder_window_days, later)
    return Seen(seen, stale, expiring, min((d for d in later if d > as_of), default=None))


def _observed(provenance: Mapping[str, Any], name: str) -> list[tuple[dt.date, str]]:
    """(as_of, source) of a field's provenance; for a per-code field, of each of its codes."""
    keys: Iterable[str] = [name]
    if name in PER_CODE:
        codes = [k for k in provenance if k.startswith(name + ".")]
        keys = codes or keys
    out = []
    for key in keys:
        entry = provenance.get(key)
        if isinstance(entry, Mapping) and entry.get("as_of"):
            out.append((strict_date(entry["as_of"]), str(entry.get("source", ""))))
    return out


def _qualifications_on(items: list[Any], as_of: dt.date, window: int,
                       later: list[dt.date]) -> tuple[list[str], list[dict[str, Any]]]:
    dated = [(qualification_code(i), *item_dates(i)) for i in items]
    codes: dict[str, None] = {}
    for code, start, end in dated:
        if (start is None or start <= as_of) and (end is None or as_of <= end):
            codes[code] = None
        if start is not None and start > as_of:
            later.append(start)
        if end is not None and end >= as_of:
            later.append(end + dt.timedelta(days=1))
    expiring = []
    for code in codes:
        end = _lapse(code, dated, as_of)
        if end is None:
            continue
        opens = end - dt.timedelta(days=window)
        if opens > as_of:
            later.append(opens)
        else:
            expiring.append({"code": code, "label": QUALIFICATIONS.get(code, code), "valid_to": end.isoformat(),
                             "days_left": (end - as_of).days})
    return list(codes), expiring


def _lapse(code: str, dated: list[tuple[str, dt.date | None, dt.date | None]], as_of: dt.date) -> dt.date | None:
    """The last day of ``code``'s unbroken validity from ``as_of`` (successive certificates join), None when
    it does not end."""
    end = as_of - dt.timedelta(days=1)
    while True:
        nxt = end + dt.timedelta(days=1)
        covering = [e for c, s, e in dated if c == code and (s is None or s <= nxt) and (e is None or nxt <= e)]
        if not covering:
            return end
        if any(e is None for e in covering):
            return None
        end = max(e for e in covering if e is not None)


def provenance_on(provenance: Mapping[str, Any] | None, as_of: dt.date) -> dict[str, dict[str, Any]]:
    """Each provenance entry with ``source_label`` and ``stale`` on ``as_of`` (for the API and the console):
    an entry is stale when its field's maximum age has passed; ``qualifications`` / ``flags`` themselves are
    stale when any of their codes is (as :func:`as_seen` then drops the whole list)."""
    table = rules()
    out: dict[str, dict[str, Any]] = {}
    for key, entry in (provenance or {}).items():
        age = table.max_age_days(key)
        day = strict_date(entry["as_of"])
        out[key] = {"source": entry["source"], "source_label": table.label(entry["source"]),
                    "as_of": day.isoformat(), "stale": age is not None and as_of > day + dt.timedelta(days=age)}
    for name in PER_CODE:
        if name in out:
            out[name]["stale"] = any(v["stale"] for k, v in out.items() if k == name or k.startswith(name + "."))
    return out


def aging_provenance(provenance: Mapping[str, Any] | None) -> dict[str, str]:
    """The as_of of every provenance entry whose field ages: what, with the profile, decides what matching
    sees (a re-confirmed value with a newer date moves its staleness day)."""
    table = rules()
    return {key: str(entry["as_of"]) for key, entry in sorted((provenance or {}).items())
            if table.max_age_days(key) is not None}
