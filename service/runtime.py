"""Composition root: the catalog and matcher, built once per process."""

from __future__ import annotations

from functools import lru_cache

from matching.package import Matcher
from policies.loader import Catalog, load_catalog
from service.settings import get_settings


@lru_cache
def get_catalog() -> Catalog:
    return load_catalog(get_settings().catalog_dir)


@lru_cache
def get_matcher() -> Matcher:
    return Matcher.build(get_catalog())
