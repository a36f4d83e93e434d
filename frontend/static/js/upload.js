// CSV import on the series page: posts the file to the REST ingest endpoint (session + CSRF), with
// upload progress, then the stored count or the first rejected rows.
(function () {
  "use strict";
  const form = document.getElementById("import-form");
  if (!form) return;
  const bar = document.getElementById("import-progress");
  const status = document.getElementById("import-status");

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const file = form.elements.file.files[0];
    if (!file) return;
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.dataset.url);
    xhr.setRequestHeader("Content-Type", "text/csv");
    xhr.setRequestHeader("X-CSRFToken", form.elements.csrfmiddlewaretoken.value);
    bar.hidden = false;
    bar.value = 0;
    status.textContent = `Uploading ${file.name}…`;
    xhr.upload.onprogress = (p) => { if (p.lengthComputable) bar.value = p.loaded / p.total; };
    xhr.upload.onload = () => { status.textContent = "Validating and storing…"; bar.removeAttribute("value"); };
    xhr.onload = () => {
      bar.hidden = true;
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON: reported below */ }
      if (xhr.status < 300) {
        status.textContent = `Stored ${body.stored.toLocaleString()} of ${body.received.toLocaleString()} points`
          + (body.duplicate ? " (already imported)." : ". The series' rules run over them; the chart below is redrawn.");
        if (!body.duplicate) document.dispatchEvent(new CustomEvent("ah:imported"));
        return;
      }
      const err = body.error || {};
      const rows = ((err.details || {}).errors || []).slice(0, 3)
        .map((r) => `row ${r.row}, ${r.column}: ${r.reason}`).join("; ");
      status.textContent = `Rejected: ${err.message || xhr.statusText}${rows ? " — " + rows : ""}`;
    };
    xhr.onerror = () => { bar.hidden = true; status.textContent = "Upload failed; check the connection and retry."; };
    xhr.send(file);
  });
})();
