"""The service's composition root: engine, embedder, and the catalog/matcher and population
caches that follow the database (rebuilt when the catalog revision or the enterprises change)."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from matching.embeddings import Embedder, load_embedder
from matching.package import Matcher
from matching.reverse import EnterpriseIndex
from policies.loader import Catalog, load_catalog
from policies.params import parameters_digest
from policies.schema import Policy
from profiles.columns import ProfileBatch
from service.db.migrate import upgrade
from service.db.tables import make_engine
from service.settings import Settings, get_settings
from service.store import catalog as store_catalog
from service.store.catalog import catalog_revision, published_versions
from service.store.enterprises import all_enterprises, enterprise_revision
from service.store.principals import Principal
from service.store.tokens import principal_for
from service.store.values import canonical_hash, hash_token


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
    _tokens: dict[str, tuple[float, Principal | None]] = field(default_factory=dict)
    _packages: PackageCache = field(default_factory=lambda: PackageCache(0))
    _index_lock: threading.Lock = field(default_factory=threading.Lock)
    _warm_thread: threading.Thread | None = None
    _warmed: threading.Event = field(default_factory=threading.Event)
    _policy_ready: threading.Event = field(default_factory=threading.Event)
    _progress: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._packages = PackageCache(self.settings.package_cache_size)

    @classmethod
    def start(cls, settings: Settings, *, warm: bool = True) -> ServiceState:
        """Migrate, load the catalog files into the database, and (``warm``) start building in the
        background what the pages need (see :meth:`readiness`)."""
        engine = migrated_engine(settings)
        embedder = embedder_for(settings.embedding_model, settings.data_dir)
        state = cls(settings, engine, embedder)
        sync_catalog(engine, settings)
        if warm:
            state.start_warming()
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
        revision = catalog_revision(session)
        self._revision_checked = time.monotonic()
        return revision

    def known_principal(self, token: str) -> tuple[Principal | None] | None:
        """``(principal,)`` if this worker checked ``token`` less than ``freshness_seconds`` ago (no I/O);
        None when the database must be asked."""
        cached = self._tokens.get(hash_token(token))
        if cached is None or not self._fresh(cached[0]):
            return None
        return (_unexpired(cached[1]),)

    def principal(self, session: Session, token: str) -> Principal | None:
        """Who a bearer token is (None: unknown, revoked or expired): ``tokens.principal_for`` — the one
        token check — remembered for ``freshness_seconds``.

        A revoked token is refused by every worker within that time; an expiry is checked on every call.
        """
        known = self.known_principal(token)
        if known is not None:
            return known[0]
        principal = principal_for(session, token=token)
        if len(self._tokens) >= 10_000:
            self._tokens.clear()
        self._tokens[hash_token(token)] = (time.monotonic(), principal)
        return principal

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
                self._matcher = matcher_for(catalog, self.embedder, self.settings.data_dir)
                self._revision = revision
                self._current = (revision, self._matcher)
        return self._matcher

    def current(self, session: Session) -> tuple[int, Matcher]:
        """The matcher and the catalog revision it was built for, as one consistent pair."""
        self.matcher(session)
        assert self._current is not None
        return self._current

    def population(self, session: Session, as_of: dt.date) -> Population:
        revision = enterprise_revision(session)
        cached = self._population
        if cached is not None and cached.revision == revision and cached.as_of == as_of:
            return cached
        rows = all_enterprises(session)
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
        with self._index_lock:  # a page asked while the warm-up builds it waits for that build
            cached = self._enterprise_index
            if cached is not None and cached[0] == population.revision:
                return cached[1]
            index = EnterpriseIndex.build(population.usccs, population.texts, self.embedder,
                                          fingerprint=str(population.revision))
            self._enterprise_index = (population.revision, index)
        return index

    # ---- warm-up and readiness: /readyz says ready once what the pages need is built ----------------
    def start_warming(self) -> threading.Thread:
        """Build the policy matcher and the enterprise-side index in a background thread (the process
        answers /healthz meanwhile; /readyz answers ``warming`` with the progress)."""
        self._warmed.clear()
        self._policy_ready.clear()
        self._progress.update({"policy_index": "pending", "enterprise_index": "pending"})
        self._progress.pop("error", None)
        thread = threading.Thread(target=self._warm, name="policyfit-warm-up", daemon=True)
        self._warm_thread = thread
        thread.start()
        return thread

    def _warm(self) -> None:
        started = time.monotonic()
        progress = self._progress
        try:
            with Session(self.engine) as session:
                progress["policy_index"] = "building"
                self.matcher(session)
                progress["policy_index"] = "ready"
                self._policy_ready.set()
                population = self.population(session, dt.date.today())
                progress["enterprises"] = len(population.usccs)  # before "building": a reader sees both together
                progress["enterprise_index"] = "building"
                self.enterprise_index(population)
                progress["enterprise_index"] = "ready"
            self._warmed.set()
        except Exception as exc:  # reported by /readyz (the next readiness call starts again)
            progress["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            progress["seconds"] = round(time.monotonic() - started, 1)

    def wait_for_policy_index(self, timeout: float = 300.0) -> None:
        """While this worker's warm-up is still building the policy matcher, wait for it — called by a
        request *before* it takes a database connection: waiting on the build while holding one let a
        burst of early requests use up the pool and fail as 503 “数据库暂时不可用”. No warm-up running
        (tests, tools, or done): returns at once."""
        thread = self._warm_thread
        if thread is not None and thread.is_alive() and not self._policy_ready.is_set():
            self._policy_ready.wait(timeout)

    def readiness(self, session: Session) -> dict[str, Any]:
        """``{"status": "ready", catalog_version, model_id, policies, entries}`` once the matcher of the
        published catalog and the enterprise-side index are built; ``{"status": "warming", "progress":
        {...}}`` while the warm-up runs. Without a warm-up (tests, tools) both are built here."""
        thread = self._warm_thread
        if thread is not None and not self._warmed.is_set():
            if not thread.is_alive():  # the warm-up failed: say so and try again
                progress = dict(self._progress)
                self.start_warming()
                return {"status": "warming", "progress": progress}
            return {"status": "warming", "progress": dict(self._progress)}
        matcher = self.matcher(session)
        if self._enterprise_index is None:
            self.enterprise_index(self.population(session, dt.date.today()))
        return {"status": "ready", "catalog_version": matcher.catalog.version, "model_id": matcher.model_id,
                "policies": len(matcher.catalog.policies), "entries": len(matcher.catalog.entries)}


def _unexpired(principal: Principal | None) -> Principal | None:
    """A remembered principal unless its token has expired since (expiry is checked on every request)."""
    return None if principal is None or principal.expired() else principal


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


def migrated_engine(settings: Settings | None = None) -> Engine:
    """An engine on the settings' database, its schema migrated to the newest revision (Alembic)."""
    engine = make_engine((settings or get_settings()).database_url)
    upgrade(engine)
    return engine


def sync_catalog(engine: Engine, settings: Settings, attempts: int = 5) -> int:
    """Load the YAML catalog into the database (``store.catalog.sync_catalog_files``), safe when several
    processes start at once on a fresh database: the loser of a race on the same (policy, version)
    gets a unique-key violation, rolls back and syncs again — then finding the winner's rows."""
    policies = catalog_from_files(settings.catalog_dir).all_entries()
    for attempt in range(1, attempts + 1):
        with Session(engine) as session:
            try:
                changed = store_catalog.sync_catalog_files(session, policies=policies)
                session.commit()
                return changed
            except IntegrityError:
                session.rollback()
                if attempt == attempts:
                    raise
                time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


def published_catalog(session: Session, settings: Settings) -> Catalog:
    rows = published_versions(session)
    policies = {r.policy_id: Policy.model_validate(r.data) for r in rows}
    return Catalog(entries=policies, fingerprint=catalog_fingerprint(policies), directory=settings.catalog_dir)


# ---- the one way to build a catalog, an embedder and a matcher (CLI, service and batch alike) ------------

def catalog_fingerprint(entries: Mapping[str, Policy]) -> str:
    """The catalog's identity as a function of its content only: every entry's id and canonical JSON, and the
    dated parameters (policies/params.py).

    The same entries give the same fingerprint whether they were read from the YAML files or from the
    published rows of a database (file names, comments and key order do not count)."""
    digest = hashlib.sha256()
    for policy_id in sorted(entries):
        digest.update(f"{policy_id}:{canonical_hash(entries[policy_id].model_dump(mode='json'))};".encode())
    digest.update(f"parameters:{parameters_digest()}".encode())  # the dated rates and thresholds they read
    return digest.hexdigest()


def catalog_version(catalog: Catalog) -> str:
    """``catalog-<12 hex>``: what the CLI, the API and the batch report for a catalog's content."""
    return f"catalog-{catalog_fingerprint(catalog.entries)[:12]}"


def catalog_from_files(directory: Path) -> Catalog:
    """The YAML catalog of ``directory``, parsed again only when a file changed (name, size or mtime)."""
    directory = Path(directory)
    files = tuple(sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in directory.glob("*.yaml")))
    return _catalog_from_files(directory.resolve(), files)


@lru_cache(maxsize=4)
def _catalog_from_files(directory: Path, _files: tuple[tuple[str, int, int], ...]) -> Catalog:
    loaded = load_catalog(directory)
    return replace(loaded, fingerprint=catalog_fingerprint(loaded.entries))


@lru_cache(maxsize=4)
def embedder_for(spec: str, data_dir: Path) -> Embedder:
    """The embedder named by ``spec`` (``Settings.embedding_model``), caching vectors under ``data_dir``."""
    return load_embedder(spec, cache_dir=data_dir / "cache")


_MATCHERS: OrderedDict[tuple[str, str, Path], Matcher] = OrderedDict()
_MATCHERS_LOCK = threading.Lock()


def matcher_for(catalog: Catalog, embedder: Embedder, data_dir: Path, *,
                say: Callable[[str], None] | None = None) -> Matcher:
    """One matcher per (catalog content, model, data dir) and process.

    Its vector index lives in ``<data_dir>/indexes/<fingerprint>``: one directory per catalog content, so
    processes over different catalogs may share a data dir without overwriting each other's index.
    ``say`` hears what a first build does and how long it takes (the command line prints it on stderr)."""
    key = (catalog.fingerprint, embedder.model_id, Path(data_dir))
    with _MATCHERS_LOCK:
        found = _MATCHERS.get(key)
        if found is not None:
            _MATCHERS.move_to_end(key)
            return found
        index_dir = Path(data_dir) / "indexes" / catalog.fingerprint[:16]
        first = say is not None and not index_dir.exists()
        with _progress(say if first else None,
                       f"首次使用：为政策目录的 {len(catalog.entries)} 个条目计算向量、建立索引并拟合检索校准"
                       "（只在第一次，约需一两分钟；之后直接读取）"):
            matcher = Matcher.build(catalog, embedder=embedder, index_dir=index_dir)
        _MATCHERS[key] = matcher
        while len(_MATCHERS) > 2:  # the previous catalog's matcher is rarely needed again
            _MATCHERS.popitem(last=False)
        return matcher


@contextmanager
def _progress(say: Callable[[str], None] | None, what: str, every: float = 10.0) -> Iterator[None]:
    """Long first-use work, told as it goes: what is done, the time so far every ``every`` seconds, and
    the total at the end (nothing when ``say`` is None)."""
    if say is None:
        yield
        return
    say(what + "…")
    started, done = time.monotonic(), threading.Event()

    def tick() -> None:
        while not done.wait(every):
            say(f"  …已用 {time.monotonic() - started:.0f} 秒")

    threading.Thread(target=tick, name="policyfit-progress", daemon=True).start()
    try:
        yield
    finally:
        done.set()
    say(f"  完成（用时 {time.monotonic() - started:.0f} 秒）")


# ---- the command line's catalog, embedder and matcher: from the catalog files of the settings ------------

def get_catalog() -> Catalog:
    return catalog_from_files(get_settings().catalog_dir)


def get_embedder() -> Embedder:
    settings = get_settings()
    return embedder_for(settings.embedding_model, settings.data_dir)


def get_matcher(*, say: Callable[[str], None] | None = None) -> Matcher:
    return matcher_for(get_catalog(), get_embedder(), get_settings().data_dir, say=say)
