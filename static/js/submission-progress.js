// Live progress for a submission page and the submissions list: poll a small
// JSON endpoint every 1.5 s while something is still waiting. A reload shows
// the same, because the numbers come from the database.
(function () {
  var INTERVAL = 1500;

  function set(root, name, text) {
    var el = root.querySelector('[data-field="' + name + '"]');
    if (el) el.textContent = text;
    return el;
  }

  function duration(seconds) {
    if (seconds < 60) return Math.max(1, Math.round(seconds)) + " s";
    if (seconds < 3600) return Math.round(seconds / 60) + " min";
    return (seconds / 3600).toFixed(1) + " h";
  }

  function showDetail(root, data) {
    var c = data.counts;
    set(root, "state", data.state);
    var summary = c.final + " of " + c.total + " finished: " + c.done + " done, " + c.failed +
      " failed, " + c.waiting + " waiting" + (c.blocked ? ", " + c.blocked + " blocked" : "") +
      (c.cancelled ? ", " + c.cancelled + " cancelled" : "") + ".";
    set(root, "summary", summary);
    var bar = root.querySelector('[data-field="progress"]');
    if (bar) { bar.max = c.total; bar.value = c.final; }
    var parts = root.querySelectorAll('[data-field="bar"] span');
    if (parts.length === 2 && c.total) {
      parts[0].style.width = (100 * c.done / c.total) + "%";
      parts[1].style.width = (100 * c.failed / c.total) + "%";
    }
    var eta = "";
    if (c.waiting && data.eta_seconds !== null) eta = "About " + duration(data.eta_seconds) + " left.";
    else if (c.waiting) eta = "Estimating the time left…";
    set(root, "eta", eta);
    var retry = data.next_retry_at ? "Next retry at " + new Date(data.next_retry_at).toLocaleTimeString() + "." : "";
    set(root, "next-retry", retry);
    var box = root.querySelector('[data-field="retrying"]');
    if (box) {
      box.textContent = "";
      var lists = [["Waiting to retry", data.retrying], ["Failed", data.failures]];
      lists.forEach(function (pair) {
        if (!pair[1].length) return;
        var h = document.createElement("h3"); h.textContent = pair[0]; box.appendChild(h);
        var ul = document.createElement("ul"); ul.className = "small sub-reasons";
        pair[1].forEach(function (item) {
          var li = document.createElement("li");
          var code = document.createElement("span"); code.className = "mono"; code.textContent = item.record;
          li.appendChild(code);
          li.appendChild(document.createTextNode(": " + (item.reason || item.error_class || "")));
          ul.appendChild(li);
        });
        box.appendChild(ul);
      });
    }
    return c.waiting > 0;
  }

  function showList(root, data) {
    var busy = false;
    data.submissions.forEach(function (s) {
      var row = root.querySelector('[data-submission="' + s.id + '"]');
      if (!row) return;
      var c = s.counts;
      set(row, "state", s.state);
      set(row, "done", c.done + " / " + c.total);
      set(row, "failed", c.failed);
      set(row, "waiting", c.waiting);
      var bar = row.querySelector('[data-field="progress"]');
      if (bar) { bar.max = c.total; bar.value = c.final; }
      if (c.waiting) busy = true;
    });
    return busy;
  }

  function poll(root, url, show) {
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        var again = data ? show(root, data) : true;
        if (again) setTimeout(function () { poll(root, url, show); }, INTERVAL);
      })
      .catch(function () { setTimeout(function () { poll(root, url, show); }, INTERVAL * 2); });
  }

  var detail = document.querySelector("[data-progress-url]");
  if (detail) poll(detail, detail.dataset.progressUrl, showDetail);
  var list = document.querySelector("[data-status-url]");
  if (list) poll(list, list.dataset.statusUrl, showList);
})();
