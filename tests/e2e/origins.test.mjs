// A write key is public but bound to its project's origins: the SDK embedded by script tag on
// the customer's own origin (cross-origin to the collector) delivers; the same key copied onto
// another origin is refused with 403 and nothing is stored. The customer's pages come from a
// second server on loopback: http://127.0.0.1:PORT is the project's origin, http://localhost:PORT
// (the same server, another origin) stands in for a site that copied the key.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createServer } from "node:http";
import { startCollector, launchBrowser, watchConsole, eventually } from "./harness.mjs";

let collector, browser, site, appOrigin, otherOrigin;

before(async () => {
  site = createServer((req, res) => {
    res.setHeader("content-type", "text/html");
    res.end(`<!doctype html><title>shop</title>
<script async src="${collector.url}/sdk/v1/loader.js" data-write-key="wk_shop" data-collector="${collector.url}"></script>`);
  });
  await new Promise((resolve) => site.listen(0, "127.0.0.1", resolve));
  const port = site.address().port;
  appOrigin = "http://127.0.0.1:" + port;
  otherOrigin = "http://localhost:" + port;
  collector = await startCollector({ args: ["--quiet", "--project", "shop:wk_shop:rt_shop:" + appOrigin] });
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await collector?.stop();
  site?.close();
});

function storedCount(name) {
  return Number(execFileSync("sqlite3", [collector.db, `SELECT count(*) FROM events WHERE name = '${name}'`]).toString().trim());
}

async function embed(origin) {
  const page = await (await browser.newContext()).newPage();
  const messages = watchConsole(page);
  await page.goto(origin + "/");
  await page.waitForFunction(() => window.onramp && window.onramp.ready, null, { timeout: 15000 });
  assert.equal(await page.evaluate(() => window.onramp.ready), true, "SDK loaded cross-origin from the collector");
  return { page, messages };
}

test("the write key works from its project's origin, cross-origin to the collector", async () => {
  const { page, messages } = await embed(appOrigin);
  await page.evaluate(() => { for (let i = 0; i < 5; i++) window.onramp.track("o_app", { i }); window.onramp.flush(); });
  assert.ok(await eventually(() => storedCount("o_app") === 5, { timeout: 15000 }), "stored");
  // The project has no plan: the collector answers 204, so not even that shows in the console.
  const bad = messages.filter((m) => m.type === "pageerror" || m.type === "error");
  assert.deepEqual(bad, [], "no CORS or other errors in the page");
  console.log("allowed origin: 5 sent, " + storedCount("o_app") + " stored");
});

test("the same key from another origin is refused once: one console line naming the origin, no retry", async () => {
  const { page, messages } = await embed(otherOrigin);
  // Keepalive fetches do not surface in page events; the collector's metrics count the 403s.
  const refused = async () => {
    const text = await (await fetch(collector.url + "/metrics")).text();
    return Number((text.match(/onramp_events_rejected_total\{reason="origin"\} (\d+)/) || [])[1] || 0);
  };
  // flush() resolves once the events have left the queue: here, dropped as refused.
  await page.evaluate(() => { for (let i = 0; i < 5; i++) window.onramp.track("o_evil", { i }); return window.onramp.flush(); });
  assert.equal(await refused(), 5, "one batch, refused with 403");
  const lines = () => messages.filter((m) => m.type === "error" && m.text.startsWith("onramp:"));
  assert.equal(lines().length, 1, "one console line: " + JSON.stringify(messages));
  assert.ok(lines()[0].text.includes(otherOrigin) && lines()[0].text.includes("allowedOrigins"), lines()[0].text);

  // Later events are dropped on the page: no request, no retry of the refused batch.
  await page.evaluate(() => { for (let i = 0; i < 3; i++) window.onramp.track("o_evil", { i }); return window.onramp.flush(); });
  await page.waitForTimeout(2500); // longer than the first retry's backoff would be
  assert.equal(await refused(), 5, "nothing sent again");
  assert.equal(lines().length, 1, "still one line");
  assert.equal(storedCount("o_evil"), 0);
  console.log("refused origin: 8 tracked, 5 sent once, 0 stored (403)");
});
