"""The series chart shades bars outside the regular session and marks each session's first bar:
the site's chart script and the built chart library in Chromium, on chart data shaped as the
series page embeds it (no server needed)."""

import json
from pathlib import Path

STATIC = Path(__file__).resolve().parents[2] / "frontend" / "static"
DAY = 86400


def _page(data: dict) -> str:
    return f"""<!doctype html><html><body><div id="chart" style="width:800px;height:360px"></div>
<script id="chart-data" type="application/json">{json.dumps(data)}</script>
<script>{(STATIC / "dist" / "lightweight-charts.js").read_text()}</script>
<script>{(STATIC / "js" / "series_chart.js").read_text()}</script></body></html>"""


def test_extended_hours_are_shaded_and_session_breaks_marked(browser):
    # Two days on the exchange's clock: 08:00 pre-market, 09:30-09:32 regular, 16:30 after-hours; then 09:30-09:31.
    day1, day2 = 1691020800, 1691020800 + DAY  # 2023-08-03 and -04, 00:00 on the chart's clock
    times = [day1 + 8 * 3600, *(day1 + 9 * 3600 + 1800 + 60 * i for i in range(3)), day1 + 16 * 3600 + 1800,
             day2 + 9 * 3600 + 1800, day2 + 9 * 3600 + 1860]
    session = [0, 1, 1, 1, 0, 1, 1]
    data = {"series": 1, "kind": "bar", "resolution": "1m", "tz": "America/New_York", "shifted": True,
            "bars": {"time": times, "close": [1.0 + i for i in range(len(times))], "session": session},
            "anomalies": []}
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_content(_page(data))
    page.wait_for_function("document.getElementById('chart').dataset.bars === '7'")
    chart = page.locator("#chart")
    # Two grey bars; breaks at 09:30 after the pre-market bar and at the next day's 09:30.
    assert chart.get_attribute("data-off-session") == "2" and chart.get_attribute("data-session-breaks") == "2"

    del data["bars"]["session"]  # a series without an exchange: nothing shaded
    page.set_content(_page(data))
    page.wait_for_function("document.getElementById('chart').dataset.bars === '7'")
    assert page.locator("#chart").get_attribute("data-off-session") is None
    assert not errors, errors
    page.close()
