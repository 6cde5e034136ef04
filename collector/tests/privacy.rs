//! Privacy operations over a real socket and SQLite (and the same erasure and export on a real
//! ClickHouse): admin tokens, erasure of exactly the user's data (including their anonymous
//! events from before identify, but not another user's events on a shared device, nor the same
//! user id in another project), export, and retention.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use onramp_collector::store::sqlite::SqliteStore;
use onramp_collector::store::{Store, StoredEvent};
use onramp_collector::{AppState, Config, Project};
use serde_json::{json, Value};

mod common;

const NOW: i64 = 1_800_000_000_000;
const DAY: i64 = 86_400_000;

fn project(id: &str, admin: Option<&str>, retention_days: Option<u32>) -> Project {
    Project {
        admin_token: admin.map(String::from),
        retention_days,
        ..Project::new(id, &format!("wk_{id}"), &format!("rt_{id}"), vec!["*".into()])
    }
}

fn ev(id: &str, name: &str, anon: &str, user: Option<&str>, ts: i64) -> Value {
    let mut e = json!({"id": id, "type": "track", "name": name, "anonymousId": anon, "ts": ts, "props": {"n": id}});
    if let Some(u) = user {
        e["userId"] = json!(u);
    }
    e
}

/// Alice: an anonymous event on device a1, identify, one more event. Bob: two events on device
/// a2. A visitor v1 who never identified.
fn acme_events() -> Vec<Value> {
    vec![
        ev("1", "visit", "a1", None, NOW - 5000),
        json!({"id": "2", "type": "identify", "name": "identify", "anonymousId": "a1", "userId": "alice", "ts": NOW - 4000, "props": {"plan": "pro"}}),
        ev("3", "project_created", "a1", Some("alice"), NOW - 3000),
        ev("4", "visit", "a2", Some("bob"), NOW - 2000),
        ev("5", "project_created", "a2", Some("bob"), NOW - 1000),
        ev("6", "visit", "v1", None, NOW - 500),
    ]
}

struct Server {
    url: String,
    state: AppState,
    db: std::path::PathBuf,
    clock: Arc<AtomicI64>,
    _dir: tempfile::TempDir,
    _collector: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("events.db");
    let store = SqliteStore::open(&db).expect("open store");
    let mut config = Config::default();
    config.projects = vec![project("acme", Some("adm_acme"), Some(1)), project("globex", None, None)];
    config.plan_files.clear();
    config.admin_token = Some("adm_global".into());
    let mut state = AppState::new(config, Arc::new(store));
    let clock = Arc::new(AtomicI64::new(NOW));
    let c = clock.clone();
    state.clock = Arc::new(move || c.load(Ordering::SeqCst));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let collector = tokio::spawn(onramp_collector::run(listener, state.clone(), std::future::pending()));
    Server { url, state, db, clock, _dir: dir, _collector: collector }
}

async fn post(url: &str, key: &str, events: Vec<Value>) {
    let body = json!({"writeKey": key, "sentAt": NOW, "events": events}).to_string();
    let r = reqwest::Client::new().post(format!("{url}/v1/batch")).body(body).send().await.expect("post");
    assert_eq!(r.status(), 200);
}

async fn call(method: reqwest::Method, url: &str, token: &str) -> (u16, Value) {
    let r = reqwest::Client::new().request(method, url).bearer_auth(token).send().await.expect("request");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn ids(doc: &Value) -> Vec<String> {
    doc["events"].as_array().expect("events").iter().map(|e| e["id"].as_str().unwrap_or("").to_owned()).collect()
}

fn stored_ids(db: &std::path::Path, project: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).expect("open");
    let mut stmt = conn.prepare("SELECT id FROM events WHERE project = ?1 ORDER BY id").expect("prepare");
    stmt.query_map([project], |r| r.get(0)).expect("query").map(|r| r.expect("row")).collect()
}

#[tokio::test]
async fn erase_and_export_exactly_the_users_data_with_an_admin_token() {
    let s = start().await;
    post(&s.url, "wk_acme", acme_events()).await;
    post(&s.url, "wk_globex", vec![ev("1", "visit", "g1", Some("alice"), NOW)]).await;
    let user = |id: &str| format!("{}/v1/users/{id}", s.url);
    let export = |id: &str| format!("{}/v1/users/{id}/export", s.url);

    // Tokens: the read token never opens these; a project's admin token only its own project.
    assert_eq!(call(reqwest::Method::DELETE, &user("alice"), "rt_acme").await.0, 401);
    assert_eq!(call(reqwest::Method::GET, &export("alice"), "rt_acme").await.0, 401);
    assert_eq!(call(reqwest::Method::DELETE, &format!("{}?project=globex", user("alice")), "adm_acme").await.0, 401);
    assert_eq!(call(reqwest::Method::GET, &export("alice"), "adm_global").await.0, 400, "which project?");

    // The export: Alice's anonymous event from before identify, the identify, her event.
    let (status, doc) = call(reqwest::Method::GET, &export("alice"), "adm_acme").await;
    assert_eq!(status, 200);
    assert_eq!(ids(&doc), ["1", "2", "3"]);
    assert_eq!(doc["identities"], json!([{"anonymousId": "a1", "userId": "alice"}]));
    assert_eq!(doc["events"][2]["props"], json!({"n": "3"}), "props as JSON");
    assert_eq!(doc["events"][2]["clientTs"], NOW - 3000);

    // Erasure.
    let (status, body) = call(reqwest::Method::DELETE, &format!("{}?project=acme", user("alice")), "adm_global").await;
    assert_eq!((status, &body["erasedEvents"]), (200, &json!(3)), "{body}");
    assert_eq!(stored_ids(&s.db, "acme"), ["4", "5", "6"]);
    assert_eq!(stored_ids(&s.db, "globex"), ["1"], "the same user id in another project is untouched");
    let (_, doc) = call(reqwest::Method::GET, &export("alice"), "adm_acme").await;
    assert_eq!((ids(&doc).len(), &doc["identities"]), (0, &json!([])));
    let (_, doc) = call(reqwest::Method::GET, &export("bob"), "adm_acme").await;
    assert_eq!(ids(&doc), ["4", "5"], "Bob keeps his events");
    let funnel = reqwest::Client::new()
        .get(format!("{}/v1/funnel?steps=visit&users=true", s.url))
        .bearer_auth("rt_acme")
        .send()
        .await
        .expect("get")
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(funnel["steps"][0]["userIds"], json!(["bob"]), "v1 never identified: a visitor, not a user");

    // A visitor who never identified is erased by their anonymous id.
    let (status, body) = call(reqwest::Method::DELETE, &user("v1"), "adm_acme").await;
    assert_eq!((status, &body["erasedEvents"]), (200, &json!(1)));
    assert_eq!(stored_ids(&s.db, "acme"), ["4", "5"]);
    // Their rollup rows went with their events: the rollups agree with a recompute.
    assert_eq!(s.state.store.verify_rollups(Some("acme")).await.expect("verify"), Vec::<String>::new());
}

#[tokio::test]
async fn retention_deletes_raw_events_older_than_the_project_keeps() {
    let s = start().await;
    post(&s.url, "wk_acme", acme_events()).await;
    post(&s.url, "wk_globex", vec![ev("g", "visit", "g1", None, NOW - 3000)]).await;
    // Half a day later nothing is past acme's 1-day retention.
    s.clock.store(NOW + DAY / 2, Ordering::SeqCst);
    let done = onramp_collector::privacy::apply_retention(&s.state).await;
    assert!(matches!(done.as_slice(), [(p, Ok(0))] if p == "acme"), "{done:?}");
    // A day after event 3 (NOW − 3000): events 1–3 are older than a day, 4–6 are not.
    s.clock.store(NOW - 3000 + DAY + 1, Ordering::SeqCst);
    let done = onramp_collector::privacy::apply_retention(&s.state).await;
    assert!(matches!(done.as_slice(), [(p, Ok(3))] if p == "acme"), "{done:?}");
    assert_eq!(stored_ids(&s.db, "acme"), ["4", "5", "6"]);
    assert_eq!(stored_ids(&s.db, "globex"), ["g"], "no retention set: kept");
    // The devices that lost events have their rollups recomputed from what remains: Alice's
    // device a1 had only events 1–3, so it is gone from the rollups and from the users.
    assert_eq!(s.state.store.verify_rollups(None).await.expect("verify"), Vec::<String>::new());
    let mut users: Vec<String> = s.state.store.users("acme").await.expect("users").into_iter().map(|u| u.user).collect();
    users.sort();
    assert_eq!(users, ["bob", "v1"]);
}

/// The same erasure and export against a real ClickHouse give the same answers as SQLite.
#[tokio::test]
async fn clickhouse_erases_and_exports_as_sqlite_does() {
    let (_server, clickhouse) = common::clickhouse().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = SqliteStore::open(dir.path().join("e.db")).expect("sqlite");
    let batch = json!({"writeKey": "wk_acme", "sentAt": NOW, "events": acme_events()}).to_string();
    let events: Vec<StoredEvent> = onramp::core::wire::Batch::parse(&batch)
        .expect("batch")
        .events
        .into_iter()
        .map(|event| StoredEvent { project: "acme".into(), ts: event.ts, event, sent_at: NOW, received_at: NOW })
        .collect();
    let other = StoredEvent { project: "globex".into(), ..events[2].clone() };
    let stores: [&dyn Store; 2] = [&sqlite, clickhouse.as_ref()];
    for store in stores {
        store.insert(events.clone()).await.expect("insert");
        store.insert(vec![other.clone()]).await.expect("insert");
    }
    // The webhook outbox behaves the same on both: one notification per (project, kind, user),
    // due until delivered, retried when due.
    let n = |user: &str, at: i64| onramp_collector::store::Notification {
        id: format!("msg_{user}"),
        project: "acme".into(),
        kind: "value_reached".into(),
        user: user.into(),
        payload: format!("{{\"user\":\"{user}\"}}"),
        created_at: at,
        attempts: 0,
    };
    for store in stores {
        store.enqueue_notifications(vec![n("alice", 10), n("bob", 11)]).await.expect("enqueue");
        store.enqueue_notifications(vec![n("alice", 12)]).await.expect("enqueue again");
        let due = store.due_notifications(100, 10).await.expect("due");
        assert_eq!(due, vec![n("alice", 10), n("bob", 11)], "the first copy, once");
        use onramp_collector::store::Attempt;
        store.record_attempt("msg_alice", Attempt::Retry { next: 200, error: "503".into() }).await.expect("retry");
        store.record_attempt("msg_bob", Attempt::Delivered { at: 100 }).await.expect("delivered");
        assert!(store.due_notifications(150, 10).await.expect("due").is_empty());
        let due = store.due_notifications(200, 10).await.expect("due");
        assert_eq!((due.len(), due[0].attempts), (1, 1));
    }
    for user in ["alice", "bob", "v1", "a1"] {
        let (a, b) = (sqlite.user_data("acme", user).await.expect("sqlite"), clickhouse.user_data("acme", user).await.expect("ch"));
        assert_eq!(a, b, "{user}");
    }
    assert_eq!(sqlite.user_data("acme", "alice").await.expect("data").events.len(), 3);
    for store in stores {
        assert_eq!(store.erase_user("acme", "alice").await.expect("erase"), 3);
        let mut users: Vec<String> = store.users("acme").await.expect("users").into_iter().map(|u| u.user).collect();
        users.sort();
        assert_eq!(users, ["bob", "v1"]);
        assert_eq!(store.verify_rollups(Some("acme")).await.expect("verify"), Vec::<String>::new(), "rollups erased too");
        assert_eq!(store.users("globex").await.expect("users").len(), 1, "other project untouched");
        assert_eq!(store.delete_events_before("acme", NOW - 1500).await.expect("retention"), 1, "event 4");
        assert_eq!(store.verify_rollups(Some("acme")).await.expect("verify"), Vec::<String>::new(), "rollups follow retention");
        let first_seen = store.users("acme").await.expect("users").into_iter().find(|u| u.user == "bob").map(|u| u.first_seen);
        assert_eq!(first_seen, Some(NOW - 1000), "bob's first remaining event");
        assert_eq!(store.user_data("acme", "bob").await.expect("bob").events.len(), 1);
        assert!(store.due_notifications(1000, 10).await.expect("due").is_empty(), "alice's notification erased with her");
    }
}
