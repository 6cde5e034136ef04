// Time to data on the PM dashboard (a benchmark, not a test: it measures and prints).
//
// Opens the dashboard in headless Chromium, in a new browser context each time (cold HTTP
// cache), on a collector already serving generated data (`cargo xtask bench` data, or
// bench/report-rss.sh's setup), and times navigation start → the report drawn
// (`body[data-loaded=true]`, which the dashboard sets once `/v1/report` is on screen):
//   dashboard_first_ms    a view nobody asked for yet: the collector computes the report
//   dashboard_again_ms    the same view opened again (median of the loads): the report cache
//                         answers until new events arrive
//   dashboard_report_ms   of the first open, the `/v1/report` request alone (request → response end)
//   dashboard_health_ms   of the first open, navigation → the health panel drawn (each open
//                         waits for it too, so no open leaves work behind on the collector for the next)
//   dashboard_default_ms  the dashboard opened with nothing chosen (`#token=rt_demo`), as a PM
//                         opens it: the view the collector keeps computed while the data is quiet
//                         (start the collector some seconds before, as a PM's collector would be)
//
// Usage: node bench/dashboard.mjs BASE_URL [LOADS]   (read token rt_demo; LOADS default 3)
// The view is the one bench/report-rss.sh asks for, with a window no earlier run used.
import { launchBrowser } from "../tests/e2e/harness.mjs";

const BASE = process.argv[2];
const LOADS = Number(process.argv[3] || 3);
if (!BASE) {
  console.error("usage: node bench/dashboard.mjs BASE_URL [LOADS]");
  process.exit(2);
}
const STEPS = "milestone:signed_up,milestone:project_created,milestone:teammate_invited,milestone:file_uploaded,milestone:report_shared";
const view = new URLSearchParams({
  token: "rt_demo",
  steps: STEPS,
  value: "milestone:report_shared",
  due: "signed_up:1h,project_created:24h,report_shared:7d",
  window: `${168 + (Date.now() % 1000)}h`,
});

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

async function open(browser, hash = view) {
  const context = await browser.newContext();
  const page = await context.newPage();
  try {
    await page.goto(`${BASE}/dashboard/#${hash}`);
    // Watched from the start: the panel may be drawn before the report.
    const health = page.waitForSelector("#health[data-loaded=true]", { timeout: 600_000 }).then(() => page.evaluate(() => performance.now()));
    await page.waitForSelector("body[data-loaded=true]", { timeout: 600_000 });
    const shown = await page.evaluate(() => {
      const drawn = performance.now();
      const report = performance.getEntriesByType("resource").find((e) => e.name.includes("/v1/report?"));
      return { drawn, report: report ? report.responseEnd - report.requestStart : NaN };
    });
    return { ...shown, health: await health };
  } finally {
    await context.close();
  }
}

const browser = await launchBrowser();
try {
  const first = await open(browser);
  const again = [];
  for (let i = 1; i < LOADS; i++) again.push((await open(browser)).drawn);
  const byDefault = await open(browser, "token=rt_demo");
  console.log("dashboard_first_ms=" + first.drawn.toFixed(1));
  console.log("dashboard_report_ms=" + first.report.toFixed(1));
  console.log("dashboard_health_ms=" + first.health.toFixed(1));
  if (again.length) console.log("dashboard_again_ms=" + median(again).toFixed(1));
  console.log("dashboard_default_ms=" + byDefault.drawn.toFixed(1));
  console.log("dashboard_default_health_ms=" + byDefault.health.toFixed(1));
} finally {
  await browser.close();
}
