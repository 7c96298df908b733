"""Column-wise bulk inserts (the nightly batch writes hundreds of thousands of rows per chunk), and the
typed Core table of a model for such statements."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

IN_LIST = 900  # ids per IN (...) list: below every backend's parameter limit


def table_of(model: type[SQLModel]) -> sa.Table:
    """The Core table of a table model (``Model.__table__``, which the type stubs do not declare)."""
    table = sa.inspect(model).local_table
    assert isinstance(table, sa.Table)
    return table


def bulk_insert(conn: Connection, table: sa.Table, columns: dict[str, list[Any]], constants: dict[str, Any]) -> None:
    """Insert rows given column-wise, through the driver's executemany: each column's bind processing
    (JSON, datetimes) is applied once per value — once in all for ``constants`` — instead of per
    parameter set by the ORM layer, which dominates when a chunk writes hundreds of thousands of rows."""
    names = [*columns, *constants]
    if not columns or not len(next(iter(columns.values()))):
        return
    dialect = conn.dialect
    processed: dict[str, list[Any] | Any] = {}
    for name, vals in columns.items():
        if dialect.name == "sqlite" and isinstance(table.c[name].type, sa.JSON):
            # SQLite keeps JSON as text: UTF-8 as is, not \uXXXX escapes (a third of the bytes for Chinese)
            processed[name] = [json.dumps(v, ensure_ascii=False) for v in vals]
            continue
        proc = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        processed[name] = [proc(v) for v in vals] if proc else vals
    fixed = {}
    for name, value in constants.items():
        proc = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        fixed[name] = proc(value) if proc else value
    compiled = table.insert().compile(dialect=dialect, column_keys=names)
    n = len(next(iter(columns.values())))
    if compiled.positional:
        order = list(compiled.positiontup or [])
        cols = [processed[k] if k in processed else [fixed[k]] * n for k in order]
        rows: list[Any] = list(zip(*cols, strict=True))
    else:
        keys = list(processed)
        rows = [{**dict(zip(keys, values, strict=True)), **fixed}
                for values in zip(*(processed[k] for k in keys), strict=True)]
    conn.exec_driver_sql(str(compiled), rows)
