// The live tail of the Operations page: decisions as server-sent events,
// filtered by the page's form, newest first, at most 200 rows kept.
"use strict";
(function () {
  const table = document.getElementById("decisions");
  if (!table || !window.EventSource) return;
  const body = table.querySelector("tbody");
  const query = new URLSearchParams();
  for (const key of ["agent", "tool", "outcome"]) {
    const value = table.dataset[key];
    if (value) query.set(key, value);
  }
  const source = new EventSource("/events?" + query.toString());
  const cell = (row, text, className) => {
    const td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    if (className) td.className = className;
    row.appendChild(td);
  };
  source.addEventListener("decision", (event) => {
    let d;
    try { d = JSON.parse(event.data); } catch (_) { return; }
    const row = document.createElement("tr");
    cell(row, d.time);
    cell(row, d.agent);
    cell(row, d.session);
    cell(row, d.tool);
    cell(row, d.outcome, "outcome-" + d.outcome);
    cell(row, d.reason_code);
    cell(row, d.rule);
    body.insertBefore(row, body.firstChild);
    while (body.rows.length > 200) body.deleteRow(body.rows.length - 1);
  });
  source.addEventListener("lagged", (event) => {
    const row = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = 7;
    td.textContent = event.data + " decisions were too fast to show";
    row.appendChild(td);
    body.insertBefore(row, body.firstChild);
  });
})();
