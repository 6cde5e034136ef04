// The PM dashboard in real headless Chromium, against a real collector: two users click through
// the demo (the shipped SDK), a few hundred more arrive as seeded batches with tips and metrics,
// and every number the page shows must be the collector's answer. Screenshots are kept in
// tests/e2e/artifacts/ to be looked at.
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { useCollectorAndBrowser, watchConsole, eventually, getJson, ARTIFACTS } from "./harness.mjs";

// The demo project runs on pkg-config/plans/trackly.json: the dashboard takes its milestones,
// value milestone (file_uploaded) and due windows from the plan, so the page is opened with
// nothing but the token and a conversion window.
const STEPS = "signed_up,project_created,teammate_invited,file_uploaded";
const VIEW = "window=7d";
const H = 3600000, D = 24 * H;
let collector, browser;
useCollectorAndBrowser((c, b) => { collector = c; browser = b; });

// mulberry32: a seeded generator, so the seeded users are the same on every run.
function rng(seed) {
  return () => {
    seed |= 0; seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Users who signed up over the last two weeks, behaving as the demo's users would. */
function seededEvents(now, count) {
  const r = rng(42), events = [];
  const plans = ["trial", "pro", "team"], roles = ["admin", "member"];
  for (let i = 0; i < count; i++) {
    const user = `seed${String(i).padStart(3, "0")}@example.com`, anon = `anon-seed-${i}`;
    const signup = now - Math.floor(r() * 14 * D) - H;
    const plan = plans[Math.floor(r() * 3)], role = roles[Math.floor(r() * 2)];
    let n = 0, t = signup;
    const push = (type, name, ts, props = {}) => {
      if (ts < now) events.push({ id: `${user}-${n++}`, type, name, anonymousId: anon, userId: user, ts, props });
    };
    push("identify", "identify", t, { signedUpAt: signup, plan, role });
    // The action and the milestone the SDK reports for it (reports count only the milestone).
    push("track", "signed_up", t + 1000);
    push("milestone", "signed_up", t + 1000, { sinceSignupMs: t + 1000 - signup });
    const sawTip = r() < 0.6;
    if (sawTip) {
      const tip = { tipId: "create_project", milestone: "project_created", sinceSignupMs: 5000 };
      push("tip", "tip_shown", t + 5000, tip);
      if (r() < 0.25) push("tip", "tip_dismissed", t + 9000, tip);
    }
    push("metric", "first_session_length", t + 20 * 60000, { valueMs: Math.floor(2 * 60000 + r() * 40 * 60000) });
    if (r() < 0.7) push("metric", "return_interval", t + D, { valueMs: Math.floor(r() * r() * 6 * D) });
    const steps = [["project_created", sawTip ? 0.85 : 0.65, 3 * H], ["teammate_invited", 0.6, 20 * H], ["file_uploaded", 0.7, 30 * H]];
    for (const [name, p, scale] of steps) {
      if (r() > p) break;
      t += Math.floor(-Math.log(1 - r()) * scale) + 1000;
      push("track", name, t);
      push("milestone", name, t, { sinceSignupMs: t - signup });
      if (name === "file_uploaded") push("milestone", "time_to_value", t + 1, { milestone: name, sinceSignupMs: t - signup });
    }
  }
  return events;
}

async function signUp(page, name, email) {
  await page.goto(collector.url + "/demo/");
  await page.fill("#signup-name", name);
  await page.fill("#signup-email", email);
  await page.click("#signup-submit");
}

test("the dashboard shows the demo's users and the collector's numbers", async () => {
  // Two real visitors through the demo page and the shipped SDK.
  const ada = await (await browser.newContext()).newPage();
  await signUp(ada, "Ada", "ada@example.com");
  await ada.click("#new-project");
  await ada.fill("#project-name", "Launch plan");
  await ada.click("#project-create");
  await ada.evaluate(() => window.onramp.flush());
  const bo = await (await browser.newContext()).newPage();
  await signUp(bo, "Bo", "bo@example.com");
  await bo.evaluate(() => window.onramp.flush());
  const demoUsers = await eventually(async () => {
    const { body } = await getJson(collector.url + "/v1/funnel?users=true&steps=" + STEPS);
    const [signedUp, created] = [body.steps[0].userIds, body.steps[1].userIds];
    return signedUp.includes("ada@example.com") && signedUp.includes("bo@example.com") && created.includes("ada@example.com") ? body : null;
  });
  assert.ok(demoUsers, "the demo's users reached the collector");

  // A few hundred more, so every chart has something to show.
  const events = seededEvents(Date.now(), 400);
  for (let i = 0; i < events.length; i += 500) {
    const r = await fetch(collector.url + "/v1/batch", {
      method: "POST",
      headers: { "content-type": "text/plain" },
      body: JSON.stringify({ writeKey: "wk_demo", sentAt: Date.now(), events: events.slice(i, i + 500) }),
    });
    assert.equal(r.status, 200, await r.text());
  }

  const page = await (await browser.newContext({ viewport: { width: 1360, height: 900 } })).newPage();
  const messages = watchConsole(page);
  // The demo pages may still be sending (milestone and tip events), so compare the page with the
  // very answer it drew, not with a later request.
  const drawn = page.waitForResponse((r) => r.url().includes("/v1/report"));
  await page.goto(collector.url + "/dashboard/#token=rt_demo&" + VIEW);
  await page.waitForSelector("body[data-loaded=true]");
  await page.screenshot({ path: join(ARTIFACTS, "dashboard-overview.png"), fullPage: true });

  // The page's numbers are the API's numbers.
  const api = await (await drawn).json();
  assert.deepEqual(api.steps, STEPS.split(","), "the plan's required milestones");
  assert.equal(api.valueMilestone, "file_uploaded", "the plan's value milestone");
  const funnelRows = await page.$$eval("#funnel-table tbody tr", (rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)));
  assert.deepEqual(funnelRows.map((r) => r[0]), STEPS.split(","));
  assert.deepEqual(funnelRows.map((r) => Number(r[1].replace(/,/g, ""))), api.funnel.steps.map((s) => s.users));
  assert.ok(api.funnel.steps[0].users >= 402, "demo and seeded users are in the funnel");
  assert.equal(await page.textContent("#kpi-users"), api.ttv.users.toLocaleString("en-US"));
  assert.equal(typeof api.visitors, "number", "visitors who never identified, counted apart");
  assert.equal(await page.textContent("#kpi-visitors"), api.visitors.toLocaleString("en-US"));
  const cohortRows = await page.$$eval("#cohorts tbody tr", (rows) => rows.length);
  assert.equal(cohortRows, api.cohorts.cohorts.length);
  assert.equal(await page.$$eval("#funnel rect", (r) => r.length), 2 * 4, "one bar and its track per step");
  assert.equal(await page.$$eval("#ttv rect", (r) => r.length), api.ttv.histogram.counts.length);
  const tipRow = await page.$$eval("#tips tbody tr td", (cells) => cells.map((c) => c.textContent));
  assert.ok(tipRow.includes("create_project"), "the seeded tip is listed");
  assert.equal(await page.textContent("#csv"), `Download CSV (${api.stalled.total.toLocaleString("en-US")})`);

  // The CSV link downloads the same stalled list.
  const csv = await (await fetch(collector.url + (await page.getAttribute("#csv", "href")))).text();
  assert.equal(csv.trim().split("\n").length, api.stalled.total + 1, "header plus one line per stall");

  // A trait filter: only teams.
  await page.selectOption("select[data-trait=plan]", "team");
  await page.waitForFunction(() => location.hash.includes("trait.plan=team"));
  const team = (await getJson(collector.url + "/v1/report?" + VIEW + "&trait.plan=team")).body;
  await eventually(async () => (await page.textContent("#kpi-users")) === team.ttv.users.toLocaleString("en-US"));
  assert.equal(await page.textContent("#kpi-users"), team.ttv.users.toLocaleString("en-US"));
  assert.ok(team.ttv.users < api.ttv.users);
  await page.screenshot({ path: join(ARTIFACTS, "dashboard-filtered-team.png"), fullPage: true });

  const bad = messages.filter((m) => m.type === "error" || m.type === "pageerror");
  assert.deepEqual(bad, [], "no errors in the page");
});

test("the dashboard draws any value the API can return", async () => {
  // A real report, then every time in it pushed past what a JS Date holds (a sign-up time of
  // -1e18 sent with the public write key once blanked the page for everyone) and every duration
  // and count made huge: the page must still draw, showing "–" where a date cannot be shown.
  const real = (await getJson(collector.url + "/v1/report?" + VIEW)).body;
  const extreme = JSON.parse(JSON.stringify(real));
  extreme.now = 1e18;
  extreme.stalled.total = 1e15;
  extreme.stalled.stalled = [{ user: "mallory", milestone: "project_created", signedUpAt: -1e18, dueAt: 9e15, lastSeen: -8.7e15 }];
  extreme.funnel.steps[1].medianMsFromPrevious = 1e300;
  extreme.visitors = "many";
  extreme.ttv.value.ms = { count: 1, p50: -1e18, p75: 1e300, p90: null };
  extreme.cohorts.cohorts.push({ start: -1e18, label: "", users: 0, reached: extreme.cohorts.steps.map(() => 0),
    value: { name: "x", kind: "milestone", reached: 0, ms: { count: 0, p50: null, p75: null, p90: null } },
    firstDay: { eligible: 0, activated: 0, rate: 0 } });
  const page = await (await browser.newContext()).newPage();
  const messages = watchConsole(page);
  await page.route(/\/v1\/report\?/, (route) => route.fulfill({ contentType: "application/json", body: JSON.stringify(extreme) }));
  await page.goto(collector.url + "/dashboard/#token=rt_demo&" + VIEW);
  await page.waitForSelector("body[data-loaded=true]");
  const row = await page.$$eval("#stalled tbody tr td", (cells) => cells.map((c) => c.textContent));
  assert.deepEqual(row.slice(0, 5), ["mallory", "project_created", "–", "–", "–"]);
  assert.equal(await page.$$eval("#cohorts tbody tr", (rows) => rows.length), extreme.cohorts.cohorts.length);
  assert.equal(await page.textContent("#kpi-visitors"), "–");
  const bad = messages.filter((m) => m.type === "error" || m.type === "pageerror");
  assert.deepEqual(bad, [], "no errors in the page");
});

test("the surveys panel shows the collector's survey figures, answers as plain text, any value safely", async () => {
  const real = (await getJson(collector.url + "/v1/report?" + VIEW)).body;
  assert.ok(real.surveys && Array.isArray(real.surveys.surveys), "the report has a surveys part");
  const report = JSON.parse(JSON.stringify(real));
  const summary = (score) => ({ shown: 4, answered: 3, dismissed: 0, snoozed: 0, responseRate: 0.75, respondents: 3, scored: 3, groups: [1, 1, 1], score, distribution: [] });
  report.surveys = {
    users: 3, periodFrom: report.now - 30 * 86400000, milestone: "file_uploaded", milestoneKind: "milestone", split: "plan",
    surveys: [
      { surveyId: "nps-q1", kind: "nps", all: summary(-12.5), milestoneReached: summary(50), milestoneNotReached: summary(-100),
        cohorts: [{ week: "2026-11-23", summary: summary(20) }], byTrait: [{ value: "<b>pro</b>", summary: summary(-40) }, { value: null, summary: {} }],
        answers: [{ user: "ann", at: report.now - 1000, score: 3, group: "detractor", text: "<img src=x onerror=alert(1)> too slow", milestoneReached: false }], answersTotal: 1 },
      { surveyId: "weird", kind: "ces", all: summary(1e300), milestoneReached: summary(null), milestoneNotReached: {}, cohorts: [], byTrait: [],
        answers: [{ user: "bob", at: -1e18, score: null, group: null, text: null, milestoneReached: true }], answersTotal: 1 },
    ],
  };
  const page = await (await browser.newContext()).newPage();
  const messages = watchConsole(page);
  await page.route(/\/v1\/report\?/, (route) => route.fulfill({ contentType: "application/json", body: JSON.stringify(report) }));
  await page.goto(collector.url + "/dashboard/#token=rt_demo&" + VIEW);
  await page.waitForSelector("body[data-loaded=true]");
  const rows = await page.$$eval("#surveys tbody tr", (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
  assert.deepEqual(rows[0], ["nps-q1", "nps", "-13", "3", "75%", "50 / -100", "1 / 1 / 1"]);
  assert.equal(rows[1][2], "1e+300", "an extreme mean still draws");
  const splits = await page.$$eval("#survey-splits tbody tr", (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
  assert.deepEqual(splits, [
    ["nps-q1", "signed up week of 2026-11-23", "20", "3", "75%"],
    ["nps-q1", "plan = <b>pro</b>", "-40", "3", "75%"],
    ["nps-q1", "plan = (none)", "–", "–", "–"],
  ]);
  const answer = await page.$$eval("#survey-answers tbody tr", (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
  assert.equal(answer[0][5], "<img src=x onerror=alert(1)> too slow", "the text is shown as text");
  assert.equal(await page.$$eval("#survey-answers img", (imgs) => imgs.length), 0, "never markup");
  assert.equal(answer[1][0], "–", "an impossible time shows –");
  await page.screenshot({ path: join(ARTIFACTS, "dashboard-surveys.png"), fullPage: true });
  const bad = messages.filter((m) => m.type === "error" || m.type === "pageerror");
  assert.deepEqual(bad, [], "no errors in the page");
});
