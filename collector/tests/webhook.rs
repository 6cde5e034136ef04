//! The webhook against real HTTP receivers on loopback: `value_reached` after a committed batch
//! and `user_stalled` from the periodic scan, each at most once per user; Standard Webhooks
//! signatures checked by an independent implementation (Python's hmac); retries with the same
//! id; redirects never followed; internal addresses refused unless allowed; the outbox survives
//! a restart.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use onramp_collector::analytics::stalled::parse_due;
use onramp_collector::store::sqlite::SqliteStore;
use onramp_collector::webhook::{delivery_loop, scan_loop, Webhook};
use onramp_collector::{AppState, Config};
use serde_json::{json, Value};
use tokio::sync::mpsc;

const T0: i64 = 1_795_392_000_000;
const H: i64 = 3_600_000;
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One call a receiver got: its headers of interest and body.
#[derive(Debug)]
struct Call {
    id: String,
    timestamp: String,
    signature: String,
    body: String,
}

/// A receiver that records every POST and answers with the statuses given in turn (then 200).
/// `redirect_to`: answer 307 to this URL instead.
async fn receiver(statuses: Vec<u16>, redirect_to: Option<String>) -> (String, mpsc::UnboundedReceiver<Call>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let statuses = Arc::new(Mutex::new(statuses.into_iter()));
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: String| {
            let (tx, statuses, redirect_to) = (tx.clone(), statuses.clone(), redirect_to.clone());
            async move {
                let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                let _ = tx.send(Call { id: h("webhook-id"), timestamp: h("webhook-timestamp"), signature: h("webhook-signature"), body });
                if let Some(to) = redirect_to {
                    return (StatusCode::TEMPORARY_REDIRECT, [("location", to)]).into_response();
                }
                let status = statuses.lock().map(|mut s| s.next()).ok().flatten().unwrap_or(200);
                StatusCode::from_u16(status).unwrap_or(StatusCode::OK).into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Call>) -> Call {
    tokio::time::timeout(Duration::from_secs(20), rx.recv()).await.expect("a webhook call").expect("open")
}

/// The Standard Webhooks signature as Python's standard library computes it: the oracle.
fn python_signature(id: &str, timestamp: &str, body: &str) -> String {
    let script = "import base64,hashlib,hmac,sys\n\
                  key = base64.b64decode(sys.argv[1][len('whsec_'):])\n\
                  msg = (sys.argv[2] + '.' + sys.argv[3] + '.' + sys.argv[4]).encode()\n\
                  print('v1,' + base64.b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode())";
    let out = std::process::Command::new("python3").args(["-c", script, SECRET, id, timestamp, body]).output().expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn identify(id: &str, user: &str, signed_up: i64) -> Value {
    json!({"id": id, "type": "identify", "name": "identify", "anonymousId": format!("a-{user}"), "userId": user, "ts": signed_up,
           "props": {"signedUpAt": signed_up}})
}

fn milestone(id: &str, user: &str, name: &str, ts: i64) -> Value {
    json!({"id": id, "type": "milestone", "name": name, "anonymousId": format!("a-{user}"), "userId": user, "ts": ts,
           "props": {"sinceSignupMs": ts - T0, "milestone": "file_uploaded"}})
}

/// The demo project with a webhook secret and no plan file (the tests name their due windows).
fn config() -> Config {
    let mut config = Config::default();
    config.plan_files.clear();
    config.projects[0].webhook_secret = Some(SECRET.into());
    config
}

struct Collector {
    url: String,
    state: AppState,
}

/// A collector on `db` with the webhook to `hook_url`, its scan and delivery loops running.
async fn collector(db: &std::path::Path, hook_url: &str, allow_private: bool, clock: Option<Arc<AtomicI64>>) -> Collector {
    let store = SqliteStore::open(db).expect("store");
    let mut state = AppState::new(config(), Arc::new(store));
    if let Some(clock) = clock {
        state.clock = Arc::new(move || clock.load(Ordering::SeqCst));
    }
    let mut hook = Webhook::new(hook_url, parse_due("project_created:1h").expect("due"), Duration::from_millis(50)).expect("hook");
    hook.allow_private = allow_private;
    hook.retry_base = Duration::from_millis(100);
    let hook = Arc::new(hook);
    state.webhook = Some(hook.clone());
    state.spawn_background(scan_loop(state.clone(), hook.clone()));
    state.spawn_background(delivery_loop(state.clone(), hook));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(onramp_collector::run(listener, state.clone(), std::future::pending()));
    Collector { url, state }
}

async fn post_batch(url: &str, sent_at: i64, events: Vec<Value>) {
    let batch = json!({"writeKey": "wk_demo", "sentAt": sent_at, "events": events});
    let r = reqwest::Client::new().post(format!("{url}/v1/batch")).body(batch.to_string()).send().await.expect("post");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn announces_value_and_stalls_once_per_user_signed() {
    let (hook_url, mut calls) = receiver(vec![], None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let now = Arc::new(AtomicI64::new(T0 + 2000));
    let c = collector(&dir.path().join("hook.db"), &hook_url, true, Some(now.clone())).await;

    // "val" reaches value (twice over, as a forged or resent batch would say); "fast" creates a
    // project in time; "slow" does neither.
    let events = vec![
        identify("e1", "val", T0),
        milestone("e2", "val", "project_created", T0 + 500),
        milestone("e3", "val", "time_to_value", T0 + 1000),
        milestone("e3b", "val", "time_to_value", T0 + 1100),
        identify("e4", "fast", T0),
        milestone("e5", "fast", "project_created", T0 + 700),
        identify("e6", "slow", T0),
    ];
    post_batch(&c.url, T0 + 2000, events.clone()).await;
    post_batch(&c.url, T0 + 2000, events).await;

    let value = next(&mut calls).await;
    let body: Value = serde_json::from_str(&value.body).expect("json");
    assert_eq!((body["type"].as_str(), body["user"].as_str()), (Some("value_reached"), Some("val")));
    assert_eq!((&body["milestone"], &body["ttvMs"]), (&json!("file_uploaded"), &json!(1000)));
    assert!(value.id.starts_with("msg_"));
    assert_eq!(value.timestamp, ((T0 + 2000) / 1000).to_string());
    assert_eq!(value.signature, python_signature(&value.id, &value.timestamp, &value.body), "a receiver can verify it");

    // An hour passes: slow's project is now overdue.
    now.store(T0 + 2 * H, Ordering::SeqCst);
    let stall = next(&mut calls).await;
    let body: Value = serde_json::from_str(&stall.body).expect("json");
    assert_eq!((body["type"].as_str(), body["user"].as_str()), (Some("user_stalled"), Some("slow")), "{body}");
    assert_eq!((&body["milestone"], &body["dueAt"]), (&json!("project_created"), &json!(T0 + H)));
    assert_eq!(stall.signature, python_signature(&stall.id, &stall.timestamp, &stall.body));

    // Later scans do not announce it again, yet keep running: the next call is a new user's
    // stall, not slow's again, and not val's value twice.
    let late = T0 + 90 * 60_000;
    post_batch(&c.url, T0 + 2 * H, vec![identify("e7", "late", late), milestone("e8", "val", "time_to_value", T0 + 2 * H)]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    now.store(T0 + 3 * H, Ordering::SeqCst);
    let stall = next(&mut calls).await;
    let body: Value = serde_json::from_str(&stall.body).expect("json");
    assert_eq!((body["type"].as_str(), body["user"].as_str()), (Some("user_stalled"), Some("late")), "{body}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(calls.try_recv().is_err(), "one notification per user and kind");
    c.state.begin_shutdown();
}

#[tokio::test]
async fn failures_are_retried_with_the_same_id_and_redirects_are_not_followed() {
    // Refused twice, then accepted.
    let (flaky, mut flaky_calls) = receiver(vec![500, 503], None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = collector(&dir.path().join("a.db"), &flaky, true, None).await;
    let now = onramp_collector::system_now_ms();
    post_batch(&c.url, now, vec![identify("v1", "val", T0), milestone("v2", "val", "time_to_value", now)]).await;
    let attempts = [next(&mut flaky_calls).await, next(&mut flaky_calls).await, next(&mut flaky_calls).await];
    assert!(attempts.iter().all(|a| a.id == attempts[0].id), "the same webhook-id on every retry");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(flaky_calls.try_recv().is_err(), "delivered on the third attempt, then no more");
    assert!(c.state.store.due_notifications(i64::MAX, 10).await.expect("due").is_empty(), "recorded as delivered");

    // A receiver that redirects elsewhere: the target never hears from the collector.
    let (target, mut target_calls) = receiver(vec![], None).await;
    let (redirecting, mut redirect_calls) = receiver(vec![], Some(target)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = collector(&dir.path().join("b.db"), &redirecting, true, None).await;
    post_batch(&c.url, now, vec![identify("w1", "val", T0), milestone("w2", "val", "time_to_value", now)]).await;
    next(&mut redirect_calls).await;
    next(&mut redirect_calls).await; // retried: a redirect is a failure
    assert!(target_calls.try_recv().is_err(), "the redirect was not followed");
    // The second answer may still be on its way to the outbox: wait for it (bounded).
    let mut pending = Vec::new();
    for _ in 0..50 {
        pending = c.state.store.due_notifications(i64::MAX, 10).await.expect("due");
        if pending.first().is_some_and(|n| n.attempts >= 2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(pending.len(), 1, "still to deliver");
    assert!(pending[0].attempts >= 2, "{pending:?}");
}

#[tokio::test]
async fn internal_targets_are_refused_and_the_outbox_survives_a_restart() {
    let (hook_url, mut calls) = receiver(vec![], None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("c.db");
    let now = onramp_collector::system_now_ms();
    {
        // Without --webhook-allow-private, a loopback receiver is never contacted.
        let c = collector(&db, &hook_url, false, None).await;
        post_batch(&c.url, now, vec![identify("x1", "val", T0), milestone("x2", "val", "time_to_value", now)]).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(calls.try_recv().is_err(), "loopback refused");
        let error: String = rusqlite::Connection::open(&db)
            .expect("open")
            .query_row("SELECT last_error FROM webhook_outbox", [], |r| r.get(0))
            .expect("recorded");
        assert!(error.contains("internal address"), "{error}");
        c.state.begin_shutdown();
        c.state.background_finished().await;
    }
    // Restarted on the same database with the receiver allowed: the stored notification goes out.
    let c = collector(&db, &hook_url, true, None).await;
    let call = next(&mut calls).await;
    assert!(call.body.contains("value_reached"));
    c.state.begin_shutdown();
}

#[tokio::test]
async fn erasing_a_user_removes_their_pending_notifications() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path().join("d.db")).expect("store");
    let n = |user: &str| onramp_collector::store::Notification {
        id: format!("msg_{user}"),
        project: "demo".into(),
        kind: "value_reached".into(),
        user: user.into(),
        payload: "{}".into(),
        created_at: 1,
        attempts: 0,
    };
    use onramp_collector::store::Store;
    store.enqueue_notifications(vec![n("alice"), n("bob"), n("alice")]).await.expect("enqueue");
    assert_eq!(store.due_notifications(1, 10).await.expect("due").len(), 2, "one per user and kind");
    store.erase_user("demo", "alice").await.expect("erase");
    let due = store.due_notifications(1, 10).await.expect("due");
    assert_eq!(due.iter().map(|n| n.user.as_str()).collect::<Vec<_>>(), ["bob"]);
}

/// `survey_answered`: one notification per answer (a resent batch adds none), `detractor: true`
/// for NPS 0–6 only, the answer's text as plain JSON text, signed like the others.
#[tokio::test]
async fn announces_each_survey_answer_and_flags_detractors() {
    let (hook_url, mut calls) = receiver(vec![], None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = collector(&dir.path().join("survey.db"), &hook_url, true, Some(Arc::new(AtomicI64::new(T0 + 2000)))).await;
    let answer = |id: &str, user: &str, kind: &str, score: i64, text: &str| {
        json!({"id": id, "type": "survey", "name": "survey_answered", "anonymousId": format!("a-{user}"), "userId": user, "ts": T0 + 1000,
               "props": {"surveyId": "q1", "surveyKind": kind, "score": score, "text": text}})
    };
    let events = vec![
        identify("s0", "dee", T0),
        answer("s1", "dee", "nps", 6, "<script>alert(1)</script> too slow"),
        answer("s2", "pat", "nps", 7, ""),
        answer("s3", "cat", "csat", 1, "meh"),
    ];
    post_batch(&c.url, T0 + 2000, events.clone()).await;
    post_batch(&c.url, T0 + 2000, events).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let call = next(&mut calls).await;
        assert_eq!(call.signature, python_signature(&call.id, &call.timestamp, &call.body));
        let body: Value = serde_json::from_str(&call.body).expect("json");
        got.push((body["user"].as_str().unwrap_or("").to_owned(), body["type"].clone(), body["detractor"].clone(), body["score"].clone(), body["text"].clone()));
    }
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            ("cat".into(), json!("survey_answered"), json!(false), json!(1), json!("meh")),
            ("dee".into(), json!("survey_answered"), json!(true), json!(6), json!("<script>alert(1)</script> too slow")),
            ("pat".into(), json!("survey_answered"), json!(false), json!(7), json!("")),
        ]
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(calls.try_recv().is_err(), "the resent batch announced nothing again");
    c.state.begin_shutdown();
}
