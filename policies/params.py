"""Dated parameters: the numbers that law (or the plan) sets, with the period each value is in force.

Modelled on OpenFisca's parameters: one YAML file per area under ``policies/parameters/``, one key per
parameter, its values by the date they take effect, each with the reference (document and article) that
sets it. A value of ``null`` ends the parameter: after it nothing is in force, and nothing is silently
extended — a policy that reads an ended parameter is not offered (or is shown with "延续与否以主管部门公布为准"
where its catalog entry says ``lapse: pending_notice``)::

    # policies/parameters/vat.yaml
    small_scale_exemption_monthly_wan:
      description: 增值税小规模纳税人免征增值税的月销售额标准（含本数）
      unit: 万元
      values:
        2023-01-01: {value: 10, reference: 财政部 税务总局公告2023年第19号 第一条}
        2028-01-01: null            # 执行至2027年12月31日

The parameter's name is ``<file stem>.<key>`` (``vat.small_scale_exemption_monthly_wan``). Rules compare with
one as ``{field: monthly_sales_wan, le: {param: vat.small_scale_exemption_monthly_wan}}``; value formulas name
it directly (``monthly_sales_wan * 12 * vat.small_scale_levy_rate``). A *scale* (``brackets``: a progressive
rate table, e.g. 经营所得 5%–35%) is used through ``marginal(amount, iit.business_income_scale)``.

``kind`` says where a number comes from: ``law`` (a statute or an announcement), ``plan`` (the city's plan
text, e.g. 担保费率降至1%以下) or ``assumption`` (a number no document sets, e.g. a typical market guarantee fee,
stated in every answer that uses it).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml

PARAMETERS_DIR = Path(__file__).with_name("parameters")
UNITS = ("万元", "元", "人", "%", "rate", "year", "month", "count")
ParamKind = Literal["law", "plan", "assumption"]
KIND_LABELS = {"law": "法定", "plan": "计划", "assumption": "本系统假设"}


class ParameterError(ValueError):
    """A parameter file that does not load (Chinese message naming file, key and date)."""


@dataclass(frozen=True)
class Bracket:
    above: float  # the bracket starts above this amount (万元)
    rate: float


@dataclass(frozen=True)
class Period:
    start: dt.date
    end: dt.date | None  # last day in force (None: open-ended)
    value: float | tuple[Bracket, ...]
    reference: str


@dataclass(frozen=True)
class ParamRef:
    """A rule threshold that names a parameter (``{param: name}``): resolved on the evaluation day."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Parameter:
    name: str
    description: str
    unit: str
    kind: ParamKind
    periods: tuple[Period, ...]  # in date order, without gaps inside one period

    @property
    def is_scale(self) -> bool:
        return any(isinstance(p.value, tuple) for p in self.periods)

    @property
    def first_day(self) -> dt.date:
        return self.periods[0].start

    @property
    def last_day(self) -> dt.date | None:
        """The last day any value is in force (None: the last value has no end)."""
        return self.periods[-1].end

    def period(self, day: dt.date) -> Period | None:
        for p in self.periods:
            if p.start <= day and (p.end is None or day <= p.end):
                return p
        return None

    def at(self, day: dt.date) -> float | tuple[Bracket, ...] | None:
        """The value in force on ``day``; None before the first value, in a gap, or after the end."""
        p = self.period(day)
        return None if p is None else p.value

    def latest(self, day: dt.date) -> Period:
        """The period in force on ``day``, else the last one that began before it (an ended parameter's
        last value: used only where the catalog shows the policy pending a notice)."""
        began = [p for p in self.periods if p.start <= day]
        return began[-1] if began else self.periods[0]

    def in_force(self, day: dt.date) -> bool:
        return self.period(day) is not None

    def show(self, day: dt.date) -> str:
        """The value on ``day`` as a person reads it (``1%``, ``10万元``); the last value if ended."""
        value = self.latest(day).value
        if isinstance(value, tuple):
            return "、".join(f"{_num(b.above)}万元以上{_pct(b.rate)}" for b in value)
        if self.unit == "rate":
            return _pct(value)
        return f"{_num(value)}{self.unit if self.unit not in ('count',) else ''}"


def _num(value: float) -> str:
    return f"{value:g}"


def _pct(rate: float) -> str:
    return f"{round(rate * 100, 4):g}%"


class Parameters(Mapping[str, Parameter]):
    """Every parameter by its dotted name."""

    def __init__(self, items: dict[str, Parameter]) -> None:
        self._items = items

    def __getitem__(self, name: str) -> Parameter:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def value(self, name: str, day: dt.date) -> float | None:
        """A scalar parameter's value in force on ``day`` (None when none is)."""
        v = self[name].at(day)
        if isinstance(v, tuple):
            raise TypeError(f"{name} is a scale")
        return v


def _date(key: Any, where: str) -> dt.date:
    if isinstance(key, dt.date) and not isinstance(key, dt.datetime):
        return key
    try:
        return dt.date.fromisoformat(str(key))
    except ValueError:
        raise ParameterError(f"{where}：生效日期“{key}”应为 YYYY-MM-DD 格式的日期") from None


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParameterError(f"{where}：取值应为数字，实际为“{value}”")
    return float(value)


def _brackets(raw: Any, where: str) -> tuple[Bracket, ...]:
    if not isinstance(raw, list) or not raw:
        raise ParameterError(f"{where}：brackets 应为非空列表，每档写成 {{above: 起点（万元）, rate: 税率}}")
    out: list[Bracket] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or set(item) != {"above", "rate"}:
            raise ParameterError(f"{where}：brackets 第{i + 1}档应写成 {{above: 起点（万元）, rate: 税率}}")
        out.append(Bracket(_number(item["above"], where), _number(item["rate"], where)))
    if out[0].above != 0 or any(b.above <= a.above for a, b in zip(out, out[1:], strict=False)):
        raise ParameterError(f"{where}：brackets 的起点须从0开始并逐档递增")
    return tuple(out)


def parse_parameter(name: str, data: Any, file: str = "") -> Parameter:
    """One parameter from its YAML mapping; raises :class:`ParameterError` naming file, key and date."""
    here = f"{file}: {name}" if file else name
    if not isinstance(data, dict):
        raise ParameterError(f"{here}：参数应为映射（description、unit、values …）")
    extra = set(data) - {"description", "unit", "kind", "values", "reference"}
    if extra:
        raise ParameterError(f"{here}：未知的键 {'、'.join(sorted(map(str, extra)))}")
    for key in ("description", "unit", "values"):
        if not data.get(key):
            raise ParameterError(f"{here}：缺少 {key}")
    unit = str(data["unit"])
    if unit not in UNITS:
        raise ParameterError(f"{here}：unit“{unit}”不是可用的单位（{'、'.join(UNITS)}）")
    kind = data.get("kind", "law")
    if kind not in KIND_LABELS:
        raise ParameterError(f"{here}：kind 应为 law（法定）、plan（计划）或 assumption（本系统假设），实际为“{kind}”")
    raw = data["values"]
    if not isinstance(raw, dict):
        raise ParameterError(f"{here}：values 应为“生效日期: {{value: …, reference: …}}”的映射")
    starts = sorted((_date(k, here), v) for k, v in raw.items())
    periods: list[Period] = []
    default_ref = data.get("reference")
    for i, (start, item) in enumerate(starts):
        where = f"{here} {start}"
        if item is None:  # ends the parameter
            if i == 0:
                raise ParameterError(f"{where}：第一个日期不能是 null（null 表示此前的取值到期）")
            continue
        if not isinstance(item, dict):
            raise ParameterError(f"{where}：应写成 {{value: 取值, reference: 文件及条款}} 或 {{brackets: …}}")
        bad = set(item) - {"value", "brackets", "reference"}
        if bad or ("value" in item) == ("brackets" in item):
            raise ParameterError(f"{where}：须有且只有 value 或 brackets 之一，另加 reference")
        reference = item.get("reference") or default_ref
        if not reference:
            raise ParameterError(f"{where}：缺少 reference（文件文号及条款，或“本系统假设：…”）")
        value: float | tuple[Bracket, ...] = (
            _number(item["value"], where) if "value" in item else _brackets(item["brackets"], where))
        if unit == "rate" and isinstance(value, float) and not 0 <= value <= 1:
            raise ParameterError(f"{where}：比例（rate）应在0到1之间，如 1% 写 0.01，实际为 {value:g}")
        nxt = starts[i + 1][0] if i + 1 < len(starts) else None
        periods.append(Period(start, nxt - dt.timedelta(days=1) if nxt else None, value, str(reference)))
    if len({isinstance(p.value, tuple) for p in periods}) > 1:
        raise ParameterError(f"{here}：同一参数不能一段是数值、一段是税率表")
    return Parameter(name, str(data["description"]), unit, kind, tuple(periods))


def load_parameters(directory: Path = PARAMETERS_DIR) -> Parameters:
    items: dict[str, Parameter] = {}
    for path in sorted(directory.glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ParameterError(f"{path.name}：YAML 格式错误：{exc}") from None
        if not isinstance(data, dict):
            raise ParameterError(f"{path.name}：文件应为“参数名: {{…}}”的映射")
        for key, item in data.items():
            items[f"{path.stem}.{key}"] = parse_parameter(f"{path.stem}.{key}", item, path.name)
    return Parameters(items)


@lru_cache(maxsize=1)
def _loaded() -> Parameters:
    return load_parameters()


_OVERRIDE: list[Parameters] = []


def parameters() -> Parameters:
    """The parameters of ``policies/parameters/`` (loaded once per process), or those of :func:`using`."""
    return _OVERRIDE[-1] if _OVERRIDE else _loaded()


@contextmanager
def using(table: Parameters) -> Iterator[Parameters]:
    """Evaluate with another parameter table inside the block (tests of a rate that changes between periods)."""
    _OVERRIDE.append(table)
    try:
        yield table
    finally:
        _OVERRIDE.pop()


def parameters_digest(table: Parameters | None = None) -> str:
    """The parameters' identity by content (names, periods, values, references): part of the catalog's version,
    so that a changed rate or period is a new catalog for caches, answers and the nightly batch."""
    import hashlib
    import json

    rows = [[p.name, p.unit, p.kind, [[str(q.start), str(q.end), q.value if not isinstance(q.value, tuple)
                                       else [[b.above, b.rate] for b in q.value], q.reference] for q in p.periods]]
            for p in (table or parameters()).values()]
    return hashlib.sha256(json.dumps(sorted(rows), ensure_ascii=False).encode()).hexdigest()


def unknown_parameter(name: str) -> str:
    """The Chinese message for a name that is no parameter, with the closest names."""
    import difflib

    close = difflib.get_close_matches(name, list(parameters()), n=1, cutoff=0.6)
    hint = f"，是否应为“{close[0]}”？" if close else f"（参数见 policies/parameters/，共 {len(parameters())} 个）"
    return f"未知参数“{name}”{hint}"
