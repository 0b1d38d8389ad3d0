// The learner page's script: live countdown, panels refreshed from /learn/<session>/state every few seconds,
// the learner's actions (with a confirmation), the kubeconfig copy. No library, no outside request.
(function () {
  "use strict";
  var layout = document.querySelector(".layout[data-session]");
  if (!layout) { return; }
  var session = layout.getAttribute("data-session");
  var base = "/learn/" + encodeURIComponent(session);
  var csrf = (document.querySelector('meta[name="labctl-csrf"]') || {}).content || "";
  var announce = document.getElementById("announce");
  var POLL_MS = 4000;
  var stopped = false;
  var timer = null;

  function say(text, isError) {
    announce.textContent = text;
    announce.classList.toggle("error", !!isError);
  }

  function pad(n) { return n < 10 ? "0" + n : String(n); }

  function left(iso) {
    var ms = new Date(iso).getTime() - Date.now();
    if (ms <= 0) { return "time is up"; }
    var s = Math.floor(ms / 1000), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    return (h ? h + " h " + pad(m) + " min " : m + " min ") + pad(s % 60) + " s";
  }

  function tick() {
    var nodes = document.querySelectorAll("[data-countdown]");
    for (var i = 0; i < nodes.length; i++) {
      nodes[i].textContent = left(nodes[i].getAttribute("data-countdown"));
    }
  }

  function localTimes(root) {
    var nodes = (root || document).querySelectorAll("time[data-local]");
    for (var i = 0; i < nodes.length; i++) {
      var d = new Date(nodes[i].getAttribute("datetime"));
      if (!isNaN(d.getTime())) {
        nodes[i].textContent = d.toLocaleString([], {weekday: "short", hour: "2-digit", minute: "2-digit", timeZoneName: "short"});
      }
    }
  }

  function ended(status) {
    stopped = true;
    say(status === 410 ? "Your page pass has expired: open the lab again from your course page."
                       : "This page can no longer be refreshed: open the lab again from your course page.", true);
  }

  var wasGrading = null;

  function apply(state) {
    if (wasGrading === true && !state.grading) { say("Your grade is ready: see the Grade section."); }
    wasGrading = !!state.grading;
    for (var name in state.panels) {
      var box = document.querySelector('[data-panel="' + name + '"]');
      if (box && box.innerHTML !== state.panels[name]) {
        box.innerHTML = state.panels[name];
        localTimes(box);
      }
    }
    var acts = state.actions || {};
    var gated = document.querySelectorAll("[data-needs]");
    for (var i = 0; i < gated.length; i++) {
      var need = gated[i].getAttribute("data-needs");
      var on = need === "extend" ? acts.extend && acts.extend.length > 0 : !!acts[need];
      gated[i].hidden = !on;
    }
    var note = document.querySelector("[data-resume-note]");
    if (note) { note.textContent = acts.resume_note || ""; note.hidden = !acts.resume_note; }
    var select = document.getElementById("extend-seconds");
    if (select && acts.extend) {
      var wanted = acts.extend.map(function (o) { return o[0] + ":" + o[1]; }).join("|");
      if (select.getAttribute("data-options") !== wanted) {
        select.setAttribute("data-options", wanted);
        select.innerHTML = "";
        acts.extend.forEach(function (o) {
          var opt = document.createElement("option");
          opt.value = o[0]; opt.textContent = o[1]; select.appendChild(opt);
        });
      }
    }
    layout.setAttribute("data-state", state.state);
    tick();
  }

  function refresh() {
    if (stopped) { return Promise.resolve(); }
    return fetch(base + "/state", {credentials: "same-origin", headers: {"accept": "application/json"}})
      .then(function (r) {
        if (r.status === 401 || r.status === 403 || r.status === 404 || r.status === 410) { ended(r.status); return; }
        if (!r.ok) { return; }
        return r.json().then(apply);
      })
      .catch(function () { /* offline for a moment: the next poll tries again */ });
  }

  function schedule() {
    clearTimeout(timer);
    if (stopped) { return; }
    timer = setTimeout(function () { refresh().then(schedule); }, document.hidden ? POLL_MS * 4 : POLL_MS);
  }

  var dialog = document.getElementById("confirm");
  function confirmFirst(text) {
    return new Promise(function (resolve) {
      if (!text) { resolve(true); return; }
      if (!dialog || typeof dialog.showModal !== "function") { resolve(window.confirm(text)); return; }
      document.getElementById("confirm-text").textContent = text;
      dialog.returnValue = "";
      dialog.addEventListener("close", function onClose() {
        dialog.removeEventListener("close", onClose);
        resolve(dialog.returnValue === "ok");
      });
      dialog.showModal();
      var ok = dialog.querySelector("[data-confirm-ok]");
      if (ok) { ok.focus(); }
    });
  }

  function act(action, body, trigger) {
    if (trigger) { trigger.disabled = true; }
    say("Working…");
    return fetch(base + "/" + action, {
      method: "POST", credentials: "same-origin",
      headers: {"content-type": "application/json", "accept": "application/json", "x-labctl-csrf": csrf},
      body: JSON.stringify(body || {})
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (data) {
        if (r.ok) { say(data.message || "Done."); }
        else { say(data.detail || ("That did not work (" + r.status + ")."), true); }
      });
    }).catch(function () {
      say("labctl could not be reached; try again in a moment.", true);
    }).then(function () {
      if (trigger) { trigger.disabled = false; }
      return refresh();
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-action]");
    if (!button) { return; }
    confirmFirst(button.getAttribute("data-confirm")).then(function (yes) {
      if (yes) { act(button.getAttribute("data-action"), {}, button); } else { button.focus(); }
    });
  });

  document.addEventListener("submit", function (event) {
    var form = event.target.closest("form[data-action]");
    if (!form) { return; }
    event.preventDefault();
    var action = form.getAttribute("data-action");
    var body = {};
    if (action === "extend") { body.seconds = parseInt(form.elements.seconds.value, 10); }
    if (action === "budget-requests") {
      body.usd = parseFloat(form.elements.usd.value);
      body.reason = form.elements.reason.value;
    }
    act(action, body, form.querySelector("button[type=submit]")).then(function () {
      if (action === "budget-requests") { form.reset(); }
    });
  });

  function kubeconfigText() {
    return fetch(base + "/kubeconfig", {credentials: "same-origin"}).then(function (r) {
      if (!r.ok) { throw new Error(String(r.status)); }
      return r.text();
    });
  }

  var shown = document.querySelector("details[data-kubeconfig]");
  if (shown) {
    shown.addEventListener("toggle", function () {
      var area = document.getElementById("kubeconfig-text");
      if (shown.open && !area.value) {
        kubeconfigText().then(function (t) { area.value = t; })
          .catch(function () { say("The kubeconfig is not available in this state.", true); });
      }
    });
  }

  var copy = document.querySelector("[data-copy-kubeconfig]");
  if (copy) {
    copy.addEventListener("click", function () {
      kubeconfigText().then(function (t) {
        if (navigator.clipboard && navigator.clipboard.writeText) {
          return navigator.clipboard.writeText(t).then(function () { say("Kubeconfig copied."); });
        }
        throw new Error("no clipboard");
      }).catch(function () {
        if (shown) { shown.open = true; }
        say("Copying is not allowed here: select the text below and copy it.", true);
      });
    });
  }

  localTimes(document);
  tick();
  setInterval(tick, 1000);
  document.addEventListener("visibilitychange", function () { if (!document.hidden) { refresh().then(schedule); } });
  schedule();
})();
