"""What a value must be to be stored, and the hashes the tables keep (no table of its own)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from typing import Any


def canonical_hash(data: Any) -> str:
    """The content hash of a JSON-like document (key order does not count)."""
    return hashlib.sha256(json.dumps(data, ensure_ascii=False, sort_keys=True, default=str).encode()).hexdigest()


def hash_token(secret: str) -> str:
    """What is stored of a secret (a bearer token, a console session id): its SHA-256."""
    return hashlib.sha256(secret.encode()).hexdigest()


def as_utc(moment: dt.datetime) -> dt.datetime:
    """A stored timestamp as an aware UTC datetime (SQLite hands them back naive; they are UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


#: Text no column can hold: PostgreSQL refuses NUL in text, and lone surrogates are not UTF-8.
_UNSTORABLE_TEXT = re.compile("[\x00\ud800-\udfff]")
#: JSON integers beyond ±2^53 lose precision in most clients and overflow float conversions.
MAX_SAFE_INTEGER = 2**53
MAX_NESTING = 32


def unstorable(data: Any, *, path: str = "", depth: int = 0) -> tuple[str, str] | None:
    """The first value in a JSON-like document that cannot be stored faithfully, as (dotted path,
    reason in Chinese), or None. Checked before a write so both databases refuse the same input
    with the same clear message (PostgreSQL would otherwise fail inside the transaction)."""
    if depth > MAX_NESTING:
        return path, f"嵌套层级过深（最多{MAX_NESTING}层）"
    if isinstance(data, str):
        found = _UNSTORABLE_TEXT.search(data)
        if found:
            what = "空字符（\\u0000）" if found.group() == "\x00" else "无效的Unicode代理字符"
            return path, f"不能包含{what}"
    elif isinstance(data, bool) or data is None:
        return None
    elif isinstance(data, int):
        if abs(data) > MAX_SAFE_INTEGER:
            return path, f"数值超出范围（绝对值不能超过{MAX_SAFE_INTEGER}）"
    elif isinstance(data, float):
        if not math.isfinite(data):
            return path, "应为有限的数字"
    elif isinstance(data, dict):
        for key, value in data.items():
            name = str(key)
            here = f"{path}.{name}" if path else name
            if _UNSTORABLE_TEXT.search(name):
                return here, "字段名不能包含空字符或无效的Unicode字符"
            problem = unstorable(value, path=here, depth=depth + 1)
            if problem:
                return problem
    elif isinstance(data, list | tuple):
        for i, value in enumerate(data):
            problem = unstorable(value, path=f"{path}[{i}]", depth=depth + 1)
            if problem:
                return problem
    return None
