// Series charts (lightweight-charts): bars from embedded data, anomaly markers coloured by
// severity. The series page's #chart also follows live updates from live.js ("ah:live" events);
// the rule editor draws its backtest preview with the same window.ahDrawChart.
(function () {
  "use strict";
  const LC = window.LightweightCharts;
  if (!LC) return;
  const colours = { low: "#7a8699", medium: "#f0a020", high: "#d64545", critical: "#8b0000" };

  function drawChart(el, data) {
    const step = { "1m": 60, "5m": 300, "1h": 3600 }[data.resolution] || 60;
    const chart = LC.createChart(el, {
      height: 360, layout: { textColor: "#1d2330", background: { type: "solid", color: "#fbfcff" } },
      timeScale: { timeVisible: true, secondsVisible: false }, autoSize: true,
    });
    const candles = Boolean(data.bars.open);
    const series = candles ? chart.addSeries(LC.CandlestickSeries, {}) : chart.addSeries(LC.LineSeries, { lineWidth: 2 });
    const bars = data.bars.time.map((t, i) => candles
      ? { time: t, open: data.bars.open[i], high: data.bars.high[i], low: data.bars.low[i], close: data.bars.close[i] }
      : { time: t, value: data.bars.close[i] }).filter((b) => (candles ? b.close : b.value) !== null);
    series.setData(bars);
    const toMarker = (a) => ({ time: Math.floor(a.time / step) * step, position: "aboveBar", shape: "arrowDown",
                               color: colours[a.severity] || colours.medium, text: a.text.slice(0, 40), id: String(a.id),
                               tip: `${a.severity}: ${a.text}${a.score != null ? ` (score ${a.score.toFixed(3)})` : ""}` });
    const markers = LC.createSeriesMarkers(series, []);
    const marks = data.anomalies.map(toMarker);
    // Tooltip: the full rule text (or detector explanation and score) of the anomalies in the bar under the cursor.
    const tip = document.createElement("div");
    tip.className = "chart-tip";
    tip.setAttribute("role", "tooltip");
    tip.hidden = true;
    el.style.position = "relative";
    el.appendChild(tip);
    chart.subscribeCrosshairMove((param) => {
      const here = param.time ? marks.filter((m) => m.time === param.time) : [];
      tip.hidden = !here.length || !param.point;
      if (tip.hidden) return;
      tip.textContent = here.slice(0, 5).map((m) => m.tip).join("\n") + (here.length > 5 ? `\n+${here.length - 5} more` : "");
      tip.style.left = `${Math.min(param.point.x + 12, el.clientWidth - 260)}px`;
      tip.style.top = `${Math.max(param.point.y - 20, 0)}px`;
    });
    const show = () => markers.setMarkers(marks.slice().sort((a, b) => a.time - b.time));
    show();
    chart.timeScale().fitContent();
    el.dataset.bars = String(bars.length);
    el.dataset.markers = String(marks.length);
    const drawn = { chart, series, bars, candles, step, marks,
                    addAnomaly(a) { marks.push(toMarker(a)); show(); el.dataset.markers = String(marks.length); } };
    el.ahChart = drawn;  // for scripts and tests that need the chart's own coordinates
    return drawn;
  }
  window.ahDrawChart = drawChart;

  const el = document.getElementById("chart");
  const source = document.getElementById("chart-data");
  if (!el || !source) return;
  const data = JSON.parse(source.textContent);
  const drawn = drawChart(el, data);
  const { bars, candles, step, series } = drawn;

  document.addEventListener("ah:live", (e) => {
    const event = e.detail;
    if (event.series !== data.series) return;
    if (event.type === "anomaly") {
      drawn.addAnomaly({ time: Date.parse(event.ts) / 1000, id: event.id, text: event.text, severity: event.severity,
                         score: event.score });
      return;
    }
    const col = event.columns.indexOf(event.type === "tick" ? "price" : event.type === "bar" ? "close" : "value");
    for (const row of event.points) {  // fold each point into the bar of its bucket
      const time = Math.floor(row[0] / 1000 / step) * step, v = row[col];
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
