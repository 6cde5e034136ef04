// The customer-health panel in real headless Chromium against a real collector: a user of the
// shipped SDK names their account with group(), seeded users drift into risk, health is computed
// on demand, and the panel shows the collector's distribution, the stage-change matrix and the
// at-risk list with its reasons in words. Then every panel request is answered with hostile
// values: the page must keep working.
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { useCollectorAndBrowser, watchConsole, getJson, eventually, ARTIFACTS } from "./harness.mjs";

const H = 3600000, D = 24 * H;
let collector, browser;
useCollectorAndBrowser((c, b) => { collector = c; browser = b; });

const PAGE = `<!doctype html><title>health</title><script type="module">
import * as onramp from "/sdk/v1/index.mjs";
onramp.init({ writeKey: "wk_demo", plan: false });
window.onramp = onramp;
window.onrampReady = onramp.load();
</script>`;

/** Users of the demo plan (pkg-config/plans/trackly.json): some active, some gone quiet. */
function seeded(now) {
  const events = [];
  let n = 0;
  const push = (user, type, name, ts, props = {}) => events.push({ id: `h-${n++}`, type, name, anonymousId: "anon-" + user, userId: user, ts, props });
  // Quiet since 9 days ago, 12 days after sign-up, no project: at risk, and says why.
  push("quiet@example.com", "identify", "identify", now - 12 * D, { signedUpAt: now - 12 * D });
  push("quiet@example.com", "identify", "group", now - 12 * D + 1000, { accountId: "initech", account: { name: "Initech" } });
  push("quiet@example.com", "track", "signed_up", now - 9 * D - H);
  push("quiet@example.com", "milestone", "signed_up", now - 9 * D - H, { sinceSignupMs: 3 * D - H });
  // Busy every day for a week, every milestone in time.
  for (const user of ["busy1@example.com", "busy2@example.com"]) {
    push(user, "identify", "identify", now - 6 * D, { signedUpAt: now - 6 * D });
    push(user, "identify", "group", now - 6 * D + 1000, { accountId: "globex", account: { name: "Globex" } });
    for (const [name, at] of [["signed_up", 60000], ["project_created", H], ["teammate_invited", 2 * H], ["file_uploaded", 3 * H]]) {
      push(user, "track", name, now - 6 * D + at);
      push(user, "milestone", name, now - 6 * D + at, { sinceSignupMs: at });
    }
    for (let d = 5; d >= 0; d--) push(user, "track", "files_viewed", now - d * D - H);
    push(user, "survey", "survey_answered", now - 2 * H, { surveyId: "nps", surveyKind: "nps", score: 10, group: "promoter" });
  }
  return events;
}

async function post(path, body) {
  const r = await fetch(collector.url + path, {
    method: "POST",
    headers: body ? { "content-type": "text/plain" } : { Authorization: "Bearer rt_demo" },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  assert.equal(r.status, 200, text);
  return JSON.parse(text);
}

test("the health panel shows the collector's bands, stage changes and at-risk reasons; group() names the account", async () => {
  // A real visitor of the shipped SDK joins their account with group().
  const visitor = await (await browser.newContext()).newPage();
  await visitor.route(collector.url + "/health.html", (route) => route.fulfill({ contentType: "text/html", body: PAGE }));
  await visitor.goto(collector.url + "/health.html");
  assert.equal(await visitor.evaluate(() => window.onrampReady), true, "SDK loaded");
  await visitor.evaluate(async () => {
    window.onramp.identify("grace@example.com", { signedUpAt: Date.now() - 3600000 });
    window.onramp.group("acme", { name: "Acme", plan: "pro" });
    window.onramp.track("project_created");
    await window.onramp.flush();
  });

  const now = Date.now();
  await post("/v1/batch", { writeKey: "wk_demo", sentAt: now, events: seeded(now) });
  const run = await post("/v1/health/compute");
  assert.ok(run.users >= 4 && run.accounts >= 3, JSON.stringify(run));

  const accounts = (await getJson(collector.url + "/v1/health?kind=account")).body;
  const acme = accounts.items.find((i) => i.id === "acme");
  assert.ok(acme, "group() made grace's account: " + JSON.stringify(accounts.items.map((i) => i.id)));
  assert.deepEqual(acme.members, ["grace@example.com"]);
  assert.deepEqual(acme.traits, { name: "Acme", plan: "pro" }, "the account's traits as group() gave them");
  const quiet = (await getJson(collector.url + "/v1/health/user/quiet@example.com")).body.current;
  assert.equal(quiet.stage, "at_risk");
  assert.ok(quiet.reasons.includes("no return in 9 days"), JSON.stringify(quiet.reasons));
  assert.ok(quiet.reasons.includes("'Create a project' 11 days overdue"), JSON.stringify(quiet.reasons));

  const page = await (await browser.newContext({ viewport: { width: 1360, height: 900 } })).newPage();
  const messages = watchConsole(page);
  await page.goto(collector.url + "/dashboard/#token=rt_demo");
  await page.waitForSelector("#health[data-loaded=true]");
  await page.locator("#health").screenshot({ path: join(ARTIFACTS, "health-panel.png") });

  // The distribution is the API's.
  const users = (await getJson(collector.url + "/v1/health?kind=user")).body;
  const chips = await page.$$eval("#health-counts .chip", (c) => c.map((x) => x.textContent));
  for (const band of ["red", "yellow", "green"]) assert.ok(chips.includes(`${band} ${users.bands[band]}`), `${band}: ${chips}`);
  assert.ok(chips.includes(`at risk ${users.stages.at_risk}`), chips.join(", "));
  assert.ok(await page.$$eval("#health-bands rect", (r) => r.length) >= 1, "today's bar");

  // The at-risk list: red or at risk or dormant, each once, with the reasons in words.
  const red = (await getJson(collector.url + "/v1/health?kind=user&band=red")).body.items;
  const risk = (await getJson(collector.url + "/v1/health?kind=user&stage=at_risk,dormant")).body.items;
  const want = [...new Set([...red, ...risk].map((i) => i.id))].sort();
  const rows = await page.$$eval("#health-risk tbody tr", (rs) => rs.map((r) => [...r.cells].map((c) => c.textContent)));
  assert.deepEqual(rows.map((r) => r[0]).sort(), want);
  const quietRow = rows.find((r) => r[0] === "quiet@example.com");
  assert.equal(quietRow[1], String(quiet.score));
  assert.equal(quietRow[3], "at risk", "the stage");
  assert.equal(quietRow[4], "initech", "the account group() named");
  assert.equal(quietRow[6], quiet.reasons.join("; "));
  assert.match(quietRow[6], /no return in 9 days/);

  // The matrix has a row per stage; the CSV link downloads the list.
  assert.equal(await page.$$eval("#health-matrix tbody tr", (r) => r.length), 6);
  const csv = await (await fetch(collector.url + (await page.getAttribute("#health-csv", "href")))).text();
  assert.equal(csv.trim().split("\n").length, users.total + 1, "header plus one line per user");

  // The list's filters, each as GET /v1/health answers, kept in the URL fragment.
  const ids = () => page.$$eval("#health-risk tbody tr:not(.muted)", (rs) => rs.map((r) => r.cells[0].textContent).sort());
  const apiIds = async (q) => (await getJson(collector.url + "/v1/health?kind=user&limit=500&" + q)).body.items.map((i) => i.id).sort();
  const shows = async (want) => {
    await eventually(async () => JSON.stringify(await ids()) === JSON.stringify(want));
    assert.deepEqual(await ids(), want);
  };
  // An account: the seeded members of Globex (independent of the API), and the API's list.
  await page.fill("#health-account", "globex");
  await page.selectOption("#health-stage", "any");
  await shows(["busy1@example.com", "busy2@example.com"]);
  assert.deepEqual(await apiIds("account=globex"), ["busy1@example.com", "busy2@example.com"]);
  assert.match(await page.textContent("#health-list-what"), /in account globex/);
  // A band within it, then a stage across accounts.
  const green = await apiIds("band=green&account=globex");
  await page.selectOption("#health-band", "green");
  await shows(green);
  await page.selectOption("#health-band", "");
  await page.fill("#health-account", "");
  await page.press("#health-account", "Enter");
  await shows(await apiIds(""));
  await page.selectOption("#health-stage", "at_risk");
  const atRisk = await apiIds("stage=at_risk");
  assert.ok(atRisk.includes("quiet@example.com"), "quiet is at risk (seeded): " + atRisk);
  await shows(atRisk);
  // Keyboard only: the account field by its label, Enter applies it.
  await page.getByLabel("Account", { exact: true }).fill("initech");
  await page.getByLabel("Account", { exact: true }).press("Enter");
  await shows(["quiet@example.com"]);
  await page.waitForFunction(() => location.hash.includes("health.stage=at_risk") && location.hash.includes("health.account=initech"));
  const filteredCsv = await (await fetch(collector.url + (await page.getAttribute("#health-csv", "href")))).text();
  assert.equal(filteredCsv.trim().split("\n").length, 2, "the CSV is the filtered list: " + filteredCsv);
  await page.locator("#health").screenshot({ path: join(ARTIFACTS, "health-panel-filtered.png") });
  // The fragment restores the view.
  const again = await (await browser.newContext()).newPage();
  await again.goto(page.url());
  await again.waitForSelector("#health[data-loaded=true]");
  assert.equal(await again.inputValue("#health-stage"), "at_risk");
  assert.equal(await again.inputValue("#health-account"), "initech");
  assert.deepEqual(await again.$$eval("#health-risk tbody tr", (rs) => rs.map((r) => r.cells[0].textContent)), ["quiet@example.com"]);
  // Nobody matches: said, not an empty table.
  await page.selectOption("#health-band", "green");
  await eventually(async () => (await page.textContent("#health-risk tbody")) === "Nobody matches");

  // Accounts.
  await page.selectOption("#health-kind", "account");
  await page.waitForFunction(() => document.querySelector("#health-csv").href.includes("kind=account"));
  assert.deepEqual(messages.filter((m) => m.type === "error" || m.type === "pageerror"), []);
});

test("any value the health API returns leaves the page working", async () => {
  const page = await (await browser.newContext()).newPage();
  const messages = watchConsole(page);
  const hostile = [
    { bands: "x", stages: null, bandsOverTime: [null, 3, { day: 1e300, counts: { red: -5, green: "9", yellow: 1e308 } }, { counts: [] }],
      items: [null, 7, { id: { a: 1 }, score: "<img src=x onerror=alert(1)>", band: "purple", reasons: ["<b>bold</b>", 3, null], trend: NaN },
        { id: "ok", score: 1e300, band: "red", reasons: "not a list", trend: -8.5 }], computedAt: 9e99 },
    { stageMatrix: { at_risk: { dormant: "many" }, "<script>": { new: 1 } }, transitions: -1 },
    [], "text", null, 12,
  ];
  let i = 0;
  await page.route(/\/v1\/(health|lifecycle)\?/, (route) => {
    const body = hostile[i++ % hostile.length];
    route.fulfill({ contentType: "application/json", body: JSON.stringify(body) });
  });
  await page.goto(collector.url + "/dashboard/#token=rt_demo");
  await page.waitForFunction(() => document.querySelector("#health-status").textContent !== "" || document.querySelector("#health").dataset.loaded);
  // Several rounds, so each hostile answer reaches each drawing function.
  for (let round = 0; round < 6; round++) {
    await page.evaluate(() => document.querySelector("#health-kind").dispatchEvent(new Event("change")));
    await page.waitForTimeout(150);
  }
  assert.equal(await page.$$eval("#health-risk img, #health-risk b, #health-matrix script", (n) => n.length), 0, "text, never markup");
  assert.deepEqual(messages.filter((m) => m.type === "pageerror"), []);
  assert.ok(await page.isVisible("#funnel"), "the rest of the dashboard is still there");
});
