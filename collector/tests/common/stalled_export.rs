//! The stalled CSV export of more stalls than the collector sorts in memory, on any store.

use std::sync::Arc;

use onramp_collector::store::Store;
use serde_json::json;

/// The export (the collector spills sorted runs and merges them), checked row for row against
/// the list computed here from the events sent: many pieces, due times tied across users and
/// milestones, ids that need quoting or defusing.
pub async fn check(store: Arc<dyn Store>) {
    const H: i64 = 3_600_000;
    const BASE: i64 = 1_709_251_200_000; // 2024-03-01T00:00:00Z
    // A millisecond past midnight, so no stall is exactly half a tenth of an hour overdue.
    const NOW: i64 = BASE + 24 * H + 1;
    const USERS: i64 = 24_000;
    let collector = super::serve_with_clock(store, Some(NOW)).await;
    let due = [("m0", H), ("m1", 2 * H), ("m2", 3 * H), ("m3", 4 * H)];
    // Every user signs up on a second of the morning; one in 7 has an id a spreadsheet would
    // misread, one in 11 one with a comma or a quote; user i reaches milestone m(i % 5) (m4:
    // none of those due) 10 minutes in and is last seen 20 minutes in.
    let id = |i: i64| match (i % 7, i % 11, i % 2) {
        (0, _, _) => format!("=u{i}"),
        (_, 0, 0) => format!("u,{i}"),
        (_, 0, _) => format!("u\"{i}"),
        _ => format!("u{i}"),
    };
    let signup = |i: i64| BASE + (i * 7919 % USERS) * 1000;
    let mut events = Vec::new();
    for i in 0..USERS {
        let (user, at) = (id(i), signup(i));
        events.push(json!({"id": format!("i{i}"), "type": "identify", "name": "identify", "anonymousId": format!("a{i}"), "userId": user, "ts": at, "props": {"signedUpAt": at}}));
        events.push(json!({"id": format!("m{i}"), "type": "milestone", "name": format!("m{}", i % 5), "anonymousId": format!("a{i}"), "userId": user, "ts": at + 600_000, "props": {}}));
        events.push(json!({"id": format!("t{i}"), "type": "track", "name": "opened", "anonymousId": format!("a{i}"), "userId": user, "ts": at + 1_200_000, "props": {}}));
    }
    for chunk in events.chunks(999) {
        let r = super::post(&collector.url, super::batch(NOW, chunk.to_vec())).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    }

    // The expected export, written apart from the collector's code.
    let quote = |text: &str| {
        let text = if text.starts_with(['=', '+', '-', '@']) { format!("'{text}") } else { text.to_string() };
        if text.contains([',', '"']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text }
    };
    let iso = |ms: i64| {
        let s = (ms - BASE) / 1000;
        format!("2024-03-01T{:02}:{:02}:{:02}Z", s / 3600, s % 3600 / 60, s % 60)
    };
    let mut rows: Vec<(i64, String, &str, i64)> = Vec::new();
    for i in 0..USERS {
        for (m, within) in due {
            if format!("m{}", i % 5) != m {
                rows.push((signup(i) + within, id(i), m, signup(i)));
            }
        }
    }
    rows.sort();
    let mut want = String::from("user,milestone,signed_up_at,due_at,last_seen,overdue_hours\r\n");
    for (due_at, user, m, at) in &rows {
        let tenths = ((NOW - due_at) * 10 + H / 2) / H;
        want.push_str(&format!("{},{m},{},{},{},{}.{}\r\n", quote(user), iso(*at), iso(*due_at), iso(at + 1_200_000), tenths / 10, tenths % 10));
    }
    assert!(rows.len() > 2 * 32 * 1024, "{} stalls: more than two runs of the export's sort", rows.len());

    let due_list = due.iter().map(|(m, w)| format!("{m}:{}h", w / H)).collect::<Vec<_>>().join(",");
    let r = reqwest::get(format!("{}/v1/stalled?due={due_list}&format=csv&token=rt_demo", collector.url)).await.expect("get");
    assert_eq!(r.status(), 200);
    let csv = r.text().await.expect("the whole body");
    assert_eq!(csv.lines().count(), rows.len() + 1);
    // Compared line by line first, so a failure names the first line that differs.
    for (n, (got, expected)) in csv.split("\r\n").zip(want.split("\r\n")).enumerate() {
        assert_eq!(got, expected, "line {n}");
    }
    assert_eq!(csv, want);
    // The JSON answer counts the same pairs and lists the first of them.
    let json = super::get(&collector.url, &format!("/v1/stalled?due={due_list}")).await;
    assert_eq!(json["total"], rows.len());
    let first = &json["stalled"][0];
    assert_eq!((first["user"].as_str(), first["milestone"].as_str()), (Some(rows[0].1.as_str()), Some(rows[0].2)));
}
