//! Plans over a real socket with a real SQLite file: served with ETag revalidation, replaced by
//! an authenticated and validated PUT, and checked from the command line.

mod common;

use std::sync::Arc;

use onramp_collector::store::sqlite::SqliteStore;
use reqwest::StatusCode;
use serde_json::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

async fn sqlite() -> (tempfile::TempDir, common::Collector) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path().join("events.db")).expect("open store");
    let collector = common::serve(Arc::new(store)).await;
    (dir, collector)
}

async fn get_plan(url: &str, etag: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(format!("{url}/v1/plan?writeKey=wk_demo"));
    if let Some(tag) = etag {
        req = req.header("if-none-match", tag);
    }
    req.send().await.expect("get plan")
}

async fn put_plan(url: &str, token: Option<&str>, body: String) -> reqwest::Response {
    let mut req = reqwest::Client::new().put(format!("{url}/v1/plan")).body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("put plan")
}

#[tokio::test]
async fn serves_the_demo_plan_with_etag_revalidation() {
    let (_dir, c) = sqlite().await;
    let first = get_plan(&c.url, None).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()["cache-control"], "no-cache");
    let etag = first.headers()["etag"].to_str().expect("etag").to_string();
    let body = first.text().await.expect("body");
    let demo = std::fs::read_to_string(format!("{ROOT}/pkg-config/plans/trackly.json")).expect("demo plan");
    assert_eq!(body, demo, "the plan file is served verbatim");

    let again = get_plan(&c.url, Some(&etag)).await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(get_plan(&c.url, Some("\"p0000000000000000\"")).await.status(), StatusCode::OK);

    let unknown = reqwest::get(format!("{}/v1/plan?writeKey=wk_nope", c.url)).await.expect("get");
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_project_without_a_plan_gets_204_not_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path().join("events.db")).expect("open store");
    let mut config = onramp_collector::Config::default();
    config.plan_files.clear();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let state = onramp_collector::AppState::new(config, Arc::new(store));
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(onramp_collector::run(listener, state, async move {
        let _ = stopped.await;
    }));
    let r = get_plan(&url, None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "a 4xx would be logged as an error in the customer's console");
}

#[tokio::test]
async fn a_put_plan_is_validated_stored_and_served_next() {
    let (_dir, c) = sqlite().await;
    let old_etag = get_plan(&c.url, None).await.headers()["etag"].to_str().expect("etag").to_string();
    let shop = std::fs::read_to_string(format!("{ROOT}/pkg-config/plans/shopfront.json")).expect("plan");

    assert_eq!(put_plan(&c.url, None, shop.clone()).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(put_plan(&c.url, Some("wk_demo"), shop.clone()).await.status(), StatusCode::UNAUTHORIZED, "the write key is public");
    let read = put_plan(&c.url, Some("rt_demo"), shop.clone()).await;
    assert_eq!(read.status(), StatusCode::UNAUTHORIZED, "reading reports is not editing onboarding");
    assert!(read.text().await.expect("body").contains("editor token"));

    let broken = std::fs::read_to_string(format!("{ROOT}/tests/plans/broken/two-value-milestones.json")).expect("plan");
    let refused = put_plan(&c.url, Some("et_demo"), broken).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let error: Value = refused.json().await.expect("json");
    assert_eq!(error["pointer"], "/milestones/1/value");
    assert_eq!(error["expected"], "exactly one value milestone");
    assert_eq!(get_plan(&c.url, Some(&old_etag)).await.status(), StatusCode::NOT_MODIFIED, "a refused plan changes nothing");

    let stored = put_plan(&c.url, Some("et_demo"), shop.clone()).await;
    assert_eq!(stored.status(), StatusCode::OK);
    let new = get_plan(&c.url, Some(&old_etag)).await;
    assert_eq!(new.status(), StatusCode::OK, "the old ETag no longer matches");
    assert_eq!(new.text().await.expect("body"), shop);

    // The analytics take their default steps from the stored plan.
    let report: Value = reqwest::Client::new()
        .get(format!("{}/v1/funnel", c.url))
        .bearer_auth("rt_demo")
        .send()
        .await
        .expect("funnel")
        .json()
        .await
        .expect("json");
    let steps: Vec<&str> = report["steps"].as_array().expect("steps").iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(steps, ["products_uploaded", "payment_set_up", "store_opened", "first_sale"]);
}

#[tokio::test]
async fn every_put_is_a_version_with_author_time_and_message_and_rollback_republishes_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path().join("events.db")).expect("open store");
    let c = common::serve_with_clock(Arc::new(store), Some(common::plan_versions::NOW)).await;
    common::plan_versions::scenario(&c.url).await;
}

#[tokio::test]
async fn a_plan_stored_before_versions_becomes_version_1_on_upgrade() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.db");
    let demo = std::fs::read_to_string(format!("{ROOT}/pkg-config/plans/trackly.json")).expect("demo plan");
    {
        // A database as the collector left it before migration 0009 (user_version 7).
        let conn = rusqlite::Connection::open(&path).expect("open");
        for sql in ["0001_events", "0002_analytics", "0003_plans", "0004_analytics_covering", "0005_rollups", "0006_event_key_per_project", "0007_webhook_outbox"] {
            conn.execute_batch(&std::fs::read_to_string(format!("{ROOT}/collector/migrations/{sql}.sql")).expect("sql")).expect(sql);
        }
        conn.execute("INSERT INTO plans VALUES ('demo', ?1, 'trackly-2026-11-23.1', 5)", [&demo]).expect("insert");
        conn.pragma_update(None, "user_version", 7).expect("version");
    }
    let c = common::serve(Arc::new(SqliteStore::open(&path).expect("migrate"))).await;
    let history: Value = common::plan_versions::editor(&c.url, reqwest::Method::GET, "/v1/plan/versions", None).await.json().await.expect("json");
    assert_eq!(history["current"], 1);
    assert_eq!(history["versions"][0]["author"]["kind"], "unknown");
    assert_eq!(history["versions"][0]["etag"], onramp_collector::plans::etag(&demo));
    let next: Value = common::plan_versions::editor(&c.url, reqwest::Method::PUT, "/v1/plan", Some(common::plan_versions::variant(&demo, 1))).await.json().await.expect("json");
    assert_eq!(next["number"], 2);
}

#[test]
fn plan_check_exits_non_zero_naming_the_field() {
    let bin = env!("CARGO_BIN_EXE_onramp-collector");
    let ok = std::process::Command::new(bin)
        .args(["plan", "check", &format!("{ROOT}/pkg-config/plans/trackly.json")])
        .output()
        .expect("run");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("ok (version trackly-"));
    let bad = std::process::Command::new(bin)
        .args(["plan", "check", &format!("{ROOT}/tests/plans/broken/zero-count.json")])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr)
        .contains("plan /milestones/0/condition/count: found 0; expected a whole number from 1 to 1000000"));
}
