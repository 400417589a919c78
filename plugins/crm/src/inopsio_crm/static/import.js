// The CSV import wizard (/crm/leads/import): upload the file as the request body, preview the rows
// with the chosen mapping, start the job, follow its progress, then show the report (the page anew).
// Plain script on top of shell.js (window.inopsioApi, window.inopsioForms); no build step.
(function () {
  "use strict";
  var forms = window.inopsioForms;
  var IMPORTS = "/api/v1/crm/imports/";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : null;
  }

  // Step 1: the file goes as it is (text/csv), which is what the import API reads.
  var upload = document.querySelector("form[data-import-upload]");
  if (upload) {
    upload.addEventListener("submit", async function (event) {
      event.preventDefault();
      forms.clearErrors(upload);
      var input = upload.querySelector("input[type=file]");
      var file = input.files && input.files[0];
      if (!file) {
        forms.showProblem(upload, { detail: "Choose a CSV file first.", errors: [{ pointer: "/file", detail: "no file chosen" }] });
        return;
      }
      var button = upload.querySelector("[type=submit]");
      button.disabled = true;
      var headers = { "Accept": "application/json", "Content-Type": "text/csv" };
      var token = csrfToken();
      if (token) headers["X-CSRF-Token"] = token;
      try {
        var response = await fetch(IMPORTS + "?filename=" + encodeURIComponent(file.name.slice(0, 255)), {
          method: "POST", headers: headers, body: file, credentials: "same-origin",
        });
        var data = null;
        try { data = await response.json(); } catch (e) { data = null; }
        if (!response.ok) { forms.showProblem(upload, data); return; }
        window.location.assign("/crm/leads/import/" + encodeURIComponent(data.id));
      } catch (e) {
        forms.showProblem(upload, { detail: "The server could not be reached. Check your connection and try again." });
      } finally {
        button.disabled = false;
      }
    });
  }

  // Steps 2-4: mapping → preview → duplicate policy and start.
  var mappingForm = document.getElementById("import-mapping");
  var previewSection = document.getElementById("import-preview");
  var startSection = document.getElementById("import-start-section");
  var startForm = document.getElementById("import-start");

  function mapping() {
    return forms.json(mappingForm).mapping || {};
  }

  // Errors about the mapping go under its select boxes, the others above the form that was sent.
  function showProblem(form, problem) {
    var errors = (problem && problem.errors) || [];
    var aboutMapping = errors.some(function (e) { return String(e.pointer || "").indexOf("/mapping") === 0; });
    forms.showProblem(aboutMapping ? mappingForm : form, problem);
  }

  function cell(row, text, className) {
    var td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    if (className) td.className = className;
    row.appendChild(td);
  }

  function renderPreview(rows) {
    var body = previewSection.querySelector("tbody");
    body.textContent = "";
    var invalid = 0;
    rows.forEach(function (item) {
      var v = item.values || {};
      var tr = document.createElement("tr");
      if (item.errors.length) { tr.className = "invalid"; invalid += 1; }
      cell(tr, item.line);
      cell(tr, v.name);
      cell(tr, v.email);
      cell(tr, v.phone);
      cell(tr, v.company);
      cell(tr, v.estimated_value != null ? v.estimated_value + " " + (v.currency || "") : "");
      cell(tr, v.status);
      cell(tr, item.errors.length ? item.errors.join("; ") : "Ready", item.errors.length ? "problems" : "");
      body.appendChild(tr);
    });
    var summary = rows.length + " row" + (rows.length === 1 ? "" : "s") + " checked: " +
      (rows.length - invalid) + " ready, " + invalid + " with problems.";
    if (invalid) summary += " Rows with problems are not imported; the report lists them.";
    if (!rows.length) summary = "The file has no rows under its header.";
    document.getElementById("preview-summary").textContent = summary;
  }

  function stale() {
    if (previewSection.hidden) return;
    previewSection.hidden = true;
    startSection.hidden = true;
  }

  if (mappingForm) {
    var importId = mappingForm.getAttribute("data-import");
    mappingForm.addEventListener("change", stale);
    mappingForm.addEventListener("submit", async function (event) {
      event.preventDefault();
      forms.clearErrors(mappingForm);
      forms.clearErrors(startForm);
      var button = mappingForm.querySelector("[type=submit]");
      button.disabled = true;
      try {
        var result = await window.inopsioApi("POST", IMPORTS + importId + "/preview", { mapping: mapping(), limit: 20 });
        if (!result.ok) { stale(); forms.showProblem(mappingForm, result.data); return; }
        renderPreview(result.data);
        previewSection.hidden = false;
        startSection.hidden = false;
        document.getElementById("preview-title").focus();
      } catch (e) {
        forms.showProblem(mappingForm, { detail: "The server could not be reached. Check your connection and try again." });
      } finally {
        button.disabled = false;
      }
    });
    startForm.addEventListener("submit", async function (event) {
      event.preventDefault();
      forms.clearErrors(mappingForm);
      forms.clearErrors(startForm);
      var options = forms.json(startForm);
      var button = startForm.querySelector("[type=submit]");
      button.disabled = true;
      try {
        var result = await window.inopsioApi("POST", IMPORTS + importId + "/start", {
          mapping: mapping(),
          duplicate_policy: options.duplicate_policy || "skip",
          all_or_nothing: Boolean(options.all_or_nothing),
        });
        if (!result.ok) { showProblem(startForm, result.data); button.disabled = false; return; }
        window.location.reload();  // the page now follows the job
      } catch (e) {
        forms.showProblem(startForm, { detail: "The server could not be reached. Check your connection and try again." });
        button.disabled = false;
      }
    });
  }

  // Step 4, running: the kernel's job status gives the progress; once the job is over, the import
  // record says how it ended and the page is drawn anew as the report.
  var progress = document.getElementById("import-progress");
  if (progress) {
    var bar = document.getElementById("import-progress-bar");
    var text = document.getElementById("import-progress-text");
    var jobId = progress.getAttribute("data-job");
    var recordId = progress.getAttribute("data-import");
    var said = text.textContent;

    var say = function (message) {
      if (message && message !== said) { text.textContent = message; said = message; }
    };

    var finished = async function () {
      var record = await window.inopsioApi("GET", IMPORTS + recordId);
      return record.ok && (record.data.status === "done" || record.data.status === "failed");
    };

    var poll = async function () {
      try {
        var job = await window.inopsioApi("GET", "/api/v1/jobs/" + encodeURIComponent(jobId));
        if (job.ok) {
          bar.value = job.data.progress;
          bar.textContent = job.data.progress + " %";
          if (job.data.status === "queued") say("Waiting for its turn…");
          else if (job.data.message) say(job.data.progress + " %: " + job.data.message);
        }
        // A finished job (or one whose status has expired): the import record has the last word.
        if (!job.ok || job.data.status === "complete" || job.data.status === "failed") {
          if (await finished()) { window.location.reload(); return; }
        }
      } catch (e) {
        say("Connection lost; trying again…");
      }
      setTimeout(poll, 750);
    };
    poll();
  }
})();
