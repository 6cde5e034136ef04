//! Issue 11's rows of `cargo xtask bench`: every read route and the full `/v1/report` over the
//! generated data on both stores, the collector's peak RSS while they ran, and bytes on disk per
//! stored event, and (section 6) ClickHouse at 100 M events generated inside ClickHouse. Kept
//! apart from `bench.rs` so the sections can change independently.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{bench_sqlite, capture, collector_binary, median, output, query_latency, timed_get, Collector, Table, FUNNEL};

/// Every read route, as the dashboard and API users ask them of the generated data.
fn routes() -> Vec<(&'static str, String)> {
    let value = "milestone:report_shared";
    let due = "signed_up:1h,project_created:24h,report_shared:7d";
    vec![
        ("funnel", format!("/v1/funnel?steps={FUNNEL}&window=7d")),
        ("ttv", format!("/v1/ttv?steps={FUNNEL}&value={value}")),
        ("cohorts", format!("/v1/cohorts?steps={FUNNEL}&value={value}&by=week")),
        ("tips", "/v1/tips".into()),
        ("metrics", "/v1/metrics".into()),
        ("stalled", format!("/v1/stalled?due={due}")),
        ("full report", format!("/v1/report?steps={FUNNEL}&value={value}&due={due}")),
    ]
}

/// The full report computed afresh: each run asks with a conversion window not asked before, so
/// the collector's report cache (keyed by the query) cannot answer it.
fn uncached_latency(url: &str, runs: usize) -> super::Result<std::result::Result<f64, String>> {
    let mut times = Vec::new();
    for run in 0..=runs {
        let (code, secs) = timed_get(&format!("{url}&window={}d", 1000 + run))?;
        if code != "200" {
            return Ok(Err(format!("HTTP {code}")));
        }
        // The first run warms the page cache, as `query_latency` does.
        if run > 0 {
            times.push(secs);
        }
    }
    Ok(Ok(median(times)))
}

/// One row per route for `store` (`SQLite`/`ClickHouse`) at `label` events, then the
/// collector's peak RSS. The full report twice: computed, and again from the report cache.
pub(super) fn route_rows(table: &mut Table, collector: &Collector, store: &str, label: &str, runs: usize, target: &str) -> super::Result {
    for (name, path) in routes() {
        let url = format!("{}{path}", collector.url);
        let latency = if name == "full report" { uncached_latency(&url, runs)? } else { query_latency(&url, runs)? };
        let cell = match &latency {
            Ok(s) => format!("{:.0} ms", s * 1000.0),
            Err(why) => format!("n/a ({why})"),
        };
        let (goal, met) = if name == "full report" && !target.is_empty() {
            let limit: f64 = target.trim_start_matches("≤ ").trim_end_matches(" s").parse().unwrap_or(0.0);
            (target, Some(latency.as_ref().is_ok_and(|s| *s <= limit)))
        } else {
            ("", None)
        };
        table.row(&format!("{store} {name}, {label} events"), &cell, "", goal, met);
        if name == "full report" {
            let cached = query_latency(&url, runs)?;
            let cell = cached.map_or_else(|why| format!("n/a ({why})"), |s| format!("{:.0} ms", s * 1000.0));
            table.row(&format!("{store} full report again (report cache), {label} events"), &cell, "until new events arrive", "", None);
        }
    }
    let rss = collector.peak_rss().map_or("?".into(), |b| format!("{:.0} MB", b / 1e6));
    table.row(&format!("{store} collector peak RSS after the reports, {label} events"), &rss, "", "≤ 200 MB at 10 M", None);
    Ok(())
}

/// Bytes on disk per event of a SQLite file (with its WAL).
pub(super) fn sqlite_bytes_per_event(db: &std::path::Path, events: u64) -> String {
    let size: u64 = ["", "-wal"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", db.display())).ok())
        .map(|m| m.len())
        .sum();
    format!("{:.0} B", size as f64 / events.max(1) as f64)
}

/// Bytes on disk per event of the `onramp` database on the ClickHouse behind `store_url`
/// (`clickhouse://HOST:PORT/onramp`), every table (events, rollups, links) included.
pub(super) fn clickhouse_bytes_per_event(store_url: &str, events: u64) -> String {
    let host = store_url.trim_start_matches("clickhouse://").split('/').next().unwrap_or_default();
    let sql = "SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND database = 'onramp'";
    match clickhouse(&format!("http://{host}/"), sql).and_then(|b| b.trim().parse::<f64>().ok()) {
        Some(b) => format!("{:.0} B", b / events.max(1) as f64),
        None => "?".into(),
    }
}

/// How long one route may take at 100 M events before it is reported as not answered, and how
/// long all of them may take before the rest are left unasked.
const LIMIT_100M_SECONDS: u32 = 600;
const BUDGET_100M_SECONDS: u64 = 1800;
/// How long to let ClickHouse merge the generated parts before the routes are asked, so they
/// read a store in the shape a long-running one has rather than compete with its merges.
const MERGES_WAIT_SECONDS: u64 = 600;

/// One statement to ClickHouse's HTTP interface (`http`: `http://127.0.0.1:PORT`), its answer.
fn clickhouse(http: &str, sql: &str) -> Option<String> {
    output(Command::new("curl").args(["-sS", "--fail", "--max-time", "60", "--data-binary", sql, http]))
}

/// Bytes free on the file system holding `dir`, in GB.
fn free_gb(dir: &Path) -> Option<f64> {
    let out = output(Command::new("df").args(["--output=avail", "-B1"]).arg(dir))?;
    out.lines().nth(1)?.trim().parse::<f64>().ok().map(|b| b / 1e9)
}

/// Whole seconds since the epoch; ClickHouse's `query_log` times queries to the second.
fn epoch_seconds() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Waits until the clock enters a second no earlier window touched, and returns it: each
/// route's queries then start in seconds of their own in `query_log`.
fn next_second(after: u64) -> u64 {
    loop {
        let now = epoch_seconds();
        if now > after {
            return now;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// ClickHouse's CPU (user + system, every query that started within `[from, to]` seconds
/// except `query_log`'s own readers), in seconds; `None` without `log_queries`.
fn clickhouse_cpu(http: &str, (from, to): (u64, u64)) -> Option<f64> {
    let cpu = |event: &str| format!("ProfileEvents.Values[indexOf(ProfileEvents.Names, '{event}')]");
    let sql = format!(
        "SELECT sum({} + {}) / 1e6 FROM system.query_log WHERE type = 2 AND query_start_time >= toDateTime({from}) AND query_start_time <= toDateTime({to}) AND query NOT LIKE '%system.query_log%'",
        cpu("UserTimeMicroseconds"),
        cpu("SystemTimeMicroseconds")
    );
    clickhouse(http, &sql)?.trim().parse().ok()
}

/// `query_log` is written every 7.5 s; 18.16 may not know `SYSTEM FLUSH LOGS`, so wait that long.
fn flush_query_log(http: &str) {
    if clickhouse(http, "SYSTEM FLUSH LOGS").is_none() {
        std::thread::sleep(Duration::from_secs(9));
    }
}

/// The least free disk seen by a thread that samples it every 5 s until dropped.
struct DiskWatch {
    least: Arc<Mutex<f64>>,
    stop: Arc<AtomicBool>,
}

impl DiskWatch {
    fn start(dir: PathBuf) -> DiskWatch {
        let least = Arc::new(Mutex::new(free_gb(&dir).unwrap_or(f64::NAN)));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s) = (least.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let (Some(free), Ok(mut least)) = (free_gb(&dir), l.lock()) {
                    *least = least.min(free);
                }
                std::thread::sleep(Duration::from_secs(5));
            }
        });
        DiskWatch { least, stop }
    }

    fn least(&self) -> f64 {
        self.least.lock().map_or(f64::NAN, |l| *l)
    }
}

impl Drop for DiskWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Section 6: `events` generated inside a local clickhouse-server (`bench_sqlite
/// clickhouse-generate`, by chunks, stopping early rather than leave under 12 GB of disk free),
/// rollups built by `onramp-collector rollup rebuild`, then every route asked once, cold, and
/// the full report twice and from the report cache, each within [`LIMIT_100M_SECONDS`]: wall
/// time, the collector's CPU and peak RSS, ClickHouse's CPU (`system.query_log`) and the load
/// average as it started. The server's data lives under `target/bench/tmp` and is deleted when
/// the section ends.
pub(super) fn generated_in_clickhouse(table: &mut Table, events: u64) -> super::Result {
    let tmp = super::work_dir().join("tmp");
    std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
    let label = scale_label(events);
    table.section(&format!("6. ClickHouse at {label} events generated inside ClickHouse (each route once, cold; the full report twice)"));
    let disk = DiskWatch::start(tmp.clone());
    // Not under `nice`: the server inherits the generator's priority, and the routes are
    // measured on it. The generation keeps to one thread per chunk instead.
    let mut cmd = Command::new(bench_sqlite());
    cmd.args(["clickhouse-generate", &events.to_string()]).env("TMPDIR", &tmp);
    let (mut loader, kv) = super::start_server_loader(table, cmd)?;
    let result = match (kv.get("store"), kv.get("http"), kv.get("events").and_then(|e| e.parse::<u64>().ok())) {
        (Some(url), Some(http), Some(made)) => {
            let get = |k: &str| kv.get(k).map_or("?", String::as_str);
            let stopped = kv.get("stopped").map(|why| format!("; **stopped at {made} of {events}**: {why}")).unwrap_or_default();
            table.row(
                &format!("ClickHouse: generate {} events inside ClickHouse", scale_label(made)),
                &format!("{} s", get("seconds")),
                &format!(
                    "INSERT … SELECT … FROM numbers(…), {} chunks of ≤ 5 M events, one thread each, views detached; {} users; load {} → {}; disk free {} → least {} GB{stopped}",
                    get("chunks"),
                    get("users"),
                    get("load_first"),
                    get("load_last"),
                    get("free_gb_before"),
                    get("free_gb_least")
                ),
                "",
                None,
            );
            generated_rows(table, url, http, made, &scale_label(made), &disk)
        }
        _ => Err("bench_sqlite clickhouse-generate did not start a server or failed to generate".into()),
    };
    drop(loader.stdin.take()); // the generator stops its server, which deletes its data, and exits
    let _ = loader.wait();
    table.row("ClickHouse: least disk free during the section", &format!("{:.1} GB", disk.least()), "sampled every 5 s; ≥ 12 GB kept", "", None);
    result
}

fn scale_label(events: u64) -> String {
    if events >= 1_000_000 {
        format!("{} M", events / 1_000_000)
    } else {
        format!("{} k", events / 1000)
    }
}

fn generated_rows(table: &mut Table, url: &str, http: &str, events: u64, label: &str, disk: &DiskWatch) -> super::Result {
    let load = super::load_average();
    let from = next_second(0);
    let started = Instant::now();
    let mut rebuild = Command::new(collector_binary());
    rebuild.args(["rollup", "rebuild", "--store", url]);
    let rebuilt = capture(table, &mut rebuild);
    let took = started.elapsed().as_secs_f64();
    let to = epoch_seconds();
    flush_query_log(http);
    let server_cpu = clickhouse_cpu(http, (from, to)).map_or("?".into(), |c| format!("{c:.0} s"));
    let cell = match &rebuilt {
        Ok(_) => format!("{took:.0} s"),
        Err(why) => format!("failed after {took:.0} s ({why})"),
    };
    table.row(
        &format!("ClickHouse: `onramp-collector rollup rebuild`, {label} events"),
        &cell,
        &format!("ClickHouse CPU {server_cpu}; load {load} → {}; least disk free so far {:.1} GB", super::load_average(), disk.least()),
        "",
        None,
    );
    rebuilt?;
    // The generated parts and the rebuilt rollups merge in the background for a while.
    let waited = Instant::now();
    let merging = || clickhouse(http, "SELECT count() FROM system.merges").and_then(|n| n.trim().parse::<u64>().ok()).unwrap_or(0);
    while merging() > 0 && waited.elapsed().as_secs() < MERGES_WAIT_SECONDS {
        std::thread::sleep(Duration::from_secs(5));
    }
    let parts = clickhouse(http, "SELECT count() FROM system.parts WHERE active AND database = 'onramp'").unwrap_or_else(|| "?".into());
    let bytes = clickhouse_bytes_per_event(url, events);
    table.row(
        &format!("ClickHouse bytes on disk per event, {label} events"),
        &bytes,
        &format!(
            "events, rollups and links (system.parts); after {:.0} s of background merges ({}), {parts} active parts",
            waited.elapsed().as_secs_f64(),
            if merging() > 0 { "still merging" } else { "none left" }
        ),
        "",
        None,
    );
    let collector = Collector::start_with(&["--store".as_ref(), url.as_ref(), "--no-warm".as_ref()])?;
    // The full report first: it is the target, and a later route may not finish in time. Then
    // the other routes, the full report computed again (another window, so the report cache
    // cannot answer; the server's caches are warm now), and that report from the cache.
    let mut asks: Vec<(String, String)> = Vec::new();
    let routes = routes();
    let (report_name, report) = routes.last().cloned().ok_or("no routes")?;
    asks.push((format!("{report_name} (cold)"), format!("{report}&window=1001d")));
    asks.extend(routes[..routes.len() - 1].iter().map(|(n, p)| ((*n).to_owned(), p.clone())));
    asks.push((format!("{report_name} (again, another window)"), format!("{report}&window=1002d")));
    asks.push((format!("{report_name} (report cache)"), format!("{report}&window=1002d")));
    let asking = Instant::now();
    let mut last_second = 0;
    let mut measured = Vec::new();
    for (name, path) in asks {
        if asking.elapsed().as_secs() > BUDGET_100M_SECONDS {
            measured.push(Asked { name, cell: format!("not asked ({BUDGET_100M_SECONDS} s spent on the routes above)"), answered: None, window: None, rss: None, detail: String::new() });
            continue;
        }
        let load = super::load_average();
        let from = next_second(last_second);
        collector.reset_peak_rss();
        let cpu_before = collector.cpu_seconds();
        let started = Instant::now();
        let out = output(Command::new("curl").args([
            "-s",
            "-m",
            &LIMIT_100M_SECONDS.to_string(),
            "-o",
            "/dev/null",
            "-H",
            "Authorization: Bearer rt_demo",
            "-w",
            "%{http_code}",
            &format!("{}{path}", collector.url),
        ]));
        let secs = started.elapsed().as_secs_f64();
        last_second = epoch_seconds();
        let cpu = collector.cpu_seconds().zip(cpu_before).map(|(a, b)| a - b);
        let rss = collector.peak_rss();
        let (cell, answered) = match out.as_deref() {
            Some("200") if secs < 1.0 => (format!("{:.0} ms", secs * 1000.0), Some(secs)),
            Some("200") => (format!("{secs:.1} s"), Some(secs)),
            Some("000") | None => (format!("no answer within {LIMIT_100M_SECONDS} s"), None),
            Some(code) => (format!("n/a (HTTP {code} after {secs:.0} s)"), None),
        };
        let detail = format!(
            "collector CPU {}, peak RSS {}; load {load}",
            cpu.map_or("?".into(), |c| format!("{c:.2} s")),
            rss.map_or("?".into(), |b| format!("{:.0} MB", b / 1e6)),
        );
        measured.push(Asked { name, cell, answered, window: Some((from, last_second)), rss, detail });
    }
    flush_query_log(http);
    for asked in &measured {
        let (goal, met) = if asked.name.starts_with("full report (cold)") || asked.name.starts_with("full report (again") {
            ("≤ 3 s at 100 M", (events >= 100_000_000).then(|| asked.answered.is_some_and(|s| s <= 3.0)))
        } else {
            ("", None)
        };
        let beside = match asked.window {
            Some(window) => {
                let server_cpu = clickhouse_cpu(http, window).map_or("?".into(), |c| format!("{c:.2} s"));
                format!("ClickHouse CPU {server_cpu}; {}", asked.detail)
            }
            None => String::new(),
        };
        table.row(&format!("ClickHouse {}, {label} events", asked.name), &asked.cell, &beside, goal, met);
    }
    let peak = measured.iter().filter_map(|a| a.rss).fold(0.0, f64::max);
    table.row(&format!("ClickHouse collector peak RSS over the routes, {label} events"), &format!("{:.0} MB", peak / 1e6), "", "≤ 200 MB at 10 M", None);
    ingest_rows(table, url, &collector, events, label)
}

/// Batches per collector in [`ingest_rows`].
const INGEST_BATCHES: usize = 20;

/// Ingest into the generated store with the per-user rollup kept (each group's writer
/// recomputes every user its devices can be part of): batches of 50 events for existing users
/// (`anon-U`/`user-U` as `bench_sqlite clickhouse-generate` makes them, 20 events a user), a
/// third of them anonymous on a user's device, one identify and one milestone each, posted one
/// after another to one collector, then at once to it and a second collector on the same
/// server. A batch's wall time includes the writer's 150 ms group window.
fn ingest_rows(table: &mut Table, url: &str, first: &Collector, events: u64, label: &str) -> super::Result {
    let second = Collector::start_with(&["--store".as_ref(), url.as_ref(), "--no-warm".as_ref()])?;
    let users = events.div_ceil(20).max(1);
    let run = epoch_seconds();
    let body = |collector: usize, n: usize| {
        let now = epoch_seconds() as i64 * 1000;
        let events: Vec<String> = (0..50u64)
            .map(|i| {
                let u = (run.wrapping_mul(7919) + (collector * 1000 + n) as u64 * 50 + i).wrapping_mul(2_654_435_761) % users + 1;
                let id = format!("ingest-{run}-{collector}-{n}-{i}");
                let user = if i % 3 == 0 { String::new() } else { format!(r#","userId":"user-{u}""#) };
                let (kind, name, props) = match i {
                    0 => ("identify", "identify", r#"{"plan":"pro"}"#),
                    1 => ("milestone", "first_invoice", "{}"),
                    _ => ("track", "page_viewed", "{}"),
                };
                format!(r#"{{"id":"{id}","type":"{kind}","name":"{name}","anonymousId":"anon-{u}"{user},"ts":{},"props":{props}}}"#, now - 1000 + i as i64)
            })
            .collect();
        format!(r#"{{"writeKey":"wk_demo","sentAt":{now},"events":[{}]}}"#, events.join(","))
    };
    let post = |collector: &Collector, body: String| -> Option<f64> {
        let started = Instant::now();
        let code = output(Command::new("curl").args([
            "-s",
            "-m",
            "60",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "content-type: text/plain",
            "-H",
            "origin: http://localhost:3000",
            "--data-binary",
            &body,
            &format!("{}/v1/batch", collector.url),
        ]));
        (code.as_deref() == Some("200")).then(|| started.elapsed().as_secs_f64())
    };
    let summary = |times: Vec<Option<f64>>| {
        let sent = times.len();
        let ok: Vec<f64> = times.into_iter().flatten().collect();
        if ok.len() < sent {
            return format!("{} of {sent} batches failed", sent - ok.len());
        }
        let max = ok.iter().copied().fold(0.0, f64::max);
        format!("{:.0} ms median, {:.0} ms max", median(ok) * 1000.0, max * 1000.0)
    };
    let load = super::load_average();
    let alone: Vec<Option<f64>> = (0..INGEST_BATCHES).map(|n| post(first, body(0, n))).collect();
    table.row(
        &format!("ClickHouse ingest, one collector, {label} events: wall per 50-event batch"),
        &summary(alone),
        &format!("{INGEST_BATCHES} batches one after another (150 ms group window included), each writer recomputing its users' rows; load {load}"),
        "",
        None,
    );
    let load = super::load_average();
    let both: Vec<Option<f64>> = (0..INGEST_BATCHES)
        .flat_map(|n| {
            std::thread::scope(|scope| {
                let a = scope.spawn(|| post(first, body(1, n)));
                let b = scope.spawn(|| post(&second, body(2, n)));
                [a.join().ok().flatten(), b.join().ok().flatten()]
            })
        })
        .collect();
    table.row(
        &format!("ClickHouse ingest, two collectors at once, {label} events: wall per 50-event batch"),
        &summary(both),
        &format!("{INGEST_BATCHES} rounds of one batch to each collector at the same moment, one server; load {load}"),
        "",
        None,
    );
    Ok(())
}

/// One route asked in section 6; ClickHouse's CPU is read for its `window` once all are asked.
struct Asked {
    name: String,
    cell: String,
    /// Wall seconds, when answered with a 200.
    answered: Option<f64>,
    /// The seconds its queries started in.
    window: Option<(u64, u64)>,
    /// The collector's peak RSS while it was answered, in bytes.
    rss: Option<f64>,
    detail: String,
}
