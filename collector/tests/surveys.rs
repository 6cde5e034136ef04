//! Survey analytics (docs/SURVEYS.md) on a seeded simulation, through the real HTTP API, on
//! SQLite and on a real clickhouse-server: every NPS, CSAT and CES figure, response rate,
//! distribution and split `GET /v1/surveys` answers must equal the ground truth computed here
//! from the documented definitions by code that shares nothing with the collector's analytics.
//! The ambiguous cases are in the data: several answers per user (the latest counts), two
//! answers in the same millisecond (the higher score), answers before the period, answers whose
//! `survey_shown` was lost, answers given before identify (the anonymous id links them), a
//! `track` event named like the milestone (never a reach), and every batch sent twice.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{clickhouse, serve_with_clock};
use onramp_collector::store::sqlite::SqliteStore;
use onramp_collector::store::Store;
use serde_json::{json, Value};

const SEED: u64 = 0x5eed_2026_1130;
const USERS: usize = 600;
const H: i64 = 3_600_000;
const D: i64 = 24 * H;
/// 2026-11-30T00:00:00Z (a Monday), the collector's fixed clock.
const NOW: i64 = 1_795_996_800_000;
const PERIOD: i64 = 14 * D;

/// (id, kind, scale top): the surveys of the plan.
const SURVEYS: [(&str, &str, i64); 4] = [("nps", "nps", 10), ("faces", "csat", 3), ("five", "csat", 5), ("ces", "ces", 7)];

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn plan() -> String {
    let surveys: Vec<Value> = SURVEYS
        .iter()
        .map(|(id, kind, top)| {
            let mut s = json!({"id": id, "kind": kind, "question": "Q?", "when": {"path": "/*"}});
            if *top == 5 {
                s["scale"] = json!("1-5");
            }
            s
        })
        .collect();
    json!({"version": "sim", "milestones": [
        {"id": "started", "title": "Start", "condition": {"event": "start"}},
        {"id": "done", "title": "Done", "value": true, "condition": {"event": "finish"}}],
        "surveys": surveys})
    .to_string()
}

/// What the simulation knows about one user.
struct Sim {
    id: String,
    signup: i64,
    plan: &'static str,
    /// The `done` milestone event's time.
    done: Option<i64>,
    /// (survey, name, ts, score, text).
    survey_events: Vec<(&'static str, &'static str, i64, Option<i64>, Option<String>)>,
}

fn simulate() -> (Vec<Sim>, Vec<Value>) {
    let mut rng = Rng(SEED);
    let (mut sims, mut events) = (Vec::new(), Vec::new());
    let mut n = 0u64;
    let mut id = || {
        n += 1;
        format!("0190d4c2-0000-7000-8000-{n:012x}")
    };
    for i in 0..USERS {
        let user = format!("user-{i:04}");
        let anon = format!("anon-{i:04}");
        let signup = NOW - 25 * D + rng.below(24 * D as u64) as i64;
        let plan = if rng.chance(40) { "pro" } else { "free" };
        // Identified a little after sign-up: survey events before that are anonymous.
        let identified_at = signup + rng.below(2 * H as u64) as i64;
        let ev = |id: String, kind: &str, name: &str, ts: i64, props: Value| {
            let mut e = json!({"id": id, "type": kind, "name": name, "anonymousId": anon, "ts": ts, "props": props});
            if ts >= identified_at {
                e["userId"] = json!(user);
            }
            e
        };
        events.push(ev(id(), "identify", "identify", identified_at, json!({"signedUpAt": signup, "plan": plan})));
        let done = rng.chance(50).then(|| signup + rng.below(5 * D as u64) as i64 + 1);
        if let Some(t) = done {
            events.push(ev(id(), "milestone", "done", t.min(NOW - 1), json!({})));
        } else if rng.chance(30) {
            // The milestone's id as a product event: never a reach.
            events.push(ev(id(), "track", "done", signup + H, json!({})));
        }
        let mut sim = Sim { id: user.clone(), signup, plan, done: done.map(|t| t.min(NOW - 1)), survey_events: Vec::new() };
        for (survey, kind, top) in SURVEYS {
            if !rng.chance(70) {
                continue;
            }
            let low = if kind == "nps" { 0 } else { 1 };
            let mut t = signup + rng.below(3 * D as u64) as i64;
            let lost_shown = rng.chance(5);
            let mut push = |name: &'static str, ts: i64, score: Option<i64>, text: Option<String>, sim: &mut Sim, events: &mut Vec<Value>| {
                let ts = ts.min(NOW - 1);
                let mut props = json!({"surveyId": survey, "surveyKind": kind});
                if let Some(s) = score {
                    props["score"] = json!(s);
                }
                if let Some(t) = &text {
                    props["text"] = json!(t);
                }
                events.push(ev(id(), "survey", name, ts, props));
                sim.survey_events.push((survey, name, ts, score, text));
            };
            if !lost_shown {
                push("survey_shown", t, None, None, &mut sim, &mut events);
            }
            match rng.below(10) {
                0 => push("survey_dismissed", t + 1000, None, None, &mut sim, &mut events),
                1 => push("survey_snoozed", t + 1000, None, None, &mut sim, &mut events),
                _ => {
                    for _ in 0..1 + rng.below(3) {
                        t += rng.below(6 * D as u64) as i64;
                        let score = low + rng.below((top - low + 1) as u64) as i64;
                        let text = rng.chance(40).then(|| format!("answer {i} {survey} \"{score}\", <i>plain</i>"));
                        push("survey_answered", t, Some(score), text, &mut sim, &mut events);
                        if rng.chance(10) {
                            // The same millisecond again, another score: the higher one counts.
                            let other = low + rng.below((top - low + 1) as u64) as i64;
                            push("survey_answered", t, Some(other), None, &mut sim, &mut events);
                        }
                    }
                }
            }
        }
        sims.push(sim);
    }
    (sims, events)
}

/// The documented figures of one group of users for one survey.
fn oracle_summary(kind: &str, top: i64, members: &[(&Sim, Vec<&(&'static str, &'static str, i64, Option<i64>, Option<String>)>)]) -> Value {
    let (mut shown, mut answered, mut respondents, mut scored) = (0, 0, 0, 0);
    let (mut good, mut mid, mut bad, mut sum) = (0, 0, 0, 0i64);
    let mut dist: BTreeMap<i64, usize> = BTreeMap::new();
    for (_, evs) in members {
        let was_shown = evs.iter().any(|e| e.1 == "survey_shown");
        let answers: Vec<_> = evs.iter().filter(|e| e.1 == "survey_answered").collect();
        shown += was_shown as usize;
        if answers.is_empty() {
            continue;
        }
        answered += was_shown as usize;
        respondents += 1;
        // Latest by time; the same time: the higher score.
        let latest = answers.iter().max_by_key(|e| (e.2, e.3)).and_then(|e| e.3);
        let Some(score) = latest else { continue };
        scored += 1;
        sum += score;
        *dist.entry(score).or_default() += 1;
        let (g, m) = match (kind, top) {
            ("nps", _) => (score >= 9, score >= 7),
            ("csat", 3) => (score == 3, score == 2),
            ("csat", _) => (score >= 4, score == 3),
            _ => (false, false),
        };
        if kind != "ces" {
            if g {
                good += 1
            } else if m {
                mid += 1
            } else {
                bad += 1
            }
        }
    }
    let pct = |n: i64| 100.0 * n as f64 / scored as f64;
    let score = match kind {
        _ if scored == 0 => Value::Null,
        "nps" => json!(pct(good) - pct(bad)),
        "csat" => json!(pct(good)),
        _ => json!(sum as f64 / scored as f64),
    };
    json!({
        "shown": shown, "answered": answered, "respondents": respondents, "scored": scored,
        "responseRate": if shown > 0 { json!(answered as f64 / shown as f64) } else { Value::Null },
        "groups": [good, mid, bad], "score": score,
        "distribution": dist.iter().map(|(s, n)| json!({"score": s, "users": n})).collect::<Vec<_>>(),
    })
}

/// The collector's summary, restricted to the fields the oracle computes.
fn picked(summary: &Value) -> Value {
    let mut out = json!({});
    for k in ["shown", "answered", "respondents", "scored", "responseRate", "groups", "score", "distribution"] {
        out[k] = summary[k].clone();
    }
    out
}

fn close(a: &Value, b: &Value, what: &str) {
    // Floats computed in a different order may differ in the last bits.
    let (mut a, mut b) = (a.clone(), b.clone());
    for v in [&mut a, &mut b] {
        for k in ["score", "responseRate"] {
            if let Some(x) = v[k].as_f64() {
                v[k] = json!((x * 1e9).round() / 1e9);
            }
        }
    }
    assert_eq!(a, b, "{what}");
}

/// Monday 00:00 UTC of the week of `ts`, by plain day arithmetic (1970-01-01 was a Thursday).
fn monday(ts: i64) -> String {
    let day = ts.div_euclid(D);
    let monday = day - (day + 3).rem_euclid(7);
    let secs = monday * 86_400;
    let out = std::process::Command::new("date").args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%d"]).output().expect("date");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

async fn check(store: Arc<dyn Store>) {
    let c = serve_with_clock(store, Some(NOW)).await;
    let http = reqwest::Client::new();
    let r = http.put(format!("{}/v1/plan", c.url)).bearer_auth("et_demo").body(plan()).send().await.expect("put");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let (sims, events) = simulate();
    for _ in 0..2 {
        for chunk in events.chunks(400) {
            let body = json!({"writeKey": "wk_demo", "sentAt": NOW, "events": chunk}).to_string();
            let r = http.post(format!("{}/v1/batch", c.url)).body(body).send().await.expect("post");
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
        }
    }
    let got: Value = http
        .get(format!("{}/v1/surveys?split=plan&period=14d", c.url))
        .bearer_auth("rt_demo")
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(got["milestone"], json!("done"), "split by the value milestone by default");
    let from = NOW - PERIOD;
    for (survey, kind, top) in SURVEYS {
        let row = got["surveys"].as_array().and_then(|rows| rows.iter().find(|r| r["surveyId"] == survey)).unwrap_or_else(|| panic!("{survey} in {got}"));
        assert_eq!(row["kind"], json!(kind));
        let members: Vec<(&Sim, Vec<_>)> = sims
            .iter()
            .map(|s| (s, s.survey_events.iter().filter(|e| e.0 == survey && e.2 >= from).collect::<Vec<_>>()))
            .filter(|(_, evs)| !evs.is_empty())
            .collect();
        close(&picked(&row["all"]), &oracle_summary(kind, top, &members), survey);
        // Reached the milestone by the user's latest survey event in the period, or not.
        let reached = |(s, evs): &&(&Sim, Vec<&(&str, &str, i64, Option<i64>, Option<String>)>)| {
            let last = evs.iter().map(|e| e.2).max().unwrap_or(0);
            s.done.is_some_and(|t| t <= last)
        };
        let (yes, no): (Vec<_>, Vec<_>) = members.iter().map(|(s, e)| (*s, e.clone())).partition(|m| reached(&m));
        close(&picked(&row["milestoneReached"]), &oracle_summary(kind, top, &yes), &format!("{survey} reached"));
        close(&picked(&row["milestoneNotReached"]), &oracle_summary(kind, top, &no), &format!("{survey} not reached"));
        for plan in ["free", "pro"] {
            let group: Vec<_> = members.iter().filter(|(s, _)| s.plan == plan).map(|(s, e)| (*s, e.clone())).collect();
            let split = row["byTrait"].as_array().and_then(|v| v.iter().find(|g| g["value"] == plan)).expect("trait group");
            close(&picked(&split["summary"]), &oracle_summary(kind, top, &group), &format!("{survey} plan={plan}"));
        }
        let mut weeks: BTreeMap<String, Vec<(&Sim, Vec<_>)>> = BTreeMap::new();
        for (s, e) in &members {
            weeks.entry(monday(s.signup)).or_default().push((*s, e.clone()));
        }
        let cohorts = row["cohorts"].as_array().expect("cohorts");
        assert_eq!(cohorts.iter().map(|c| c["week"].as_str().unwrap_or("").to_owned()).collect::<Vec<_>>(), weeks.keys().cloned().collect::<Vec<_>>());
        for c in cohorts {
            let week = c["week"].as_str().unwrap_or("");
            close(&picked(&c["summary"]), &oracle_summary(kind, top, &weeks[week]), &format!("{survey} cohort {week}"));
        }
        // Texts: every answer with text in the period, newest first (ties by user).
        let mut texts: Vec<(i64, &str, &str)> = members
            .iter()
            .flat_map(|(s, evs)| evs.iter().filter_map(|e| Some((e.2, s.id.as_str(), e.4.as_deref()?))).collect::<Vec<_>>())
            .collect();
        texts.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        assert_eq!(row["answersTotal"], json!(texts.len()), "{survey} texts");
        let shown: Vec<(i64, &str, &str)> = row["answers"]
            .as_array()
            .expect("answers")
            .iter()
            .map(|a| (a["at"].as_i64().unwrap_or(0), a["user"].as_str().unwrap_or(""), a["text"].as_str().unwrap_or("")))
            .collect();
        assert_eq!(shown, texts.into_iter().take(200).collect::<Vec<_>>(), "{survey} answers newest first, text as sent");
    }
    // The CSV has every answer with text, formula-safe, one line each plus the header.
    let csv = http.get(format!("{}/v1/surveys?format=csv&period=14d&token=rt_demo", c.url)).send().await.expect("csv").text().await.expect("text");
    let expected_rows: usize = sims.iter().flat_map(|s| &s.survey_events).filter(|e| e.2 >= from && e.4.is_some()).count();
    assert_eq!(csv.matches("\r\n").count(), expected_rows + 1);
    assert!(csv.contains("\"\"") && csv.contains("<i>plain</i>"), "quotes doubled, markup kept as text");
    // The same part in /v1/report.
    let report: Value = http.get(format!("{}/v1/report?split=plan&period=14d", c.url)).bearer_auth("rt_demo").send().await.expect("report").json().await.expect("json");
    assert_eq!(report["surveys"], got);
    // Bad parameters name themselves.
    let r = http.get(format!("{}/v1/surveys?period=soon", c.url)).bearer_auth("rt_demo").send().await.expect("get");
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap_or_default().contains("period"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survey_figures_match_the_ground_truth_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    check(Arc::new(SqliteStore::open(&dir.path().join("events.db")).expect("store"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survey_figures_match_the_ground_truth_on_clickhouse() {
    let (_server, store) = clickhouse().await;
    check(store).await;
}

#[test]
fn the_oracle_knows_its_weeks() {
    // 2026-11-30 is a Monday; 2026-11-29 a Sunday.
    assert_eq!(monday(NOW + 5 * H), "2026-11-30");
    assert_eq!(monday(NOW - H), "2026-11-23");
}
