// The status page's one script (no build step). It keeps the credential in this tab's
// sessionStorage, sends it as the Authorization header on every call (htmx fragment loads,
// the live stream, the operator actions) and never puts it in a URL or a cookie.
// Server HTML comes from autoescaped templates; anything else (API answers) is set as
// textContent only.
(function () {
  "use strict";

  var TOKEN_KEY = "integration-service.token";
  var WATCHDOG_MS = 12000; // the server sends a comment line every 5 s
  var view = document.getElementById("view");
  var signin = document.getElementById("signin");
  var live = document.getElementById("live");
  var banner = document.getElementById("banner");
  var signout = document.getElementById("signout");
  var stream = null; // the AbortController of the open stream
  var retryMs = 1000;
  var retryTimer = null;
  var filterText = "";

  function token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function authHeaders() {
    var value = token();
    return value ? { Authorization: "Bearer " + value } : {};
  }

  function setLive(state, text) {
    live.dataset.state = state;
    live.textContent = text;
    banner.hidden = state !== "disconnected";
  }

  function route() {
    var match = /^#\/integrations\/([a-z0-9-]{1,63})$/.exec(location.hash);
    return match ? { kind: "detail", id: match[1] } : { kind: "overview" };
  }

  function showSignin(message) {
    closeStream();
    setLive("idle", "not connected");
    view.replaceChildren();
    signin.hidden = false;
    signout.hidden = true;
    document.getElementById("signin-error").textContent = message || "";
    document.getElementById("token").focus();
  }

  function load() {
    var where = route();
    var url = where.kind === "detail"
      ? "/ui/fragments/integrations/" + encodeURIComponent(where.id)
      : "/ui/fragments/overview";
    performance.mark("fragment-request");
    return htmx.ajax("GET", url, { target: "#view", swap: "innerHTML" });
  }

  document.body.addEventListener("htmx:configRequest", function (event) {
    Object.assign(event.detail.headers, authHeaders());
  });

  document.body.addEventListener("htmx:responseError", function (event) {
    var status = event.detail.xhr.status;
    if (status === 401) {
      var had = token() !== null;
      sessionStorage.removeItem(TOKEN_KEY);
      showSignin(had ? "Those credentials were refused. Sign in again." : "");
    } else if (status === 404) {
      view.replaceChildren(message("No such integration (or not one you may see)."));
    } else {
      view.replaceChildren(message("The control plane answered " + status + "."));
      reconnectLater();
    }
  });

  document.body.addEventListener("htmx:sendError", function () {
    setLive("disconnected", "disconnected");
    reconnectLater();
  });

  document.body.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target !== view) return;
    signin.hidden = true;
    signout.hidden = token() === null;
    var section = view.firstElementChild;
    if (!section || !section.dataset) return;
    if (section.id === "overview") {
      performance.mark("overview-rows"); // in the DOM; the next frame paints them
      requestAnimationFrame(function () {
        setTimeout(function () { performance.mark("overview-painted"); }, 0);
      });
      var filter = document.getElementById("filter");
      filter.value = filterText;
      filter.addEventListener("input", function () {
        filterText = filter.value;
        refilter();
      });
      recount();
      refilter();
    }
    openStream(section.dataset.version);
  });

  function message(text) {
    var p = document.createElement("p");
    p.className = "error";
    p.textContent = text;
    return p;
  }

  // --- the live stream: fetch() with the header, read as server-sent events ---------------

  function closeStream() {
    if (stream) stream.abort();
    stream = null;
    if (retryTimer) clearTimeout(retryTimer);
    retryTimer = null;
  }

  function reconnectLater() {
    if (retryTimer) return;
    retryTimer = setTimeout(function () {
      retryTimer = null;
      load();
    }, retryMs);
    retryMs = Math.min(retryMs * 2, 10000);
  }

  function openStream(since) {
    closeStream();
    var control = new AbortController();
    stream = control;
    setLive("connecting", "connecting…");
    var watchdog = null;
    function arm() {
      clearTimeout(watchdog);
      watchdog = setTimeout(function () { control.abort(); }, WATCHDOG_MS);
    }
    fetch("/ui/stream?since=" + encodeURIComponent(since || ""), {
      headers: authHeaders(),
      signal: control.signal,
      cache: "no-store",
    }).then(function (response) {
      if (response.status === 401) {
        sessionStorage.removeItem(TOKEN_KEY);
        showSignin("Those credentials were refused. Sign in again.");
        return null;
      }
      if (!response.ok || !response.body) throw new Error("HTTP " + response.status);
      setLive("live", "live");
      retryMs = 1000;
      arm();
      var reader = response.body.getReader();
      var decoder = new TextDecoder();
      var buffer = "";
      function pump() {
        return reader.read().then(function (chunk) {
          if (chunk.done) throw new Error("the stream ended");
          arm();
          buffer += decoder.decode(chunk.value, { stream: true });
          buffer = buffer.replace(/\r\n/g, "\n");
          var end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            dispatch(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
          }
          return pump();
        });
      }
      return pump();
    }).catch(function () {
      clearTimeout(watchdog);
      if (stream !== control) return; // closed on purpose (a new view, signed out)
      stream = null;
      setLive("disconnected", "disconnected");
      reconnectLater();
    });
  }

  function dispatch(block) {
    var event = "message";
    var data = [];
    block.split("\n").forEach(function (line) {
      if (line.startsWith(":")) return; // a ping
      var colon = line.indexOf(":");
      var field = colon < 0 ? line : line.slice(0, colon);
      var value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
    });
    if (event === "rows" && data.length) applyRows(JSON.parse(data.join("\n")));
  }

  // --- rows -------------------------------------------------------------------------------

  function parseRow(html) {
    var template = document.createElement("template");
    template.innerHTML = html; // server-rendered, autoescaped
    return template.content.firstElementChild;
  }

  function applyRows(payload) {
    var body = document.getElementById("rows");
    payload.upsert.forEach(function (item) {
      var fresh = parseRow(item.html);
      var old = document.getElementById("row-" + item.id);
      if (old) old.replaceWith(fresh);
      else if (body) body.appendChild(fresh);
    });
    payload.remove.forEach(function (id) {
      var old = document.getElementById("row-" + id);
      if (old && body && body.contains(old)) old.remove();
    });
    var section = view.firstElementChild;
    if (section && section.dataset) section.dataset.version = payload.version;
    if (body) {
      resort(body);
      recount();
      refilter();
    }
  }

  function resort(body) {
    var rows = Array.prototype.slice.call(body.rows);
    var sorted = rows.slice().sort(function (a, b) {
      var rank = Number(a.dataset.rank) - Number(b.dataset.rank);
      return rank || (a.dataset.id < b.dataset.id ? -1 : a.dataset.id > b.dataset.id ? 1 : 0);
    });
    if (sorted.some(function (row, i) { return row !== rows[i]; })) body.append.apply(body, sorted);
  }

  var COUNTED = [
    ["config", "Config", ["nacked", "pending", "acked", "disabled"]],
    ["health", "Health", ["unhealthy", "unknown", "healthy"]],
    ["breaker", "Breaker", ["open", "half_open", "closed", "unknown"]],
  ];

  function recount() {
    var counts = document.getElementById("counts");
    var body = document.getElementById("rows");
    if (!counts || !body) return;
    var parts = [];
    var total = body.rows.length;
    COUNTED.forEach(function (spec) {
      var group = document.createElement("span");
      group.className = "group";
      var label = document.createElement("b");
      label.textContent = spec[1];
      group.appendChild(label);
      spec[2].forEach(function (state) {
        var n = body.querySelectorAll("tr[data-" + spec[0] + '="' + state + '"]').length;
        if (!n) return;
        var badge = document.createElement("span");
        badge.className = "badge s-" + state;
        badge.dataset.count = spec[0] + ":" + state;
        badge.textContent = state.replace("_", "-") + " " + n;
        group.appendChild(badge);
      });
      parts.push(group);
    });
    var all = document.createElement("span");
    all.className = "group";
    all.textContent = total + " integration" + (total === 1 ? "" : "s");
    counts.replaceChildren.apply(counts, [all].concat(parts));
  }

  function refilter() {
    var body = document.getElementById("rows");
    if (!body) return;
    var needle = filterText.trim().toLowerCase();
    var shown = 0;
    Array.prototype.forEach.call(body.rows, function (row) {
      var hit = !needle || row.textContent.toLowerCase().indexOf(needle) >= 0
        || (row.dataset.config + " " + row.dataset.health + " " + row.dataset.breaker).indexOf(needle) >= 0;
      row.hidden = !hit;
      shown += hit ? 1 : 0;
    });
    var note = document.getElementById("shown");
    if (note) note.textContent = needle ? shown + " of " + body.rows.length + " shown" : "";
  }

  // --- operator actions: the API's own endpoints, its answer shown as text ---------------

  view.addEventListener("click", function (event) {
    var button = event.target.closest("button.action");
    if (!button) return;
    button.disabled = true;
    var box = document.getElementById("answer");
    var status = document.getElementById("answer-status");
    var body = document.getElementById("answer-body");
    status.textContent = button.textContent + ": waiting for the API…";
    body.textContent = "";
    box.hidden = false;
    fetch(button.dataset.path, { method: button.dataset.method, headers: authHeaders() })
      .then(function (response) {
        return response.text().then(function (text) {
          status.textContent = button.textContent + ": HTTP " + response.status + " " + response.statusText;
          try {
            body.textContent = JSON.stringify(JSON.parse(text), null, 2);
          } catch (err) {
            body.textContent = text;
          }
          box.dataset.status = String(response.status);
        });
      })
      .catch(function (err) {
        status.textContent = button.textContent + ": the control plane is not reachable (" + err.message + ")";
      })
      .finally(function () { button.disabled = false; });
  });

  // --- sign in / out ----------------------------------------------------------------------

  document.getElementById("signin-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var field = document.getElementById("token");
    var value = field.value.trim();
    field.value = "";
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    load();
  });

  signout.addEventListener("click", function () {
    sessionStorage.removeItem(TOKEN_KEY);
    showSignin("Signed out.");
  });

  window.addEventListener("hashchange", function () {
    if (signin.hidden) load();
  });

  // With authentication on and no credential yet, ask for one before any call (no 401 first).
  if (document.body.dataset.auth === "required" && token() === null) showSignin("");
  else load();
})();
