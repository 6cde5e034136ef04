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
    function (m) { m.attach(q, base, wasm); },
    function (e) { q.length = 0; q.c = 0; console.warn("onramp: could not load the SDK (" + e + "); your page is unaffected"); }
  );
})(window, document);
