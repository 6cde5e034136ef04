// Browser figures for `cargo xtask bench` (a benchmark, not a test: it measures and prints).
//
// Loads the demo page from a real collector in Debian's headless Chromium, exactly as a
// customer's page loads onramp (the snippet, then the loader, the ES module, the glue and the
// wasm), and prints `key=value` lines:
//   ready_ms          loader script starts executing → SDK ready (median of RUNS cold loads)
//   nav_ready_ms      navigation start → SDK ready
//   tip_ms            a returning signed-up user: navigation start → first tip visible, or n/a
//   tip_after_ready_ms  the same loads: navigation start → SDK ready
//   longtasks_*       long tasks (> 50 ms) from navigation until 1 s after ready, every load
//   track_us          median cost of one onramp.track() (batches of 500, 10 000 calls)
//   first_track_us    mean cost of a fresh page's first 50 track() calls (median over loads)
//   posthog_us        the same for posthog.capture() in the same page, interleaved
//   posthog_memory_us the same for a posthog instance with persistence: "memory"
//   heap_kb           JS heap the SDK adds (page with the SDK minus the page with it blocked)
//   wasm_kb           the SDK's wasm linear memory after init, and after 10 000 tracks
//
// Env: BENCH_COLLECTOR (base URL), BENCH_POSTHOG (posthog-js bundled as an IIFE),
// BENCH_RUNS (default 7).
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { launchBrowser } from "../tests/e2e/harness.mjs";
import { said } from "./said.mjs";

const BASE = process.env.BENCH_COLLECTOR;
const POSTHOG = process.env.BENCH_POSTHOG;
const RUNS = Number(process.env.BENCH_RUNS || 7);
const DEMO = BASE + "/demo/";
const TRACK_BATCHES = 20;
const TRACK_PER_BATCH = 500;
const FIRST_TRACKS = 50;

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const out = (key, value) => console.log(key + "=" + value);

// Runs in the page before any of its scripts: records when the loader starts (it sets
// `onramp.loaded`) and when the SDK is ready (it sets `onramp.ready` to a promise), and
// observes long tasks and long animation frames (which name the scripts that ran).
function instrument() {
  const m = (window.__bench = { longtasks: [], loafs: [] });
  // Tips render in the shadow root of <onramp-tips>: a card, modal, panel, hotspot or launcher.
  const tipVisible = () => {
    const root = document.querySelector("onramp-tips")?.shadowRoot;
    for (const el of root ? root.querySelectorAll(".c,.m,.p,.h,.l") : []) {
      const r = el.getBoundingClientRect();
      if (r.width > 0 && r.height > 0 && getComputedStyle(el).visibility !== "hidden") return true;
    }
    return false;
  };
  const q = [];
  let loaded, ready;
  Object.defineProperty(q, "loaded", {
    configurable: true,
    get: () => loaded,
    set(v) { loaded = v; m.loaderStart = performance.now(); },
  });
  Object.defineProperty(q, "ready", {
    configurable: true,
    get: () => ready,
    // Said on the console, which the driver hears without running anything in the page (see `said`).
    set(p) { ready = p; Promise.resolve(p).then((ok) => { m.readyAt = performance.now(); m.ok = ok; console.debug("onramp-bench:ready"); }); },
  });
  window.onramp = q;
  // The SDK's wasm memory, kept as the loader instantiates the module (its exports' names are
  // minified by `cargo xtask build`, and the served bundle does not hand them out).
  const instantiate = WebAssembly.instantiate;
  WebAssembly.instantiate = async (...args) => {
    const made = await instantiate.apply(WebAssembly, args);
    const exports = (made.instance ?? made).exports;
    m.wasmMemory = Object.values(exports).find((e) => e instanceof WebAssembly.Memory);
    return made;
  };
  const observe = (type, push) => {
    try { new PerformanceObserver((l) => l.getEntries().forEach(push)).observe({ type, buffered: true }); } catch {}
  };
  // The first tip: checked in every animation frame, in the page, so the time is the frame's
  // (reading the clock from the test driver once its poll saw the tip added the round trip to
  // the driver, 40-90 ms on a loaded machine).
  // The driver's poll waits 5 s at most; so does this one.
  const poll = () => (tipVisible() ? ((m.tipAt = performance.now()), console.debug("onramp-bench:tip")) : performance.now() < 5000 && requestAnimationFrame(poll));
  requestAnimationFrame(poll);
  observe("longtask", (e) => m.longtasks.push({ start: e.startTime, duration: e.duration }));
  observe("long-animation-frame", (e) => m.loafs.push({
    start: e.startTime,
    duration: e.duration,
    blocking: e.blockingDuration,
    scripts: e.scripts.map((s) => ({ url: s.sourceURL, duration: s.duration })),
  }));
}

// Runs in the page: the instrumentation's marks and each SDK file's fetch time.
function collect() {
  const files = {};
  for (const e of performance.getEntriesByType("resource")) {
    const name = e.name.split("/").pop();
    // The served, content-hashed module (glue bundled in) and wasm of the full SDK.
    if (/^onramp\.[0-9a-f]{10}\.mjs$/.test(name)) files.module = e.responseEnd;
    if (/^onramp_bg\.[0-9a-f]{10}\.wasm$/.test(name)) files.wasm = e.responseEnd;
  }
  return { ...window.__bench, files };
}

async function heapUsed(cdp) {
  await cdp.send("HeapProfiler.collectGarbage");
  return (await cdp.send("Runtime.getHeapUsage")).usedSize;
}

async function wasmMemory(page) {
  return page.evaluate(() => window.__bench.wasmMemory.buffer.byteLength);
}

async function closedPort() {
  const server = createServer();
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

async function coldLoad(browser, { blockSdk = false, storageState, url = DEMO } = {}) {
  const context = await browser.newContext({ storageState });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  if (blockSdk) await page.route("**/sdk/v1/**", (r) => r.abort());
  await page.addInitScript(instrument);
  const ready = blockSdk ? null : said(page, "ready");
  // Heard from the start: a tip may show before the driver gets to ask.
  const tip = said(page, "tip", 5000).then(() => true, () => false);
  await page.goto(url, { waitUntil: "load" });
  await ready;
  return { context, page, errors, tip };
}

async function main() {
  const browser = await launchBrowser();
  // A first visit: no user yet, so no tip; this is where time to ready is measured.
  const runs = [];
  for (let i = 0; i < RUNS; i++) {
    const { context, page, errors } = await coldLoad(browser);
    await page.waitForTimeout(1000); // let long tasks after ready show up
    const data = await page.evaluate(collect);
    // The cost of a page's first few events, while the SDK's queue is short (the interleaved
    // 10 000-call run below measures it under a long queue).
    data.firstTrackUs = await page.evaluate((n) => {
      const t = performance.now();
      for (let i = 0; i < n; i++) window.onramp.track("bench_event", { i, plan: "trial" });
      return ((performance.now() - t) / n) * 1000;
    }, FIRST_TRACKS);
    runs.push({ ...data, errors });
    await context.close();
  }
  // A returning user who signed up a moment ago: their storage (Trackly's and onramp's) is kept
  // from one sign-up, the HTTP cache is cold; the projects page has a tooltip for them.
  const signup = await coldLoad(browser);
  await signup.page.fill("#signup-name", "Bench");
  await signup.page.fill("#signup-email", "bench@example.com");
  await signup.page.click("#signup-submit");
  const signedUp = await signup.page.waitForFunction(() => window.__bench.tipAt, null, { timeout: 5000 }).then(() => true, () => false); // only whether a tip showed: its time is not read here
  await signup.page.evaluate(() => window.onramp.flush());
  const storageState = await signup.context.storageState();
  await signup.context.close();
  const tips = [];
  for (let i = 0; signedUp && i < RUNS; i++) {
    const { context, page, errors, tip } = await coldLoad(browser, { storageState, url: DEMO + "#/projects" });
    const tipAt = (await tip) ? await page.evaluate(() => window.__bench.tipAt) : null;
    await page.waitForTimeout(1000);
    runs.push({ ...(await page.evaluate(collect)), errors });
    if (tipAt !== null) tips.push(tipAt);
    await context.close();
  }
  const first = runs.slice(0, RUNS);
  const ready = first.map((r) => r.readyAt - r.loaderStart);
  out("runs", RUNS);
  out("ready_ms", median(ready).toFixed(1));
  out("ready_min_ms", Math.min(...ready).toFixed(1));
  out("ready_max_ms", Math.max(...ready).toFixed(1));
  for (const f of ["module", "wasm"]) {
    out("fetched_" + f + "_ms", median(first.map((r) => r.files[f] - r.loaderStart)).toFixed(1));
  }
  out("nav_ready_ms", median(first.map((r) => r.readyAt)).toFixed(1));
  out("first_track_us", median(first.map((r) => r.firstTrackUs)).toFixed(1));
  out("first_tracks", FIRST_TRACKS);
  out("tip_ms", tips.length ? median(tips).toFixed(1) : "n/a");
  out("tip_runs", tips.length);
  if (tips.length) out("tip_after_ready_ms", median(runs.slice(RUNS).map((r) => r.readyAt)).toFixed(1));
  const all = runs.flatMap((r) => r.longtasks);
  out("loads", runs.length);
  out("longtasks_per_load", (all.length / runs.length).toFixed(1));
  out("longtask_max_ms", all.length ? Math.max(...all.map((t) => t.duration)).toFixed(0) : 0);
  // Long animation frames attribute time to script URLs: the SDK's share of the worst frame.
  const sdkScript = (s) => /\/sdk\/v1\//.test(s.url);
  const sdkInLoafs = runs.flatMap((r) => r.loafs).map((f) => f.scripts.filter(sdkScript).reduce((a, s) => a + s.duration, 0));
  out("sdk_longest_script_in_frame_ms", sdkInLoafs.length ? Math.max(...sdkInLoafs).toFixed(0) : 0);
  out("sdk_longtasks_over_50ms", runs.flatMap((r) => r.loafs).filter((f) => f.scripts.some(sdkScript) && f.scripts.filter(sdkScript).reduce((a, s) => a + s.duration, 0) > 50).length);
  out("page_errors", runs.reduce((a, r) => a + r.errors.length, 0));

  // Memory: the same page with the SDK blocked, then with it.
  const blocked = await coldLoad(browser, { blockSdk: true });
  const cdpBlocked = await blocked.page.context().newCDPSession(blocked.page);
  const heapWithout = await heapUsed(cdpBlocked);
  await blocked.context.close();

  const { context, page } = await coldLoad(browser);
  const cdp = await context.newCDPSession(page);
  const heapWith = await heapUsed(cdp);
  out("heap_kb", ((heapWith - heapWithout) / 1024).toFixed(0));
  out("wasm_kb", ((await wasmMemory(page)) / 1024).toFixed(0));

  // posthog-js in the same page, initialised as its docs say, with a dummy key pointing at a
  // closed local port (nothing is sent anywhere) and autocapture off. It drops events from
  // headless and automated browsers (user agent, navigator.webdriver) before doing any work;
  // `opt_out_useragent_filter` makes it do for this page what it does for a person's browser.
  // Its client rate limit (10 events/s, bursts of 100) would drop all but the first 100 calls,
  // each with a console message: raised, so every call does a real capture.
  const port = await closedPort();
  const heapBeforePosthog = await heapUsed(cdp);
  await page.addScriptTag({ content: readFileSync(POSTHOG, "utf8") });
  await page.evaluate((port) => {
    const config = {
      api_host: "http://127.0.0.1:" + port,
      autocapture: false,
      opt_out_useragent_filter: true,
      rate_limiting: { events_per_second: 1e9, events_burst_limit: 1e9 },
    };
    window.posthog.init("phc_bench_dummy_key", config);
    // A second instance without its default cookie persistence, which dominates its profile.
    window.posthogMemory = window.posthog.init("phc_bench_dummy_key", { ...config, persistence: "memory" }, "memory");
  }, port);
  // posthog.capture returns the event it queued, or nothing when it dropped it.
  if (!(await page.evaluate(() => !!window.posthog.capture("bench_probe")))) throw new Error("posthog dropped the probe event");
  out("posthog_heap_kb", (((await heapUsed(cdp)) - heapBeforePosthog) / 1024).toFixed(0));

  // Interleaved batches, so GC and frequency changes hit both alike; per-call time is each
  // batch's time over its calls (performance.now() is coarsened to 100 µs on this page).
  const costs = await page.evaluate(({ batches, per }) => {
    const onramp = [];
    const posthog = [];
    const posthogMemory = [];
    for (let b = 0; b < batches; b++) {
      let t = performance.now();
      for (let i = 0; i < per; i++) window.onramp.track("bench_event", { i, plan: "trial" });
      onramp.push((performance.now() - t) / per);
      t = performance.now();
      for (let i = 0; i < per; i++) window.posthog.capture("bench_event", { i, plan: "trial" });
      posthog.push((performance.now() - t) / per);
      t = performance.now();
      for (let i = 0; i < per; i++) window.posthogMemory.capture("bench_event", { i, plan: "trial" });
      posthogMemory.push((performance.now() - t) / per);
    }
    return { onramp, posthog, posthogMemory };
  }, { batches: TRACK_BATCHES, per: TRACK_PER_BATCH });
  if (!(await page.evaluate(() => !!window.posthog.capture("bench_probe") && !!window.posthogMemory.capture("bench_probe")))) {
    throw new Error("posthog dropped events");
  }
  out("track_calls", TRACK_BATCHES * TRACK_PER_BATCH);
  out("track_us", (median(costs.onramp) * 1000).toFixed(2));
  out("posthog_us", (median(costs.posthog) * 1000).toFixed(2));
  out("posthog_memory_us", (median(costs.posthogMemory) * 1000).toFixed(2));
  out("wasm_after_track_kb", ((await wasmMemory(page)) / 1024).toFixed(0));
  await context.close();
  await browser.close();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
