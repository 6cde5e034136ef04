// What onramp adds to the page lives as long as the SDK it serves: the page-lifetime listeners
// (pagehide, pageshow, online, visibilitychange) and the tick timer are owned by one value in
// the browser layer, so a second init replaces them (never two of each) and a disabled SDK
// removes them. Counted by wrapping the page's own addEventListener/removeEventListener and
// setTimeout/clearTimeout before anything loads.
import { test } from "node:test";
import assert from "node:assert/strict";
import { useCollectorAndBrowser, watchConsole, eventually } from "./harness.mjs";

let collector, browser;
useCollectorAndBrowser((c, b) => { collector = c; browser = b; });

const PAGE = `<!doctype html><title>lifetime</title><script type="module">
import * as onramp from "/sdk/v1/index.mjs";
onramp.init({ writeKey: "wk_demo", plan: false });
window.onramp = onramp;
window.onrampReady = onramp.load();
</script>`;

function instrument() {
  const kinds = ["pagehide", "pageshow", "online", "visibilitychange"];
  const live = (window.__listeners = new Map());
  const add = EventTarget.prototype.addEventListener;
  const remove = EventTarget.prototype.removeEventListener;
  EventTarget.prototype.addEventListener = function (type, fn, options) {
    if (kinds.includes(type)) live.set(fn, type);
    return add.call(this, type, fn, options);
  };
  EventTarget.prototype.removeEventListener = function (type, fn, options) {
    if (kinds.includes(type)) live.delete(fn);
    return remove.call(this, type, fn, options);
  };
  // Pending one-second timers: onramp's tick (nothing else on this page uses that delay).
  const ticks = (window.__ticks = new Set());
  const set = window.setTimeout;
  const clear = window.clearTimeout;
  window.setTimeout = function (fn, ms, ...rest) {
    let id;
    const run = typeof fn === "function" ? (...a) => { ticks.delete(id); return fn(...a); } : fn;
    id = set.call(window, run, ms, ...rest);
    if (ms === 1000) ticks.add(id);
    return id;
  };
  window.clearTimeout = function (id) {
    ticks.delete(id);
    return clear.call(window, id);
  };
}

const count = (page) => page.evaluate(() => {
  const byKind = {};
  for (const type of window.__listeners.values()) byKind[type] = (byKind[type] || 0) + 1;
  return { listeners: byKind, ticks: window.__ticks.size };
});

test("a second init replaces the page listeners and the tick; a disabled SDK removes them", async () => {
  const context = await browser.newContext();
  await context.addInitScript(instrument);
  const page = await context.newPage();
  const messages = watchConsole(page);
  await page.route(collector.url + "/lifetime.html", (route) => route.fulfill({ contentType: "text/html", body: PAGE }));
  await page.goto(collector.url + "/lifetime.html");
  assert.equal(await page.evaluate(() => window.onrampReady), true);
  const one = { listeners: { pagehide: 1, pageshow: 1, online: 1, visibilitychange: 1 }, ticks: 1 };
  assert.deepEqual(await count(page), one, "one of each while running");
  await page.waitForTimeout(2500); // a few ticks: each replaces itself
  assert.deepEqual(await count(page), one, "still one tick pending after ticking");

  await page.evaluate(() => window.onramp.init({ writeKey: "wk_demo", plan: false }));
  assert.deepEqual(await count(page), one, "a second init replaces them: still one of each");

  // A plan that does not validate disables onramp: its listeners and timer go.
  await page.evaluate(() => window.onramp.init({ writeKey: "wk_demo", plan: { version: "x", milestones: [{ id: "a" }] } }));
  await eventually(() => messages.some((m) => m.type === "error"));
  assert.deepEqual(await count(page), { listeners: {}, ticks: 0 }, "nothing left behind");
  await page.waitForTimeout(1500);
  assert.deepEqual(await count(page), { listeners: {}, ticks: 0 }, "and nothing comes back");
  assert.equal(messages.filter((m) => m.type === "error").length, 1, "one console line");
  await context.close();
});
