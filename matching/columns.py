"""Column batches of profiles: the layout the vectorised rule engine reads.

Numbers are float64 with NaN for unknown; categories and booleans are int16 codes into the
field's vocabulary with -1 for unknown; sets are uint16 bit masks plus a ``known`` mask.
``industry_code`` is kept as strings and ``established_on`` as days since 1970-01-01 (NaN =
unknown) so that derived fields can be computed for a whole batch at once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pandas as pd

from policies.rules import vocabulary
from profiles import size_class
from profiles.fields import FIELDS, PROFILE_FIELDS, RULE_FIELDS, Kind
from profiles.industry import group_value, parse_industry_code

EPOCH = dt.date(1970, 1, 1)
STATED_RULE_FIELDS = tuple(f for f in RULE_FIELDS if not FIELDS[f].derived)
DERIVED_FIELDS = tuple(f for f in RULE_FIELDS if FIELDS[f].derived)


@cache
def codes(field: str) -> dict[str, int]:
    """Value -> code for a category/bool/set field."""
    if FIELDS[field].kind is Kind.BOOL:
        return {"false": 0, "true": 1}
    return {value: i for i, value in enumerate(vocabulary(field))}


@cache
def values(field: str) -> tuple[str, ...]:
    return tuple(codes(field))


def encode_value(field: str, value: Any) -> int:
    if FIELDS[field].kind is Kind.BOOL:
        return int(bool(value))
    return codes(field)[value]


@dataclass
class ProfileBatch:
    """A column batch of ``n`` profiles (optionally with derived fields)."""

    n: int
    columns: dict[str, np.ndarray]
    as_of: dt.date | None = None  # set once derived fields are present

    # ---- construction -------------------------------------------------------------
    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> ProfileBatch:
        """Encode flat records (stated profile fields; missing key or None = unknown)."""
        rows = list(records)
        n = len(rows)
        cols: dict[str, np.ndarray] = {}
        for name in STATED_RULE_FIELDS:
            kind = FIELDS[name].kind
            if kind is Kind.NUMBER:
                cols[name] = np.array(
                    [np.nan if r.get(name) is None else float(r[name]) for r in rows], dtype=np.float64
                )
            elif kind in (Kind.CATEGORY, Kind.BOOL):
                cols[name] = np.array(
                    [-1 if r.get(name) is None else encode_value(name, r[name]) for r in rows],
                    dtype=np.int16,
                )
            elif kind is Kind.SET:
                lookup = codes(name)
                masks = np.zeros(n, dtype=np.uint16)
                known = np.zeros(n, dtype=bool)
                for i, r in enumerate(rows):
                    items = r.get(name)
                    if items is not None:
                        known[i] = True
                        m = 0
                        for item in items:
                            m |= 1 << lookup[item]
                        masks[i] = m
                cols[name] = masks
                cols[name + "__known"] = known
        cols["industry_code"] = np.array([r.get("industry_code") for r in rows], dtype=object)
        cols["established_on"] = np.array(
            [np.nan if r.get("established_on") is None else _days(r["established_on"]) for r in rows],
            dtype=np.float64,
        )
        return cls(n, cols)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> ProfileBatch:
        """From the encoded frame written by :meth:`to_frame` (Parquet/Arrow friendly)."""
        cols = {name: frame[name].to_numpy() for name in frame.columns if name != "uscc"}
        out = cls(len(frame), cols)
        if "uscc" in frame.columns:
            out.columns["uscc"] = frame["uscc"].to_numpy(dtype=object)
        return out

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({k: v for k, v in self.columns.items()})

    def take(self, index: np.ndarray | slice) -> ProfileBatch:
        return ProfileBatch(
            len(np.arange(self.n)[index]), {k: v[index] for k, v in self.columns.items()}, self.as_of
        )

    # ---- derived fields -------------------------------------------------------------
    def with_derived(self, as_of: dt.date) -> ProfileBatch:
        """Add size (stated, else derived), is_sme, industry levels, size category, age."""
        cols = dict(self.columns)
        for name in STATED_RULE_FIELDS:  # a batch encoded before a field existed: that field is unknown
            if name not in cols:
                cols.update(_unknown_column(name, self.n))
        industry = cols["industry_code"]
        uniques, inverse = np.unique(industry.astype(str), return_inverse=True)
        section = np.full(len(uniques), -1, dtype=np.int16)
        division = np.full(len(uniques), -1, dtype=np.int16)
        group = np.full(len(uniques), -1, dtype=np.int16)
        category = np.full(len(uniques), -1, dtype=np.int16)
        cat_index = size_class.category_index()
        for i, raw in enumerate(uniques):
            if raw in ("None", "nan", ""):
                continue
            code = parse_industry_code(raw)
            section[i] = codes("industry_section")[code.section]
            if code.division:
                division[i] = codes("industry_division")[code.division]
            grp = group_value(code)
            if grp is not None:
                group[i] = codes("industry_group")[grp]
            cat = size_class.category_for(code)
            if cat is not None:
                category[i] = cat_index[cat]
        cols["industry_section"] = section[inverse]
        cols["industry_division"] = division[inverse]
        cols["industry_group"] = group[inverse]
        cols["size_category"] = category[inverse]
        derived = size_class.classify_columns(
            cols["size_category"], cols["employees"], cols["annual_revenue_wan"], cols["total_assets_wan"]
        ).astype(np.int16)
        stated = cols["size"]
        cols["size__derived"] = derived
        cols["size"] = np.where(stated >= 0, stated, derived).astype(np.int16)
        large = codes("size")["large"]
        cols["is_sme"] = np.where(cols["size"] < 0, -1, cols["size"] != large).astype(np.int16)
        today = _days(as_of)
        est = cols["established_on"]
        with np.errstate(invalid="ignore"):
            cols["age_years"] = np.where(
                np.isnan(est), np.nan, np.maximum(0.0, np.round((today - est) / 365.25, 4))
            )
        return ProfileBatch(self.n, cols, as_of)

    # ---- decoding ---------------------------------------------------------------------
    def record(self, i: int) -> dict[str, Any]:
        """Row ``i`` as a flat record of rule fields (None = unknown) — for explanations and tests."""
        out: dict[str, Any] = {}
        for name in RULE_FIELDS:
            if name not in self.columns:
                continue
            col = self.columns[name]
            kind = FIELDS[name].kind
            if kind is Kind.NUMBER:
                v = float(col[i])
                out[name] = None if np.isnan(v) else v
            elif kind is Kind.BOOL:
                out[name] = None if col[i] < 0 else bool(col[i])
            elif kind is Kind.CATEGORY:
                out[name] = None if col[i] < 0 else values(name)[int(col[i])]
            elif kind is Kind.SET:
                if not self.columns[name + "__known"][i]:
                    out[name] = None
                else:
                    m = int(col[i])
                    out[name] = [v for bit, v in enumerate(values(name)) if m >> bit & 1]
        return out


def _unknown_column(name: str, n: int) -> dict[str, np.ndarray]:
    kind = FIELDS[name].kind
    if kind is Kind.NUMBER:
        return {name: np.full(n, np.nan)}
    if kind is Kind.SET:
        return {name: np.zeros(n, dtype=np.uint16), name + "__known": np.zeros(n, dtype=bool)}
    return {name: np.full(n, -1, dtype=np.int16)}


def _days(value: Any) -> float:
    if isinstance(value, str):
        value = dt.date.fromisoformat(value)
    return float((value - EPOCH).days)


def profile_field_names() -> tuple[str, ...]:
    return PROFILE_FIELDS
