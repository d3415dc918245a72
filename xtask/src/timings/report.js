// Filter the timeline's rows (tool calls, only the critical path) and lay the rest out
// again. Everything drawn is in the SVG already: this only hides and moves rows.
(function () {
  "use strict";
  var svg = document.getElementById("timeline");
  var rows = Array.prototype.slice.call(svg.querySelectorAll("g.row"));
  var rowHeight = Number(svg.getAttribute("data-row-height"));
  var axisHeight = Number(svg.getAttribute("data-axis-height"));
  var showTools = document.getElementById("show-tools");
  var onlyCritical = document.getElementById("only-critical");
  var shownText = document.getElementById("shown");

  function layout() {
    var shown = 0;
    rows.forEach(function (row) {
      var kind = row.getAttribute("data-kind");
      var visible = (showTools.checked || kind !== "tool") &&
        (!onlyCritical.checked || row.getAttribute("data-critical") === "1");
      row.style.display = visible ? "" : "none";
      if (visible) {
        row.setAttribute("transform", "translate(0," + (axisHeight + rowHeight * shown) + ")");
        shown += 1;
      }
    });
    var height = axisHeight + rowHeight * shown;
    svg.setAttribute("height", String(height));
    Array.prototype.forEach.call(svg.querySelectorAll(".axis .grid"), function (line) {
      line.setAttribute("y2", String(height));
    });
    shownText.textContent = shown + " of " + rows.length + " rows shown";
    return shown;
  }

  showTools.addEventListener("change", layout);
  onlyCritical.addEventListener("change", layout);
  var shown = layout();
  var layers = svg.querySelectorAll("rect.bar[data-kind=layer]").length;
  document.body.setAttribute("data-rows", String(shown));
  document.body.setAttribute("data-layer-bars", String(layers));
  console.info("bootstrap timings: " + shown + " rows, " + layers + " layer bars");
})();
