// What every part of the browser test shares: the settings scripts/e2e.sh passes, progress
// lines, checks that throw, polling, and the fixtures made outside the page.
import { execFileSync } from "node:child_process";

export const base = process.env.E2E_BASE_URL;
export const token = process.env.E2E_TOKEN;
export const out = process.env.E2E_OUT || "target/e2e";
if (!base || !token) throw new Error("E2E_BASE_URL and E2E_TOKEN must be set (run scripts/e2e.sh)");

const started = Date.now();

/** One progress line, with the seconds since the test started. */
export const step = (text) => console.log(`e2e: [${((Date.now() - started) / 1000).toFixed(1)}s] ${text}`);

/** Throws when `ok` is false: the test stops there, after a screenshot. */
export function check(ok, what) {
  if (!ok) throw new Error("check failed: " + what);
}

/** Polls `probe` every 200 ms until it returns true, for at most `ms`. */
export async function until(what, ms, probe) {
  const deadline = Date.now() + ms;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error("timed out waiting for " + what);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Creates a work through the API, outside the page. */
export async function createWork(addUpTo) {
  const response = await fetch(new URL("works", base), {
    method: "POST",
    headers: { Authorization: "Bearer " + token, "Content-Type": "application/json" },
    body: JSON.stringify({ add_up_to: addUpTo }),
  });
  check(response.status === 201, `POST /works answered ${response.status}`);
  return response.json();
}

/** Runs SQL with psql against the test's database; returns the output, trimmed. */
export function sql(statement) {
  return execFileSync("psql", ["-qtAX", process.env.E2E_DATABASE_URL, "-c", statement], { encoding: "utf8" }).trim();
}

/** Publishes demands to the work queue with pika (what the chaos suite uses). */
export function publish(messages) {
  const hex = (text) => Buffer.from(text).toString("hex");
  const job = { mode: "publish", url: process.env.E2E_AMQP_URL, queue: process.env.E2E_QUEUE,
    messages: messages.map(([id, body]) => ({ id: hex(id), body: hex(body) })) };
  const answer = JSON.parse(execFileSync("/usr/bin/python3", ["tests/chaos/hostile.py"], { input: JSON.stringify(job), encoding: "utf8" }));
  check(answer.confirmed === messages.length, "published " + JSON.stringify(answer));
}

export async function apiGet(path) {
  // The token is needed for the dead letters; the other reads take it too.
  const response = await fetch(new URL(path, base), { headers: { Authorization: "Bearer " + token } });
  check(response.ok, `GET ${path} answered ${response.status}`);
  return response.json();
}
