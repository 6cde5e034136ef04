// Holdouts, prompts and their dashboard panels in real headless Chromium, on the shipped bundle
// served by a real collector (docs/EXPERIMENTS.md): a user in the global holdout never sees
// guidance and a user outside it does, each reporting their arm once; a prompt at the value
// milestone whose call to action reaches the host app's callback, sharing the tips' budget;
// the experiments and prompts panels show the collector's figures and survive any value the
// API can return.
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { readFileSync } from "node:fs";
import { useCollectorAndBrowser, watchConsole, eventually, getJson, assertAxeClean, sentOnce, ARTIFACTS, ROOT } from "./harness.mjs";

const H = 3600000, D = 24 * H;
let collector, browser;
useCollectorAndBrowser((c, b) => { collector = c; browser = b; });

// The assignment hash, written again here from docs/EXPERIMENTS.md (FNV-1a 64 over
// salt \0 experiment \0 user, then MurmurHash3's fmix64, top 53 bits / 2^53), with BigInt.
const M64 = (1n << 64n) - 1n;
function draw(salt, experiment, user) {
  const bytes = new TextEncoder().encode(salt + "\0" + experiment + "\0" + user);
  let h = 0xcbf29ce484222325n;
  for (const b of bytes) { h ^= BigInt(b); h = (h * 0x100000001b3n) & M64; }
  h ^= h >> 33n; h = (h * 0xff51afd7ed558ccdn) & M64;
  h ^= h >> 33n; h = (h * 0xc4ceb9fe1a85ec53n) & M64;
  h ^= h >> 33n;
  return Number(h >> 11n) / 2 ** 53;
}

const PLAN = {
  version: "x1", defaultLocale: "en",
  holdouts: { salt: "e2e-salt", globalPercent: 50 },
  milestones: [
    { id: "made", title: "Create a project", condition: { event: "made" } },
    { id: "shared", title: "Share it", value: true, condition: { event: "shared" } },
  ],
  caps: { maxTipsPerSession: 10, minGapBetweenTips: "0s" },
  tips: [
    { id: "hello", kind: "modal", title: "Welcome", body: "Three steps and your team is planning here." },
    { id: "cl", kind: "checklist", title: "Getting started" },
    { id: "tt", kind: "tooltip", milestone: "made", target: "#new", body: "Create your first project." },
  ],
  prompts: [{ id: "p", milestone: "made", body: "Invite your team", cta: { label: "Invite", action: "invite" } }],
  // Due once "go" is tracked; a control group of its own, so `survey:first-go` is an experiment.
  surveys: [{ id: "first-go", kind: "csat", question: "How was getting started?", when: { event: "go" }, controlPercent: 30 }],
};

/** Opens the tips fixture as `user` with `plan`, recording the events the page sends. */
async function open(user, plan = PLAN) {
  const context = await browser.newContext({ viewport: { width: 960, height: 640 } });
  const page = await context.newPage();
  const messages = watchConsole(page);
  const sent = sentOnce(page);
  await page.addInitScript((cfg) => { window.__onramp = cfg; }, { plan, user: { id: user, signedUpAt: Date.now() - H } });
  await page.goto(collector.url + "/demo/fixtures/tips.html");
  await page.evaluate(() => window.onramp.ready);
  return { page, context, sent, messages };
}

/** Elements of the tips' shadow root that take up room on screen. */
function visibleGuidance(page) {
  return page.evaluate(() => {
    const root = document.querySelector("onramp-tips")?.shadowRoot;
    if (!root) return 0;
    return [...root.querySelectorAll("*")].filter((e) => e.tagName !== "STYLE" && e.getBoundingClientRect().width > 0).length;
  });
}

async function assignments(t) {
  await t.page.evaluate(() => window.onramp.flush());
  return t.sent().filter((e) => e.type === "experiment").map((e) => [e.name, e.props.experiment, e.props.arm]);
}

test("a user in the global holdout never sees guidance; a user outside it does; each reports their arm once", async () => {
  const users = Array.from({ length: 40 }, (_, i) => `user${i}@example.com`);
  const held = users.find((u) => draw("e2e-salt", "global", u) < 0.5);
  // Outside the global holdout and outside the survey's control group: asked the survey.
  const guided = users.find((u) => draw("e2e-salt", "global", u) >= 0.5 && draw("e2e-salt", "survey:first-go", u) >= 0.3);

  const g = await open(guided);
  await g.page.locator("onramp-tips .m").waitFor();
  assert.ok((await visibleGuidance(g.page)) > 0);
  assert.deepEqual(await eventually(async () => { const a = await assignments(g); return a.length >= 2 ? a : null; }),
    [["experiment_assigned", "global", "treatment"], ["experiment_assigned", "survey:first-go", "treatment"]]);
  // The survey is due for this user: with the modal out of the way, "go" brings its card.
  await g.page.keyboard.press("Escape");
  await g.page.locator("onramp-tips .m").waitFor({ state: "detached" });
  await g.page.evaluate(() => onramp.track("go"));
  await g.page.locator("onramp-tips .v").waitFor();
  await g.context.close();

  const h = await open(held);
  // Everything the guided user saw was up by now; the held-out user gets the same page, the
  // same triggers and the time for them, and still nothing.
  await h.page.evaluate(() => { onramp.track("go"); onramp.track("made"); });
  await h.page.waitForTimeout(1500);
  assert.equal(await visibleGuidance(h.page), 0, "no modal, checklist, tooltip, prompt or survey");
  assert.equal(await h.page.locator("onramp-tips .v").count(), 0, "no survey card, though \"go\" made it due");
  assert.deepEqual(await eventually(async () => { const a = await assignments(h); return a.length ? a : null; }),
    [["experiment_assigned", "global", "control"]]);
  assert.deepEqual(h.sent().filter((e) => e.type === "tip" || e.type === "prompt" || e.type === "survey"), [], "no tip, prompt or survey events");
  assert.ok(h.sent().some((e) => e.type === "milestone" && e.name === "made"), "the milestone itself is reported");
  // A reload: still nothing, and the arm is not reported again.
  await h.page.reload();
  await h.page.evaluate(() => window.onramp.ready);
  await h.page.waitForTimeout(1000);
  assert.equal(await visibleGuidance(h.page), 0);
  assert.equal((await assignments(h)).length, 1, "reported once per user");
  assert.deepEqual(h.messages.filter((m) => m.type === "error" || m.type === "pageerror"), []);
  await h.context.close();

  // The collector counts each of them in their arm.
  const x = await eventually(async () => {
    const r = (await getJson(collector.url + "/v1/experiments")).body;
    const global = r.experiments.find((e) => e.experiment === "global");
    return global && global.control.users >= 1 && global.treatment.users >= 1 ? global : null;
  });
  assert.equal(x.completion.status, "notEnoughData");
  // The survey's experiment is listed beside it, with the guided user in its treatment arm.
  const survey = (await getJson(collector.url + "/v1/experiments")).body.experiments.find((e) => e.experiment === "survey:first-go");
  assert.deepEqual([survey?.control.users, survey?.treatment.users], [0, 1]);
});

// ---- prompts ----

/** A plan whose value milestone opens two prompts, beside a welcome modal; `max` tips and
 *  prompts together per session. */
function promptPlan(max) {
  return {
    version: "p1", defaultLocale: "en",
    milestones: [
      { id: "made", title: "Create a project", condition: { event: "made" } },
      { id: "shared", title: "Share it", value: true, condition: { event: "shared" } },
    ],
    caps: { maxTipsPerSession: max, minGapBetweenTips: "0s" },
    tips: [{ id: "hello", kind: "modal", title: "Welcome", body: "Three steps and your team is planning here." }],
    prompts: [
      { id: "invite", kind: "invite", milestone: "shared", priority: 10, title: "You shared your first project",
        body: "Bring your team in: invite the people you plan with.", cta: { label: "Invite teammates", action: "open_invite" },
        goal: { event: "teammate_invited", within: "7d" } },
      { id: "upgrade", kind: "upgrade", milestone: "shared", body: "Unlock unlimited projects.", cta: { label: "See plans", url: "/billing" } },
    ],
  };
}

async function events(t, type) {
  await t.page.evaluate(() => window.onramp.flush());
  return t.sent().filter((e) => e.type === type).map((e) => [e.name, e.props.promptId, e.props.action]);
}

test("a prompt at the value milestone: the host callback fires with its context, Not now snoozes it", async () => {
  const t = await open("prompted@example.com", promptPlan(3));
  await t.page.evaluate(() => {
    window.__actions = [];
    window.onramp.on("action", (name, context) => {
      // The callback may call onramp: it runs after the SDK's own work.
      window.onramp.track("teammate_invited");
      window.__actions.push([name, context]);
    });
  });
  const modal = t.page.locator("onramp-tips .m");
  await modal.waitFor();
  await t.page.keyboard.press("Escape");
  await modal.waitFor({ state: "detached" });
  assert.equal(await t.page.locator("onramp-tips .q").count(), 0, "no prompt before the milestone");
  await t.page.evaluate(() => onramp.track("shared"));
  const card = t.page.locator("onramp-tips .q");
  await card.waitFor();
  assert.equal(await card.getAttribute("role"), "dialog");
  assert.equal(await card.locator("h2").textContent(), "You shared your first project");
  await t.page.waitForTimeout(400); // past the entrance animation
  await t.page.screenshot({ path: join(ARTIFACTS, "prompt-invite.png") });
  await assertAxeClean(t.page, "prompt", [["onramp-tips"]]);
  await card.locator("[data-a=c]").click();
  const actions = await eventually(() => t.page.evaluate(() => window.__actions.length ? window.__actions : null));
  assert.deepEqual(actions, [["open_invite", { promptId: "invite", milestone: "shared", userId: "prompted@example.com" }]]);
  // The next prompt takes its turn (this plan has no gap between nudges): "Not now" puts it away.
  const next = t.page.locator("onramp-tips .q:has(a[href='/billing'])");
  await next.waitFor();
  assert.equal(await t.page.locator("onramp-tips .q").count(), 1, "one prompt at a time: the invite is gone");
  await next.locator("[data-a=l]").click();
  await next.waitFor({ state: "detached" });
  assert.deepEqual(await eventually(async () => { const e = await events(t, "prompt"); return e.length >= 4 ? e : null; }), [
    ["prompt_shown", "invite", undefined],
    ["prompt_action", "invite", "host"],
    ["prompt_shown", "upgrade", undefined],
    ["prompt_dismissed", "upgrade", undefined],
  ]);
  // A reload: the done prompt and the snoozed one stay away.
  await t.page.reload();
  await t.page.evaluate(() => window.onramp.ready);
  await t.page.waitForTimeout(800);
  assert.equal(await t.page.locator("onramp-tips .q").count(), 0);
  assert.deepEqual(t.messages.filter((m) => m.type === "error" || m.type === "pageerror"), []);
  // Everything the page queued (the host's teammate_invited included) acknowledged before the
  // page goes: a closed context sends nothing more.
  await t.page.evaluate(() => window.onramp.flush());
  await t.context.close();

  // The collector: shown → acted → the goal (teammate_invited, sent by the host's callback),
  // the goal as the project's published plan states it (then the demo plan is put back, even
  // when an assertion fails, so the tests after this one read the demo plan).
  const publish = (body) => fetch(collector.url + "/v1/plan", { method: "PUT", headers: { Authorization: "Bearer et_demo" }, body });
  assert.equal((await publish(JSON.stringify(promptPlan(3)))).status, 200);
  try {
    let last = null;
    const report = await eventually(async () => {
      last = (await getJson(collector.url + "/v1/prompts")).body;
      const invite = last.prompts.find((p) => p.promptId === "invite");
      return invite && invite.converted === 1 ? last : null;
    }, { timeout: 30000 });
    assert.ok(report, "the invite converts; /v1/prompts: " + JSON.stringify(last));
    const invite = report.prompts.find((p) => p.promptId === "invite");
    assert.deepEqual([invite.shown, invite.acted, invite.converted], [1, 1, 1]);
    assert.deepEqual(invite.byNpsGroup.map((g) => g.group), ["none"]);
    const upgrade = report.prompts.find((p) => p.promptId === "upgrade");
    assert.deepEqual([upgrade.shown, upgrade.acted, upgrade.dismissed, upgrade.converted], [1, 0, 1, null], "no goal: no conversion");
  } finally {
    assert.equal((await publish(readFileSync(join(ROOT, "pkg-config", "plans", "trackly.json"), "utf8"))).status, 200);
  }
});

test("prompts spend the same budget as tips: with one nudge per session, the welcome modal leaves no room", async () => {
  const t = await open("budget@example.com", promptPlan(1));
  const modal = t.page.locator("onramp-tips .m");
  await modal.waitFor();
  await t.page.keyboard.press("Escape");
  await modal.waitFor({ state: "detached" });
  await t.page.evaluate(() => onramp.track("shared"));
  await t.page.waitForTimeout(1500);
  assert.equal(await t.page.locator("onramp-tips .q").count(), 0, "the session's one nudge was the modal");
  assert.ok((await events(t, "milestone")).some((e) => e[0] === "shared"));
  assert.deepEqual(await events(t, "prompt"), []);
  await t.context.close();
});

/** Users in a tip's experiment: treatment completes more often and sooner. */
function seeded(now, count) {
  let seed = 7;
  const r = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; };
  const events = [];
  for (let i = 0; i < count; i++) {
    const user = `exp${i}@example.com`, signup = now - 3 * D - Math.floor(r() * 5 * D), control = r() < 0.5;
    const push = (type, name, ts, props) => events.push({ id: `${user}-${events.length}`, type, name, anonymousId: `a-${user}`, userId: user, ts, props });
    push("identify", "identify", signup, { signedUpAt: signup });
    push("experiment", "experiment_assigned", signup + 1000, { experiment: "tip:welcome", arm: control ? "control" : "treatment" });
    if (r() < (control ? 0.3 : 0.6)) push("milestone", "file_uploaded", signup + Math.floor((control ? 20 : 5) * H * (0.5 + r())), {});
  }
  return events;
}

test("the experiments panel shows the collector's figures and draws any value the API can return", async () => {
  const now = Date.now();
  const events = seeded(now, 300);
  for (let i = 0; i < events.length; i += 500) {
    const r = await fetch(collector.url + "/v1/batch", {
      method: "POST", headers: { "content-type": "text/plain", origin: collector.url },
      body: JSON.stringify({ writeKey: "wk_demo", sentAt: Date.now(), events: events.slice(i, i + 500) }),
    });
    assert.equal(r.status, 200);
  }
  const api = (await getJson(collector.url + "/v1/experiments")).body;
  const tip = api.experiments.find((e) => e.experiment === "tip:welcome");
  assert.equal(tip.completion.status, "ready");

  const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  const messages = watchConsole(page);
  await page.goto(collector.url + "/dashboard/#token=rt_demo");
  await page.waitForSelector("body[data-loaded=true]");
  await page.waitForFunction(() => document.querySelectorAll("#experiments tbody tr").length >= 3);
  const rows = await page.$$eval("#experiments tbody tr", (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent)));
  const completion = rows.find((r) => r[0] === "tip:welcome" && r[2] === "Completion");
  const pct = (x) => (x * 100).toFixed(x > 0 && x < 0.1 ? 1 : 0) + "%";
  assert.equal(completion[1], `${tip.control.users} / ${tip.treatment.users}`);
  assert.equal(completion[3], pct(tip.control.completionRate));
  assert.equal(completion[4], pct(tip.treatment.completionRate));
  const pts = (x) => (x > 0 ? "+" : "") + (x * 100).toFixed(1) + " pts";
  const a = tip.completion.absolute;
  assert.equal(completion[5], `${pts(a.estimate)} (${pts(a.low)} to ${pts(a.high)})`);
  assert.equal(completion[7], tip.completion.significant ? "guidance helps" : "no clear difference");
  await page.locator("#experiments").scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(ARTIFACTS, "dashboard-experiments.png"), fullPage: true });

  // Every state and every odd value the route can return.
  const odd = {
    experiments: [
      { ...tip, experiment: "global", completion: { status: "notEnoughData" }, activation: { status: "noData" }, ttv: { status: "notEnoughData" }, plannedSampleSize: null },
      { ...tip, experiment: "tip:<b>x</b>", control: { ...tip.control, completionRate: 1e300, medianTtvMs: -1e18 },
        completion: { status: "ready", absolute: { estimate: -1e300, low: -1, high: 1e300 }, relative: null, significant: true },
        ttv: { status: "ready", differenceMs: { estimate: 1e18, low: -1e18, high: 9e15 }, significant: false },
        plannedSampleSize: { baseline: 0, mde: 0.05, control: 1e15, treatment: 0, reached: false } },
    ],
  };
  await page.route(/\/v1\/experiments/, (route) => route.fulfill({ contentType: "application/json", body: JSON.stringify(odd) }));
  await page.evaluate(() => document.querySelector("#controls button").click());
  await page.waitForFunction(() => [...document.querySelectorAll("#experiments tbody td")].some((td) => td.textContent === "tip:<b>x</b>"));
  assert.ok((await page.$$eval("#experiments tbody td", (tds) => tds.map((td) => td.textContent))).includes("not enough data yet"));
  const cells = await page.$$eval("#experiments tbody td", (tds) => tds.map((td) => td.textContent));
  assert.ok(cells.includes("tip:<b>x</b>"), "ids are text, never markup");
  assert.deepEqual(messages.filter((m) => m.type === "error" || m.type === "pageerror"), [], "no errors in the page");
});
