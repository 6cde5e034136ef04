// Tips on pages rendered by real frameworks: a React 19 app with react-router, a Vue 3 app with
// vue-router, and a Backbone app that re-renders its views from underscore templates (sources in
// tests/e2e/frameworks/, bundled here by esbuild from node_modules and served by the test on the
// collector's origin beside the shipped SDK bundle). In each: a tooltip whose target is replaced
// on every keystroke, a route change while focus is in a tip, a tour whose next step's target
// appears only after a fetch, and a hotspot in a windowed (virtualised) list that scrolls.
//
// What is checked frame by frame: a probe in its own shadow root changes size in every animation
// frame, so a ResizeObserver callback runs in every frame after the frame's animation-frame
// callbacks and layout, just before paint; there the test records what the frame is about to
// show: how many cards there are, whether one is shown, its opacity (an entrance animation
// replayed would show below 1) and where it is next to where its target is.
// Screenshots: tests/e2e/artifacts/frameworks-*.png.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { build } from "esbuild";
import { useCollectorAndBrowser, watchConsole, eventually, ARTIFACTS, ROOT } from "./harness.mjs";

const H = 3600000;
const AXE = join(ROOT, "node_modules", "axe-core", "axe.min.js");
const APPS = ["react", "vue", "backbone"];
const SOURCES = { react: "react-app.jsx", vue: "vue-app.js", backbone: "backbone-app.js" };
const PROJECTS = ["Website relaunch", "Mobile app", "Quarterly planning"];
/** How long the fake API takes to answer: the tour's second target appears only then. */
const FETCH_MS = 800;
/** TARGET_GRACE_MS in src/web/tips/mod.rs. */
const GRACE_MS = 1500;
const VIEWPORT = { width: 1000, height: 760 };

let collector, browser;
useCollectorAndBrowser((c, b) => { collector = c; browser = b; });

const bundles = {};
before(async () => {
  for (const app of APPS) {
    const out = await build({
      entryPoints: [join(ROOT, "tests", "e2e", "frameworks", SOURCES[app])],
      bundle: true,
      write: false,
      format: "iife",
      jsx: "automatic",
      minify: true,
      nodePaths: [join(ROOT, "node_modules")],
      // Vue with its template compiler; production builds of every library.
      alias: { vue: "vue/dist/vue.esm-bundler.js" },
      define: {
        "process.env.NODE_ENV": '"production"',
        __VUE_OPTIONS_API__: "true",
        __VUE_PROD_DEVTOOLS__: "false",
        __VUE_PROD_HYDRATION_MISMATCH_DETAILS__: "false",
      },
      logLevel: "silent",
    });
    bundles[app] = out.outputFiles[0].text;
  }
});

const CSS = `
  body { font: 15px/1.4 system-ui, sans-serif; margin: 0; padding: 12px 24px; color: #1b1f24; background: #fff; }
  nav { display: flex; gap: 16px; padding: 8px 0; border-bottom: 1px solid #ccc; }
  h1 { font-size: 22px; margin: 10px 0; }
  section { margin: 10px 0; display: flex; gap: 12px; align-items: center; flex-wrap: wrap; }
  button, input { font: inherit; min-height: 30px; }
  ul { margin: 0; padding-left: 20px; }
  .rows { height: 256px; width: 420px; overflow: auto; border: 1px solid #999; position: relative; }
  .row { position: absolute; left: 0; right: 0; height: 32px; display: flex; align-items: center; justify-content: space-between; padding: 0 10px; border-bottom: 1px solid #eee; }
  .odd { background: #eef; } .even { background: #efe; }
  footer { margin-top: 12px; }
  .by { margin: 0; font-size: 12px; color: #444; }
`;

function html(app) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${app} app</title><style>${CSS}</style>
<script>
  !function(w,d){var o=w.onramp=w.onramp||[];if(o.loaded)return;["init","identify","track","reset","flush"].forEach(function(m){o[m]=o[m]||function(){o.push([m].concat([].slice.call(arguments)))}});var s=d.createElement("script");s.async=1;s.src="/sdk/v1/loader.js";d.head.appendChild(s)}(window,document);
  var cfg = window.__onramp || {};
  onramp.init({ writeKey: "wk_demo", plan: cfg.plan });
  if (cfg.user) onramp.identify(cfg.user.id, { signedUpAt: cfg.user.signedUpAt });
</script></head><body><p class="by">The ${app} app (tests/e2e/frameworks/)</p><div id="app"></div><script src="/fw/${app}/app.js"></script></body></html>`;
}

const MILESTONES = [{ id: "made", title: "Create a project", value: true, condition: { event: "made" } }];
const plan = (tip) => ({ version: "fw1", defaultLocale: "en", milestones: MILESTONES, caps: { maxTipsPerSession: 10, minGapBetweenTips: "0s" }, tips: [tip] });

const SAVE = "[data-onramp=save-search]";
const HELP = "[data-onramp=help]";
const STAR = "[data-row='7'] [data-onramp=star]";
const TIPS = {
  save: { id: "save", kind: "tooltip", milestone: "made", target: SAVE, placement: "right", title: "Save your search", body: "Keep this filter for later." },
  help: { id: "help", kind: "tooltip", milestone: "made", target: HELP, placement: "right", title: "Need help?", body: "Guides for every page are here." },
  tour: {
    id: "tour", kind: "tour", milestone: "made", title: "Your first project",
    steps: [
      { target: "[data-onramp=load-projects]", title: "Your projects", body: "Load the projects you can see.", placement: "right", advanceOn: { event: "projects_requested" } },
      { target: "[data-onramp=new-project]", title: "Start one", body: "Create a project of your own.", placement: "right" },
      { target: "[data-onramp=search]", title: "Find it again", body: "Search finds any project.", placement: "bottom" },
    ],
  },
  star: { id: "star", kind: "hotspot", milestone: "made", target: STAR, title: "Star a task", body: "Starred tasks stay on top." },
};

/** Opens one app with one tip; records the events the page sends and its console. */
async function open(app, tip) {
  const context = await browser.newContext({ viewport: VIEWPORT });
  await context.route((url) => url.pathname.startsWith("/fw/"), async (route) => {
    const path = new URL(route.request().url()).pathname;
    if (path === "/fw/api/projects") {
      await new Promise((r) => setTimeout(r, FETCH_MS));
      return route.fulfill({ contentType: "application/json", body: JSON.stringify(PROJECTS) });
    }
    if (path.endsWith("/app.js")) return route.fulfill({ contentType: "text/javascript", body: bundles[path.split("/")[2]] });
    return route.fulfill({ contentType: "text/html", body: html(path.split("/")[2]) });
  });
  const page = await context.newPage();
  const consoleMessages = watchConsole(page);
  const sent = [];
  page.on("request", (r) => {
    if (r.method() === "POST" && r.url().endsWith("/v1/batch")) {
      try { sent.push(...JSON.parse(r.postData()).events); } catch { /* not ours */ }
    }
  });
  await page.addInitScript((cfg) => { window.__onramp = cfg; }, { plan: plan(TIPS[tip]), user: { id: "user@example.com", signedUpAt: Date.now() - H } });
  await page.addInitScript(installFrameProbe);
  await page.goto(collector.url + "/fw/" + app + "/");
  await page.evaluate(() => window.onramp.ready);
  await page.waitForFunction(() => window.app && window.app.ready);
  return { page, context, sent, consoleMessages };
}

/** Runs in the page: records every frame just before it is painted (see the top of the file). */
function installFrameProbe() {
  let samples = null, cardSel, targetSel, flip = false, probe, added = 0, animations = 0;
  const rect = (el) => { const b = el.getBoundingClientRect(); return { x: b.x, y: b.y, w: b.width, h: b.height }; };
  const tips = () => document.querySelector("onramp-tips")?.shadowRoot;
  function sample() {
    const cards = [...(tips()?.querySelectorAll(cardSel) || [])];
    const shown = cards.filter((c) => !c.hidden && c.getClientRects().length > 0);
    const target = document.querySelector(targetSel);
    samples.push({
      cards: cards.length,
      shown: shown.length,
      opacity: shown[0] ? getComputedStyle(shown[0]).opacity : null,
      card: shown[0] ? rect(shown[0]) : null,
      target: target ? rect(target) : null,
    });
  }
  function tick() {
    if (!samples) return;
    flip = !flip;
    probe.style.width = flip ? "2px" : "1px";
    requestAnimationFrame(tick);
  }
  window.__frames = {
    start(card, target) {
      samples = []; cardSel = card; targetSel = target; added = 0; animations = 0;
      if (!probe) {
        // In a shadow root of its own, so the SDK's observer of the page never sees it change.
        const host = document.createElement("frame-probe");
        probe = document.createElement("div");
        probe.style.cssText = "position:fixed;left:0;top:0;width:1px;height:1px;pointer-events:none";
        host.attachShadow({ mode: "open" }).appendChild(probe);
        document.documentElement.appendChild(host);
        new ResizeObserver(() => samples && sample()).observe(probe);
        const root = tips();
        new MutationObserver((records) => {
          for (const r of records) for (const n of r.addedNodes) if (n.nodeType === 1 && (n.matches(cardSel) || n.querySelector(cardSel))) added++;
        }).observe(root, { childList: true, subtree: true });
        root.addEventListener("animationstart", (e) => { if (e.target.matches(cardSel)) animations++; });
      }
      requestAnimationFrame(tick);
    },
    stop() { const s = samples; samples = null; return { samples: s, added, animations }; },
  };
}

const tipsRoot = (page) => page.locator("onramp-tips");
/** Marks an element in the page (to check later that it is the same node). */
const mark = (locator, name) => locator.evaluate((el, n) => { el.dataset.fwMark = n; }, name);
const activeInTips = (page) => page.evaluate(() => {
  const a = document.querySelector("onramp-tips").shadowRoot.activeElement;
  return a ? { action: a.dataset.a || null, mark: a.dataset.fwMark || null, text: a.textContent } : null;
});

/** Tip events sent so far (flushes first). */
async function tipEvents(t, name, { timeout = 4000 } = {}) {
  await t.page.evaluate(() => window.onramp.flush());
  return (await eventually(() => {
    const found = t.sent.filter((e) => e.type === "tip" && e.name === name);
    return found.length ? found : null;
  }, { timeout })) || [];
}

/** A card beside its target: 12 px away on one axis, overlapping on the other (± rounding). */
function beside(card, target) {
  const gapX = Math.max(target.x - (card.x + card.w), card.x - (target.x + target.w));
  const gapY = Math.max(target.y - (card.y + card.h), card.y - (target.y + target.h));
  return (Math.abs(gapY - 12) <= 1.5 && gapX < 0) || (Math.abs(gapX - 12) <= 1.5 && gapY < 0);
}

/** A beacon on its target's corner: its centre within the target, grown by the beacon's size. */
function onCorner(beacon, target) {
  const cx = beacon.x + beacon.w / 2, cy = beacon.y + beacon.h / 2;
  return cx >= target.x - 24 && cx <= target.x + target.w + 24 && cy >= target.y - 24 && cy <= target.y + target.h + 24;
}

const inViewport = (r) => r.x >= 0 && r.y >= 0 && r.x + r.w <= VIEWPORT.width && r.y + r.h <= VIEWPORT.height;

/** Every frame showed exactly one card, fully opaque, where `placed` says it belongs. */
function assertSteady(frames, placed, what) {
  assert.ok(frames.samples.length >= 10, `${what}: frames sampled (${frames.samples.length})`);
  frames.samples.forEach((f, k) => {
    assert.equal(f.cards, 1, `${what}: frame ${k} has ${f.cards} cards`);
    assert.equal(f.shown, 1, `${what}: frame ${k} shows no card (a flicker)`);
    assert.equal(f.opacity, "1", `${what}: frame ${k} card opacity ${f.opacity} (an entrance animation replayed)`);
    if (f.target) assert.ok(placed(f.card, f.target), `${what}: frame ${k} card ${JSON.stringify(f.card)} not at target ${JSON.stringify(f.target)}`);
  });
  assert.equal(frames.added, 0, `${what}: no card was recreated`);
  assert.equal(frames.animations, 0, `${what}: no entrance animation replayed`);
}

async function axe(page, what) {
  await page.addScriptTag({ path: AXE });
  const result = await page.evaluate(async () => {
    const r = await window.axe.run({ include: [["onramp-tips"]] }, { resultTypes: ["violations"] });
    return r.violations.map((v) => ({ id: v.id, nodes: v.nodes.map((n) => n.target.join(" ") + " " + n.failureSummary) }));
  });
  assert.deepEqual(result, [], `${what}: axe violations`);
}

async function shot(page, name) {
  await page.waitForTimeout(250);
  await page.screenshot({ path: join(ARTIFACTS, "frameworks-" + name + ".png") });
}

function noErrors(messages) {
  const bad = messages.filter((m) => m.type === "error" || m.type === "pageerror");
  assert.deepEqual(bad, [], "no errors in the page");
}

for (const app of APPS) {
  test(`${app}: a tooltip whose target is re-rendered on every keystroke follows it, never recreated, never missing a frame`, async () => {
    const t = await open(app, "save");
    const card = tipsRoot(t.page).locator(".c");
    await card.waitFor();
    await t.page.waitForTimeout(300); // past the entrance animation
    await mark(card, "card");
    await mark(t.page.locator(SAVE), "first-target");
    await t.page.locator("[data-onramp=search]").focus();
    await t.page.evaluate(([c, s]) => window.__frames.start(c, s), [".c", SAVE]);
    await t.page.keyboard.type("kanban board", { delay: 40 });
    await t.page.waitForTimeout(150);
    const frames = await t.page.evaluate(() => window.__frames.stop());
    // The framework really replaced the target: the first button is gone, another is there.
    assert.equal(await t.page.locator(SAVE).getAttribute("data-fw-mark"), null, "the target was replaced");
    assert.equal(await t.page.locator(SAVE).textContent(), "Save search “kanban board”");
    assertSteady(frames, beside, app + " keystrokes");
    assert.equal(await card.getAttribute("data-fw-mark"), "card", "the same card node");
    assert.equal(await tipsRoot(t.page).locator(".c").count(), 1);
    // The tooltip never took the focus from the input being typed in.
    assert.equal(await t.page.evaluate(() => document.activeElement.dataset.onramp), "search");
    await shot(t.page, app + "-tooltip");
    await axe(t.page, app + " tooltip");
    assert.equal((await tipEvents(t, "tip_shown")).length, 1, "tip_shown once");
    assert.equal(t.sent.filter((e) => e.name === "tip_target_missing").length, 0);
    noErrors(t.consoleMessages);
    await t.context.close();
  });

  test(`${app}: a route change while focus is in a tip keeps the focus there; a route without the target gives it back`, async () => {
    const t = await open(app, "help");
    const card = tipsRoot(t.page).locator(".c");
    await card.waitFor();
    await t.page.waitForTimeout(300);
    await mark(card, "card");
    await mark(t.page.locator(HELP), "home-help");
    // A keyboard user in the page's nav moves into the tooltip's Later button.
    const navSettings = t.page.locator("nav a", { hasText: "Settings" });
    await navSettings.focus();
    const later = card.locator("[data-a=l]");
    await later.focus();
    await mark(later, "later");
    await t.page.evaluate(([c, s]) => window.__frames.start(c, s), [".c", HELP]);
    // The app changes the route by its own code (as a shortcut or a redirect would).
    await t.page.evaluate(() => window.app.navigate("/settings"));
    await t.page.locator("h1", { hasText: "Settings" }).waitFor();
    await t.page.waitForTimeout(300);
    const frames = await t.page.evaluate(() => window.__frames.stop());
    assert.equal(await t.page.locator(HELP).textContent(), "Help with settings", "a new target on the new route");
    assertSteady(frames, beside, app + " route change");
    assert.equal(await card.getAttribute("data-fw-mark"), "card", "the same card node");
    assert.deepEqual(await activeInTips(t.page), { action: "l", mark: "later", text: "Later" }, "focus stays on Later");
    await shot(t.page, app + "-route-focus");
    await axe(t.page, app + " tooltip after a route change");

    // A route with no target: the card stays put through the grace period, then goes away,
    // tip_target_missing is sent once, and focus returns to where it came from (the nav link).
    await t.page.evaluate(() => window.app.navigate("/reports"));
    await t.page.locator("h1", { hasText: "Reports" }).waitFor();
    await t.page.waitForTimeout(GRACE_MS / 3);
    assert.equal(await card.isVisible(), true, "kept during the grace period");
    await card.waitFor({ state: "detached", timeout: GRACE_MS + 2000 });
    assert.equal(await t.page.evaluate(() => document.activeElement.textContent), "Settings", "focus back on the nav link");
    const missing = await tipEvents(t, "tip_target_missing");
    await t.page.waitForTimeout(500);
    await t.page.evaluate(() => window.onramp.flush());
    assert.equal(t.sent.filter((e) => e.name === "tip_target_missing").length, 1, "tip_target_missing once");
    assert.equal(missing[0].props.selector, HELP);
    noErrors(t.consoleMessages);
    await t.context.close();
  });

  test(`${app}: a tour step whose target appears after a fetch waits for it, then shows once`, async () => {
    const t = await open(app, "tour");
    const card = tipsRoot(t.page).locator(".c");
    await card.waitFor();
    assert.match(await card.textContent(), /1 of 3/);
    await t.page.waitForTimeout(300);
    await t.page.evaluate(([c, s]) => window.__frames.start(c, s), [".c", "[data-onramp=new-project]"]);
    // The user does what step 1 asks: the app tracks `projects_requested` and starts a fetch.
    await t.page.locator("[data-onramp=load-projects]").focus();
    await t.page.keyboard.press("Enter");
    await t.page.locator("[data-onramp=new-project]").waitFor({ timeout: FETCH_MS + 3000 });
    await t.page.waitForTimeout(400);
    const frames = await t.page.evaluate(() => window.__frames.stop());
    assert.match(await card.textContent(), /2 of 3/);
    assert.ok(frames.samples.every((f) => f.cards <= 1), app + ": never two cards");
    // Step 1's card leaves, step 2's comes when its target does; no frame shows it elsewhere.
    const firstWithTarget = frames.samples.findIndex((f) => f.target);
    assert.ok(firstWithTarget > 0, "the target appeared during the sampling");
    const after = frames.samples.slice(firstWithTarget);
    // (While its entrance animation runs the card is still sliding its last 4 px in.)
    const settled = after.filter((f) => f.shown === 1 && f.opacity === "1");
    assert.ok(settled.length >= 5, app + ": step 2 shown");
    assert.ok(settled.every((f) => beside(f.card, f.target)), app + ": step 2 beside its target in every frame");
    assert.equal(frames.added, 1, "one card for step 2");
    // Focus stayed where the user was working (tours never steal it).
    assert.equal(await t.page.evaluate(() => document.activeElement.dataset.onramp), "load-projects");
    await shot(t.page, app + "-tour-after-fetch");
    await axe(t.page, app + " tour step 2");
    // Next from the keyboard: the third step's card gets the focus.
    await card.locator("[data-a=n]").focus();
    await t.page.keyboard.press("Enter");
    await eventually(async () => /3 of 3/.test(await card.textContent()));
    assert.equal((await activeInTips(t.page))?.action, "n", "focus on step 3's main button");
    assert.equal(t.sent.filter((e) => e.name === "tip_target_missing").length, 0);
    noErrors(t.consoleMessages);
    await t.context.close();
  });

  test(`${app}: a hotspot in a virtualised list follows its row while it scrolls, out and back, and opened`, async () => {
    const t = await open(app, "star");
    const beacon = tipsRoot(t.page).locator(".h");
    await beacon.waitFor();
    await t.page.waitForTimeout(300);
    await mark(beacon, "beacon");
    const list = t.page.locator("[data-onramp=rows]");
    await list.focus();
    await t.page.evaluate(([c, s]) => window.__frames.start(c, s), [".h", STAR]);
    // Scroll a little per frame (row 7 moves), then far (row 7 is not rendered) and back.
    await list.evaluate(async (el) => {
      const frame = () => new Promise((r) => requestAnimationFrame(r));
      for (let k = 1; k <= 10; k++) { el.scrollTop = k * 9; await frame(); }
      el.scrollTop = 900; await frame(); await frame();
      el.scrollTop = 40; await frame(); await frame(); await frame();
    });
    await t.page.waitForTimeout(200);
    const frames = await t.page.evaluate(() => window.__frames.stop());
    assert.ok(frames.samples.some((f) => !f.target), "row 7 left the DOM while scrolled away");
    frames.samples.forEach((f, k) => {
      assert.equal(f.cards, 1, `frame ${k}: one beacon`);
      // A row scrolled out of the window (not yet unrendered) hides the beacon.
      if (f.target && inViewport(f.target)) assert.ok(f.shown === 1 && onCorner(f.card, f.target), `frame ${k}: beacon ${JSON.stringify(f.card)} on its row ${JSON.stringify(f.target)}`);
    });
    assert.equal(frames.added, 0, "the beacon was never recreated");
    assert.equal(await beacon.getAttribute("data-fw-mark"), "beacon");

    // Opened from the keyboard: focus goes into its card and stays while the list scrolls.
    await beacon.focus();
    await t.page.keyboard.press("Enter");
    const card = tipsRoot(t.page).locator(".c");
    await card.waitFor();
    await t.page.waitForTimeout(300);
    const before = await activeInTips(t.page);
    assert.ok(before && before.action, "focus in the opened hotspot");
    await t.page.evaluate(([c, s]) => window.__frames.start(c, s), [".c", STAR]);
    await list.evaluate(async (el) => {
      const frame = () => new Promise((r) => requestAnimationFrame(r));
      for (let k = 1; k <= 12; k++) { el.scrollTop = 40 + k * 4; await frame(); }
    });
    await t.page.waitForTimeout(150);
    assertSteady(await t.page.evaluate(() => window.__frames.stop()), beside, app + " opened hotspot while scrolling");
    assert.deepEqual(await activeInTips(t.page), before, "focus kept in the card");
    await shot(t.page, app + "-hotspot-list");
    await axe(t.page, app + " hotspot");

    // Scrolled away for longer than the grace period: hidden, reported once, focus back on the list.
    await list.evaluate((el) => { el.scrollTop = 2000; });
    await card.waitFor({ state: "detached", timeout: GRACE_MS + 2000 });
    assert.equal(await tipsRoot(t.page).locator(".h").count(), 0, "the beacon went with it");
    assert.equal(await t.page.evaluate(() => document.activeElement.dataset.onramp), "rows", "focus back on the list");
    const missing = await tipEvents(t, "tip_target_missing");
    assert.equal(missing.length, 1);
    assert.equal(missing[0].props.selector, STAR);
    noErrors(t.consoleMessages);
    await t.context.close();
  });
}

test("a target moved elsewhere in the page keeps its card; Next to a step whose target comes later moves focus in when it comes", async () => {
  const t = await open("react", "help");
  const card = tipsRoot(t.page).locator(".c");
  await card.waitFor();
  await t.page.waitForTimeout(300);
  await mark(card, "card");
  // The same node, moved (as a keyed list moves a row when it is sorted).
  await t.page.evaluate(([c, s]) => window.__frames.start(c, s), [".c", HELP]);
  const moved = await t.page.evaluate(async () => {
    const help = document.querySelector("[data-onramp=help]");
    const before = help.getBoundingClientRect().y;
    document.querySelector("nav").after(help);
    await new Promise((r) => setTimeout(r, 300));
    return { before, after: help.getBoundingClientRect().y, connected: help.isConnected };
  });
  assert.ok(moved.connected && moved.before - moved.after > 100, "the target moved up the page");
  assertSteady(await t.page.evaluate(() => window.__frames.stop()), beside, "moved target");
  assert.equal(await card.getAttribute("data-fw-mark"), "card", "the same card node");
  noErrors(t.consoleMessages);
  await t.context.close();

  // A tour: Next (from the keyboard) to a step whose target is not rendered yet; when it
  // appears, its card gets the focus.
  const tour = { id: "later", kind: "tour", milestone: "made", steps: [
    { target: "[data-onramp=search]", title: "Search", body: "Find any project." },
    { target: "[data-onramp=appears-later]", title: "Later", body: "This one comes a moment later." },
  ] };
  TIPS.later = tour;
  const u = await open("react", "later");
  const step = tipsRoot(u.page).locator(".c");
  await step.waitFor();
  await step.locator("[data-a=n]").focus();
  await u.page.keyboard.press("Enter");
  await u.page.waitForTimeout(300);
  assert.equal(await tipsRoot(u.page).locator(".c").count(), 0, "step 2 waits for its target");
  await u.page.evaluate(() => {
    const b = document.createElement("button");
    b.dataset.onramp = "appears-later";
    b.textContent = "Arrived";
    document.querySelector("h1").after(b);
  });
  await eventually(async () => /2 of 2/.test((await tipsRoot(u.page).locator(".c").textContent().catch(() => "")) || ""));
  assert.equal((await eventually(() => activeInTips(u.page)))?.action, "n", "focus on step 2's main button (Done)");
  noErrors(u.consoleMessages);
  await u.context.close();
});
