// Upgrading the SDK loses no user's progress (issue 12): a user's milestone state as the SDK
// before issue 12 wrote it to localStorage (format version 1, by hand) is read by this release's
// versioned serde document (src/core/persisted.rs) in a real browser, on the shipped bundle and
// the Trackly demo, and the milestones reached before the upgrade count: they are not reported
// again, they complete onboarding with the ones reached after, and the dismissed tip stays away.
import { test } from "node:test";
import assert from "node:assert/strict";
import { useCollectorAndBrowser, watchConsole, eventually, sentOnce } from "./harness.mjs";

let collector, browser;
useCollectorAndBrowser((c, b) => { collector = c; browser = b; });

const USER = "old@example.com";
const MIN = 60_000;

/** The old SDK's `UserState::to_json` (a80d3a9), key order and nulls included: signed up and a
 *  project created ten minutes ago, in a first session, the welcome modal seen and dismissed. */
function versionOneState(t0) {
  const t1 = t0 + MIN;
  return JSON.stringify({
    v: 1, signup: t0, firstSeen: t0, lastTs: t1,
    reached: { project_created: t1, signed_up: t0 },
    counts: {}, done: {},
    firstStart: t0, firstEnd: t1, secondStart: null, lastActivity: t1,
    session: { start: t0, last: t1, tips: { "old-tab": 1 }, lastTip: t0 + 1000 },
    tips: { welcome: { shown: { "old-tab": 1 }, last: t0 + 1000, dismissed: t0 + 2000, snoozedUntil: null, step: 0 } },
  });
}

test("a user's milestones stored by the previous SDK survive the upgrade", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const sent = sentOnce(page);
  const messages = watchConsole(page);

  // Plant the old state on the collector's origin before any onramp code runs there: Trackly's
  // own record of the signed-in user (it identifies them on load) and onramp's, version 1.
  // (An empty page of the collector's origin, without even a favicon request.)
  await page.route("**/plant-old-state", (route) => route.fulfill({ contentType: "text/html", body: "<link rel=icon href=data:,>" }));
  await page.goto(collector.url + "/plant-old-state");
  const t0 = Date.now() - 10 * MIN;
  await page.evaluate(({ user, t0, state }) => {
    localStorage.clear();
    localStorage.setItem("trackly.state", JSON.stringify({ user: { id: user, name: "Old", signedUpAt: t0 }, projects: ["Roadmap"], team: [], files: [] }));
    localStorage.setItem("onramp.state." + user, state);
  }, { user: USER, t0, state: versionOneState(t0) });

  await page.goto(collector.url + "/demo/#/team");
  await page.waitForFunction(() => window.onramp && window.onramp.ready, null, { timeout: 15000 });
  await page.evaluate(() => window.onramp.ready);
  await page.click("#invite-teammate");
  await page.fill("#invite-email", "new@example.com");
  await page.click("#invite-send");
  await page.click("a[data-route=files]");
  await page.click("#upload-file");

  const milestones = (name) => sent().filter((e) => e.type === "milestone" && e.name === name);
  const done = await eventually(async () => {
    await page.evaluate(() => window.onramp.flush());
    return milestones("onboarding_completed").length > 0;
  }, { timeout: 20000 });
  const names = sent().map((e) => e.type + ":" + e.name);
  assert.ok(done, "the milestones from before the upgrade complete onboarding with the new ones; sent " + JSON.stringify(names));
  assert.equal(milestones("teammate_invited").length, 1);
  assert.equal(milestones("file_uploaded").length, 1);
  assert.deepEqual([...milestones("signed_up"), ...milestones("project_created")], [], "reached before the upgrade: not reported again");
  const ttv = milestones("time_to_value");
  assert.equal(ttv.length, 1);
  assert.ok(ttv[0].props.sinceSignupMs >= 10 * MIN, "measured from the stored sign-up time: " + ttv[0].props.sinceSignupMs);
  assert.deepEqual(sent().filter((e) => e.type === "tip" && e.props.tipId === "welcome"), [], "the dismissed welcome stays dismissed");

  // Rewritten in the current format, the old times kept.
  const stored = JSON.parse(await page.evaluate((user) => localStorage.getItem("onramp.state." + user), USER));
  assert.equal(stored.v, 2);
  assert.equal(stored.reached.signed_up, t0);
  assert.equal(stored.reached.project_created, t0 + MIN);
  assert.equal(stored.tips.welcome.dismissed, t0 + 2000);
  assert.deepEqual(messages.filter((m) => m.type === "error" || m.type === "pageerror"), []);
  await context.close();
});
