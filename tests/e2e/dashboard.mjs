// Browser end-to-end test of the dashboard, in Debian's headless Chromium driven by
// playwright-core. Run by scripts/e2e.sh, which starts `ppctl serve` (with an API
// token) and `ppctl consume` on a fresh database and passes, in the environment:
//   E2E_BASE_URL    the server, e.g. http://127.0.0.1:41234/
//   E2E_TOKEN       the server's API token
//   E2E_SERVE_PID   a file holding the serve process id (restarted when it exits)
//   E2E_OUT         where screenshots go (target/e2e)
//   E2E_CONSUME_PID the consumer's process id (paused while a work must stay pending)
//   E2E_DATABASE_URL, E2E_AMQP_URL, E2E_QUEUE  for fixtures: psql and pika (hostile.py)
//   E2E_HOOKS       the webhook receiver (receiver.mjs), which says what it got on GET
// Every check throws; any failure exits 1 after a screenshot of the moment.
import { chromium } from "playwright-core";
import { mkdirSync, readFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkDeadHint, checkDeadOnPhone, checkIcon, sideways, watch404 } from "./layout.mjs";
import { apiGet, base, check, createWork, out, publish, sql, step, token, until } from "./helpers.mjs";
import { laterAndSchedules, webhooks, workersAndPause } from "./operators.mjs";

mkdirSync(out, { recursive: true });

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
const notFound = watch404(page);
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
  await checkIcon(base, notFound);
  await checkDeadHint(page);

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
  // scripts/e2e.sh runs serve with tracing on and PP_TRACE_URL: the work shows its trace.
  check(/^[0-9a-f]{32}$/.test(work.trace_id || ""), "the created work has a trace id: " + work.trace_id);
  const traceHref = await page.getAttribute("#detail a.trace", "href");
  check(traceHref === `http://traces.example/trace/${work.trace_id}`, "the detail links its trace: " + traceHref);

  step("screenshots");
  await page.fill("#f-code", "");
  await row(others[0].id).waitFor();
  await page.screenshot({ path: join(out, "dashboard.png"), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300); // the chart redraws on resize
  const overflow = await sideways(page);
  check(overflow.over <= 0, `no sideways scrolling at phone width (overflow ${overflow.over}px: ${overflow.culprits})`);
  await page.screenshot({ path: join(out, "dashboard-phone.png"), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 900 });

  step("restart the server: the page reconnects by itself and is live again");
  process.kill(Number(readFileSync(process.env.E2E_SERVE_PID, "utf8")), "SIGTERM");
  await page.waitForSelector('#live[data-state="reconnecting"]', { timeout: 20000 });
  await page.waitForSelector('#live[data-state="live"]', { timeout: 30000 });
  const later = await createWork(5);
  await doneRow(later.id).waitFor({ timeout: 20000 });
  check(navigations === 1, `no reload after the restart (navigations: ${navigations})`);

  step("operators: Cancel a pending work, Retry a failed one (the consumer paused meanwhile)");
  const consumer = Number(process.env.E2E_CONSUME_PID);
  process.kill(consumer, "SIGSTOP");
  let pending, failed, retriedAll = [];
  try {
    failed = await createWork(6);
    pending = await createWork(7);
    // A failure by hand, counted by hand as a sweeper's would be (tests/it/actions.rs).
    sql(`UPDATE works SET status = 'failed', attempts = 3 WHERE id = ${failed.id}; UPDATE work_counts SET failed = failed + 1 WHERE shard = 0`);
    await row(pending.id).click();
    await page.waitForSelector("#cancel:not([disabled])");
    check(await page.isDisabled("#retry"), "Retry is off for a pending work");
    await page.click("#cancel");
    await page.waitForSelector(`#works tr[data-id="${pending.id}"][data-status="cancelled"]`, { timeout: 10000 });
    check((await apiGet(`works/${pending.id}`)).status === "cancelled", "the API says cancelled");
    check((await apiGet(`works/${pending.id}/events`)).at(-1).variable === "work/cancelled", "work/cancelled event");
    await row(failed.id).click();
    await page.waitForSelector("#retry:not([disabled])");
    check(await page.isDisabled("#cancel"), "Cancel is off for a failed work");
    await page.screenshot({ path: join(out, "work-actions.png"), fullPage: true });
    await page.click("#retry");
    await page.waitForSelector(`#works tr[data-id="${failed.id}"][data-status="pending"]`, { timeout: 10000 });
    check((await apiGet(`works/${failed.id}`)).status === "pending", "the API says pending after Retry");
    // "Retry all shown": the failed works the filter shows, counted first, then retried.
    const batch = [await createWork(8), await createWork(9)];
    sql(`UPDATE works SET status = 'failed', attempts = 3 WHERE id IN (${batch.map((w) => w.id)}); UPDATE work_counts SET failed = failed + 2 WHERE shard = 0`);
    await page.selectOption("#f-status", "failed");
    await row(batch[0].id).waitFor();
    await page.screenshot({ path: join(out, "retry-all.png"), fullPage: true });
    let asked = "";
    page.once("dialog", (dialog) => { asked = dialog.message(); dialog.accept(); });
    await page.click("#retry-all");
    await page.waitForFunction(() => document.querySelector("#message").textContent.startsWith("Retried 2 works"));
    check(asked.includes("Retry 2 failed"), "asked about 2 works first: " + asked);
    for (const w of batch) check((await apiGet(`works/${w.id}`)).status === "pending", `work ${w.id} pending after Retry all shown`);
    await page.selectOption("#f-status", "");
    retriedAll = batch;
  } finally {
    process.kill(consumer, "SIGCONT");
  }
  step(`the retried work ${failed.id} is done, the cancelled ${pending.id} stays cancelled`);
  await doneRow(failed.id).waitFor({ timeout: 30000 });
  check((await apiGet(`works/${failed.id}`)).result === 21, "retried work done with 21");
  for (const w of retriedAll) await doneRow(w.id).waitFor({ timeout: 30000 });
  check((await apiGet(`works/${pending.id}`)).status === "cancelled", "still cancelled after a sweep");

  await workersAndPause(page);
  await laterAndSchedules(page);

  step("dead letters: a demand the database refuses and one that is not JSON");
  sql("ALTER TABLE works ADD CONSTRAINT e2e_no_77 CHECK (add_up_to <> 77) NOT VALID");
  publish([["e2e-77", '{"add_up_to": 77}'], ["e2e-junk", "not json"]]);
  const deadRow = (id) => page.locator(`#dead-letters tr[data-id="${id}"]`);
  await until("both dead letters in the panel", 30000, async () => {
    await page.click("#dead-refresh");
    await page.waitForTimeout(300);
    return (await deadRow("e2e-77").count()) === 1 && (await deadRow("e2e-junk").count()) === 1;
  });
  check((await deadRow("e2e-77").locator("td.reason").textContent()).includes("e2e_no_77"), "the database's reason shown");
  check((await deadRow("e2e-junk").locator("td.reason").textContent()).includes("JSON"), "the parser's reason shown");
  check((await page.textContent("#dead-count")).startsWith("2 "), "count 2: " + (await page.textContent("#dead-count")));
  check((await apiGet("dead-letters")).count === 2, "the API counts 2");
  await page.locator("#dead-panel").scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(out, "dead-letters.png"), fullPage: true });

  step("fix (drop the constraint), Replay all: 77 becomes a done work, the junk comes back dead");
  sql("ALTER TABLE works DROP CONSTRAINT e2e_no_77");
  const [replayed] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/dead-letters/replay") && r.status() === 200),
    page.click("#dead-replay"),
  ]);
  const done = await replayed.json();
  check(done.replayed.length === 2 && done.unreadable.length === 0, "replayed both: " + JSON.stringify(done));
  await page.waitForFunction(() => document.querySelector("#dead-note").textContent.includes("Replayed 2"));
  await until("work e2e-77 done", 30000, () => sql("SELECT status || ' ' || result FROM works WHERE message_id = 'e2e-77'") === "done 3003");
  await until("only the junk dead again", 30000, async () => {
    await page.click("#dead-refresh");
    await page.waitForTimeout(300);
    return (await page.locator("#dead-letters tr[data-id]").count()) === 1 && (await deadRow("e2e-junk").count()) === 1;
  });
  check((await page.textContent("#dead-count")).startsWith("1 "), "count 1 after the replay");
  check((await page.textContent("#count-dead")) === "1", "the dead-letter card says 1");
  check((await apiGet("dead-letters")).count === 1, "the API counts 1");
  await page.screenshot({ path: join(out, "dead-letters-replayed.png"), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300); // the chart redraws on resize
  const deadOverflow = await sideways(page);
  check(deadOverflow.over <= 0, `no sideways scrolling at phone width with dead letters (overflow ${deadOverflow.over}px: ${deadOverflow.culprits})`);
  await checkDeadOnPhone(page, "e2e-junk", "not json");
  await page.locator("#dead-panel").screenshot({ path: join(out, "dead-letters-phone.png") });
  await page.setViewportSize({ width: 1280, height: 900 });

  await webhooks(page);
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
