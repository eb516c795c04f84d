// common.mjs — what every browser script here shares: Debian's Chromium and
// its flags (playwright-core cannot download a browser here), and the house
// the tests draw on the page's canvas with the mouse.
export const CHROMIUM = process.env.ATELIER_CHROMIUM || "/usr/bin/chromium";
export const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

// strokes in the canvas's own pixels (512 × 512)
export const HOUSE = [
  [[150, 240], [362, 240], [362, 440], [150, 440], [150, 240]],
  [[150, 240], [256, 120], [362, 240]],
  [[228, 440], [228, 350], [284, 350], [284, 440]],
];

// Draws HOUSE on #pad; canvas pixels map to page coordinates (CSS may scale
// the canvas). steps: mouse moves per segment.
export async function drawHouse(page, steps = 8) {
  const b = await page.$eval("#pad", (c) => {
    const r = c.getBoundingClientRect();
    return { x: r.left, y: r.top, sx: r.width / c.width, sy: r.height / c.height };
  });
  const at = ([x, y]) => [b.x + x * b.sx, b.y + y * b.sy];
  for (const stroke of HOUSE) {
    await page.mouse.move(...at(stroke[0]));
    await page.mouse.down();
    for (const p of stroke.slice(1)) await page.mouse.move(...at(p), { steps });
    await page.mouse.up();
  }
}
