// The console's only script (the Content-Security-Policy forbids inline handlers and hx-on):
// - open the emergency-rollback <dialog> instead of following its link (without JavaScript the
//   link leads to a confirmation page); close a dialog on Cancel or after its form succeeded;
// - keep the percentage slider and its number field in step ([data-mirror] names the twin);
// - keep what an operator is typing when the section around it refreshes itself (below).
document.addEventListener("click", (event) => {
  const opener = event.target.closest("[data-open-dialog]");
  if (opener) {
    const dialog = document.getElementById(opener.dataset.openDialog);
    if (dialog && typeof dialog.showModal === "function") {
      event.preventDefault();
      dialog.showModal();
      const field = dialog.querySelector("textarea, input:not([type=hidden])");
      if (field) field.focus();
    }
    return;
  }
  const closer = event.target.closest("[data-close-dialog]");
  if (closer) {
    const dialog = closer.closest("dialog");
    if (dialog) dialog.close();
    else history.back();
  }
});

document.addEventListener("input", (event) => {
  const twinId = event.target.dataset && event.target.dataset.mirror;
  if (twinId) {
    const twin = document.getElementById(twinId);
    if (twin) twin.value = event.target.value;
  }
}, true); // capture: the twin is updated before htmx's listeners on the form read it

document.addEventListener("focusin", (event) => {
  if (event.target.matches && event.target.matches("[data-select-on-focus]")) event.target.select();
});

document.addEventListener("htmx:afterRequest", (event) => {
  const form = event.detail.elt;
  if (event.detail.successful && form.matches && form.matches("[data-close-dialog-on-success]")) {
    const dialog = form.closest("dialog");
    if (dialog) dialog.close();
  }
});

// A session that expired answers an htmx request with the login page (after a redirect): go
// there instead of swapping a login form into a section.
document.addEventListener("htmx:beforeSwap", (event) => {
  const url = event.detail.xhr && event.detail.xhr.responseURL;
  if (url && new URL(url).pathname === "/login/") {
    event.detail.shouldSwap = false;
    window.location.href = "/login/?next=" + encodeURIComponent(window.location.pathname);
  }
});

// The override form's expiry is typed in the operator's own time zone: tell the server which
// (an IANA name such as America/New_York) and show it beside the field. Without JavaScript the
// server reads the expiry as UTC, which the label then says.
function fillBrowserTimeZone(root) {
  let zone = "UTC";
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC"; } catch (e) { /* UTC */ }
  root.querySelectorAll("[data-browser-tz]").forEach((input) => { if (!input.value) input.value = zone; });
  root.querySelectorAll("[data-browser-tz-name]").forEach((span) => { span.textContent = zone; });
}
document.addEventListener("DOMContentLoaded", () => fillBrowserTimeZone(document));
document.addEventListener("htmx:afterSettle", () => fillBrowserTimeZone(document));

// Every section that refreshes itself on "rollout-changed" also carries the console stamp of the
// state it shows (data-console-stamp: the newest audit row then), and every change answer the
// stamp after the change (X-Console-Stamp; see rollout/freshness.py). The event alone can be
// missed: a section being swapped in is not listening until htmx settles it, and a change whose
// clicked element was replaced meanwhile fires its event where nobody hears it. So the stamp is
// read off every answer's XMLHttpRequest itself (heard even then), and after every settle any
// section older than the newest change answered here fetches itself again: once per newer
// change (a failed fetch is not retried in a loop), and not while it is fetching already (its
// answer settles and is checked in turn).
let newestChange = 0;

function refetchStaleSections() {
  document.querySelectorAll("[data-console-stamp][hx-get]").forEach((section) => {
    const shown = Number(section.dataset.consoleStamp) || 0;
    const asked = Number(section.dataset.consoleAsked) || 0;
    if (shown >= newestChange || asked >= newestChange) return;
    if (section.classList.contains("htmx-request")) return;
    section.dataset.consoleAsked = String(newestChange);
    const done = htmx.ajax("GET", section.getAttribute("hx-get"), { source: section, target: section, swap: "outerHTML" });
    if (done && done.catch) done.catch(() => {}); // a failed fetch waits for the next change
  });
}

document.addEventListener("htmx:beforeSend", (event) => {
  const xhr = event.detail.xhr;
  if (!xhr) return;
  xhr.addEventListener("load", () => {
    const stamp = Number(xhr.getResponseHeader("X-Console-Stamp")) || 0;
    if (stamp > newestChange) {
      newestChange = stamp;
      setTimeout(refetchStaleSections, 0); // after htmx has handled this answer
    }
  });
});
document.addEventListener("htmx:afterSettle", refetchStaleSections);

// Changes made elsewhere (another operator, the API, `manage.py kill_switch`, a guardrail's
// automatic rollback) are seen by polling the console stamp alone (/console/stamp/: the newest
// audit id, one indexed read) every STAMP_POLL_MS while the tab is visible, and at once when it
// becomes visible again: a newer stamp has every older fragment (banner, header, sections) fetch
// itself again. The bound for such a change to reach the page is one poll, not the status
// section's minute.
const STAMP_POLL_MS = 5000;
let stampTimer = null;

function pollStamp() {
  stampTimer = null;
  if (document.visibilityState !== "visible" || !document.querySelector("[data-console-stamp][hx-get]")) return;
  fetch("/console/stamp/", { credentials: "same-origin", headers: { Accept: "application/json" }, redirect: "manual" })
    .then((answer) => (answer.ok ? answer.json() : null))
    .then((body) => {
      const stamp = body && Number(body.stamp);
      if (stamp && stamp > newestChange) {
        newestChange = stamp;
        refetchStaleSections();
      }
    })
    .catch(() => {}) // the next poll tries again
    .finally(schedulePoll);
}

function schedulePoll() {
  if (stampTimer === null && document.visibilityState === "visible") stampTimer = setTimeout(pollStamp, STAMP_POLL_MS);
}

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState !== "visible") return;
  if (stampTimer !== null) clearTimeout(stampTimer);
  pollStamp();
});
document.addEventListener("DOMContentLoaded", schedulePoll);

// A section is not redrawn while a change made in it is on its way (a tick, a save). The walk of
// issue 16 ticked six boxes 0.2-0.7 s apart: the refresh of the checklist asked for after one
// tick, read before the next one committed, was swapped in over the box just ticked and showed
// it unticked again (a person ticks it again, and the sixth box is never ticked); an answer of
// one tick drawn before another tick committed did the same. So, per section (by id):
// - while changes made in it are in flight, a refresh's answer is not swapped in, and a change's
//   answer only when it is the last one in flight: the boxes keep what the operator clicked;
// - an answer older (console stamp) than what the section shows, or than the newest change
//   answered on the page, is not swapped in either; the section fetches itself again once its
//   changes are answered (refetchStaleSections);
// - a change that failed (no answer, or an error status other than 409/422, which are drawn)
//   is said in the section, and the section is fetched again: it shows what the server has.
const inFlight = new Map(); // section id -> changes made in it and not answered yet
const failedNote = new Map(); // section id -> the sentence about a change that failed

function stampOf(xhr) {
  const value = xhr && xhr.getResponseHeader("X-Console-Stamp");
  return value ? Number(value) : null;
}

function sayFailed(section, text) {
  section.querySelectorAll("[data-console-failed]").forEach((n) => n.remove());
  const note = document.createElement("p");
  note.className = "notice bad";
  note.setAttribute("role", "alert");
  note.dataset.consoleFailed = "";
  note.textContent = text;
  const heading = section.querySelector("h2");
  if (heading) heading.after(note);
  else section.prepend(note);
}

document.addEventListener("htmx:beforeSend", (event) => {
  const xhr = event.detail.xhr;
  const verb = String((event.detail.requestConfig || {}).verb || "get").toLowerCase();
  const elt = event.detail.elt;
  if (!xhr || verb === "get" || !elt || !elt.closest) return;
  const section = elt.closest("[data-console-stamp][id]");
  if (!section) return;
  const id = section.id;
  inFlight.set(id, (inFlight.get(id) || 0) + 1);
  xhr.addEventListener("loadend", () => {
    const left = (inFlight.get(id) || 1) - 1;
    if (left > 0) inFlight.set(id, left);
    else inFlight.delete(id);
    const status = xhr.status;
    const failed = status === 0 || (status >= 400 && status !== 409 && status !== 422);
    const current = document.getElementById(id);
    if (failed && current && !(xhr.responseURL && new URL(xhr.responseURL).pathname === "/login/")) {
      const text = status === 0
        ? "Not saved: the server could not be reached. This part now shows what is saved; try again."
        : "Not saved: the server answered " + status + ". This part now shows what is saved; try again.";
      failedNote.set(id, text);
      sayFailed(current, text);
      delete current.dataset.consoleAsked;
      current.dataset.consoleStamp = "0"; // fetched again below, whatever it shows
      if (left === 0) setTimeout(() => refreshNow(current), 0);
    } else if (left === 0) {
      setTimeout(refetchStaleSections, 0); // after htmx has handled this answer
    }
  });
});

document.addEventListener("htmx:beforeSwap", (event) => {
  const target = event.detail.target;
  if (!event.detail.shouldSwap || !target || !target.id || !target.dataset || !("consoleStamp" in target.dataset)) return;
  const config = event.detail.requestConfig || {};
  const isChange = String(config.verb || "get").toLowerCase() !== "get";
  const pending = inFlight.get(target.id) || 0;
  const stamp = stampOf(event.detail.xhr);
  let keep = false;
  if (pending > (isChange ? 1 : 0)) keep = true; // a change made here is still on its way
  else if (stamp !== null && stamp < (Number(target.dataset.consoleStamp) || 0)) keep = true;
  else if (stamp !== null && isChange && stamp < newestChange) keep = true;
  if (keep) {
    event.detail.shouldSwap = false;
    delete target.dataset.consoleAsked; // the stamp refetch may ask again
  }
});

document.addEventListener("htmx:afterSwap", () => {
  failedNote.forEach((text, id) => {
    const section = document.getElementById(id);
    if (section && !section.querySelector("[data-console-failed]")) {
      sayFailed(section, text);
      failedNote.delete(id);
    }
  });
});

// A section refreshing itself (on "rollout-changed", its timer, or the stamp refetch above) used
// to replace its forms while an operator was typing a reason into one: the text was gone.
// - A refresh of a section (or header part) whose field has the focus (one typed into or set,
//   not a button or a box just clicked) waits: it is cancelled, the element marked (with a line
//   saying a change waits), and done once the focus leaves its fields and their Save button (a
//   refresh then would race the save).
// - A refresh keeps what was typed and not saved: every field whose value differs from the one
//   it was drawn with is given to its twin in the new drawing (same form, same name or id),
//   which then reads as unsaved too. A change's own answer (a POST) is drawn from what was
//   posted and saved, and keeps nothing.
const REFRESHING = "[data-console-stamp][hx-get]";

function isRefresh(elt, verb, target) {
  return String(verb).toLowerCase() === "get" && elt && elt.matches && elt.matches(REFRESHING) && (!target || target === elt);
}

const NOT_TYPED = ["hidden", "checkbox", "radio", "submit", "button", "reset", "file", "image"];

function isEntry(elt) { // a field one types into or sets (a button or a box clicked is not)
  if (!elt || !elt.tagName) return false;
  if (elt.tagName === "TEXTAREA" || elt.tagName === "SELECT") return true;
  return elt.tagName === "INPUT" && !NOT_TYPED.includes(elt.type);
}

function isBusy(section, elt) { // typing, or about to save what was typed
  return section.contains(elt) && (isEntry(elt) || (elt.type === "submit" && !!elt.form));
}

function refreshNow(section) {
  if (!section.isConnected || section.classList.contains("htmx-request")) return;
  const done = htmx.ajax("GET", section.getAttribute("hx-get"), { source: section, target: section, swap: "outerHTML" });
  if (done && done.catch) done.catch(() => {});
}

document.addEventListener("htmx:confirm", (event) => {
  const section = event.detail.elt;
  if (!isRefresh(section, event.detail.verb, event.detail.target)) return;
  if (!isEntry(document.activeElement) || !section.contains(document.activeElement)) return;
  event.preventDefault(); // not now: the operator is in this section
  section.dataset.consoleDeferred = "1";
  delete section.dataset.consoleAsked; // the stamp refetch may ask again
  if (!section.querySelector("[data-console-deferred-note]")) {
    const note = document.createElement("p");
    note.className = "notice warn small";
    note.setAttribute("role", "status");
    note.dataset.consoleDeferredNote = "";
    note.textContent = "Changed meanwhile: this part shows the change once you leave it; what you typed stays.";
    const heading = section.querySelector("h2");
    if (heading) heading.after(note);
    else section.prepend(note);
  }
});

document.addEventListener("focusout", (event) => {
  const section = event.target.closest && event.target.closest("[data-console-deferred]");
  if (!section) return;
  setTimeout(() => { // once the focus has landed: off the fields and their Save, the refresh
    if (isBusy(section, document.activeElement)) return;
    delete section.dataset.consoleDeferred;
    refreshNow(section);
  }, 0);
});

function fieldKey(field) {
  const form = field.form;
  const where = form ? (form.getAttribute("hx-post") || form.getAttribute("action") || "") : "";
  return where + "|" + (field.name || "#" + field.id);
}

function isUnsaved(field) {
  if (field.disabled || !(field.name || field.id)) return false;
  if (field.tagName === "SELECT") { // drawn with the option marked selected, else the first
    if (field.multiple) return false;
    const drawn = Array.from(field.options).findIndex((o) => o.defaultSelected);
    return field.selectedIndex !== Math.max(drawn, 0);
  }
  return isEntry(field) && field.value !== field.defaultValue;
}

const typedAway = new Map(); // element id -> [[field key, value], ...] while its refresh swaps
let retyped = []; // fields given back their value, told so (an input event) once htmx has settled

document.addEventListener("htmx:beforeSwap", (event) => {
  const target = event.detail.target;
  const config = event.detail.requestConfig || {};
  if (!event.detail.shouldSwap || !target || !target.id) return;
  if (!isRefresh(config.elt, String(config.verb || "").toLowerCase(), target)) return;
  const unsaved = Array.from(target.querySelectorAll("input, textarea, select")).filter(isUnsaved);
  if (unsaved.length) typedAway.set(target.id, unsaved.map((f) => [fieldKey(f), f.value]));
});

document.addEventListener("htmx:afterSwap", () => {
  typedAway.forEach((fields, id) => {
    const section = document.getElementById(id);
    typedAway.delete(id);
    if (!section) return;
    const twins = new Map(Array.from(section.querySelectorAll("input, textarea, select")).map((f) => [fieldKey(f), f]));
    fields.forEach(([key, value]) => {
      const twin = twins.get(key);
      if (!twin || twin.value === value) return;
      twin.value = value;
      retyped.push(twin);
    });
  });
});

document.addEventListener("htmx:afterSettle", () => {
  const fields = retyped;
  retyped = [];
  // the previews listening for input (bound when htmx settled the new drawing) follow the value
  fields.forEach((f) => f.isConnected && f.dispatchEvent(new Event("input", { bubbles: true })));
});
