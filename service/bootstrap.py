"""The service's composition root: engine, embedder, and the catalog/matcher and population
caches that follow the database (rebuilt when the catalog revision or the enterprises change)."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from matching.columns import ProfileBatch
from matching.embeddings import Embedder, load_embedder
from matching.package import Matcher
from matching.reverse import EnterpriseIndex
from policies.loader import Catalog, load_catalog
from policies.schema import Policy
from service import store
from service.db.migrate import upgrade
from service.db.tables import make_engine
from service.settings import Settings, get_settings


@dataclass
class Population:
    """Every stored enterprise as one column batch (derived for ``as_of``)."""

    revision: tuple[int, str]
    as_of: dt.date
    usccs: list[str]
    names: list[str]
    texts: list[str]  # business scope + own words: what the reverse index embeds
    batch: ProfileBatch


@dataclass
class ServiceState:
    settings: Settings
    engine: Engine
    embedder: Embedder
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _matcher: Matcher | None = None
    _revision: int = -1
    _population: Population | None = None
    _enterprise_index: tuple[tuple[int, str], EnterpriseIndex] | None = None
    _current: tuple[int, Matcher] | None = None
    _revision_checked: float = -1e18  # time.monotonic() of the last catalog-revision read
    _tokens: dict[str, tuple[float, store.Principal | None, dt.datetime | None]] = field(default_factory=dict)
    _packages: PackageCache = field(default_factory=lambda: PackageCache(0))

    def __post_init__(self) -> None:
        self._packages = PackageCache(self.settings.package_cache_size)

    @classmethod
    def start(cls, settings: Settings) -> ServiceState:
        engine = make_engine(settings.database_url)
        upgrade(engine)
        embedder = load_embedder(settings.embedding_model, cache_dir=settings.data_dir / "cache")
        state = cls(settings, engine, embedder)
        sync_catalog(engine, settings)
        return state

    # ---- freshness: what a worker may trust for ``settings.freshness_seconds`` ----------------
    def _fresh(self, checked_at: float) -> bool:
        return time.monotonic() - checked_at < self.settings.freshness_seconds

    def invalidate(self) -> None:
        """Forget what this worker trusts (after it changed the catalog or a token itself)."""
        self._revision_checked = -1e18
        self._tokens.clear()

    def catalog_revision(self, session: Session) -> int:
        """The published catalog's revision, read at most once per ``freshness_seconds`` per worker."""
        if self._matcher is not None and self._fresh(self._revision_checked):
            return self._revision
        revision = store.catalog_revision(session)
        self._revision_checked = time.monotonic()
        return revision

    def known_principal(self, token: str) -> tuple[store.Principal | None] | None:
        """``(principal,)`` if this worker checked ``token`` less than ``freshness_seconds`` ago (no I/O);
        None when the database must be asked."""
        cached = self._tokens.get(store.hash_token(token))
        if cached is None or not self._fresh(cached[0]):
            return None
        return (_unexpired(cached),)

    def principal(self, session: Session, token: str) -> store.Principal | None:
        """Who a bearer token is (None: unknown, revoked or expired), re-read once per ``freshness_seconds``.

        A revoked token is refused by every worker within that time; an expiry is checked on every call.
        """
        known = self.known_principal(token)
        if known is not None:
            return known[0]
        found = store.token_for(session, token_hash=store.hash_token(token))
        if len(self._tokens) >= 10_000:
            self._tokens.clear()
        principal = expires = None
        if found is not None and found.revoked_at is None:
            principal = store.Principal(found.id, found.role, found.label, found.uscc)
            expires = found.expires_at
        cached = self._tokens[store.hash_token(token)] = (time.monotonic(), principal, expires)
        return _unexpired(cached)

    def package(self, key: tuple[Any, ...], compute: Any) -> bytes:
        """The package's JSON for ``key`` (content hash, catalog revision, date, query, top), computed once."""
        return self._packages.get_or_compute(key, compute)

    # ---- catalog and population ---------------------------------------------------------------
    def matcher(self, session: Session) -> Matcher:
        """The matcher for the published catalog in the database (rebuilt when it changes)."""
        revision = self.catalog_revision(session)
        if self._matcher is not None and revision == self._revision:
            return self._matcher
        with self._lock:
            if self._matcher is None or revision != self._revision:
                catalog = published_catalog(session, self.settings)
                # one index directory per catalog fingerprint: services over different databases (or
                # the CLI over the YAML files) may share a data dir without overwriting each other's
                # index between its index file and its meta file being written
                index_dir = self.settings.data_dir / "indexes" / "published" / catalog.fingerprint[:16]
                self._matcher = Matcher.build(catalog, embedder=self.embedder, index_dir=index_dir)
                self._revision = revision
                self._current = (revision, self._matcher)
        return self._matcher

    def current(self, session: Session) -> tuple[int, Matcher]:
        """The matcher and the catalog revision it was built for, as one consistent pair."""
        self.matcher(session)
        assert self._current is not None
        return self._current

    def population(self, session: Session, as_of: dt.date) -> Population:
        revision = store.enterprise_revision(session)
        cached = self._population
        if cached is not None and cached.revision == revision and cached.as_of == as_of:
            return cached
        rows = store.all_enterprises(session)
        batch = ProfileBatch.from_records([r.profile for r in rows]).with_derived(as_of)
        texts = [" ".join(filter(None, [r.profile.get("business_scope"), r.profile.get("needs")])) or r.name
                 for r in rows]
        population = Population(revision, as_of, [r.uscc for r in rows], [r.name for r in rows], texts, batch)
        self._population = population
        return population

    def enterprise_index(self, population: Population) -> EnterpriseIndex:
        """The reverse-direction index over the stored enterprises' texts (distinct texts embedded once)."""
        cached = self._enterprise_index
        if cached is not None and cached[0] == population.revision:
            return cached[1]
        index = EnterpriseIndex.build(population.usccs, population.texts, self.embedder,
                                      fingerprint=str(population.revision))
        self._enterprise_index = (population.revision, index)
        return index


def _unexpired(cached: tuple[float, store.Principal | None, dt.datetime | None]) -> store.Principal | None:
    """The cached principal unless its token has expired since (expiry is checked on every request)."""
    _, principal, expires = cached
    if principal is None or (expires is not None and store.as_utc(expires) <= store.utcnow()):
        return None
    return principal


class PackageCache:
    """A bounded LRU of serialized packages, shared by a worker's threads.

    Keys carry everything an answer depends on (the profile's content hash, the catalog revision, the
    date, the query and the cut), so an entry never goes stale: a changed profile or catalog is a new key.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get_or_compute(self, key: tuple[Any, ...], compute: Any) -> bytes:
        if self.size:
            with self._lock:
                found = self._data.get(key)
                if found is not None:
                    self._data.move_to_end(key)
                    self.hits += 1
                    return found
        value: bytes = compute()
        if self.size:
            with self._lock:
                self.misses += 1
                self._data[key] = value
                while len(self._data) > self.size:
                    self._data.popitem(last=False)
        return value


def sync_catalog(engine: Engine, settings: Settings, attempts: int = 5) -> int:
    """Load the YAML catalog into the database (``store.sync_catalog_files``), safe when several
    processes start at once on a fresh database: the loser of a race on the same (policy, version)
    gets a unique-key violation, rolls back and syncs again — then finding the winner's rows."""
    policies = load_catalog(settings.catalog_dir).all_entries()
    for attempt in range(1, attempts + 1):
        with Session(engine) as session:
            try:
                changed = store.sync_catalog_files(session, policies=policies)
                session.commit()
                return changed
            except IntegrityError:
                session.rollback()
                if attempt == attempts:
                    raise
                time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


def published_catalog(session: Session, settings: Settings) -> Catalog:
    rows = store.published_versions(session)
    policies = {r.policy_id: Policy.model_validate(r.data) for r in rows}
    digest = hashlib.sha256("".join(f"{r.policy_id}:{r.version}:{r.content_hash};" for r in rows).encode())
    return Catalog(entries=policies, fingerprint=digest.hexdigest(), directory=settings.catalog_dir)


def sizes_and_regions(population: Population, rows: np.ndarray) -> dict[str, dict[str, int]]:
    from matching.columns import values

    out: dict[str, dict[str, int]] = {}
    for field_name in ("region", "size"):
        codes = population.batch.columns[field_name][rows]
        names = ["未知", *values(field_name)]
        counts = np.bincount(codes.astype(np.int64) + 1, minlength=len(names))
        out[field_name] = {names[i]: int(c) for i, c in enumerate(counts) if c}
    return out


def describe_enterprise(row: Any) -> dict[str, Any]:
    return {"uscc": row.uscc, "name": row.name, "region": row.region}


# --- the command line's catalog, embedder and matcher (from the catalog files), built once per process ---

@lru_cache
def get_catalog() -> Catalog:
    return load_catalog(get_settings().catalog_dir)


@lru_cache
def get_embedder() -> Embedder:
    settings = get_settings()
    return load_embedder(settings.embedding_model, cache_dir=settings.data_dir / "cache")


@lru_cache
def get_matcher() -> Matcher:
    settings = get_settings()
    catalog = get_catalog()
    # one directory per catalog fingerprint (as the service does): a CLI over edited YAML files and a
    # service over its database may share a data dir without overwriting each other's index
    return Matcher.build(catalog, embedder=get_embedder(),
                         index_dir=settings.data_dir / "indexes" / "files" / catalog.fingerprint[:16])
