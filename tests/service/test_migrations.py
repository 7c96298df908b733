"""The Alembic migrations and the sqlmodel tables describe the same schema, on SQLite and PostgreSQL.

A model changed without a migration (or a migration that drifted from the models) would pass every
test that creates tables from the models and then fail on a real upgraded database; here the
database the service runs on (upgraded by the migrations at start) is compared with the models.
"""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

import service.db.tables  # noqa: F401 - registers every table on SQLModel.metadata
from service.bootstrap import ServiceState
from service.db.migrate import alembic_config


def _significant(diff: list[object]) -> list[object]:
    # SQLite cannot tell TIMESTAMP WITH TIME ZONE from without, nor report server defaults faithfully;
    # type and default comparisons are off, so what remains are tables, columns, indexes and constraints
    return [d for d in diff if not (isinstance(d, tuple) and d and d[0] in {"remove_table"} and
                                    getattr(d[1], "name", "") == "alembic_version")]


def test_upgraded_schema_matches_the_models(state: ServiceState) -> None:
    with state.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": False,
                                                               "compare_server_default": False})
        diff = _significant(compare_metadata(context, SQLModel.metadata))
    assert diff == [], f"models and migrations differ — write a migration: {diff}"


def test_the_database_is_at_the_latest_revision(state: ServiceState) -> None:
    script = ScriptDirectory.from_config(alembic_config(str(state.engine.url)))
    with state.engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    assert current == script.get_current_head()
