// Users pay only for what they need: the loader fetches the full SDK (events, milestone engine,
// tips) while a user's onboarding may still need it, and only the lean tracker (events,
// auto-capture, delivery) once it is over. Counted from the requests Chromium makes; the
// events of a finished user (tracked and auto-captured) still reach the collector; a plan that
// changes brings the full SDK back on the next page view.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { useCollectorAndBrowser, watchConsole, eventually } from "./harness.mjs";

let collector, browser;
useCollectorAndBrowser((c, b) => { collector = c; browser = b; });

const USER = "fin@example.com";
const plan = (version, milestones) => ({
  version,
  milestones,
  capture: [{ event: "btn_clicked", on: "click", selector: "#btn" }],
});
const V1 = plan("v1", [{ id: "done_it", title: "Done", value: true, condition: { event: "done_it" } }]);
// A later version opens a milestone this user has not reached.
const V2 = plan("v2", [...V1.milestones, { id: "next_step", title: "Next", condition: { event: "next_step" } }]);

const page = (p) => `<!doctype html><title>modules</title><button id="btn">Go</button><script>
window.onramp = [];
["init", "identify", "track", "flush"].forEach((m) => (onramp[m] = (...a) => onramp.push([m, ...a])));
onramp.init({ writeKey: "wk_demo", plan: ${JSON.stringify(p)} });
onramp.identify(${JSON.stringify(USER)}, { signedUpAt: ${Date.now() - 3 * 3600e3} });
</script><script async src="/sdk/v1/loader.js"></script>`;

/** Opens the page with plan `p`; returns the page and the SDK files it requested. */
async function open(context, p) {
  const tab = await context.newPage();
  const messages = watchConsole(tab);
  const files = [];
  tab.on("request", (r) => { if (r.url().includes("/sdk/v1/")) files.push(r.url().split("/sdk/v1/")[1]); });
  await tab.route(collector.url + "/modules.html", (route) => route.fulfill({ contentType: "text/html", body: page(p) }));
  await tab.goto(collector.url + "/modules.html");
  await tab.waitForFunction(() => window.onramp.ready);
  assert.equal(await tab.evaluate(() => window.onramp.ready), true, "SDK started");
  return { tab, files, messages };
}

const kinds = (files) => ({
  full: files.filter((f) => /^onramp(_bg)?\.[0-9a-f]{10}\./.test(f)).length,
  tracker: files.filter((f) => /^tracker(_bg)?\.[0-9a-f]{10}\./.test(f)).length,
});

function stored(name) {
  return Number(execFileSync("sqlite3", [collector.db, `SELECT count(*) FROM events WHERE name = '${name}' AND user_id = '${USER}'`]).toString().trim());
}

test("the full SDK while onboarding may need it; the lean tracker alone once it is over", async () => {
  const context = await browser.newContext();
  // This user's first visit was three hours ago (stored as the SDK stores it): today's visit is
  // their second session, which measures the return interval.
  const started = Date.now() - 3 * 3600e3;
  await context.addInitScript(([user, state]) => {
    if (!localStorage.getItem("seeded")) {
      localStorage.setItem("onramp.state." + user, state);
      localStorage.setItem("seeded", "1");
    }
  }, [USER, JSON.stringify({ v: 1, signup: started, firstSeen: started, lastTs: started + 600e3, reached: {}, counts: {}, done: {},
    firstStart: started, firstEnd: started + 600e3, secondStart: null, lastActivity: started + 600e3,
    session: { start: started, last: started + 600e3, tips: {}, lastTip: null }, tips: {} })]);

  // In onboarding: the full SDK, and no lean mark.
  const first = await open(context, V1);
  assert.deepEqual(kinds(first.files), { full: 2, tracker: 0 }, "module and wasm of the full SDK: " + first.files);
  await first.tab.evaluate(() => window.onramp.flush());
  assert.equal(await first.tab.evaluate(() => localStorage.getItem("onramp.lean")), null, "a milestone is open");
  await first.tab.evaluate(() => { window.onramp.track("done_it"); return window.onramp.flush(); });
  assert.equal(stored("done_it"), 2, "the track event and the milestone it reached");
  assert.equal(await first.tab.evaluate(() => localStorage.getItem("onramp.lean")), "v1\n" + USER, "onboarding over: marked");
  await first.tab.close();

  // Over: the next page view fetches the tracker alone, and its events still arrive.
  const second = await open(context, V1);
  assert.deepEqual(kinds(second.files), { full: 0, tracker: 2 }, "the guide is never downloaded: " + second.files);
  await second.tab.click("#btn");
  // The tracker reads props with the browser's JSON.parse (src/web/browser_json.rs): nesting,
  // numbers, text and order arrive as the page gave them.
  const props = { n: 1.5, text: "é \"q\" \u2028", list: [1, "two", null, true, { deep: [-0.25] }], none: null };
  await second.tab.evaluate((p) => { window.onramp.track("after_done", p); }, props);
  assert.ok(await eventually(async () => { await second.tab.evaluate(() => window.onramp.flush()); return stored("btn_clicked") === 1; }),
    "auto-capture still works in the tracker");
  assert.equal(stored("after_done"), 1);
  const sent = execFileSync("sqlite3", [collector.db, `SELECT props FROM events WHERE name = 'after_done'`]).toString().trim();
  assert.deepEqual(JSON.parse(sent), props);
  assert.deepEqual(Object.keys(JSON.parse(sent)), Object.keys(props), "key order kept");
  assert.deepEqual(second.messages.filter((m) => m.type === "error" || m.type === "pageerror"), []);
  await second.tab.close();

  // A new plan version opens a milestone: the tracker unmarks the user, the next view is full.
  const third = await open(context, V2);
  assert.deepEqual(kinds(third.files), { full: 0, tracker: 2 });
  assert.ok(await eventually(() => third.tab.evaluate(() => localStorage.getItem("onramp.lean") === null)), "unmarked");
  await third.tab.close();
  const fourth = await open(context, V2);
  assert.deepEqual(kinds(fourth.files), { full: 2, tracker: 0 }, "the guide is back: " + fourth.files);
  assert.equal(await fourth.tab.evaluate(() => localStorage.getItem("onramp.lean")), null, "next_step is open");
  await context.close();
});

test("another user signing in on a lean page brings the full SDK back on the next view", async () => {
  const context = await browser.newContext();
  await context.addInitScript(() => localStorage.setItem("onramp.lean", "v1\nsomeone-else@example.com"));
  const { tab, files } = await open(context, V1);
  assert.deepEqual(kinds(files), { full: 0, tracker: 2 });
  assert.ok(await eventually(() => tab.evaluate(() => localStorage.getItem("onramp.lean") === null)), "unmarked by identify");
  await context.close();
});

test("a survey that has come due brings the full SDK back; one not yet due keeps the tracker", async () => {
  // The full SDK marks a finished user lean until their next survey may be asked (a third line).
  const context = await browser.newContext();
  await context.addInitScript((user) => {
    if (!localStorage.getItem("due")) localStorage.setItem("onramp.lean", "v1\n" + user + "\n" + (Date.now() + 30 * 86400e3));
  }, USER);
  const notYet = await open(context, V1);
  assert.deepEqual(kinds(notYet.files), { full: 0, tracker: 2 });
  await notYet.tab.evaluate(() => window.onramp.flush());
  assert.match(await notYet.tab.evaluate(() => localStorage.getItem("onramp.lean")), /^v1\n/, "not due yet: still marked");
  await notYet.tab.evaluate(() => { localStorage.setItem("due", "1"); localStorage.setItem("onramp.lean", localStorage.getItem("onramp.lean").replace(/\n\d+$/, "\n" + (Date.now() - 1000))); });
  await notYet.tab.close();
  const due = await open(context, V1);
  assert.deepEqual(kinds(due.files), { full: 0, tracker: 2 }, "the mark was still there when this page loaded");
  assert.ok(await eventually(() => due.tab.evaluate(() => localStorage.getItem("onramp.lean") === null)), "the tracker unmarks a passed time");
  await due.tab.close();
  await context.close();
});
