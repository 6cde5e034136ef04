//! Issue 11's rows of `cargo xtask bench`: every read route and the full `/v1/report` over the
//! generated data on both stores, the collector's peak RSS while they ran, and bytes on disk per
//! stored event, and (section 6) ClickHouse at 100 M events generated inside ClickHouse. Kept
//! apart from `bench.rs` so the sections can change independently.

use std::process::Command;
use std::time::Instant;

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
    let bytes = output(std::process::Command::new("curl").args(["-s", "--data-binary", sql, &format!("http://{host}/")]));
    match bytes.and_then(|b| b.trim().parse::<f64>().ok()) {
        Some(b) => format!("{:.0} B", b / events.max(1) as f64),
        None => "?".into(),
    }
}

/// How long one route may take at 100 M events before it is reported as not answered, and how
/// long all of them may take before the rest are left unasked.
const LIMIT_100M_SECONDS: u32 = 600;
const BUDGET_100M_SECONDS: u64 = 1800;

/// Section 6: `events` generated inside a local clickhouse-server (`bench_sqlite
/// clickhouse-generate`), rollups built by `onramp-collector rollup rebuild`, then the full
/// report and every route asked once each, cold, within [`LIMIT_100M_SECONDS`].
pub(super) fn generated_in_clickhouse(table: &mut Table, events: u64) -> super::Result {
    let label = if events >= 1_000_000 { format!("{} M", events / 1_000_000) } else { format!("{} k", events / 1000) };
    table.section(&format!("6. ClickHouse at {label} events generated inside ClickHouse (each route once, cold)"));
    let mut cmd = Command::new("nice");
    cmd.args(["-n", "19"]).arg(bench_sqlite()).args(["clickhouse-generate", &events.to_string()]);
    let (mut loader, kv) = super::start_server_loader(table, cmd)?;
    let result = match kv.get("store") {
        Some(url) => generated_rows(table, url, events, &label, kv.get("seconds").map_or("?", String::as_str)),
        None => Err("bench_sqlite clickhouse-generate did not start a server or failed to generate".into()),
    };
    drop(loader.stdin.take()); // the generator stops its server and exits
    let _ = loader.wait();
    result
}

fn generated_rows(table: &mut Table, url: &str, events: u64, label: &str, generated_seconds: &str) -> super::Result {
    table.row(&format!("ClickHouse: generate {label} events inside ClickHouse"), &format!("{generated_seconds} s"), "INSERT … SELECT … FROM numbers(…), rollup views detached", "", None);
    let started = Instant::now();
    let mut rebuild = Command::new("nice");
    rebuild.args(["-n", "19"]).arg(collector_binary()).args(["rollup", "rebuild", "--store", url]);
    let rebuilt = capture(table, &mut rebuild);
    let cell = match &rebuilt {
        Ok(_) => format!("{:.0} s", started.elapsed().as_secs_f64()),
        Err(why) => format!("failed after {:.0} s ({why})", started.elapsed().as_secs_f64()),
    };
    table.row(&format!("ClickHouse: `onramp-collector rollup rebuild`, {label} events"), &cell, "", "", None);
    let bytes = clickhouse_bytes_per_event(url, events);
    table.row(&format!("ClickHouse bytes on disk per event, {label} events"), &bytes, "events, rollups and links", "", None);
    rebuilt?;
    let collector = Collector::start_with(&["--store".as_ref(), url.as_ref()])?;
    // The full report first: it is the target, and a later route may not finish in time.
    let mut ordered = routes();
    ordered.rotate_right(1);
    let asking = Instant::now();
    for (name, path) in ordered {
        if asking.elapsed().as_secs() > BUDGET_100M_SECONDS {
            table.row(&format!("ClickHouse {name}, {label} events"), &format!("not asked ({BUDGET_100M_SECONDS} s spent on the routes above)"), "", "", None);
            continue;
        }
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
        let cell = match out.as_deref() {
            Some("200") => format!("{:.1} s", secs),
            Some("000") | None => format!("no answer within {LIMIT_100M_SECONDS} s"),
            Some(code) => format!("n/a (HTTP {code} after {secs:.0} s)"),
        };
        let (goal, met) = if name == "full report" && events == 100_000_000 {
            ("≤ 3 s", Some(out.as_deref() == Some("200") && secs <= 3.0))
        } else {
            ("", None)
        };
        table.row(&format!("ClickHouse {name}, {label} events"), &cell, "", goal, met);
    }
    let rss = collector.peak_rss().map_or("?".into(), |b| format!("{:.0} MB", b / 1e6));
    table.row(&format!("ClickHouse collector peak RSS after the reports, {label} events"), &rss, "", "", None);
    Ok(())
}
