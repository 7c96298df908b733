"""The ``enterprise`` table: stored profiles (written only here)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from profiles.model import EnterpriseProfile
from service.db.bulk import IN_LIST
from service.db.tables import Enterprise, utcnow
from service.store.values import canonical_hash


def upsert_enterprise(session: Session, *, profile: EnterpriseProfile) -> tuple[Enterprise, bool]:
    """Store a validated profile of unknown origin (demo seeds, tests; no provenance: nothing in it ages);
    returns (row, changed). Unchanged content writes nothing. Statements of a known source go through
    :mod:`service.app.statements` (merged with the other sources, with provenance)."""
    data = profile.stated()
    digest = canonical_hash(data)
    row = session.get(Enterprise, profile.uscc)
    if row is not None and row.content_hash == digest:
        return row, False
    now = utcnow()
    if row is None:
        row = Enterprise(uscc=profile.uscc, name=profile.name, region=profile.region, profile=data,
                         content_hash=digest, created_at=now, updated_at=now)
        session.add(row)
    else:
        row.name, row.region, row.profile, row.content_hash, row.updated_at = (
            profile.name, profile.region, data, digest, now)
        row.provenance = row.conflicts = None
        session.add(row)
    return row, True


def write_merged(session: Session, *, uscc: str, row: Enterprise | None, profile: EnterpriseProfile,
                 stored: dict[str, Any], provenance: dict[str, Any], conflicts: list[dict[str, Any]],
                 content_hash: str) -> tuple[Enterprise, bool]:
    """Store a firm's merged profile (``stored``: the validated profile's stored form) with its provenance and
    conflicts; ``row`` is the stored one, if any. Returns (row, changed): nothing is written when all four
    are as stored."""
    if row is not None and (row.content_hash, row.profile, row.provenance, row.conflicts) == (
            content_hash, stored, provenance, conflicts):
        return row, False
    now = utcnow()
    if row is None:
        row = Enterprise(uscc=uscc, name=profile.name, region=profile.region, profile=stored, provenance=provenance,
                         conflicts=conflicts, content_hash=content_hash, created_at=now, updated_at=now)
    else:
        row.name, row.region, row.profile, row.content_hash, row.updated_at = (
            profile.name, profile.region, stored, content_hash, now)
        row.provenance, row.conflicts = provenance, conflicts
    session.add(row)
    return row, True


def get_enterprise(session: Session, *, uscc: str) -> Enterprise | None:
    return session.get(Enterprise, uscc)


def enterprises_of(session: Session, *, usccs: Iterable[str]) -> dict[str, Enterprise]:
    """The stored firms among ``usccs`` (one query per few hundred codes)."""
    codes = list(dict.fromkeys(usccs))
    found: dict[str, Enterprise] = {}
    for start in range(0, len(codes), IN_LIST):
        stmt = select(Enterprise).where(col(Enterprise.uscc).in_(codes[start:start + IN_LIST]))
        found.update((row.uscc, row) for row in session.exec(stmt))
    return found


def search_enterprises(session: Session, *, q: str, limit: int = 20) -> list[Enterprise]:
    """By USCC (exact, normalised) or a fragment of the name."""
    text = q.strip()
    # autoescape: % and _ typed by a caller are literal characters, not LIKE wildcards
    stmt = select(Enterprise).where(or_(col(Enterprise.uscc) == text.upper(),
                                        col(Enterprise.name).contains(text, autoescape=True)))
    return list(session.exec(stmt.order_by(col(Enterprise.name), col(Enterprise.uscc)).limit(limit)))


def all_enterprises(session: Session) -> list[Enterprise]:
    return list(session.exec(select(Enterprise).order_by(col(Enterprise.uscc))))


def enterprise_revision(session: Session) -> tuple[int, str]:
    """(count, latest update) — changes whenever any stored enterprise changes."""
    count, latest = session.execute(select(func.count(), func.max(col(Enterprise.updated_at)))).one()
    return int(count or 0), str(latest)
