//! The collector's contract with hostile or mistaken clients, over a real socket and SQLite:
//! keys, tokens and origins; size, schema, rate and time limits; hostile payloads stored
//! verbatim and served escaped; health, readiness and metrics.

use std::path::PathBuf;
use std::sync::Arc;

use onramp_collector::config::RateLimit;
use onramp_collector::store::sqlite::SqliteStore;
use onramp_collector::{AppState, Config, Project};
use serde_json::{json, Value};

const NOW: i64 = 1_800_000_000_000;

struct Server {
    url: String,
    db: PathBuf,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn project(id: &str, origins: &[&str]) -> Project {
    Project::new(id, &format!("wk_{id}"), &format!("rt_{id}"), origins.iter().map(|o| o.to_string()).collect())
}

async fn start(rate_limit: RateLimit) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("events.db");
    let store = SqliteStore::open(&db).expect("open store");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let mut config = Config::default();
    config.projects = vec![project("acme", &["https://app.acme.test"]), project("globex", &["*"])];
    config.rate_limit = rate_limit;
    let mut state = AppState::new(config, Arc::new(store));
    state.clock = Arc::new(|| NOW);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(onramp_collector::run(listener, state, async move {
        let _ = stopped.await;
    }));
    Server { url, db, _dir: dir, _stop: stop }
}

fn event(id: &str, name: &str, ts: i64) -> Value {
    json!({"id": id, "type": "track", "name": name, "anonymousId": "anon", "userId": "u1", "ts": ts, "props": {}})
}

fn batch(key: &str, events: Vec<Value>) -> String {
    json!({"writeKey": key, "sentAt": NOW, "events": events}).to_string()
}

async fn post(url: &str, origin: Option<&str>, body: String) -> (u16, Option<String>, Value) {
    let mut r = reqwest::Client::new().post(format!("{url}/v1/batch")).header("content-type", "text/plain").body(body);
    if let Some(o) = origin {
        r = r.header("origin", o);
    }
    let r = r.send().await.expect("post");
    let status = r.status().as_u16();
    let retry = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(String::from);
    let body = r.json().await.unwrap_or(Value::Null);
    (status, retry, body)
}

fn stored_rows(db: &PathBuf) -> Vec<(String, String, String, i64, i64)> {
    let conn = rusqlite::Connection::open(db).expect("open");
    let mut stmt = conn.prepare("SELECT id, name, props, ts, client_ts FROM events ORDER BY id").expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
}

fn generous() -> RateLimit {
    RateLimit { per_second: 1000.0, burst: 1000.0 }
}

#[tokio::test]
async fn keys_tokens_and_origins_are_enforced_and_refusals_store_nothing() {
    let s = start(generous()).await;
    let acme = "https://app.acme.test";
    assert_eq!(post(&s.url, Some(acme), batch("wk_nope", vec![event("k1", "a", NOW)])).await.0, 401);
    let (status, _, body) = post(&s.url, Some("https://evil.test"), batch("wk_acme", vec![event("k2", "a", NOW)])).await;
    assert_eq!(status, 403);
    assert!(body["error"].as_str().is_some_and(|e| e.contains("evil.test")), "{body}");
    assert!(stored_rows(&s.db).is_empty(), "nothing stored from refused requests");

    let r = reqwest::Client::new()
        .post(format!("{}/v1/batch", s.url))
        .header("origin", acme)
        .body(batch("wk_acme", vec![event("k3", "a", NOW)]))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], acme, "CORS answer for the project's origin");
    assert_eq!(post(&s.url, None, batch("wk_acme", vec![event("k4", "a", NOW)])).await.0, 200, "server-side sender");

    // Preflights: yes only for an origin some project allows (globex allows any).
    let preflight = |origin: &'static str| {
        let url = s.url.clone();
        async move {
            reqwest::Client::new()
                .request(reqwest::Method::OPTIONS, format!("{url}/v1/batch"))
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .send()
                .await
                .expect("options")
                .status()
                .as_u16()
        }
    };
    assert_eq!(preflight(acme).await, 204);

    // The plan: CORS only for the project's own origins, on answers and refusals alike.
    let plan = |key: &'static str, origin: &'static str| {
        let url = s.url.clone();
        async move {
            let r = reqwest::Client::new()
                .get(format!("{url}/v1/plan?writeKey={key}"))
                .header("origin", origin)
                .send()
                .await
                .expect("get plan");
            (r.status().as_u16(), r.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap_or("?").to_owned()))
        }
    };
    assert_eq!(plan("wk_acme", acme).await, (204, Some(acme.to_owned())));
    assert_eq!(plan("wk_acme", "https://evil.test").await, (403, None), "a refused origin may not read the refusal");
    assert_eq!(plan("wk_globex", "https://evil.test").await.1.as_deref(), Some("https://evil.test"), "globex allows any");

    // Read tokens: a wrong one is refused; each project's token sees only its own events.
    let read = |token: &'static str| {
        let url = s.url.clone();
        async move {
            let r = reqwest::Client::new()
                .get(format!("{url}/v1/funnel?steps=a&users=true"))
                .bearer_auth(token)
                .send()
                .await
                .expect("get");
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    assert_eq!(read("rt_wrong").await.0, 401);
    assert_eq!(read("rt_acme").await.1["steps"][0]["users"], 1);
    assert_eq!(read("rt_globex").await.1["steps"][0]["users"], 0);
}

#[tokio::test]
async fn limits_answer_with_clear_errors() {
    let s = start(RateLimit { per_second: 0.5, burst: 8.0 }).await;
    let post = |body: String| post(&s.url, None, body);

    // A body over 500 KB: 413, without reading it all.
    let huge = batch("wk_globex", vec![json!({"blob": "x".repeat(600 * 1024)})]);
    let (status, _, body) = post(huge).await;
    assert_eq!(status, 413, "{body}");

    // One event over 32 KB: 413 naming it, so the SDK drops just that one.
    let mut big = event("big", "big", NOW);
    big["props"] = json!({"blob": "x".repeat(40 * 1024)});
    let (status, _, body) = post(batch("wk_globex", vec![event("ok0", "a", NOW), big])).await;
    assert_eq!((status, &body["errors"][0]["index"]), (413, &json!(1)), "{body}");

    // Malformed JSON, wrong types, deep nesting: 400 naming index and field.
    let (status, _, body) = post("{\"writeKey\":\"wk_globex\",".into()).await;
    assert_eq!((status, body["errors"][0]["field"].as_str()), (400, Some("(body)")), "{body}");
    let wrong = json!({"id": "w", "type": "track", "name": 5, "anonymousId": "a", "ts": "yesterday"});
    let (status, _, body) = post(batch("wk_globex", vec![event("ok1", "a", NOW), wrong])).await;
    assert_eq!((status, body["errors"][0]["index"].as_u64(), body["errors"][0]["field"].as_str()), (400, Some(1), Some("name")));
    let deep = "[".repeat(5000) + &"]".repeat(5000);
    let text = format!(r#"{{"writeKey":"wk_globex","sentAt":{NOW},"events":[{{"id":"d","type":"track","name":"n","anonymousId":"a","ts":{NOW},"props":{{"x":{deep}}}}}]}}"#);
    let (status, _, body) = post(text).await;
    assert_eq!(status, 400);
    assert!(body.to_string().contains("nested too deeply"), "{body}");

    // Timestamps: far future clamped to receive time (and counted), far past refused with why.
    let (status, _, body) = post(batch("wk_globex", vec![event("future", "a", NOW + 5 * 86_400_000)])).await;
    assert_eq!((status, &body["clamped"]), (200, &json!(1)), "{body}");
    let (status, _, body) = post(batch("wk_globex", vec![event("ok2", "a", NOW), event("old", "a", NOW - 90 * 86_400_000)])).await;
    assert_eq!((status, body["errors"][0]["index"].as_u64(), body["errors"][0]["field"].as_str()), (400, Some(1), Some("ts")));
    assert!(body["errors"][0]["message"].as_str().is_some_and(|m| m.contains("30 days")), "{body}");
    let rows = stored_rows(&s.db);
    assert_eq!(rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), ["future"], "only the clamped event stored");
    assert_eq!((rows[0].3, rows[0].4), (NOW, NOW + 5 * 86_400_000), "corrected and client time both kept");

    // Rate limit: the bucket (8) is spent by now; the next request is told when to come back.
    let mut limited = None;
    for _ in 0..10 {
        let (status, retry, _) = post(batch("wk_globex", vec![])).await;
        if status == 429 {
            limited = retry;
            break;
        }
    }
    let retry: u64 = limited.expect("429 within the burst").parse().expect("seconds");
    assert!(retry >= 1, "Retry-After {retry}");
    assert_eq!(post(batch("wk_acme", vec![])).await.0, 200, "limits are per key");
}

#[tokio::test]
async fn hostile_names_and_props_are_stored_verbatim_and_served_escaped() {
    let s = start(generous()).await;
    let payloads = [
        "'); DROP TABLE events; --",
        "<script>alert('x')</script>",
        "\" OR 1=1 --",
        "<img src=x onerror=alert(1)>",
        "名前\u{0}\u{1f}\\\"",
    ];
    let events: Vec<Value> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut e = event(&format!("h{i}"), p, NOW);
            e["props"] = json!({ *p: p, "nested": {"html": "<b>", "sql": "1; DELETE FROM events"} });
            e
        })
        .collect();
    let (status, _, body) = post(&s.url, None, batch("wk_globex", events)).await;
    assert_eq!(status, 200, "{body}");
    let rows = stored_rows(&s.db);
    for (i, p) in payloads.iter().enumerate() {
        let row = rows.iter().find(|r| r.0 == format!("h{i}")).expect("stored");
        assert_eq!(row.1, *p, "name verbatim");
        let props: Value = serde_json::from_str(&row.2).expect("props JSON");
        assert_eq!(props[*p], json!(p), "props verbatim");
    }
    // Served as JSON (never HTML), so the names arrive as data with every character escaped.
    let steps = payloads.iter().map(|p| urlencode(p)).collect::<Vec<_>>().join(",");
    let r = reqwest::Client::new()
        .get(format!("{}/v1/funnel?steps={steps}", s.url))
        .bearer_auth("rt_globex")
        .send()
        .await
        .expect("get");
    assert!(r.headers()["content-type"].to_str().is_ok_and(|t| t.starts_with("application/json")));
    let text = r.text().await.expect("text");
    assert!(!text.contains('\u{0}'), "control characters escaped");
    let report: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(report["steps"][1]["name"], payloads[1]);
    assert_eq!(report["steps"][0]["users"], 1, "the SQL-looking name is just a name");
    println!("| malformed and hostile batches (valid hostile events) | {0} | {0} | 0 | 0 |", payloads.len());
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let s = start(generous()).await;
    assert_eq!(post(&s.url, None, batch("wk_globex", vec![event("m1", "a", NOW), event("m2", "a", NOW)])).await.0, 200);
    assert_eq!(post(&s.url, None, batch("wk_nope", vec![event("m3", "a", NOW)])).await.0, 401);
    for (path, want) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let r = reqwest::get(format!("{}{path}", s.url)).await.expect("get");
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.expect("text"), want);
    }
    let metrics = reqwest::get(format!("{}/metrics", s.url)).await.expect("get").text().await.expect("text");
    assert!(metrics.contains("onramp_events_accepted_total 2\n"), "{metrics}");
    assert!(metrics.contains("onramp_events_rejected_total{reason=\"unknown_key\"} 1\n"), "{metrics}");
    assert!(metrics.contains("onramp_batch_duration_seconds_count 2\n"), "{metrics}");
    assert!(metrics.contains("onramp_writer_queue_depth 0\n"), "{metrics}");
}

#[tokio::test]
async fn event_ids_are_deduplicated_per_project_not_across_projects() {
    let s = start(generous()).await;
    let same = || batch_from("wk_acme", "x1");
    assert_eq!(post(&s.url, None, same()).await.0, 200);
    assert_eq!(post(&s.url, None, same()).await.0, 200, "a resend");
    assert_eq!(post(&s.url, None, batch_from("wk_globex", "x1")).await.0, 200);
    let rows = stored_rows(&s.db);
    assert_eq!(rows.len(), 2, "one row per project, the resend folded: {rows:?}");
    for token in ["rt_acme", "rt_globex"] {
        let r = reqwest::Client::new()
            .get(format!("{}/v1/funnel?steps=a", s.url))
            .bearer_auth(token)
            .send()
            .await
            .expect("get");
        assert_eq!(r.json::<Value>().await.expect("json")["steps"][0]["users"], 1, "{token} sees its event");
    }
}

fn batch_from(key: &str, id: &str) -> String {
    batch(key, vec![event(id, "a", NOW)])
}

/// A database written by a collector before the per-project key (migrations 0001–0004) is
/// migrated in place: its events kept, and the same id then accepted for another project.
#[tokio::test]
async fn old_databases_are_migrated_to_the_per_project_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("old.db");
    {
        let conn = rusqlite::Connection::open(&db).expect("open");
        let migrations = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        for file in ["0001_events.sql", "0002_analytics.sql", "0003_plans.sql", "0004_analytics_covering.sql"] {
            conn.execute_batch(&std::fs::read_to_string(migrations.join(file)).expect("migration")).expect(file);
        }
        conn.pragma_update(None, "user_version", 4).expect("version");
        conn.execute(
            "INSERT INTO events (id, project, type, name, anonymous_id, user_id, ts, client_ts, sent_at, received_at, props)
             VALUES ('x1', 'acme', 'track', 'a', 'anon', 'u1', 1, 1, 1, 1, '{}')",
            [],
        )
        .expect("old event");
    }
    let store = SqliteStore::open(&db).expect("migrate");
    drop(store);
    let conn = rusqlite::Connection::open(&db).expect("open");
    let pk: Vec<(String, i64)> = conn
        .prepare("SELECT name, pk FROM pragma_table_info('events') WHERE pk > 0 ORDER BY pk")
        .expect("pragma")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect();
    assert_eq!(pk, [("project".to_string(), 1), ("id".to_string(), 2)]);
    let indexes: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' AND sql IS NOT NULL", [], |r| r.get(0))
        .expect("indexes");
    // 0006 recreates the four indexes; 0014 then folds `events_by_name` into `events_by_type`.
    assert_eq!(indexes, 3, "every index recreated");
    conn.execute(
        "INSERT INTO events (id, project, type, name, anonymous_id, user_id, ts, client_ts, sent_at, received_at, props)
         VALUES ('x1', 'globex', 'track', 'a', 'anon', 'u1', 1, 1, 1, 1, '{}')",
        [],
    )
    .expect("the same id in another project is another event");
    assert_eq!(stored_rows(&db).len(), 2);
}
