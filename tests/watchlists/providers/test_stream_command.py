"""manage.py stream: live bars from the (fake) Polygon socket until Ctrl-C, then a clean stop."""

import os
import signal
import threading
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from .conftest import bar_times
from .fakes import FakePolygonSocket, am_event, session_minutes
from .test_polygon import DAY


@pytest.mark.django_db(transaction=True)  # the stream's own threads read the series, so commit them
def test_stream_stores_live_bars_and_stops_cleanly_on_ctrl_c(settings, org_a, pg_link):
    ms = [int(t.value // 1_000_000) for t in session_minutes(DAY)[:3]]

    def script(connection):
        # Ctrl-C once the command is subscribed and has had time to store what it got.
        threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
        return [[am_event("AAPL", t, i) for i, t in enumerate(ms)]], False

    socket = FakePolygonSocket(script).start()
    settings.POLYGON_WS_URL = socket.url
    out = StringIO()
    try:
        call_command("stream", "--org", org_a.slug, stdout=out)
    finally:
        socket.stop()
    assert "Streaming 1 series (AAPL) from polygon" in out.getvalue()
    assert "Stream stopped cleanly" in out.getvalue()
    assert bar_times(pg_link.series_id) == [t * 1000 for t in ms]
    assert socket.connections == 1


@pytest.mark.django_db
def test_stream_without_polygon_series_says_what_to_do(org_a):
    with pytest.raises(CommandError, match="no enabled series on polygon; connect one first"):
        call_command("stream", "--org", org_a.slug)
