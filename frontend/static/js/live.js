// Live updates over /ws/v1/live/ (protocol in docs/live-feed.md). Pages opt in with
// data-live-series="1,2,3" on <body>; elements with data-last="<series id>" show the last price,
// a table body with data-anomalies="<series id>" receives new anomaly rows, and every event is
// re-dispatched as an "ah:live" DOM event (the series chart listens).
(function () {
  "use strict";
  const ids = (document.body.dataset.liveSeries || "").split(",").filter(Boolean).map(Number);
  if (!ids.length || !window.WebSocket) return;
  const status = document.getElementById("live-status");
  function setStatus(text, ok) {
    if (!status) return;
    status.textContent = text;
    status.className = ok ? "live on" : "live off";
  }

  function sparkPath(values, width, height, pad = 2) {  // as frontend/charts.py line_path draws it
    if (values.length < 2) return "";
    const lo = Math.min(...values), span = (Math.max(...values) - lo) || 1;
    return values.map((v, i) => `${i ? "L" : "M"}${(pad + i * (width - 2 * pad) / (values.length - 1)).toFixed(1)},`
      + `${(height - pad - (v - lo) / span * (height - 2 * pad)).toFixed(1)}`).join(" ");
  }

  function onPoints(event) {
    const col = event.columns.indexOf(event.type === "tick" ? "price" : event.type === "bar" ? "close" : "value");
    const last = event.points[event.points.length - 1];
    document.querySelectorAll(`[data-last="${event.series}"]`).forEach((el) => {
      el.textContent = last[col].toFixed(2);
      el.classList.add("flash");
      setTimeout(() => el.classList.remove("flash"), 400);
    });
    document.querySelectorAll(`svg[data-spark="${event.series}"]`).forEach((svg) => {
      const values = (svg.dataset.values ? svg.dataset.values.split(",").map(Number) : []);
      values.push(last[col]);
      const kept = values.slice(-160);
      svg.dataset.values = kept.join(",");
      svg.querySelector("path").setAttribute("d", sparkPath(kept, 160, 36));
    });
    document.querySelectorAll(`[data-change="${event.series}"]`).forEach((el) => {
      const base = Number(el.dataset.base);  // the first close of the row's 24 hours
      if (!base) return;
      const pct = (last[col] / base - 1) * 100;
      el.textContent = `${pct.toFixed(2)}%`;
      el.className = pct < 0 ? "down" : "up";
    });
  }

  // Times on the series' clock (exchange time for market series), as the server renders them.
  const MAX_LIVE_ROWS = 100;
  const zones = JSON.parse(document.getElementById("live-zones")?.textContent || "{}");
  const tableZone = document.body.dataset.zone || "UTC";
  const formats = new Map();  // one formatter per zone: building one costs more than formatting
  function clock(iso, zone) {
    const d = new Date(iso);
    zone = zone || "UTC";
    if (!formats.has(zone)) {
      formats.set(zone, new Intl.DateTimeFormat("en-CA", { timeZone: zone, hourCycle: "h23", year: "numeric",
        month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" }));
    }
    const p = Object.fromEntries(formats.get(zone).formatToParts(d).map((x) => [x.type, x.value]));
    return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second}`;
  }

  function feedbackForm(tbody, event) {  // the same one-click labels as the server-rendered rows
    if (!tbody.dataset.canChange) return "—";
    const form = document.createElement("form");
    form.method = "post";
    form.action = `/anomalies/${event.id}/feedback/`;
    form.className = "actions feedback";
    const hidden = (name, value) => {
      const input = document.createElement("input");
      Object.assign(input, { type: "hidden", name, value });
      form.appendChild(input);
    };
    hidden("csrfmiddlewaretoken", tbody.dataset.csrf || "");
    hidden("next", location.pathname + location.search);
    for (const [value, label, what] of [["confirmed", "Confirm", "Confirm"], ["false_alarm", "False alarm", "Mark a false alarm:"]]) {
      const button = document.createElement("button");
      Object.assign(button, { type: "submit", name: "label", value, className: "secondary", textContent: label });
      button.setAttribute("aria-label", `${what} the anomaly at ${event.ts}`);
      form.appendChild(button);
    }
    return form;
  }

  function wanted(tbody, event) {
    const severity = tbody.dataset.severity, source = tbody.dataset.source;
    if (severity && event.severity !== severity) return false;
    if (source && !(source.includes(":") ? event.source === source : event.source.startsWith(source + ":"))) return false;
    return true;
  }

  function onAnomaly(event) {
    const tables = [...document.querySelectorAll(`[data-anomalies="${event.series}"], [data-anomalies="*"]`)];
    tables.forEach((tbody) => {
      if (!wanted(tbody, event) || tbody.querySelector(`tr[data-anomaly="${event.id}"]`)) return;
      const empty = tbody.querySelector(".empty");
      if (empty) empty.remove();
      const row = document.createElement("tr");
      row.className = "new";
      row.dataset.anomaly = event.id;
      const link = document.createElement("a");
      link.href = `/anomalies/${event.id}/`;
      link.textContent = clock(event.ts, zones[event.series] || tableZone);
      const badge = document.createElement("span");
      badge.className = `badge ${event.severity}`;
      badge.textContent = event.severity;
      const symbol = document.createElement("a");
      symbol.href = `/series/${event.series}/`;
      symbol.textContent = event.symbol || `series ${event.series}`;
      const cells = tbody.dataset.columns
        ? [symbol, link, event.text, event.explanation || "", badge, feedbackForm(tbody, event)]
        : [link, event.explanation || event.text, badge, feedbackForm(tbody, event)];
      for (const content of cells) {
        const cell = document.createElement("td");
        cell.append(content);
        row.appendChild(cell);
      }
      tbody.prepend(row);
      // A live table keeps its newest rows; older ones are a page away (the Anomalies page).
      while (tbody.children.length > MAX_LIVE_ROWS) tbody.lastElementChild.remove();
    });
    document.querySelectorAll(`[data-anomaly-count="${event.series}"]`).forEach((el) => {
      el.textContent = String(Number(el.textContent || 0) + 1);
    });
  }

  let retry = 1000;
  function connect() {
    const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/v1/live/");
    ws.onmessage = (msg) => {
      const event = JSON.parse(msg.data);
      document.dispatchEvent(new CustomEvent("ah:live", { detail: event }));
      if (event.type === "welcome") ws.send(JSON.stringify({ action: "subscribe", series: ids }));
      else if (event.type === "subscribed") { setStatus("● live", true); retry = 1000; }
      else if (event.type === "tick" || event.type === "bar" || event.type === "metric") onPoints(event);
      else if (event.type === "anomaly") onAnomaly(event);
      else if (event.type === "error") setStatus("live feed: " + event.message, false);
    };
    ws.onclose = () => {  // reconnect with backoff; a gap is re-synced by reloading the page
      setStatus("reconnecting…", false);
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 30000);
    };
  }
  connect();
})();
