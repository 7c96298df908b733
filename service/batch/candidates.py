"""What a run scores against what: the published catalog with its scorer and key, and the enterprises that
need scoring (new or changed content, a new catalog key, or an age threshold crossed), read in
keyset-ordered chunks."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, select

from matching.batch import BatchScorer, age_thresholds, benefit_digest
from matching.package import Matcher
from policies.loader import Catalog
from policies.schema import Policy
from service.bootstrap import (
    catalog_from_files,
    catalog_version,
    embedder_for,
    matcher_for,
    published_catalog,
)
from service.db.bulk import table_of
from service.db.tables import BatchCursor, Enterprise, PolicyVersion
from service.settings import Settings
from service.store.catalog import sync_catalog_files


@dataclass
class Prepared:
    catalog: Catalog
    version: str  # bootstrap.catalog_version: what the CLI, the API and the batch report
    catalog_key: str  # the catalog's content, the model and the policies active on the run's day
    matcher: Matcher
    scorer: BatchScorer
    benefits: dict[tuple[str, int], str]  # (policy, version) -> benefit digest, every stored version
    thresholds: np.ndarray


def prepare(engine: Engine, settings: Settings, as_of: dt.date) -> Prepared:
    """The published catalog (YAML synced first), its batch scorer and the relevance channels."""
    with Session(engine) as session:
        # every entry kind, as the service syncs them: commitments and plan work are stored beside the
        # policies (findable), and the batch must live with that database whoever synced it first
        sync_catalog_files(session, policies=catalog_from_files(settings.catalog_dir).all_entries())
        session.commit()
        catalog = published_catalog(session, settings)
        stored = ((r, Policy.model_validate(r.data)) for r in session.exec(select(PolicyVersion)))
        # only policies have a benefit to compare: a commitment or plan work is never offered
        benefits = {(r.policy_id, r.version): benefit_digest(p) for r, p in stored if p.offered}
    matcher = matcher_for(catalog, embedder_for(settings.embedding_model, settings.data_dir), settings.data_dir)
    active = ",".join(p.id for p in catalog if p.is_active(as_of))
    key = hashlib.sha256(f"{catalog.fingerprint}|{matcher.model_id}|{active}".encode()).hexdigest()
    return Prepared(catalog, catalog_version(catalog), key, matcher, BatchScorer.build(catalog), benefits, age_thresholds(catalog))


# ---- reading the enterprises that need scoring ---------------------------------------------------------
def candidates_query(catalog_key: str, as_of: dt.date) -> tuple[Any, Any]:
    """(enterprises outer-joined to their cursors, the condition of those that need scoring)."""
    e, c = table_of(Enterprise).c, table_of(BatchCursor).c
    joined = table_of(Enterprise).outerjoin(table_of(BatchCursor), c.uscc == e.uscc)
    stale = sa.or_(c.uscc.is_(None), c.content_hash != e.content_hash, c.catalog_key != catalog_key,
                   sa.and_(c.recheck_on.is_not(None), c.recheck_on <= as_of))
    return joined, stale


def scored_firms(catalog_key: str, as_of: dt.date) -> Any:
    """A select of the USCCs a run with this key scores."""
    joined, stale = candidates_query(catalog_key, as_of)
    return sa.select(table_of(Enterprise).c.uscc).select_from(joined).where(stale)


def count_candidates(conn: Connection, catalog_key: str, as_of: dt.date) -> tuple[int, int]:
    """(enterprises stored, enterprises to score)."""
    joined, stale = candidates_query(catalog_key, as_of)
    total = conn.execute(sa.select(sa.func.count()).select_from(table_of(Enterprise))).scalar_one()
    todo = conn.execute(sa.select(sa.func.count()).select_from(joined).where(stale)).scalar_one()
    return int(total), int(todo)


def iter_candidates(engine: Engine, catalog_key: str, as_of: dt.date, chunk: int) -> Iterator[pd.DataFrame]:
    """Chunks of (uscc, name, region, content_hash, opted_out, profile JSON text, provenance JSON text or
    None), in USCC order.

    Keyset pagination from a fresh transaction per chunk: the cursor rows written for the chunk before
    do not disturb the next read, and memory stays bounded by ``chunk``.
    """
    e = table_of(Enterprise).c
    joined, stale = candidates_query(catalog_key, as_of)
    after = ""
    while True:
        stmt = (sa.select(e.uscc, e.name, e.region, e.content_hash, e.opted_out, sa.cast(e.profile, sa.Text),
                          sa.cast(e.provenance, sa.Text))
                .select_from(joined).where(stale, e.uscc > after).order_by(e.uscc).limit(chunk))
        with engine.connect() as conn:
            rows = conn.execute(stmt).all()
        if not rows:
            return
        frame = pd.DataFrame(rows, columns=["uscc", "name", "region", "content_hash", "opted_out", "profile",
                                            "provenance"])
        after = str(frame["uscc"].iloc[-1])
        yield frame
