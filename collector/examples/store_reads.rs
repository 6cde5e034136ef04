//! Times each store read a full report makes, on an existing store: wall time, and this
//! process's CPU time (what the collector would spend parsing and folding the answer).
//!
//! ```sh
//! cargo run --release -p onramp-collector --example store_reads -- clickhouse://127.0.0.1:8123/onramp demo
//! ```

use std::time::Instant;

use onramp::core::wire::EventType;
use onramp_collector::store::clickhouse::ClickHouseStore;
use onramp_collector::store::{EventFilter, Store};

/// This process's user + system CPU time in ms (Linux /proc).
fn cpu_ms() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0) + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    ticks * 10
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().expect("usage: store_reads STORE_URL [PROJECT]");
    let project = args.next().unwrap_or_else(|| "demo".into());
    let store = ClickHouseStore::open(&url).await.expect("open");
    let milestones = ["signed_up", "project_created", "teammate_invited", "file_uploaded", "report_shared"].map(String::from);
    let firsts = EventFilter { types: vec![EventType::Milestone], names: milestones.to_vec(), ..EventFilter::default() };
    macro_rules! time {
        ($name:expr, $read:expr) => {{
            let (wall, cpu) = (Instant::now(), cpu_ms());
            let rows = $read.await.expect($name).len();
            println!("{:<16} {:>9} rows {:>8.0} ms wall {:>6} ms CPU", $name, rows, wall.elapsed().as_secs_f64() * 1000.0, cpu_ms() - cpu);
        }};
    }
    time!("users", store.users(&project));
    time!("firsts", store.firsts(&project, &firsts));
    time!("tips", store.tips(&project));
    time!("metrics", store.metrics(&project));
    time!("survey events", store.events(&project, &EventFilter::types(&[EventType::Survey]).with_props()));
}
