// Apps: list and create.
"use strict";
(function () {
  var R = window.Relay, h = R.h;

  async function load() {
    var box = document.getElementById("apps-list");
    var res = await Promise.allSettled([R.api("GET", "/apps"), R.api("GET", "/credentials"), R.api("GET", "/apikeys")]);
    if (res[0].status === "rejected") { R.replace(box, R.errorBox(res[0].reason)); return; }
    var apps = R.list(res[0].value, "apps");
    var creds = res[1].status === "fulfilled" ? R.list(res[1].value, "credentials") : [];
    var keys = res[2].status === "fulfilled" ? R.list(res[2].value, "api_keys") : [];
    if (!apps.length) {
      R.replace(box, R.empty("apps", "Create your first app",
        "Name it after what connects: \u201csensors\u201d, \u201cmobile\u201d, \u201cbackend\u201d. You then issue credentials for its devices and API keys for its servers.",
        h("button", { class: "btn btn-primary", type: "button", onclick: function () { document.getElementById("app-name").focus(); } }, "Name your app")));
      return;
    }
    R.replace(box, apps.map(function (a) {
      var nc = creds.filter(function (c) { return c.app === a.name && !c.revoked; }).length;
      var nk = keys.filter(function (k) { return k.app === a.name && !k.revoked; }).length;
      return h("a", { class: "app-tile", href: "/apps/" + encodeURIComponent(a.name), "data-app": a.name },
        h("div", { class: "app-tile-head" }, h("div", { class: "app-badge", "aria-hidden": "true" }, a.name.slice(0, 1)),
          h("div", {}, h("div", { class: "app-tile-name" }, a.name), h("div", { class: "cell-sub" }, "Created " + R.date(a.created_at)))),
        h("div", { class: "app-tile-meta" },
          h("span", {}, R.num(nc) + (nc === 1 ? " credential" : " credentials")),
          h("span", {}, R.num(nk) + (nk === 1 ? " API key" : " API keys"))));
    }));
  }

  document.addEventListener("DOMContentLoaded", function () {
    load();
    document.getElementById("new-app").addEventListener("submit", async function (ev) {
      ev.preventDefault();
      var input = document.getElementById("app-name");
      var name = input.value.trim();
      if (!/^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/.test(name)) {
        R.fieldError("app-name", name ? "Use letters, digits, - and _ (starting with a letter or digit), at most 63 characters." : "Enter a name for the app.");
        return;
      }
      R.fieldError("app-name", "");
      try {
        await R.busy(document.getElementById("create-app"), R.api("POST", "/apps", { name: name }));
        R.toast("App " + name + " created");
        location.href = "/apps/" + encodeURIComponent(name);
      } catch (e) {
        R.fieldError("app-name", e.status === 409 ? "You already have an app called " + name + "." : e.message);
      }
    });
  });
})();
