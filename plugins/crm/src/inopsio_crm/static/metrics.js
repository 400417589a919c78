// The board's value-per-stage chart (uPlot): total and weighted value of each stage's deals, from
// the metrics endpoint. The table under it says the same in text (and is what screen readers use);
// both are redrawn when a deal moves.
(function () {
  "use strict";
  var holder = document.getElementById("metrics-chart");
  var table = document.getElementById("metrics-table");
  if (!holder || !window.uPlot || !window.inopsioApi) return;
  var lang = document.documentElement.lang || undefined;
  var chart = null;

  function money(value, currency) {
    try {
      return new Intl.NumberFormat(lang, { style: "currency", currency: currency }).format(value);
    } catch (e) { return value.toFixed(2) + " " + currency; }
  }

  function pickCurrency(stages) {
    var wanted = holder.dataset.currency;
    var seen = {};
    stages.forEach(function (s) { Object.keys(s.total_value).forEach(function (c) { seen[c] = (seen[c] || 0) + s.count; }); });
    if (wanted && seen[wanted]) return wanted;
    var best = Object.keys(seen).sort(function (a, b) { return seen[b] - seen[a]; })[0];
    return best || wanted || "EUR";
  }

  function cell(tag, text, attrs) {
    var el = document.createElement(tag);
    el.textContent = text;
    Object.keys(attrs || {}).forEach(function (k) { el.setAttribute(k, attrs[k]); });
    return el;
  }

  function amounts(values) {
    var keys = Object.keys(values);
    return keys.length ? keys.map(function (c) { return money(Number(values[c]), c); }).join(", ") : "–";
  }

  function fillTable(stages) {
    if (!table) return;
    var body = table.querySelector("tbody");
    var rows = stages.map(function (s) {
      var tr = document.createElement("tr");
      tr.dataset.stage = s.stage_id;
      tr.appendChild(cell("th", s.name, { scope: "row" }));
      tr.appendChild(cell("td", String(s.count)));
      tr.appendChild(cell("td", amounts(s.total_value)));
      tr.appendChild(cell("td", amounts(s.weighted_value)));
      return tr;
    });
    body.replaceChildren.apply(body, rows);
  }

  function draw(stages) {
    var currency = pickCurrency(stages);
    var xs = stages.map(function (_, i) { return i; });
    var totals = stages.map(function (s) { return Number(s.total_value[currency] || 0); });
    var weighted = stages.map(function (s) { return Number(s.weighted_value[currency] || 0); });
    var names = stages.map(function (s) { return s.name; });
    if (chart) { chart.destroy(); chart = null; }
    var bars = window.uPlot.paths.bars;
    chart = new window.uPlot({
      width: Math.max(320, Math.min(holder.clientWidth || 640, 768)),
      height: 260,
      title: "Value per stage (" + currency + ")",
      legend: { live: false },
      scales: { x: { time: false, range: [-0.5, stages.length - 0.5] }, y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } } },
      axes: [
        { values: function (u, ticks) { return ticks.map(function (t) { return Number.isInteger(t) ? (names[t] || "") : ""; }); }, splits: function () { return xs; } },
        { values: function (u, ticks) { return ticks.map(function (t) { return money(t, currency); }); }, size: 90 }
      ],
      series: [
        { label: "Stage", value: function (u, v) { return v == null ? "" : names[v]; } },
        { label: "Total", fill: "rgba(29, 78, 216, .75)", stroke: "#1d4ed8", paths: bars({ size: [0.35, 60], align: -1 }), points: { show: false }, value: function (u, v) { return v == null ? "" : money(v, currency); } },
        { label: "Weighted", fill: "rgba(15, 118, 110, .75)", stroke: "#0f766e", paths: bars({ size: [0.35, 60], align: 1 }), points: { show: false }, value: function (u, v) { return v == null ? "" : money(v, currency); } }
      ]
    }, [xs, totals, weighted], holder);
  }

  async function load() {
    var result = await window.inopsioApi("GET", holder.dataset.url);
    if (!result.ok || !result.data) return;
    draw(result.data.stages);
    fillTable(result.data.stages);
    holder.dataset.loaded = String(Number(holder.dataset.loaded || 0) + 1);
  }

  var pending = null;
  document.addEventListener("crm:board-changed", function () {
    clearTimeout(pending);
    pending = setTimeout(load, 150); // several moves in a row redraw once
  });
  load();
})();
