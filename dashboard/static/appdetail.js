// One app: its credentials (issue, rotate, revoke), API keys and access
// rules. Secrets are shown once, in the secret panel, and removed from
// the page when it is dismissed.
"use strict";
(function () {
  var R = window.Relay, h = R.h;
  var app = "";
  var creds = [];

  // ------------------------------------------------------------------
  // Secret panel

  function secretRow(label, id, value, secret) {
    return h("div", { class: "secret-row" },
      h("span", { class: "label", id: id + "-label" }, label),
      h("output", { id: id, class: secret ? "secret-value" : null, "aria-labelledby": id + "-label" }, value),
      h("button", { type: "button", class: "btn btn-secondary btn-sm", "data-copy": "#" + id, "aria-label": "Copy " + label.toLowerCase() }, R.icon("copy"), "Copy"));
  }

  function showSecret(title, rows, example) {
    var panel = document.getElementById("secret-panel");
    document.getElementById("secret-title").textContent = title;
    R.replace("secret-fields", rows);
    R.replace("secret-example", example || null);
    panel.hidden = false;
    panel.scrollIntoView({ behavior: R.reducedMotion() ? "auto" : "smooth", block: "start" });
    panel.focus({ preventScroll: true });
  }

  function hideSecret() {
    R.replace("secret-fields", null);
    R.replace("secret-example", null);
    document.getElementById("secret-panel").hidden = true;
  }

  function credentialSecret(title, mqttUser, password) {
    var cmd = "export RELAY_PASSWORD='" + password + "'\n" +
      "mosquitto_sub -h " + R.host + " -p " + R.port + " \\\n  -u " + mqttUser + " -P \"$RELAY_PASSWORD\" \\\n  -t 'devices/#' -v";
    showSecret(title, [
      secretRow("Username", "secret-username", mqttUser, false),
      secretRow("Password", "secret-password", password, true),
    ], h("pre", { class: "code" }, h("code", { id: "secret-cmd" }, cmd),
      h("button", { type: "button", class: "copy", "data-copy": "#secret-cmd", "aria-label": "Copy command" }, R.icon("copy"))));
  }

  // ------------------------------------------------------------------
  // Credentials

  function mqttUser(c) { return c.mqtt_username || (c.username.indexOf("@") >= 0 ? c.username : c.username + "@" + R.tenant); }
  function plainUser(c) { return c.username.split("@")[0]; }

  async function loadCreds() {
    var box = document.getElementById("creds-list");
    try {
      creds = R.list(await R.api("GET", "/credentials?app=" + encodeURIComponent(app)), "credentials");
    } catch (e) { R.replace(box, R.errorBox(e)); return; }
    fillSubjects();
    if (!creds.length) {
      R.replace(box, R.empty("key", "No credentials yet",
        "Issue one for each device or fleet. You will see its password once, with a command to try it."));
      return;
    }
    R.replace(box, h("div", { class: "table-wrap" }, R.table([
      { label: "Username", cell: function (c) { return h("div", {}, h("div", { class: "mono strong" }, mqttUser(c)), c.client_id_pattern ? h("div", { class: "cell-sub" }, "client IDs: ", h("span", { class: "mono" }, c.client_id_pattern)) : null); } },
      { label: "Created", cell: function (c) { return R.timeEl(c.created_at, R.dateTime(c.created_at)); } },
      { label: "Status", cell: function (c) { return c.revoked ? R.pill("Revoked", "err") : R.pill("Active", "ok"); } },
      { label: "", class: "actions", cell: function (c) {
        if (c.revoked) return h("span", { class: "cell-sub" }, c.revoked_at ? "revoked " + R.ago(c.revoked_at) : "");
        return [
          h("button", { type: "button", class: "btn btn-secondary btn-sm", "data-rotate": plainUser(c), onclick: function (ev) { rotate(c, ev.currentTarget); } }, "Rotate"),
          h("button", { type: "button", class: "btn btn-danger btn-sm", "data-revoke": plainUser(c), onclick: function (ev) { revoke(c, ev.currentTarget); } }, "Revoke"),
        ];
      } },
    ], creds, { row: function (c) { return { "data-username": plainUser(c) }; } })));
  }

  async function issue(btn) {
    var pattern = document.getElementById("client-id-pattern").value.trim();
    R.fieldError("client-id-pattern", "");
    var body = { app: app };
    if (pattern) body.client_id_pattern = pattern;
    try {
      var c = await R.busy(btn, R.api("POST", "/credentials", body));
      credentialSecret("Credential issued: copy its password now", c.mqtt_username || mqttUser(c), c.password);
      document.getElementById("client-id-pattern").value = "";
      await loadCreds();
    } catch (e) {
      if (pattern && e.status === 400) {
        document.querySelector(".disclosure").open = true;
        R.fieldError("client-id-pattern", e.message);
      } else R.toast(e.message, "err");
    }
  }

  async function rotate(c, btn) {
    var ok = await R.confirm("Rotate " + mqttUser(c) + "?",
      "A new password replaces the current one at once. Clients using the old password are disconnected and cannot reconnect until they have the new one.", "Rotate password");
    if (!ok) return;
    try {
      var r = await R.busy(btn, R.api("POST", "/credentials/" + encodeURIComponent(plainUser(c)) + "/rotate"));
      credentialSecret("New password: copy it now", mqttUser(c), r.password);
    } catch (e) { R.toast(e.message, "err"); }
  }

  async function revoke(c, btn) {
    var ok = await R.confirm("Revoke " + mqttUser(c) + "?",
      "Its clients are disconnected at once and can never connect with it again. This cannot be undone.", "Revoke credential");
    if (!ok) return;
    try {
      await R.busy(btn, R.api("DELETE", "/credentials/" + encodeURIComponent(plainUser(c))));
      R.toast("Credential " + mqttUser(c) + " revoked");
      await loadCreds();
    } catch (e) { R.toast(e.message, "err"); }
  }

  // ------------------------------------------------------------------
  // API keys

  async function loadKeys() {
    var box = document.getElementById("keys-list");
    var keys;
    try {
      keys = R.list(await R.api("GET", "/apikeys?app=" + encodeURIComponent(app)), "api_keys")
        .filter(function (k) { return !k.app || k.app === app; });
    } catch (e) { R.replace(box, R.errorBox(e)); return; }
    if (!keys.length) {
      R.replace(box, R.empty("key", "No API keys",
        "Create one for each backend that publishes to your devices or reads their data over HTTP."));
      return;
    }
    R.replace(box, h("div", { class: "table-wrap" }, R.table([
      { label: "Key", cell: function (k) { return h("span", { class: "mono strong" }, k.prefix + ".••••••••"); } },
      { label: "Scope", cell: function (k) { return k.scope === "admin" ? R.pill("Admin", "warn") : R.pill("Publish", ""); } },
      { label: "Created", cell: function (k) { return R.timeEl(k.created_at, R.dateTime(k.created_at)); } },
      { label: "Status", cell: function (k) { return k.revoked ? R.pill("Revoked", "err") : R.pill("Active", "ok"); } },
      { label: "", class: "actions", cell: function (k) {
        return k.revoked ? null : h("button", { type: "button", class: "btn btn-danger btn-sm", "data-revoke-key": k.prefix, onclick: function (ev) { revokeKey(k, ev.currentTarget); } }, "Revoke");
      } },
    ], keys)));
  }

  async function createKey(btn) {
    try {
      var scope = document.getElementById("key-scope").value;
      if (scope === "admin" && !(await R.confirm("Create an admin key?",
        "An admin key can also create credentials and keys and change access rules for the whole tenant. Give it only to backends that manage the tenant.", "Create admin key"))) return;
      var k = await R.busy(btn, R.api("POST", "/apikeys", { app: app, scope: scope }));
      var curl = "curl -X POST " + location.origin + "/api/v1/publish \\\n" +
        "  -H 'Authorization: Bearer " + k.key + "' \\\n" +
        "  -H 'Content-Type: application/json' \\\n" +
        "  -d '{\"topic\": \"devices/demo/cmd\", \"payload\": \"hello\", \"qos\": 1}'";
      showSecret((k.scope === "admin" ? "Admin" : "Publish") + " API key created: copy it now", [secretRow("API key", "secret-key", k.key, true)],
        h("pre", { class: "code" }, h("code", { id: "secret-curl" }, curl),
          h("button", { type: "button", class: "copy", "data-copy": "#secret-curl", "aria-label": "Copy command" }, R.icon("copy"))));
      await loadKeys();
    } catch (e) { R.toast(e.message, "err"); }
  }

  async function revokeKey(k, btn) {
    var ok = await R.confirm("Revoke key " + k.prefix + "?", "Requests with this key are refused from now on. This cannot be undone.", "Revoke key");
    if (!ok) return;
    try {
      await R.busy(btn, R.api("DELETE", "/apikeys/" + encodeURIComponent(k.prefix)));
      R.toast("API key revoked");
      await loadKeys();
    } catch (e) { R.toast(e.message, "err"); }
  }

  // ------------------------------------------------------------------
  // Access rules

  var actionNames = { publish: "Publish", subscribe: "Subscribe", all: "Publish & subscribe", pubsub: "Publish & subscribe" };

  function subjectsOfApp() {
    var s = { };
    s["app:" + app] = true;
    creds.forEach(function (c) { s["cred:" + plainUser(c)] = true; });
    return s;
  }

  function fillSubjects() {
    var sel = document.getElementById("acl-subject");
    var keep = sel.value;
    R.replace(sel, [h("option", { value: "app:" + app }, "Every credential of the app")].concat(
      creds.filter(function (c) { return !c.revoked; }).map(function (c) {
        return h("option", { value: "cred:" + plainUser(c) }, "Only " + mqttUser(c));
      })));
    sel.value = keep || "app:" + app;
    if (!sel.value) sel.value = "app:" + app;
  }

  function subjectLabel(s) {
    if (s === "app:" + app) return h("span", {}, "Every credential");
    if (s.indexOf("cred:") === 0) return h("span", { class: "mono" }, s.slice(5) + "@" + R.tenant);
    return h("span", { class: "mono" }, s);
  }

  async function loadRules() {
    var box = document.getElementById("acl-list");
    var rules;
    try {
      rules = R.list(await R.api("GET", "/acl"), "rules");
    } catch (e) { R.replace(box, R.errorBox(e)); return; }
    var mine = subjectsOfApp();
    rules = rules.filter(function (r) { return mine[r.subject]; });
    if (!rules.length) {
      R.replace(box, R.empty("shield", "No rules: nothing is allowed",
        "This app's clients can connect but not publish or subscribe. Add an allow rule below, such as publish & subscribe on devices/%c/#."));
      return;
    }
    R.replace(box, h("div", { class: "table-wrap" }, R.table([
      { label: "Applies to", cell: function (r) { return subjectLabel(r.subject); } },
      { label: "Effect", cell: function (r) { return r.effect === "deny" ? R.pill("Deny", "err") : R.pill("Allow", "ok"); } },
      { label: "Action", cell: function (r) { return actionNames[r.action] || r.action; } },
      { label: "Topic filter", cell: function (r) { return h("span", { class: "mono strong" }, r.filter); } },
      { label: "", class: "actions", cell: function (r) {
        return h("button", { type: "button", class: "btn btn-ghost btn-sm link-danger", "aria-label": "Remove rule " + r.effect + " " + r.action + " " + r.filter, onclick: function (ev) { removeRule(r, ev.currentTarget); } }, "Remove");
      } },
    ], rules, { row: function (r) { return { "data-filter": r.filter }; } })));
  }

  async function removeRule(r, btn) {
    var ok = await R.confirm("Remove this rule?", (r.effect === "deny" ? "Deny " : "Allow ") + (actionNames[r.action] || r.action).toLowerCase() + " on " + r.filter + ". Connected clients get the change within a second.", "Remove rule");
    if (!ok) return;
    try {
      await R.busy(btn, R.api("DELETE", "/acl", { subject: r.subject, effect: r.effect, action: r.action, filter: r.filter }));
      R.toast("Rule removed");
      await loadRules();
    } catch (e) { R.toast(e.message, "err"); }
  }

  async function addRule(ev) {
    ev.preventDefault();
    var rule = {
      subject: document.getElementById("acl-subject").value,
      effect: document.getElementById("acl-effect").value,
      action: document.getElementById("acl-action").value,
      filter: document.getElementById("acl-filter").value.trim(),
    };
    var msg = R.filterError(rule.filter, true);
    if (msg) { R.fieldError("acl-filter", msg); return; }
    R.fieldError("acl-filter", "");
    try {
      await R.busy(document.getElementById("acl-add"), R.api("POST", "/acl", rule));
      document.getElementById("acl-filter").value = "";
      R.toast("Rule added: connected clients get it within a second");
      await loadRules();
    } catch (e) {
      if (e.status === 400 && (!e.field || e.field === "filter")) R.fieldError("acl-filter", e.message);
      else if (e.status === 409) R.fieldError("acl-filter", "This rule exists already.");
      else R.toast(e.message, "err");
    }
  }

  document.addEventListener("DOMContentLoaded", async function () {
    app = document.getElementById("app-root").getAttribute("data-app");
    document.getElementById("secret-dismiss").addEventListener("click", hideSecret);
    document.getElementById("issue-credential").addEventListener("click", function (ev) { issue(ev.currentTarget); });
    document.getElementById("create-key").addEventListener("click", function (ev) { createKey(ev.currentTarget); });
    document.getElementById("acl-form").addEventListener("submit", addRule);
    document.getElementById("acl-filter").addEventListener("input", function () {
      if (document.getElementById("acl-filter").getAttribute("aria-invalid")) {
        var m = R.filterError(document.getElementById("acl-filter").value.trim(), true);
        if (!m) R.fieldError("acl-filter", "");
      }
    });
    loadKeys();
    await loadCreds();
    loadRules();
  });
})();
