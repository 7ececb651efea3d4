// Show only the options (and the request estimate) of the chosen service.
(function () {
  var select = document.getElementById("id_service");
  if (!select) return;
  function update() {
    document.querySelectorAll("[data-services]").forEach(function (box) {
      box.hidden = box.dataset.services.split(" ").indexOf(select.value) === -1;
    });
  }
  select.addEventListener("change", update);
  update();
})();
