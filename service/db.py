"""Persistence: the tables (sqlmodel), the engine and sessions. SQLite (WAL) file by default,
PostgreSQL via ``POLICYFIT_DATABASE_URL=postgresql+psycopg://…``. The schema is owned by the
Alembic migrations in ``service/migrations`` (``policyfit db upgrade``; the app upgrades on start).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint, event
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, create_engine


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Enterprise(SQLModel, table=True):
    """One stored enterprise profile (EnterpriseProfile v1 as JSON) and its content hash."""

    __tablename__ = "enterprise"
    uscc: str = Field(primary_key=True, max_length=18)
    name: str = Field(index=True, max_length=200)
    region: str | None = Field(default=None, max_length=20)
    profile: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    content_hash: str = Field(max_length=64)
    opted_out: bool = Field(default=False, description="opted out of pushes")
    created_at: dt.datetime = Field(default_factory=utcnow)
    updated_at: dt.datetime = Field(default_factory=utcnow, index=True)


class PolicyVersion(SQLModel, table=True):
    """Every version of every policy; at most one published version per policy is in force."""

    __tablename__ = "policy_version"
    __table_args__ = (UniqueConstraint("policy_id", "version", name="uq_policy_version"),)
    id: int | None = Field(default=None, primary_key=True)
    policy_id: str = Field(index=True, max_length=80)
    version: int
    status: str = Field(max_length=12)  # draft | published | retired
    data: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    content_hash: str = Field(max_length=64)
    origin: str = Field(default="catalog", max_length=12)  # catalog (YAML file) | api
    created_by: str | None = Field(default=None, max_length=80)
    created_at: dt.datetime = Field(default_factory=utcnow)
    updated_at: dt.datetime = Field(default_factory=utcnow)


class CatalogState(SQLModel, table=True):
    """A single row whose revision changes whenever the set of published versions changes."""

    __tablename__ = "catalog_state"
    id: int = Field(default=1, primary_key=True)
    revision: int = 0
    updated_at: dt.datetime = Field(default_factory=utcnow)


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_token"
    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(unique=True, max_length=64)
    role: str = Field(max_length=12)  # enterprise | staff | admin
    uscc: str | None = Field(default=None, max_length=18)
    label: str = Field(max_length=80)
    created_at: dt.datetime = Field(default_factory=utcnow)
    expires_at: dt.datetime | None = None
    revoked_at: dt.datetime | None = None


class AuditLog(SQLModel, table=True):
    __tablename__ = "audit_log"
    id: int | None = Field(default=None, primary_key=True)
    at: dt.datetime = Field(default_factory=utcnow, index=True)
    token_id: int | None = None
    role: str = Field(max_length=12)
    label: str = Field(max_length=80)
    uscc: str | None = Field(default=None, index=True, max_length=18)
    route: str = Field(max_length=200)
    method: str = Field(max_length=8)


class Feedback(SQLModel, table=True):
    __tablename__ = "feedback"
    id: int | None = Field(default=None, primary_key=True)
    at: dt.datetime = Field(default_factory=utcnow)
    uscc: str = Field(index=True, max_length=18)
    policy_id: str = Field(max_length=80)
    kind: str = Field(max_length=16)  # viewed | applied | dismissed | not_relevant
    role: str = Field(max_length=12)
    label: str = Field(max_length=80)
    note: str | None = Field(default=None, max_length=500)


class MatchSnapshot(SQLModel, table=True):
    """What the last successful batch computed for an (enterprise, policy): the push baseline."""

    __tablename__ = "match_snapshot"
    __table_args__ = (Index("ix_snapshot_uscc_policy", "uscc", "policy_id", unique=True),)
    id: int | None = Field(default=None, primary_key=True)
    uscc: str = Field(max_length=18)
    policy_id: str = Field(max_length=80)
    policy_version: int
    status: int  # 1 eligible, 2 possibly eligible
    score: float = 0.0
    run_id: int | None = None
    computed_at: dt.datetime = Field(default_factory=utcnow)


class Outbox(SQLModel, table=True):
    """A recommendation to push, exactly once per idempotency key (uscc, policy id, version)."""

    __tablename__ = "outbox"
    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(unique=True, max_length=140)
    uscc: str = Field(index=True, max_length=18)
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    status: str = Field(default="pending", max_length=12, index=True)  # pending | delivered | dead
    attempts: int = 0
    next_attempt_at: dt.datetime = Field(default_factory=utcnow)
    leased_until: dt.datetime | None = None
    last_error: str | None = Field(default=None, max_length=500)
    created_at: dt.datetime = Field(default_factory=utcnow)
    delivered_at: dt.datetime | None = None


class BatchRun(SQLModel, table=True):
    __tablename__ = "batch_run"
    id: int | None = Field(default=None, primary_key=True)
    started_at: dt.datetime = Field(default_factory=utcnow)
    finished_at: dt.datetime | None = None
    status: str = Field(default="running", max_length=12)
    as_of: dt.date
    catalog_version: str = Field(max_length=40)
    report: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and foreign keys."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10, pool_timeout=5,
                         connect_args={"connect_timeout": 3})


def sessions(engine: Engine) -> Iterator[Session]:
    with Session(engine) as session:
        yield session
