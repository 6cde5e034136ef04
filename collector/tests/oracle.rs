//! Exactness, proven by differential property testing.
//!
//! proptest generates small event streams full of the cases that make reports ambiguous:
//! same-millisecond ties, resent batches, batches posted out of order, identifies posted after
//! everything else, anonymous devices later linked to a user (and a device shared by two users),
//! a plan milestone whose id equals a tracked event's name, and sign-up times. Each stream goes
//! through the real ingest API of a collector on a real socket and SQLite store; the answers are
//! compared with a reference computed here from the raw events, by code written from the
//! definitions in docs/ANALYTICS.md and sharing nothing with the collector's analytics (user
//! keys, links, sign-up, traits, milestone funnels, ad-hoc funnels, time-to-value quantiles,
//! first-day activation, cohorts, stalled pairs). A few streams also go to a real
//! clickhouse-server, whose answers to every route must equal SQLite's byte for byte. After each
//! stream both stores' rollups must equal a recompute (`rollup verify`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{post, serve_with_clock, Collector};
use onramp_collector::store::clickhouse::ClickHouseStore;
use onramp_collector::store::sqlite::SqliteStore;
use onramp_collector::store::Store;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};

const H: i64 = 3_600_000;
const D: i64 = 24 * H;
/// The collectors' fixed clock; batches are sent at it, so no clock-skew correction applies.
const NOW: i64 = 1_800_000_000_000;
/// The earliest event time: streams span about three days before `NOW`.
const BASE: i64 = NOW - 3 * D - 12 * H;

/// `m1` shares its id with the tracked event `m1`; `m2` is the value milestone.
const PLAN: &str = r#"{
  "version": "oracle-1",
  "product": "Oracle",
  "milestones": [
    { "id": "m1", "title": "First", "condition": { "event": "m1" }, "due": "24h" },
    { "id": "m2", "title": "Value", "value": true, "condition": { "event": "b", "after": "m1" }, "due": "2d" }
  ]
}"#;
const DUE: [(&str, i64); 2] = [("m1", D), ("m2", 2 * D)];
const MILESTONES: [&str; 2] = ["m1", "m2"];

/// One generated event, before it gets its id and batch.
#[derive(Clone, Debug)]
struct Spec {
    device: u8,
    user: Option<u8>,
    what: u8,
    /// Coarse time: 5-hour slots, so the stream spans the due windows.
    slot: u8,
    /// Fine time in ms within the slot: small, so ties are common.
    tick: u8,
    /// Which of the four batches it is sent in.
    batch: u8,
    /// For identifies: sign-up `None`, or days before `BASE` (0..3); and the plan trait.
    signup: Option<u8>,
    pro: bool,
}

#[derive(Clone, Debug)]
struct Stream {
    specs: Vec<Spec>,
    /// Posting order of the batches.
    order: Vec<u8>,
    /// Batches posted twice (a lost acknowledgement).
    resend: Vec<bool>,
    /// Identifies held back and posted after everything else.
    late_identifies: bool,
}

fn stream() -> impl Strategy<Value = Stream> {
    let spec = (0u8..4, prop::option::weighted(0.5, 0u8..4), 0u8..12, 0u8..17, 0u8..3, 0u8..4, prop::option::of(0u8..3), any::<bool>())
        .prop_map(|(device, user, what, slot, tick, batch, signup, pro)| Spec { device, user, what, slot, tick, batch, signup, pro });
    (
        prop::collection::vec(spec, 4..50),
        Just(vec![0u8, 1, 2, 3]).prop_shuffle(),
        prop::collection::vec(any::<bool>(), 4),
        any::<bool>(),
    )
        .prop_map(|(specs, order, resend, late_identifies)| Stream { specs, order, resend, late_identifies })
}

/// A stored event as the reference sees it.
#[derive(Clone, Debug)]
struct Ev {
    id: String,
    kind: &'static str,
    name: &'static str,
    anon: String,
    user: Option<String>,
    ts: i64,
    props: Value,
}

fn events(s: &Stream) -> Vec<Ev> {
    s.specs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let ts = BASE + i64::from(p.slot) * 5 * H + i64::from(p.tick);
            let anon = format!("d{}", p.device);
            let user = p.user.map(|u| format!("u{u}"));
            let (kind, name, props, user) = match p.what {
                0 => ("track", "m1", json!({}), user),
                1 | 9 => ("track", "a", json!({}), user),
                2 | 10 => ("milestone", "m1", json!({}), user),
                3 | 11 => ("milestone", "m2", json!({}), user),
                4 => {
                    let mut traits = json!({"plan": if p.pro { "pro" } else { "free" }});
                    if let Some(days) = p.signup {
                        let at = BASE - i64::from(days) * D + 7 * H;
                        // Sent in seconds now and then, as older SDKs and imports do: one instant.
                        // `null` (unknown) now and then: it must not erase an earlier sign-up.
                        traits["signedUpAt"] = match p.tick {
                            1 => json!(at / 1000),
                            2 if p.slot % 2 == 0 => Value::Null,
                            _ => json!(at),
                        };
                    }
                    // Now and then without a user id (the wire format allows it): its traits
                    // count for whoever its device is linked to, folded at query time.
                    let user = if p.slot % 3 == 2 { None } else { Some(user.unwrap_or_else(|| format!("u{}", p.device % 4))) };
                    ("identify", "identify", traits, user)
                }
                5 => ("track", "b", json!({}), user),
                6 => ("tip", "tip_shown", json!({"tipId": "t1", "milestone": "m2"}), user),
                7 => ("tip", if p.pro { "tip_dismissed" } else { "tip_cta_clicked" }, json!({"tipId": "t1", "milestone": "m2"}), user),
                _ => ("metric", "first_session_length", json!({"valueMs": i64::from(p.slot) * 60_000 + i64::from(p.tick)}), user),
            };
            Ev { id: format!("e{i:03}"), kind, name, anon, user, ts, props }
        })
        .collect()
}

/// The request bodies in posting order.
fn batches(s: &Stream, evs: &[Ev]) -> Vec<String> {
    let body = |events: Vec<&Ev>| {
        let events: Vec<Value> = events
            .into_iter()
            .map(|e| {
                let mut v = json!({"id": e.id, "type": e.kind, "name": e.name, "anonymousId": e.anon, "ts": e.ts, "props": e.props});
                if let Some(u) = &e.user {
                    v["userId"] = json!(u);
                }
                v
            })
            .collect();
        json!({"writeKey": "wk_demo", "sentAt": NOW, "events": events}).to_string()
    };
    let held = |e: &Ev| s.late_identifies && e.kind == "identify";
    let mut out = Vec::new();
    for &b in &s.order {
        let group: Vec<&Ev> = evs.iter().zip(&s.specs).filter(|(e, p)| p.batch == b && !held(e)).map(|(e, _)| e).collect();
        if group.is_empty() {
            continue;
        }
        out.push(body(group.clone()));
        if s.resend[usize::from(b)] {
            out.push(body(group));
        }
    }
    let late: Vec<&Ev> = evs.iter().filter(|e| held(e)).collect();
    if !late.is_empty() {
        out.push(body(late));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The reference, from docs/ANALYTICS.md.

struct RefUser {
    key: String,
    signup: i64,
    plan: Option<String>,
    /// First `milestone` event time per milestone id.
    reached: BTreeMap<&'static str, i64>,
    /// Track events (ts, id, name), sorted.
    tracks: Vec<(i64, String, &'static str)>,
    /// The names of the user's tip events (all are of tip `t1`).
    tips: BTreeSet<&'static str>,
    /// `valueMs` of the user's first `first_session_length` metric.
    first_session: Option<i64>,
}

/// The users (every user key that came from a user id: the event's own, or its device's link),
/// and apart from them the visitors who never identified (keys that are anonymous ids nobody
/// linked), each user key once.
fn reference_users(evs: &[Ev]) -> (Vec<RefUser>, Vec<RefUser>) {
    // Links: an anonymous id belongs to the user of its first (by time, then id) event that
    // carried a user id.
    let mut links: BTreeMap<&str, (i64, &str, &str)> = BTreeMap::new();
    for e in evs {
        if let Some(u) = &e.user {
            let candidate = (e.ts, e.id.as_str(), u.as_str());
            let l = links.entry(&e.anon).or_insert(candidate);
            if (candidate.0, candidate.1) < (l.0, l.1) {
                *l = candidate;
            }
        }
    }
    let key = |e: &Ev| e.user.clone().or_else(|| links.get(e.anon.as_str()).map(|l| l.2.to_string())).unwrap_or_else(|| e.anon.clone());
    let identified = |e: &Ev| e.user.is_some() || links.contains_key(e.anon.as_str());
    let mut by_user: BTreeMap<String, Vec<&Ev>> = BTreeMap::new();
    for e in evs {
        by_user.entry(key(e)).or_default().push(e);
    }
    let (users, visitors): (Vec<_>, Vec<_>) = by_user.into_iter().partition(|(_, es)| es.iter().any(|e| identified(e)));
    let resolve = |people: Vec<(String, Vec<&Ev>)>| people
        .into_iter()
        .map(|(key, mut es)| {
            es.sort_by(|a, b| (a.ts, &a.id).cmp(&(b.ts, &b.id)));
            let first_seen = es[0].ts;
            // Traits: later identifies (by time, then id) win per key; a null sign-up is none.
            let trait_of = |k: &str| es.iter().filter(|e| e.kind == "identify").rev().find_map(|e| e.props.get(k).cloned());
            // A number below 10^11 is seconds.
            let ms = |v: i64| if v < 100_000_000_000 { v * 1000 } else { v };
            let signup = es
                .iter()
                .rev()
                .filter(|e| e.kind == "identify")
                .find_map(|e| e.props["signedUpAt"].as_i64())
                .map(ms)
                .unwrap_or(first_seen);
            let plan = trait_of("plan").and_then(|v| v.as_str().map(str::to_string));
            let mut reached = BTreeMap::new();
            for e in es.iter().filter(|e| e.kind == "milestone") {
                reached.entry(e.name).or_insert(e.ts);
            }
            let tracks = es.iter().filter(|e| e.kind == "track").map(|e| (e.ts, e.id.clone(), e.name)).collect();
            let tips = es.iter().filter(|e| e.kind == "tip").map(|e| e.name).collect();
            let first_session = es.iter().find(|e| e.kind == "metric").and_then(|e| e.props["valueMs"].as_i64());
            RefUser { key, signup, plan, reached, tracks, tips, first_session }
        })
        .collect();
    (resolve(users), resolve(visitors))
}

/// Nearest rank: the value at rank ⌈p·n/100⌉ of the sorted values.
fn quantile(values: &[i64], p: usize) -> Option<i64> {
    let mut v = values.to_vec();
    v.sort();
    let rank = (p * v.len()).div_ceil(100);
    (rank > 0).then(|| v[rank - 1])
}

fn quantiles(values: &[i64]) -> Value {
    json!({"count": values.len(), "p50": quantile(values, 50), "p75": quantile(values, 75), "p90": quantile(values, 90)})
}

/// Per step: (users, user keys, median gap from previous).
type RefFunnel = Vec<(usize, Vec<String>, Option<i64>)>;

/// The times of a user's chain through `steps`: milestone steps by their single first reach,
/// event steps by the user's track events (each used once). The longest chain wins, the
/// earliest start breaking ties; each step takes the earliest event at or after the previous.
fn chain(u: &RefUser, steps: &[(bool, &str)], window: Option<i64>) -> Vec<i64> {
    let mut candidates: Vec<(i64, usize, bool, &str)> = Vec::new(); // (ts, index, is milestone, name)
    for (i, (ts, _, name)) in u.tracks.iter().enumerate() {
        candidates.push((*ts, i, false, name));
    }
    for (name, ts) in &u.reached {
        candidates.push((*ts, usize::MAX, true, name));
    }
    candidates.sort();
    let fits = |c: &(i64, usize, bool, &str), step: &(bool, &str)| c.2 == step.0 && c.3 == step.1;
    let mut best: Vec<i64> = Vec::new();
    for start in candidates.iter().filter(|c| fits(c, &steps[0])) {
        let mut used = vec![*start];
        let mut times = vec![start.0];
        for step in &steps[1..] {
            let prev = *times.last().unwrap_or(&start.0);
            let next = candidates.iter().find(|c| {
                fits(c, step) && c.0 >= prev && !used.contains(c) && window.is_none_or(|w| c.0 - start.0 <= w)
            });
            match next {
                Some(c) => {
                    used.push(*c);
                    times.push(c.0);
                }
                None => break,
            }
        }
        if times.len() > best.len() {
            best = times;
        }
    }
    best
}

fn reference_funnel(users: &[&RefUser], steps: &[(bool, &str)], window: Option<i64>) -> RefFunnel {
    let chains: Vec<(&str, Vec<i64>)> = users.iter().map(|u| (u.key.as_str(), chain(u, steps, window))).collect();
    (0..steps.len())
        .map(|k| {
            let at: Vec<&(&str, Vec<i64>)> = chains.iter().filter(|(_, c)| c.len() > k).collect();
            let mut keys: Vec<String> = at.iter().map(|(key, _)| key.to_string()).collect();
            keys.sort();
            let gaps: Vec<i64> = if k == 0 { Vec::new() } else { at.iter().map(|(_, c)| c[k] - c[k - 1]).collect() };
            (at.len(), keys, quantile(&gaps, 50))
        })
        .collect()
}

fn selected<'a>(users: &'a [RefUser], from: Option<i64>, until: Option<i64>, plan: Option<&str>) -> Vec<&'a RefUser> {
    users
        .iter()
        .filter(|u| from.is_none_or(|f| u.signup >= f) && until.is_none_or(|t| u.signup < t))
        .filter(|u| plan.is_none_or(|p| u.plan.as_deref() == Some(p)))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The comparisons.

async fn ask(c: &Collector, path: &str) -> Result<String, TestCaseError> {
    let r = reqwest::Client::new().get(format!("{}{path}", c.url)).bearer_auth("rt_demo").send().await.expect("get");
    prop_assert_eq!(r.status(), 200, "{}", path);
    Ok(r.text().await.expect("body"))
}

async fn ask_json(c: &Collector, path: &str) -> Result<Value, TestCaseError> {
    Ok(serde_json::from_str(&ask(c, path).await?).expect("json"))
}

const SPLIT: i64 = BASE - D;

/// Every route, with filters; SQLite and ClickHouse must answer each identically.
fn questions() -> Vec<String> {
    let range = format!("from={}&to={}", BASE - 2 * D, SPLIT);
    let mut q: Vec<String> = [
        "/v1/funnel?users=true",
        "/v1/funnel?steps=m1,m2&window=1d&users=true",
        "/v1/funnel?steps=event:m1,event:a,event:a&users=true",
        "/v1/funnel?steps=m1,event:b&window=5h&users=true",
        "/v1/funnel?steps=event:a,event:a,event:b&window=10h&users=true",
        "/v1/funnel?steps=m1,m2&trait.plan=pro&users=true",
        "/v1/ttv",
        "/v1/ttv?steps=m1,event:m1&value=m1&trait.plan=free",
        "/v1/cohorts?by=day",
        "/v1/cohorts?by=week&trait.plan=pro",
        "/v1/tips",
        "/v1/tips?trait.plan=pro",
        "/v1/metrics",
        "/v1/stalled",
        "/v1/stalled?format=csv",
        "/v1/stalled?due=m1:6h,m2:1d&trait.plan=free",
        "/v1/report",
        "/v1/report?window=1d&by=week&trait.plan=pro",
    ]
    .map(str::to_string)
    .to_vec();
    q.push(format!("/v1/funnel?steps=m1,m2&{range}&users=true"));
    q.push(format!("/v1/ttv?{range}"));
    q.push(format!("/v1/report?{range}&due=m1:12h"));
    q
}

fn funnel_of(answer: &Value) -> RefFunnel {
    answer["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            let keys = s["userIds"].as_array().map(|a| a.iter().map(|k| k.as_str().unwrap_or("").to_string()).collect()).unwrap_or_default();
            (s["users"].as_u64().expect("users") as usize, keys, s["medianMsFromPrevious"].as_i64())
        })
        .collect()
}

/// The collector's answers against the reference.
async fn check_reference(c: &Collector, evs: &[Ev]) -> Result<(), TestCaseError> {
    let (users, visitors) = reference_users(evs);
    let all = selected(&users, None, None, None);
    let ms = [(true, "m1"), (true, "m2")];

    type Question<'a> = (&'a str, Vec<&'a RefUser>, Vec<(bool, &'a str)>, Option<i64>);
    let funnels: [Question; 6] = [
        ("/v1/funnel?users=true", all.clone(), ms.to_vec(), None),
        ("/v1/funnel?steps=m1,m2&window=1d&users=true", all.clone(), ms.to_vec(), Some(D)),
        ("/v1/funnel?steps=event:m1,event:a,event:a&users=true", all.clone(), vec![(false, "m1"), (false, "a"), (false, "a")], None),
        ("/v1/funnel?steps=m1,event:b&window=5h&users=true", all.clone(), vec![(true, "m1"), (false, "b")], Some(5 * H)),
        ("/v1/funnel?steps=event:a,event:a,event:b&window=10h&users=true", all.clone(), vec![(false, "a"), (false, "a"), (false, "b")], Some(10 * H)),
        ("/v1/funnel?steps=m1,m2&trait.plan=pro&users=true", selected(&users, None, None, Some("pro")), ms.to_vec(), None),
    ];
    for (path, who, steps, window) in funnels {
        let answer = ask_json(c, path).await?;
        prop_assert_eq!(funnel_of(&answer), reference_funnel(&who, &steps, window), "{}", path);
        let kinds: Vec<&str> = answer["steps"].as_array().expect("steps").iter().map(|s| s["kind"].as_str().unwrap_or("")).collect();
        let expected: Vec<&str> = steps.iter().map(|(m, _)| if *m { "milestone" } else { "event" }).collect();
        prop_assert_eq!(kinds, expected, "{}", path);
    }
    let range = format!("from={}&to={}", BASE - 2 * D, SPLIT);
    let path = format!("/v1/funnel?steps=m1,m2&{range}&users=true");
    let in_range = selected(&users, Some(BASE - 2 * D), Some(SPLIT), None);
    prop_assert_eq!(funnel_of(&ask_json(c, &path).await?), reference_funnel(&in_range, &ms, None), "{}", path);

    // Time to each milestone from sign-up (clamped at 0), over users who reached it.
    let since = |u: &RefUser, m: &str| u.reached.get(m).map(|t| (t - u.signup).max(0));
    for (path, who) in [("/v1/ttv".to_string(), all.clone()), (format!("/v1/ttv?{range}"), in_range.clone())] {
        let ttv = ask_json(c, &path).await?;
        prop_assert_eq!(&ttv["users"], &json!(who.len()), "{}", path);
        for (i, m) in MILESTONES.iter().enumerate() {
            let times: Vec<i64> = who.iter().filter_map(|u| since(u, m)).collect();
            prop_assert_eq!(&ttv["milestones"][i]["reached"], &json!(times.len()), "{} {}", path, m);
            prop_assert_eq!(&ttv["milestones"][i]["ms"], &quantiles(&times), "{} {}", path, m);
        }
        let value: Vec<i64> = who.iter().filter_map(|u| since(u, "m2")).collect();
        prop_assert_eq!(&ttv["value"]["ms"], &quantiles(&value), "{} value", path);
        // Buckets [edge i-1, edge i), open first and last.
        let edges = [H, 4 * H, D, 3 * D, 7 * D, 14 * D, 30 * D];
        let mut counts = [0u64; 8];
        for v in &value {
            counts[edges.iter().filter(|e| *e <= v).count()] += 1;
        }
        prop_assert_eq!(&ttv["histogram"], &json!({"edgesMs": edges, "counts": counts}), "{} histogram", path);
        let eligible: Vec<&&RefUser> = who.iter().filter(|u| u.signup + D <= NOW).collect();
        let activated = eligible.iter().filter(|u| since(u, "m2").is_some_and(|t| t < D)).count();
        let rate = if eligible.is_empty() { 0.0 } else { activated as f64 / eligible.len() as f64 };
        prop_assert_eq!(&ttv["firstDay"], &json!({"eligible": eligible.len(), "activated": activated, "rate": rate}), "{}", path);
    }

    // Cohorts by sign-up day: users, and users who reached each milestone.
    let mut days: BTreeMap<i64, (usize, usize, usize)> = BTreeMap::new();
    for u in &all {
        let row = days.entry(u.signup - u.signup.rem_euclid(D)).or_default();
        row.0 += 1;
        row.1 += usize::from(u.reached.contains_key("m1"));
        row.2 += usize::from(u.reached.contains_key("m2"));
    }
    let cohorts = ask_json(c, "/v1/cohorts?by=day").await?;
    let rows = common::cohort_rows(&cohorts);
    prop_assert_eq!(rows, days.into_iter().map(|(k, (a, b, c))| (k, a, b, c)).collect::<Vec<_>>(), "cohorts");

    // Stalled (user, milestone) pairs: due at or before now, never reached.
    for (path, who, due) in [
        ("/v1/stalled", all.clone(), DUE.to_vec()),
        ("/v1/stalled?due=m1:6h,m2:1d&trait.plan=free", selected(&users, None, None, Some("free")), vec![("m1", 6 * H), ("m2", D)]),
    ] {
        let mut pairs: BTreeSet<(String, String, i64)> = BTreeSet::new();
        for u in &who {
            for (m, within) in &due {
                if u.signup + within <= NOW && !u.reached.contains_key(m) {
                    pairs.insert((u.key.clone(), m.to_string(), u.signup + within));
                }
            }
        }
        let stalled = ask_json(c, path).await?;
        prop_assert_eq!(&stalled["total"], &json!(pairs.len()), "{}", path);
        let listed: BTreeSet<(String, String, i64)> = stalled["stalled"]
            .as_array()
            .expect("stalled users")
            .iter()
            .map(|s| (s["user"].as_str().unwrap_or("").to_string(), s["milestone"].as_str().unwrap_or("").to_string(), s["dueAt"].as_i64().unwrap_or(0)))
            .collect();
        prop_assert_eq!(listed, pairs, "{}", path);
    }

    // Tip t1 (leading to m2): selected users who were shown it against those who were not.
    for (path, who) in [("/v1/tips", all.clone()), ("/v1/tips?trait.plan=pro", selected(&users, None, None, Some("pro")))] {
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let group = |members: Vec<&&RefUser>| {
            let times: Vec<i64> = members.iter().filter_map(|u| since(u, "m2")).collect();
            json!({"users": members.len(), "completed": times.len(), "completionRate": ratio(times.len(), members.len()), "medianMs": quantile(&times, 50)})
        };
        let (saw, not): (Vec<&&RefUser>, Vec<&&RefUser>) = who.iter().partition(|u| u.tips.contains("tip_shown"));
        let dismissed = saw.iter().filter(|u| u.tips.contains("tip_dismissed")).count();
        let cta = saw.iter().filter(|u| u.tips.contains("tip_cta_clicked")).count();
        let rows = if who.iter().any(|u| !u.tips.is_empty()) {
            json!([{"tipId": "t1", "milestone": "m2", "saw": group(saw.clone()), "didNotSee": group(not), "dismissed": dismissed, "dismissRate": ratio(dismissed, saw.len()), "ctaClicked": cta}])
        } else {
            json!([])
        };
        let tips = ask_json(c, path).await?;
        prop_assert_eq!(&tips["tips"], &rows, "{}", path);
        prop_assert_eq!(&tips["users"], &json!(who.len()), "{}", path);
    }

    // First-session length: each user's first reported value.
    let sessions: Vec<i64> = all.iter().filter_map(|u| u.first_session).collect();
    let metrics = ask_json(c, "/v1/metrics").await?;
    prop_assert_eq!(&metrics["firstSessionLength"]["users"], &json!(sessions.len()), "first sessions");
    prop_assert_eq!(&metrics["firstSessionLength"]["ms"], &quantiles(&sessions), "first sessions");

    // Visitors who never identified are in no report above, and counted apart, selected as users
    // are (an identify without a user id on a device nobody linked gives them traits).
    for (query, expected) in [
        ("".to_string(), visitors.len()),
        (format!("from={}&to={SPLIT}", BASE - 2 * D), selected(&visitors, Some(BASE - 2 * D), Some(SPLIT), None).len()),
        ("trait.plan=pro".to_string(), selected(&visitors, None, None, Some("pro")).len()),
    ] {
        let report = ask_json(c, &format!("/v1/report?{query}")).await?;
        prop_assert_eq!(&report["visitors"], &json!(expected), "/v1/report?{} visitors", query);
    }

    // The dashboard's one request answers as the separate routes do, so the reference above
    // covers it too.
    let filters = ["".to_string(), format!("trait.plan=pro&from={}&to={SPLIT}&", BASE - 2 * D)];
    for filter in filters {
        let report = ask_json(c, &format!("/v1/report?{filter}window=1d&by=week")).await?;
        for (part, route) in [("funnel", "funnel"), ("ttv", "ttv"), ("cohorts", "cohorts"), ("tips", "tips"), ("metrics", "metrics"), ("stalled", "stalled")] {
            let own = match route {
                "funnel" => "window=1d",
                "cohorts" => "by=week",
                _ => "",
            };
            let mut alone = ask_json(c, &format!("/v1/{route}?{filter}{own}")).await?;
            // The report names its project once, at the top.
            alone.as_object_mut().expect("object").remove("project");
            prop_assert_eq!(&report[part], &alone, "/v1/report?{}: {} differs from /v1/{}", filter, part, route);
        }
    }
    Ok(())
}

async fn post_all(c: &Collector, bodies: &[String]) -> Result<(), TestCaseError> {
    for b in bodies {
        let r = post(&c.url, b.clone()).await;
        prop_assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    }
    let r = reqwest::Client::new().put(format!("{}/v1/plan", c.url)).bearer_auth("et_demo").body(PLAN).send().await.expect("put");
    prop_assert_eq!(r.status(), 200);
    Ok(())
}

/// How many streams had each ambiguous case, so a generator gone trivial fails the test.
static SEEN: [AtomicUsize; 8] = [const { AtomicUsize::new(0) }; 8];
const SEEN_NAMES: [&str; 8] = [
    "a user through both milestones",
    "a user through the ad-hoc funnel with a repeated step",
    "a stalled pair",
    "an anonymous event counted for a user by its link",
    "two steps of one user at the same millisecond",
    "a sign-up time from identify",
    "a visitor who never identified",
    "an identify without a user id, on a device linked to a user",
];

fn count_seen(evs: &[Ev]) {
    let (users, visitors) = reference_users(evs);
    let all = selected(&users, None, None, None);
    let linked = evs.iter().any(|e| e.user.is_none() && users.iter().any(|u| u.key.starts_with('u') && evs.iter().any(|f| f.anon == e.anon && f.user.as_deref() == Some(u.key.as_str()))));
    let tie = users.iter().any(|u| {
        let mut times: Vec<i64> = u.reached.values().copied().chain(u.tracks.iter().map(|t| t.0)).collect();
        let n = times.len();
        times.sort();
        times.dedup();
        times.len() < n
    });
    let seen = [
        reference_funnel(&all, &[(true, "m1"), (true, "m2")], None)[1].0 > 0,
        reference_funnel(&all, &[(false, "m1"), (false, "a"), (false, "a")], None)[2].0 > 0,
        users.iter().any(|u| DUE.iter().any(|(m, within)| u.signup + within <= NOW && !u.reached.contains_key(m))),
        linked,
        tie,
        evs.iter().any(|e| e.props.get("signedUpAt").is_some()),
        !visitors.is_empty(),
        evs.iter().any(|e| e.kind == "identify" && e.user.is_none() && users.iter().any(|u| evs.iter().any(|f| f.anon == e.anon && f.user.as_deref() == Some(u.key.as_str())))),
    ];
    for (counter, seen) in SEEN.iter().zip(seen) {
        counter.fetch_add(usize::from(seen), Ordering::Relaxed);
    }
}

/// One stream through SQLite (and ClickHouse when given a database for it).
async fn run_case(s: Stream, clickhouse: Option<String>) -> Result<(), TestCaseError> {
    let evs = events(&s);
    let bodies = batches(&s, &evs);
    count_seen(&evs);
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite_store = Arc::new(SqliteStore::open(dir.path().join("o.db")).expect("sqlite"));
    let sqlite = serve_with_clock(sqlite_store.clone(), Some(NOW)).await;
    post_all(&sqlite, &bodies).await?;
    prop_assert_eq!(sqlite_store.verify_rollups(None).await.expect("verify"), Vec::<String>::new());
    check_reference(&sqlite, &evs).await?;
    // Every other question must at least be answered.
    for q in questions() {
        ask(&sqlite, &q).await?;
    }

    if let Some(url) = clickhouse {
        let store = Arc::new(ClickHouseStore::open(&url).await.expect("open ClickHouse"));
        let ch = serve_with_clock(store.clone(), Some(NOW)).await;
        post_all(&ch, &bodies).await?;
        prop_assert_eq!(store.verify_rollups(None).await.expect("verify"), Vec::<String>::new());
        for q in questions() {
            prop_assert_eq!(ask(&sqlite, &q).await?, ask(&ch, &q).await?, "{}: SQLite and ClickHouse differ", q);
        }
        check_reference(&ch, &evs).await?;
    }
    Ok(())
}

/// `cases` streams, or `ORACLE_CASES` times as many for a longer hunt (`ORACLE_CASES=50`).
fn runner(cases: u32) -> TestRunner {
    let times: u32 = std::env::var("ORACLE_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    TestRunner::new(Config { cases: cases * times, failure_persistence: None, ..Config::default() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_answers_equal_the_reference() {
    let handle = tokio::runtime::Handle::current();
    let result = runner(48).run(&stream(), |s| tokio::task::block_in_place(|| handle.block_on(run_case(s, None))));
    if let Err(e) = result {
        panic!("{e}");
    }
    for (counter, name) in SEEN.iter().zip(SEEN_NAMES) {
        let n = counter.load(Ordering::Relaxed);
        assert!(n >= 5, "only {n} streams had {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_answers_equal_sqlite_and_the_reference() {
    let (server, _) = common::clickhouse().await;
    // Without background merges, resent rows stay apart: reads and rollups must fold them.
    server.query("SYSTEM STOP MERGES").expect("stop merges");
    let handle = tokio::runtime::Handle::current();
    // Each case (shrinking included) gets its own database.
    let cases = std::sync::atomic::AtomicUsize::new(0);
    let result = runner(6).run(&stream(), |s| {
        let n = cases.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let url = server.store_url(&format!("case{n}"));
        tokio::task::block_in_place(|| handle.block_on(run_case(s, Some(url))))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
