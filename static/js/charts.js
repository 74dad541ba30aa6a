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

  if (window.htmx) {
    htmx.onLoad(draw);
  } else {
    document.addEventListener("DOMContentLoaded", function () { draw(document); });
  }
})();
