//! SQLite figures for `cargo xtask bench` (a benchmark, not a test: it measures and prints).
//!
//! ```text
//! bench_sqlite insert DB EVENTS COMMIT_BATCHES   raw insert rate: the same rows the load
//!                                                generator posts, straight into SQLite by one
//!                                                process, COMMIT_BATCHES batches of 50 per commit
//! bench_sqlite generate DB EVENTS                synthetic product data for the query benchmark
//! bench_sqlite clickhouse DB                     starts a local clickhouse-server, copies DB's
//!                                                events into it through the collector's
//!                                                ClickHouse store, prints `store=URL`, and
//!                                                keeps the server until stdin closes
//! bench_sqlite clickhouse-generate EVENTS        starts a local clickhouse-server and
//!                                                generates EVENTS events of the same shape as
//!                                                `generate` inside it (`INSERT … SELECT …
//!                                                FROM numbers(…)` by chunks, while ≥ 12 GB
//!                                                of disk stays free), without the rollups
//!                                                (the caller runs `onramp-collector rollup
//!                                                rebuild`); prints `store=URL`, keeps the
//!                                                server (data under $TMPDIR) until stdin closes
//! ```
//!
//! Both open the file through [`SqliteStore::open`] first, so the schema, indexes and migrations
//! are exactly the collector's, then write with the collector's pragmas (`insert`) or with
//! durability off (`generate`: loading test data is not what is measured). Results are printed as
//! `key=value` lines for xtask to read.

use std::path::Path;
use std::time::Instant;

use onramp_collector::store::sqlite::SqliteStore;
use rusqlite::{params, Connection};

/// Events per request, as the SDK sends them (`core::delivery::Policy::batch_size`).
const BATCH: usize = 50;

/// The funnel the query benchmark asks for, in order; `xtask bench` uses the same names.
const STEPS: [&str; 5] = ["signed_up", "project_created", "teammate_invited", "file_uploaded", "report_shared"];
/// Other product events, so the funnel query has to skip most rows, as in real data.
const NOISE: [&str; 6] = ["page_viewed", "search_used", "task_created", "task_done", "comment_added", "settings_opened"];
/// Average events per user in generated data.
const EVENTS_PER_USER: u64 = 20;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let number = |i: usize| arg(i).parse::<u64>().unwrap_or_else(|_| usage());
    let result = match arg(0) {
        "insert" => insert(Path::new(arg(1)), number(2), number(3) as usize),
        "generate" => generate(Path::new(arg(1)), number(2)),
        "clickhouse" => clickhouse(Path::new(arg(1))),
        "clickhouse-generate" => clickhouse_generate(number(1)),
        _ => usage(),
    };
    if let Err(e) = result {
        eprintln!("bench_sqlite: {e}");
        std::process::exit(1);
    }
}

fn usage() -> ! {
    eprintln!("usage: bench_sqlite insert DB EVENTS COMMIT_BATCHES | generate DB EVENTS | clickhouse DB | clickhouse-generate EVENTS");
    std::process::exit(2)
}

/// Creates and migrates the file exactly as the collector does, then closes the store.
fn create(db: &Path) -> Result<(), String> {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    drop(SqliteStore::open(db).map_err(|e| e.to_string())?);
    // The store's writer thread owns its connection; give it a moment to close.
    std::thread::sleep(std::time::Duration::from_millis(50));
    Ok(())
}

const INSERT: &str = "INSERT OR IGNORE INTO events
    (id, project, type, name, anonymous_id, user_id, ts, client_ts, sent_at, received_at, props)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";

fn insert(db: &Path, events: u64, commit_batches: usize) -> Result<(), String> {
    create(db)?;
    let mut conn = Connection::open(db).map_err(|e| e.to_string())?;
    // The collector's pragmas (store/sqlite.rs): WAL, and a commit is durable.
    conn.pragma_update(None, "journal_mode", "WAL").map_err(|e| e.to_string())?;
    conn.pragma_update(None, "synchronous", "FULL").map_err(|e| e.to_string())?;
    // The rows the load generator posts (bench/ingest.lua), ids and devices of the same shape:
    // unique ids, one device per batch.
    let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let rows: Vec<(String, String, i64)> = (0..events)
        .map(|i| {
            let (batch, n) = (i / BATCH as u64, i % BATCH as u64 + 1);
            let device = format!("w1-{run:08x}-{batch:07}-");
            (format!("{device}{n:02}"), format!("anon-{device}"), 1_700_000_000_000 + i as i64)
        })
        .collect();
    let props = r#"{"plan":"trial","n":1}"#;
    let per_commit = BATCH * commit_batches.max(1);
    let started = Instant::now();
    let cpu_before = cpu_seconds();
    for chunk in rows.chunks(per_commit) {
        let tx = conn.transaction().map_err(|e| e.to_string())?;
        {
            let mut stmt = tx.prepare_cached(INSERT).map_err(|e| e.to_string())?;
            for (id, anon, ts) in chunk {
                stmt.execute(params![id, "demo", "track", "task_created", anon, None::<String>, ts, ts, ts, ts, props])
                    .map_err(|e| e.to_string())?;
            }
        }
        tx.commit().map_err(|e| e.to_string())?;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    println!("events={events}");
    println!("rows_per_commit={per_commit}");
    println!("cpu_us_per_event={:.2}", cpu / events as f64 * 1e6);
    println!("seconds={secs:.3}");
    println!("events_per_s={:.0}", events as f64 / secs);
    Ok(())
}

/// CPU time this thread has had, in seconds (`/proc/thread-self/schedstat`), as `xtask bench`
/// reads the collector's.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    stat.split_whitespace().next().and_then(|ns| ns.parse::<f64>().ok()).map_or(f64::NAN, |ns| ns / 1e9)
}

/// xorshift64*: reproducible data without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Users sign up over 30 days; each reaches the next funnel step with 70 % probability, within
/// hours to days, and does product things in between. Browsing before sign-up is anonymous,
/// so the query has to resolve identities as in production.
fn generate(db: &Path, events: u64) -> Result<(), String> {
    create(db)?;
    let mut conn = Connection::open(db).map_err(|e| e.to_string())?;
    for (k, v) in [("journal_mode", "WAL"), ("synchronous", "OFF"), ("cache_size", "-1000000")] {
        conn.pragma_update(None, k, v).map_err(|e| e.to_string())?;
    }
    // Building the indexes once at the end is much faster than updating them per row; they are
    // recreated from the collector's own definitions.
    let indexes: Vec<(String, String)> = {
        let mut stmt = conn
            .prepare("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND tbl_name = 'events'")
            .map_err(|e| e.to_string())?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(|e| e.to_string())?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| e.to_string())?
    };
    for (name, _) in &indexes {
        conn.execute_batch(&format!("DROP INDEX {name}")).map_err(|e| e.to_string())?;
    }
    let started = Instant::now();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let start_ms: i64 = 1_700_000_000_000;
    let day: i64 = 86_400_000;
    let mut written = 0u64;
    let mut user = 0u64;
    let mut seq = 0u64;
    let tx = conn.transaction().map_err(|e| e.to_string())?;
    {
        let mut ev = tx.prepare(INSERT).map_err(|e| e.to_string())?;
        let mut link = tx
            .prepare("INSERT OR REPLACE INTO identities (project, anonymous_id, user_id) VALUES (?1, ?2, ?3)")
            .map_err(|e| e.to_string())?;
        while written < events {
            user += 1;
            let anon = format!("anon-{user}");
            let uid = format!("user-{user}");
            let mut ts = start_ms + rng.below(30 * day as u64) as i64;
            let signed_up = format!(r#"{{"signedUpAt":{ts},"plan":"trial"}}"#);
            let mut put = |name: &str, kind: &str, ts: i64, identified: bool| -> Result<(), String> {
                seq += 1;
                let id = format!("{ts:013x}-{seq:012x}");
                let user_id = identified.then_some(uid.as_str());
                let props = if kind == "identify" { signed_up.as_str() } else { "{}" };
                ev.execute(params![id, "demo", kind, name, anon, user_id, ts, ts, ts, ts, props])
                    .map_err(|e| e.to_string())?;
                written += 1;
                Ok(())
            };
            // Anonymous browsing before sign-up.
            for _ in 0..rng.below(4) {
                put(NOISE[0], "track", ts, false)?;
                ts += rng.below(600_000) as i64;
            }
            put("identify", "identify", ts, true)?;
            link.execute(params!["demo", anon, uid]).map_err(|e| e.to_string())?;
            // Steps are milestones, as the SDK reports them (reports count only milestone events).
            put(STEPS[0], "milestone", ts, true)?;
            let mut step = 1;
            let budget = EVENTS_PER_USER + rng.below(EVENTS_PER_USER) - EVENTS_PER_USER / 2;
            for _ in 0..budget {
                ts += rng.below(6 * 3_600_000) as i64;
                if step < STEPS.len() && rng.chance(25) {
                    if !rng.chance(70) {
                        step = STEPS.len(); // dropped off
                        continue;
                    }
                    put(STEPS[step], "milestone", ts, true)?;
                    step += 1;
                } else {
                    put(NOISE[rng.below(NOISE.len() as u64) as usize], "track", ts, true)?;
                }
            }
        }
    }
    tx.commit().map_err(|e| e.to_string())?;
    let loaded = started.elapsed().as_secs_f64();
    for (_, sql) in &indexes {
        conn.execute_batch(sql).map_err(|e| e.to_string())?;
    }
    // Rows written behind the store's back: build the rollups (and first links) as
    // `onramp-collector rollup rebuild` does.
    let rollups_started = Instant::now();
    let tx = conn.transaction().map_err(|e| e.to_string())?;
    onramp_collector::store::sqlite_rollup::rebuild(&tx, None, &mut |_| {}).map_err(|e| e.to_string())?;
    tx.commit().map_err(|e| e.to_string())?;
    let rollup_seconds = rollups_started.elapsed().as_secs_f64();
    conn.execute_batch("ANALYZE").map_err(|e| e.to_string())?;
    conn.pragma_update(None, "synchronous", "FULL").map_err(|e| e.to_string())?;
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").map_err(|e| e.to_string())?;
    println!("events={written}");
    println!("users={user}");
    println!("load_seconds={loaded:.1}");
    println!("rollup_seconds={rollup_seconds:.1}");
    println!("seconds={:.1}", started.elapsed().as_secs_f64());
    Ok(())
}

/// The same events in ClickHouse, so both stores answer the same queries over the same data.
fn clickhouse(db: &Path) -> Result<(), String> {
    use onramp::core::json::{self, Value};
    use onramp::core::wire::{Event, EventType};
    use onramp_collector::store::clickhouse::{server::LocalServer, ClickHouseStore};
    use onramp_collector::store::{Store, StoredEvent};

    let started = Instant::now();
    let server = LocalServer::start().map_err(|e| format!("clickhouse-server: {e}"))?;
    let url = server.store_url("onramp");
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let conn = Connection::open(db).map_err(|e| e.to_string())?;
    let mut stmt = conn
        .prepare("SELECT id, project, type, name, anonymous_id, user_id, ts, client_ts, sent_at, received_at, props FROM events")
        .map_err(|e| e.to_string())?;
    let mut rows = stmt.query([]).map_err(|e| e.to_string())?;
    let mut copied = 0u64;
    runtime.block_on(async {
        let store = ClickHouseStore::open(&url).await.map_err(|e| e.to_string())?;
        const CHUNK: usize = 100_000;
        let mut chunk = Vec::with_capacity(CHUNK);
        while let Some(r) = rows.next().map_err(|e| e.to_string())? {
            let get_str = |i: usize| r.get::<_, String>(i).map_err(|e| e.to_string());
            let get_int = |i: usize| r.get::<_, i64>(i).map_err(|e| e.to_string());
            let props = match json::parse(&get_str(10)?) {
                Ok(Value::Obj(entries)) => entries,
                _ => Vec::new(),
            };
            chunk.push(StoredEvent {
                project: get_str(1)?,
                event: Event {
                    id: get_str(0)?,
                    kind: EventType::parse(&get_str(2)?).unwrap_or(EventType::Track),
                    name: get_str(3)?,
                    anonymous_id: get_str(4)?,
                    user_id: r.get(5).map_err(|e| e.to_string())?,
                    user_hash: None,
                    ts: get_int(7)?,
                    props,
                },
                ts: get_int(6)?,
                sent_at: get_int(8)?,
                received_at: get_int(9)?,
            });
            if chunk.len() == CHUNK {
                copied += CHUNK as u64;
                store.insert(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK))).await.map_err(|e| e.to_string())?;
            }
        }
        copied += chunk.len() as u64;
        store.insert(chunk).await.map_err(|e| e.to_string())
    })?;
    println!("store={url}");
    println!("events={copied}");
    println!("seconds={:.1}", started.elapsed().as_secs_f64());
    // Keep the server for the caller's queries until it closes our stdin.
    std::io::copy(&mut std::io::stdin(), &mut std::io::sink()).map_err(|e| e.to_string())?;
    drop(server);
    Ok(())
}

/// One statement to a ClickHouse server's HTTP interface (curl, as `xtask bench` uses).
fn clickhouse_sql(http: &str, sql: &str) -> Result<String, String> {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--fail-with-body", "--max-time", "7200", "--data-binary", sql, http])
        .output()
        .map_err(|e| format!("curl: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!("{}: {text}", sql.lines().next().unwrap_or(sql)));
    }
    Ok(text)
}

/// Settings of the server `clickhouse-generate` starts: every query in `system.query_log`
/// (so `xtask bench` can sum ClickHouse's CPU per route), and `GROUP BY`s that spill to disk
/// rather than fail when `rollup rebuild` aggregates 100 M events within the 8 GB limit.
const GENERATE_PROFILE: &str =
    "<log_queries>1</log_queries><max_bytes_before_external_group_by>3000000000</max_bytes_before_external_group_by>";
/// Users per `INSERT … SELECT` (5 M events): each chunk is its own statement, so the disk can be
/// checked and the load recorded between them, and no statement runs for long.
const CHUNK_USERS: u64 = 250_000;
/// Bytes on disk per generated event before merges, with room for a merge's copy (70 B once
/// merged; measured at 10 M).
const GENERATED_BYTES_PER_EVENT: u64 = 200;

/// Bytes free on the file system holding `dir` (`df`, so no dependency for one number).
fn free_bytes(dir: &Path) -> Result<u64, String> {
    let out = std::process::Command::new("df").args(["--output=avail", "-B1"]).arg(dir).output().map_err(|e| format!("df: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| format!("df {}: no answer", dir.display()))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_default()
}

/// `generate`'s data made by ClickHouse itself, for scales a copy through the store would take
/// hours to load: row `n` is event `n % 20` of user `n / 20 + 1`. Event 0 is anonymous browsing
/// before sign-up, 1 the identify (with `signedUpAt`, and the trait arrays ingest writes), 2 the
/// first funnel step, 3–6 the next steps while the user goes on (each with 70 % probability, so 1
/// to 5 steps), and the rest product events, every two hours or so. Users sign up over 30 days,
/// as in `generate`, so 100 M events are 5 M users of the same shape as 10 M events' 500 k.
///
/// Every materialized view is detached while loading, so the rollups (whichever the schema has)
/// come from `rollup rebuild`. The events go in by chunks of [`CHUNK_USERS`] users, one
/// statement each; before each, the disk must keep `ONRAMP_BENCH_MIN_FREE_GB` (default 12) free
/// after it, or generation stops there and says so (`stopped=`), with the events made so far.
fn clickhouse_generate(events: u64) -> Result<(), String> {
    use onramp_collector::store::clickhouse::{server::LocalServer, ClickHouseStore};

    let started = Instant::now();
    let min_free: u64 = std::env::var("ONRAMP_BENCH_MIN_FREE_GB").ok().and_then(|g| g.parse().ok()).unwrap_or(12) << 30;
    let data_dir = std::env::temp_dir();
    let server = LocalServer::start_with_profile(GENERATE_PROFILE).map_err(|e| format!("clickhouse-server: {e}"))?;
    let url = server.store_url("onramp");
    let http = server.http_url();
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(ClickHouseStore::open(&url)).map_err(|e| e.to_string())?;
    let views: Vec<String> = clickhouse_sql(&http, "SELECT name FROM system.tables WHERE database = 'onramp' AND engine = 'MaterializedView'")?
        .lines()
        .map(str::to_owned)
        .collect();
    for view in &views {
        clickhouse_sql(&http, &format!("DETACH TABLE onramp.{view}"))?;
    }
    let steps = STEPS.map(|s| format!("'{s}'")).join(",");
    let noise = NOISE.map(|s| format!("'{s}'")).join(",");
    let per_user = EVENTS_PER_USER;
    let chunk = CHUNK_USERS * per_user;
    let free_before = free_bytes(&data_dir)?;
    let (mut made, mut stopped, mut least_free) = (0u64, String::new(), free_before);
    let mut loads = vec![load_average()];
    while made < events {
        let count = chunk.min(events - made);
        let free = free_bytes(&data_dir)?;
        least_free = least_free.min(free);
        if free < min_free + count * GENERATED_BYTES_PER_EVENT {
            stopped = format!("disk: {:.1} GB free, the next {count} events could leave less than {} GB", free as f64 / 1e9, min_free >> 30);
            break;
        }
        let chunk_started = Instant::now();
        let sql = format!(
            "INSERT INTO onramp.events (project, anonymous_id, id, type, name, user_id, ts, client_ts, sent_at, received_at, props, first_seen, trait_keys, trait_values)
             SELECT 'demo', concat('anon-', toString(u)), concat('g-', toString(number)), type, name, uid, ts, ts, ts, ts, props,
                    18446744073709551615 - number,
                    if(k = 1, ['plan', 'signedUpAt'], emptyArrayString()), if(k = 1, ['\"trial\"', toString(signup)], emptyArrayString())
             FROM (
               SELECT number, intDiv(number, {per_user}) + 1 AS u, number % {per_user} AS k,
                      1700000000000 + toInt64(cityHash64(u, 0) % 2592000000) AS signup,
                      cityHash64(u, 1) % 1000 AS luck,
                      1 + (luck < 700) + (luck < 490) + (luck < 343) + (luck < 240) AS reached,
                      k >= 2 AND k <= 6 AND k < reached + 2 AS is_step,
                      multiIf(k = 0, signup - 600000, k <= 2, signup, signup + toInt64(k) * 7200000 + toInt64(cityHash64(number) % 7200000)) AS ts,
                      multiIf(k = 1, 'identify', is_step, 'milestone', 'track') AS type,
                      multiIf(k = 0, 'page_viewed', k = 1, 'identify', is_step, arrayElement([{steps}], toUInt64(k - 1)),
                              arrayElement([{noise}], cityHash64(number, 2) % 6 + 1)) AS name,
                      if(k = 0, '', concat('user-', toString(u))) AS uid,
                      if(k = 1, concat('{{\"signedUpAt\":', toString(signup), ',\"plan\":\"trial\"}}'), '{{}}') AS props
               FROM (SELECT number + {made} AS number FROM numbers({count}))
             )
             SETTINGS max_threads = 1"
        );
        clickhouse_sql(&http, &sql)?;
        made += count;
        let load = load_average();
        eprintln!(
            "clickhouse-generate: {made} of {events} events ({count} in {:.1} s), load average {load}, {:.1} GB free",
            chunk_started.elapsed().as_secs_f64(),
            free_bytes(&data_dir)? as f64 / 1e9
        );
        loads.push(load);
    }
    for view in &views {
        clickhouse_sql(&http, &format!("ATTACH TABLE onramp.{view}"))?;
    }
    least_free = least_free.min(free_bytes(&data_dir)?);
    println!("store={url}");
    println!("http={http}");
    println!("events={made}");
    println!("users={}", made.div_ceil(per_user));
    println!("chunks={}", made.div_ceil(chunk));
    println!("free_gb_before={:.1}", free_before as f64 / 1e9);
    println!("free_gb_least={:.1}", least_free as f64 / 1e9);
    println!("load_first={}", loads.first().cloned().unwrap_or_default());
    println!("load_last={}", loads.last().cloned().unwrap_or_default());
    if !stopped.is_empty() {
        println!("stopped={stopped}");
    }
    println!("seconds={:.1}", started.elapsed().as_secs_f64());
    std::io::copy(&mut std::io::stdin(), &mut std::io::sink()).map_err(|e| e.to_string())?;
    drop(server);
    Ok(())
}
