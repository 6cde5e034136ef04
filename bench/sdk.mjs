// SDK figures per kind of user for `cargo xtask bench` (a benchmark: it measures and prints
// `key=value` lines). Loads the demo page from a real collector in headless Chromium, cold HTTP
// cache each time, and counts the SDK's bytes as Chromium receives them from the collector
// (compressed bodies, `PerformanceResourceTiming.encodedBodySize`, and with headers,
// `transferSize`), for:
//   onboarding  a visitor whose onboarding may need the guide: the full SDK
//   finished    a user the full SDK itself marked as done (every milestone reached, the return
//               interval measured, every tip window closed): the lean tracker alone
// and for each: requests, loader start → ready, a fresh page's first 50 track() calls, and
// track() over 10 000 calls (batches of 500). A repeat view with a warm cache shows what the
// immutable files save. First, a new user's session with three reloads: events the collector
// received against the events it stored.
// Env: BENCH_COLLECTOR (base URL), BENCH_DB (its SQLite file), BENCH_RUNS (default 7).
import { execFileSync } from "node:child_process";
import { launchBrowser } from "../tests/e2e/harness.mjs";
import { said } from "./said.mjs";

const BASE = process.env.BENCH_COLLECTOR;
const DB = process.env.BENCH_DB;
const RUNS = Number(process.env.BENCH_RUNS || 7);
const DEMO = BASE + "/demo/";
const out = (key, value) => console.log(key + "=" + value);
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

// Before the page's scripts: when the loader starts and when the SDK is ready.
function instrument() {
  const m = (window.__bench = {});
  const q = [];
  let loaded, ready;
  Object.defineProperty(q, "loaded", { configurable: true, get: () => loaded, set(v) { loaded = v; m.loaderStart = performance.now(); } });
  Object.defineProperty(q, "ready", {
    configurable: true,
    get: () => ready,
    // Said on the console, which the driver hears without running anything in the page (see `load`).
    set(p) { ready = p; Promise.resolve(p).then((ok) => { m.readyAt = performance.now(); m.ok = ok; console.debug("onramp-bench:ready"); }); },
  });
  window.onramp = q;
}

function sdkFiles() {
  return performance.getEntriesByType("resource")
    .filter((e) => e.name.includes("/sdk/v1/"))
    .map((e) => ({ name: e.name.split("/").pop(), body: e.encodedBodySize, transfer: e.transferSize }));
}

async function load(context) {
  const page = await context.newPage();
  await page.addInitScript(instrument);
  const ready = said(page, "ready");
  await page.goto(DEMO, { waitUntil: "load" });
  await ready;
  const bench = await page.evaluate(() => window.__bench);
  if (!bench.ok) throw new Error("the SDK did not start");
  return { page, ready: bench.readyAt - bench.loaderStart, files: await page.evaluate(sdkFiles) };
}

async function measure(browser, kind, storageState) {
  const runs = [];
  for (let i = 0; i < RUNS; i++) {
    const context = await browser.newContext({ storageState });
    const { page, ready, files } = await load(context);
    const firstTrackUs = await page.evaluate(() => {
      const t = performance.now();
      for (let i = 0; i < 50; i++) window.onramp.track("bench_event", { i, plan: "trial" });
      return ((performance.now() - t) / 50) * 1000;
    });
    runs.push({ ready, files, firstTrackUs });
    if (i === RUNS - 1) {
      const batches = await page.evaluate(() => {
        const costs = [];
        for (let b = 0; b < 20; b++) {
          const t = performance.now();
          for (let i = 0; i < 500; i++) window.onramp.track("bench_event", { i, plan: "trial" });
          costs.push((performance.now() - t) / 500);
        }
        return costs;
      });
      out(kind + "_track_us", (median(batches) * 1000).toFixed(2));
      // The same user's next page view, HTTP cache warm, after this one has gone (as when the
      // user navigates): opened beside it, the new page would start next to a live tab holding
      // the 20 050 events timed above, which is not a repeat visit.
      await page.close();
      const again = await load(context);
      out(kind + "_repeat_bytes", again.files.reduce((a, f) => a + f.transfer, 0));
      out(kind + "_repeat_ready_ms", again.ready.toFixed(1));
    }
    await context.close();
  }
  const files = runs[0].files;
  out(kind + "_files", files.map((f) => f.name + ":" + f.body).join(","));
  out(kind + "_requests", files.length);
  out(kind + "_body_bytes", files.reduce((a, f) => a + f.body, 0));
  out(kind + "_transfer_bytes", files.reduce((a, f) => a + f.transfer, 0));
  out(kind + "_ready_ms", median(runs.map((r) => r.ready)).toFixed(1));
  out(kind + "_first_track_us", median(runs.map((r) => r.firstTrackUs)).toFixed(1));
}

/** A user whose onboarding ended weeks ago, as the full SDK itself finds and marks them. */
async function finishedUser(browser) {
  const context = await browser.newContext();
  const day = 24 * 3600e3;
  const signup = Date.now() - 30 * day;
  const user = "bench-done@example.com";
  const reached = { signed_up: signup + 60e3, project_created: signup + 120e3, teammate_invited: signup + 180e3, file_uploaded: signup + 240e3, kickoff_held: signup + 2 * day };
  const state = {
    v: 1, signup, firstSeen: signup, lastTs: signup + 3 * day, reached, counts: {},
    done: { onboarding_completed: signup + 2 * day, time_to_value: signup + 240e3, first_session_length: signup + day, return_interval: signup + day },
    firstStart: signup, firstEnd: signup + 600e3, secondStart: signup + day, lastActivity: signup + 3 * day,
    session: { start: signup + 3 * day, last: signup + 3 * day, tips: {}, lastTip: null }, tips: {},
  };
  const trackly = { user: { id: user, name: "Done", signedUpAt: signup }, projects: [{ name: "P" }], team: [], files: [] };
  await context.addInitScript(([user, state, trackly]) => {
    if (localStorage.getItem("bench-seeded")) return;
    localStorage.setItem("bench-seeded", "1");
    localStorage.setItem("onramp.state." + user, state);
    localStorage.setItem("trackly.state", trackly);
  }, [user, JSON.stringify(state), JSON.stringify(trackly)]);
  const { page } = await load(context);
  await page.waitForFunction(() => localStorage.getItem("onramp.lean"), null, { timeout: 10000 });
  await page.evaluate(() => window.onramp.flush());
  const storageState = await context.storageState();
  await context.close();
  return storageState;
}

/** Events the collector received (`onramp_events_accepted_total`: every event of every
 *  committed batch, repeats included) and stored (rows in its SQLite file: one per event id). */
async function counts() {
  const text = await (await fetch(BASE + "/metrics")).text();
  const received = Number((text.match(/^onramp_events_accepted_total (\d+)/m) || [])[1]);
  const stored = Number(execFileSync("sqlite3", [DB, "SELECT count(*) FROM events"]).toString().trim());
  return { received, stored };
}

/** A new user's session on the demo with three reloads: events the collector received (fetches
 *  and beacons, repeats included) against the events it stored, and the request bytes sent
 *  against the bytes of the distinct events stored. */
async function session(browser) {
  const before = await counts();
  const context = await browser.newContext();
  const page = await context.newPage();
  // Bytes on the wire to the collector: every batch (fetch or beacon) and every question about
  // which events it stores (`/v1/known`), against the bytes of the distinct events they carried.
  // Counted in the page, where the SDK hands the bodies to fetch and sendBeacon (Chromium does
  // not report the bodies of keepalive requests and beacons to Playwright); kept in
  // sessionStorage across the reloads.
  await context.addInitScript(() => {
    const size = (text) => new TextEncoder().encode(text).length;
    const add = (url, body) => {
      url = String(url);
      if (typeof body !== "string" || !/\/v1\/(batch|known)/.test(url)) return;
      const wire = JSON.parse(sessionStorage.getItem("bench.wire") || '{"sent":0,"known":0,"events":{}}');
      wire.sent += size(body);
      if (url.includes("/v1/known")) wire.known++;
      else for (const e of JSON.parse(body).events || []) wire.events[e.id] = size(JSON.stringify(e));
      sessionStorage.setItem("bench.wire", JSON.stringify(wire));
    };
    const fetch = window.fetch;
    window.fetch = function (input, init) {
      try { add(input, init && init.body); } catch {}
      return fetch.apply(this, arguments);
    };
    const beacon = navigator.sendBeacon.bind(navigator);
    navigator.sendBeacon = (url, data) => {
      try { add(url, data); } catch {}
      return beacon(url, data);
    };
  });
  await page.goto(DEMO);
  await page.fill("#signup-name", "Session");
  await page.fill("#signup-email", "session@example.com");
  await page.click("#signup-submit");
  await page.click("#new-project");
  await page.fill("#project-name", "One");
  await page.click("#project-create");
  await page.reload();
  await page.click("a[data-route=team]");
  await page.click("#invite-teammate");
  await page.fill("#invite-email", "mate@example.com");
  await page.click("#invite-send");
  await page.reload();
  await page.click("a[data-route=projects]");
  await page.click("#new-project");
  await page.fill("#project-name", "Two");
  await page.click("#project-create");
  await page.reload();
  // Past the acknowledgement window: whatever the reloads left on its way has been adopted.
  await page.waitForTimeout(7000);
  await page.evaluate(() => window.onramp.flush());
  const wire = await page.evaluate(() => JSON.parse(sessionStorage.getItem("bench.wire") || '{"sent":0,"known":0,"events":{}}'));
  await context.close();
  const after = await counts();
  out("session_received", after.received - before.received);
  out("session_stored", after.stored - before.stored);
  out("session_sent_bytes", wire.sent);
  out("session_event_bytes", Object.values(wire.events).reduce((a, b) => a + b, 0));
  out("session_known_requests", wire.known);
}

async function main() {
  const browser = await launchBrowser();
  out("runs", RUNS);
  await session(browser);
  await measure(browser, "onboarding");
  await measure(browser, "finished", await finishedUser(browser));
  await browser.close();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
