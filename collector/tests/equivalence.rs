//! SQLite and ClickHouse must give the same answers for the same events.
//!
//! One generated onboarding history (anonymous visits linked by identify, milestones, tips,
//! metrics, resends, second devices, same-millisecond ties, skewed client clocks) is posted
//! through the real ingest API to two collectors with the same fixed clock, one per store; then
//! every read route is asked the same questions of both and the answers compared byte for byte.

mod common;

use std::sync::Arc;

use common::history::{history, DAY, NOW, STEPS};
use common::{clickhouse, post, serve_with_clock, Collector};
use onramp_collector::analytics::Step;
use onramp_collector::store::sqlite::SqliteStore;
use onramp_collector::store::{EventFilter, Store, UserSeen};
use serde_json::Value;

/// Every read route, with the parameters that change what the stores are asked.
fn questions() -> Vec<String> {
    let steps = STEPS.join(",");
    let due = "project_created:24h,file_uploaded:3d";
    let from = "from=2027-01-03&to=2027-01-08";
    let mut paths = vec![
        format!("/v1/funnel?steps={steps}&users=true"),
        format!("/v1/funnel?steps={steps}&window=2d"),
        format!("/v1/funnel?steps={steps}&trait.plan=pro&users=true"),
        format!("/v1/funnel?steps={steps}&{from}"),
        format!("/v1/funnel?steps=project_created,project_created,file_uploaded"),
        format!("/v1/ttv?steps={steps}"),
        format!("/v1/ttv?steps={steps}&value=teammate_invited&trait.plan=trial"),
        format!("/v1/cohorts?steps={steps}&by=day"),
        format!("/v1/cohorts?steps={steps}&by=week&{from}"),
        "/v1/tips".to_string(),
        "/v1/tips?trait.plan=pro".to_string(),
        "/v1/metrics".to_string(),
        format!("/v1/stalled?due={due}"),
        format!("/v1/stalled?due={due}&format=csv"),
        format!("/v1/report?steps={steps}&due={due}"),
        format!("/v1/report?steps={steps}&due={due}&window=1d&by=week&{from}&trait.plan=pro"),
        // From the stored plan.
        "/v1/funnel?users=true".to_string(),
        "/v1/stalled".to_string(),
        "/v1/report".to_string(),
    ];
    paths.dedup();
    paths
}

async fn ask(c: &Collector, path: &str) -> String {
    let r = reqwest::Client::new().get(format!("{}{path}", c.url)).bearer_auth("rt_demo").send().await.expect("get");
    assert_eq!(r.status(), 200, "{path}");
    r.text().await.expect("body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_and_clickhouse_answer_every_question_identically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite_store = Arc::new(SqliteStore::open(dir.path().join("e.db")).expect("sqlite"));
    let sqlite = serve_with_clock(sqlite_store.clone(), Some(NOW)).await;
    let (server, store) = clickhouse().await;
    // Without background merges, resends stay as separate rows: reads must fold them (FINAL).
    server.query("SYSTEM STOP MERGES").expect("stop merges");
    let ch = serve_with_clock(store.clone(), Some(NOW)).await;

    let batches = history(0..300, 7);
    // Concurrent posts, so the ClickHouse writer really groups requests into shared inserts.
    let mut posts = Vec::new();
    for chunk in batches.chunks(batches.len() / 8 + 1) {
        let (chunk, sqlite_url, ch_url) = (chunk.to_vec(), sqlite.url.clone(), ch.url.clone());
        posts.push(tokio::spawn(async move {
            for body in chunk {
                assert_eq!(post(&sqlite_url, body.clone()).await.status(), 200);
                assert_eq!(post(&ch_url, body).await.status(), 200);
            }
        }));
    }
    for p in posts {
        p.await.expect("post task");
    }

    // A plan stored through the API (the plan table on each store) supplies the default steps,
    // value milestone and due windows of the questions that leave them out.
    let plan = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../pkg-config/plans/trackly.json")).expect("plan");
    for c in [&sqlite, &ch] {
        let r = reqwest::Client::new().put(format!("{}/v1/plan", c.url)).bearer_auth("et_demo").body(plan.clone()).send().await.expect("put");
        assert_eq!(r.status(), 200);
    }
    assert_eq!(ask(&ch, "/v1/plan?writeKey=wk_demo").await, plan, "ClickHouse serves the stored plan");

    // The trait's own answers first: every event with its props, each user's in the same order
    // (same-millisecond ties broken by event id), and the same users.
    let all = EventFilter::default().with_props();
    let (a, b) = (sqlite_store.events("demo", &all).await.expect("sqlite"), store.events("demo", &all).await.expect("clickhouse"));
    assert_eq!(a.len(), b.len());
    for (a, b) in a.iter().zip(&b) {
        assert_eq!(a, b);
    }
    let sorted = |mut users: Vec<UserSeen>| {
        users.sort_by(|a, b| a.user.cmp(&b.user));
        users
    };
    assert_eq!(sorted(sqlite_store.users("demo").await.expect("sqlite")), sorted(store.users("demo").await.expect("clickhouse")));
    let (rows, distinct) = store.event_counts().await.expect("counts");
    assert!(rows > distinct, "resent batches are stored twice and folded on read");

    let mut compared = 0;
    for path in questions() {
        let (a, b) = (ask(&sqlite, &path).await, ask(&ch, &path).await);
        assert_eq!(a, b, "{path}: SQLite and ClickHouse differ");
        if let Ok(v) = serde_json::from_str::<Value>(&a) {
            compared += v.to_string().len();
        }
    }
    // The data must make the questions non-trivial, or equality proves nothing.
    let funnel: Value = serde_json::from_str(&ask(&sqlite, &questions()[0]).await).expect("json");
    let counts: Vec<u64> = funnel["steps"].as_array().expect("steps").iter().map(|s| s["users"].as_u64().unwrap_or(0)).collect();
    assert!(counts[0] > 200 && counts[3] > 10 && counts.windows(2).all(|w| w[0] > w[1]), "{counts:?}");
    assert!(compared > 10_000);

    // The rollups the views kept as events arrived (with resends stored twice, merges stopped)
    // equal a recompute, on both stores; a rebuild changes no answer.
    assert_eq!(sqlite_store.verify_rollups(None).await.expect("verify"), Vec::<String>::new());
    assert_eq!(store.verify_rollups(None).await.expect("verify"), Vec::<String>::new());
    let report = questions().into_iter().find(|q| q.starts_with("/v1/report?")).expect("a report question");
    let before = ask(&ch, &report).await;
    // A rebuild deletes rows with a mutation, which runs in the merge pool.
    server.query("SYSTEM START MERGES").expect("start merges");
    store.rebuild_rollups(Some("demo"), Box::new(|_| {})).await.expect("rebuild");
    assert_eq!(store.verify_rollups(Some("demo")).await.expect("verify"), Vec::<String>::new());
    assert_eq!(ask(&ch, &report).await, before, "rebuilt rollups give the same answers");

    // ClickHouse's own windowFunnel agrees with the shared matcher on the step counts (no repeated
    // step names and no same-millisecond steps in this data, where the two may order differently).
    let steps: Vec<Step> = STEPS.map(Step::milestone).to_vec();
    for (window, path) in [(None, 0), (Some(2 * DAY), 1)] {
        let matcher: Value = serde_json::from_str(&ask(&ch, &questions()[path]).await).expect("json");
        let matcher: Vec<u64> = matcher["steps"].as_array().expect("steps").iter().map(|s| s["users"].as_u64().unwrap_or(0)).collect();
        assert_eq!(store.window_funnel_counts("demo", &steps, window).await.expect("windowFunnel"), matcher);
    }
}
