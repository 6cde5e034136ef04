// Shared by the benchmark scripts that time the SDK in a page (sdk.mjs, browser.mjs).

/** Resolves when the page says `onramp-bench:<what>` on the console (the scripts'
 *  instrumentation does); rejects after `timeout`. Not `page.waitForFunction`: that injects
 *  Playwright's utility script into the page (18.8 ms of the renderer's main thread in a Chromium
 *  trace, parse and compile) and polls it every animation frame, and the page's load event comes
 *  before the SDK is ready and its first tip, so both ran inside the windows being measured. */
export function said(page, what, timeout = 15000) {
  return page.waitForEvent("console", { predicate: (m) => m.text() === "onramp-bench:" + what, timeout });
}
