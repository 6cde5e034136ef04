/*! onramp loader: defines window.onramp at once, queues calls, loads the SDK without blocking. */
(function (w, d) {
  // `cargo xtask build` replaces these names with the content-hashed files it serves (cached for
  // a year as immutable); this loader itself is cached for 5 minutes, so a release reaches pages
  // within minutes. The full SDK (events, engine, tips), and the lean tracker (events,
  // auto-capture, delivery) that is all a user whose onboarding is over needs: the full SDK
  // marks such a user in localStorage ("onramp.lean"), the tracker unmarks them when the plan
  // changes or someone else signs in, and the next page view brings the full SDK back.
  var MODULE = "index.mjs", WASM = "onramp_bg.wasm";
  // A preview link (docs/AUTHORING.md) loads the full SDK with preview mode, a bundle of its
  // own so that users never download the panel and the element picker.
  try {
    if (/onramp-preview=/.test(w.location.hash) || w.sessionStorage.getItem("onramp.preview")) MODULE = "preview.mjs", WASM = "preview_bg.wasm";
    else if (w.localStorage.getItem("onramp.lean")) MODULE = "tracker.mjs", WASM = "tracker_bg.wasm";
  } catch (e) { /* storage blocked: the full SDK */ }
  var script = d.currentScript;
  var q = w.onramp;
  if (q && q.loaded) return; // included twice
  if (!q || typeof q.push !== "function") q = [];
  ["init", "identify", "track", "group", "complete", "reset", "flush", "on"].forEach(function (m) {
    q[m] = q[m] || function () {
      q.push([m].concat([].slice.call(arguments)));
    };
  });
  q.loaded = 1;
  w.onramp = q;
  var data = script && script.dataset;
  // One-tag set-up: <script async src=".../loader.js" data-write-key="wk_…"></script>
  if (data && data.writeKey) {
    q.unshift(["init", { writeKey: data.writeKey, collector: data.collector, plan: data.plan }]);
  }
  var base = (script && script.src ? script.src : "").replace(/[^/]*$/, "");
  // The module and the wasm are fetched in parallel (no waterfall through the module's imports),
  // and the wasm compiles here while it streams in, while the module downloads and waits for the
  // page's main thread: compiling only once the module ran put 2-11 ms on the way to ready
  // (measured, tracker). Without the wasm MIME type (some CDNs), compiled from its bytes.
  var wasm = fetch(base + WASM, { credentials: "omit" }).then(function (r) {
    var W = w.WebAssembly;
    return W.compileStreaming && /^application\/wasm/.test(r.headers.get("content-type")) ? W.compileStreaming(r) : r.arrayBuffer().then(W.compile);
  });
  wasm.catch(function () {}); // reported by the module, which awaits it
  import(base + MODULE).then(
    function (m) { m.attach(q, base, wasm, plan); }, // `plan`: set below, before this runs
    function (e) { q.length = 0; q.c = 0; console.warn("onramp: could not load the SDK (" + e + "); your page is unaffected"); }
  );
  // The plan is requested now too, beside the module and the wasm, when the page's init is
  // already queued (the snippet's is): the SDK asked for it only once it ran, after the wasm was
  // instantiated and init replayed, a request in series that put ~40 ms before the first tip.
  // The SDK adopts this request when init asks for the same URL (the URL is made as the SDK
  // makes it); it is an ordinary fetch, so the browser's cache revalidates the plan (ETag, 304)
  // exactly as the SDK's own request would.
  var plan, c = q.filter(function (call) { return call[0] == "init"; })[0];
  c = c && c[1];
  if (c && typeof c.writeKey == "string" && (c.plan == null || typeof c.plan == "string")) {
    var url = typeof c.plan == "string" ? c.plan : (typeof c.collector == "string" ? c.collector : w.location.origin).replace(/\/+$/, "") + "/v1/plan?writeKey=" + encodeURIComponent(c.writeKey);
    plan = [url, fetch(url)];
    plan[1].catch(function () {}); // a failure is the SDK's to see, as with its own request
  }
})(window, document);
