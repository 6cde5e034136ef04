// The customer-health panel (docs/HEALTH.md): bands over time, the lifecycle transition matrix
// and the at-risk list with its reasons in words, from GET /v1/health and GET /v1/lifecycle
// with the page's read token. Apart from dashboard.js so the two load and fail independently.
// Every value is checked before it is drawn: any answer the API can give must draw.
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var SVG = "http://www.w3.org/2000/svg";
  var BANDS = ["red", "yellow", "green", "none"];
  var COLORS = { red: "#e03131", yellow: "#f59f00", green: "#2f9e44", none: "#ced4da" };
  var STAGES = ["new", "onboarding", "activated", "adopted", "at_risk", "dormant"];
  // The list's filters live in the URL fragment beside the report's (health.kind, health.band,
  // health.stage, health.account), so a filtered view can be bookmarked or shared.
  var FILTERS = { kind: "health-kind", band: "health-band", stage: "health-stage", account: "health-account" };
  var kind = "user";
  (function restore() {
    var hash = new URLSearchParams(location.hash.slice(1));
    Object.keys(FILTERS).forEach(function (k) {
      var v = hash.get("health." + k), input = $(FILTERS[k]);
      if (v == null) return;
      // A value the select does not offer (an old or hand-made link) is kept, not dropped.
      if (input.tagName === "SELECT" && !Array.prototype.some.call(input.options, function (o) { return o.value === v; })) input.appendChild(new Option(v, v));
      input.value = v;
    });
    kind = $("health-kind").value === "account" ? "account" : "user";
  })();
  function filters() {
    return { band: $("health-band").value, stage: $("health-stage").value, account: $("health-account").value.trim() };
  }
  function saveFilters(f) {
    var hash = new URLSearchParams(location.hash.slice(1));
    Object.keys(FILTERS).forEach(function (k) {
      var v = k === "kind" ? (kind === "user" ? "" : kind) : f[k];
      if (v) hash.set("health." + k, v); else hash.delete("health." + k);
    });
    history.replaceState(null, "", "#" + hash.toString());
  }

  function arr(x) { return Array.isArray(x) ? x : []; }
  function obj(x) { return x && typeof x === "object" && !Array.isArray(x) ? x : {}; }
  function count(x) { return typeof x === "number" && isFinite(x) && x >= 0 ? x : 0; }
  function text(x) { return typeof x === "string" ? x : x == null ? "–" : String(x); }
  function el(name, attrs, content) {
    var node = document.createElementNS(SVG, name);
    for (var k in attrs) node.setAttribute(k, attrs[k]);
    if (content != null) node.textContent = content;
    return node;
  }
  function row(table, cells, cls) {
    var tr = table.tBodies[0].insertRow();
    if (cls) tr.className = cls;
    cells.forEach(function (c) { var td = tr.insertCell(); td.textContent = c; });
    return tr;
  }

  function drawCounts(h) {
    var bands = obj(h.bands), stages = obj(h.stages), box = $("health-counts");
    box.textContent = "";
    BANDS.concat(STAGES).forEach(function (name, i) {
      var n = count(i < BANDS.length ? bands[name] : stages[name]);
      if (name === "none" && !n) return;
      var span = document.createElement("span");
      span.className = "chip " + (i < BANDS.length ? "band-" + name : "stage");
      span.textContent = name.replace("_", " ") + " " + n.toLocaleString("en-US");
      box.appendChild(span);
    });
  }

  // One stacked bar per day: how many were in each band that day.
  function drawBands(days) {
    var svg = $("health-bands"), width = svg.clientWidth || 560, height = 160, bottom = 18;
    svg.textContent = "";
    days = arr(days).filter(function (d) { return d && typeof d === "object"; });
    if (!days.length) { svg.appendChild(el("text", { x: 0, y: 20, fill: "#9aa3b5" }, "No history yet")); return; }
    var totals = days.map(function (d) { var c = obj(d.counts); return BANDS.reduce(function (s, b) { return s + count(c[b]); }, 0); });
    var max = Math.max.apply(null, totals.concat([1])), w = width / days.length;
    days.forEach(function (d, i) {
      var c = obj(d.counts), y = height - bottom;
      BANDS.forEach(function (b) {
        var h = (height - bottom - 4) * count(c[b]) / max;
        if (h > 0) {
          y -= h;
          var r = el("rect", { x: i * w + 1, y: y, width: Math.max(w - 2, 1), height: h, fill: COLORS[b] });
          r.appendChild(el("title", {}, text(d.day) + ": " + count(c[b]) + " " + b));
          svg.appendChild(r);
        }
      });
      if (i === 0 || i === days.length - 1) {
        svg.appendChild(el("text", { x: i ? width : 0, y: height - 4, "font-size": 11, fill: "#6b7486", "text-anchor": i ? "end" : "start" }, text(d.day)));
      }
    });
  }

  function drawMatrix(l) {
    var m = obj(l.stageMatrix), table = $("health-matrix");
    var head = table.tHead.rows[0] || table.tHead.insertRow();
    head.textContent = "";
    var th = document.createElement("th"); th.textContent = "from \\ to"; head.appendChild(th);
    STAGES.forEach(function (s) { var h = document.createElement("th"); h.textContent = s.replace("_", " "); head.appendChild(h); });
    table.tBodies[0].textContent = "";
    STAGES.forEach(function (from) {
      var r = obj(m[from]);
      row(table, [from.replace("_", " ")].concat(STAGES.map(function (to) { var n = count(r[to]); return n ? n.toLocaleString("en-US") : ""; })));
    });
    $("health-transitions").textContent = count(l.transitions).toLocaleString("en-US") + " changes of stage or band";
  }

  function drawAtRisk(items, empty) {
    var table = $("health-risk");
    table.tBodies[0].textContent = "";
    items = arr(items).filter(function (i) { return i && typeof i === "object"; });
    if (!items.length) { row(table, [empty, "", "", "", "", "", ""], "muted"); return; }
    items.slice(0, 200).forEach(function (i) {
      var reasons = arr(i.reasons).filter(function (r) { return typeof r === "string"; }).join("; ");
      var trend = typeof i.trend === "number" && isFinite(i.trend) ? (i.trend > 0 ? "+" : "") + i.trend : "–";
      var stage = typeof i.stage === "string" ? i.stage.replace("_", " ") : "–";
      var tr = row(table, [text(i.id), i.score == null ? "–" : text(i.score), text(i.band), stage, text(i.account), trend, reasons || "–"]);
      tr.cells[2].className = "band-" + (BANDS.indexOf(i.band) >= 0 ? i.band : "none");
    });
  }

  function get(path, token) {
    return fetch(path, { headers: { Authorization: "Bearer " + token } }).then(function (r) {
      return r.json().then(function (body) { if (!r.ok) throw new Error(obj(body).error || "request failed"); return body; });
    });
  }

  // What the list shows, in words, and the requests that give it: with neither band nor stage
  // chosen, the at-risk list (red by score, or at risk or dormant by stage: two requests).
  function listQueries(f) {
    var common = f.account ? "&account=" + encodeURIComponent(f.account) : "";
    var band = f.band ? "&band=" + encodeURIComponent(f.band) : "";
    var who = f.account ? " in account " + f.account : "";
    if (!f.stage && !f.band) {
      return { title: "At risk", what: "red, at risk or dormant" + who, empty: "Nobody is at risk",
        requests: ["band=red" + common, "stage=at_risk,dormant" + common], filter: common };
    }
    var stage = f.stage === "any" ? "" : f.stage || "at_risk,dormant";
    var words = [f.band ? "band " + f.band : "", stage ? "stage " + stage.replace(/_/g, " ").replace(",", " or ") : ""].filter(Boolean);
    return { title: kind === "account" ? "Accounts" : "Users", what: (words.join(", ") || "everyone") + who, empty: "Nobody matches",
      requests: [(stage ? "stage=" + encodeURIComponent(stage) : "") + band + common], filter: (stage ? "&stage=" + encodeURIComponent(stage) : "") + band + common };
  }

  var busy = false, again = false;
  function load() {
    var token = ($("token").value || "").trim();
    if (!token) return;
    // A change while a load is under way is applied when it ends, not lost.
    if (busy) { again = true; return; }
    busy = true;
    var f = filters(), list = listQueries(f);
    saveFilters(f);
    var q = "kind=" + kind;
    $("health-csv").href = "/v1/health?" + q + (list.filter || "") + "&format=csv&token=" + encodeURIComponent(token);
    Promise.all([
      get("/v1/health?" + q + "&limit=1", token),
      get("/v1/lifecycle?" + q, token),
    ].concat(list.requests.map(function (r) { return get("/v1/health?" + q + "&" + r + "&limit=200", token); })))
      .then(function (a) {
        var h = obj(a[0]);
        drawCounts(h);
        drawBands(h.bandsOverTime);
        // One list, worst first, each once.
        var seen = {}, items = [];
        a.slice(2).forEach(function (answer) {
          arr(obj(answer).items).forEach(function (i) {
            var id = obj(i).id;
            if (typeof id === "string" && !seen[id]) { seen[id] = 1; items.push(i); }
          });
        });
        items.sort(function (x, y) { return (typeof x.score === "number" ? x.score : 101) - (typeof y.score === "number" ? y.score : 101); });
        $("health-list-title").textContent = list.title;
        $("health-list-what").textContent = list.what;
        var total = a.length === 3 ? count(obj(a[2]).total) : items.length;
        $("health-list-total").textContent = total > 200 ? "(first 200 of " + total.toLocaleString("en-US") + ")" : "";
        drawAtRisk(items, list.empty);
        drawMatrix(obj(a[1]));
        $("health-status").textContent = typeof h.computedAt === "number" && isFinite(new Date(h.computedAt).getTime())
          ? "computed " + new Date(h.computedAt).toISOString().slice(0, 16).replace("T", " ") + " UTC" : "";
        $("health").dataset.loaded = "true";
      })
      .catch(function (e) { $("health-status").textContent = "Health: " + e.message; })
      .then(function () { busy = false; if (again) { again = false; load(); } });
  }

  $("health-kind").addEventListener("change", function (e) { kind = e.target.value === "account" ? "account" : "user"; load(); });
  $("health-band").addEventListener("change", load);
  $("health-stage").addEventListener("change", load);
  $("health-account").addEventListener("change", load);
  $("health-filters").addEventListener("submit", function (e) { e.preventDefault(); load(); });
  $("controls").addEventListener("submit", function () { setTimeout(load, 0); });
  // Loaded at once, beside the report: the store counts, filters and cuts the health lists
  // itself (a few index reads, whatever the number of users), so they need not wait for it.
  load();
  setInterval(function () { if (!document.hidden) load(); }, 60000);
})();
