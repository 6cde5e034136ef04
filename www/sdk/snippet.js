/*! onramp snippet: the readable source of the one line customers paste (README.md, the demo
    page); `cargo xtask build` minifies it to dist/snippet.min.js. Defines window.onramp at once;
    keeps at most 200 calls, clicks and submits until the SDK has loaded (each with its time);
    when the loader cannot be fetched (collector or CDN down, a CSP that blocks it) retries 6
    times with backoff, and keeps this page's calls (not clicks: elements cannot be stored) in
    localStorage, at most 10 pages' worth, for the SDK to send when it arrives on a later page. */
!function (w, d, url) {
  var o = w.onramp = w.onramp || [];
  if (o.loaded) return;
  o.p = o.p || Math.random();
  function queue(call) {
    if (o.length < 200) { call.t = Date.now(); o.push(call); }
  }
  ["init", "identify", "track", "group", "complete", "reset", "flush", "on"].forEach(function (m) {
    o[m] = o[m] || function () { queue([m].concat([].slice.call(arguments))); };
  });
  o.c || ["click", "submit"].forEach(function (t) {
    d.addEventListener(t, function (e) { o.c && queue(["dom_event", e.type, e.target, Date.now()]); }, !0);
  });
  o.c = 1;
  function keep() {
    if (o.ready) return; // the SDK arrived and took the calls
    try {
      var s = localStorage, prefix = "onramp.early.";
      var calls = o.filter(function (c) { return c[0] != "dom_event" && c[0] != "init" && c[0] != "on"; })
        .map(function (c) { return [c.t].concat(c); });
      if (calls.length && (s[prefix + o.p] || Object.keys(s).filter(function (k) { return !k.indexOf(prefix); }).length < 10)) {
        s.setItem(prefix + o.p, JSON.stringify(calls));
      }
    } catch (e) { /* storage full or blocked: the calls stay in memory only */ }
  }
  var attempts = 0;
  function load() {
    var s = d.createElement("script");
    s.async = 1;
    s.src = url;
    s.onerror = function () {
      s.remove();
      keep();
      if (attempts < 6) setTimeout(load, 1e3 << attempts++);
    };
    d.head.appendChild(s);
  }
  w.addEventListener("pagehide", keep);
  load();
}(window, document, "/sdk/v1/loader.js");
