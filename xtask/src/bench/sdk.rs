//! Section 5 of `cargo xtask bench`: the SDK as each kind of user gets it from the collector.
//!
//! `bench/sdk.mjs` loads the demo page cold in headless Chromium for a user in onboarding (the
//! full SDK) and for one the full SDK itself marked as finished (the lean tracker alone), and
//! reports the bytes Chromium received for the SDK (compressed bodies, as the collector serves
//! them), the requests, ready time and `track()`; and the events the collector received against
//! those it stored over a session with three reloads. twiggy splits both wasm modules by part.

use std::process::Command;

use super::{bench_dir, capture, fresh_db, key_values, kb, num, root, wasm_parts, Collector, Table};
use crate::Result;

pub(super) fn section(table: &mut Table, runs: u32) -> Result {
    table.section("5. The SDK per kind of user, as Chromium receives it from the collector (cold cache, median)");
    let db = fresh_db("sdk.db")?;
    let collector = Collector::start(&db)?;
    let mut node = Command::new("node");
    node.arg(bench_dir().join("sdk.mjs"))
        .env("BENCH_COLLECTOR", &collector.url)
        .env("BENCH_DB", &db)
        .env("BENCH_RUNS", runs.to_string())
        .current_dir(root());
    let kv = key_values(&capture(table, &mut node)?);
    drop(collector);
    let get = |k: &str| kv.get(k).cloned().unwrap_or_else(|| "?".into());
    for (kind, label, limit) in [
        ("finished", "a returning user whose onboarding is over: the lean tracker", 15.0),
        ("onboarding", "a user in onboarding: the full SDK (tracker, engine, tips)", 60.0),
    ] {
        let body = num(&kv, &format!("{kind}_body_bytes"));
        table.row(
            &format!("on the wire for {label} (loader, module with glue, wasm)"),
            &format!(
                "{} in {} requests, brotli ({} with headers)",
                body.map_or("?".into(), kb),
                get(&format!("{kind}_requests")),
                num(&kv, &format!("{kind}_transfer_bytes")).map_or("?".into(), kb)
            ),
            &format!(
                "files: {}; next page view (warm cache): {} B",
                get(&format!("{kind}_files")).replace(',', ", ").replace(':', " "),
                get(&format!("{kind}_repeat_bytes"))
            ),
            &format!("≤ {limit} KB"),
            body.map(|b| b <= limit * 1024.0),
        );
        let ready = num(&kv, &format!("{kind}_ready_ms"));
        table.row(
            &format!("… loader starts → ready ({runs} cold loads)"),
            &format!("{} ms", get(&format!("{kind}_ready_ms"))),
            &format!("warm cache: {} ms", get(&format!("{kind}_repeat_ready_ms"))),
            "≤ 20 ms",
            ready.map(|r| r <= 20.0),
        );
        let track = num(&kv, &format!("{kind}_track_us"));
        let first = num(&kv, &format!("{kind}_first_track_us"));
        table.row(
            "… one `track()`: median of 10 000 calls; a fresh page's first 50",
            &format!("{} µs; {} µs", get(&format!("{kind}_track_us")), get(&format!("{kind}_first_track_us"))),
            "",
            "≤ 5 µs; ≤ 20 µs",
            track.zip(first).map(|(t, f)| t <= 5.0 && f <= 20.0),
        );
    }
    let (received, stored) = (num(&kv, "session_received"), num(&kv, "session_stored"));
    let ratio = received.zip(stored).filter(|(_, s)| *s > 0.0).map(|(r, s)| r / s);
    table.row(
        "events received ÷ stored over a new user's session with three reloads (fetches and beacons, repeats included)",
        &ratio.map_or("?".into(), |r| format!("{r:.2} ×")),
        &format!("{} received, {} stored", get("session_received"), get("session_stored")),
        "≤ 1.2 ×",
        ratio.map(|r| r <= 1.2),
    );
    let (sent, event_bytes) = (num(&kv, "session_sent_bytes"), num(&kv, "session_event_bytes"));
    let ratio = sent.zip(event_bytes).filter(|(_, e)| *e > 0.0).map(|(s, e)| s / e);
    table.row(
        "bytes sent ÷ bytes stored over the same session (request bodies of batches, beacons and `/v1/known` questions, against the distinct events they carried)",
        &ratio.map_or("?".into(), |r| format!("{r:.2} ×")),
        &format!(
            "{} B sent, {} B of events; {} `/v1/known` questions",
            get("session_sent_bytes"),
            get("session_event_bytes"),
            get("session_known_requests")
        ),
        "≤ 1.2 ×",
        ratio.map(|r| r <= 1.2),
    );
    for (name, label) in [("tracker", "tracker_bg.wasm (lean tracker)"), ("onramp", "onramp_bg.wasm (full SDK)")] {
        if let Some(parts) = wasm_parts(table, name) {
            table.row(&format!("{label} by part (twiggy; raw bytes before compression)"), &parts, "", "", None);
        }
    }
    Ok(())
}
