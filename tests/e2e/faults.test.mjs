// Delivery under faults, in headless Chromium with the shipped bundle and the real collector
// binary on loopback: collector down then back, offline then online, a page closed mid-batch,
// a page closed during an outage and reopened, two tabs (one closing during an outage).
// Each scenario counts events tracked vs stored (from the SQLite file) and prints a row of
// "scenario | sent | stored | lost | duplicated". Waits are bounded; faults are triggered by
// observed requests, never by sleeping for a guessed time.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { startCollector, launchBrowser, watchConsole, eventually } from "./harness.mjs";

let collector, browser, addr;
const rows = [];

// A bare page on the collector's origin (served by interception, so it stays loaded while the
// collector is down) that loads the SDK as an ES module.
const PAGE = `<!doctype html><title>faults</title><script type="module">
import * as onramp from "/sdk/v1/index.mjs";
onramp.init({ writeKey: "wk_demo" });
window.onramp = onramp;
window.onrampReady = onramp.load();
</script>`;

before(async () => {
  collector = await startCollector({ args: ["--quiet"] });
  addr = collector.url.replace("http://", "");
  browser = await launchBrowser();
});
after(async () => {
  console.log("\nscenario | sent | stored | lost | duplicated");
  for (const r of rows) console.log(r.join(" | "));
  await browser?.close();
  await collector?.stop();
});

let running = true;
async function down() {
  await collector.kill();
  running = false;
}
async function up() {
  // Same port and file: the page's origin and the stored events stay.
  collector = await startCollector({ db: collector.db, args: ["--quiet", "--listen", addr] });
  running = true;
}

/** Runs a scenario in its own browser context; whatever fails, the collector is up again and
 * the context closed afterwards, so one failed scenario cannot fail the ones after it. */
async function scenario(body) {
  const context = await browser.newContext();
  try {
    await body(context);
  } finally {
    if (!running) await up();
    await context.close();
  }
}

async function openPage(context) {
  const page = await context.newPage();
  const messages = watchConsole(page);
  const sent = []; // event ids per batch request (fetch and beacon)
  const asked = []; // event ids per `POST /v1/known`: "are these stored already?" before a resend
  page.on("request", (r) => {
    if (r.url().endsWith("/v1/batch") && r.method() === "POST") {
      try { sent.push(JSON.parse(r.postData()).events.map((e) => e.id)); } catch { /* not ours */ }
    }
    if (r.url().endsWith("/v1/known") && r.method() === "POST") {
      try { asked.push(JSON.parse(r.postData()).ids); } catch { /* not ours */ }
    }
  });
  const failed = { n: 0 };
  page.on("requestfailed", (r) => { if (r.url().endsWith("/v1/batch")) failed.n++; });
  await page.route(collector.url + "/fault.html", (route) => route.fulfill({ contentType: "text/html", body: PAGE }));
  await page.goto(collector.url + "/fault.html");
  assert.equal(await page.evaluate(() => window.onrampReady), true, "SDK loaded");
  return { page, sent, asked, failed, messages };
}

async function track(page, name, n) {
  await page.evaluate(([name, n]) => {
    for (let i = 0; i < n; i++) window.onramp.track(name, { seq: i, html: "<b>x</b>", sql: "'); DROP TABLE events;--" });
  }, [name, n]);
}

function stored(name) {
  const out = execFileSync("sqlite3", [collector.db,
    `SELECT count(*), count(DISTINCT json_extract(props, '$.seq')) FROM events WHERE name = '${name}'`]).toString().trim();
  const [count, distinct] = out.split("|").map(Number);
  return { count, distinct };
}

/** Waits (bounded) until `n` events named `name` are stored, records the row, asserts 0/0. */
async function expectStored(scenario, name, n) {
  await eventually(() => stored(name).count >= n, { timeout: 40000, interval: 200 });
  const { count, distinct } = stored(name);
  const row = [scenario, n, count, n - Math.min(distinct, n), count - distinct];
  rows.push(row);
  assert.deepEqual(row.slice(1), [n, n, 0, 0], scenario);
}

function noErrors(messages) {
  // A refused connection is logged by Chromium itself as a console error; anything else is ours.
  const bad = messages.filter((m) => m.type === "pageerror" || (m.type === "error" && !/Failed to load resource|net::ERR_/.test(m.text)));
  assert.deepEqual(bad, [], "nothing thrown into the page");
}

test("collector down for a while, then back", () => scenario(async (context) => {
  const { page, failed, messages } = await openPage(context);
  await down();
  await track(page, "f_down", 20);
  assert.ok(await eventually(() => failed.n >= 2, { timeout: 20000 }), "at least two failed attempts while down");
  await up();
  await expectStored("collector down for a while, then back", "f_down", 20);
  noErrors(messages);
}));

test("offline, then online", () => scenario(async (context) => {
  const { page, failed, messages } = await openPage(context);
  await context.setOffline(true);
  await track(page, "f_offline", 20);
  assert.ok(await eventually(() => failed.n >= 1, { timeout: 20000 }), "a failed attempt while offline");
  await context.setOffline(false); // fires `online`: the SDK retries at once
  await expectStored("offline, then online", "f_offline", 20);
  noErrors(messages);
}));

test("page closed in the middle of a batch (beacon)", () => scenario(async (context) => {
  const { page, sent } = await openPage(context);
  // 120 events: a full batch goes by fetch at once, the rest wait for the next tick.
  await track(page, "f_close", 120);
  // The request event reaches the test asynchronously: wait (bounded) until the fetch is seen.
  assert.ok(await eventually(() => sent.length >= 1, { timeout: 5000, interval: 5 }), "a batch was in flight when the page closed");
  await page.close({ runBeforeUnload: true });
  await expectStored("page closed mid-batch (fetch keepalive + beacon)", "f_close", 120);
}));

test("page closed during an outage, reopened later: the persisted queue is resent", () => scenario(async (context) => {
  const first = await openPage(context);
  await down();
  await track(first.page, "f_reload", 30);
  assert.ok(await eventually(() => first.failed.n >= 1, { timeout: 20000 }), "a failed attempt while down");
  await first.page.close({ runBeforeUnload: true });
  await up();
  const second = await openPage(context);
  await expectStored("closed during outage, reopened (localStorage queue)", "f_reload", 30);
  // The old page's beacons may land too if they leave after the restart; either way the new
  // page adopts the stored queue: it sends each event, or first asks whether the beacon
  // delivered it (`/v1/known`) and sends only the missing ones.
  const handled = (p) => new Set([...p.sent.flat(), ...p.asked.flat()]).size;
  assert.ok(await eventually(() => handled(second) >= 30, { timeout: 15000 }), "the new page sent (or checked) the old page's events");
}));

test("two tabs: no event sent by both; a tab closed during an outage is adopted by the other", () => scenario(async (context) => {
  const a = await openPage(context);
  const b = await openPage(context);
  await track(a.page, "f_tabs", 40);
  await track(b.page, "f_tabs_b", 40);
  await a.page.evaluate(() => window.onramp.flush());
  await b.page.evaluate(() => window.onramp.flush());
  await expectStored("two tabs, tab A's events", "f_tabs", 40);
  await expectStored("two tabs, tab B's events", "f_tabs_b", 40);
  const fromA = new Set(a.sent.flat());
  const both = b.sent.flat().filter((id) => fromA.has(id));
  assert.deepEqual(both, [], "no event sent by both tabs");

  // A closes while the collector is down; B adopts A's queue and sends it once it is back.
  await down();
  await track(a.page, "f_adopt", 25);
  assert.ok(await eventually(() => a.failed.n >= 1, { timeout: 20000 }), "A failed to send");
  const ownIds = new Set(b.sent.flat());
  await a.page.close({ runBeforeUnload: true });
  await up();
  await expectStored("two tabs, A closed during outage, B adopts", "f_adopt", 25);
  // B sends A's adopted events, or asks first whether A's closing beacon delivered them.
  const adopted = () => new Set([...b.sent.flat(), ...b.asked.flat()].filter((id) => !ownIds.has(id))).size;
  assert.ok(await eventually(() => adopted() >= 25, { timeout: 15000 }), "tab B sent (or checked) A's adopted events");
  noErrors(b.messages);
}));
