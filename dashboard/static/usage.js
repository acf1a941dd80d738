// Usage: line charts of the tenant's connections, messages, bytes and
// dropped messages, drawn as SVG from /api/v1/metrics.
"use strict";
(function () {
  var R = window.Relay, h = R.h;
  var minutes = 60;
  var PAD = { l: 52, r: 12, t: 10, b: 26 };
  var last = null; // the last data drawn, to redraw on resize

  // niceStep is a round step (1, 2 or 5 × 10^n) that divides max into
  // about four ticks; at least 1 for counts.
  function niceStep(max, integer) {
    if (max <= 0) return 1;
    var raw = max / 4;
    var p = Math.pow(10, Math.floor(Math.log10(raw)));
    var n = raw / p;
    var step = (n <= 1 ? 1 : n <= 2 ? 2 : n <= 5 ? 5 : 10) * p;
    return integer ? Math.max(1, Math.round(step)) : step;
  }

  // chart draws series [{name, cls, values}] over times into box, at the
  // box's pixel size (so that text is never stretched).
  function chart(box, times, series, fmt, integer) {
    box = document.getElementById(box);
    R.replace(box, null);
    var W = Math.max(320, box.clientWidth || 640), H = Math.max(160, box.clientHeight || 220);
    if (!times.length) {
      box.appendChild(h("div", { class: "chart-empty" }, "No data yet for this period."));
      return;
    }
    var max = 0;
    series.forEach(function (s) { s.values.forEach(function (v) { if (v > max) max = v; }); });
    var step = niceStep(max, integer);
    var ticks = Math.max(1, Math.ceil(max / step));
    max = step * ticks;
    var t0 = times[0], t1 = times[times.length - 1];
    var span = Math.max(1, t1 - t0);
    var x = function (t) { return PAD.l + (W - PAD.l - PAD.r) * (t - t0) / span; };
    var y = function (v) { return PAD.t + (H - PAD.t - PAD.b) * (1 - v / max); };
    var svg = h("svg:svg", { viewBox: "0 0 " + W + " " + H, width: W, height: H, role: "img",
      "aria-label": series.map(function (s) { return s.name; }).join(", ") + " over the last " + label(minutes) });
    var grid = h("svg:g", { class: "grid" }), axis = h("svg:g", { class: "axis" });
    for (var i = 0; i <= ticks; i++) {
      var v = step * i, yy = y(v);
      grid.appendChild(h("svg:line", { x1: PAD.l, x2: W - PAD.r, y1: yy, y2: yy }));
      axis.appendChild(h("svg:text", { x: PAD.l - 8, y: yy + 4, "text-anchor": "end" }, fmt(v)));
    }
    var withSeconds = span < 10 * 60 * 1000;
    for (var j = 0; j <= 4; j++) {
      var tt = t0 + span * j / 4;
      axis.appendChild(h("svg:text", { x: x(tt), y: H - 6, "text-anchor": j === 0 ? "start" : j === 4 ? "end" : "middle" },
        new Date(tt).toLocaleTimeString(undefined, withSeconds ? { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false } : { hour: "2-digit", minute: "2-digit", hour12: false })));
    }
    svg.appendChild(grid);
    svg.appendChild(axis);
    series.forEach(function (s) {
      var pts = s.values.map(function (v, k) { return x(times[k]).toFixed(1) + "," + y(v).toFixed(1); });
      var g = h("svg:g", { class: s.cls });
      if (pts.length > 1) {
        g.appendChild(h("svg:path", { class: "area", d: "M" + x(times[0]).toFixed(1) + "," + y(0) + " L" + pts.join(" L") + " L" + x(times[times.length - 1]).toFixed(1) + "," + y(0) + " Z" }));
      }
      g.appendChild(h("svg:path", { class: "line", d: "M" + pts.join(" L") }));
      svg.appendChild(g);
    });
    var cursor = h("svg:line", { class: "cursor", y1: PAD.t, y2: H - PAD.b, visibility: "hidden" });
    svg.appendChild(cursor);
    var dots = series.map(function (s, k) {
      var d = h("svg:circle", { r: 3.5, class: "dot" + (k + 1), visibility: "hidden" });
      svg.appendChild(d);
      return d;
    });
    box.appendChild(svg);
    var tip = h("div", { class: "chart-tip", hidden: true });
    box.appendChild(tip);
    svg.addEventListener("mousemove", function (ev) {
      var rect = svg.getBoundingClientRect();
      var px = (ev.clientX - rect.left) / rect.width * W;
      var k = 0, best = Infinity;
      times.forEach(function (t, i) { var d = Math.abs(x(t) - px); if (d < best) { best = d; k = i; } });
      var xx = x(times[k]);
      cursor.setAttribute("x1", xx); cursor.setAttribute("x2", xx); cursor.setAttribute("visibility", "visible");
      dots.forEach(function (d, i) { d.setAttribute("cx", xx); d.setAttribute("cy", y(series[i].values[k])); d.setAttribute("visibility", "visible"); });
      R.replace(tip, [h("div", {}, new Date(times[k]).toLocaleTimeString())].concat(series.map(function (s) {
        return h("div", {}, s.name + ": ", h("b", {}, fmt(s.values[k])));
      })));
      tip.hidden = false;
      var left = xx + 12;
      if (left > rect.width - 150) left -= 170;
      tip.style.left = left + "px";
      tip.style.top = "8px";
    });
    svg.addEventListener("mouseleave", function () {
      tip.hidden = true;
      cursor.setAttribute("visibility", "hidden");
      dots.forEach(function (d) { d.setAttribute("visibility", "hidden"); });
    });
  }

  function label(m) { return m < 60 ? m + " minutes" : m === 60 ? "hour" : (m / 60) + " hours"; }

  function summary(id, items) {
    R.replace(id, items.map(function (it) {
      return h("span", {}, it.cls ? h("span", { class: "sw " + it.cls }) : null, it.label + " ", h("b", {}, it.value));
    }));
  }

  async function load() {
    var m;
    try {
      m = await R.api("GET", "/metrics?minutes=" + minutes);
    } catch (e) {
      ["c-conn", "c-msg", "c-bytes", "c-drop"].forEach(function (id) { R.replace(id, R.errorBox(e)); });
      return;
    }
    last = m;
    draw(m);
  }

  function draw(m) {
    var samples = (m && m.samples) || [];
    var times = samples.map(function (s) { return R.toDate(s.t).getTime(); });
    // Seconds per sample: from the timestamps (interval_s is whole seconds).
    var per = times.length > 1 ? (times[times.length - 1] - times[0]) / 1000 / (times.length - 1) : 0;
    if (!(per > 0)) per = (m && m.interval_s) || 60;
    var col = function (k) { return samples.map(function (s) { return s[k] || 0; }); };
    var rate = function (k) { return samples.map(function (s) { return (s[k] || 0) / per; }); };
    var sum = function (k) { return samples.reduce(function (a, s) { return a + (s[k] || 0); }, 0); };
    var peak = function (a) { return a.reduce(function (x, v) { return v > x ? v : x; }, 0); };
    var conn = col("connections");
    chart("c-conn", times, [{ name: "Connections", cls: "s1", values: conn }], function (v) { return R.num(Math.round(v)); }, true);
    summary("c-conn-sum", [{ label: "now", value: R.num(conn.length ? conn[conn.length - 1] : 0) }, { label: "peak", value: R.num(peak(conn)) }]);
    chart("c-msg", times, [{ name: "In /s", cls: "s1", values: rate("messages_in") }, { name: "Out /s", cls: "s2", values: rate("messages_out") }], function (v) { return R.compact(v); });
    summary("c-msg-sum", [{ cls: "sw-1", label: "in", value: R.compact(sum("messages_in")) }, { cls: "sw-2", label: "out", value: R.compact(sum("messages_out")) }]);
    chart("c-bytes", times, [{ name: "In /s", cls: "s1", values: rate("bytes_in") }, { name: "Out /s", cls: "s2", values: rate("bytes_out") }], function (v) { return R.bytes(v); });
    summary("c-bytes-sum", [{ cls: "sw-1", label: "in", value: R.bytes(sum("bytes_in")) }, { cls: "sw-2", label: "out", value: R.bytes(sum("bytes_out")) }]);
    var dropped = col("dropped");
    chart("c-drop", times, [{ name: "Dropped", cls: "s3", values: dropped }], function (v) { return R.compact(v); }, true);
    summary("c-drop-sum", [{ cls: "sw-3", label: "total", value: R.num(sum("dropped")) }]);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var p = R.poll(load, 15000);
    var resize = null;
    window.addEventListener("resize", function () {
      clearTimeout(resize);
      resize = setTimeout(function () { if (last) draw(last); }, 150);
    });
    R.$$("#range button").forEach(function (b) {
      b.addEventListener("click", function () {
        minutes = parseInt(b.getAttribute("data-minutes"), 10);
        R.$$("#range button").forEach(function (x) { x.setAttribute("aria-pressed", x === b ? "true" : "false"); });
        p.now();
      });
    });
  });
})();
