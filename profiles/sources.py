"""The sources of a profile's facts and the rules that merge them (``profiles/sources.yaml``).

A *source* is a department's feed (registration 市场监管, tax 税务, social_insurance 人社, science 科技,
industry 工信), the firm itself (self 企业自报) or a hotline operator (hotline 热线坐席). Each has a Chinese
label, the fields it may give, and the mapping of its own column headers and value wording onto the profile.
The merge rules say, per field, which sources are authoritative (in ranks) and how long a value stays fresh;
qualifications and flags merge per code. Everything is read once from the YAML and validated: an unknown
field or source name fails with ``file:line: key: message`` (Chinese) and the nearest valid name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from profiles.fields import FIELDS, PROFILE_FIELDS, Kind

RULES_PATH = Path(__file__).with_name("sources.yaml")

#: Sources that state a whole profile: they fill gaps and are never authoritative.
SELF, HOTLINE = "self", "hotline"
OPEN_SOURCES = (SELF, HOTLINE)
#: Fields merged per code (a set field whose codes have their own authoritative sources).
PER_CODE = {"qualifications": "qualification_sources", "flags": "flag_sources"}
#: Fields every profile has: they never age (a profile without them is no profile).
REQUIRED = ("uscc", "name")
#: Pseudo-fields a feed column may map to: the dates of the row's certificate.
DATE_COLUMNS = ("qualifications.valid_from", "qualifications.valid_to")
#: Units a header may carry in brackets after the field's name: 营业收入（万元）.
_UNIT = re.compile(r"\s*[（(]\s*([^（）()]*)\s*[）)]\s*$")

Ranks = tuple[tuple[str, ...], ...]


class SourcesError(ValueError):
    """``sources.yaml`` is invalid: every problem as ``file:line: key: message``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class UnknownSource(ValueError):
    """A source name that is not one of :func:`source_names` (message in Chinese)."""


@dataclass(frozen=True)
class Source:
    """One source: its label, what it may give and how its files are read."""

    name: str
    label: str
    #: profile fields it may give (every field for self and hotline)
    fields: frozenset[str]
    #: per-code fields → the codes it may give (qualifications: the codes it is authoritative for)
    codes: dict[str, frozenset[str]]
    #: header → field (or a :data:`DATE_COLUMNS` pseudo-field); None = a column read and ignored
    columns: dict[str, str | None]
    #: field → the source's wording of a value → code
    values: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def is_open(self) -> bool:
        """Self and hotline: they state any field, never authoritatively."""
        return self.name in OPEN_SOURCES

    def may_give(self, name: str, code: str | None = None) -> bool:
        """May this source state field ``name`` (and, for qualifications/flags, the code ``code``)?"""
        if name not in self.fields:
            return False
        return code is None or name not in self.codes or code in self.codes[name]

    def refusal(self, name: str, code: str | None = None) -> str | None:
        """Why this source may not state ``name`` (or its code ``code``), in Chinese; None when it may."""
        if self.may_give(name, code):
            return None
        label = FIELDS[name].label if name in FIELDS else name
        if name in self.fields and code is not None:
            allowed = "、".join(FIELDS[name].vocabulary.get(c, c) for c in sorted(self.codes.get(name, ())))
            what = FIELDS[name].vocabulary.get(code, code)
            return (f"{name}（{label}）：{self.label}数据不能给出“{what}”"
                    + (f"（只能给出{allowed}）" if allowed else ""))
        return f"{name}（{label}）不由{self.label}数据提供（{self.label}可提供：{self.fields_text()}）"

    def fields_text(self) -> str:
        return "、".join(FIELDS[f].label for f in PROFILE_FIELDS if f in self.fields and f != "uscc")

    def field_of(self, header: str) -> str | None:
        """The field a column header maps to (a profile field or a :data:`DATE_COLUMNS` name); None when the
        header is unknown or ignored (:meth:`ignores`). The source's own headers first, then the English field
        names and the fields' Chinese labels (从业人员, 纳税信用等级) for every source; a header may carry the
        field's own unit in brackets (营业收入（万元）, 参保人数(人))."""
        for text in _header_forms(header):
            if text in self.columns:
                return self.columns[text]
            if text in FIELDS and not FIELDS[text].derived or text in DATE_COLUMNS:
                return text
            if text in _LABELS:
                return _LABELS[text]
        text = header.strip().lstrip("\ufeff")
        unit = _UNIT.search(text)
        if unit:
            name = self.field_of(text[: unit.start()])
            if name in FIELDS and FIELDS[name].unit and unit.group(1).strip() == FIELDS[name].unit:
                return name
        return None

    def ignores(self, header: str) -> bool:
        """A column the mapping reads and ignores (序号, a name in a tax file …)."""
        return any(text in self.columns and self.columns[text] is None for text in _header_forms(header))

    def value_of(self, name: str, raw: str) -> str:
        """The code of one value of a category or set field in this source's wording (高企 → high_tech; the
        field's Chinese labels such as 一般纳税人 are always understood); anything else is returned stripped,
        for the profile validation to refuse with its own message."""
        text = raw.strip()
        own = self.values.get(name, {})
        if text in own:
            return own[text]
        spec = FIELDS.get(name)
        if spec and spec.vocabulary:
            if text in spec.vocabulary:
                return text
            for code, label in spec.vocabulary.items():
                if text == label:
                    return code
        return text


#: A field's own Chinese label (from the field table) → the field: every source understands these headers.
_LABELS = {FIELDS[f].label: f for f in PROFILE_FIELDS}


def _header_forms(header: str) -> tuple[str, ...]:
    text = header.strip().lstrip("\ufeff").strip()
    half = text.replace("（", "(").replace("）", ")")
    full = text.replace("(", "（").replace(")", "）")
    return tuple(dict.fromkeys((text, half, full, text.lower())))


@dataclass(frozen=True)
class FieldRule:
    """How one field merges: authoritative ranks (best first) and its maximum age in days (None: never)."""

    name: str
    ranks: Ranks
    max_age_days: int | None
    why: str = ""

    def rank_of(self, source: str) -> int | None:
        """The rank (0 = best) of ``source`` for this field, None when it is not authoritative."""
        for i, rank in enumerate(self.ranks):
            if source in rank:
                return i
        return None


@dataclass(frozen=True)
class Rules:
    """Everything ``sources.yaml`` says."""

    sources: dict[str, Source]
    fields: dict[str, FieldRule]
    #: per-code fields → code → authoritative ranks
    code_ranks: dict[str, dict[str, Ranks]]
    reminder_window_days: int

    def source(self, name: str) -> Source:
        """The source called ``name``; :class:`UnknownSource` (Chinese) otherwise."""
        try:
            return self.sources[name]
        except KeyError:
            names = "、".join(f"{s.name}（{s.label}）" for s in self.sources.values())
            raise UnknownSource(f"未知的数据来源“{name}”{_suggest(name, self.sources)}，应为 {names}") from None

    def label(self, name: str) -> str:
        """The Chinese label of a source (its name when unknown)."""
        found = self.sources.get(name)
        return found.label if found else name

    def order(self, name: str) -> int:
        """The source's position in the file: the tie-break between two sources on the same day."""
        return list(self.sources).index(name) if name in self.sources else len(self.sources)

    def max_age_days(self, name: str) -> int | None:
        """The maximum age of field ``name`` (``qualifications.high_tech`` → that of ``qualifications``)."""
        rule = self.fields.get(name.split(".", 1)[0])
        return rule.max_age_days if rule else None

    def ranks(self, name: str, code: str | None = None) -> Ranks:
        if code is not None and name in self.code_ranks:
            return self.code_ranks[name].get(code, ())
        return self.fields[name].ranks


# ---- loading ---------------------------------------------------------------------------------------
class _LineDict(dict[str, Any]):
    lines: dict[str, int]
    start: int


class _LineLoader(yaml.SafeLoader):
    duplicates: list[tuple[str, int]]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Any:  # type: ignore[override]
        out = _LineDict()
        out.lines, out.start = {}, node.start_mark.line + 1
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in out:
                self.duplicates.append((str(key), key_node.start_mark.line + 1))
            out[key] = self.construct_object(value_node, deep=deep)
            out.lines[str(key)] = key_node.start_mark.line + 1
        return out


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _LineLoader.construct_mapping)


def _suggest(name: object, candidates: Any) -> str:
    import difflib

    close = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=1, cutoff=0.5)
    return f"（是否应为“{close[0]}”？）" if close else ""


class _Reader:
    """Collects problems with the line of the key they are about."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[str] = []

    def problem(self, node: Any, key: str, where: str, message: str) -> None:
        line = node.lines.get(key, node.start) if isinstance(node, _LineDict) else 1
        self.problems.append(f"{self.path.name}:{line}: {where}: {message}")

    def mapping(self, parent: Any, key: str, where: str) -> _LineDict:
        value = parent.get(key) if isinstance(parent, dict) else None
        if isinstance(value, _LineDict):
            return value
        self.problem(parent, key, where, "应为映射（键: 值）")
        out = _LineDict()
        out.lines, out.start = {}, 1
        return out

    def ranks(self, parent: _LineDict, key: str, where: str, known: dict[str, Source]) -> Ranks:
        raw = parent.get(key)
        if raw is None:
            raw = []
        if not isinstance(raw, list):
            self.problem(parent, key, where, "应为来源列表，如 [tax] 或 [[tax, science]]")
            return ()
        out: list[tuple[str, ...]] = []
        seen: set[str] = set()
        for item in raw:
            rank = tuple(item) if isinstance(item, list) else (item,)
            for name in rank:
                if name not in known:
                    self.problem(parent, key, where, f"未知的数据来源“{name}”{_suggest(name, known)}")
                elif name in OPEN_SOURCES:
                    self.problem(parent, key, where, f"{name}（{known[name].label}）只能补缺，不能列为权威来源")
                elif name in seen:
                    self.problem(parent, key, where, f"来源“{name}”重复出现")
                seen.add(str(name))
            if rank:
                out.append(tuple(str(n) for n in rank))
        return tuple(out)


def _load_sources(reader: _Reader, data: _LineDict) -> dict[str, Source]:
    raw = reader.mapping(data, "sources", "sources")
    sources: dict[str, Source] = {}
    for name, spec in raw.items():
        where = f"sources.{name}"
        if not isinstance(spec, _LineDict):
            reader.problem(raw, name, where, "应为映射（label、fields、columns、values）")
            continue
        for key in spec:
            if key not in ("label", "fields", "columns", "values"):
                reader.problem(spec, key, f"{where}.{key}", f"未知的键“{key}”，只能是 label、fields、columns、values")
        label = spec.get("label")
        if not isinstance(label, str) or not label.strip():
            reader.problem(spec, "label", f"{where}.label", "须有中文名称")
            label = name
        given = spec.get("fields")
        if given == "all":
            fields = frozenset(PROFILE_FIELDS)
        elif isinstance(given, list):
            for f in given:
                if f not in PROFILE_FIELDS:
                    reader.problem(spec, "fields", f"{where}.fields", f"未知字段“{f}”{_suggest(f, PROFILE_FIELDS)}")
            fields = frozenset(str(f) for f in given) | {"uscc"}
        else:
            reader.problem(spec, "fields", f"{where}.fields", "应为字段列表，或 all")
            fields = frozenset({"uscc"})
        columns: dict[str, str | None] = {}
        cols = spec.get("columns") or {}
        if not isinstance(cols, dict):
            reader.problem(spec, "columns", f"{where}.columns", "应为映射（表头: 字段）")
            cols = {}
        for header, target in cols.items():
            base = str(target).split(".", 1)[0] if target is not None else None
            if target is not None and target not in PROFILE_FIELDS and target not in DATE_COLUMNS:
                reader.problem(cols, str(header), f"{where}.columns.{header}",
                               f"未知字段“{target}”{_suggest(target, PROFILE_FIELDS)}")
            elif base is not None and base not in fields:
                reader.problem(cols, str(header), f"{where}.columns.{header}", f"“{target}”不在本来源的 fields 中")
            columns[str(header).strip()] = None if target is None else str(target)
        values: dict[str, dict[str, str]] = {}
        vals = spec.get("values") or {}
        for f, table in (vals.items() if isinstance(vals, dict) else ()):
            if f not in fields or not FIELDS[f].vocabulary:
                reader.problem(vals, str(f), f"{where}.values.{f}", "只能为本来源提供的分类或多选字段设置取值")
                continue
            values[str(f)] = {}
            for text, code in (table or {}).items():
                if code not in FIELDS[f].vocabulary:
                    reader.problem(table, str(text), f"{where}.values.{f}.{text}",
                                   f"“{code}”不是{FIELDS[f].label}的取值{_suggest(code, FIELDS[f].vocabulary)}")
                values[str(f)][str(text)] = str(code)
        sources[str(name)] = Source(str(name), str(label), fields, {}, columns, values)
    for name in OPEN_SOURCES:
        if name not in sources:
            reader.problem(data, "sources", "sources", f"缺少来源 {name}")
    return sources


def load_rules(path: Path | str = RULES_PATH) -> Rules:
    """Read and validate a rules file (:func:`rules` is the cached one of the package)."""
    path = Path(path)
    loader = _LineLoader(path.read_text(encoding="utf-8"))
    loader.duplicates = []
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        raise SourcesError([f"{path.name}:1: yaml: 不是有效的YAML：{exc}"]) from None
    finally:
        loader.dispose()
    reader = _Reader(path)
    reader.problems.extend(f"{path.name}:{line}: {key}: 键“{key}”重复出现" for key, line in loader.duplicates)
    if not isinstance(data, _LineDict):
        raise SourcesError([f"{path.name}:1: file: 应为映射"])
    for key in data:
        if key not in ("reminder_window_days", "sources", "merge", *PER_CODE.values()):
            reader.problem(data, key, key, f"未知的键“{key}”{_suggest(key, ('sources', 'merge', *PER_CODE.values()))}")
    window = data.get("reminder_window_days", 90)
    if not isinstance(window, int) or isinstance(window, bool) or window < 0:
        reader.problem(data, "reminder_window_days", "reminder_window_days", "应为不小于0的整数（天）")
        window = 90
    sources = _load_sources(reader, data)
    merge = reader.mapping(data, "merge", "merge")
    rules: dict[str, FieldRule] = {}
    for name, spec in merge.items():
        where = f"merge.{name}"
        if name not in PROFILE_FIELDS:
            reader.problem(merge, name, where, f"未知字段“{name}”{_suggest(name, PROFILE_FIELDS)}")
            continue
        if not isinstance(spec, _LineDict):
            reader.problem(merge, name, where, "应为映射（sources、max_age_days、why）")
            continue
        for key in spec:
            if key not in ("sources", "max_age_days", "why"):
                reader.problem(spec, key, f"{where}.{key}", f"未知的键“{key}”，只能是 sources、max_age_days、why")
        if name in PER_CODE and "sources" in spec:
            reader.problem(spec, "sources", f"{where}.sources", f"按代码合并，来源写在 {PER_CODE[name]} 中")
        age = spec.get("max_age_days")
        if age is not None and (not isinstance(age, int) or isinstance(age, bool) or age < 0):
            reader.problem(spec, "max_age_days", f"{where}.max_age_days", "应为不小于0的整数（天）或 null")
            age = None
        if not str(spec.get("why") or "").strip():
            reader.problem(spec, "why", f"{where}.why", "请写明这样合并的理由")
        if age is not None and name in REQUIRED:
            reader.problem(spec, "max_age_days", f"{where}.max_age_days", "必填字段不能过期（应为 null）")
            age = None
        ranks = () if name in PER_CODE else reader.ranks(spec, "sources", f"{where}.sources", sources)
        rules[str(name)] = FieldRule(str(name), ranks, age, str(spec.get("why") or ""))
    for name in PROFILE_FIELDS:
        if name not in merge:
            reader.problem(data, "merge", f"merge.{name}", f"缺少字段 {name} 的合并规则")
    code_ranks: dict[str, dict[str, Ranks]] = {}
    for name, key in PER_CODE.items():
        table = reader.mapping(data, key, key)
        vocabulary = FIELDS[name].vocabulary
        code_ranks[name] = {}
        for code in table:
            if code not in vocabulary:
                reader.problem(table, code, f"{key}.{code}", f"未知代码“{code}”{_suggest(code, vocabulary)}")
                continue
            code_ranks[name][str(code)] = reader.ranks(table, code, f"{key}.{code}", sources)
        for code in vocabulary:
            if code not in table:
                reader.problem(data, key, f"{key}.{code}", f"缺少 {code}（{vocabulary[code]}）的来源（没有权威来源时写 []）")
    for src in list(sources.values()):
        codes: dict[str, frozenset[str]] = {}
        for name in PER_CODE:
            if src.is_open:
                codes[name] = frozenset(FIELDS[name].vocabulary)
                continue
            mine = frozenset(c for c, ranks in code_ranks[name].items() if any(src.name in r for r in ranks))
            if name in src.fields:
                if not mine:
                    spec = data["sources"][src.name]
                    reader.problem(spec, "fields", f"sources.{src.name}.fields",
                                   f"{name}：{PER_CODE[name]} 中没有任何代码以 {src.name} 为来源")
                codes[name] = mine
        sources[src.name] = Source(src.name, src.label, src.fields, codes, src.columns, src.values)
    for name, rule in rules.items():
        for rank in rule.ranks:
            for s in rank:
                if s in sources and name not in sources[s].fields:
                    reader.problem(merge[name], "sources", f"merge.{name}.sources",
                                   f"{s}（{sources[s].label}）不提供字段 {name}，不能列为其权威来源")
    for name, key in PER_CODE.items():
        for code, ranks in code_ranks[name].items():
            for s in (s for rank in ranks for s in rank):
                if s in sources and name not in sources[s].fields:
                    reader.problem(data[key], code, f"{key}.{code}",
                                   f"{s}（{sources[s].label}）的 fields 中没有 {name}，不能列为其权威来源")
    if FIELDS["qualifications"].kind is not Kind.SET:  # pragma: no cover - the field table's contract
        reader.problems.append(f"{path.name}:1: qualifications: 应为多选字段")
    if reader.problems:
        raise SourcesError(reader.problems)
    return Rules(sources, rules, code_ranks, window)


@cache
def rules() -> Rules:
    """The package's merge rules, read once."""
    return load_rules(RULES_PATH)


def source_names() -> tuple[str, ...]:
    """Every source name, in the file's order (registration … self)."""
    return tuple(rules().sources)


def source(name: str) -> Source:
    """One source by name; :class:`UnknownSource` with a Chinese message otherwise."""
    return rules().source(name)


def source_label(name: str) -> str:
    """The Chinese label of a source (税务, 企业自报 …)."""
    return rules().label(name)
