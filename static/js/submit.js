// Show only the options that mean something for the chosen service.
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
