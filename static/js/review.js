/* Review queue: keyboard grading, draft autosave, the hold's heartbeat and release.
 * Loaded by templates/metrics/review_queue.html only. No inline scripts (strict CSP).
 *
 * Keys (ignored while typing in a field; Esc leaves the field, Ctrl+Enter saves from it):
 *   h 1-3 hallucination, f 1-3 format, u 1-4 uncertainty, c 1-2 (or y/n) consistency,
 *   s 1-5 sounds like Sel, w what was wrong, t note, Enter save, n next (once saved), ? legend.
 */
(function () {
  "use strict";

  var PREFIXES = { h: "hallucination", f: "format", u: "uncertainty", c: "consistent", s: "sounds_like_sel" };
  var pending = null;
  var pendingTimer = null;
  var draftTimer = null;
  var heartbeat = null;

  function form() { return document.getElementById("review-form"); }
  function saved() { return document.querySelector("[data-saved]"); }
  function csrf(f) {
    var input = (f || document).querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }
  function say(text) {
    var status = document.getElementById("review-status");
    if (status) status.textContent = text;
  }
  function chord(text) {
    var el = document.getElementById("review-chord");
    if (el) el.textContent = text;
  }

  function setPending(prefix) {
    clearPending();
    pending = prefix;
    var fs = document.querySelector('fieldset[data-prefix="' + prefix + '"]');
    if (fs) { fs.classList.add("pending"); fs.scrollIntoView({ block: "nearest" }); }
    chord(prefix + " … then a number");
    pendingTimer = window.setTimeout(clearPending, 2500);
  }
  function clearPending() {
    pending = null;
    if (pendingTimer) window.clearTimeout(pendingTimer);
    document.querySelectorAll("fieldset.pending").forEach(function (fs) { fs.classList.remove("pending"); });
    chord("");
  }

  function choose(prefix, key) {
    var f = form();
    if (!f) return false;
    if (prefix === "c") key = { y: "1", n: "2" }[key] || key;
    var radio = f.querySelector('input[name="' + PREFIXES[prefix] + '"][data-key="' + key + '"]');
    if (!radio) return false;
    radio.checked = true;
    radio.dispatchEvent(new Event("change", { bubbles: true }));
    if (prefix === "h" && (key === "2" || key === "3")) {
      var note = document.getElementById("hallucination_note");
      if (note && !note.value) note.focus();
    }
    return true;
  }

  function isField(el) {
    return el && (el.tagName === "TEXTAREA" || el.tagName === "SELECT" ||
      (el.tagName === "INPUT" && !/^(radio|checkbox|button|submit)$/.test(el.type)));
  }

  function submit() {
    var f = form();
    if (!f) return;
    clearPending();
    if (draftTimer) window.clearTimeout(draftTimer);
    say("Saving…");
    if (f.requestSubmit) f.requestSubmit(); else f.submit();
  }

  document.addEventListener("keydown", function (e) {
    if (!form() && !saved()) return;
    var t = e.target;
    if (isField(t)) {
      if (e.key === "Escape") { t.blur(); e.preventDefault(); }
      else if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); submit(); }
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    var key = e.key;
    if (saved()) {
      if (key === "n" || key === "Enter") {
        var next = document.getElementById("review-next");
        if (next) { e.preventDefault(); next.click(); }
      }
      return;
    }
    if (key === "?") {
      var legend = document.getElementById("review-legend");
      if (legend) legend.classList.toggle("hidden");
      e.preventDefault();
      return;
    }
    if (pending) {
      var prefix = pending;
      clearPending();
      if (choose(prefix, key)) { e.preventDefault(); return; }
      if (key === "Escape") return;
    }
    if (Object.prototype.hasOwnProperty.call(PREFIXES, key)) { setPending(key); e.preventDefault(); return; }
    if (key === "w" || key === "t") {
      var field = document.getElementById(key === "w" ? "hallucination_note" : "note");
      if (field) { e.preventDefault(); field.focus(); }
      return;
    }
    if (key === "Enter" && !(t && (t.tagName === "BUTTON" || t.tagName === "A"))) { e.preventDefault(); submit(); }
  });

  // Draft autosave: what was picked or typed survives a reload.
  function saveDraft() {
    var f = form();
    if (!f || !f.dataset.draftUrl) return;
    fetch(f.dataset.draftUrl, { method: "POST", body: new FormData(f), credentials: "same-origin",
      headers: { "X-CSRFToken": csrf(f) } })
      .then(function (r) {
        if (r.status === 204) say("Draft kept");
        else if (r.status === 409) say("Another reviewer holds this reply now.");
      })
      .catch(function () { say("Draft not saved (offline?)"); });
  }
  function scheduleDraft(delay) {
    if (draftTimer) window.clearTimeout(draftTimer);
    draftTimer = window.setTimeout(saveDraft, delay);
  }
  document.addEventListener("change", function (e) { if (e.target.form && e.target.form.id === "review-form") scheduleDraft(150); });
  document.addEventListener("input", function (e) { if (e.target.form && e.target.form.id === "review-form" && e.target.tagName === "TEXTAREA") scheduleDraft(700); });

  // The hold: renewed while the page is open, released when it is left.
  function startHeartbeat() {
    var f = form();
    if (heartbeat) window.clearInterval(heartbeat);
    if (!f || !f.dataset.holdUrl) return;
    var every = Math.max(15, Math.min(120, (parseInt(f.dataset.lease, 10) || 600) / 4)) * 1000;
    heartbeat = window.setInterval(function () {
      var g = form();
      if (!g) { window.clearInterval(heartbeat); return; }
      var body = new FormData();
      body.append("token", g.dataset.token || "");
      fetch(g.dataset.holdUrl, { method: "POST", body: body, credentials: "same-origin", headers: { "X-CSRFToken": csrf(g) } })
        .then(function (r) { if (r.status === 409) say("Another reviewer holds this reply now; your draft is kept."); })
        .catch(function () {});
    }, every);
  }
  window.addEventListener("pagehide", function () {
    var f = form();
    if (!f || !f.dataset.releaseUrl || !navigator.sendBeacon) return;
    var data = new FormData();
    data.append("csrfmiddlewaretoken", csrf(f));
    data.append("token", f.dataset.token || "");
    navigator.sendBeacon(f.dataset.releaseUrl, data);
  });

  document.addEventListener("htmx:afterSwap", function () {
    clearPending();
    if (saved()) {
      if (heartbeat) window.clearInterval(heartbeat);
      var next = document.getElementById("review-next");
      if (next) next.focus();
    } else {
      startHeartbeat();
    }
  });
  document.addEventListener("DOMContentLoaded", startHeartbeat);
})();
