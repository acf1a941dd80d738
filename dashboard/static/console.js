// Console: publish, and watch a topic filter live (server-sent events
// from /api/v1/watch).
"use strict";
(function () {
  var R = window.Relay, h = R.h;
  var source = null;
  var maxMessages = 200;

  async function publish(ev) {
    ev.preventDefault();
    var topic = document.getElementById("pub-topic").value.trim();
    var msg = R.topicError(topic);
    if (msg) { R.fieldError("pub-topic", msg); return; }
    R.fieldError("pub-topic", "");
    var result = document.getElementById("pub-result");
    result.className = "result";
    result.textContent = "";
    var body = {
      topic: topic,
      payload: document.getElementById("pub-payload").value,
      payload_encoding: "plain",
      qos: parseInt(document.getElementById("pub-qos").value, 10),
      retain: document.getElementById("pub-retain").checked,
    };
    try {
      var r = await R.busy(document.getElementById("pub-submit"), R.request("POST", "/publish", body));
      var at = R.time(Date.now());
      if (r.status === 202 || (r.data && r.data.reason_code === 16)) {
        result.className = "result warn";
        result.textContent = "Published at " + at + ", but no subscriber matched " + topic + (body.retain ? " (it is retained for the next one)." : ".");
      } else {
        result.className = "result ok";
        result.textContent = "✓ Published at " + at + (body.qos > 0 ? ", stored durably" : "") + (body.retain ? ", retained" : "") + ".";
      }
    } catch (e) {
      if (e.status === 400) R.fieldError("pub-topic", e.message);
      else { result.className = "result err"; result.textContent = e.message; }
    }
  }

  function setWatching(on, text) {
    var st = document.getElementById("watch-state");
    st.hidden = !on && !text;
    st.className = "live" + (on ? "" : " paused");
    document.getElementById("watch-state-text").textContent = text || (on ? "Watching" : "Stopped");
    var btn = document.getElementById("watch-toggle");
    btn.textContent = on ? "Stop" : "Watch";
    btn.className = on ? "btn btn-secondary" : "btn btn-primary";
    document.getElementById("watch-filter").disabled = on;
  }

  function stop() {
    if (source) { source.close(); source = null; }
    setWatching(false);
  }

  function addMessage(m) {
    var list = document.getElementById("messages");
    document.getElementById("messages-empty").hidden = true;
    var text = m.payload_text;
    if (text === undefined || text === null) text = R.utf8(R.b64bytes(m.payload));
    var pretty = R.prettyJSON(text);
    var li = h("li", { class: "msg", "data-topic": m.topic },
      h("div", { class: "msg-head" },
        h("span", { class: "msg-topic" }, m.topic),
        h("span", { class: "tag" }, "QoS " + (m.qos || 0)),
        m.retain ? h("span", { class: "tag" }, "retained") : null,
        h("span", { class: "msg-time" }, R.time(Date.now()))),
      h("div", { class: "msg-body" }, text === null ? R.hexdump(R.b64bytes(m.payload)) : (pretty || text || "(empty)")));
    list.insertBefore(li, list.firstChild);
    while (list.children.length > maxMessages) list.removeChild(list.lastChild);
  }

  function start() {
    var filter = document.getElementById("watch-filter").value.trim();
    var msg = R.filterError(filter, false);
    if (msg) { R.fieldError("watch-filter", msg); return; }
    R.fieldError("watch-filter", "");
    stop();
    source = new EventSource("/api/v1/watch?filter=" + encodeURIComponent(filter));
    setWatching(true, "Connecting…");
    source.addEventListener("open", function () { setWatching(true, "Watching " + filter); });
    source.addEventListener("message", function (ev) {
      try { addMessage(JSON.parse(ev.data)); } catch (e) { /* ignore a malformed event */ }
    });
    source.addEventListener("error", function () {
      if (source && source.readyState === EventSource.CLOSED) {
        stop();
        R.fieldError("watch-filter", "The watch was refused or ended. Check the filter, or how many watches are open in other tabs, and try again.");
      } else if (source) {
        setWatching(true, "Reconnecting…");
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.getElementById("pub-form").addEventListener("submit", publish);
    document.getElementById("watch-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      if (source) stop(); else start();
    });
    document.getElementById("watch-clear").addEventListener("click", function () {
      R.replace("messages", null);
      document.getElementById("messages-empty").hidden = false;
    });
    var t = new URLSearchParams(location.search).get("topic");
    if (t) document.getElementById("pub-topic").value = t;
    setWatching(false);
    document.getElementById("watch-state").hidden = true;
    window.addEventListener("pagehide", stop);
  });
})();
