// Preview and debug mode, and the element picker, in real headless Chromium against a real
// collector and the shipped SDK: the editor's preview link opens the panel on the demo; the
// panel shows each milestone, capture rule (with live match counts) and tip with the
// scheduler's reason; "show now" renders any tip; nothing done in preview reaches the
// collector; the picker proposes selectors that find exactly the clicked element, in shadow
// roots and frames too. Screenshots in tests/e2e/artifacts/.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { useCollectorAndBrowser, watchConsole, eventually, assertAxeClean, ARTIFACTS, ROOT } from "./harness.mjs";

const H = 3600000;
let collector, browser;
useCollectorAndBrowser((c, b) => { collector = c; browser = b; });

async function previewToken() {
  const r = await fetch(collector.url + "/v1/preview", { method: "POST", headers: { Authorization: "Bearer et_demo" } });
  assert.equal(r.status, 200);
  return (await r.json()).token;
}

/** Every /v1/batch body the page sends. */
function batches(page) {
  const sent = [];
  page.on("request", (r) => { if (r.url().includes("/v1/batch")) sent.push(r.postData() || ""); });
  return sent;
}

const panel = (page) => page.locator("onramp-tips .pv");
const tipReason = (page, id) => panel(page).locator(`li[data-tip="${id}"] .pv-status`);
const tipState = (page, id) => panel(page).locator(`li[data-tip="${id}"] .pv-detail`);

function axe(page, what) {
  return assertAxeClean(page, what, [["onramp-tips"]]);
}

async function reasonIs(page, id, pattern) {
  const ok = await eventually(async () => pattern.test(await tipReason(page, id).textContent()), { timeout: 8000 });
  assert.ok(ok, `${id}: ${await tipReason(page, id).textContent()} should match ${pattern}`);
}

/** Opens the demo in preview as a user who signed up `age` ago (already in Trackly's storage). */
async function demoInPreview({ age = null, hash = "#/projects" } = {}) {
  const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  const page = await context.newPage();
  const messages = watchConsole(page);
  const sent = batches(page);
  if (age != null) {
    await page.addInitScript((signedUpAt) => {
      if (!localStorage.getItem("trackly.state")) {
        localStorage.setItem("trackly.state", JSON.stringify({ user: { id: "pm-" + signedUpAt + "@example.com", name: "PM", signedUpAt }, projects: [], team: [], files: [] }));
      }
    }, Date.now() - age);
  }
  await page.goto(collector.url + "/demo/#onramp-preview=" + encodeURIComponent(await previewToken()));
  await panel(page).waitFor();
  await page.evaluate((hash) => { location.hash = hash; }, hash);
  return { context, page, messages, sent };
}

test("the editor's preview link opens the panel on the demo; nothing done in preview is recorded", async () => {
  const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  const editor = await context.newPage();
  await editor.goto(collector.url + "/dashboard/plan.html#editor=et_demo");
  await editor.waitForSelector("body[data-loaded=true]");
  const [page] = await Promise.all([context.waitForEvent("page"), editor.click("#preview-button")]);
  const messages = watchConsole(page);
  const sent = batches(page);
  const link = await editor.getAttribute("#preview-anchor", "href");
  assert.match(link, /\/demo\/#onramp-preview=pv1\./, "the token rides in the fragment");
  assert.ok(!/et_demo|rt_demo/.test(link), "no editor or read token in the link");
  await panel(page).waitFor();
  assert.ok(!page.url().includes("onramp-preview"), "the token leaves the address bar");
  assert.deepEqual(await panel(page).locator("li[data-milestone]").evaluateAll((l) => l.map((e) => e.dataset.milestone)),
    ["signed_up", "project_created", "teammate_invited", "file_uploaded", "kickoff_held"]);
  assert.equal(await panel(page).locator("li[data-rule]").count(), 8);
  assert.match(await panel(page).locator('li[data-milestone="project_created"]').textContent(), /not reached.*event `project_created` after `signed_up`/);
  await reasonIs(page, "welcome", /^visitor not identified yet/);

  // Sign up inside the preview: the engine and the scheduler run, the collector hears nothing.
  const email = "preview-" + Date.now() + "@example.com";
  await page.fill("#signup-name", "Pia");
  await page.fill("#signup-email", email);
  await page.click("#signup-submit");
  await reasonIs(page, "welcome", /^on screen$/);
  assert.match(await panel(page).locator('li[data-milestone="signed_up"] .pv-status').textContent(), /✓ reached/);
  assert.match(await panel(page).locator('li[data-rule="0"] .pv-status').textContent(), /^1 match on this page view/);
  await page.locator("onramp-tips .m").waitFor();
  await page.screenshot({ path: join(ARTIFACTS, "preview-panel.png") });
  await axe(page, "preview panel with a modal");
  await page.evaluate(() => window.onramp.flush());
  await page.waitForTimeout(1500);
  const leaked = sent.filter((b) => b.includes(email) || /"signed_up"|"tip_shown"/.test(b));
  assert.deepEqual(leaked, [], "no preview event reached the collector");
  const exported = await (await fetch(collector.url + "/v1/users/" + encodeURIComponent(email) + "/export", { headers: { Authorization: "Bearer at_demo" } })).json();
  assert.deepEqual(exported.events, [], "the collector holds nothing of the preview user");
  assert.match(await panel(page).locator(".pv-kept").textContent(), /kept back on this page/);
  // The picker on the demo itself: the "New project" button, under the modal's backdrop.
  await panel(page).locator("[data-pv=collapse]").click();
  const picked = await pick(page, await page.locator("#new-project").boundingBox());
  assert.equal(picked.selector, "#new-project");
  assert.match(picked.text, /Matches exactly the picked element/);
  // Ending the preview reloads the page as it is; the tab forgets the token.
  await panel(page).locator("[data-pv=exit]").click();
  await page.waitForLoadState("load");
  await page.evaluate(() => window.onramp.ready);
  await page.waitForTimeout(500);
  assert.equal(await panel(page).count(), 0);
  assert.deepEqual(messages.filter((m) => m.type === "error" || m.type === "pageerror"), []);
  await context.close();
});

test("every 'why not shown' reason appears in its situation, and show now renders any tip", async () => {
  // A tip whose target is on no page, to see "not found".
  const plan = JSON.parse(readFileSync(join(ROOT, "pkg-config", "plans", "trackly.json"), "utf8"));
  plan.tips.push({ id: "ghost", kind: "tooltip", target: "#nope", body: "Boo", priority: -10, window: { until: "30d" } });
  const put = await fetch(collector.url + "/v1/plan?message=ghost", { method: "PUT", headers: { Authorization: "Bearer et_demo" }, body: JSON.stringify(plan) });
  assert.equal(put.status, 200);

  // Signed up 27 hours ago: the first-day tips' windows ended 3 hours ago.
  const late = await demoInPreview({ age: 27 * H });
  await reasonIs(late.page, "create_project", /^window ended 3 h ago$/);
  await reasonIs(late.page, "files_tour", /^window ended 3 h ago$/);
  await late.page.screenshot({ path: join(ARTIFACTS, "preview-window-ended.png") });
  await late.context.close();

  // A new user signs up in the preview, then opens the team page.
  const t = await demoInPreview();
  const { page } = t;
  await page.fill("#signup-name", "Ada");
  await page.fill("#signup-email", "ada-" + Date.now() + "@example.com");
  await page.click("#signup-submit");
  await page.evaluate(() => { location.hash = "#/team"; });
  await reasonIs(page, "create_project", /^only on pages matching hash `#\/projects\*` \(this page: `#\/team`\)$/);
  await reasonIs(page, "welcome", /^(on screen|trigger delay: shows in \d+ s)$/);
  // The welcome shows; the others wait for the plan's gap between tips after it.
  await page.locator("onramp-tips .m").waitFor();
  await reasonIs(page, "invite_teammate", /^gap between tips: next in \d+ s$/);
  // The panel may cover what a tip shows: the PM folds it away to use the page.
  await panel(page).locator("[data-pv=collapse]").click();
  await page.locator("onramp-tips .m [data-a=x]").click();
  await reasonIs(page, "welcome", /^dismissed \d+ s ago$/);

  // Show now: a tip the schedule holds back, rendered at once.
  await panel(page).locator("[data-pv=collapse]").click();
  await panel(page).locator('li[data-tip="invite_teammate"] button').click();
  await page.locator("onramp-tips .h").waitFor();
  await reasonIs(page, "invite_teammate", /^(shown on request|on screen)$/);
  // The ghost's target is on no page: shown on request, it waits, then says so.
  await panel(page).locator('li[data-tip="ghost"] button').click();
  await reasonIs(page, "ghost", /^target `#nope` not found on this page$/);
  // Three tips this session: the plan's cap holds the rest back.
  await panel(page).locator('li[data-tip="files_tour"] button').click();
  await page.locator("onramp-tips .c").first().waitFor();
  await reasonIs(page, "create_project", /^(capped: 3 shown this session \(at most 3\)|only on pages)/);
  await page.evaluate(() => { location.hash = "#/projects"; });
  await reasonIs(page, "create_project", /^capped: 3 shown this session \(at most 3\)$/);

  // A milestone reached: its tip says so, and show now still renders it for review.
  await page.click("#new-project");
  await page.fill("#project-name", "Launch");
  await page.press("#project-name", "Enter");
  await reasonIs(page, "create_project", /^milestone `project_created` already reached \(\d+ s ago\)$/);
  assert.match(await panel(page).locator('li[data-milestone="project_created"] .pv-status').textContent(), /✓ reached \d+ s ago/);
  assert.match(await panel(page).locator('li[data-rule="1"] .pv-status').textContent(), /^1 match/);
  await panel(page).locator('li[data-tip="create_project"] button').click();
  const card = page.locator("onramp-tips .c", { hasText: "Start here" });
  await card.waitFor();
  await page.screenshot({ path: join(ARTIFACTS, "preview-show-now.png") });
  await axe(page, "preview panel after show now");
  assert.match(await tipState(page, "invite_teammate").textContent(), /^shown 1 of 2 times/);
  assert.deepEqual(t.sent.filter((b) => /"project_created"|"tip_shown"/.test(b)), [], "nothing recorded");
  assert.deepEqual(t.messages.filter((m) => m.type === "error" || m.type === "pageerror"), []);
  await t.context.close();
});

test("a forged preview link opens no panel and still records nothing", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const messages = watchConsole(page);
  const sent = batches(page);
  const token = await previewToken();
  const forged = token.replace(/\.[^.]+$/, ".AAAA");
  await page.goto(collector.url + "/demo/#onramp-preview=" + encodeURIComponent(forged));
  await page.evaluate(() => window.onramp.ready);
  await eventually(() => messages.some((m) => /preview link refused/.test(m.text)));
  assert.ok(messages.some((m) => m.type === "warning" && /preview link refused: not a preview token/.test(m.text)));
  assert.equal(await panel(page).count(), 0);
  await page.fill("#signup-name", "Mal");
  await page.fill("#signup-email", "mal@example.com");
  await page.click("#signup-submit");
  await page.waitForTimeout(1500);
  assert.deepEqual(sent.filter((b) => b.includes("mal@example.com")), []);
  await context.close();
});

/** Picks the element at the centre of `locator` (a page element, or one inside a frame). */
async function pick(page, box) {
  await panel(page).locator("[data-pv=pick]").click();
  await page.locator("onramp-tips .pv-layer").waitFor();
  const x = box.x + box.width / 2, y = box.y + box.height / 2;
  await page.mouse.move(x, y);
  await page.mouse.move(x + 1, y);
  const highlight = await page.locator("onramp-tips .pv-highlight").boundingBox();
  await page.mouse.click(x + 1, y);
  const input = panel(page).locator(".pv-pick input");
  await input.waitFor();
  return { selector: await input.getAttribute("data-selector"), text: await panel(page).locator(".pv-pick").textContent(), highlight };
}

test("the picker proposes a selector matching exactly the clicked element, through shadow roots and frames", async () => {
  const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  const page = await context.newPage();
  const messages = watchConsole(page);
  await page.goto(collector.url + "/demo/fixtures/picker.html#onramp-preview=" + encodeURIComponent(await previewToken()));
  await panel(page).waitFor();
  await panel(page).locator("[data-pv=collapse]").click();

  // What tips would find for a selector, independently of the picker: `>>>` descends into open
  // shadow roots and same-origin frames, as docs/TIPS.md says.
  const resolve = (sel) => page.evaluate((sel) => {
    let scope = [document], found = null;
    for (const part of sel.split(">>>").map((s) => s.trim())) {
      const matches = scope.flatMap((root) => [...root.querySelectorAll(part)]);
      if (matches.length === 0) return { count: 0 };
      found = matches[0];
      scope = [found.shadowRoot || found.contentDocument].filter(Boolean);
      if (part === sel.split(">>>").map((s) => s.trim()).at(-1)) return { count: matches.length, text: found.textContent.trim(), tag: found.tagName };
    }
    return { count: 0 };
  }, sel);

  const cases = [
    { name: "a test id", at: () => page.locator("[data-testid=save-project]"), want: '[data-testid="save-project"]', text: "Save" },
    { name: "an id", at: () => page.locator("#archive"), want: "#archive", text: "Archive" },
    { name: "a class path", at: () => page.locator("nav.sidebar a").nth(1), text: "Second" },
    { name: "twins", at: () => page.locator("ul.cards button").nth(1), text: "Open", warn: /positional selector/ },
    { name: "inside an open shadow root", at: () => page.locator("x-open button.go").first(), text: "Go", shadow: true },
    { name: "a test id inside a shadow root", at: () => page.locator("x-open [data-testid=go-2]"), want: '#open-host >>> [data-testid="go-2"]', text: "Go 2" },
    { name: "inside a same-origin frame", at: () => page.frameLocator("#same-frame").locator("#in-frame"), want: "#same-frame >>> #in-frame", text: "Bold (inside an iframe)" },
  ];
  for (const c of cases) {
    const box = await c.at().boundingBox();
    const got = await pick(page, box);
    if (c.want) assert.equal(got.selector, c.want, c.name);
    const found = await resolve(got.selector);
    assert.equal(found.count, 1, `${c.name}: ${got.selector} matches ${found.count}`);
    assert.equal(found.text, c.text, `${c.name}: ${got.selector} finds the clicked element`);
    if (c.shadow) assert.match(got.selector, / >>> /, c.name);
    assert.ok(Math.abs(got.highlight.x - box.x) < 2 && Math.abs(got.highlight.width - box.width) < 2, `${c.name}: the highlight covers the element`);
    assert.match(got.text, /Matches exactly the picked element/, c.name);
    if (c.warn) assert.match(got.text, c.warn, `${c.name}: ${got.selector}`); else assert.doesNotMatch(got.text, /positional/, `${c.name}: ${got.selector}`);
    if (c.name === "inside an open shadow root") await page.screenshot({ path: join(ARTIFACTS, "preview-picker.png") });
  }

  // Closed shadow roots and cross-origin frames: the host or the frame, with a warning.
  let got = await pick(page, await page.locator("#closed-host").boundingBox());
  assert.equal(got.selector, "#closed-host");
  assert.match(got.text, /closed one, onramp cannot target inside it/);
  got = await pick(page, await page.locator("#other-frame").boundingBox());
  assert.equal(got.selector, "#other-frame");
  assert.match(got.text, /cross-origin frame/);
  await axe(page, "preview panel with a proposal");

  // While picking, the page's own handlers see nothing; Escape leaves.
  await page.evaluate(() => { window.clicks = 0; document.getElementById("archive").addEventListener("click", () => window.clicks++); });
  await panel(page).locator("[data-pv=pick]").click();
  await page.locator("onramp-tips .pv-layer").waitFor();
  await page.keyboard.press("Escape");
  await eventually(async () => (await page.locator("onramp-tips .pv-layer").count()) === 0);
  await pick(page, await page.locator("#archive").boundingBox());
  assert.equal(await page.evaluate(() => window.clicks), 0, "the picked click never reached the page");
  assert.deepEqual(messages.filter((m) => m.type === "error" || m.type === "pageerror"), []);
  await context.close();
});
