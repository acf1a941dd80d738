// Platform operators: every tenant (suspend, resume) and platform health.
"use strict";
(function () {
  var R = window.Relay, h = R.h;
  var tenants = [];
  var conns = {};

  function render() {
    var box = document.getElementById("tenants-list");
    var q = document.getElementById("tenant-search").value.trim().toLowerCase();
    var rows = tenants.filter(function (t) { return !q || t.slug.indexOf(q) >= 0 || (t.name || "").toLowerCase().indexOf(q) >= 0; });
    document.getElementById("op-tenants").textContent = R.num(tenants.length);
    document.getElementById("op-suspended").textContent = R.num(tenants.filter(function (t) { return t.status === "suspended"; }).length);
    if (!tenants.length) {
      R.replace(box, R.empty("shield", "No tenants yet", "Tenants appear here when people sign up, or when you create one with relay tenant create."));
      return;
    }
    R.replace(box, R.table([
      { label: "Tenant", cell: function (t) { return h("div", {}, h("div", { class: "strong" }, t.name || t.slug), h("div", { class: "cell-sub mono" }, t.hostname || t.slug)); } },
      { label: "Status", cell: function (t) { return t.status === "suspended" ? R.pill("Suspended", "err") : R.pill("Active", "ok"); } },
      { label: "Connections", class: "num", cell: function (t) { var n = t.connections !== undefined ? t.connections : conns[t.slug]; return R.num(n || 0); } },
      { label: "Created", cell: function (t) { return R.timeEl(t.created_at, R.dateTime(t.created_at)); } },
      { label: "", class: "actions", cell: function (t) {
        return t.status === "suspended"
          ? h("button", { type: "button", class: "btn btn-secondary btn-sm", "data-resume": t.slug, onclick: function (ev) { setStatus(t, "resume", ev.currentTarget); } }, "Resume")
          : h("button", { type: "button", class: "btn btn-danger btn-sm", "data-suspend": t.slug, onclick: function (ev) { setStatus(t, "suspend", ev.currentTarget); } }, "Suspend");
      } },
    ], rows, { row: function (t) { return { "data-tenant": t.slug }; } }));
  }

  async function setStatus(t, verb, btn) {
    var ok = await R.confirm(verb === "suspend" ? "Suspend " + t.slug + "?" : "Resume " + t.slug + "?",
      verb === "suspend"
        ? "Its clients are disconnected now and its credentials and API keys stop working until you resume it. Its data is kept."
        : "Its credentials and API keys work again; its clients can reconnect.",
      verb === "suspend" ? "Suspend tenant" : "Resume tenant");
    if (!ok) return;
    try {
      await R.busy(btn, R.api("POST", "/admin/tenants/" + encodeURIComponent(t.slug) + "/" + verb));
      R.toast("Tenant " + t.slug + (verb === "suspend" ? " suspended" : " resumed"));
      await loadTenants();
    } catch (e) { R.toast(e.message, "err"); }
  }

  async function loadTenants() {
    try {
      tenants = R.list(await R.api("GET", "/admin/tenants"), "tenants");
      render();
    } catch (e) { R.replace("tenants-list", R.errorBox(e)); }
  }

  function healthValue(v) {
    if (v === true || v === "ok" || v === "up") return R.pill("OK", "ok");
    if (v === "not configured") return R.pill("Not configured", "muted");
    if (v === false || v === "down" || v === "unavailable") return R.pill(String(v === false ? "Down" : v), "err");
    if (typeof v === "object" && v !== null) return JSON.stringify(v);
    return String(v);
  }

  async function loadHealth() {
    var box = document.getElementById("health");
    var hv;
    try { hv = await R.api("GET", "/admin/health"); } catch (e) {
      R.replace(box, R.errorBox(e));
      document.getElementById("op-health").textContent = "Unknown";
      return;
    }
    hv = hv || {};
    var items = [];
    var bad = false;
    Object.keys(hv).forEach(function (k) {
      var v = hv[k];
      if (k === "nodes" && Array.isArray(v)) {
        v.forEach(function (n) {
          if (!n.alive) bad = true;
          items.push(h("div", { class: "health-item" }, h("div", { class: "k" }, "Edge node"), h("div", { class: "v mono" }, n.id),
            h("div", {}, n.alive ? R.pill("Alive", "ok") : R.pill("Dead", "err"), " ", h("span", { class: "cell-sub" }, "heartbeat " + R.ago(n.last_heartbeat)))));
        });
        return;
      }
      if (k === "time") return;
      if ((k === "tenants" || k === "connections") && v && typeof v === "object") {
        conns = v;
        var total = Object.keys(v).reduce(function (a, s) { return a + v[s]; }, 0);
        items.push(h("div", { class: "health-item" }, h("div", { class: "k" }, "Live connections"), h("div", { class: "v" }, R.num(total))));
        return;
      }
      if (k === "status") { if (v !== "ok") bad = true; return; }
      if (v !== "ok" && v !== true && typeof v !== "object") bad = true;
      var names = { database: "Database", nats: "NATS", jetstream: "JetStream" };
      items.push(h("div", { class: "health-item" }, h("div", { class: "k" }, names[k] || k.replace(/_/g, " ")), h("div", { class: "v" }, healthValue(v))));
    });
    R.replace(box, items.length ? items : h("p", { class: "cell-sub" }, "No health data."));
    document.getElementById("op-health").textContent = bad ? "Degraded" : "Healthy";
    render();
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.getElementById("tenant-search").addEventListener("input", render);
    R.poll(function () { return Promise.all([loadTenants(), loadHealth()]); }, 5000);
  });
})();
