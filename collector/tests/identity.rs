//! Identity verification over a real socket and SQLite: events naming a user must carry the
//! `userHash` the customer's backend computed, as the docs' Node and Python snippets compute it
//! (run here as the oracle); refused or kept anonymous as the project says.

use std::sync::Arc;

use onramp_collector::config::IdentityEnforcement;
use onramp_collector::store::sqlite::SqliteStore;
use onramp_collector::{AppState, Config, Project};
use serde_json::{json, Value};

const SECRET: &str = "sk_identity_4f1c2b";
const NOW: i64 = 1_800_000_000_000;

/// docs/IDENTITY.md's Python snippet.
fn python_hash(user: &str) -> String {
    let script = "import hashlib, hmac, sys\n\
                  print(hmac.new(sys.argv[1].encode(), sys.argv[2].encode(), hashlib.sha256).hexdigest())";
    run("python3", &["-c", script, SECRET, user])
}

/// docs/IDENTITY.md's Node snippet.
fn node_hash(user: &str) -> String {
    let script = "const crypto = require('node:crypto');\n\
                  console.log(crypto.createHmac('sha256', process.argv[1]).update(process.argv[2]).digest('hex'));";
    run("node", &["-e", script, SECRET, user])
}

fn run(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn project(id: &str, enforcement: IdentityEnforcement) -> Project {
    Project {
        identity_secret: Some(SECRET.into()),
        identity_enforcement: enforcement,
        ..Project::new(id, &format!("wk_{id}"), &format!("rt_{id}"), vec!["*".into()])
    }
}

async fn start() -> (String, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("events.db");
    let mut config = Config::default();
    config.plan_files.clear();
    config.projects = vec![
        project("strict", IdentityEnforcement::Reject),
        project("lenient", IdentityEnforcement::Anonymous),
        project("rollout", IdentityEnforcement::Off),
    ];
    let mut state = AppState::new(config, Arc::new(SqliteStore::open(&db).expect("store")));
    state.clock = Arc::new(|| NOW);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(onramp_collector::run(listener, state, std::future::pending()));
    (url, db, dir)
}

fn ev(id: &str, user: Option<&str>, hash: Option<&str>) -> Value {
    let mut e = json!({"id": id, "type": "track", "name": "n", "anonymousId": "anon-1", "ts": NOW});
    if let Some(u) = user {
        e["userId"] = json!(u);
    }
    if let Some(h) = hash {
        e["userHash"] = json!(h);
    }
    e
}

async fn post(url: &str, key: &str, events: Vec<Value>) -> (u16, Value) {
    let body = json!({"writeKey": key, "sentAt": NOW, "events": events}).to_string();
    let r = reqwest::Client::new().post(format!("{url}/v1/batch")).body(body).send().await.expect("post");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn rows(db: &std::path::Path, project: &str) -> Vec<(String, Option<String>)> {
    let conn = rusqlite::Connection::open(db).expect("open");
    let mut stmt = conn.prepare("SELECT id, user_id FROM events WHERE project = ?1 ORDER BY id").expect("prepare");
    stmt.query_map([project], |r| Ok((r.get(0)?, r.get(1)?))).expect("query").map(|r| r.expect("row")).collect()
}

#[tokio::test]
async fn events_claiming_a_user_need_the_hash_the_customers_backend_computes() {
    let (url, db, _dir) = start().await;
    let alice = python_hash("alice@example.com");
    assert_eq!(alice, node_hash("alice@example.com"), "the documented snippets agree");

    // Strict: the valid hash passes; a missing or wrong one is refused, naming event and field,
    // and nothing of that batch is stored. Anonymous events need no hash.
    let (status, _) = post(&url, "wk_strict", vec![ev("s1", Some("alice@example.com"), Some(&alice)), ev("s2", None, None)]).await;
    assert_eq!(status, 200);
    let forged = python_hash("mallory@example.com");
    let (status, body) = post(
        &url,
        "wk_strict",
        vec![ev("s3", Some("alice@example.com"), None), ev("s4", None, None), ev("s5", Some("alice@example.com"), Some(&forged))],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let errors = body["errors"].as_array().expect("errors");
    assert_eq!(errors.iter().map(|e| (e["index"].as_u64(), e["field"].as_str())).collect::<Vec<_>>(), [(Some(0), Some("userHash")), (Some(2), Some("userHash"))]);
    assert!(errors[0]["message"].as_str().is_some_and(|m| m.contains("is missing") && m.contains("IDENTITY.md")), "{body}");
    assert!(errors[1]["message"].as_str().is_some_and(|m| m.contains("does not match")), "{body}");
    assert_eq!(rows(&db, "strict"), [("s1".into(), Some("alice@example.com".into())), ("s2".into(), None)]);

    // Anonymous: the unverified claim is dropped, the event kept.
    let (status, _) = post(&url, "wk_lenient", vec![ev("l1", Some("alice@example.com"), Some(&forged)), ev("l2", Some("alice@example.com"), Some(&alice))]).await;
    assert_eq!(status, 200);
    assert_eq!(rows(&db, "lenient"), [("l1".into(), None), ("l2".into(), Some("alice@example.com".into()))]);

    // Off (rolling out): accepted as claimed.
    assert_eq!(post(&url, "wk_rollout", vec![ev("r1", Some("bob"), None)]).await.0, 200);
    assert_eq!(rows(&db, "rollout"), [("r1".into(), Some("bob".into()))]);

    // The hash is a credential, never stored.
    let props: String = rusqlite::Connection::open(&db)
        .expect("open")
        .query_row("SELECT group_concat(props) FROM events", [], |r| r.get(0))
        .expect("props");
    assert!(!props.contains(&alice));
}
