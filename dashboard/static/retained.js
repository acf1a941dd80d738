// Retained messages: browse by filter, view as text / JSON / hex, set,
// delete.
"use strict";
(function () {
  var R = window.Relay, h = R.h;
  var selected = null;

  async function browse() {
    var box = document.getElementById("retained-list");
    var filter = document.getElementById("browse-filter").value.trim() || "#";
    var msg = R.filterError(filter, false);
    if (msg) { R.fieldError("browse-filter", msg); return; }
    R.fieldError("browse-filter", "");
    var list;
    try {
      list = R.list(await R.api("GET", "/retained?limit=500&filter=" + encodeURIComponent(filter)), "messages");
    } catch (e) {
      if (e.status === 400) R.fieldError("browse-filter", e.message);
      else R.replace(box, R.errorBox(e));
      return;
    }
    if (!list.length) {
      R.replace(box, R.empty("retained", filter === "#" ? "No retained messages" : "Nothing retained under " + filter,
        "A message published with the retain flag stays on its topic and goes to every new subscriber first: device configuration, last known state. Set one on the right."));
      return;
    }
    list.sort(function (a, b) { return a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : 0; });
    R.replace(box, R.table([
      { label: "Topic", cell: function (m) { return h("button", { type: "button", class: "link-btn mono", onclick: function () { show(m); } }, m.topic); } },
      { label: "Size", class: "num", cell: function (m) { return R.bytes(m.payload_size || 0); } },
      { label: "QoS", class: "num", cell: function (m) { return String(m.qos || 0); } },
      { label: "Stored", cell: function (m) { return m.published_at ? R.timeEl(m.published_at, R.ago(m.published_at)) : "–"; } },
    ], list, { row: function (m) { return { "data-topic": m.topic, class: selected && selected.topic === m.topic ? "selected clickable" : "clickable" }; } }));
    R.$$("#retained-list tbody tr").forEach(function (tr, i) {
      tr.addEventListener("click", function (ev) { if (!ev.target.closest("button")) show(list[i]); });
    });
  }

  async function show(m) {
    // The list holds summaries (size, a short preview): fetch the payload.
    try {
      var one = await R.api("GET", "/retained/message?topic=" + encodeURIComponent(m.topic));
      if (!one || !one.topic) return;
      m = one;
    } catch (e) {
      if (e.status === 404) { R.toast("That message is gone", "err"); browse(); }
      else R.toast(e.message, "err");
      return;
    }
    selected = m;
    R.$$("#retained-list tbody tr").forEach(function (tr) { tr.classList.toggle("selected", tr.getAttribute("data-topic") === m.topic); });
    var b = R.b64bytes(m.payload);
    var text = R.utf8(b);
    var pretty = R.prettyJSON(text);
    document.getElementById("viewer-title").textContent = m.topic;
    document.getElementById("viewer-sub").textContent = R.bytes(b.length) + " · QoS " + (m.qos || 0) + (m.published_at ? " · stored " + R.dateTime(m.published_at) : "");
    document.getElementById("payload-text").textContent = text === null ? "(binary payload: see Hex)" : (text || "(empty)");
    document.getElementById("payload-json").textContent = pretty === null ? "(not JSON)" : pretty;
    document.getElementById("payload-hex").textContent = R.hexdump(b);
    document.getElementById("viewer-body").hidden = false;
    document.getElementById("viewer-delete").hidden = false;
    // Open JSON by default when it is JSON.
    var tab = document.getElementById(pretty !== null && pretty !== text ? "tab-json" : "tab-text");
    tab.click();
    document.getElementById("set-topic").value = m.topic;
  }

  async function del(btn) {
    if (!selected) return;
    var t = selected.topic;
    var ok = await R.confirm("Delete the retained message on " + t + "?", "New subscribers will no longer receive it. Devices that already have it keep their copy.", "Delete");
    if (!ok) return;
    try {
      await R.busy(btn, R.api("DELETE", "/retained/message?topic=" + encodeURIComponent(t)));
      R.toast("Retained message on " + t + " deleted");
      selected = null;
      document.getElementById("viewer-body").hidden = true;
      document.getElementById("viewer-delete").hidden = true;
      document.getElementById("viewer-title").textContent = "Message";
      document.getElementById("viewer-sub").textContent = "Select a topic on the left to see its payload.";
      await browse();
    } catch (e) { R.toast(e.message, "err"); }
  }

  async function set(ev) {
    ev.preventDefault();
    var topic = document.getElementById("set-topic").value.trim();
    var msg = R.topicError(topic);
    if (msg) { R.fieldError("set-topic", msg); return; }
    R.fieldError("set-topic", "");
    var body = { topic: topic, payload: document.getElementById("set-payload").value, payload_encoding: "plain", qos: parseInt(document.getElementById("set-qos").value, 10) };
    try {
      await R.busy(document.getElementById("set-submit"), R.api("PUT", "/retained/message?topic=" + encodeURIComponent(topic), body));
      R.toast(body.payload === "" ? "Retained message on " + topic + " cleared" : "Retained message saved on " + topic);
      await browse();
      if (body.payload !== "") show({ topic: topic });
    } catch (e) {
      if (e.status === 400) R.fieldError("set-topic", e.message);
      else R.toast(e.message, "err");
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.getElementById("browse-form").addEventListener("submit", function (ev) { ev.preventDefault(); browse(); });
    document.getElementById("viewer-delete").addEventListener("click", function (ev) { del(ev.currentTarget); });
    document.getElementById("set-form").addEventListener("submit", set);
    browse();
  });
})();
