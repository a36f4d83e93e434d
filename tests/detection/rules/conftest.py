"""Rule-engine tests are pure computation: no database, cache or network."""

import pytest


@pytest.fixture(autouse=True)
def _clean_cache():
    # Overrides the suite-wide fixture of the same name, which clears the Redis cache.
    yield
