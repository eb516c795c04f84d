// mine.mjs — the drawing page's "My works" panel in headless Chromium: draw,
// give the sketch to training with consent, see the receipt shown once and
// kept in localStorage ("atelier.receipts"), see the sketch's status in the
// panel (accepted once atelierd has it), withdraw it (confirm dialog
// accepted) and see it withdrawn; an entry of kind "work" (the gallery's) is
// listed too and does not break the panel; Forget drops an entry. Prints one
// JSON line of facts; tests/test_rights.py asserts on them and on the database.
//
//   node mine.mjs URL OUTDIR
import path from "node:path";
import { chromium } from "playwright-core";

import { CHROMIUM, ARGS, drawHouse } from "./common.mjs";

const [url, outdir] = process.argv.slice(2);
if (!url || !outdir) {
  console.error("usage: node mine.mjs URL OUTDIR");
  process.exit(2);
}
const FAKE_WORK = "W".repeat(43);

const receipts = (page) => page.evaluate(() => JSON.parse(localStorage.getItem("atelier.receipts") || "[]"));
const stateOf = (page, kind) => page.$eval(`#mine-list li[data-kind=${kind}] .state`, (e) => e.textContent);

const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
const f = { console_errors: [], dialogs: 0 };
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();
  page.on("console", (m) => { if (m.type() === "error") f.console_errors.push(m.text()); });
  page.on("dialog", (d) => { f.dialogs++; d.accept(); });
  f.mine_replies = [];
  page.on("response", async (r) => {
    if (r.url().includes("/sketches/mine")) f.mine_replies.push(r.request().method() + " " + r.status() + " " + (await r.text().catch(() => "")).slice(0, 120));
  });
  await page.goto(url + "/", { waitUntil: "load" });
  await page.waitForFunction(() => /model /.test(document.getElementById("status").textContent), null, { timeout: 30000 });
  await drawHouse(page);
  await page.click("summary");
  await page.check("#consent");
  await page.fill("#contributor", "mina");
  await page.click("#contribute");
  await page.waitForFunction(() => /receipt/.test(document.getElementById("message").textContent), null, { timeout: 15000 });
  f.message = await page.$eval("#message", (e) => e.textContent);
  f.stored = await receipts(page);

  // the gallery's entries share the list: one of kind "work" must not break it
  await page.evaluate((t) => {
    const l = JSON.parse(localStorage.getItem("atelier.receipts"));
    l.push({ kind: "work", token: t, at: new Date().toISOString(), title: "A work" });
    localStorage.setItem("atelier.receipts", JSON.stringify(l));
  }, FAKE_WORK);
  // a fresh page load finds both; the sketch is accepted once atelierd stored it
  const deadline = Date.now() + 30000;
  for (;;) {
    await page.goto(url + "/", { waitUntil: "load" });
    await page.waitForSelector("#mine-list li[data-kind=sketch]", { timeout: 10000 });
    await page.waitForFunction(() => [...document.querySelectorAll("#mine-list .state")].every((e) => e.textContent !== "…"),
      null, { timeout: 10000 });
    f.sketch_state = await stateOf(page, "sketch");
    if (f.sketch_state === "in training data" || Date.now() > deadline) break;
    await page.waitForTimeout(500);
  }
  f.items = await page.$$eval("#mine-list li", (l) => l.map((e) => e.dataset.kind));
  f.work_state = await stateOf(page, "work");
  f.panel_visible = await page.$eval("#mine", (e) => !e.hidden);
  await page.$eval("#mine", (e) => e.scrollIntoView());
  await page.screenshot({ path: path.join(outdir, "mine_before.png"), fullPage: true });

  if (f.sketch_state !== "in training data") {
    // report what the panel shows instead of timing out on a disabled button
    console.log(JSON.stringify(f));
    process.exit(0);
  }
  await page.click("#mine-list li[data-kind=sketch] .withdraw");
  await page.waitForFunction(() => document.querySelector("#mine-list li[data-kind=sketch] .state").textContent === "withdrawn",
    null, { timeout: 15000 });
  f.after_withdraw = await stateOf(page, "sketch");
  f.withdraw_disabled = await page.$eval("#mine-list li[data-kind=sketch] .withdraw", (b) => b.disabled);
  f.message_after = await page.$eval("#message", (e) => e.textContent);
  await page.screenshot({ path: path.join(outdir, "mine_after.png"), fullPage: true });

  await page.click("#mine-list li[data-kind=work] .forget");
  f.after_forget = (await receipts(page)).map((e) => e.kind);
  f.items_after_forget = await page.$$eval("#mine-list li", (l) => l.length);
  await ctx.close();
} finally {
  await browser.close();
}
console.log(JSON.stringify(f));
