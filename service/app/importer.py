"""Bulk import of enterprise profiles from CSV or JSONL: every row validated, valid rows written in
transactions, rejected rows written with reasons to an errors file; a row is never half-applied and
re-importing the same file changes nothing (content hashes)."""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import json
import typing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from profiles.fields import FIELDS, PROFILE_FIELDS, Kind
from profiles.model import EnterpriseProfile, ProfileError, parse_profile
from service.store.enterprises import get_enterprise, upsert_enterprise
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


def _check_encoding(path: Path) -> None:
    """Refuse, before anything is written, a file that is not UTF-8 but reads as GBK/GB18030 (what Excel
    writes for "CSV" on a Chinese Windows): otherwise every line with Chinese text would be rejected one by
    one. A UTF-8 file with a few broken lines is imported, those lines rejected (see :func:`_decoded_lines`)."""
    first_bad: int | None = None
    utf8_text = gbk_only = 0
    with path.open("rb") as fh:
        if fh.read(2) in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):  # Excel's "Unicode text"
            raise ValueError("文件编码不是UTF-8：文件以UTF-16字节序标记开头（UTF-16编码）。请另存为“CSV UTF-8（逗号分隔）”"
                             "或转换为UTF-8编码后再导入；本次未导入任何行")
        fh.seek(0)
        for number, raw in enumerate(fh, start=1):
            if raw.isascii():
                continue
            try:
                raw.decode("utf-8")
                utf8_text += 1
            except UnicodeDecodeError:
                first_bad = first_bad or number
                try:
                    raw.decode("gb18030")
                    gbk_only += 1
                except UnicodeDecodeError:
                    return  # neither: broken lines, rejected one by one
    if first_bad is not None and gbk_only and not utf8_text:
        raise ValueError(f"文件编码不是UTF-8：第{first_bad}行起的内容无法按UTF-8解码，疑似GBK（GB18030）编码"
                         "（如Excel默认另存的CSV）。请另存为“CSV UTF-8（逗号分隔）”或转换为UTF-8编码后再导入；"
                         "本次未导入任何行")


def _decoded_lines(path: Path, bad: set[int]) -> Iterator[tuple[int, str]]:
    """(line number, text) of every physical line; a line that is not UTF-8 is noted in ``bad`` (and
    decoded lossily, so the reader keeps its place) — its row is rejected instead of the whole import
    failing half-way."""
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError:
                bad.add(number)
                yield number, raw.decode("utf-8", "replace")


def _cell(key: str, text: str) -> Any:
    if key in LIST_FIELDS:
        if text in ("-", "无"):
            return []
        return [p.strip() for p in text.replace("，", ",").replace(";", ",").split(",") if p.strip()]
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


def _csv_rows(path: Path) -> Iterator[tuple[int, int, Any]]:
    """CSV cells are text: empty = unknown; numbers parsed; list fields separated by ; or ,.

    Yields (first line, last line, profile dict, the ProfileError that rejects the record, or
    :data:`BLANK`) so that every physical line after the header belongs to exactly one item. A record
    that is malformed (unbalanced quotes, wrong number of columns, a quote misplaced) and took several
    lines — an opening quote that never closes swallows the lines after it — is rejected as its first
    line alone, and parsing starts again on the next line: the rows after a broken one are not lost."""
    bad: set[int] = set()
    lines = _Lines(_decoded_lines(path, bad))
    reader = csv.reader(lines, strict=True)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return
    except csv.Error as exc:
        raise ValueError(f"CSV表头（第1行）无法解析：{_csv_reason(exc)}；本次未导入任何行") from None
    if len(lines.taken) > 1:
        raise ValueError(f"CSV表头无法解析：第1行的引号不成对（表头跨到了第{lines.taken[-1][0]}行）；本次未导入任何行")
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if duplicated:
        raise ValueError(f"CSV表头有重复的列：{'、'.join(duplicated)}")
    if "" in header:
        raise ValueError(f"CSV表头第{header.index('') + 1}列没有列名")
    width = len(header)
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
            yield first, last, ProfileError("encoding", f"第{broken[0]}行不是有效的UTF-8文本")
        elif len(cells) > width:
            yield first, last, ProfileError("csv", f"该行有{len(cells)}列，多于表头的{width}列")
        elif len(cells) < width:
            yield first, last, ProfileError("csv", f"该行只有{len(cells)}列，少于表头的{width}列（可能被截断）")
        else:
            yield first, last, {k: _cell(k, v.strip()) for k, v in zip(header, cells, strict=True) if v.strip()}


def _jsonl_rows(path: Path) -> Iterator[tuple[int, int, Any]]:
    """One item per physical line: a profile dict, the ProfileError that rejects the line, or BLANK."""
    bad: set[int] = set()
    for line, text in _decoded_lines(path, bad):
        if line in bad:
            yield line, line, ProfileError("encoding", f"第{line}行不是有效的UTF-8文本")
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


def validate_row(data: Any, *, json_types: bool) -> Any:
    """One row → a validated profile, or ProfileError naming the field (nothing is written)."""
    if isinstance(data, ProfileError):
        raise data
    if json_types:
        check_json_types(data)
    problem = unstorable(data)
    if problem:
        field, reason = problem
        raise ProfileError(field or "row", f"{field}：{reason}" if field else reason)
    return parse_profile(data, as_of=dt.date.today())  # to be stored: founded today at the latest


def import_file(engine: Engine, path: Path, *, errors_path: Path | None = None, chunk: int = 500) -> ImportReport:
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl"):
        raise ValueError(f"只支持 .csv 或 .jsonl 文件，收到“{path.name}”")
    _check_encoding(path)
    rows: Iterable[tuple[int, int, Any]] = _csv_rows(path) if suffix == ".csv" else _jsonl_rows(path)
    report = ImportReport(errors_file=errors_path or path.with_name(path.stem + ".errors.jsonl"))
    assert report.errors_file is not None
    rejected: list[dict[str, Any]] = []
    pending: list[Any] = []
    seen: set[str] = set()

    def flush() -> None:
        with Session(engine) as session:
            for profile in pending:
                existed = get_enterprise(session, uscc=profile.uscc) is not None
                _, changed = upsert_enterprise(session, profile=profile)
                if not changed:
                    report.unchanged += 1
                elif existed:
                    report.updated += 1
                else:
                    report.created += 1
            session.commit()  # one transaction per chunk: a row is in or out, never half
        pending.clear()

    for line, last, data in rows:
        report.lines += last - line + 1
        if data is BLANK:
            report.blank += 1
            continue
        report.rows += 1
        try:
            profile = validate_row(data, json_types=suffix == ".jsonl")
            if profile.uscc in seen:
                raise ProfileError("uscc", f"统一社会信用代码{profile.uscc}在文件中重复出现，仅导入第一次出现的行")
            seen.add(profile.uscc)
        except ProfileError as exc:
            report.rejected += 1
            uscc = data.get("uscc") if isinstance(data, dict) else None
            rejected.append({"line": line, "last_line": last, "field": exc.field, "error": str(exc),
                             "errors": [{"field": f, "error": m} for f, m in exc.errors],
                             "uscc": uscc if isinstance(uscc, str) else None})
            continue
        pending.append(profile)
        if len(pending) >= chunk:
            flush()
    if pending:
        flush()
    # backslashreplace: a rejected row may hold text that is not valid UTF-8 (that may be why it was rejected)
    with report.errors_file.open("w", encoding="utf-8", errors="backslashreplace") as fh:
        for item in rejected:
            fh.write(json.dumps(item, ensure_ascii=False) + "\n")
    return report
