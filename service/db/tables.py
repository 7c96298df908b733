"""Persistence: the tables (sqlmodel), the engine and sessions. SQLite (WAL) file by default,
PostgreSQL via ``POLICYFIT_DATABASE_URL=postgresql+psycopg://…``. The schema is owned by the
Alembic migrations in ``service/migrations`` (``policyfit db upgrade``; the app upgrades on start).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint, event, inspect, text
from sqlalchemy.engine import Engine, make_url
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
    # Merged from the departments' feeds (``enterprise_source``): per field {source, as_of} of the value in
    # ``profile``, and the disagreements the merge did not resolve silently. NULL for a profile stored before
    # any feed (a legacy profile: nothing in it ages).
    provenance: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    conflicts: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class EnterpriseSource(SQLModel, table=True):
    """What one source (a department's feed, the firm itself, a hotline operator) says of one firm:
    ``doc`` = ``{"values": {field: value}, "as_of": {field: "YYYY-MM-DD"}}``, per field the newest date
    that source observed it. No foreign key to ``enterprise``: a feed may speak of a firm not registered
    here yet; its facts wait until the merged profile has a name."""

    __tablename__ = "enterprise_source"
    uscc: str = Field(primary_key=True, max_length=18)
    source: str = Field(primary_key=True, max_length=20)
    doc: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    content_hash: str = Field(max_length=64)
    updated_at: dt.datetime = Field(default_factory=utcnow)


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


class ConsoleSession(SQLModel, table=True):
    """One signed-in console session (server-side, so every worker sees it and logout really ends it).

    The cookie holds a random session id; only its SHA-256 is stored (``session_hash``). The session
    belongs to the staff token it was opened with (``token_id``): revoking or expiring that token ends
    it. It ends after ``POLICYFIT_CONSOLE_IDLE_MINUTES`` without a request (``last_seen_at``) and
    ``POLICYFIT_CONSOLE_SESSION_HOURS`` after sign-in (``created_at``), whichever comes first.
    """

    __tablename__ = "console_session"
    id: int | None = Field(default=None, primary_key=True)
    session_hash: str = Field(unique=True, max_length=64)
    token_id: int = Field(index=True)
    created_at: dt.datetime = Field(default_factory=utcnow)
    last_seen_at: dt.datetime = Field(default_factory=utcnow, index=True)


class RateLimitWindow(SQLModel, table=True):
    """Calls counted per (bucket, 10-second slot) for the rate limits every worker shares (``service.store.limits``).
    ``window_no`` is the Unix time in whole 10-second slots; slots that left the last minute are deleted."""

    __tablename__ = "rate_limit_window"
    bucket: str = Field(primary_key=True, max_length=120)
    window_no: int = Field(primary_key=True, index=True)
    hits: int = 0


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
    """What the last batch offered an enterprise (one row per policy in its package): the push baseline.
    Only offered policies (status 1) are kept; possibly-eligible pairs are counted in the run report."""

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
    """One push message: an enterprise's new recommendations of one run, bundled, delivered exactly once.

    ``idempotency_key`` (``pkg:<uscc>:<run>``) is the message's key, sent as the ``Idempotency-Key``
    header; each recommendation in it has its own key (``<uscc>:<policy>:<version>``, see ``PushItem``).
    A deliverer owns a row while ``leased_until`` is in the future (``lease_owner`` says who).
    """

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)
    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(unique=True, max_length=140)
    uscc: str = Field(index=True, max_length=18)
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    status: str = Field(default="pending", max_length=12, index=True)  # pending | delivered | dead
    attempts: int = 0
    next_attempt_at: dt.datetime = Field(default_factory=utcnow)
    leased_until: dt.datetime | None = None
    lease_owner: str | None = Field(default=None, max_length=80)
    run_id: int | None = None
    last_error: str | None = Field(default=None, max_length=500)
    created_at: dt.datetime = Field(default_factory=utcnow)
    delivered_at: dt.datetime | None = None


class PushItem(SQLModel, table=True):
    """One recommendation, recorded once ever per (enterprise, policy, version): the unique key that
    makes a push happen at most once. ``outbox_id`` is the message carrying it; NULL while it is held
    back by the weekly cap (released into the enterprise's next message)."""

    __tablename__ = "push_item"
    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(unique=True, max_length=140)
    uscc: str = Field(index=True, max_length=18)
    policy_id: str = Field(max_length=80)
    policy_version: int
    score: float = 0.0
    run_id: int | None = None
    outbox_id: int | None = Field(default=None, index=True)
    created_at: dt.datetime = Field(default_factory=utcnow)


class BatchCursor(SQLModel, table=True):
    """Per enterprise: what the last committed batch chunk scored it with. An enterprise whose content
    hash and catalog key are unchanged (and whose age crosses no catalog threshold) is skipped."""

    __tablename__ = "batch_cursor"
    uscc: str = Field(primary_key=True, max_length=18)
    content_hash: str = Field(max_length=64)
    catalog_key: str = Field(max_length=64)
    recheck_on: dt.date | None = None
    run_id: int | None = None
    scored_at: dt.datetime = Field(default_factory=utcnow)


class BatchRun(SQLModel, table=True):
    """One ``policyfit batch run``: running | succeeded | failed | interrupted, with its report."""

    __tablename__ = "batch_run"
    id: int | None = Field(default=None, primary_key=True)
    started_at: dt.datetime = Field(default_factory=utcnow)
    finished_at: dt.datetime | None = None
    status: str = Field(default="running", max_length=12)
    as_of: dt.date
    catalog_version: str = Field(max_length=40)
    report: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Outcome(SQLModel, table=True):
    """What became of a firm and a policy: ``applied`` (an application received; ``decided_on`` is the day it
    was filed), ``granted`` or ``refused`` (the department's decision, on ``decided_on``).

    One row per natural key (uscc, policy_id, outcome, decided_on): the same decision recorded twice — a file
    imported again, a retried API call, two exports that overlap — is one decision, so recording it again
    changes nothing; a firm granted on two days (a yearly subsidy) has two rows. Amount and department are what
    the decision says: the same key with another amount is a correction of that row, not a second grant.
    ``source``: import (``policyfit outcomes import``) | api (``POST /v1/outcomes``) | feedback."""

    __tablename__ = "outcome"
    __table_args__ = (UniqueConstraint("uscc", "policy_id", "outcome", "decided_on", name="uq_outcome"),
                      Index("ix_outcome_policy", "policy_id", "uscc", "decided_on", "outcome", "recorded_at"))
    id: int | None = Field(default=None, primary_key=True)
    uscc: str = Field(max_length=18)
    policy_id: str = Field(max_length=80)
    outcome: str = Field(max_length=12)  # applied | granted | refused
    amount_wan: float | None = None
    decided_on: dt.date
    department: str | None = Field(default=None, max_length=80)
    source: str = Field(max_length=12)  # import | api | feedback
    recorded_at: dt.datetime = Field(default_factory=utcnow)


class EnterpriseClass(SQLModel, table=True):
    """Each stored firm's region and size class, derived from its profile version ``content_hash``: what the
    outcome funnel groups by inside SQL (the size class comes from industry, headcount, revenue and assets,
    which no column of ``enterprise`` holds). ``source_updated_at`` is the enterprise row's ``updated_at``; the
    row with an empty ``uscc`` records when the classes were last brought up to date, so that a refresh looks only
    at the firms updated since (``service.app.uptake.refresh_classes``)."""

    __tablename__ = "enterprise_class"
    __table_args__ = {"sqlite_with_rowid": False}  # one B-tree by uscc: the funnel's lookups read nothing else
    uscc: str = Field(primary_key=True, max_length=18)
    region: str | None = Field(default=None, max_length=20)
    size: str | None = Field(default=None, max_length=12)  # large | medium | small | micro; NULL unknown
    content_hash: str = Field(max_length=64)
    source_updated_at: dt.datetime = Field(index=True)


# The outcome funnel reads one policy's rows of these tables from the index alone (their own indexes lead with the
# firm): a snapshot row's firm, a push item's firm and message, a feedback's firm and time.
def _columns(model: type[SQLModel], *names: str) -> list[Any]:
    table = inspect(model).local_table
    return [table.c[name] for name in names]


Index("ix_match_snapshot_policy", *_columns(MatchSnapshot, "policy_id", "status", "uscc"))
Index("ix_push_item_policy", *_columns(PushItem, "policy_id", "uscc", "outbox_id"))
Index("ix_feedback_policy", *_columns(Feedback, "policy_id", "kind", "uscc", "at"))


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
    engine = create_engine(
        url, pool_pre_ping=True, pool_size=10, max_overflow=10, pool_timeout=5,
        # fail fast when the server is unreachable, and notice a peer that vanished without closing the
        # socket (keepalives; unacknowledged writes give up after tcp_user_timeout ms) instead of hanging
        connect_args={"connect_timeout": 3, "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 3,
                      "keepalives_count": 3, "tcp_user_timeout": 15_000})
    _tolerate_server_shutdown(engine)
    return engine


# SQLSTATEs after which the server has ended the session (FATAL): 08xxx connection exceptions,
# 57P01 admin_shutdown (``pg_ctl stop -m fast``), 57P02 crash_shutdown, 57P03 cannot_connect_now.
_SESSION_ENDED = ("08", "57P01", "57P02", "57P03")


def _session_ended(dialect: Any, exc: BaseException, dbapi_connection: Any) -> bool:
    sqlstate = getattr(exc, "sqlstate", None) or ""
    return sqlstate.startswith(_SESSION_ENDED) or bool(dialect.is_disconnect(exc, dbapi_connection, None))


def _tolerate_server_shutdown(engine: Engine) -> None:
    """Make a server that ended our session behave as a disconnect, never as an error at clean-up.

    When PostgreSQL shuts down (or kills a backend), the FATAL message often reaches a connection
    only at its next command — typically the ROLLBACK that ``Session.close()`` issues when a request
    is finished. Raised there, it escapes the request's dependency teardown *after* the response has
    started (a dropped connection for the client, "response already started" in the log). A
    transaction of a session the server has ended is gone already, so that rollback has nothing to
    undo: it is skipped quietly; the dead connection is replaced by ``pool_pre_ping`` at next checkout.
    Such errors also count as disconnects, so SQLAlchemy discards the whole pool at the first one.
    """
    dialect = engine.dialect
    rollback = dialect.do_rollback

    def do_rollback(dbapi_connection: Any) -> None:
        try:
            rollback(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            if not _session_ended(dialect, exc, dbapi_connection):
                raise

    dialect.do_rollback = do_rollback  # type: ignore[method-assign]  # this engine only: a wrapped method

    @event.listens_for(engine, "handle_error")
    def _disconnects(context: Any) -> None:
        sqlstate = getattr(context.original_exception, "sqlstate", None) or ""
        if not context.is_disconnect and sqlstate.startswith(_SESSION_ENDED):
            context.is_disconnect = True


def sessions(engine: Engine) -> Iterator[Session]:
    with Session(engine) as session:
        yield session


@contextmanager
def postgres_schema(base_url: str, schema: str) -> Iterator[str]:
    """A fresh, empty schema on the PostgreSQL server of ``base_url``; yields a URL whose connections
    use it (``options=-csearch_path=<schema>``) and drops it afterwards. Tests and benchmarks use it to
    share one server without sharing tables."""
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
        try:
            yield url.render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        admin.dispose()
