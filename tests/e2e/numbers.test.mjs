// Numbers in event properties survive the shipped wasm SDK exactly. In the browser the SDK reads
// and writes fractions and exponents with JavaScript's own conversions (src/core/num.rs), not
// Rust's float formatting, so this checks the real bundle: what it sends parses back to the
// same values, and the collector accepts JavaScript's exponent notation.
import { test } from "node:test";
import assert from "node:assert/strict";
import { useCollectorAndBrowser, watchConsole, eventually } from "./harness.mjs";

let collector, browser;
useCollectorAndBrowser((c, b) => { collector = c; browser = b; });

test("integers, fractions and exponents in props reach the collector unchanged", async () => {
  const page = await (await browser.newContext()).newPage();
  const messages = watchConsole(page);
  const sent = [];
  await page.route("**/v1/batch", async (route) => {
    const response = await route.fetch();
    sent.push({ body: route.request().postData(), status: response.status() });
    await route.fulfill({ response });
  });
  await page.goto(collector.url + "/demo/");
  await page.evaluate(() => window.onramp.ready);
  const props = {
    zero: 0, int: 42, negative: -7, timestamp: 1700000000123, fraction: 0.1, third: 1 / 3,
    tiny: 1e-7, huge: 1e21, beyondExact: 2 ** 60, negativeFraction: -2.5e-3,
  };
  await page.evaluate((props) => {
    window.onramp.track("numbers_checked", props);
    window.onramp.flush();
  }, props);
  const batch = await eventually(() => sent.find((s) => s.body && s.body.includes("numbers_checked")));
  assert.ok(batch, "a batch with the event was sent");
  assert.equal(batch.status, 200, "the collector accepted it");
  const event = JSON.parse(batch.body).events.find((e) => e.name === "numbers_checked");
  assert.deepEqual(event.props, props);
  assert.deepEqual(messages.filter((m) => m.type === "error" || m.type === "pageerror"), []);
});
