//! Ingest throughput and query latency of the two stores, side by side.
//!
//! ```sh
//! cargo run --release -p onramp-collector --example store_bench -- --events 1000000
//! cargo run --release -p onramp-collector --example store_bench -- --events 10000000 --runs 3
//! ```
//!
//! Each store gets a fresh collector (in this process, on a loopback port) and a fresh database:
//! SQLite in a temporary file, ClickHouse in its own temporary clickhouse-server. The generated
//! onboarding history of the equivalence test is posted through the real ingest API by
//! `--clients` concurrent senders in batches of 500 events (as a server-side sender would; the
//! SDK's own batches are smaller), then the read routes are timed. A measurement, not a test:
//! it prints a table and asserts nothing but success.

#[path = "../tests/common/history.rs"]
#[allow(dead_code)]
mod history;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use onramp_collector::store::clickhouse::server::LocalServer;
use onramp_collector::store::clickhouse::ClickHouseStore;
use onramp_collector::store::sqlite::SqliteStore;
use onramp_collector::store::{EventFilter, Store};
use onramp_collector::config::RateLimit;
use onramp_collector::{AppState, Config};
use serde_json::{json, Value};

const USERS_PER_CLAIM: usize = 200;
const EVENTS_PER_POST: usize = 500;

struct Options {
    events: usize,
    /// Timings per query; the median is printed.
    runs: usize,
    clients: usize,
    stores: Vec<String>,
}

fn options() -> Result<Options, String> {
    let mut o = Options { events: 1_000_000, runs: 5, clients: 64, stores: vec!["sqlite".into(), "clickhouse".into()] };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let number = || value.replace('_', "").parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--events" => o.events = number()?,
            "--clients" => o.clients = number()?.max(1),
            "--runs" => o.runs = number()?.max(1),
            "--store" if value == "both" => {}
            "--store" => o.stores = vec![value],
            _ => return Err(format!("unknown flag {flag}; use --events N --clients N --runs N --store sqlite|clickhouse|both")),
        }
    }
    Ok(o)
}

async fn serve(store: Arc<dyn Store>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let mut config = Config::default();
    // The per-key rate limit protects a collector from one noisy site; here it would measure
    // the limiter, not the store.
    config.rate_limit = RateLimit { per_second: 1e9, burst: 1e9 };
    let mut state = AppState::new(config, store);
    state.clock = Arc::new(|| history::NOW);
    tokio::spawn(onramp_collector::run(listener, state, std::future::pending()));
    url
}

/// Posts generated users until `target` events are sent; returns the number sent.
async fn ingest(url: &str, target: usize, clients: usize) -> usize {
    let next_user = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (url, next_user, sent) = (url.to_owned(), next_user.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            while sent.load(Ordering::Relaxed) < target {
                let first = next_user.fetch_add(USERS_PER_CLAIM, Ordering::Relaxed);
                let mut events = Vec::new();
                for batch in history::history(first..first + USERS_PER_CLAIM, 11) {
                    let batch: Value = serde_json::from_str(&batch).expect("generated batch");
                    events.extend(batch["events"].as_array().cloned().unwrap_or_default());
                }
                for chunk in events.chunks(EVENTS_PER_POST) {
                    let body = json!({"writeKey": "wk_demo", "sentAt": history::NOW, "events": chunk}).to_string();
                    let r = http.post(format!("{url}/v1/batch")).body(body).send().await.expect("post");
                    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
                    sent.fetch_add(chunk.len(), Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("sender");
    }
    sent.load(Ordering::Relaxed)
}

/// The median of `runs` timings of `f`.
async fn time<F, Fut>(runs: usize, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut times = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        f().await;
        times.push(started.elapsed());
    }
    times.sort();
    times[runs / 2]
}

async fn get(url: &str, path: &str) {
    let started = Instant::now();
    let r = reqwest::Client::new().get(format!("{url}{path}")).bearer_auth("rt_demo").send().await.expect("get");
    assert_eq!(r.status(), 200, "{path}");
    r.bytes().await.expect("body");
    eprintln!("  {path}: {} ms", ms(started.elapsed()));
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let steps = history::STEPS.join(",");
    let funnel = format!("/v1/funnel?steps={steps}");
    let ttv = format!("/v1/ttv?steps={steps}");
    let report = format!("/v1/report?steps={steps}&due=project_created:24h");
    println!(
        "{:<11} {:>10} {:>9} {:>10} {:>13} {:>10} {:>8} {:>10} {:>13}",
        "store", "events", "ingest s", "events/s", "store reads", "funnel ms", "ttv ms", "report ms", "windowFunnel"
    );
    for name in &o.stores {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut server = None;
        let mut clickhouse = None;
        let store: Arc<dyn Store> = match name.as_str() {
            "sqlite" => Arc::new(SqliteStore::open(dir.path().join("bench.db")).expect("sqlite")),
            "clickhouse" => {
                let s = tokio::task::spawn_blocking(LocalServer::start).await.expect("join").expect("clickhouse-server");
                let store = Arc::new(ClickHouseStore::open(&s.store_url("onramp")).await.expect("open"));
                server = Some(s);
                clickhouse = Some(store.clone());
                store
            }
            other => panic!("unknown store {other}"),
        };
        let url = serve(store.clone()).await;
        let started = Instant::now();
        let sent = ingest(&url, o.events, o.clients).await;
        let took = started.elapsed();
        // Progress on stderr, so a long run that is cut short still says what it measured.
        eprintln!("{name}: ingested {sent} events in {:.1} s", took.as_secs_f64());
        // The store's part of a funnel request: every user, then the steps' events.
        let step_names: Vec<String> = history::STEPS.map(String::from).to_vec();
        let milestones: Vec<onramp_collector::analytics::Step> = history::STEPS.map(onramp_collector::analytics::Step::milestone).to_vec();
        let reads_ms = time(o.runs, || async {
            let started = Instant::now();
            let users = store.users("demo").await.expect("users").len();
            let events = store.events("demo", &EventFilter::names(&step_names)).await.expect("events");
            let count: usize = events.iter().map(|u| u.events.len()).sum();
            eprintln!("  store reads: {users} users, {count} step events: {} ms", ms(started.elapsed()));
        })
        .await;
        let funnel_ms = time(o.runs, || get(&url, &funnel)).await;
        let ttv_ms = time(o.runs, || get(&url, &ttv)).await;
        let report_ms = time(o.runs, || get(&url, &report)).await;
        let window_funnel = match &clickhouse {
            Some(store) => {
                ms(time(o.runs, || async {
                    store.window_funnel_counts("demo", &milestones, None).await.expect("windowFunnel");
                })
                .await)
            }
            None => "-".into(),
        };
        println!(
            "{name:<11} {sent:>10} {:>9.1} {:>10.0} {:>13} {:>10} {:>8} {:>10} {:>13}",
            took.as_secs_f64(),
            sent as f64 / took.as_secs_f64(),
            ms(reads_ms),
            ms(funnel_ms),
            ms(ttv_ms),
            ms(report_ms),
            window_funnel
        );
        drop(server);
    }
}
