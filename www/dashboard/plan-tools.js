// Pure helpers of the plan editor (no DOM): where each JSON pointer sits in the text, which
// schema node a cursor position is in and what may be typed there, and a line diff. Kept apart
// from plan.js so they read, and can be checked, on their own.
(function (root) {
  "use strict";

  // ---- Positions: a JSON reader that records where every value (and key) starts and ends. ----

  // Parses `text` and returns { ok, values: {pointer: {start, end, keyStart}}, error: {offset, message} }.
  // Tolerant enough for completion: on an error it stops and returns what it saw, plus the
  // stack of open containers at that point (`path`, as pointer segments) in `openPath`.
  function positions(text) {
    var i = 0, values = {}, stack = [];
    function fail(message) { var e = new Error(message); e.offset = i; throw e; }
    function ws() { while (i < text.length && " \t\n\r".indexOf(text[i]) >= 0) i++; }
    function str() {
      var start = i++;
      while (i < text.length && text[i] !== '"') { if (text[i] === "\\") i++; i++; }
      if (i >= text.length) { i = start; fail("unterminated string"); }
      i++;
      return JSON.parse(text.slice(start, i));
    }
    function value(pointer, keyStart) {
      ws();
      var start = i, c = text[i];
      if (c === "{") {
        i++; ws();
        stack.push({ pointer: pointer, kind: "object", key: null });
        if (text[i] === "}") i++;
        else for (;;) {
          ws();
          if (text[i] !== '"') fail("expected a property name");
          var ks = i, key = str();
          stack[stack.length - 1].key = key;
          ws();
          if (text[i] !== ":") fail("expected ':'");
          i++;
          value(pointer + "/" + escape(key), ks);
          stack[stack.length - 1].key = null;
          ws();
          if (text[i] === ",") { i++; continue; }
          if (text[i] === "}") { i++; break; }
          fail("expected ',' or '}'");
        }
        stack.pop();
      } else if (c === "[") {
        i++; ws();
        stack.push({ pointer: pointer, kind: "array", index: 0 });
        if (text[i] === "]") i++;
        else for (var n = 0; ; n++) {
          stack[stack.length - 1].index = n;
          value(pointer + "/" + n);
          ws();
          if (text[i] === ",") { i++; continue; }
          if (text[i] === "]") { i++; break; }
          fail("expected ',' or ']'");
        }
        stack.pop();
      } else if (c === '"') str();
      else {
        var m = /^(-?\d+(\.\d+)?([eE][+-]?\d+)?|true|false|null)/.exec(text.slice(i, i + 64));
        if (!m) fail("unexpected character");
        i += m[0].length;
      }
      values[pointer] = { start: start, end: i, keyStart: keyStart == null ? start : keyStart };
    }
    try {
      value("");
      ws();
      if (i < text.length) fail("unexpected text after the document");
      return { ok: true, values: values };
    } catch (e) {
      return { ok: false, values: values, error: { offset: e.offset == null ? i : e.offset, message: e.message }, openPath: stack.slice() };
    }
  }

  function escape(key) { return String(key).replace(/~/g, "~0").replace(/\//g, "~1"); }
  function unescape(seg) { return seg.replace(/~1/g, "/").replace(/~0/g, "~"); }

  // The text range the collector's error `pointer` names: the value itself, or (for a pointer
  // to a missing member) the nearest enclosing value that exists.
  function rangeOf(text, pointer) {
    var found = positions(text).values, p = String(pointer || "");
    for (;;) {
      if (found[p]) return { start: found[p].keyStart, end: found[p].end, pointer: p };
      if (!p) return { start: 0, end: Math.min(text.length, 1), pointer: "" };
      p = p.slice(0, p.lastIndexOf("/"));
    }
  }

  // The collector's offsets are UTF-8 bytes ("invalid JSON at byte N"); the textarea counts
  // UTF-16 units.
  function byteToIndex(text, byte) {
    var bytes = 0;
    for (var i = 0; i < text.length; i++) {
      if (bytes >= byte) return i;
      var c = text.charCodeAt(i);
      bytes += c < 0x80 ? 1 : c < 0x800 ? 2 : c >= 0xd800 && c < 0xdc00 ? (i++, 4) : 3;
    }
    return text.length;
  }

  function lineOf(text, index) { return text.slice(0, index).split("\n").length; }

  // ---- Completion from the JSON Schema. ----

  function resolve(schema, node) {
    var guard = 0;
    while (node && typeof node === "object" && typeof node.$ref === "string" && guard++ < 20) {
      var ref = node.$ref;
      node = ref.indexOf("#/") === 0 ? ref.slice(2).split("/").map(unescape).reduce(function (n, k) { return n && n[k]; }, schema) : null;
      if (node && node.$ref == null) node = Object.assign({ _ref: ref }, node);
      else if (node) node = Object.assign({}, node, { _ref: ref });
    }
    return node && typeof node === "object" ? node : null;
  }

  // The schema node for a pointer's segments, following properties, items and
  // additionalProperties. `refs` collects each $ref passed (milestoneRef → milestone ids).
  function schemaAt(schema, segments) {
    var node = resolve(schema, schema), refs = [];
    for (var k = 0; k < segments.length && node; k++) {
      var seg = segments[k], next = null;
      if (node.properties && Object.prototype.hasOwnProperty.call(node.properties, seg)) next = node.properties[seg];
      else if (node.items && /^\d+$/.test(seg)) next = node.items;
      else if (node.additionalProperties && typeof node.additionalProperties === "object") next = node.additionalProperties;
      var raw = next;
      node = resolve(schema, next);
      if (raw && raw.$ref) refs.push(raw.$ref);
    }
    return node ? { node: node, refs: refs } : null;
  }

  // What may be typed at `cursor` in `text`: { kind: "key"|"value", items: [{label, insert, detail}],
  // from } where `from` is where the typed prefix starts (it is replaced).
  function complete(text, cursor, schema, doc) {
    var before = text.slice(0, cursor);
    // The prefix being typed: a string not closed yet (the reader stops at its quote), or a
    // bare word.
    var open = positions(before), inString = !open.ok && open.error.message === "unterminated string";
    var prefixStart = inString ? open.error.offset : cursor - (/[\w.-]*$/.exec(before)[0].length);
    var prefix = inString ? before.slice(prefixStart + 1) : before.slice(prefixStart);
    // Read the text before the prefix, closing it so the reader reports where it stopped.
    var head = text.slice(0, prefixStart);
    var read = positions(head);
    if (read.ok || !read.openPath || !read.openPath.length) return { kind: "none", items: [], from: cursor };
    var top = read.openPath[read.openPath.length - 1];
    var segments = top.pointer.split("/").slice(1).map(unescape);
    var lastSig = head.replace(/\s+$/, "").slice(-1);
    var kind;
    if (top.kind === "object" && (lastSig === "{" || lastSig === ",")) kind = "key";
    else if (top.kind === "object" && lastSig === ":") { kind = "value"; segments.push(top.key); }
    else if (top.kind === "array" && (lastSig === "[" || lastSig === ",")) { kind = "value"; segments.push(String(top.index || 0)); }
    else return { kind: "none", items: [], from: cursor };
    var at = schemaAt(schema, segments);
    if (!at) return { kind: kind, items: [], from: prefixStart };
    var node = at.node, items = [];
    if (kind === "key") {
      var present = {};
      var container = pick(doc, segments);
      if (container && typeof container === "object") Object.keys(container).forEach(function (k) { present[k] = true; });
      // Keys already typed in the (possibly broken) text of this object count too.
      Object.keys(read.values).forEach(function (p) {
        if (p.lastIndexOf("/") === top.pointer.length && p.indexOf(top.pointer + "/") === 0) present[unescape(p.slice(top.pointer.length + 1))] = true;
      });
      Object.keys(node.properties || {}).forEach(function (k) {
        if (present[k]) return;
        var prop = resolve(schema, node.properties[k]) || {};
        var required = (node.required || []).indexOf(k) >= 0;
        items.push({ label: k, insert: '"' + k + '": ', detail: (required ? "required. " : "") + (prop.description || node.properties[k].description || typeName(prop)) });
      });
    } else {
      var last = at.refs[at.refs.length - 1] || node._ref || "";
      if (node.enum) node.enum.forEach(function (v) { items.push({ label: JSON.stringify(v), insert: JSON.stringify(v), detail: "one of " + node.enum.length }); });
      if (/milestoneRef$/.test(last) && doc && Array.isArray(doc.milestones)) {
        doc.milestones.forEach(function (ms) {
          if (ms && typeof ms.id === "string") items.push({ label: JSON.stringify(ms.id), insert: JSON.stringify(ms.id), detail: "milestone " + textOf(ms.title) });
        });
      }
      if (node.type === "boolean") [true, false].forEach(function (b) { items.push({ label: String(b), insert: String(b), detail: "boolean" }); });
      if (node.type === "object" && !items.length) items.push({ label: "{ }", insert: "{}", detail: "an object" });
      if (node.type === "array" && !items.length) items.push({ label: "[ ]", insert: "[]", detail: "a list" });
      if (node.default !== undefined && !node.enum) items.push({ label: JSON.stringify(node.default), insert: JSON.stringify(node.default), detail: "the default" });
    }
    var lower = prefix.toLowerCase();
    items = items.filter(function (it) { return it.label.replace(/^"/, "").toLowerCase().indexOf(lower) === 0; });
    return { kind: kind, items: items, from: prefixStart };
  }

  function pick(doc, segments) {
    return segments.reduce(function (n, k) { return n && typeof n === "object" ? n[k] : undefined; }, doc);
  }
  function typeName(node) { return node.type ? String(node.type) : node.enum ? "one of " + node.enum.join(", ") : ""; }
  function textOf(t) {
    if (typeof t === "string") return t;
    if (t && typeof t === "object") { var k = Object.keys(t); return k.length ? String(t.en || t[k[0]]) : ""; }
    return "";
  }

  // ---- Line diff (Myers, O((N+M)·D)), for "changes against the live version". ----

  // Returns [{op: " "|"-"|"+", text}] turning `a` into `b`.
  function diffLines(a, b) {
    var A = a.split("\n"), B = b.split("\n"), N = A.length, M = B.length, max = N + M;
    var v = { 1: 0 }, trace = [];
    outer: for (var d = 0; d <= max; d++) {
      trace.push(Object.assign({}, v));
      for (var k = -d; k <= d; k += 2) {
        var x = k === -d || (k !== d && v[k - 1] < v[k + 1]) ? v[k + 1] : v[k - 1] + 1, y = x - k;
        while (x < N && y < M && A[x] === B[y]) { x++; y++; }
        v[k] = x;
        if (x >= N && y >= M) break outer;
      }
    }
    var out = [], x2 = N, y2 = M;
    for (var dd = trace.length - 1; dd >= 0; dd--) {
      var vv = trace[dd], kk = x2 - y2;
      var prevK = kk === -dd || (kk !== dd && vv[kk - 1] < vv[kk + 1]) ? kk + 1 : kk - 1;
      var prevX = vv[prevK], prevY = prevX - prevK;
      while (x2 > prevX && y2 > prevY) { out.push({ op: " ", text: A[--x2] }); y2--; }
      if (dd > 0) { if (x2 === prevX) out.push({ op: "+", text: B[--y2] }); else out.push({ op: "-", text: A[--x2] }); }
    }
    return out.reverse();
  }

  // Keeps `context` unchanged lines around changes; elided runs become {op: "…", text}.
  function hunks(lines, context) {
    var keep = lines.map(function () { return false; });
    lines.forEach(function (l, i) {
      if (l.op !== " ") for (var j = Math.max(0, i - context); j <= Math.min(lines.length - 1, i + context); j++) keep[j] = true;
    });
    var out = [], skipped = 0;
    lines.forEach(function (l, i) {
      if (keep[i]) { if (skipped) out.push({ op: "…", text: skipped + " unchanged lines" }); skipped = 0; out.push(l); }
      else skipped++;
    });
    if (skipped && out.length) out.push({ op: "…", text: skipped + " unchanged lines" });
    return out;
  }

  root.PlanTools = { positions: positions, rangeOf: rangeOf, byteToIndex: byteToIndex, lineOf: lineOf,
    schemaAt: schemaAt, complete: complete, diffLines: diffLines, hunks: hunks, textOf: textOf };
})(typeof window !== "undefined" ? window : globalThis);
