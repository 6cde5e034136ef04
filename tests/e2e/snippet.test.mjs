// The paste-in snippet (www/sdk/snippet.js, pasted minified in README.md and the demo page)
// when the loader cannot be fetched: its queue stays bounded, it retries, and the calls made
// meanwhile are kept and sent by the SDK once it arrives, on a later page or on the same one.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { transformSync } from "esbuild";
import { useCollectorAndBrowser, watchConsole, eventually, ROOT } from "./harness.mjs";

let collector, browser;
useCollectorAndBrowser((c, b) => { collector = c; browser = b; });

const SNIPPET = transformSync(readFileSync(join(ROOT, "www/sdk/snippet.js"), "utf8"), { minify: true, legalComments: "none" }).code.trim();

test("README.md and the demo page paste the snippet built from www/sdk/snippet.js", () => {
  assert.ok(readFileSync(join(ROOT, "www/demo/index.html"), "utf8").includes(SNIPPET), "demo page");
  const readme = SNIPPET.replace('"/sdk/v1/loader.js"', '"https://YOUR-COLLECTOR/sdk/v1/loader.js"');
  assert.ok(readFileSync(join(ROOT, "README.md"), "utf8").includes(readme), "README");
});

const page = (calls) => `<!doctype html><title>snippet</title><script>${SNIPPET}
onramp.init({ writeKey: "wk_demo", plan: false });
${calls}
</script>`;

/** Opens the page; the loader is unreachable for its first `failures` requests (all if Infinity). */
async function open(context, calls, failures) {
  const tab = await context.newPage();
  const messages = watchConsole(tab);
  const attempts = { n: 0 };
  await tab.route("**/sdk/v1/loader.js", (route) => (attempts.n++ < failures ? route.abort("connectionrefused") : route.continue()));
  await tab.route(collector.url + "/snippet.html", (route) => route.fulfill({ contentType: "text/html", body: page(calls) }));
  await tab.goto(collector.url + "/snippet.html");
  return { tab, attempts, messages };
}

function stored(name) {
  const rows = execFileSync("sqlite3", [collector.db, `SELECT client_ts, user_id FROM events WHERE name = '${name}' ORDER BY client_ts`]).toString().trim();
  return rows ? rows.split("\n").map((r) => r.split("|")) : [];
}

test("an unreachable loader: retried with backoff, the page's calls kept and sent from the next page", async () => {
  const context = await browser.newContext();
  const first = await open(context, `onramp.identify("outage@example.com"); for (let i = 0; i < 3; i++) onramp.track("s_outage", { i });`, Infinity);
  assert.ok(await eventually(() => first.attempts.n >= 2, { timeout: 10000 }), "retried after the first failure");
  const madeAt = Date.now();
  // A page whose loader never arrives stays bounded, calls and clicks alike.
  const length = await first.tab.evaluate(() => { for (let i = 0; i < 500; i++) onramp.track("s_flood", { i }); document.body.click(); return onramp.length; });
  assert.equal(length, 200, "at most 200 calls kept");
  const kept = await first.tab.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith("onramp.early.")).map((k) => JSON.parse(localStorage.getItem(k)).length));
  assert.deepEqual(kept, [4], "identify and the three tracks were kept at the last failure");
  await first.tab.close({ runBeforeUnload: true }); // pagehide keeps the rest (the flood)
  assert.equal(stored("s_outage").length, 0);

  const second = await open(context, "", 0);
  await second.tab.waitForFunction(() => onramp.ready);
  assert.equal(await second.tab.evaluate(() => onramp.ready), true);
  await second.tab.evaluate(() => onramp.flush());
  const rows = stored("s_outage");
  assert.equal(rows.length, 3, "the earlier page's events arrived once");
  assert.ok(rows.every(([ts, user]) => Number(ts) <= madeAt && user === "outage@example.com"), "with their own time and user: " + rows);
  assert.equal(stored("s_flood").length, 195, "the queue held 200 calls: init, identify, three tracks and 195 of the flood");
  assert.deepEqual(await second.tab.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith("onramp.early."))), [], "taken from storage");
  assert.deepEqual(second.messages.filter((m) => m.type === "pageerror"), []);
  await context.close();
});

test("the loader arriving on a later attempt: the page's calls are sent once", async () => {
  const context = await browser.newContext();
  const { tab, attempts } = await open(context, `for (let i = 0; i < 4; i++) onramp.track("s_retry", { i });`, 1);
  await tab.waitForFunction(() => onramp.ready, null, { timeout: 15000 });
  assert.equal(attempts.n, 2, "one failure, then the retry loaded it");
  await tab.evaluate(() => onramp.flush());
  assert.equal(stored("s_retry").length, 4, "once: the copy kept in storage is this page's own, not replayed");
  assert.deepEqual(await tab.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith("onramp.early."))), []);
  await context.close();
});
