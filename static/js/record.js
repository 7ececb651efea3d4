// While a record or submission still has work in flight, reload the page every
// two seconds so the result appears without the user doing anything.
(function () {
  if (document.querySelector("[data-pending]")) {
    setTimeout(function () { window.location.reload(); }, 2000);
  }
})();
