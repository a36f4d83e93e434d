"""Issue 24's done-when walk in a real browser: a newcomer on a fresh organization imports real
demo data into a new series, adds a rule whose preview finds anomalies, and sees every anomaly
it finds (chart, Anomalies page, REST) without reloading, explained and in exchange time."""

import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import sign_up

pytestmark = pytest.mark.django_db(transaction=True)

EMAIL = "newcomer@example.com"
PASSWORD = "a-first-hour-password-24"
DEMO_CSV = Path(__file__).resolve().parents[2] / "watchlists" / "demo_data" / "minute" / "SPY.csv"
# Fires on single 1-minute bars, among them the regular session's opening bar of 2023-08-03 (764,109 shares).
RULE = "volume > 500000"
WAIT_MS = 60_000
WIDE, NARROW = {"width": 1366, "height": 900}, {"width": 390, "height": 844}


def test_first_hour_import_rule_and_every_anomaly_in_market_time(app_server, browser, outbox, shots):
    mail, _ = outbox
    context = browser.new_context(viewport=WIDE)
    context.set_default_timeout(WAIT_MS)
    expect.set_options(timeout=WAIT_MS)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        pages = _walk(app_server, page, mail, shots)
        _every_page_at_two_widths(context, app_server, pages, shots)
    except Exception:
        shots(page, "failure")
        raise
    assert not errors, errors
    context.close()


def _walk(app_server, page, mail, shots) -> list[str]:
    page.goto(f"{app_server}/accounts/signup/")
    sign_up(page, mail, EMAIL, PASSWORD, "First Hour Capital")
    expect(page.get_by_role("heading", name="Nothing to watch yet")).to_be_visible()

    # A new series (a watchlist creates it), then the repo's real SPY minute bars imported into it.
    page.get_by_role("link", name="Create your first watchlist").click()
    page.get_by_label("Watchlist name").fill("Index ETFs")
    page.get_by_label("Symbols").fill("SPY")
    page.get_by_label("Kind of new series").select_option("bar")
    page.get_by_role("button", name="Create watchlist").click()
    page.get_by_role("link", name="SPY", exact=True).click()
    series_url = page.url
    series_id = int(re.search(r"/series/(\d+)/", series_url).group(1))
    expect(page.locator("#no-data")).to_be_visible()
    page.get_by_label("CSV file").set_input_files(str(DEMO_CSV))
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#import-status")).to_contain_text("Stored 5,786 of 5,786 points")
    # The chart is redrawn with the imported data: no reload, no "reload to see them".
    page.wait_for_function("Number(document.getElementById('chart').dataset.bars || 0) > 100")
    expect(page.locator("#no-data")).to_have_count(0)
    # The first regular-session bar of the latest day sits at 09:30 on the axis: exchange time, not UTC.
    assert page.evaluate("document.getElementById('chart').ahChart.bars.some((b) => "
                         "new Date(b.time * 1000).toISOString().startsWith('2023-08-03T09:30'))")
    expect(page.get_by_role("heading", name=re.compile("SPY"))).to_contain_text("exchange time, America/New_York")
    shots(page, "series-imported")

    # A rule whose preview finds anomalies in the imported data, saved to run over that history.
    page.get_by_role("link", name="Add a rule").first.click()
    page.get_by_label("Rule name").fill("Big minutes")
    page.get_by_label("Metrics").fill(RULE)
    expect(page.locator("#rule-errors")).to_have_text("✓ valid")
    expect(page.get_by_label("Also run over the stored history")).to_be_checked()
    page.get_by_role("button", name="Preview on the latest day").click()
    page.wait_for_function("Number(document.getElementById('preview-chart').dataset.markers || 0) > 0")
    summary = page.locator("#preview-summary").inner_text()
    assert int(summary.split(" anomalies")[0].replace(",", "")) > 0, summary
    shots(page, "rule-preview")
    started = time.monotonic()
    page.get_by_role("button", name="Save rule").click()
    assert page.url.startswith(series_url)
    expect(page.locator(".messages")).to_contain_text("running over 5,786 stored points")

    # Without reloading: the job finishes, the anomalies arrive in the table and on the chart.
    expect(page.locator("progress[data-job-url]")).to_have_attribute("data-status", "succeeded")
    expect(page.locator("[data-job-text]")).to_contain_text("done:")
    page.wait_for_function("Number(document.getElementById('chart').dataset.markers || 0) > 0")
    expect(page.locator(f"tbody[data-anomalies='{series_id}'] tr[data-anomaly]").first).to_be_visible()
    listed = page.request.get(f"{app_server}/api/v1/anomalies/?series={series_id}").json()
    assert listed["count"] > 0 and all(a["symbol"] == "SPY" for a in listed["results"])
    assert time.monotonic() - started < 60
    shots(page, "series-with-anomalies")

    # The Anomalies page, from the main navigation, lists them; the opening bar's is at 09:30:00.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Anomalies").click()
    expect(page.locator("tbody[data-anomalies] tr[data-anomaly]").first).to_be_visible()
    expect(page.locator("tbody[data-anomalies]")).to_contain_text("SPY")
    shots(page, "anomalies")
    page.get_by_label("Series").select_option(label="SPY")
    page.get_by_label("From").fill("2023-08-03T09:30:00-04:00")
    page.get_by_label("Until").fill("2023-08-03T09:31:00-04:00")
    page.get_by_role("button", name="Filter").click()
    opening = page.locator("tbody[data-anomalies] tr[data-anomaly]")
    expect(opening).to_have_count(1)
    expect(opening).to_contain_text("2023-08-03 09:30:00")
    expect(opening).to_contain_text("volume 764,109 met volume > 500000")
    shots(page, "anomalies-filtered")
    filtered_url = page.url

    # Its own page: the chart around it and one sentence.
    opening.get_by_role("link", name="2023-08-03 09:30:00").click()
    expect(page.get_by_role("heading", name="Anomaly on SPY")).to_be_visible()
    expect(page.locator("#explanation")).to_have_text("volume 764,109 met volume > 500000.")
    page.wait_for_function("Number(document.getElementById('anomaly-chart').dataset.bars || 0) > 100")
    assert page.locator("#anomaly-chart").get_attribute("data-focus")
    expect(page.get_by_text("Time (exchange time, America/New_York)")).to_be_visible()
    shots(page, "anomaly")
    anomaly_url = page.url
    return [path.replace(app_server, "") for path in (
        "/", series_url, "/rules/new/", "/rules/", filtered_url, "/anomalies/", anomaly_url, "/detectors/",
        "/alerts/", "/alerts/new/", "/alerts/webhooks/", "/alerts/deliveries/", "/watchlists/new/",
        "/settings/members/", "/settings/api-keys/", "/settings/time-zone/", "/orgs/new/")]


def _every_page_at_two_widths(context, app_server, pages, shots):
    """A screenshot of every page at 1366 px and at a phone's 390 px; nothing scrolls sideways."""
    for name, size in (("1366px", WIDE), ("390px", NARROW)):
        page = context.new_page()
        page.set_viewport_size(size)
        for path in pages:
            page.goto(f"{app_server}{path}")
            page.wait_for_load_state("load")
            slug = re.sub(r"[^a-z0-9]+", "-", path.split("?")[0].strip("/")) or "home"
            shots(page, f"{slug}-{name}")
            fits = page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")
            assert fits, f"{path} scrolls sideways at {name}"
        page.close()


def test_api_docs_render_their_operations_with_the_network_off(app_server, browser, shots):
    """Swagger UI comes from our own static files (drf-spectacular-sidecar), not a CDN: with every
    request to anything but this server refused, the docs still list the operations."""
    context = browser.new_context(viewport=WIDE)
    outside = []

    def only_this_server(route):
        if route.request.url.startswith(app_server):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_this_server)
    page = context.new_page()
    page.goto(f"{app_server}/api/v1/docs/")
    expect(page.locator(".opblock").first).to_be_visible(timeout=30_000)
    assert page.locator(".opblock").count() > 50
    expect(page.locator(".opblock-summary-path", has_text="/api/v1/history-runs/").first).to_be_visible()
    shots(page, "api-docs-offline")
    assert outside == [], outside
    context.close()
