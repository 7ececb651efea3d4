// Upload page: every dropped or picked file goes in its own request (a few at
// a time), so one bad file never stops the others. Each row shows its status;
// a duplicate can be added anyway, and a file the server could not store
// (503) sent again, with one click. The server keeps the list,
// so a reload shows the same.
(function () {
  var drop = document.getElementById("drop");
  if (!drop) return;
  var input = document.getElementById("files");
  var tbody = document.getElementById("upload-items");
  var summary = document.getElementById("upload-summary");
  var csrf = drop.querySelector("input[name=csrfmiddlewaretoken]").value;
  var url = drop.dataset.uploadUrl;
  var parallel = parseInt(drop.dataset.parallel, 10) || 3;
  var queue = [], running = 0, done = 0, total = 0;

  function row(file) {
    var empty = tbody.querySelector(".rec-empty");
    if (empty) empty.remove();
    var tr = document.createElement("tr");
    tr.innerHTML = '<td class="rec-prev"></td><td class="rec-name"></td>' +
      '<td><span class="badge">waiting</span></td><td class="small rec-detail"></td>';
    tr.querySelector(".rec-name").textContent = file.name;
    tbody.appendChild(tr);
    return tr;
  }

  function link(href, text) {
    var a = document.createElement("a");
    a.href = href; a.textContent = text;
    return a;
  }

  function show(tr, answer, job) {
    var badge = tr.querySelector(".badge");
    var detail = tr.querySelector(".rec-detail");
    badge.className = "badge rec-" + answer.status;
    badge.textContent = answer.status;
    detail.textContent = answer.message || "";
    if (answer.record_url) detail.appendChild(link(answer.record_url, "record " + answer.record_id));
    if (answer.thumbnail_url) {
      var img = document.createElement("img");
      img.src = answer.thumbnail_url; img.alt = ""; img.className = "rec-thumb";
      img.width = 48; img.height = 48;
      tr.querySelector(".rec-prev").appendChild(img);
    }
    if (answer.duplicate_url) {
      detail.appendChild(document.createTextNode(" · "));
      detail.appendChild(link(answer.duplicate_url, "see the existing record"));
      sendAgain(detail, "Add anyway", { file: job.file, tr: tr, anyway: true });
    }
    // 503: the storage or the database was busy and nothing was saved.
    if (answer.status === "unavailable") sendAgain(detail, "Try again", job);
  }

  function sendAgain(detail, label, job) {
    var again = document.createElement("button");
    again.type = "button"; again.className = "button small"; again.textContent = label;
    again.addEventListener("click", function () {
      again.remove();
      enqueue(job);
    });
    detail.appendChild(document.createTextNode(" "));
    detail.appendChild(again);
  }

  var BUSY_RETRIES = 5;

  function later(seconds) {
    return new Promise(function (resolve) { setTimeout(resolve, seconds * 1000); });
  }

  function send(job) {
    return answerFor(job).then(function (answer) { show(job.tr, answer, job); });
  }

  function answerFor(job) {
    var body = new FormData();
    if (job.anyway) body.append("allow_duplicate", "1");
    body.append("file", job.file, job.file.name);
    job.tr.querySelector(".badge").textContent = "sending…";
    return fetch(url, {
      method: "POST", body: body, credentials: "same-origin",
      headers: { "X-CSRFToken": csrf, "Accept": "application/json" }
    }).then(function (response) {
      // 503: the server is busy with other large images and stored nothing; send again.
      job.tries = (job.tries || 0) + 1;
      if (response.status === 503 && job.tries <= BUSY_RETRIES) {
        job.tr.querySelector(".badge").textContent = "busy, retrying…";
        var seconds = parseInt(response.headers.get("Retry-After"), 10) || 5;
        return later(seconds).then(function () { return answerFor(job); });
      }
      return response.json().catch(function () {
        return { status: "rejected", message: "The server answered " + response.status + "." };
      });
    }, function () {
      return { status: "rejected", message: "The network failed; try this file again." };
    });
  }

  function pump() {
    while (running < parallel && queue.length) {
      running += 1;
      send(queue.shift()).then(function () {
        running -= 1; done += 1; progress(); pump();
      });
    }
  }

  function progress() {
    summary.textContent = done + " of " + total + " files sent" + (done < total ? "…" : ".");
  }

  function enqueue(job) { total += 1; queue.push(job); progress(); pump(); }

  function add(files) {
    Array.prototype.forEach.call(files, function (file) { enqueue({ file: file, tr: row(file) }); });
  }

  input.addEventListener("change", function () { add(input.files); input.value = ""; });
  ["dragenter", "dragover"].forEach(function (name) {
    drop.addEventListener(name, function (event) { event.preventDefault(); drop.classList.add("rec-over"); });
  });
  ["dragleave", "drop"].forEach(function (name) {
    drop.addEventListener(name, function () { drop.classList.remove("rec-over"); });
  });
  drop.addEventListener("drop", function (event) {
    event.preventDefault();
    if (event.dataTransfer && event.dataTransfer.files) add(event.dataTransfer.files);
  });
  window.addEventListener("beforeunload", function (event) {
    if (running || queue.length) { event.preventDefault(); event.returnValue = ""; }
  });
})();
