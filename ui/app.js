// Atelier dashboard: plain JS, no framework. Every datum comes from atelierd's
// API with the bearer token the operator typed in (kept in sessionStorage,
// this tab only). The page offers only what the token's role may do; the
// server checks every write anyway. Live updates: /v1/events read with fetch()
// streaming, because EventSource cannot send an Authorization header.

const $ = (sel, root = document) => root.querySelector(sel);
const TOKEN_KEY = "atelier.token";
const state = { token: sessionStorage.getItem(TOKEN_KEY), me: null, live: null, cleanup: [], blobs: new Map() };

// ---- DOM ----

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "width" && tag === "span") el.style.width = v; // CSSOM: allowed under the CSP
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) if (kid != null && kid !== false) el.append(kid.nodeType ? kid : String(kid));
  return el;
}
// replaceChildren without the "null" text a missing optional kid would become
const fill = (el, ...kids) => el.replaceChildren(...kids.flat().filter((k) => k != null && k !== false));
const isOperator = () => state.me && state.me.role === "operator";
function toast(msg, bad) {
  let box = $("#toasts");
  if (!box) document.body.append(box = h("div", { id: "toasts" })); // stacked, never on top of each other
  const t = h("div", { class: "toast" + (bad ? " bad" : ""), role: "status", text: msg });
  box.append(t);
  setTimeout(() => t.remove(), 4000);
}

// ---- formatting ----

function dur(s) {
  if (s == null || !isFinite(s)) return "—";
  s = Math.max(0, Math.round(s));
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " m " + (s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " m";
}
function when(t) {
  if (!t) return "—";
  const d = new Date(t), ago = (Date.now() - d) / 1000;
  if (ago < 60) return Math.max(0, Math.round(ago)) + " s ago";
  if (ago < 3600) return Math.round(ago / 60) + " min ago";
  if (ago < 86400) return Math.round(ago / 3600) + " h ago";
  return d.toISOString().slice(0, 16).replace("T", " ");
}
const fmt = (x, d = 3) => (x == null || typeof x !== "number" ? "—" : Number.isInteger(x) || Math.abs(x) >= 1000 ? x.toFixed(0) : x.toPrecision(d));
const badge = (s, extra) => h("span", { class: "badge " + (extra || s), text: s });
function progressBar(p, st) {
  const pct = p == null ? 0 : Math.round(p * 100);
  return h("span", {}, h("span", { class: "bar " + (st || ""), role: "progressbar", "aria-valuenow": pct },
    h("span", { width: pct + "%" })), h("span", { class: "pct", text: pct + " %" }));
}

// ---- API ----

class ApiError extends Error {
  constructor(status, msg) { super(msg); this.status = status; }
}
async function api(path, opts = {}) {
  const headers = { Authorization: "Bearer " + state.token };
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method: opts.method || "GET", headers,
    body: opts.body !== undefined ? JSON.stringify(opts.body) : undefined });
  if (r.status === 401) { signOut("Your token was refused; sign in again."); throw new ApiError(401, "unauthorized"); }
  const text = await r.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  if (!r.ok) throw new ApiError(r.status, (body && (body.error && body.error.message || body.message || body.error)) || r.status + " " + r.statusText);
  return body;
}
// An image behind the bearer: fetched, kept as a blob: URL (the CSP allows blob: images).
async function authImg(img, url) {
  try {
    let u = state.blobs.get(url);
    if (!u) {
      const r = await fetch(url, { headers: { Authorization: "Bearer " + state.token } });
      if (!r.ok) throw new Error(r.status);
      u = URL.createObjectURL(await r.blob());
      state.blobs.set(url, u);
    }
    img.src = u;
  } catch (e) { img.alt = "image unavailable (" + e.message + ")"; }
}
const image = (url, alt) => { const i = h("img", { alt: alt || "", loading: "lazy" }); authImg(i, url); return i; };

// Server-Sent Events over fetch(): yields {event, data} until the stream ends or signal aborts.
async function sse(path, signal, onEvent) {
  const r = await fetch(path, { headers: { Authorization: "Bearer " + state.token, Accept: "text/event-stream" }, signal });
  if (!r.ok || !r.body) throw new ApiError(r.status, "stream refused");
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let event = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      let parsed = data;
      try { parsed = JSON.parse(data); } catch { /* keep the text */ }
      onEvent(event, parsed);
    }
  }
}

// The one live feed: run and job state changes; the page on screen decides what to refresh.
let liveHandler = null, liveTimer = null;
function startLive() {
  const ctl = new AbortController();
  state.live = ctl;
  const dot = $("#live");
  const loop = async () => {
    while (!ctl.signal.aborted) {
      try {
        await sse("/v1/events", ctl.signal, (ev, data) => {
          dot.classList.add("on");
          if (ev === "hello" || !liveHandler) return;
          clearTimeout(liveTimer);
          const fn = liveHandler;
          // a burst of job events: one refresh; a failed one waits for the next event
          liveTimer = setTimeout(() => Promise.resolve().then(() => fn(ev, data)).catch((e) => console.warn("refresh:", e.message)), 250);
        });
      } catch (e) { if (ctl.signal.aborted) return; }
      dot.classList.remove("on");
      await new Promise((r) => setTimeout(r, 2000));
    }
  };
  loop();
}

// ---- sign in ----

async function signIn(token) {
  state.token = token;
  const me = await api("/v1/whoami");
  state.me = me;
  sessionStorage.setItem(TOKEN_KEY, token);
  $("#signin").hidden = true;
  $("#nav").hidden = $("#who").hidden = false;
  $("#who-name").textContent = me.name || "token #" + me.token_id;
  $("#who-role").textContent = me.role;
  document.body.dataset.role = me.role;
  startLive();
  route();
}
function signOut(msg) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  state.me = null;
  if (state.live) state.live.abort();
  for (const u of state.blobs.values()) URL.revokeObjectURL(u);
  state.blobs.clear();
  runCleanup();
  fill($("#page"));
  $("#nav").hidden = $("#who").hidden = true;
  $("#signin").hidden = false;
  const e = $("#signin-error");
  e.hidden = !msg;
  e.textContent = msg || "";
}

// ---- confirmation dialog ----

function confirmDialog(title, body, okText, danger) {
  const dlg = $("#dialog"), form = $("#dialog-form");
  fill(form, h("h2", { text: title }), ...body,
    h("div", { class: "actions" }, h("button", { value: "cancel", formnovalidate: true, text: "Cancel" }),
      h("button", { value: "ok", class: danger ? "danger" : "primary", id: "dialog-ok", text: okText })));
  return new Promise((resolve) => {
    dlg.addEventListener("close", () => resolve(dlg.returnValue === "ok"), { once: true });
    dlg.returnValue = "";
    dlg.showModal();
  });
}

// ---- charts (Chart.js, embedded at build time from Debian's libjs-chart.js) ----

const PALETTE = ["#4f46e5", "#16a34a", "#ea580c", "#0891b2", "#db2777", "#ca8a04", "#7c3aed", "#dc2626", "#0d9488", "#64748b"];
function chart(box, cfg) {
  const canvas = h("canvas", { role: "img", "aria-label": cfg.label || "chart" });
  fill(box, canvas);
  if (!window.Chart) { fill(box, h("p", { class: "muted", text: "charts unavailable (libjs-chart.js was not installed at build time)" })); return null; }
  const css = getComputedStyle(document.documentElement);
  const ink = css.getPropertyValue("--muted").trim(), grid = css.getPropertyValue("--line").trim();
  const c = new window.Chart(canvas, {
    type: cfg.type || "line",
    data: { labels: cfg.labels, datasets: cfg.datasets },
    options: {
      animation: false, responsive: true, maintainAspectRatio: false, parsing: cfg.parsing,
      interaction: { mode: "nearest", intersect: false },
      elements: { point: { radius: cfg.points ? 3 : 0 }, line: { borderWidth: 1.8, tension: 0 } },
      plugins: { legend: { display: window.innerWidth > 700 || cfg.datasets.length <= 4, labels: { color: ink, boxWidth: 12 } } },
      scales: {
        x: { type: cfg.xType || "linear", title: { display: !!cfg.xTitle, text: cfg.xTitle, color: ink }, ticks: { color: ink, maxTicksLimit: 8, precision: cfg.intX ? 0 : undefined }, grid: { color: grid }, stacked: cfg.stacked },
        y: { type: cfg.log ? "logarithmic" : "linear", title: { display: !!cfg.yTitle, text: cfg.yTitle, color: ink }, ticks: { color: ink, maxTicksLimit: 6 }, grid: { color: grid }, stacked: cfg.stacked },
      },
    },
  });
  state.cleanup.push(() => c.destroy());
  return c;
}
function ema(points, alpha) {
  if (!alpha) return points;
  let s = null;
  return points.map(([x, y]) => { s = s == null ? y : alpha * s + (1 - alpha) * y; return [x, s]; });
}

// ---- pages ----

function pageHead(title, sub, ...right) {
  return h("div", { class: "pagehead" }, h("div", {}, h("h1", { text: title }), sub ? h("div", { class: "muted" }, sub) : null), h("div", { class: "filters" }, ...right));
}
// stack: on a phone each row becomes a short block instead of a wide line
function tableOf(heads, rows, empty, stack) {
  if (!rows.length) return h("p", { class: "empty", text: empty || "nothing yet" });
  return h("div", { class: "tablewrap" + (stack ? " stack-sm" : "") }, h("table", {}, h("thead", {}, h("tr", {}, heads.map((x) => h("th", { class: x[0] === "#" ? "num" : x[0] === "~" ? "hide-sm" : "", text: x.replace(/^[#~]/, "") })))), h("tbody", {}, rows)));
}
function select(name, options, value, onchange) {
  const s = h("select", { name, onchange: () => onchange(s.value) }, options.map(([v, t]) => h("option", { value: v, text: t })));
  s.value = value == null ? "" : String(value);
  return s;
}
const field = (label, input) => h("label", {}, label, input);
function setHash(page, params) {
  const q = new URLSearchParams(Object.entries(params).filter(([, v]) => v != null && v !== "")).toString();
  location.hash = "#/" + page + (q ? "?" + q : "");
}

// Runs: table with filters; refreshed on every run/job event.
async function pageRuns(root, q) {
  const pipes = (await api("/v1/pipelines")).pipelines || [];
  const runsBox = h("div", { class: "card", id: "runs" });
  const filters = [
    field("Pipeline", select("pipeline", [["", "all"], ...pipes.map((p) => [p.name, p.name])], q.get("pipeline"), (v) => setHash("runs", { pipeline: v, state: q.get("state") }))),
    field("State", select("state", [["", "any"], ...["queued", "running", "succeeded", "failed", "cancelled", "skipped"].map((s) => [s, s])], q.get("state"), (v) => setHash("runs", { pipeline: q.get("pipeline"), state: v }))),
  ];
  if (isOperator() && q.get("pipeline")) {
    filters.push(h("button", { class: "primary", id: "start-run", type: "button", text: "Run now", onclick: async () => {
      try { const r = await api("/v1/pipelines/" + encodeURIComponent(q.get("pipeline")) + "/runs", { method: "POST", body: {} }); toast("run #" + r.run + (r.coalesced ? " already queued" : " queued")); refresh(); } catch (e) { toast(e.message, true); }
    } }));
  }
  fill(root, pageHead("Runs", "live: updates as jobs move", ...filters), runsBox);
  async function refresh() {
    const p = new URLSearchParams({ limit: "50" });
    if (q.get("pipeline")) p.set("pipeline", q.get("pipeline"));
    if (q.get("state")) p.set("state", q.get("state"));
    const runs = (await api("/v1/runs?" + p)).runs || [];
    fill(runsBox, tableOf(["#Run", "Pipeline", "State", "~Trigger", "Progress", "ETA", "~Started", "#Duration"], runs.map((r) =>
      h("tr", { class: "click", "data-run": r.run_id, "data-state": r.state, onclick: () => { location.hash = "#/runs/" + r.run_id; } },
        h("td", { class: "num" }, h("a", { href: "#/runs/" + r.run_id, text: "#" + r.run_id })),
        h("td", { text: r.pipeline + " v" + r.pipeline_version }),
        h("td", {}, badge(r.state)),
        h("td", { class: "muted hide-sm", text: r.trigger }),
        h("td", {}, progressBar(r.state === "succeeded" ? 1 : r.progress, r.state)),
        h("td", { text: r.state === "running" || r.state === "queued" ? dur(r.eta_seconds) : "—" }),
        h("td", { class: "hide-sm", text: when(r.started_at || r.created_at) }),
        h("td", { class: "num", text: dur(r.seconds) }))), "no runs match"));
  }
  liveHandler = refresh;
  await refresh();
}

// One run: summary, Gantt of its jobs, jobs table, loss chart, log tail.
async function pageRun(root, id) {
  const head = h("div"), summary = h("div", { class: "card" }), gantt = h("div", { class: "card" }),
    jobsBox = h("div", { class: "card" }), lossBox = h("div", { class: "chartbox", id: "loss" }), logCard = h("div", { class: "card" });
  fill(root, head, summary, gantt, h("div", { class: "card" }, h("h2", { text: "Training loss" }), lossBox), logCard, jobsBox);
  let logJob = null, logCtl = null, lastMetrics = 0;
  state.cleanup.push(() => logCtl && logCtl.abort());

  async function refresh() {
    const d = await api("/v1/runs/" + id);
    const r = d.run, jobs = d.jobs || [];
    const terminal = ["succeeded", "failed", "cancelled", "skipped"].includes(r.state);
    const cancel = isOperator() && !terminal ? h("button", { class: "danger", id: "cancel-run", type: "button", text: "Cancel run", onclick: async () => {
      if (!(await confirmDialog("Cancel run #" + id + "?", [h("p", { text: "Running jobs stop at their next heartbeat." })], "Cancel run", true))) return;
      try { await api("/v1/runs/" + id + "/cancel", { method: "POST", body: {} }); toast("cancel requested"); refresh(); } catch (e) { toast(e.message, true); }
    } }) : null;
    fill(head, pageHead("Run #" + id, [h("a", { href: "#/runs?pipeline=" + encodeURIComponent(r.pipeline), text: r.pipeline }), " v" + r.pipeline_version + " · " + r.trigger], cancel));
    fill(summary, h("dl", { class: "kv" },
      h("div", {}, h("dt", { text: "State" }), h("dd", { id: "run-state" }, badge(r.state))),
      h("div", {}, h("dt", { text: "Progress" }), h("dd", {}, progressBar(r.state === "succeeded" ? 1 : r.progress, r.state))),
      h("div", {}, h("dt", { text: "ETA" }), h("dd", { text: terminal ? "—" : dur(r.eta_seconds) })),
      h("div", {}, h("dt", { text: "Stages" }), h("dd", { text: r.stages_succeeded + " / " + r.stages_total })),
      h("div", {}, h("dt", { text: "Duration" }), h("dd", { text: dur(r.seconds) })),
      h("div", {}, h("dt", { text: "Created" }), h("dd", { text: when(r.created_at) }))),
    r.error ? h("p", { class: "error", id: "run-error", text: r.error }) : null);
    drawGantt(gantt, d.stages || [], jobs);
    fill(jobsBox, h("h2", { text: "Jobs" }), tableOf(["#Job", "Stage", "State", "#Attempts", "Worker", "Progress", "Message"], jobs.map((j) =>
      h("tr", { class: "click", onclick: () => followLog(j) },
        h("td", { class: "num", text: j.id }), h("td", { text: j.stage }), h("td", {}, badge(j.state)),
        h("td", { class: "num", text: j.attempts + "/" + j.max_attempts }), h("td", { class: "mono", text: j.worker || "—" }),
        h("td", {}, progressBar(j.state === "succeeded" ? 1 : j.progress, j.state)),
        h("td", { class: "wrap " + (j.error ? "error" : "muted"), text: j.error || j.message || "" })))));
    // the log: the running job's, else the last one's (the user may pick another)
    const pick = jobs.find((j) => j.state === "running") || jobs[jobs.length - 1];
    if (pick && (!logJob || (logJob.state !== "running" && pick.id !== logJob.id && pick.state === "running"))) followLog(pick);
    if (Date.now() - lastMetrics > 3000 || terminal) { lastMetrics = Date.now(); drawLoss(); }
  }
  async function drawLoss() {
    const m = await api("/v1/runs/" + id + "/metrics");
    const names = Object.keys(m.series || {});
    if (!names.length) { fill(lossBox, h("p", { class: "empty", text: "no metrics yet" })); return; }
    const ds = names.map((n, i) => ({ label: n, data: m.series[n].map(([x, y]) => ({ x, y })), borderColor: PALETTE[i % PALETTE.length], backgroundColor: PALETTE[i % PALETTE.length] }));
    const prev = lossBox.querySelector("canvas") && window.Chart && window.Chart.getChart(lossBox.querySelector("canvas"));
    if (prev) { prev.data.datasets = ds; prev.update(); return; }
    const ys = ds.flatMap((d) => d.data.map((p) => p.y));
    const log = Math.min(...ys) > 0 && Math.max(...ys) / Math.min(...ys) > 100; // one loss would flatten the rest
    chart(lossBox, { datasets: ds, xTitle: "step", yTitle: log ? "log scale" : null, log, label: "loss curves of run " + id });
    lossBox.dataset.points = ds.reduce((a, s) => a + s.data.length, 0);
  }
  function followLog(j) {
    if (logCtl) logCtl.abort();
    logJob = j;
    const pre = h("pre", { class: "log", id: "log" });
    fill(logCard, h("h2", {}, "Log · job " + j.id + " (" + j.stage + ") ", badge(j.state)), pre);
    const add = (l) => { pre.append(h("span", { class: l.level, text: (l.ts ? l.ts.slice(11, 19) + " " : "") + l.text + "\n" })); if (pre.childNodes.length > 1000) pre.firstChild.remove(); pre.scrollTop = pre.scrollHeight; };
    logCtl = new AbortController();
    const ctl = logCtl;
    (async () => {
      try {
        const first = await api("/v1/jobs/" + j.id + "/log?limit=500");
        (first.lines || []).forEach(add);
        if (!first.lines.length) pre.append(h("span", { class: "debug", text: "(no lines yet)\n" }));
        if (!["succeeded", "failed", "cancelled", "skipped"].includes(first.state))
          await sse("/v1/jobs/" + j.id + "/log?follow=1&after=" + first.next_after, ctl.signal, (ev, data) => { if (ev === "line") add(data); });
      } catch (e) { if (!ctl.signal.aborted) pre.append(h("span", { class: "error", text: "log: " + e.message + "\n" })); }
    })();
  }
  liveHandler = refresh;
  await refresh();
}

function drawGantt(card, stages, jobs) {
  const t = (s) => (s ? new Date(s).getTime() : null);
  const now = Date.now();
  const starts = jobs.map((j) => t(j.started_at)).filter(Boolean);
  fill(card, h("h2", { text: "Stages" }));
  const g = h("div", { class: "gantt", id: "gantt" });
  card.append(g);
  if (!starts.length) { g.append(h("p", { class: "empty", text: "no stage has started yet (" + (stages.length || jobs.length) + " waiting)" })); }
  const t0 = Math.min(...starts), t1 = Math.max(now - (jobs.every((j) => j.finished_at) ? now : 0), ...jobs.map((j) => t(j.finished_at) || (j.started_at ? now : 0)));
  const span = Math.max(1, t1 - t0);
  const first = (st) => Math.min(...jobs.filter((j) => j.stage === st).map((j) => j.id), Infinity);
  const order = [...new Set([...stages, ...jobs.map((j) => j.stage)])].sort((a, b) => first(a) - first(b));
  for (const st of order) {
    const js = jobs.filter((j) => j.stage === st);
    const track = h("div", { class: "track" });
    for (const j of js) {
      if (!j.started_at) continue;
      const a = t(j.started_at), b = t(j.finished_at) || now;
      const seg = h("div", { class: "seg " + j.state, title: `${st}: ${j.state}, attempt ${j.attempts}/${j.max_attempts}${j.worker ? " on " + j.worker : ""}, ${dur((b - a) / 1000)}` });
      seg.style.left = ((a - t0) / span) * 100 + "%";
      seg.style.width = Math.max(0.4, ((b - a) / span) * 100) + "%";
      track.append(seg);
    }
    const j = js[js.length - 1];
    g.append(h("div", { class: "row", "data-stage": st },
      h("div", { class: "label", title: st }, h("strong", { text: st }), h("span", { class: "muted", text: j ? ` · ${j.state}${j.attempts > 1 ? " · attempt " + j.attempts : ""}` : " · not enqueued" })),
      track));
  }
  if (starts.length) g.append(h("div", { class: "axis" }, h("span", { text: new Date(t0).toLocaleTimeString() }), h("span", { text: dur(span / 1000) }), h("span", { text: new Date(t1).toLocaleTimeString() })));
}

// Training: loss curves of chosen runs overlaid, one chart per series; eval scores per version.
async function pageTraining(root, q) {
  const runs = ((await api("/v1/runs?limit=30")).runs || []);
  const chosen = new Set((q.get("runs") || (runs[0] ? String(runs.find((r) => r.state === "succeeded")?.run_id || runs[0].run_id) : "")).split(",").filter(Boolean));
  const smooth = h("input", { type: "range", min: "0", max: "0.95", step: "0.05", value: q.get("smooth") || "0", name: "smooth" });
  const logc = h("input", { type: "checkbox", name: "log" });
  logc.checked = q.get("log") === "1";
  const picks = h("div", { class: "filters" }, runs.slice(0, 12).map((r) => {
    const c = h("input", { type: "checkbox", value: r.run_id });
    c.checked = chosen.has(String(r.run_id));
    c.addEventListener("change", () => { c.checked ? chosen.add(c.value) : chosen.delete(c.value); draw(); });
    return h("label", { class: "check" }, h("span", {}, c, " #" + r.run_id + " " + r.pipeline));
  }));
  const charts = h("div", { class: "grid2", id: "training-charts" });
  const evalBox = h("div", { class: "card" });
  smooth.addEventListener("input", () => draw());
  logc.addEventListener("change", () => draw());
  fill(root, pageHead("Training", "loss curves; pick runs to overlay", field("Smoothing", smooth), h("label", {}, "Log scale", logc)),
    h("div", { class: "card" }, h("h2", { text: "Runs" }), picks), charts, evalBox);
  const cache = new Map();
  async function draw() {
    const ids = [...chosen];
    for (const i of ids) if (!cache.has(i)) cache.set(i, (await api("/v1/runs/" + i + "/metrics")).series || {});
    const names = [...new Set(ids.flatMap((i) => Object.keys(cache.get(i))))].sort();
    for (const c of state.cleanup.splice(0)) c();
    fill(charts, );
    if (!names.length) charts.append(h("div", { class: "card" }, h("p", { class: "empty", text: "the chosen runs have no metrics" })));
    for (const n of names) {
      const box = h("div", { class: "chartbox" });
      charts.append(h("div", { class: "card" }, h("h2", { text: n }), box));
      chart(box, { xTitle: "step", log: logc.checked, label: n, datasets: ids.filter((i) => cache.get(i)[n]).map((i, k) => ({
        label: "#" + i, borderColor: PALETTE[k % PALETTE.length], backgroundColor: PALETTE[k % PALETTE.length],
        data: ema(cache.get(i)[n].filter(([, y]) => !logc.checked || y > 0), +smooth.value).map(([x, y]) => ({ x, y })) })) });
    }
    drawEvalTrend(evalBox);
  }
  await draw();
}
async function drawEvalTrend(card) {
  const models = (await api("/v1/models")).models || [];
  fill(card, h("h2", { text: "Evaluation scores per version" }));
  for (const m of models) {
    const vs = ((await api("/v1/models/" + encodeURIComponent(m.name) + "/versions")).versions || []).slice().sort((a, b) => a.version - b.version);
    const keys = ["content_f1", "content", "kid", "diversity", "recon_l1"].filter((k) => vs.some((v) => typeof v.metrics?.holdout?.[k] === "number"));
    if (!keys.length) { card.append(h("p", { class: "muted", text: m.name + ": no evaluated version yet" })); continue; }
    const box = h("div", { class: "chartbox" });
    card.append(h("h2", { class: "muted", text: m.name }), box);
    chart(box, { xTitle: "version", points: true, intX: true, label: "scores of " + m.name, datasets: keys.map((k, i) => ({ label: k, borderColor: PALETTE[i], backgroundColor: PALETTE[i],
      data: vs.filter((v) => typeof v.metrics?.holdout?.[k] === "number").map((v) => ({ x: v.version, y: v.metrics.holdout[k] })) })) });
  }
}

async function pickVersion(q, page) {
  const models = (await api("/v1/models")).models || [];
  const model = q.get("model") || (models[0] && models[0].name);
  const vs = model ? ((await api("/v1/models/" + encodeURIComponent(model) + "/versions")).versions || []) : [];
  vs.sort((a, b) => b.version - a.version);
  const version = +(q.get("version") || (vs[0] && vs[0].version) || 0);
  const ctl = [field("Model", select("model", models.map((m) => [m.name, m.name]), model, (v) => setHash(page, { model: v }))),
    field("Version", select("version", vs.map((v) => [v.version, "v" + v.version + (v.verdict ? (v.verdict.passed ? " ✓" : " ✗") : "")]), version, (v) => setHash(page, { model, version: v })))];
  return { models, model, vs, version, ctl };
}

// Evaluation: the gate's rules, per-slice scores, the gallery.
async function pageEval(root, q) {
  const { model, version, ctl } = await pickVersion(q, "eval");
  if (!model || !version) { fill(root, pageHead("Evaluation", null, ...ctl), h("p", { class: "empty", text: "no model version yet" })); return; }
  const base = "/v1/models/" + encodeURIComponent(model) + "/versions/" + version;
  const [one, samp] = await Promise.all([api(base), api(base + "/samples")]);
  const v = one.version, verdict = v.verdict;
  const gate = h("div", { class: "card", id: "gate" }, h("h2", {}, "Gate ", verdict ? badge(verdict.passed ? "passed" : "failed", verdict.passed ? "pass" : "fail") : badge("not evaluated")),
    verdict ? h("p", { class: "muted", text: "candidate v" + version + " against " + (verdict.champion_version ? "champion v" + verdict.champion_version : "no champion (first version)") }) : null,
    tableOf(["Rule", "Slice", "#Threshold", "#Candidate", "#Champion", "Verdict", "Why"], ((verdict && verdict.rules) || []).map((r) =>
      h("tr", { class: "rule" }, h("td", { class: "mono", text: r.metric + " " + (r.op || "") }), h("td", { text: r.slice || "all" }),
        h("td", { class: "num", text: r.threshold == null ? "—" : typeof r.threshold === "number" ? fmt(r.threshold) : JSON.stringify(r.threshold) }),
        h("td", { class: "num", text: fmt(r.candidate) }), h("td", { class: "num", text: fmt(r.champion) }),
        h("td", {}, badge(r.passed ? "pass" : "fail")), h("td", { class: "wrap muted", text: r.reason }))), "no gate rules recorded"));
  const hold = (v.metrics && v.metrics.holdout) || {};
  const slices = hold.slices || {};
  const cols = ["content_f1", "content", "kid", "diversity", "n"];
  // a score and its 90 % interval (docs/training.md "Intervals")
  const scoreText = (s, c) => {
    const x = typeof s[c] === "number" ? s[c] : s[c] && typeof s[c] === "object" && "value" in s[c] ? s[c].value : null;
    if (x == null) return "—";
    const iv = s.intervals && s.intervals[c];
    return fmt(x) + (Array.isArray(iv) && iv.length === 2 ? " [" + fmt(iv[0]) + ", " + fmt(iv[1]) + "]" : "");
  };
  const sliceCard = h("div", { class: "card" }, h("h2", { text: "Scores per slice, with 90 % intervals" }), tableOf(["Slice", ...cols.map((c) => "#" + c)],
    [["all", hold], ...Object.entries(slices)].map(([name, s]) => h("tr", {}, h("td", { text: name }), cols.map((c) => h("td", { class: "num", text: scoreText(s, c) })))), "no scores"));
  // the change against the champion on the same sketches and styles: more than the holdout's noise?
  const lower = new Set(["content", "kid", "recon_l1"]);
  const order = ["content", "content_f1", "edge_f1", "diversity", "recon_l1"];
  const rank = (m) => (order.indexOf(m) + 1 || 99);
  const paired = Object.entries((verdict && verdict.paired) || {}).sort((a, b) => rank(a[0]) - rank(b[0]));
  const pairedCard = paired.length ? h("div", { class: "card", id: "paired" }, h("h2", { text: "Change against champion v" + verdict.champion_version }),
    h("p", { class: "muted", text: "candidate − champion on the same sketches and styles; the interval is a 90 % bootstrap of the per-sketch differences" }),
    tableOf(["Metric", "#Change", "#90 % interval", "Reading"], paired.map(([m, p]) => {
      const [lo, hi] = p.interval || [null, null];
      const noise = lo == null || (lo <= 0 && hi >= 0);
      const good = lower.has(m) ? p.change < 0 : p.change > 0;
      return h("tr", { class: "change" }, h("td", { class: "mono", text: m }), h("td", { class: "num", text: (p.change > 0 ? "+" : "") + fmt(p.change) }),
        h("td", { class: "num", text: lo == null ? "—" : "[" + fmt(lo) + ", " + fmt(hi) + "]" }),
        h("td", {}, noise ? badge("within noise", "idle") : badge(good ? "better" : "worse", good ? "pass" : "fail")));
    }), "no paired changes")) : null;
  // gallery: one cell per (holdout sketch, style): sketch | champion | candidate
  const cells = new Map();
  for (const s of samp.samples || []) {
    const k = s.sketch + "/" + s.style;
    if (!cells.has(k)) cells.set(k, { sketch: s.sketch, style: s.style, slice: s.slice });
    cells.get(k)[s.role] = s.output;
  }
  const art = (sha) => "/v1/artifacts/" + sha;
  const fig = (sha, cap) => h("figure", {}, sha ? image(art(sha), cap) : h("div", { class: "empty", text: "—" }), h("figcaption", { text: cap }));
  const gallery = h("div", { class: "gallery", id: "gallery" }, [...cells.values()].slice(0, 48).map((c) =>
    h("div", { class: "card" }, h("div", { class: "muted", text: "style " + c.style + " · " + (c.slice || "") }),
      h("div", { class: "triple" }, fig(c.sketch, "sketch"), fig(c.champion, "champion"), fig(c.candidate, "candidate v" + version)))));
  fill(root, pageHead("Evaluation", model + " v" + version, ...ctl), gate, sliceCard, pairedCard,
    h("div", { class: "card" }, h("h2", { text: "Samples: sketch | champion | candidate" }), cells.size ? gallery : h("p", { class: "empty", text: "no samples stored for this version" })));
}

// Models: versions with lineage, channels with promote / roll back, the ledger.
async function pageModels(root, q) {
  const { model, vs, ctl } = await pickVersion(q, "models");
  if (!model) { fill(root, pageHead("Models"), h("p", { class: "empty", text: "no model yet" })); return; }
  const enc = encodeURIComponent(model);
  const [models, ledger] = await Promise.all([api("/v1/models"), api("/v1/models/" + enc + "/ledger")]);
  const chans = (models.models.find((m) => m.name === model) || {}).channels || {};
  const chanCards = ["canary", "production"].map((c) => h("div", { class: "card", "data-channel": c }, h("h2", { text: c }),
    h("div", { class: "kv" }, h("div", {}, h("dt", { text: "Serves" }), h("dd", { class: "serves", text: chans[c] ? "v" + chans[c] : "—" }))),
    isOperator() ? h("div", { class: "filters" }, h("button", { class: "primary promote", type: "button", text: "Promote…", onclick: () => promote(c) }),
      h("button", { class: "rollback", type: "button", text: "Roll back…", disabled: !chans[c], onclick: () => rollback(c) })) : null));
  const versions = h("div", { class: "card" }, h("h2", { text: "Versions" }), tableOf(["Version", "Lineage", "Gate", "Channels", "Created"], vs.map((v) =>
    h("tr", { "data-version": v.version }, h("td", {}, h("a", { href: "#/eval?model=" + enc + "&version=" + v.version, text: "v" + v.version })),
      h("td", {}, h("span", { class: "lineage" }, v.dataset_id ? h("span", { text: "dataset #" + v.dataset_id + (v.dataset_sketches != null ? " (" + v.dataset_sketches + " sketches)" : "") }) : h("span", { class: "muted", text: "no dataset" }),
        h("span", { class: "arrow", text: "→" }), v.run_id ? h("a", { href: "#/runs/" + v.run_id, text: "run #" + v.run_id }) : h("span", { class: "muted", text: "import" }),
        h("span", { class: "arrow", text: "→" }), h("strong", { text: "v" + v.version }),
        v.parent_version ? [h("span", { class: "arrow", text: "← parent" }), h("span", { text: "v" + v.parent_version })] : null)),
      h("td", {}, v.verdict ? badge(v.verdict.passed ? "passed" : "failed", v.verdict.passed ? "pass" : "fail") : h("span", { class: "muted", text: "—" })),
      h("td", {}, (v.channels || []).map((c) => badge(c, "chan")),
        // trained on sketches their contributors withdrew since (sql/014_rights.sql)
        v.withdrawn_sketches > 0 ? h("span", { class: "badge withdrawn", title: v.withdrawn_sketches + " sketch(es) it trained on were withdrawn; retrain to drop them", text: "trained on " + v.withdrawn_sketches + " withdrawn" }) : null),
      h("td", { text: when(v.created_at) }))), "no version yet", true));
  const led = h("div", { class: "card", id: "ledger" }, h("h2", { text: "Promotion ledger" }), tableOf(["When", "Channel", "Kind", "Move", "Who", "Why"], (ledger.ledger || []).slice().reverse().map((e) =>
    h("tr", { class: "ledger-row" }, h("td", { text: when(e.at), title: e.at }), h("td", {}, badge(e.channel, "chan")), h("td", { text: e.kind }),
      h("td", { text: (e.from ? "v" + e.from : "∅") + " → " + (e.to ? "v" + e.to : "∅") }), h("td", { class: "actor", text: e.actor }),
      h("td", { class: "wrap reason", text: e.reason || "" }))), "no promotion yet", true));
  fill(root, pageHead("Models", model, ctl[0]), h("div", { class: "grid2 stack" }, chanCards), versions, led);

  async function promote(channel) {
    const sel = h("select", { name: "version", id: "promote-version" }, vs.map((v) => h("option", { value: v.version, text: "v" + v.version + (v.verdict ? (v.verdict.passed ? " · gate passed" : " · gate FAILED") : "") })));
    const reason = h("textarea", { name: "reason", id: "promote-reason", rows: "3", required: true, placeholder: "why (recorded in the ledger)" });
    const force = h("input", { type: "checkbox", name: "force", id: "promote-force" });
    const warn = h("div", { class: "warnbox", hidden: true }, "This version failed its gate. Promote it only with an explicit override; the ledger records it. ", h("label", { class: "check" }, force, "Override the failed gate"));
    const upd = () => { const v = vs.find((x) => x.version === +sel.value); warn.hidden = !(v && v.verdict && v.verdict.passed === false); };
    sel.addEventListener("change", upd);
    upd();
    if (!(await confirmDialog("Promote to " + channel, [field("Version", sel), field("Reason", reason), warn], "Promote"))) return;
    const body = { version: +sel.value, reason: reason.value };
    if (!warn.hidden) { if (!force.checked) { toast("the gate failed: tick the override to promote anyway", true); return; } body.force = true; }
    try { const r = await api("/v1/models/" + enc + "/channels/" + channel, { method: "POST", body }); toast(channel + ": v" + (r.from || "∅") + " → v" + r.to); route(); } catch (e) { toast(e.message, true); }
  }
  async function rollback(channel) {
    const reason = h("textarea", { name: "reason", id: "rollback-reason", rows: "3", required: true, placeholder: "why (recorded in the ledger)" });
    if (!(await confirmDialog("Roll back " + channel, [h("p", { text: "The channel returns to the version it served before v" + chans[channel] + "." }), field("Reason", reason)], "Roll back", true))) return;
    try { const r = await api("/v1/models/" + enc + "/channels/" + channel, { method: "POST", body: { action: "rollback", reason: reason.value } }); toast(channel + ": v" + r.from + " → v" + (r.to || "∅")); route(); } catch (e) { toast(e.message, true); }
  }
}

// Fleet: the serving nodes as their heartbeats report them.
async function pageFleet(root) {
  const box = h("div", { class: "card", id: "fleet" }), chans = h("div", { class: "card", id: "channels" });
  fill(root, pageHead("Fleet", "serving nodes, from their heartbeats"), chans, box);
  async function refresh() {
    const [nodes, models] = await Promise.all([api("/v1/nodes").then((r) => r.nodes || []), api("/v1/models").then((r) => r.models || [])]);
    // canary ahead of production: a bake in progress, or a promotion held for want of evidence
    fill(chans, h("h2", { text: "Channels" }), tableOf(["Model", "Canary", "Production", "State", "#Nodes on canary"], models.map((m) => {
      const c = (m.channels || {}).canary, p = (m.channels || {}).production;
      const st = c && c !== p ? "canary ahead" : c || p ? "settled" : "empty";
      return h("tr", {}, h("td", {}, h("a", { href: "#/models?model=" + encodeURIComponent(m.name), text: m.name })),
        h("td", { text: c ? "v" + c : "—" }), h("td", { text: p ? "v" + p : "—" }),
        h("td", {}, badge(st, st === "canary ahead" ? "running" : st === "settled" ? "pass" : "")),
        h("td", { class: "num", text: nodes.filter((n) => n.model === m.name && n.channel === "canary").length }));
    }), "no model yet"));
    fill(box, tableOf(["Node", "Health", "Model", "Channel", "#Version", "#Requests", "#Error rate", "#p95", "Last heartbeat", "Last error"], nodes.map((n) =>
      h("tr", {}, h("td", { class: "mono", text: n.name }), h("td", {}, badge(n.alive ? "alive" : "dead")), h("td", { text: n.model || "—" }),
        h("td", {}, n.channel ? badge(n.channel, "chan") : "—"), h("td", { class: "num", text: n.version ? "v" + n.version : "—" }),
        h("td", { class: "num", text: n.requests }), h("td", { class: "num", text: n.error_rate == null ? "—" : (n.error_rate * 100).toFixed(1) + " %" }),
        h("td", { class: "num", text: n.p95_ms == null ? "—" : n.p95_ms.toFixed(0) + " ms" }), h("td", { text: when(n.last_seen) }),
        h("td", { class: "wrap error", text: n.last_error || "" }))), "no serving node has reported yet"));
  }
  await refresh();
  const t = setInterval(refresh, 10000);
  state.cleanup.push(() => clearInterval(t));
}

// Data: uploads per day, rejections by reason, contributors, the sketch grid.
async function pageData(root, q) {
  const since = new Date(Date.now() - 14 * 86400e3).toISOString();
  const pull = async (path) => {
    const out = [];
    let cursor = null;
    for (let i = 0; i < 4; i++) { // at most 2000 of the newest: a summary, not an audit
      const r = await api(path + "&limit=500" + (cursor ? "&cursor=" + cursor : ""));
      out.push(...(r.items || []));
      if (!(cursor = r.next_cursor)) break;
    }
    return out;
  };
  const [sk, pa, rej] = await Promise.all([pull("/v1/sketches?since=" + since), pull("/v1/paintings?since=" + since), pull("/v1/uploads/rejected?since=" + since)]);
  const days = [...Array(14)].map((_, i) => new Date(Date.now() - (13 - i) * 86400e3).toISOString().slice(0, 10));
  const per = (xs) => days.map((d) => xs.filter((x) => x.created_at.slice(0, 10) === d).length);
  const dayBox = h("div", { class: "chartbox" }), rejBox = h("div", { class: "chartbox" });
  const reasons = {};
  for (const r of rej) reasons[r.reason] = (reasons[r.reason] || 0) + 1;
  const contrib = {};
  for (const s of sk) { const c = s.contributor || "(anonymous)"; contrib[c] = (contrib[c] || 0) + 1; }
  const grid = h("div", { class: "card", id: "sketches" });
  fill(root, pageHead("Data", "the last 14 days"),
    h("div", { class: "grid2 stack" }, h("div", { class: "card" }, h("h2", { text: "Uploads per day" }), dayBox),
      h("div", { class: "card" }, h("h2", { text: "Accepted vs rejected" }), rejBox)),
    h("div", { class: "grid2 stack" }, h("div", { class: "card" }, h("h2", { text: "Rejected, by reason" }), tableOf(["Reason", "#Uploads"], Object.entries(reasons).sort((a, b) => b[1] - a[1]).map(([r, n]) => h("tr", {}, h("td", { class: "mono", text: r }), h("td", { class: "num", text: n }))), "nothing rejected")),
      h("div", { class: "card" }, h("h2", { text: "Contributors" }), tableOf(["Contributor", "#Sketches"], Object.entries(contrib).sort((a, b) => b[1] - a[1]).slice(0, 10).map(([c, n]) => h("tr", {}, h("td", { text: c }), h("td", { class: "num", text: n }))), "no sketches"))),
    grid);
  const labels = days.map((d) => d.slice(5));
  chart(dayBox, { type: "bar", xType: "category", labels, label: "uploads per day", datasets: [{ label: "sketches", data: per(sk), backgroundColor: PALETTE[0] }, { label: "paintings", data: per(pa), backgroundColor: PALETTE[3] }] });
  chart(rejBox, { type: "bar", xType: "category", stacked: true, labels, label: "accepted vs rejected", datasets: [{ label: "accepted", data: per(sk.filter((s) => s.status !== "rejected").concat(pa)), backgroundColor: PALETTE[1] }, { label: "rejected", data: per(rej), backgroundColor: PALETTE[7] }] });

  // the grid: newest first, cursor pages (a stack of cursors for "newer")
  const f = { status: q.get("status") || "", split: q.get("split") || "", contributor: q.get("contributor") || "" };
  const cursors = [null];
  async function page() {
    const p = new URLSearchParams({ limit: "24" });
    for (const [k, v] of Object.entries(f)) if (v) p.set(k, v);
    if (cursors[cursors.length - 1]) p.set("cursor", cursors[cursors.length - 1]);
    const r = await api("/v1/sketches?" + p);
    const contribIn = h("input", { name: "contributor", value: f.contributor, placeholder: "any", size: "12" });
    contribIn.addEventListener("change", () => { f.contributor = contribIn.value.trim(); cursors.splice(1); page(); });
    fill(grid, h("div", { class: "pagehead" }, h("h2", { text: "Recent sketches" }), h("div", { class: "filters" },
      field("Status", select("status", [["", "any"], ["accepted", "accepted"], ["rejected", "rejected"], ["deleted", "deleted"]], f.status, (v) => { f.status = v; cursors.splice(1); page(); })),
      field("Split", select("split", [["", "any"], ["train", "train"], ["holdout", "holdout"]], f.split, (v) => { f.split = v; cursors.splice(1); page(); })),
      field("Contributor", contribIn))),
    (r.items || []).length ? h("div", { class: "thumbs" }, r.items.map((s) => {
      const del = isOperator() && s.status !== "deleted" ? h("button", { class: "small danger delete", type: "button", text: "Delete", onclick: async () => {
        if (!(await confirmDialog("Delete sketch #" + s.id + "?", [h("p", { text: "It is withdrawn: marked deleted, its pixels erased from the database (audited), and later datasets leave it out. Model versions that trained on it are flagged." })], "Delete", true))) return;
        try { await api("/v1/sketches/" + s.id, { method: "DELETE" }); toast("sketch #" + s.id + " deleted"); page(); } catch (e) { toast(e.message, true); }
      } }) : null;
      return h("div", { class: "thumb " + s.status, "data-id": s.id }, image(s.image_url, "sketch " + s.id),
        h("div", { class: "meta" }, h("strong", { text: "#" + s.id }), h("span", { class: "muted", text: s.split })),
        h("div", { class: "muted meta" }, h("span", { class: "who", text: s.contributor || s.source || "—", title: s.contributor || s.source || "" }), badge(s.status, s.status === "accepted" ? "pass" : "fail")),
        del);
    })) : h("p", { class: "empty", text: "no sketches match" }),
    h("div", { class: "pager" }, h("button", { type: "button", text: "← Newer", disabled: cursors.length < 2, onclick: () => { cursors.pop(); page(); } }),
      h("button", { type: "button", text: "Older →", disabled: !r.next_cursor, onclick: () => { cursors.push(r.next_cursor); page(); } })));
  }
  await page();
}

// Gallery: the published works (newest first), hidden and unhidden by an
// operator; every serving node drops a hidden work within seconds.
async function pageGallery(root, q) {
  const box = h("div", { class: "card", id: "works" });
  fill(root, pageHead("Gallery", "works published from the drawing page"), box);
  const f = { status: q.get("status") || "" };
  const befores = [null];
  async function page() {
    const p = new URLSearchParams({ limit: "24" });
    if (f.status) p.set("status", f.status);
    if (befores[befores.length - 1]) p.set("before", befores[befores.length - 1]);
    const r = await api("/v1/works?" + p);
    const act = (w) => {
      if (!isOperator() || w.status === "withdrawn") return null;
      const to = w.status === "hidden" ? "unhide" : "hide";
      return h("button", { class: "small" + (to === "hide" ? " danger" : ""), type: "button", text: to === "hide" ? "Hide" : "Unhide",
        "data-action": to, onclick: async () => {
          try { await api("/v1/works/" + w.id + "/" + to, { method: "POST", body: {} }); toast("work #" + w.id + (to === "hide" ? " hidden" : " shown again")); page(); } catch (e) { toast(e.message, true); }
        } });
    };
    fill(box, h("div", { class: "pagehead" }, h("h2", { text: "Works" }), h("div", { class: "filters" },
      field("Status", select("status", [["", "any"], ["published", "published"], ["hidden", "hidden"], ["withdrawn", "withdrawn"]], f.status, (v) => { f.status = v; befores.splice(1); page(); })))),
    (r.works || []).length ? h("div", { class: "thumbs" }, r.works.map((w) =>
      h("div", { class: "thumb " + w.status, "data-id": w.id },
        w.status === "withdrawn" ? h("p", { class: "muted", text: "withdrawn: pixels erased" }) : image("/v1/works/" + w.id + "/painting", "work " + w.id),
        h("div", { class: "meta" }, h("strong", { text: "#" + w.id }), h("span", { class: "who", text: w.title || "untitled", title: w.title || "" })),
        h("div", { class: "muted meta" }, h("span", { class: "who", text: (w.name || "anonymous") + " · style " + w.style_key }),
          badge(w.status, w.status === "published" ? "pass" : "fail")),
        act(w)))) : h("p", { class: "empty", text: "no works match" }),
    h("div", { class: "pager" }, h("button", { type: "button", text: "← Newer", disabled: befores.length < 2, onclick: () => { befores.pop(); page(); } }),
      h("button", { type: "button", text: "Older →", disabled: !r.next, onclick: () => { befores.push(r.next); page(); } })));
  }
  await page();
}

// ---- router ----

function runCleanup() {
  liveHandler = null;
  for (const c of state.cleanup.splice(0)) { try { c(); } catch { /* already gone */ } }
}
async function route() {
  if (!state.me) return;
  runCleanup();
  const [path, qs] = (location.hash.slice(1) || "/runs").split("?");
  const q = new URLSearchParams(qs || "");
  const parts = path.split("/").filter(Boolean);
  const name = parts[0] || "runs";
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("on", a.dataset.page === name);
  const root = $("#page");
  root.dataset.page = name;
  fill(root, h("p", { class: "empty", text: "loading…" }));
  try {
    if (name === "runs" && parts[1]) await pageRun(root, +parts[1]);
    else if (name === "runs") await pageRuns(root, q);
    else if (name === "training") await pageTraining(root, q);
    else if (name === "eval") await pageEval(root, q);
    else if (name === "models") await pageModels(root, q);
    else if (name === "fleet") await pageFleet(root, q);
    else if (name === "data") await pageData(root, q);
    else if (name === "gallery") await pageGallery(root, q);
    else fill(root, h("p", { class: "empty", text: "no such page" }));
    root.dataset.ready = location.hash;
  } catch (e) {
    if (e.status !== 401) fill(root, h("div", { class: "card" }, h("p", { class: "error", text: "Could not load this page: " + e.message })));
  }
}

window.addEventListener("hashchange", route);
$("#signout").addEventListener("click", () => signOut());
$("#signin").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try { await signIn($("#token").value.trim()); $("#token").value = ""; } catch (e) { if (e.status !== 401) signOut("Sign-in failed: " + e.message); }
});
if (state.token) signIn(state.token).catch(() => signOut()); else signOut();
