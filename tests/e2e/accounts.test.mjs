// group() and the identity rule end to end, with the shipped SDK against the real collector:
// after group(accountId) every event carries the account, across a reload, until reset();
// identifying as a different user than the one this browser was identified as starts a fresh
// anonymous id (docs/IDENTITY.md), whether or not the page called reset() in between.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { useCollectorAndBrowser, watchConsole } from "./harness.mjs";

let collector, browser;
useCollectorAndBrowser((c, b) => { collector = c; browser = b; });

const PAGE = `<!doctype html><title>accounts</title><script type="module">
import * as onramp from "/sdk/v1/index.mjs";
onramp.init({ writeKey: "wk_demo", plan: false });
window.onramp = onramp;
window.onrampReady = onramp.load();
</script>`;

async function open(page) {
  await page.route(collector.url + "/accounts.html", (route) => route.fulfill({ contentType: "text/html", body: PAGE }));
  await page.goto(collector.url + "/accounts.html");
  assert.equal(await page.evaluate(() => window.onrampReady), true, "SDK loaded");
}

/** name|type|anonymous id|user id|props.accountId|props.account.plan, in client order. */
function rows(prefix) {
  const sql = `SELECT name, type, anonymous_id, coalesce(user_id, ''), coalesce(json_extract(props, '$.accountId'), ''),
    coalesce(json_extract(props, '$.account.plan'), '') FROM events WHERE name LIKE '${prefix}%' OR (name IN ('group', 'identify') AND user_id LIKE '${prefix}%') ORDER BY client_ts, id`;
  const out = execFileSync("sqlite3", [collector.db, sql]).toString().trim();
  return out ? out.split("\n").map((r) => r.split("|")) : [];
}

test("group(): every later event carries the account, across a reload, until reset()", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const messages = watchConsole(page);
  await open(page);
  await page.evaluate(async () => {
    window.onramp.identify("g_alice@example.com");
    window.onramp.track("g_before");
    window.onramp.group("acme", { plan: "pro", seats: 12 });
    window.onramp.track("g_after", { n: 1 });
    await window.onramp.flush();
  });
  await page.reload();
  assert.equal(await page.evaluate(() => window.onrampReady), true);
  await page.evaluate(async () => {
    window.onramp.track("g_reloaded");
    window.onramp.reset();
    window.onramp.track("g_logged_out");
    await window.onramp.flush();
  });
  const got = rows("g_");
  const by = (name) => got.find((r) => r[0] === name);
  assert.equal(by("g_before")[4], "", "no account before group()");
  const group = by("group");
  assert.equal(group[1], "identify");
  assert.equal(group[3], "g_alice@example.com");
  assert.equal(group[5], "pro", "the account's traits on the group event");
  assert.equal(by("g_after")[4], "acme");
  assert.equal(by("g_reloaded")[4], "acme", "a reload keeps the account");
  assert.equal(by("g_logged_out")[4], "", "reset() clears it");
  assert.notEqual(by("g_logged_out")[2], by("g_after")[2], "reset() starts a new anonymous id");
  assert.deepEqual(messages.filter((m) => m.type === "error" || m.type === "pageerror"), []);
  await context.close();
});

test("identify as a different user starts a fresh anonymous id, even on a later page view without reset()", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await open(page);
  await page.evaluate(async () => {
    window.onramp.track("i_browsing");
    window.onramp.identify("i_alice@example.com");
    window.onramp.identify("i_alice@example.com"); // the same user again: same id
    window.onramp.track("i_alice_works");
    await window.onramp.flush();
  });
  // Alice closes the tab without logging out; Bob signs in on the same browser later.
  await page.reload();
  assert.equal(await page.evaluate(() => window.onrampReady), true);
  await page.evaluate(async () => {
    window.onramp.track("i_anonymous_again");
    window.onramp.identify("i_bob@example.com");
    window.onramp.track("i_bob_works");
    await window.onramp.flush();
  });
  const got = rows("i_");
  const anon = (name) => got.find((r) => r[0] === name)[2];
  assert.equal(anon("i_browsing"), anon("i_alice_works"), "alice's anonymous browsing is hers");
  assert.equal(anon("i_anonymous_again"), anon("i_alice_works"), "the same browser until someone else signs in");
  assert.notEqual(anon("i_bob_works"), anon("i_alice_works"), "bob gets a fresh anonymous id");
  // The collector links each anonymous id to one user only.
  const links = execFileSync("sqlite3", [collector.db,
    `SELECT count(DISTINCT user_id) FROM events WHERE anonymous_id = '${anon("i_alice_works")}' AND user_id IS NOT NULL`]).toString().trim();
  assert.equal(links, "1", "alice's anonymous id carries alice only");
  await context.close();
});

// A tip that leads to an account milestone (docs/TIPS.md, "Account progress"): shown while the
// user's account has not reached it, gone once a teammate got the account there (the collector
// serves the account's progress in /v1/state at identify). Runs last: it publishes a plan.
const ACCOUNT_PLAN = {
  version: "accounts-e2e",
  milestones: [{ id: "t_value", title: "Value", value: true, condition: { event: "t_value_done" } }],
  health: { accountMilestones: [{ id: "team2", title: "2 teammates invited", event: "t_teammate_invited", count: 2 }] },
  tips: [{ id: "invite_team", kind: "modal", accountMilestone: "team2", body: "Invite your team", cap: { maxShows: 5 } }],
};

const PLANNED = `<!doctype html><title>account tips</title><body><script type="module">
import * as onramp from "/sdk/v1/index.mjs";
onramp.init({ writeKey: "wk_demo" });
window.onramp = onramp;
window.onrampReady = onramp.load();
</script>`;

/** A page of the planned product for `user` of `account`; resolves once /v1/state was merged. */
async function member(context, user, account) {
  const page = context.pages()[0] || await context.newPage();
  await page.route(collector.url + "/planned.html", (route) => route.fulfill({ contentType: "text/html", body: PLANNED }));
  await page.goto(collector.url + "/planned.html");
  assert.equal(await page.evaluate(() => window.onrampReady), true, "SDK loaded");
  const answered = page.waitForResponse((r) => r.url().includes("/v1/state?") && r.url().includes(`user=${user}`));
  await page.evaluate(async ([u, a]) => {
    window.onramp.identify(u, { signedUpAt: Date.now() });
    window.onramp.group(a);
    await window.onramp.flush();
  }, [user, account]);
  const state = await (await answered).json();
  await page.waitForTimeout(1500); // the answer's merge, and a render of whatever may show
  return { page, state };
}

test("a tip toward an account milestone shows until a teammate reaches it for the account", async () => {
  const put = await fetch(collector.url + "/v1/plan", { method: "PUT", headers: { Authorization: "Bearer et_demo" }, body: JSON.stringify(ACCOUNT_PLAN) });
  assert.equal(put.status, 200, await put.text());
  const modal = (page) => page.locator("onramp-tips .m");

  // Ben (t_acme) before anyone invited: the tip shows.
  const ben = await browser.newContext();
  const messages = watchConsole(await ben.newPage());
  let b = await member(ben, "t_ben", "t_acme");
  await modal(b.page).waitFor({ timeout: 10000 });
  // And again on his next page, as long as Acme has not reached it (the control for the end).
  b = await member(ben, "t_ben", "t_acme");
  assert.deepEqual(b.state.account, { id: "t_acme" }, "Acme known, nothing reached");
  await modal(b.page).waitFor({ timeout: 10000 });

  // Amy, his teammate, invites two people on her own device: the account reaches team2.
  const amy = await browser.newContext();
  const a = await member(amy, "t_amy", "t_acme");
  await a.page.evaluate(async () => {
    window.onramp.track("t_teammate_invited");
    window.onramp.track("t_teammate_invited");
    await window.onramp.flush();
  });

  // Ben's next page: the collector serves Acme's progress, and the tip is done.
  b = await member(ben, "t_ben", "t_acme");
  assert.equal(b.state.account?.id, "t_acme", JSON.stringify(b.state));
  assert.ok(b.state.account.reached?.team2, JSON.stringify(b.state));
  assert.equal(await modal(b.page).count(), 0, "Acme reached it: not shown to Ben");
  // Kept in Ben's stored state: offline on the next page, still not shown.
  const stored = await b.page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith("onramp")).map((k) => localStorage.getItem(k)).join("\n"));
  assert.ok(stored.includes('"account":{"id":"t_acme"'), stored);

  // Cy, of another account with no invites, still sees it.
  const cy = await browser.newContext();
  const c = await member(cy, "t_cy", "t_initech");
  await modal(c.page).waitFor({ timeout: 10000 });
  assert.deepEqual(messages.filter((m) => m.type === "error" || m.type === "pageerror"), []);
  for (const ctx of [ben, amy, cy]) await ctx.close();
});
