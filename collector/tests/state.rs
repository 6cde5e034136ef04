//! `GET /v1/state` over a real socket, on SQLite and on a real clickhouse-server: one user's
//! milestone state across two devices, as docs/IDENTITY.md ("State served by the collector")
//! defines it, with the ambiguous cases: a milestone reached on both devices (the earliest
//! wins), a resent batch, a late conflicting identify of a device already linked (event time
//! decides, not arrival), a milestone id that is also a product event's name, ids the plan
//! does not name, and another user's events. Identity verification guards the read.

mod common;

use std::sync::Arc;

use common::{clickhouse, serve_with_clock};
use onramp_collector::config::{IdentityEnforcement, PlanSource};
use onramp_collector::store::sqlite::SqliteStore;
use onramp_collector::store::Store;
use onramp_collector::{AppState, Config, Project};
use serde_json::{json, Value};

const NOW: i64 = 1_800_000_000_000;
const T0: i64 = NOW - 10 * DAY;
const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

fn ev(id: &str, kind: &str, name: &str, anon: &str, user: Option<&str>, ts: i64, props: Value) -> Value {
    let mut e = json!({"id": id, "type": kind, "name": name, "anonymousId": anon, "ts": ts, "props": props});
    if let Some(u) = user {
        e["userId"] = json!(u);
    }
    e
}

/// The demo plan (pkg-config/plans/trackly.json): milestones `signed_up`, `project_created`
/// (after `signed_up`), …; tips `welcome` (default 24 h snooze), `files_tour` (a tour), ….
fn laptop() -> Vec<Value> {
    vec![
        // Anonymous before sign-up: the user's, once the device is linked.
        ev("l1", "track", "signed_up", "laptop", None, T0, json!({})),
        ev("l2", "milestone", "signed_up", "laptop", None, T0 + MIN, json!({})),
        ev("l3", "identify", "identify", "laptop", Some("ann"), T0 + 2 * MIN, json!({"signedUpAt": T0 - HOUR})),
        ev("l4", "tip", "tip_shown", "laptop", Some("ann"), T0 + 3 * MIN, json!({"tipId": "welcome"})),
        ev("l5", "tip", "tip_dismissed", "laptop", Some("ann"), T0 + 4 * MIN, json!({"tipId": "welcome"})),
        ev("l6", "tip", "tip_snoozed", "laptop", Some("ann"), T0 + 5 * MIN, json!({"tipId": "create_project"})),
        ev("l7", "tip", "tour_step_completed", "laptop", Some("ann"), T0 + 6 * MIN, json!({"tipId": "files_tour", "step": 0})),
        // A tip id and a milestone the plan does not name: not in the state.
        ev("l8", "tip", "tip_dismissed", "laptop", Some("ann"), T0 + 7 * MIN, json!({"tipId": "gone"})),
        ev("l9", "milestone", "retired_milestone", "laptop", Some("ann"), T0 + 8 * MIN, json!({})),
    ]
}

fn phone() -> Vec<Value> {
    vec![
        // The second session (more than 30 minutes after the laptop's last event), on the phone.
        ev("p1", "track", "project_created", "phone", None, T0 + DAY, json!({})),
        ev("p2", "identify", "identify", "phone", Some("ann"), T0 + DAY + MIN, json!({})),
        // Reached again on the phone, later: the laptop's time stays.
        ev("p3", "milestone", "signed_up", "phone", Some("ann"), T0 + DAY + 2 * MIN, json!({})),
        ev("p4", "milestone", "project_created", "phone", Some("ann"), T0 + DAY + 3 * MIN, json!({})),
        ev("p5", "metric", "first_session_length", "phone", Some("ann"), T0 + DAY + 3 * MIN, json!({"valueMs": 8 * MIN})),
        ev("p6", "tip", "tour_step_completed", "phone", Some("ann"), T0 + DAY + 4 * MIN, json!({"tipId": "files_tour", "step": 2})),
    ]
}

fn others() -> Vec<Value> {
    vec![
        // Bob on his own device reaches everything: none of it is Ann's.
        ev("b1", "milestone", "file_uploaded", "bobs", Some("bob"), T0 - DAY, json!({})),
        ev("b2", "tip", "tip_dismissed", "bobs", Some("bob"), T0 - DAY, json!({"tipId": "invite_teammate"})),
        // A late identify of Ann's phone as Bob, dated after the phone's first link: it stays Ann's.
        ev("b3", "identify", "identify", "phone", Some("bob"), T0 + 2 * DAY, json!({})),
    ]
}

async fn post(url: &str, key: &str, events: Vec<Value>) {
    let body = json!({"writeKey": key, "sentAt": NOW, "events": events}).to_string();
    let r = reqwest::Client::new().post(format!("{url}/v1/batch")).body(body).send().await.expect("post");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
}

async fn state(url: &str, query: &str) -> (u16, Value, reqwest::header::HeaderMap) {
    let r = reqwest::Client::new()
        .get(format!("{url}/v1/state?{query}"))
        .header("origin", "http://localhost:3000")
        .send()
        .await
        .expect("get");
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    let text = r.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)), headers)
}

/// What docs/IDENTITY.md says Ann's state is, figure by figure from the events above.
fn expected_ann() -> Value {
    json!({
        // Earliest `milestone` event per plan milestone over both devices (the laptop's
        // anonymous one counts: the laptop is linked to Ann).
        "reached": {"signed_up": T0 + MIN, "project_created": T0 + DAY + 3 * MIN},
        "done": {"first_session_length": T0 + DAY + 3 * MIN},
        "signup": T0 - HOUR,
        "firstSeen": T0,
        // Sessions from event times: the laptop's (T0 … T0+8min), then the phone's.
        "firstStart": T0, "firstEnd": T0 + 8 * MIN, "secondStart": T0 + DAY,
        "lastActivity": T0 + DAY + 4 * MIN, "lastTs": T0 + DAY + 4 * MIN,
        "session": {"start": T0 + DAY, "last": T0 + DAY + 4 * MIN},
        "tips": {
            "welcome": {"dismissed": T0 + 4 * MIN, "last": T0 + 3 * MIN, "snoozedUntil": null, "step": 0},
            "create_project": {"dismissed": null, "last": null, "snoozedUntil": T0 + 5 * MIN + DAY, "step": 0},
            "files_tour": {"dismissed": null, "last": null, "snoozedUntil": null, "step": 3},
        },
    })
}

/// The parts of the answer the docs define (the rest is the engine's bookkeeping, empty here),
/// from the persisted state's version 2 (`core::persisted`: nulls left out, a tour at its first
/// step has no `tourStep`), under short names.
fn defined(doc: &Value) -> Value {
    let tips: serde_json::Map<String, Value> = doc["tips"]
        .as_object()
        .expect("tips")
        .iter()
        .map(|(id, t)| (id.clone(), json!({"dismissed": t["dismissed"], "last": t["lastShown"], "snoozedUntil": t["snoozedUntil"], "step": t.get("tourStep").cloned().unwrap_or(json!(0))})))
        .collect();
    json!({
        "reached": doc["reached"], "done": doc["done"], "signup": doc["signup"], "firstSeen": doc["firstSeen"],
        "firstStart": doc["firstStart"], "firstEnd": doc["firstEnd"], "secondStart": doc["secondStart"],
        "lastActivity": doc["lastActivity"], "lastTs": doc["lastTs"],
        "session": {"start": doc["session"]["start"], "last": doc["session"]["last"]},
        "tips": tips,
    })
}

async fn check_two_devices(store: Arc<dyn Store>) {
    let c = serve_with_clock(store, Some(NOW)).await;
    // The phone's batch first, the laptop's later, Bob's in between; then everything resent.
    post(&c.url, "wk_demo", phone()).await;
    post(&c.url, "wk_demo", others()).await;
    post(&c.url, "wk_demo", laptop()).await;
    let mut all = phone();
    all.extend(others());
    all.extend(laptop());
    post(&c.url, "wk_demo", all).await;

    let (status, doc, headers) = state(&c.url, "writeKey=wk_demo&user=ann").await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(defined(&doc), expected_ann());
    assert!(doc.get("counts").is_none_or(|c| c == &json!({})), "no counts (the docs say why): {}", doc["counts"]);
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["access-control-allow-origin"], "http://localhost:3000");

    // Bob: his own device only (the phone's late identify links nothing).
    let (_, bob, _) = state(&c.url, "writeKey=wk_demo&user=bob").await;
    assert_eq!(bob["reached"], json!({"file_uploaded": T0 - DAY}));
    assert_eq!(bob["tips"]["invite_teammate"]["dismissed"], json!(T0 - DAY));
    // His late identify on the phone is his own event; the phone's anonymous events stay Ann's.
    assert_eq!((&bob["firstEnd"], &bob["secondStart"]), (&json!(T0 - DAY), &json!(T0 + 2 * DAY)), "{bob}");

    // A user with no events: an empty state, not an error.
    let (status, nobody, _) = state(&c.url, "writeKey=wk_demo&user=nobody").await;
    assert_eq!((status, &nobody["firstSeen"]), (200, &Value::Null));
    assert!(nobody.get("reached").is_none_or(|r| r == &json!({})), "nothing reached: {nobody}");

    // Bad requests name the field.
    let (status, msg, _) = state(&c.url, "writeKey=wk_demo").await;
    assert_eq!(status, 400);
    assert!(msg.to_string().contains("user"), "{msg}");
    let (status, _, _) = state(&c.url, "writeKey=wk_nope&user=ann").await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_users_state_across_devices_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteStore::open(&dir.path().join("events.db")).expect("store"));
    check_two_devices(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_users_state_across_devices_on_clickhouse() {
    let (_server, store) = clickhouse().await;
    check_two_devices(store).await;
}

const SECRET: &str = "sk_state_9c1";

fn hash(user: &str) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(user.as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// With identity verification the read needs the user's valid hash, as ingest does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_projects_need_the_users_hash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteStore::open(&dir.path().join("events.db")).expect("store"));
    let mut config = Config::default();
    config.projects = ["strict", "rollout"]
        .iter()
        .map(|id| Project {
            identity_secret: Some(SECRET.into()),
            identity_enforcement: if *id == "strict" { IdentityEnforcement::Reject } else { IdentityEnforcement::Off },
            ..Project::new(id, &format!("wk_{id}"), &format!("rt_{id}"), vec!["*".into()])
        })
        .collect();
    config.plan_files = vec![("strict".into(), PlanSource::Demo), ("rollout".into(), PlanSource::Demo)];
    let mut app = AppState::new(config, store);
    app.clock = Arc::new(|| NOW);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(onramp_collector::run(listener, app, std::future::pending()));

    let mut reached = ev("s1", "milestone", "signed_up", "dev", Some("ann"), T0, json!({}));
    reached["userHash"] = json!(hash("ann"));
    post(&url, "wk_strict", vec![reached.clone()]).await;
    post(&url, "wk_rollout", vec![reached]).await;

    let good = hash("ann");
    let (status, doc, _) = state(&url, &format!("writeKey=wk_strict&user=ann&userHash={good}")).await;
    assert_eq!((status, &doc["reached"]), (200, &json!({"signed_up": T0})));
    for (query, why) in [
        ("writeKey=wk_strict&user=ann".to_string(), "is missing"),
        (format!("writeKey=wk_strict&user=ann&userHash={}", hash("bob")), "does not match"),
        (format!("writeKey=wk_strict&user=bob&userHash={good}"), "does not match"),
    ] {
        let (status, msg, _) = state(&url, &query).await;
        assert_eq!(status, 400, "{query}");
        let msg = msg.to_string();
        assert!(msg.contains("userHash") && msg.contains(why), "{query}: {msg}");
    }
    // Rolling out (`off`): no hash is accepted, a given one must still be right.
    let (status, doc, _) = state(&url, "writeKey=wk_rollout&user=ann").await;
    assert_eq!((status, &doc["reached"]), (200, &json!({"signed_up": T0})));
    let (status, _, _) = state(&url, &format!("writeKey=wk_rollout&user=ann&userHash={}", hash("bob"))).await;
    assert_eq!(status, 400);
}

mod permutations {
    //! The property of issue 19: any permutation and duplication of users' batches yields the
    //! same identity links, states and reports, on SQLite and on ClickHouse, as the batches
    //! posted once in order. The history (common::history: anonymous visits, identify, second
    //! devices, resends, ties, skewed clocks) gets shared computers added: a device identified
    //! as one user, later as another (an older SDK that kept the anonymous id), each identify
    //! in its own batch, so a permutation delivers the later user's first.

    use super::common::history::{history, HOUR, NOW, STEPS};
    use super::common::{self, post, serve_with_clock, Collector};
    use onramp_collector::store::clickhouse::ClickHouseStore;
    use onramp_collector::store::sqlite::SqliteStore;
    use onramp_collector::store::Store;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestCaseError, TestRunner};
    use serde_json::json;
    use std::sync::Arc;

    const USERS: usize = 10;

    fn batches() -> Vec<String> {
        let mut out = history(0..USERS, 19);
        for u in 0..USERS / 2 {
            let (a, b, device) = (format!("user-{:04}", 2 * u), format!("user-{:04}", 2 * u + 1), format!("shared-{u}"));
            let at = NOW - 3 * 24 * HOUR + u as i64 * HOUR;
            let one = |id: String, kind: &str, name: &str, user: Option<&str>, ts: i64| {
                let mut e = json!({"id": id, "type": kind, "name": name, "anonymousId": device, "ts": ts, "props": {}});
                if let Some(user) = user {
                    e["userId"] = json!(user);
                }
                json!({"writeKey": "wk_demo", "sentAt": NOW, "events": [e]}).to_string()
            };
            out.push(one(format!("s{u}-1"), "track", "project_created", None, at));
            out.push(one(format!("s{u}-2"), "identify", "identify", Some(&a), at + 1000));
            out.push(one(format!("s{u}-3"), "milestone", "signed_up", Some(&a), at + 2000));
            out.push(one(format!("s{u}-4"), "identify", "identify", Some(&b), at + HOUR));
            out.push(one(format!("s{u}-5"), "milestone", "teammate_invited", Some(&b), at + HOUR + 1000));
        }
        out
    }

    fn users() -> Vec<String> {
        (0..USERS).map(|u| format!("user-{u:04}")).chain((0..USERS / 2).map(|u| format!("shared-{u}"))).collect()
    }

    /// Everything a permutation must not change: each user's links, state, and the reports.
    async fn answers(c: &Collector, store: &dyn Store) -> Result<Vec<String>, TestCaseError> {
        let mut out = Vec::new();
        for user in users() {
            let mut links = store.user_data("demo", &user).await.map_err(|e| TestCaseError::fail(e.to_string()))?.identities;
            links.sort();
            out.push(format!("{user} links {links:?}"));
            let r = reqwest::get(format!("{}/v1/state?writeKey=wk_demo&user={user}", c.url)).await.expect("state");
            prop_assert_eq!(r.status().as_u16(), 200);
            out.push(format!("{user} state {}", r.text().await.expect("body")));
        }
        let steps = STEPS.join(",");
        for path in [format!("/v1/funnel?steps={steps}&users=true"), format!("/v1/ttv?steps={steps}"), "/v1/metrics".into(), "/v1/tips".into()] {
            let r = reqwest::Client::new().get(format!("{}{path}", c.url)).bearer_auth("rt_demo").send().await.expect("get");
            prop_assert_eq!(r.status().as_u16(), 200);
            out.push(format!("{path} {}", r.text().await.expect("body")));
        }
        Ok(out)
    }

    /// `bodies` shuffled by `seed`, about a third of them sent twice (a copy later on).
    fn permuted(bodies: &[String], seed: u64) -> Vec<String> {
        let mut state = seed | 1;
        let mut below = |n: usize| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as usize % n
        };
        let mut out: Vec<String> = bodies.to_vec();
        for body in bodies {
            if below(3) == 0 {
                out.push(body.clone());
            }
        }
        for i in (1..out.len()).rev() {
            out.swap(i, below(i + 1));
        }
        out
    }

    async fn post_all(c: &Collector, bodies: &[String]) -> Result<(), TestCaseError> {
        for body in bodies {
            prop_assert_eq!(post(&c.url, body.clone()).await.status().as_u16(), 200);
        }
        Ok(())
    }

    async fn baseline() -> Vec<String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(SqliteStore::open(dir.path().join("in-order.db")).expect("sqlite"));
        let c = serve_with_clock(store.clone(), Some(NOW)).await;
        post_all(&c, &batches()).await.expect("post");
        let answers = answers(&c, store.as_ref()).await.expect("answers");
        // Not a vacuous property: the shared computers link to their first user only.
        assert!(answers.iter().any(|a| a.starts_with("user-0000 links") && a.contains("shared-0")), "{answers:?}");
        assert!(!answers.iter().any(|a| a.starts_with("user-0001 links") && a.contains("shared-0")), "{answers:?}");
        answers
    }

    async fn case(seed: u64, expected: &[String], clickhouse: Option<String>) -> Result<(), TestCaseError> {
        let bodies = permuted(&batches(), seed);
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, c): (Arc<dyn Store>, _) = match clickhouse {
            Some(url) => {
                let store: Arc<dyn Store> = Arc::new(ClickHouseStore::open(&url).await.expect("open ClickHouse"));
                (store.clone(), serve_with_clock(store, Some(NOW)).await)
            }
            None => {
                let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("p.db")).expect("sqlite"));
                (store.clone(), serve_with_clock(store, Some(NOW)).await)
            }
        };
        post_all(&c, &bodies).await?;
        let got = answers(&c, store.as_ref()).await?;
        prop_assert_eq!(got.len(), expected.len());
        for (g, e) in got.iter().zip(expected) {
            prop_assert_eq!(g, e);
        }
        Ok(())
    }

    fn runner(cases: u32) -> TestRunner {
        TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn any_permutation_and_duplication_gives_the_same_links_states_and_reports_on_sqlite() {
        let expected = baseline().await;
        let handle = tokio::runtime::Handle::current();
        let result = runner(8).run(&any::<u64>(), |seed| tokio::task::block_in_place(|| handle.block_on(case(seed, &expected, None))));
        if let Err(e) = result {
            panic!("{e}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn any_permutation_and_duplication_gives_the_same_links_states_and_reports_on_clickhouse() {
        let expected = baseline().await;
        let (server, _) = common::clickhouse().await;
        // Without background merges, duplicated rows stay apart: reads must fold them.
        server.query("SYSTEM STOP MERGES").expect("stop merges");
        let handle = tokio::runtime::Handle::current();
        let cases = std::sync::atomic::AtomicUsize::new(0);
        let result = runner(3).run(&any::<u64>(), |seed| {
            let n = cases.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let url = server.store_url(&format!("perm{n}"));
            tokio::task::block_in_place(|| handle.block_on(case(seed, &expected, Some(url))))
        });
        if let Err(e) = result {
            panic!("{e}");
        }
    }
}

/// The demo plan with three surveys: the ledger serves what each device asked.
fn plan_with_surveys() -> String {
    let mut plan: Value = serde_json::from_str(include_str!("../../pkg-config/plans/trackly.json")).expect("plan");
    plan["surveys"] = json!([
        {"id": "nps", "kind": "nps", "question": "Recommend us?", "when": {"afterSignup": "14d"}},
        {"id": "csat", "kind": "csat", "question": "How was it?", "when": {"milestone": "signed_up"}, "askLater": "3d"},
        {"id": "ces", "kind": "ces", "question": "Easy?", "when": {"event": "export", "where": {"format": "csv"}}},
    ]);
    plan.to_string()
}

/// The survey ledger and the shared caps in `GET /v1/state` (docs/SURVEYS.md): what a visitor
/// was asked before identifying is the user's; another device's showings count for `maxShows`,
/// the session's tip caps and the fatigue budget.
async fn check_ledger(store: Arc<dyn Store>) {
    let c = serve_with_clock(store, Some(NOW)).await;
    let r = reqwest::Client::new().put(format!("{}/v1/plan", c.url)).bearer_auth("et_demo").body(plan_with_surveys()).send().await.expect("put");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let s = |id: &str| json!({"surveyId": id});
    post(
        &c.url,
        "wk_demo",
        vec![
            // Anonymous on the laptop: dismissed the NPS survey, then signed up.
            ev("s1", "survey", "survey_shown", "laptop", None, T0, s("nps")),
            ev("s2", "survey", "survey_dismissed", "laptop", None, T0 + MIN, s("nps")),
            ev("s3", "identify", "identify", "laptop", Some("cy"), T0 + 2 * MIN, json!({})),
            ev("s4", "tip", "tip_shown", "laptop", Some("cy"), T0 + 3 * MIN, json!({"tipId": "welcome"})),
            ev("s5", "track", "export", "laptop", Some("cy"), T0 + 4 * MIN, json!({"format": "pdf"})),
            // The next day on the phone: one session with a tip, a survey snoozed and a prompt.
            ev("s6", "identify", "identify", "phone", Some("cy"), T0 + DAY, json!({})),
            ev("s7", "tip", "tip_shown", "phone", Some("cy"), T0 + DAY + MIN, json!({"tipId": "welcome"})),
            ev("s8", "survey", "survey_shown", "phone", Some("cy"), T0 + DAY + 2 * MIN, s("csat")),
            ev("s9", "survey", "survey_snoozed", "phone", Some("cy"), T0 + DAY + 3 * MIN, s("csat")),
            ev("s10", "prompt", "prompt_shown", "phone", Some("cy"), T0 + DAY + 4 * MIN, json!({"promptId": "upgrade"})),
            ev("s11", "track", "export", "phone", Some("cy"), T0 + DAY + 5 * MIN, json!({"format": "csv"})),
            ev("s12", "track", "export", "phone", Some("cy"), T0 + DAY + 6 * MIN, json!({"format": "csv"})),
            // A survey the plan does not name: not in the ledger.
            ev("s13", "survey", "survey_answered", "phone", Some("cy"), T0 + DAY + 7 * MIN, json!({"surveyId": "gone", "score": 3})),
        ],
    )
    .await;
    let (status, doc, _) = state(&c.url, "writeKey=wk_demo&user=cy").await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(
        doc["surveys"],
        json!({
            "nps": {"lastShown": T0, "dismissed": T0 + MIN},
            "csat": {"lastShown": T0 + DAY + 2 * MIN, "snoozedUntil": T0 + DAY + 3 * MIN + 3 * DAY},
            "ces": {"triggered": T0 + DAY + 5 * MIN},
        })
    );
    assert_eq!(doc["tips"]["welcome"]["shown"], json!({"ledger": 2}), "both devices' showings");
    // The phone's session: a tip, a survey and a prompt; the day began with the laptop's tip.
    assert_eq!(doc["session"]["tipsShown"], json!({"ledger": 1}));
    assert_eq!(doc["session"]["shown"], json!({"ledger": 3}));
    assert_eq!(doc["session"]["lastTip"], json!(T0 + DAY + MIN));
    assert_eq!(doc["day"], json!({"start": T0 + DAY + MIN, "shown": {"ledger": 3}}), "the day the laptop began (its first survey) ended before the phone's tip");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survey_ledger_and_shared_caps_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteStore::open(&dir.path().join("events.db")).expect("store"));
    check_ledger(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survey_ledger_and_shared_caps_on_clickhouse() {
    let (_server, store) = clickhouse().await;
    check_ledger(store).await;
}

/// A plan with plain counts (served), a count behind an `after` gate and one with a `where`
/// filter (not served: per-device totals cannot tell which events passed them).
const COUNT_PLAN: &str = r#"{"version":"1","milestones":[
  {"id":"exported","title":"Export three times","value":true,"condition":{"event":"export","count":3}},
  {"id":"shared","title":"Share twice","condition":{"event":"share","count":2}},
  {"id":"shared_after","title":"Share after exporting","condition":{"event":"share","count":2,"after":"exported"}},
  {"id":"big_exports","title":"Big exports","condition":{"event":"export","count":2,"where":{"rows":{"gte":100}}}},
  {"id":"invited","title":"Invite","condition":{"event":"invite","count":2}}]}"#;

/// Issue 19's counters: `count` conditions hold across devices. The state served to one device
/// carries the user's matching `track` events from their other devices (distinct events: a
/// resend counts once; the anonymous laptop events count once the laptop is linked), never the
/// asking device's own, which its tabs count themselves. Conditions with a `where` filter count
/// only the events that pass it; under an `after` gate, only those after the gate was first
/// reached on any device.
async fn check_counts(store: Arc<dyn Store>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = dir.path().join("plan.json");
    std::fs::write(&plan, COUNT_PLAN).expect("plan");
    let mut config = Config::default();
    config.plan_files = vec![("demo".into(), PlanSource::File(plan))];
    let mut app = AppState::new(config, store);
    app.clock = Arc::new(|| NOW);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(onramp_collector::run(listener, app, std::future::pending()));

    let laptop = vec![
        ev("c1", "track", "export", "laptop", None, T0, json!({"rows": 500})),
        ev("c2", "identify", "identify", "laptop", Some("ann"), T0 + MIN, json!({})),
        ev("c3", "track", "export", "laptop", Some("ann"), T0 + 2 * MIN, json!({})),
        ev("c4", "track", "share", "laptop", Some("ann"), T0 + 3 * MIN, json!({})),
        // A milestone event sharing a counted name is not a product event.
        ev("c5", "milestone", "invite", "laptop", Some("ann"), T0 + 4 * MIN, json!({})),
    ];
    let phone = vec![
        ev("c6", "track", "export", "phone", Some("ann"), T0 + DAY, json!({})),
        ev("c7", "track", "invite", "phone", Some("ann"), T0 + DAY, json!({})),
        // `big_exports` counts exports of 100 rows or more: 50 rows do not pass, 100 do.
        ev("c11", "track", "export", "phone", Some("ann"), T0 + DAY + MIN, json!({"rows": 50})),
        ev("c12", "track", "export", "phone", Some("ann"), T0 + DAY + 2 * MIN, json!({"rows": 100})),
    ];
    let bob = vec![ev("c8", "track", "export", "bobs", Some("bob"), T0, json!({})), ev("c9", "track", "share", "bobs", Some("bob"), T0, json!({}))];
    post(&url, "wk_demo", laptop.clone()).await;
    post(&url, "wk_demo", phone).await;
    post(&url, "wk_demo", bob).await;
    post(&url, "wk_demo", laptop).await; // resent

    // By hand: the laptop's exports are c1 (500 rows) and c3 (no rows: fails the filter), the
    // phone's c6 (no rows), c11 (50) and c12 (100); `big_exports` counts c1 and c12. The gate of
    // `shared_after` (`exported`) is reached nowhere yet: nothing counts towards it.
    let counts = |doc: &Value| doc.get("counts").cloned().unwrap_or(json!({}));
    let (status, doc, _) = state(&url, "writeKey=wk_demo&user=ann&anonymousId=phone").await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(
        counts(&doc),
        json!({"exported": {"otherDevices": 2}, "shared": {"otherDevices": 1}, "big_exports": {"otherDevices": 1}}),
        "the laptop's, for the phone"
    );
    let (_, doc, _) = state(&url, "writeKey=wk_demo&user=ann&anonymousId=laptop").await;
    assert_eq!(
        counts(&doc),
        json!({"exported": {"otherDevices": 3}, "big_exports": {"otherDevices": 1}, "invited": {"otherDevices": 1}}),
        "the phone's, for the laptop"
    );
    let (_, doc, _) = state(&url, "writeKey=wk_demo&user=ann&anonymousId=tablet").await;
    assert_eq!(
        counts(&doc),
        json!({"exported": {"otherDevices": 5}, "shared": {"otherDevices": 1}, "big_exports": {"otherDevices": 2}, "invited": {"otherDevices": 1}}),
        "a new device: all of them"
    );
    let (_, doc, _) = state(&url, "writeKey=wk_demo&user=ann").await;
    assert_eq!(counts(&doc), json!({}), "without the asking device, nothing could be told apart");

    // Once the milestone is reached (on any device), its count is not served; the gate it is
    // opens at its earliest reached time (the laptop's c10; the phone's c18 is later). Of the
    // shares, only those strictly after the gate count for `shared_after`: not c4 or c17
    // (before), not c14 (the gate's own millisecond: the engine judges a gate on the state
    // before each event), but c15 on the laptop and c16 on the phone.
    let gate = T0 + 2 * DAY;
    let laptop_late = vec![
        ev("c10", "milestone", "exported", "laptop", Some("ann"), gate, json!({})),
        ev("c14", "track", "share", "laptop", Some("ann"), gate, json!({})),
        ev("c15", "track", "share", "laptop", Some("ann"), gate + MIN, json!({})),
    ];
    let phone_late = vec![
        ev("c17", "track", "share", "phone", Some("ann"), gate - MIN, json!({})),
        ev("c16", "track", "share", "phone", Some("ann"), gate + 2 * MIN, json!({})),
        ev("c18", "milestone", "exported", "phone", Some("ann"), gate + 5 * MIN, json!({})),
    ];
    post(&url, "wk_demo", laptop_late.clone()).await;
    post(&url, "wk_demo", phone_late).await;
    post(&url, "wk_demo", laptop_late).await; // resent
    let (_, doc, _) = state(&url, "writeKey=wk_demo&user=ann&anonymousId=phone").await;
    assert_eq!(
        counts(&doc),
        json!({"shared": {"otherDevices": 3}, "shared_after": {"otherDevices": 1}, "big_exports": {"otherDevices": 1}}),
        "the laptop's: shares c4, c14, c15; after the gate c15"
    );
    assert_eq!(doc["reached"]["exported"], json!(gate));
    let (_, doc, _) = state(&url, "writeKey=wk_demo&user=ann&anonymousId=laptop").await;
    assert_eq!(
        counts(&doc),
        json!({"shared": {"otherDevices": 2}, "shared_after": {"otherDevices": 1}, "big_exports": {"otherDevices": 1}, "invited": {"otherDevices": 1}}),
        "the phone's: shares c17, c16; after the gate c16"
    );
    let (_, doc, _) = state(&url, "writeKey=wk_demo&user=ann&anonymousId=tablet").await;
    assert_eq!(counts(&doc)["shared_after"], json!({"otherDevices": 2}), "both devices' shares after the gate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_across_devices_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    check_counts(Arc::new(SqliteStore::open(&dir.path().join("events.db")).expect("store"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_across_devices_on_clickhouse() {
    let (_server, store) = clickhouse().await;
    check_counts(store).await;
}

/// A plan with two account milestones (docs/HEALTH.md): one reached when any user of the account
/// reaches the plan milestone `invited`, one when the account's users together send three
/// `teammate_invited` events; a tip leads to the second (docs/TIPS.md, "Account progress").
const ACCOUNT_PLAN: &str = r#"{"version":"1","milestones":[
  {"id":"invited","title":"Invite","value":true,"condition":{"event":"invite"}}],
  "health":{"accountMilestones":[
    {"id":"first_invite","title":"Someone invited","milestone":"invited"},
    {"id":"team3","title":"3 teammates invited","event":"teammate_invited","count":3}]},
  "tips":[{"id":"invite_team","kind":"modal","body":"Invite your team","accountMilestone":"team3"}]}"#;

/// `GET /v1/state` serves the user's account's progress, counted from every teammate's events:
/// a user who reached nothing sees what their teammates reached, and no other account's events.
async fn check_account(store: Arc<dyn Store>) {
    let c = serve_with_clock(store, Some(NOW)).await;
    let r = reqwest::Client::new().put(format!("{}/v1/plan", c.url)).bearer_auth("et_demo").body(ACCOUNT_PLAN).send().await.expect("put");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let group = |account: &str| json!({"accountId": account, "account": {"name": account}});
    post(
        &c.url,
        "wk_demo",
        vec![
            ev("a1", "identify", "identify", "ann-laptop", Some("ann"), T0, json!({})),
            ev("a2", "identify", "group", "ann-laptop", Some("ann"), T0 + MIN, group("acme")),
            ev("a3", "identify", "identify", "bob-laptop", Some("bob"), T0, json!({})),
            ev("a4", "identify", "group", "bob-laptop", Some("bob"), T0 + MIN, group("acme")),
            ev("a5", "identify", "identify", "cy-laptop", Some("cy"), T0, json!({})),
            ev("a6", "identify", "group", "cy-laptop", Some("cy"), T0 + MIN, group("initech")),
            ev("a7", "identify", "identify", "dan-laptop", Some("dan"), T0, json!({})),
            // Bob reaches the plan milestone: his account reaches `first_invite` then.
            ev("a8", "milestone", "invited", "bob-laptop", Some("bob"), T0 + HOUR, json!({})),
            // Ann invites once, Bob twice: the third invite (Bob's, T0 + 3 h) reaches `team3`.
            ev("a9", "track", "teammate_invited", "ann-laptop", Some("ann"), T0 + 2 * HOUR, json!({})),
            ev("a10", "track", "teammate_invited", "bob-laptop", Some("bob"), T0 + 90 * MIN, json!({})),
            ev("a11", "track", "teammate_invited", "bob-laptop", Some("bob"), T0 + 3 * HOUR, json!({})),
            // Another account's invites, and a milestone event sharing the counted name: not counted.
            ev("a12", "track", "teammate_invited", "cy-laptop", Some("cy"), T0, json!({})),
            ev("a13", "track", "teammate_invited", "cy-laptop", Some("cy"), T0 + MIN, json!({})),
            ev("a14", "milestone", "teammate_invited", "ann-laptop", Some("ann"), T0 + MIN, json!({})),
        ],
    )
    .await;
    let (status, doc, _) = state(&c.url, "writeKey=wk_demo&user=ann").await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["account"], json!({"id": "acme", "reached": {"first_invite": T0 + HOUR, "team3": T0 + 3 * HOUR}}));
    assert_eq!(doc.get("reached"), None, "Ann reached no milestone herself");
    // Initech has two invites and no `invited` milestone: nothing reached yet.
    let (_, doc, _) = state(&c.url, "writeKey=wk_demo&user=cy").await;
    assert_eq!(doc["account"], json!({"id": "initech"}));
    // A user with no account has no account progress.
    let (_, doc, _) = state(&c.url, "writeKey=wk_demo&user=dan").await;
    assert_eq!(doc.get("account"), None, "{doc}");
    // Cy's third invite reaches Initech's `team3`; Cy then moves to Acme: served Acme's.
    post(&c.url, "wk_demo", vec![ev("a15", "track", "teammate_invited", "cy-laptop", Some("cy"), T0 + DAY, json!({}))]).await;
    let (_, doc, _) = state(&c.url, "writeKey=wk_demo&user=cy").await;
    assert_eq!(doc["account"], json!({"id": "initech", "reached": {"team3": T0 + DAY}}));
    post(&c.url, "wk_demo", vec![ev("a16", "identify", "group", "cy-laptop", Some("cy"), T0 + 2 * DAY, group("acme"))]).await;
    let (_, doc, _) = state(&c.url, "writeKey=wk_demo&user=cy").await;
    // An account's users are its current members, with all their events (as the health
    // computation folds them): Cy's invites at T0 and T0 + 1 min now come first, so Acme's third
    // invite is Bob's at T0 + 90 min.
    assert_eq!(doc["account"], json!({"id": "acme", "reached": {"first_invite": T0 + HOUR, "team3": T0 + 90 * MIN}}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_progress_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    check_account(Arc::new(SqliteStore::open(&dir.path().join("events.db")).expect("store"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_progress_on_clickhouse() {
    let (_server, store) = clickhouse().await;
    check_account(store).await;
}
