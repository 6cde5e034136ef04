//! The collector over a real socket with a real SQLite file.

use std::sync::Arc;

mod common;

use common::{event, funnel, known, post, serve, Collector};
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
        // Linked to two users: the first link by event time wins, not the first to arrive.
        event("e5", "identify", "anon-r", Some("ron-later"), 1_000_006),
        event("e6", "identify", "anon-r", Some("ron"), 1_000_005),
        event("e7", "opened", "anon-r", None, 1_000_007),
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
    assert_eq!(funnel(&s.url, "opened").await["steps"][0]["userIds"], json!(["ron"]));
}

/// A page asks which events the collector stores before it resends ones that may have
/// arrived (a closing page's beacons): only committed ids of its own project are named.
#[tokio::test]
async fn names_the_stored_ids_it_is_asked_about() {
    let s = start().await;
    let batch = json!({"writeKey": "wk_demo", "sentAt": 1_000_000, "events": [
        event("k1", "signed_up", "anon-k", None, 1_000_000),
        event("k2", "opened", "anon-k", None, 1_000_001),
    ]});
    assert_eq!(post(&s.url, batch.to_string()).await.status(), 200);
    assert_eq!(known(&s.url, "wk_demo", &["k2", "k3", "k1"]).await, (200, vec!["k1".to_string(), "k2".to_string()]));
    assert_eq!(known(&s.url, "wk_demo", &[]).await, (200, vec![]));
    assert_eq!(known(&s.url, "wk_nobody", &["k1"]).await.0, 401);
    let too_many: Vec<String> = (0..=onramp::core::wire::MAX_KNOWN_IDS).map(|i| i.to_string()).collect();
    let too_many: Vec<&str> = too_many.iter().map(String::as_str).collect();
    assert_eq!(known(&s.url, "wk_demo", &too_many).await.0, 400);
    let r = reqwest::Client::new().post(format!("{}/v1/known", s.url)).body("{").send().await.expect("post");
    assert_eq!(r.status(), 400);
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
async fn sign_up_time_is_normalised_at_ingest_and_refused_outside_2000_to_tomorrow() {
    let s = start().await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    let identify = |user: &str, signed_up_at: Value| {
        json!({"id": format!("id-{user}"), "type": "identify", "name": "identify", "anonymousId": format!("anon-{user}"),
               "userId": user, "ts": now, "props": {"signedUpAt": signed_up_at, "plan": "pro"}})
    };
    // -1e18 once broke the dashboard for everyone; now it never gets in.
    for bad in [json!(-1e18), json!(1e18), json!(0), json!("1999-12-31"), json!(now + 2 * 86_400_000), json!("soon"), json!(true)] {
        let body = json!({"writeKey": "wk_demo", "sentAt": now, "events": [event("fine", "x", "anon-m", None, now), identify("mallory", bad.clone())]});
        let r = post(&s.url, body.to_string()).await;
        assert_eq!(r.status(), 400, "{bad}");
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["errors"][0]["index"], 1, "{bad}");
        assert_eq!(body["errors"][0]["field"], "props.signedUpAt", "{bad}");
    }
    // Seconds, milliseconds and ISO 8601 text of one instant are one sign-up time.
    let at = 1_790_000_000_000_i64;
    let body = json!({"writeKey": "wk_demo", "sentAt": now, "events": [
        identify("secs", json!(at / 1000)),
        identify("millis", json!(at)),
        identify("iso", json!("2026-09-21T14:13:20Z")),
        identify("unknown", Value::Null),
    ]});
    assert_eq!(post(&s.url, body.to_string()).await.status(), 200);
    let stalled = common::get(&s.url, "/v1/stalled?due=milestone:never:1m").await;
    let rows: Vec<(String, i64)> = stalled["stalled"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| (r["user"].as_str().unwrap_or("").to_string(), r["signedUpAt"].as_i64().unwrap_or(0)))
        .collect();
    let expected: Vec<(String, i64)> = ["iso", "millis", "secs"].iter().map(|u| (u.to_string(), at)).collect();
    assert_eq!(rows, expected, "nothing of the refused batches was stored; a null sign-up is unknown (not yet due)");
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
        {"id": "i1", "type": "identify", "name": "identify", "anonymousId": "x", "userId": "dana", "ts": 1_000, "props": {"signedUpAt": "2024-03-01T10:00:00Z", "plan": "pro"}},
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
    assert!(lines[1].starts_with("dana,project_created,2024-03-01T10:00:00Z,2024-03-01T11:00:00Z,"), "{csv}");
    let (_, other_plan) = read(&format!("{}/v1/stalled?due=project_created:1h&trait.plan=trial", s.url)).await;
    assert_eq!(serde_json::from_str::<Value>(&other_plan).expect("json")["total"], 0);
}

#[tokio::test]
async fn imports_history_of_any_age_with_the_admin_token_once() {
    let s = start().await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    let day = 86_400_000;
    let signup = now - 400 * day;
    let body = json!({"writeKey": "", "sentAt": now, "events": [
        {"id": "h1", "type": "identify", "name": "identify", "anonymousId": "old-a", "userId": "olga", "ts": signup, "props": {"signedUpAt": signup}},
        {"id": "h2", "type": "milestone", "name": "project_created", "anonymousId": "old-a", "userId": "olga", "ts": signup + 3 * day, "props": {}},
    ]})
    .to_string();
    let import = |token: &'static str| {
        reqwest::Client::new().post(format!("{}/v1/import", s.url)).bearer_auth(token).body(body.clone()).send()
    };
    for token in ["", "rt_demo", "wk_demo"] {
        assert_eq!(import(token).await.expect("post").status(), 401, "{token:?}");
    }
    // The public endpoint refuses history this old; the import takes it, twice without harm.
    assert_eq!(post(&s.url, body.replace("\"writeKey\":\"\"", "\"writeKey\":\"wk_demo\"")).await.status(), 400);
    for _ in 0..2 {
        let r = import("at_demo").await.expect("post");
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.expect("json")["accepted"], 2);
    }
    let ttv = common::get(&s.url, "/v1/ttv?steps=milestone:project_created&value=milestone:project_created").await;
    assert_eq!(ttv["value"]["reached"], 1, "stored once, in the rollups");
    assert_eq!(ttv["value"]["ms"]["p50"], 3 * day, "times as sent");
}

#[tokio::test]
async fn the_report_is_served_from_cache_until_the_data_changes() {
    let s = start().await;
    let db = s._dir.path().join("events.db");
    // Identified users: visitors who never identified are in no report.
    let send = |id: &'static str, anon: &'static str| {
        let body = json!({"writeKey": "wk_demo", "sentAt": 1_000, "events": [event(id, "opened", anon, Some(anon), 1_000)]});
        post(&s.url, body.to_string())
    };
    assert_eq!(send("c0", "anon-0").await.status(), 200);
    assert_eq!(send("c1", "anon-1").await.status(), 200);
    let path = "/v1/report?steps=event:opened&due=signed_up:1h";
    let first = common::get(&s.url, path).await;
    assert_eq!(first["ttv"]["users"], 2);
    // Nothing changed: the cached answer, computed at the same clock reading ("now").
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert_eq!(common::get(&s.url, path).await, first, "served from the cache");
    // Changed by another connection to the file (another process, as `rollup rebuild` or
    // `users delete` beside the collector): computed again, from the (now damaged) rollups.
    rusqlite::Connection::open(&db).expect("open").execute_batch("DELETE FROM rollup_users").expect("delete");
    let changed = common::get(&s.url, path).await;
    assert_eq!(changed["ttv"]["users"], 0, "the other connection's change is read");
    assert_ne!(changed["now"], first["now"]);
    // A new event is a new data version too.
    assert_eq!(send("c2", "anon-2").await.status(), 200);
    assert_eq!(common::get(&s.url, path).await["ttv"]["users"], 1, "only anon-2's user row is left");
    assert_eq!(common::get(&s.url, &format!("{path}&window=1d")).await["funnel"]["steps"][0]["users"], 1);
}

#[tokio::test]
async fn a_large_stalled_export_is_every_stall_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    common::stalled_export::check(Arc::new(SqliteStore::open(dir.path().join("events.db")).expect("open store"))).await;
}
