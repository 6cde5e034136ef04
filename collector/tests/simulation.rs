//! A seeded simulation of tens of thousands of users with known behaviour, sent through the real
//! HTTP API into a real SQLite file. Every funnel count, time-to-value quantile, cohort cell, tip
//! group and stall count the collector answers must equal the ground truth computed here, by code
//! that shares nothing with the collector's analytics (binary searches instead of the matcher's
//! scan, counting instead of ranking, plain division instead of the calendar module).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use onramp_collector::store::sqlite::SqliteStore;
use onramp_collector::{AppState, Config};
use common::Rng;
use serde_json::{json, Value};

const USERS: usize = 25_000;
const SEED: u64 = 0x0a_2026_1123;
const H: i64 = 3_600_000;
const D: i64 = 24 * H;
/// 2026-11-23T00:00:00Z: the collector's fixed clock, and the end of the simulated time.
const NOW: i64 = 1_795_392_000_000;
const STEPS: [&str; 4] = ["account_created", "project_created", "teammate_invited", "file_uploaded"];

impl Rng {
    /// A skewed delay: most within hours, a long tail of days.
    fn delay(&mut self, scale: i64) -> i64 {
        let u = (self.below(1_000_000) + 1) as f64 / 1_000_001.0;
        ((-u.ln()) * scale as f64) as i64 + 1000 + self.below(1000) as i64
    }
}

struct SimUser {
    id: String,
    anon: String,
    /// None: never identified, so first-seen stands in for sign-up.
    signup: Option<i64>,
    plan: &'static str,
    role: &'static str,
    /// (ts, type, name, props), any order; all times distinct within a user.
    events: Vec<(i64, &'static str, String, Value)>,
}

impl SimUser {
    fn signup_time(&self) -> i64 {
        self.signup.unwrap_or_else(|| self.events.iter().map(|e| e.0).min().unwrap_or(NOW))
    }
    fn times_of(&self, name: &str) -> Vec<i64> {
        let mut t: Vec<i64> = self.events.iter().filter(|e| e.2 == name).map(|e| e.0).collect();
        t.sort();
        t
    }
    fn first(&self, name: &str) -> Option<i64> {
        self.times_of(name).first().copied()
    }
}

fn simulate() -> Vec<SimUser> {
    let mut rng = Rng(SEED);
    let plans = ["trial", "pro", "team"];
    let roles = ["admin", "member", "viewer"];
    (0..USERS)
        .map(|i| {
            let plan = plans[rng.below(3) as usize];
            let role = roles[rng.below(3) as usize];
            let signup = NOW - 60 * D + rng.below(60 * D as u64 - H as u64) as i64;
            let identified = !rng.chance(0.05);
            let mut u = SimUser {
                id: format!("user-{i:05}"),
                anon: format!("anon-{i:05}"),
                signup: identified.then_some(signup),
                plan,
                role,
                events: Vec::new(),
            };
            let mut t = signup;
            let push = |u: &mut SimUser, ts: i64, kind: &'static str, name: &str, props: Value| {
                if ts < NOW {
                    u.events.push((ts, kind, name.to_string(), props));
                }
            };
            // Some users act before identify; their anonymous events must count for them.
            if rng.chance(0.3) {
                push(&mut u, t - 5000, "track", "page_viewed", json!({}));
            }
            if identified {
                push(&mut u, t, "identify", "identify", json!({"signedUpAt": signup, "plan": "trial", "role": role}));
                if plan != "trial" {
                    // An upgrade: the later identify's trait wins.
                    push(&mut u, t + 500, "identify", "identify", json!({"plan": plan}));
                }
            }
            let tip_seen = rng.chance(0.5);
            let boost = match plan { "team" => 0.1, "pro" => 0.05, _ => 0.0 } + if tip_seen { 0.1 } else { 0.0 };
            let probs = [0.95, 0.7 + boost, 0.5 + boost, 0.6 + boost];
            let scales = [10 * 60_000, 6 * H, D, 2 * D];
            if tip_seen {
                let props = json!({"tipId": "first-project", "milestone": "project_created", "sinceSignupMs": 2000});
                push(&mut u, t + 2000, "tip", "tip_shown", props.clone());
                if rng.chance(0.3) {
                    push(&mut u, t + 2500, "tip", "tip_dismissed", props);
                }
            }
            for (step, name) in STEPS.iter().enumerate() {
                // Some users do a later step without the earlier ones: out of order, not counted.
                if !rng.chance(probs[step]) {
                    if rng.chance(0.2) {
                        push(&mut u, t + rng.delay(scales[step]), "milestone", STEPS[(step + 1) % 4], json!({}));
                    }
                    break;
                }
                t += rng.delay(scales[step]);
                push(&mut u, t, "milestone", name, json!({"sinceSignupMs": t - signup}));
                if *name == "file_uploaded" {
                    push(&mut u, t + 1, "milestone", "time_to_value", json!({"milestone": name, "sinceSignupMs": t - signup}));
                }
                // Repeats: a second project, another invite.
                if rng.chance(0.2) {
                    push(&mut u, t + rng.delay(H), "milestone", name, json!({}));
                }
            }
            push(&mut u, signup + 3000, "metric", "first_session_length", json!({"valueMs": rng.delay(20 * 60_000)}));
            // Keep every time distinct within a user, so event order is the time order.
            u.events.sort_by_key(|e| e.0);
            for k in 1..u.events.len() {
                if u.events[k].0 <= u.events[k - 1].0 {
                    u.events[k].0 = u.events[k - 1].0 + 1;
                }
            }
            u.events.retain(|e| e.0 < NOW);
            u
        })
        .collect()
}

fn wire_events(users: &[SimUser]) -> Vec<Value> {
    let mut out = Vec::new();
    for u in users {
        let mut identified = false;
        for (n, (ts, kind, name, props)) in u.events.iter().enumerate() {
            identified |= *kind == "identify";
            let mut e = json!({"id": format!("{}-{n}", u.id), "type": kind, "name": name, "anonymousId": u.anon, "ts": ts, "props": props});
            if identified {
                e["userId"] = json!(u.id);
            }
            out.push(e);
        }
    }
    out
}

/// What each user is called in the answers: anonymous users by their anonymous id.
fn key(u: &SimUser) -> &str {
    if u.signup.is_some() { &u.id } else { &u.anon }
}

// ---- ground truth, independent of the collector's analytics ----

/// Depth reached in milestone `steps` within `window` of the first step. A milestone is
/// reached once, at its first report (repeats are a second device saying it again): walk the
/// steps' first times while each is at or after the previous and within the window.
fn truth_depth(u: &SimUser, steps: &[&str], window: i64) -> usize {
    let times: Vec<Vec<i64>> = steps.iter().map(|s| u.first(s).into_iter().collect()).collect();
    let mut best = 0;
    for &start in &times[0] {
        let mut depth = 1;
        let mut at = start;
        for t in &times[1..] {
            let i = t.partition_point(|&x| x < at);
            match t.get(i) {
                Some(&next) if next - start <= window => {
                    at = next;
                    depth += 1;
                }
                _ => break,
            }
        }
        best = best.max(depth);
    }
    best
}

/// The smallest value v with at least pct% of the values ≤ v (nearest rank, by counting: the
/// count of values ≤ v is read at the last copy of v in sorted order).
fn truth_quantile(values: &[i64], pct: i64) -> Option<i64> {
    let n = values.len() as i64;
    let mut sorted = values.to_vec();
    sorted.sort();
    (0..sorted.len())
        .filter(|&i| i + 1 == sorted.len() || sorted[i + 1] != sorted[i])
        .find(|&i| (i as i64 + 1) * 100 >= pct * n)
        .map(|i| sorted[i])
}

fn ttv(u: &SimUser, name: &str) -> Option<i64> {
    u.first(name).map(|t| (t - u.signup_time()).max(0))
}

/// Which simulated users a filtered request should cover.
type Admits = Box<dyn Fn(&SimUser) -> bool>;

// ---- the server ----

struct Server {
    url: String,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start() -> (Server, Arc<AtomicI64>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path().join("sim.db")).expect("open store");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut state = AppState::new(no_plan(), Arc::new(store));
    let now = Arc::new(AtomicI64::new(NOW));
    let clock = now.clone();
    state.clock = Arc::new(move || clock.load(Ordering::SeqCst));
    tokio::spawn(onramp_collector::run(listener, state, async move {
        let _ = stopped.await;
    }));
    (Server { url, _dir: dir, _stop: stop }, now)
}

async fn get(s: &Server, path: &str) -> Value {
    let r = reqwest::Client::new().get(format!("{}{path}", s.url)).bearer_auth("rt_demo").send().await.expect("get");
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.expect("json")
}

fn check_quantiles(what: &str, answer: &Value, values: &[i64]) {
    assert_eq!(answer["count"], json!(values.len()), "{what} count");
    for (key, pct) in [("p50", 50), ("p75", 75), ("p90", 90)] {
        assert_eq!(answer[key], json!(truth_quantile(values, pct)), "{what} {key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_users_match_ground_truth() {
    let people = simulate();
    let mut events = wire_events(&people);
    assert!(events.len() > 150_000, "a sizeable simulation: {} events", events.len());
    // Sent as they happened: in time order, each batch received when its last event happened
    // (the collector refuses events older than 30 days, and the simulation spans 60).
    events.sort_by_key(|e| e["ts"].as_i64());
    let (s, clock) = start().await;
    let client = reqwest::Client::new();
    for chunk in events.chunks(1000) {
        let sent_at = chunk.last().and_then(|e| e["ts"].as_i64()).expect("ts");
        clock.store(sent_at, Ordering::SeqCst);
        let body = json!({"writeKey": "wk_demo", "sentAt": sent_at, "events": chunk}).to_string();
        let r = client.post(format!("{}/v1/batch", s.url)).body(body).send().await.expect("post");
        assert_eq!(r.status(), 200, "{:.300}", r.text().await.unwrap_or_default());
    }
    clock.store(NOW, Ordering::SeqCst);

    // Visitors who never identified are in no report, and counted apart.
    let (users, visitors): (Vec<SimUser>, Vec<SimUser>) = people.into_iter().partition(|u| u.signup.is_some());
    assert!(visitors.len() > 100, "{} visitors", visitors.len());
    assert_eq!(get(&s, &format!("/v1/report?steps={}", STEPS.map(|s| format!("milestone:{s}")).join(","))).await["visitors"], json!(visitors.len()));

    // Whole population, and two filtered ones: by trait (the upgraded plan wins) and by date.
    let from = NOW - 30 * D;
    let selections: Vec<(String, Admits)> = vec![
        (String::new(), Box::new(|_: &SimUser| true)),
        ("&trait.plan=pro,team&trait.role=admin".into(), Box::new(|u: &SimUser| u.signup.is_some() && u.plan != "trial" && u.role == "admin")),
        (format!("&from={from}&to={}", NOW - 10 * D), Box::new(move |u: &SimUser| (from..NOW - 10 * D).contains(&u.signup_time()))),
    ];
    // No plan here, so the steps say they are milestones (a bare name would mean track events).
    let steps = STEPS.map(|s| format!("milestone:{s}")).join(",");
    for (filter, admits) in &selections {
        let selected: Vec<&SimUser> = users.iter().filter(|u| admits(u)).collect();

        // Funnel, with a 3-day conversion window.
        let window = 3 * D;
        let funnel = get(&s, &format!("/v1/funnel?steps={steps}&window={window}&users=true{filter}")).await;
        let depths: Vec<usize> = selected.iter().map(|u| truth_depth(u, &STEPS, window)).collect();
        for (i, step) in funnel["steps"].as_array().expect("steps").iter().enumerate() {
            let mut ids: Vec<&str> = selected.iter().zip(&depths).filter(|(_, d)| **d > i).map(|(u, _)| key(u)).collect();
            ids.sort();
            assert_eq!(step["users"], json!(ids.len()), "funnel step {i} {filter}");
            assert_eq!(step["userIds"], json!(ids), "funnel step {i} users {filter}");
        }

        // Time-to-value: each milestone, and the value milestone (the SDK's time_to_value event).
        let answer = get(&s, &format!("/v1/ttv?steps={steps}{filter}")).await;
        for (i, name) in STEPS.iter().enumerate() {
            let t: Vec<i64> = selected.iter().filter_map(|u| ttv(u, name)).collect();
            check_quantiles(&format!("ttv {name} {filter}"), &answer["milestones"][i]["ms"], &t);
        }
        let value: Vec<i64> = selected.iter().filter_map(|u| ttv(u, "time_to_value")).collect();
        check_quantiles(&format!("ttv value {filter}"), &answer["value"]["ms"], &value);
        let edges = [H, 4 * H, D, 3 * D, 7 * D, 14 * D, 30 * D];
        let hist: Vec<usize> = (0..=edges.len())
            .map(|b| value.iter().filter(|&&v| (b == 0 || v >= edges[b - 1]) && (b == edges.len() || v < edges[b])).count())
            .collect();
        assert_eq!(answer["histogram"]["counts"], json!(hist), "histogram {filter}");
        let eligible: Vec<&&SimUser> = selected.iter().filter(|u| u.signup_time() <= NOW - D).collect();
        let activated = eligible.iter().filter(|u| ttv(u, "time_to_value").is_some_and(|t| t < D)).count();
        assert_eq!(answer["firstDay"]["eligible"], json!(eligible.len()), "eligible {filter}");
        assert_eq!(answer["firstDay"]["activated"], json!(activated), "activated {filter}");

        // Cohorts by day and by week (1970-01-05 was a Monday), value = file_uploaded.
        for (by, width, origin) in [("day", D, 0), ("week", 7 * D, 4 * D)] {
            let answer = get(&s, &format!("/v1/cohorts?by={by}&steps={steps}&value=milestone:file_uploaded{filter}")).await;
            let mut truth: BTreeMap<i64, Vec<&SimUser>> = BTreeMap::new();
            for u in &selected {
                truth.entry((u.signup_time() - origin) / width * width + origin).or_default().push(u);
            }
            let rows = answer["cohorts"].as_array().expect("cohorts");
            assert_eq!(rows.len(), truth.len(), "{by} cohorts {filter}");
            for (row, (start, members)) in rows.iter().zip(&truth) {
                assert_eq!(row["start"], json!(start), "{by} cohort start");
                assert_eq!(row["users"], json!(members.len()), "{by} cohort {start} users");
                let reached: Vec<usize> = STEPS.iter().map(|n| members.iter().filter(|u| u.first(n).is_some()).count()).collect();
                assert_eq!(row["reached"], json!(reached), "{by} cohort {start} reached");
                let t: Vec<i64> = members.iter().filter_map(|u| ttv(u, "file_uploaded")).collect();
                check_quantiles(&format!("{by} cohort {start} ttv"), &row["value"]["ms"], &t);
                let activated = members
                    .iter()
                    .filter(|u| u.signup_time() <= NOW - D && ttv(u, "file_uploaded").is_some_and(|t| t < D))
                    .count();
                assert_eq!(row["firstDay"]["activated"], json!(activated), "{by} cohort {start} activated");
            }
        }
    }

    // Tip effect: users who saw the tip against those who did not.
    let tips = get(&s, "/v1/tips").await;
    let tip = &tips["tips"][0];
    assert_eq!(tip["tipId"], "first-project");
    let saw = |u: &&SimUser| u.events.iter().any(|e| e.2 == "tip_shown");
    let (with, without): (Vec<&SimUser>, Vec<&SimUser>) = users.iter().partition(saw);
    for (group, members) in [("saw", &with), ("didNotSee", &without)] {
        let t: Vec<i64> = members.iter().filter_map(|u| ttv(u, "project_created")).collect();
        assert_eq!(tip[group]["users"], json!(members.len()), "tip {group} users");
        assert_eq!(tip[group]["completed"], json!(t.len()), "tip {group} completed");
        assert_eq!(tip[group]["medianMs"], json!(truth_quantile(&t, 50)), "tip {group} median");
    }
    let dismissed = with.iter().filter(|u| u.events.iter().any(|e| e.2 == "tip_dismissed")).count();
    assert_eq!(tip["dismissed"], json!(dismissed));

    // Stalled: past 2 days without an invite.
    let stalled = get(&s, "/v1/stalled?due=teammate_invited:2d").await;
    let expected = users.iter().filter(|u| u.signup_time() + 2 * D <= NOW && u.first("teammate_invited").is_none()).count();
    assert_eq!(stalled["total"], json!(expected));
    let by_key: HashMap<&str, &SimUser> = users.iter().map(|u| (key(u), u)).collect();
    for row in stalled["stalled"].as_array().expect("list").iter().take(50) {
        let u = by_key[row["user"].as_str().expect("user")];
        assert_eq!(row["lastSeen"], json!(u.events.iter().map(|e| e.0).max()));
    }
}

/// The repository's config without the demo plan: the requests here name their steps, value
/// milestone and due windows, and the answers must not depend on the plan file.
fn no_plan() -> Config {
    let mut config = Config::default();
    config.plan_files.clear();
    config
}
