"""The column encoding of profiles: the layout the vectorised rule engine and the batch scorer read.

Numbers are float64 with NaN for unknown; categories and booleans are int16 codes into the
field's vocabulary with -1 for unknown; sets are uint16 bit masks plus a ``known`` mask.
``industry_code`` is kept as strings and ``established_on`` as days since 1970-01-01 (NaN =
unknown) so that derived fields can be computed for a whole batch at once.

This is the one encoding: records (:meth:`ProfileBatch.from_records`), stored JSON documents
(:func:`encode_profiles`, column-wise through pyarrow), frames (:meth:`ProfileBatch.from_frame`) and the
synthetic population all code values through :func:`codes`; the derived fields (size, is_sme, industry
levels, size category, age) are computed once, in :meth:`ProfileBatch.with_derived`, for the interactive
portrait (:func:`profiles.features.derive`) as for the nightly batch.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pandas as pd

from profiles import size_class
from profiles.fields import FIELDS, RULE_FIELDS, Kind
from profiles.industry import group_value, parse_industry_code
from profiles.labels import value_text, vocabulary
from profiles.model import valid_codes

EPOCH = dt.date(1970, 1, 1)
STATED_RULE_FIELDS = tuple(f for f in RULE_FIELDS if not FIELDS[f].derived)
DERIVED_FIELDS = tuple(f for f in RULE_FIELDS if FIELDS[f].derived)
#: encoded profile columns a stored-profile table carries (:func:`encode_profiles` adds ``text_key``)
INPUT_COLUMNS = (*STATED_RULE_FIELDS,
                 *(f + "__known" for f in STATED_RULE_FIELDS if FIELDS[f].kind is Kind.SET),
                 "industry_code", "established_on")
NEEDS_PREFIX, SCOPE_PREFIX = "N:", "S:"


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


@cache
def _code_table(field: str, unknown: str | None, labels: bool) -> np.ndarray:
    names = [value_text(field, v) for v in values(field)] if labels else list(values(field))
    return np.array([unknown, *names], dtype=object)


def code_table(field: str, *, unknown: str | None = None, labels: bool = False) -> np.ndarray:
    """Code + 1 → value of a category/bool field (or its Chinese label); position 0 (code -1) is ``unknown``."""
    return _code_table(field, unknown, labels)


def decode(field: str, code: Any, *, unknown: str | None = None, labels: bool = False) -> Any:
    """The value (or Chinese label) of one code or an array of codes of a category field; -1 → ``unknown``."""
    table = _code_table(field, unknown, labels)
    if isinstance(code, int | np.integer):
        return table[int(code) + 1]
    return table[np.asarray(code).astype(np.int64) + 1]


def category_codes(name: str, raw: np.ndarray, *, strict: bool = True) -> np.ndarray:
    """Values → int16 codes of a category field through an array lookup (missing → -1). ``strict``: a value
    outside the vocabulary is an error, else it is coded -1 as unknown."""
    lookup = codes(name)
    present = pd.notna(raw)
    out = np.full(len(raw), -1, dtype=np.int16)
    if present.any():
        uniques, inverse = np.unique(raw[present].astype(str), return_inverse=True)
        missing = [u for u in uniques if u not in lookup]
        if missing and strict:
            raise ValueError(f"{name}: unknown value {missing[0]!r}")
        out[present] = np.array([lookup.get(u, -1) for u in uniques], dtype=np.int16)[inverse]
    return out


def text_key(needs: str | None, business_scope: str | None) -> str:
    """The text that ranks a firm's policies: its own needs, else its business scope ('' = none).

    The prefix keeps the role: needs can trigger on-request policies, a business scope cannot.
    """
    if needs and needs.strip():
        return NEEDS_PREFIX + needs.strip()
    if business_scope and business_scope.strip():
        return SCOPE_PREFIX + business_scope.strip()
    return ""


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
                        for item in items:  # a dated qualification counts by its code (see EnterpriseProfile.at)
                            m |= 1 << lookup[item if isinstance(item, str) else _item_code(item)]
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
        """The encoded columns (:data:`INPUT_COLUMNS`) of ``frame``, dtypes restored after Parquet/Arrow."""
        cols: dict[str, np.ndarray] = {}
        for name in STATED_RULE_FIELDS:
            kind = FIELDS[name].kind
            if kind is Kind.NUMBER:
                cols[name] = frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
            elif kind is Kind.SET:
                cols[name] = frame[name].to_numpy(dtype=np.uint16)
                cols[name + "__known"] = frame[name + "__known"].to_numpy(dtype=bool)
            else:
                cols[name] = frame[name].to_numpy(dtype=np.int16)
        cols["industry_code"] = frame["industry_code"].to_numpy(dtype=object)
        cols["established_on"] = frame["established_on"].to_numpy(dtype=np.float64, na_value=np.nan)
        return cls(len(frame), cols)

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
                out[name] = decode(name, col[i])
            elif kind is Kind.SET:
                if not self.columns[name + "__known"][i]:
                    out[name] = None
                else:
                    m = int(col[i])
                    out[name] = [v for bit, v in enumerate(values(name)) if m >> bit & 1]
        return out


def _item_code(item: Any) -> str:
    """The code of a set item given as an object (a dated qualification: ``{"code", "valid_from", …}``)."""
    code = item.get("code") if isinstance(item, Mapping) else getattr(item, "code", item)
    return str(code)


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


# ---- encoding stored profiles (JSON documents) without per-row Python ---------------------------------
def encode_profiles(documents: pd.Series | Sequence[str] | Iterable[Mapping[str, Any]], *,
                    as_of: dt.date | None = None) -> pd.DataFrame:
    """Encode stored profiles (JSON text or dicts) into :data:`INPUT_COLUMNS` plus ``text_key`` (:func:`text_key`).

    JSON text is parsed column-wise by pyarrow; categories are coded through their vocabulary with
    array lookups and sets become bit masks, so the cost per row is C code, not Python. A row whose
    qualifications hold dated objects is first reduced to the codes valid on ``as_of`` (every code when
    None) — what matching should read is :func:`profiles.merge.as_seen`'s profile, which has no objects.
    """
    import pyarrow as pa
    import pyarrow.json as pajson

    docs = list(documents)
    if docs and not isinstance(docs[0], str):
        docs = [json.dumps(d, ensure_ascii=False, default=str) for d in docs]
    docs = [_plain_codes(d, as_of) if '"code"' in d else d for d in docs]
    n = len(docs)
    if n == 0:
        return pd.DataFrame({c: [] for c in INPUT_COLUMNS})
    schema = pa.schema([pa.field(name, _arrow_type(name)) for name in
                        (*STATED_RULE_FIELDS, "industry_code", "established_on", "needs", "business_scope")])
    text = ("\n".join(d.replace("\n", " ") for d in docs) + "\n").encode()
    table = pajson.read_json(pa.BufferReader(text), parse_options=pajson.ParseOptions(
        explicit_schema=schema, unexpected_field_behavior="ignore"),
        read_options=pajson.ReadOptions(block_size=max(1 << 20, len(text) // 4 + 1)))
    if table.num_rows != n:
        raise ValueError(f"expected {n} profiles, parsed {table.num_rows}")
    cols: dict[str, Any] = {}
    for name in STATED_RULE_FIELDS:
        kind = FIELDS[name].kind
        col = table.column(name)
        if kind is Kind.NUMBER:
            cols[name] = col.to_numpy(zero_copy_only=False).astype(np.float64)
        elif kind is Kind.BOOL:
            arr = col.to_numpy(zero_copy_only=False)
            cols[name] = np.where(pd.isna(arr), -1, arr.astype(bool, copy=False) if arr.dtype == bool
                                  else np.nan_to_num(arr.astype(float)) != 0).astype(np.int16)
        elif kind is Kind.CATEGORY:
            cols[name] = category_codes(name, col.to_numpy(zero_copy_only=False))
        else:
            cols[name], cols[name + "__known"] = _set_masks(name, col.combine_chunks())
    cols["industry_code"] = table.column("industry_code").to_numpy(zero_copy_only=False).astype(object)
    established = pd.to_datetime(pd.Series(table.column("established_on").to_numpy(zero_copy_only=False)),
                                 errors="coerce")
    days = (established - pd.Timestamp("1970-01-01")).dt.days
    cols["established_on"] = days.to_numpy(dtype=np.float64, na_value=np.nan)
    cols["text_key"] = text_keys(table.column("needs").to_numpy(zero_copy_only=False),
                                  table.column("business_scope").to_numpy(zero_copy_only=False))
    return pd.DataFrame(cols)


def _plain_codes(document: str, as_of: dt.date | None) -> str:
    """A stored profile with dated qualifications as one with plain codes (valid on ``as_of``)."""
    data = json.loads(document)
    items = data.get("qualifications") if isinstance(data, dict) else None
    if not isinstance(items, list) or all(isinstance(i, str) for i in items):
        return document
    data["qualifications"] = (valid_codes(items, as_of) if as_of is not None
                              else list(dict.fromkeys(_item_code(i) for i in items)))
    return json.dumps(data, ensure_ascii=False)


def _arrow_type(name: str) -> Any:
    import pyarrow as pa

    if name in ("industry_code", "established_on", "needs", "business_scope"):
        return pa.string()
    kind = FIELDS[name].kind
    if kind is Kind.NUMBER:
        return pa.float64()
    if kind is Kind.BOOL:
        return pa.bool_()
    if kind is Kind.SET:
        return pa.list_(pa.string())
    return pa.string()


def _set_masks(name: str, col: Any) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow.compute as pc

    n = len(col)
    known = col.is_valid().to_numpy(zero_copy_only=False)
    masks = np.zeros(n, dtype=np.uint16)
    lengths = pc.fill_null(pc.list_value_length(col), 0).to_numpy(zero_copy_only=False)
    flat = pc.list_flatten(col).to_numpy(zero_copy_only=False)
    if len(flat):
        bits = 1 << category_codes(name, flat).astype(np.int64)
        owner = np.repeat(np.arange(n), lengths)
        np.bitwise_or.at(masks, owner, bits.astype(np.uint16))
    return masks, known


def text_keys(needs: np.ndarray, scope: np.ndarray) -> np.ndarray:
    """:func:`text_key` for whole columns."""
    needs_s = pd.Series(needs, dtype=object).fillna("").str.strip()
    scope_s = pd.Series(scope, dtype=object).fillna("").str.strip()
    keys = np.where(needs_s != "", NEEDS_PREFIX + needs_s, np.where(scope_s != "", SCOPE_PREFIX + scope_s, ""))
    return keys.astype(object)
