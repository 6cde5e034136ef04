// Delivery promises the page can see, in headless Chromium against the real collector: flush()
// resolves only once the collector has acknowledged (so committed) what was queued before it,
// and events beaconed when the page is hidden are not sent again on pagehide. "Sent" is counted
// by the collector itself (its request log: one JSON line per request, with the batch's size).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { useCollectorAndBrowser, watchConsole, eventually, sentEvents } from "./harness.mjs";

let collector, browser;
useCollectorAndBrowser((c, b) => { collector = c; browser = b; });

const PAGE = `<!doctype html><title>delivery</title><script type="module">
import * as onramp from "/sdk/v1/index.mjs";
onramp.init({ writeKey: "wk_demo", plan: false });
window.onramp = onramp;
window.onrampReady = onramp.load();
</script>`;

async function openPage(context) {
  const page = await context.newPage();
  const messages = watchConsole(page);
  await page.route(collector.url + "/delivery.html", (route) => route.fulfill({ contentType: "text/html", body: PAGE }));
  await page.goto(collector.url + "/delivery.html");
  assert.equal(await page.evaluate(() => window.onrampReady), true, "SDK loaded");
  return { page, messages };
}

function stored(name) {
  return Number(execFileSync("sqlite3", [collector.db, `SELECT count(*) FROM events WHERE name = '${name}'`]).toString().trim());
}

/** Events the collector received so far, over every batch request (fetch and beacon). */
function received() {
  let n = 0;
  for (const line of collector.log().split("\n")) {
    if (line.includes('"/v1/batch"')) n += JSON.parse(line).events || 0;
  }
  return n;
}

// Plain props (strings, finite numbers, booleans, nulls) are handed to the wasm entry by entry,
// anything else goes through JSON.stringify/JSON.parse (index.mjs `trackNow`): both must give
// what JSON gives. Props that turn out not plain after some entries were handed over (the third
// case) must lose those entries, not send them twice or leave them to the next call.
test("track() props arrive as JSON makes them, whether plain or not", async () => {
  const context = await browser.newContext();
  const { page, messages } = await openPage(context);
  const sent = sentEvents(page);
  const expected = await page.evaluate(async () => {
    const cases = [
      { plan: "trial", seats: 3, ratio: 0.5, on: true, none: null, "k\u00fcy": "\ud83d\ude00\"\\", "": "" },
      { n: NaN, inf: -Infinity, skip: undefined, fn() {}, when: new Date(0), nested: { a: [1, "b", null, { c: true }] } },
      { first: "given", second: 2, later: { nested: 1 }, last: false },
      { toJSON() { return { replaced: 1 }; } },
      Object.assign(Object.create({ inherited: 1 }), { own: 2 }),
      [1, 2],
      "text",
      null,
    ];
    cases.forEach((props, i) => window.onramp.track("d_props_" + i, props));
    await window.onramp.flush();
    // The definition: what JSON makes of the props; anything but an object is no props.
    return cases.map((p) => {
      const json = JSON.parse(JSON.stringify(p ?? {}));
      return json && typeof json === "object" && !Array.isArray(json) ? json : {};
    });
  });
  expected.forEach((props, i) => {
    const event = sent.find((e) => e.name === "d_props_" + i);
    assert.ok(event, "d_props_" + i + " sent");
    assert.deepEqual(event.props, props, "case " + i);
    assert.deepEqual(Object.keys(event.props), Object.keys(props), "case " + i + ": keys in the page's order");
  });
  assert.deepEqual(messages.filter((m) => m.type === "error" || m.type === "pageerror"), []);
  await context.close();
});

test("flush() resolves after the collector acknowledged every event queued before it", async () => {
  const context = await browser.newContext();
  const { page, messages } = await openPage(context);
  const storedWhenResolved = await page.evaluate(async () => {
    for (let i = 0; i < 7; i++) window.onramp.track("d_flush", { i });
    await window.onramp.flush();
    return true;
  });
  assert.equal(storedWhenResolved, true);
  // The 200 comes only after the commit: at resolution time every event is in the file.
  assert.equal(stored("d_flush"), 7, "all stored by the time flush() resolved");

  // While the collector refuses (a 503 from a route standing in for an outage) the promise waits.
  let refusing = true;
  let attempts = 0;
  await page.route("**/v1/batch", (route) => {
    if (!refusing) return route.continue();
    attempts++;
    return route.fulfill({ status: 503, headers: { "retry-after": "0" }, body: "" });
  });
  await page.evaluate(() => {
    window.flushed = false;
    for (let i = 0; i < 3; i++) window.onramp.track("d_flush_later", { i });
    window.onramp.flush().then(() => { window.flushed = true; });
  });
  assert.ok(await eventually(() => attempts >= 1, { timeout: 10000, interval: 20 }), "a refused attempt");
  assert.equal(await page.evaluate(() => window.flushed), false, "not resolved while unacknowledged");
  assert.equal(stored("d_flush_later"), 0);
  refusing = false;
  await page.evaluate(() => window.onramp.flush()); // retry now rather than after the backoff
  assert.ok(await eventually(() => page.evaluate(() => window.flushed), { timeout: 15000 }), "resolved after the acknowledgement");
  assert.equal(stored("d_flush_later"), 3);
  assert.deepEqual(messages.filter((m) => m.type === "pageerror"), []);
  await context.close();
});

test("events beaconed when the page was hidden are not sent again on pagehide", async () => {
  const context = await browser.newContext();
  const { page } = await openPage(context);
  await page.evaluate(() => window.onramp.flush()); // anything the page sent on its own is out
  const before = received();
  await page.evaluate(() => {
    for (let i = 0; i < 5; i++) window.onramp.track("d_beacon", { i });
    // The tab is switched away (hidden), then closed: as Chromium fires them on a reload.
    Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
    Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "hidden" });
    document.dispatchEvent(new Event("visibilitychange"));
  });
  assert.ok(await eventually(() => stored("d_beacon") === 5, { timeout: 10000 }), "the hidden page's beacon arrived");
  await page.close({ runBeforeUnload: true });
  // Give a second beacon, if any, the time to arrive: the collector logs each request as it
  // answers it, and a later page (none here) would only adopt after the window.
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(received() - before, 5, "each event sent once: hidden beacon, nothing on pagehide");
  await context.close();
});

test("ids come from crypto.getRandomValues, not Math.random", async () => {
  const context = await browser.newContext();
  // Every byte crypto.getRandomValues hands out, and the ids of the events sent. The SDK draws
  // its random bytes in pools (one call serves many ids), so calls are not counted: each id's
  // random bytes must be among those drawn.
  await context.addInitScript(() => {
    window.randomCalls = { drawn: "", math: 0 };
    const hex = (a) => Array.from(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), (b) => b.toString(16).padStart(2, "0")).join("");
    const getRandomValues = crypto.getRandomValues.bind(crypto);
    crypto.getRandomValues = (a) => { const r = getRandomValues(a); window.randomCalls.drawn += hex(a) + " "; return r; };
    const random = Math.random;
    Math.random = () => { window.randomCalls.math++; return random(); };
    window.sentIds = [];
    const fetch = window.fetch;
    window.fetch = function (url, init) {
      if (String(url).endsWith("/v1/batch")) for (const e of JSON.parse(init.body).events) window.sentIds.push(e.id);
      return fetch.apply(this, arguments);
    };
  });
  const { page } = await openPage(context);
  await page.evaluate(() => { for (let i = 0; i < 3; i++) window.onramp.track("d_ids"); return window.onramp.flush(); });
  const seen = await page.evaluate(() => ({ ...window.randomCalls, ids: window.sentIds, anon: localStorage.getItem("onramp.anonymousId") }));
  assert.ok(seen.ids.length >= 3, "the events were sent: " + JSON.stringify(seen.ids));
  // A UUIDv7's last 6 bytes are random bytes as drawn (the variant bits touch an earlier one).
  const tail = (id) => id.replace(/-/g, "").slice(20);
  for (const id of [seen.anon, ...seen.ids]) {
    assert.ok(seen.drawn.includes(tail(id)), "the random bytes of " + id + " came from crypto.getRandomValues");
  }
  assert.equal(seen.math, 0, "Math.random is never used");
  await context.close();
});

test("a call made from inside a host callback onramp invoked is kept, in order, not dropped", async () => {
  const context = await browser.newContext();
  // The page wraps fetch (as monitoring scripts do) and calls onramp from inside the wrapper,
  // which runs while onramp is sending its batch.
  await context.addInitScript(() => {
    const fetch = window.fetch;
    window.reentered = 0;
    window.fetch = function (url, init) {
      if (String(url).endsWith("/v1/batch") && window.reentered === 0) {
        window.reentered++;
        window.onramp.track("d_reentrant", { n: 1 });
        window.onramp.identify("reentrant@example.com");
        window.onramp.track("d_reentrant", { n: 2 });
      }
      return fetch.call(this, url, init);
    };
  });
  const { page, messages } = await openPage(context);
  await page.evaluate(() => { window.onramp.track("d_before"); return window.onramp.flush(); });
  assert.equal(await page.evaluate(() => window.reentered), 1);
  await page.evaluate(() => window.onramp.flush());
  const rows = execFileSync("sqlite3", [collector.db, "SELECT json_extract(props, '$.n'), coalesce(user_id, '') FROM events WHERE name = 'd_reentrant' ORDER BY client_ts, json_extract(props, '$.n')"]).toString().trim();
  assert.equal(rows, "1|\n2|reentrant@example.com", "both kept, the identify between them applied in order");
  assert.deepEqual(messages.filter((m) => m.type === "pageerror" || (m.type === "error" && m.text.startsWith("onramp"))), []);
  await context.close();
});

/** Requests to `path` in the collector's request log. */
function requests(path) {
  return collector.log().split("\n").filter((line) => line.includes(`"${path}"`)).length;
}

test("a reload does not send again what the closing page's beacon delivered, and resends what it lost", async () => {
  const context = await browser.newContext();
  let dropBeacons = false;
  // sendBeacon requests ("ping"), lost on their way while dropBeacons is set.
  await context.route("**/v1/batch", (route) =>
    dropBeacons && route.request().resourceType() === "ping" ? route.abort() : route.continue());
  const { page } = await openPage(context);
  await page.evaluate(() => window.onramp.flush());
  const before = received();
  const asked = requests("/v1/known");
  await page.evaluate(() => { for (let i = 0; i < 4; i++) window.onramp.track("d_reload", { i }); });
  await page.reload(); // pagehide beacons the four; the new page adopts them after the window
  assert.equal(await page.evaluate(() => window.onrampReady), true);
  assert.ok(await eventually(() => stored("d_reload") === 4, { timeout: 10000 }), "the beacon arrived");
  // The adopting page asks which of them the collector stores, and sends none again.
  assert.ok(await eventually(() => requests("/v1/known") > asked, { timeout: 15000 }), "asked after the window");
  await page.evaluate(() => window.onramp.flush());
  assert.equal(received() - before, 4, "each event received once over the reload");

  // The beacon is lost this time: the adopting page learns so and sends the events itself.
  dropBeacons = true;
  await page.evaluate(() => { for (let i = 0; i < 3; i++) window.onramp.track("d_reload_lost", { i }); });
  await page.reload();
  dropBeacons = false;
  assert.equal(await page.evaluate(() => window.onrampReady), true);
  assert.ok(await eventually(() => stored("d_reload_lost") === 3, { timeout: 20000 }), "nothing lost");
  assert.equal(stored("d_reload"), 4);
  await context.close();
});

test("a queue another tab left is adopted at the first tick, after ready, and sent once", async () => {
  // The queue as the SDK itself stores it: a page whose collector cannot be reached (a closed
  // port, so not even its beacon on close gets through).
  const first = await browser.newContext();
  const offline = await first.newPage();
  await offline.route(collector.url + "/offline.html", (route) => route.fulfill({
    contentType: "text/html",
    body: PAGE.replace('plan: false', 'plan: false, collector: "http://127.0.0.1:9"'),
  }));
  await offline.goto(collector.url + "/offline.html");
  assert.equal(await offline.evaluate(() => window.onrampReady), true, "SDK loaded");
  await offline.evaluate(() => { for (let i = 0; i < 3; i++) window.onramp.track("d_left_behind", { i }); });
  const queue = await eventually(() => offline.evaluate(() => {
    const key = Object.keys(localStorage).find((k) => k.startsWith("onramp.q."));
    return key && JSON.parse(localStorage.getItem(key)).length === 3 && localStorage.getItem(key);
  }));
  assert.ok(queue, "three events stored");
  await first.close();

  // Another browser profile holds that queue for a tab that closed with nothing on its way.
  const context = await browser.newContext();
  await context.addInitScript((queue) => {
    if (sessionStorage.getItem("seeded")) return;
    sessionStorage.setItem("seeded", "1");
    localStorage.setItem("onramp.q.closed-tab", queue);
    localStorage.setItem("onramp.hb.closed-tab", "gone");
  }, queue);
  const before = received();
  const { page, messages } = await openPage(context);
  // Ready, and the scan of other tabs' queues has not run: it waits for the first tick.
  assert.equal(await page.evaluate(() => localStorage.getItem("onramp.q.closed-tab") !== null), true, "left for the first tick");
  assert.equal(stored("d_left_behind"), 0);
  assert.ok(await eventually(() => stored("d_left_behind") === 3, { timeout: 10000 }), "adopted and sent");
  assert.equal(await page.evaluate(() => localStorage.getItem("onramp.q.closed-tab")), null, "taken from storage");
  await page.evaluate(() => window.onramp.flush());
  await page.waitForTimeout(1500); // another tick: nothing goes again
  assert.equal(received() - before, 3, "each event received once");
  assert.deepEqual(messages.filter((m) => m.type === "error"), []);
  await context.close();
});
