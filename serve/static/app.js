// paretolab serve: fills a page from the server's JSON and SVG routes and keeps it up to date.
// Every 2 s it asks /api/signature (names and sizes of the store's files); when that changed, it
// refetches the page's parts. Values fetched are set as text, never as markup.
"use strict";

const POLL_MS = 2000;
const body = document.body;
const page = body.dataset.page;
const sweeps = body.dataset.sweeps ? JSON.parse(body.dataset.sweeps) : [];
let signature = null;
let cellsState = { sort: null, desc: false, offset: 0, limit: 100, filters: {} };
let meta = null;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function query(extra) {
  const p = new URLSearchParams();
  for (const s of sweeps) p.append("s", s);
  for (const [k, v] of Object.entries(extra || {})) if (v !== null && v !== undefined && v !== "") p.append(k, v);
  if (signature) p.append("v", signature);
  return p.toString();
}

async function getJSON(path) {
  const r = await fetch(path, { credentials: "same-origin" });
  const data = await r.json();
  if (!r.ok) throw new Error(data.error || r.statusText);
  return data;
}

function fmt(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") {
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    return a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(3) : String(Number(v.toPrecision(4)));
  }
  if (Array.isArray(v)) return v.map(fmt).join(", ");
  return String(v);
}

function duration(s) {
  if (s === null || s === undefined) return "";
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function bar(fraction) {
  const b = el("span", null, "bar");
  const fill = el("span");
  fill.style.width = `${Math.round(100 * fraction)}%`;
  b.appendChild(fill);
  b.title = `${(100 * fraction).toFixed(1)}%`;
  return b;
}

function fillTable(table, columns, rows, cellFor) {
  table.replaceChildren();
  const head = el("thead"), tr = el("tr");
  for (const c of columns) tr.appendChild(typeof c === "string" ? el("th", c) : c);
  head.appendChild(tr);
  const tbody = el("tbody");
  for (const row of rows) {
    const r = el("tr");
    row.forEach((v, i) => {
      const custom = cellFor ? cellFor(columns[i], v, row) : null;
      const td = custom || (v === null ? el("td", "NULL", "note") : el("td", fmt(v), typeof v === "number" ? "num" : null));
      r.appendChild(td);
    });
    tbody.appendChild(r);
  }
  table.append(head, tbody);
}

function statusRow(s, link) {
  const r = el("tr");
  r.dataset.sweep = s.sweep;
  for (const k of ["ended", "total", "succeeded", "failed", "diverged", "pruned", "running"]) r.dataset[k] = s[k];
  const name = el("td");
  if (link) {
    const a = el("a", s.sweep);
    a.href = "/sweep?" + new URLSearchParams({ s: s.sweep }).toString();
    name.appendChild(a);
  } else name.textContent = s.sweep;
  const progress = el("td");
  progress.append(bar(s.progress), el("span", ` ${(100 * s.progress).toFixed(0)}%`));
  r.append(name, progress);
  for (const k of ["ended", "total", "succeeded", "failed", "diverged", "pruned", "running"]) r.appendChild(el("td", s[k], "num"));
  r.appendChild(el("td", s.rate_per_s === null ? "" : s.rate_per_s.toFixed(2), "num"));
  r.appendChild(el("td", s.ended >= s.total ? "done" : duration(s.eta_s), "num"));
  return r;
}

// A figure is fetched as SVG text and shown through an object URL once it has loaded, so the old
// one stays until the new one is ready; an error shows the server's message under it. Its link
// under it opens the numbers it draws (its `data-api` route: the answer the figure was drawn from).
async function loadFigure(id, path, params) {
  const img = document.getElementById(id);
  const why = img.parentElement.querySelector(".why");
  const numbers = img.parentElement.querySelector("a.numbers");
  if (numbers) numbers.href = `${numbers.dataset.api}?${query(params)}`;
  img.dataset.state = "loading";
  try {
    const r = await fetch(`${path}?${query(params)}`, { credentials: "same-origin" });
    const text = await r.text();
    if (!r.ok) throw new Error(text);
    const url = URL.createObjectURL(new Blob([text], { type: "image/svg+xml" }));
    await new Promise((resolve, reject) => {
      img.onload = resolve;
      img.onerror = () => reject(new Error("the figure did not decode"));
      const old = img.dataset.url;
      img.src = url;
      img.dataset.url = url;
      if (old) setTimeout(() => URL.revokeObjectURL(old), 1000);
    });
    img.dataset.hash = String(hash(text));
    img.dataset.state = "ok";
    why.textContent = "";
  } catch (e) {
    img.dataset.state = "error";
    why.textContent = e.message;
    why.classList.add("error");
  }
}

function hash(text) {
  let h = 0;
  for (let i = 0; i < text.length; i++) h = (h * 31 + text.charCodeAt(i)) | 0;
  return h >>> 0;
}

async function guard(what, fn) {
  try {
    await fn();
  } catch (e) {
    const why = document.getElementById("why");
    if (why) {
      why.textContent = `${what}: ${e.message}`;
      why.classList.add("error");
    }
  }
}

// ---- the sweeps page

async function refreshSweeps() {
  const data = await getJSON(`/api/sweeps?${query()}`);
  const tbody = document.querySelector("#sweeps tbody");
  const chosen = new Set([...tbody.querySelectorAll("input:checked")].map((i) => i.value));
  tbody.replaceChildren();
  for (const s of data.sweeps) {
    const r = statusRow(s, true);
    const box = el("input");
    box.type = "checkbox";
    box.value = s.sweep;
    box.checked = chosen.has(s.sweep);
    box.addEventListener("change", updateCompare);
    const td = el("td");
    td.appendChild(box);
    r.prepend(td);
    tbody.appendChild(r);
  }
  document.getElementById("why").textContent = data.why || (data.sweeps.length ? "" : "no sweep in the store yet");
  updateCompare();
}

function updateCompare() {
  const chosen = [...document.querySelectorAll("#sweeps input:checked")].map((i) => i.value);
  const button = document.getElementById("compare");
  button.disabled = chosen.length < 2;
  button.onclick = () => {
    const p = new URLSearchParams();
    for (const s of chosen) p.append("s", s);
    location.href = "/sweep?" + p.toString();
  };
}

// ---- the sweep page

function controls() {
  const f = document.getElementById("controls");
  return Object.fromEntries([...f.elements].filter((e) => e.name).map((e) => [e.name, e.value]));
}

function options(select, values, chosen, none) {
  select.replaceChildren();
  if (none) select.appendChild(el("option", none)).value = "";
  for (const v of values) select.appendChild(el("option", v)).value = v;
  const wanted = chosen === null || chosen === undefined ? "" : chosen;
  select.value = [...select.options].some((o) => o.value === wanted) ? wanted : select.options.length ? select.options[0].value : "";
}

let controlsReady = false;

// The choices come from the sweep's own axes and values, fetched again at each update (a running
// sweep's values and metrics appear as its trials end); a choice made stays while it is offered.
async function sweepMeta() {
  meta = await getJSON(`/api/meta?${query()}`);
  const f = document.getElementById("controls");
  const d = meta.defaults;
  const keep = (select, fallback) => (controlsReady ? select.value : fallback);
  options(f.elements.x, meta.axes, keep(f.elements.x, d.x), "(default)");
  options(f.elements.y, meta.axes, keep(f.elements.y, d.y), "(none: lines)");
  options(f.elements.frontier_x, meta.numeric_axes, keep(f.elements.frontier_x, d.frontier_x), "(default)");
  options(f.elements.by, meta.axes.filter((a) => a !== "sweep"), keep(f.elements.by, d.by), "(none)");
  options(f.elements.metric, meta.metrics, keep(f.elements.metric, d.metric));
  document.getElementById("criterion").textContent =
    `success: ${meta.success}; axes: ${meta.axes.join(", ") || "none"}; cost: ${meta.cost}`;
  const filters = document.getElementById("filters");
  if (!controlsReady) filters.replaceChildren(el("span", "filter: ", "note"));
  for (const p of meta.parameters) {
    let select = filters.querySelector(`select[name="${CSS.escape(p)}"]`);
    if (!select) {
      const label = el("label", `${p} `);
      select = el("select");
      select.name = p;
      select.onchange = () => {
        if (select.value) cellsState.filters[p] = select.value;
        else delete cellsState.filters[p];
        cellsState.offset = 0;
        guard("cells", cellsTable);
      };
      label.appendChild(select);
      filters.appendChild(label);
    }
    const chosen = select.value;
    select.replaceChildren();
    select.appendChild(el("option", "(all)")).value = "";
    for (const v of meta.values[p] || []) select.appendChild(el("option", v === null ? "NULL" : v)).value = v === null ? "__null__" : v;
    select.value = [...select.options].some((o) => o.value === chosen) ? chosen : "";
  }
  if (!controlsReady) setUpControls(f);
  controlsReady = true;
}

function setUpControls(f) {
  f.elements.x.onchange = f.elements.y.onchange = () => guard("phase diagram", phaseFigure);
  f.elements.frontier_x.onchange = () => guard("frontier", frontierFigure);
  f.elements.by.onchange = () => guard("groups", () => Promise.all([frontierFigure(), curvesFigure(), transitions(), luckFigure()]));
  f.elements.curve_x.onchange = f.elements.metric.onchange = () => guard("curves", curvesFigure);
  document.getElementById("cells-prev").onclick = () => {
    cellsState.offset = Math.max(0, cellsState.offset - cellsState.limit);
    guard("cells", cellsTable);
  };
  document.getElementById("cells-next").onclick = () => {
    cellsState.offset += cellsState.limit;
    guard("cells", cellsTable);
  };
}

const phaseFigure = () => loadFigure("fig-phase", "/fig/phase.svg", { x: controls().x, y: controls().y });
const frontierFigure = () => loadFigure("fig-frontier", "/fig/frontier.svg", { x: controls().frontier_x, by: controls().by });
const curvesFigure = () => loadFigure("fig-curves", "/fig/curves.svg", { by: controls().by, x: controls().curve_x, metric: controls().metric });
const luckFigure = () => loadFigure("fig-luck", "/fig/luck.svg", { by: controls().by });

async function sweepStatus() {
  const data = await getJSON(`/api/status?${query()}`);
  document.querySelector("#status tbody").replaceChildren(...data.sweeps.map((s) => statusRow(s, false)));
}

async function cellsTable() {
  const params = { limit: cellsState.limit, offset: cellsState.offset, sort: cellsState.sort, desc: cellsState.desc ? "1" : "" };
  for (const [k, v] of Object.entries(cellsState.filters)) params[`f.${k}`] = v;
  const data = await getJSON(`/api/cells?${query(params)}`);
  const heads = data.columns.map((c) => {
    const th = el("th", c + (cellsState.sort === c ? (cellsState.desc ? " \u25BC" : " \u25B2") : ""), "sortable");
    if (cellsState.sort === c) th.classList.add("sorted");
    th.dataset.column = c;
    th.onclick = () => {
      cellsState.desc = cellsState.sort === c ? !cellsState.desc : false;
      cellsState.sort = c;
      guard("cells", cellsTable);
    };
    return th;
  });
  fillTable(document.getElementById("cells"), heads, data.rows);
  const last = Math.min(data.total, cellsState.offset + data.rows.length);
  const count = document.getElementById("cells-count");
  count.textContent = data.total ? `cells ${cellsState.offset + 1}-${last} of ${data.total}` : "no cell yet: no trial has ended";
  count.dataset.total = data.total;
  document.getElementById("cells-prev").disabled = cellsState.offset === 0;
  document.getElementById("cells-next").disabled = last >= data.total;
}

async function transitions() {
  const data = await getJSON(`/api/transitions?${query({ by: controls().by })}`);
  fillTable(document.getElementById("transitions"), data.columns, data.rows);
  document.getElementById("transitions-why").textContent = (data.rows.length ? "" : "no curve yet; ") + data.notes.join("; ");
}

function trialLink(id) {
  const a = el("a", id);
  a.href = "/trial?" + new URLSearchParams({ id }).toString();
  return a;
}

async function failures() {
  const data = await getJSON(`/api/failures?${query()}`);
  document.getElementById("failures-count").textContent = data.total ? `${data.total} failed trials` : "none";
  fillTable(document.getElementById("failures"), data.rows.length ? data.columns : [], data.rows, (column, v) => {
    if (column === "error") return el("td", null).appendChild(el("pre", v)).parentElement;
    if (column !== "examples") return null;
    const td = el("td");
    (v || []).forEach((id, i) => td.append(...(i ? [", ", trialLink(id)] : [trialLink(id)])));
    return td;
  });
}

async function spec() {
  const data = await getJSON(`/api/spec?${query()}`);
  const box = document.getElementById("spec");
  box.replaceChildren();
  for (const s of data.specs) {
    if (data.specs.length > 1) box.appendChild(el("h3", s.sweep));
    box.appendChild(el("pre", s.spec || "(no spec text: the sweep was written by other means)"));
  }
}

async function refreshSweep() {
  // The choices first on the first visit (the parts are asked for with them); at an update, the
  // choices made stand, so they are fetched with the parts, not before them: an update's parts
  // then do not wait for the new choices in turn. Should the new choices change one made (a value
  // no longer offered), the parts are asked for again with it.
  const first = !controlsReady;
  if (first) await guard("sweep", sweepMeta);
  const chosen = JSON.stringify(controls());
  // The tables first, then the figures (a browser sends six requests to a host at a time, and the
  // server computes the tables before the figures, which take most of its time): the counts, cells
  // and transitions of an update arrive while the figures are drawn.
  await Promise.all([
    first ? null : guard("sweep", sweepMeta),
    guard("status", sweepStatus), guard("cells", cellsTable), guard("transitions", transitions),
    guard("failures", failures), guard("spec", spec), guard("phase diagram", phaseFigure),
    guard("curves", curvesFigure), guard("frontier", frontierFigure), guard("luck", luckFigure),
  ]);
  if (JSON.stringify(controls()) !== chosen) {
    await Promise.all([guard("transitions", transitions), guard("phase diagram", phaseFigure),
      guard("curves", curvesFigure), guard("frontier", frontierFigure), guard("luck", luckFigure)]);
  }
}

// ---- the trial page

async function refreshTrial() {
  const id = body.dataset.trial;
  const data = await getJSON(`/api/trial?${new URLSearchParams({ id, v: signature || "" })}`);
  document.getElementById("trial-status").textContent =
    `status: ${data.status}${data.ended ? "" : " (no result yet)"}; ${data.curve_rows} curve rows, last step ${fmt(data.last_step)}`;
  const error = document.getElementById("trial-error");
  error.hidden = !data.error;
  error.textContent = data.error || "";
  const where = document.getElementById("trial-sweeps");
  where.replaceChildren(el("span", "sweeps: "));
  data.sweeps.forEach((s, i) => {
    const a = el("a", s);
    a.href = "/sweep?" + new URLSearchParams({ s }).toString();
    where.append(...(i ? [", ", a] : [a]));
  });
  fillTable(document.getElementById("trial-fields"), ["field", "value"], Object.entries(data.fields));
  await loadFigure("fig-trial", "/fig/trial.svg", { id });
}

// ---- updates

const REFRESH = { sweeps: refreshSweeps, sweep: refreshSweep, trial: refreshTrial };

async function poll() {
  try {
    const { signature: now } = await getJSON("/api/signature");
    const live = document.getElementById("live");
    if (now !== signature) {
      signature = now;
      live.textContent = "updating";
      await guard("update", REFRESH[page]);
      body.dataset.signature = now;
    }
    live.textContent = `live: checked ${new Date().toLocaleTimeString()}`;
    live.classList.remove("error");
  } catch (e) {
    const live = document.getElementById("live");
    live.textContent = `cannot reach the server (${e.message}); retrying`;
    live.classList.add("error");
  }
  setTimeout(poll, POLL_MS);
}

(async () => {
  if (REFRESH[page]) poll();
})();
