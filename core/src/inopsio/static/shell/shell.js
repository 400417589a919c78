// Inopsio web shell: JSON forms against the API, CSRF for htmx, toasts, notifications, tenant switcher.
// Plain script, no build step. Every change a page makes goes through the JSON API (/api/v1/...).
(function () {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : null;
  }

  function toast(text, kind) {
    var box = document.getElementById("toasts");
    if (!box) return;
    var item = document.createElement("div");
    item.className = "toast toast-" + (kind || "success");
    item.textContent = text;
    box.appendChild(item);
    setTimeout(function () { item.remove(); }, 6000);
  }
  window.inopsioToast = toast;

  // Every unsafe request carries the session's CSRF token (htmx and our own fetches).
  document.addEventListener("htmx:configRequest", function (event) {
    var token = csrfToken();
    if (token) event.detail.headers["X-CSRF-Token"] = token;
  });

  async function api(method, url, body) {
    var headers = { "Accept": "application/json" };
    var token = csrfToken();
    if (token && method !== "GET") headers["X-CSRF-Token"] = token;
    var init = { method: method, headers: headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    var response = await fetch(url, init);
    var data = null;
    var text = await response.text();
    if (text) {
      try { data = JSON.parse(text); } catch (e) { data = { detail: text }; }
    }
    return { ok: response.ok, status: response.status, data: data };
  }
  window.inopsioApi = api;

  function setPath(target, path, value) {
    var keys = path.split(".");
    var node = target;
    for (var i = 0; i < keys.length - 1; i++) {
      node[keys[i]] = node[keys[i]] || {};
      node = node[keys[i]];
    }
    node[keys[keys.length - 1]] = value;
  }

  // A form's fields as JSON: numbers stay numbers, checkboxes with data-bool are booleans, fields with
  // data-list (checkbox groups, multiple selects) are arrays, empty data-optional fields are left out,
  // empty data-null fields are sent as null (clearing a value in a PATCH), "a.b" names nest.
  function formJson(form) {
    var body = {};
    var lists = {};
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name || el.disabled || el.type === "submit" || el.type === "button" || el.hasAttribute("data-path-only")) return;
      if (el.hasAttribute("data-list")) {
        lists[el.name] = lists[el.name] || [];
        if (el.tagName === "SELECT") {
          Array.prototype.forEach.call(el.selectedOptions, function (o) { lists[el.name].push(o.value); });
        } else if (el.checked) {
          lists[el.name].push(el.value);
        }
        return;
      }
      if (el.type === "checkbox") { setPath(body, el.name, el.checked); return; }
      if (el.type === "radio" && !el.checked) return;  // a radio group sends its chosen value only
      var value = el.value;
      if (value === "" && el.hasAttribute("data-optional")) return;
      if (value === "" && el.hasAttribute("data-null")) { setPath(body, el.name, null); return; }
      if (el.type === "number" && value !== "") value = Number(value);
      setPath(body, el.name, value);
    });
    Object.keys(lists).forEach(function (name) { setPath(body, name, lists[name]); });
    var all = form.querySelector("[data-all-modules]");
    if (all) {
      var enabled = body.enabled_modules || [];
      body.disabled_modules = all.value.split(",").filter(function (m) { return m && enabled.indexOf(m) < 0; });
      delete body.enabled_modules;
    }
    return body;
  }

  function clearErrors(form) {
    form.querySelectorAll("[aria-invalid]").forEach(function (el) { el.removeAttribute("aria-invalid"); });
    form.querySelectorAll(".field-error").forEach(function (el) { el.remove(); });
    var alert = form.querySelector("[role=alert]");
    if (alert) { alert.hidden = true; alert.textContent = ""; }
  }

  // RFC 9457 problem: the detail in the form's alert, each field error under its field.
  function showProblem(form, problem) {
    var alert = form.querySelector("[role=alert]");
    var detail = (problem && (problem.detail || problem.title)) || "Something went wrong. Try again.";
    var errors = (problem && problem.errors) || [];
    var first = null;
    errors.forEach(function (err) {
      if (err.source === "query") return;
      // A JSON pointer ("/custom/industry") names the field "custom.industry", as "a.b" names nest.
      var pointer = err.pointer ? String(err.pointer).replace(/^\//, "").split("/").join(".") : "";
      var name = String(err.field || err.key || pointer).replace(/^\$\./, "").replace(/^body\./, "");
      var field = name && form.querySelector('[name="' + CSS.escape(name) + '"]');
      if (!field) return;
      field.setAttribute("aria-invalid", "true");
      var note = document.getElementById((field.id || name) + "-error");
      if (note) {  // a second error of the same field joins the first
        note.textContent += "; " + (err.message || err.detail || "Invalid value.");
        return;
      }
      note = document.createElement("p");
      note.className = "field-error";
      note.id = (field.id || name) + "-error";
      note.textContent = err.message || err.detail || "Invalid value.";
      field.setAttribute("aria-describedby", note.id);
      field.insertAdjacentElement("afterend", note);
      first = first || field;
    });
    if (alert) { alert.textContent = detail; alert.hidden = false; }
    (first || alert || form).focus && (first || form.querySelector("input,select,textarea")).focus();
  }

  async function submitForm(form) {
    clearErrors(form);
    var method = (form.getAttribute("data-method") || "POST").toUpperCase();
    var body = formJson(form);
    var url = form.getAttribute("data-api");
    var template = form.getAttribute("data-api-template");
    if (template) {
      url = template.replace(/\{(\w+)\}/g, function (_, key) {
        var field = form.querySelector('[name="' + key + '"]');
        return encodeURIComponent(field ? field.value : "");
      });
    }
    var button = form.querySelector("[type=submit]");
    if (button) button.disabled = true;
    try {
      var result = await api(method, url, method === "GET" ? undefined : body);
      if (!result.ok) {
        // Problem types are URNs (urn:inopsio:problem:totp-required): the code is the last part.
        var code = result.data && result.data.type ? String(result.data.type).split(/[:/]/).pop() : "";
        var reveal = code && form.querySelector('[data-reveal-on="' + code + '"]');
        if (reveal && reveal.hidden) {
          reveal.hidden = false;
          var input = reveal.querySelector("input");
          if (input) input.focus();
          return;
        }
        showProblem(form, result.data);
        return;
      }
      afterSuccess(form, result.data, body);
    } catch (e) {
      showProblem(form, { detail: "The server could not be reached. Check your connection and try again." });
    } finally {
      if (button) button.disabled = false;
    }
  }

  // A message for the next page this browser shows (read once by the server, like its own flashes).
  function flashNext(text) {
    document.cookie = "inopsio_flash=" + encodeURIComponent(JSON.stringify([{ kind: "success", text: text }])) + "; path=/; max-age=60; samesite=lax";
  }

  function afterSuccess(el, data, body) {
    var success = el.getAttribute("data-success");
    var done = el.getAttribute("data-done");
    if (done) {
      // The form gives way to what comes next (sign-up: "check your mailbox"); [data-answer] nodes
      // show fields of the API's answer.
      var panel = document.querySelector(done);
      panel.querySelectorAll("[data-answer]").forEach(function (node) {
        var value = data ? data[node.getAttribute("data-answer")] : null;
        node.textContent = value == null ? "" : String(value);
      });
      el.hidden = true;
      panel.hidden = false;
      panel.focus();
      return;
    }
    var redirect = el.getAttribute("data-redirect");
    if (redirect) {
      // "/crm/contacts/{contact.id}": placeholders filled from the API's answer (ids of what it created).
      redirect = redirect.replace(/\{([\w.]+)\}/g, function (whole, path) {
        var value = path.split(".").reduce(function (node, key) { return node == null ? node : node[key]; }, data);
        return value == null ? whole : encodeURIComponent(String(value));
      });
      if (success) flashNext(success);
      window.location.assign(redirect);
      return;
    }
    if (el.hasAttribute("data-totp-start") && data) {
      var box = document.getElementById("totp-enrol");
      document.getElementById("totp-qr").src = data.qr_svg;
      document.getElementById("totp-secret").textContent = data.secret;
      box.hidden = false;
      el.hidden = true;
      box.querySelector("input").focus();
      return;
    }
    var codesTarget = el.getAttribute("data-show-codes");
    if (codesTarget && data && data.recovery_codes) {
      var panel = document.querySelector(codesTarget);
      var list = panel.querySelector("ul");
      list.textContent = "";
      data.recovery_codes.forEach(function (c) {
        var li = document.createElement("li");
        li.textContent = c;
        list.appendChild(li);
      });
      panel.hidden = false;
      var enrol = document.getElementById("totp-enrol");
      if (enrol) enrol.hidden = true;
      toast("Two-factor authentication is on.");
      return;
    }
    var keyTarget = el.getAttribute("data-show-key");
    if (keyTarget && data && data.key) {
      var p = document.querySelector(keyTarget);
      p.querySelector("code").textContent = data.key;
      p.hidden = false;
    }
    if (success) {
      if (el.hasAttribute("data-reload")) {
        flashNext(success);
      } else {
        toast(success);
      }
    }
    if (el.hasAttribute("data-reset") && el.reset) el.reset();
    if (el.hasAttribute("data-reload")) window.location.reload();
  }

  // A file upload: multipart to the API, same error and success handling as a JSON form.
  async function uploadForm(form) {
    clearErrors(form);
    var headers = { "Accept": "application/json" };
    var token = csrfToken();
    if (token) headers["X-CSRF-Token"] = token;
    var button = form.querySelector("[type=submit]");
    if (button) button.disabled = true;
    try {
      var response = await fetch(form.getAttribute("data-upload"), {
        method: "POST", headers: headers, body: new FormData(form), credentials: "same-origin",
      });
      var data = null;
      try { data = await response.json(); } catch (e) { data = null; }
      if (!response.ok) { showProblem(form, data); return; }
      afterSuccess(form, data, null);
    } catch (e) {
      showProblem(form, { detail: "The server could not be reached. Check your connection and try again." });
    } finally {
      if (button) button.disabled = false;
    }
  }

  // For a page's own script that posts a form its own way (the CRM import wizard): the same JSON,
  // the same error display.
  window.inopsioForms = { json: formJson, showProblem: showProblem, clearErrors: clearErrors, flashNext: flashNext };

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    if (form.hasAttribute("data-upload")) {
      event.preventDefault();
      uploadForm(form);
      return;
    }
    if (!form.hasAttribute("data-api") && !form.hasAttribute("data-api-template")) return;
    event.preventDefault();
    submitForm(form);
  });

  document.addEventListener("click", async function (event) {
    var target = event.target instanceof Element ? event.target.closest("[data-api-call],[data-toggle],[data-logout]") : null;
    if (!target) return;
    if (target.hasAttribute("data-toggle")) {
      var shown = document.querySelector(target.getAttribute("data-toggle"));
      if (shown) { shown.hidden = !shown.hidden; var i = shown.querySelector("input"); if (i && !shown.hidden) i.focus(); }
      return;
    }
    if (target.hasAttribute("data-logout")) {
      await api("POST", "/api/v1/auth/web-logout");
      window.location.assign("/login");
      return;
    }
    var question = target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) return;
    target.disabled = true;
    var result = await api((target.getAttribute("data-method") || "POST").toUpperCase(), target.getAttribute("data-api-call"));
    target.disabled = false;
    if (!result.ok) {
      toast((result.data && result.data.detail) || "That did not work.", "error");
      return;
    }
    afterSuccess(target, result.data, null);
  });

  // Tenant switcher: each workspace lives on its own address.
  document.addEventListener("change", function (event) {
    var select = event.target;
    if (!(select instanceof HTMLSelectElement) || !select.hasAttribute("data-tenant-switcher")) return;
    var host = window.location.host.split(".");
    host[0] = select.value;
    window.location.assign(window.location.protocol + "//" + host.join(".") + "/");
  });

  // Notifications: the recent list, then live over the WebSocket.
  function renderNotification(list, note, fresh) {
    var empty = list.querySelector(".muted");
    if (empty) empty.remove();
    var li = document.createElement("li");
    li.className = "notification notification-" + (note.level || "info");
    var title = document.createElement(note.link ? "a" : "strong");
    if (note.link) title.href = note.link;
    title.textContent = note.title;
    li.appendChild(title);
    if (note.body) { var p = document.createElement("p"); p.textContent = note.body; li.appendChild(p); }
    if (fresh) list.prepend(li); else list.appendChild(li);
  }

  function startNotifications() {
    var list = document.getElementById("notifications-list");
    var button = document.getElementById("notifications-button");
    if (!list || !button) return;
    var panel = document.getElementById("notifications-panel");
    var badge = document.getElementById("notifications-count");
    var unseen = 0;
    button.addEventListener("click", function () {
      panel.hidden = !panel.hidden;
      button.setAttribute("aria-expanded", String(!panel.hidden));
      unseen = 0; badge.hidden = true;
    });
    document.addEventListener("keydown", function (e) {
      if (e.key === "Escape" && !panel.hidden) { panel.hidden = true; button.setAttribute("aria-expanded", "false"); button.focus(); }
    });
    api("GET", list.getAttribute("data-url")).then(function (r) {
      if (r.ok && r.data) r.data.forEach(function (n) { renderNotification(list, n, false); });
    });
    var last = null;
    var topics = ["kernel.notification.created"];
    var current = null;
    // A module's page follows its own events: inopsioSubscribe(["crm.deal.*"]); they arrive as
    // "inopsio:event" DOM events. Kept across reconnects, which catch up from the last event seen.
    window.inopsioSubscribe = function (more) {
      more.forEach(function (t) { if (topics.indexOf(t) < 0) topics.push(t); });
      if (current && current.readyState === WebSocket.OPEN) {
        current.send(JSON.stringify({ op: "subscribe", topics: more }));
      }
    };
    function connect(delay) {
      var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
      var socket = new WebSocket(scheme + window.location.host + "/api/v1/ws");
      current = socket;
      socket.onopen = function () {
        var msg = { op: "subscribe", topics: topics.slice() };
        if (last) msg.since = last;
        socket.send(JSON.stringify(msg));
        delay = 1000;
      };
      socket.onmessage = function (message) {
        var data = JSON.parse(message.data);
        if (data.op === "subscribed") {
          window.inopsioFollowing = data.following;
          document.dispatchEvent(new CustomEvent("inopsio:subscribed", { detail: data.following }));
        }
        if (data.op !== "event") {
          return;
        }
        last = data.event.id;
        if (data.event.type === "kernel.notification.created") {
          renderNotification(list, data.event.data, true);
          unseen += 1; badge.textContent = String(unseen); badge.hidden = false;
          toast(data.event.data.title, data.event.data.level === "error" ? "error" : "info");
        }
        document.dispatchEvent(new CustomEvent("inopsio:event", { detail: data.event }));
      };
      socket.onclose = function (event) {
        // Refused (4400 bad request, 4401, 4403, 4404): retrying cannot help, so do not hammer. Too
        // slow (4408) reconnects and catches up with since; rate-limited (4429) retries after the backoff.
        if (event.code >= 4400 && event.code < 4500 && event.code !== 4408 && event.code !== 4429) return;
        setTimeout(function () { connect(Math.min((delay || 1000) * 2, 30000)); }, delay || 1000);
      };
      window.inopsioSocket = socket;
    }
    connect(1000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    startNotifications();
    document.querySelectorAll("form[data-auto-submit]").forEach(function (form) { submitForm(form); });
    setTimeout(function () {
      document.querySelectorAll("#toasts .toast").forEach(function (t) { t.remove(); });
    }, 6000);
  });
})();
