// gallery.mjs — publishing from the drawing page and the gallery in headless
// Chromium: on node A the page opens with ?style=42 (the "use this style"
// link's form), a house is drawn and painted, and Published with a title,
// a name and consent to display; the receipt must land in localStorage
// ("atelier.receipts"). Node B's /gallery must then show the work (polled:
// B learns of it from atelierd's feed), its page the sketch beside the
// painting, at 1280×800 and at 390×844 (touch, 3× pixels) without
// horizontal overflow. Prints one JSON line of facts; tests/test_gallery.py
// asserts on them. Last, an operator signs in to atelierd's dashboard and
// presses Hide on the work (Gallery page); the test then checks both nodes.
//
//   node gallery.mjs URL_A URL_B OUTDIR ATELIERD_URL OPERATOR_TOKEN
//
// OUTDIR gets {desktop,phone}_{wall,work}.png and publish.png.
import path from "node:path";
import { chromium } from "playwright-core";

import { CHROMIUM, ARGS, drawHouse } from "./common.mjs";

const [urlA, urlB, outdir, urlD, opToken] = process.argv.slice(2);
if (!urlA || !urlB || !outdir) {
  console.error("usage: node gallery.mjs URL_A URL_B OUTDIR");
  process.exit(2);
}
const TITLE = "Published from Chromium";


// overflow of any element past the viewport's sides, and the wall's columns
const LAYOUT = () => {
  const over = [];
  for (const e of document.querySelectorAll("body *")) {
    const r = e.getBoundingClientRect();
    if (r.width && (r.right > innerWidth + 0.5 || r.left < -0.5))
      over.push(e.tagName.toLowerCase() + "." + e.className + " " + r.left + ".." + r.right);
  }
  const cards = [...document.querySelectorAll(".wall li")].map((li) => li.getBoundingClientRect());
  const top = cards.length ? cards[0].top : 0;
  const figs = [...document.querySelectorAll(".pair figure")].map((f) => f.getBoundingClientRect());
  return { innerWidth, scrollWidth: document.scrollingElement.scrollWidth, over,
    columns: cards.filter((r) => Math.abs(r.top - top) < 1).length,
    side_by_side: figs.length === 2 && Math.abs(figs[0].top - figs[1].top) < 1 && figs[0].right <= figs[1].left };
};

const imagesLoaded = (page) => page.waitForFunction(
  () => [...document.images].every((i) => i.complete), null, { timeout: 30000 });

const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
const facts = { layout: {} };
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();
  await page.goto(urlA + "/?style=42", { waitUntil: "load" });
  facts.style_preselected = await page.$eval("#style", (e) => e.value);
  await page.waitForFunction(() => !document.getElementById("publish-box").hidden, null, { timeout: 30000 });
  await drawHouse(page);
  await page.click("#paint");
  await page.waitForFunction(() => document.body.dataset.paint === "done", null, { timeout: 60000 });
  await page.click("#publish-box summary");
  await page.fill("#title", TITLE);
  await page.fill("#author", "Chromium");
  facts.disabled_without_consent = await page.$eval("#publish", (b) => b.disabled);
  await page.check("#consent-display");
  await page.click("#publish");
  await page.waitForFunction(() => ["done", "error"].includes(document.body.dataset.publish), null,
    { timeout: 30000 });
  facts.publish = await page.evaluate(() => document.body.dataset.publish);
  facts.message = await page.$eval("#message", (e) => e.textContent);
  facts.receipts = await page.evaluate(() => JSON.parse(localStorage.getItem("atelier.receipts") || "[]"));
  facts.receipt_shown = await page.$eval("#receipt-token", (e) => e.textContent);
  await page.screenshot({ path: path.join(outdir, "publish.png") });
  if (facts.publish !== "done") throw new Error("publish failed: " + facts.message);

  // node B: the work arrives through atelierd's feed
  const t0 = Date.now();
  for (;;) {
    await page.goto(urlB + "/gallery", { waitUntil: "load" });
    facts.wall_count = await page.$$eval(".wall li", (l) => l.length);
    if (facts.wall_count && (await page.$eval(".wall li .t", (e) => e.textContent)) === TITLE) break;
    if (Date.now() - t0 > 15000) throw new Error("the work never reached node B's gallery");
    await page.waitForTimeout(300);
  }
  facts.seconds_to_b = (Date.now() - t0) / 1000;
  facts.title_on_b = await page.$eval(".wall li .t", (e) => e.textContent);
  await imagesLoaded(page);
  facts.layout.desktop_wall = await page.evaluate(LAYOUT);
  await page.screenshot({ path: path.join(outdir, "desktop_wall.png"), fullPage: true });
  await page.click(".wall li a");
  await page.waitForSelector(".pair");
  await imagesLoaded(page);
  facts.work_images_loaded = await page.$$eval(".pair img", (l) => l.filter((i) => i.naturalWidth > 0).length);
  facts.use_style = await page.$eval(".actions a.primary", (a) => a.href);
  facts.layout.desktop_work = await page.evaluate(LAYOUT);
  await page.screenshot({ path: path.join(outdir, "desktop_work.png"), fullPage: true });
  const workUrl = page.url();

  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 3,
    isMobile: true, hasTouch: true });
  const pp = await phone.newPage();
  await pp.goto(urlB + "/gallery", { waitUntil: "load" });
  await imagesLoaded(pp);
  facts.layout.phone_wall = await pp.evaluate(LAYOUT);
  await pp.screenshot({ path: path.join(outdir, "phone_wall.png") });
  await pp.goto(workUrl, { waitUntil: "load" });
  await imagesLoaded(pp);
  facts.layout.phone_work = await pp.evaluate(LAYOUT);
  await pp.screenshot({ path: path.join(outdir, "phone_work.png"), fullPage: true });

  // the dashboard's Hide button
  const dash = await ctx.newPage();
  await dash.goto(urlD + "/ui/#/gallery", { waitUntil: "load" });
  await dash.fill("#token", opToken);
  await dash.click("#signin button[type=submit]");
  await dash.waitForSelector("#works .thumb");
  const id = workUrl.split("/").pop();
  await dash.click(`#works .thumb[data-id="${id}"] button[data-action=hide]`);
  await dash.waitForSelector(`#works .thumb.hidden[data-id="${id}"]`, { timeout: 10000 });
  facts.hidden_id = Number(id);
  await dash.screenshot({ path: path.join(outdir, "dashboard_gallery.png") });
} finally {
  await browser.close();
}
console.log(JSON.stringify(facts));
