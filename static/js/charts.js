// Draw the dashboard's server-built Plotly figures. Each chart is an element with
// data-figure="<id>" naming a <script type="application/json" id="<id>"> block (data, not code,
// so the strict CSP allows it). Runs on page load and on every htmx swap (htmx.onLoad), so a
// range or filter change redraws the charts without reloading the page.
(function () {
  "use strict";
  var CONFIG = { responsive: true, displaylogo: false, displayModeBar: false };

  function draw(root) {
    if (typeof Plotly === "undefined") return;
    var nodes = (root || document).querySelectorAll("[data-figure]");
    if (root && root.matches && root.matches("[data-figure]")) nodes = [root];
    nodes.forEach(function (el) {
      var source = document.getElementById(el.dataset.figure);
      if (!source) return;
      var figure = JSON.parse(source.textContent);
      Plotly.react(el, figure.data, figure.layout, CONFIG).then(function () {
        el.dataset.drawn = String(Number(el.dataset.drawn || 0) + 1);
      });
    });
  }

  // "Custom" starts from the range on screen: its dates fill the empty date fields before the
  // form's change reaches htmx (this listener is on the radio itself, so it runs first), so
  // choosing Custom shows the same figures with editable dates instead of an error.
  function prefillCustom(event) {
    var form = event.target.form;
    var shown = document.getElementById("dash-range");
    if (!form || !shown) return;
    var start = form.elements.start, end = form.elements.end;
    if (!start.value) start.value = shown.dataset.start || "";
    if (!end.value) end.value = shown.dataset.end || "";
  }

  // The granularity selector's "auto" option says what auto resolves to ("by day (auto)"). The
  // controls are outside the part htmx swaps, so after each swap the option is relabelled from
  // the range line the server drew with the figures (its data-granularity): the selector says
  // what the charts draw, whatever range was chosen since the page loaded.
  function syncGranularity() {
    var shown = document.getElementById("dash-range");
    var auto = document.querySelector('#dash-granularity option[value="auto"]');
    if (!shown || !auto || !shown.dataset.granularity) return;
    auto.textContent = "by " + shown.dataset.granularity + " (auto)";
  }

  function wireControls() {
    var custom = document.getElementById("range-custom");
    if (custom) custom.addEventListener("change", prefillCustom);
  }

  if (window.htmx) {
    htmx.onLoad(function (root) { draw(root); syncGranularity(); });
  } else {
    document.addEventListener("DOMContentLoaded", function () { draw(document); });
  }
  document.addEventListener("DOMContentLoaded", wireControls);
})();
