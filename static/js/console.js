// The console's only script (the Content-Security-Policy forbids inline handlers and hx-on):
// - open the emergency-rollback <dialog> instead of following its link (without JavaScript the
//   link leads to a confirmation page); close a dialog on Cancel or after its form succeeded;
// - keep the percentage slider and its number field in step ([data-mirror] names the twin).
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
