import pytest

from tests.alerts.fakes import Recorder, check_sendgrid_v3, serve


@pytest.fixture
def receiver():
    rec = Recorder()
    with serve(rec) as url:
        rec.url = url + "/hook"
        yield rec


@pytest.fixture
def sendgrid(settings):
    rec = Recorder(default=202)
    with serve(rec, check_sendgrid_v3) as url:
        settings.SENDGRID_API_KEY = "SG.test-key"
        settings.SENDGRID_API_URL = url
        yield rec
