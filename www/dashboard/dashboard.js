// The PM dashboard: reads the collector's query API with a read token and draws SVG charts.
(function () {
  var $ = function (id) { return document.getElementById(id); };
  var SVG = "http://www.w3.org/2000/svg";
  var fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  $("token").value = fromHash || localStorage.getItem("onramp.readToken") || "";

  function pct(x) { return (x * 100).toFixed(0) + "%"; }

  function el(name, attrs, text) {
    var node = document.createElementNS(SVG, name);
    for (var k in attrs) node.setAttribute(k, attrs[k]);
    if (text != null) node.textContent = text;
    return node;
  }

  function draw(steps) {
    var svg = $("funnel");
    svg.textContent = "";
    var width = svg.clientWidth || 800, height = 320, top = 20, bottom = 60;
    var max = Math.max(1, steps[0] ? steps[0].users : 1);
    var slot = width / Math.max(steps.length, 1);
    steps.forEach(function (s, i) {
      var h = (height - top - bottom) * s.users / max;
      var x = i * slot + slot * 0.15, w = slot * 0.7, y = height - bottom - h;
      svg.appendChild(el("rect", { x: x, y: y, width: w, height: Math.max(h, 1), rx: 4, fill: "#3b5bdb" }));
      svg.appendChild(el("text", { x: x + w / 2, y: y - 6, "text-anchor": "middle", "font-size": 14 }, s.users));
      svg.appendChild(el("text", { x: x + w / 2, y: height - bottom + 20, "text-anchor": "middle", "font-size": 13 }, s.name));
      if (i > 0) svg.appendChild(el("text", { x: x + w / 2, y: height - bottom + 40, "text-anchor": "middle", "font-size": 12, fill: "#6b7486" }, pct(s.conversionFromPrevious) + " of previous"));
    });
    var body = $("funnel-table").tBodies[0];
    body.textContent = "";
    steps.forEach(function (s) {
      var tr = body.insertRow();
      [s.name, s.users, pct(s.conversionFromPrevious), pct(s.conversionFromFirst)].forEach(function (v) { tr.insertCell().textContent = v; });
    });
  }

  function load() {
    var token = $("token").value.trim();
    if (!token) { $("status").textContent = "Enter the project's read token."; return; }
    localStorage.setItem("onramp.readToken", token);
    var url = "/v1/funnel?steps=" + encodeURIComponent($("steps").value);
    fetch(url, { headers: { Authorization: "Bearer " + token } })
      .then(function (r) { return r.json().then(function (body) { return { ok: r.ok, body: body }; }); })
      .then(function (r) {
        if (!r.ok) { $("status").textContent = r.body.error || "Request failed"; return; }
        $("status").textContent = "Updated " + new Date().toLocaleTimeString();
        draw(r.body.steps);
      })
      .catch(function (e) { $("status").textContent = "Collector unreachable: " + e; });
  }

  $("controls").addEventListener("submit", function (e) { e.preventDefault(); load(); });
  load();
  setInterval(load, 5000);
})();
