// Clients: live connections (kick), offline persistent sessions, active
// topics; refreshed every 3 s while the page is visible.
"use strict";
(function () {
  var R = window.Relay, h = R.h;
  var clients = [];
  var protoNames = { 3: "3.1", 4: "3.1.1", 5: "5.0" };

  function subs(list) {
    list = list || [];
    if (!list.length) return h("span", { class: "cell-sub" }, "none");
    var shown = list.slice(0, 4).map(function (s) {
      return h("span", { class: "tag", title: "QoS " + s.qos }, s.filter, h("span", { class: "q" }, "·" + s.qos));
    });
    if (list.length > 4) shown.push(h("span", { class: "tag" }, "+" + (list.length - 4)));
    return h("div", { class: "subs" }, shown);
  }

  function renderClients() {
    var box = document.getElementById("clients-list");
    var q = document.getElementById("clients-search").value.trim().toLowerCase();
    var rows = clients.filter(function (c) {
      return !q || (c.client_id || "").toLowerCase().indexOf(q) >= 0 || (c.username || "").toLowerCase().indexOf(q) >= 0 ||
        (c.credential || "").toLowerCase().indexOf(q) >= 0;
    });
    document.getElementById("clients-count").textContent = clients.length ? R.num(clients.length) : "";
    if (!clients.length) {
      R.replace(box, R.empty("clients", "No device is connected",
        ["Connect one with a credential from ", h("a", { href: "/apps" }, "Apps & credentials"), "; the ", h("a", { href: "/overview" }, "overview"), " has commands to copy. It appears here within seconds."]));
      return;
    }
    if (!rows.length) { R.replace(box, h("div", { class: "empty" }, h("p", {}, "No client matches \u201c" + q + "\u201d."))); return; }
    R.replace(box, R.table([
      { label: "Client ID", cell: function (c) { return h("div", {}, h("div", { class: "mono strong" }, c.client_id || "(empty)"), c.persistent ? h("div", { class: "cell-sub" }, "persistent session") : null); } },
      { label: "Credential", cell: function (c) { return c.credential ? h("div", {}, h("span", { class: "mono" }, c.credential), c.app ? h("div", { class: "cell-sub" }, c.app) : null) : h("span", { class: "cell-sub" }, c.username || "anonymous"); } },
      { label: "Node", cell: function (c) { return h("span", { class: "mono" }, c.node || "–"); } },
      { label: "Remote address", cell: function (c) { return h("span", { class: "mono" }, c.remote_addr || "–"); } },
      { label: "MQTT", cell: function (c) { return protoNames[c.proto_ver] || String(c.proto_ver || "–"); } },
      { label: "Connected", cell: function (c) { return R.timeEl(c.connected_at, R.ago(c.connected_at)); } },
      { label: "Subscriptions", cell: function (c) { return subs(c.subscriptions); } },
      { label: "Queued", class: "num", cell: function (c) { return R.num(c.queued || 0) + (c.inflight ? " · " + R.num(c.inflight) + " in flight" : ""); } },
      { label: "In / out", class: "num", cell: function (c) { return R.compact(c.messages_in || 0) + " / " + R.compact(c.messages_out || 0); } },
      { label: "", class: "actions", cell: function (c) {
        return h("button", { type: "button", class: "btn btn-danger btn-sm", "data-kick": c.client_id, "aria-label": "Kick " + c.client_id, onclick: function (ev) { kick(c, ev.currentTarget); } }, "Kick");
      } },
    ], rows, { row: function (c) { return { "data-client": c.client_id }; } }));
  }

  async function kick(c, btn) {
    var ok = await R.confirm("Disconnect " + c.client_id + "?",
      "Its connection closes now. It may reconnect with the same credential; to keep it out, revoke the credential.", "Kick client");
    if (!ok) return;
    try {
      // The query form reaches every client ID ("." and ".." are path
      // segments no browser sends as they are).
      await R.busy(btn, R.api("DELETE", "/clients?clientid=" + encodeURIComponent(c.client_id)));
      R.toast(c.client_id + " disconnected");
      clients = clients.filter(function (x) { return x.client_id !== c.client_id; });
      renderClients();
    } catch (e) { R.toast(e.message, "err"); }
  }

  function renderSessions(ss) {
    var box = document.getElementById("sessions-list");
    document.getElementById("sessions-count").textContent = ss.length ? R.num(ss.length) : "";
    if (!ss.length) {
      R.replace(box, R.empty("moon", "No offline sessions",
        "When a client with a persistent session (clean session off, or a session expiry in MQTT 5) disconnects, its queue shows here."));
      return;
    }
    R.replace(box, R.table([
      { label: "Client ID", cell: function (s) { return h("span", { class: "mono strong" }, s.client_id); } },
      { label: "Queued", class: "num", cell: function (s) { return R.num(s.queued || 0); } },
      { label: "Subscriptions", cell: function (s) { return Array.isArray(s.subscriptions) ? subs(s.subscriptions) : R.num(s.subscriptions || 0); } },
      { label: "Expires", cell: function (s) { return s.expires_at ? R.timeEl(s.expires_at, R.ago(s.expires_at)) : "never"; } },
    ], ss));
  }

  function renderTopics(ts) {
    var box = document.getElementById("topics-list");
    document.getElementById("topics-count").textContent = ts.length ? R.num(ts.length) : "";
    if (!ts.length) {
      R.replace(box, R.empty("topics", "No active topics", "Topics appear when a client subscribes."));
      return;
    }
    ts = ts.slice().sort(function (a, b) { return (b.rate_per_s || 0) - (a.rate_per_s || 0) || (b.subscribers || 0) - (a.subscribers || 0); });
    R.replace(box, R.table([
      { label: "Filter", cell: function (t) { return h("span", { class: "mono strong" }, t.filter); } },
      { label: "Subscribers", class: "num", cell: function (t) { return R.num(t.subscribers || 0); } },
      { label: "Messages", class: "num", cell: function (t) { return R.compact(t.messages || 0); } },
      { label: "Rate", class: "num", cell: function (t) { return R.compact(t.rate_per_s || 0) + " /s"; } },
    ], ts));
  }

  function setLive(state, text) {
    var el = document.getElementById("live");
    el.className = "live" + (state ? " " + state : "");
    document.getElementById("live-text").textContent = text;
  }

  async function refresh() {
    var res = await Promise.allSettled([R.api("GET", "/clients"), R.api("GET", "/sessions"), R.api("GET", "/topics")]);
    if (res[0].status === "fulfilled") {
      clients = R.list(res[0].value, "clients");
      renderClients();
    } else R.replace("clients-list", R.errorBox(res[0].reason));
    if (res[1].status === "fulfilled") renderSessions(R.list(res[1].value, "sessions"));
    else R.replace("sessions-list", R.errorBox(res[1].reason));
    if (res[2].status === "fulfilled") renderTopics(R.list(res[2].value, "topics"));
    else R.replace("topics-list", R.errorBox(res[2].reason));
    var failed = res.some(function (r) { return r.status === "rejected"; });
    if (!document.getElementById("pause").getAttribute("aria-pressed").match(/true/)) {
      setLive(failed ? "err" : "", failed ? "Connection problem" : "Live · updated " + R.time(Date.now()));
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    var p = R.poll(refresh, 3000);
    document.getElementById("clients-search").addEventListener("input", renderClients);
    var pause = document.getElementById("pause");
    pause.addEventListener("click", function () {
      var paused = pause.getAttribute("aria-pressed") !== "true";
      pause.setAttribute("aria-pressed", paused ? "true" : "false");
      pause.textContent = paused ? "Resume" : "Pause";
      if (paused) { p.pause(); setLive("paused", "Paused"); } else { setLive("", "Live"); p.resume(); }
    });
  });
})();
