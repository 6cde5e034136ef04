//! Latency of every analytics route on SQLite, at several data sizes.
//!
//! ```sh
//! cargo run --release -p onramp-collector --example analytics_bench -- --events 100000,1000000
//! ```
//!
//! For each size, a fresh SQLite file is filled with the generated onboarding history of the
//! equivalence test (tips, metrics, anonymous visits, resends) straight through
//! `Store::insert` in large transactions (loading is not what is measured; `store_bench`
//! measures ingest), then each read route is asked over a loopback socket, as the dashboard asks
//! it, and the median of five runs is printed. A measurement, not a test.

#[path = "../tests/common/history.rs"]
#[allow(dead_code)]
mod history;

use std::sync::Arc;
use std::time::{Duration, Instant};

use onramp::core::wire::Batch;
use onramp_collector::store::sqlite::SqliteStore;
use onramp_collector::store::{Store, StoredEvent};
use onramp_collector::{AppState, Config};

const RUNS: usize = 5;
const USERS_PER_CHUNK: usize = 1000;

fn sizes() -> Result<Vec<usize>, String> {
    let mut sizes = vec![100_000, 1_000_000];
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--events" => {
                sizes = value
                    .split(',')
                    .map(|n| n.replace('_', "").parse::<usize>().map_err(|e| format!("--events {n}: {e}")))
                    .collect::<Result<_, _>>()?
            }
            _ => return Err(format!("unknown flag {flag}; use --events N[,N…]")),
        }
    }
    Ok(sizes)
}

/// Inserts generated users until at least `target` events are stored; returns users and events.
async fn fill(store: &SqliteStore, target: usize) -> (usize, usize) {
    let (mut users, mut events) = (0, 0);
    while events < target {
        let mut rows = Vec::new();
        for text in history::history(users..users + USERS_PER_CHUNK, 11) {
            let batch = Batch::parse(&text).expect("generated batch");
            rows.extend(batch.events.into_iter().map(|event| StoredEvent {
                project: "demo".into(),
                ts: event.ts,
                event,
                sent_at: history::NOW,
                received_at: history::NOW,
            }));
        }
        users += USERS_PER_CHUNK;
        events += rows.len();
        store.insert(rows).await.expect("insert");
    }
    (users, events)
}

async fn median(url: &str, path: &str) -> Duration {
    let http = reqwest::Client::new();
    let mut runs = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        let r = http.get(format!("{url}{path}")).bearer_auth("rt_demo").send().await.expect("get");
        assert_eq!(r.status(), 200, "{path}");
        r.bytes().await.expect("body");
        runs.push(started.elapsed());
    }
    runs.sort();
    runs[RUNS / 2]
}

#[tokio::main]
async fn main() {
    let sizes = sizes().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let steps = history::STEPS.join(",");
    let routes = [
        ("funnel", format!("/v1/funnel?steps={steps}&window=7d")),
        ("ttv", format!("/v1/ttv?steps={steps}")),
        ("cohorts/day", format!("/v1/cohorts?steps={steps}&by=day")),
        ("cohorts/week", format!("/v1/cohorts?steps={steps}&by=week")),
        ("tips", "/v1/tips".to_string()),
        ("metrics", "/v1/metrics".to_string()),
        ("stalled", "/v1/stalled?due=project_created:24h,teammate_invited:3d".to_string()),
        ("stalled.csv", "/v1/stalled?due=project_created:24h,teammate_invited:3d&format=csv".to_string()),
        ("funnel+trait", format!("/v1/funnel?steps={steps}&trait.plan=pro")),
        ("report", format!("/v1/report?steps={steps}&due=project_created:24h")),
    ];
    print!("{:<14}", "route (ms)");
    let mut columns = Vec::new();
    for &target in &sizes {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path().join("bench.db")).expect("sqlite");
        let (users, events) = fill(&store, target).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let mut config = Config::default();
        config.plan_files.clear();
        let mut state = AppState::new(config, Arc::new(store));
        state.clock = Arc::new(|| history::NOW);
        tokio::spawn(onramp_collector::run(listener, state, std::future::pending()));
        let mut times = Vec::new();
        for (_, path) in &routes {
            times.push(median(&url, path).await);
        }
        print!(" {:>22}", format!("{events} ev / {users} users"));
        columns.push((dir, times));
    }
    println!();
    for (i, (name, _)) in routes.iter().enumerate() {
        print!("{name:<14}");
        for (_, times) in &columns {
            print!(" {:>22.0}", times[i].as_secs_f64() * 1000.0);
        }
        println!();
    }
}
