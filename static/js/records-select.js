// Records list: "select all" and a count of what is selected.
(function () {
  var form = document.getElementById("rec-select");
  if (!form) return;
  var all = form.querySelector("[data-select-all]");
  var count = document.getElementById("rec-count");
  function boxes() { return form.querySelectorAll('input[name="record"]'); }
  function update() {
    var n = 0;
    boxes().forEach(function (box) { if (box.checked) n += 1; });
    if (count) count.textContent = n ? n + " selected" : "";
  }
  if (all) {
    all.addEventListener("change", function () {
      boxes().forEach(function (box) { box.checked = all.checked; });
      update();
    });
  }
  form.addEventListener("change", update);
  form.addEventListener("submit", function (event) {
    var n = Array.prototype.filter.call(boxes(), function (b) { return b.checked; }).length;
    if (!n) { event.preventDefault(); if (count) count.textContent = "Select records first."; }
  });
  update();
})();
