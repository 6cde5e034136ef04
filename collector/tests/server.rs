//! The collector over a real socket with a real SQLite file.

use std::sync::Arc;

mod common;

use common::{event, funnel, post, serve, Collector};
use onramp_collector::store::sqlite::SqliteStore;
use serde_json::{json, Value};

struct Server {
    url: String,
    _dir: tempfile::TempDir,
    _collector: Collector,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path().join("events.db")).expect("open store");
    let collector = serve(Arc::new(store)).await;
    Server { url: collector.url.clone(), _dir: dir, _collector: collector }
}

#[tokio::test]
async fn stores_batches_once_and_reports_the_funnel() {
    let s = start().await;
    let batch = json!({"writeKey": "wk_demo", "sentAt": 1_000_000, "events": [
        event("e1", "signed_up", "anon-a", None, 1_000_000),
        {"id": "e2", "type": "identify", "name": "identify", "anonymousId": "anon-a", "userId": "alice", "ts": 1_000_001},
        event("e3", "project_created", "anon-a", Some("alice"), 1_000_002),
        event("e4", "signed_up", "anon-b", Some("bob"), 1_000_003),
    ]});
    let r = post(&s.url, batch.to_string()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "http://localhost:3000");
    // A resend of the same events (lost acknowledgement) is stored once.
    assert_eq!(post(&s.url, batch.to_string()).await.status(), 200);

    let report = funnel(&s.url, "event:signed_up,event:project_created").await;
    assert_eq!(report["steps"][0]["users"], 2);
    assert_eq!(report["steps"][0]["userIds"], json!(["alice", "bob"]), "anon-a's early event counts for alice");
    assert_eq!(report["steps"][1]["userIds"], json!(["alice"]));
    assert_eq!(report["steps"][1]["conversionFromPrevious"], 0.5);
}

#[tokio::test]
async fn refuses_bad_events_naming_index_and_field_and_stores_nothing() {
    let s = start().await;
    let batch = json!({"writeKey": "wk_demo", "sentAt": 1, "events": [
        event("ok1", "signed_up", "anon", Some("carol"), 1),
        {"id": "bad", "type": "track", "name": ["x"], "anonymousId": "anon", "ts": 1},
    ]});
    let r = post(&s.url, batch.to_string()).await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["errors"][0]["index"], 1);
    assert_eq!(body["errors"][0]["field"], "name");
    assert_eq!(funnel(&s.url, "signed_up").await["steps"][0]["users"], 0);
}

#[tokio::test]
async fn rejects_unknown_keys_and_unauthorised_reads() {
    let s = start().await;
    let batch = json!({"writeKey": "wk_nope", "sentAt": 1, "events": []});
    assert_eq!(post(&s.url, batch.to_string()).await.status(), 401);
    let r = reqwest::get(format!("{}/v1/funnel?steps=a", s.url)).await.expect("get");
    assert_eq!(r.status(), 401);
}

async fn read(url: &str) -> (u16, String) {
    let r = reqwest::Client::new().get(url).bearer_auth("rt_demo").send().await.expect("get");
    (r.status().as_u16(), r.text().await.expect("text"))
}

#[tokio::test]
async fn bad_query_parameters_are_named_in_a_400() {
    let s = start().await;
    for (query, named) in [
        ("/v1/funnel?steps=a&window=soon", "window"),
        ("/v1/funnel?step=a", "step"),
        ("/v1/funnel?steps=", "steps"),
        ("/v1/ttv?steps=a&from=2026-02-30", "from"),
        ("/v1/cohorts?steps=a&by=month", "by"),
        ("/v1/stalled?due=project_created", "due"),
        ("/v1/stalled?due=a:1h&format=xml", "format"),
        ("/v1/funnel?steps=a&from=2026-11-20&to=2026-11-01", "to"),
    ] {
        let (status, body) = read(&format!("{}{query}", s.url)).await;
        assert_eq!(status, 400, "{query}");
        let error: Value = serde_json::from_str(&body).expect("json");
        assert!(error["error"].as_str().expect("message").starts_with(&format!("{named}:")), "{query}: {body}");
    }
}

#[tokio::test]
async fn stalled_users_export_as_csv_with_a_token_link() {
    let s = start().await;
    let batch = json!({"writeKey": "wk_demo", "sentAt": 1_000, "events": [
        {"id": "i1", "type": "identify", "name": "identify", "anonymousId": "x", "userId": "dana", "ts": 1_000, "props": {"signedUpAt": 1_000, "plan": "pro"}},
    ]});
    assert_eq!(post(&s.url, batch.to_string()).await.status(), 200);
    let r = reqwest::get(format!("{}/v1/stalled?due=project_created:1h&format=csv&token=rt_demo&trait.plan=pro", s.url))
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = r.text().await.expect("csv");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "user,milestone,signed_up_at,due_at,last_seen,overdue_hours");
    assert!(lines[1].starts_with("dana,project_created,1970-01-01T00:00:01Z,1970-01-01T01:00:01Z,"), "{csv}");
    let (_, other_plan) = read(&format!("{}/v1/stalled?due=project_created:1h&trait.plan=trial", s.url)).await;
    assert_eq!(serde_json::from_str::<Value>(&other_plan).expect("json")["total"], 0);
}
