// The plan editor (dashboard/plan.html) in real headless Chromium against a real collector:
// a broken plan is refused with the collector's own pointer, placed on the right line; a fixed
// one is published with a message and is what the demo's next page load shows; rollback puts
// the previous version back; suggestions come from the schema; any value the API returns
// draws; axe-core finds nothing. Screenshots in tests/e2e/artifacts/.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { useCollectorAndBrowser, watchConsole, eventually, assertAxeClean, ARTIFACTS, ROOT } from "./harness.mjs";

const DEMO = readFileSync(join(ROOT, "pkg-config", "plans", "trackly.json"), "utf8");
let collector, browser;
useCollectorAndBrowser((c, b) => { collector = c; browser = b; });

async function editor() {
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  const messages = watchConsole(page);
  await page.goto(collector.url + "/dashboard/plan.html#editor=et_demo");
  await page.waitForSelector("body[data-loaded=true]");
  return { page, messages };
}

async function setText(page, text) {
  await page.$eval("#plan-text", (t, v) => { t.value = v; t.dispatchEvent(new InputEvent("input")); }, text);
  await page.waitForSelector("#plan-text[data-checked=valid], #plan-text[data-checked=invalid]");
}

function axe(page, what) {
  return assertAxeClean(page, what);
}

/** The demo as a new user: signs up and returns the welcome modal's title. */
async function welcomeTitle() {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(collector.url + "/demo/");
  await page.evaluate(() => window.onramp.ready);
  await page.fill("#signup-name", "Pat");
  await page.fill("#signup-email", "pat" + Math.random().toString(36).slice(2) + "@example.com");
  await page.click("#signup-submit");
  const modal = page.locator("onramp-tips").locator(".m");
  await modal.waitFor();
  const title = await modal.locator("h2").first().textContent();
  await context.close();
  return title;
}

async function published(page, n) {
  try {
    await page.waitForFunction((n) => document.getElementById("status").textContent.includes("version " + n + " is live"), n, { timeout: 10000 });
  } catch (e) {
    throw new Error("not published as version " + n + ": status says " + JSON.stringify(await page.textContent("#status")));
  }
}

test("the editor refuses a broken plan at its pointer, publishes a fixed one the next page load uses, and rolls back", async () => {
  const { page, messages } = await editor();
  assert.ok(!page.url().includes("et_demo"), "the editor token leaves the address bar");
  assert.equal(await page.inputValue("#plan-text"), DEMO, "the live plan (the start-up file) is in the editor");
  assert.match(await page.textContent("#status"), /start-up file/);
  assert.match(await page.textContent("#outline"), /Create a project/);
  await axe(page, "editor, live plan");

  // Broken: a milestone's `after` names no milestone. The collector's answer is the oracle.
  const broken = DEMO.replace('"after": "signed_up"', '"after": "signed_in"');
  const verdict = await (await fetch(collector.url + "/v1/plan/check", { method: "POST", headers: { Authorization: "Bearer et_demo" }, body: broken })).json();
  assert.equal(verdict.pointer, "/milestones/1/condition/after");
  await setText(page, broken);
  assert.equal(await page.getAttribute("#plan-text", "aria-invalid"), "true");
  assert.equal(await page.textContent("#plan-error code"), verdict.pointer);
  assert.equal(await page.textContent("#plan-error .problem"), verdict.problem);
  assert.equal(await page.textContent("#plan-error .expected"), verdict.expected);
  const line = broken.slice(0, broken.indexOf('"after": "signed_in"')).split("\n").length;
  assert.equal(await page.textContent("#gutter .err"), String(line), "the error's line is marked");
  assert.match(await page.textContent("#plan-error .where"), new RegExp("Line " + line + " "));
  assert.ok(await page.isDisabled("#publish-button"), "a broken plan cannot be published");
  await page.click("#plan-error button");
  const selected = await page.$eval("#plan-text", (t) => t.value.slice(t.selectionStart, t.selectionEnd));
  assert.equal(selected, '"after": "signed_in"', "Show in the plan selects the offending member");
  await page.screenshot({ path: join(ARTIFACTS, "editor-error.png"), fullPage: true });
  await axe(page, "editor with an error");

  // Invalid JSON: the collector's byte offset lands on the right line too.
  const syntax = DEMO.replace('"product": "Trackly",', '"product": "Trackly"');
  await setText(page, syntax);
  const syntaxLine = syntax.slice(0, syntax.indexOf('"defaultLocale"')).split("\n").length;
  assert.equal(await page.textContent("#gutter .err"), String(syntaxLine));

  // Fixed: the welcome's title changed. Diff, outline, publish with a message.
  const v1 = DEMO.replace('"en": "Welcome to Trackly"', '"en": "Welcome aboard"');
  await setText(page, v1);
  assert.equal(await page.getAttribute("#plan-text", "aria-invalid"), null);
  assert.equal(await page.textContent("#plan-error"), "");
  const diff = await page.textContent("#diff");
  assert.match(diff, /^- .*"en": "Welcome to Trackly"/m);
  assert.match(diff, /^\+ .*"en": "Welcome aboard"/m);
  assert.match(await page.textContent("#diff-summary"), /\+1 −1 lines/);
  assert.match(await page.textContent("#outline"), /Welcome aboard/);
  await page.fill("#message", "Warmer welcome");
  await page.screenshot({ path: join(ARTIFACTS, "editor-diff.png"), fullPage: true });
  await page.click("#publish-button");
  await published(page, 1);
  const served = await (await fetch(collector.url + "/v1/plan?writeKey=wk_demo")).text();
  assert.equal(served, v1);
  assert.equal(await welcomeTitle(), "Welcome aboard", "the next page load uses the published plan");

  // A second version, then one-click rollback to the first.
  const v2 = DEMO.replace('"en": "Welcome to Trackly"', '"en": "Welcome, team"');
  await setText(page, v2);
  await page.fill("#message", "Team wording");
  await page.click("#publish-button");
  await published(page, 2);
  const rows = await page.$$eval("#history tbody tr", (trs) => trs.map((tr) => [...tr.cells].slice(0, 5).map((c) => c.textContent)));
  assert.deepEqual(rows.map((r) => [r[0], r[2], r[3]]), [["v2live", "demo", "Team wording"], ["v1", "demo", "Warmer welcome"]]);
  assert.equal(await welcomeTitle(), "Welcome, team");
  await page.click("#history button[aria-label='Roll back to this (version 1)']");
  await published(page, 3);
  assert.equal(await page.inputValue("#plan-text"), v1, "the editor shows the restored plan");
  assert.match(await page.textContent("#history tbody tr:first-child"), /v3live.*Roll back to version 1 ↩ v1/);
  assert.equal(await (await fetch(collector.url + "/v1/plan?writeKey=wk_demo")).text(), v1);
  assert.equal(await welcomeTitle(), "Welcome aboard", "rollback restores the previous version");
  await page.screenshot({ path: join(ARTIFACTS, "editor-history.png"), fullPage: true });
  await axe(page, "editor after rollback");
  assert.deepEqual(messages.filter((m) => m.type === "error" || m.type === "pageerror"), []);
});

test("suggestions come from the plan's schema and the plan's own milestones", async () => {
  const { page } = await editor();
  // In the create_project tip, before "target": a new key.
  const text = await page.inputValue("#plan-text");
  const at = text.indexOf('"target": "#new-project"');
  await page.focus("#plan-text");
  await page.$eval("#plan-text", (t, at) => t.setSelectionRange(at, at), at);
  await page.keyboard.type('"wi');
  await page.waitForSelector("#completion:not([hidden])");
  const options = await page.$$eval("#completion [role=option] code", (os) => os.map((o) => o.textContent));
  assert.deepEqual(options, ["window"], "only keys the tip does not have yet, matching what was typed");
  assert.match(await page.getAttribute("#plan-text", "aria-activedescendant"), /^suggestion-0$/);
  await page.screenshot({ path: join(ARTIFACTS, "editor-suggest.png") });
  await page.keyboard.press("Enter");
  let now = await page.inputValue("#plan-text");
  assert.equal(now.slice(at, at + 10), '"window": ');
  // A value: the milestone a tip leads to is one of the plan's milestones.
  await page.keyboard.type('"');
  await page.waitForFunction(() => !document.getElementById("completion").hidden);
  await page.keyboard.press("Escape");
  await page.$eval("#plan-text", (t, v) => { t.value = v; t.dispatchEvent(new InputEvent("input")); }, text);
  const m = text.indexOf('"milestone": "teammate_invited"') + '"milestone": '.length;
  await page.$eval("#plan-text", (t, [a, b]) => { t.setRangeText("", a, b); t.setSelectionRange(a, a); }, [m, m + '"teammate_invited"'.length]);
  await page.keyboard.type('"tea');
  await page.waitForFunction(() => !document.getElementById("completion").hidden);
  assert.deepEqual(await page.$$eval("#completion [role=option] code", (os) => os.map((o) => o.textContent)), ['"teammate_invited"']);
  await page.keyboard.press("Tab");
  now = await page.inputValue("#plan-text");
  assert.equal(now, text, "the accepted value completes the text exactly (closing quote included)");
  await axe(page, "editor with suggestions");
});

test("the editor draws any value the API can return, and refuses the read token", async () => {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  const messages = watchConsole(page);
  const weird = {
    project: 7, current: "x", live: null,
    versions: [
      { number: 1e300, createdAt: -1e18, author: "<img src=x onerror=alert(1)>", message: { nested: [1, 2] }, planVersion: null, rollbackOf: "2" },
      null, "text", 42,
      { number: 3, createdAt: 9e15, author: { kind: "<b>", name: "<script>x()</script>" }, message: "<b>bold</b>", planVersion: 1.5, etag: [] },
    ],
  };
  await page.route(/\/v1\/plan\/versions$/, (r) => r.fulfill({ contentType: "application/json", body: JSON.stringify(weird) }));
  await page.goto(collector.url + "/dashboard/plan.html#editor=et_demo");
  await page.waitForSelector("body[data-loaded=true]");
  const rows = await page.$$eval("#history tbody tr", (trs) => trs.map((tr) => [...tr.cells].slice(0, 4).map((c) => c.textContent)));
  assert.equal(rows.length, 2, "non-objects are skipped");
  assert.deepEqual(rows[0].slice(1, 3), ["–", "unknown"]);
  assert.deepEqual(rows[1].slice(2, 4), ["<script>x()</script> (<b>)", "<b>bold</b>"], "shown as text");
  assert.equal(await page.$$eval("#history img, #history script, #history b", (n) => n.length), 0);
  assert.deepEqual(messages.filter((m) => m.type === "error" || m.type === "pageerror"), []);

  const reader = await ctx.newPage();
  await reader.goto(collector.url + "/dashboard/plan.html#editor=rt_demo");
  await reader.waitForFunction(() => /editor token/.test(document.getElementById("status").textContent));
  await ctx.close();
});
