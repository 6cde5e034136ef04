// Micro-surveys in real headless Chromium, on the shipped bundle served by a real collector
// (docs/SURVEYS.md): each kind rendered and answered with the keyboard alone and checked with
// axe-core; shown once across two tabs and two browser contexts of one user (the collector's
// ledger in GET /v1/state); "ask me later" honoured; a survey dismissed before identify not
// shown again after it; sampling as the documented hash says (computed here independently);
// the fatigue budget shared with tips. Screenshots: tests/e2e/artifacts/surveys-*.png.
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { useCollectorAndBrowser, watchConsole, eventually, assertAxeClean, sentEvents, ARTIFACTS } from "./harness.mjs";

const H = 3600000;
const D = 24 * H;
let collector, browser;
useCollectorAndBrowser((c, b) => { collector = c; browser = b; }, { args: ["--quiet"] });

const MILESTONES = [
  { id: "made", title: "Create a project", condition: { event: "made" } },
  { id: "shared", title: "Share it", value: true, condition: { event: "shared" } },
];

const SURVEYS = {
  csat: { id: "csat", kind: "csat", question: "How was creating your project?", when: { path: "/*" } },
  csat5: { id: "csat5", kind: "csat", scale: "1-5", question: "How satisfied are you?", followUp: "Why?", when: { path: "/*" } },
  nps: {
    id: "nps", kind: "nps", question: "How likely are you to recommend us to a friend?", when: { path: "/*" },
    followUp: { detractor: "What disappointed you?", passive: "What would make it better?", promoter: "What do you love most?" },
  },
  ces: { id: "ces", kind: "ces", question: "How easy was it to share?", when: { path: "/*" } },
  question: { id: "question", kind: "question", question: "What almost stopped you from signing up?", when: { path: "/*" } },
  later: { id: "later", kind: "csat", question: "Quick one?", when: { path: "/*" }, askLater: "1d" },
  sampled: { id: "sampled", kind: "nps", question: "Recommend?", when: { path: "/*" }, sample: 50 },
};
const CAPS = { maxTipsPerSession: 10, minGapBetweenTips: "0s", maxPerSession: 10, maxPerDay: 10 };

function plan(surveys, { caps = CAPS, tips = [] } = {}) {
  return { version: "s1", defaultLocale: "en", milestones: MILESTONES, caps, tips, surveys };
}

// The collector serves the ledger for the surveys of its own plan: publish one naming them all
// (once, before the first page).
let published = null;
function publish() {
  published ??= (async () => {
    const all = plan(Object.values(SURVEYS));
    const r = await fetch(collector.url + "/v1/plan", { method: "PUT", headers: { authorization: "Bearer et_demo" }, body: JSON.stringify(all) });
    assert.equal(r.status, 200, await r.text());
  })();
  return published;
}

/** A page of the tips fixture with `p` for `user` (none: an anonymous visitor), in `context`. */
async function open(p, { user, context, clockOffset = 0, colorScheme, query = "" } = {}) {
  await publish();
  context = context || await browser.newContext({ viewport: { width: 960, height: 640 }, colorScheme });
  const page = await context.newPage();
  const consoleMessages = watchConsole(page);
  const sent = sentEvents(page);
  if (clockOffset) await page.addInitScript((off) => { const now = Date.now; Date.now = () => now() + off; }, clockOffset);
  const stateAnswered = user ? page.waitForResponse((r) => r.url().includes("/v1/state?")) : null;
  await page.addInitScript((cfg) => { window.__onramp = cfg; }, { plan: p, user: user && { id: user, signedUpAt: Date.now() - H } });
  await page.goto(collector.url + "/demo/fixtures/tips.html" + query);
  await page.evaluate(() => window.onramp.ready);
  if (stateAnswered) assert.equal((await stateAnswered).status(), 200);
  return { page, context, sent, consoleMessages };
}

const card = (page) => page.locator("onramp-tips .v");

async function surveyEvents(t, name) {
  await t.page.evaluate(() => window.onramp.flush());
  return eventually(() => {
    const found = t.sent.filter((e) => e.type === "survey" && (!name || e.name === name));
    return found.length ? found : null;
  }, { timeout: 5000 });
}

/** No card after the scheduler has had its chance (the state answered, a refresh passed). */
async function assertNoCard(page, what) {
  await page.waitForTimeout(1200);
  assert.equal(await card(page).count(), 0, what);
}

async function shot(page, name) {
  await page.waitForTimeout(250);
  await page.screenshot({ path: join(ARTIFACTS, "surveys-" + name + ".png") });
}

function noErrors(messages) {
  assert.deepEqual(messages.filter((m) => m.type === "error" || m.type === "pageerror"), [], "no errors in the page");
}

/** Tab until the focused element (in the shadow root) matches `selector`. */
async function tabTo(page, selector, max = 8) {
  for (let i = 0; i < max; i++) {
    const hit = await page.evaluate((sel) => {
      const a = document.querySelector("onramp-tips").shadowRoot.activeElement;
      return !!a && a.matches(sel);
    }, selector);
    if (hit) return;
    await page.keyboard.press("Tab");
  }
  assert.fail("focus never reached " + selector);
}

const KINDS = [
  // kind, keys on the scale (from the first radio), the score and group they give, text typed
  { s: SURVEYS.csat, keys: ["ArrowRight", "ArrowRight"], score: 3, group: "happy", text: null },
  { s: SURVEYS.csat5, keys: ["ArrowRight"], score: 2, group: "unhappy", text: "Too many steps <b>really</b>" },
  { s: SURVEYS.nps, keys: ["ArrowRight", "ArrowRight", "ArrowRight", "ArrowRight", "ArrowRight", "ArrowRight", "ArrowRight", "ArrowRight", "ArrowRight"], score: 9, group: "promoter", text: "The funnels", followUp: "What do you love most?" },
  { s: SURVEYS.ces, keys: ["ArrowRight", "ArrowRight", "ArrowRight", "ArrowRight", "ArrowRight", "ArrowRight"], score: 7, group: undefined, text: null },
  { s: SURVEYS.question, keys: null, score: undefined, group: undefined, text: "The price page" },
];

for (const k of KINDS) {
  test(`${k.s.id}: rendered, answered by keyboard alone, axe-clean, survey_shown and survey_answered sent`, async () => {
    const t = await open(plan([k.s]), { user: "kbd-" + k.s.id, colorScheme: k.s.id === "nps" ? "dark" : "light" });
    await card(t.page).waitFor();
    assert.equal(await card(t.page).getAttribute("role"), "dialog");
    assert.equal(await t.page.evaluate(() => document.querySelector("onramp-tips").shadowRoot.activeElement?.className), "v", "the card took focus (the user was not working in the page)");
    await assertAxeClean(t.page, k.s.id, [["onramp-tips"]]);
    if (k.keys) {
      const radios = card(t.page).locator("input[type=radio]");
      assert.equal(await radios.count(), { csat: 3, csat5: 5, nps: 11, ces: 7 }[k.s.id]);
      assert.equal(await card(t.page).locator("fieldset > legend").textContent(), k.s.question);
      await tabTo(t.page, "input[type=radio]");
      await t.page.keyboard.press("Space"); // the focused (first) score
      for (const key of k.keys) await t.page.keyboard.press(key);
      if (k.followUp) assert.equal(await card(t.page).locator("#onramp-sl").textContent(), k.followUp, "the follow-up for the group");
    }
    if (k.text) {
      await tabTo(t.page, "textarea");
      await t.page.keyboard.type(k.text);
    } else {
      assert.equal(await card(t.page).locator(".o").isHidden(), true, "no follow-up box without a follow-up question");
    }
    await shot(t.page, k.s.id);
    await tabTo(t.page, "button[type=submit]");
    await t.page.keyboard.press("Enter");
    await card(t.page).locator("[role=status]").waitFor();
    const [answered] = await surveyEvents(t, "survey_answered");
    assert.deepEqual(
      { ...answered.props },
      { surveyId: k.s.id, surveyKind: k.s.kind, ...(k.score !== undefined && { score: k.score }), ...(k.group && { group: k.group }), ...(k.text && { text: k.text }) },
    );
    const shown = await surveyEvents(t, "survey_shown");
    assert.equal(shown.length, 1);
    await card(t.page).waitFor({ state: "detached", timeout: 5000 });
    await t.page.reload();
    await t.page.evaluate(() => window.onramp.ready);
    await assertNoCard(t.page, "answered: not asked again");
    noErrors(t.consoleMessages);
    await t.context.close();
  });
}

test("a missing score is said, and Esc dismisses; answers are cut at 1 000 characters", async () => {
  const t = await open(plan([SURVEYS.csat5]), { user: "esc-user", query: "?rtl=1" });
  await card(t.page).waitFor();
  await tabTo(t.page, "button[type=submit]");
  await t.page.keyboard.press("Enter");
  assert.equal(await card(t.page).locator("[role=alert]").textContent(), "Choose a score first.");
  assert.equal(await t.page.evaluate(() => document.querySelector("onramp-tips").shadowRoot.activeElement?.type), "radio", "focus goes to the scale");
  assert.equal(await card(t.page).locator("textarea").getAttribute("maxlength"), "1000");
  await shot(t.page, "rtl-error");
  await t.page.keyboard.press("Escape");
  await card(t.page).waitFor({ state: "detached" });
  const [dismissed] = await surveyEvents(t, "survey_dismissed");
  assert.deepEqual({ ...dismissed.props }, { surveyId: "csat5", surveyKind: "csat" });
  await t.context.close();
});

test("two tabs and two browser contexts of one user: the survey is shown once (the ledger)", async () => {
  const p = plan([SURVEYS.nps]);
  const first = await open(p, { user: "two-places" });
  await card(first.page).waitFor();
  await surveyEvents(first, "survey_shown");
  // A second tab of the same browser: the survey is open in the first one.
  const tab2 = await open(p, { user: "two-places", context: first.context });
  await assertNoCard(tab2.page, "second tab");
  // Another browser (another device): only the collector knows.
  const other = await open(p, { user: "two-places" });
  await assertNoCard(other.page, "second browser context");
  assert.equal(other.sent.filter((e) => e.name === "survey_shown").length, 0);
  await first.context.close();
  await other.context.close();
});

test("ask me later hides the survey for its askLater time, then it comes back", async () => {
  const p = plan([SURVEYS.later], { caps: { ...CAPS, minGapBetweenSurveys: "0s" } });
  const t = await open(p, { user: "later-user" });
  await card(t.page).waitFor();
  await tabTo(t.page, "[data-a=l]");
  await t.page.keyboard.press("Enter");
  await card(t.page).waitFor({ state: "detached" });
  const [snoozed] = await surveyEvents(t, "survey_snoozed");
  assert.equal(snoozed.props.surveyId, "later");
  await t.page.reload();
  await t.page.evaluate(() => window.onramp.ready);
  await assertNoCard(t.page, "snoozed");
  // A day and a bit later (the clock moved on), in the same browser: asked again.
  const later = await open(p, { user: "later-user", context: t.context, clockOffset: D + H });
  await card(later.page).waitFor({ timeout: 5000 });
  await t.context.close();
});

test("a survey dismissed before identify is not shown again after it, on this device or another", async () => {
  const p = plan([SURVEYS.ces]);
  const t = await open(p, {});
  await card(t.page).waitFor();
  await t.page.keyboard.press("Escape"); // the card has focus
  await card(t.page).waitFor({ state: "detached" });
  await surveyEvents(t, "survey_dismissed");
  const answered = t.page.waitForResponse((r) => r.url().includes("/v1/state?"));
  await t.page.evaluate(() => window.onramp.identify("anon-then-user", { signedUpAt: Date.now() - 3600000 }));
  await answered;
  await t.page.evaluate(() => window.onramp.flush());
  // The app's next page, which identifies the signed-in user on load as apps do.
  const next = await open(p, { user: "anon-then-user", context: t.context });
  await assertNoCard(next.page, "same browser, identified");
  const other = await open(p, { user: "anon-then-user" });
  await assertNoCard(other.page, "another browser: the ledger links the anonymous dismissal");
  await t.context.close();
  await other.context.close();
});

/** docs/SURVEYS.md's sample rule, written again here: FNV-1a 64 of `surveyId:user`, mod 10 000, ÷ 100 < sample. */
function inSample(surveyId, user, sample) {
  let h = 0xcbf29ce484222325n;
  for (const b of new TextEncoder().encode(surveyId + ":" + user)) {
    h ^= BigInt(b);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return Number(h % 10000n) / 100 < sample;
}

test("sampling is deterministic per user, as documented", async () => {
  const users = ["sample-a", "sample-b", "sample-c", "sample-d", "sample-e", "sample-f"];
  const want = users.map((u) => inSample("sampled", u, 50));
  assert.ok(want.includes(true) && want.includes(false), "the chosen users cover both sides");
  const p = plan([SURVEYS.sampled]);
  for (const [i, u] of users.entries()) {
    const t = await open(p, { user: u });
    if (want[i]) await card(t.page).waitFor({ timeout: 5000 });
    else await assertNoCard(t.page, u + " is outside the sample");
    await t.context.close();
  }
});

test("the fatigue budget is shared with tips", async () => {
  const tip = { id: "tt", kind: "tooltip", milestone: "made", target: "#new", title: "Start here", body: "Create a project." };
  const p = plan([SURVEYS.csat], { caps: { ...CAPS, maxPerSession: 1 }, tips: [tip] });
  const t = await open(p, { user: "budget-user" });
  await t.page.locator("onramp-tips .c").waitFor();
  await assertNoCard(t.page, "the tip spent the session's budget of one");
  const stored = await t.page.evaluate(() => JSON.parse(localStorage.getItem("onramp.state.budget-user")));
  assert.deepEqual(Object.values(stored.session.shown), [1], "one surface charged");
  await t.context.close();
});
