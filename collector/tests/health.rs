//! Customer health and lifecycle over real sockets, on SQLite and on a real clickhouse-server:
//! a seeded simulation of 36 users in 4 accounts over 40 days is ingested in phases, health is
//! computed after each, and every user's and account's score, band, stage and measure points,
//! and every transition, are matched exactly with an oracle written here from the definitions
//! in docs/HEALTH.md (not from the collector's code). The webhook receiver gets each transition
//! once, with its breakdown, and a computation repeated at the same moment changes nothing.
//!
//! Ambiguous cases in the data: milestone ids equal to tracked event names (`project_created`
//! as a `track` event is a feature used, never the milestone), users identified late (their
//! anonymous events count for them from then on; before it they are visitors, not scored), a
//! user who moves to another account, NPS answers without a `group`, a CES answer after an NPS
//! one (not a satisfaction answer), and users with no survey answer (re-weighted).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use common::Rng;
use onramp_collector::config::PlanSource;
use onramp_collector::store::sqlite::SqliteStore;
use onramp_collector::store::Store;
use onramp_collector::webhook::{delivery_loop, Webhook};
use onramp_collector::{AppState, Config};
use serde_json::{json, Value};

const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;
/// A UTC midnight.
const T0: i64 = 1_795_392_000_000;

const PLAN: &str = r##"{
  "version": "health-sim",
  "milestones": [
    { "id": "project_created", "title": "Create a project", "condition": { "event": "project_created" }, "due": "2d" },
    { "id": "teammate_invited", "title": "Invite a teammate", "condition": { "event": "teammate_invited" }, "due": "5d", "value": true },
    { "id": "report_shared", "title": "Share a report", "condition": { "event": "report_shared" }, "due": "3d", "required": false }
  ],
  "capture": [
    { "event": "project_created", "on": "submit", "selector": "#project-form" },
    { "event": "teammate_invited", "on": "submit", "selector": "#invite-form" },
    { "event": "file_uploaded", "on": "click", "selector": "#upload" },
    { "event": "report_viewed", "on": "view", "path": "/reports*" }
  ],
  "health": {
    "accountMilestones": [
      { "id": "team_of_thirty", "title": "30 teammates invited", "event": "teammate_invited", "count": 30, "due": "10d" },
      { "id": "someone_invited", "title": "Someone invited a teammate", "milestone": "teammate_invited", "due": "4d" }
    ]
  }
}"##;

const FEATURES: [&str; 4] = ["project_created", "teammate_invited", "file_uploaded", "report_viewed"];

/// When health is computed: each after the events before it are in.
const COMPUTES: [i64; 4] = [T0 + 10 * DAY + 5 * HOUR, T0 + 17 * DAY + 5 * HOUR, T0 + 25 * DAY + 5 * HOUR, T0 + 40 * DAY + 5 * HOUR];

// ---------------------------------------------------------------------------------------------
// The simulation.

#[derive(Clone, Debug)]
struct Ev {
    id: String,
    kind: &'static str,
    name: String,
    anon: String,
    user: Option<String>,
    ts: i64,
    props: Value,
}

impl Ev {
    fn json(&self) -> Value {
        let mut e = json!({"id": self.id, "type": self.kind, "name": self.name, "anonymousId": self.anon, "ts": self.ts, "props": self.props});
        if let Some(u) = &self.user {
            e["userId"] = json!(u);
        }
        e
    }
}

fn simulate() -> Vec<Ev> {
    let mut rng = Rng(15);
    let mut out: Vec<Ev> = Vec::new();
    let mut n = 0;
    let mut push = |out: &mut Vec<Ev>, kind: &'static str, name: &str, anon: &str, user: Option<&str>, ts: i64, props: Value| {
        n += 1;
        out.push(Ev { id: format!("e{n:05}"), kind, name: name.into(), anon: anon.into(), user: user.map(String::from), ts, props });
    };
    let accounts = ["acme", "globex", "initech", "umbrella"];
    for i in 0..36 {
        let user = format!("u{i:02}");
        let anon = format!("a{i:02}");
        let signup = T0 + rng.below(20) as i64 * DAY + (rng.below(20) as i64 + 1) * HOUR;
        // 0 engaged, 1 lukewarm, 2 churns after a while, 3 gone after the first days.
        let profile = rng.below(4);
        let stop = match profile {
            2 => signup + (6 + rng.below(10) as i64) * DAY,
            3 => signup + (1 + rng.below(3) as i64) * DAY,
            _ => i64::MAX,
        };
        let active = [0.75, 0.35, 0.60, 0.80][profile as usize];
        // Every fifth user browses anonymously before identifying, a few hours later.
        let late = i % 5 == 4;
        let identify_at = if late { signup + 3 * HOUR } else { signup };
        let who = |ts: i64| if ts >= identify_at { Some(user.clone()) } else { None };
        push(&mut out, "identify", "identify", &anon, Some(&user), identify_at, json!({"signedUpAt": signup, "email": format!("{user}@example.com")}));
        if i % 9 != 8 {
            let account = accounts[i % 4];
            push(&mut out, "identify", "group", &anon, Some(&user), identify_at + 60_000, json!({"accountId": account, "account": {"name": account.to_uppercase()}}));
        }
        if i == 5 {
            // Moves to another account on day 12.
            push(&mut out, "identify", "group", &anon, Some(&user), signup + 12 * DAY, json!({"accountId": "umbrella", "account": {"name": "UMBRELLA"}}));
        }
        let mut active_days = 0;
        let mut first_ts: Option<i64> = None;
        for d in 0..45 {
            let day_start = (signup / DAY + d) * DAY;
            if day_start >= T0 + 41 * DAY {
                break;
            }
            let active = d == 0 || rng.chance(active);
            if !active {
                continue;
            }
            let first = if d == 0 { signup } else { day_start + (rng.below(12) as i64 + 6) * HOUR };
            if first >= stop {
                break;
            }
            active_days += 1;
            let hits = 1 + rng.below(3);
            for h in 0..hits {
                let ts = first + h as i64 * 20 * 60_000;
                let name = ["file_uploaded", "report_viewed", "project_created", "misc_click", "misc_click", "teammate_invited"][rng.below(6) as usize];
                push(&mut out, "track", name, &anon, who(ts).as_deref(), ts, json!({}));
            }
            if first_ts.is_none() {
                first_ts = Some(first);
            } else if active_days == 2 {
                let ms = first - first_ts.unwrap_or(first);
                push(&mut out, "metric", "return_interval", &anon, who(first).as_deref(), first + 1, json!({"valueMs": ms}));
            }
        }
        // Milestones (the SDK's `milestone` events), each at most once.
        if profile != 3 || rng.chance(0.40) {
            let at = signup + rng.below(4 * 24) as i64 * HOUR + HOUR;
            if at < stop {
                push(&mut out, "milestone", "project_created", &anon, who(at).as_deref(), at, json!({"sinceSignupMs": at - signup}));
                if profile <= 1 || rng.chance(0.50) {
                    let v = at + rng.below(8 * 24) as i64 * HOUR + HOUR;
                    if v < stop {
                        push(&mut out, "milestone", "teammate_invited", &anon, who(v).as_deref(), v, json!({"sinceSignupMs": v - signup, "value": true}));
                    }
                }
            }
        }
        // Surveys: NPS (with or without its group), CSAT, and a CES answer that is no NPS/CSAT.
        let answers = rng.below(3);
        for k in 0..answers {
            let at = signup + (3 + 8 * k as i64) * DAY + 2 * HOUR + rng.below(10) as i64 * HOUR;
            if at >= stop.min(T0 + 40 * DAY) {
                break;
            }
            let props = match rng.below(3) {
                0 => {
                    let score = rng.below(11);
                    let group = if score >= 9 { "promoter" } else if score >= 7 { "passive" } else { "detractor" };
                    if rng.chance(0.50) {
                        json!({"surveyId": "nps-q", "surveyKind": "nps", "score": score, "group": group})
                    } else {
                        json!({"surveyId": "nps-q", "surveyKind": "nps", "score": score})
                    }
                }
                1 => {
                    let score = 1 + rng.below(3);
                    let group = ["unhappy", "neutral", "happy"][score as usize - 1];
                    json!({"surveyId": "csat-1", "surveyKind": "csat", "score": score, "group": group})
                }
                _ => json!({"surveyId": "ces-1", "surveyKind": "ces", "score": 1 + rng.below(7)}),
            };
            push(&mut out, "survey", "survey_answered", &anon, who(at).as_deref(), at, props);
        }
    }
    out.sort_by(|a, b| (a.ts, &a.id).cmp(&(b.ts, &b.id)));
    out
}

// ---------------------------------------------------------------------------------------------
// The oracle: docs/HEALTH.md's definitions, with the plan above and every health default.

#[derive(Clone, Debug, PartialEq)]
struct Expect {
    score: Option<u64>,
    band: Option<&'static str>,
    stage: &'static str,
    /// measure → points (None: no data)
    points: BTreeMap<&'static str, Option<u64>>,
    reasons_contain: Vec<String>,
    account_milestones: Vec<AccountMilestone>,
}

/// An account milestone as expected: (id, reached at, progress, due at).
type AccountMilestone = (String, Option<i64>, u64, Option<i64>);

fn tier_points(measure: &str, v: f64) -> u64 {
    // (at least, points) for higher-is-better measures, (at most, points) for the others.
    let (higher, tiers): (bool, &[(f64, u64)]) = match measure {
        "milestones" => (true, &[(100.0, 100), (75.0, 75), (50.0, 40)]),
        "activeDays7" => (true, &[(4.0, 100), (2.0, 70), (1.0, 40)]),
        "activeDays30" => (true, &[(12.0, 100), (6.0, 70), (2.0, 30)]),
        "returnInterval" => (false, &[(24.0, 100), (72.0, 70), (168.0, 40)]),
        "breadth" => (true, &[(60.0, 100), (30.0, 60), (1.0, 30)]),
        "satisfaction" => (true, &[(100.0, 100), (50.0, 50)]),
        "lastSeen" => (false, &[(1.0, 100), (3.0, 75), (7.0, 40), (14.0, 10)]),
        _ => unreachable!(),
    };
    tiers.iter().find(|(b, _)| if higher { v >= *b } else { v <= *b }).map_or(0, |(_, p)| *p)
}

fn band_of(score: u64) -> &'static str {
    if score < 50 {
        "red"
    } else if score < 75 {
        "yellow"
    } else {
        "green"
    }
}

/// Half up: ⌊(Σwp/Σw) + ½⌋, in integers.
fn rounded_mean(parts: &[(u64, u64)]) -> Option<u64> {
    let w: u64 = parts.iter().map(|p| p.0).sum();
    let s: u64 = parts.iter().map(|p| p.0 * p.1).sum();
    (w > 0).then(|| (2 * s + w) / (2 * w))
}

struct Oracle {
    users: BTreeMap<String, Expect>,
    accounts: BTreeMap<String, Expect>,
}

fn oracle(all: &[Ev], now: i64) -> Oracle {
    let events: Vec<&Ev> = all.iter().filter(|e| e.ts < now).collect();
    // Identity: an anonymous id belongs to the user of its first event carrying a user id.
    let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
    for e in &events {
        if let Some(u) = &e.user {
            owner.entry(e.anon.as_str()).or_insert(u.as_str());
        }
    }
    let mut per_user: BTreeMap<&str, Vec<&Ev>> = BTreeMap::new();
    for e in &events {
        let key = e.user.as_deref().or_else(|| owner.get(e.anon.as_str()).copied());
        if let Some(u) = key {
            per_user.entry(u).or_default().push(e);
        }
    }
    let titles = [("project_created", "Create a project", 2 * DAY), ("teammate_invited", "Invite a teammate", 5 * DAY)];
    let mut users = BTreeMap::new();
    let mut membership: BTreeMap<String, (String, i64)> = BTreeMap::new();
    for (user, evs) in &per_user {
        let identifies: Vec<&&Ev> = evs.iter().filter(|e| e.kind == "identify").collect();
        let signup = identifies.iter().rev().find_map(|e| e.props["signedUpAt"].as_i64()).expect("signedUpAt");
        let last_seen = evs.iter().map(|e| e.ts).max().expect("events");
        if let Some(g) = identifies.iter().rev().find(|e| e.props.get("accountId").is_some()) {
            membership.insert(user.to_string(), (g.props["accountId"].as_str().expect("id").to_string(), last_seen));
        }
        let first_milestone = |name: &str| evs.iter().filter(|e| e.kind == "milestone" && e.name == name).map(|e| e.ts).min();
        let value_at = first_milestone("teammate_invited");
        // Milestones: reached by the due time 1, late ½, overdue 0, not yet due left out.
        let (mut counted, mut halves) = (0u64, 0u64);
        let mut reasons = Vec::new();
        for (id, title, due) in titles {
            let due_at = signup + due;
            match first_milestone(id) {
                Some(at) if at <= due_at => (counted, halves) = (counted + 1, halves + 2),
                Some(_) => (counted, halves) = (counted + 1, halves + 1),
                None if due_at <= now => {
                    counted += 1;
                    let late = (now - due_at) / DAY;
                    reasons.push(if late == 0 { format!("'{title}' overdue since today") } else if late == 1 { format!("'{title}' 1 day overdue") } else { format!("'{title}' {late} days overdue") });
                }
                None => {}
            }
        }
        let milestones = (counted > 0).then(|| halves as f64 * 50.0 / counted as f64);
        let days = |span: i64| evs.iter().filter(|e| e.ts > now - span * DAY && e.ts <= now).map(|e| e.ts.div_euclid(DAY)).collect::<BTreeSet<_>>().len() as f64;
        let return_hours = evs.iter().rev().find(|e| e.kind == "metric" && e.name == "return_interval").map(|e| e.props["valueMs"].as_f64().expect("ms") / HOUR as f64);
        let used = evs.iter().filter(|e| e.kind == "track" && FEATURES.contains(&e.name.as_str())).map(|e| e.name.as_str()).collect::<BTreeSet<_>>().len();
        let breadth = Some(used as f64 * 100.0 / FEATURES.len() as f64);
        let satisfaction = evs.iter().rev().filter(|e| e.kind == "survey" && e.name == "survey_answered").find_map(|e| {
            match (e.props["surveyKind"].as_str()?, e.props["group"].as_str()) {
                (_, Some("promoter" | "happy")) => Some(100.0),
                (_, Some("passive" | "neutral")) => Some(50.0),
                (_, Some(_)) => Some(0.0),
                ("nps", None) => {
                    let s = e.props["score"].as_f64()?;
                    Some(if s >= 9.0 { 100.0 } else if s >= 7.0 { 50.0 } else { 0.0 })
                }
                _ => None,
            }
        });
        let unseen_days = (now - last_seen) as f64 / DAY as f64;
        let values: BTreeMap<&'static str, Option<f64>> = BTreeMap::from([
            ("milestones", milestones),
            ("activeDays7", Some(days(7))),
            ("activeDays30", Some(days(30))),
            ("returnInterval", return_hours),
            ("breadth", breadth),
            ("satisfaction", satisfaction),
            ("lastSeen", Some(unseen_days)),
        ]);
        let onboarding = now - signup < 14 * DAY;
        let weights: &[(&'static str, u64)] = if onboarding {
            &[("milestones", 3), ("activeDays7", 2), ("returnInterval", 1), ("breadth", 1), ("satisfaction", 1), ("lastSeen", 2)]
        } else {
            &[("milestones", 1), ("activeDays30", 3), ("breadth", 2), ("satisfaction", 2), ("lastSeen", 2)]
        };
        let points: BTreeMap<&'static str, Option<u64>> = weights.iter().map(|(m, _)| (*m, values[m].map(|v| tier_points(m, v)))).collect();
        let score = rounded_mean(&weights.iter().filter_map(|(m, w)| points[m].map(|p| (*w, p))).collect::<Vec<_>>());
        let band = score.map(band_of);
        let age = now - signup;
        let unseen = now - last_seen;
        let activated = value_at.is_some();
        let stage = if unseen >= 30 * DAY {
            "dormant"
        } else if (age >= DAY || activated) && (unseen >= 7 * DAY || band == Some("red")) {
            "at_risk"
        } else if activated && age >= 14 * DAY && days(30) >= 8.0 {
            "adopted"
        } else if activated {
            "activated"
        } else if age < DAY {
            "new"
        } else {
            "onboarding"
        };
        let mut reasons_contain = Vec::new();
        if points["lastSeen"].is_some_and(|p| p < 50) {
            let d = unseen / DAY;
            reasons_contain.push(if d == 1 { "no return in 1 day".to_string() } else { format!("no return in {d} days") });
        }
        if points["milestones"].is_some_and(|p| p < 50) {
            reasons_contain.extend(reasons);
        }
        users.insert(user.to_string(), Expect { score, band, stage, points, reasons_contain, account_milestones: Vec::new() });
    }
    // Accounts: the users' mean score; the most advanced stage any user is in, else at risk if
    // any is, else dormant.
    let mut members: BTreeMap<String, Vec<&Expect>> = BTreeMap::new();
    for (user, (account, _)) in &membership {
        members.entry(account.clone()).or_default().push(&users[user]);
    }
    // Account milestones: the 30th `track` teammate_invited among the account's users (the
    // milestone event of the same name does not count), and the first user to reach the
    // teammate_invited milestone; due after the account's first sign-up.
    let mut account_ms: BTreeMap<String, Vec<AccountMilestone>> = BTreeMap::new();
    let mut who: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (user, (account, _)) in &membership {
        who.entry(account.clone()).or_default().push(user.as_str());
    }
    for (account, list) in &who {
        let evs: Vec<&Ev> = list.iter().flat_map(|u| per_user[u].iter().copied()).collect();
        let signup = list.iter().map(|u| per_user[u].iter().rev().find_map(|e| e.props["signedUpAt"].as_i64()).expect("signup")).min().expect("a user");
        let mut invites: Vec<i64> = evs.iter().filter(|e| e.kind == "track" && e.name == "teammate_invited").map(|e| e.ts).collect();
        invites.sort();
        let value = list.iter().filter_map(|u| per_user[u].iter().filter(|e| e.kind == "milestone" && e.name == "teammate_invited").map(|e| e.ts).min()).min();
        account_ms.insert(account.clone(), vec![
            ("team_of_thirty".into(), invites.get(29).copied(), invites.len().min(30) as u64, Some(signup + 10 * DAY)),
            ("someone_invited".into(), value, u64::from(value.is_some()), Some(signup + 4 * DAY)),
        ]);
    }
    let mut accounts = BTreeMap::new();
    for (account, list) in members {
        let score = rounded_mean(&list.iter().filter_map(|e| e.score.map(|s| (1, s))).collect::<Vec<_>>());
        let stage = ["adopted", "activated", "onboarding", "new", "at_risk", "dormant"].into_iter().find(|s| list.iter().any(|e| e.stage == *s)).expect("a stage");
        let mut points = BTreeMap::new();
        for m in ["milestones", "activeDays7", "activeDays30", "returnInterval", "breadth", "satisfaction", "lastSeen"] {
            let have: Vec<(u64, u64)> = list.iter().filter_map(|e| e.points.get(m).copied().flatten().map(|p| (1, p))).collect();
            if let Some(p) = rounded_mean(&have) {
                points.insert(m, Some(p));
            }
        }
        let ms = account_ms.remove(&account).unwrap_or_default();
        let reasons_contain = ms
            .iter()
            .filter(|(_, reached, _, due)| reached.is_none() && due.is_some_and(|d| d <= now))
            .map(|(id, _, progress, due)| {
                let (title, needed) = if id == "team_of_thirty" { ("30 teammates invited", 30) } else { ("Someone invited a teammate", 1) };
                let late = (now - due.unwrap_or(now)) / DAY;
                let when = if late == 0 { "overdue since today".to_string() } else if late == 1 { "1 day overdue".to_string() } else { format!("{late} days overdue") };
                format!("'{title}' {when} ({progress} of {needed})")
            })
            .collect();
        accounts.insert(account, Expect { score, band: score.map(band_of), stage, points, reasons_contain, account_milestones: ms });
    }
    Oracle { users, accounts }
}

// ---------------------------------------------------------------------------------------------
// The collector under test.

struct Run {
    /// Per compute: the answers of GET /v1/health for users and accounts.
    answers: Vec<(Value, Value)>,
    lifecycle: Value,
    /// Every webhook body received.
    calls: Vec<Value>,
    one_account: Value,
}

async fn receiver() -> (String, Arc<Mutex<Vec<(String, String)>>>) {
    let calls: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let seen = calls.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: axum::http::HeaderMap, body: String| {
            let seen = seen.clone();
            async move {
                let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                seen.lock().expect("lock").push((id, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, calls)
}

async fn call(url: &str, method: reqwest::Method, path: &str) -> Value {
    let r = reqwest::Client::new().request(method, format!("{url}{path}")).bearer_auth("rt_demo").send().await.expect("request");
    assert!(r.status().is_success(), "{path}: {} {}", r.status(), r.text().await.unwrap_or_default());
    r.json().await.expect("json")
}

async fn drive(store: Arc<dyn Store>, events: &[Ev]) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = dir.path().join("plan.json");
    std::fs::write(&plan, PLAN).expect("plan");
    let config = Config { plan_files: vec![("demo".into(), PlanSource::File(plan))], ..Config::default() };
    let mut state = AppState::new(config, store);
    let clock = Arc::new(AtomicI64::new(T0));
    let c = clock.clone();
    state.clock = Arc::new(move || c.load(Ordering::SeqCst));
    let (hook_url, calls) = receiver().await;
    let mut hook = Webhook::new(&hook_url, Vec::new(), Duration::from_secs(3600)).expect("hook");
    hook.allow_private = true;
    hook.retry_base = Duration::from_millis(100);
    let hook = Arc::new(hook);
    state.webhook = Some(hook.clone());
    state.spawn_background(delivery_loop(state.clone(), hook));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(onramp_collector::run(listener, state.clone(), std::future::pending()));

    let mut answers = Vec::new();
    let mut sent = 0;
    for (k, at) in COMPUTES.iter().enumerate() {
        clock.store(*at, Ordering::SeqCst);
        let upto = events.iter().position(|e| e.ts >= *at).unwrap_or(events.len());
        for chunk in events[sent..upto].chunks(200) {
            let r = common::post(&url, common::batch(*at, chunk.iter().map(Ev::json).collect())).await;
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
        }
        sent = upto;
        let done = call(&url, reqwest::Method::POST, "/v1/health/compute").await;
        if k == 1 {
            // Computed again at the same moment (a retry, a second collector): nothing changes.
            let again = call(&url, reqwest::Method::POST, "/v1/health/compute").await;
            assert_eq!(again["transitions"], 0, "{again}");
        }
        assert_eq!(done["computedAt"], json!(at));
        let users = call(&url, reqwest::Method::GET, "/v1/health?kind=user&limit=1000").await;
        let accounts = call(&url, reqwest::Method::GET, "/v1/health?kind=account").await;
        answers.push((users, accounts));
    }
    let lifecycle = call(&url, reqwest::Method::GET, &format!("/v1/lifecycle?kind=user&from={T0}&to={}", T0 + 41 * DAY)).await;
    let one_account = call(&url, reqwest::Method::GET, "/v1/health/account/acme?days=60").await;
    // Deliveries: wait until the outbox is empty.
    for _ in 0..200 {
        if state.store.due_notifications(i64::MAX, 1).await.expect("outbox").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let raw = calls.lock().expect("lock").clone();
    let ids: BTreeSet<&String> = raw.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), raw.len(), "each notification delivered once");
    // The transitions; the simulation's survey answers also send `survey_answered` notifications.
    let calls = raw
        .iter()
        .map(|(_, b)| serde_json::from_str::<Value>(b).expect("json body"))
        .filter(|b| matches!(b["type"].as_str(), Some("health_changed" | "stage_changed")))
        .collect();
    state.begin_shutdown();
    Run { answers, lifecycle, calls, one_account }
}

fn points_of(item: &Value) -> BTreeMap<String, Option<u64>> {
    item["measures"].as_array().expect("measures").iter().map(|m| (m["measure"].as_str().expect("name").to_string(), m["points"].as_u64())).collect()
}

fn check(run: &Run, events: &[Ev]) {
    // (kind, id, what, from, to, at) of every transition the oracle expects.
    let mut expected: BTreeSet<(String, String, String, String, String, i64)> = BTreeSet::new();
    let mut before: Option<Oracle> = None;
    let mut stage_matrix: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (k, at) in COMPUTES.iter().enumerate() {
        let o = oracle(events, *at);
        let (users, accounts) = &run.answers[k];
        for (kind, answer, want) in [("user", users, &o.users), ("account", accounts, &o.accounts)] {
            let items = answer["items"].as_array().expect("items");
            let got: BTreeMap<&str, &Value> = items.iter().map(|i| (i["id"].as_str().expect("id"), i)).collect();
            assert_eq!(got.keys().copied().collect::<Vec<_>>(), want.keys().map(String::as_str).collect::<Vec<_>>(), "{kind}s at compute {k}");
            for (id, e) in want {
                let item = got[id.as_str()];
                let ctx = format!("{kind} {id} at compute {k}: {item}");
                assert_eq!(item["score"].as_u64(), e.score, "score of {ctx}");
                assert_eq!(item["band"].as_str(), e.band, "band of {ctx}");
                assert_eq!(item["stage"].as_str(), Some(e.stage), "stage of {ctx}");
                let want_points: BTreeMap<String, Option<u64>> = e.points.iter().map(|(m, p)| (m.to_string(), *p)).collect();
                assert_eq!(points_of(item), want_points, "points of {ctx}");
                let reasons: Vec<&str> = item["reasons"].as_array().expect("reasons").iter().filter_map(Value::as_str).collect();
                for r in &e.reasons_contain {
                    assert!(reasons.contains(&r.as_str()), "{ctx}: reason {r:?} missing");
                }
                if kind == "account" {
                    let got: Vec<AccountMilestone> = item["accountMilestones"]
                        .as_array()
                        .expect("account milestones")
                        .iter()
                        .map(|m| (m["id"].as_str().expect("id").to_string(), m["reachedAt"].as_i64(), m["progress"].as_u64().expect("progress"), m["dueAt"].as_i64()))
                        .collect();
                    assert_eq!(got, e.account_milestones, "account milestones of {ctx}");
                }
                let missing = item["missing"].as_array().expect("missing").len();
                assert_eq!(missing, e.points.values().filter(|p| p.is_none()).count(), "{ctx}");
                if missing > 0 {
                    assert!(item["note"].as_str().is_some_and(|n| n.contains("re-weighted")), "{ctx}: the re-weighting is said");
                }
                if let Some(prev) = before.as_ref().and_then(|b| if kind == "user" { b.users.get(id) } else { b.accounts.get(id) }) {
                    let band = |b: Option<&str>| b.unwrap_or("none").to_string();
                    if prev.band != e.band {
                        expected.insert((kind.into(), id.clone(), "health_changed".into(), band(prev.band), band(e.band), *at));
                    }
                    if prev.stage != e.stage {
                        expected.insert((kind.into(), id.clone(), "stage_changed".into(), prev.stage.into(), e.stage.into(), *at));
                        if kind == "user" {
                            *stage_matrix.entry((prev.stage.into(), e.stage.into())).or_default() += 1;
                        }
                    }
                }
            }
            // The distribution counts every listed entity.
            let by_band: u64 = answer["bands"].as_object().expect("bands").values().filter_map(Value::as_u64).sum();
            assert_eq!(by_band as usize, want.len());
        }
        before = Some(o);
    }
    assert!(expected.len() >= 10, "the simulation moves people around: {}", expected.len());
    assert!(expected.iter().any(|t| t.0 == "account"), "accounts change too");
    let last = oracle(events, COMPUTES[3]);
    let reached = |id: &str| last.accounts.values().filter(|a| a.account_milestones.iter().any(|m| m.0 == id && m.1.is_some())).count();
    assert!(reached("team_of_thirty") >= 1, "some accounts invited thirty");
    let overdue = COMPUTES.iter().flat_map(|at| oracle(events, *at).accounts.into_values()).filter(|a| !a.reasons_contain.is_empty()).count();
    assert!(overdue >= 1, "some account was overdue on an account milestone, and said so");
    assert!(reached("someone_invited") >= 1);
    let got: Vec<(String, String, String, String, String, i64)> = run
        .calls
        .iter()
        .map(|b| {
            (
                b["kind"].as_str().expect("kind").to_string(),
                b["id"].as_str().expect("id").to_string(),
                b["type"].as_str().expect("type").to_string(),
                b["from"].as_str().expect("from").to_string(),
                b["to"].as_str().expect("to").to_string(),
                b["at"].as_i64().expect("at"),
            )
        })
        .collect();
    let got_set: BTreeSet<_> = got.iter().cloned().collect();
    assert_eq!(got.len(), got_set.len(), "each transition sent once");
    assert_eq!(got_set, expected, "the webhook got exactly the oracle's transitions");
    // Each carries its breakdown: what moved, from what to what.
    for b in &run.calls {
        assert!(b["measures"].as_array().is_some_and(|m| !m.is_empty()), "{b}");
        let moved = b["moved"].as_array().expect("moved");
        if b["kind"] == "user" && b["type"] == "health_changed" {
            assert!(!moved.is_empty(), "a band change has measures that moved: {b}");
            for m in moved {
                assert_ne!(m["from"]["points"], m["to"]["points"], "{b}");
            }
        }
    }
    // The lifecycle matrix over the whole period is the oracle's.
    let mut got_matrix: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (from, row) in run.lifecycle["stageMatrix"].as_object().expect("matrix") {
        for (to, n) in row.as_object().expect("row") {
            got_matrix.insert((from.clone(), to.clone()), n.as_u64().expect("n"));
        }
    }
    assert_eq!(got_matrix, stage_matrix);
    // One account's history: a snapshot per compute day, the latest its current score.
    let history = run.one_account["history"].as_array().expect("history");
    assert_eq!(history.len(), COMPUTES.len());
    let last = oracle(events, COMPUTES[3]);
    assert_eq!(run.one_account["current"]["score"].as_u64(), last.accounts["acme"].score);
    assert!(run.one_account["current"]["members"].as_array().is_some_and(|m| !m.is_empty()));
    assert_eq!(run.one_account["current"]["traits"], json!({"name": "ACME"}));
}

/// What both stores must answer alike (times and ids of notifications aside).
fn comparable(run: &Run) -> Value {
    json!({"answers": run.answers.iter().map(|(u, a)| json!([u["items"], a["items"], u["bands"], u["stages"]])).collect::<Vec<_>>(), "lifecycle": run.lifecycle})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulation_matches_the_oracle_on_sqlite_and_clickhouse() {
    let events = simulate();
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = drive(Arc::new(SqliteStore::open(dir.path().join("health.db")).expect("store")), &events).await;
    check(&sqlite, &events);
    let (_server, ch) = common::clickhouse().await;
    let clickhouse = drive(ch, &events).await;
    check(&clickhouse, &events);
    assert_eq!(comparable(&sqlite), comparable(&clickhouse), "identical answers on both stores");
}

#[tokio::test]
async fn bad_parameters_are_named_and_csv_is_safe() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteStore::open(dir.path().join("h.db")).expect("store"));
    let c = common::serve_with_clock(store, Some(T0 + HOUR)).await;
    let evil = "=HYPERLINK(\"x\")";
    let events = vec![json!({"id": "i1", "type": "identify", "name": "identify", "anonymousId": "a", "userId": evil, "ts": T0, "props": {"signedUpAt": T0}})];
    assert_eq!(common::post(&c.url, common::batch(T0 + HOUR, events)).await.status(), 200);
    for (path, param) in [("/v1/health?band=blue", "band"), ("/v1/health?kind=team", "kind"), ("/v1/health?sort=x", "sort"), ("/v1/lifecycle?from=yesterday", "from"), ("/v1/health/team/x", "kind")] {
        let r = reqwest::Client::new().get(format!("{}{path}", c.url)).bearer_auth("rt_demo").send().await.expect("get");
        assert_eq!(r.status(), 400, "{path}");
        let body: Value = r.json().await.expect("json");
        assert!(body["error"].as_str().is_some_and(|e| e.starts_with(param)), "{path}: {body}");
    }
    let r = reqwest::Client::new().get(format!("{}/v1/health?format=csv", c.url)).bearer_auth("rt_demo").send().await.expect("csv");
    assert_eq!(r.status(), 200);
    let csv = r.text().await.expect("text");
    assert!(csv.starts_with("kind,id,score,band,stage,trend,account,measures,reasons\r\n"), "{csv}");
    assert!(csv.contains("'=HYPERLINK"), "a formula is never a formula: {csv}");
    let r = reqwest::Client::new().get(format!("{}/v1/health", c.url)).send().await.expect("get");
    assert_eq!(r.status(), 401, "the read token is needed");
    let one = common::get(&c.url, &format!("/v1/health/user/{}", "%3DHYPERLINK(%22x%22)")).await;
    assert_eq!(one["current"]["stage"], "new", "an hour after sign-up: {one}");
    let r = reqwest::Client::new().get(format!("{}/v1/health/user/nobody", c.url)).bearer_auth("rt_demo").send().await.expect("get");
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn the_schedule_computes_one_period_after_start_then_every_period() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteStore::open(dir.path().join("s.db")).expect("store"));
    let mut state = AppState::new(Config::default(), store.clone());
    let clock = Arc::new(AtomicI64::new(T0));
    let c = clock.clone();
    state.clock = Arc::new(move || c.load(Ordering::SeqCst));
    let identify = json!({"id": "i1", "type": "identify", "name": "identify", "anonymousId": "a", "userId": "u1", "ts": T0 - HOUR, "props": {"signedUpAt": T0 - HOUR}});
    let event: onramp::core::wire::Event = serde_json::from_value(identify).expect("event");
    store
        .insert(vec![onramp_collector::store::StoredEvent { project: "demo".into(), event, ts: T0 - HOUR, sent_at: T0, received_at: T0 }])
        .await
        .expect("insert");
    state.spawn_background(onramp_collector::health::schedule_loop(state.clone()));
    let computed = |store: Arc<SqliteStore>| async move { store.health_records("demo", 0, None).await.expect("records").into_iter().map(|r| r.computed_at).collect::<BTreeSet<_>>() };
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(computed(store.clone()).await.is_empty(), "nothing at start");
    clock.store(T0 + HOUR, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(computed(store.clone()).await, BTreeSet::from([T0 + HOUR]), "the demo plan's default: hourly");
    clock.store(T0 + HOUR + 30 * 60_000, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(computed(store.clone()).await.len(), 1, "not before the next hour");
    clock.store(T0 + 2 * HOUR, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(computed(store.clone()).await, BTreeSet::from([T0 + 2 * HOUR]), "recomputed; the day's snapshot replaced");
    state.begin_shutdown();
}
