// The rule editor validates the metrics as you type (the server compiles them) and puts a caret
// under the error's position.
(function () {
  "use strict";
  const form = document.getElementById("rule-form");
  if (!form) return;
  const out = document.getElementById("rule-errors");
  const metrics = form.elements.metrics;
  metrics.setAttribute("aria-describedby", "rule-errors");
  let timer = null, seq = 0;

  async function validate() {
    const mine = ++seq;
    const body = new FormData(form);
    const response = await fetch(form.dataset.validateUrl, { method: "POST", body });
    if (!response.ok || mine !== seq) return;
    const result = await response.json();
    out.className = result.ok ? "rule-errors ok" : "rule-errors";
    if (result.ok) { out.textContent = "✓ valid"; metrics.removeAttribute("aria-invalid"); return; }
    metrics.setAttribute("aria-invalid", "true");
    const first = result.errors[0] || { message: result.message };
    out.textContent = first.position != null
      // The API's 0-based offset, in the API's words, so the page and the API never disagree.
      ? (/position \d+/.test(first.message) ? first.message : `${first.message} (position ${first.position})`)
      : (first.message || result.message);
    if (first.position != null && document.activeElement !== metrics) {
      metrics.setSelectionRange(first.position, first.position + 1);
    }
  }
  form.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(validate, 250); });
  if (metrics.value) validate();
})();

// The backtest preview: what the unsaved rule would have found, drawn on the target's chart.
(function () {
  "use strict";
  const form = document.getElementById("rule-form");
  const button = document.getElementById("preview-button");
  if (!form || !button) return;
  const summary = document.getElementById("preview-summary");
  const el = document.getElementById("preview-chart");
  let drawn = null;

  button.addEventListener("click", async () => {
    button.disabled = true;
    summary.textContent = "Running the rule over the latest day…";
    try {
      const response = await fetch(form.dataset.previewUrl, { method: "POST", body: new FormData(form) });
      const result = await response.json();
      if (!result.ok) { summary.textContent = result.message; return; }
      el.hidden = false;
      if (drawn) drawn.chart.remove();
      drawn = window.ahDrawChart(el, result.chart);
      summary.textContent = `${result.count.toLocaleString()} anomalies in ${result.rows.toLocaleString()} points of `
        + `${result.symbol}'s latest day${result.truncated ? " (list truncated)" : ""}. Nothing is saved until you save the rule.`;
    } catch (_) {
      summary.textContent = "The preview failed; check the connection and try again.";
    } finally {
      button.disabled = false;
    }
  });
})();
