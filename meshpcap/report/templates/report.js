(function () {
  "use strict";
  var table = document.getElementById("flow-table");
  if (!table) { return; }
  var body = table.tBodies[0];
  var heads = table.tHead.rows[0].cells;
  function key(row, col) {
    var text = row.cells[col].textContent;
    var n = Number(text);
    return text !== "" && !isNaN(n) ? n : text.toLowerCase();
  }
  function sortBy(col, dir) {
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a, col), y = key(b, col);
      if (typeof x !== typeof y) { x = String(x); y = String(y); }
      return (x < y ? -1 : x > y ? 1 : 0) * dir;
    });
    var frag = document.createDocumentFragment();
    rows.forEach(function (r) { frag.appendChild(r); });
    body.appendChild(frag);
    for (var i = 0; i < heads.length; i++) { heads[i].removeAttribute("aria-sort"); }
    heads[col].setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
  }
  Array.prototype.forEach.call(heads, function (th, col) {
    var b = document.createElement("button");
    b.type = "button";
    b.textContent = th.textContent;
    th.textContent = "";
    th.appendChild(b);
    b.addEventListener("click", function () {
      sortBy(col, th.getAttribute("aria-sort") === "ascending" ? -1 : 1);
    });
  });
  var controls = document.getElementById("flow-controls");
  var input = document.createElement("input");
  input.type = "search";
  input.placeholder = "filter flows (any text)";
  input.id = "flow-filter";
  var select = document.createElement("select");
  select.id = "flow-verdict";
  ["all verdicts", "blocked", "unexpected", "allowed", "unrelated"].forEach(function (v, i) {
    var o = document.createElement("option");
    o.value = i === 0 ? "" : v;
    o.textContent = v;
    select.appendChild(o);
  });
  var count = document.createElement("span");
  count.className = "muted";
  controls.appendChild(input);
  controls.appendChild(select);
  controls.appendChild(count);
  var verdictCol = Array.prototype.map.call(heads, function (h) { return h.textContent; }).indexOf("verdict");
  function apply() {
    var q = input.value.toLowerCase(), v = select.value, shown = 0;
    Array.prototype.forEach.call(body.rows, function (r) {
      var ok = (!q || r.textContent.toLowerCase().indexOf(q) >= 0) &&
               (!v || r.cells[verdictCol].textContent === v);
      r.hidden = !ok;
      if (ok) { shown++; }
    });
    count.textContent = shown + " of " + body.rows.length + " flows";
  }
  input.addEventListener("input", apply);
  select.addEventListener("change", apply);
  apply();
})();
