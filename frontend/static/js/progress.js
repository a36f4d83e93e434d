// The replay card's progress bar: polls the replay's state (JSON) while one is loading or running.
(function () {
  "use strict";
  const form = document.getElementById("replay-form");
  const status = document.getElementById("replay-status");
  if (!form || !status) return;
  const bar = document.getElementById("replay-progress");
  const text = document.getElementById("replay-text");

  function show(p) {
    status.dataset.state = p.state;
    bar.max = Math.max(p.total || 0, 1);
    bar.value = p.sent || 0;
    text.textContent = p.state === "idle" ? "No replay running."
      : p.state === "loading" ? `Loading ${p.file || "the file"}…`
      : p.state === "failed" ? `Failed: ${p.error}`
      : `${p.state}: ${p.sent.toLocaleString()} of ${p.total.toLocaleString()} points`;
  }

  async function poll() {
    try {
      const response = await fetch(form.dataset.statusUrl, { headers: { Accept: "application/json" } });
      if (response.ok) show(await response.json());
    } catch (_) { /* network blip: try again on the next tick */ }
    if (status.dataset.state === "loading" || status.dataset.state === "running") setTimeout(poll, 1000);
  }
  if (status.dataset.state === "loading" || status.dataset.state === "running") poll();
})();

// Long-running jobs shown as <progress data-poll-url>: training runs. Reloads the page when done.
(function () {
  "use strict";
  document.querySelectorAll("progress[data-poll-url]").forEach((bar) => {
    async function poll() {
      try {
        const response = await fetch(bar.dataset.pollUrl, { headers: { Accept: "application/json" } });
        if (response.ok) {
          const run = await response.json();
          bar.value = run.progress;
          bar.title = run.message;
          if (run.status !== "queued" && run.status !== "running") { location.reload(); return; }
        }
      } catch (_) { /* try again on the next tick */ }
      setTimeout(poll, 2000);
    }
    setTimeout(poll, 2000);
  });
})();
