// The plan editor: the project's plan as JSON, checked by the collector's own validator as the
// PM types (POST /v1/plan/check), schema-driven suggestions, an outline, the diff against the
// live version, publish with a message, the version history with one-click rollback, and a
// preview link into the customer's app. No libraries: the page loads from the collector alone.
// Every value the API returns is shown with textContent and checked before it is used.
(function () {
  "use strict";
  var T = window.PlanTools;
  var $ = function (id) { return document.getElementById(id); };
  var text = $("plan-text");

  var hash = new URLSearchParams(location.hash.slice(1));
  var state = {
    token: hash.get("editor") || sessionStorage.getItem("onramp.editorToken") || "",
    project: hash.get("project") || "",
    live: null, // {text, number}
    versions: [],
    current: null,
    schema: null,
    doc: null, // the last text that parsed, as a value
    checked: null, // {text, ok, error}
    checkSeq: 0,
  };
  // The token leaves the address bar (and so bookmarks and screenshots) once read.
  if (hash.has("editor")) {
    hash.delete("editor");
    history.replaceState(null, "", location.pathname + location.search + (hash.toString() ? "#" + hash : ""));
  }
  $("editor-token").value = state.token;
  $("project").value = state.project;
  $("app-url").value = hash.get("app") || localStorage.getItem("onramp.appUrl") || new URL("../demo/", location.href).href;
  if (hash.get("token")) $("to-reports").href = "./#token=" + encodeURIComponent(hash.get("token"));

  function status(message, bad) {
    $("status").textContent = message;
    $("status").className = bad ? "bad" : "";
  }
  function str(v) { return v == null ? "" : typeof v === "string" ? v : typeof v === "object" ? JSON.stringify(v) : String(v); }
  function isNumber(n) { return typeof n === "number" && isFinite(n) && n >= 0 && Math.floor(n) === n; }
  function when(ts) { var d = new Date(ts); return typeof ts === "number" && isFinite(d.getTime()) ? d.toISOString().slice(0, 16).replace("T", " ") + " UTC" : "–"; }
  function node(tag, cls, content) {
    var n = document.createElement(tag);
    if (cls) n.className = cls;
    if (content != null) n.textContent = content;
    return n;
  }

  function api(method, path, body, extraQuery) {
    var q = new URLSearchParams(extraQuery || {});
    if (state.project) q.set("project", state.project);
    var url = "/v1/" + path + (q.toString() ? "?" + q : "");
    return fetch(url, { method: method, headers: { Authorization: "Bearer " + state.token }, body: body, cache: "no-store" })
      .then(function (r) {
        return r.text().then(function (t) {
          var json = null;
          try { json = t ? JSON.parse(t) : null; } catch (e) { json = null; }
          return { status: r.status, headers: r.headers, text: t, json: json };
        });
      });
  }
  function errorOf(r) {
    var e = r.json && typeof r.json === "object" && !Array.isArray(r.json) ? r.json.error : null;
    return str(e) || "the collector answered " + r.status;
  }

  // ---- Loading ----

  function load(keepDraft) {
    if (!state.token) { status("Enter an editor token (the read token only reads reports).", true); return Promise.resolve(); }
    status("Loading…");
    var schema = state.schema ? Promise.resolve() : fetch("/v1/plan/schema").then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) { state.schema = s && typeof s === "object" ? s : null; }, function () { state.schema = null; });
    return Promise.all([api("GET", "plan"), api("GET", "plan/versions"), schema]).then(function (rs) {
      var plan = rs[0], versions = rs[1];
      if (plan.status === 401 || versions.status === 401) { status(errorOf(plan.status === 401 ? plan : versions), true); return; }
      if (plan.status !== 200 && plan.status !== 204) { status("Could not read the plan: " + errorOf(plan), true); return; }
      var number = Number(plan.headers.get("onramp-plan-version"));
      var previous = state.live;
      state.live = { text: plan.status === 204 ? "" : plan.text, number: plan.headers.get("onramp-plan-version") && isNumber(number) ? number : null };
      var v = versions.json && typeof versions.json === "object" ? versions.json : {};
      state.versions = Array.isArray(v.versions) ? v.versions.filter(function (x) { return x && typeof x === "object"; }) : [];
      state.current = isNumber(v.current) ? v.current : null;
      var draft = text.value !== "" && (!previous || text.value !== previous.text);
      if (!(keepDraft && draft)) text.value = state.live.text;
      sessionStorage.setItem("onramp.editorToken", state.token);
      status(state.live.number != null ? "Version " + state.live.number + " is live." :
        plan.status === 204 ? "No plan yet: the SDK shows nothing until one is published." : "The live plan is the collector's start-up file (not a stored version yet).");
      changed();
      drawHistory();
      document.body.dataset.loaded = "true";
    }, function (e) { status("Could not reach the collector: " + e.message, true); });
  }

  // ---- Editing ----

  var checkTimer = 0;
  function changed() {
    drawGutter();
    var read = T.positions(text.value);
    if (read.ok) {
      try { state.doc = JSON.parse(text.value); } catch (e) { /* positions() agreed it parses; keep the last */ }
    }
    drawOutline(read.ok);
    drawDiff();
    updateButtons();
    clearTimeout(checkTimer);
    text.dataset.checked = "";
    $("check-state").textContent = "Checking…";
    checkTimer = setTimeout(check, 300);
  }

  // The collector's validator decides; the page only places its answer in the text.
  function check() {
    var seq = ++state.checkSeq, body = text.value;
    if (!state.token) return;
    api("POST", "plan/check", body).then(function (r) {
      if (seq !== state.checkSeq) return;
      var verdict = r.json && typeof r.json === "object" ? r.json : null;
      if (r.status === 200 && verdict && verdict.ok === true) state.checked = { text: body, ok: true };
      else if ((r.status === 200 || r.status === 400) && verdict) state.checked = { text: body, ok: false, error: verdict };
      else { state.checked = null; $("check-state").textContent = "Not checked: " + errorOf(r); updateButtons(); return; }
      showCheck();
      text.dataset.checked = state.checked.ok ? "valid" : "invalid";
    }, function () { if (seq === state.checkSeq) $("check-state").textContent = "Not checked: the collector is unreachable"; });
  }

  function errorRange(error) {
    var problem = str(error.problem);
    var m = /invalid JSON at byte (\d+)/.exec(problem);
    if (m) { var at = T.byteToIndex(text.value, Number(m[1])); return { start: at, end: Math.min(at + 1, text.value.length) }; }
    // serde_json's form: "… at line L column C", C counted in UTF-8 bytes from the line's start.
    m = /invalid JSON: .* at line (\d+) column (\d+)/.exec(problem);
    if (m) {
      var lines = text.value.split("\n"), start = 0, line = Math.min(Number(m[1]), lines.length);
      for (var i = 0; i < line - 1; i++) start += lines[i].length + 1;
      var col = T.byteToIndex(lines[line - 1] || "", Math.max(Number(m[2]) - 1, 0));
      var pos = Math.min(start + col, text.value.length);
      return { start: pos, end: Math.min(pos + 1, text.value.length) };
    }
    return T.rangeOf(text.value, str(error.pointer));
  }

  function showCheck() {
    var box = $("plan-error"), c = state.checked;
    box.textContent = "";
    state.errorLine = 0;
    if (!c || c.text !== text.value) return;
    if (c.ok) {
      box.hidden = true;
      text.removeAttribute("aria-invalid");
      $("check-state").textContent = "Valid plan.";
    } else {
      var e = c.error, range = errorRange(e), line = T.lineOf(text.value, range.start);
      state.errorLine = line;
      box.hidden = false;
      text.setAttribute("aria-invalid", "true");
      $("check-state").textContent = "1 problem.";
      var head = node("p", "where");
      head.appendChild(node("strong", null, "Line " + line + " "));
      head.appendChild(node("code", null, str(e.pointer) || "(whole document)"));
      box.appendChild(head);
      var dl = node("dl");
      dl.appendChild(node("dt", null, "Problem")); dl.appendChild(node("dd", "problem", str(e.problem)));
      dl.appendChild(node("dt", null, "Expected")); dl.appendChild(node("dd", "expected", str(e.expected)));
      box.appendChild(dl);
      var go = node("button", "secondary", "Show in the plan");
      go.type = "button";
      go.addEventListener("click", function () { select(range.start, range.end); });
      box.appendChild(go);
    }
    drawGutter();
    updateButtons();
  }

  function select(start, end) {
    text.focus();
    text.setSelectionRange(start, end);
    // Scroll the selection into view: the textarea has no API for it, so measure by lines.
    var line = T.lineOf(text.value, start), lh = parseFloat(getComputedStyle(text).lineHeight) || 18;
    text.scrollTop = Math.max(0, (line - 4) * lh);
    syncScroll();
  }

  function drawGutter() {
    var lines = text.value.split("\n").length, g = $("gutter");
    g.textContent = "";
    for (var i = 1; i <= lines; i++) {
      var s = node("span", i === state.errorLine ? "err" : null, String(i));
      g.appendChild(s);
      g.appendChild(document.createTextNode("\n"));
    }
    var mark = document.querySelector(".code .mark");
    if (mark) mark.remove();
    if (state.errorLine) {
      mark = node("div", "mark");
      mark.setAttribute("aria-hidden", "true");
      mark.dataset.line = state.errorLine;
      text.parentNode.appendChild(mark);
    }
    syncScroll();
  }
  function syncScroll() {
    $("gutter").scrollTop = text.scrollTop;
    var mark = document.querySelector(".code .mark");
    if (mark) {
      var lh = parseFloat(getComputedStyle(text).lineHeight) || 18, pad = parseFloat(getComputedStyle(text).paddingTop) || 0;
      mark.style.top = (text.offsetTop + pad + (Number(mark.dataset.line) - 1) * lh - text.scrollTop) + "px";
      mark.style.height = lh + "px";
      mark.hidden = mark.offsetTop < text.offsetTop - 2 || mark.offsetTop > text.offsetTop + text.clientHeight - lh / 2;
    }
  }

  function updateButtons() {
    var c = state.checked, dirty = state.live && text.value !== state.live.text;
    var valid = c && c.ok && c.text === text.value;
    $("publish-button").disabled = !(valid && dirty);
    $("publish-button").title = !dirty ? "Nothing to publish: this is the live plan" : !valid ? "Fix the plan first" : "";
    $("revert").disabled = !dirty;
    $("base-note").textContent = state.live ? (state.live.number != null ? "editing from version " + state.live.number : "editing from the start-up plan") + (dirty ? " · unpublished changes" : "") : "";
  }

  // ---- Outline ----

  function drawOutline(fresh) {
    var out = $("outline"), doc = state.doc;
    out.textContent = "";
    out.className = fresh ? "" : "stale";
    if (!fresh) out.appendChild(node("p", "muted", "The text does not parse; showing the last version that did."));
    if (!doc || typeof doc !== "object") { out.appendChild(node("p", "muted", "No plan.")); return; }
    var title = T.textOf(doc.product) || "Plan";
    out.appendChild(node("p", "muted", title + " · version " + str(doc.version)));
    section(out, "Milestones", "milestones", doc.milestones, function (m) {
      var c = m.condition && typeof m.condition === "object" ? m.condition : null;
      var cond = m.kind === "customer" ? "confirmed by the user or a server call" :
        c ? "when " + str(c.event) + (isNumber(c.count) && c.count > 1 ? " × " + c.count : "") + (c.where ? " (filtered)" : "") + (c.after ? " after " + str(c.after) : "") : "no condition";
      return [T.textOf(m.title) || str(m.id), str(m.id), cond + (m.due ? " · due " + str(m.due) : "") + (m.value === true ? " · value milestone" : "")];
    });
    section(out, "Capture rules", "capture", doc.capture, function (r) {
      var where = r.selector ? str(r.selector) : r.hash ? "hash " + str(r.hash) : r.path ? "path " + str(r.path) : "";
      return [str(r.event), str(r.on), "on " + str(r.on) + " " + where];
    });
    section(out, "Tips", "tips", doc.tips, function (t) {
      var w = t.window && typeof t.window === "object" ? t.window : {};
      return [T.textOf(t.title) || str(t.id), str(t.kind) + " · " + str(t.id),
        (t.milestone ? "leads to " + str(t.milestone) : "no milestone") + (t.target ? " · on " + str(t.target) : "") +
        " · window " + str(w.from || "0h") + "–" + str(w.until || "24h")];
    });
  }
  function section(out, heading, key, list, describe) {
    out.appendChild(node("h3", null, heading + " (" + (Array.isArray(list) ? list.length : 0) + ")"));
    if (!Array.isArray(list) || !list.length) { out.appendChild(node("p", "muted", "None.")); return; }
    var ol = node("ol", "outline-list");
    list.forEach(function (item, i) {
      if (!item || typeof item !== "object") item = {};
      var d = describe(item), li = node("li"), b = node("button", "link");
      b.type = "button";
      b.appendChild(node("span", "name", d[0]));
      b.appendChild(node("code", null, d[1]));
      b.addEventListener("click", function () { var r = T.rangeOf(text.value, "/" + key + "/" + i); select(r.start, r.end); });
      li.appendChild(b);
      li.appendChild(node("span", "detail", d[2]));
      ol.appendChild(li);
    });
    out.appendChild(ol);
  }

  // ---- Diff against the live version ----

  function drawDiff() {
    var pre = $("diff");
    pre.textContent = "";
    if (!state.live) return;
    var lines = T.diffLines(state.live.text, text.value), added = 0, removed = 0;
    lines.forEach(function (l) { if (l.op === "+") added++; if (l.op === "-") removed++; });
    $("diff-summary").textContent = added || removed ? "+" + added + " −" + removed + " lines (unpublished)" : "No changes: the editor holds the live plan.";
    T.hunks(lines, 3).forEach(function (l) {
      var cls = l.op === "+" ? "add" : l.op === "-" ? "del" : l.op === "…" ? "skip" : "same";
      var s = node("span", cls, (l.op === "…" ? "  ⋯ " : l.op + " ") + l.text);
      if (l.op === "+") s.setAttribute("aria-label", "added: " + l.text);
      if (l.op === "-") s.setAttribute("aria-label", "removed: " + l.text);
      pre.appendChild(s);
      pre.appendChild(document.createTextNode("\n"));
    });
  }

  // ---- History and rollback ----

  function drawHistory() {
    var body = $("history").tBodies[0];
    body.textContent = "";
    if (!state.versions.length) {
      var tr = body.insertRow(), td = tr.insertCell();
      td.colSpan = 6;
      td.textContent = "No versions yet: the first publish starts the history.";
      return;
    }
    state.versions.forEach(function (v) {
      var tr = body.insertRow(), live = isNumber(v.number) && v.number === state.current;
      var num = tr.insertCell();
      num.textContent = "v" + str(v.number);
      if (live) num.appendChild(node("span", "badge", "live"));
      tr.insertCell().textContent = when(v.createdAt);
      var a = v.author && typeof v.author === "object" ? v.author : {};
      tr.insertCell().textContent = (str(a.name) || "unknown") + (a.kind && a.kind !== "editor" ? " (" + str(a.kind) + ")" : "");
      tr.insertCell().textContent = str(v.message) + (isNumber(v.rollbackOf) ? " ↩ v" + v.rollbackOf : "");
      tr.insertCell().textContent = str(v.planVersion);
      var actions = tr.insertCell();
      if (!isNumber(v.number)) return;
      var open = node("button", "secondary", "Open");
      open.type = "button";
      open.setAttribute("aria-label", "Open version " + v.number + " in the editor");
      open.addEventListener("click", function () { openVersion(v.number); });
      actions.appendChild(open);
      if (!live) {
        var back = node("button", "secondary", "Roll back to this");
        back.type = "button";
        back.setAttribute("aria-label", "Roll back to this (version " + v.number + ")");
        back.addEventListener("click", function () { rollback(v.number); });
        actions.appendChild(back);
      }
    });
  }

  function openVersion(n) {
    api("GET", "plan/versions/" + n).then(function (r) {
      if (r.status !== 200) { status("Could not open version " + n + ": " + errorOf(r), true); return; }
      text.value = r.text;
      status("Version " + n + " is in the editor; publish it to make it live.");
      changed();
    });
  }

  function rollback(n) {
    var body = { version: n };
    if (state.current != null) body.base = state.current;
    api("POST", "plan/rollback", JSON.stringify(body)).then(function (r) {
      if (r.status !== 200) { status("Rollback refused: " + errorOf(r), true); if (r.status === 409) load(true); return; }
      var to = r.json && isNumber(r.json.number) ? r.json.number : "?";
      return load(false).then(function () { status("Rolled back to version " + n + ": version " + to + " is live, with the plan of version " + n + "."); });
    });
  }

  function publish(ev) {
    ev.preventDefault();
    var base = state.live && state.live.number != null ? String(state.live.number) : state.versions.length ? "" : "none";
    var q = { message: $("message").value };
    if (base) q.base = base;
    $("publish-button").disabled = true;
    api("PUT", "plan", text.value, q).then(function (r) {
      if (r.status === 200) {
        var n = r.json && isNumber(r.json.number) ? r.json.number : "?";
        $("message").value = "";
        return load(false).then(function () { status("Published: version " + n + " is live. The next page load uses it."); });
      }
      if (r.status === 400 && r.json) { state.checked = { text: text.value, ok: false, error: r.json }; showCheck(); }
      status("Not published: " + errorOf(r), true);
      updateButtons();
    });
  }

  // ---- Preview link ----

  function preview() {
    var app = $("app-url").value.trim();
    var url;
    try { url = new URL(app, location.href); } catch (e) { status("Give the address of a page of your app that loads onramp.", true); return; }
    localStorage.setItem("onramp.appUrl", url.href);
    api("POST", "preview").then(function (r) {
      var token = r.json && typeof r.json.token === "string" ? r.json.token : null;
      if (r.status !== 200 || !token) { status("No preview link: " + errorOf(r), true); return; }
      // The token rides in the fragment: never sent to the app's server, never in its logs.
      url.hash = "onramp-preview=" + encodeURIComponent(token);
      var p = $("preview-link");
      p.textContent = "Preview link (valid " + Math.round((Number(r.json.expiresIn) || 0) / 60) + " min, shows the live plan): ";
      var a = node("a", null, url.href);
      a.href = url.href;
      a.target = "_blank";
      a.rel = "noopener";
      a.id = "preview-anchor";
      p.appendChild(a);
      window.open(url.href, "_blank", "noopener");
    });
  }

  // ---- Suggestions (schema-driven completion) ----

  var menu = $("completion"), suggestions = null, active = 0;
  function suggest() {
    if (!state.schema) { $("check-state").textContent = "No suggestions: the schema did not load."; return; }
    // Values already in the plan (milestone ids) come from the last text that parsed.
    suggestions = T.complete(text.value, text.selectionStart, state.schema, state.doc);
    if (!suggestions.items.length) { closeMenu(); $("check-state").textContent = "No suggestions here."; return; }
    active = 0;
    drawMenu();
  }
  function drawMenu() {
    menu.textContent = "";
    suggestions.items.slice(0, 30).forEach(function (it, i) {
      var li = node("li");
      li.id = "suggestion-" + i;
      li.setAttribute("role", "option");
      li.setAttribute("aria-selected", i === active ? "true" : "false");
      li.appendChild(node("code", null, it.label));
      if (it.detail) li.appendChild(node("span", "muted", " " + it.detail));
      li.addEventListener("mousedown", function (e) { e.preventDefault(); accept(i); });
      menu.appendChild(li);
    });
    menu.hidden = false;
    text.setAttribute("aria-activedescendant", "suggestion-" + active);
    var lh = parseFloat(getComputedStyle(text).lineHeight) || 18;
    var line = T.lineOf(text.value, text.selectionStart);
    menu.style.top = Math.min(text.offsetTop + line * lh - text.scrollTop + 8, text.offsetTop + text.clientHeight) + "px";
  }
  function closeMenu() {
    menu.hidden = true;
    suggestions = null;
    text.removeAttribute("aria-activedescendant");
  }
  function accept(i) {
    var it = suggestions.items[i], from = suggestions.from, to = text.selectionStart;
    // Replace the typed prefix (and a closing quote the PM already typed after it).
    if (text.value[to] === '"' && it.insert[0] === '"' && text.value[from] === '"') to++;
    text.setRangeText(it.insert, from, to, "end");
    closeMenu();
    changed();
  }

  text.addEventListener("keydown", function (e) {
    if (e.key === " " && e.ctrlKey) { e.preventDefault(); suggest(); return; }
    if (suggestions) {
      var n = Math.min(suggestions.items.length, 30);
      if (e.key === "ArrowDown") { e.preventDefault(); active = (active + 1) % n; drawMenu(); }
      else if (e.key === "ArrowUp") { e.preventDefault(); active = (active + n - 1) % n; drawMenu(); }
      else if (e.key === "Enter" || e.key === "Tab") { e.preventDefault(); accept(active); }
      else if (e.key === "Escape") { e.preventDefault(); closeMenu(); }
      return;
    }
    // Tab indents (two spaces) rather than leaving the editor; Escape then Tab leaves it.
    if (e.key === "Tab" && !e.shiftKey && !e.ctrlKey && !e.altKey && text.dataset.escaped !== "1") {
      e.preventDefault();
      text.setRangeText("  ", text.selectionStart, text.selectionEnd, "end");
      changed();
    }
    text.dataset.escaped = e.key === "Escape" ? "1" : "";
  });
  text.addEventListener("input", function (e) {
    changed();
    if (e.data === '"') suggest(); else if (suggestions) suggest();
  });
  text.addEventListener("scroll", syncScroll);
  text.addEventListener("blur", function () { setTimeout(closeMenu, 150); });

  $("suggest").addEventListener("click", function () { text.focus(); suggest(); });
  $("format").addEventListener("click", function () {
    try { text.value = JSON.stringify(JSON.parse(text.value), null, 2) + "\n"; changed(); }
    catch (e) { status("Cannot format: the text is not valid JSON yet.", true); }
  });
  $("revert").addEventListener("click", function () { if (state.live) { text.value = state.live.text; changed(); } });
  $("publish").addEventListener("submit", publish);
  $("preview-button").addEventListener("click", preview);
  $("auth").addEventListener("submit", function (e) {
    e.preventDefault();
    state.token = $("editor-token").value.trim();
    state.project = $("project").value.trim();
    load(true);
  });

  load(false);
})();
