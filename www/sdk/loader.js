/*! onramp loader: defines window.onramp at once, queues calls, loads the SDK without blocking. */
(function (w, d) {
  var script = d.currentScript;
  var q = w.onramp;
  if (q && q.loaded) return; // included twice
  if (!q || typeof q.push !== "function") q = [];
  ["init", "identify", "track", "complete", "reset", "flush"].forEach(function (m) {
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
  import(base + "index.mjs").then(
    function (m) { m.attach(q, base); },
    function (e) { q.length = 0; q.c = 0; console.warn("onramp: could not load the SDK (" + e + "); your page is unaffected"); }
  );
})(window, document);
