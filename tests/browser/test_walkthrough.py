"""Done-when walk of issue 9 in a real browser: sign up -> verify -> organization -> watchlist ->
replay -> live chart with an anomaly marker -> false positive -> email subscription -> the email."""

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.django_db(transaction=True)

EMAIL = "walker@example.com"
PASSWORD = "a-long-walk-password-9"
# SPY prints of 10,000 shares or more: the first seconds after the 2013-10-07 open, then about one
# every 1-2 s of wall time at 60x (measured on the demo file), so the walk never waits long.
RULE = "size >= 10000"
WAIT_MS = 45_000  # generous: a loaded 2-core machine runs the server, detection and Chromium at once
NARROW = {"width": 390, "height": 844}


def _fits(page) -> bool:
    return page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")


CONTROLS = "a[href], input:not([type=hidden]), select, textarea, button"


def assert_keyboard_reaches_every_control(page) -> None:
    """Tabs through the whole page and names any control (link, field, button) never focused.
    Disclosures (the organization menu) are opened the keyboard way first: Enter on their summary."""
    closed = page.evaluate("[...document.querySelectorAll('details')].flatMap((d, i) => (d.open ? [] : [i]))")
    opened = [page.locator("details > summary").nth(i) for i in closed]
    for summary in opened:
        summary.focus()
        page.keyboard.press("Enter")
    page.evaluate("document.addEventListener('focusin', (e) => { e.target.dataset.tabbed = '1'; })")
    # Only the controls present now: live rows arriving meanwhile would outrun the count.
    total = page.evaluate(f"[...document.querySelectorAll('{CONTROLS}')].map((e) => e.dataset.tabcheck = '1').length")
    page.locator("body").focus()
    unreached = ("[...document.querySelectorAll('[data-tabcheck]')].filter((e) => !e.dataset.tabbed)"
                 ".map((e) => e.outerHTML.slice(0, 100))")
    for presses in range(1, 2 * total + 10):  # rows inserted live ahead of the focus add presses
        page.keyboard.press("Tab")
        if presses >= total and presses % 5 == 0 and not page.evaluate(unreached):
            break
    missing = page.evaluate(unreached)
    for summary in opened:  # and closed again, the keyboard way
        summary.focus()
        page.keyboard.press("Enter")
    assert not missing, f"{page.url}: not reachable by keyboard: {missing}"


def test_sign_up_watch_replay_label_and_get_alerted(app_server, browser, outbox, shots):
    mail, _ = outbox
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT_MS)
    expect.set_options(timeout=WAIT_MS)  # assertions too, not only actions (their default is 5 s)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        _walk(app_server, context, page, mail, shots)
    except Exception:
        shots(page, "failure")
        raise
    assert not errors, errors
    context.close()


def _walk(app_server, context, page, mail, shots):

    # Sign up, then verify through the link in the email SendGrid was asked to send.
    page.goto(f"{app_server}/accounts/signup/")
    assert_keyboard_reaches_every_control(page)
    page.get_by_label("Email:", exact=True).fill(EMAIL)
    page.get_by_label("Password:", exact=True).fill(PASSWORD)
    page.get_by_label("Password (again):", exact=True).fill(PASSWORD)
    shots(page, "signup")
    page.get_by_role("button", name=re.compile("Sign Up", re.I)).click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    shots(page, "verification-sent")
    confirm = mail.wait_for(lambda m: EMAIL in m["to"] and "confirm-email" in m["text"])
    link = re.search(r"https?://\S+/accounts/confirm-email/\S+/", confirm["text"]).group(0)
    page.goto(link)
    shots(page, "confirm-email")
    page.get_by_role("button", name=re.compile("Confirm", re.I)).click()
    if "/accounts/login/" in page.url:
        page.get_by_label("Email:", exact=True).fill(EMAIL)
        page.get_by_label("Password:", exact=True).fill(PASSWORD)
        page.get_by_role("button", name=re.compile("Sign In", re.I)).click()

    # A new user is asked for an organization first.
    expect(page.get_by_role("heading", name="Create an organization")).to_be_visible()
    page.get_by_label("Organization name").fill("Walkers Capital")
    shots(page, "organization")
    page.get_by_role("button", name="Create organization").click()
    expect(page.get_by_role("heading", name="Nothing to watch yet")).to_be_visible()
    shots(page, "empty-home")

    # A watchlist with one symbol (created as a new tick series on NYSE).
    page.get_by_role("link", name="Create your first watchlist").click()
    assert_keyboard_reaches_every_control(page)
    page.get_by_label("Watchlist name").fill("Index ETFs")
    page.get_by_label("Symbols").fill("SPY")
    page.get_by_label("Kind of new series").select_option("trade")
    shots(page, "watchlist-form")
    page.get_by_role("button", name="Create watchlist").click()
    expect(page.get_by_role("heading", name="Index ETFs")).to_be_visible()
    shots(page, "watchlist")
    watchlist_url = page.url
    page.get_by_role("link", name="SPY", exact=True).click()
    series_url = page.url

    # A rule that fires within seconds of the replay starting; the editor validates as you type.
    page.get_by_role("link", name="Add a rule").first.click()
    page.get_by_label("Rule name").fill("Block prints")
    page.get_by_label("Metrics").fill("size >>")
    expect(page.locator("#rule-errors")).not_to_have_text("")
    expect(page.locator("#rule-errors")).not_to_have_text("✓ valid")
    page.get_by_label("Metrics").fill(RULE)
    expect(page.locator("#rule-errors")).to_have_text("✓ valid")
    page.get_by_label("Severity").select_option("high")
    shots(page, "rule-editor")
    page.get_by_role("button", name="Save rule").click()
    assert page.url == series_url
    assert_keyboard_reaches_every_control(page)

    # Replay the demo's SPY ticks; the chart draws them live and marks the first anomaly.
    page.get_by_label("Speed").select_option("60")
    page.get_by_role("button", name="Start replay").click()
    chart = page.locator("#chart")
    # Points are stored at wall-clock times, so they fold into the current 1-minute bar.
    page.wait_for_function("Number(document.getElementById('chart').dataset.points || 0) >= 100", timeout=WAIT_MS)
    assert int(chart.get_attribute("data-bars")) >= 1
    expect(page.locator("#no-data")).to_have_count(0)  # the empty-state hint goes once data flows
    page.wait_for_function("Number(document.getElementById('chart').dataset.markers || 0) >= 1", timeout=WAIT_MS)
    expect(page.locator("#replay-status")).to_have_attribute("data-state", "running")
    expect(page.locator("#live-status")).to_have_text("● live")
    assert chart.locator("canvas").count() > 0
    # Hovering the anomaly's bar shows its rule text in a tooltip.
    box = chart.bounding_box()
    x = page.evaluate("(() => { const c = document.getElementById('chart').ahChart;"
                      " return c.chart.timeScale().timeToCoordinate(c.marks[0].time); })()")
    page.mouse.move(box["x"] + x, box["y"] + box["height"] / 2)
    expect(page.locator(".chart-tip")).to_contain_text(f"high: {RULE}")
    shots(page, "series-live")

    # Open the anomaly from the live list and mark it a false positive.
    # By keyboard: new rows keep arriving on top, so the links never hold still for a mouse click.
    page.locator("tbody[data-anomalies] a").first.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=re.compile("Anomaly on SPY"))).to_be_visible()
    expect(page.locator("code", has_text=RULE)).to_be_visible()
    shots(page, "anomaly")
    assert_keyboard_reaches_every_control(page)
    page.get_by_role("button", name="False Alarm").click()
    expect(page.locator("#feedback")).to_contain_text("False Alarm")
    shots(page, "anomaly-false-positive")

    # The rule editor's backtest preview draws what the rule finds in the data stored so far.
    page.get_by_role("link", name="Block prints").click()
    page.get_by_role("button", name="Preview on the latest day").click()
    page.wait_for_function("Number(document.getElementById('preview-chart').dataset.markers || 0) >= 1")
    expect(page.locator("#preview-summary")).to_contain_text("anomalies in")
    shots(page, "rule-preview")

    # Subscribe by email to the series; the next anomaly of the running replay sends one.
    page.get_by_role("link", name="Alerts").click()
    page.get_by_role("link", name="Create a subscription").click()
    assert_keyboard_reaches_every_control(page)
    page.get_by_label("Name").fill("SPY blocks")
    page.get_by_label("Alert me about").select_option(label="Series SPY")
    expect(page.get_by_label("By email")).to_be_checked()
    shots(page, "subscription-form")
    page.get_by_role("button", name="Save subscription").click()
    expect(page.get_by_role("link", name="SPY blocks")).to_be_visible()
    shots(page, "subscriptions")
    alert = mail.wait_for(lambda m: EMAIL in m["to"] and "confirm-email" not in m["text"], timeout=60)
    assert "SPY" in alert["subject"] + alert["text"]

    page.get_by_role("link", name="Delivery log").click()
    expect(page.locator("tr[data-notification] .badge.sent").first).to_be_visible()
    shots(page, "delivery-log")

    # A CSV import from the series page, with the REST ingest's own validation messages.
    page.goto(series_url)
    page.get_by_label("CSV file").set_input_files(files=[{"name": "bad.csv", "mimeType": "text/csv",
                                                         "buffer": b"timestamp,price,size\n2013-10-04T10:00:00Z,x,1\n"}])
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#import-status")).to_contain_text("Rejected")
    page.get_by_label("CSV file").set_input_files(files=[{"name": "spy.csv", "mimeType": "text/csv", "buffer": (
        b"timestamp,price,size\n2013-10-04T10:00:00Z,168.1,100\n2013-10-04T10:00:01Z,168.2,200\n")}])
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#import-status")).to_contain_text("Stored 2 of 2 points")
    shots(page, "csv-import")

    # The watchlist's row follows the replay live: last price, change and today's anomaly count.
    page.goto(watchlist_url)
    count = page.locator("[data-anomaly-count]")
    before = int(count.inner_text())
    assert before >= 1
    page.wait_for_function(f"Number(document.querySelector('[data-anomaly-count]').textContent) > {before}")
    expect(page.locator("[data-change]")).to_have_text(re.compile(r"^-?\d+\.\d\d%$"))
    expect(page.locator("svg[data-spark] path")).to_have_attribute("d", re.compile(r"^M.+L"))
    shots(page, "watchlist-live")

    # The same pages at a phone's width: nothing scrolls sideways.
    narrow = context.new_page()
    narrow.set_viewport_size(NARROW)
    for path in ("/", page.url.replace(app_server, ""), series_url.replace(app_server, ""), "/rules/", "/alerts/",
                 "/alerts/new/", "/alerts/webhooks/", "/alerts/deliveries/", "/detectors/", "/settings/members/",
                 "/settings/api-keys/"):
        narrow.goto(f"{app_server}{path}")
        assert _fits(narrow), f"{path} overflows at 390 px"
        if path != series_url.replace(app_server, ""):  # its live rows were checked at 1280 px, before they came
            assert_keyboard_reaches_every_control(narrow)
    narrow.goto(series_url)
    shots(narrow, "series-390px")
    page.goto(series_url)
    page.get_by_role("button", name="Stop").click()
    expect(page.locator("#replay-status")).to_have_attribute("data-state", "done")
