//! Helpers shared by the collector's socket tests: a collector on a free port over any store,
//! and a small HTTP client for the ingest and query APIs.

#![allow(dead_code)] // each test file uses its own subset

pub mod history;
pub mod plan_versions;
pub mod stalled_export;

use std::sync::Arc;

use onramp_collector::store::clickhouse::server::LocalServer;
use onramp_collector::store::clickhouse::ClickHouseStore;
use onramp_collector::store::Store;
use onramp_collector::{AppState, Config};
use serde_json::{json, Value};

pub struct Collector {
    pub url: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

pub async fn serve(store: Arc<dyn Store>) -> Collector {
    serve_with_clock(store, None).await
}

/// `clock`: a fixed collector time, or `None` for the system clock.
pub async fn serve_with_clock(store: Arc<dyn Store>, clock: Option<i64>) -> Collector {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut state = AppState::new(Config::default(), store);
    if let Some(now) = clock {
        state.clock = Arc::new(move || now);
    }
    tokio::spawn(onramp_collector::run(listener, state, async move {
        let _ = stopped.await;
    }));
    Collector { url, _stop: stop }
}

/// A fresh clickhouse-server with the onramp schema in database `onramp`.
pub async fn clickhouse() -> (LocalServer, Arc<ClickHouseStore>) {
    let server = tokio::task::spawn_blocking(LocalServer::start).await.expect("join").expect("start clickhouse-server");
    let store = ClickHouseStore::open(&server.store_url("onramp")).await.expect("open ClickHouse store");
    (server, Arc::new(store))
}

pub fn event(id: &str, name: &str, anon: &str, user: Option<&str>, ts: i64) -> Value {
    let mut e = json!({"id": id, "type": "track", "name": name, "anonymousId": anon, "ts": ts, "props": {}});
    if let Some(u) = user {
        e["userId"] = json!(u);
    }
    e
}

pub fn batch(sent_at: i64, events: Vec<Value>) -> String {
    json!({"writeKey": "wk_demo", "sentAt": sent_at, "events": events}).to_string()
}

pub async fn post(url: &str, body: String) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{url}/v1/batch"))
        .header("content-type", "text/plain")
        .header("origin", "http://localhost:3000")
        .body(body)
        .send()
        .await
        .expect("post")
}

/// `POST /v1/known` from the demo page's origin: the status, and the ids named as stored (sorted).
pub async fn known(url: &str, write_key: &str, ids: &[&str]) -> (u16, Vec<String>) {
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/known"))
        .header("content-type", "text/plain")
        .header("origin", "http://localhost:3000")
        .body(json!({"writeKey": write_key, "ids": ids}).to_string())
        .send()
        .await
        .expect("post");
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    let mut known: Vec<String> = body["known"].as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect()).unwrap_or_default();
    known.sort();
    (status, known)
}

/// GET a read-API path (e.g. `/v1/funnel?steps=a,b`) with the demo read token.
pub async fn get(url: &str, path_and_query: &str) -> Value {
    let r = reqwest::Client::new()
        .get(format!("{url}{path_and_query}"))
        .bearer_auth("rt_demo")
        .send()
        .await
        .expect("get");
    assert!(r.status().is_success(), "{path_and_query}: {}", r.status());
    r.json().await.expect("json")
}

pub async fn funnel(url: &str, steps: &str) -> Value {
    get(url, &format!("/v1/funnel?steps={steps}&users=true")).await
}

/// A two-step cohorts answer as (start, users, reached step 1, reached step 2) rows.
pub fn cohort_rows(cohorts: &Value) -> Vec<(i64, usize, usize, usize)> {
    let n = |v: &Value| v.as_u64().expect("count") as usize;
    let rows = cohorts["cohorts"].as_array().expect("cohorts");
    rows.iter().map(|r| (r["start"].as_i64().expect("start"), n(&r["users"]), n(&r["reached"][0]), n(&r["reached"][1]))).collect()
}

/// splitmix64: tiny, seedable, good enough for simulated behaviour (the simulations' users are
/// the same on every run).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}
