// Overview: live counts, and the connect panel filled with a real
// username once the tenant has a credential.
"use strict";
(function () {
  var R = window.Relay;

  function set(id, v, sub) {
    var el = document.getElementById(id);
    if (el) el.textContent = v;
    if (sub !== undefined) {
      var s = document.getElementById(id + "-sub");
      if (s) s.textContent = sub;
    }
  }

  async function counts() {
    var results = await Promise.allSettled([
      R.api("GET", "/clients"),
      R.api("GET", "/topics"),
      R.api("GET", "/metrics?minutes=60"),
    ]);
    if (results[0].status === "fulfilled") {
      var cs = R.list(results[0].value, "clients");
      var nodes = {};
      cs.forEach(function (c) { if (c.node) nodes[c.node] = true; });
      var n = Object.keys(nodes).length;
      set("stat-clients", R.num(cs.length), cs.length ? "on " + n + (n === 1 ? " edge node" : " edge nodes") : "none yet");
    }
    if (results[1].status === "fulfilled") {
      var ts = R.list(results[1].value, "topics");
      var subs = ts.reduce(function (a, t) { return a + (t.subscribers || 0); }, 0);
      set("stat-topics", R.num(ts.length), R.num(subs) + (subs === 1 ? " subscription" : " subscriptions"));
    }
    if (results[2].status === "fulfilled") {
      var m = results[2].value || {};
      var samples = m.samples || [];
      var sum = function (k) { return samples.reduce(function (a, s) { return a + (s[k] || 0); }, 0); };
      var last = samples.length ? samples[samples.length - 1] : null;
      var ts = samples.map(function (s) { return R.toDate(s.t).getTime(); });
      var per = ts.length > 1 ? (ts[ts.length - 1] - ts[0]) / 1000 / (ts.length - 1) : 0;
      if (!(per > 0)) per = m.interval_s || 60;
      set("stat-in", R.compact(sum("messages_in")), last ? R.compact((last.messages_in || 0) / per) + " /s now" : "\u00a0");
      set("stat-out", R.compact(sum("messages_out")), last ? R.compact((last.messages_out || 0) / per) + " /s now" : "\u00a0");
    }
  }

  async function credentials() {
    try {
      var creds = R.list(await R.api("GET", "/credentials"), "credentials").filter(function (c) { return !c.revoked; });
      var state = document.getElementById("step-cred-state");
      if (!creds.length) return;
      var c = creds[0];
      var user = c.mqtt_username || (c.username + "@" + R.tenant);
      R.$$(".js-user").forEach(function (el) { el.textContent = user; });
      document.getElementById("step-cred").classList.add("done");
      state.textContent = "✓ You have " + creds.length + (creds.length === 1 ? " credential" : " credentials") +
        ". The commands below use " + user + ".";
    } catch (e) { /* the placeholders stay */ }
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (new URLSearchParams(location.search).get("welcome")) {
      document.getElementById("welcome").hidden = false;
      history.replaceState(null, "", location.pathname);
    }
    credentials();
    R.poll(counts, 5000);
  });
})();
