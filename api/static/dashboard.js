// The instructor dashboard's script: the sign-in form, panels refreshed from /dashboard/state every few seconds
// (with the page's filters), the instructor's actions (with a confirmation), sign-out. No library, no outside request.
(function () {
  "use strict";
  var JSON_HEADERS = {"content-type": "application/json", "accept": "application/json"};

  function post(url, body, csrf) {
    var headers = Object.assign({}, JSON_HEADERS);
    if (csrf) { headers["x-labctl-csrf"] = csrf; }
    return fetch(url, {method: "POST", credentials: "same-origin", headers: headers,
                       body: JSON.stringify(body || {})})
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (data) { return {ok: r.ok, status: r.status, data: data}; });
      });
  }

  // -- sign-in ------------------------------------------------------------------------------------------------------
  var login = document.getElementById("login-form");
  if (login) {
    var error = document.getElementById("login-error");
    login.addEventListener("submit", function (event) {
      event.preventDefault();
      error.textContent = "";
      var button = login.querySelector("button[type=submit]");
      button.disabled = true;
      post("/dashboard/login", {token: login.elements.token.value}).then(function (res) {
        if (res.ok) { window.location.assign(res.data.next || "/dashboard"); return; }
        error.textContent = res.data.detail || ("Signing in did not work (" + res.status + ").");
        login.elements.token.focus();
      }).catch(function () {
        error.textContent = "labctl could not be reached; try again in a moment.";
      }).then(function () { button.disabled = false; });
    });
    return;
  }

  // -- the dashboard ------------------------------------------------------------------------------------------------
  var dash = document.querySelector(".dash[data-query]");
  if (!dash) { return; }
  var query = dash.getAttribute("data-query");
  var csrf = (document.querySelector('meta[name="labctl-csrf"]') || {}).content || "";
  var announce = document.getElementById("announce");
  var POLL_MS = 5000;
  var timer = null;

  function say(text, isError) {
    announce.textContent = text;
    announce.classList.toggle("error", !!isError);
  }

  function toLogin() { window.location.assign("/dashboard/login?why=ended"); }

  function apply(state) {
    for (var name in state.panels) {
      var box = document.querySelector('[data-panel="' + name + '"]');
      if (box && box.innerHTML !== state.panels[name]) {
        var focused = document.activeElement && box.contains(document.activeElement) ? document.activeElement : null;
        var key = focused ? focused.getAttribute("aria-label") : null;
        box.innerHTML = state.panels[name];
        if (key) {  // keep the keyboard where it was when the panel is drawn again
          var again = box.querySelector('[aria-label="' + key.replace(/"/g, '\\"') + '"]');
          if (again) { again.focus(); }
        }
      }
    }
  }

  function refresh() {
    return fetch("/dashboard/state" + (query ? "?" + query : ""), {credentials: "same-origin",
                                                                  headers: {"accept": "application/json"}})
      .then(function (r) {
        if (r.status === 401 || r.status === 403) { toLogin(); return; }
        if (!r.ok) { return; }
        return r.json().then(apply);
      })
      .catch(function () { /* offline for a moment: the next poll tries again */ });
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(function () { refresh().then(schedule); }, document.hidden ? POLL_MS * 4 : POLL_MS);
  }

  var dialog = document.getElementById("confirm");
  var extendBox = document.getElementById("confirm-extend");
  function confirmFirst(text, withExtend) {
    return new Promise(function (resolve) {
      if (!dialog || typeof dialog.showModal !== "function") { resolve(window.confirm(text)); return; }
      document.getElementById("confirm-text").textContent = text;
      extendBox.hidden = !withExtend;
      dialog.returnValue = "";
      dialog.addEventListener("close", function onClose() {
        dialog.removeEventListener("close", onClose);
        resolve(dialog.returnValue === "ok");
      });
      dialog.showModal();
      var first = withExtend ? document.getElementById("extend-seconds") : dialog.querySelector("[data-confirm-ok]");
      if (first) { first.focus(); }
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-action]");
    if (!button) { return; }
    var action = button.getAttribute("data-action");
    var kind = button.getAttribute("data-kind");
    var requestId = button.getAttribute("data-request-id");
    var label = button.getAttribute("aria-label");
    confirmFirst(button.getAttribute("data-confirm"), kind === "extend").then(function (yes) {
      if (!yes) { button.focus(); return; }
      var body = {};
      if (kind === "extend") { body.seconds = parseInt(document.getElementById("extend-seconds").value, 10); }
      if (requestId) { body.request_id = requestId; }
      button.disabled = true;
      say("Working: " + label + "…");
      post("/dashboard/" + action, body, csrf).then(function (res) {
        if (res.status === 401) { toLogin(); return; }
        if (res.ok) { say(res.data.message || "Done."); }
        else { say(res.data.detail || ("That did not work (" + res.status + ")."), true); }
      }).catch(function () {
        say("labctl could not be reached; try again in a moment.", true);
      }).then(function () {
        button.disabled = false;
        return refresh();
      });
    });
  });

  var logout = document.querySelector("[data-logout]");
  if (logout) {
    logout.addEventListener("click", function () {
      post("/dashboard/logout", {}, csrf).then(function (res) {
        window.location.assign((res.data && res.data.next) || "/dashboard/login");
      }).catch(toLogin);
    });
  }

  document.addEventListener("visibilitychange", function () { if (!document.hidden) { refresh().then(schedule); } });
  schedule();
})();
