"""Bulk import of enterprise profiles from CSV or JSONL: every row validated, valid rows written in
transactions, rejected rows written with reasons to an errors file; a row is never half-applied and
re-importing the same file changes nothing (content hashes)."""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import json
import re
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from sqlalchemy.engine import Engine
from sqlmodel import Session

from profiles.fields import FIELDS, PROFILE_FIELDS, Kind
from profiles.model import EnterpriseProfile, ProfileError, parse_profile
from profiles.sources import SELF
from service.app.statements import Statement, record
from service.store.values import unstorable

LIST_FIELDS = tuple(f for f in PROFILE_FIELDS if FIELDS[f].kind is Kind.SET)


def _whole_numbers() -> tuple[str, ...]:
    """The number fields the model takes as whole numbers (人数、件数: ``Count``), read from the model itself so
    that a new count field (disabled_employees) is parsed and named as an integer everywhere."""
    def is_int(annotation: Any) -> bool:
        if annotation is int:
            return True
        return any(is_int(a) for a in typing.get_args(annotation))

    return tuple(n for n, f in EnterpriseProfile.model_fields.items()
                 if FIELDS[n].kind is Kind.NUMBER and is_int(f.annotation))


INT_FIELDS = _whole_numbers()
#: A category cell may give the value's Chinese label instead of its code (小规模纳税人, 按季申报, 小型).
_CATEGORY_LABELS = {name: {label: code for code, label in FIELDS[name].vocabulary.items()}
                    for name in PROFILE_FIELDS if FIELDS[name].kind is Kind.CATEGORY}
#: Fields in per cent: a spreadsheet cell may carry the sign (3.2%).
PERCENT_FIELDS = tuple(n for n in PROFILE_FIELDS if FIELDS[n].kind is Kind.NUMBER and FIELDS[n].unit == "%")


_KIND_WORDS = {Kind.NUMBER: "应为数字", Kind.TEXT: "应为文本", Kind.CATEGORY: "应为文本",
               Kind.DATE: "应为日期文本，格式 YYYY-MM-DD", Kind.BOOL: "应为 true 或 false", Kind.SET: "应为列表（如 [] 或 [\"high_tech\"]）"}


def check_json_types(data: Any) -> None:
    """The JSON types of EnterpriseProfile v1, stricter than the model's lax coercion (which would take
    ``true`` or ``"1.5"`` as a number and ``1700000000`` as a date): raises :class:`ProfileError`
    naming the first field of the wrong type. Unknown fields and nulls are left to the model."""
    if not isinstance(data, dict):
        return
    for key, value in data.items():
        spec = FIELDS.get(key) if isinstance(key, str) else None
        if value is None or spec is None or key not in PROFILE_FIELDS:
            continue
        kind = spec.kind
        if kind is Kind.NUMBER:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        elif kind is Kind.SET:
            ok = isinstance(value, list)
        elif kind is Kind.BOOL:
            ok = isinstance(value, bool)
        else:
            ok = isinstance(value, str)
        if not ok:
            words = "应为整数" if key in INT_FIELDS else _KIND_WORDS.get(kind, "类型不正确")
            raise ProfileError(key, f"{key}（{spec.label}）{words}")


@dataclass
class ImportReport:
    rows: int = 0  # records read (a CSV record may span lines: a quoted field with a line break)
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    blank: int = 0  # blank lines, skipped
    lines: int = 0  # physical lines after the CSV header: every one belongs to a row (stored or rejected) or is blank
    errors_file: Path | None = None


BLANK = object()  # a blank line: nothing to import, but the line is accounted for


UTF8 = "utf-8"
GB18030 = "gb18030"  # a superset of GBK: what Excel writes for "CSV" on a Chinese Windows
_ENCODING_NAMES = {UTF8: "UTF-8", GB18030: "GB18030（GBK）"}


def sniff_encoding(path: Path) -> tuple[str, int | None]:
    """(encoding, first line that is not UTF-8) of a file: ``gb18030`` when its non-ASCII lines are not
    UTF-8 but all read as GB18030 and none is UTF-8 text; ``utf-8`` otherwise (a UTF-8 file with a few
    broken lines: those lines are rejected one by one, see :func:`decoded_lines`). A UTF-16 file (Excel's
    "Unicode text") is refused as a whole: ValueError, nothing read."""
    first_bad: int | None = None
    utf8_text = gbk_only = 0
    with path.open("rb") as fh:
        if fh.read(2) in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
            raise ValueError("文件编码不是UTF-8：文件以UTF-16字节序标记开头（UTF-16编码）。请另存为“CSV UTF-8（逗号分隔）”"
                             "或转换为UTF-8编码后再导入；本次未导入任何行")
        fh.seek(0)
        for number, raw in enumerate(fh, start=1):
            if raw.isascii():
                continue
            try:
                raw.decode(UTF8)
                utf8_text += 1
            except UnicodeDecodeError:
                first_bad = first_bad or number
                try:
                    raw.decode(GB18030)
                    gbk_only += 1
                except UnicodeDecodeError:
                    return UTF8, first_bad  # neither: broken lines, rejected one by one
    if first_bad is not None and gbk_only and not utf8_text:
        return GB18030, first_bad
    return UTF8, first_bad


def _check_encoding(path: Path) -> None:
    """Refuse, before anything is written, a file that is not UTF-8 but reads as GBK/GB18030: otherwise every
    line with Chinese text would be rejected one by one. (A department's feed, ``--source``, is decoded
    instead: :mod:`service.app.feeds`.)"""
    encoding, first_bad = sniff_encoding(path)
    if encoding != UTF8:
        raise ValueError(f"文件编码不是UTF-8：第{first_bad}行起的内容无法按UTF-8解码，疑似GBK（GB18030）编码"
                         "（如Excel默认另存的CSV）。请另存为“CSV UTF-8（逗号分隔）”或转换为UTF-8编码后再导入；"
                         "本次未导入任何行")


def decoded_lines(path: Path, bad: set[int], encoding: str = UTF8) -> Iterator[tuple[int, str]]:
    """(line number, text) of every physical line; a line that is not valid in ``encoding`` is noted in
    ``bad`` (and decoded lossily, so the reader keeps its place) — its row is rejected instead of the whole
    import failing half-way."""
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                yield number, raw.decode(encoding)
            except UnicodeDecodeError:
                bad.add(number)
                yield number, raw.decode(encoding, "replace")


def _not_decodable(line: int, encoding: str) -> ProfileError:
    return ProfileError("encoding", f"第{line}行不是有效的{_ENCODING_NAMES.get(encoding, encoding)}文本")


#: A list cell may give the items' Chinese labels (高新技术企业；列入经营异常名录).
_SET_LABELS = {name: {label: code for code, label in FIELDS[name].vocabulary.items()} for name in LIST_FIELDS}
#: A dated qualification in a cell: 高新技术企业（2023-11-01至2026-10-31）, high_tech(~2026-10-31), either date optional.
_DATED = re.compile(r"(?P<code>[^（(]+?)\s*[（(]\s*(?P<start>[0-9-]*?)\s*(?:至|~|～|到)\s*(?P<end>[0-9-]*)\s*[）)]")


def _list_item(key: str, text: str) -> Any:
    dated = _DATED.fullmatch(text) if key == "qualifications" else None
    if dated is None:
        return _SET_LABELS[key].get(text, text)  # anything else: the model names the field
    item = {"code": _SET_LABELS[key].get(dated["code"].strip(), dated["code"].strip())}
    if dated["start"]:
        item["valid_from"] = dated["start"]
    if dated["end"]:
        item["valid_to"] = dated["end"]
    return item


def cell_value(key: str, text: str) -> Any:
    """A CSV cell (text, stripped, not empty) as the JSON value of field ``key``: numbers parsed, 是/否,
    Chinese labels of codes, a list split on , ; 、 (``-`` or 无 = none). Anything that does not parse is
    returned as text, for the model to refuse naming the field."""
    if key in LIST_FIELDS:
        if text in ("-", "无"):
            return []
        parts = text.replace("，", ",").replace(";", ",").replace("；", ",").replace("、", ",").split(",")
        return [_list_item(key, p.strip()) for p in parts if p.strip()]
    if key in FIELDS and FIELDS[key].kind is Kind.BOOL:  # a spreadsheet says 是/否 or true/false
        answer = {"是": True, "true": True, "否": False, "false": False}.get(text.strip().lower())
        return text if answer is None else answer  # anything else: the model names the field
    if key in _CATEGORY_LABELS:
        return _CATEGORY_LABELS[key].get(text, text)  # anything else: the model names the field
    if key in PERCENT_FIELDS and text.endswith(("%", "％")):
        text = text[:-1].strip()
    try:
        if key in INT_FIELDS:
            return int(text)
        if key in FIELDS and FIELDS[key].kind is Kind.NUMBER:
            return float(text)
    except (ValueError, OverflowError):
        return text  # the model names the field: 应为整数 / 应为数字
    return text


class _Lines:
    """The physical lines fed to :mod:`csv`, remembering which ones the current record took, and able to
    give lines back (after a malformed record, parsing starts again on the line after its first)."""

    def __init__(self, source: Iterator[tuple[int, str]]) -> None:
        self.source = source
        self.back: list[tuple[int, str]] = []  # given back, next one last
        self.taken: list[tuple[int, str]] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        item = self.back.pop() if self.back else next(self.source)
        self.taken.append(item)
        return item[1]

    def give_back(self, items: list[tuple[int, str]]) -> None:
        self.back.extend(reversed(items))


_CSV_ERRORS = {"unexpected end of data": "引号不成对（直到文件末尾也没有闭合的引号）",
               "field larger than field limit": "引号不成对或字段过长"}


def _csv_reason(exc: csv.Error) -> str:
    text = str(exc)
    for key, words in _CSV_ERRORS.items():
        if text.startswith(key):
            return words
    if "expected after" in text:
        return "引号用法不对（带引号的字段在闭合引号后应紧跟逗号或换行）"
    return f"无法解析（{text}）"


#: Maps a CSV header (stripped, no duplicates, no empty name) to the field names of its columns (None: a column
#: read and ignored), or raises ValueError (Chinese) refusing the file — a department's feed maps its own
#: headers (:mod:`service.app.feeds`).
HeaderMap = Callable[[list[str]], list[str | None]]
#: A cell's text (stripped, not empty) → its JSON value, given the field name: :func:`cell_value` by default.
CellParser = Callable[[str, str], Any]
#: (first line, last line, the record as a dict / the ProfileError that rejects it / BLANK)
Record = tuple[int, int, Any]


def csv_records(path: Path, *, encoding: str = UTF8, header_map: HeaderMap | None = None,
                cell: CellParser = cell_value) -> Iterator[Record]:
    """CSV cells are text: empty = unknown; numbers parsed; list fields separated by ; or ,.

    Yields (first line, last line, record dict, the ProfileError that rejects the record, or
    :data:`BLANK`) so that every physical line after the header belongs to exactly one item. A record
    that is malformed (unbalanced quotes, wrong number of columns, a quote misplaced) and took several
    lines — an opening quote that never closes swallows the lines after it — is rejected as its first
    line alone, and parsing starts again on the next line: the rows after a broken one are not lost."""
    bad: set[int] = set()
    lines = _Lines(decoded_lines(path, bad, encoding))
    reader = csv.reader(lines, strict=True)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return
    except csv.Error as exc:
        raise ValueError(f"CSV表头（第1行）无法解析：{_csv_reason(exc)}；本次未导入任何行") from None
    if len(lines.taken) > 1:
        raise ValueError(f"CSV表头无法解析：第1行的引号不成对（表头跨到了第{lines.taken[-1][0]}行）；本次未导入任何行")
    if 1 in bad:
        raise ValueError(f"CSV表头（第1行）{_not_decodable(1, encoding)}；本次未导入任何行")
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if duplicated:
        raise ValueError(f"CSV表头有重复的列：{'、'.join(duplicated)}")
    if "" in header:
        raise ValueError(f"CSV表头第{header.index('') + 1}列没有列名")
    keys: list[str | None] = list(header) if header_map is None else header_map(header)
    width = len(keys)
    while True:
        lines.taken = []
        problem: str | None = None
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            cells, problem = [], _csv_reason(exc)
        taken = lines.taken
        first, last = taken[0][0], taken[-1][0]
        if problem is None and len(cells) != width and len(taken) > 1:
            problem = f"引号不成对（从该行起读到第{last}行才成为一条记录，有{len(cells)}列，表头有{width}列）"
        if problem is not None:
            if len(taken) > 1:  # the record ran over lines that were not its own: start again after its first
                lines.give_back(taken[1:])
                reader = csv.reader(lines, strict=True)
                last = first
            yield first, last, ProfileError("csv", f"第{first}行CSV格式错误：{problem}；该行未导入，其后各行照常导入")
            continue
        if not any(c.strip() for c in cells):
            yield first, last, BLANK
            continue
        broken = sorted(n for n in bad if first <= n <= last)
        if broken:
            yield first, last, _not_decodable(broken[0], encoding)
        elif len(cells) > width:
            yield first, last, ProfileError("csv", f"该行有{len(cells)}列，多于表头的{width}列")
        elif len(cells) < width:
            yield first, last, ProfileError("csv", f"该行只有{len(cells)}列，少于表头的{width}列（可能被截断）")
        else:
            yield first, last, {k: cell(k, v.strip()) for k, v in zip(keys, cells, strict=True)
                                if k is not None and v.strip()}


def jsonl_records(path: Path, *, encoding: str = UTF8) -> Iterator[Record]:
    """One item per physical line: a record dict, the ProfileError that rejects the line, or BLANK."""
    bad: set[int] = set()
    for line, text in decoded_lines(path, bad, encoding):
        if line in bad:
            yield line, line, _not_decodable(line, encoding)
            continue
        if not text.strip():
            yield line, line, BLANK
            continue
        try:
            yield line, line, json.loads(text)
        except json.JSONDecodeError as exc:
            yield line, line, ProfileError("json", f"第{line}行不是有效的JSON：{exc.msg}（第{exc.colno}列）")
        except (ValueError, RecursionError) as exc:  # e.g. an integer of thousands of digits, absurd nesting
            yield line, line, ProfileError("json", f"第{line}行无法解析：{str(exc)[:120]}")


def file_kind(path: Path) -> str:
    """``csv`` or ``jsonl`` from the file name; anything else is refused (ValueError, Chinese)."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl"):
        raise ValueError(f"只支持 .csv 或 .jsonl 文件，收到“{path.name}”")
    return suffix[1:]


def screen(data: Any, *, json_types: bool) -> dict[str, Any]:
    """A record's dict before validation: a reading error is raised, JSON types are checked (a JSONL line),
    and what no column can store is refused — ProfileError naming the field."""
    if isinstance(data, ProfileError):
        raise data
    if json_types:
        check_json_types(data)
    problem = unstorable(data)
    if problem:
        field, reason = problem
        raise ProfileError(field or "row", f"{field}：{reason}" if field else reason)
    if not isinstance(data, dict):
        raise ProfileError("profile", "企业画像应为JSON对象")
    return data


def validate_row(data: Any, *, json_types: bool) -> Any:
    """One row → a validated profile, or ProfileError naming the field (nothing is written)."""
    return parse_profile(screen(data, json_types=json_types), as_of=dt.date.today())  # founded today at the latest


class Keyed(Protocol):
    """A validated row: it names its firm."""

    @property
    def uscc(self) -> str: ...


T = TypeVar("T", bound=Keyed)
#: A validated row with its lines: (first line, last line, row).
Lined = tuple[int, int, T]


def run_import(records: Iterable[Record], report: ImportReport, *, validate: Callable[[Any], T],
               write: Callable[[list[Lined[T]]], list[tuple[Lined[T], ProfileError]]],
               chunk: int = 500) -> ImportReport:
    """Account for every record: blank, rejected (``validate`` raised ProfileError, or its firm already
    appeared in the file, or ``write`` refused it) or handed to ``write`` in chunks — ``write`` commits one
    transaction per chunk, counts what it stored in ``report`` and returns the rows it refused (nothing of
    them written). The rejected rows go to ``report.errors_file`` with their lines and reasons."""
    assert report.errors_file is not None
    rejected: list[dict[str, Any]] = []
    pending: list[Lined[T]] = []
    seen: set[str] = set()

    def reject(line: int, last: int, exc: ProfileError, uscc: Any) -> None:
        report.rejected += 1
        rejected.append({"line": line, "last_line": last, "field": exc.field, "error": str(exc),
                         "errors": [{"field": f, "error": m} for f, m in exc.errors],
                         "uscc": uscc if isinstance(uscc, str) else None})

    def flush() -> None:
        for (line, last, row), exc in write(pending):
            reject(line, last, exc, row.uscc)
        pending.clear()

    for line, last, data in records:
        report.lines += last - line + 1
        if data is BLANK:
            report.blank += 1
            continue
        report.rows += 1
        try:
            row = validate(data)
            if row.uscc in seen:
                raise ProfileError("uscc", f"统一社会信用代码{row.uscc}在文件中重复出现，仅导入第一次出现的行")
            seen.add(row.uscc)
        except ProfileError as exc:
            reject(line, last, exc, data.get("uscc") if isinstance(data, dict) else None)
            continue
        pending.append((line, last, row))
        if len(pending) >= chunk:
            flush()
    if pending:
        flush()
    rejected.sort(key=lambda item: item["line"])
    # backslashreplace: a rejected row may hold text that is not valid UTF-8 (that may be why it was rejected)
    with report.errors_file.open("w", encoding="utf-8", errors="backslashreplace") as fh:
        for item in rejected:
            fh.write(json.dumps(item, ensure_ascii=False) + "\n")
    return report


def import_file(engine: Engine, path: Path, *, errors_path: Path | None = None, chunk: int = 500,
                as_of: dt.date | None = None) -> ImportReport:
    """The import of whole profiles (no ``--source``): each row is the firm's own statement (source ``self``)
    dated ``as_of`` (today by default), merged with what the departments say of it."""
    kind = file_kind(path)
    _check_encoding(path)
    records = csv_records(path) if kind == "csv" else jsonl_records(path)
    report = ImportReport(errors_file=errors_path or path.with_name(path.stem + ".errors.jsonl"))
    day = as_of or dt.date.today()

    def write(rows: list[Lined[EnterpriseProfile]]) -> list[tuple[Lined[EnterpriseProfile], ProfileError]]:
        refused: list[tuple[Lined[EnterpriseProfile], ProfileError]] = []
        statements = [Statement(p.uscc, SELF, day, {k: v for k, v in p.stated().items() if k != "uscc"}, whole=True)
                      for _, _, p in rows]
        with Session(engine) as session:
            for lined, done in zip(rows, record(session, statements), strict=True):
                if isinstance(done, ProfileError):
                    refused.append((lined, done))
                elif done.outcome == "created":
                    report.created += 1
                elif done.outcome == "updated":
                    report.updated += 1
                else:
                    report.unchanged += 1
            session.commit()  # one transaction per chunk: a row is in or out, never half
        return refused

    return run_import(records, report, validate=lambda data: validate_row(data, json_types=kind == "jsonl"),
                      write=write, chunk=chunk)
