// The drawing page: a canvas drawn with pointer events (mouse, pen, finger),
// strokes kept as vectors so undo just redraws the rest, "Paint" posts the
// sketch to /api/stylize, "Contribute" (only with consent) to /api/contribute.
// No external resources: everything the page needs comes from this node.
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
  e.preventDefault();
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
  if (current) updateButtons();
  current = null;
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

$("pen").addEventListener("input", () => { $("penval").textContent = $("pen").value; });
$("undo").addEventListener("click", () => { strokes.pop(); redraw(); });
$("clear").addEventListener("click", () => { strokes.length = 0; redraw(); });
document.addEventListener("keydown", (e) => {
  if ((e.ctrlKey || e.metaKey) && e.key === "z") { e.preventDefault(); strokes.pop(); redraw(); }
});
$("random").addEventListener("click", () => { $("style").value = Math.floor(Math.random() * 1000000); });

function message(text, kind) {
  const m = $("message");
  m.textContent = text;
  m.className = "message " + (kind || "");
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

let lastUrl = null;
async function paint() {
  if (!strokes.length) { message("Draw something first.", "error"); return; }
  const style = $("style").value.trim();
  if (!/^\d+$/.test(style)) { message("The style is a whole number, 0 or more.", "error"); return; }
  const form = new FormData();
  form.append("contentImage", await sketchBlob(), "sketch.png");
  form.append("style", style);
  $("paint").disabled = true;
  $("spinner").hidden = false;
  message("");
  // data-paint on <body>: "painting", then "done" once the new painting is
  // shown or "error"; tests (tests/browser) wait on it
  document.body.dataset.paint = "painting";
  let state = "error";
  try {
    const res = await fetch("api/stylize", { method: "POST", body: form });
    if (!res.ok) { message(await errorText(res), "error"); return; }
    const blob = await res.blob();
    if (lastUrl) URL.revokeObjectURL(lastUrl);
    lastUrl = URL.createObjectURL(blob);
    // which square of the sketch the painting shows (x,y,side in canvas
    // pixels): the node crops a sketch to its ink before painting it
    $("result").dataset.crop = res.headers.get("x-sketch-crop") || "";
    const img = $("result");
    await new Promise((resolve) => {
      img.onload = img.onerror = resolve;
      img.src = lastUrl;
    });
    state = "done";
  } catch (e) {
    message("The node did not answer: " + e.message, "error");
  } finally {
    $("paint").disabled = false;
    $("spinner").hidden = true;
    document.body.dataset.paint = state;
  }
}
$("paint").addEventListener("click", paint);

let contributeEnabled = false;
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
    if (res.status === 202) message("Thank you! Your sketch will help the model learn.", "ok");
    else message(await errorText(res), "error");
  } catch (e) {
    message("The node did not answer: " + e.message, "error");
  } finally {
    updateButtons();
  }
}
$("contribute").addEventListener("click", contribute);
$("consent").addEventListener("change", updateButtons);

function updateButtons() {
  $("undo").disabled = !strokes.length;
  $("clear").disabled = !strokes.length;
  // the Contribute button exists only while consent is ticked
  $("contribute").hidden = !(contributeEnabled && $("consent").checked);
  $("contribute").disabled = !strokes.length;
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

clearCanvas();
updateButtons();
refreshStatus();
setInterval(refreshStatus, 15000);
