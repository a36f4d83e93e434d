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

// Background jobs that need no reload (history runs): <progress data-job-url> polls the job's REST
// resource, fills the bar and its [data-job-text] sibling; the anomalies it finds arrive live.
(function () {
  "use strict";
  document.querySelectorAll("progress[data-job-url]").forEach((bar) => {
    const text = bar.parentElement.querySelector("[data-job-text]");
    async function poll() {
      try {
        const response = await fetch(bar.dataset.jobUrl, { headers: { Accept: "application/json" } });
        if (response.ok) {
          const job = await response.json();
          bar.value = job.progress;
          bar.dataset.status = job.status;
          if (text) {
            text.textContent = job.status === "succeeded"
              ? `done: ${job.anomalies_found.toLocaleString()} anomalies in ${job.points_done.toLocaleString()} points`
              : job.status === "queued" ? "queued…"
              : job.status === "running" ? `${Math.round(job.progress * 100)} %: ${job.points_done.toLocaleString()} of `
                + `${job.points_total.toLocaleString()} points, ${job.anomalies_found.toLocaleString()} anomalies so far`
              : `${job.status}: ${job.message}`;
          }
          // Anomalies found before this page subscribed to the live feed never reach it as
          // events: redraw the chart and the table from the server as the job finds more.
          if (job.anomalies_found > Number(bar.dataset.found || 0)) {
            bar.dataset.found = String(job.anomalies_found);
            document.dispatchEvent(new CustomEvent("ah:refresh"));
          }
          if (job.status !== "queued" && job.status !== "running") return;
        }
      } catch (_) { /* try again on the next tick */ }
      setTimeout(poll, 1000);
    }
    poll();
  });
})();

// The series page's anomaly table, re-read from the server on "ah:refresh" (its rows, as rendered).
(function () {
  "use strict";
  const tbody = document.querySelector("tbody[data-anomalies]");
  if (!tbody) return;
  document.addEventListener("ah:refresh", async () => {
    try {
      const response = await fetch(location.href, { headers: { Accept: "text/html" } });
      if (!response.ok) return;
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html")
        .querySelector(`tbody[data-anomalies="${tbody.dataset.anomalies}"]`);
      if (fresh) tbody.replaceChildren(...fresh.children);
    } catch (_) { /* the next refresh or a reload shows them */ }
  });
})();
