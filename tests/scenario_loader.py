"""Load the YAML eligibility scenarios (tests/scenarios/*.yaml) into concrete profiles."""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from profiles.uscc import check_character

SCENARIO_DIR = Path(__file__).with_name("scenarios")


@dataclass(frozen=True)
class Case:
    policy: str
    name: str
    profile: dict[str, Any]
    as_of: dt.date
    expect: str
    near_miss: bool | None
    missing: tuple[str, ...] | None
    value_wan: float | None
    query: str | None
    file: str

    @property
    def id(self) -> str:
        return f"{self.policy}::{self.name}"


def _base() -> tuple[dict[str, Any], dt.date]:
    raw = yaml.safe_load((SCENARIO_DIR / "_base.yaml").read_text(encoding="utf-8"))
    profile = dict(raw["profile"])
    profile["uscc"] = "91320312MA1XXXXXX0"[:17]
    profile["uscc"] = "913203120000000A1"
    profile["uscc"] += check_character(profile["uscc"])
    return profile, raw["as_of"]


def load_cases() -> list[Case]:
    base, base_as_of = _base()
    cases: list[Case] = []
    for path in sorted(SCENARIO_DIR.glob("*.yaml")):
        if path.name.startswith("_"):
            continue
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        file_as_of = data.get("as_of", base_as_of)
        for raw in data["cases"]:
            profile = copy.deepcopy(base)
            profile.update(raw.get("profile") or {})
            for name in raw.get("remove") or []:
                profile.pop(name, None)
            if isinstance(profile.get("established_on"), dt.date):
                profile["established_on"] = profile["established_on"].isoformat()
            cases.append(Case(
                policy=data["policy"], name=str(raw["name"]), profile=profile,
                as_of=raw.get("as_of", file_as_of), expect=raw["expect"],
                near_miss=raw.get("near_miss"),
                missing=tuple(raw["missing"]) if "missing" in raw else None,
                value_wan=raw.get("value_wan"), query=raw.get("query"), file=path.name,
            ))
    return cases
