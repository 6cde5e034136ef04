// Identity verification end to end: the shipped SDK passes `userHash` from identify() with
// every event of that user; a collector that enforces verification stores the verified user's
// events and refuses events claiming a user without the right hash, and the page is unharmed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { useCollectorAndBrowser, watchConsole, eventually } from "./harness.mjs";

const SECRET = "sk_e2e_identity";
const dir = mkdtempSync(join(tmpdir(), "onramp-identity-"));
const config = join(dir, "projects.json");
writeFileSync(config, JSON.stringify({ projects: [
  { id: "acme", writeKey: "wk_acme", readToken: "rt_acme", allowedOrigins: ["*"], identitySecret: SECRET },
] }));

let collector, browser;
useCollectorAndBrowser((c, b) => { collector = c; browser = b; }, { args: ["--quiet", "--config", config] });

// What the customer's backend computes (docs/IDENTITY.md, Node).
const userHash = (id) => createHmac("sha256", SECRET).update(id).digest("hex");

const PAGE = `<!doctype html><title>identity</title><script type="module">
import * as onramp from "/sdk/v1/index.mjs";
onramp.init({ writeKey: "wk_acme" });
window.onramp = onramp;
window.onrampReady = onramp.load();
</script>`;

function stored(sql) {
  return execFileSync("sqlite3", [collector.db, sql]).toString().trim();
}

test("a verified user's events are stored; a forged identity's are refused", async () => {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const messages = watchConsole(page);
    const answers = [];
    page.on("response", (r) => { if (r.url().endsWith("/v1/batch")) answers.push(r.status()); });
    await page.route(collector.url + "/identity.html", (route) => route.fulfill({ contentType: "text/html", body: PAGE }));
    await page.goto(collector.url + "/identity.html");
    assert.equal(await page.evaluate(() => window.onrampReady), true, "SDK loaded");

    await page.evaluate((hash) => {
      window.onramp.identify("alice@example.com", { plan: "pro", userHash: hash });
      window.onramp.track("verified_event");
      window.onramp.flush();
    }, userHash("alice@example.com"));
    await eventually(() => stored("SELECT count(*) FROM events WHERE name = 'verified_event'") === "1", { timeout: 15000 });
    assert.equal(stored("SELECT user_id FROM events WHERE name = 'verified_event'"), "alice@example.com");
    assert.ok(!stored("SELECT group_concat(props) FROM events").includes(userHash("alice@example.com")), "the hash is not stored as a trait");

    // Someone with the public write key claims to be Bob with a made-up hash.
    await page.evaluate(() => {
      window.onramp.reset();
      window.onramp.identify("bob@example.com", { userHash: "00".repeat(32) });
      window.onramp.track("forged_event");
      window.onramp.flush();
    });
    await eventually(() => answers.includes(400), { timeout: 15000 });
    await page.waitForTimeout(500);
    assert.equal(stored("SELECT count(*) FROM events WHERE user_id = 'bob@example.com'"), "0", "nothing stored as Bob");
    const bad = messages.filter((m) => m.type === "pageerror");
    assert.deepEqual(bad, [], "nothing thrown into the page");
  } finally {
    await context.close();
  }
});
