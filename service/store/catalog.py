"""The ``policy_version`` and ``catalog_state`` tables: every version of every policy, and the revision
of the published catalog that workers watch (written only here)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from policies.schema import Policy
from service.db.tables import CatalogState, PolicyVersion, utcnow
from service.store.values import canonical_hash


def _bump_catalog(session: Session) -> None:
    state = session.get(CatalogState, 1)
    if state is None:
        session.add(CatalogState(id=1, revision=1))
    else:
        state.revision += 1
        state.updated_at = utcnow()
        session.add(state)


def catalog_revision(session: Session) -> int:
    state = session.get(CatalogState, 1)
    return state.revision if state else 0


def sync_catalog_files(session: Session, *, policies: Iterable[Policy]) -> int:
    """Load the YAML catalog into policy versions; returns how many rows changed.

    A file's (id, version) that is not stored yet becomes a new version with the file's status; a
    stored catalog-origin version whose content changed is updated in place (the files are the
    reviewed source); versions created through the API are never touched.
    """
    changed = 0
    for policy in policies:
        data = policy.model_dump(mode="json")
        digest = canonical_hash(data)
        row = session.exec(select(PolicyVersion).where(
            col(PolicyVersion.policy_id) == policy.id, col(PolicyVersion.version) == policy.version)).first()
        if row is None:
            if policy.status == "published":
                _retire_published(session, policy.id)
            session.add(PolicyVersion(policy_id=policy.id, version=policy.version, status=policy.status,
                                      data=data, content_hash=digest, origin="catalog", created_by="catalog"))
            changed += 1
        elif row.origin == "catalog" and row.content_hash != digest:
            row.data, row.content_hash, row.status, row.updated_at = data, digest, policy.status, utcnow()
            session.add(row)
            changed += 1
    if changed:
        _bump_catalog(session)
    return changed


def _retire_published(session: Session, policy_id: str) -> None:
    session.execute(update(PolicyVersion).where(
        col(PolicyVersion.policy_id) == policy_id, col(PolicyVersion.status) == "published").values(
        status="retired", updated_at=utcnow()))


def policy_versions(session: Session, *, policy_id: str) -> list[PolicyVersion]:
    return list(session.exec(select(PolicyVersion).where(PolicyVersion.policy_id == policy_id)
                             .order_by(col(PolicyVersion.version))))


def published_versions(session: Session) -> list[PolicyVersion]:
    return list(session.exec(select(PolicyVersion).where(PolicyVersion.status == "published")
                             .order_by(col(PolicyVersion.policy_id))))


def latest_versions(session: Session) -> list[PolicyVersion]:
    """The newest version of every policy (whatever its status)."""
    rows = session.exec(select(PolicyVersion).order_by(col(PolicyVersion.policy_id), col(PolicyVersion.version))).all()
    latest: dict[str, PolicyVersion] = {}
    for row in rows:
        latest[row.policy_id] = row
    return list(latest.values())


def add_draft(session: Session, *, policy: Policy, author: str) -> PolicyVersion:
    """A new draft version (number = newest + 1) of a new or existing policy."""
    current = session.exec(select(func.max(PolicyVersion.version)).where(
        col(PolicyVersion.policy_id) == policy.id)).one()
    version = int(current or 0) + 1
    data = policy.model_copy(update={"version": version, "status": "draft"}).model_dump(mode="json")
    row = PolicyVersion(policy_id=policy.id, version=version, status="draft", data=data,
                        content_hash=canonical_hash(data), origin="api", created_by=author)
    session.add(row)
    return row


def set_status(session: Session, *, row: PolicyVersion, status: str) -> PolicyVersion:
    """Publish (retiring the version in force) or retire a version; bumps the catalog revision."""
    if status == "published":
        _retire_published(session, row.policy_id)
    row.status = status
    row.data = {**row.data, "status": status}
    row.content_hash = canonical_hash(row.data)
    row.updated_at = utcnow()
    session.add(row)
    _bump_catalog(session)
    return row
