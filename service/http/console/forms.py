"""The console's and the calculator's profile form: a stored profile as form values, a submitted form as a
profile (with every problem named in Chinese, without field codes), and what a what-if change did."""

from __future__ import annotations

import datetime as dt
import json
import math
import unicodedata
from collections.abc import Mapping
from typing import Any

from matching.results import MatchResult
from profiles.fields import FIELDS, PROFILE_FIELDS, Kind
from profiles.labels import value_text
from profiles.model import EnterpriseProfile, ProfileError, parse_profile
from service.app.importer import INT_FIELDS, PERCENT_FIELDS, check_json_types
from service.app.values import value_changes
from service.store.values import unstorable

NONE_OPTION = "__none__"  # "以上均无": a list field stated as empty (a list with nothing ticked is unknown)

#: The calculator asks for no code and no name (it stores nothing and identifies nobody); the profile
#: model needs both, so an anonymous calculation carries these two fixed values, which no page shows.
ANONYMOUS = {"uscc": "91320300000000000F", "name": "政策计算器（匿名试算）"}
#: Fields the public calculator leaves out of its form.
CALCULATOR_SKIPS = ("uscc", "name")

#: Fields shown in the form as a text area rather than a one-line input.
LONG_TEXT = ("business_scope", "needs")


def today() -> dt.date:
    return dt.date.today()


def label(name: str) -> str:
    """A field as a person reads it on a page: its Chinese label only (no field code)."""
    return FIELDS[name].label if name in FIELDS else name


def page_message(name: str, message: str) -> str:
    """A validation message for a page: ``employees（从业人员）不能小于0`` → ``从业人员不能小于0`` (the
    field codes stay in the API's and CLI's messages, where integrators read them)."""
    if name in FIELDS:
        return message.replace(f"{name}（{FIELDS[name].label}）", FIELDS[name].label)
    return message


def form_values(profile: dict[str, Any]) -> dict[str, Any]:
    """A stored profile as the form shows it: scalars as text, lists as lists (empty = 以上均无)."""
    values: dict[str, Any] = {}
    for name in PROFILE_FIELDS:
        value = profile.get(name)
        if value is None:
            continue
        if isinstance(value, list):
            values[name] = list(value) or [NONE_OPTION]
        elif isinstance(value, bool):
            values[name] = "true" if value else "false"
        elif isinstance(value, float) and value.is_integer():
            values[name] = str(int(value))
        else:
            values[name] = str(value)
    return values


def raw_values(form: dict[str, list[str]]) -> dict[str, Any]:
    """What the person typed, to put back into the form next to an error."""
    return {name: (form.get(name, []) if FIELDS[name].kind is Kind.SET else (form.get(name) or [""])[0])
            for name in PROFILE_FIELDS if name in form}


def profile_from_form(form: dict[str, list[str]], *, uscc: str | None = None,
                      anonymous: bool = False) -> EnterpriseProfile:
    """The profile a form describes: empty inputs are unknown, numbers may use full-width digits and
    thousands separators. Raises ProfileError with every problem, each naming its field in Chinese.
    ``anonymous``: the calculator's form, without code and name (any sent are ignored)."""
    data: dict[str, Any] = {}
    errors: list[tuple[str, str]] = []
    for name in PROFILE_FIELDS:
        if anonymous and name in CALCULATOR_SKIPS:
            continue
        spec = FIELDS[name]
        if spec.kind is Kind.SET:
            chosen = [v for v in form.get(name, []) if v]
            if NONE_OPTION in chosen:
                if len(chosen) > 1:
                    errors.append((name, f"{label(name)}：不能同时勾选“以上均无”和具体项"))
                data[name] = []
            elif chosen:
                data[name] = chosen
            continue
        raw = (form.get(name) or [""])[0].strip()
        if not raw:
            continue
        if spec.kind is Kind.BOOL:
            if raw.lower() not in ("true", "false"):
                errors.append((name, f"{label(name)}：请选择“是”“否”或“不清楚”"))
                continue
            data[name] = raw.lower() == "true"
            continue
        if spec.kind is Kind.NUMBER:
            text = unicodedata.normalize("NFKC", raw).replace(",", "").replace(" ", "")
            if name in PERCENT_FIELDS:  # 裁员率 typed as 3.2%
                text = text.removesuffix("%")
            whole = name in INT_FIELDS
            try:
                number: float = int(text) if whole else float(text)
            except ValueError:
                errors.append((name, f"{label(name)}{'应为整数' if whole else '应为数字'}，收到“{raw[:20]}”"))
                continue
            if not math.isfinite(number):
                errors.append((name, f"{label(name)}应为有限的数字"))
                continue
            data[name] = number
        else:
            data[name] = raw
    if uscc is not None:
        data["uscc"] = uscc
    if anonymous:
        data.update(ANONYMOUS)
    try:
        profile = parse_profile(data, as_of=today())  # the founding date rule of every entry point
    except ProfileError as exc:
        errors.extend(e for e in exc.errors if e[0] not in {f for f, _ in errors})
    if errors:
        errors = [(name, page_message(name, message)) for name, message in errors]
        raise ProfileError(errors[0][0], errors[0][1], errors)
    return profile


#: The calculator's hidden field holding the profile of its last answer (JSON), to compare a new answer with.
PREVIOUS = "previous"
MAX_PREVIOUS_CHARS = 8000


def previous_text(profile: EnterpriseProfile) -> str:
    """The calculator's last profile as its form carries it back (the stated fields, without the fixed code
    and name): the next calculation compares its answer with this one's."""
    stated = {k: v for k, v in profile.stated().items() if k not in CALCULATOR_SKIPS}
    return json.dumps(stated, ensure_ascii=False, separators=(",", ":"))


def previous_profile(form: dict[str, list[str]]) -> EnterpriseProfile | None:
    """The profile of the calculator's last answer, from its hidden field; None when absent or not a valid
    profile (it came back from the browser: checked like any input, and a bad one only drops the comparison)."""
    raw = (form.get(PREVIOUS) or [""])[0]
    if not raw or len(raw) > MAX_PREVIOUS_CHARS:
        return None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or any(k in CALCULATOR_SKIPS for k in data) or unstorable(data):
        return None
    data.update(ANONYMOUS)
    try:
        check_json_types(data)
        return parse_profile(data, as_of=today())
    except ProfileError:
        return None


def _comparable(profile: EnterpriseProfile) -> dict[str, Any]:
    """Every field with the model's defaults applied, so that an unstated default equals a stated one."""
    return profile.model_dump(mode="json")


def _same(name: str, a: Any, b: Any) -> bool:
    if FIELDS[name].kind is Kind.SET and isinstance(a, list) and isinstance(b, list):
        return sorted(map(str, a)) == sorted(map(str, b))
    return bool(a == b)


def carry_over(stored: Mapping[str, Any], provenance: Mapping[str, Any] | None, shown: EnterpriseProfile,
               changed: EnterpriseProfile) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The what-if profile and the provenance it is matched with. A field the operator left as the form
    showed it (``shown``) keeps its stored value — a dated qualification with its dates — and its source and
    date, so a stale value stays stale until someone states it again; a field the operator changed is their
    statement of today, which does not age."""
    before, after = _comparable(shown), _comparable(changed)
    data = changed.stated()
    kept = dict(provenance or {})
    for name in PROFILE_FIELDS:
        if _same(name, before.get(name), after.get(name)):
            if name in stored:
                data[name] = stored[name]
        else:
            for key in [k for k in kept if k == name or k.startswith(f"{name}.")]:
                del kept[key]
    return data, (kept or None)


def whatif_changes(before: EnterpriseProfile, after: EnterpriseProfile, old: MatchResult,
                   new: MatchResult) -> dict[str, Any]:
    """What the operator changed and what it did to the package."""
    a, b = _comparable(before), _comparable(after)
    fields = [{"name": n, "label": FIELDS[n].label, "before": value_text(n, a.get(n)),
               "after": value_text(n, b.get(n))} for n in PROFILE_FIELDS if not _same(n, a.get(n), b.get(n))]
    old_ids = [e.policy_id for e in old.package]
    new_ids = [e.policy_id for e in new.package]
    old_possible = {e.policy_id for e in old.possibly_eligible}
    return {
        "fields": fields,
        "added": [e for e in new.package if e.policy_id not in old_ids],
        "removed": [e for e in old.package if e.policy_id not in new_ids],
        "newly_possible": [e for e in new.possibly_eligible if e.policy_id not in old_possible],
        "value_before": old.summary.estimated_value_wan,
        "value_after": new.summary.estimated_value_wan,
        "cash_flow_before": old.summary.cash_flow_wan,
        "cash_flow_after": new.summary.cash_flow_wan,
        "value_rows": value_changes(old, new),
        "count_before": len(old_ids),
        "count_after": len(new_ids),
    }


