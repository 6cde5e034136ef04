//! `cargo xtask bench [--10m] [--runs N]`: size and speed, side by side with the peers.
//!
//! A benchmark, not a test: it measures, prints one table and writes `BENCHMARKS.md` (date,
//! machine, load, the commands used); targets are reported, never asserted. Everything is
//! measured in the same run on the same machine:
//!
//! 1. bytes on the wire: our loader, glue and wasm next to each peer from npm bundled with
//!    esbuild (`bench/package.json` pins them; installed into `bench/node_modules`);
//! 2. the demo page in headless Chromium (`bench/browser.mjs`): time to ready, long tasks,
//!    `track()` beside `posthog.capture()` in the same page, memory;
//! 3. collector ingest under `wrk` (`bench/ingest.lua`) next to the raw SQLite insert rate of the
//!    same rows (`collector/examples/bench_sqlite.rs`), and its RSS;
//! 4. every read route and the full report over generated data at 100 k, 1 M (and with
//!    `--10m`, 10 M) events on SQLite and ClickHouse, bytes on disk per event, collector RSS;
//! 5. the SDK per kind of user (`sdk`, `bench/sdk.mjs`): bytes as Chromium receives them from
//!    the collector for a user in onboarding (full SDK) and one whose onboarding is over (the
//!    lean tracker), ready time, `track()`, and twiggy of both wasm modules;
//! 6. with `--100m` (or `--generated N`): ClickHouse at 100 M (N) events generated inside
//!    ClickHouse, rollups built by `onramp-collector rollup rebuild`. Opt-in (CI never runs
//!    it): it takes about an hour on 2 cores and ≈ 7 GB of disk, and stops generating rather
//!    than leave under 12 GB free (`ONRAMP_BENCH_MIN_FREE_GB`).
//!
//! `--only 3,4,6` runs just those sections and replaces only their rows in BENCHMARKS.md.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use super::{apt_install, build, collector_binary, output, root, run, setup, sizes, Result};

mod sdk;
mod rerender;
mod reports;

/// Peers as (label, npm package, version, entry that keeps the package's public API alive).
/// Versions must match `bench/package.json`.
const TOURS: [(&str, &str, &str, &str); 3] = [
    ("driver.js", "driver.js", "1.8.0", r#"export { driver } from "driver.js";"#),
    ("shepherd.js", "shepherd.js", "15.3.0", r#"export { default } from "shepherd.js";"#),
    ("intro.js", "intro.js", "8.6.0", r#"export { default } from "intro.js";"#),
];
const ANALYTICS: [(&str, &str, &str, &str); 3] = [
    ("posthog-js", "posthog-js", "1.449.2", r#"export { default } from "posthog-js";"#),
    ("@segment/analytics-next", "@segment/analytics-next", "1.84.3", r#"export { AnalyticsBrowser } from "@segment/analytics-next";"#),
    ("@rudderstack/analytics-js", "@rudderstack/analytics-js", "3.34.1", r#"export { RudderAnalytics } from "@rudderstack/analytics-js";"#),
];
/// The stylesheet each tour library needs on the page (its JS does not inject one).
const TOUR_CSS: [(&str, &str); 3] = [
    ("driver.js", "driver.js/dist/driver.css"),
    ("shepherd.js", "shepherd.js/dist/css/shepherd.css"),
    ("intro.js", "intro.js/introjs.css"),
];
/// The funnel asked of the generated data (the names `bench_sqlite generate` writes).
const FUNNEL: &str =
    "milestone:signed_up,milestone:project_created,milestone:teammate_invited,milestone:file_uploaded,milestone:report_shared";
/// Timed runs per query after a warm-up, fewer as the data grows (a 10 M query takes minutes).
fn query_runs(events: u64) -> usize {
    match events {
        0..=100_000 => 5,
        100_001..=1_000_000 => 3,
        _ => 1,
    }
}
const INGEST_SECONDS: u32 = 10;
const INGEST_CONNECTIONS: u32 = 32;
const LIGHT_CONNECTIONS: u32 = 4;
const LIGHT_SECONDS: u32 = 5;

struct Opts {
    ten_million: bool,
    /// Events for section 6 (`--100m`: 100 M; `--generated N`: N); not run when `None`.
    generated: Option<u64>,
    runs: u32,
    /// Sections to run (`1`, `2`, `2b`, `3`, …); all when `None`.
    only: Option<Vec<String>>,
}

impl Opts {
    fn wants(&self, section: &str) -> bool {
        self.only.as_ref().is_none_or(|only| only.iter().any(|s| s == section))
    }
}

const USAGE: &str = "usage: cargo xtask bench [--10m] [--100m | --generated N] [--runs N] [--only 1,2,2b,3,4,5,6]

  --10m            section 4 also at 10 M events (SQLite and ClickHouse; tens of minutes)
  --100m           section 6: ClickHouse at 100 M events generated inside ClickHouse
                   (INSERT … SELECT … FROM numbers(…) in chunks), rollups built by
                   `onramp-collector rollup rebuild` (timed), then every route and the full
                   /v1/report: wall, collector CPU and peak RSS, ClickHouse CPU from
                   system.query_log, load average; bytes on disk per event (system.parts).
                   About an hour on 2 cores and ≈ 7 GB under target/bench/tmp (deleted after);
                   generation stops early rather than leave under ONRAMP_BENCH_MIN_FREE_GB
                   (default 12) free. Opt-in: CI does not run it.
  --generated N    section 6 at N events instead of 100 M (e.g. 10000000)
  --runs N         browser loads per figure in sections 2 and 5 (default 7)
  --only LIST      run just these sections and replace only their rows in BENCHMARKS.md";

fn parse(args: &[String]) -> Result<Opts> {
    let mut opts = Opts { ten_million: false, generated: None, runs: 7, only: None };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--10m" => opts.ten_million = true,
            "--100m" => opts.generated = Some(100_000_000),
            "--generated" => opts.generated = Some(it.next().and_then(|n| n.parse().ok()).ok_or("--generated needs a number of events")?),
            "--runs" => opts.runs = it.next().and_then(|n| n.parse().ok()).ok_or("--runs needs a number")?,
            "--only" => {
                let list = it.next().ok_or("--only needs sections, e.g. 3,4,6")?;
                opts.only = Some(list.split(',').map(str::to_owned).collect());
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("bench: unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(opts)
}

/// One row of the table.
struct Row {
    measure: String,
    onramp: String,
    beside: String,
    target: String,
    met: &'static str,
}

#[derive(Default)]
struct Table {
    rows: Vec<Row>,
    /// `uptime`-style load averages, sampled as each section starts.
    load: Vec<(String, String)>,
    commands: Vec<String>,
}

impl Table {
    fn section(&mut self, name: &str) {
        eprintln!("== bench: {name}");
        self.load.push((name.into(), load_average()));
        self.row(&format!("**{name}**"), "", "", "", None);
    }
    fn row(&mut self, measure: &str, onramp: &str, beside: &str, target: &str, met: Option<bool>) {
        self.rows.push(Row {
            measure: measure.into(),
            onramp: onramp.into(),
            beside: beside.into(),
            target: target.into(),
            met: match met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "",
            },
        });
    }
    fn markdown(&self) -> String {
        let mut s = String::from("| measure | onramp | beside it (peers, limit) | target | met |\n|---|---|---|---|---|\n");
        for r in &self.rows {
            let _ = writeln!(s, "| {} | {} | {} | {} | {} |", r.measure, r.onramp, r.beside, r.target, r.met);
        }
        s
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// `key=value` lines, as the bench scripts print them.
fn key_values(text: &str) -> BTreeMap<String, String> {
    text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.trim().into(), v.trim().into())).collect()
}

fn num(kv: &BTreeMap<String, String>, key: &str) -> Option<f64> {
    kv.get(key).and_then(|v| v.parse().ok())
}

/// Runs a command, records it for BENCHMARKS.md, and returns its stdout.
fn capture(table: &mut Table, cmd: &mut Command) -> Result<String> {
    let shown = super::describe(cmd).replace(&root().display().to_string(), ".");
    eprintln!("$ {shown}");
    table.commands.push(shown.clone());
    let out = cmd.stderr(Stdio::inherit()).output().map_err(|e| format!("{shown}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{shown} failed ({})", out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn kb(bytes: f64) -> String {
    format!("{:.1} KB", bytes / 1024.0)
}

/// "12.3 KB gz (raw 40.1 KB, br 10.9 KB)".
fn size_cell((raw, gz, br): (usize, usize, usize)) -> String {
    format!("{} gz ({} raw, {} br)", kb(gz as f64), kb(raw as f64), kb(br as f64))
}

fn wire_size(path: &Path) -> (usize, usize, usize) {
    let (raw, gz, br) = sizes(path);
    (raw, gz.unwrap_or(0), br.unwrap_or(0))
}

fn add(a: (usize, usize, usize), b: (usize, usize, usize)) -> (usize, usize, usize) {
    (a.0 + b.0, a.1 + b.1, a.2 + b.2)
}

fn bench_dir() -> PathBuf {
    root().join("bench")
}

fn work_dir() -> PathBuf {
    root().join("target/bench")
}

/// The peers (exact versions from bench/package-lock.json) and wrk; nothing is installed into
/// the project's own node_modules.
fn install_tools() -> Result {
    let modules = bench_dir().join("node_modules");
    let lock = bench_dir().join("package-lock.json");
    let stamp = modules.join(".package-lock.json");
    let stale = |m: &Path| std::fs::metadata(m).and_then(|m| m.modified()).ok();
    if !modules.exists() || stale(&stamp) < stale(&lock) {
        run(Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(bench_dir()))?;
    }
    if output(Command::new("wrk").arg("-v")).is_none() && !Path::new("/usr/bin/wrk").exists() {
        apt_install(&["wrk"])?;
    }
    if output(Command::new("twiggy").arg("--version")).is_none() {
        run(super::cargo().args(["install", "twiggy", "--locked"]))?;
    }
    Ok(())
}

fn esbuild(table: &mut Table, entry: &Path, out: &Path, format: &str) -> Result {
    let mut cmd = Command::new(root().join("node_modules/.bin/esbuild"));
    cmd.arg(entry)
        .args(["--bundle", "--minify", "--log-level=error", "--loader:.css=empty"])
        .arg(format!("--format={format}"))
        .arg(format!("--outfile={}", out.display()))
        .current_dir(bench_dir());
    capture(table, &mut cmd).map(drop)
}

/// Bundles one peer from an entry file inside bench/ (so its node_modules resolve).
fn bundle_peer(table: &mut Table, name: &str, entry_js: &str) -> Result<PathBuf> {
    let slug: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let entry = bench_dir().join(format!(".entry-{slug}.mjs"));
    std::fs::write(&entry, entry_js).map_err(|e| e.to_string())?;
    let out = work_dir().join(format!("{slug}.min.js"));
    let result = esbuild(table, &entry, &out, "esm");
    let _ = std::fs::remove_file(&entry);
    result.map(|()| out)
}

fn sizes_section(table: &mut Table) -> Result {
    table.section("1. Size on the wire (each file compressed on its own, as served)");
    let dist = root().join("dist");
    let loader = wire_size(&dist.join("loader.js"));
    let module = wire_size(&dist.join("index.mjs"));
    let glue = wire_size(&dist.join("onramp.js"));
    let wasm = wire_size(&dist.join("onramp_bg.wasm"));
    table.row("onramp loader.js (the script tag)", &size_cell(loader), "", "≤ 1 KB gz", Some(loader.1 <= 1024));
    table.row("onramp index.mjs (ES module: queue, replay)", &size_cell(module), "", "", None);
    table.row("onramp onramp.js (wasm-bindgen glue)", &size_cell(glue), "", "", None);
    table.row("onramp onramp_bg.wasm", &size_cell(wasm), "", "", None);
    if let Some(parts) = wasm_parts(table, "onramp") {
        table.row("… onramp_bg.wasm by part (twiggy; raw bytes before compression)", &parts, "", "", None);
    }
    let sdk = add(add(module, glue), wasm);
    table.row("onramp glue + wasm (index.mjs + onramp.js + wasm)", &size_cell(sdk), "", "≤ 40 KB gz", Some(sdk.1 <= 40 * 1024));
    let total = add(sdk, loader);
    table.row("onramp total: tours and tips **and** analytics", &size_cell(total), "", "", None);

    let mut tours = Vec::new();
    for ((label, _, version, entry), (_, css)) in TOURS.iter().zip(TOUR_CSS) {
        let js = wire_size(&bundle_peer(table, label, entry)?);
        let css = wire_size(&bench_dir().join("node_modules").join(css));
        table.row(&format!("{label} {version} (tour) JS + its CSS"), "", &format!("{} + CSS {}", size_cell(js), kb(css.1 as f64)), "", None);
        tours.push((*label, add(js, css)));
    }
    let mut analytics = Vec::new();
    for (label, _, version, entry) in ANALYTICS {
        let js = wire_size(&bundle_peer(table, label, entry)?);
        table.row(&format!("{label} {version} (analytics)"), "", &size_cell(js), "", None);
        analytics.push((label, js));
    }
    let mut pairs: Vec<(String, (usize, usize, usize))> = tours
        .iter()
        .flat_map(|(t, ts)| analytics.iter().map(move |(a, as_)| (format!("{t} + {a}"), add(*ts, *as_))))
        .collect();
    pairs.sort_by_key(|(_, s)| s.1);
    if let (Some(small), Some(large)) = (pairs.first(), pairs.last()) {
        let vs = |pair: &(String, (usize, usize, usize))| {
            format!("{}: {}", pair.0, size_cell(pair.1))
        };
        table.row("a tour library + an analytics SDK: smallest pair", &size_cell(total), &vs(small), "below the smallest pair", Some(total.1 < small.1 .1));
        table.row("… largest pair", "", &vs(large), "", None);
    }
    Ok(())
}

/// A shipped wasm's bytes by part (`name`: "onramp", the full SDK, or "tracker"): the same
/// wasm-bindgen and `wasm-opt -Oz` as the build, with `-g` so function names survive for twiggy
/// (the names section itself is not counted).
fn wasm_parts(table: &mut Table, name: &str) -> Option<String> {
    let dir = work_dir().join("named");
    let built = root().join(format!("target/wasm32-unknown-unknown/wasm/{name}.wasm"));
    capture(table, Command::new("wasm-bindgen").args(["--target", "web", "--out-dir"]).arg(&dir).arg(&built)).ok()?;
    let named = dir.join(format!("{name}_bg.wasm"));
    // The build's short import and export names (so they weigh what they weigh in the shipped
    // file), then its passes.
    let wasm_opt = root().join("node_modules/.bin/wasm-opt");
    capture(table, Command::new(&wasm_opt).args(["-g", "--minify-imports-and-exports-and-modules"]).arg(&named).arg("-o").arg(&named)).ok()?;
    capture(table, Command::new(&wasm_opt).arg("-g").args(super::wasm_opt_passes(name)).arg(&named).arg("-o").arg(&named)).ok()?;
    let csv = capture(table, Command::new("twiggy").args(["top", "-n", "1000000", "-f", "csv"]).arg(&named)).ok()?;
    let mut parts: BTreeMap<String, usize> = BTreeMap::new();
    for line in csv.lines().skip(1) {
        // Name,ShallowSize,ShallowSizePercent,RetainedSize,RetainedSizePercent; names may
        // contain commas (quoted), so the numbers are taken from the right.
        let mut fields = line.rsplitn(5, ',');
        let (_, _, _, size, name) = (fields.next(), fields.next(), fields.next(), fields.next()?, fields.next()?);
        let size: usize = size.parse().ok()?;
        let name = name.trim_matches('"').replace("\"\"", "\"");
        if name.ends_with("names\" subsection") {
            continue;
        }
        *parts.entry(wasm_part(&name)).or_default() += size;
    }
    let total: usize = parts.values().sum();
    let mut parts: Vec<(String, usize)> = parts.into_iter().collect();
    parts.sort_by_key(|p| std::cmp::Reverse(p.1));
    let shown: Vec<String> = parts
        .iter()
        .take(12)
        .map(|(part, size)| format!("{part} {} ({:.0} %)", kb(*size as f64), *size as f64 * 100.0 / total as f64))
        .collect();
    Some(shown.join("; "))
}

/// Which part of the SDK (or of Rust's runtime) a wasm item belongs to, from its name.
fn wasm_part(name: &str) -> String {
    if name.starts_with("data segment") {
        return "data (strings, CSS, tables)".into();
    }
    if name.contains("dlmalloc") || name.contains("lol_alloc") || name.contains("__rdl_") || name.contains("__rust_alloc") || name.contains("__rust_realloc") {
        return "allocator".into();
    }
    // std's panic handler and what it keeps: the formatting of panic messages (`core::fmt`),
    // the payloads, the hook. The tracker is `no_std` with a trapping handler: what it still
    // counts there is core's panic entry points.
    if name.contains("::fmt") || name.contains("Formatter") || name.contains("panicking") || name.contains("rust_begin_unwind") {
        return "core::fmt and std's panic handler".into();
    }
    // The first path in the name is the item's own (`<onramp::web::X as onramp::core::T>`).
    let first = ["onramp::core", "onramp::web"].into_iter().filter_map(|l| Some((name.find(&format!("{l}::"))?, l))).min();
    if let Some((at, layer)) = first {
        // `layer::module::Item…` names a module; `layer::function::h<hash>`, a closure or a
        // type (upper case) belong to the layer's own mod.rs.
        let mut segments = name[at + layer.len() + 2..].split("::");
        let (first, next) = (segments.next().unwrap_or(""), segments.next().unwrap_or(""));
        let is_hash = next.len() == 17 && next.starts_with('h') && next[1..].chars().all(|c| c.is_ascii_hexdigit());
        let lower = first.chars().next().is_some_and(|c| c.is_ascii_lowercase());
        return if lower && !next.is_empty() && !is_hash && !next.starts_with('{') {
            format!("{layer}::{}", first.split(|c: char| !c.is_alphanumeric() && c != '_').next().unwrap_or(first))
        } else {
            layer.to_owned()
        };
    }
    if name.contains("externref") || name.contains("wbindgen") || name.contains("wasm_bindgen") || name.starts_with("__wbg") {
        return "wasm-bindgen glue".into();
    }
    if name.contains("core::") || name.contains("core[") || name.contains("alloc::") || name.contains("alloc[") || name.contains("std::") || name.contains("std[") {
        return "std/core generics (iterators, str, Vec)".into();
    }
    "exports and other".into()
}

/// A collector process on a free loopback port, stopped when dropped.
struct Collector {
    child: Child,
    url: String,
}

impl Collector {
    fn start(db: &Path) -> Result<Collector> {
        Collector::start_with(&["--db".as_ref(), db.as_os_str()])
    }

    /// `args` choose the store and anything else beyond the listen address.
    fn start_with(args: &[&std::ffi::OsStr]) -> Result<Collector> {
        let mut child = Command::new(collector_binary())
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .current_dir(root())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("onramp-collector: {e}"))?;
        let stdout = child.stdout.take().ok_or("onramp-collector: no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(rest) = line.split("listening on ").nth(1) {
                        break rest.split_whitespace().next().unwrap_or_default().to_owned();
                    }
                }
                _ => {
                    let _ = child.kill();
                    return Err("onramp-collector exited before listening".into());
                }
            }
        };
        // Keep draining its stdout so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Collector { child, url })
    }

    /// CPU time all its threads have had so far, in seconds (`/proc/PID/task/*/schedstat`): on
    /// a shared machine the throughput is what the process got of the cores, its CPU per event
    /// is what it needed.
    fn cpu_seconds(&self) -> Option<f64> {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.child.id())).ok()?;
        let ns: u64 = tasks
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
            .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .sum();
        Some(ns as f64 / 1e9)
    }

    /// Starts a new peak for [`Collector::peak_rss`] (`/proc/PID/clear_refs`), so the next one
    /// is the peak of what runs after.
    fn reset_peak_rss(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5");
    }

    /// Peak resident set size so far (VmHWM), in bytes.
    fn peak_rss(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024.0)
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        // SIGTERM first: the collector finishes in-flight requests and closes SQLite cleanly.
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

fn fresh_db(name: &str) -> Result<PathBuf> {
    let dir = work_dir().join("db");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let db = dir.join(name);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    Ok(db)
}

fn browser_section(table: &mut Table, runs: u32) -> Result {
    table.section("2. Demo page in headless Chromium (median of cold loads)");
    let posthog = work_dir().join("posthog.iife.js");
    let entry = bench_dir().join(".entry-posthog-iife.mjs");
    std::fs::write(&entry, "import posthog from \"posthog-js\";\nwindow.posthog = posthog;\n").map_err(|e| e.to_string())?;
    let bundled = esbuild(table, &entry, &posthog, "iife");
    let _ = std::fs::remove_file(&entry);
    bundled?;
    let collector = Collector::start(&fresh_db("browser.db")?)?;
    let mut node = Command::new("node");
    node.arg(bench_dir().join("browser.mjs"))
        .env("BENCH_COLLECTOR", &collector.url)
        .env("BENCH_POSTHOG", &posthog)
        .env("BENCH_RUNS", runs.to_string())
        .current_dir(root());
    let kv = key_values(&capture(table, &mut node)?);
    drop(collector);
    let get = |k: &str| kv.get(k).cloned().unwrap_or_else(|| "?".into());
    let ready = num(&kv, "ready_ms");
    table.row(
        &format!("loader starts → SDK ready ({runs} cold loads; min–max)"),
        &format!("{} ms ({}–{})", get("ready_ms"), get("ready_min_ms"), get("ready_max_ms")),
        &format!(
            "fetched after loader start (in parallel): module with its glue {} ms, wasm {} ms; navigation → ready {} ms",
            get("fetched_module_ms"),
            get("fetched_wasm_ms"),
            get("nav_ready_ms")
        ),
        "≤ 20 ms",
        ready.map(|r| r <= 20.0),
    );
    let tip = get("tip_ms");
    if tip == "n/a" {
        table.row("navigation → first tip visible", "n/a — no tip shown on the demo page yet", "", "", None);
    } else {
        table.row(
            "navigation → first tip visible (a returning signed-up user, cold HTTP cache)",
            &format!("{tip} ms"),
            &format!("navigation → SDK ready on those loads: {} ms", get("tip_after_ready_ms")),
            "",
            None,
        );
    }
    let sdk_long = num(&kv, "sdk_longtasks_over_50ms").unwrap_or(0.0);
    table.row(
        "long tasks > 50 ms caused by the SDK",
        &format!("{sdk_long} (longest SDK script in one frame: {} ms)", get("sdk_longest_script_in_frame_ms")),
        &format!("all long tasks on the page: {} per load, longest {} ms", get("longtasks_per_load"), get("longtask_max_ms")),
        "none",
        Some(sdk_long == 0.0),
    );
    let track = num(&kv, "track_us");
    let posthog_us = num(&kv, "posthog_us");
    let posthog_mem = num(&kv, "posthog_memory_us");
    // How many of our track() calls cost one capture (below 1: ours is the dearer).
    let ratio = |p: Option<f64>| match (track, p) {
        (Some(t), Some(p)) if t > 0.0 => format!(" ({:.2} × ours)", p / t),
        _ => String::new(),
    };
    table.row(
        &format!("one `track()` (median, {} calls)", get("track_calls")),
        &format!("{} µs", get("track_us")),
        &format!(
            "posthog.capture(): {} µs{} with its default cookie persistence; {} µs{} with persistence: \"memory\"",
            get("posthog_us"),
            ratio(posthog_us),
            get("posthog_memory_us"),
            ratio(posthog_mem)
        ),
        "≤ 5 µs and ≤ ¼ of posthog",
        match (track, posthog_us.into_iter().chain(posthog_mem).reduce(f64::min)) {
            (Some(t), Some(p)) => Some(t <= 5.0 && t <= p / 4.0),
            _ => None,
        },
    );
    table.row(
        &format!("… `track()` on a fresh page: its first {} calls (median of the cold loads)", get("first_tracks")),
        &format!("{} µs", get("first_track_us")),
        "",
        "≤ 20 µs",
        num(&kv, "first_track_us").map(|t| t <= 20.0),
    );
    table.row(
        "JS heap added by the SDK (page with it − page without)",
        &format!("{} KB", get("heap_kb")),
        &format!("posthog-js after init: {} KB", get("posthog_heap_kb")),
        "",
        None,
    );
    table.row(
        "wasm linear memory",
        &format!("{} KB after init; {} KB after the 10 000 tracks", get("wasm_kb"), get("wasm_after_track_kb")),
        "",
        "",
        None,
    );
    table.row("page errors during the runs", &get("page_errors"), "", "0", Some(get("page_errors") == "0"));
    Ok(())
}

/// `wrk` posting `bench/ingest.lua`'s batches; its `key=value` summary.
fn wrk(table: &mut Table, url: &str, connections: u32, seconds: u32) -> Result<BTreeMap<String, String>> {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s"), "-s"])
        .arg(bench_dir().join("ingest.lua"))
        .arg(url)
        .current_dir(root());
    Ok(key_values(&capture(table, &mut cmd)?))
}

fn bench_sqlite() -> PathBuf {
    root().join("target/release/examples/bench_sqlite")
}

fn ingest_section(table: &mut Table) -> Result {
    table.section("3. Collector ingest over loopback (SQLite, batches of 50 events)");
    // One write key stands for many browsers here, so its rate limit (200 requests/s by
    // default) is lifted.
    let db = fresh_db("ingest.db")?;
    let collector = Collector::start_with(&["--db".as_ref(), db.as_os_str(), "--rate-limit".as_ref(), "1000000".as_ref()])?;
    let cpu_before = collector.cpu_seconds();
    let kv = wrk(table, &collector.url, INGEST_CONNECTIONS, INGEST_SECONDS)?;
    let cpu = collector.cpu_seconds().zip(cpu_before).map(|(after, before)| after - before);
    let rss = collector.peak_rss();
    // Latency when the collector is not saturated: a few senders at once.
    let light = wrk(table, &collector.url, LIGHT_CONNECTIONS, LIGHT_SECONDS)?;
    drop(collector);
    let requests = num(&kv, "requests").unwrap_or(0.0);
    let seconds = num(&kv, "seconds").unwrap_or(1.0);
    let events_per_s = requests * 50.0 / seconds;
    // The physical limit: the same number of rows, straight into SQLite by one process, with
    // the collector's pragmas; once with commits as large as the collector's largest group
    // commit (256 requests), once with one commit per batch of 50.
    let events = (requests as u64 * 50).clamp(100_000, 2_000_000);
    let raw_db = fresh_db("raw.db")?;
    let grouped = key_values(&capture(
        table,
        Command::new(bench_sqlite()).arg("insert").arg(&raw_db).args([events.to_string(), "256".into()]),
    )?);
    let single = key_values(&capture(
        table,
        Command::new(bench_sqlite()).arg("insert").arg(&raw_db).args(["20000", "1"]),
    )?);
    let limit = num(&grouped, "events_per_s").unwrap_or(f64::NAN);
    let ratio = events_per_s / limit;
    let non2xx = num(&kv, "non2xx").unwrap_or(0.0) + num(&kv, "socket_errors").unwrap_or(0.0);
    table.row(
        &format!("ingest throughput ({INGEST_CONNECTIONS} connections, {INGEST_SECONDS} s, wrk)"),
        &format!("{events_per_s:.0} events/s ({:.0} requests/s; {non2xx} errors)", requests / seconds),
        &format!(
            "raw SQLite insert: {limit:.0} events/s (12 800 rows per commit), {:.0} events/s (50 rows per commit); collector at {:.0} % of the limit",
            num(&single, "events_per_s").unwrap_or(f64::NAN),
            ratio * 100.0
        ),
        "≥ 50 % of raw insert",
        Some(ratio >= 0.5),
    );
    // Requests still in flight when wrk stopped were stored too; their few events are left out.
    let stored = requests * 50.0;
    table.row(
        "CPU per stored event (collector: all threads; raw insert: its one thread)",
        &cpu.map_or("?".into(), |c| format!("{:.1} µs", c / stored * 1e6)),
        &format!("raw SQLite insert: {} µs (12 800 rows per commit)", num(&grouped, "cpu_us_per_event").map_or("?".into(), |c| format!("{c:.1}"))),
        "",
        None,
    );
    let p99 = num(&kv, "p99_ms");
    table.row(
        "request latency p50 / p99 (under that load)",
        &format!("{} / {} ms (max {} ms)", kv.get("p50_ms").map_or("?", String::as_str), kv.get("p99_ms").map_or("?", String::as_str), kv.get("max_ms").map_or("?", String::as_str)),
        "",
        "p99 ≤ 20 ms",
        p99.map(|p| p <= 20.0),
    );
    let light_events = num(&light, "requests").unwrap_or(0.0) * 50.0 / num(&light, "seconds").unwrap_or(1.0);
    table.row(
        &format!("… latency p50 / p99 with {LIGHT_CONNECTIONS} connections ({LIGHT_SECONDS} s)"),
        &format!(
            "{} / {} ms (max {} ms) at {light_events:.0} events/s",
            light.get("p50_ms").map_or("?", String::as_str),
            light.get("p99_ms").map_or("?", String::as_str),
            light.get("max_ms").map_or("?", String::as_str)
        ),
        "",
        "p99 ≤ 20 ms",
        num(&light, "p99_ms").map(|p| p <= 20.0),
    );
    table.row(
        "collector peak RSS (VmHWM) under load",
        &rss.map_or("?".into(), |r| format!("{:.1} MB", r / 1048576.0)),
        "",
        "≤ 100 MB",
        rss.map(|r| r <= 100.0 * 1048576.0),
    );
    Ok(())
}

/// Generated data is kept between runs (it is deterministic); `GENERATOR` names its version.
const GENERATOR: &str = "v2";

fn dataset(table: &mut Table, events: u64) -> Result<(PathBuf, String)> {
    let dir = work_dir().join("data");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let db = dir.join(format!("events-{GENERATOR}-{events}.db"));
    if db.exists() {
        return Ok((db, "reused".into()));
    }
    let partial = dir.join(format!("partial-{events}.db"));
    // Generating test data is not what is measured: lowest priority on a shared machine.
    let kv = key_values(&capture(
        table,
        Command::new("nice").args(["-n", "19"]).arg(bench_sqlite()).arg("generate").arg(&partial).arg(events.to_string()),
    )?);
    std::fs::rename(&partial, &db).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(format!("{}-wal", partial.display()));
    let _ = std::fs::remove_file(format!("{}-shm", partial.display()));
    Ok((db, format!("generated in {} s, {} users", kv.get("seconds").map_or("?", String::as_str), kv.get("users").map_or("?", String::as_str))))
}

/// One HTTP GET with curl; returns (status, seconds).
fn timed_get(url: &str) -> Result<(String, f64)> {
    let out = output(Command::new("curl").args(["-s", "-m", "1800", "-o", "/dev/null", "-H", "Authorization: Bearer rt_demo", "-w", "%{http_code} %{time_total}", url]))
        .ok_or_else(|| format!("curl {url} failed"))?;
    let (code, secs) = out.split_once(' ').ok_or("curl: unexpected output")?;
    Ok((code.into(), secs.parse().map_err(|_| "curl: bad time")?))
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let m = xs.len() / 2;
    if xs.len() % 2 == 1 { xs[m] } else { (xs[m - 1] + xs[m]) / 2.0 }
}

/// Median latency of a query route, or why there is none ("404" when the route does not exist).
fn query_latency(url: &str, runs: usize) -> Result<std::result::Result<f64, String>> {
    let (code, _) = timed_get(url)?; // warm the page cache once
    if code != "200" {
        return Ok(Err(format!("HTTP {code}")));
    }
    let mut times = Vec::new();
    for _ in 0..runs {
        times.push(timed_get(url)?.1);
    }
    Ok(Ok(median(times)))
}

/// The funnel and time-to-value routes on one collector: (funnel, ttv) median latencies.
type Latencies = (std::result::Result<f64, String>, std::result::Result<f64, String>);

fn query_both(collector: &Collector, runs: usize) -> Result<Latencies> {
    Ok((
        query_latency(&format!("{}/v1/funnel?steps={FUNNEL}", collector.url), runs)?,
        query_latency(&format!("{}/v1/ttv?steps={FUNNEL}&value=milestone:report_shared", collector.url), runs)?,
    ))
}

/// Starts a `bench_sqlite` command that loads a local clickhouse-server and keeps it until its
/// stdin closes; returns it with the `key=value` lines it printed up to `seconds=`.
fn start_server_loader(table: &mut Table, mut cmd: Command) -> Result<(Child, BTreeMap<String, String>)> {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    let shown = super::describe(&cmd).replace(&root().display().to_string(), ".");
    table.commands.push(shown.clone());
    let mut loader = cmd.spawn().map_err(|e| format!("{shown}: {e}"))?;
    let stdout = loader.stdout.take().ok_or("bench_sqlite: no stdout")?;
    let mut kv = BTreeMap::new();
    for line in BufReader::new(stdout).lines().map_while(std::io::Result::ok) {
        if let Some((k, v)) = line.split_once('=') {
            kv.insert(k.to_owned(), v.to_owned());
        }
        if kv.contains_key("seconds") {
            break;
        }
    }
    Ok((loader, kv))
}

/// The same data in a local clickhouse-server (kept by `bench_sqlite clickhouse` until its
/// stdin closes), queried through a collector started with `--store`.
fn clickhouse_latencies(table: &mut Table, db: &Path, runs: usize, events: u64, label: &str) -> Result<(Latencies, String)> {
    let mut cmd = Command::new(bench_sqlite());
    cmd.arg("clickhouse").arg(db);
    let (mut loader, kv) = start_server_loader(table, cmd)?;
    let result = match kv.get("store") {
        Some(url) => {
            let collector = Collector::start_with(&["--store".as_ref(), url.as_ref()])?;
            let latencies = query_both(&collector, runs)?;
            let target = match events {
                10_000_000 => "≤ 0.5 s",
                100_000_000 => "≤ 3 s",
                _ => "",
            };
            reports::route_rows(table, &collector, "ClickHouse", label, runs, target)?;
            let bytes = reports::clickhouse_bytes_per_event(url, events);
            table.row(&format!("ClickHouse bytes on disk per event, {label} events"), &bytes, "events, rollups and links", "", None);
            Ok((latencies, format!("copied in {} s", kv.get("seconds").map_or("?", String::as_str))))
        }
        None => Err("bench_sqlite clickhouse did not start a server (is clickhouse-server installed?)".into()),
    };
    drop(loader.stdin.take()); // the loader stops its server and exits
    let _ = loader.wait();
    result
}

fn queries_section(table: &mut Table, ten_million: bool) -> Result {
    table.section("4. Queries over generated data (HTTP, curl; median of 5, 3 and 1 runs after a warm-up at 100 k, 1 M, 10 M)");
    let mut scales = vec![100_000u64, 1_000_000];
    if ten_million {
        scales.push(10_000_000);
    }
    let cell = |r: &std::result::Result<f64, String>| match r {
        Ok(s) => format!("{:.0} ms", s * 1000.0),
        Err(why) => format!("n/a ({why})"),
    };
    for events in scales {
        let (db, how) = dataset(table, events)?;
        let label = match events {
            100_000 => "100 k",
            1_000_000 => "1 M",
            _ => "10 M",
        };
        let collector = Collector::start(&db)?;
        let runs = query_runs(events);
        let (funnel, ttv) = query_both(&collector, runs)?;
        reports::route_rows(table, &collector, "SQLite", label, runs, if events == 10_000_000 { "≤ 1 s" } else { "" })?;
        drop(collector);
        let bytes = reports::sqlite_bytes_per_event(&db, events);
        table.row(&format!("SQLite bytes on disk per event, {label} events"), &bytes, "events, indexes, rollups", "", None);
        let (clickhouse, copied) = match clickhouse_latencies(table, &db, runs, events, label) {
            Ok((l, copied)) => (l, copied),
            Err(why) => ((Err(why.clone()), Err(why)), String::new()),
        };
        let target = if events == 10_000_000 { "≤ 1 s (SQLite)" } else { "" };
        table.row(
            &format!("5-step funnel, {label} events: SQLite"),
            &cell(&funnel),
            &format!("ClickHouse: {} (data {how}; ClickHouse {copied})", cell(&clickhouse.0)),
            target,
            (events == 10_000_000).then(|| funnel.as_ref().is_ok_and(|s| *s <= 1.0)),
        );
        table.row(&format!("time-to-value, {label} events: SQLite"), &cell(&ttv), &format!("ClickHouse: {}", cell(&clickhouse.1)), "", None);
    }
    if !ten_million {
        table.row("5-step funnel, 10 M events", "not run (add `--10m`)", "", "≤ 1 s", None);
    }
    Ok(())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| c.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|s| s.trim().to_owned()))
        .unwrap_or_else(|| "?".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|k| k.parse::<f64>().ok()))
        .map_or("?".into(), |k| format!("{:.1} GiB", k / 1048576.0));
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let chromium = output(Command::new("/usr/bin/chromium").arg("--version")).unwrap_or_default();
    let rustc = output(Command::new("rustc").arg("--version")).unwrap_or_default();
    format!("{cores} cores ({cpu}), {mem} memory; {chromium}; {rustc}")
}

pub fn bench(args: &[String]) -> Result {
    let opts = parse(args)?;
    let started = Instant::now();
    setup()?;
    install_tools()?;
    // The shipped SDK is measured by sections 1, 2, 2b and 5 only.
    if ["1", "2", "2b", "5"].iter().any(|s| opts.wants(s)) {
        build()?;
    }
    run(super::cargo().args(["build", "--release", "-p", "onramp-collector", "--bin", "onramp-collector", "--example", "bench_sqlite"]))?;
    std::fs::create_dir_all(work_dir()).map_err(|e| e.to_string())?;
    let date = output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])).unwrap_or_default();
    let commit = output(Command::new("git").args(["rev-parse", "--short", "HEAD"]).current_dir(root())).unwrap_or_default();

    let mut table = Table::default();
    if opts.wants("1") {
        sizes_section(&mut table)?;
    }
    if opts.wants("2") {
        browser_section(&mut table, opts.runs)?;
    }
    if opts.wants("2b") {
        rerender::section(&mut table)?;
    }
    if opts.wants("3") {
        ingest_section(&mut table)?;
    }
    if opts.wants("4") {
        queries_section(&mut table, opts.ten_million)?;
    }
    if opts.wants("5") {
        sdk::section(&mut table, opts.runs)?;
    }
    if let Some(events) = opts.generated.filter(|_| opts.wants("6")) {
        reports::generated_in_clickhouse(&mut table, events)?;
    }
    table.load.push(("end".into(), load_average()));

    let rows = table.markdown();
    println!("\n{rows}");
    let load: Vec<String> = table.load.iter().map(|(s, l)| format!("{} → {l}", s.split(' ').next().unwrap_or(s))).collect();
    let invocation = if args.is_empty() { "cargo xtask bench".to_owned() } else { format!("cargo xtask bench {}", args.join(" ")) };
    if opts.only.is_some() {
        let path = root().join("BENCHMARKS.md");
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        let sections: Vec<&str> =
            table.load.iter().filter(|(s, _)| s != "end").map(|(s, _)| s.split(' ').next().unwrap_or(s).trim_end_matches('.')).collect();
        let note = format!(
            "- **{} {} refreshed** by `{invocation}` on {date} at commit `{commit}` in {:.0} s; load average (1, 5, 15 min) as each started: {}.",
            if sections.len() == 1 { "Section" } else { "Sections" },
            sections.join(", "),
            started.elapsed().as_secs_f64(),
            load.join("; ")
        );
        std::fs::write(&path, splice_sections(&old, &rows, &note, &table.commands)).map_err(|e| e.to_string())?;
        println!("updated BENCHMARKS.md ({:.0} s)", started.elapsed().as_secs_f64());
        return Ok(());
    }
    let mut md = String::new();
    let _ = writeln!(md, "# onramp benchmarks\n");
    let _ = writeln!(md, "Written by `{invocation}` on {date} at commit `{commit}` in {:.0} s. Benchmarks measure; they are", started.elapsed().as_secs_f64());
    let _ = writeln!(md, "not tests, and the targets are goals. Re-run the command to refresh this file.\n");
    let _ = writeln!(md, "- **Machine**: {}", machine());
    let _ = writeln!(md, "- **Load average** (1, 5, 15 min) as each section started: {}.", load.join("; "));
    let _ = writeln!(md, "  The machine is shared; figures taken under load are noisy, so medians are reported.\n");
    md.push_str(&rows);
    md.push_str(NOTES);
    let _ = writeln!(md, "\n## Commands used\n\n```sh\n{invocation}");
    for c in &table.commands {
        let _ = writeln!(md, "{c}");
    }
    md.push_str("```\n");
    std::fs::write(root().join("BENCHMARKS.md"), md).map_err(|e| e.to_string())?;
    println!("wrote BENCHMARKS.md ({:.0} s)", started.elapsed().as_secs_f64());
    Ok(())
}

/// `old` BENCHMARKS.md with each section of the new `rows` (from its `| **N.` row to the next
/// section's) put in place of the same section's rows, or added at the end of the table;
/// `note` added after the load averages and `commands` to the commands used.
fn splice_sections(old: &str, rows: &str, note: &str, commands: &[String]) -> String {
    let is_section = |l: &str| l.starts_with("| **");
    let mut lines: Vec<String> = old.lines().map(str::to_owned).collect();
    let new: Vec<&str> = rows.lines().skip(2).collect();
    let mut at = 0;
    while at < new.len() {
        let end = (at + 1..new.len()).find(|&i| is_section(new[i])).unwrap_or(new.len());
        let block: Vec<String> = new[at..end].iter().map(|l| (*l).to_owned()).collect();
        let number = new[at].trim_start_matches("| **").split(' ').next().unwrap_or_default().to_owned();
        let start = lines.iter().position(|l| is_section(l) && l.trim_start_matches("| **").split(' ').next() == Some(number.as_str()));
        match start {
            Some(s) => {
                let stop = (s + 1..lines.len()).find(|&i| is_section(&lines[i]) || !lines[i].starts_with('|')).unwrap_or(lines.len());
                lines.splice(s..stop, block);
            }
            None => {
                let last_row = lines.iter().rposition(|l| l.starts_with("| ")).map_or(lines.len(), |i| i + 1);
                lines.splice(last_row..last_row, block);
            }
        }
        at = end;
    }
    if let Some(i) = lines.iter().position(|l| l.starts_with("- **Load average**")) {
        // The load line wraps onto a second line, which starts with two spaces.
        let after = if lines.get(i + 1).is_some_and(|l| l.starts_with("  ")) { i + 2 } else { i + 1 };
        lines.insert(after, note.to_owned());
    }
    if let Some(fence) = lines.iter().rposition(|l| l == "```") {
        lines.splice(fence..fence, commands.iter().cloned());
    }
    lines.join("\n") + "\n"
}

const NOTES: &str = r#"
## How each figure is taken

- **Sizes**: `dist/` exactly as `cargo xtask build` ships it (wasm after `wasm-opt -Oz`), each
  file compressed on its own with `gzip -9` and `brotli -q 11`, as a server would serve it. Each
  peer is bundled from an entry file that re-exports its public API with
  `esbuild --bundle --minify --format=esm` (CSS imports emptied); the tour libraries' own
  stylesheets are measured beside them and counted in the pair sums. Dynamic imports are
  bundled in, so Segment's and RudderStack's lazily loaded parts count; neither counts what
  they fetch from their CDNs at run time (destinations, plugins). onramp's total is the
  loader, the ES module, the glue and the wasm: tips and analytics in one.
- **Ready**: the demo page, cold (a new browser context per load), served by the collector over
  loopback. An init script observes the snippet's queue: the loader setting `onramp.loaded`
  marks its start, the ES module setting `onramp.ready` gives the promise that resolves when
  the wasm is running and the queued calls are replayed.
- **Long tasks**: `PerformanceObserver` for `longtask` (the page's) and `long-animation-frame`,
  whose script attribution tells the SDK's scripts (`/sdk/v1/`) from the page's.
- **track() vs posthog.capture()**: 20 interleaved batches of 500 calls each
  (`track("bench_event", {i, plan})`), per-call cost = batch time / 500, median over batches
  (`performance.now()` is coarsened to 100 µs here). posthog-js is bundled with esbuild, added to
  the same page and initialised with a dummy key whose `api_host` is a closed loopback port,
  `autocapture: false`, `opt_out_useragent_filter: true` (it otherwise drops every event from
  an automated browser before doing any work) and its client rate limit raised (it otherwise
  drops all but 100 of the calls). A second instance with `persistence: "memory"` shows the
  cost without its default cookie persistence, which dominates its profile.
- **Memory**: `Runtime.getHeapUsage` after a forced GC, the demo page with the SDK minus the
  same page with `/sdk/v1/` blocked; the wasm memory is the instance's `memory.buffer`.
- **Ingest**: `wrk` with `bench/ingest.lua` (every event id unique, also across its two runs,
  so every row is a real insert), against a fresh database. The raw limit is `bench_sqlite
  insert`: rows of the same shape, the collector's schema (opened through `SqliteStore::open`,
  so the same indexes), WAL with every commit synced (`synchronous=FULL`; the collector makes
  the same `fdatasync` of the WAL on its sync thread before it acknowledges), one thread, no
  HTTP, no JSON, no rollups. CPU per event is the processes' own (`/proc/…/schedstat`, all the
  collector's threads), which the other work on the machine does not inflate as it does the
  throughput. RSS is the collector's `VmHWM`.
- **Re-render** (`bench/rerender.mjs`): a plain page re-renders a list of 1 000 rows once per
  frame, each re-render in a task of its own, throwing every row node away and making it again
  with new text and a changed class (what a template re-render or a changed `key` does). The
  DevTools protocol's `Performance.getMetrics` gives the main thread's CPU time (`ThreadTime`,
  which other processes on a shared machine do not inflate), its task wall time and its layout
  count over 60 re-renders, divided by 60; the page alone, with the SDK and no anchored tip,
  and with a tooltip anchored to a row that each re-render replaces. Median of 5 loads.
- **Queries**: `bench_sqlite generate` writes users who sign up over 30 days, pass each funnel
  step with 70 % probability and do product events between (≈ 20 events a user); anonymous
  browsing before sign-up is linked by an identify event. The route is timed over HTTP with curl
  (`/v1/funnel` with 5 steps), the data kept in `target/bench/data/` between runs.
- **Generated inside ClickHouse** (section 6, opt-in: `--100m`, or `--generated N` for another
  scale; CI never runs it): `bench_sqlite clickhouse-generate` starts a local clickhouse-server
  (data under `target/bench/tmp`, deleted when the section ends; `log_queries=1` and
  `max_bytes_before_external_group_by` = 3 GB in its users.xml) and has it make the data itself,
  `INSERT … SELECT … FROM numbers(…)` in chunks of 5 M events (250 k users), one thread each,
  with every materialized view detached. The shape is the 10 M set's: 20 events a user (one
  anonymous page view before the identify, the identify with `signedUpAt`, 1–5 funnel
  milestones at 70 % each, product events every two hours or so), sign-ups over 30 days, so
  100 M events are 5 M users. Before each chunk it checks the disk and stops, saying so, rather
  than leave under 12 GB free (`ONRAMP_BENCH_MIN_FREE_GB`). Then `onramp-collector rollup
  rebuild --store …` builds every rollup the schema has (timed, with ClickHouse's CPU for it),
  background merges are given up to 10 min to settle, bytes on disk per event are read from
  `system.parts` (active parts of every table in the database), and a collector started with
  `--no-warm` (so nothing computes in the background) is asked the full `/v1/report` cold,
  every other route once, the full report again with another window (computed afresh on warm
  caches) and once more from its report cache, each within 600 s. Per route: wall time (curl),
  the collector's CPU (`/proc/PID/task/*/schedstat`) and peak RSS (`VmHWM`, reset through
  `clear_refs` before each), ClickHouse's CPU (`UserTimeMicroseconds` +
  `SystemTimeMicroseconds` of the queries that started during it, from `system.query_log`;
  each route starts in a second of its own), and the load average as it started. Last, ingest
  with the per-user rollup kept: 20 batches of 50 events for generated users (a third
  anonymous, one identify and one milestone each) posted one after another to that collector,
  then 20 rounds of one batch each to it and a second collector on the same server at once;
  wall per batch (curl, the writer's 150 ms group window included).
"#;

#[cfg(test)]
mod tests {
    use super::wasm_part;

    #[test]
    fn wasm_items_are_grouped_by_module() {
        assert_eq!(wasm_part("onramp::core::plan::Plan::from_value::h56d93c0f07cc5d53"), "onramp::core::plan");
        assert_eq!(wasm_part("onramp::web::tips::Ui::reconcile::h99ad5430080bce32"), "onramp::web::tips");
        assert_eq!(wasm_part("onramp::web::start_plan::h9af8b1b9ec164e83"), "onramp::web");
        assert_eq!(wasm_part("onramp::web::init::{{closure}}::hdbddff7c750c5fa5"), "onramp::web");
        assert_eq!(wasm_part("<onramp::web::BrowserStorage as onramp::core::storage::KeyValue>::keys::h5face9222302bb85"), "onramp::web");
        assert_eq!(wasm_part("<onramp::core::delivery::Outbox<S>>::tick::h478b180a6f5d075b"), "onramp::core::delivery");
        assert_eq!(wasm_part("<f64 as core[c5930c85a12de822]::fmt::Display>::fmt"), "core::fmt and std's panic handler");
        assert_eq!(wasm_part("std::panicking::default_hook::h0123456789abcdef"), "core::fmt and std's panic handler");
        assert_eq!(wasm_part("data segment \".rodata.19\""), "data (strings, CSS, tables)");
        assert_eq!(wasm_part("init externref shim"), "wasm-bindgen glue");
    }
}
