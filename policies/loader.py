"""Load and validate the catalog: every problem is reported as ``file:line: key: message``.

The message is Chinese (policy officers read it); file, line and key stay machine-readable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from policies.messages import pydantic_message, show_value, suggest_zh, type_name, yaml_problem
from policies.rules import RuleError, parse_rule
from policies.schema import Policy

CATALOG_DIR = Path(__file__).with_name("catalog")


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.key}: {self.message}"


class CatalogError(ValueError):
    """The catalog does not load; ``problems`` lists every file:line at fault."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class _LineDict(dict[str, Any]):
    """A mapping that remembers the line of each key (1-based)."""

    lines: dict[str, int]
    start: int


class _LineLoader(yaml.SafeLoader):
    duplicates: list[tuple[str, int]]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Any:  # type: ignore[override]
        out = _LineDict()
        out.lines = {}
        out.start = node.start_mark.line + 1
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in out:
                self.duplicates.append((str(key), key_node.start_mark.line + 1))
            try:
                out[key] = self.construct_object(value_node, deep=deep)
            except ValueError as exc:  # e.g. a date that does not exist: 2023-13-01
                raise yaml.constructor.ConstructorError(
                    None, None, f"invalid value {value_node.value!r}: {exc}", value_node.start_mark
                ) from None
            out.lines[str(key)] = key_node.start_mark.line + 1
        return out


_LineLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _LineLoader.construct_mapping
)


def read_yaml(path: Path) -> tuple[Any, list[tuple[str, int]]]:
    """Parse one YAML file keeping key lines; returns (data, duplicate keys)."""
    loader = _LineLoader(path.read_text(encoding="utf-8"))
    loader.duplicates = []
    try:
        return loader.get_single_data(), loader.duplicates
    finally:
        loader.dispose()


def line_of(data: Any, loc: Iterable[Any]) -> int:
    """Best line for a location path such as ('eligibility', 'all', 1, 'in')."""
    line = getattr(data, "start", 1)
    node = data
    for part in loc:
        if isinstance(node, _LineDict):
            line = node.lines.get(str(part), line)
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            line = getattr(node, "start", line)
        else:
            break
    return line


def _rule_loc(path: str) -> list[Any]:
    """``all[1].not.in`` → ['all', 1, 'not', 'in']."""
    loc: list[Any] = []
    for part in filter(None, path.replace("[", ".").replace("]", "").split(".")):
        loc.append(int(part) if part.isdigit() else part)
    return loc


def parse_policy_file(path: Path, display: str | None = None) -> tuple[Policy | None, list[Problem]]:
    """Validate one file; returns the policy or the problems found in it."""
    name = display or path.name
    try:
        data, duplicates = read_yaml(path)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return None, [Problem(name, (mark.line + 1) if mark else 1, "yaml", yaml_problem(exc))]
    except UnicodeDecodeError:
        return None, [Problem(name, 1, "file", "文件不是 UTF-8 编码，请另存为 UTF-8 后重试")]
    problems = [Problem(name, line, key, f"键“{key}”重复出现（同一层级只能写一次）") for key, line in duplicates]
    if not isinstance(data, Mapping):
        what = "空文件" if data is None else f"{type_name(data)} {show_value(data)}"
        return None, problems + [Problem(name, 1, "file", f"政策文件应为 YAML 映射（每行“键: 值”），实际为{what}")]
    known = set(Policy.model_fields)
    for key in data:
        if key not in known:
            problems.append(
                Problem(name, line_of(data, [key]), str(key), f"未知字段“{key}”{suggest_zh(key, known)}")
            )
    if "eligibility" in data:
        try:
            parse_rule(data["eligibility"])
        except RuleError as exc:
            loc = ["eligibility", *_rule_loc(exc.path)]
            problems.append(Problem(name, line_of(data, loc), ".".join(map(str, loc)), str(exc)))
    try:
        policy = Policy.model_validate(dict(data))
    except ValidationError as exc:
        for err in exc.errors():
            loc = list(err["loc"])
            if loc and loc[0] == "eligibility" or (loc and str(loc[0]) not in known):
                continue  # reported above with a precise path
            msg = pydantic_message(err)
            problems.append(Problem(name, line_of(data, loc), ".".join(map(str, loc)) or "file", msg))
        return None, problems
    stem = path.name.removesuffix(".yaml")
    if policy.id != stem:
        problems.append(Problem(name, line_of(data, ["id"]), "id",
                                f"政策ID“{policy.id}”与文件名“{path.name}”不一致：ID 应与文件名（不含 .yaml）相同"))
    return (None if problems else policy), problems


@dataclass(frozen=True)
class Catalog:
    """The loaded catalog: every entry by id (file order = id order), and its fingerprint.

    ``entries`` holds every kind (policy, commitment, plan_work): all of them are findable.
    Iteration, ``len`` and ``policies`` see only ``kind == "policy"`` entries — the ones the rule
    engine, packages and the nightly push work on. ``catalog[id]`` finds any entry.
    """

    entries: dict[str, Policy]
    fingerprint: str
    directory: Path = field(default=CATALOG_DIR)

    @cached_property
    def policies(self) -> dict[str, Policy]:
        return {pid: p for pid, p in self.entries.items() if p.kind == "policy"}

    @property
    def version(self) -> str:
        """Short, stable identity of the catalog content (changes when any file changes)."""
        return f"catalog-{self.fingerprint[:12]}"

    def __iter__(self) -> Iterator[Policy]:
        return iter(self.policies.values())

    def __len__(self) -> int:
        return len(self.policies)

    def __getitem__(self, policy_id: str) -> Policy:
        return self.entries[policy_id]

    def __contains__(self, policy_id: object) -> bool:
        return policy_id in self.entries

    def published(self) -> list[Policy]:
        return [p for p in self if p.status == "published"]

    def all_entries(self) -> list[Policy]:
        """Every entry of every kind (for search and coverage)."""
        return list(self.entries.values())


def load_catalog(directory: Path | str = CATALOG_DIR) -> Catalog:
    """Load every ``*.yaml`` under ``directory``; raise :class:`CatalogError` listing all problems."""
    directory = Path(directory)
    files = sorted(directory.glob("*.yaml"))
    problems: list[Problem] = []
    policies: dict[str, Policy] = {}
    first_seen: dict[str, str] = {}
    digest = hashlib.sha256()
    if not files:
        raise CatalogError([Problem(str(directory), 0, "catalog", "目录中没有政策文件（*.yaml）")])
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        policy, found = parse_policy_file(path)
        problems.extend(found)
        if policy is None:
            continue
        if policy.id in policies:
            problems.append(Problem(path.name, 1, "id", f"政策ID“{policy.id}”重复（{first_seen[policy.id]} 中已使用）"))
            continue
        policies[policy.id] = policy
        first_seen[policy.id] = path.name
    if problems:
        raise CatalogError(problems)
    return Catalog(entries=policies, fingerprint=digest.hexdigest(), directory=directory)
