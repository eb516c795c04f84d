// The drawing page: a canvas drawn with pointer events (mouse, pen, finger),
// strokes kept as vectors so undo just redraws the rest, "Paint" posts the
// sketch to /api/stylize, "Contribute" (only with consent) to /api/contribute.
// "Publish" (only with consent to display, separate from the training
// consent) sends the sketch, the painting as shown, its style and the model
// version to /api/publish and keeps the receipt it answers in localStorage
// ("atelier.receipts": [{kind, token, at, title}]).
// No external resources: everything the page needs comes from this node.
//
// The painting never outlives what it shows: Clear removes it, a changed
// sketch marks it stale, and a changed style paints again (debounced). Undo by
// keyboard belongs to the canvas (it must have focus), so Ctrl+Z in a text
// field undoes typing there, not a stroke.
"use strict";

const $ = (id) => document.getElementById(id);
const pad = $("pad"), ctx = pad.getContext("2d");
const strokes = []; // each: {size, points: [[x, y], ...]}
let current = null;

function clearCanvas() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
}

function drawStroke(s) {
  ctx.strokeStyle = "#000";
  ctx.fillStyle = "#000";
  ctx.lineWidth = s.size;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  const p = s.points;
  if (p.length === 1) {
    ctx.beginPath();
    ctx.arc(p[0][0], p[0][1], s.size / 2, 0, 2 * Math.PI);
    ctx.fill();
    return;
  }
  ctx.beginPath();
  ctx.moveTo(p[0][0], p[0][1]);
  for (let i = 1; i < p.length; i++) ctx.lineTo(p[i][0], p[i][1]);
  ctx.stroke();
}

function redraw() {
  clearCanvas();
  strokes.forEach(drawStroke);
  updateButtons();
}

function toCanvas(e) {
  const r = pad.getBoundingClientRect();
  return [(e.clientX - r.left) * (pad.width / r.width), (e.clientY - r.top) * (pad.height / r.height)];
}

pad.addEventListener("pointerdown", (e) => {
  e.preventDefault(); // no text selection or scrolling; it also stops the focus, so:
  pad.focus({ preventScroll: true });
  pad.setPointerCapture(e.pointerId);
  current = { size: Number($("pen").value), points: [toCanvas(e)] };
  strokes.push(current);
  drawStroke(current);
});
pad.addEventListener("pointermove", (e) => {
  if (!current) return;
  // coalesced events give the full resolution of fast finger strokes
  const evs = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
  for (const ev of evs) current.points.push(toCanvas(ev));
  const p = current.points, n = p.length;
  ctx.lineWidth = current.size;
  ctx.lineCap = "round";
  ctx.strokeStyle = "#000";
  ctx.beginPath();
  ctx.moveTo(p[Math.max(0, n - evs.length - 1)][0], p[Math.max(0, n - evs.length - 1)][1]);
  for (let i = Math.max(0, n - evs.length); i < n; i++) ctx.lineTo(p[i][0], p[i][1]);
  ctx.stroke();
});
function endStroke() {
  if (current) { updateButtons(); markStale(); }
  current = null;
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

$("pen").addEventListener("input", () => { $("penval").textContent = $("pen").value; });
function undo() {
  if (!strokes.length) return;
  strokes.pop();
  redraw();
  markStale();
}
$("undo").addEventListener("click", undo);
$("clear").addEventListener("click", () => { strokes.length = 0; redraw(); clearPainting(); message(""); });
pad.addEventListener("keydown", (e) => {
  if ((e.ctrlKey || e.metaKey) && !e.shiftKey && e.key.toLowerCase() === "z") { e.preventDefault(); undo(); }
});
$("random").addEventListener("click", () => {
  $("style").value = Math.floor(Math.random() * 1000000);
  styleChanged();
});

// A new style paints again once typing pauses; only while there is a sketch.
let styleTimer = 0;
function styleChanged() {
  clearTimeout(styleTimer);
  styleTimer = setTimeout(() => { if (strokes.length && /^\d+$/.test($("style").value.trim())) paint(); }, 400);
}
$("style").addEventListener("input", styleChanged);

function message(text, kind) {
  const m = $("message");
  m.textContent = text;
  m.className = "message " + (kind || "");
  if (text) m.scrollIntoView({ block: "nearest" });
}

function sketchBlob() {
  return new Promise((resolve) => pad.toBlob(resolve, "image/png"));
}

async function errorText(res) {
  try {
    const j = await res.json();
    return j.error + (j.detail && j.detail.reason ? ": " + j.detail.reason : "");
  } catch (_) {
    return "HTTP " + res.status;
  }
}

let lastUrl = null, pngUrl = null, inflight = null;
// what the painting shown was made from: for Publish
let painted = null; // {blob, style, version}

function markStale() {
  if ($("result").hasAttribute("src")) $("out").classList.add("stale");
  updateButtons();
}

function clearPainting() {
  if (inflight) inflight.abort();
  const img = $("result");
  img.removeAttribute("src");
  img.dataset.crop = "";
  $("out").classList.remove("stale");
  $("downloads").hidden = true;
  painted = null;
  updateButtons();
  for (const u of [lastUrl, pngUrl]) if (u) URL.revokeObjectURL(u);
  lastUrl = pngUrl = null;
}

// The PNG download is the shown JPEG re-encoded, made when first asked for.
async function pngDownload(e) {
  if (pngUrl || !lastUrl) return;
  e.preventDefault();
  const img = $("result"), c = document.createElement("canvas");
  c.width = img.naturalWidth;
  c.height = img.naturalHeight;
  c.getContext("2d").drawImage(img, 0, 0);
  const blob = await new Promise((resolve) => c.toBlob(resolve, "image/png"));
  pngUrl = URL.createObjectURL(blob);
  $("download-png").href = pngUrl;
  $("download-png").click();
}
$("download-png").addEventListener("click", pngDownload);

$("out").addEventListener("click", () => {
  if (!lastUrl) return;
  $("large").src = lastUrl;
  $("lightbox").hidden = false;
});
$("lightbox").addEventListener("click", () => { $("lightbox").hidden = true; });
document.addEventListener("keydown", (e) => { if (e.key === "Escape") $("lightbox").hidden = true; });

async function paint() {
  if (!strokes.length) { message("Draw something first.", "error"); return; }
  const style = $("style").value.trim();
  if (!/^\d+$/.test(style)) { message("The style is a whole number, 0 or more.", "error"); return; }
  const form = new FormData();
  form.append("contentImage", await sketchBlob(), "sketch.png");
  form.append("style", style);
  // a newer request (a style changed again) supersedes the one in flight
  if (inflight) inflight.abort();
  const mine = (inflight = new AbortController());
  $("paint").disabled = true;
  $("spinner").hidden = false;
  message("");
  // data-paint on <body>: "painting", then "done" once the new painting is
  // shown or "error"; tests (tests/browser) wait on it
  document.body.dataset.paint = "painting";
  let state = "error";
  try {
    const res = await fetch("api/stylize", { method: "POST", body: form, signal: mine.signal });
    if (!res.ok) { message(await errorText(res), "error"); return; }
    const blob = await res.blob();
    if (mine.signal.aborted) return;
    for (const u of [lastUrl, pngUrl]) if (u) URL.revokeObjectURL(u);
    lastUrl = URL.createObjectURL(blob);
    pngUrl = null;
    // which square of the sketch the painting shows (x,y,side in canvas
    // pixels): the node crops a sketch to its ink before painting it
    $("result").dataset.crop = res.headers.get("x-sketch-crop") || "";
    const img = $("result");
    await new Promise((resolve) => {
      img.onload = img.onerror = resolve;
      img.src = lastUrl;
    });
    $("out").classList.remove("stale");
    painted = { blob, style, version: res.headers.get("x-model-version") || "" };
    const name = "atelier-style-" + style;
    $("download-jpeg").href = lastUrl;
    $("download-jpeg").download = name + ".jpg";
    $("download-png").href = "#";
    $("download-png").download = name + ".png";
    $("downloads").hidden = false;
    state = "done";
  } catch (e) {
    if (e.name === "AbortError") return;
    message("The node did not answer: " + e.message, "error");
  } finally {
    // only the latest request owns the page's painting state
    if (inflight === mine) {
      inflight = null;
      $("paint").disabled = false;
      $("spinner").hidden = true;
      document.body.dataset.paint = mine.signal.aborted ? "error" : state;
      updateButtons();
    }
  }
}
$("paint").addEventListener("click", paint);

let contributeEnabled = false;

// Why the node refused a sketch, in words first; the node's reason after.
async function contributeError(res) {
  let j = null;
  try { j = await res.json(); } catch (_) { return "Not contributed: HTTP " + res.status; }
  const d = j.detail || {};
  let why = "";
  if (typeof d.ink_ratio === "number" && typeof d.min_ink === "number" && d.ink_ratio < d.min_ink)
    why = "the sketch has too little ink to learn from — draw a little more. ";
  else if (typeof d.ink_ratio === "number" && typeof d.max_ink === "number" && d.ink_ratio > d.max_ink)
    why = "the sketch is almost all ink. ";
  return "Not contributed: " + why + "(" + j.error + (d.reason ? ": " + d.reason : "") + ")";
}
async function contribute() {
  if (!$("consent").checked || !strokes.length) return;
  const form = new FormData();
  form.append("image", await sketchBlob(), "sketch.png");
  form.append("consent", "true");
  const who = $("contributor").value.trim();
  if (who) form.append("contributor", who);
  $("contribute").disabled = true;
  try {
    const res = await fetch("api/contribute", { method: "POST", body: form });
    if (res.status === 202) {
      const j = await res.json();
      if (j.receipt) {
        addReceipt({ kind: "sketch", token: j.receipt, at: new Date().toISOString(), title: who ? "Sketch by " + who : "Sketch" });
        // shown once: the node keeps only its hash
        message("Thank you! Your sketch will help the model learn. Your receipt (kept in this browser under My works; " +
                "copy it to withdraw from elsewhere): " + j.receipt, "ok");
      } else {
        message("Thank you! Your sketch will help the model learn.", "ok");
      }
    } else {
      message(await contributeError(res), "error");
    }
  } catch (e) {
    message("The node did not answer: " + e.message, "error");
  } finally {
    updateButtons();
  }
}
$("contribute").addEventListener("click", contribute);
$("consent").addEventListener("change", updateButtons);

async function publish() {
  if (!painted || !$("consent-display").checked || $("out").classList.contains("stale")) return;
  const form = new FormData();
  form.append("sketch", await sketchBlob(), "sketch.png");
  form.append("painting", painted.blob, "painting.jpg");
  form.append("style", painted.style);
  // 0 is a local model file: no registry version to name
  if (/^[1-9]\d*$/.test(painted.version)) form.append("model_version", painted.version);
  const title = $("title").value.trim(), author = $("author").value.trim();
  if (title) form.append("title", title);
  if (author) form.append("name", author);
  form.append("consent_display", "true");
  $("publish").disabled = true;
  document.body.dataset.publish = "publishing";
  try {
    const res = await fetch("api/publish", { method: "POST", body: form });
    if (res.status !== 202) {
      message("Not published: " + (await errorText(res)), "error");
      document.body.dataset.publish = "error";
      return;
    }
    const j = await res.json();
    addReceipt({ kind: "work", token: j.receipt, at: new Date().toISOString(), title: title || undefined });
    $("receipt-token").textContent = j.receipt;
    $("receipt").hidden = false;
    message("Published! It appears in the gallery in a few seconds.", "ok");
    document.body.dataset.publish = "done";
  } catch (e) {
    message("The node did not answer: " + e.message, "error");
    document.body.dataset.publish = "error";
  } finally {
    updateButtons();
  }
}
$("publish").addEventListener("click", publish);
$("consent-display").addEventListener("change", updateButtons);

function updateButtons() {
  $("undo").disabled = !strokes.length;
  $("clear").disabled = !strokes.length;
  $("give").hidden = !contributeEnabled;
  // the Contribute button exists only while consent is ticked
  $("contribute").hidden = !(contributeEnabled && $("consent").checked);
  $("contribute").disabled = !strokes.length;
  $("publish-box").hidden = !contributeEnabled;
  // a painting of the sketch as it is now, and consent to display it
  $("publish").disabled = !(painted && $("consent-display").checked && !$("out").classList.contains("stale"));
}

async function refreshStatus() {
  try {
    const res = await fetch("api/info");
    const j = await res.json();
    contributeEnabled = !!j.contribute;
    $("status").textContent = j.loaded
      ? "model " + j.model + (j.version ? " v" + j.version : "") + " · " + j.channel + " · node " + j.node
      : "no model loaded yet";
  } catch (_) {
    $("status").textContent = "node unreachable";
  }
  updateButtons();
}

// "Use this style" in the gallery opens the page with ?style=N
{
  const s = new URLSearchParams(location.search).get("style");
  if (s && /^\d{1,10}$/.test(s)) $("style").value = s;
}

// ---- My works: the receipts this browser keeps (localStorage "atelier.receipts") ----
// Each entry is {kind: "sketch"|"work", token, at, title?, id?}; the panel asks
// GET /api/sketches/mine or /api/works/mine for each, with the receipt in the X-Atelier-Receipt
// header (never in a URL), and offers Withdraw (DELETE) and Forget (this list only).
const RECEIPTS_KEY = "atelier.receipts";
const RECEIPT_RE = /^[A-Za-z0-9_-]{43}$/;

function readReceipts() {
  let list = [];
  try { list = JSON.parse(localStorage.getItem(RECEIPTS_KEY) || "[]"); } catch (_) { list = []; }
  return Array.isArray(list) ? list.filter((e) => e && (e.kind === "sketch" || e.kind === "work") && RECEIPT_RE.test(e.token || "")) : [];
}
function writeReceipts(list) {
  try { localStorage.setItem(RECEIPTS_KEY, JSON.stringify(list)); } catch (_) { /* private mode: the list lives until reload */ }
}
function addReceipt(entry) {
  const list = readReceipts().filter((e) => e.token !== entry.token);
  list.unshift(entry);
  writeReceipts(list);
  renderMine();
}
function forgetReceipt(token) {
  writeReceipts(readReceipts().filter((e) => e.token !== token));
  renderMine();
}
// "sketch" -> /api/sketches/mine, "work" -> /api/works/mine
const MINE_PATHS = { sketch: "api/sketches/mine", work: "api/works/mine" };
function mineFetch(entry, method) {
  return fetch(MINE_PATHS[entry.kind], { method, headers: { "X-Atelier-Receipt": entry.token }, cache: "no-store" });
}
const STATUS_WORDS = { pending: "waiting to be sent", accepted: "in training data", rejected: "not accepted",
                       deleted: "withdrawn", published: "published", hidden: "hidden by an operator" };

async function mineStatus(entry, li) {
  const st = li.querySelector(".state"), wd = li.querySelector(".withdraw");
  try {
    const res = await mineFetch(entry, "GET");
    if (res.status === 404) { st.textContent = "unknown receipt"; st.className = "state deleted"; wd.disabled = true; return; }
    const j = await res.json();
    if (!res.ok) { st.textContent = "unavailable (" + (j.error || res.status) + ")"; return; }
    st.textContent = STATUS_WORDS[j.status] || j.status;
    st.className = "state " + j.status;
    wd.disabled = j.status === "deleted";
    if (j.id) li.querySelector(".what").textContent = (entry.title || entry.kind) + " #" + j.id;
  } catch (e) {
    st.textContent = "node unreachable";
  }
}

async function withdraw(entry, li) {
  if (!confirm("Withdraw this " + entry.kind + "? It is deleted for good and kept out of future training.")) return;
  const wd = li.querySelector(".withdraw");
  wd.disabled = true;
  try {
    const res = await mineFetch(entry, "DELETE");
    const j = await res.json().catch(() => ({}));
    if (res.ok) message("Withdrawn: your " + entry.kind + " is deleted.", "ok");
    else message("Not withdrawn: " + (j.error || "HTTP " + res.status), "error");
  } catch (e) {
    message("The node did not answer: " + e.message, "error");
  }
  mineStatus(entry, li);
}

function renderMine() {
  const list = readReceipts(), ul = $("mine-list");
  $("mine").hidden = !list.length && !contributeEnabled;
  ul.replaceChildren();
  for (const entry of list) {
    const li = document.createElement("li");
    li.dataset.kind = entry.kind;
    li.dataset.token = entry.token;
    const span = (cls, text) => { const e = document.createElement("span"); e.className = cls; e.textContent = text; return e; };
    const button = (cls, text, fn) => { const b = document.createElement("button"); b.type = "button"; b.className = cls; b.textContent = text; b.addEventListener("click", fn); return b; };
    const at = new Date(entry.at);
    li.append(span("what", (entry.title || entry.kind) + (entry.id ? " #" + entry.id : "")),
              span("when", isNaN(at) ? "" : at.toLocaleString()), span("state", "…"), span("grow", ""),
              button("withdraw", "Withdraw", () => withdraw(entry, li)),
              button("forget", "Forget", () => forgetReceipt(entry.token)));
    ul.append(li);
    mineStatus(entry, li);
  }
}
$("mine-add").addEventListener("click", () => {
  const t = $("mine-token").value.trim();
  if (!RECEIPT_RE.test(t)) { message("A receipt is 43 letters, digits, - or _.", "error"); return; }
  $("mine-token").value = "";
  addReceipt({ kind: "sketch", token: t, at: new Date().toISOString(), title: "Sketch" });
});

clearCanvas();
updateButtons();
refreshStatus().then(renderMine);
setInterval(refreshStatus, 15000);
