//! Issue 11's rows of `cargo xtask bench`: every read route and the full `/v1/report` over the
//! generated data on both stores, the collector's peak RSS while they ran, and bytes on disk per
//! stored event. Kept apart from `bench.rs` so the sections can change independently.

use super::{median, output, query_latency, timed_get, Collector, Table, FUNNEL};

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
