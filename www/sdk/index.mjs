// onramp SDK, as an ES module. `import * as onramp from "onramp"` uses these functions
// directly; the script-tag loader calls `attach` to replay the calls queued before load.
import initWasm, * as wasm from "./onramp.js";

const METHODS = ["init", "identify", "track", "group", "complete", "reset", "flush"];
// Calls kept while the wasm loads; bounded so a page that never loads it cannot grow forever.
const MAX_PENDING = 1000;
let pending = [];
let state = "idle"; // idle → loading → ready | failed
let ready;

// Props that are a plain object of strings, finite numbers, booleans and nulls (what most
// track() calls pass) are handed to the wasm entry by entry (`wasm.prop`, before `wasm.track`),
// each key and string copied straight into its memory; anything else goes through the
// browser's JSON.stringify and JSON.parse first, so it reads as JSON would (toJSON, undefined,
// functions, NaN). That round trip was about a quarter of a track() call (Chromium's profiler),
// and the wasm reading a plain object itself (Object.entries, then a call into JS per key, per
// value and per type test) a fifth of the tracker's (its CPU time over 10 000 calls). A boolean
// goes as the number ±Infinity and null as NaN: a plain object's numbers are finite.
function trackNow(name, props, at) {
  if (props != null && typeof props === "object" && !Array.isArray(props) && typeof props.toJSON !== "function") {
    let plain = true;
    for (const key of Object.keys(props)) {
      const value = props[key], type = typeof value;
      if (type === "string") wasm.prop(key, value, 0);
      else if (type === "number" && isFinite(value)) wasm.prop(key, undefined, value);
      else if (type === "boolean" || value === null) wasm.prop(key, undefined, value === null ? NaN : value ? Infinity : -Infinity);
      // Not plain: the wasm drops the entries given so far and reads the whole object as JSON.
      else { plain = false; break; }
    }
    if (plain) props = undefined;
  } else if (props == null) props = undefined;
  wasm.track(name, props, at);
}

// The loader's request of the plan ([url, Promise<Response>]), handed to the first init: the
// SDK uses it when that init asks for the same URL, instead of requesting the plan again.
let planRequest;

function call(method, args) {
  try {
    if (method === "track") trackNow(args[0], args[1], args[2]);
    else if (method === "init" && planRequest) {
      const [url, response] = planRequest;
      planRequest = undefined;
      wasm.init(args[0], { [url]: response });
    }
    else wasm[method](...args);
  } catch (e) {
    failed(method, e);
    if (method === "flush" && args[0]) args[0]();
  }
}

// The SDK must never throw into the host page.
function failed(method, e) {
  console.error("onramp: " + method + " failed: " + e);
}

function explain(error) {
  const text = String(error && error.message || error);
  if (/unsafe-eval|Content Security Policy|CSP/i.test(text)) {
    return "this page's Content-Security-Policy blocks WebAssembly. Add 'wasm-unsafe-eval' to " +
      "script-src, e.g. \"script-src 'self' 'wasm-unsafe-eval'\"";
  }
  return "the SDK could not start (" + text + ")";
}

/** Loads the wasm once; resolves true when ready, false if it cannot run here. `wasmSource` is the
 *  module's URL (wasm-bindgen then compiles it with `instantiateStreaming` while it downloads) or
 *  the loader's promise of the module it compiled meanwhile, in parallel with this file. */
export function load(base = new URL(".", import.meta.url).href, wasmSource = new URL("onramp_bg.wasm", base)) {
  if (!ready) {
    state = "loading";
    ready = initWasm({ module_or_path: wasmSource }).then(
      () => {
        state = "ready";
        const calls = pending;
        pending = [];
        for (const [method, args] of calls) call(method, args);
        return true;
      },
      (error) => {
        state = "failed";
        // flush() promises waiting in the queue resolve: there is nothing to wait for.
        for (const [method, args] of pending) if (method === "flush" && args[0]) args[0]();
        pending = [];
        console.warn("onramp: " + explain(error) + ". onramp is disabled; your page is unaffected.");
        return false;
      }
    );
  }
  return ready;
}

function enqueue(method, args) {
  if (method === "init") watchDom(); // whether called here or replayed from the loader's queue
  if (state === "ready") return call(method, args);
  if (state === "failed") return;
  if (pending.length < MAX_PENDING) pending.push([method, args]);
  if (state === "idle") load();
}

// Clicks and submits are watched here from the first init on, in the capture phase, and handed
// to the wasm in call order with the rest: a click made before the SDK or its plan has loaded
// still counts for the plan's auto-capture rules (the wasm matches them once the plan is in).
// The paste-in snippet starts the same watch before anything has loaded (`queue.c`); then its
// listeners feed this module through the queue and no second pair is added.
let watching = false;
function watchDom() {
  if (watching || typeof document === "undefined") return;
  watching = true;
  const forward = (e) => enqueue("dom_event", [e.type, e.target, Date.now()]);
  document.addEventListener("click", forward, true);
  document.addEventListener("submit", forward, true);
}

export function init(config) { enqueue("init", [config]); }
export function identify(userId, traits) { enqueue("identify", [String(userId), traits]); }
export function track(name, props) {
  name = String(name);
  if (state !== "ready") return enqueue("track", [name, props]);
  // The hot call, straight to the wasm once it runs: no argument list, no dispatch by name.
  try { trackNow(name, props); } catch (e) { failed("track", e); }
}
export function group(accountId, traits) { enqueue("group", [String(accountId), traits]); }
export function complete(milestone) { enqueue("complete", [String(milestone)]); }
export function reset() { enqueue("reset", []); }
/** Sends queued events now. Resolves once everything queued before the call has been
 *  acknowledged by the collector (or dropped: refused, expired); at once if onramp cannot run. */
export function flush() {
  return new Promise((resolve) => {
    if (state === "failed") resolve();
    else enqueue("flush", [resolve]);
  });
}

/** Host callbacks. `on("action", (name, context) => …)`: a prompt's call to action asks the app
 *  to act (`name` is the plan's `cta.action`; `context` has `promptId`, `milestone`, `userId`).
 *  Called after the SDK's own work, so the callback may call onramp. Returns a function that
 *  removes the callback. Plain JS over a DOM event (`onramp:action` on window), so it works
 *  before the wasm has loaded and in every bundle. */
export function on(type, callback) {
  if (type !== "action" || typeof callback !== "function" || typeof window === "undefined") {
    if (type !== "action") console.warn("onramp: on(" + JSON.stringify(type) + ") is not an event onramp sends; use \"action\"");
    return () => {};
  }
  const listener = (e) => {
    const detail = e.detail || {};
    queueMicrotask(() => {
      try { callback(detail.name, detail.context); } catch (error) { console.error("onramp: an action callback failed: " + error); }
    });
  };
  window.addEventListener("onramp:action", listener);
  return () => window.removeEventListener("onramp:action", listener);
}

const API = { init, identify, track, group, complete, reset, flush, on };

const KEPT = "onramp.early.";

/** Removes and returns the calls pages stored while the loader was unreachable (except this
 *  page's own, which are still in its queue), oldest first, each with its time as `t`. */
function takeKeptCalls(thisPage) {
  const kept = [];
  try {
    for (const key of Object.keys(localStorage)) {
      if (!key.startsWith(KEPT)) continue;
      const stored = localStorage.getItem(key);
      localStorage.removeItem(key);
      if (key === KEPT + thisPage) continue;
      try {
        for (const [t, ...call] of JSON.parse(stored)) if (Array.isArray(call)) kept.push(Object.assign(call, { t }));
      } catch { /* unreadable: skipped */ }
    }
  } catch { /* storage blocked */ }
  return kept.sort((a, b) => (a.t || 0) - (b.t || 0)).slice(-1000);
}

/** Takes over the loader's queue: replays its calls in order, then serves `window.onramp`.
 *  `plan`: the loader's request of the plan, when it made one (see loader.js). */
export function attach(queue, base, wasmSource, plan) {
  if (queue.c) watching = true;
  planRequest = plan;
  // Started first, so the replayed calls wait for the wasm the loader is already fetching.
  const ready = load(base, wasmSource);
  const calls = queue.splice(0);
  // Calls an earlier page kept while the loader could not be fetched (see snippet.js): they
  // happened before this page's, and go right after its init (nothing records before init).
  const init = calls.findIndex((c) => c[0] === "init");
  if (init >= 0) calls.splice(init + 1, 0, ...takeKeptCalls(queue.p));
  for (const entry of calls) {
    if (entry[0] === "on") { on(...entry.slice(1)); continue; }
    if (!METHODS.includes(entry[0]) && entry[0] !== "dom_event") continue;
    const args = entry.slice(1);
    // A track call made before the SDK loaded keeps the time it was made at.
    if (entry[0] === "track" && entry.t) enqueue("track", [String(args[0]), args[1], entry.t]);
    else enqueue(entry[0], args);
  }
  for (const m of METHODS) queue[m] = API[m];
  queue.on = on;
  queue.push = (entry) => (entry[0] === "on" ? on(...entry.slice(1)) : enqueue(entry[0], entry.slice(1)));
  queue.ready = ready;
}
