"""Enterprise size classes (大中小微) per the 2011 standard, scalar and vectorised.

Thresholds live in ``data/size_standard.yaml``. Large, medium and small need every listed
lower bound at once, otherwise the firm drops one class; micro is what is left. An unknown
input makes the class unknown only when it could change the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import yaml

from profiles.fields import FIELDS, SIZES
from profiles.industry import IndustryCode, divisions_under, groups_under

DATA = Path(__file__).with_name("data") / "size_standard.yaml"
LEVELS = ("large", "medium", "small")
SIZE_CODES = {name: i for i, name in enumerate(SIZES)}  # large 0, medium 1, small 2, micro 3
METRICS = ("employees", "annual_revenue_wan", "total_assets_wan")


@dataclass(frozen=True)
class Category:
    id: str
    name: str
    match: tuple[str, ...]
    bounds: dict[str, dict[str, float]]  # level -> metric -> lower bound

    @property
    def covered(self) -> bool:
        return bool(self.bounds)


@dataclass(frozen=True)
class SizeResult:
    """A derived class (or None) with the Chinese sentence that justifies it."""

    size: str | None
    category: str | None
    basis: str


@cache
def categories() -> tuple[Category, ...]:
    raw = yaml.safe_load(DATA.read_text(encoding="utf-8"))
    out = [
        Category(c["id"], c["name"], tuple(c["match"]), {lv: dict(c[lv]) for lv in LEVELS})
        for c in raw["categories"]
    ]
    out += [Category(c["id"], c["name"], tuple(c["match"]), {}) for c in raw["not_covered"]]
    return tuple(out)


@cache
def _by_id() -> dict[str, Category]:
    return {c.id: c for c in categories()}


def category_names() -> dict[str, str]:
    return {c.id: c.name for c in categories()}


def category_index() -> dict[str, int]:
    return {c.id: i for i, c in enumerate(categories())}


def _leaf_category(leaf: str) -> str:
    """Most specific match for a group ("G591") or division ("G59") code."""
    prefixes = [leaf, leaf[:3], leaf[:1]]
    for prefix in prefixes:
        for cat in categories():
            if prefix in cat.match:
                return cat.id
    return "other"


def category_for(code: IndustryCode) -> str | None:
    """The size category of a code, or None when the code is too coarse to tell (e.g. ``G``)."""
    leaves: list[str] = []
    for division in divisions_under(code) if not code.group else [code.group]:
        leaves += groups_under(division) or [division] if len(division) == 3 else [division]
    found = {_leaf_category(leaf) for leaf in leaves}
    return found.pop() if len(found) == 1 else None


def _fmt(metric: str, bound: float) -> str:
    f = FIELDS[metric]
    return f"{f.label}≥{bound:g}{f.unit}"


def classify(category: str | None, employees: float | None, revenue: float | None,
             assets: float | None) -> SizeResult:
    """Scalar classification with its reason.

    >>> classify("industry", 300, 2000, None).size
    'medium'
    >>> classify("industry", 250, 50000, None).size
    'small'
    """
    if category is None:
        return classify_without_industry(employees, revenue, assets)
    cat = _by_id()[category]
    if not cat.covered:
        return SizeResult(None, cat.id, f"{cat.name}不适用《中小企业划型标准规定》，企业规模需自行填报")
    values = {"employees": employees, "annual_revenue_wan": revenue, "total_assets_wan": assets}
    for level in LEVELS:
        bounds = cat.bounds[level]
        failed = [m for m, b in bounds.items() if values[m] is not None and values[m] < b]  # type: ignore[operator]
        missing = [m for m in bounds if values[m] is None]
        if not failed and not missing:
            cond = "且".join(_fmt(m, b) for m, b in bounds.items())
            return SizeResult(level, cat.id, f"{cat.name}：{cond}，为{SIZES[level]}企业")
        if not failed:
            labels = "、".join(FIELDS[m].label for m in missing)
            return SizeResult(None, cat.id, f"{cat.name}：缺少{labels}，无法判定是否为{SIZES[level]}企业")
    small = cat.bounds["small"]
    below = [m for m, b in small.items() if values[m] is not None and values[m] < b]  # type: ignore[operator]
    cond = "或".join(
        f"{FIELDS[m].label}{values[m]:g}{FIELDS[m].unit}<{small[m]:g}{FIELDS[m].unit}" for m in below
    )
    return SizeResult("micro", cat.id, f"{cat.name}：{cond}，为微型企业")


def classify_without_industry(employees: float | None, revenue: float | None,
                              assets: float | None) -> SizeResult:
    """The class when the industry is unknown (no code, or one too coarse to pick a category): derived only
    when every industry's thresholds of the standard put the firm in the same class (3 people and 25万元
    are micro everywhere); otherwise unknown. Industries outside the standard (金融业, 铁路运输业) are not
    part of "every industry": the standard does not classify them at all.

    >>> classify_without_industry(3, 25, None).size
    'micro'
    >>> classify_without_industry(50, 1500, 2000).size is None
    True
    """
    found = {classify(cat.id, employees, revenue, assets).size for cat in categories() if cat.covered}
    if len(found) == 1 and None not in found:
        size = found.pop()
        assert size is not None
        return SizeResult(size, None, f"未填行业代码（或不够具体）；按《中小企业划型标准规定》各行业标准均为{SIZES[size]}企业")
    return SizeResult(None, None, "行业代码未填或不够具体，按各行业标准划型结果不一致，企业规模无法推算")


def classify_columns(category_codes: np.ndarray, employees: np.ndarray, revenue: np.ndarray,
                     assets: np.ndarray) -> np.ndarray:
    """Vectorised :func:`classify`: int8 size codes (large 0 … micro 3), -1 where unknown.

    ``category_codes`` index :func:`categories` (-1 = unknown); metrics are float arrays
    with NaN for unknown.
    """
    out = np.full(len(category_codes), -1, dtype=np.int8)
    values = {"employees": employees, "annual_revenue_wan": revenue, "total_assets_wan": assets}
    for idx, cat in enumerate(categories()):
        if not cat.covered:
            continue
        rows = category_codes == idx
        if rows.any():
            _classify_into(out, rows, cat, values)
    unknown = category_codes < 0
    if unknown.any():  # no industry: the class every industry agrees on (see classify_without_industry)
        agreed: np.ndarray | None = None
        for cat in categories():
            if not cat.covered:
                continue
            one = np.full(len(out), -1, dtype=np.int8)
            _classify_into(one, unknown, cat, values)
            agreed = one if agreed is None else np.where(agreed == one, agreed, np.int8(-1))
        assert agreed is not None
        out[unknown] = agreed[unknown]
    return out


def _classify_into(out: np.ndarray, rows: np.ndarray, cat: Category, values: dict[str, np.ndarray]) -> None:
    """Classify ``rows`` (mask) under ``cat`` into ``out`` (left -1 where unknown)."""
    undecided = rows.copy()
    for level in LEVELS:
        passes = np.ones(len(out), dtype=bool)
        fails = np.zeros(len(out), dtype=bool)
        for metric, bound in cat.bounds[level].items():
            col = values[metric]
            passes &= col >= bound
            fails |= col < bound
        out[undecided & passes] = SIZE_CODES[level]
        undecided &= fails  # unknown-and-not-failed rows leave as -1
    out[undecided] = SIZE_CODES["micro"]
