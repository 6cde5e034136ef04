// How the collector serves the SDK, as browsers receive it: content-hashed files precompressed
// (brotli or gzip by Accept-Encoding) and cached for a year as immutable; loader.js for five
// minutes; the loader fetching the module and the wasm in parallel.
import { test } from "node:test";
import assert from "node:assert/strict";
import { request } from "node:http";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { brotliDecompressSync, gunzipSync } from "node:zlib";
import { useCollectorAndBrowser, watchConsole, eventually, ROOT } from "./harness.mjs";

let collector, browser;
useCollectorAndBrowser((c, b) => { collector = c; browser = b; });

/** A raw GET (no automatic decompression): status, headers and the bytes on the wire. */
function get(path, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = request(collector.url + path, { headers }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on("error", reject);
    req.end();
  });
}

/** The hashed names the built loader points at (the plain files' names are replaced). */
function servedNames() {
  const loader = readFileSync(join(ROOT, "dist", "loader.js"), "utf8");
  const names = [...loader.matchAll(/"([\w.-]+\.[0-9a-f]{10}\.(?:mjs|wasm))"/g)].map((m) => m[1]);
  assert.ok(names.some((n) => n.endsWith(".mjs")) && names.some((n) => n.endsWith(".wasm")), "loader names hashed files: " + names);
  return names;
}

test("hashed files are immutable and precompressed by Accept-Encoding", async () => {
  for (const name of servedNames()) {
    const original = readFileSync(join(ROOT, "dist", name));
    const br = await get("/sdk/v1/" + name, { "accept-encoding": "gzip, deflate, br" });
    assert.equal(br.status, 200, name);
    assert.equal(br.headers["cache-control"], "public, max-age=31536000, immutable", name);
    assert.equal(br.headers["content-encoding"], "br", name);
    assert.match(br.headers["vary"] || "", /accept-encoding/i, name);
    assert.ok(br.body.length < original.length, name + " is smaller on the wire");
    assert.deepEqual(brotliDecompressSync(br.body), original, name + " decodes to the built file");

    const gz = await get("/sdk/v1/" + name, { "accept-encoding": "gzip" });
    assert.equal(gz.headers["content-encoding"], "gzip", name);
    assert.deepEqual(gunzipSync(gz.body), original, name);

    const plain = await get("/sdk/v1/" + name);
    assert.equal(plain.headers["content-encoding"], undefined, name);
    assert.deepEqual(plain.body, original, name);
  }
  const wasm = servedNames().find((n) => n.endsWith(".wasm"));
  assert.equal((await get("/sdk/v1/" + wasm, { "accept-encoding": "br" })).headers["content-type"], "application/wasm",
    "the wasm type survives precompression, so instantiateStreaming compiles while it downloads");
});

test("loader.js is cached for five minutes, so a release reaches pages within minutes", async () => {
  for (const path of ["loader.js", "index.mjs"]) {
    const r = await get("/sdk/v1/" + path, { "accept-encoding": "br" });
    assert.equal(r.status, 200, path);
    assert.equal(r.headers["cache-control"], "public, max-age=300", path);
    assert.equal(r.headers["content-encoding"], "br", path);
  }
  const missing = await get("/sdk/v1/nothing.0123456789.mjs");
  assert.equal(missing.status, 404);
  assert.equal(missing.headers["cache-control"], undefined, "a 404 is not cached for a year");
});

test("the loader fetches the module and the wasm in parallel, and a reload comes from the cache", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const messages = watchConsole(page);
  const [module, wasm] = [".mjs", ".wasm"].map((ext) => servedNames().find((n) => n.endsWith(ext)));
  // Hold the module back: the wasm request must start anyway (no waterfall behind it).
  let release;
  const held = new Promise((r) => (release = r));
  let wasmRequested = false;
  const requested = [];
  page.on("request", (r) => { requested.push(r.url()); if (r.url().endsWith("/" + wasm)) wasmRequested = true; });
  await page.route("**/sdk/v1/" + module, async (route) => { await held; await route.continue(); });
  await page.goto(collector.url + "/demo/");
  await eventually(() => wasmRequested);
  assert.ok(wasmRequested, "the wasm is requested while the module is still on its way");
  release();
  await page.waitForFunction(() => window.onramp.ready);
  assert.equal(await page.evaluate(() => window.onramp.ready), true, "the SDK started");
  const plain = requested.filter((u) => /\/sdk\/v1\/(index\.mjs|onramp\.js|onramp_bg\.wasm)$/.test(u));
  assert.deepEqual(plain, [], "only the hashed files are fetched (the wasm the loader fetched is the one compiled)");
  await page.unroute("**/sdk/v1/" + module);

  // A second page view: the immutable files are not asked of the collector again (counted in
  // its request log, one JSON line per request).
  const served = () => collector.log().split("\n").filter((l) => l.includes("/sdk/v1/" + module) || l.includes("/sdk/v1/" + wasm)).length;
  const before = served();
  assert.ok(before >= 2, "the first page view fetched both");
  await page.goto(collector.url + "/demo/");
  await page.waitForFunction(() => window.onramp.ready);
  assert.equal(served(), before, "hashed files come from the browser cache on the next page");
  assert.deepEqual(messages.filter((m) => m.type === "error" || m.type === "pageerror"), []);
  await context.close();
});

test("the loader requests the plan beside the module and the wasm; the SDK adopts it, and the next page revalidates it", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const messages = watchConsole(page);
  const module = servedNames().find((n) => n.endsWith(".mjs") && n.startsWith("onramp."));
  // The page's own order of events: requests made through fetch, and the wasm's instantiation.
  await context.addInitScript(() => {
    const order = (window.__order = []);
    const fetch = window.fetch;
    window.fetch = function (url) { order.push("fetch " + String(url)); return fetch.apply(this, arguments); };
    const instantiate = WebAssembly.instantiate;
    WebAssembly.instantiate = function () { order.push("instantiate"); return instantiate.apply(this, arguments); };
  });
  // The collector's request log (one JSON line per request), from this test on.
  const planStatuses = () => collector.log().split("\n").filter((l) => l.includes('"path":"/v1/plan"')).map((l) => JSON.parse(l).status);
  const earlier = planStatuses().length;
  const planLines = () => planStatuses().slice(earlier);
  const planRequests = [];
  page.on("request", (r) => { if (r.url().includes("/v1/plan")) planRequests.push(r.url()); });
  // Hold the module back: the plan is asked for anyway, by the loader.
  let release;
  const held = new Promise((r) => (release = r));
  await page.route("**/sdk/v1/" + module, async (route) => { await held; await route.continue(); });
  await page.goto(collector.url + "/demo/");
  await eventually(() => planRequests.length > 0);
  assert.deepEqual(planRequests, [collector.url + "/v1/plan?writeKey=wk_demo"], "asked while the module is still on its way");
  release();
  await page.waitForFunction(() => window.onramp.ready);
  await page.unroute("**/sdk/v1/" + module);
  const order = await page.evaluate(() => window.__order);
  const plan = order.findIndex((e) => e.startsWith("fetch ") && e.includes("/v1/plan"));
  assert.ok(plan >= 0 && plan < order.indexOf("instantiate"), "the plan was requested before the wasm was instantiated: " + order);
  // The SDK runs on the loader's response: a new user's welcome tip, and no second request.
  await page.fill("#signup-name", "Ada");
  await page.fill("#signup-email", "ada@example.com");
  await page.click("#signup-submit");
  await page.locator("onramp-tips .m").first().waitFor();
  assert.equal(planRequests.length, 1, "one plan request for the page view: " + planRequests);
  assert.deepEqual(planLines(), [200], "the collector served the plan once");

  // The next page view revalidates the cached plan (a 304, no body), and the SDK runs on it.
  planRequests.length = 0;
  await page.reload(); // the demo is at #/projects now
  await page.waitForFunction(() => window.onramp.ready);
  await page.locator("onramp-tips").locator(".c, .m, .h, .l").first().waitFor();
  assert.equal(planRequests.length, 1, "one plan request: " + planRequests);
  await eventually(() => planLines().length === 2);
  assert.deepEqual(planLines(), [200, 304], "revalidated: unchanged, not downloaded again");
  assert.deepEqual(messages.filter((m) => m.type === "error" || m.type === "pageerror"), []);
  await context.close();
});
