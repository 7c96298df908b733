"""Composition root: the catalog, embedder and matcher, built once per process."""

from __future__ import annotations

from functools import lru_cache

from matching.embeddings import Embedder, load_embedder
from matching.package import Matcher
from policies.loader import Catalog, load_catalog
from service.settings import get_settings


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
