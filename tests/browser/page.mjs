// page.mjs — the drawing page's layout and behaviour in headless Chromium, at
// a desktop size (1280×800) and a phone's (390×844, touch, 3× pixels): no
// horizontal overflow, the painting and Paint on the phone's first screen
// with the canvas, zoom not blocked, Ctrl+Z in the Name field leaves the
// strokes, Clear empties the painting, a new style repaints (stylize requests
// counted), a sketch with too little ink refused by the node (422) with the
// reason shown, and the download links yielding images. Prints one JSON line
// of facts; tests/test_page.py asserts on them.
//
//   node page.mjs URL OUTDIR
//
// OUTDIR gets {desktop,phone}_{before,after}.png (screenshots of the first
// screen) and the downloaded painting.
import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

import { CHROMIUM, ARGS, drawHouse } from "./common.mjs";

const [url, outdir] = process.argv.slice(2);
if (!url || !outdir) {
  console.error("usage: node page.mjs URL OUTDIR");
  process.exit(2);
}


// Everything measured in one place: overflow, and where the parts lie.
const LAYOUT = () => {
  const box = (id) => {
    const r = document.getElementById(id).getBoundingClientRect();
    return { left: r.left, top: r.top, right: r.right, bottom: r.bottom, width: r.width, height: r.height };
  };
  const over = [];
  for (const e of document.querySelectorAll("body *")) {
    const r = e.getBoundingClientRect();
    if (r.width && (r.right > innerWidth + 0.5 || r.left < -0.5))
      over.push((e.id ? "#" + e.id : e.tagName.toLowerCase() + "." + e.className) + " " + r.left + ".." + r.right);
  }
  return {
    innerWidth, innerHeight, scrollWidth: document.scrollingElement.scrollWidth, over,
    pad: box("pad"), out: box("out"), paint: box("paint"),
    viewport: document.querySelector("meta[name=viewport]").content,
    icon: document.querySelector("link[rel=icon]").href,
  };
};

const strokeCount = (page) => page.evaluate(() => document.getElementById("undo").disabled ? 0 :
  // inked pixels of the canvas: what the strokes left
  (() => { const c = document.getElementById("pad"), d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let n = 0; for (let i = 0; i < d.length; i += 4) n += d[i] < 128; return n; })());

async function waitPaint(page) {
  await page.waitForFunction(() => ["done", "error"].includes(document.body.dataset.paint), null, { timeout: 60000 });
  return page.evaluate(() => document.body.dataset.paint);
}

const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
const facts = {};
try {
  for (const [name, opts] of [
    ["desktop", { viewport: { width: 1280, height: 800 } }],
    ["phone", { viewport: { width: 390, height: 844 }, deviceScaleFactor: 3, isMobile: true, hasTouch: true }],
  ]) {
    const ctx = await browser.newContext({ ...opts, acceptDownloads: true });
    const page = await ctx.newPage();
    const f = (facts[name] = { stylize: 0, console_errors: [] });
    page.on("console", (m) => { if (m.type() === "error") f.console_errors.push(m.text()); });
    page.on("request", (r) => { if (r.url().endsWith("/api/stylize")) f.stylize++; });
    await page.goto(url + "/", { waitUntil: "load" });
    await page.waitForFunction(() => /model /.test(document.getElementById("status").textContent), null,
      { timeout: 30000 });
    f.before = await page.evaluate(LAYOUT);
    await page.screenshot({ path: path.join(outdir, name + "_before.png") });

    await drawHouse(page);
    await page.click("#paint");
    f.first_paint = await waitPaint(page);
    f.after = await page.evaluate(LAYOUT);
    f.result_shown = await page.$eval("#result", (i) => i.complete && i.naturalWidth > 0 && !!i.getAttribute("src"));
    await page.screenshot({ path: path.join(outdir, name + "_after.png") });
    // the painting, pressed: shown large over the page; pressed again: gone
    await page.click("#out");
    f.large_shown = await page.$eval("#lightbox", (e) => !e.hidden && e.querySelector("img").naturalWidth > 0);
    if (name === "phone") await page.screenshot({ path: path.join(outdir, name + "_large.png") });
    await page.click("#lightbox");
    f.large_closed = await page.$eval("#lightbox", (e) => e.hidden);

    if (name === "desktop") {
      // Ctrl+Z typed in the Name field: the strokes stay
      const inked = await strokeCount(page);
      await page.click("summary");
      await page.fill("#contributor", "ada");
      await page.focus("#contributor");
      await page.keyboard.press("Control+z");
      f.ink_before_ctrlz = inked;
      f.ink_after_ctrlz_in_name = await strokeCount(page);
      // on the canvas it undoes a stroke
      await page.focus("#pad");
      await page.keyboard.press("Control+z");
      f.ink_after_ctrlz_on_canvas = await strokeCount(page);
      f.stale_after_undo = await page.$eval("#out", (e) => e.classList.contains("stale"));

      // a new style repaints, once for a burst of typing
      const n0 = f.stylize;
      await page.focus("#style");
      await page.keyboard.type("42");
      // the page waits 400 ms after the last key: one request for both keys
      await page.waitForTimeout(1500);
      f.repaint_state = await waitPaint(page);
      f.stylize_after_style_change = f.stylize - n0;
      f.stale_after_repaint = await page.$eval("#out", (e) => e.classList.contains("stale"));

      // the downloads: the JPEG as served, the PNG re-encoded
      for (const [id, magic] of [["#download-jpeg", "ffd8ff"], ["#download-png", "89504e47"]]) {
        const [dl] = await Promise.all([page.waitForEvent("download", { timeout: 10000 }), page.click(id)]);
        const file = path.join(outdir, "download_" + dl.suggestedFilename());
        await dl.saveAs(file);
        const head = fs.readFileSync(file).subarray(0, 4).toString("hex");
        f[id.slice(1)] = { name: dl.suggestedFilename(), bytes: fs.statSync(file).size, image: head.startsWith(magic) };
      }

      // Clear: no strokes, no painting, no downloads
      await page.click("#clear");
      f.after_clear = await page.evaluate(() => ({
        src: document.getElementById("result").getAttribute("src"),
        downloads_hidden: document.getElementById("downloads").hidden,
      }));
      f.ink_after_clear = await strokeCount(page);

      // a single 1-px dot is far below atelierd's ink minimum: the node says no
      await page.$eval("#pen", (e) => { e.value = "1"; e.dispatchEvent(new Event("input")); });
      const b = await page.$eval("#pad", (c) => c.getBoundingClientRect().toJSON());
      await page.mouse.click(b.x + b.width / 2, b.y + b.height / 2);
      await page.check("#consent");
      const [res] = await Promise.all([
        page.waitForResponse((r) => r.url().endsWith("/api/contribute")), page.click("#contribute")]);
      f.contribute = { status: res.status(), body: await res.json() };
      await page.waitForFunction(() => document.getElementById("message").textContent.length > 0);
      f.contribute_message = await page.textContent("#message");
      f.contribute_message_class = await page.$eval("#message", (e) => e.className);
      await page.screenshot({ path: path.join(outdir, name + "_refused.png") });
    }
    await ctx.close();
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(facts));
