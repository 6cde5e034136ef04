// Re-render cost for `cargo xtask bench` (a benchmark, not a test: it measures and prints).
//
// A page renders a list of 1 000 rows and re-renders all of them once per frame, the way a
// template-rendering framework does on a state change: every row node is thrown away and made
// again, with new text and a changed class. Measured with the Chrome DevTools Protocol's
// Performance metrics (the main thread's CPU time, its task wall time, and how many layouts
// ran), per re-render:
//   rerender_none_ms       the page alone (CPU; rerender_*_wall_ms: task wall time)
//   rerender_idle_ms       with onramp loaded and no tip anchored (nothing observed)
//   rerender_tip_ms        with onramp's tooltip anchored to a row that every re-render replaces
//   layouts_*              layouts per re-render in each case (1 = only the frame's own)
//   followed               the tooltip was beside its (new) target after the runs (yes/no)
// Each figure is the median over RUNS page loads of RERENDERS re-renders.
//
// Env: BENCH_COLLECTOR (base URL of a collector serving /sdk/v1/), BENCH_RUNS (default 5).
import { launchBrowser } from "../tests/e2e/harness.mjs";

const BASE = process.env.BENCH_COLLECTOR;
const RUNS = Number(process.env.BENCH_RUNS || 5);
const RERENDERS = 60;
const ROWS = 1000;

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const out = (key, value) => console.log(key + "=" + value);

const PLAN = {
  version: "bench", defaultLocale: "en",
  milestones: [{ id: "made", title: "Create a project", value: true, condition: { event: "made" } }],
  caps: { maxTipsPerSession: 10, minGapBetweenTips: "0s" },
  tips: [{ id: "row", kind: "tooltip", milestone: "made", target: "[data-row='3'] button", placement: "right", title: "Star it", body: "Starred rows stay on top." }],
};

function page(mode) {
  const sdk = mode === "none" ? "" : `<script>
  !function(w,d){var o=w.onramp=w.onramp||[];if(o.loaded)return;["init","identify","track","reset","flush"].forEach(function(m){o[m]=o[m]||function(){o.push([m].concat([].slice.call(arguments)))}});var s=d.createElement("script");s.async=1;s.src="/sdk/v1/loader.js";d.head.appendChild(s)}(window,document);
  onramp.init({ writeKey: "wk_demo", plan: ${JSON.stringify(mode === "tip" ? PLAN : { ...PLAN, tips: [] })} });
  onramp.identify("bench@example.com", { signedUpAt: Date.now() - 3600000 });
</script>`;
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>re-render</title>
<style>body{font:14px system-ui;margin:0}ul{margin:0;padding:0;list-style:none}li{display:flex;gap:8px;height:20px;padding:0 8px}.a{background:#eef}.b{background:#efe}</style>
${sdk}</head><body><ul id="list"></ul><script>
  var list = document.getElementById("list");
  window.render = function (gen) {
    var rows = [];
    for (var i = 0; i < ${ROWS}; i++) {
      var li = document.createElement("li");
      li.dataset.row = i;
      li.className = (i + gen) % 2 ? "a" : "b";
      li.innerHTML = "<span>Task " + i + " · version " + gen + "</span><button>★</button>";
      rows.push(li);
    }
    list.replaceChildren.apply(list, rows);
  };
  render(0);
</script></body></html>`;
}

async function measure(browser, mode) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  await context.route((url) => url.pathname === "/bench-rerender/", (route) => route.fulfill({ contentType: "text/html", body: page(mode) }));
  const p = await context.newPage();
  await p.goto(BASE + "/bench-rerender/");
  if (mode !== "none") await p.evaluate(() => window.onramp.ready);
  if (mode === "tip") await p.waitForFunction(() => document.querySelector("onramp-tips")?.shadowRoot?.querySelector(".c"));
  await p.waitForTimeout(300);
  const cdp = await context.newCDPSession(p);
  await cdp.send("Performance.enable");
  const metrics = async () => Object.fromEntries((await cdp.send("Performance.getMetrics")).metrics.map((m) => [m.name, m.value]));
  const a = await metrics();
  // One re-render per frame, each in a task of its own (as an input event's handler would be).
  await p.evaluate(async (n) => {
    for (let gen = 1; gen <= n; gen++) {
      await new Promise((r) => requestAnimationFrame(() => setTimeout(() => { window.render(gen); r(); }, 0)));
    }
    await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  }, RERENDERS);
  const b = await metrics();
  let followed = "n/a";
  if (mode === "tip") {
    followed = await p.evaluate(() => {
      const c = document.querySelector("onramp-tips").shadowRoot.querySelectorAll(".c");
      const t = document.querySelector("[data-row='3'] button").getBoundingClientRect();
      const r = c[0].getBoundingClientRect();
      return c.length === 1 && Math.abs(r.x - (t.right + 12)) <= 1.5 ? "yes" : "no";
    });
  }
  await context.close();
  return {
    // ThreadTime is the main thread's CPU time: unlike task wall time, it does not grow when
    // other processes hold the CPU (the bench machine is shared).
    ms: ((b.ThreadTime - a.ThreadTime) * 1000) / RERENDERS,
    wallMs: ((b.TaskDuration - a.TaskDuration) * 1000) / RERENDERS,
    layouts: (b.LayoutCount - a.LayoutCount) / RERENDERS,
    followed,
  };
}

const browser = await launchBrowser();
const results = { none: [], idle: [], tip: [] };
for (let run = 0; run < RUNS; run++) {
  for (const mode of ["none", "idle", "tip"]) results[mode].push(await measure(browser, mode));
}
await browser.close();
out("rerender_rows", ROWS);
out("rerender_count", RERENDERS);
out("rerender_runs", RUNS);
for (const mode of ["none", "idle", "tip"]) {
  out(`rerender_${mode}_ms`, median(results[mode].map((r) => r.ms)).toFixed(2));
  out(`rerender_${mode}_wall_ms`, median(results[mode].map((r) => r.wallMs)).toFixed(2));
  out(`layouts_${mode}`, median(results[mode].map((r) => r.layouts)).toFixed(2));
}
out("followed", results.tip.every((r) => r.followed === "yes") ? "yes" : "no");
