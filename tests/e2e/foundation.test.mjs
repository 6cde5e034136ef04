// The whole path in a real browser: the demo page (served by the collector, loading the shipped
// optimised bundle by script tag) → wasm SDK → POST /v1/batch → SQLite → funnel endpoint.
import { test } from "node:test";
import assert from "node:assert/strict";
import { useCollectorAndBrowser, watchConsole, eventually, getJson, ARTIFACTS } from "./harness.mjs";
import { join } from "node:path";

const STEPS = "signed_up,project_created,teammate_invited,file_uploaded";
let collector, browser;
useCollectorAndBrowser((c, b) => { collector = c; browser = b; });

async function signUp(page, name, email) {
  await page.goto(collector.url + "/demo/");
  await page.fill("#signup-name", name);
  await page.fill("#signup-email", email);
  await page.click("#signup-submit");
}

async function createProject(page, name) {
  await page.click("#new-project");
  await page.fill("#project-name", name);
  await page.click("#project-create");
}

async function inviteTeammate(page, email) {
  await page.click("a[data-route=team]");
  await page.click("#invite-teammate");
  await page.fill("#invite-email", email);
  await page.click("#invite-send");
}

test("two users' different steps reach the funnel exactly", async () => {
  // Separate contexts: separate storage, so separate anonymous ids, as two real visitors.
  const ada = await (await browser.newContext()).newPage();
  const bo = await (await browser.newContext()).newPage();
  const adaConsole = watchConsole(ada);
  const boConsole = watchConsole(bo);

  await signUp(ada, "Ada", "ada@example.com");
  await createProject(ada, "Launch plan");
  await inviteTeammate(ada, "grace@example.com");

  await signUp(bo, "Bo", "bo@example.com");
  await createProject(bo, "Q3 roadmap");

  // The SDK flushes about a second after the last call; closing the pages also beacons.
  await ada.evaluate(() => window.onramp.flush());
  await bo.evaluate(() => window.onramp.flush());
  await ada.screenshot({ path: join(ARTIFACTS, "foundation-demo-ada.png") });

  const expected = [["ada@example.com", "bo@example.com"], ["ada@example.com", "bo@example.com"], ["ada@example.com"], []];
  const funnelUrl = collector.url + "/v1/funnel?users=true&steps=" + STEPS;
  const report = await eventually(async () => {
    const { body } = await getJson(funnelUrl);
    const ids = body.steps.map((s) => s.userIds);
    return JSON.stringify(ids) === JSON.stringify(expected) ? body : null;
  });
  assert.ok(report, "funnel never matched; last: " + JSON.stringify((await getJson(funnelUrl)).body));
  assert.deepEqual(report.steps.map((s) => s.users), [2, 2, 1, 0]);
  assert.equal(report.steps[2].conversionFromPrevious, 0.5);

  for (const messages of [adaConsole, boConsole]) {
    const bad = messages.filter((m) => m.type === "error" || m.type === "pageerror");
    assert.deepEqual(bad, [], "no errors in the page");
  }
});

test("calls made before the SDK loads are replayed in order", async () => {
  const page = await (await browser.newContext()).newPage();
  // Hold the loader back so the page's calls certainly happen before any SDK code runs.
  let release;
  const held = new Promise((r) => (release = r));
  await page.route("**/sdk/v1/loader.js", async (route) => { await held; await route.continue(); });
  await page.goto(collector.url + "/demo/", { waitUntil: "domcontentloaded" });
  await page.evaluate(() => {
    onramp.identify("early@example.com", { signedUpAt: Date.now() });
    onramp.track("signed_up");
    onramp.track("project_created");
  });
  const queued = await page.evaluate(() => window.onramp.filter((call) => Array.isArray(call)).map((call) => call[0]));
  assert.deepEqual(queued.slice(-3), ["identify", "track", "track"], "calls are queued while the SDK loads");
  release();
  await page.waitForFunction(() => window.onramp.ready);
  assert.equal(await page.evaluate(() => window.onramp.ready), true, "the SDK started");
  await page.evaluate(() => window.onramp.flush());
  const report = await eventually(async () => {
    const { body } = await getJson(collector.url + "/v1/funnel?users=true&steps=signed_up,project_created");
    return body.steps[1].userIds.includes("early@example.com") ? body : null;
  });
  assert.ok(report, "early calls reached the collector attributed to the user, in order");
});

test("identify reads signedUpAt by the collector's definition: seconds become ms, an impossible time is left out and the identify still arrives", async () => {
  const page = await (await browser.newContext()).newPage();
  const messages = watchConsole(page);
  await page.goto(collector.url + "/demo/");
  await page.waitForFunction(() => window.onramp.ready);
  const seconds = Math.floor(Date.now() / 1000) - 3600;
  await page.evaluate((s) => {
    onramp.identify("seconds@example.com", { signedUpAt: s, plan: "trial" });
    onramp.identify("ancient@example.com", { signedUpAt: 5, plan: "trial" });
    return window.onramp.flush();
  }, seconds);
  const identifyOf = async (user) => {
    const { status, body } = await getJson(`${collector.url}/v1/users/${encodeURIComponent(user)}/export`, "at_demo");
    assert.equal(status, 200, user);
    return body.events.find((e) => e.type === "identify");
  };
  const secondsIdentify = await eventually(() => identifyOf("seconds@example.com"));
  assert.equal(secondsIdentify.props.signedUpAt, seconds * 1000, "seconds read as seconds, sent as ms");
  const ancient = await eventually(() => identifyOf("ancient@example.com"));
  assert.ok(ancient, "the identify with an impossible sign-up time is stored (not refused with a 400)");
  assert.equal(ancient.props.signedUpAt, undefined, "the impossible time is left out");
  assert.equal(ancient.props.plan, "trial", "the other traits are kept");
  const said = messages.filter((m) => m.type === "error" && m.text.includes("signedUpAt"));
  assert.equal(said.length, 1, "one console line names the field");
});

test("the collector serves the bundle at stable URLs with the right types", async () => {
  for (const [path, type] of [["loader.js", "javascript"], ["index.mjs", "javascript"], ["onramp_bg.wasm", "application/wasm"]]) {
    const r = await fetch(collector.url + "/sdk/v1/" + path);
    assert.equal(r.status, 200, path);
    assert.match(r.headers.get("content-type"), new RegExp(type), path);
  }
});
