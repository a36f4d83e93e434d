"""A table wider than a phone says it scrolls: the site's own CSS and script on a page in Chromium,
no server needed (the page is the dashboard's series table markup)."""

from pathlib import Path

STATIC = Path(__file__).resolve().parents[2] / "frontend" / "static"
ROWS = "".join(f"<tr><td>SYM{i}</td><td>{i}.00</td><td>+0.{i}%</td><td>{i}</td><td>2023-08-03 16:00 ET</td>"
               f"<td><svg width='160' height='36'></svg></td></tr>" for i in range(5))
PAGE = f"""<!doctype html><html><head><meta name="viewport" content="width=device-width,initial-scale=1">
<style>{(STATIC / "css" / "app.css").read_text()}</style></head><body><main><section class="card">
<div class="scroll" tabindex="0"><table><thead><tr><th>Symbol</th><th>Last</th><th>Change (24h)</th>
<th>Anomalies, latest session</th><th>Last point</th><th>Latest day</th></tr></thead><tbody>{ROWS}</tbody></table></div>
</section></main><script>{(STATIC / "js" / "scroll_hint.js").read_text()}</script></body></html>"""


def _state(page):
    return page.evaluate("""() => { const box = document.querySelector('.scroll');
        const hint = document.querySelector('.scroll-hint');
        return {hint: !!hint && hint.offsetParent !== null && hint.textContent,
                fade: getComputedStyle(box).maskImage || getComputedStyle(box).webkitMaskImage}; }""")


def test_wide_table_shows_a_scroll_hint_on_a_phone_and_none_when_it_fits(browser):
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.set_content(PAGE)
    state = _state(page)
    assert state["hint"] == "scroll →" and "gradient" in state["fade"], state

    page.evaluate("document.querySelector('.scroll').scrollLeft = 10000")
    page.wait_for_function("document.querySelector('.scroll').classList.contains('at-end')")
    assert "gradient" not in _state(page)["fade"]  # at the right end nothing is hidden any more

    page.set_viewport_size({"width": 1366, "height": 900})  # wide enough: no hint, no fade
    page.wait_for_function("!document.querySelector('.scroll').classList.contains('overflows')")
    state = _state(page)
    assert state["hint"] is False and "gradient" not in state["fade"], state
    page.close()
