// The plan and the milestone engine in a real browser, on the shipped bundle: auto-capture with
// no track() calls (delegated clicks on elements added later, SPA routes, submits, appearing
// elements), milestone events with time-to-value, state surviving a reload, and a broken plan
// giving exactly one console error while the page keeps working.
import { test } from "node:test";
import assert from "node:assert/strict";
import { useCollectorAndBrowser, watchConsole, eventually, getJson, sentOnce } from "./harness.mjs";

let collector, browser;
useCollectorAndBrowser((c, b) => { collector = c; browser = b; });

/** Waits for the loader to hand over to the SDK (before that, `onramp.ready` is not there yet),
 *  then for the wasm. */
async function sdkReady(page) {
  await page.waitForFunction(() => window.onramp && window.onramp.ready, null, { timeout: 15000 });
  return page.evaluate(() => window.onramp.ready);
}

const named = (events, type, name) => events.filter((e) => e.type === type && e.name === name);

/** A page at `path` on the collector's origin, loading the SDK by script tag with `plan`. */
async function pageWithPlan(context, path, plan, body) {
  const page = await context.newPage();
  const html = `<!doctype html><html><head><meta charset="utf-8"><title>t</title>
    <script>
      !function(w,d){var o=w.onramp=w.onramp||[];if(o.loaded)return;["init","identify","track","complete","reset","flush"].forEach(function(m){o[m]=o[m]||function(){o.push([m].concat([].slice.call(arguments)))}});o.c||["click","submit"].forEach(function(t){d.addEventListener(t,function(e){o.c&&o.length<200&&o.push(["dom_event",e.type,e.target,Date.now()])},!0)}),o.c=1;var s=d.createElement("script");s.async=1;s.src="/sdk/v1/loader.js";d.head.appendChild(s)}(window,document);
      onramp.init({ writeKey: "wk_demo", plan: ${JSON.stringify(plan)} });
    </script></head><body>${body}</body></html>`;
  await page.route("**" + path, (route) => route.fulfill({ contentType: "text/html", body: html }));
  return page;
}

test("the demo reaches its milestones from auto-capture alone, once each, across a reload", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const messages = watchConsole(page);
  await page.goto(collector.url + "/demo/");
  await sdkReady(page);
  await page.fill("#signup-name", "Cy");
  await page.fill("#signup-email", "cy@example.com");
  await page.click("#signup-submit");
  // The plan's welcome modal shows a second after the page loads and holds the page's clicks
  // until closed, as a modal should; on a loaded machine it came before the next click. Close it
  // as the user would, whenever it comes.
  await page.locator("onramp-tips .m").waitFor({ timeout: 10000 });
  await page.locator("onramp-tips .m [data-a=x]").click();
  await page.click("#new-project");
  await page.fill("#project-name", "Roadmap");
  await page.click("#project-create");
  await page.click("a[data-route=team]");
  await page.click("#invite-teammate");
  await page.fill("#invite-email", "dee@example.com");
  await page.click("#invite-send");
  // Reload between steps: progress is kept in localStorage, nothing is reported twice.
  await page.evaluate(() => window.onramp.flush());
  await page.reload();
  await sdkReady(page);
  await page.click("a[data-route=files]");
  await page.click("#upload-file");
  await page.click("#upload-file");
  await page.evaluate(() => window.onramp.flush());

  // What the collector stored, not what the page was seen sending: an event reached just before
  // the reload may leave by beacon as the page unloads, and the reloaded page then asks
  // `/v1/known` and does not send it again.
  const stored = async () => {
    const { status, body } = await getJson(`${collector.url}/v1/users/cy%40example.com/export`, "at_demo");
    return status === 200 ? body.events : [];
  };
  let all = [];
  const done = await eventually(async () => {
    await page.evaluate(() => window.onramp.flush());
    all = await stored();
    const milestones = ["signed_up", "project_created", "teammate_invited", "file_uploaded", "onboarding_completed"];
    return milestones.every((m) => named(all, "milestone", m).length > 0) && named(all, "track", "file_uploaded").length === 2;
  }, { timeout: 20000 });
  assert.ok(done, "onboarding completed; stored: " + JSON.stringify(all.map((e) => e.type + ":" + e.name)));
  for (const m of ["signed_up", "project_created", "teammate_invited", "file_uploaded"]) {
    const reached = named(all, "milestone", m);
    assert.equal(reached.length, 1, m + " reported once");
    assert.equal(reached[0].userId, "cy@example.com", m + " counts for the user");
    assert.equal(reached[0].props.signupKnown, true);
    assert.ok(reached[0].props.sinceSignupMs >= 0);
    assert.equal(reached[0].props.planVersion, "trackly-2026-11-23.1");
  }
  const ttv = named(all, "milestone", "time_to_value");
  assert.equal(ttv.length, 1);
  assert.equal(ttv[0].props.milestone, "file_uploaded");
  // The captured events themselves, with what captured them.
  const submit = named(all, "track", "project_created")[0];
  assert.deepEqual([submit.props.captured, submit.props.selector], ["submit", "#project-form"]);
  assert.equal(named(all, "track", "file_uploaded").length, 2, "every click is captured");
  assert.equal(named(all, "track", "file_uploaded")[0].props.kind, "pdf", "rule props are added");
  const team = named(all, "track", "team_viewed");
  assert.ok(team.length >= 1 && team[0].props.captured === "view" && team[0].props.hash === "#/team");
  assert.ok(named(all, "track", "project_listed").length >= 1, "an element appearing is captured");
  assert.ok(named(all, "metric", "core_task_completion").some((e) => e.props.value === 1));
  assert.deepEqual(messages.filter((m) => m.type === "error" || m.type === "pageerror"), []);
  await context.close();
});

test("auto-capture sees SPA route changes, elements added later, submits and appearing elements", async () => {
  const plan = {
    version: "spa-1",
    milestones: [{ id: "settings_seen", title: "Settings", value: true, condition: { event: "settings_viewed" } }],
    capture: [
      { event: "late_clicked", on: "click", selector: ".late button" },
      { event: "settings_viewed", on: "view", path: "/spa/settings/*" },
      { event: "team_viewed", on: "view", hash: "#/team*" },
      { event: "form_sent", on: "submit", selector: "form#f" },
      { event: "toast_shown", on: "appear", selector: ".toast.ok" },
    ],
  };
  const context = await browser.newContext();
  const page = await pageWithPlan(context, "/spa/home", plan, `<form id="f"><input name="q"><button id="go">Go</button></form>`);
  const events = sentOnce(page);
  const messages = watchConsole(page);
  await page.goto(collector.url + "/spa/home");
  await sdkReady(page);
  await page.waitForFunction(() => localStorage.length > 0 && Object.keys(localStorage).some((k) => k.startsWith("onramp.state.")));
  await page.evaluate(() => {
    document.querySelector("form").addEventListener("submit", (e) => { e.preventDefault(); e.stopPropagation(); });
    const div = document.createElement("div");
    div.className = "late";
    div.innerHTML = "<button>Later</button>";
    document.body.appendChild(div);
  });
  await page.click(".late button");
  await page.evaluate(() => history.pushState({}, "", "/spa/settings/profile"));
  await page.evaluate(() => { location.hash = "#/team/members"; });
  await page.click("#go");
  await page.evaluate(() => {
    const t = document.createElement("p");
    t.className = "toast";
    document.body.appendChild(t);
    setTimeout(() => t.classList.add("ok"), 10);
  });
  const got = await eventually(async () => {
    await page.evaluate(() => window.onramp.flush());
    const names = events().map((e) => e.name);
    return ["late_clicked", "settings_viewed", "team_viewed", "form_sent", "toast_shown", "settings_seen", "time_to_value"]
      .every((n) => names.includes(n)) ? events() : null;
  }, { timeout: 8000 });
  const all = got || events();
  assert.ok(got, "all captured; got " + JSON.stringify(all.map((e) => e.name)));
  assert.equal(named(all, "track", "settings_viewed")[0].props.path, "/spa/settings/profile");
  assert.equal(named(all, "track", "team_viewed")[0].props.hash, "#/team/members");
  assert.equal(named(all, "track", "toast_shown").length, 1, "appears once");
  assert.equal(named(all, "track", "late_clicked")[0].props.selector, ".late button");
  assert.deepEqual(messages.filter((m) => m.type === "error" || m.type === "pageerror"), []);
  await context.close();
});

test("a second init replaces auto-capture's hooks, and a disabled SDK hands the page its history methods back", async () => {
  const plan = (event) => ({
    version: "hooks-" + event,
    milestones: [{ id: "m", title: "M", value: true, condition: { event } }],
    capture: [{ event, on: "view", path: "/hooks/next*" }, { event: event + "_toast", on: "appear", selector: ".toast" }],
  });
  const context = await browser.newContext();
  const page = await pageWithPlan(context, "/hooks/", plan("route_a"), "<p>hi</p>");
  const events = sentOnce(page);
  const messages = watchConsole(page);
  await page.goto(collector.url + "/hooks/");
  await sdkReady(page);
  const native = () => page.evaluate(() => ["pushState", "replaceState"].map((m) => String(history[m]).includes("[native code]")));
  assert.deepEqual(await native(), [false, false], "wrapped while capturing views");

  await page.evaluate((p) => onramp.init({ writeKey: "wk_demo", plan: p }), plan("route_b"));
  await page.evaluate(() => history.pushState({}, "", "/hooks/next1"));
  await page.evaluate(() => { const t = document.createElement("p"); t.className = "toast"; document.body.appendChild(t); });
  const got = await eventually(async () => {
    await page.evaluate(() => window.onramp.flush());
    const names = events().map((e) => e.name);
    return names.includes("route_b") && names.includes("route_b_toast") ? events() : null;
  }, { timeout: 8000 });
  assert.ok(got, "the second plan's rules capture; got " + JSON.stringify(events().map((e) => e.name)));
  assert.equal(named(got, "track", "route_b").length, 1, "one view per navigation: the old wrapper is gone, not wrapped twice");
  assert.equal(named(got, "track", "route_b_toast").length, 1, "one observer");
  assert.deepEqual(got.filter((e) => e.name.startsWith("route_a")), [], "the first plan's rules are gone");

  // A broken plan disables the SDK: everything auto-capture added to the page goes with it.
  await page.evaluate(() => onramp.init({ writeKey: "wk_demo", plan: { version: "x", milestones: [{ id: "a" }] } }));
  await eventually(() => messages.some((m) => m.type === "error"));
  assert.deepEqual(await native(), [true, true], "history methods are the page's own again");
  await page.evaluate(() => history.pushState({}, "", "/hooks/next2"));
  assert.equal(new URL(page.url()).pathname, "/hooks/next2", "navigation still works");
  await context.close();
});

test("a broken plan gives one console error naming the field, and the page keeps working", async () => {
  // The SDK reads the plan trustingly (the collector validated it when it was stored): a field
  // it cannot read is named by its pointer alone; `plan check` and `PUT /v1/plan` say what is
  // wrong there (collector/tests/plans.rs).
  const plan = {
    version: "broken-1",
    milestones: [{ id: "a", title: "A", value: true, condition: { event: "e", count: "twice" } }],
    capture: [{ event: "clicked", on: "click", selector: "#b" }],
  };
  const context = await browser.newContext();
  const page = await pageWithPlan(context, "/broken/", plan, `<button id="b" onclick="this.textContent='clicked'">Click</button>`);
  const events = sentOnce(page);
  const messages = watchConsole(page);
  await page.goto(collector.url + "/broken/");
  await sdkReady(page);
  await eventually(() => messages.some((m) => m.type === "error"));
  // Calls after the SDK stepped aside do nothing and throw nothing.
  await page.evaluate(() => { onramp.track("after"); onramp.identify("u"); onramp.complete("a"); onramp.flush(); });
  await page.click("#b");
  assert.equal(await page.textContent("#b"), "clicked", "the page's own handlers still run");
  await new Promise((r) => setTimeout(r, 300));
  const errors = messages.filter((m) => m.type === "error" || m.type === "pageerror");
  assert.equal(errors.length, 1, JSON.stringify(messages));
  assert.equal(
    errors[0].text,
    "onramp: plan /milestones/0/condition/count: cannot be read; expected a plan that `onramp-collector plan check` accepts. onramp is disabled; the page is unaffected.",
  );
  assert.deepEqual(events().filter((e) => e.name === "clicked" || e.name === "after"), [], "nothing captured or sent");
  await context.close();
});

test("a plan with fields from a newer release loads: no console message, events captured and milestones reached", async () => {
  const plan = {
    version: "newer-1",
    schemaLevel: 3,
    banners: [{ id: "b", text: "from a later release" }],
    milestones: [{ id: "a", title: "A", value: true, icon: "star", condition: { event: "clicked", window: "1d" } }],
    capture: [{ event: "clicked", on: "click", selector: "#b", debounce: 200 }],
  };
  const context = await browser.newContext();
  const page = await pageWithPlan(context, "/newer/", plan, `<button id="b">Click</button>`);
  const events = sentOnce(page);
  const messages = watchConsole(page);
  await page.goto(collector.url + "/newer/");
  await sdkReady(page);
  await page.waitForFunction(() => Object.keys(localStorage).some((k) => k.startsWith("onramp.state.")));
  await page.click("#b");
  await page.evaluate(() => window.onramp.flush());
  await eventually(() => named(events(), "milestone", "a").length === 1);
  assert.equal(named(events(), "track", "clicked").length, 1);
  assert.deepEqual(messages.filter((m) => m.type === "error" || m.type === "warning" || m.type === "pageerror"), []);
  await context.close();
});

test("a selector the browser cannot parse is reported with its pointer", async () => {
  const plan = {
    version: "x",
    milestones: [{ id: "a", title: "A", value: true, condition: { event: "e" } }],
    capture: [{ event: "c", on: "click", selector: "#ok" }, { event: "d", on: "click", selector: "a:nonsense(1)" }],
  };
  const context = await browser.newContext();
  const page = await pageWithPlan(context, "/badsel/", plan, "<p>hi</p>");
  const messages = watchConsole(page);
  await page.goto(collector.url + "/badsel/");
  await sdkReady(page);
  const error = await eventually(() => messages.find((m) => m.type === "error"));
  assert.match(error.text, /^onramp: plan \/capture\/1\/selector: the browser cannot parse the selector a:nonsense\(1\)/);
  await context.close();
});

test("a plan given as a URL is fetched, and a plan PUT to the collector reaches the next page load", async () => {
  const plan = (event) => ({
    version: "url-" + event,
    milestones: [{ id: "m", title: "M", value: true, condition: { event } }],
    capture: [{ event, on: "click", selector: "#b" }],
  });
  const context = await browser.newContext();
  const page = await pageWithPlan(context, "/by-url/", "/plans/custom.json", `<button id="b">B</button>`);
  await page.route("**/plans/custom.json", (route) => route.fulfill({ contentType: "application/json", body: JSON.stringify(plan("from_url")) }));
  const events = sentOnce(page);
  await page.goto(collector.url + "/by-url/");
  await sdkReady(page);
  await page.waitForFunction(() => Object.keys(localStorage).some((k) => k.startsWith("onramp.state.")));
  await page.click("#b");
  assert.ok(await eventually(async () => {
    await page.evaluate(() => window.onramp.flush());
    return named(events(), "milestone", "m").length === 1 && named(events(), "track", "from_url").length === 1;
  }), "the URL plan's rule and milestone work: " + JSON.stringify(events().map((e) => e.name)));

  // The default: the collector's plan for the write key. A PM replaces it; no redeploy.
  const put = await fetch(collector.url + "/v1/plan", {
    method: "PUT",
    headers: { Authorization: "Bearer et_demo" },
    body: JSON.stringify(plan("from_collector")),
  });
  assert.equal(put.status, 200);
  // A fresh visitor: tabs of one context share the delivery queue, and another tab may send.
  await context.close();
  const fresh = await browser.newContext();
  const served = await pageWithPlan(fresh, "/served/", null, `<button id="b">B</button>`);
  const servedEvents = sentOnce(served);
  await served.goto(collector.url + "/served/");
  await sdkReady(served);
  await served.waitForFunction(() => localStorage.getItem("onramp.state." + localStorage.getItem("onramp.anonymousId")) !== null);
  await served.click("#b");
  assert.ok(await eventually(async () => {
    await served.evaluate(() => window.onramp.flush());
    return named(servedEvents(), "track", "from_collector").length === 1;
  }), "the stored plan is served: " + JSON.stringify(servedEvents().map((e) => e.name)));
  await fresh.close();
});

test("a click made before the plan has loaded still counts", async () => {
  const context = await browser.newContext();
  const page = await pageWithPlan(context, "/early/", "/early-plan.json", `<button id="upload-file">Upload</button>`);
  let release;
  const held = new Promise((r) => (release = r));
  const plan = {
    version: "early-1",
    milestones: [{ id: "uploaded", title: "Upload", value: true, condition: { event: "file_uploaded" } }],
    capture: [{ event: "file_uploaded", on: "click", selector: "#upload-file" }],
  };
  await page.route("**/early-plan.json", async (route) => {
    await held;
    await route.fulfill({ contentType: "application/json", body: JSON.stringify(plan) });
  });
  const events = sentOnce(page);
  const messages = watchConsole(page);
  await page.goto(collector.url + "/early/");
  await sdkReady(page);
  await page.click("#upload-file");
  release();
  assert.ok(await eventually(async () => {
    await page.evaluate(() => window.onramp.flush());
    return named(events(), "track", "file_uploaded").length === 1 && named(events(), "milestone", "uploaded").length === 1;
  }), "captured once the plan arrived: " + JSON.stringify(events().map((e) => e.name)) + JSON.stringify(messages));
  await context.close();
});

test("a click made before the SDK's script has loaded is kept by the snippet and counts", async () => {
  const context = await browser.newContext();
  const plan = {
    version: "early-2",
    milestones: [{ id: "uploaded", title: "Upload", value: true, condition: { event: "file_uploaded" } }],
    capture: [{ event: "file_uploaded", on: "click", selector: "#upload-file" }],
  };
  const page = await pageWithPlan(context, "/earlier/", plan, `<button id="upload-file">Upload</button>`);
  let release;
  const held = new Promise((r) => (release = r));
  await page.route("**/sdk/v1/loader.js", async (route) => { await held; await route.continue(); });
  const events = sentOnce(page);
  // The held script delays the load event; the page is usable at DOMContentLoaded.
  await page.goto(collector.url + "/earlier/", { waitUntil: "domcontentloaded" });
  await page.click("#upload-file");
  assert.equal(await page.evaluate(() => window.onramp.filter((c) => c[0] === "dom_event").length), 1, "queued by the snippet");
  release();
  await sdkReady(page);
  assert.ok(await eventually(async () => {
    await page.evaluate(() => window.onramp.flush());
    return named(events(), "track", "file_uploaded").length === 1 && named(events(), "milestone", "uploaded").length === 1;
  }), "captured once the SDK arrived: " + JSON.stringify(events().map((e) => e.name)));
  await context.close();
});
