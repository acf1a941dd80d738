// Relay dashboard: shared helpers. Every page's data comes from the JSON
// API (/api/v1) with the session cookie; unsafe requests carry the
// session's CSRF token (X-CSRF-Token) from <meta name="csrf-token">.
// No framework: DOM nodes are built with h(), never from HTML strings, so
// nothing a device sends can become markup.
"use strict";

window.Relay = (function () {
  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.content : "";

  // ------------------------------------------------------------------
  // API

  // APIError is an error answer: HTTP status, the API's code and
  // message, and for a 400 the request field at fault (if it says).
  function APIError(status, code, message, field) {
    this.status = status;
    this.code = code;
    this.message = message;
    this.field = field || "";
  }
  APIError.prototype = Object.create(Error.prototype);

  // request calls the API and resolves to {status, data}; errors reject
  // with an APIError carrying the API's message.
  async function request(method, path, body) {
    var headers = { Accept: "application/json" };
    if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = csrf;
    var init = { method: method, headers: headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    var res;
    try {
      res = await fetch("/api/v1" + path, init);
    } catch (e) {
      throw new APIError(0, "network", "Cannot reach Relay. Check your connection and try again.");
    }
    if (res.status === 401) {
      location.href = "/login?m=expired&next=" + encodeURIComponent(location.pathname + location.search);
      throw new APIError(401, "unauthorized", "Your session has ended.");
    }
    var text = await res.text();
    var data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (e) { data = text; }
    }
    if (!res.ok) {
      var msg = (data && data.message) || res.statusText || "Request failed";
      throw new APIError(res.status, (data && data.code) || "", msg, data && data.field);
    }
    return { status: res.status, data: data };
  }

  async function api(method, path, body) {
    return (await request(method, path, body)).data;
  }

  // list unwraps a list response: a JSON array, or an object holding one
  // (items, data, or the named key).
  function list(v, key) {
    if (Array.isArray(v)) return v;
    if (v && key && Array.isArray(v[key])) return v[key];
    if (v && Array.isArray(v.items)) return v.items;
    if (v && Array.isArray(v.data)) return v.data;
    return [];
  }

  // ------------------------------------------------------------------
  // DOM

  // h builds an element: h("td", {class: "num", text: "3"}, child…).
  // Props: class, text, html is not supported (on purpose); on<event>
  // functions; hidden, disabled, checked, value, selected as properties;
  // anything else as an attribute.
  function h(tag, props) {
    var el = tag.indexOf(":") > 0
      ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(tag.indexOf(":") + 1))
      : document.createElement(tag);
    props = props || {};
    Object.keys(props).forEach(function (k) {
      var v = props[k];
      if (v === undefined || v === null || v === false) return;
      if (k === "class") el.setAttribute("class", v);
      else if (k === "text") el.textContent = v;
      else if (k.slice(0, 2) === "on" && typeof v === "function") el.addEventListener(k.slice(2), v);
      else if (k === "hidden" || k === "disabled" || k === "checked" || k === "value" || k === "selected") el[k] = v;
      else el.setAttribute(k, v === true ? "" : v);
    });
    for (var i = 2; i < arguments.length; i++) append(el, arguments[i]);
    return el;
  }

  function append(el, c) {
    if (c === null || c === undefined || c === false) return;
    if (Array.isArray(c)) { c.forEach(function (x) { append(el, x); }); return; }
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }

  function $(sel, root) { return (root || document).querySelector(sel); }
  function $$(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }

  function replace(el, child) {
    if (typeof el === "string") el = document.getElementById(el);
    while (el.firstChild) el.removeChild(el.firstChild);
    append(el, child);
  }

  // icon returns one of the sidebar's icons (same drawings), by name.
  var icons = {
    apps: ["circle:cx=7.5,cy=15.5,r=4.5", "path:d=M10.7 12.3 20 3M16 7l3 3M14 9l2 2"],
    clients: ["rect:x=5,y=5,width=14,height=14,rx=2", "rect:x=9,y=9,width=6,height=6,rx=1", "path:d=M9 2v3M15 2v3M9 19v3M15 19v3M19 9h3M19 15h3M2 9h3M2 15h3"],
    retained: ["path:d=M19 21l-7-5-7 5V5a2 2 0 0 1 2-2h10a2 2 0 0 1 2 2z"],
    key: ["circle:cx=7.5,cy=15.5,r=4.5", "path:d=M10.7 12.3 20 3M16 7l3 3M14 9l2 2"],
    shield: ["path:d=M12 22s8-4 8-10V5l-8-3-8 3v7c0 6 8 10 8 10z"],
    topics: ["path:d=M4 9h16M4 15h16M10 3 8 21M16 3l-2 18"],
    moon: ["path:d=M21 12.8A9 9 0 1 1 11.2 3a7 7 0 0 0 9.8 9.8z"],
    copy: ["rect:x=9,y=9,width=12,height=12,rx=2", "path:d=M5 15H4a2 2 0 0 1-2-2V4a2 2 0 0 1 2-2h9a2 2 0 0 1 2 2v1"],
  };
  function icon(name) {
    var svg = h("svg:svg", { class: "icon", viewBox: "0 0 24 24", "aria-hidden": "true" });
    (icons[name] || []).forEach(function (spec) {
      var parts = spec.split(":");
      var attrs = {};
      var rest = spec.slice(parts[0].length + 1);
      if (parts[0] === "path") attrs.d = rest.slice(2);
      else rest.split(",").forEach(function (kv) { var p = kv.split("="); attrs[p[0]] = p[1]; });
      svg.appendChild(h("svg:" + parts[0], attrs));
    });
    return svg;
  }

  // empty is an empty state that teaches: what goes here and how.
  function empty(iconName, title, text, action) {
    return h("div", { class: "empty" },
      h("div", { class: "empty-icon" }, icon(iconName)),
      h("h3", { text: title }),
      text ? h("p", {}, text) : null,
      action || null);
  }

  function errorBox(err) {
    return h("div", { class: "error-box", role: "alert" }, "Could not load this: " + (err && err.message ? err.message : err));
  }

  // table builds a table: cols = [{label, class, cell(row) → node|string}].
  function table(cols, rows, opts) {
    opts = opts || {};
    return h("table", { class: "table" },
      h("thead", {}, h("tr", {}, cols.map(function (c) {
        return h("th", { class: c.class || null, scope: "col" }, c.label);
      }))),
      h("tbody", {}, rows.map(function (r) {
        var tr = h("tr", opts.row ? opts.row(r) : {}, cols.map(function (c) {
          return h("td", { class: c.class || null }, c.cell(r));
        }));
        return tr;
      })));
  }

  function pill(text, kind) { return h("span", { class: "pill pill-" + (kind || "muted") }, text); }
  function tag(text) { return h("span", { class: "tag" }, text); }

  // ------------------------------------------------------------------
  // Formatting

  var nf = new Intl.NumberFormat();
  function num(n) { return n === undefined || n === null || isNaN(n) ? "–" : nf.format(n); }
  function compact(n) {
    if (n === undefined || n === null || isNaN(n)) return "–";
    var a = Math.abs(n);
    if (a >= 1e9) return (n / 1e9).toFixed(a >= 1e10 ? 0 : 1) + "B";
    if (a >= 1e6) return (n / 1e6).toFixed(a >= 1e7 ? 0 : 1) + "M";
    if (a >= 1e4) return (n / 1e3).toFixed(a >= 1e5 ? 0 : 1) + "k";
    return nf.format(Math.round(n * 100) / 100);
  }
  function bytes(n) {
    if (n === undefined || n === null || isNaN(n)) return "–";
    var u = ["B", "KB", "MB", "GB", "TB"];
    var i = 0;
    while (Math.abs(n) >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n : n.toFixed(n >= 100 ? 0 : 1)) + " " + u[i];
  }
  function toDate(v) {
    if (v === undefined || v === null || v === "") return null;
    var d = typeof v === "number" ? new Date(v < 1e12 ? v * 1000 : v) : new Date(v);
    return isNaN(d) || d.getFullYear() < 1971 ? null : d;
  }
  function ago(v) {
    var d = toDate(v);
    if (!d) return "–";
    var s = Math.round((Date.now() - d) / 1000);
    if (s < 0) return "in " + dur(-s);
    if (s < 10) return "just now";
    return dur(s) + " ago";
  }
  function dur(s) {
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min";
    if (s < 86400) return Math.floor(s / 3600) + " h " + (Math.floor(s / 60) % 60) + " min";
    return Math.floor(s / 86400) + " d " + (Math.floor(s / 3600) % 24) + " h";
  }
  function dateTime(v) {
    var d = toDate(v);
    return d ? d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }) : "–";
  }
  function date(v) {
    var d = toDate(v);
    return d ? d.toLocaleDateString(undefined, { dateStyle: "medium" }) : "–";
  }
  function time(v) {
    var d = toDate(v);
    return d ? d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" }) : "–";
  }
  function timeEl(v, text) {
    var d = toDate(v);
    return h("time", { datetime: d ? d.toISOString() : null, title: d ? d.toLocaleString() : null }, text);
  }

  // Payloads: base64 in the API; shown as text, JSON or hex.
  function b64bytes(b64) {
    if (!b64) return new Uint8Array(0);
    try {
      var bin = atob(b64);
      var out = new Uint8Array(bin.length);
      for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
      return out;
    } catch (e) { return new Uint8Array(0); }
  }
  function utf8(bytesArr) {
    try { return new TextDecoder("utf-8", { fatal: true }).decode(bytesArr); } catch (e) { return null; }
  }
  function hexdump(b) {
    var lines = [];
    for (var off = 0; off < b.length; off += 16) {
      var hex = [], asc = "";
      for (var i = 0; i < 16; i++) {
        if (off + i < b.length) {
          var c = b[off + i];
          hex.push((c < 16 ? "0" : "") + c.toString(16));
          asc += c >= 32 && c < 127 ? String.fromCharCode(c) : ".";
        } else hex.push("  ");
      }
      lines.push(("0000000" + off.toString(16)).slice(-8) + "  " + hex.slice(0, 8).join(" ") + "  " + hex.slice(8).join(" ") + "  |" + asc + "|");
    }
    return lines.join("\n") || "(empty)";
  }
  function prettyJSON(text) {
    if (text === null) return null;
    try { return JSON.stringify(JSON.parse(text), null, 2); } catch (e) { return null; }
  }

  // ------------------------------------------------------------------
  // Feedback

  function toast(msg, kind) {
    var box = document.getElementById("toasts");
    if (!box) return;
    var t = h("div", { class: "toast toast-" + (kind || "ok") }, msg);
    box.appendChild(t);
    setTimeout(function () { t.remove(); }, kind === "err" ? 7000 : 3500);
  }

  // confirm asks in the page's dialog and resolves to true or false.
  function confirmDialog(title, text, okLabel) {
    var d = document.getElementById("confirm-dialog");
    if (!d || !d.showModal) return Promise.resolve(window.confirm(title + "\n\n" + text));
    $("#confirm-title", d).textContent = title;
    $("#confirm-text", d).textContent = text;
    $("#confirm-ok", d).textContent = okLabel || "Confirm";
    return new Promise(function (resolve) {
      d.addEventListener("close", function once() {
        d.removeEventListener("close", once);
        resolve(d.returnValue === "ok");
      });
      d.returnValue = "";
      d.showModal();
      $("#confirm-cancel", d).focus();
    });
  }

  // busy disables a button while p runs.
  async function busy(btn, p) {
    if (btn) { btn.disabled = true; btn.classList.add("busy"); }
    try { return await p; } finally {
      if (btn) { btn.disabled = false; btn.classList.remove("busy"); }
    }
  }

  // fieldError shows msg under the input with this id ("" clears it).
  function fieldError(id, msg) {
    var input = document.getElementById(id);
    var p = document.getElementById(id + "-error");
    if (input) {
      if (msg) input.setAttribute("aria-invalid", "true");
      else input.removeAttribute("aria-invalid");
    }
    if (p) {
      p.textContent = msg || "";
      p.hidden = !msg;
    }
    if (msg && input) input.focus();
  }

  // Topic validation, as the server does it (broker/topic), so that errors
  // show before a round trip. The server checks again.
  function topicError(t) {
    if (!t) return "Enter a topic.";
    if (new TextEncoder().encode(t).length > 65535) return "A topic is at most 65,535 bytes.";
    if (t.indexOf("\u0000") >= 0) return "A topic cannot contain the NUL character.";
    if (/[+#]/.test(t)) return "A topic name cannot contain the wildcards + or # (they are for filters).";
    return "";
  }
  function filterError(f, placeholders) {
    if (!f) return "Enter a topic filter, like devices/+/temp or devices/#.";
    if (new TextEncoder().encode(f).length > (placeholders ? 1024 : 65535)) return "This filter is too long.";
    if (f.indexOf("\u0000") >= 0) return "A filter cannot contain the NUL character.";
    var levels = f.split("/");
    for (var i = 0; i < levels.length; i++) {
      var l = levels[i];
      if (l.indexOf("#") >= 0 && (l !== "#" || i !== levels.length - 1))
        return "# must be a whole level and the last one: write devices/#, not " + JSON.stringify(f) + ".";
      if (l.indexOf("+") >= 0 && l !== "+")
        return "+ must be a whole level: write devices/+/temp, not " + JSON.stringify(l) + ".";
      if (placeholders && (l.indexOf("%c") >= 0 || l.indexOf("%u") >= 0) && l !== "%c" && l !== "%u")
        return "%c and %u must be whole levels: write devices/%c/#, not " + JSON.stringify(l) + ".";
    }
    return "";
  }

  // ------------------------------------------------------------------
  // Copy, tabs, dismiss

  async function copyText(text) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (e) {
      var ta = h("textarea", { class: "sr-only", readonly: true });
      ta.value = text;
      document.body.appendChild(ta);
      ta.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e2) { ok = false; }
      ta.remove();
      return ok;
    }
  }

  document.addEventListener("click", async function (ev) {
    var btn = ev.target.closest("[data-copy],[data-copy-text]");
    if (btn) {
      var text = btn.hasAttribute("data-copy-text") ? btn.getAttribute("data-copy-text")
        : (document.querySelector(btn.getAttribute("data-copy")) || {}).textContent || "";
      var ok = await copyText(text.trim());
      btn.classList.add("copied");
      setTimeout(function () { btn.classList.remove("copied"); }, 1500);
      toast(ok ? "Copied to the clipboard" : "Select the text and copy it", ok ? "ok" : "err");
      return;
    }
    var dismiss = ev.target.closest("[data-dismiss]");
    if (dismiss) {
      var el = document.getElementById(dismiss.getAttribute("data-dismiss"));
      if (el) el.hidden = true;
    }
  });

  function initTabs(root) {
    $$("[data-tabs]", root).forEach(function (box) {
      var tabs = $$('[role="tab"]', box);
      function select(tab, focus) {
        tabs.forEach(function (t) {
          var on = t === tab;
          t.setAttribute("aria-selected", on ? "true" : "false");
          t.tabIndex = on ? 0 : -1;
          var panel = document.getElementById(t.getAttribute("aria-controls"));
          if (panel) panel.hidden = !on;
        });
        if (focus) tab.focus();
      }
      tabs.forEach(function (t, i) {
        t.tabIndex = t.getAttribute("aria-selected") === "true" ? 0 : -1;
        t.addEventListener("click", function () { select(t); });
        t.addEventListener("keydown", function (ev) {
          if (ev.key === "ArrowRight") select(tabs[(i + 1) % tabs.length], true);
          if (ev.key === "ArrowLeft") select(tabs[(i + tabs.length - 1) % tabs.length], true);
        });
      });
    });
  }
  document.addEventListener("DOMContentLoaded", function () { initTabs(document); });

  // poll runs fn now and every ms while the page is visible; pause()
  // and resume() stop and restart it.
  function poll(fn, ms) {
    var timer = null, paused = false, running = false;
    async function tick() {
      timer = null;
      if (paused || document.hidden) return;
      if (!running) {
        running = true;
        try { await fn(); } finally { running = false; }
      }
      if (!paused && !timer) timer = setTimeout(tick, ms);
    }
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden && !paused && !timer) tick();
    });
    tick();
    return {
      pause: function () { paused = true; if (timer) { clearTimeout(timer); timer = null; } },
      resume: function () { paused = false; if (!timer) tick(); },
      now: function () { if (timer) { clearTimeout(timer); timer = null; } return tick(); },
    };
  }

  // reducedMotion reports whether the user asked for less motion.
  function reducedMotion() {
    return !!(window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches);
  }

  var body = document.body;
  return {
    api: api, request: request, list: list, APIError: APIError,
    h: h, $: $, $$: $$, replace: replace, icon: icon, empty: empty, errorBox: errorBox, table: table, pill: pill, tag: tag,
    num: num, compact: compact, bytes: bytes, ago: ago, dur: dur, dateTime: dateTime, date: date, time: time, timeEl: timeEl, toDate: toDate,
    b64bytes: b64bytes, utf8: utf8, hexdump: hexdump, prettyJSON: prettyJSON,
    toast: toast, confirm: confirmDialog, busy: busy, fieldError: fieldError, topicError: topicError, filterError: filterError,
    copyText: copyText, initTabs: initTabs, poll: poll, reducedMotion: reducedMotion,
    tenant: body.getAttribute("data-tenant") || "",
    host: body.getAttribute("data-host") || "",
    port: body.getAttribute("data-port") || "1883",
    baseDomain: body.getAttribute("data-base-domain") || "",
  };
})();
