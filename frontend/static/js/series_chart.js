// Series charts (lightweight-charts): bars from embedded data, anomaly markers coloured by
// severity. The series page's #chart also follows live updates from live.js ("ah:live" events);
// the rule editor and the anomaly page draw with the same window.ahDrawChart.
//
// Times: the chart library has no time zones, so times are shifted to the series' clock (data.tz:
// the exchange's zone for market series, UTC otherwise) before drawing; the server shifts the page's
// data (data.shifted), live events are shifted here. Markers: a small dot per anomaly, coloured by
// severity and without text; anomalies closer than a few pixels merge into one dot with their count.
// Hovering shows the details, clicking opens the anomaly. The price scale fits the 1st-99th
// percentile of the data, so one bad print does not flatten the chart (it is drawn off-scale).
(function () {
  "use strict";
  const LC = window.LightweightCharts;
  if (!LC) return;
  const colours = { low: "#7a8699", medium: "#f0a020", high: "#d64545", critical: "#8b0000" };
  const rank = { low: 0, medium: 1, high: 2, critical: 3 };
  const CLUSTER_PX = 8;

  function zoneShift(zone) {
    if (!zone || zone === "UTC") return (t) => t;
    const fmt = new Intl.DateTimeFormat("en-US", { timeZone: zone, hourCycle: "h23", year: "numeric", month: "2-digit",
                                                   day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" });
    const exact = (t) => {
      const p = Object.fromEntries(fmt.formatToParts(new Date(t * 1000)).map((x) => [x.type, x.value]));
      return Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second) / 1000;
    };
    // formatToParts is slow (tens of µs) and live ticks come by the thousand: one offset per hour
    // (zones change offset on the hour).
    const offsets = new Map();
    return (t) => {
      const hour = Math.floor(t / 3600);
      let offset = offsets.get(hour);
      if (offset === undefined) {
        offset = exact(hour * 3600) - hour * 3600;
        if (offsets.size > 10000) offsets.clear();
        offsets.set(hour, offset);
      }
      return t + offset;
    };
  }

  function quantile(sorted, q) {
    if (!sorted.length) return null;
    const i = (sorted.length - 1) * q, lo = Math.floor(i);
    return sorted[lo] + (sorted[Math.min(lo + 1, sorted.length - 1)] - sorted[lo]) * (i - lo);
  }

  // The price range to show: the whole data unless a few prints lie far outside its 1st-99th percentiles.
  function robustRange(values) {
    const sorted = values.filter((v) => v !== null && Number.isFinite(v)).sort((a, b) => a - b);
    if (sorted.length < 20) return null;
    const lo = quantile(sorted, 0.01), hi = quantile(sorted, 0.99), span = (hi - lo) || Math.abs(hi) * 0.01 || 1;
    const min = sorted[0], max = sorted[sorted.length - 1];
    if (min >= lo - span && max <= hi + span) return null;  // no outlier: the library's own fit
    return { minValue: Math.max(min, lo - span * 0.1), maxValue: Math.min(max, hi + span * 0.1) };
  }

  // Market series (data.bars.session: 1 = regular session, 0 = outside it): bars outside the regular
  // session (extended hours, only from uploads) are shaded grey, and the first bar of each session gets
  // a blue column, since the chart closes the overnight gap and days would otherwise run together.
  // Drawn as a histogram on its own hidden 0-1 scale behind the prices.
  function shadeSessions(chart, bars, el) {
    const flags = bars.session;
    if (!flags || !flags.length) return;
    const shade = chart.addSeries(LC.HistogramSeries, {
      priceScaleId: "sessions", lastValueVisible: false, priceLineVisible: false, base: 0,
      autoscaleInfoProvider: () => ({ priceRange: { minValue: 0, maxValue: 1 } }),
    });
    chart.priceScale("sessions").applyOptions({ visible: false, scaleMargins: { top: 0, bottom: 0 } });
    let off = 0, breaks = 0;
    const points = bars.time.map((t, i) => {
      if (!flags[i]) { off += 1; return { time: t, value: 1, color: "rgba(120, 130, 160, 0.16)" }; }
      const prev = i ? i - 1 : null;  // a new session: after off-session bars or on a new day
      if (prev !== null && (!flags[prev] || Math.floor(bars.time[prev] / 86400) !== Math.floor(t / 86400))) {
        breaks += 1;
        return { time: t, value: 1, color: "rgba(47, 91, 234, 0.28)" };
      }
      return { time: t };  // whitespace: nothing drawn
    });
    shade.setData(points);
    el.dataset.offSession = String(off);
    el.dataset.sessionBreaks = String(breaks);
  }

  function drawChart(el, data) {
    const step = { "1m": 60, "5m": 300, "1h": 3600, "1d": 86400 }[data.resolution] || 60;
    const shift = zoneShift(data.tz);
    const chart = LC.createChart(el, {
      height: 360, layout: { textColor: "#1d2330", background: { type: "solid", color: "#fbfcff" } },
      timeScale: { timeVisible: true, secondsVisible: false }, autoSize: true,
    });
    shadeSessions(chart, data.bars, el);  // first: drawn beneath the prices
    const candles = Boolean(data.bars.open);
    const allValues = candles ? [...data.bars.low, ...data.bars.high] : data.bars.close;
    const range = robustRange(allValues);
    const scale = range ? { autoscaleInfoProvider: () => ({ priceRange: range }) } : {};
    const series = candles ? chart.addSeries(LC.CandlestickSeries, scale)
      : chart.addSeries(LC.LineSeries, { lineWidth: 2, ...scale });
    const bars = data.bars.time.map((t, i) => candles
      ? { time: t, open: data.bars.open[i], high: data.bars.high[i], low: data.bars.low[i], close: data.bars.close[i] }
      : { time: t, value: data.bars.close[i] }).filter((b) => (candles ? b.close : b.value) !== null);
    series.setData(bars);
    el.dataset.outliers = range ? "clipped" : "";
    const toMark = (a, shifted) => ({ time: Math.floor((shifted ? a.time : shift(a.time)) / step) * step,
                                      id: a.id, severity: a.severity || "medium",
                                      tip: `${a.severity}: ${a.text}${a.score != null ? ` (score ${a.score.toFixed(2)})` : ""}`
                                        + (a.explanation && a.explanation !== a.text ? `\n${a.explanation}` : "") });
    const marks = data.anomalies.map((a) => toMark(a, data.shifted));
    const markers = LC.createSeriesMarkers(series, []);
    let clusters = [], clusteredAt = null;

    // Anomalies within CLUSTER_PX of each other at the current zoom become one dot with a count.
    // Scrolling (and live bars moving the view) keeps the zoom: only a new zoom or anomaly re-clusters.
    function cluster(force = true) {
      const spacing = chart.timeScale().options().barSpacing || 6;
      const width = Math.max(1, Math.ceil(CLUSTER_PX / spacing)) * step;
      if (!force && width === clusteredAt) return;
      clusteredAt = width;
      const byBucket = new Map();
      for (const m of marks) {
        const key = Math.floor(m.time / width) * width;
        if (!byBucket.has(key)) byBucket.set(key, []);
        byBucket.get(key).push(m);
      }
      clusters = [...byBucket.values()].map((group) => {
        const worst = group.reduce((a, b) => (rank[b.severity] > rank[a.severity] ? b : a));
        return { time: group[0].time, group, marker: {
          time: group[0].time, position: "aboveBar", shape: "circle", size: 0.6, color: colours[worst.severity],
          text: group.length > 1 ? String(group.length) : "", id: String(worst.id) } };
      }).sort((a, b) => a.time - b.time);
      markers.setMarkers(clusters.map((c) => c.marker));
      el.dataset.markers = String(marks.length);
      el.dataset.clusters = String(clusters.length);
    }
    const near = (time) => {
      if (time == null) return null;
      return clusters.find((c) => c.group.some((m) => m.time === time)) || null;
    };

    const tip = document.createElement("div");
    tip.className = "chart-tip";
    tip.setAttribute("role", "tooltip");
    tip.hidden = true;
    el.style.position = "relative";
    el.appendChild(tip);
    // The chart redraws (and calls this) on every live update: touch the DOM only when something
    // changed, or each write invalidates the page's layout again.
    const set = (target, key, value) => { if (target[key] !== value) target[key] = value; };
    chart.subscribeCrosshairMove((param) => {
      const here = near(param.time);
      set(tip, "hidden", !here || !param.point);
      set(el.style, "cursor", here ? "pointer" : "");
      if (tip.hidden) return;
      const group = here.group;
      set(tip, "textContent", group.slice(0, 5).map((m) => m.tip).join("\n") + (group.length > 5 ? `\n+${group.length - 5} more` : ""));
      set(tip.style, "left", `${Math.min(param.point.x + 12, el.clientWidth - 260)}px`);
      set(tip.style, "top", `${Math.max(param.point.y - 20, 0)}px`);
    });
    chart.subscribeClick((param) => {
      const here = near(param.time);
      if (here && here.group[0].id != null && typeof here.group[0].id === "number") {
        location.href = `/anomalies/${here.group[0].id}/`;
      }
    });
    chart.timeScale().subscribeVisibleLogicalRangeChange(() => cluster(false));
    chart.timeScale().fitContent();
    cluster();
    el.dataset.bars = String(bars.length);
    if (data.band) {  // the anomaly page: the detector's expected band at the anomaly
      const line = { color: "#2f6fde", lineWidth: 1, lineStyle: LC.LineStyle.Dashed, axisLabelVisible: true };
      series.createPriceLine({ ...line, price: data.band.lower, title: "expected low" });
      series.createPriceLine({ ...line, price: data.band.upper, title: "expected high" });
    }
    if (data.focus != null) {  // the anomaly page: centre on the anomaly
      const focus = marks.find((m) => m.id === data.focus);
      if (focus) {
        el.dataset.focus = String(focus.time);
        const t = bars.findIndex((b) => b.time >= focus.time);
        if (t >= 0) chart.timeScale().setVisibleLogicalRange({ from: Math.max(0, t - 60), to: t + 60 });
      }
    }
    const drawn = { chart, series, bars, candles, step, marks, shift,
                    addAnomaly(a) { marks.push(toMark(a, false)); cluster(); } };
    el.ahChart = drawn;  // for scripts and tests that need the chart's own coordinates
    return drawn;
  }
  window.ahDrawChart = drawChart;

  const el = document.getElementById("chart");
  const source = document.getElementById("chart-data");
  if (!el || !source) return;
  const data = JSON.parse(source.textContent);
  let drawn = drawChart(el, data);
  let { bars, candles, step, series } = drawn;

  // After a CSV import, or while a history run finds anomalies, the stored data changed under the
  // chart: fetch its data again and redraw.
  const redraw = async () => {
    const url = new URL(location.href);
    url.searchParams.set("format", "chart");
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    const fresh = await response.json();
    drawn.chart.remove();
    el.querySelector(".chart-tip")?.remove();
    drawn = drawChart(el, fresh);
    ({ bars, candles, step, series } = drawn);
    if (fresh.bars.time.length) document.getElementById("no-data")?.remove();
  };
  document.addEventListener("ah:imported", redraw);
  document.addEventListener("ah:refresh", redraw);

  document.addEventListener("ah:live", (e) => {
    const event = e.detail;
    if (event.series !== data.series) return;
    if (event.type === "anomaly") {
      drawn.addAnomaly({ time: Date.parse(event.ts) / 1000, id: event.id, text: event.text, severity: event.severity,
                         score: event.score, explanation: event.explanation });
      return;
    }
    const col = event.columns.indexOf(event.type === "tick" ? "price" : event.type === "bar" ? "close" : "value");
    for (const row of event.points) {  // fold each point into the bar of its bucket
      const time = Math.floor(drawn.shift(row[0] / 1000) / step) * step, v = row[col];
      const last = bars[bars.length - 1];
      if (last && last.time === time) {
        if (candles) { last.high = Math.max(last.high, v); last.low = Math.min(last.low, v); last.close = v; }
        else last.value = v;
      } else if (!last || time > last.time) {
        bars.push(candles ? { time, open: v, high: v, low: v, close: v } : { time, value: v });
      } else continue;  // older than the chart's last bar: the next page load shows it
      series.update(bars[bars.length - 1]);
    }
    el.dataset.bars = String(bars.length);
    document.getElementById("no-data")?.remove();
    el.dataset.points = String(Number(el.dataset.points || 0) + event.points.length);
  });
})();
