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
  // The plan's welcome modal (a second after load) holds the page's clicks until closed; on a
  // loaded machine it came before the next click (as in engine.test.mjs). Close it as Ada would.
  await ada.locator("onramp-tips .m").waitFor({ timeout: 10000 });
  await ada.locator("onramp-tips .m [data-a=x]").click();
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

test("the surveys panel's period, milestone and split controls ask the collector and draw its answer", async () => {
  // Five users of one sign-up week answer an NPS survey at different times; expected scores are
  // worked out here from the documented definition (promoters % − detractors %, latest answer).
  // (The collector refuses events more than 30 days old, so the periods compared are 7 days and all.)
  const now = Date.now(), signup = now - 25 * D;
  const answers = [
    ["sv1", "pro", 10, 2 * D], ["sv2", "pro", 9, 3 * D], ["sv3", "trial", 3, 5 * D],
    ["sv4", "trial", 8, 10 * D], ["sv5", "pro", 0, 20 * D],
  ];
  const group = (s) => (s >= 9 ? "promoter" : s >= 7 ? "passive" : "detractor");
  const events = [];
  for (const [user, plan, score, ago] of answers) {
    const ev = (type, name, ts, props) => events.push({ id: `${user}-${events.length}`, type, name, anonymousId: "anon-" + user, userId: user + "@example.com", ts, props });
    ev("identify", "identify", signup, { signedUpAt: signup, plan });
    ev("survey", "survey_answered", now - ago, { surveyId: "nps-dash", surveyKind: "nps", score, group: group(score) });
  }
  // Only sv1 reached signed_up (before answering): the milestone split's "yes" side.
  events.push({ id: "sv1-m", type: "milestone", name: "signed_up", anonymousId: "anon-sv1", userId: "sv1@example.com", ts: signup + 1000, props: { sinceSignupMs: 1000 } });
  const r = await fetch(collector.url + "/v1/batch", { method: "POST", headers: { "content-type": "text/plain" }, body: JSON.stringify({ writeKey: "wk_demo", sentAt: now, events }) });
  assert.equal(r.status, 200, await r.text());
  const nps = (scores) => {
    const p = scores.filter((s) => s >= 9).length, d = scores.filter((s) => s <= 6).length;
    return String(Math.round((p - d) / scores.length * 100));
  };
  const scoresOf = (keep) => answers.filter(keep).map((a) => a[2]);
  const in7 = (a) => a[3] < 7 * D;

  const page = await (await browser.newContext({ viewport: { width: 1360, height: 900 } })).newPage();
  const messages = watchConsole(page);
  await page.goto(collector.url + "/dashboard/#token=rt_demo&" + VIEW);
  await page.waitForSelector("body[data-loaded=true]");
  const surveyRow = async () => (await page.$$eval("#surveys tbody tr", (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)))).find((row) => row[0] === "nps-dash");
  const splitRows = () => page.$$eval("#survey-splits tbody tr", (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)).filter((row) => row[0] === "nps-dash"));
  const api = async (q) => (await getJson(collector.url + "/v1/surveys?" + q)).body.surveys.find((s) => s.surveyId === "nps-dash");
  const settled = async (want) => { await eventually(async () => { const row = await surveyRow(); return row && want(row); }); return surveyRow(); };

  // The default: the last 30 days, everyone here.
  let row = await settled((row) => row[3] === "5");
  assert.equal(row[2], nps(scoresOf(() => true)));
  assert.equal(row[2], (await api("")).all.score.toFixed(0));

  // The last 7 days: three answers.
  await page.selectOption("#period", "7d");
  row = await settled((row) => row[3] === "3");
  assert.equal(row[2], nps(scoresOf(in7)));
  assert.equal(row[2], (await api("period=7d")).all.score.toFixed(0));
  assert.match(await page.textContent("#survey-period"), /^the last 7 d$/);

  // All time: every user's latest answer.
  await page.selectOption("#period", "all");
  row = await settled((row) => row[3] === "5");
  assert.equal(row[2], nps(scoresOf(() => true)));
  const all = await api("period=all");
  assert.equal(row[3], String(all.all.respondents));
  await page.waitForFunction(() => location.hash.includes("period=all"));
  assert.match(await page.textContent("#survey-period"), /^all time$/);

  // The split by a trait: one row per plan among respondents, as computed here and as the API says.
  const choices = await page.$$eval("#split option", (os) => os.map((o) => o.value));
  assert.ok(choices.includes("plan") && choices.includes(""), "the report's traits are offered: " + choices);
  await page.selectOption("#split", "plan");
  await eventually(async () => (await splitRows()).some((r) => r[1].startsWith("plan = ")));
  const byPlan = (await splitRows()).filter((r) => r[1].startsWith("plan = "));
  assert.deepEqual(byPlan.map((r) => [r[1], r[2], r[3]]), [
    ["plan = pro", nps(scoresOf((a) => a[1] === "pro")), "3"],
    ["plan = trial", nps(scoresOf((a) => a[1] === "trial")), "2"],
  ]);
  const split = await api("period=all&split=plan");
  assert.deepEqual(byPlan.map((r) => r[2]), split.byTrait.map((t) => t.summary.score.toFixed(0)));
  const cohortRows = (await splitRows()).filter((r) => r[1].startsWith("signed up week of"));
  assert.equal(cohortRows.length, split.cohorts.length, "the sign-up week split stays");
  assert.equal(cohortRows[0][3], "5");
  await page.waitForFunction(() => location.hash.includes("split=plan"));

  // The split milestone, typed and applied with Enter: reached by sv1 only.
  await page.getByLabel("Split by milestone").fill("signed_up");
  await page.getByLabel("Split by milestone").press("Enter");
  row = await settled((row) => row[5] === `${nps([10])} / ${nps([9, 3, 8, 0])}`);
  assert.equal(row[5], `${nps([10])} / ${nps([9, 3, 8, 0])}`);
  const byMilestone = await api("period=all&milestone=signed_up");
  assert.equal(row[5], `${byMilestone.milestoneReached.score.toFixed(0)} / ${byMilestone.milestoneNotReached.score.toFixed(0)}`);
  assert.equal(await page.textContent("#survey-milestone"), "signed_up");
  await page.locator("figure", { has: page.locator("#surveys") }).screenshot({ path: join(ARTIFACTS, "dashboard-surveys-controls.png") });

  // The fragment restores all three; the CSV link carries them (the stalled one does not).
  const again = await (await browser.newContext()).newPage();
  await again.goto(page.url());
  await again.waitForSelector("body[data-loaded=true]");
  assert.equal(await again.inputValue("#period"), "all");
  assert.equal(await again.inputValue("#split"), "plan");
  assert.equal(await again.inputValue("#milestone"), "signed_up");
  const csvHref = await page.getAttribute("#survey-csv", "href");
  assert.match(csvHref, /period=all/);
  assert.match(csvHref, /split=plan/);
  const stalled = await fetch(collector.url + (await page.getAttribute("#csv", "href")));
  assert.equal(stalled.status, 200, "the stalled CSV takes none of the survey parameters");
  const bad = messages.filter((m) => m.type === "error" || m.type === "pageerror");
  assert.deepEqual(bad, [], "no errors in the page");
});
