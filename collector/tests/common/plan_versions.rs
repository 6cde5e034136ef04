//! The plan version scenario, run against every store (SQLite in plans.rs, ClickHouse in
//! clickhouse.rs): versions with author, time and message, `base` conflicts, rollback, check.

use reqwest::StatusCode;
use serde_json::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The collector's clock in the scenario (give it to `serve_with_clock`).
pub const NOW: i64 = 1_700_000_000_000;

pub async fn get_plan(url: &str) -> reqwest::Response {
    reqwest::get(format!("{url}/v1/plan?writeKey=wk_demo")).await.expect("get plan")
}

pub async fn editor(url: &str, method: reqwest::Method, path: &str, body: Option<String>) -> reqwest::Response {
    let mut req = reqwest::Client::new().request(method, format!("{url}{path}")).bearer_auth("et_demo");
    if let Some(b) = body {
        req = req.body(b);
    }
    req.send().await.expect("request")
}

/// The same plan with another `version` field and one tip's title changed, so versions differ.
pub fn variant(plan: &str, n: u32) -> String {
    plan.replacen("\"version\": \"trackly-2026-11-23.1\"", &format!("\"version\": \"trackly-v{n}\""), 1)
        .replacen("Start here", &format!("Start here ({n})"), 1)
}

/// Runs against a collector serving the demo project from its plan file, nothing stored yet.
pub async fn scenario(url: &str) {
    let c = Url { url: url.to_string() };
    let demo = std::fs::read_to_string(format!("{ROOT}/pkg-config/plans/trackly.json")).expect("demo plan");
    let (v1, v2) = (variant(&demo, 1), variant(&demo, 2));
    assert_ne!(v1, demo);

    // Before anything is stored, the start-up file is live and the history is empty.
    let history: Value = editor(&c.url, reqwest::Method::GET, "/v1/plan/versions", None).await.json().await.expect("json");
    assert_eq!(history["live"]["source"], "file");
    assert_eq!(history["current"], Value::Null);
    assert_eq!(history["versions"], serde_json::json!([]));
    let read = reqwest::Client::new().get(format!("{}/v1/plan/versions", c.url)).bearer_auth("rt_demo").send().await.expect("get");
    assert_eq!(read.status(), StatusCode::UNAUTHORIZED, "the read token does not see the editing history");

    let put = |body: String, query: &'static str| editor(&c.url, reqwest::Method::PUT, query, Some(body));
    let first = put(v1.clone(), "/v1/plan?message=Shorter%20welcome&base=none").await;
    assert_eq!(first.status(), StatusCode::OK);
    let first: Value = first.json().await.expect("json");
    assert_eq!(first["number"], 1);
    // An edit started from "no version" after version 1 exists is someone else's race: 409.
    let stale = put(v2.clone(), "/v1/plan?base=none").await;
    assert_eq!(stale.status(), StatusCode::CONFLICT);
    assert_eq!(stale.json::<Value>().await.expect("json")["current"], 1);
    let second = put(v2.clone(), "/v1/plan?message=Tip%20copy&base=1").await;
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(get_plan(&c.url).await.text().await.expect("body"), v2, "the newest version is served");

    let history: Value = editor(&c.url, reqwest::Method::GET, "/v1/plan/versions", None).await.json().await.expect("json");
    assert_eq!(history["current"], 2);
    assert_eq!(history["live"]["source"], "version");
    let versions = history["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["number"], 2, "newest first");
    assert_eq!(versions[0]["message"], "Tip copy");
    assert_eq!(versions[0]["planVersion"], "trackly-v2");
    assert_eq!(versions[0]["author"], serde_json::json!({"kind": "editor", "name": "demo"}));
    assert_eq!(versions[0]["createdAt"], NOW);
    assert_eq!(versions[1]["message"], "Shorter welcome");
    assert_eq!(history["live"]["etag"], versions[0]["etag"]);

    // The editor reads the live plan with its number; one old version's text verbatim.
    let live = editor(&c.url, reqwest::Method::GET, "/v1/plan", None).await;
    assert_eq!(live.headers()["onramp-plan-version"], "2");
    assert_eq!(live.text().await.expect("body"), v2);
    let old = editor(&c.url, reqwest::Method::GET, "/v1/plan/versions/1", None).await;
    assert_eq!(old.text().await.expect("body"), v1);
    assert_eq!(editor(&c.url, reqwest::Method::GET, "/v1/plan/versions/9", None).await.status(), StatusCode::NOT_FOUND);

    // Rollback: one call, a new version 3 with version 1's text, served at once.
    let back = editor(&c.url, reqwest::Method::POST, "/v1/plan/rollback", Some(r#"{"version": 1, "base": 2}"#.into())).await;
    assert_eq!(back.status(), StatusCode::OK);
    let back: Value = back.json().await.expect("json");
    assert_eq!((back["number"].as_u64(), back["rollbackOf"].as_u64()), (Some(3), Some(1)));
    assert_eq!(get_plan(&c.url).await.text().await.expect("body"), v1);
    let history: Value = editor(&c.url, reqwest::Method::GET, "/v1/plan/versions", None).await.json().await.expect("json");
    assert_eq!(history["versions"][0]["message"], "Roll back to version 1");
    assert_eq!(history["versions"][0]["rollbackOf"], 1);
    assert_eq!(history["versions"][0]["etag"], history["versions"][2]["etag"], "the same text, so the same ETag");
    let stale = editor(&c.url, reqwest::Method::POST, "/v1/plan/rollback", Some(r#"{"version": 2, "base": 2}"#.into())).await;
    assert_eq!(stale.status(), StatusCode::CONFLICT, "rolling back from a view that is out of date");
    let missing = editor(&c.url, reqwest::Method::POST, "/v1/plan/rollback", Some(r#"{"version": 42}"#.into())).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // Check: the PUT's validation, nothing stored.
    let broken = std::fs::read_to_string(format!("{ROOT}/tests/plans/broken/zero-count.json")).expect("plan");
    let checked = editor(&c.url, reqwest::Method::POST, "/v1/plan/check", Some(broken)).await;
    assert_eq!(checked.status(), StatusCode::OK, "the check worked; its verdict is in the body");
    let error: Value = checked.json().await.expect("json");
    assert_eq!(error["ok"], false);
    assert_eq!(error["pointer"], "/milestones/0/condition/count");
    assert_eq!(error["expected"], "a whole number from 1 to 1000000");
    let ok: Value = editor(&c.url, reqwest::Method::POST, "/v1/plan/check", Some(v2)).await.json().await.expect("json");
    assert_eq!((ok["ok"].as_bool(), ok["tips"].as_u64()), (Some(true), Some(5)));
    let history: Value = editor(&c.url, reqwest::Method::GET, "/v1/plan/versions", None).await.json().await.expect("json");
    assert_eq!(history["versions"].as_array().map(Vec::len), Some(3), "a check stores nothing");
}

struct Url {
    url: String,
}
