"""The ``enterprise_source`` table: what each source says of each firm (written only here).

A row is one source's statement about one firm, ``doc = {"values": {field: value}, "as_of": {field:
"YYYY-MM-DD"}}`` — per field the value with the newest date that source gave it. ``content_hash`` is the
doc's canonical hash: a feed that restates what is stored writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlmodel import Session, col, select

from service.db.bulk import IN_LIST
from service.db.tables import EnterpriseSource, utcnow
from service.store.values import canonical_hash


def source_docs(session: Session, *, usccs: Iterable[str]) -> dict[str, dict[str, EnterpriseSource]]:
    """Every stored statement about these firms: ``{uscc: {source: row}}`` (firms without any are absent)."""
    codes = list(dict.fromkeys(usccs))
    found: dict[str, dict[str, EnterpriseSource]] = {}
    for start in range(0, len(codes), IN_LIST):
        stmt = select(EnterpriseSource).where(col(EnterpriseSource.uscc).in_(codes[start:start + IN_LIST]))
        for row in session.exec(stmt):
            found.setdefault(row.uscc, {})[row.source] = row
    return found


def docs_of(session: Session, *, uscc: str) -> dict[str, dict[str, Any]]:
    """The statements about one firm, ``{source: doc}``."""
    return {source: row.doc for source, row in source_docs(session, usccs=[uscc]).get(uscc, {}).items()}


def put_source_doc(session: Session, *, uscc: str, source: str, doc: dict[str, Any],
                   stored: EnterpriseSource | None) -> bool:
    """Store ``source``'s statement about ``uscc``; ``stored`` is the row the caller read with
    :func:`source_docs` (None: there is none — no query here, so a chunk of rows costs one read and one flush).
    Returns whether anything changed: an identical statement writes nothing."""
    digest = canonical_hash(doc)
    if stored is not None and stored.content_hash == digest:
        return False
    if stored is None:
        session.add(EnterpriseSource(uscc=uscc, source=source, doc=doc, content_hash=digest, updated_at=utcnow()))
    else:
        stored.doc, stored.content_hash, stored.updated_at = doc, digest, utcnow()
        session.add(stored)
    return True
