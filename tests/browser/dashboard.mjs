// dashboard.mjs — atelierd's operator dashboard (/ui/) in headless Chromium,
// used as an operator and as a viewer would (tests/test_dashboard.py starts the
// stack and asserts on the JSON line this prints last).
//
//   node dashboard.mjs URL OPERATOR_TOKEN VIEWER_TOKEN OUTDIR
//
// The operator signs in, starts a run of "tiny" from the Runs page and watches
// its row go from queued to succeeded without reloading; opens the run (stage
// timeline, loss chart, log), the evaluation page (gate rules, sample images
// that decode) and the models page, rolls production back and promotes it again
// with reasons. The viewer sees no write button, and a write forged from the
// page with the viewer's token is refused. Every page is screenshotted at
// 1280×800 and at 390×844, where the page must not overflow sideways.
import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

import { CHROMIUM, ARGS } from "./common.mjs";

const [url, opToken, viewerToken, outdir] = process.argv.slice(2);
if (!outdir) {
  console.error("usage: node dashboard.mjs URL OPERATOR_TOKEN VIEWER_TOKEN OUTDIR");
  process.exit(2);
}
const out = { states: [], overflow: {}, screenshots: [], errors: [] };
let forging = false; // the forged write's 403 is the point, not a page error

const profile = fs.mkdtempSync(path.join(outdir, "chromium-profile-"));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM, headless: true, args: ARGS, viewport: { width: 1280, height: 800 },
});
const page = await ctx.newPage();
page.on("console", (m) => { if (m.type() === "error" && !forging) out.errors.push(m.text()); console.error("page:", m.text()); });
page.on("pageerror", (e) => { out.errors.push(String(e)); console.error("page error:", e); });
page.on("response", (r) => { if (r.status() >= 400) console.error("HTTP", r.status(), r.url()); });

const shot = async (name) => {
  const f = path.join(outdir, name + ".png");
  await page.screenshot({ path: f, fullPage: true });
  out.screenshots.push(f);
};
const ready = (hash) => page.waitForFunction((h) => document.getElementById("page").dataset.ready === h, hash, { timeout: 30000 });
async function visit(hash) {
  // the same address fires no hashchange: the page on screen is the one
  if (await page.evaluate(() => location.hash) === hash) return ready(hash);
  await page.evaluate((h) => { document.getElementById("page").dataset.ready = ""; location.hash = h; }, hash);
  await ready(hash);
}
// both sizes: a screenshot each, and the page's width at 390 px
async function both(name, hash) {
  await page.setViewportSize({ width: 1280, height: 800 });
  await visit(hash);
  await page.waitForTimeout(300);
  await shot(name + "_1280");
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(400);
  out.overflow[name] = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  await shot(name + "_390");
  await page.setViewportSize({ width: 1280, height: 800 });
}
async function signIn(token) {
  await page.goto(url + "/ui", { waitUntil: "load" });
  await page.evaluate(() => sessionStorage.clear());
  await page.goto(url + "/ui/#/runs", { waitUntil: "load" });
  await page.fill("#token", token);
  await page.click("#signin button[type=submit]");
  await ready("#/runs");
}

try {
  // ---- operator ----
  await signIn(opToken);
  await shot("signed_in");
  out.who = await page.textContent("#who-name");
  out.role = await page.textContent("#who-role");
  await visit("#/runs?pipeline=tiny");
  const before = await page.$$eval("#runs tr[data-run]", (rs) => rs.map((r) => +r.dataset.run));
  await page.click("#start-run");
  // the new row, observed live (no reload): every state it shows
  const t0 = Date.now();
  let runId = null;
  while (Date.now() - t0 < 300000) {
    const rows = await page.$$eval("#runs tr[data-run]", (rs) => rs.map((r) => [+r.dataset.run, r.dataset.state]));
    const mine = rows.find(([id]) => !before.includes(id));
    if (mine) {
      runId = mine[0];
      if (out.states[out.states.length - 1] !== mine[1]) out.states.push(mine[1]);
      if (["succeeded", "failed", "cancelled"].includes(mine[1])) break;
    }
    await page.waitForTimeout(100);
  }
  out.run = runId;
  await shot("runs");

  // the run's page: stage timeline, loss chart, log
  await visit("#/runs/" + runId);
  await page.waitForFunction(() => +(document.getElementById("loss").dataset.points || 0) > 0, null, { timeout: 20000 });
  out.gantt_rows = await page.$$eval("#gantt .row", (rs) => rs.length);
  out.gantt_segments = await page.$$eval("#gantt .seg", (rs) => rs.length);
  out.loss_points = +(await page.$eval("#loss", (e) => e.dataset.points));
  await page.waitForFunction(() => document.getElementById("log") && document.getElementById("log").textContent.length > 0, null, { timeout: 20000 });
  out.log_chars = await page.$eval("#log", (e) => e.textContent.length);
  await page.waitForTimeout(500);
  await both("run", "#/runs/" + runId);

  // evaluation: gate rules and sample images that decode
  await visit("#/eval?model=tiny");
  out.rules = await page.$$eval("#gate tr.rule", (rs) => rs.length);
  out.paired_rows = await page.$$eval("#paired tr.change", (rs) => rs.length);
  out.interval_cells = await page.$$eval("td.num", (ts) => ts.filter((t) => /^-?[0-9.]+ \[-?[0-9.]+, -?[0-9.]+\]$/.test(t.textContent)).length);
  await page.waitForFunction(() => {
    const imgs = [...document.querySelectorAll("#gallery img")];
    return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0);
  }, null, { timeout: 30000 });
  out.sample_images = await page.$$eval("#gallery img", (is) => is.filter((i) => i.naturalWidth > 0).length);
  await both("evaluation", "#/eval?model=tiny");
  await both("training", "#/training");
  await both("fleet", "#/fleet");
  out.fleet_rows = await page.$$eval("#fleet tbody tr", (rs) => rs.length);
  await both("data", "#/data");
  // an operator deletes the newest sketch from the grid
  const victim = await page.$eval("#sketches .thumb[data-id]", (t) => t.dataset.id);
  await page.click(`#sketches .thumb[data-id="${victim}"] button.delete`);
  await page.click("#dialog-ok");
  await page.waitForSelector(`#sketches .thumb.deleted[data-id="${victim}"]`, { timeout: 15000 });
  out.deleted_sketch = +victim;

  // models: roll production back, then promote the newest version again
  await visit("#/models?model=tiny");
  out.prod_before = await page.textContent("[data-channel=production] .serves");
  await page.click("[data-channel=production] button.rollback");
  await page.fill("#rollback-reason", "ui rollback: bad samples");
  await page.click("#dialog-ok");
  await page.waitForFunction((b) => { const e = document.querySelector("[data-channel=production] .serves"); return e && e.textContent !== b; }, out.prod_before, { timeout: 15000 });
  await ready("#/models?model=tiny");
  out.prod_after_rollback = await page.textContent("[data-channel=production] .serves");
  await page.click("[data-channel=production] button.promote");
  await page.selectOption("#promote-version", out.prod_before.replace("v", ""));
  await page.fill("#promote-reason", "ui promote: samples fixed");
  await page.click("#dialog-ok");
  await page.waitForFunction((b) => { const e = document.querySelector("[data-channel=production] .serves"); return e && e.textContent === b; }, out.prod_before, { timeout: 15000 });
  await ready("#/models?model=tiny");
  // v1's gate is marked failed (by the test): canary takes it only with the override ticked
  await page.click("[data-channel=canary] button.promote");
  await page.selectOption("#promote-version", "1");
  out.override_offered = await page.isVisible("#promote-force");
  await page.check("#promote-force");
  await page.fill("#promote-reason", "ui override: compare on canary");
  await page.click("#dialog-ok");
  await page.waitForFunction(() => { const e = document.querySelector("[data-channel=canary] .serves"); return e && e.textContent === "v1"; }, null, { timeout: 15000 });
  await ready("#/models?model=tiny");
  // versions trained on the sketch withdrawn above carry a badge (withdrawn_sketches > 0)
  out.withdrawn_badges = await page.$$eval("tr[data-version]", (rs) => Object.fromEntries(rs.map((r) =>
    [r.dataset.version, (r.querySelector(".badge.withdrawn") || {}).textContent || ""])));
  out.ledger = await page.$$eval("#ledger tr.ledger-row", (rs) => rs.map((r) => ({
    actor: r.querySelector(".actor").textContent, reason: r.querySelector(".reason").textContent })));
  await both("models", "#/models?model=tiny");
  await both("runs", "#/runs");

  // ---- viewer ----
  await page.click("#signout");
  await signIn(viewerToken);
  out.viewer_role = await page.textContent("#who-role");
  const writes = {};
  for (const [hash, sel] of [["#/runs?pipeline=tiny", "#start-run"], ["#/runs/" + runId, "#cancel-run, button.danger"],
    ["#/models?model=tiny", "button.promote, button.rollback"], ["#/data", "button.delete"]]) {
    await visit(hash);
    writes[hash] = await page.$$eval(sel, (b) => b.length);
    if (hash.startsWith("#/models")) await shot("viewer_models");
  }
  out.viewer_write_buttons = writes;
  // the dark palette (prefers-color-scheme) on the busiest pages
  await page.emulateMedia({ colorScheme: "dark" });
  for (const [name, hash] of [["dark_run", "#/runs/" + runId], ["dark_evaluation", "#/eval?model=tiny"]]) {
    await visit(hash);
    await page.waitForTimeout(300);
    await shot(name);
  }
  forging = true;
  out.forged_status = await page.evaluate(async () => {
    const r = await fetch("/v1/models/tiny/channels/production", { method: "POST",
      headers: { Authorization: "Bearer " + sessionStorage.getItem("atelier.token"), "Content-Type": "application/json" },
      body: JSON.stringify({ action: "rollback", reason: "forged" }) });
    return r.status;
  });
} finally {
  await ctx.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(out));
