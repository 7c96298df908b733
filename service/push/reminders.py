"""Reminder items (issue 14): a qualification whose certificate ends within the reminder window is pushed
like an offer, once per (firm, qualification, last valid day), under the same weekly cap and opt-out
(:mod:`service.push.outbox`), and said apart from the policies in the firm's message (:mod:`service.push.message`).

An item row has no room for a date of its own, so a reminder is written in the item's columns: ``policy_id``
``reminder:<code>``, ``policy_version`` the certificate's last valid day as YYYYMMDD — its key
``<uscc>:reminder:<code>:<YYYYMMDD>``. A renewed certificate (a later valid_to) is a new reminder; the same
one found again on a later night is not news.
"""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd

REMINDER_PREFIX = "reminder:"


def reminder_items(firms: pd.DataFrame) -> pd.DataFrame:
    """Reminder items (columns uscc, policy_id, policy_version, score) from the scored firms' ``reminders``
    (JSON text of [{code, valid_to, …}] per firm; '' or a missing column: none)."""
    rows: list[tuple[str, str, int]] = []
    if "reminders" in firms.columns:
        for uscc, text in zip(firms["uscc"].tolist(), firms["reminders"].tolist(), strict=True):
            for r in json.loads(text) if text else []:
                rows.append((str(uscc), REMINDER_PREFIX + r["code"], int(str(r["valid_to"]).replace("-", ""))))
    return pd.DataFrame({"uscc": pd.Series([r[0] for r in rows], dtype=object),
                         "policy_id": pd.Series([r[1] for r in rows], dtype=object),
                         "policy_version": pd.Series([r[2] for r in rows], dtype="int64"),
                         "score": pd.Series([1.0] * len(rows), dtype="float64")})


def is_reminder(policy_ids: pd.Series) -> pd.Series:
    """Which items are reminders (not policies)."""
    return policy_ids.astype(str).str.startswith(REMINDER_PREFIX)


def reminder_of(policy_id: str, version: int) -> tuple[str, dt.date] | None:
    """(qualification code, valid_to) of a reminder item; None for a policy item."""
    if not policy_id.startswith(REMINDER_PREFIX):
        return None
    day = f"{int(version):08d}"
    return policy_id[len(REMINDER_PREFIX):], dt.date(int(day[:4]), int(day[4:6]), int(day[6:8]))
