"""Bulk import of enterprise profiles from CSV or JSONL: every row validated, valid rows written in
transactions, rejected rows written with reasons to an errors file; a row is never half-applied and
re-importing the same file changes nothing (content hashes)."""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from profiles.fields import FIELDS, PROFILE_FIELDS, Kind
from profiles.model import ProfileError, parse_profile
from service import store

LIST_FIELDS = tuple(f for f in PROFILE_FIELDS if FIELDS[f].kind is Kind.SET)
INT_FIELDS = ("employees", "patents", "trademarks")


_KIND_WORDS = {Kind.NUMBER: "应为数字", Kind.TEXT: "应为文本", Kind.CATEGORY: "应为文本",
               Kind.DATE: "应为日期文本，格式 YYYY-MM-DD", Kind.SET: "应为列表（如 [] 或 [\"high_tech\"]）"}


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
        else:
            ok = isinstance(value, str)
        if not ok:
            words = "应为整数" if key in INT_FIELDS else _KIND_WORDS.get(kind, "类型不正确")
            raise ProfileError(key, f"{key}（{spec.label}）{words}")


@dataclass
class ImportReport:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    errors_file: Path | None = None


def _decoded_lines(path: Path, bad: set[int]) -> Iterator[str]:
    """The file's lines as text; a line that is not UTF-8 is noted in ``bad`` (and decoded lossily, so
    the reader keeps its place) — its row is rejected instead of the whole import failing half-way."""
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                bad.add(number)
                yield raw.decode("utf-8", "replace")


def _cell(key: str, text: str) -> Any:
    if key in LIST_FIELDS:
        if text in ("-", "无"):
            return []
        return [p.strip() for p in text.replace("，", ",").replace(";", ",").split(",") if p.strip()]
    try:
        if key in INT_FIELDS:
            return int(text)
        if key in FIELDS and FIELDS[key].kind is Kind.NUMBER:
            return float(text)
    except (ValueError, OverflowError):
        return text  # the model names the field: 应为整数 / 应为数字
    return text


def _csv_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """CSV cells are text: empty = unknown; numbers parsed; list fields separated by ; or ,.

    Yields (first physical line of the record, profile dict or the ProfileError that rejects it)."""
    bad: set[int] = set()
    reader = csv.reader(_decoded_lines(path, bad))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return
    except csv.Error as exc:
        raise ValueError(f"CSV表头无法解析：{exc}") from None
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if duplicated:
        raise ValueError(f"CSV表头有重复的列：{'、'.join(duplicated)}")
    if "" in header:
        raise ValueError(f"CSV表头第{header.index('') + 1}列没有列名")
    last = reader.line_num
    while True:
        first = last + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            last = reader.line_num
            yield first, ProfileError("csv", f"第{first}行CSV格式错误：{exc}")
            continue
        last = reader.line_num
        if not any(c.strip() for c in cells):
            continue  # blank line
        broken = sorted(n for n in bad if first <= n <= last)
        if broken:
            yield first, ProfileError("encoding", f"第{broken[0]}行不是有效的UTF-8文本")
        elif len(cells) > len(header):
            yield first, ProfileError("csv", f"该行有{len(cells)}列，多于表头的{len(header)}列")
        elif len(cells) < len(header):
            yield first, ProfileError("csv", f"该行只有{len(cells)}列，少于表头的{len(header)}列（可能被截断）")
        else:
            yield first, {k: _cell(k, v.strip()) for k, v in zip(header, cells, strict=True) if v.strip()}


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    bad: set[int] = set()
    for line, text in enumerate(_decoded_lines(path, bad), start=1):
        if line in bad:
            yield line, ProfileError("encoding", f"第{line}行不是有效的UTF-8文本")
            continue
        if not text.strip():
            continue
        try:
            yield line, json.loads(text)
        except json.JSONDecodeError as exc:
            yield line, ProfileError("json", f"第{line}行不是有效的JSON：{exc.msg}（第{exc.colno}列）")
        except (ValueError, RecursionError) as exc:  # e.g. an integer of thousands of digits, absurd nesting
            yield line, ProfileError("json", f"第{line}行无法解析：{str(exc)[:120]}")


def validate_row(data: Any, *, json_types: bool) -> Any:
    """One row → a validated profile, or ProfileError naming the field (nothing is written)."""
    if isinstance(data, ProfileError):
        raise data
    if json_types:
        check_json_types(data)
    problem = store.unstorable(data)
    if problem:
        field, reason = problem
        raise ProfileError(field or "row", f"{field}：{reason}" if field else reason)
    return parse_profile(data)


def import_file(engine: Engine, path: Path, *, errors_path: Path | None = None, chunk: int = 500) -> ImportReport:
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl"):
        raise ValueError(f"只支持 .csv 或 .jsonl 文件，收到“{path.name}”")
    rows: Iterable[tuple[int, Any]] = _csv_rows(path) if suffix == ".csv" else _jsonl_rows(path)
    report = ImportReport(errors_file=errors_path or path.with_name(path.stem + ".errors.jsonl"))
    assert report.errors_file is not None
    rejected: list[dict[str, Any]] = []
    pending: list[Any] = []
    seen: set[str] = set()

    def flush() -> None:
        with Session(engine) as session:
            for profile in pending:
                existed = store.get_enterprise(session, uscc=profile.uscc) is not None
                _, changed = store.upsert_enterprise(session, profile=profile)
                if not changed:
                    report.unchanged += 1
                elif existed:
                    report.updated += 1
                else:
                    report.created += 1
            session.commit()  # one transaction per chunk: a row is in or out, never half
        pending.clear()

    for line, data in rows:
        report.rows += 1
        try:
            profile = validate_row(data, json_types=suffix == ".jsonl")
            if profile.uscc in seen:
                raise ProfileError("uscc", f"统一社会信用代码{profile.uscc}在文件中重复出现，仅导入第一次出现的行")
            seen.add(profile.uscc)
        except ProfileError as exc:
            report.rejected += 1
            uscc = data.get("uscc") if isinstance(data, dict) else None
            rejected.append({"line": line, "field": exc.field, "error": str(exc),
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
