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
  var kind = "user";

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

  function drawAtRisk(items) {
    var table = $("health-risk");
    table.tBodies[0].textContent = "";
    items = arr(items).filter(function (i) { return i && typeof i === "object"; });
    if (!items.length) { row(table, ["Nobody is at risk", "", "", "", ""], "muted"); return; }
    items.slice(0, 200).forEach(function (i) {
      var reasons = arr(i.reasons).filter(function (r) { return typeof r === "string"; }).join("; ");
      var trend = typeof i.trend === "number" && isFinite(i.trend) ? (i.trend > 0 ? "+" : "") + i.trend : "–";
      var tr = row(table, [text(i.id), i.score == null ? "–" : text(i.score), text(i.band), trend, reasons || "–"]);
      tr.cells[2].className = "band-" + (BANDS.indexOf(i.band) >= 0 ? i.band : "none");
    });
  }

  function get(path, token) {
    return fetch(path, { headers: { Authorization: "Bearer " + token } }).then(function (r) {
      return r.json().then(function (body) { if (!r.ok) throw new Error(obj(body).error || "request failed"); return body; });
    });
  }

  var busy = false;
  function load() {
    var token = ($("token").value || "").trim();
    if (!token || busy) return;
    busy = true;
    var q = "kind=" + kind;
    $("health-csv").href = "/v1/health?" + q + "&format=csv&token=" + encodeURIComponent(token);
    Promise.all([
      get("/v1/health?" + q + "&limit=1", token),
      get("/v1/health?" + q + "&stage=at_risk,dormant&limit=200", token),
      get("/v1/health?" + q + "&band=red&limit=200", token),
      get("/v1/lifecycle?" + q, token),
    ]).then(function (a) {
      busy = false;
      var h = obj(a[0]);
      drawCounts(h);
      drawBands(h.bandsOverTime);
      // At risk or dormant by stage, or red by score: one list, worst first, each once.
      var seen = {}, list = [];
      arr(obj(a[2]).items).concat(arr(obj(a[1]).items)).forEach(function (i) {
        var id = obj(i).id;
        if (typeof id === "string" && !seen[id]) { seen[id] = 1; list.push(i); }
      });
      list.sort(function (x, y) { return (typeof x.score === "number" ? x.score : 101) - (typeof y.score === "number" ? y.score : 101); });
      drawAtRisk(list);
      drawMatrix(obj(a[3]));
      $("health-status").textContent = typeof h.computedAt === "number" && isFinite(new Date(h.computedAt).getTime())
        ? "computed " + new Date(h.computedAt).toISOString().slice(0, 16).replace("T", " ") + " UTC" : "";
      $("health").dataset.loaded = "true";
    }).catch(function (e) { busy = false; $("health-status").textContent = "Health: " + e.message; });
  }

  $("health-kind").addEventListener("change", function (e) { kind = e.target.value === "account" ? "account" : "user"; load(); });
  $("controls").addEventListener("submit", function () { setTimeout(load, 0); });
  load();
  setInterval(function () { if (!document.hidden) load(); }, 60000);
})();
