// The PM dashboard: one GET /v1/report with the read token, drawn as SVG charts and tables.
// No libraries: the page must load from the collector alone.
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var SVG = "http://www.w3.org/2000/svg";
  // Used when the project has no plan to take its milestones from (the demo's own events).
  var DEMO_STEPS = "signed_up,project_created,teammate_invited,file_uploaded";
  // The form's fields by parameter name; period and milestone are the Surveys panel's (form="controls").
  var FIELDS = ["from", "to", "steps", "value", "window", "by", "due", "period", "milestone"];
  var H = 3600000, D = 24 * H;

  // The form's state lives in the URL hash, so a view can be bookmarked or shared.
  var hash = new URLSearchParams(location.hash.slice(1));
  $("token").value = hash.get("token") || localStorage.getItem("onramp.readToken") || "";
  // A period the select does not offer (a hand-made link: period=14d) is kept as an option of its own.
  var period = hash.get("period");
  if (period && !Array.prototype.some.call($("period").options, function (o) { return o.value === period; })) $("period").appendChild(new Option(period, period));
  FIELDS.forEach(function (f) { if (hash.get(f)) $(f).value = hash.get(f); });
  // The survey split's choices come with the report (its traits), so the chosen one is kept aside.
  var surveySplit = hash.get("split") || "";
  var traitChoice = {};
  hash.forEach(function (v, k) { if (k.indexOf("trait.") === 0) traitChoice[k.slice(6)] = v; });

  function pct(x) { return x == null ? "–" : (x * 100).toFixed(x > 0 && x < 0.1 ? 1 : 0) + "%"; }
  function num(n) { return typeof n === "number" && isFinite(n) ? n.toLocaleString("en-US") : "–"; }
  function fixed(x, digits) { return x.toFixed(digits).replace(/\.0$/, ""); }
  function dur(ms) {
    if (ms == null) return "–";
    if (ms < 60000) return Math.round(ms / 1000) + " s";
    if (ms < H) return Math.round(ms / 60000) + " min";
    if (ms < D) return fixed(ms / H, ms < 10 * H ? 1 : 0) + " h";
    return fixed(ms / D, ms < 10 * D ? 1 : 0) + " d";
  }
  // Bucket edges are round numbers: 1h, 4h, 1d, 7d.
  function short(ms) { return ms % D === 0 ? ms / D + "d" : ms % H === 0 ? ms / H + "h" : Math.round(ms / 60000) + "m"; }
  // Any number the API returns must draw: a time outside what Date can hold shows as "–"
  // (toISOString throws a RangeError on it, which once blanked the whole page).
  function iso(ts) { var d = new Date(ts); return typeof ts === "number" && isFinite(d.getTime()) ? d.toISOString() : null; }
  function day(ts) { var s = iso(ts); return s ? s.slice(0, 10) : "–"; }
  function when(ts) { var s = iso(ts); return s ? s.slice(0, 16).replace("T", " ") : "–"; }
  // A step as the API names it: milestones reached by their milestone event, ad-hoc steps by
  // track events of that name; the two are told apart wherever a step is shown.
  function stepLabel(name, kind) { return kind === "event" ? name + " (event)" : name; }
  function stepParam(name, kind) { return kind === "event" ? "event:" + name : name; }

  function el(name, attrs, text) {
    var node = document.createElementNS(SVG, name);
    for (var k in attrs) node.setAttribute(k, attrs[k]);
    if (text != null) node.textContent = text;
    return node;
  }

  function fillTable(table, rows) {
    var body = table.tBodies[0];
    body.textContent = "";
    rows.forEach(function (cells) {
      var tr = body.insertRow();
      cells.forEach(function (c) {
        var td = tr.insertCell();
        if (c && typeof c === "object") {
          td.textContent = c.text;
          if (c.cls) td.className = c.cls;
          if (c.bg) td.style.background = c.bg;
          if (c.title) td.title = c.title;
        } else td.textContent = c;
      });
    });
  }

  // Horizontal bars, one row per step, widths relative to the first step.
  function drawFunnel(steps) {
    var svg = $("funnel"), width = svg.clientWidth || 560, row = 44, label = 150, right = 120;
    svg.textContent = "";
    svg.setAttribute("height", Math.max(row * steps.length + 8, 40));
    var first = Math.max(1, steps.length ? steps[0].users : 1);
    steps.forEach(function (s, i) {
      var y = i * row + 4, w = Math.max((width - label - right) * s.users / first, 2);
      svg.appendChild(el("text", { x: 0, y: y + 24, "font-size": 13, fill: "#1d2433" }, stepLabel(s.name, s.kind)));
      svg.appendChild(el("rect", { x: label, y: y + 6, width: width - label - right, height: 28, rx: 4, fill: "#eef1f7" }));
      svg.appendChild(el("rect", { x: label, y: y + 6, width: w, height: 28, rx: 4, fill: "#3b5bdb" }));
      svg.appendChild(el("text", { x: label + w + 8, y: y + 25, "font-size": 13, "font-weight": 600, fill: "#1d2433" },
        num(s.users) + "  ·  " + pct(s.conversionFromFirst)));
    });
    fillTable($("funnel-table"), steps.map(function (s, i) {
      return [stepLabel(s.name, s.kind), num(s.users), i ? pct(s.conversionFromPrevious) : "", pct(s.conversionFromFirst),
        i ? num(s.dropOff) : "", dur(s.medianMsFromPrevious)];
    }));
  }

  // Vertical bars with a label under each and the count above.
  function drawBars(svg, labels, counts, color) {
    var width = svg.clientWidth || 560, height = Number(svg.getAttribute("height")), top = 18, bottom = 22;
    svg.textContent = "";
    var max = Math.max.apply(null, counts.concat([1])), slot = width / counts.length;
    counts.forEach(function (c, i) {
      var h = (height - top - bottom) * c / max, x = i * slot + slot * 0.12, w = slot * 0.76;
      svg.appendChild(el("rect", { x: x, y: height - bottom - h, width: w, height: Math.max(h, 1), rx: 3, fill: color }));
      svg.appendChild(el("text", { x: x + w / 2, y: height - bottom - h - 4, "text-anchor": "middle", "font-size": 12 }, num(c)));
      svg.appendChild(el("text", { x: x + w / 2, y: height - 6, "text-anchor": "middle", "font-size": 11, fill: "#6b7486" }, labels[i]));
    });
  }

  function bucketLabels(edges) {
    var labels = ["< " + short(edges[0])];
    for (var i = 1; i < edges.length; i++) labels.push(short(edges[i - 1]) + "–" + short(edges[i]));
    labels.push("≥ " + short(edges[edges.length - 1]));
    return labels;
  }

  function drawTtv(ttv) {
    $("ttv-value").textContent = stepLabel(ttv.value.name, ttv.value.kind);
    drawBars($("ttv"), bucketLabels(ttv.histogram.edgesMs), ttv.histogram.counts, "#5c7cfa");
    // The value milestone is marked in place when it is one of the steps, else added last.
    var isValue = function (m) { return m.name === ttv.value.name && m.kind === ttv.value.kind; };
    var list = ttv.milestones.some(isValue) ? ttv.milestones : ttv.milestones.concat([ttv.value]);
    var rows = list.map(function (m) {
      var label = stepLabel(m.name, m.kind);
      var name = isValue(m) ? { text: label + " (value)", cls: "better" } : label;
      return [name, num(m.reached), dur(m.ms.p50), dur(m.ms.p75), dur(m.ms.p90)];
    });
    fillTable($("ttv-table"), rows);
  }

  function heat(share) { return "rgba(59, 91, 219, " + (0.08 + 0.5 * share).toFixed(2) + ")"; }

  function drawCohorts(c) {
    $("cohort-by").textContent = c.by;
    var head = $("cohorts").tHead;
    head.textContent = "";
    var tr = head.insertRow();
    // The value milestone gets its own column only when it is not one of the steps.
    var isValue = function (st, i) { return st === c.valueMilestone && c.stepKinds[i] === c.valueKind; };
    var valueColumn = !c.steps.some(isValue);
    var valueLabel = stepLabel(c.valueMilestone, c.valueKind) + " (value)";
    ["Cohort", "Users"].concat(c.steps.map(function (st, i) { return isValue(st, i) ? valueLabel : stepLabel(st, c.stepKinds[i]); }),
      valueColumn ? [valueLabel] : [], ["First-day activation", "Median TTV"])
      .forEach(function (h) { var th = document.createElement("th"); th.textContent = h; tr.appendChild(th); });
    // Newest first: the cohorts a PM is watching.
    fillTable($("cohorts"), c.cohorts.slice().reverse().map(function (row) {
      var share = function (n) { var s = row.users ? n / row.users : 0; return { text: pct(s), bg: heat(s), cls: "heat", title: num(n) + " of " + num(row.users) }; };
      return [(c.by === "week" ? "week of " : "") + row.label, num(row.users)]
        .concat(row.reached.map(share), valueColumn ? [share(row.value.reached)] : [], [
          row.firstDay.eligible
            ? { text: pct(row.firstDay.rate), bg: heat(row.firstDay.rate), cls: "heat", title: num(row.firstDay.activated) + " of " + num(row.firstDay.eligible) + " at least a day old" }
            : { text: "too new", cls: "muted" },
          dur(row.value.ms.p50)]);
    }));
  }

  function drawTips(t) {
    fillTable($("tips"), t.tips.map(function (tip) {
      var s = tip.saw, n = tip.didNotSee;
      var cls = s.completionRate > n.completionRate ? "better" : s.completionRate < n.completionRate ? "worse" : "";
      return [tip.tipId, tip.milestone || "–", num(s.users),
        { text: pct(s.completionRate) + " / " + pct(n.completionRate), cls: cls },
        dur(s.medianMs) + " / " + dur(n.medianMs), pct(tip.dismissRate)];
    }));
    if (!t.tips.length) fillTable($("tips"), [[{ text: "No tip events yet", cls: "muted" }, "", "", "", "", ""]]);
  }

  // Each kind's headline figure: NPS −100…100, CSAT a percentage, CES a mean of 1–7.
  function surveyScore(kind, x) {
    if (typeof x !== "number" || !isFinite(x)) return "–";
    return kind === "nps" ? fixed(x, 0) : kind === "csat" ? fixed(x, 0) + "%" : kind === "ces" ? fixed(x, 1) : "–";
  }

  function drawSurveys(s) {
    if (!s || !Array.isArray(s.surveys)) s = { surveys: [] };
    $("survey-milestone").textContent = s.milestone || "value";
    $("milestone").placeholder = typeof s.milestone === "string" ? stepParam(s.milestone, s.milestoneKind) : "value milestone";
    $("survey-period").textContent = typeof s.periodFrom === "number" ? "the last " + dur(s.now - s.periodFrom) : "all time";
    fillTable($("surveys"), s.surveys.map(function (v) {
      var all = v.all || {}, yes = v.milestoneReached || {}, no = v.milestoneNotReached || {};
      var groups = Array.isArray(all.groups) && v.kind !== "ces" && v.kind !== "question" ? all.groups.map(num).join(" / ") : "–";
      return [String(v.surveyId), String(v.kind), surveyScore(v.kind, all.score), num(all.respondents), pct(all.responseRate),
        surveyScore(v.kind, yes.score) + " / " + surveyScore(v.kind, no.score), groups];
    }));
    if (!s.surveys.length) fillTable($("surveys"), [[{ text: "No survey answers in this period", cls: "muted" }, "", "", "", "", "", ""]]);
    // Splits: by sign-up week (cohort) and, when the report was split by a trait, its values.
    var splits = [];
    s.surveys.forEach(function (v) {
      (v.cohorts || []).forEach(function (c) { splits.push([String(v.surveyId), "signed up week of " + String(c.week), c.summary || {}, v.kind]); });
      (v.byTrait || []).forEach(function (t) { splits.push([String(v.surveyId), String(s.split) + " = " + (t.value == null ? "(none)" : String(t.value)), t.summary || {}, v.kind]); });
    });
    fillTable($("survey-splits"), splits.map(function (r) {
      return [r[0], r[1], surveyScore(r[3], r[2].score), num(r[2].respondents), pct(r[2].responseRate)];
    }));
    if (!splits.length) fillTable($("survey-splits"), [[{ text: "No survey splits yet", cls: "muted" }, "", "", "", ""]]);
    // Answer texts are the users' own words: text nodes only, never markup.
    var answers = [];
    s.surveys.forEach(function (v) { (v.answers || []).forEach(function (a) { answers.push({ survey: v.surveyId, a: a }); }); });
    answers.sort(function (x, y) { return (y.a.at || 0) - (x.a.at || 0); });
    fillTable($("survey-answers"), answers.slice(0, 200).map(function (r) {
      var a = r.a;
      return [when(a.at), String(r.survey), String(a.user), a.score == null ? "–" : String(a.score) + (a.group ? " (" + a.group + ")" : ""),
        a.milestoneReached ? "yes" : "no", { text: String(a.text == null ? "" : a.text), cls: "answer" }];
    }));
    if (!answers.length) fillTable($("survey-answers"), [[{ text: "No written answers yet", cls: "muted" }, "", "", "", "", ""]]);
  }

  // One experiment's outcomes: completion, first-day activation, median time to value.
  function signedPct(x) { return (x > 0 ? "+" : "") + (x * 100).toFixed(1) + " pts"; }
  function signedDur(ms) { return (ms > 0 ? "+" : ms < 0 ? "−" : "") + dur(Math.abs(ms)); }
  function verdict(c, better) {
    if (!c || c.status === "noData") return { text: "nobody to compare yet", cls: "muted" };
    if (c.status !== "ready") return { text: "not enough data yet", cls: "muted" };
    if (!c.significant) return { text: "no clear difference", cls: "" };
    return better ? { text: "guidance helps", cls: "better" } : { text: "guidance hurts", cls: "worse" };
  }
  function experimentRows(e) {
    var name = e.experiment === "global" ? "Global holdout (no guidance)" : e.experiment;
    var users = num(e.control && e.control.users) + " / " + num(e.treatment && e.treatment.users);
    var rate = function (arm, key) { return arm ? pct(key === "activation" ? arm.activation.rate : arm.completionRate) : "–"; };
    var prop = function (label, key, c) {
      var ready = c && c.status === "ready" && c.absolute;
      return [name, users, label, rate(e.control, key), rate(e.treatment, key),
        ready ? signedPct(c.absolute.estimate) + " (" + signedPct(c.absolute.low) + " to " + signedPct(c.absolute.high) + ")" : "–",
        ready && c.relative ? (c.relative.estimate > 0 ? "+" : "") + pct(c.relative.estimate) : "–",
        verdict(c, ready && c.absolute.estimate > 0)];
    };
    var t = e.ttv || {}, d = t.status === "ready" && t.differenceMs;
    return [
      prop("Completion", "completion", e.completion),
      prop("Value in first 24 h", "activation", e.activation),
      [name, users, "Median time to value", dur(e.control && e.control.medianTtvMs), dur(e.treatment && e.treatment.medianTtvMs),
        d ? signedDur(d.estimate) + " (" + signedDur(d.low) + " to " + signedDur(d.high) + ")" : "–", "–", verdict(t, d && d.estimate < 0)],
    ];
  }
  function drawExperiments(x) {
    var rows = [];
    (x.experiments || []).forEach(function (e) { rows = rows.concat(experimentRows(e)); });
    if (!rows.length) rows = [[{ text: "No experiments yet: give the plan a holdout or a tip a control group (docs/EXPERIMENTS.md)", cls: "muted" }, "", "", "", "", "", "", ""]];
    fillTable($("experiments"), rows);
    var planned = (x.experiments || []).filter(function (e) { return e.plannedSampleSize; }).map(function (e) {
      var p = e.plannedSampleSize;
      return e.experiment + ": " + num(p.control) + " control / " + num(p.treatment) + " treatment users to detect " +
        signedPct(p.mde) + " of completion" + (p.reached ? " (reached)" : " (not yet)");
    });
    $("experiments-note").textContent = planned.length ? "Planned sample size — " + planned.join("; ") : "";
  }

  function drawPrompts(x) {
    var rows = [];
    (x.prompts || []).forEach(function (p) {
      var goal = p.goal ? stepLabel(p.goal.name, p.goal.kind) + " within " + dur(p.goal.withinMs) : "–";
      var row = function (label, f) {
        return [p.promptId, label, num(f.shown), num(f.acted), pct(f.actionRate), num(f.dismissed), goal,
          f.converted == null ? "–" : num(f.converted), f.conversionRate == null ? "–" : pct(f.conversionRate)];
      };
      rows.push(row("all", p));
      (p.byNpsGroup || []).forEach(function (g) { rows.push(row(g.group, g)); });
    });
    if (!rows.length) rows = [[{ text: "No prompts yet: add prompts to the plan (docs/PLANS.md)", cls: "muted" }, "", "", "", "", "", "", "", ""]];
    fillTable($("prompts"), rows);
  }

  function loadExperiments(q, token) {
    var x = new URLSearchParams();
    q.forEach(function (v, k) { if (k === "from" || k === "to" || k === "value" || k.indexOf("trait.") === 0) x.set(k, v); });
    fetch("/v1/experiments?" + x.toString(), { headers: { Authorization: "Bearer " + token } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (body) { if (body) drawExperiments(body); })
      .catch(function () {});
    fetch("/v1/prompts?" + x.toString().replace(/(^|&)value=[^&]*/, ""), { headers: { Authorization: "Bearer " + token } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (body) { if (body) drawPrompts(body); })
      .catch(function () {});
  }

  function drawMetrics(m) {
    fillTable($("metrics"), [
      ["Core-task completion", num(m.coreTaskCompletion.users), pct(m.coreTaskCompletion.rate), ""],
      ["First-session length", num(m.firstSessionLength.users), dur(m.firstSessionLength.ms.p50), dur(m.firstSessionLength.ms.p90)],
      ["Return interval", num(m.returnInterval.users), dur(m.returnInterval.ms.p50), dur(m.returnInterval.ms.p90)],
    ]);
    drawBars($("returns"), bucketLabels(m.returnInterval.histogram.edgesMs), m.returnInterval.histogram.counts, "#74b816");
  }

  function drawStalled(s, now) {
    fillTable($("stalled"), s.stalled.slice(0, 200).map(function (r) {
      return [r.user, r.milestone, day(r.signedUpAt), when(r.dueAt), when(r.lastSeen), dur(now - r.dueAt)];
    }));
    if (!s.stalled.length) {
      var why = s.due.length ? "Nobody is stalled" : "Give due windows (e.g. project_created:24h) to list stalled users";
      fillTable($("stalled"), [[{ text: why, cls: "muted" }, "", "", "", "", ""]]);
    }
    $("csv").textContent = "Download CSV (" + num(s.total) + ")";
  }

  function drawTraitFilters(traits) {
    var box = $("trait-filters");
    box.textContent = "";
    Object.keys(traits).forEach(function (key) {
      var label = document.createElement("label"), select = document.createElement("select");
      label.textContent = key;
      select.dataset.trait = key;
      select.appendChild(new Option("any", ""));
      traits[key].forEach(function (v) { select.appendChild(new Option(v.value + " (" + num(v.users) + ")", v.value)); });
      select.value = traitChoice[key] || "";
      select.addEventListener("change", function () { traitChoice[key] = select.value; load(); });
      label.appendChild(select);
      box.appendChild(label);
    });
  }

  function query() {
    var q = new URLSearchParams();
    FIELDS.forEach(function (f) { var v = $(f).value.trim(); if (v) q.set(f, v); });
    Object.keys(traitChoice).forEach(function (k) { if (traitChoice[k]) q.set("trait." + k, traitChoice[k]); });
    if (surveySplit) q.set("split", surveySplit);
    return q;
  }

  function render(r) {
    var t = r.ttv;
    // Empty fields show what the collector used (the plan's defaults).
    $("steps").placeholder = r.steps.map(function (s, i) { return stepParam(s, r.stepKinds[i]); }).join(",");
    $("value").placeholder = stepParam(r.valueMilestone, r.valueKind);
    $("due").placeholder = r.stalled.due.map(function (d) { return d.milestone + ":" + short(d.withinMs); }).join(",") || "project_created:24h";
    $("kpi-users").textContent = num(t.users);
    $("kpi-value").textContent = t.users ? pct(t.value.reached / t.users) : "–";
    $("kpi-ttv").textContent = dur(t.value.ms.p50);
    $("kpi-activation").textContent = t.firstDay.eligible ? pct(t.firstDay.rate) : "–";
    $("kpi-visitors").textContent = num(r.visitors);
    $("funnel-window").textContent = r.funnel.windowMs ? ", within " + dur(r.funnel.windowMs) + " of the first" : "";
    drawFunnel(r.funnel.steps);
    drawTtv(t);
    drawCohorts(r.cohorts);
    drawTips(r.tips);
    drawSurveys(Object.assign({ now: r.now }, r.surveys));
    drawMetrics(r.metrics);
    drawStalled(r.stalled, r.now);
    drawTraitFilters(r.traits);
    drawSplitChoices(r.traits);
  }

  // Split survey scores by sign-up week (always given) and, when chosen, by one user trait.
  function drawSplitChoices(traits) {
    var select = $("split"), keys = Object.keys(traits && typeof traits === "object" ? traits : {});
    if (surveySplit && keys.indexOf(surveySplit) < 0) keys.push(surveySplit);
    select.textContent = "";
    select.appendChild(new Option("sign-up week only", ""));
    keys.forEach(function (k) { select.appendChild(new Option("sign-up week and " + k, k)); });
    select.value = surveySplit;
  }

  var loading = false, again = false;
  // A change made while a report is loading is applied when it arrives, not lost.
  function loaded() {
    loading = false;
    if (again) { again = false; setTimeout(load, 0); }
  }
  function load() {
    var token = $("token").value.trim();
    if (!token) { $("status").textContent = "Enter the project's read token."; return; }
    if (loading) { again = true; return; }
    loading = true;
    localStorage.setItem("onramp.readToken", token);
    var q = query();
    var shown = new URLSearchParams(q);
    shown.set("token", token);
    // The health panel's filters share the fragment (health.js).
    new URLSearchParams(location.hash.slice(1)).forEach(function (v, k) { if (k.indexOf("health.") === 0) shown.set(k, v); });
    history.replaceState(null, "", "#" + shown.toString());
    var csv = new URLSearchParams(q);
    csv.set("format", "csv");
    csv.set("token", token);
    ["steps", "value", "window", "by"].forEach(function (k) { csv.delete(k); });
    var surveyCsv = new URLSearchParams(csv);
    surveyCsv.delete("due");
    ["period", "milestone", "split"].forEach(function (k) { csv.delete(k); });
    $("csv").href = "/v1/stalled?" + csv.toString();
    $("survey-csv").href = "/v1/surveys?" + surveyCsv.toString();
    fetch("/v1/report?" + q.toString(), { headers: { Authorization: "Bearer " + token } })
      .then(function (r) { return r.json().then(function (body) { return { ok: r.ok, body: body }; }); })
      .then(function (r) {
        loaded();
        if (!r.ok) {
          var error = r.body.error || "Request failed";
          // No plan and no steps given: show the demo's own events rather than an empty page.
          if (error.indexOf("steps:") === 0 && !$("steps").value) { $("steps").value = DEMO_STEPS; return load(); }
          $("status").textContent = error;
          return;
        }
        $("status").textContent = "Project " + r.body.project + " · updated " + new Date().toLocaleTimeString();
        document.body.dataset.loaded = "true";
        render(r.body);
        loadExperiments(q, token);
      })
      .catch(function (e) { loaded(); $("status").textContent = "Collector unreachable: " + e; });
  }

  $("controls").addEventListener("submit", function (e) { e.preventDefault(); load(); });
  $("period").addEventListener("change", load);
  $("split").addEventListener("change", function () { surveySplit = $("split").value; load(); });
  load();
  setInterval(function () { if (!document.hidden) load(); }, 15000);
})();
