//! The webhook against a real HTTP receiver on loopback: `value_reached` after a committed batch,
//! `user_stalled` from the periodic scan, each stall announced once.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use axum::Json;
use onramp_collector::analytics::stalled::parse_due;
use onramp_collector::store::sqlite::SqliteStore;
use onramp_collector::webhook::{scan_loop, Webhook};
use onramp_collector::{AppState, Config};
use serde_json::{json, Value};
use tokio::sync::mpsc;

const T0: i64 = 1_795_392_000_000;
const H: i64 = 3_600_000;

/// A receiver that forwards every JSON body it is POSTed.
async fn receiver() -> (String, mpsc::UnboundedReceiver<Value>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        post(move |Json(body): Json<Value>| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Value>) -> Value {
    tokio::time::timeout(Duration::from_secs(20), rx.recv()).await.expect("a webhook call").expect("open")
}

fn identify(id: &str, user: &str) -> Value {
    json!({"id": id, "type": "identify", "name": "identify", "anonymousId": format!("a-{user}"), "userId": user, "ts": T0, "props": {"signedUpAt": T0}})
}

fn milestone(id: &str, user: &str, name: &str, ts: i64) -> Value {
    json!({"id": id, "type": "milestone", "name": name, "anonymousId": format!("a-{user}"), "userId": user, "ts": ts,
           "props": {"sinceSignupMs": ts - T0, "milestone": "file_uploaded"}})
}

#[tokio::test]
async fn announces_value_and_stalls_to_a_real_receiver() {
    let (hook_url, mut calls) = receiver().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path().join("hook.db")).expect("store");
    let now = Arc::new(AtomicI64::new(T0 + 2000));
    let mut state = AppState::new(no_plan(), Arc::new(store));
    let clock = now.clone();
    state.clock = Arc::new(move || clock.load(Ordering::SeqCst));
    let hook = Webhook::new(&hook_url, parse_due("project_created:1h").expect("due"), Duration::from_millis(50)).expect("hook");
    state.webhook = Some(Arc::new(hook.clone()));
    tokio::spawn(scan_loop(state.clone(), hook));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(onramp_collector::run(listener, state, std::future::pending()));

    // "val" reaches value; "fast" creates a project in time; "slow" does neither.
    let batch = json!({"writeKey": "wk_demo", "sentAt": T0 + 2000, "events": [
        identify("e1", "val"), milestone("e2", "val", "project_created", T0 + 500), milestone("e3", "val", "time_to_value", T0 + 1000),
        identify("e4", "fast"), milestone("e5", "fast", "project_created", T0 + 700),
        identify("e6", "slow"),
    ]});
    let r = reqwest::Client::new().post(format!("{url}/v1/batch")).body(batch.to_string()).send().await.expect("post");
    assert_eq!(r.status(), 200);

    let value = next(&mut calls).await;
    assert_eq!(value["type"], "value_reached");
    assert_eq!(value["user"], "val");
    assert_eq!(value["milestone"], "file_uploaded");
    assert_eq!(value["ttvMs"], 1000);

    // An hour passes: slow's project is now overdue.
    now.store(T0 + 2 * H, Ordering::SeqCst);
    let stall = next(&mut calls).await;
    assert_eq!(stall["type"], "user_stalled", "{stall}");
    assert_eq!(stall["user"], "slow");
    assert_eq!(stall["milestone"], "project_created");
    assert_eq!(stall["dueAt"], T0 + H);

    // Later scans do not announce it again, yet keep running: the next call is a new user's
    // stall, not slow's again (waiting for silence alone would pass if the scan loop had died).
    let late_signup = T0 + 90 * 60_000;
    let batch = json!({"writeKey": "wk_demo", "sentAt": T0 + 2 * H, "events": [
        {"id": "e7", "type": "identify", "name": "identify", "anonymousId": "a-late", "userId": "late", "ts": late_signup,
         "props": {"signedUpAt": late_signup}},
    ]});
    let r = reqwest::Client::new().post(format!("{url}/v1/batch")).body(batch.to_string()).send().await.expect("post");
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    now.store(T0 + 3 * H, Ordering::SeqCst);
    let stall = next(&mut calls).await;
    assert_eq!((stall["type"].as_str(), stall["user"].as_str()), (Some("user_stalled"), Some("late")), "{stall}");
    assert_eq!(stall["dueAt"], late_signup + H);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(calls.try_recv().is_err(), "each stall is announced once");
}

/// The repository's config without the demo plan: the requests here name their steps, value
/// milestone and due windows, and the answers must not depend on the plan file.
fn no_plan() -> Config {
    let mut config = Config::default();
    config.plan_files.clear();
    config
}
