// The dashboard's layout promises, checked in the browser: an icon (no 404 in the console
// at every load), a hint at a laptop's height that the dead letters are further down, and
// a dead letter's time, size and body visible on a phone.
import { check, step, until } from "./helpers.mjs";

/** Watches every response the page gets; `notFound()` lists the URLs that were 404. */
export function watch404(page) {
  const urls = [];
  page.on("response", (r) => { if (r.status() === 404) urls.push(r.url()); });
  return () => urls;
}

/** `/favicon.ico` is an icon, and nothing the page loaded was a 404. */
export async function checkIcon(base, notFound) {
  step("the icon: /favicon.ico answers, nothing the page loaded was a 404");
  const response = await fetch(new URL("favicon.ico", base));
  check(response.status === 200, `GET /favicon.ico answered ${response.status}`);
  check((response.headers.get("content-type") || "").startsWith("image/"), "the icon is an image");
  check(notFound().length === 0, "404s while loading: " + notFound().join(", "));
}

/** At 1280x900 from the top: the panel is out of sight, a hint says so and leads there. */
export async function checkDeadHint(page) {
  step("1280x900: a hint that the dead letters are below the fold, which scrolls there");
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.evaluate(() => window.scrollTo(0, 0));
  const panelTop = await page.evaluate(() => document.querySelector("#dead-panel").getBoundingClientRect().top);
  check(panelTop > 900, `the dead-letters panel starts below the fold (top ${panelTop}px)`);
  const hint = page.locator("#dead-hint");
  await hint.waitFor({ state: "visible", timeout: 5000 });
  const box = await hint.boundingBox();
  check(box && box.y >= 0 && box.y + box.height <= 900 && box.x + box.width <= 1280, "the hint is on screen: " + JSON.stringify(box));
  check((await hint.textContent()).includes("Dead letters"), "the hint names the dead letters");
  await hint.click();
  await until("the panel scrolled into view", 5000, () => page.evaluate(() => {
    const r = document.querySelector("#dead-panel").getBoundingClientRect();
    return r.top >= 0 && r.top < window.innerHeight;
  }));
  await hint.waitFor({ state: "hidden", timeout: 5000 });
  await page.evaluate(() => window.scrollTo(0, 0));
}

/** At phone width, the dead letter `id` shows its time, size and body on screen. */
export async function checkDeadOnPhone(page, id, body) {
  step("phone width: a dead letter's time, size and body are visible");
  const width = page.viewportSize().width;
  const letter = page.locator(`#dead-letters tr[data-id="${id}"]`);
  await letter.scrollIntoViewIfNeeded();
  // By column, as the desktop table has them: #, id, reason, dead at, bytes, body.
  for (const [column, label, expected] of [[4, "dead at", /\d\d:\d\d:\d\d/], [5, "bytes", String(body.length)], [6, "body", body]]) {
    const cell = letter.locator(`td:nth-child(${column})`);
    check(await cell.isVisible(), `${label} is visible on a phone`);
    const box = await cell.boundingBox();
    check(box && box.width > 0 && box.x >= 0 && box.x + box.width <= width, `${label} fits the screen: ${JSON.stringify(box)}`);
    const text = await cell.textContent();
    check(typeof expected === "string" ? text.includes(expected) : expected.test(text), `${label} shows ${expected}: ${text}`);
  }
}

/** How far the page scrolls sideways, and the outermost elements that stick out. */
export async function sideways(page) {
  return page.evaluate(() => {
    const over = document.documentElement.scrollWidth - window.innerWidth;
    const out = [...document.querySelectorAll("body *")].filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1);
    const outer = out.filter((e) => !out.includes(e.parentElement)).slice(0, 3);
    const name = (e) => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") + (e.className ? "." + String(e.className).split(" ").join(".") : "")
      + " in #" + (e.closest("[id]") || { id: "?" }).id + " to " + Math.round(e.getBoundingClientRect().right) + "px";
    return { over, culprits: outer.map(name).join(", ") };
  });
}
