// History page: say whether an export takes the whole view or the checked rows.
(function () {
  var form = document.getElementById("export-form");
  var help = document.getElementById("export-help");
  if (!form || !help) return;
  var initial = help.textContent;
  form.addEventListener("change", function () {
    var checked = form.querySelectorAll("input[name=ids]:checked").length;
    help.textContent = checked ? "Export the " + checked + " checked record" + (checked > 1 ? "s" : "") + ":" : initial;
  });
})();
