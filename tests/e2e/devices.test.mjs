// One user across devices and shared computers (docs/IDENTITY.md), in real headless Chromium
// on the shipped SDK and a real collector with the demo plan (Trackly: `project_created` needs
// `signed_up` first; the `welcome` modal shows once). Two browser contexts are two devices of
// one user; one context used by two people is a shared computer. What the collector stores and
// reports is checked against the documented rule: milestones once per user whatever the
// devices, `after` across devices, a tip dismissed anywhere stays dismissed, one
// first_session_length per user, one anonymous id never two users, and a resend changes nothing.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { useCollectorAndBrowser, watchConsole, eventually, getJson } from "./harness.mjs";

const H = 3600000;
let collector, browser;
useCollectorAndBrowser((c, b) => { collector = c; browser = b; }, { args: ["--quiet"] });

const PAGE = `<!doctype html><title>devices</title><body><script type="module">
import * as onramp from "/sdk/v1/index.mjs";
onramp.init({ writeKey: "wk_demo" });
window.onramp = onramp;
window.onrampReady = onramp.load();
</script>`;

function sql(query) {
  return execFileSync("sqlite3", [collector.db, query]).toString().trim();
}

/** A device: a browser context whose clock runs `offsetMs` ahead (a later day), on the page. */
async function device({ context, offsetMs = 0 } = {}) {
  context = context || await browser.newContext();
  if (offsetMs) await context.addInitScript((off) => { const now = Date.now; Date.now = () => now() + off; }, offsetMs);
  const page = await context.newPage();
  const messages = watchConsole(page);
  const batches = [];
  page.on("request", (r) => { if (r.method() === "POST" && r.url().endsWith("/v1/batch")) batches.push(r.postData()); });
  await page.route(collector.url + "/devices.html", (route) => route.fulfill({ contentType: "text/html", body: PAGE }));
  await page.goto(collector.url + "/devices.html");
  assert.equal(await page.evaluate(() => window.onrampReady), true, "SDK loaded");
  return { context, page, messages, batches };
}

/** identify, and wait until the collector's state for the user has been merged. */
async function identify(d, user, traits = {}) {
  const answered = d.page.waitForResponse((r) => r.url().includes("/v1/state?") && r.url().includes(`user=${encodeURIComponent(user)}`));
  await d.page.evaluate(([u, t]) => window.onramp.identify(u, t), [user, traits]);
  const response = await answered;
  assert.equal(response.status(), 200);
  await d.page.waitForTimeout(300); // the answer's input runs after the response resolves
  return response.json();
}

async function flush(d) {
  await d.page.evaluate(() => window.onramp.flush());
}

const milestones = (user) => sql(`SELECT name FROM events WHERE type = 'milestone' AND user_id = '${user}' ORDER BY ts, name`).split("\n").filter(Boolean);

test("a milestone on the laptop opens its `after` milestone on the phone; a tip dismissed there stays dismissed", async () => {
  const signedUpAt = Date.now();
  const laptop = await device();
  await identify(laptop, "ann", { signedUpAt });
  // The welcome modal (1 s delay) shows on the laptop; Ann closes it.
  const modal = laptop.page.locator("onramp-tips .m");
  await modal.waitFor({ timeout: 10000 });
  await laptop.page.locator("onramp-tips .m [data-a=x]").click();
  await laptop.page.evaluate(() => window.onramp.track("signed_up"));
  await flush(laptop);
  await eventually(() => sql("SELECT count(*) FROM events WHERE name = 'tip_dismissed'") === "1");
  assert.deepEqual(milestones("ann"), ["signed_up"]);

  const phone = await device();
  const state = await identify(phone, "ann", { signedUpAt });
  assert.ok(state.reached.signed_up, "the collector serves the laptop's milestone");
  assert.ok(state.tips.welcome.dismissed, "and the dismissal");
  await phone.page.evaluate(() => window.onramp.track("project_created"));
  await phone.page.waitForTimeout(2000); // past the welcome modal's 1 s delay
  assert.equal(await phone.page.locator("onramp-tips .m").count(), 0, "dismissed on the laptop: not shown on the phone");
  await flush(phone);
  await eventually(() => milestones("ann").includes("project_created"));
  // Once per user: signed_up is not sent again from the phone; project_created comes from it.
  assert.deepEqual(milestones("ann"), ["signed_up", "project_created"]);
  const phoneAnon = await phone.page.evaluate(() => localStorage.getItem("onramp.anonymousId"));
  assert.equal(sql(`SELECT anonymous_id FROM events WHERE name = 'project_created' AND type = 'milestone'`), phoneAnon);
  const shown = sql("SELECT anonymous_id || ' ' || json_extract(props, '$.tipId') FROM events WHERE name = 'tip_shown' ORDER BY ts").split("\n");
  assert.equal(shown.filter((s) => s.endsWith(" welcome")).length, 1, `the welcome modal showed on one device only: ${shown}`);
  for (const d of [laptop, phone]) assert.deepEqual(d.messages.filter((m) => m.type === "error"), []);
  await laptop.context.close();
  await phone.context.close();
});

test("one first_session_length per user across devices", async () => {
  const user = "fay";
  const laptop = await device();
  await identify(laptop, user);
  await laptop.page.evaluate(() => window.onramp.track("signed_up"));
  await flush(laptop);
  const storage = await laptop.context.storageState();
  await laptop.context.close();

  // Two hours later on the phone: the user's second session; the laptop's first is measured.
  const phone = await device({ offsetMs: 2 * H });
  await identify(phone, user);
  await flush(phone);
  await eventually(() => sql(`SELECT count(*) FROM events WHERE name = 'first_session_length' AND user_id = '${user}'`) === "1", { timeout: 20000 });
  const anonOf = (d) => d.page.evaluate(() => localStorage.getItem("onramp.anonymousId"));
  assert.equal(sql(`SELECT anonymous_id FROM events WHERE name = 'first_session_length'`), await anonOf(phone));

  // Four hours later, back on the laptop (its own storage says: a second session). The phone
  // measured it already: not again.
  const again = await device({ context: await browser.newContext({ storageState: storage }), offsetMs: 4 * H });
  const state = await identify(again, user);
  assert.ok(state.done.first_session_length, "the collector knows it was measured");
  await again.page.evaluate(() => window.onramp.track("project_created"));
  await flush(again);
  await eventually(() => milestones(user).includes("project_created"));
  assert.equal(sql(`SELECT count(*) FROM events WHERE name IN ('first_session_length', 'return_interval') AND user_id = '${user}'`), "2");
  // The laptop's first session (seconds), not a span across devices.
  const valueMs = JSON.parse(sql(`SELECT props FROM events WHERE name = 'first_session_length'`)).valueMs;
  assert.ok(valueMs >= 0 && valueMs < 60000, `first session ${valueMs} ms`);
  const metrics = (await getJson(collector.url + "/v1/metrics")).body;
  assert.equal(metrics.firstSessionLength?.users, 1, JSON.stringify(metrics));
  await phone.context.close();
  await again.context.close();
});

/** Ann then Bob on one browser, with or without a log-out between; returns the batches sent. */
async function sharedComputer({ reset, ann, bob }) {
  const d = await device();
  await identify(d, ann);
  await d.page.evaluate(() => window.onramp.track("signed_up"));
  await flush(d);
  const annAnon = await d.page.evaluate(() => localStorage.getItem("onramp.anonymousId"));
  if (reset) await d.page.evaluate(() => window.onramp.reset());
  // Bob, before he identifies, browses: his anonymous activity is his.
  await d.page.evaluate(() => window.onramp.track("team_viewed"));
  const state = await identify(d, bob);
  assert.deepEqual(state.reached ?? {}, {}, "Bob's state is his own (version 2 of the state leaves an empty map out)");
  await d.page.evaluate(() => window.onramp.track("project_created"));
  await flush(d);
  const bobAnon = await d.page.evaluate(() => localStorage.getItem("onramp.anonymousId"));
  assert.notEqual(annAnon, bobAnon, "a fresh anonymous id for the next user");
  await eventually(() => sql(`SELECT count(*) FROM events WHERE user_id = '${bob}' AND name = 'project_created'`) === "1");
  // Bob has not signed up on this plan: project_created (after signed_up) is not his milestone.
  assert.deepEqual(milestones(bob), []);
  assert.deepEqual(milestones(ann), ["signed_up"]);
  const links = sql(`SELECT anonymous_id || ' ' || user_id FROM identities WHERE user_id IN ('${ann}', '${bob}') ORDER BY user_id`);
  assert.equal(links, `${annAnon} ${ann}\n${bobAnon} ${bob}`);
  await d.context.close();
  return { batches: d.batches };
}

test("a shared computer, with and without reset(), and a duplicated late identify", async () => {
  await sharedComputer({ reset: true, ann: "ann2", bob: "bob2" });
  const { batches } = await sharedComputer({ reset: false, ann: "ann3", bob: "bob3" });

  const reports = async () => JSON.stringify([
    await getJson(collector.url + "/v1/funnel?steps=signed_up,project_created&users=true"),
    await getJson(collector.url + "/v1/metrics"),
    sql("SELECT anonymous_id, user_id FROM identities ORDER BY anonymous_id"),
  ]);
  const before = await reports();
  // Every batch of that browser arrives again, late, Ann's identify among them (at-least-once).
  const annIdentify = batches.find((b) => JSON.parse(b).events.some((e) => e.type === "identify" && e.userId === "ann3"));
  assert.ok(annIdentify, "Ann's identify was sent");
  for (const body of [annIdentify, ...batches]) {
    const r = await fetch(collector.url + "/v1/batch", { method: "POST", body, headers: { "content-type": "text/plain" } });
    assert.equal(r.status, 200);
  }
  assert.equal(await reports(), before, "a resend changes no report");
});

test("a `count` condition holds across devices: two exports on the laptop and one on the phone make three", async () => {
  // The demo plan with two more milestones, a plain count and a count filtered on a prop
  // (published last: the tests above use the demo plan as it is).
  const plan = JSON.parse(await (await fetch(collector.url + "/v1/plan?writeKey=wk_demo")).text());
  plan.milestones.push({ id: "exported_thrice", title: "Export three times", condition: { event: "export", count: 3 } });
  plan.milestones.push({ id: "big_exports", title: "Two big exports", condition: { event: "export", count: 2, where: { rows: { gte: 100 } } } });
  const put = await fetch(collector.url + "/v1/plan?message=count%20test", { method: "PUT", headers: { Authorization: "Bearer et_demo" }, body: JSON.stringify(plan) });
  assert.equal(put.status, 200, await put.text());

  const laptop = await device();
  await identify(laptop, "gus");
  // One export of 500 rows (passes the filter) and one without rows (does not).
  await laptop.page.evaluate(() => window.onramp.track("export", { rows: 500 }));
  await laptop.page.evaluate(() => window.onramp.track("export"));
  await flush(laptop);
  await eventually(() => sql("SELECT count(*) FROM events WHERE user_id = 'gus' AND name = 'export'") === "2");
  assert.deepEqual(milestones("gus"), [], "two of three on the laptop");

  const phone = await device();
  const state = await identify(phone, "gus");
  assert.deepEqual(state.counts?.exported_thrice, { otherDevices: 2 }, "the collector serves the laptop's two exports to the phone");
  assert.deepEqual(state.counts?.big_exports, { otherDevices: 1 }, "and the one that passes the filter");
  await phone.page.evaluate(() => window.onramp.track("export", { rows: 200 }));
  await flush(phone);
  await eventually(() => milestones("gus").includes("exported_thrice") && milestones("gus").includes("big_exports"));
  const phoneAnon = await phone.page.evaluate(() => localStorage.getItem("onramp.anonymousId"));
  assert.equal(sql("SELECT anonymous_id FROM events WHERE type = 'milestone' AND name = 'exported_thrice'"), phoneAnon, "reached once, on the phone");
  assert.equal(sql("SELECT anonymous_id FROM events WHERE type = 'milestone' AND name = 'big_exports'"), phoneAnon, "the filtered count too");
  // Asked again, the phone's own exports are not counted back to it.
  const reload = await device({ context: await browser.newContext({ storageState: await phone.context.storageState() }) });
  const again = await identify(reload, "gus");
  assert.ok(again.reached.exported_thrice, "reached for the user");
  assert.equal(again.counts?.exported_thrice, undefined, "a reached milestone's count is not served");
  for (const d of [laptop, phone]) assert.deepEqual(d.messages.filter((m) => m.type === "error"), []);
  await laptop.context.close();
  await phone.context.close();
  await reload.context.close();
});
