"""Shared fixtures: the real catalog and matcher, loaded once per session."""

from __future__ import annotations

import pytest

from matching.package import Matcher
from policies.loader import Catalog, load_catalog


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="session")
def matcher(catalog: Catalog) -> Matcher:
    return Matcher.build(catalog)
