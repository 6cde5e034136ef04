// Shared set-up for browser tests: a real collector process on loopback with its own SQLite
// file, and Debian's Chromium driven by playwright-core.
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { before, after } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const ARTIFACTS = join(ROOT, "tests", "e2e", "artifacts");
mkdirSync(ARTIFACTS, { recursive: true });

const COLLECTOR = process.env.ONRAMP_COLLECTOR_BIN || join(ROOT, "target", "release", "onramp-collector");

// Each collector's own database directory, removed when this test file's process exits (a test
// may restart a killed collector on the same file, so not on stop).
const scratch = [];
process.on("exit", () => {
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
});

/** Starts `onramp-collector` on a free port; resolves { url, stop(), kill(), db }. */
export async function startCollector({ db, args = [], env = {} } = {}) {
  if (!db) {
    const dir = mkdtempSync(join(tmpdir(), "onramp-e2e-"));
    scratch.push(dir);
    db = join(dir, "events.db");
  }
  const child = spawn(COLLECTOR, ["--listen", "127.0.0.1:0", "--db", db, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  child.stderr.on("data", (d) => (log += d));
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("collector did not start: " + log)), 15000);
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/[\d.:]+)/);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    child.on("exit", (code) => reject(new Error("collector exited " + code + ": " + log)));
  });
  const exited = new Promise((resolve) => child.on("exit", resolve));
  return {
    url,
    db,
    log: () => log,
    stop: async () => { child.kill("SIGTERM"); await exited; },
    kill: async () => { child.kill("SIGKILL"); await exited; },
  };
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
}

/** Collects console messages and page errors, so tests can assert the page stayed healthy. */
export function watchConsole(page) {
  const messages = [];
  page.on("console", (m) => messages.push({ type: m.type(), text: m.text() }));
  page.on("pageerror", (e) => messages.push({ type: "pageerror", text: String(e) }));
  return messages;
}

/** Every event the page sends to the collector (fetch or beacon), once each by id: a batch
 *  resent after a slow answer or a beacon repeats ids that the collector stores once. Returns a
 *  function giving them so far. */
export function sentOnce(page) {
  const byId = new Map();
  page.on("request", (r) => {
    if (!r.url().includes("/v1/batch") || r.method() !== "POST") return;
    try {
      for (const e of JSON.parse(r.postData() || "{}").events || []) byId.set(e.id, e);
    } catch { /* not ours */ }
  });
  return () => [...byId.values()];
}

/** Every event the page sends to the collector (`POST /v1/batch`), as it sends them. */
export function sentEvents(page) {
  const sent = [];
  page.on("request", (r) => {
    if (r.method() === "POST" && r.url().endsWith("/v1/batch")) {
      try { sent.push(...JSON.parse(r.postData()).events); } catch { /* not ours */ }
    }
  });
  return sent;
}

/** Runs axe-core on the page (`include`: what to check, the whole document by default) and
 *  fails with each violation's rule and nodes. */
export async function assertAxeClean(page, what, include = null) {
  await page.addScriptTag({ path: join(ROOT, "node_modules", "axe-core", "axe.min.js") });
  const result = await page.evaluate(async (include) => {
    const r = await window.axe.run(include ? { include } : document, { resultTypes: ["violations"] });
    return r.violations.map((v) => ({ id: v.id, nodes: v.nodes.map((n) => n.target.join(" ") + " " + n.failureSummary) }));
  }, include);
  assert.deepEqual(result, [], `${what}: axe violations`);
}

/** Polls `fn` until it returns a truthy value or the time runs out (the last value is returned). */
export async function eventually(fn, { timeout = 10000, interval = 100 } = {}) {
  const end = Date.now() + timeout;
  let value;
  while (Date.now() < end) {
    value = await fn();
    if (value) return value;
    await new Promise((r) => setTimeout(r, interval));
  }
  return value;
}

export async function getJson(url, token = "rt_demo") {
  const r = await fetch(url, { headers: { Authorization: "Bearer " + token } });
  return { status: r.status, body: await r.json() };
}

/** For a test file: starts one collector and one browser before its tests, stops them after. */
export function useCollectorAndBrowser(ready, options) {
  let collector, browser;
  before(async () => {
    collector = await startCollector(options);
    browser = await launchBrowser();
    ready(collector, browser);
  });
  after(async () => {
    await browser?.close();
    await collector?.stop();
  });
}
