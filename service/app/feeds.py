"""A department's feed (``policyfit enterprises import FILE --source SOURCE --as-of DAY``): rows of ``uscc`` and
any subset of the fields that source gives, under the department's own headers (``profiles/sources.yaml``).

Read with the importer's line accounting (:func:`service.app.importer.run_import`: every physical line is a
recorded row's, a rejected row's or blank), CSV in UTF-8 or GBK/GB18030 (decoded, not refused) or JSONL. Each
cell is validated by the profile's own rules; a row naming a field its source does not give is refused with its
line and the reason. Each row becomes that source's statement dated ``as_of`` (:mod:`service.app.statements`),
merged with what the other sources say; a firm the register has not named yet is kept waiting
(待补充登记信息). Re-importing the same file writes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from profiles.fields import FIELDS, PROFILE_FIELDS, Kind
from profiles.model import ProfileError, parse_profile
from profiles.sources import DATE_COLUMNS, Source, UnknownSource, rules
from service.app.importer import (
    LIST_FIELDS,
    ImportReport,
    Lined,
    Record,
    cell_value,
    csv_records,
    file_kind,
    jsonl_records,
    run_import,
    screen,
    sniff_encoding,
)
from service.app.statements import Recorded, Statement, record

#: A field's Chinese label → the field (统一社会信用代码 → uscc).
_LABELS = {FIELDS[name].label: name for name in PROFILE_FIELDS}
#: The name a row without one is validated under (a feed row need not name its firm); never stored.
_NO_NAME = "（待补充登记信息）"


@dataclass
class FeedReport(ImportReport):
    """The import report, and what a feed adds: firms waiting for the register's name, firms whose merged
    profile carries a conflict after this feed, and the source documents that changed."""

    source: str = ""
    source_label: str = ""
    as_of: dt.date | None = None
    encoding: str = "utf-8"
    waiting: int = 0
    conflicted: int = 0
    facts_changed: int = 0


@dataclass(frozen=True)
class FeedRow:
    """One validated row: the firm and the values its source states."""

    uscc: str
    values: dict[str, Any]


def parse_source(name: str) -> Source:
    """The source called ``name``; ValueError in Chinese listing the sources otherwise."""
    try:
        return rules().source(name)
    except UnknownSource as exc:
        raise ValueError(f"--source：{exc}") from None


def check_as_of(as_of: dt.date, today: dt.date | None = None) -> dt.date:
    """A feed's date may not be after today (a fact observed tomorrow has not been observed)."""
    today = today or dt.date.today()
    if as_of > today:
        raise ValueError(f"--as-of（数据日期）不能晚于今天（{today.isoformat()}），收到 {as_of.isoformat()}")
    return as_of


class _Reading:
    """How one source's file is read: its headers and its wording of values."""

    def __init__(self, source: Source) -> None:
        self.source = source

    def key(self, raw: str) -> str | None:
        """A header (or JSONL key) → field; None for a column the mapping ignores; ProfileError if unknown.
        Besides the source's own headers and the field names, a field's own Chinese label is understood
        (统一社会信用代码, 从业人员, 营业收入（万元）): the firm's and the hotline's files have no department wording."""
        name = self.source.field_of(raw)
        if name is not None:
            return name
        if self.source.ignores(raw):
            return None
        text = raw.strip().lstrip("\ufeff").replace("(", "（").replace(")", "）")
        label, _, unit = text.partition("（")
        name = _LABELS.get(text) or _LABELS.get(label.strip())
        if name is not None and (text in _LABELS or unit.rstrip("）").strip() == FIELDS[name].unit):
            return name
        own = "、".join(h for h, f in self.source.columns.items() if f is not None)
        known = f"{own}，以及各字段的英文名和中文名" if own else "各字段的英文名和中文名（如 uscc、统一社会信用代码、从业人员）"
        raise ProfileError(str(raw), f"“{raw}”不是{self.source.label}数据的已知列（可用的列：{known}）")

    def header(self, header: list[str]) -> list[str | None]:
        """The CSV header mapped; an unknown column refuses the file (every row would be refused)."""
        mapped: list[str | None] = []
        for raw in header:
            try:
                mapped.append(self.key(raw))
            except ProfileError as exc:
                raise ValueError(f"CSV表头：{exc}；本次未导入任何行") from None
        fields = [m for m in mapped if m is not None]
        twice = sorted({f for f in fields if fields.count(f) > 1})
        if twice:
            names = "；".join(f"{'、'.join(h for h, m in zip(header, mapped, strict=True) if m == f)} 都对应 {f}"
                             for f in twice)
            raise ValueError(f"CSV表头有重复的列：{names}；本次未导入任何行")
        return mapped

    def value(self, name: str, value: Any) -> Any:
        """A value in the source's wording → codes (高企 → high_tech); other values unchanged."""
        spec = FIELDS.get(name)
        if spec is None or not spec.vocabulary:
            return value
        if isinstance(value, str) and spec.kind is Kind.CATEGORY:
            return self.source.value_of(name, value)
        if isinstance(value, list) and spec.kind is Kind.SET:
            out: list[Any] = []
            for item in value:
                if isinstance(item, str):
                    out.append(self.source.value_of(name, item))
                elif isinstance(item, dict) and isinstance(item.get("code"), str):
                    out.append({**item, "code": self.source.value_of(name, item["code"])})
                else:
                    out.append(item)
            return out
        return value

    def cell(self, name: str, text: str) -> Any:
        """A CSV cell: a certificate date as given, anything else as the importer reads it, in this source's
        wording (a category's text is mapped before, a list's items after splitting)."""
        if name in DATE_COLUMNS:
            return text
        if name in FIELDS and FIELDS[name].kind is Kind.CATEGORY:
            text = self.source.value_of(name, text)
        return self.value(name, cell_value(name, text))

    def row(self, data: Any, *, json_types: bool, today: dt.date) -> FeedRow:
        """A record → the validated row, or ProfileError naming the field (Chinese)."""
        if isinstance(data, dict) and json_types:  # JSONL keys through the same mapping as CSV headers
            keyed: dict[str, Any] = {}
            for raw, value in data.items():
                name = self.key(str(raw))
                if name is None:
                    continue
                # a list given as one text (认定类型: "高企;科小"), as in a CSV cell; any other value as typed
                keyed[name] = (self.cell(name, value.strip()) if name in LIST_FIELDS and isinstance(value, str)
                               and value.strip() else self.value(name, value))
            data = keyed
        data = dict(screen(data, json_types=json_types))
        start, end = data.pop(DATE_COLUMNS[0], None), data.pop(DATE_COLUMNS[1], None)
        if start is not None or end is not None:
            data["qualifications"] = _dated(data.get("qualifications"), start, end)
        if not data.get("uscc"):
            raise ProfileError("uscc", "缺少统一社会信用代码（uscc），无法确定是哪家企业")
        refused = [(name, why) for name in data if name in PROFILE_FIELDS and
                   (why := self._refusal(name, data[name])) is not None]
        if refused:
            raise ProfileError(refused[0][0], refused[0][1], refused)
        named = "name" in data
        profile = parse_profile(data if named else {**data, "name": _NO_NAME}, as_of=today)
        values = profile.stated()
        uscc = values.pop("uscc")
        if not named:
            values.pop("name", None)
        return FeedRow(uscc, values)

    def _refusal(self, name: str, value: Any) -> str | None:
        why = self.source.refusal(name)
        if why is None and isinstance(value, list) and name in ("qualifications", "flags"):
            for item in value:
                code = item.get("code") if isinstance(item, dict) else item
                if isinstance(code, str) and code in FIELDS[name].vocabulary:
                    why = why or self.source.refusal(name, code)
        return why


def _dated(items: Any, start: Any, end: Any) -> Any:
    """The row's certificate dates (发证日期、有效期至 columns) given to each of its qualifications."""
    if not items:
        raise ProfileError("qualifications", "qualifications（资质）：给出了证书日期，但没有资质类型")
    if not isinstance(items, list):
        return items  # the model names the field
    dates = {k: v for k, v in (("valid_from", start), ("valid_to", end)) if v is not None}
    return [{"code": item, **dates} if isinstance(item, str) else item for item in items]


def import_feed(engine: Engine, path: Path, *, source: str, as_of: dt.date, errors_path: Path | None = None,
                chunk: int = 500) -> FeedReport:
    """Import one department's feed dated ``as_of``; see the module's docstring."""
    src = parse_source(source)
    check_as_of(as_of)
    kind = file_kind(path)
    encoding, _ = sniff_encoding(path)
    reading = _Reading(src)
    records: Iterator[Record] = (csv_records(path, encoding=encoding, header_map=reading.header, cell=reading.cell)
                                 if kind == "csv" else jsonl_records(path, encoding=encoding))
    report = FeedReport(errors_file=errors_path or path.with_name(path.stem + ".errors.jsonl"), source=src.name,
                        source_label=src.label, as_of=as_of, encoding=encoding)
    today = dt.date.today()

    def write(rows: list[Lined[FeedRow]]) -> list[tuple[Lined[FeedRow], ProfileError]]:
        refused: list[tuple[Lined[FeedRow], ProfileError]] = []
        with Session(engine) as session:
            statements = [Statement(row.uscc, src.name, as_of, row.values) for _, _, row in rows]
            for lined, done in zip(rows, record(session, statements), strict=True):
                if isinstance(done, ProfileError):
                    refused.append((lined, done))
                    continue
                count(report, done)
            session.commit()  # one transaction per chunk: a row is in or out, never half
        return refused

    run_import(records, report, validate=lambda data: reading.row(data, json_types=kind == "jsonl", today=today),
               write=write, chunk=chunk)
    return report


def count(report: FeedReport, done: Recorded) -> None:
    """Add one recorded row to the report."""
    if done.outcome == "waiting":
        report.waiting += 1
    elif done.outcome == "created":
        report.created += 1
    elif done.outcome == "updated":
        report.updated += 1
    else:
        report.unchanged += 1
    report.facts_changed += done.doc_changed
    report.conflicted += bool(done.conflicts)
