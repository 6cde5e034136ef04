//! The health read routes (`GET /v1/health`, its CSV, `GET /v1/health/{kind}/{id}`,
//! `GET /v1/lifecycle`) answer from the store's aggregation (counts, matrices, filters, sort
//! and limit in SQL) exactly what the definitions in docs/HEALTH.md give over the stored
//! records. The expected answers are computed here, over a seeded history, by walking every
//! stored record as the routes did before they were pushed into the stores: on SQLite and on a
//! real clickhouse-server.
//!
//! The seeded history has what makes an aggregation go wrong: ties of score (the order falls
//! back to the id, bytewise), records without a score or band (listed first), users computed
//! in an earlier run but not in the latest one (an erased user: not current, yet in the bands
//! over time), a computation repeated the same day (the later record replaces the earlier),
//! a trend's look-back record without a score, users in accounts and accounts named like
//! users' accounts, ids a spreadsheet would read as formulas or that need quoting, and more
//! users than a CSV page (2 000), so the export crosses pages inside a run of equal scores.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::Rng;
use onramp_collector::store::sqlite::SqliteStore;
use onramp_collector::store::{HealthRecord, HealthTransition, Store};
use serde_json::{json, Value};

const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;
/// A UTC midnight.
const T0: i64 = 1_795_392_000_000;
/// The runs: 12, 7 and 6 days before the last day (the trend looks back to the 7th), two on
/// the last day (the later replaces).
const RUNS: [i64; 5] = [T0 + 3 * HOUR, T0 + 5 * DAY + 2 * HOUR, T0 + 6 * DAY + 2 * HOUR, T0 + 12 * DAY + HOUR, T0 + 12 * DAY + 9 * HOUR];
const NOW: i64 = T0 + 12 * DAY + 10 * HOUR;
const USERS: usize = 2300;
const STAGES: [&str; 6] = ["new", "onboarding", "activated", "adopted", "at_risk", "dormant"];

fn user_id(i: usize) -> String {
    match i {
        0 => "=HYPERLINK(\"x\")".into(),
        1 => "comma, \"quoted\"".into(),
        // Not in id order of creation: ties on score are ordered by id.
        _ => format!("u{:04}", (i * 7919) % 10_000),
    }
}

/// The seeded history: every record and transition each run stores.
fn seed() -> Vec<(i64, Vec<HealthRecord>, Vec<HealthTransition>)> {
    let mut rng = Rng(11);
    let mut runs = Vec::new();
    let mut last_stage: BTreeMap<(String, String), (String, String)> = BTreeMap::new();
    for (r, &at) in RUNS.iter().enumerate() {
        let (mut records, mut transitions) = (Vec::new(), Vec::new());
        let mut members: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for i in 0..USERS {
            // Every 50th user is gone from the latest run (erased), every 97th new in it.
            if (i % 50 == 3 && r == RUNS.len() - 1) || (i % 97 == 5 && r < RUNS.len() - 1) {
                continue;
            }
            let id = user_id(i);
            // Scores on a coarse grid: many ties. Some have none.
            let score = (!rng.chance(0.08)).then(|| (rng.below(11) * 10) as u32);
            let band = score.map(|s| if s < 50 { "red" } else if s < 75 { "yellow" } else { "green" });
            let stage = STAGES[rng.below(6) as usize];
            let account = (i % 3 != 0).then(|| format!("acc-{}", i % 17));
            if let Some(a) = &account {
                members.entry(a.clone()).or_default().push(id.clone());
            }
            records.push(record("user", &id, at, score, band, stage, json!({
                "profile": "onboarding",
                "measures": [{"measure": "lastSeen", "unit": "days", "value": i as f64 / 4.0, "points": score, "weight": 2, "sharePct": 100.0}],
                "missing": ["satisfaction"],
                "note": "no data for satisfaction: left out, the other measures re-weighted to 100%",
                "reasons": [format!("reason {}", i % 5), "no return in 9 days"],
                "lastSeen": at - (i as i64) * HOUR,
                "account": account,
            })));
        }
        for (a, ids) in &members {
            let score = (!a.ends_with('6')).then(|| (rng.below(101)) as u32);
            let band = score.map(|s| if s < 50 { "red" } else if s < 75 { "yellow" } else { "green" });
            records.push(record("account", a, at, score, band, STAGES[rng.below(6) as usize], json!({
                "profile": "account",
                "measures": [],
                "missing": [],
                "note": null,
                "reasons": [],
                "lastSeen": at,
                "account": null,
                "members": ids,
                "traits": {"name": a.to_uppercase(), "account": "not this one"},
                "accountMilestones": [],
            })));
        }
        for rec in &records {
            let key = (rec.kind.clone(), rec.id.clone());
            let now = (rec.band.clone().unwrap_or_else(|| "none".into()), rec.stage.clone());
            if let Some(before) = last_stage.get(&key) {
                for (what, from, to) in [("band", &before.0, &now.0), ("stage", &before.1, &now.1)] {
                    if from != to {
                        transitions.push(HealthTransition { kind: rec.kind.clone(), id: rec.id.clone(), at, what: what.into(), from: from.clone(), to: to.clone(), detail: "{}".into() });
                    }
                }
            }
            last_stage.insert(key, now);
        }
        runs.push((at, records, transitions));
    }
    runs
}

fn record(kind: &str, id: &str, at: i64, score: Option<u32>, band: Option<&str>, stage: &str, detail: Value) -> HealthRecord {
    HealthRecord { kind: kind.into(), id: id.into(), day: at.div_euclid(DAY), computed_at: at, score, band: band.map(String::from), stage: stage.into(), detail: detail.to_string() }
}

/// What the store holds after every run: one record per (kind, id, day), the latest.
fn stored(runs: &[(i64, Vec<HealthRecord>, Vec<HealthTransition>)]) -> (Vec<HealthRecord>, Vec<HealthTransition>) {
    let mut by_key: BTreeMap<(String, String, i64), HealthRecord> = BTreeMap::new();
    let mut transitions = Vec::new();
    for (_, records, t) in runs {
        for r in records {
            by_key.insert((r.kind.clone(), r.id.clone(), r.day), r.clone());
        }
        transitions.extend(t.iter().cloned());
    }
    (by_key.into_values().collect(), transitions)
}

// ---------------------------------------------------------------------------------------------
// The oracle: every stored record walked, as docs/HEALTH.md defines the answers.

struct Ask<'a> {
    kind: &'a str,
    bands: &'a [&'a str],
    stages: &'a [&'a str],
    account: Option<&'a str>,
    limit: usize,
    days: i64,
}

fn band_name(r: &HealthRecord) -> String {
    r.band.clone().unwrap_or_else(|| "none".into())
}

fn zero(names: &[&str]) -> BTreeMap<String, u64> {
    names.iter().map(|n| (n.to_string(), 0)).collect()
}

/// The current records of `kind` among those of day `since` on: the latest run's.
fn current<'r>(all: &'r [HealthRecord], kind: &str, since: i64) -> (Option<i64>, Vec<&'r HealthRecord>) {
    let seen: Vec<&HealthRecord> = all.iter().filter(|r| r.kind == kind && r.day >= since).collect();
    let newest = seen.iter().map(|r| r.computed_at).max();
    (newest, seen.into_iter().filter(|r| Some(r.computed_at) == newest).collect())
}

/// Whether the filter keeps `r`.
fn keeps(ask: &Ask, r: &HealthRecord) -> bool {
    let detail: Value = serde_json::from_str(&r.detail).expect("detail");
    (ask.bands.is_empty() || ask.bands.contains(&band_name(r).as_str()))
        && (ask.stages.is_empty() || ask.stages.contains(&r.stage.as_str()))
        && ask.account.is_none_or(|a| detail["account"] == json!(a) || (ask.kind == "account" && r.id == a))
}

/// The latest run, its records, and the rows the filter keeps with their trends.
type Listed<'r> = (Option<i64>, Vec<&'r HealthRecord>, Vec<(&'r HealthRecord, Option<i64>)>);

/// The rows the filter keeps, worst first, each with its trend.
fn rows<'r>(all: &'r [HealthRecord], ask: &Ask) -> Listed<'r> {
    let today = NOW.div_euclid(DAY);
    let since = today - ask.days.max(7) - 8;
    let (newest, now) = current(all, ask.kind, since);
    let mut kept: Vec<(&HealthRecord, Option<i64>)> = now
        .iter()
        .filter(|r| keeps(ask, r))
        .map(|r| {
            // The latest record of the same entity at least 7 days older (within the window).
            let then = all.iter().filter(|h| h.kind == r.kind && h.id == r.id && h.day >= since && h.day <= r.day - 7).max_by_key(|h| h.day);
            let trend = match (r.score, then.and_then(|h| h.score)) {
                (Some(a), Some(b)) if then.is_some() => Some(i64::from(a) - i64::from(b)),
                _ => None,
            };
            (*r, trend)
        })
        .collect();
    // No score first, then by score, then by id (bytes).
    kept.sort_by(|a, b| {
        let key = |r: &HealthRecord| (r.score.map_or(0, |_| 1), r.score.unwrap_or(0), r.id.as_bytes().to_vec());
        key(a.0).cmp(&key(b.0))
    });
    (newest, now, kept)
}

fn expected_list(all: &[HealthRecord], ask: &Ask) -> Value {
    let today = NOW.div_euclid(DAY);
    let since = today - ask.days.max(7) - 8;
    let (newest, now, kept) = rows(all, ask);
    let mut bands = zero(&["red", "yellow", "green", "none"]);
    let mut stages = zero(&STAGES);
    for r in &now {
        *bands.get_mut(&band_name(r)).expect("band") += 1;
        *stages.get_mut(&r.stage).expect("stage") += 1;
    }
    let mut days: BTreeMap<i64, BTreeMap<String, u64>> = BTreeMap::new();
    for r in all.iter().filter(|r| r.kind == ask.kind && r.day >= since && r.day > today - ask.days) {
        *days.entry(r.day).or_insert_with(|| zero(&["red", "yellow", "green", "none"])).get_mut(&band_name(r)).expect("band") += 1;
    }
    let date = |day: i64| {
        let d = chrono_free_date(day);
        json!(d)
    };
    json!({
        "kind": ask.kind,
        "computedAt": newest,
        "bands": bands,
        "stages": stages,
        "bandsOverTime": days.iter().map(|(d, c)| json!({"day": date(*d), "counts": c})).collect::<Vec<_>>(),
        "total": kept.len(),
        "items": kept.iter().take(ask.limit).map(|(r, t)| item(r, *t)).collect::<Vec<_>>(),
    })
}

/// YYYY-MM-DD of a day number (days since 1970-01-01), by the civil-from-days algorithm.
fn chrono_free_date(day: i64) -> String {
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn item(r: &HealthRecord, trend: Option<i64>) -> Value {
    let d: Value = serde_json::from_str(&r.detail).expect("detail");
    let mut out = json!({"kind": r.kind, "id": r.id, "score": r.score, "band": r.band, "stage": r.stage, "trend": trend, "computedAt": r.computed_at});
    for key in ["profile", "measures", "missing", "note", "reasons", "lastSeen", "account", "members", "traits", "accountMilestones"] {
        out[key] = d.get(key).cloned().unwrap_or(Value::Null);
    }
    out
}

/// RFC 4180 with formulas defused (a leading `=`, `+`, `-`, `@`, tab or CR gets a `'`).
fn csv_text(field: &str) -> String {
    let field = if field.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{field}") } else { field.to_string() };
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field
    }
}

fn expected_csv(all: &[HealthRecord], ask: &Ask) -> String {
    let mut out = String::from("kind,id,score,band,stage,trend,account,measures,reasons\r\n");
    for (r, trend) in rows(all, ask).2 {
        let d: Value = serde_json::from_str(&r.detail).expect("detail");
        let measures: Vec<String> = d["measures"].as_array().expect("measures").iter().map(|m| format!("{}={}", m["measure"].as_str().expect("name"), m["points"])).collect();
        let reasons: Vec<&str> = d["reasons"].as_array().expect("reasons").iter().map(|r| r.as_str().expect("text")).collect();
        let cells = [
            r.kind.clone(),
            csv_text(&r.id),
            r.score.map_or(String::new(), |s| s.to_string()),
            r.band.clone().unwrap_or_default(),
            r.stage.clone(),
            trend.map_or(String::new(), |t| t.to_string()),
            csv_text(d["account"].as_str().unwrap_or("")),
            csv_text(&measures.join(";")),
            csv_text(&reasons.join("; ")),
        ];
        out += &cells.join(",");
        out += "\r\n";
    }
    out
}

fn expected_lifecycle(all: &[HealthRecord], transitions: &[HealthTransition], kind: &str, from: i64, to: i64) -> Value {
    let (_, now) = current(all, kind, NOW.div_euclid(DAY) - 400);
    let mut stages = zero(&STAGES);
    for r in now {
        *stages.get_mut(&r.stage).expect("stage") += 1;
    }
    let mut matrices: BTreeMap<&str, BTreeMap<String, BTreeMap<String, u64>>> = BTreeMap::from([("stage", BTreeMap::new()), ("band", BTreeMap::new())]);
    let mut count = 0;
    for t in transitions.iter().filter(|t| t.kind == kind && t.at >= from && t.at < to) {
        *matrices.get_mut(t.what.as_str()).expect("what").entry(t.from.clone()).or_default().entry(t.to.clone()).or_default() += 1;
        count += 1;
    }
    json!({"kind": kind, "from": from, "to": to, "stages": stages, "transitions": count, "stageMatrix": matrices["stage"], "bandMatrix": matrices["band"]})
}

// ---------------------------------------------------------------------------------------------

async fn get_text(url: &str, path: &str) -> String {
    let r = reqwest::Client::new().get(format!("{url}{path}")).bearer_auth("rt_demo").send().await.expect("request");
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.text().await.expect("text")
}

fn query(ask: &Ask) -> String {
    let mut q = format!("kind={}&limit={}&days={}", ask.kind, ask.limit, ask.days);
    if !ask.bands.is_empty() {
        q += &format!("&band={}", ask.bands.join(","));
    }
    if !ask.stages.is_empty() {
        q += &format!("&stage={}", ask.stages.join(","));
    }
    if let Some(a) = ask.account {
        q += &format!("&account={a}");
    }
    q
}

async fn check(store: Arc<dyn Store>) {
    let runs = seed();
    for (_, records, transitions) in &runs {
        store.save_health("demo", records.clone(), transitions.clone()).await.expect("save");
    }
    let (all, transitions) = stored(&runs);
    let c = common::serve_with_clock(store, Some(NOW)).await;
    let asks = [
        Ask { kind: "user", bands: &[], stages: &[], account: None, limit: 500, days: 30 },
        Ask { kind: "user", bands: &[], stages: &[], account: None, limit: 1, days: 3 },
        Ask { kind: "user", bands: &[], stages: &[], account: None, limit: 100_000, days: 10 },
        Ask { kind: "user", bands: &["red"], stages: &[], account: None, limit: 200, days: 30 },
        Ask { kind: "user", bands: &["none", "green"], stages: &[], account: None, limit: 300, days: 30 },
        Ask { kind: "user", bands: &[], stages: &["at_risk", "dormant"], account: None, limit: 200, days: 30 },
        Ask { kind: "user", bands: &["red", "yellow"], stages: &["at_risk"], account: Some("acc-3"), limit: 200, days: 30 },
        Ask { kind: "user", bands: &[], stages: &[], account: Some("acc-16"), limit: 1000, days: 30 },
        Ask { kind: "user", bands: &[], stages: &[], account: Some("nobody"), limit: 10, days: 30 },
        Ask { kind: "account", bands: &[], stages: &[], account: None, limit: 500, days: 30 },
        Ask { kind: "account", bands: &["none"], stages: &[], account: None, limit: 500, days: 30 },
        Ask { kind: "account", bands: &[], stages: &[], account: Some("acc-3"), limit: 500, days: 30 },
    ];
    for ask in &asks {
        let q = query(ask);
        assert_eq!(common::get(&c.url, &format!("/v1/health?{q}")).await, expected_list(&all, ask), "/v1/health?{q}");
        let csv = get_text(&c.url, &format!("/v1/health?{q}&format=csv")).await;
        assert_eq!(csv, expected_csv(&all, ask), "/v1/health?{q}&format=csv");
    }
    // The export crosses pages of 2 000 rows inside runs of equal scores.
    let everyone = Ask { kind: "user", bands: &[], stages: &[], account: None, limit: 1, days: 30 };
    assert!(expected_csv(&all, &everyone).lines().count() > 2200);
    for (kind, from, to) in [("user", T0, NOW + 1), ("user", T0 + 6 * DAY, T0 + 6 * DAY + 3 * HOUR), ("account", T0, NOW + 1)] {
        let got = common::get(&c.url, &format!("/v1/lifecycle?kind={kind}&from={from}&to={to}")).await;
        assert_eq!(got, expected_lifecycle(&all, &transitions, kind, from, to), "lifecycle {kind} {from} {to}");
    }
    for (kind, id) in [("user", user_id(2)), ("user", user_id(10)), ("account", "acc-4".to_string())] {
        let got = common::get(&c.url, &format!("/v1/health/{kind}/{id}?days=30")).await;
        let (_, _, rows) = rows(&all, &Ask { kind, bands: &[], stages: &[], account: None, limit: 1, days: 30 });
        let (r, trend) = rows.iter().find(|(r, _)| r.id == id).expect("current");
        assert_eq!(got["current"], item(r, *trend), "{kind} {id}");
        let mine: Vec<(i64, &str)> = transitions.iter().filter(|t| t.kind == kind && t.id == id).map(|t| (t.at, t.what.as_str())).collect();
        let listed: Vec<(i64, &str)> = got["transitions"].as_array().expect("transitions").iter().map(|t| (t["at"].as_i64().expect("at"), t["what"].as_str().expect("what"))).collect();
        assert_eq!(listed, mine, "{kind} {id}: only its own transitions");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_match_the_oracle_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    check(Arc::new(SqliteStore::open(dir.path().join("h.db")).expect("store"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_match_the_oracle_on_clickhouse() {
    let (_server, store) = common::clickhouse().await;
    check(store).await;
}
