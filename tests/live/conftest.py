import pytest


@pytest.fixture(autouse=True)
def _close_executor_connections(close_executor_connections):
    """Every live-feed test is async and reaches the database (tests/conftest.py)."""
