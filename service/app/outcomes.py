"""Recording outcomes — what became of a firm and a policy (applied / granted / refused) — from a department's
file (``policyfit outcomes import FILE``) or one call (``POST /v1/outcomes``), with one validation for both.

A file is read with the importer's line accounting (:func:`service.app.importer.run_import`: every physical line
belongs to a recorded row, a rejected row — its lines and Chinese reason in the errors file — or is blank), CSV in
UTF-8 or GBK/GB18030 (decoded) or JSONL. A row names ``uscc`` (check character verified), ``policy_id`` (a policy
published or retired here), ``outcome`` (applied | granted | refused, or 已申请 / 已兑现 / 未获批准),
``decided_on`` (strictly YYYY-MM-DD, not after today), and optionally ``amount_wan`` (万元, ≥ 0) and
``department``. The same decision recorded again changes nothing (natural key, see
:class:`~service.db.tables.Outcome`).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from policies.messages import suggest_zh
from profiles.model import ProfileError
from profiles.uscc import UsccError, normalize_uscc
from service.app.errors import AppError, ErrorCode
from service.app.funnel import OUTCOMES
from service.app.importer import (
    ImportReport,
    Lined,
    csv_records,
    file_kind,
    jsonl_records,
    run_import,
    screen,
    sniff_encoding,
)
from service.store import outcomes as store
from service.store.outcomes import Key

#: The fields of an outcome, with their Chinese names (also accepted as CSV headers).
FIELDS: dict[str, str] = {"uscc": "统一社会信用代码", "policy_id": "政策编号", "outcome": "结果",
                          "amount_wan": "金额（万元）", "decided_on": "决定日期", "department": "部门"}
_LABELS = {"amount_wan": "金额，万元"}
REQUIRED = ("uscc", "policy_id", "outcome", "decided_on")
#: Columns a hand-off file (``policyfit outcomes handoff``) carries for the people who read it; read and ignored.
INFO_COLUMNS = ("企业名称", "所在地区", "企业规模", "政策名称", "符合条件的依据", "条件明细", "估算金额（万元）",
                "应享起始日期", "当前状态", "联系渠道", "牵头部门", "name", "region", "size", "title", "why",
                "clauses", "estimated_value_wan", "eligible_since", "state", "contact", "lead_departments")
_HEADERS = {**{k: k for k in FIELDS}, **{v: k for k, v in FIELDS.items()}, "金额": "amount_wan",
            "金额(万元)": "amount_wan", "政策ID": "policy_id", "办理部门": "department", "日期": "decided_on"}
_OUTCOME_WORDS = {**{k: k for k in OUTCOMES}, **{v: k for k, v in OUTCOMES.items()}}
SOURCES = ("import", "api", "feedback")
EARLIEST = dt.date(2000, 1, 1)
MAX_AMOUNT_WAN = 10_000_000.0  # 1000亿元: a larger number is a unit or typing mistake
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def label(name: str) -> str:
    """``amount_wan（金额（万元））``: the field and its Chinese name, as every message names it."""
    return f"{name}（{_LABELS.get(name, FIELDS.get(name, ''))}）" if name in FIELDS else name


@dataclass(frozen=True)
class OutcomeRow:
    """A validated outcome. ``uscc`` is the firm; :attr:`key` the decision it records."""

    firm: str
    policy_id: str
    outcome: str
    decided_on: dt.date
    amount_wan: float | None
    department: str | None

    @property
    def key(self) -> Key:
        return self.firm, self.policy_id, self.outcome, self.decided_on

    @property
    def uscc(self) -> str:
        """What the importer's per-file duplicate check compares: the decision, not the firm — a firm appears once
        per policy, outcome and day (:func:`service.app.importer.run_import` keys rows by ``uscc``)."""
        return "|".join(map(str, self.key))


class Known:
    """The policies an outcome may name: published or retired here, and of kind policy."""

    def __init__(self, session: Session) -> None:
        self.policies = store.policies_in_force_or_retired(session)

    def check(self, policy_id: str) -> None:
        data = self.policies.get(policy_id)
        if data is None:
            raise ProfileError("policy_id", f"{label('policy_id')}：未找到政策“{policy_id}”"
                                            f"{suggest_zh(policy_id, self.policies)}")
        if data.get("kind", "policy") != "policy":
            raise ProfileError("policy_id", f"{label('policy_id')}：“{data.get('title', policy_id)}”不是企业可申请享受的"
                                            "政策，没有申请或兑现结果")


def _text(data: dict[str, Any], name: str, *, json_types: bool, required: bool) -> str | None:
    value = data.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ProfileError(name, f"{label(name)}未填写")
        return None
    if not isinstance(value, str):
        if json_types:
            raise ProfileError(name, f"{label(name)}应为文本")
        value = str(value)
    return value.strip()


def _amount(value: Any, *, json_types: bool) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or (json_types and not isinstance(value, int | float)):
        raise ProfileError("amount_wan", f"{label('amount_wan')}应为数字")
    try:
        amount = float(value.strip().replace(",", "") if isinstance(value, str) else value)
    except (ValueError, OverflowError):
        raise ProfileError("amount_wan", f"{label('amount_wan')}应为数字，收到“{str(value)[:40]}”") from None
    if not math.isfinite(amount):
        raise ProfileError("amount_wan", f"{label('amount_wan')}应为有限的数字")
    if amount < 0:
        raise ProfileError("amount_wan", f"{label('amount_wan')}不能小于0（收到 {amount:g}）")
    if amount > MAX_AMOUNT_WAN:
        raise ProfileError("amount_wan", f"{label('amount_wan')}不能大于{MAX_AMOUNT_WAN:.0f}（收到 {amount:g}），"
                                         "请核对单位是否为万元")
    return round(amount, 4)  # to the yuan


def _day(text: str, today: dt.date) -> dt.date:
    if not _ISO_DATE.fullmatch(text):
        raise ProfileError("decided_on", f"{label('decided_on')}须为 YYYY-MM-DD 格式的日期（收到“{text[:40]}”）")
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise ProfileError("decided_on", f"{label('decided_on')}不是有效的日期（收到“{text}”）") from None
    if day > today:
        raise ProfileError("decided_on", f"{label('decided_on')}不能晚于{today.isoformat()}（收到 {text}）")
    if day < EARLIEST:
        raise ProfileError("decided_on", f"{label('decided_on')}不能早于{EARLIEST.isoformat()}（收到 {text}）")
    return day


def parse_outcome(data: Any, *, known: Known, today: dt.date, json_types: bool,
                  extra: tuple[str, ...] = ()) -> OutcomeRow:
    """One row (a dict) → a validated outcome, or :class:`ProfileError` naming the first field at fault (in the
    order uscc, policy_id, outcome, decided_on, amount_wan, department). Keys beyond the fields and ``extra``
    are refused (a misspelt column must not be dropped silently)."""
    data = screen(data, json_types=json_types)
    unknown = [k for k in data if k not in FIELDS and k not in extra]
    if unknown:
        raise ProfileError(str(unknown[0]), f"未知字段“{unknown[0]}”{suggest_zh(unknown[0], FIELDS)}；"
                                            f"可用字段：{'、'.join(FIELDS)}")
    raw = _text(data, "uscc", json_types=json_types, required=True)
    assert raw is not None
    try:
        firm = normalize_uscc(raw)
    except UsccError as exc:
        raise ProfileError("uscc", f"{label('uscc')}：{exc}") from None
    policy_id = _text(data, "policy_id", json_types=json_types, required=True)
    assert policy_id is not None
    known.check(policy_id)
    said = _text(data, "outcome", json_types=json_types, required=True)
    outcome = _OUTCOME_WORDS.get((said or "").lower() if said and said.isascii() else said or "")
    if outcome is None:
        choices = "、".join(f"{k}（{v}）" for k, v in OUTCOMES.items())
        raise ProfileError("outcome", f"{label('outcome')}应为{choices}之一，收到“{str(said)[:40]}”")
    day_text = _text(data, "decided_on", json_types=json_types, required=True)
    assert day_text is not None
    decided_on = _day(day_text, today)
    amount = _amount(data.get("amount_wan"), json_types=json_types)
    department = _text(data, "department", json_types=json_types, required=False)
    if department is not None and len(department) > 80:
        raise ProfileError("department", f"{label('department')}不能超过80个字")
    return OutcomeRow(firm, policy_id, outcome, decided_on, amount, department)


def header_map(header: list[str]) -> list[str | None]:
    """A CSV header's columns as outcome fields (English names or their Chinese names; a hand-off file's own
    columns are read and ignored); an unknown or missing column refuses the file."""
    keys: list[str | None] = []
    for name in header:
        key = _HEADERS.get(name) or _HEADERS.get(name.lower())
        if key is None and name not in INFO_COLUMNS:
            raise ValueError(f"CSV表头有未知的列“{name}”{suggest_zh(name, _HEADERS)}；可用的列："
                             f"{'、'.join(f'{k}（{v}）' for k, v in FIELDS.items())}；本次未导入任何行")
        keys.append(key)
    missing = [k for k in REQUIRED if k not in keys]
    if missing:
        raise ValueError(f"CSV表头缺少必需的列：{'、'.join(label(k) for k in missing)}；本次未导入任何行")
    return keys


def _cell(_: str, text: str) -> str:
    return text  # cells stay text: parse_outcome reads numbers and dates with its own messages


@dataclass
class OutcomeImport(ImportReport):
    encoding: str = "utf-8"


def import_outcomes(engine: Engine, path: Path, *, errors_path: Path | None = None, chunk: int = 500,
                    today: dt.date | None = None, source: str = "import") -> OutcomeImport:
    """Import a department's outcome file; see the module's docstring. Raises ValueError (Chinese) for a file
    refused as a whole (its name, encoding or header), before anything is written."""
    kind = file_kind(path)
    encoding, _ = sniff_encoding(path)
    records = (csv_records(path, encoding=encoding, header_map=header_map, cell=_cell) if kind == "csv"
               else jsonl_records(path, encoding=encoding))
    report = OutcomeImport(errors_file=errors_path or path.with_name(path.stem + ".errors.jsonl"), encoding=encoding)
    with Session(engine) as session:
        known = Known(session)
    day = today or dt.date.today()
    seen: dict[Key, int] = {}

    def validate(data: Any) -> OutcomeRow:
        row = parse_outcome(data, known=known, today=day, json_types=kind == "jsonl",
                            extra=INFO_COLUMNS if kind == "jsonl" else ())
        if row.key in seen:
            raise ProfileError("uscc", f"同一企业、政策、结果和决定日期的记录在文件中重复出现（{row.firm}，{row.policy_id}，"
                                       f"{OUTCOMES[row.outcome]}，{row.decided_on}），仅导入第一次出现的行")
        seen[row.key] = 1
        return row

    def write(rows: list[Lined[OutcomeRow]]) -> list[tuple[Lined[OutcomeRow], ProfileError]]:
        done = _record(engine, [r for _, _, r in rows], source)
        for result in done:
            setattr(report, result, getattr(report, result) + 1)
        return []

    run_import(records, report, validate=validate, write=write, chunk=chunk)
    return report


def _record(engine: Engine, rows: list[OutcomeRow], source: str, attempts: int = 3) -> list[str]:
    """Write rows in one transaction: created | updated | unchanged each. Two writers inserting the same new
    decision at once: the loser's transaction fails on the unique key, and is written again (finding the row)."""
    for attempt in range(1, attempts + 1):
        with Session(engine) as session:
            stored = store.stored_outcomes(session, keys=[r.key for r in rows])
            results = [store.put_outcome(session, key=r.key, amount_wan=r.amount_wan, department=r.department,
                                         source=source, stored=stored.get(r.key))[1] for r in rows]
            try:
                session.commit()
                return results
            except IntegrityError:
                session.rollback()
                if attempt == attempts:
                    raise
    raise AssertionError("unreachable")


def record_outcome(session: Session, body: dict[str, Any],
                   today: Callable[[], dt.date] = dt.date.today) -> dict[str, Any]:
    """``POST /v1/outcomes`` (staff, admin): one outcome, validated as a file's row is (422 naming the field),
    recorded (committed). ``result``: created | updated | unchanged."""
    try:
        row = parse_outcome(body, known=Known(session), today=today(), json_types=True)
    except ProfileError as exc:
        code = ErrorCode.INVALID_USCC if exc.field == "uscc" else ErrorCode.INVALID_VALUE
        raise AppError(code, str(exc), exc.field) from None
    stored = store.stored_outcomes(session, keys=[row.key]).get(row.key)
    saved, result = store.put_outcome(session, key=row.key, amount_wan=row.amount_wan, department=row.department,
                                      source="api", stored=stored)
    session.commit()
    return {"uscc": saved.uscc, "policy_id": saved.policy_id, "outcome": saved.outcome,
            "outcome_label": OUTCOMES[saved.outcome], "amount_wan": saved.amount_wan,
            "decided_on": saved.decided_on, "department": saved.department, "source": saved.source,
            "recorded_at": saved.recorded_at, "result": result}
