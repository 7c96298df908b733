"""The ``enterprise`` table: stored profiles (written only here)."""

from __future__ import annotations

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from profiles.model import EnterpriseProfile
from service.db.tables import Enterprise, utcnow
from service.store.values import canonical_hash


def upsert_enterprise(session: Session, *, profile: EnterpriseProfile) -> tuple[Enterprise, bool]:
    """Store a validated profile; returns (row, changed). Unchanged content writes nothing."""
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
        session.add(row)
    return row, True


def get_enterprise(session: Session, *, uscc: str) -> Enterprise | None:
    return session.get(Enterprise, uscc)


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
