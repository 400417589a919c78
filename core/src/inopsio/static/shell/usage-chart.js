// Operator console: a tenant's daily usage as a uPlot chart, and the totals beside the limits.
document.addEventListener("DOMContentLoaded", async function () {
  "use strict";
  var box = document.getElementById("usage-chart");
  if (!box) return;
  var result = await window.inopsioApi("GET", box.getAttribute("data-url"));
  var body = document.querySelector("#usage-table tbody");
  body.textContent = "";
  if (!result.ok) {
    box.textContent = (result.data && result.data.detail) || "Usage could not be loaded.";
    return;
  }
  var usage = result.data;
  var days = [];
  for (var d = new Date(usage.since + "T00:00:00Z"); d <= new Date(usage.until + "T00:00:00Z"); d.setUTCDate(d.getUTCDate() + 1)) {
    days.push(d.toISOString().slice(0, 10));
  }
  var metrics = Array.from(new Set(usage.daily.map(function (c) { return c.metric; }))).sort();
  var totals = {};
  var series = metrics.map(function (metric) {
    var byDay = {};
    usage.daily.forEach(function (c) { if (c.metric === metric) byDay[c.day] = c.value; });
    totals[metric] = Object.values(byDay).reduce(function (a, b) { return a + b; }, 0);
    return days.map(function (day) { return byDay[day] || 0; });
  });
  Object.keys(usage.gauges).forEach(function (g) { totals[g] = usage.gauges[g]; });
  Object.keys(totals).sort().forEach(function (metric) {
    var tr = document.createElement("tr");
    [metric, String(totals[metric]), usage.limits[metric] == null ? "unlimited" : String(usage.limits[metric])].forEach(function (text) {
      var td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    });
    body.appendChild(tr);
  });
  if (!metrics.length) {
    box.textContent = "Nothing counted in this period.";
    return;
  }
  var palette = ["#1f5fbf", "#b3261e", "#1e6b34", "#8a5300", "#6b3fa0", "#00696b"];
  var x = days.map(function (day) { return Date.parse(day + "T00:00:00Z") / 1000; });
  new uPlot({
    width: Math.min(box.clientWidth || 800, 900),
    height: 260,
    series: [{}].concat(metrics.map(function (m, i) { return { label: m, stroke: palette[i % palette.length], width: 2 }; })),
    axes: [{}, { size: 60 }],
  }, [x].concat(series), box);
});
