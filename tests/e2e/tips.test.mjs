// Tips in real headless Chromium, on the shipped bundle served by a real collector: every tip
// type rendered, positioned, driven by mouse and keyboard, checked with axe-core, and kept as a
// screenshot in tests/e2e/artifacts/tips-*.png (to be looked at). The host pages are
// www/demo/fixtures/tips.html (targets in shadow roots, iframes, scroll containers, fixed and
// sticky parents; hostile CSS; RTL; SPA routes) and the Trackly demo.
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { useCollectorAndBrowser, watchConsole, eventually, sentEvents, ARTIFACTS, ROOT } from "./harness.mjs";

const H = 3600000;
const AXE = join(ROOT, "node_modules", "axe-core", "axe.min.js");
let collector, browser;
useCollectorAndBrowser((c, b) => { collector = c; browser = b; });

const MILESTONES = [
  { id: "made", title: { en: "Create a project", de: "Projekt anlegen", ar: "أنشئ مشروعًا" }, condition: { event: "made" } },
  { id: "shared", title: { en: "Share it", ar: "شاركه" }, value: true, condition: { event: "shared" } },
  { id: "kickoff", title: { en: "Hold a kick-off", ar: "اعقد اجتماع البداية" }, kind: "customer", required: false },
];
const CAPS = { maxTipsPerSession: 10, minGapBetweenTips: "0s" };

/** A plan with the given tips (and the fixture's milestones). */
function plan(tips, caps = CAPS) {
  return { version: "t1", defaultLocale: "en", milestones: MILESTONES, caps, tips };
}

const tooltip = (target, extra = {}) => ({
  id: "tt", kind: "tooltip", milestone: "made", target, title: "Start here",
  body: "Create your **first** project. See [the guide](https://example.com/guide).", ...extra,
});

/** Opens the fixture with a plan and a user who signed up `ageMs` ago; records the batches sent. */
async function open(p, { ageMs = H, query = "", tips, viewport = { width: 960, height: 640 }, colorScheme, reducedMotion, storage } = {}) {
  const context = await browser.newContext({ viewport, colorScheme, reducedMotion, storageState: storage });
  const page = await context.newPage();
  const consoleMessages = watchConsole(page);
  const sent = sentEvents(page);
  await page.addInitScript((cfg) => { window.__onramp = cfg; }, { plan: p, tips, user: { id: "user@example.com", signedUpAt: Date.now() - ageMs } });
  await page.goto(collector.url + "/demo/fixtures/tips.html" + query);
  await page.evaluate(() => window.onramp.ready);
  return { page, context, sent, consoleMessages };
}

/** Tip events sent so far (flushes first). */
async function tipEvents(t, name) {
  await t.page.evaluate(() => window.onramp.flush());
  return eventually(() => {
    const found = t.sent.filter((e) => e.type === "tip" && (!name || e.name === name));
    return found.length ? found : null;
  }, { timeout: 4000 });
}

async function rect(locator) {
  await locator.page().waitForTimeout(200); // past the entrance animation (a 4 px slide)
  return locator.evaluate((el) => { const r = el.getBoundingClientRect(); return { x: r.x, y: r.y, w: r.width, h: r.height }; });
}

/** Rect of a target in the top page, through `>>>` (shadow roots, iframes). */
async function targetRect(page, selector) {
  return page.evaluate((sel) => {
    let root = document, el, dx = 0, dy = 0;
    for (const part of sel.split(">>>")) {
      if (el) {
        if (el.tagName === "IFRAME") { const r = el.getBoundingClientRect(); dx += r.x + el.clientLeft; dy += r.y + el.clientTop; root = el.contentDocument; }
        else root = el.shadowRoot;
      }
      el = root.querySelector(part.trim());
    }
    const r = el.getBoundingClientRect();
    return { x: r.x + dx, y: r.y + dy, w: r.width, h: r.height };
  }, selector);
}

/** The card sits beside the target (within the gap) and inside the viewport. */
function assertBeside(card, target, viewport, what) {
  const gapX = Math.max(target.x - (card.x + card.w), card.x - (target.x + target.w));
  const gapY = Math.max(target.y - (card.y + card.h), card.y - (target.y + target.h));
  const beside = (Math.abs(gapY - 12) <= 1.5 && gapX < 0) || (Math.abs(gapX - 12) <= 1.5 && gapY < 0);
  assert.ok(beside, `${what}: card ${JSON.stringify(card)} not beside target ${JSON.stringify(target)}`);
  assert.ok(card.x >= 0 && card.y >= 0 && card.x + card.w <= viewport.width && card.y + card.h <= viewport.height, `${what}: card inside the viewport`);
}

async function axe(page, what) {
  await page.addScriptTag({ path: AXE });
  const result = await page.evaluate(async () => {
    // Only onramp's own UI: the fixture page is not what is under test.
    const r = await window.axe.run({ include: [["onramp-tips"]] }, { resultTypes: ["violations"] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(" ") + " " + n.failureSummary) }));
  });
  assert.deepEqual(result, [], `${what}: axe violations`);
  return result;
}

async function shot(page, name) {
  await page.waitForTimeout(250); // past the 160 ms entrance animation
  await page.screenshot({ path: join(ARTIFACTS, "tips-" + name + ".png") });
}

function noErrors(messages) {
  const bad = messages.filter((m) => m.type === "error" || m.type === "pageerror");
  assert.deepEqual(bad, [], "no errors in the page");
}

test("tooltip: anchored beside its target, flips and shifts at the edges, tip_shown sent", async () => {
  const t = await open(plan([tooltip("#new", { placement: "top" })]));
  const card = t.page.locator("onramp-tips .c");
  await card.waitFor();
  assert.equal(await card.getAttribute("role"), "tooltip");
  // No room above the button (under the fixed header): it flips below.
  assert.equal(await card.getAttribute("data-side"), "bottom");
  assertBeside(await rect(card), await targetRect(t.page, "#new"), { width: 960, height: 640 }, "#new");
  // The safe markup subset: bold and an https link that opens in a new tab.
  assert.equal(await card.locator("p b").textContent(), "first");
  assert.equal(await card.locator("p a").getAttribute("href"), "https://example.com/guide");
  await shot(t.page, "tooltip");
  await axe(t.page, "tooltip");
  const shown = await tipEvents(t, "tip_shown");
  assert.equal(shown[0].props.tipId, "tt");
  assert.equal(shown[0].props.milestone, "made");
  assert.ok(shown[0].props.sinceSignupMs >= H - 60000 && shown[0].props.sinceSignupMs < H + 60000, "sinceSignupMs");
  // The target stays reachable by Tab, and Esc there closes its tooltip.
  await t.page.focus("#fixed-btn");
  await t.page.keyboard.press("Tab");
  assert.equal(await t.page.evaluate(() => document.activeElement.id), "new");
  await t.page.keyboard.press("Escape");
  await card.waitFor({ state: "detached" });
  assert.equal((await tipEvents(t, "tip_dismissed"))[0].props.tipId, "tt");
  noErrors(t.consoleMessages);
  await t.context.close();
});

test("tooltip targets in scroll containers, fixed and sticky parents, shadow roots and iframes", async () => {
  const viewport = { width: 960, height: 640 };
  for (const [selector, scroll] of [
    ["#deep", async (p) => p.evaluate(() => { document.getElementById("scroller").scrollTop = 120; })],
    ["#fixed-btn", async (p) => p.evaluate(() => window.scrollTo(0, 400))],
    ["#sticky-btn", async (p) => p.evaluate(() => window.scrollTo(0, 300))],
    ["x-widget >>> #inner", async (p) => p.evaluate(() => window.scrollTo(0, 120))],
    ["#frame >>> #in-frame", async (p) => p.evaluate(() => window.scrollTo(0, 150))],
    ["#far", null],
  ]) {
    const t = await open(plan([tooltip(selector, { placement: "right" })]));
    const card = t.page.locator("onramp-tips .c");
    await card.waitFor();
    await t.page.waitForTimeout(100);
    assertBeside(await rect(card), await targetRect(t.page, selector), viewport, selector);
    if (scroll) {
      await scroll(t.page);
      // The capture-phase scroll listener repositions within the same frame.
      await t.page.waitForTimeout(100);
      const target = await targetRect(t.page, selector);
      if (target.y + target.h > 0 && target.y < viewport.height) {
        assertBeside(await rect(card), target, viewport, selector + " after scrolling");
      } else {
        assert.ok(await card.isHidden(), selector + ": hidden while its target is out of view");
      }
    } else {
      // Far below the fold: scrolled into view.
      const target = await targetRect(t.page, selector);
      assert.ok(target.y >= 0 && target.y + target.h <= viewport.height, "#far was scrolled into view");
    }
    if (selector.includes("iframe") || selector.includes("#frame")) await shot(t.page, "tooltip-iframe");
    if (selector.includes("x-widget")) await shot(t.page, "tooltip-shadow-root");
    if (selector === "#deep") await shot(t.page, "tooltip-scroll-container");
    noErrors(t.consoleMessages);
    await t.context.close();
  }
});

test("a target that appears later is waited for (no polling); a missing one reports tip_target_missing", async () => {
  const t = await open(plan([tooltip("#later"), { ...tooltip("#nowhere .gone"), id: "lost", priority: 5 }]));
  // "lost" (higher priority) waits for its target, gives up after 5 s, and reports the selector.
  const missing = await eventually(async () => (await tipEvents(t, "tip_target_missing")) || null, { timeout: 9000 });
  assert.equal(missing[0].props.tipId, "lost");
  assert.equal(missing[0].props.selector, "#nowhere .gone");
  // Then "tt" gets its turn: its target appears a second later and the tooltip follows.
  await t.page.evaluate(() => window.addLater(1000));
  const card = t.page.locator("onramp-tips .c");
  await card.waitFor({ timeout: 4000 });
  assertBeside(await rect(card), await targetRect(t.page, "#later"), { width: 960, height: 640 }, "#later");
  noErrors(t.consoleMessages);
  await t.context.close();
});

test("hotspot: a pulsing beacon that opens its tip; keyboard and Esc; axe", async () => {
  const t = await open(plan([{ id: "hs", kind: "hotspot", milestone: "shared", target: "#share", title: "Bring your team", body: "Share the project with a teammate." }]));
  const beacon = t.page.locator("onramp-tips .h");
  await beacon.waitFor();
  const b = await rect(beacon), target = await targetRect(t.page, "#share");
  assert.ok(Math.abs(b.x + b.w / 2 - (target.x + target.w)) <= 1 && Math.abs(b.y + b.h / 2 - target.y) <= 1, "beacon on the target's corner");
  assert.equal(await beacon.getAttribute("aria-expanded"), "false");
  await axe(t.page, "hotspot beacon");
  await beacon.focus();
  await t.page.keyboard.press("Enter");
  const card = t.page.locator("onramp-tips .c");
  await card.waitFor();
  assert.equal(await card.getAttribute("role"), "dialog");
  assert.equal(await t.page.locator("onramp-tips .h").getAttribute("aria-expanded"), "true");
  assert.ok(await t.page.evaluate(() => document.querySelector("onramp-tips").shadowRoot.activeElement?.textContent === "Got it"), "focus moved into the tip");
  await shot(t.page, "hotspot");
  await axe(t.page, "hotspot open");
  await t.page.keyboard.press("Escape");
  await card.waitFor({ state: "detached" });
  assert.ok(await t.page.evaluate(() => document.querySelector("onramp-tips").shadowRoot.activeElement?.classList.contains("h")), "focus back on the beacon");
  // "Got it" dismisses for good.
  await t.page.locator("onramp-tips .h").click();
  await t.page.locator("onramp-tips .c .pr").click();
  await t.page.locator("onramp-tips .h").waitFor({ state: "detached" });
  const dismissed = await tipEvents(t, "tip_dismissed");
  assert.equal(dismissed[0].props.tipId, "hs");
  await t.page.reload();
  await t.page.evaluate(() => window.onramp.ready);
  await t.page.waitForTimeout(500);
  assert.equal(await t.page.locator("onramp-tips .h").count(), 0, "dismissal remembered across reloads");
  noErrors(t.consoleMessages);
  await t.context.close();
});

test("modal: focus moves in, Tab is trapped, Esc closes, focus is restored; snooze remembered", async () => {
  const modal = {
    id: "hello", kind: "modal", title: "Welcome to Trackly", body: "Three steps and your team is planning here.",
    trigger: { afterEvent: "go" }, cta: { label: "Open the checklist", action: "open_checklist" },
  };
  const t = await open(plan([modal, { id: "cl", kind: "checklist", title: "Getting started", trigger: { afterEvent: "never" } }]));
  await t.page.focus("#share");
  await t.page.evaluate(() => onramp.track("go"));
  const dialog = t.page.locator("onramp-tips .m");
  await dialog.waitFor();
  assert.equal(await dialog.getAttribute("role"), "dialog");
  assert.equal(await dialog.getAttribute("aria-modal"), "true");
  const active = () => t.page.evaluate(() => document.querySelector("onramp-tips").shadowRoot.activeElement?.textContent || document.activeElement.id);
  await eventually(async () => (await active()) === "Open the checklist");
  await t.page.keyboard.press("Tab");
  assert.equal(await active(), "×");
  await t.page.keyboard.press("Tab");
  assert.equal(await active(), "Later", "Tab wraps inside the modal");
  await t.page.keyboard.press("Shift+Tab");
  assert.equal(await active(), "×", "Shift+Tab wraps back");
  await shot(t.page, "modal");
  await axe(t.page, "modal");
  await t.page.keyboard.press("Escape");
  await dialog.waitFor({ state: "detached" });
  assert.equal(await active(), "share", "focus restored to where it was");
  const dismissed = await tipEvents(t, "tip_dismissed");
  assert.equal(dismissed[0].props.tipId, "hello");
  noErrors(t.consoleMessages);
  await t.context.close();

  // Later: snoozed, so not on the next page load either.
  const u = await open(plan([{ ...modal, trigger: undefined }]));
  await u.page.locator("onramp-tips .m").waitFor();
  await u.page.locator("onramp-tips .m [data-a=l]").click();
  await u.page.locator("onramp-tips .m").waitFor({ state: "detached" });
  assert.equal((await tipEvents(u, "tip_snoozed"))[0].props.tipId, "hello");
  await u.page.reload();
  await u.page.evaluate(() => window.onramp.ready);
  await u.page.waitForTimeout(500);
  assert.equal(await u.page.locator("onramp-tips .m").count(), 0, "snoozed across reloads");
  await u.context.close();
});

test("checklist: milestones with progress, mark a customer milestone done, reopen from the launcher", async () => {
  const t = await open(plan([{ id: "cl", kind: "checklist", title: "Getting started", body: "Three steps to a working team." }, tooltip("#new")]));
  const launcher = t.page.locator("onramp-tips .l");
  await launcher.waitFor();
  assert.match(await launcher.textContent(), /0\/3/);
  await launcher.click();
  const panel = t.page.locator("onramp-tips .p");
  await panel.waitFor();
  assert.equal((await tipEvents(t, "checklist_opened"))[0].props.tipId, "cl");
  assert.equal(await panel.locator("li").count(), 3);
  await shot(t.page, "checklist");
  await axe(t.page, "checklist");
  // Mark the customer milestone done.
  await panel.locator("[data-a='m:kickoff']").click();
  await eventually(async () => /1\/3/.test(await launcher.textContent()));
  const marked = await tipEvents(t, "customer_milestone_marked");
  assert.equal(marked[0].props.milestone, "kickoff");
  assert.ok(t.sent.some((e) => e.type === "milestone" && e.name === "kickoff" && e.props.kind === "customer"), "the milestone itself is reported");
  assert.equal(await panel.locator("li[data-done]").count(), 1);
  assert.equal(await panel.locator(".g").getAttribute("aria-valuenow"), "1");
  // A feature milestone done in the product ticks off at once.
  await t.page.evaluate(() => onramp.track("made"));
  await eventually(async () => /2\/3/.test(await launcher.textContent()));
  // Esc closes the panel and focus returns to the launcher.
  await panel.focus();
  await t.page.keyboard.press("Escape");
  await eventually(async () => await t.page.locator("onramp-tips .p").isHidden());
  assert.ok(await t.page.evaluate(() => document.querySelector("onramp-tips").shadowRoot.activeElement?.classList.contains("l")));
  noErrors(t.consoleMessages);
  await t.context.close();
});

test("tour: 1 of 3, next, back, advances on the real action, resumes after reload and route change, skip", async () => {
  const tour = {
    id: "tour", kind: "tour", milestone: "shared", title: "A quick tour",
    steps: [
      { target: "#new", title: "Projects", body: "Everything starts with a project." },
      { target: "#do-action", body: "Now **do the action**: the tour moves on when you do.", advanceOn: { event: "did_action" } },
      { target: "#share", body: "Finally, share it.", placement: "bottom" },
    ],
  };
  const t = await open(plan([tour]));
  const card = t.page.locator("onramp-tips .c");
  await card.waitFor();
  assert.match(await card.locator(".n").textContent(), /^1 of 3$/);
  await card.locator("[data-a=n]").click();
  await eventually(async () => (await card.locator(".n").textContent()) === "2 of 3");
  assert.ok(await t.page.evaluate(() => document.querySelector("onramp-tips").shadowRoot.activeElement?.textContent === "Next"), "focus stays in the tour");
  await shot(t.page, "tour");
  await axe(t.page, "tour step");
  // Back shows step 1 again; Next returns to step 2 without re-completing step 1.
  await card.locator("[data-a=b]").click();
  await eventually(async () => (await card.locator(".n").textContent()) === "1 of 3");
  await card.locator("[data-a=n]").click();
  await eventually(async () => (await card.locator(".n").textContent()) === "2 of 3");
  // The real action advances the tour.
  await t.page.click("#do-action");
  await eventually(async () => (await card.locator(".n").textContent()) === "3 of 3");
  const done = await tipEvents(t, "tour_step_completed");
  assert.deepEqual(done.map((e) => e.props.step), [0, 1]);
  // A reload resumes at step 3; so does an SPA route change.
  await t.page.reload();
  await t.page.evaluate(() => window.onramp.ready);
  await eventually(async () => (await t.page.locator("onramp-tips .c .n").textContent().catch(() => "")) === "3 of 3");
  await t.page.click("#push-b");
  await t.page.waitForTimeout(300);
  assert.equal(await t.page.locator("onramp-tips .c .n").textContent(), "3 of 3", "still there after pushState");
  // Skip ends it for good.
  await t.page.locator("onramp-tips .c [data-a=x]").click();
  await t.page.locator("onramp-tips .c").waitFor({ state: "detached" });
  const skipped = await tipEvents(t, "tip_dismissed");
  assert.equal(skipped[0].props.step, 2);
  noErrors(t.consoleMessages);
  await t.context.close();
});

test("scheduling: one cap across every surface, a gap between tips, gone at once when the milestone is reached", async () => {
  const tips = [
    { id: "m1", kind: "modal", title: "Welcome", body: "Hello.", priority: 30 },
    { ...tooltip("#new"), priority: 20 },
    { id: "hs", kind: "hotspot", target: "#share", title: "Share", body: "Share it.", priority: 10 },
  ];
  // Two tips per session, 2 s apart.
  const t = await open(plan(tips, { maxTipsPerSession: 2, minGapBetweenTips: "2s" }));
  await t.page.locator("onramp-tips .m").waitFor();
  await t.page.keyboard.press("Escape");
  await t.page.locator("onramp-tips .m").waitFor({ state: "detached" });
  const closedAt = Date.now();
  const card = t.page.locator("onramp-tips .c");
  await card.waitFor({ timeout: 5000 });
  assert.ok(Date.now() - closedAt >= 1500, "the next tip waited for the gap");
  // Reaching the tooltip's milestone removes it at once.
  await t.page.evaluate(() => onramp.track("made"));
  await card.waitFor({ state: "detached", timeout: 1000 });
  // The cap (2, across modal and tooltip) is spent: the hotspot never shows in this session.
  await t.page.waitForTimeout(2500);
  assert.equal(await t.page.locator("onramp-tips .h").count(), 0, "capped");
  const shown = (await tipEvents(t, "tip_shown")).map((e) => e.props.tipId);
  assert.deepEqual(shown, ["m1", "tt"]);
  noErrors(t.consoleMessages);
  await t.context.close();
});

test("a user who signed up 25 hours ago sees none of the 24-hour tips", async () => {
  const tips = [
    { id: "m1", kind: "modal", title: "Welcome", body: "Hello." },
    tooltip("#new"),
    { id: "tour", kind: "tour", steps: [{ target: "#new", body: "One" }] },
    { id: "week", kind: "hotspot", target: "#share", body: "Still useful this week.", window: { until: "7d" } },
  ];
  const t = await open(plan(tips), { ageMs: 25 * H });
  await t.page.locator("onramp-tips .h").waitFor();
  await t.page.waitForTimeout(800);
  assert.equal(await t.page.locator("onramp-tips .m, onramp-tips .c").count(), 0);
  await t.page.evaluate(() => window.onramp.flush());
  await t.page.waitForTimeout(500);
  const shown = t.sent.filter((e) => e.name === "tip_shown").map((e) => e.props.tipId);
  assert.deepEqual(shown, ["week"], "only the tip with a 7-day window");
  await t.context.close();
});

test("safe content: script tags, event-handler attributes and javascript: URLs render inert", async () => {
  const hostile = {
    id: "evil", kind: "modal",
    title: "<img src=x onerror=\"window.__pwned=1\">Hello",
    body: "<script>window.__pwned=2</script> **bold** [click](javascript:window.__pwned=3) [ok](https://example.com) <a href=\"javascript:window.__pwned=4\" onclick=\"window.__pwned=5\">x</a>",
    cta: { label: "<b onmouseover=window.__pwned=6>Go</b>", action: "dismiss" },
  };
  const t = await open(plan([hostile]));
  const m = t.page.locator("onramp-tips .m");
  await m.waitFor();
  await m.locator("h2").hover();
  await m.locator("a").first().click({ modifiers: [] }).catch(() => {});
  const report = await t.page.evaluate(() => {
    const root = document.querySelector("onramp-tips").shadowRoot;
    return {
      pwned: window.__pwned || null,
      elements: [...root.querySelectorAll(".m *")].map((e) => e.tagName.toLowerCase()).filter((n) => !["div", "h2", "p", "b", "button", "a"].includes(n)),
      handlers: [...root.querySelectorAll("*")].flatMap((e) => [...e.attributes].map((a) => a.name)).filter((n) => n.startsWith("on")),
      hrefs: [...root.querySelectorAll("a")].map((a) => a.getAttribute("href")),
      title: root.querySelector(".m h2").textContent,
    };
  });
  assert.equal(report.pwned, null, "nothing ran");
  assert.deepEqual(report.elements, [], "no element but the safe ones");
  assert.deepEqual(report.handlers, [], "no event-handler attributes");
  assert.deepEqual(report.hrefs, ["https://example.com"], "only the https link is a link");
  assert.equal(report.title, "<img src=x onerror=\"window.__pwned=1\">Hello", "markup shown as text");
  await shot(t.page, "safe-content");
  await t.context.close();
});

test("a host page whose CSS tries to restyle everything does not reach the tips", async () => {
  const t = await open(plan([tooltip("#new", { placement: "bottom" })]), { query: "?hostile=1" });
  const card = t.page.locator("onramp-tips .c");
  await card.waitFor();
  // Theming is the page's one way in: custom properties inherit into the shadow root.
  await t.page.evaluate(() => document.documentElement.style.setProperty("--onramp-accent", "rgb(0, 90, 60)"));
  assert.equal(await card.locator(".pr").evaluate((b) => getComputedStyle(b).backgroundColor), "rgb(0, 90, 60)");
  await t.page.waitForTimeout(200);
  const style = await card.evaluate((el) => {
    const s = getComputedStyle(el), h = getComputedStyle(el.getRootNode().host);
    return { display: s.display, position: s.position, font: s.fontFamily, color: s.color, hostDisplay: h.display, hostFilter: h.filter, hostOpacity: h.opacity };
  });
  assert.equal(style.display, "block");
  assert.equal(style.position, "fixed");
  assert.doesNotMatch(style.font, /Comic/);
  assert.notEqual(style.color, "rgb(204, 0, 0)");
  assert.deepEqual([style.hostDisplay, style.hostFilter, style.hostOpacity], ["block", "none", "1"]);
  assert.ok(await card.isVisible());
  await shot(t.page, "hostile-css");
  await axe(t.page, "hostile page");
  await t.context.close();
});

test("right-to-left, dark theme, locale texts with fallback, reduced motion", async () => {
  const tips = [
    { id: "cl", kind: "checklist", title: { en: "Getting started", ar: "البداية" } },
    { id: "hs", kind: "hotspot", target: "#share", title: { en: "Share", ar: "شارك" }, body: { en: "Share it with your team." } },
  ];
  const t = await open(plan(tips), { query: "?rtl=1", colorScheme: "dark", reducedMotion: "reduce", tips: { labels: { close: "إغلاق", later: "لاحقًا", gotIt: "حسنًا" } } });
  const launcher = t.page.locator("onramp-tips .l");
  await launcher.waitFor();
  await launcher.click();
  await t.page.locator("onramp-tips .h").click();
  await t.page.waitForTimeout(200);
  const r = await rect(launcher);
  assert.ok(r.x < 100, "launcher on the left in RTL");
  const info = await t.page.evaluate(() => {
    const root = document.querySelector("onramp-tips").shadowRoot;
    const card = root.querySelector(".c"), pulse = getComputedStyle(root.querySelector(".h"), "::after");
    return {
      dir: getComputedStyle(card).direction,
      title: root.querySelector(".p h2").textContent,
      cardTitle: card.querySelector("h2").textContent,
      body: card.querySelector("p").textContent,
      later: card.querySelector("[data-a=l]").textContent,
      bg: getComputedStyle(card).backgroundColor,
      animation: pulse.animationName,
    };
  });
  assert.equal(info.dir, "rtl");
  assert.equal(info.title, "البداية");
  assert.equal(info.cardTitle, "شارك");
  assert.equal(info.body, "Share it with your team.", "falls back to the default locale");
  assert.equal(info.later, "لاحقًا");
  assert.equal(info.bg, "rgb(30, 35, 43)", "dark theme");
  assert.equal(info.animation, "none", "no pulse with prefers-reduced-motion");
  await shot(t.page, "rtl-dark");
  await axe(t.page, "rtl dark");
  await t.context.close();
});

/** Shadow-root locator helper for the demo tests. */
const tip = (page, css) => page.locator("onramp-tips " + css);

test("Trackly demo, new user: the tips lead to the value milestone in the first 24 hours, then stop", async () => {
  const context = await browser.newContext({ viewport: { width: 1100, height: 720 } });
  const page = await context.newPage();
  const consoleMessages = watchConsole(page);
  const sent = sentEvents(page);
  await page.goto(collector.url + "/demo/");
  await page.evaluate(() => window.onramp.ready);
  await page.waitForTimeout(500);
  assert.equal(await tip(page, ".c, .m, .h, .l").count(), 0, "no tips for an anonymous visitor");
  await page.fill("#signup-name", "Tia");
  await page.fill("#signup-email", "tia@example.com");
  await page.click("#signup-submit");

  // 1. The welcome modal; its call to action opens the checklist.
  const modal = tip(page, ".m");
  await modal.waitFor();
  await shot(page, "demo-welcome");
  await modal.locator("[data-a=c]").click();
  const panel = tip(page, ".p");
  await panel.waitFor();
  assert.match(await tip(page, ".l").textContent(), /1\/5/);
  await shot(page, "demo-checklist");

  // 2. "Show me" on "Create a project": a tooltip on the button; doing it removes the tooltip.
  await panel.locator("li", { hasText: "Create a project" }).locator("button").click();
  const card = tip(page, ".c");
  await card.waitFor();
  assertBeside(await rect(card), await targetRect(page, "#new-project"), { width: 1100, height: 720 }, "#new-project");
  await shot(page, "demo-tooltip");
  await page.click("#new-project");
  await page.fill("#project-name", "Launch plan");
  await page.click("#project-create");
  await card.waitFor({ state: "detached", timeout: 2000 });
  await eventually(async () => /2\/5/.test(await tip(page, ".l").textContent()));

  // 3. "Show me" on "Invite a teammate": a hotspot on the Team link.
  await tip(page, ".l").click();
  await panel.locator("li", { hasText: "Invite a teammate" }).locator("button").click();
  await tip(page, ".h").waitFor();
  await shot(page, "demo-hotspot");
  await page.click("a[data-route=team]");
  await page.click("#invite-teammate");
  await page.fill("#invite-email", "sam@example.com");
  await page.click("#invite-send");
  await tip(page, ".h").waitFor({ state: "detached", timeout: 2000 });

  // 4. "Show me" on "Share a file": the tour points at Files, moves on when Files is opened,
  //    then at the upload button; uploading reaches the value milestone.
  await tip(page, ".l").click();
  await panel.locator("li", { hasText: "Share a file" }).locator("button").click();
  await eventually(async () => (await tip(page, ".c .n").textContent().catch(() => "")) === "1 of 2");
  await shot(page, "demo-tour");
  await page.click("a[data-route=files]");
  await eventually(async () => (await tip(page, ".c .n").textContent().catch(() => "")) === "2 of 2");
  assertBeside(await rect(tip(page, ".c")), await targetRect(page, "#upload-file"), { width: 1100, height: 720 }, "#upload-file");
  await page.click("#upload-file");

  // Value reached: every tip is gone, and stays gone after a reload.
  await tip(page, ".c").waitFor({ state: "detached", timeout: 2000 });
  await eventually(async () => (await tip(page, ".c, .m, .h, .l, .p:not([hidden])").count()) === 0);
  await page.evaluate(() => window.onramp.flush());
  const ttv = await eventually(() => sent.find((e) => e.type === "milestone" && e.name === "time_to_value"));
  assert.ok(ttv && ttv.props.sinceSignupMs < 24 * H, "value within the first 24 hours");
  assert.equal(ttv.props.milestone, "file_uploaded");
  await page.reload();
  await page.evaluate(() => window.onramp.ready);
  await page.waitForTimeout(1500);
  assert.equal(await tip(page, ".c, .m, .h, .l").count(), 0, "no tips once the value milestone is reached");
  await shot(page, "demo-done");
  const names = sent.filter((e) => e.type === "tip").map((e) => e.name + ":" + e.props.tipId);
  for (const expected of ["tip_shown:welcome", "tip_cta_clicked:welcome", "checklist_opened:getting_started", "tip_shown:create_project", "tip_shown:invite_teammate", "tip_shown:files_tour", "tour_step_completed:files_tour"]) {
    assert.ok(names.includes(expected), expected + " in " + names.join(", "));
  }
  noErrors(consoleMessages);
  await context.close();
});

test("Trackly demo: a user who signed up 25 hours ago sees none of the 24-hour tips", async () => {
  const context = await browser.newContext({ viewport: { width: 1100, height: 720 } });
  const page = await context.newPage();
  const sent = sentEvents(page);
  // Trackly keeps its signed-in user in localStorage; this one signed up 25 hours ago.
  await page.addInitScript((signedUpAt) => {
    if (!localStorage.getItem("trackly.state")) {
      localStorage.setItem("trackly.state", JSON.stringify({ user: { id: "old@example.com", name: "Old", signedUpAt }, projects: [], team: [], files: [] }));
    }
  }, Date.now() - 25 * H);
  await page.goto(collector.url + "/demo/#/projects");
  // The SDK must have loaded and be running, or "no tip shown" proves nothing.
  await page.waitForFunction(() => window.onramp && window.onramp.ready);
  assert.equal(await page.evaluate(() => window.onramp.ready), true, "the SDK loaded");
  await page.waitForTimeout(2500);
  await page.click("a[data-route=files]");
  await page.waitForTimeout(1000);
  await page.evaluate(() => window.onramp.flush());
  await page.waitForTimeout(500);
  const shown = sent.filter((e) => e.name === "tip_shown").map((e) => e.props.tipId);
  for (const id of ["welcome", "create_project", "files_tour"]) {
    assert.ok(!shown.includes(id), id + " is a 24-hour tip; shown: " + shown.join(", "));
  }
  // ... while a tip whose window runs three days is still shown: the plan is running.
  assert.ok(shown.includes("invite_teammate"), "invite_teammate (0h–3d) is shown; shown: " + shown.join(", "));
  assert.equal(await tip(page, ".m").count(), 0);
  await shot(page, "demo-25h");
  await context.close();
});
