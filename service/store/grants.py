"""Reads of the ``outcome`` table for the console's dashboard (the table is written only by
:mod:`service.store.outcomes`): how many grants were decided per day."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from service.db.bulk import table_of
from service.db.tables import Outcome


def grants_per_day(conn: Connection, *, since: dt.date, until: dt.date,
                   policy_id: str | None = None) -> dict[dt.date, int]:
    """Grants (outcome ``granted``) by decision day in [since, until], of one policy or of all."""
    o = table_of(Outcome).c
    stmt = (sa.select(o.decided_on, sa.func.count()).where(o.outcome == "granted", o.decided_on >= since,
                                                            o.decided_on <= until)
            .group_by(o.decided_on))
    if policy_id is not None:
        stmt = stmt.where(o.policy_id == policy_id)
    out: dict[dt.date, int] = {}
    for day, n in conn.execute(stmt):
        key = day if isinstance(day, dt.date) else dt.date.fromisoformat(str(day)[:10])
        out[key] = out.get(key, 0) + int(n)
    return out
