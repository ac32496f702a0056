// The operators' panels of issue 24: the workers and the pause button, works that run
// later, periodic schedules and webhooks. Called by dashboard.mjs with the page already live and
// the token set in it.
import { join } from "node:path";
import { apiGet, base, check, out, sql, step, token, until } from "./helpers.mjs";

async function post(path, body) {
  const response = await fetch(new URL(path, base), {
    method: "POST",
    headers: { Authorization: "Bearer " + token, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json().catch(() => null) };
}

const status = async (id) => (await apiGet(`works/${id}`)).status;

export async function workersAndPause(page) {
  step("workers: the consumer is listed running; Pause keeps a new work pending, Resume runs it");
  await page.locator("#workers-panel").scrollIntoViewIfNeeded();
  await page.waitForFunction(() => [...document.querySelectorAll("#workers tr")].some((r) => r.textContent.includes("running")), null, { timeout: 20000 });
  await page.click("#pipeline-toggle");
  await page.waitForFunction(() => document.querySelector("#pipeline-state").textContent.includes("paused"), null, { timeout: 10000 });
  check((await apiGet("pipeline")).paused === true, "the API says paused");
  check((await apiGet("health")).pipeline === "paused", "/health says paused");
  const made = await post("works", { add_up_to: 12 });
  check(made.status === 201, "POST /works while paused: " + made.status);
  await page.waitForTimeout(3000);
  check((await status(made.body.id)) === "pending", "a work created while paused stays pending");
  await page.waitForFunction(() => [...document.querySelectorAll("#workers tr")].some((r) => r.textContent.includes("paused")), null, { timeout: 10000 });
  await page.screenshot({ path: join(out, "workers-paused.png"), fullPage: true });
  await page.click("#pipeline-toggle");
  await until(`work ${made.body.id} done after Resume`, 20000, async () => (await status(made.body.id)) === "done");
  check((await apiGet("pipeline")).paused === false, "the API says running again");
}

export async function laterAndSchedules(page) {
  step("later: a work with a 3 s delay is scheduled, then done");
  const later = await post("works", { add_up_to: 3, delay: "3s" });
  check(later.status === 201 && later.body.status === "scheduled", "scheduled: " + JSON.stringify(later));
  await page.waitForSelector(`#works tr[data-id="${later.body.id}"][data-status="scheduled"]`, { timeout: 10000 });
  await page.screenshot({ path: join(out, "scheduled-work.png"), fullPage: true });
  await until(`work ${later.body.id} done`, 20000, async () => (await status(later.body.id)) === "done");

  step("schedules: one added over the API is listed and makes works; Remove deletes it");
  const added = await post("schedules", { name: "e2e-every-second", every: "1s", add_up_to: 5 });
  check(added.status === 201, "POST /schedules: " + JSON.stringify(added));
  await page.click("#schedules-refresh");
  await page.waitForSelector('#schedules tr[data-name="e2e-every-second"]', { timeout: 10000 });
  const made = () => sql("SELECT count(*) FROM works WHERE work_code LIKE 'cron-e2e-every-second-%' AND status = 'done'");
  await until("two of the schedule's works done", 20000, () => Number(made()) >= 2);
  await page.locator("#schedules-panel").scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(out, "schedules.png"), fullPage: true });
  await page.click('#schedules button.schedule-remove[data-name="e2e-every-second"]');
  await page.waitForFunction(() => document.querySelector("#schedules-note").textContent.startsWith("Removed"));
  check((await apiGet("schedules")).length === 0, "the API lists no schedule after Remove");
}

export async function webhooks(page) {
  step("webhooks: every finished work announced, each signature checked by the receiver");
  const got = async () => (await fetch(process.env.E2E_HOOKS)).json();
  const finished = () => Number(sql("SELECT count(*) FROM works WHERE status IN ('done', 'failed', 'expired', 'cancelled')"));
  await until("a verified webhook for every finished work", 60000, async () => (await got()).distinct >= finished());
  const seen = await got();
  check(seen.bad === 0, "no bad signature: " + JSON.stringify(seen));
  await page.selectOption("#webhooks-state", "delivered");
  await page.waitForSelector("#webhooks tr td.code", { timeout: 10000 });
  await page.locator("#webhooks-panel").scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(out, "webhooks.png"), fullPage: true });
  step(`webhooks: ${seen.distinct} delivered for ${finished()} finished works, ${seen.received} requests, 0 bad`);
}
