//! The collector over a real socket with a real clickhouse-server (Debian's 18.16), started by
//! the test itself on loopback with a temporary config and data directory.

mod common;

use common::{batch, clickhouse, event, funnel, post, serve};
use serde_json::json;

#[tokio::test]
async fn stores_batches_once_links_identities_and_reports_the_funnel() {
    let (_server, store) = clickhouse().await;
    let c = serve(store.clone()).await;
    let body = batch(1_000_000, vec![
        event("e1", "signed_up", "anon-a", None, 1_000_000),
        json!({"id": "e2", "type": "identify", "name": "identify", "anonymousId": "anon-a", "userId": "alice", "ts": 1_000_001}),
        event("e3", "project_created", "anon-a", Some("alice"), 1_000_002),
        event("e4", "signed_up", "anon-b", Some("bob"), 1_000_003),
        event("e5", "it's", "anon-q", Some("quote\\'d"), 1_000_004),
    ]);
    assert_eq!(post(&c.url, body.clone()).await.status(), 200);
    // A resend of the same events (lost acknowledgement) is stored once.
    assert_eq!(post(&c.url, body).await.status(), 200);

    let report = funnel(&c.url, "signed_up,project_created").await;
    assert_eq!(report["steps"][0]["userIds"], json!(["alice", "bob"]), "anon-a's early event counts for alice");
    assert_eq!(report["steps"][1]["userIds"], json!(["alice"]));
    assert_eq!(report["steps"][1]["conversionFromPrevious"], 0.5);
    // Names and ids with quotes and backslashes survive the round trip.
    assert_eq!(funnel(&c.url, "it's").await["steps"][0]["userIds"], json!(["quote\\'d"]));
    let (rows, distinct) = store.event_counts().await.expect("counts");
    assert_eq!((rows, distinct), (10, 5), "the resend is stored, and folded by FINAL");
    assert_eq!(
        store.window_funnel_counts("demo", &["signed_up".into(), "project_created".into()], None).await.expect("windowFunnel"),
        vec![2, 1]
    );
}

#[tokio::test]
async fn migrations_are_idempotent_and_recorded() {
    let (server, _store) = clickhouse().await;
    // A second collector starting against the same database migrates nothing twice.
    let _again = onramp_collector::store::clickhouse::ClickHouseStore::open(&server.store_url("onramp")).await.expect("reopen");
    let versions = server.query("SELECT count(), max(version) FROM onramp.onramp_migrations").expect("query");
    assert_eq!(versions.trim(), "1\t1");
    let engine = server.query("SELECT engine FROM system.tables WHERE database = 'onramp' AND name = 'events'").expect("query");
    assert_eq!(engine.trim(), "ReplacingMergeTree");
}
