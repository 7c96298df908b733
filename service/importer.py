"""Bulk import of enterprise profiles from CSV or JSONL: every row validated, valid rows written in
transactions, rejected rows written with reasons to an errors file; a row is never half-applied and
re-importing the same file changes nothing (content hashes)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
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


@dataclass
class ImportReport:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    errors_file: Path | None = None


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """CSV cells are text: empty = unknown; numbers parsed; list fields separated by ; or ,."""
    with path.open(encoding="utf-8-sig", newline="") as fh:
        for line, raw in enumerate(csv.DictReader(fh), start=2):
            row: dict[str, Any] = {}
            for key, value in raw.items():
                if key is None:
                    row["__extra__"] = value
                    continue
                text = (value or "").strip()
                if text == "":
                    continue
                if key in LIST_FIELDS:
                    row[key] = [] if text in ("-", "无") else [p.strip() for p in text.replace("，", ",").replace(";", ",").split(",") if p.strip()]
                elif key in INT_FIELDS:
                    row[key] = int(text) if text.lstrip("-").isdigit() else text
                elif key in FIELDS and FIELDS[key].kind is Kind.NUMBER:
                    try:
                        row[key] = float(text)
                    except ValueError:
                        row[key] = text
                else:
                    row[key] = text
            yield line, row


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open(encoding="utf-8") as fh:
        for line, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                yield line, json.loads(text)
            except json.JSONDecodeError as exc:
                yield line, ProfileError("json", f"第{line}行不是有效的JSON：{exc.msg}")


def import_file(engine: Engine, path: Path, *, errors_path: Path | None = None, chunk: int = 500) -> ImportReport:
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl"):
        raise ValueError(f"只支持 .csv 或 .jsonl 文件，收到“{path.name}”")
    rows = _csv_rows(path) if suffix == ".csv" else _jsonl_rows(path)
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
            if isinstance(data, ProfileError):
                raise data
            if isinstance(data, dict) and "__extra__" in data:
                raise ProfileError("csv", "该行的列数多于表头")
            profile = parse_profile(data)
            if profile.uscc in seen:
                raise ProfileError("uscc", f"统一社会信用代码{profile.uscc}在文件中重复出现，仅导入第一次出现的行")
            seen.add(profile.uscc)
        except ProfileError as exc:
            report.rejected += 1
            rejected.append({"line": line, "field": exc.field, "error": str(exc),
                             "uscc": data.get("uscc") if isinstance(data, dict) else None})
            continue
        pending.append(profile)
        if len(pending) >= chunk:
            flush()
    if pending:
        flush()
    with report.errors_file.open("w", encoding="utf-8") as fh:
        for item in rejected:
            fh.write(json.dumps(item, ensure_ascii=False) + "\n")
    return report
