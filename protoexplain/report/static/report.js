// protoexplain report: search the class table by name. No network, works from file://.
(function () {
  "use strict";
  var input = document.getElementById("class-search");
  var table = document.getElementById("class-table");
  if (!input || !table) { return; }
  var rows = Array.prototype.slice.call(table.querySelectorAll("tbody tr"));
  var count = document.getElementById("class-count");
  function filter() {
    var query = input.value.trim().toLowerCase();
    var shown = 0;
    rows.forEach(function (row) {
      var match = !query || row.getAttribute("data-name").indexOf(query) !== -1;
      row.classList.toggle("hidden", !match);
      if (match) { shown += 1; }
    });
    count.textContent = query ? shown + " of " + rows.length : "";
  }
  input.addEventListener("input", filter);
  input.addEventListener("keydown", function (event) {
    if (event.key !== "Enter") { return; }
    var first = rows.filter(function (row) { return !row.classList.contains("hidden"); })[0];
    if (first) { window.location.href = first.querySelector("a").getAttribute("href"); }
  });
  filter();
}());
