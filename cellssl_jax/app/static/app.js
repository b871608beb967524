// The page: plain JS, no build step. Every label is sent to the server in order (one chain of
// requests) and shown as done only when the server answers that it is on disk.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token") || "";
const PAGE = 100;          // thumbnails per page on the label screen
const REVIEW_SHOWN = 60;   // cells shown per predicted class before "show more"

let S = null;              // /api/state: classes, counts, version, jobs ...
let cells = [];            // the label screen's cells: {f, v}
let labels = {};           // file -> label (committed)
const pending = {};        // file -> label being saved
let cur = 0;               // index of the cell being labelled
let screen = "classes";
let predictions = null;
let hovered = null;        // review: the cell under the mouse
const shown = {};          // review: cells shown per class
let jobsBefore = {};
let chain = Promise.resolve();
let inFlight = 0;

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;

async function api(path, body) {
  const opts = { headers: { "X-Token": TOKEN } };
  if (body !== undefined) {
    opts.method = "POST";
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  const data = await r.json().catch(() => ({ error: `${r.status} ${r.statusText}` }));
  if (!r.ok) throw new Error(data.error || `${r.status} ${r.statusText}`);
  return data;
}

function message(text, info) {
  const m = $("message");
  m.textContent = text || "";
  m.hidden = !text;
  m.className = info ? "info" : "";
}

function thumb(f, v, size) {
  return `/api/thumb?file=${enc(f)}&size=${size}&v=${enc(v)}&token=${enc(TOKEN)}`;
}

// A thumbnail the server refused (not an image, too large): say why on the cell.
function explain(img, tag) {
  img.onerror = async () => {
    const r = await fetch(img.src).catch(() => null);
    const why = r ? (await r.json().catch(() => ({}))).error : "server not answering";
    img.alt = why || "cannot be shown";
    img.title = img.alt;
    if (tag) tag.textContent = img.alt;
  };
}

function labelText(label) {
  return label === S.unsure ? "not a cell / unsure" : label;
}

// ---- screens ------------------------------------------------------------------------------
function show(name) {
  screen = name;
  for (const s of document.querySelectorAll(".screen")) s.hidden = s.id !== `screen-${name}`;
  for (const b of document.querySelectorAll("header nav button"))
    b.classList.toggle("active", b.dataset.screen === name);
  if (name === "label") renderLabel();
  if (name === "review") loadPredictions();
  if (name === "classify") renderJobs();
}

async function loadState() {
  S = await api("/api/state");
  $("folder").textContent = `${S.folder}: ${S.cells} cells, state in ${S.state}`;
  $("folder").title = $("folder").textContent;
  renderSaved();
  renderJobs();
}

async function loadCells() {
  const data = await api("/api/cells");
  cells = data.cells;
  labels = data.labels;
  $("source").textContent = data.source === "proposals"
    ? "Cells in the order select proposes them (most representative first)."
    : "Cells in folder order until the features are ready.";
  if (cur >= cells.length) cur = Math.max(0, cells.length - 1);
}

function renderSaved() {
  $("saved").textContent = inFlight ? `saving ${inFlight}...` : `${S.labelled} labels saved`;
}

// ---- classes ------------------------------------------------------------------------------
function renderClasses() {
  const sel = $("preset");
  for (const name of Object.keys(S.presets)) {
    const o = document.createElement("option");
    o.value = name;
    o.textContent = `${name}: ${S.presets[name].join(", ")}`;
    sel.appendChild(o);
  }
  $("classes-text").value = S.classes.join("\n");
}

$("preset").addEventListener("change", (e) => {
  if (e.target.value) $("classes-text").value = S.presets[e.target.value].join("\n");
});

$("save-classes").addEventListener("click", async () => {
  const names = $("classes-text").value.split("\n").map((s) => s.trim()).filter(Boolean);
  try {
    const r = await api("/api/classes", { classes: names });
    Object.assign(S, r);
    message(`saved ${r.classes.length} classes`, true);
    show("label");
  } catch (e) { message(e.message); }
});

// ---- label --------------------------------------------------------------------------------
function renderClassButtons() {
  const box = $("class-buttons");
  box.innerHTML = "";
  const entries = S.classes.map((c, i) => [c, i < 9 ? String(i + 1) : ""]);
  entries.push([S.unsure, "0"]);
  for (const [c, key] of entries) {
    const row = document.createElement("div");
    row.className = "cls";
    const b = document.createElement("button");
    b.textContent = `${key ? key + "  " : ""}${labelText(c)}`;
    b.dataset.label = c;
    b.addEventListener("click", () => labelCurrent(c));
    const n = S.per_class[c] || 0;
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.innerHTML = `<div style="width:${Math.min(100, 100 * n / S.per_class_target)}%"></div>`;
    const count = document.createElement("span");
    count.className = "count";
    count.dataset.label = c;
    count.textContent = c === S.unsure ? `${n}` : `${n} / ${S.per_class_target}`;
    row.append(b, bar, count);
    box.appendChild(row);
  }
  $("undo-depth").textContent = `${S.undo_depth} steps to undo`;
}

function cellLabel(f) {
  return f in pending ? pending[f] : labels[f];
}

function renderCurrent() {
  const c = cells[cur];
  if (!c) { $("current-name").textContent = "no cells"; return; }
  $("current-img").alt = "the cell being labelled";
  $("current-img").title = "";
  explain($("current-img"), null);
  $("current-img").src = thumb(c.f, c.v, 384);
  $("current-name").textContent = `${cur + 1} / ${cells.length}: ${c.f}`;
  $("current-name").title = c.why ? `proposed as: ${c.why}` : "";
  const badge = $("current-label");
  const label = cellLabel(c.f);
  badge.textContent = label === undefined || label === null ? "unlabelled"
    : (c.f in pending ? `saving: ${labelText(label)}` : labelText(label));
  badge.className = "badge " + (c.f in pending ? "pending" : (label ? "done" : ""));
}

function renderGrid() {
  const grid = $("grid");
  const page = Math.floor(cur / PAGE);
  const start = page * PAGE;
  $("page-info").textContent =
    `cells ${start + 1}-${Math.min(start + PAGE, cells.length)} of ${cells.length}`;
  grid.innerHTML = "";
  for (let i = start; i < Math.min(start + PAGE, cells.length); i++) {
    const c = cells[i];
    const d = document.createElement("div");
    const label = cellLabel(c.f);
    d.className = "cell" + (i === cur ? " current" : "") +
      (c.f in pending ? " pending" : (label ? " labelled" : ""));
    d.dataset.file = c.f;
    d.innerHTML = `<img loading="lazy" alt=""><div class="tag"></div>`;
    explain(d.querySelector("img"), d.querySelector(".tag"));
    d.querySelector("img").src = thumb(c.f, c.v, 128);
    d.querySelector(".tag").textContent = label ? labelText(label) : "";
    d.addEventListener("click", () => { cur = i; renderLabel(); });
    grid.appendChild(d);
  }
}

function renderLabel() {
  if (!S) return;
  if (!S.classes.length) { message("Set the classes first (screen 1)."); return; }
  renderClassButtons();
  renderCurrent();
  renderGrid();
}

function move(step) {
  if (cur + step >= cells.length && cells.length)
    message("That was the last proposed cell: 'More cells' (key m) proposes the next batch.", true);
  cur = Math.max(0, Math.min(cells.length - 1, cur + step));
  renderCurrent();
  renderGrid();
}

function afterSave(r) {
  Object.assign(S, { version: r.version, per_class: r.per_class, labelled: r.labelled,
                     undo_depth: r.undo_depth, classes: r.classes });
}

function save(file, label, kind) {
  pending[file] = label;
  inFlight++;
  renderSaved();
  chain = chain.then(async () => {
    try {
      const r = await api("/api/label", { file, label, kind });
      if (label === null) delete labels[file]; else labels[file] = label;
      afterSave(r);
    } catch (e) {
      message(`not saved: ${e.message}`);
    } finally {
      delete pending[file];
      inFlight--;
      renderSaved();
      if (screen === "label") renderLabel();
      if (screen === "review") updateReview(file);
    }
  });
}

function labelCurrent(label) {
  const c = cells[cur];
  if (!c) return;
  save(c.f, label, "label");
  move(1);  // auto-advance; the old cell shows "saving" until the server confirms
}

function undo() {
  inFlight++;
  renderSaved();
  chain = chain.then(async () => {
    try {
      const r = await api("/api/undo", {});
      afterSave(r);
      if (!r.undone) { message("nothing to undo", true); return; }
      const { file, label } = r.undone;
      if (label === null) delete labels[file]; else labels[file] = label;
      const i = cells.findIndex((c) => c.f === file);
      if (i >= 0 && screen === "label") cur = i;
      message(`undone: ${file} is ${label === null ? "unlabelled" : labelText(label)} again`, true);
      if (screen === "review") api("/api/jobs/classify", {});
    } catch (e) {
      message(`undo failed: ${e.message}`);
    } finally {
      inFlight--;
      renderSaved();
      if (screen === "label") renderLabel();
      if (screen === "review") updateReview();
    }
  });
}

$("undo").addEventListener("click", undo);
$("more").addEventListener("click", () => {
  message("choosing the next cells from your labels...", true);
  api("/api/jobs/more", {}).catch((e) => message(e.message));
});
$("prev-page").addEventListener("click", () => move(-PAGE));
$("next-page").addEventListener("click", () => move(PAGE));

// ---- classify -----------------------------------------------------------------------------
function renderJobs() {
  if (!S) return;
  const box = $("jobs");
  box.innerHTML = "";
  for (const job of Object.values(S.jobs)) {
    if (job.state === "idle") continue;
    const p = document.createElement("p");
    p.className = "job";
    p.id = `job-${job.name}`;
    p.dataset.state = job.state;
    const pct = job.total ? ` <progress max="${job.total}" value="${job.done}"></progress> ${job.done} / ${job.total}` : "";
    p.innerHTML = `<b>${job.name}</b>: ${job.state}${pct} <span></span>`;
    p.querySelector("span").textContent =
      `${job.message || ""}${job.error ? " error: " + job.error : ""}${job.state === "done" ? ` (${job.seconds} s)` : ""}`;
    box.appendChild(p);
  }
}

$("run-classify").addEventListener("click", async () => {
  try {
    await chain;  // every label typed so far is in the fit
    S.jobs.classify = await api("/api/jobs/classify", {});
    renderJobs();
  } catch (e) { message(e.message); }
});

function showWarnings(box, before) {  // classify's warnings (summary.json), above `before`
  for (const text of predictions.warnings || []) {
    const p = document.createElement("p");
    p.className = "warning";
    p.textContent = text;
    box.insertBefore(p, before);
  }
}

function renderClassifyResult() {
  const box = $("classify-result");
  if (!predictions) { box.innerHTML = ""; return; }
  box.innerHTML = `<p>Method <code></code> on <code></code>; cross-validated balanced accuracy
    on your labels <b></b> (<span></span>). <a href="#" id="to-review">Review the predictions
    &rarr;</a></p><table id="counts"><tr><th>class</th><th>cells</th><th>%</th>
    <th>95 % interval</th></tr></table><p class="hint" id="interval-method"></p>`;
  showWarnings(box, $("counts"));
  const [method, features] = box.querySelectorAll("p code");
  method.textContent = predictions.method;
  features.textContent = predictions.features;
  box.querySelector("p b").textContent = `${(100 * predictions.cv_balanced_accuracy).toFixed(1)} %`;
  box.querySelector("p span").textContent = predictions.cv;
  const table = $("counts");
  for (const [c, n] of Object.entries(predictions.counts)) {
    const [lo, hi] = predictions.interval95[c];
    const row = table.insertRow();
    for (const text of [c, n, predictions.percent[c].toFixed(1), `${lo.toFixed(1)}-${hi.toFixed(1)}`])
      row.insertCell().textContent = text;
  }
  $("interval-method").textContent = predictions.interval_method;
  $("to-review").addEventListener("click", (e) => { e.preventDefault(); show("review"); });
}

// ---- review -------------------------------------------------------------------------------
async function loadPredictions() {
  try {
    predictions = await api("/api/predictions");
    labels = predictions.labels;
    renderReview();
    renderClassifyResult();
  } catch (e) {
    $("review").textContent = e.message;
  }
}

function renderReview() {
  if (!predictions || screen !== "review") return;
  const box = $("review");
  box.innerHTML = "";
  showWarnings(box, null);
  for (const c of predictions.classes) {
    const group = predictions.groups[c];
    const g = document.createElement("div");
    g.className = "group";
    g.dataset.class = c;
    const h = document.createElement("h3");
    const [lo, hi] = predictions.interval95[c];
    h.textContent = `${c}: ${group.length} cells, ${predictions.percent[c].toFixed(1)} % ` +
      `(95 % interval ${lo.toFixed(1)}-${hi.toFixed(1)})`;
    g.appendChild(h);
    const grid = document.createElement("div");
    grid.className = "grid";
    const n = shown[c] || REVIEW_SHOWN;
    for (const item of group.slice(0, n)) {
      const d = document.createElement("div");
      d.dataset.file = item.f;
      d.innerHTML = `<img loading="lazy" alt=""><div class="tag"></div>`;
      explain(d.querySelector("img"), d.querySelector(".tag"));
      d.querySelector("img").src = thumb(item.f, item.v, 128);
      d.title = `${item.f}: ${c} p=${item.p} margin=${item.m}`;
      d.addEventListener("mouseenter", () => { hovered = item.f; });
      d.addEventListener("mouseleave", () => { if (hovered === item.f) hovered = null; });
      d.addEventListener("click", (e) => openMenu(item.f, e));
      markReviewCell(d, item, c);
      grid.appendChild(d);
    }
    g.appendChild(grid);
    if (group.length > n) {
      const more = document.createElement("button");
      more.textContent = `show ${Math.min(100, group.length - n)} more`;
      more.addEventListener("click", () => { shown[c] = n + 100; renderReview(); });
      g.appendChild(more);
    }
    box.appendChild(g);
  }
}

// A review cell's state: predicted p, or the label a person gave it (saving / labelled /
// corrected). Updated in place, so the cells do not move under the mouse.
function markReviewCell(d, item, c) {
  const label = cellLabel(item.f);
  d.className = "cell" + (item.f in pending ? " pending"
    : (label ? (label === c ? " labelled" : " corrected") : ""));
  d.querySelector(".tag").textContent = label
    ? (label === c ? "labelled" : "→ " + labelText(label))
    : `p ${item.p.toFixed(2)}`;
}

function updateReview(file) {
  if (!predictions) return;
  for (const d of document.querySelectorAll("#review .cell")) {
    if (file !== undefined && d.dataset.file !== file) continue;
    const c = d.closest(".group").dataset.class;
    const item = predictions.groups[c].find((it) => it.f === file);
    if (item) markReviewCell(d, item, c);
  }
}

// A refit finished while the person reviews: offer the new groups rather than moving the
// cells under the mouse.
async function offerRefit() {
  const fresh = await api("/api/predictions");
  let bar = $("refit");
  if (!bar) {
    bar = document.createElement("p");
    bar.id = "refit";
    bar.innerHTML = `<button>Refitted with your corrections: show the new predictions</button>`;
    $("review").prepend(bar);
  }
  bar.querySelector("button").onclick = () => {
    predictions = fresh;
    labels = fresh.labels;
    renderReview();
    renderClassifyResult();
  };
}

function openMenu(file, e) {
  const menu = $("menu");
  menu.innerHTML = "";
  [...S.classes, S.unsure].forEach((c, i) => {
    const b = document.createElement("button");
    b.textContent = `${c === S.unsure ? "0" : (i < 9 ? i + 1 : "")} ${labelText(c)}`;
    b.dataset.label = c;
    b.addEventListener("click", () => { menu.hidden = true; save(file, c, "correction"); });
    menu.appendChild(b);
  });
  menu.style.left = `${e.pageX}px`;
  menu.style.top = `${e.pageY}px`;
  menu.hidden = false;
  e.stopPropagation();
}

document.addEventListener("click", () => { $("menu").hidden = true; });

// ---- export -------------------------------------------------------------------------------
$("run-export").addEventListener("click", async () => {
  try {
    await chain;
    S.jobs.export = await api("/api/jobs/export", {});
    $("export-result").textContent = "exporting...";
  } catch (e) { message(e.message); }
});

function renderExport() {
  const job = S.jobs.export;
  const box = $("export-result");
  if (job.state === "failed") { box.textContent = `export failed: ${job.error}`; return; }
  if (job.state !== "done") { box.textContent = `export: ${job.state} ${job.done} / ${job.total}`; return; }
  box.innerHTML = `<p>Written to <code></code>:</p><ul id="export-files"></ul>
    <p>The same result from the command line:</p><pre></pre>`;
  box.querySelector("code").textContent = job.result.folder;
  const ul = box.querySelector("ul");
  for (const f of job.result.files) {
    const li = document.createElement("li");
    li.textContent = f;
    ul.appendChild(li);
  }
  box.querySelector("pre").textContent = job.result.command;
}

// ---- keys ---------------------------------------------------------------------------------
document.addEventListener("keydown", (e) => {
  const t = e.target.tagName;
  if (t === "TEXTAREA" || t === "INPUT" || t === "SELECT") return;
  if (!S || e.altKey || e.metaKey) return;
  const k = e.key;
  if (k === "z" || (e.ctrlKey && k === "z") || k === "Backspace") { e.preventDefault(); undo(); return; }
  if (e.ctrlKey) return;
  const digit = /^[0-9]$/.test(k) ? Number(k) : null;
  const label = digit === 0 ? S.unsure : (digit ? S.classes[digit - 1] : undefined);
  if (screen === "label") {
    if (label !== undefined) { e.preventDefault(); labelCurrent(label); }
    else if (k === "u") { e.preventDefault(); labelCurrent(S.unsure); }
    else if (k === "m") { e.preventDefault(); $("more").click(); }
    else if (k === "ArrowRight" || (k === " " && !e.shiftKey)) { e.preventDefault(); move(1); }
    else if (k === "ArrowLeft" || (k === " " && e.shiftKey)) { e.preventDefault(); move(-1); }
    else if (k === "ArrowDown") { e.preventDefault(); move(10); }
    else if (k === "ArrowUp") { e.preventDefault(); move(-10); }
  } else if (screen === "review" && label !== undefined && hovered) {
    e.preventDefault();
    save(hovered, label, "correction");
  }
});

for (const b of document.querySelectorAll("header nav button"))
  b.addEventListener("click", () => show(b.dataset.screen));

// ---- polling: other tabs' labels, job progress ----------------------------------------------
async function poll() {
  try {
    const v = await api("/api/version");
    const ended = (name) => v.jobs[name].runs !== (jobsBefore[name] || {}).runs;
    const finished = (name) => ended(name) && v.jobs[name].state === "done";
    const failed = (name) => ended(name) && v.jobs[name].state === "failed";
    S.jobs = v.jobs;
    if (finished("proposals") || finished("more")) {
      await loadCells();
      if (finished("more")) {
        const r = v.jobs.more.result;
        const why = Object.entries(r.reasons || {}).map(([k, n]) => `${n} ${k}`).join(", ");
        message(`${r.proposed} more cells to label${why ? " (" + why + ")" : ""}`, true);
      }
      if (screen === "label") renderLabel();
    }
    if (finished("classify")) {
      if (screen === "review" && predictions) await offerRefit();
      else await loadPredictions();
    }
    if (finished("export") || failed("export") || (jobsBefore.export || {}).state === "running") renderExport();
    for (const name of ["features", "classify", "proposals", "more"])
      if (failed(name)) message(`${name} failed: ${v.jobs[name].error}`);
    if (v.version !== S.version && inFlight === 0) {  // another tab changed something
      await loadState();
      await loadCells();
      if (screen === "label") renderLabel();
      if (screen === "review") updateReview();
    }
    jobsBefore = JSON.parse(JSON.stringify(v.jobs));
    renderJobs();
  } catch (e) {
    message(`server not answering: ${e.message}`);
  }
  setTimeout(poll, 700);
}

(async function start() {
  if (!TOKEN) { message("Open the URL the server printed (it ends in ?token=...)."); return; }
  try {
    await loadState();
    await loadCells();
    jobsBefore = JSON.parse(JSON.stringify(S.jobs));
    renderClasses();
    await loadPredictions();  // the last classify's, if any (kept across restarts)
    show(S.classes.length ? "label" : "classes");
  } catch (e) { message(e.message); return; }
  poll();
})();
