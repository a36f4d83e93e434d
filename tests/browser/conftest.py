"""A real server for the browser: daphne in a subprocess against the test database, email through
a fake SendGrid on 127.0.0.1, and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from django.db import connection

from tests.alerts.fakes import Recorder, check_sendgrid_v3, serve
from tests.benchmarks.server import free_port, live_server

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]


class Outbox:
    """The emails the fake SendGrid accepted, decoded from their v3 JSON."""

    def __init__(self, recorder: Recorder):
        self.recorder = recorder

    def messages(self) -> list[dict]:
        with self.recorder.lock:
            bodies = [r["body"] for r in self.recorder.requests]
        out = []
        for body in bodies:
            p = json.loads(body)
            out.append({"to": [t["email"] for pers in p["personalizations"] for t in pers["to"]],
                        "subject": p["subject"], "text": p["content"][0]["value"]})
        return out

    def wait_for(self, predicate, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [m for m in self.messages() if predicate(m)]
            if found:
                return found[0]
            time.sleep(0.2)
        raise AssertionError(f"no matching email within {timeout} s; outbox: {self.messages()}")


@pytest.fixture
def outbox():
    recorder = Recorder(default=202)
    with serve(recorder, check_sendgrid_v3) as url:
        yield Outbox(recorder), url


@pytest.fixture
def app_server(transactional_db, outbox):
    """daphne serving HTTP and WebSockets from the committed test database; tasks run in-process
    (eager), so the replay, detection and alert delivery all happen inside this one server."""
    _, sendgrid_url = outbox
    db = connection.settings_dict
    port = free_port()
    env = {"DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
           "CELERY_TASK_ALWAYS_EAGER": "True", "SENDGRID_API_KEY": "SG.browser-test",
           "SENDGRID_API_URL": sendgrid_url, "ACCOUNT_EMAIL_VERIFICATION": "mandatory", "HTTP_THREADS": "8",
           "SITE_URL": f"http://127.0.0.1:{port}", "TEST_DATABASE_NAME": None,
           # History runs on a thread as in `make run`: the page must show them working in the background.
           "EMBEDDED_BACKGROUND_THREADS": "True"}
    # The server's log is kept beside the screenshots: the server side of a failed walk.
    with live_server(env, app="tests.browser.asgi:application", port=port,
                     keep_log=ARTIFACTS / "daphne.log") as base:
        yield base


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (installs Debian's chromium)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def shots(request):
    """shots(page, name): a full-page screenshot in test-artifacts/browser/<test>/NN-name.png."""
    folder = ARTIFACTS / request.node.name
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    count = iter(range(1, 100))

    def take(page, name: str) -> Path:
        path = folder / f"{next(count):02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


def sign_up(page, mail, email: str, password: str, organization: str) -> None:
    """Signs up, confirms through the link in the email SendGrid was asked to send, and creates the
    first organization: where every walk starts."""
    import re

    from playwright.sync_api import expect

    page.get_by_label("Email:", exact=True).fill(email)
    page.get_by_label("Password:", exact=True).fill(password)
    page.get_by_label("Password (again):", exact=True).fill(password)
    page.get_by_role("button", name=re.compile("Sign Up", re.I)).click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    confirm = mail.wait_for(lambda m: email in m["to"] and "confirm-email" in m["text"])
    page.goto(re.search(r"https?://\S+/accounts/confirm-email/\S+/", confirm["text"]).group(0))
    page.get_by_role("button", name=re.compile("Confirm", re.I)).click()
    if "/accounts/login/" in page.url:
        page.get_by_label("Email:", exact=True).fill(email)
        page.get_by_label("Password:", exact=True).fill(password)
        page.get_by_role("button", name=re.compile("Sign In", re.I)).click()
    expect(page.get_by_role("heading", name="Create an organization")).to_be_visible()
    page.get_by_label("Organization name").fill(organization)
    page.get_by_role("button", name="Create organization").click()
