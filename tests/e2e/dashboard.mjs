// Browser end-to-end test of the dashboard, in Debian's headless Chromium driven by
// playwright-core. Run by scripts/e2e.sh, which starts `ppctl serve` (with an API
// token) and `ppctl consume` on a fresh database and passes, in the environment:
//   E2E_BASE_URL    the server, e.g. http://127.0.0.1:41234/
//   E2E_TOKEN       the server's API token
//   E2E_SERVE_PID   a file holding the serve process id (restarted when it exits)
//   E2E_OUT         where screenshots go (target/e2e)
// Every check throws; any failure exits 1 after a screenshot of the moment.
import { chromium } from "playwright-core";
import { mkdirSync, readFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const base = process.env.E2E_BASE_URL;
const token = process.env.E2E_TOKEN;
const out = process.env.E2E_OUT || "target/e2e";
if (!base || !token) throw new Error("E2E_BASE_URL and E2E_TOKEN must be set (run scripts/e2e.sh)");
mkdirSync(out, { recursive: true });

const started = Date.now();
const step = (text) => console.log(`e2e: [${((Date.now() - started) / 1000).toFixed(1)}s] ${text}`);
function check(ok, what) {
  if (!ok) throw new Error("check failed: " + what);
}

/** Creates a work through the API, outside the page. */
async function createWork(addUpTo) {
  const response = await fetch(new URL("works", base), {
    method: "POST",
    headers: { Authorization: "Bearer " + token, "Content-Type": "application/json" },
    body: JSON.stringify({ add_up_to: addUpTo }),
  });
  check(response.status === 201, `POST /works answered ${response.status}`);
  return response.json();
}

// A fresh profile every run, so nothing (a stored token) leaks from the last one.
const profile = mkdtempSync(join(tmpdir(), "ppctl-e2e-chromium-"));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1280, height: 900 },
  // This machine has no network beyond loopback: without these, Chromium keeps trying
  // Google's services at every start.
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const page = browser.pages()[0] || (await browser.newPage());
const pageErrors = [];
page.on("pageerror", (e) => pageErrors.push(e.message));
let navigations = 0;
page.on("framenavigated", (frame) => { if (frame === page.mainFrame()) navigations += 1; });

const row = (id) => page.locator(`#works tr[data-id="${id}"]`);
const doneRow = (id) => page.locator(`#works tr[data-id="${id}"][data-status="done"]`);

try {
  step("load the page");
  await page.goto(base);
  await page.waitForSelector('#live[data-state="live"]', { timeout: 15000 });
  await page.waitForFunction(() => !document.querySelector("#works .empty")?.textContent.includes("loading"));
  const others = [await createWork(3), await createWork(4)];
  check((await page.title()) === "ppctl dashboard", "title");

  step("create without the token: the page shows the 401");
  await page.fill("#add-up-to", "10");
  await page.click("#create");
  await page.waitForFunction(() => document.querySelector("#message").textContent.startsWith("401"));

  step("set the token, create a work from the page");
  await page.fill("#token", token);
  await page.dispatchEvent("#token", "change");
  const [created] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/works") && r.request().method() === "POST" && r.status() === 201),
    page.click("#create"),
  ]);
  const work = await created.json();
  check(work.add_up_to === 10 && work.status === "pending", "the page created a pending work of 10");
  check(await page.evaluate(() => localStorage.getItem("ppctl.token")) === token, "token kept in localStorage");

  step(`work ${work.id} turns done in the table without a reload`);
  await doneRow(work.id).waitFor({ timeout: 20000 });
  check((await row(work.id).locator("td").nth(4).textContent()) === "55", "result 55 shown");
  for (const other of others) await doneRow(other.id).waitFor({ timeout: 20000 });
  check(navigations === 1, `no reload (navigations: ${navigations})`);
  // The 150 queued works (scripts/e2e.sh) and these three, counted and charted.
  await page.waitForFunction(() => Number(document.querySelector("#count-done").textContent.replace(/\D/g, "")) >= 153);
  await page.waitForFunction(() => parseInt(document.querySelector("#chart-note").textContent.replace(/,/g, "")) >= 153);

  step("filter by its code prefix");
  const prefix = work.work_code.slice(0, 8);
  const codes = await page.$$eval("#works tr[data-id] td.code", (tds) => tds.map((td) => td.textContent));
  check(codes.some((c) => !c.startsWith(prefix)), "before filtering, other works are listed");
  await page.fill("#f-code", prefix);
  await page.waitForFunction((p) => {
    const codes = [...document.querySelectorAll("#works tr[data-id] td.code")].map((td) => td.textContent);
    return codes.length > 0 && codes.every((c) => c.startsWith(p));
  }, prefix);
  await row(work.id).waitFor();
  for (const other of others) check(other.work_code.startsWith(prefix) || !(await row(other.id).count()), "others filtered out");

  step("open its events timeline");
  await row(work.id).click();
  await page.waitForFunction(() => document.querySelectorAll("#timeline li").length === 4);
  const variables = await page.$$eval("#timeline li", (items) => items.map((li) => li.dataset.variable));
  check(variables.join() === "work/created,compute/start,compute/stop,compute/result", "events in order: " + variables);
  check((await page.textContent("#timeline li:last-child")).includes("= 55"), "result event value 55");

  step("screenshots");
  await page.fill("#f-code", "");
  await row(others[0].id).waitFor();
  await page.screenshot({ path: join(out, "dashboard.png"), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300); // the chart redraws on resize
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `no sideways scrolling at phone width (overflow ${overflow}px)`);
  await page.screenshot({ path: join(out, "dashboard-phone.png"), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 900 });

  step("restart the server: the page reconnects by itself and is live again");
  process.kill(Number(readFileSync(process.env.E2E_SERVE_PID, "utf8")), "SIGTERM");
  await page.waitForSelector('#live[data-state="reconnecting"]', { timeout: 20000 });
  await page.waitForSelector('#live[data-state="live"]', { timeout: 30000 });
  const later = await createWork(5);
  await doneRow(later.id).waitFor({ timeout: 20000 });
  check(navigations === 1, `no reload after the restart (navigations: ${navigations})`);

  check(pageErrors.length === 0, "no script errors: " + pageErrors.join("; "));
  step("passed");
} catch (error) {
  await page.screenshot({ path: join(out, "failure.png"), fullPage: true }).catch(() => {});
  console.error(`e2e: FAILED: ${error.message}\n(screenshot: ${join(out, "failure.png")})`);
  process.exitCode = 1;
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
