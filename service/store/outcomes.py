"""The ``outcome`` and ``enterprise_class`` tables (written only here), and the reads of one policy's funnel:
its eligible firms (``match_snapshot``), deliveries (``push_item`` + ``outbox``), feedback and outcomes, counted
inside the database (aggregates; no firm is loaded into Python to be counted)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlmodel import Session, col, select

from service.db.bulk import IN_LIST, table_of
from service.db.tables import (
    Enterprise,
    EnterpriseClass,
    Feedback,
    MatchSnapshot,
    Outbox,
    Outcome,
    PolicyVersion,
    PushItem,
    utcnow,
)

#: (uscc, policy_id, outcome, decided_on): one decision (see :class:`~service.db.tables.Outcome`).
Key = tuple[str, str, str, dt.date]


def key_of(row: Outcome) -> Key:
    return row.uscc, row.policy_id, row.outcome, row.decided_on


# ---- outcomes -----------------------------------------------------------------------------------------------
def stored_outcomes(session: Session, *, keys: Iterable[Key]) -> dict[Key, Outcome]:
    """The stored rows among ``keys`` (one query per few hundred firms)."""
    wanted = set(keys)
    firms = sorted({k[0] for k in wanted})
    found: dict[Key, Outcome] = {}
    for start in range(0, len(firms), IN_LIST):
        stmt = select(Outcome).where(col(Outcome.uscc).in_(firms[start:start + IN_LIST]))
        found.update((key_of(r), r) for r in session.exec(stmt) if key_of(r) in wanted)
    return found


def put_outcome(session: Session, *, key: Key, amount_wan: float | None, department: str | None, source: str,
                stored: Outcome | None) -> tuple[Outcome, str]:
    """Record one decision; ``stored`` is the row of its key the caller read (None: none). Returns the row and
    created | updated | unchanged: the same decision again writes nothing, another amount or department under
    the same key corrects the row (and says who corrected it and when)."""
    if stored is None:
        row = Outcome(uscc=key[0], policy_id=key[1], outcome=key[2], decided_on=key[3], amount_wan=amount_wan,
                      department=department, source=source, recorded_at=utcnow())
        session.add(row)
        return row, "created"
    if (stored.amount_wan, stored.department) == (amount_wan, department):
        return stored, "unchanged"
    stored.amount_wan, stored.department, stored.source, stored.recorded_at = amount_wan, department, source, utcnow()
    session.add(stored)
    return stored, "updated"


def policies_in_force_or_retired(session: Session) -> dict[str, dict[str, Any]]:
    """Every policy that has a published or retired version: its newest such version's data, by id (a policy
    with drafts only does not exist outside the catalog editors)."""
    rows = session.exec(select(PolicyVersion).where(col(PolicyVersion.status) != "draft")
                        .order_by(col(PolicyVersion.policy_id), col(PolicyVersion.version))).all()
    return {r.policy_id: r.data for r in rows}


# ---- firms' region and size class ---------------------------------------------------------------------------
#: The row of ``enterprise_class`` recording when the classes were last brought up to date (``source_updated_at``):
#: no firm has an empty USCC, so no funnel ever joins it.
CHECKED = ""


def classes_checked_at(conn: Connection) -> dt.datetime | None:
    """When the classes were last brought up to date (None: never)."""
    c = table_of(EnterpriseClass).c
    at = conn.execute(sa.select(c.source_updated_at).where(c.uscc == CHECKED)).scalar()
    return None if at is None else (at if at.tzinfo else at.replace(tzinfo=dt.UTC))


def mark_classes_checked(conn: Connection, at: dt.datetime) -> None:
    put_classes(conn, [{"uscc": CHECKED, "region": None, "size": None, "content_hash": "checked",
                        "source_updated_at": at}])


def _stale() -> Any:
    e, c = table_of(Enterprise).c, table_of(EnterpriseClass).c
    return (sa.select(e.uscc, e.region, e.content_hash, e.updated_at, sa.cast(e.profile, sa.Text))
            .select_from(table_of(Enterprise).outerjoin(table_of(EnterpriseClass), c.uscc == e.uscc))
            .where(sa.or_(c.uscc.is_(None), c.content_hash != e.content_hash)))


def unclassified_page(conn: Connection, *, after: str, limit: int) -> list[tuple[Any, ...]]:
    """(uscc, region, content_hash, updated_at, profile JSON text) of up to ``limit`` firms after ``after`` in USCC
    order whose class is missing or was derived from another profile version: the first fill, page by page (a
    page is read before its classes are written)."""
    e = table_of(Enterprise).c
    return [tuple(r) for r in conn.execute(_stale().where(e.uscc > after).order_by(e.uscc).limit(limit))]


def unclassified_since(conn: Connection, *, since: dt.datetime) -> list[str]:
    """The firms updated from ``since`` on whose class is missing or was derived from another profile version
    (read through the index on ``updated_at``: a few firms on an ordinary day)."""
    e = table_of(Enterprise).c
    return [r[0] for r in conn.execute(_stale().with_only_columns(e.uscc).where(e.updated_at >= since))]


def firms_to_classify(conn: Connection, usccs: Sequence[str]) -> list[tuple[Any, ...]]:
    """(uscc, region, content_hash, updated_at, profile JSON text) of these firms."""
    e = table_of(Enterprise).c
    out: list[tuple[Any, ...]] = []
    for start in range(0, len(usccs), IN_LIST):
        out += [tuple(r) for r in conn.execute(
            sa.select(e.uscc, e.region, e.content_hash, e.updated_at, sa.cast(e.profile, sa.Text))
            .where(e.uscc.in_(list(usccs[start:start + IN_LIST]))))]
    return out


def put_classes(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert or replace classes (``uscc, region, size, content_hash, source_updated_at``): concurrent refreshes
    of two workers both succeed, the later write wins with the same content."""
    if not rows:
        return
    table = table_of(EnterpriseClass)
    insert = sqlite.insert(table) if conn.dialect.name == "sqlite" else postgresql.insert(table)
    updated = {name: insert.excluded[name] for name in ("region", "size", "content_hash", "source_updated_at")}
    conn.execute(insert.on_conflict_do_update(index_elements=["uscc"], set_=updated), list(rows))  # executemany


# ---- the funnel -----------------------------------------------------------------------------------------------
def local_day(conn: Connection, at: Any) -> Any:
    """The calendar day of a stored UTC timestamp in the service's own time zone — the zone whose ``today`` every
    date of the service is (Asia/Shanghai on a server in China), in SQL."""
    offset = dt.datetime.now().astimezone().utcoffset() or dt.timedelta()
    seconds = int(offset.total_seconds())
    if conn.dialect.name == "sqlite":
        return sa.func.date(at, f"{seconds:+d} seconds")
    return sa.cast(sa.func.timezone("UTC", at) + sa.func.make_interval(0, 0, 0, 0, 0, 0, seconds), sa.Date)


def _events(conn: Connection, policy_id: str, as_of: dt.date) -> sa.Subquery:
    """Each firm's outcomes and feedback applications (day, decided?, recorded at, id) for one policy."""
    o, f = table_of(Outcome).c, table_of(Feedback).c
    day = local_day(conn, f.at)
    decided = sa.case((o.outcome == "applied", 0), else_=1)
    return sa.union_all(
        sa.select(o.uscc, o.decided_on.label("day"), decided.label("decided"), o.outcome.label("outcome"),
                  o.recorded_at.label("at"), o.id.label("seq"))
        .where(o.policy_id == policy_id, o.decided_on <= as_of),
        sa.select(f.uscc, day, sa.literal(0), sa.literal("applied", sa.String), f.at, f.id)
        .where(f.policy_id == policy_id, f.kind == "applied", day <= as_of),
    ).subquery("events")


def _latest(conn: Connection, policy_id: str, as_of: dt.date) -> sa.Subquery:
    """Each firm's latest event: (uscc, state code 1 applied / 2 granted / 3 refused)."""
    ev = _events(conn, policy_id, as_of)
    rank = sa.func.row_number().over(partition_by=ev.c.uscc,
                                     order_by=(ev.c.day.desc(), ev.c.decided.desc(), ev.c.at.desc(), ev.c.seq.desc()))
    code = sa.case((ev.c.outcome == "applied", 1), (ev.c.outcome == "granted", 2), else_=3)
    ranked = sa.select(ev.c.uscc, code.label("state"), rank.label("rn")).subquery("ranked")
    return sa.select(ranked.c.uscc, ranked.c.state).where(ranked.c.rn == 1).subquery("latest")


def eligible_firms(policy_id: str) -> sa.Select[Any]:
    s = table_of(MatchSnapshot).c
    return sa.select(s.uscc.label("uscc")).where(s.policy_id == policy_id, s.status == 1)


#: The states of a message that has not reached the firm (``Outbox.status``: pending | delivered | dead).
UNDELIVERED = ("pending", "dead")


def delivered_firms(policy_id: str) -> sa.Select[Any]:
    """The firms a push item of the policy reached (its message delivered), each once: an item in a message that
    is not waiting or dead — the messages not delivered are few (they are sent within minutes), so they are the
    set looked up, not the million delivered."""
    p, m = table_of(PushItem).c, table_of(Outbox).c
    undelivered = sa.select(m.id).where(m.status.in_(UNDELIVERED))  # through the index on status
    return (sa.select(p.uscc.label("uscc"))
            .where(p.policy_id == policy_id, p.outbox_id.is_not(None), p.outbox_id.not_in(undelivered))
            .group_by(p.uscc))


def decided_firms(policy_id: str, as_of: dt.date, since: dt.date) -> sa.Select[Any]:
    o = table_of(Outcome).c
    return (sa.select(o.uscc.label("uscc"))
            .where(o.policy_id == policy_id, o.outcome.in_(("granted", "refused")), o.decided_on >= since,
                   o.decided_on <= as_of).group_by(o.uscc))


#: What :func:`stage_counts` counts: the funnel's stages, and the eligible firms decided within the period.
STAGE_NAMES = ("eligible", "pushed", "viewed", "applied", "granted", "refused", "eligible_decided")


def stage_counts(conn: Connection, *, policy_id: str, as_of: dt.date,
                 since: dt.date) -> list[tuple[str, str | None, str | None, int]]:
    """(stage, region, size, number of firms) of one policy: each stage's firms counted by region and size class in
    the database, one aggregate per stage (``eligible``, ``pushed``, ``viewed``; ``applied`` / ``granted`` /
    ``refused`` by the firm's latest event; ``eligible_decided``: eligible and granted or refused within
    [since, as_of]). Stages are counted apart because they are not nested."""
    f, s, c = table_of(Feedback).c, table_of(MatchSnapshot).c, table_of(EnterpriseClass).c
    classes = table_of(EnterpriseClass)

    def counted(stage: Any, firms: sa.Select[Any]) -> sa.Select[Any]:
        sub = firms.subquery()
        return (sa.select(stage.label("stage"), c.region, c.size, sa.func.count().label("n"))
                .select_from(sub.outerjoin(classes, c.uscc == sub.c.uscc)).group_by(c.region, c.size))

    viewed = (sa.select(f.uscc.label("uscc"))
              .where(f.policy_id == policy_id, f.kind == "viewed", local_day(conn, f.at) <= as_of).group_by(f.uscc))
    decided = decided_firms(policy_id, as_of, since).subquery()
    eligible_decided = (sa.select(s.uscc.label("uscc"))
                        .select_from(decided.join(table_of(MatchSnapshot), s.uscc == decided.c.uscc))
                        .where(s.policy_id == policy_id, s.status == 1))
    latest = _latest(conn, policy_id, as_of)
    state = sa.case((latest.c.state == 1, "applied"), (latest.c.state == 2, "granted"), else_="refused")
    states = (sa.select(state.label("stage"), c.region, c.size, sa.func.count().label("n"))
              .select_from(latest.outerjoin(classes, c.uscc == latest.c.uscc)).group_by(state, c.region, c.size))
    literal = lambda name: sa.literal(name, sa.String)  # noqa: E731
    stmt = sa.union_all(counted(literal("eligible"), eligible_firms(policy_id)),
                        counted(literal("pushed"), delivered_firms(policy_id)),
                        counted(literal("viewed"), viewed), states,
                        counted(literal("eligible_decided"), eligible_decided))
    if conn.dialect.name == "postgresql":  # hash the aggregates in memory instead of spilling to disk
        conn.execute(sa.text("SET LOCAL work_mem = '64MB'"))
    return [(stage, region, size, int(n)) for stage, region, size, n in conn.execute(stmt)]


def policies_with_eligible(conn: Connection) -> list[str]:
    """The policies the latest snapshot offers to at least one firm."""
    s = table_of(MatchSnapshot).c
    return [r[0] for r in conn.execute(sa.select(s.policy_id).where(s.status == 1).distinct().order_by(s.policy_id))]


def not_yet_granted(conn: Connection, *, policy_id: str, as_of: dt.date, since: dt.date,
                    chunk: int = 2000) -> Iterator[list[dict[str, Any]]]:
    """The 应享未享 firms of one policy (eligible, no decision within [since, as_of]), in USCC order, in chunks:
    name, region, size, opted out of pushes, the first recommendation and the last delivery of this policy, the
    snapshot's day, the stored profile and provenance (for the clauses that made it eligible)."""
    s, e, c = table_of(MatchSnapshot).c, table_of(Enterprise).c, table_of(EnterpriseClass).c
    p, m, o = table_of(PushItem).c, table_of(Outbox).c, table_of(Outcome).c
    first_push = (sa.select(sa.func.min(p.created_at)).where(p.uscc == s.uscc, p.policy_id == policy_id)
                  .scalar_subquery())
    delivered = (sa.select(sa.func.max(m.delivered_at)).join_from(table_of(PushItem), table_of(Outbox),
                                                                   m.id == p.outbox_id)
                 .where(p.uscc == s.uscc, p.policy_id == policy_id, m.status == "delivered").scalar_subquery())
    decided = sa.exists().where(o.uscc == s.uscc, o.policy_id == policy_id, o.outcome.in_(("granted", "refused")),
                                o.decided_on >= since, o.decided_on <= as_of)
    stmt = (sa.select(s.uscc, e.name, sa.func.coalesce(c.region, e.region).label("region"), c.size, e.opted_out,
                      first_push.label("first_pushed"), delivered.label("delivered_at"),
                      s.computed_at, sa.cast(e.profile, sa.Text).label("profile"),
                      sa.cast(e.provenance, sa.Text).label("provenance"))
            .select_from(table_of(MatchSnapshot).outerjoin(table_of(Enterprise), e.uscc == s.uscc)
                         .outerjoin(table_of(EnterpriseClass), c.uscc == s.uscc))
            .where(s.policy_id == policy_id, s.status == 1, ~decided).order_by(s.uscc))
    result = conn.execute(stmt.execution_options(stream_results=True, yield_per=chunk))
    for part in result.partitions(chunk):
        yield [dict(r._mapping) for r in part]


def event_rows(conn: Connection, *, policy_id: str, usccs: Sequence[str],
               as_of: dt.date) -> list[tuple[str, str, dt.date | str, dt.datetime, int]]:
    """(uscc, outcome, day, recorded at, id) of the outcomes and feedback applications of these firms."""
    o, f = table_of(Outcome).c, table_of(Feedback).c
    day = local_day(conn, f.at)
    out: list[tuple[str, str, Any, Any, int]] = []
    for start in range(0, len(usccs), IN_LIST):
        part = list(usccs[start:start + IN_LIST])
        out += [tuple(r) for r in conn.execute(
            sa.select(o.uscc, o.outcome, o.decided_on, o.recorded_at, o.id)
            .where(o.policy_id == policy_id, o.uscc.in_(part), o.decided_on <= as_of))]  # type: ignore[misc]
        out += [tuple(r) for r in conn.execute(
            sa.select(f.uscc, sa.literal("applied", sa.String), day, f.at, f.id)
            .where(f.policy_id == policy_id, f.kind == "applied", f.uscc.in_(part), day <= as_of))]  # type: ignore[misc]
    return out
