import pytest
from channels.db import database_sync_to_async
from django.db import connections


@pytest.fixture(autouse=True)
async def _close_executor_connections():
    """Async tests reach the database from asgiref's executor thread; close its connection after
    each test so the test database can be dropped at the end of the session."""
    yield
    await database_sync_to_async(connections.close_all)()
