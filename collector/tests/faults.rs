//! Fault tests against the real `onramp-collector` binary on loopback with a real SQLite file:
//! the collector killed with -9 in the middle of a load, stopped with SIGTERM in the middle of
//! a load, and down for a while under the SDK's own delivery policy. Each prints a row of the
//! table `scenario | sent | stored | lost | duplicated`; see them with
//! `cargo test -p onramp-collector --test faults -- --nocapture --test-threads=1`.
//!
//! No assertion depends on timing: faults are triggered by counts (after N acknowledged events)
//! and every wait is bounded by a deadline that fails the test.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use onramp::core::client::{Client, Entropy};
use onramp::core::delivery::{Outbox, Policy};
use onramp::core::storage::MemoryStorage;
use onramp::core::wire::EventType;
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(60);

struct Collector {
    child: Child,
    url: String,
}

impl Collector {
    fn start(db: &Path, listen: &str) -> Collector {
        let mut child = Command::new(env!("CARGO_BIN_EXE_onramp-collector"))
            .args(["--listen", listen, "--quiet", "--rate-limit", "100000", "--db"])
            .arg(db)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn collector");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
                }
            }
        });
        let url = rx.recv_timeout(Duration::from_secs(20)).expect("collector did not start");
        Collector { child, url }
    }

    fn addr(&self) -> String {
        self.url.trim_start_matches("http://").to_owned()
    }


    /// Waits (bounded) for the process to exit; returns whether it exited successfully.
    fn wait(&mut self) -> bool {
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        panic!("collector did not exit within 20 s");
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (rows, distinct event ids) in the SQLite file.
fn stored(db: &Path) -> (usize, BTreeSet<String>) {
    let conn = rusqlite::Connection::open(db).expect("open db");
    let mut stmt = conn.prepare("SELECT id FROM events").expect("prepare");
    let ids: Vec<String> = stmt.query_map([], |r| r.get(0)).expect("query").map(|r| r.expect("row")).collect();
    let distinct: BTreeSet<String> = ids.iter().cloned().collect();
    (ids.len(), distinct)
}

fn row(scenario: &str, sent: usize, rows: usize, distinct: usize) {
    println!("| {scenario} | {sent} | {rows} | {} | {} |", sent - distinct.min(sent), rows - distinct);
}

fn now_ms() -> i64 {
    onramp_collector::system_now_ms()
}

fn batch_body(ids: &[String]) -> String {
    let now = now_ms();
    let events: Vec<_> = ids
        .iter()
        .map(|id| json!({"id": id, "type": "track", "name": "load", "anonymousId": "loader", "ts": now, "props": {"id": id}}))
        .collect();
    json!({"writeKey": "wk_demo", "sentAt": now, "events": events}).to_string()
}

async fn send(http: &reqwest::Client, url: &str, body: String) -> u16 {
    match http.post(format!("{url}/v1/batch")).header("content-type", "text/plain").body(body).send().await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

/// Several clients send batches concurrently until `stop_after` events are acknowledged, then
/// `fault` hits the collector; clients keep going until their batches are all tried. Returns
/// the batches acknowledged and those not.
async fn load_with_fault(url: &str, stop_after: usize, fault: impl FnOnce() + Send + 'static) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    const CLIENTS: usize = 6;
    const BATCHES: usize = 60;
    const EVENTS: usize = 20;
    let acked_events = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let url = url.to_owned();
        let acked_events = acked_events.clone();
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let (mut ok, mut failed) = (Vec::new(), Vec::new());
            for b in 0..BATCHES {
                let ids: Vec<String> = (0..EVENTS).map(|i| format!("c{c}-b{b}-e{i}")).collect();
                if send(&http, &url, batch_body(&ids)).await == 200 {
                    acked_events.fetch_add(EVENTS, Ordering::SeqCst);
                    ok.push(ids);
                } else {
                    failed.push(ids);
                }
            }
            (ok, failed)
        }));
    }
    let watcher = {
        let acked_events = acked_events.clone();
        tokio::spawn(async move {
            let end = Instant::now() + DEADLINE;
            while acked_events.load(Ordering::SeqCst) < stop_after {
                assert!(Instant::now() < end, "load never reached {stop_after} acknowledged events");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            fault();
        })
    };
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    for t in tasks {
        let (o, f) = tokio::time::timeout(DEADLINE, t).await.expect("load finished in time").expect("join");
        ok.extend(o);
        failed.extend(f);
    }
    watcher.await.expect("fault ran");
    (ok, failed)
}

/// Resends every batch until acknowledged (bounded): the client's at-least-once half.
async fn resend_all(url: &str, batches: &[Vec<String>]) {
    let http = reqwest::Client::new();
    for ids in batches {
        let end = Instant::now() + DEADLINE;
        while send(&http, url, batch_body(ids)).await != 200 {
            assert!(Instant::now() < end, "resend never acknowledged");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Loads the collector, sends it `signal` once `after` events are acknowledged, checks that
/// every acknowledged event is in the file and how the process ended, then restarts it on the
/// same file, resends what was not acknowledged, and prints the table row.
async fn signal_mid_load(signal: &'static str, after: usize, clean_exit: bool, scenario: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("events.db");
    let mut collector = Collector::start(&db, "127.0.0.1:0");
    let pid = collector.child.id().to_string();
    let (ok, failed) = load_with_fault(&collector.url, after, move || {
        let _ = Command::new("kill").args(["-s", signal, &pid]).status();
    })
    .await;
    assert_eq!(collector.wait(), clean_exit, "{signal}: exit status");
    assert!(!failed.is_empty(), "the {signal} hit mid-load");
    if clean_exit {
        // A clean stop leaves one self-contained file: its WAL copied in and removed, so a copy
        // of the database file alone (an operator's backup of a stopped service) is complete.
        let wal = dir.path().join("events.db-wal");
        assert!(!wal.exists(), "{signal}: the WAL is left beside the database");
        let copy = tempfile::tempdir().expect("tempdir");
        std::fs::copy(&db, copy.path().join("events.db")).expect("copy the database file");
        let acked: BTreeSet<String> = ok.iter().flatten().cloned().collect();
        let (_, in_copy) = stored(&copy.path().join("events.db"));
        assert_eq!(acked.difference(&in_copy).count(), 0, "{signal}: the database file alone misses acknowledged events");
    }

    // Right after the process ended: every acknowledged event is in the file.
    let acked: BTreeSet<String> = ok.iter().flatten().cloned().collect();
    let (_, after_fault) = stored(&db);
    let lost: Vec<_> = acked.difference(&after_fault).collect();
    assert!(lost.is_empty(), "{} acknowledged events lost, e.g. {:?}", lost.len(), lost.first());
    println!("{signal}: {} events acknowledged before the process ended, all in the file", acked.len());

    // Restart on the same file; the clients resend what was not acknowledged.
    let restarted = Collector::start(&db, "127.0.0.1:0");
    resend_all(&restarted.url, &failed).await;
    let sent = (ok.len() + failed.len()) * 20;
    let (rows, distinct) = stored(&db);
    row(scenario, sent, rows, distinct.len());
    assert_eq!((rows, distinct.len()), (sent, sent));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_load_loses_no_acknowledged_event() {
    signal_mid_load("KILL", 1500, false, "collector killed -9 mid-load, restarted").await;
}

/// SIGTERM: stop accepting, answer what is in flight (each only after its commit), exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_in_flight_batches_and_exits() {
    signal_mid_load("TERM", 1000, true, "collector SIGTERM mid-load (drain), restarted").await;
}

struct Rng(u64);
impl Entropy for Rng {
    fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            // xorshift: deterministic, good enough for ids and jitter in a test.
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = self.0 as u8;
        }
    }
}

/// The SDK's delivery core (persistent outbox, backoff, retry) against the real binary, with the
/// collector down for a while in the middle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_outbox_rides_out_a_collector_outage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("events.db");
    let mut collector = Some(Collector::start(&db, "127.0.0.1:0"));
    let addr = collector.as_ref().map(Collector::addr).expect("addr");
    let url = format!("http://{addr}");
    let policy = Policy { flush_interval_ms: 0, base_backoff_ms: 20, max_backoff_ms: 200, ..Policy::default() };
    let mut outbox = Outbox::open(MemoryStorage::default(), "wk_demo".into(), "tab", policy, now_ms());
    let mut client = Client::new("anon".into());
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let http = reqwest::Client::new();
    const TOTAL: usize = 300;
    let (mut recorded, mut acked, mut failures, mut restarted) = (0, 0, 0, false);
    let end = Instant::now() + DEADLINE;
    while recorded < TOTAL || !outbox.is_empty() {
        assert!(Instant::now() < end, "delivery did not finish: {} queued", outbox.len());
        if recorded < TOTAL {
            let e = client.event(EventType::Track, "outage", vec![], now_ms(), &mut rng);
            outbox.push(&e, now_ms());
            recorded += 1;
        }
        // The fault: down after 100 acknowledged, back after 5 failed attempts.
        if acked >= 100 && collector.is_some() && !restarted {
            collector = None; // Drop kills it.
        }
        if collector.is_none() && failures >= 5 {
            collector = Some(Collector::start(&db, &addr));
            restarted = true;
        }
        match outbox.next_batch(now_ms(), false) {
            Some(body) => {
                let n = body.matches("\"outage\"").count();
                let status = send(&http, &url, body).await;
                if status == 200 {
                    acked += n;
                } else {
                    failures += 1;
                }
                outbox.settle(status, None, "", now_ms(), &mut rng);
            }
            None => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    assert!(restarted && failures >= 5, "the outage happened");
    let (rows, distinct) = stored(&db);
    row("collector down for a while, then back (SDK outbox)", TOTAL, rows, distinct.len());
    assert_eq!((rows, distinct.len()), (TOTAL, TOTAL));
}
