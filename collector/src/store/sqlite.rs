//! The embedded default store: one SQLite file in WAL mode.
//!
//! One writer thread owns the write connection and commits whatever requests are waiting in a
//! single transaction (group commit). A second thread makes those commits durable: it syncs the
//! WAL file (`fdatasync`, the sync SQLite's `synchronous=FULL` makes at the end of every commit)
//! and only then answers the requests. So a 2xx is only sent after a durable commit, one sync is
//! shared by every commit written before it, and the writer builds the next commit while the
//! disk syncs the last (a sync here takes 3–7 ms, as long as the commit itself). A third thread
//! copies committed pages from the WAL into the database file (a passive checkpoint, which
//! waits for nobody) and syncs the database file, which the writer otherwise did itself every
//! thousand pages while requests waited.
//!
//! Only the writer can let the WAL start over (see [`WAL_RESTART_PAGES`]), so it still makes one
//! checkpoint per WAL cycle, but a small one: the checkpoint thread first copies and syncs
//! everything but the last few commits, then asks. Left to SQLite's auto-checkpoint, that
//! checkpoint copied a quarter of a second of commits and synced every page copied into the
//! database since the last restart (a passive checkpoint that does not catch up with the writer
//! never syncs the database): 50–65 ms about once a second, during which every sender waits,
//! so with 32 senders that one stall made the slowest percent of requests (BENCHMARKS.md,
//! section 3).
//!
//! Reads open their own connections; WAL lets them run beside the writer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use tokio::sync::{mpsc, oneshot};

use onramp::core::json::Value;

use onramp::core::wire::EventType;

use crate::analytics::report::{ReportQuery, Tallies};
use crate::analytics::StepKind;

use super::{
    sqlite_health, sqlite_rollup, sqlite_users, user_rows::{self, ReportRows}, HealthCounts, HealthFilter, HealthListQuery, HealthRecord, HealthTransition, user_events_condition, Attempt, EventFilter, NewPlanVersion, Notification, PlanVersion, Progress,
    Published, Store, StoreError, StoreFuture, StoredEvent, UserData, UserEvent, UserEvents, UserMetric, UserSeen, UserTip, merge_metric_rows, merge_tip_rows,
};

/// Versioned migrations, embedded in the binary; `PRAGMA user_version` records how far a file is.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_events.sql"),
    include_str!("../../migrations/0002_analytics.sql"),
    include_str!("../../migrations/0003_plans.sql"),
    include_str!("../../migrations/0004_analytics_covering.sql"),
    include_str!("../../migrations/0005_rollups.sql"),
    include_str!("../../migrations/0006_event_key_per_project.sql"),
    include_str!("../../migrations/0007_webhook_outbox.sql"),
    include_str!("../../migrations/0008_rollup_traits.sql"),
    include_str!("../../migrations/0009_plan_versions.sql"),
    include_str!("../../migrations/0010_health.sql"),
    include_str!("../../migrations/0011_rollup_tips_metrics.sql"),
    include_str!("../../migrations/0012_rollup_users.sql"),
    include_str!("../../migrations/0013_health_reads.sql"),
    include_str!("../../migrations/0014_events_one_read_index.sql"),
];

/// The migrations (1-based) that create rollup tables: applying one fills its tables from the
/// events already stored, with progress in the log.
const ROLLUPS_MIGRATION: usize = 5;
const TRAITS_MIGRATION: usize = 8;
const TIPS_METRICS_MIGRATION: usize = 11;
const USERS_MIGRATION: usize = 12;

/// At most this many requests share one commit, bounding the transaction's size and latency.
const MAX_REQUESTS_PER_COMMIT: usize = 256;

/// How often the checkpoint thread copies committed pages into the database while events
/// arrive (SQLite's own default, every 1 000 pages, came every few commits under load).
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// WAL pages after which the WAL should start over from its beginning, which bounds the file
/// (40 MB, plus what arrives before the checkpoint thread next looks: 50–70 MB at 70 000
/// events/s). SQLite restarts the WAL at a commit only if every frame in it was copied into the
/// database before that commit began; under constant writes the checkpoint thread never catches
/// the last commit, so past this size it catches up to the last few and asks the writer to copy
/// those between two commits.
const WAL_RESTART_PAGES: i64 = 10_000;

/// WAL pages after which the writer checkpoints itself whatever the checkpoint thread does
/// (SQLite's auto-checkpoint): a backstop for when the asked-for restart keeps failing, e.g.
/// while a long report holds an old snapshot.
const WRITER_CHECKPOINT_PAGES: i64 = 4 * WAL_RESTART_PAGES;

/// How far the WAL grows: [`WAL_RESTART_PAGES`] and [`WRITER_CHECKPOINT_PAGES`] (tests use
/// smaller ones).
#[derive(Clone, Copy)]
struct WalLimits {
    restart: i64,
    /// 0 turns SQLite's auto-checkpoint off.
    backstop: i64,
}

/// An event as the writer stores it, its props already serialised by the request's own task so
/// the one writer thread spends its time in SQLite.
struct Row {
    stored: StoredEvent,
    props: String,
}

impl Row {
    fn new(mut stored: StoredEvent) -> Row {
        // Serialised in place and given back: the rollups read the props too.
        let props = Value::Obj(std::mem::take(&mut stored.event.props));
        let text = props.to_json();
        if let Value::Obj(entries) = props {
            stored.event.props = entries;
        }
        Row { stored, props: text }
    }
}

type WriteRequest = (Vec<Row>, oneshot::Sender<Result<(), StoreError>>);

/// Requests the writer has committed (or failed to), waiting for the sync that makes their
/// commit durable before they are answered; their rows are dropped there too, off the writer.
type Committed = Vec<(WriteRequest, Result<(), String>)>;

pub struct SqliteStore {
    path: PathBuf,
    writer: mpsc::Sender<WriteRequest>,
    /// Requests sent to the writer and not yet answered.
    depth: Arc<AtomicUsize>,
    /// A connection kept to read `PRAGMA data_version` (the report cache's data version), which
    /// changes whenever any other connection commits to the file: this store's writer, its
    /// erasures and retention, and other processes (`rollup rebuild`, `users delete`, another
    /// collector). A count of this writer's commits missed the other processes, so after a
    /// `rollup rebuild` beside a running collector its cache served the answers from before.
    version: Arc<std::sync::Mutex<Connection>>,
    /// What `/readyz` checks of the writer.
    writer_health: Arc<WriterHealth>,
    /// Declared last: it is dropped after the writer's queue is closed and `version` is.
    _threads: Threads,
}

/// The store's threads, joined when the store is dropped. Each ends once the one feeding it has:
/// the writer when its queue closes, the sync thread when the writer's commits stop, the
/// checkpoint thread when the syncs stop. The checkpoint thread's connection is then the file's
/// last: closing it copies every commit into the database and removes the WAL. So a collector
/// stopped with SIGTERM leaves one self-contained file, and a copy of that file alone (the
/// backup an operator takes of a stopped service) holds every acknowledged event. Without the
/// join the process exited with the threads still running and the `-wal` file stayed beside the
/// database, holding the last commits.
struct Threads(Vec<std::thread::JoinHandle<()>>);

impl Drop for Threads {
    fn drop(&mut self) {
        for thread in self.0.drain(..) {
            let _ = thread.join();
        }
    }
}

/// The writer thread's state as readiness sees it.
struct WriterHealth {
    /// Cleared when the thread ends, however it ends.
    running: AtomicBool,
    /// When the last commit failed (disk full, file gone, …), Unix ms; 0 after a success.
    failed_at: AtomicU64,
    /// When the last sync of the WAL failed, Unix ms; 0 after a success.
    sync_failed_at: AtomicU64,
}

/// Requests the writer's channel holds; readiness fails when it is this full.
const WRITER_QUEUE: usize = 4096;

/// Marks the writer stopped when dropped, so a panicking writer is seen too.
struct Running(Arc<WriterHealth>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::Relaxed);
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    // WAL: readers never block the writer. synchronous=FULL: a commit survives power loss,
    // which is what a 2xx promises; group commit pays for the fsync.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        let mut log = |line: String| eprintln!("onramp-collector: migration {}: {line}", i + 1);
        match i + 1 {
            ROLLUPS_MIGRATION => drop(sqlite_rollup::rebuild_counts(&tx, None, &mut log)?),
            TRAITS_MIGRATION => sqlite_rollup::rebuild_traits(&tx, None, &mut log)?,
            TIPS_METRICS_MIGRATION => sqlite_rollup::rebuild_tips_metrics(&tx, None, &mut log)?,
            USERS_MIGRATION => sqlite_users::rebuild(&tx, None, &mut log)?,
            _ => {}
        }
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the database at `path`.
    pub fn open(path: impl Into<PathBuf>) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path.into(), WalLimits { restart: WAL_RESTART_PAGES, backstop: WRITER_CHECKPOINT_PAGES })
    }

    fn open_with(path: PathBuf, limits: WalLimits) -> Result<SqliteStore, StoreError> {
        let mut conn = open(&path).map_err(unavailable)?;
        migrate(&mut conn).map_err(unavailable)?;
        // The events' commits only write the WAL; the sync thread makes them durable before
        // anyone is answered (the module docs). Every other connection keeps FULL. A file
        // system where SQLite cannot use WAL leaves the writer on FULL: each commit syncs itself.
        let journal: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).map_err(unavailable)?;
        let in_wal = journal.eq_ignore_ascii_case("wal");
        if in_wal {
            conn.pragma_update(None, "synchronous", "NORMAL").map_err(unavailable)?;
            conn.pragma_update(None, "wal_autocheckpoint", limits.backstop).map_err(unavailable)?;
        }
        let checkpoints = open(&path).map_err(unavailable)?;
        // Set by the checkpoint thread when the WAL is due to start over; see WAL_RESTART_PAGES.
        let restart_due = Arc::new(AtomicBool::new(false));
        let (writer, requests) = mpsc::channel::<WriteRequest>(WRITER_QUEUE);
        let (committed, to_sync) = std::sync::mpsc::channel::<Committed>();
        let depth = Arc::new(AtomicUsize::new(0));
        let writer_health = Arc::new(WriterHealth {
            running: AtomicBool::new(true),
            failed_at: AtomicU64::new(0),
            sync_failed_at: AtomicU64::new(0),
        });
        let version = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(unavailable)?;
        let version = Arc::new(std::sync::Mutex::new(version));
        let (writer_depth, health, writer_restart) = (depth.clone(), writer_health.clone(), restart_due.clone());
        let writer_thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                let running = Running(health);
                write_loop(conn, requests, committed, &writer_depth, &running.0, &writer_restart);
            })
            .map_err(unavailable)?;
        let (health, mut wal) = (writer_health.clone(), SyncedFile::wal(&path));
        let database = SyncedFile::database(&path);
        // One pending wake-up is enough: a checkpoint copies everything committed before it.
        let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
        let sync_thread = std::thread::Builder::new()
            .name("sqlite-sync".into())
            .spawn(move || {
                let running = Running(health);
                let sync = || {
                    let synced = if in_wal { wal.sync() } else { Ok(()) };
                    // Durable commits are there to be copied into the database.
                    let _ = wake.try_send(());
                    synced
                };
                sync_loop(to_sync, sync, &running.0);
            })
            .map_err(unavailable)?;
        let checkpoint_thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpoints, database, woken, limits.restart, &restart_due))
            .map_err(unavailable)?;
        let threads = Threads(vec![writer_thread, sync_thread, checkpoint_thread]);
        Ok(SqliteStore { path, writer, depth, writer_health, version, _threads: threads })
    }

    fn reader(&self) -> Result<Connection, StoreError> {
        // NO_MUTEX: a connection is used by one thread at a time (it moves into the blocking
        // task), so SQLite need not lock it on every call; serialized mode spent a fifth of a
        // report's CPU time locking and unlocking once per column read.
        let conn = Connection::open_with_flags(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(unavailable)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(unavailable)?;
        Ok(conn)
    }
}

fn write_loop(
    mut conn: Connection,
    mut requests: mpsc::Receiver<WriteRequest>,
    committed: std::sync::mpsc::Sender<Committed>,
    depth: &AtomicUsize,
    health: &WriterHealth,
    restart_due: &AtomicBool,
) {
    while let Some(first) = requests.blocking_recv() {
        if restart_due.swap(false, Ordering::Relaxed) {
            // Copies the few commits the checkpoint thread has not, so the next commit starts
            // the WAL over; a failure leaves that to a later try or to the backstop.
            let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        }
        let mut group = vec![first];
        while group.len() < MAX_REQUESTS_PER_COMMIT {
            match requests.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let results = write_group(&mut conn, &group);
        // Storage is failing when nothing could be committed; one bad request among good ones
        // is that request's problem.
        let failed_at = if results.iter().all(Result::is_err) { crate::system_now_ms().max(1) as u64 } else { 0 };
        health.failed_at.store(failed_at, Ordering::Relaxed);
        depth.fetch_sub(group.len(), Ordering::Relaxed);
        if committed.send(group.into_iter().zip(results).collect()).is_err() {
            return;
        }
    }
}

/// The WAL or the database file, opened at the first sync (SQLite creates the WAL) and kept:
/// the writer's connection stays open, so SQLite never deletes or replaces either meanwhile.
struct SyncedFile {
    path: PathBuf,
    file: Option<Arc<std::fs::File>>,
    open: fn(&Path) -> std::io::Result<Arc<std::fs::File>>,
}

impl SyncedFile {
    /// The WAL: SQLite takes no lock on it, so its descriptor is closed with the store.
    fn wal(database: &Path) -> SyncedFile {
        SyncedFile { path: wal_path(database), file: None, open: open_for_sync }
    }

    /// The database file, through [`kept_descriptor`].
    fn database(path: &Path) -> SyncedFile {
        SyncedFile { path: path.to_owned(), file: None, open: kept_descriptor }
    }

    fn sync(&mut self) -> std::io::Result<()> {
        let file = match &self.file {
            Some(file) => file,
            None => self.file.insert((self.open)(&self.path)?),
        };
        file.sync_data()
    }
}

/// A descriptor of the database file at `path`, one per file in the process, never closed.
/// SQLite locks the database with POSIX record locks, which belong to the process and the file,
/// not to a descriptor: closing *any* descriptor of the file drops every lock the process holds
/// on it, SQLite's included, while SQLite still believes it holds them. A store that closed its
/// own descriptor when it shut down thereby took away the shared lock every other connection in
/// the process held on the file (another store's, or any `rusqlite::Connection`): another
/// process closing its last connection then took the exclusive lock, believed itself the
/// file's last user, checkpointed, deleted the WAL and unlinked the shared-memory index under
/// this process's connections, which went on reading through their old index and missed the
/// next commits of other processes (docs/SCALING.md, "Several connections to one SQLite file").
#[cfg(unix)]
fn kept_descriptor(path: &Path) -> std::io::Result<Arc<std::fs::File>> {
    use std::os::unix::fs::MetadataExt;
    /// A file's (device, inode).
    type FileId = (u64, u64);
    static KEPT: std::sync::Mutex<Vec<(FileId, Arc<std::fs::File>)>> = std::sync::Mutex::new(Vec::new());
    let mut kept = KEPT.lock().unwrap_or_else(|e| e.into_inner());
    let id = |m: std::fs::Metadata| (m.dev(), m.ino());
    let wanted = id(std::fs::metadata(path)?);
    if let Some((_, file)) = kept.iter().find(|(k, _)| *k == wanted) {
        return Ok(file.clone());
    }
    let file = open_for_sync(path)?;
    // Kept whatever happens: dropping it would close it. (Under its own identity, should the
    // path have been replaced since it was looked at.)
    kept.push((file.metadata().map(id).unwrap_or(wanted), file.clone()));
    Ok(file)
}

/// Elsewhere a lock belongs to its handle: the store's own descriptor is closed with the store.
#[cfg(not(unix))]
fn kept_descriptor(path: &Path) -> std::io::Result<Arc<std::fs::File>> {
    open_for_sync(path)
}

fn open_for_sync(path: &Path) -> std::io::Result<Arc<std::fs::File>> {
    Ok(Arc::new(std::fs::OpenOptions::new().write(true).open(path)?))
}

fn wal_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// Copies committed pages from the WAL into the database when woken (after a sync), at most
/// every [`CHECKPOINT_EVERY`], and syncs the database file, so the writer's checkpoint that lets
/// the WAL start over has only a few commits' pages to copy and sync (SQLite syncs the database
/// only after a checkpoint that caught up with the writer, which under constant writes is the
/// writer's). Passive: it waits for no reader or writer and copies what it can; a failure leaves
/// the pages in the WAL for the next checkpoint (or the writer's own).
///
/// It syncs the database through a descriptor that is never closed ([`kept_descriptor`]).
fn checkpoint_loop(conn: Connection, mut database: SyncedFile, woken: std::sync::mpsc::Receiver<()>, restart_pages: i64, restart_due: &AtomicBool) {
    // (frames in the WAL, frames copied into the database), as of this checkpoint's start.
    let checkpoint = || conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))).ok();
    // Copies and syncs what the WAL holds; true when that was all of it (as of the start).
    let mut copy = || {
        let copied = checkpoint();
        let synced = copied.is_some_and(|(_, done)| done > 0) && database.sync().is_ok();
        (copied, synced && copied.is_some_and(|(frames, done)| done == frames))
    };
    while woken.recv().is_ok() {
        let (copied, caught_up) = copy();
        if caught_up && copied.is_some_and(|(frames, _)| frames >= restart_pages) {
            // Again at once: the first copy and sync took long enough for many commits; this
            // one copies and syncs those, and leaves the writer only what arrives meanwhile.
            restart_due.store(copy().1, Ordering::Relaxed);
        }
        std::thread::sleep(CHECKPOINT_EVERY);
    }
}

/// Answers committed requests once `sync` has made their commits durable: an `fdatasync` of
/// the WAL covers every frame written before it, so all commits waiting share one. A failed
/// sync fails its requests (503: the client resends, the store keeps each event once).
fn sync_loop(committed: std::sync::mpsc::Receiver<Committed>, mut sync: impl FnMut() -> std::io::Result<()>, health: &WriterHealth) {
    while let Ok(mut answers) = committed.recv() {
        while let Ok(more) = committed.try_recv() {
            answers.extend(more);
        }
        let synced = match answers.iter().any(|(_, result)| result.is_ok()) {
            true => sync().map_err(|e| format!("syncing the write-ahead log: {e}")),
            false => Ok(()),
        };
        let failed_at = if synced.is_err() { crate::system_now_ms().max(1) as u64 } else { 0 };
        health.sync_failed_at.store(failed_at, Ordering::Relaxed);
        for ((_, reply), result) in answers {
            let _ = reply.send(result.and_then(|()| synced.clone()).map_err(unavailable));
        }
    }
}

/// Commits a group of requests in one transaction, one result per request. When that fails,
/// each request is tried again in a transaction of its own, so a request that cannot be stored
/// fails alone and the others are still committed (and acknowledged) rather than sent back to
/// retry with it.
fn write_group(conn: &mut Connection, group: &[WriteRequest]) -> Vec<Result<(), String>> {
    match commit(conn, group.iter().flat_map(|(rows, _)| rows)) {
        Ok(()) => group.iter().map(|_| Ok(())).collect(),
        Err(e) if group.len() == 1 => vec![Err(e.to_string())],
        Err(_) => group.iter().map(|(rows, _)| commit(conn, rows.iter()).map_err(|e| e.to_string())).collect(),
    }
}

fn commit<'a>(conn: &mut Connection, rows: impl Iterator<Item = &'a Row>) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT OR IGNORE INTO events
             (id, project, type, name, anonymous_id, user_id, ts, client_ts, sent_at, received_at, props)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        let mut changes = sqlite_rollup::Changes::default();
        for Row { stored: s, props } in rows {
            let e = &s.event;
            let stored = insert.execute(params![
                e.id,
                s.project,
                e.kind.as_str(),
                e.name,
                e.anonymous_id,
                e.user_id,
                s.ts,
                e.ts,
                s.sent_at,
                s.received_at,
                props
            ])?;
            // Only a newly stored event counts: a resend (same id) leaves the rollups alone.
            if stored == 1 {
                changes.add(s);
            }
        }
        changes.write(&tx)?;
    }
    tx.commit()
}

/// The events of user key `?2` in project `?1` (see `store::user_events_condition`).
fn user_events_sql() -> String {
    user_events_condition(
        "?2",
        "SELECT anonymous_id FROM identities WHERE project = ?1 AND user_id = ?2",
        "SELECT anonymous_id FROM identities WHERE project = ?1",
        "user_id IS NULL",
    )
}

/// What erasing a user deletes, in order, in one transaction; each statement takes `?1` =
/// project and `?2` = user key, and `{events}` stands for the user's events. A table of
/// per-user derived rows is one more line here. The events go first: their condition reads
/// the identity links.
const ERASE_USER: &[&str] = &[
    "DELETE FROM events WHERE project = ?1 AND {events}",
    "DELETE FROM rollup_devices WHERE project = ?1 AND {rollups}",
    "DELETE FROM rollup_events WHERE project = ?1 AND {rollups}",
    "DELETE FROM rollup_traits WHERE project = ?1 AND {rollups}",
    "DELETE FROM rollup_tips WHERE project = ?1 AND {rollups}",
    "DELETE FROM rollup_metrics WHERE project = ?1 AND {rollups}",
    "DELETE FROM identities WHERE project = ?1 AND (user_id = ?2 OR anonymous_id = ?2)",
    "DELETE FROM webhook_outbox WHERE project = ?1 AND user = ?2",
    // Health (collector/src/health): the user's snapshots, transitions and their notifications,
    // whose outbox key is `user:{id}:…`.
    "DELETE FROM health_snapshots WHERE project = ?1 AND kind = 'user' AND id = ?2",
    "DELETE FROM health_transitions WHERE project = ?1 AND kind = 'user' AND id = ?2",
    "DELETE FROM webhook_outbox WHERE project = ?1 AND kind IN ('health_changed', 'stage_changed') AND substr(user, 1, length(?2) + 6) = 'user:' || ?2 || ':'",
];

fn erase_user(path: &Path, project: &str, user: &str) -> rusqlite::Result<u64> {
    let mut conn = open(path)?;
    let tx = conn.transaction()?;
    let events = user_events_sql();
    // Rollup rows carry '' where an event had no user id (events carry NULL).
    let rollups = user_events_condition(
        "?2",
        "SELECT anonymous_id FROM identities WHERE project = ?1 AND user_id = ?2",
        "SELECT anonymous_id FROM identities WHERE project = ?1",
        "user_id = ''",
    );
    // The per-user rollup rows the erasure changes: the user's, and that of the user the
    // anonymous id equal to `user` was linked to (its link goes, so its device becomes a key of
    // its own). Recomputed from what remains.
    let mut users = std::collections::BTreeSet::from([user.to_owned()]);
    users.extend(tx.query_row("SELECT user_id FROM identities WHERE project = ?1 AND anonymous_id = ?2", params![project, user], |r| r.get(0)).optional()?);
    // The devices whose links go: relinked below from their remaining events (another user's
    // identify on the same device), as a recompute would.
    let unlinked: Vec<String> = tx
        .prepare("SELECT anonymous_id FROM identities WHERE project = ?1 AND (user_id = ?2 OR anonymous_id = ?2)")?
        .query_map(params![project, user], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut erased = 0;
    for (i, statement) in ERASE_USER.iter().enumerate() {
        let n = tx.execute(&statement.replace("{events}", &events).replace("{rollups}", &rollups), params![project, user])?;
        if i == 0 {
            erased = n as u64;
        }
    }
    let relink = format!(
        "INSERT INTO identities (project, anonymous_id, user_id, linked_ts, link_event) {}",
        sqlite_rollup::LINKS_FROM_EVENTS.replace("(?1 IS NULL OR project = ?1)", "project = ?1 AND anonymous_id = ?2")
    );
    for anon in &unlinked {
        tx.execute(&relink, params![project, anon])?;
        users.extend(tx.query_row("SELECT user_id FROM identities WHERE project = ?1 AND anonymous_id = ?2", params![project, anon], |r| r.get(0)).optional()?);
    }
    sqlite_users::refresh(&tx, project, &users)?;
    tx.commit()?;
    Ok(erased)
}

fn user_data(conn: &Connection, project: &str, user: &str) -> rusqlite::Result<UserData> {
    let sql = format!(
        "SELECT id, type, name, anonymous_id, user_id, ts, client_ts, sent_at, received_at, props FROM events
         WHERE project = ?1 AND {} ORDER BY ts, id",
        user_events_sql()
    );
    let mut stmt = conn.prepare(&sql)?;
    let events = stmt
        .query_map(params![project, user], |r| {
            let props: String = r.get(9)?;
            Ok(serde_json::json!({
                "id": r.get::<_, String>(0)?,
                "type": r.get::<_, String>(1)?,
                "name": r.get::<_, String>(2)?,
                "anonymousId": r.get::<_, String>(3)?,
                "userId": r.get::<_, Option<String>>(4)?,
                "ts": r.get::<_, i64>(5)?,
                "clientTs": r.get::<_, i64>(6)?,
                "sentAt": r.get::<_, i64>(7)?,
                "receivedAt": r.get::<_, i64>(8)?,
                "props": serde_json::from_str::<serde_json::Value>(&props).unwrap_or(serde_json::Value::String(props)),
            }))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut stmt = conn.prepare(
        "SELECT anonymous_id, user_id FROM identities WHERE project = ?1 AND (user_id = ?2 OR anonymous_id = ?2)
         ORDER BY anonymous_id",
    )?;
    let identities = stmt.query_map(params![project, user], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
    Ok(UserData { events, identities })
}

impl SqliteStore {
    /// A consistent copy of the database, taken while it is in use (`VACUUM INTO`: one read
    /// transaction, so the copy is the database as of one commit). `file` must not exist.
    pub fn backup(&self, file: &Path) -> Result<(), StoreError> {
        backup(&self.path, file)
    }
}

/// See [`SqliteStore::backup`]; works on a file another process is writing.
pub fn backup(database: &Path, file: &Path) -> Result<(), StoreError> {
    if file.exists() {
        return Err(unavailable(format!("{} already exists", file.display())));
    }
    let conn = Connection::open_with_flags(database, OpenFlags::SQLITE_OPEN_READ_WRITE).map_err(unavailable)?;
    conn.busy_timeout(std::time::Duration::from_secs(30)).map_err(unavailable)?;
    let target = file.to_str().ok_or_else(|| unavailable("the backup path is not UTF-8"))?;
    conn.execute("VACUUM INTO ?1", params![target]).map_err(unavailable)?;
    Ok(())
}

impl SqliteStore {
    /// Runs `work` on a connection of its own beside the event writer (WAL + busy timeout), as
    /// rare writes (plans, erasures, the webhook outbox) do.
    fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        let path = self.path.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || work(&mut open(&path)?))
                .await
                .map_err(unavailable)?
                .map_err(unavailable)
        })
    }
}

impl Store for SqliteStore {
    fn save_health(&self, project: &str, records: Vec<HealthRecord>, transitions: Vec<HealthTransition>) -> StoreFuture<'_, ()> {
        let project = project.to_owned();
        self.write(move |conn| sqlite_health::save(conn, &project, &records, &transitions))
    }

    fn health_records(&self, project: &str, since_day: i64, entity: Option<(String, String)>) -> StoreFuture<'_, Vec<HealthRecord>> {
        let project = project.to_owned();
        self.read(move |conn| sqlite_health::records(conn, &project, since_day, entity))
    }

    fn health_transitions(&self, project: &str, since: i64, until: i64, entity: Option<(String, String)>) -> StoreFuture<'_, Vec<HealthTransition>> {
        let project = project.to_owned();
        self.read(move |conn| sqlite_health::transitions(conn, &project, since, until, entity))
    }

    fn health_newest(&self, project: &str, kind: &str, since_day: i64) -> StoreFuture<'_, Option<i64>> {
        let (project, kind) = (project.to_owned(), kind.to_owned());
        self.read(move |conn| sqlite_health::newest(conn, &project, &kind, since_day))
    }

    fn health_counts(&self, project: &str, filter: &HealthFilter, newest: i64) -> StoreFuture<'_, HealthCounts> {
        let (project, filter) = (project.to_owned(), filter.clone());
        self.read(move |conn| sqlite_health::counts(conn, &project, &filter, newest))
    }

    fn health_bands_by_day(&self, project: &str, kind: &str, since_day: i64) -> StoreFuture<'_, Vec<(i64, Option<String>, u64)>> {
        let (project, kind) = (project.to_owned(), kind.to_owned());
        self.read(move |conn| sqlite_health::bands_by_day(conn, &project, &kind, since_day))
    }

    fn health_list(&self, project: &str, query: &HealthListQuery) -> StoreFuture<'_, Vec<(HealthRecord, Option<u32>)>> {
        let (project, query) = (project.to_owned(), query.clone());
        self.read(move |conn| sqlite_health::list(conn, &project, &query))
    }

    fn health_transition_counts(&self, project: &str, kind: &str, since: i64, until: i64) -> StoreFuture<'_, Vec<(String, String, String, u64)>> {
        let (project, kind) = (project.to_owned(), kind.to_owned());
        self.read(move |conn| sqlite_health::transition_counts(conn, &project, &kind, since, until))
    }

    fn enqueue_notifications(&self, notifications: Vec<Notification>) -> StoreFuture<'_, ()> {
        self.write(move |conn| {
            let tx = conn.transaction()?;
            for n in &notifications {
                tx.execute(
                    "INSERT OR IGNORE INTO webhook_outbox (id, project, kind, user, payload, created_at, next_attempt_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                    params![n.id, n.project, n.kind, n.user, n.payload, n.created_at],
                )?;
            }
            tx.commit()
        })
    }

    fn due_notifications(&self, now: i64, limit: usize) -> StoreFuture<'_, Vec<Notification>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, project, kind, user, payload, created_at, attempts FROM webhook_outbox
                 WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= ?1
                 ORDER BY next_attempt_at, id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![now, limit as i64], |r| {
                Ok(Notification {
                    id: r.get(0)?,
                    project: r.get(1)?,
                    kind: r.get(2)?,
                    user: r.get(3)?,
                    payload: r.get(4)?,
                    created_at: r.get(5)?,
                    attempts: r.get(6)?,
                })
            })?;
            rows.collect()
        })
    }

    fn record_attempt(&self, id: &str, attempt: Attempt) -> StoreFuture<'_, ()> {
        let id = id.to_owned();
        self.write(move |conn| {
            let (sql, time, error) = match attempt {
                Attempt::Delivered { at } => ("delivered_at = ?2, last_error = ?3", at, None),
                Attempt::Retry { next, error } => ("next_attempt_at = ?2, last_error = ?3", next, Some(error)),
                Attempt::GaveUp { at, error } => ("failed_at = ?2, last_error = ?3", at, Some(error)),
            };
            conn.execute(&format!("UPDATE webhook_outbox SET attempts = attempts + 1, {sql} WHERE id = ?1"), params![id, time, error])?;
            Ok(())
        })
    }

    fn known_ids(&self, project: &str, ids: Vec<String>) -> StoreFuture<'_, Vec<String>> {
        let project = project.to_owned();
        self.read(move |conn| {
            // One lookup of the (project, id) key per id; at most MAX_KNOWN_IDS of them.
            let mut stmt = conn.prepare_cached("SELECT 1 FROM events WHERE project = ?1 AND id = ?2")?;
            let mut known = Vec::new();
            for id in ids {
                if stmt.exists(params![project, id])? {
                    known.push(id);
                }
            }
            Ok(known)
        })
    }

    fn user_data(&self, project: &str, user: &str) -> StoreFuture<'_, UserData> {
        let (project, user) = (project.to_owned(), user.to_owned());
        self.read(move |conn| user_data(conn, &project, &user))
    }

    fn erase_user(&self, project: &str, user: &str) -> StoreFuture<'_, u64> {
        let (project, user, path) = (project.to_owned(), user.to_owned(), self.path.clone());
        // Its own connection beside the event writer, like `put_plan` (WAL + busy timeout).
        Box::pin(async move {
            tokio::task::spawn_blocking(move || erase_user(&path, &project, &user))
                .await
                .map_err(unavailable)?
                .map_err(unavailable)
        })
    }

    fn delete_events_before(&self, project: &str, before: i64) -> StoreFuture<'_, u64> {
        let (project, path) = (project.to_owned(), self.path.clone());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || -> rusqlite::Result<u64> {
                let mut conn = open(&path)?;
                // Immediate: it reads the devices, then writes; the writer thread may commit in
                // between otherwise, and a deferred transaction could not upgrade its snapshot.
                let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let deleted = sqlite_rollup::delete_events_before(&tx, &project, before)?;
                tx.commit()?;
                Ok(deleted)
            })
            .await
            .map_err(unavailable)?
            .map_err(unavailable)
        })
    }

    fn plan(&self, project: &str) -> StoreFuture<'_, Option<String>> {
        let project = project.to_owned();
        Box::pin(async move {
            let conn = self.reader()?;
            tokio::task::spawn_blocking(move || {
                conn.query_row("SELECT body FROM plans WHERE project = ?1", params![project], |r| r.get(0))
                    .optional()
            })
            .await
            .map_err(unavailable)?
            .map_err(unavailable)
        })
    }

    fn publish_plan(&self, project: &str, version: NewPlanVersion, base: Option<Option<u64>>) -> StoreFuture<'_, Published> {
        let project = project.to_owned();
        self.write(move |conn| {
            // Immediate: the number is read and written in one transaction, so two editors
            // publishing at once get consecutive numbers, and `base` is checked against the
            // version this transaction replaces.
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let current: Option<u64> = tx.query_row(
                "SELECT max(number) FROM plan_versions WHERE project = ?1",
                params![project],
                |r| r.get(0),
            )?;
            if let Some(base) = base {
                if base != current {
                    return Ok(Published::Conflict { current });
                }
            }
            let number = current.unwrap_or(0) + 1;
            let v = &version;
            tx.execute(
                "INSERT INTO plan_versions (project, number, body, version, etag, author_kind, author, message, created_at, rollback_of)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    project,
                    number,
                    v.text,
                    v.plan_version,
                    crate::plans::etag(&v.text),
                    v.author.kind.as_str(),
                    v.author.name,
                    v.message,
                    v.created_at,
                    v.rollback_of
                ],
            )?;
            tx.execute(
                "INSERT INTO plans (project, body, version, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (project) DO UPDATE SET body = excluded.body, version = excluded.version,
                 updated_at = excluded.updated_at",
                params![project, v.text, v.plan_version, v.created_at],
            )?;
            tx.commit()?;
            Ok(Published::Stored(number))
        })
    }

    fn plan_versions(&self, project: &str, limit: usize) -> StoreFuture<'_, Vec<PlanVersion>> {
        let project = project.to_owned();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT number, version, etag, CASE WHEN etag = '' THEN body END, author_kind, author, message, created_at, rollback_of
                 FROM plan_versions WHERE project = ?1 ORDER BY number DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![project, limit as i64], |r| {
                let etag: String = r.get(2)?;
                let body: Option<String> = r.get(3)?;
                Ok(PlanVersion {
                    number: r.get(0)?,
                    plan_version: r.get(1)?,
                    etag: body.map_or(etag, |b| crate::plans::etag(&b)),
                    author_kind: r.get(4)?,
                    author: r.get(5)?,
                    message: r.get(6)?,
                    created_at: r.get(7)?,
                    rollback_of: r.get(8)?,
                })
            })?;
            rows.collect()
        })
    }

    fn plan_version_text(&self, project: &str, number: u64) -> StoreFuture<'_, Option<String>> {
        let project = project.to_owned();
        self.read(move |conn| {
            conn.query_row(
                "SELECT body FROM plan_versions WHERE project = ?1 AND number = ?2",
                params![project, number],
                |r| r.get(0),
            )
            .optional()
        })
    }

    fn insert(&self, events: Vec<StoredEvent>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            let rows = events.into_iter().map(Row::new).collect();
            self.depth.fetch_add(1, Ordering::Relaxed);
            // A full channel means the writer is far behind: this request waits its turn.
            if self.writer.send((rows, reply)).await.is_err() {
                // Never reached the writer, so it will not count it down.
                self.depth.fetch_sub(1, Ordering::Relaxed);
                return Err(unavailable("writer stopped"));
            }
            answer.await.map_err(|_| unavailable("writer stopped"))?
        })
    }

    fn queue_depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    fn ready(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            if !self.writer_health.running.load(Ordering::Relaxed) {
                return Err(unavailable("the SQLite writer has stopped"));
            }
            // Recent failures only: with no traffic (taken out of rotation) no commit would
            // ever clear an old one.
            let recent = |at: &AtomicU64| {
                let at = at.load(Ordering::Relaxed);
                at != 0 && (crate::system_now_ms() as u64).saturating_sub(at) < 10_000
            };
            if recent(&self.writer_health.failed_at) {
                return Err(unavailable("the last commit failed"));
            }
            if recent(&self.writer_health.sync_failed_at) {
                return Err(unavailable("the last sync of the write-ahead log failed"));
            }
            if self.queue_depth() >= WRITER_QUEUE {
                return Err(unavailable("the writer's queue is full"));
            }
            self.read(|conn| conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0))).await.map(drop)
        })
    }

    fn data_version(&self, _project: &str) -> StoreFuture<'_, Option<u64>> {
        let version = self.version.clone();
        Box::pin(async move {
            // A read of the shared-memory index's header (page 1 after a change); a connection
            // that cannot answer gives no version, and then nothing is cached.
            let read = move || {
                let conn = version.lock().unwrap_or_else(|e| e.into_inner());
                conn.query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0)).ok().map(|v| v as u64)
            };
            Ok(tokio::task::spawn_blocking(read).await.ok().flatten())
        })
    }

    fn users(&self, project: &str) -> StoreFuture<'_, Vec<UserSeen>> {
        let project = project.to_owned();
        self.read(move |conn| query_users(conn, &project))
    }

    fn events(&self, project: &str, filter: &EventFilter) -> StoreFuture<'_, Vec<UserEvents>> {
        let (project, filter) = (project.to_owned(), filter.clone());
        self.read(move |conn| query_events(conn, &project, &filter))
    }

    fn firsts(&self, project: &str, filter: &EventFilter) -> StoreFuture<'_, Vec<UserEvents>> {
        let (project, filter) = (project.to_owned(), filter.clone());
        self.read(move |conn| query_firsts(conn, &project, &filter))
    }

    fn report_tallies(&self, project: &str, query: &ReportQuery) -> StoreFuture<'_, Tallies> {
        let (project, query) = (project.to_owned(), query.clone());
        self.read(move |conn| query_tallies(conn, &project, &query))
    }

    fn user_counts(&self, project: &str, user: &str, names: &[String], except: &str) -> StoreFuture<'_, Vec<(String, u64)>> {
        let (project, user, names, except) = (project.to_owned(), user.to_owned(), names.to_vec(), except.to_owned());
        self.read(move |conn| query_user_counts(conn, &project, &user, &names, &except))
    }

    fn tips(&self, project: &str) -> StoreFuture<'_, Vec<UserTip>> {
        let project = project.to_owned();
        self.read(move |conn| query_tips(conn, &project))
    }

    fn metrics(&self, project: &str) -> StoreFuture<'_, Vec<UserMetric>> {
        let project = project.to_owned();
        self.read(move |conn| query_metrics(conn, &project))
    }

    fn rebuild_rollups(&self, project: Option<&str>, mut progress: Progress) -> StoreFuture<'_, u64> {
        let (project, path) = (project.map(str::to_owned), self.path.clone());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || -> rusqlite::Result<u64> {
                let mut conn = open(&path)?;
                // IMMEDIATE: the writer waits (its busy timeout) rather than commit events the
                // rebuild would miss.
                let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let events = sqlite_rollup::rebuild(&tx, project.as_deref(), &mut *progress)?;
                tx.commit()?;
                Ok(events)
            })
            .await
            .map_err(unavailable)?
            .map_err(unavailable)
        })
    }

    fn verify_rollups(&self, project: Option<&str>) -> StoreFuture<'_, Vec<String>> {
        let project = project.map(str::to_owned);
        self.read(move |conn| sqlite_rollup::verify(conn, project.as_deref()))
    }
}

impl SqliteStore {
    /// Runs a read on its own connection off the async threads.
    fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        Box::pin(async move {
            let conn = self.reader()?;
            tokio::task::spawn_blocking(move || query(&conn)).await.map_err(unavailable)?.map_err(unavailable)
        })
    }
}

/// Which user each anonymous id was identified as, looked up as events without a user id come
/// (once per anonymous id): reading every link up front cost a report half a second at 10 M
/// events even when no event needed one, and joining per row, with a sort on the joined key,
/// cost SQLite twice the time of the scan.
struct Links<'c> {
    lookup: rusqlite::CachedStatement<'c>,
    project: &'c str,
    seen: HashMap<String, Option<String>>,
}

impl<'c> Links<'c> {
    fn new(conn: &'c Connection, project: &'c str) -> rusqlite::Result<Links<'c>> {
        let lookup = conn.prepare_cached("SELECT user_id FROM identities WHERE project = ?1 AND anonymous_id = ?2")?;
        Ok(Links { lookup, project, seen: HashMap::new() })
    }

    /// The user key (see `store` docs) of an event's user and anonymous ids.
    fn user_key(&mut self, user_id: Option<String>, anonymous_id: String) -> rusqlite::Result<String> {
        if let Some(user) = user_id {
            return Ok(user);
        }
        if !self.seen.contains_key(&anonymous_id) {
            let linked = self.lookup.query_row(params![self.project, anonymous_id], |r| r.get(0)).optional()?;
            self.seen.insert(anonymous_id.clone(), linked);
        }
        Ok(self.seen[&anonymous_id].clone().unwrap_or(anonymous_id))
    }
}

/// A rollup row `r`'s user key (see `store` docs): its user id, else its device's link, else its
/// anonymous id. Folding devices into users is then a GROUP BY on it, inside SQLite. The link is
/// looked up only for rows without a user id (CASE evaluates lazily): a LEFT JOIN sought the
/// identities index for every row, which was half the time of reading the traits.
const WHO: &str = "CASE WHEN r.user_id != '' THEN r.user_id ELSE COALESCE((SELECT i.user_id FROM identities i WHERE i.project = r.project AND i.anonymous_id = r.anonymous_id), r.anonymous_id) END";

/// Rows of a rollup `table` as (user key, identified, columns), in user key order without sorting
/// them all (identified: the row has a user id or its device a link), of the rows passing
/// `condition` (on `r`, with its `args`):
/// rows with a user id come in primary key order, already grouped by it; only the rows of
/// anonymous devices are resolved through their link and sorted. The two ordered runs are
/// merged as `consume` reads them: one GROUP BY over the computed key instead sorted every row
/// and cost twice as much, and holding both runs whole (every trait row's four strings) was
/// most of a report's memory at scale.
fn by_user_key<T, R>(
    conn: &Connection,
    table: &str,
    columns: &str,
    (condition, args): (&str, &[&dyn rusqlite::ToSql]),
    read: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    consume: impl FnOnce(&mut dyn Iterator<Item = (String, bool, T)>) -> rusqlite::Result<R>,
) -> rusqlite::Result<R> {
    let mut statements = key_statements(conn, table, columns, condition)?;
    let mut rows = KeyOrder::new(&mut statements, args, read)?;
    // A failed step ends the stream; the error is returned instead of `consume`'s answer.
    let mut failed = None;
    let answer = consume(&mut std::iter::from_fn(|| match rows.next()? {
        Ok(row) => Some(row),
        Err(e) => {
            failed = Some(e);
            None
        }
    }));
    match failed {
        Some(e) => Err(e),
        None => answer,
    }
}

/// A rollup row as (user key, identified, columns).
type Keyed<T> = rusqlite::Result<(String, bool, T)>;

/// The two ordered runs of [`by_user_key`] (rows with a user id; anonymous devices resolved
/// through their link), merged: rows in user key order, with their statements prepared apart
/// (`statements`) so that several rollups can be read side by side.
pub(super) struct KeyOrder<'s, T> {
    identified: std::iter::Peekable<Box<dyn Iterator<Item = Keyed<T>> + 's>>,
    anonymous: std::iter::Peekable<Box<dyn Iterator<Item = Keyed<T>> + 's>>,
}

pub(super) type KeyStatements<'c> = (rusqlite::CachedStatement<'c>, rusqlite::CachedStatement<'c>);

/// The two statements of a [`KeyOrder`] over `table`'s rows passing `condition`.
pub(super) fn key_statements<'c>(conn: &'c Connection, table: &str, columns: &str, condition: &str) -> rusqlite::Result<KeyStatements<'c>> {
    let identified = conn.prepare_cached(&format!("SELECT r.user_id, 1, {columns} FROM {table} r WHERE {condition} AND r.user_id != '' ORDER BY r.user_id"))?;
    let anonymous = conn.prepare_cached(&format!(
        "SELECT COALESCE(i.user_id, r.anonymous_id) AS who, i.user_id IS NOT NULL, {columns} FROM {table} r
         LEFT JOIN identities i ON i.project = r.project AND i.anonymous_id = r.anonymous_id
         WHERE {condition} AND r.user_id = '' ORDER BY who"
    ))?;
    Ok((identified, anonymous))
}


impl<'s, T: 's> KeyOrder<'s, T> {
    pub(super) fn new(statements: &'s mut KeyStatements<'_>, args: &[&dyn rusqlite::ToSql], read: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>) -> rusqlite::Result<KeyOrder<'s, T>> {
        let row = move |r: &rusqlite::Row<'_>| Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?, read(r)?));
        let (identified, anonymous) = statements;
        let identified: Box<dyn Iterator<Item = Keyed<T>> + 's> = Box::new(identified.query_map(args, row)?);
        let anonymous: Box<dyn Iterator<Item = Keyed<T>> + 's> = Box::new(anonymous.query_map(args, row)?);
        Ok(KeyOrder { identified: identified.peekable(), anonymous: anonymous.peekable() })
    }

    /// Passes over the rows of keys before `who`, and hands `each` those of `who`.
    pub(super) fn rows_of(&mut self, who: &str, mut each: impl FnMut(bool, T)) -> rusqlite::Result<()> {
        loop {
            let before = match self.peek() {
                Some(Ok((key, _, _))) if key.as_str() < who => true,
                Some(Ok((key, _, _))) if key == who => false,
                Some(Ok(_)) | None => return Ok(()),
                Some(Err(_)) => return self.next().map_or(Ok(()), |r| r.map(drop)),
            };
            match self.next() {
                Some(Ok((_, identified, row))) if !before => each(identified, row),
                _ => {}
            }
        }
    }

    fn peek(&mut self) -> Option<&Keyed<T>> {
        if self.takes_identified() {
            self.identified.peek()
        } else {
            self.anonymous.peek()
        }
    }

    /// Whether the next row comes from the identified run (the smaller key; an error first).
    fn takes_identified(&mut self) -> bool {
        match (self.identified.peek(), self.anonymous.peek()) {
            (Some(Err(_)), _) => true,
            (_, Some(Err(_))) => false,
            (Some(Ok(x)), Some(Ok(y))) => x.0 <= y.0,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

impl<'s, T: 's> Iterator for KeyOrder<'s, T> {
    type Item = Keyed<T>;

    fn next(&mut self) -> Option<Keyed<T>> {
        if self.takes_identified() {
            self.identified.next()
        } else {
            self.anonymous.next()
        }
    }
}

/// The per-user rollup's rows of `project` (`sqlite_users`) in user key order, its primary key's:
/// user key, identified, first and last seen, packed traits and milestones.
const USER_ROWS: &str =
    "SELECT user_key, identified, first_seen, last_seen, traits, milestones FROM rollup_users WHERE project = ?1 ORDER BY user_key";

fn query_users(conn: &Connection, project: &str) -> rusqlite::Result<Vec<UserSeen>> {
    let mut stmt = conn.prepare_cached(USER_ROWS)?;
    let mut rows = stmt.query([project])?;
    let mut users = Vec::new();
    while let Some(r) = rows.next()? {
        users.push(user_rows::unpack_user(r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get_ref(4)?.as_blob()?));
    }
    Ok(users)
}

/// [`Store::report_tallies`] in one streaming pass over the per-user rollup, holding one user at
/// a time: each user's row gives their sign-up, traits and first time of every milestone
/// column; a column that is an ad-hoc event (a `track` name) is read from the per-device event
/// rollup, one run in user key order each ([`KeyOrder`]), merged as the users come. Before the
/// per-user rollup this pass read every device, trait and milestone row (2.9 M rows at 10 M
/// events, where there are 450 k users), and stepping those rows was most of a report's time.
fn query_tallies(conn: &Connection, project: &str, query: &ReportQuery) -> rusqlite::Result<Tallies> {
    let mut pass = ReportRows::new(query);
    let columns = pass.columns().to_vec();
    let mut run_statements = Vec::new();
    for step in columns.iter().filter(|s| s.kind != StepKind::Milestone) {
        run_statements.push((step, key_statements(conn, "rollup_events", "r.first_ts", "r.project = ?1 AND r.type = ?2 AND r.name = ?3")?));
    }
    let mut runs = Vec::with_capacity(run_statements.len());
    for (step, statements) in &mut run_statements {
        let column = columns.binary_search(step).unwrap_or_default();
        let args: [&dyn rusqlite::ToSql; 3] = [&project, &step.kind.event_type().as_str(), &step.name];
        runs.push((column, KeyOrder::new(statements, &args, |r| r.get::<_, i64>(2))?));
    }

    let mut stmt = conn.prepare_cached(USER_ROWS)?;
    let mut rows = stmt.query([project])?;
    while let Some(r) = rows.next()? {
        let who: String = r.get(0)?;
        let firsts = pass.start(r.get_ref(5)?.as_blob()?);
        for (column, run) in &mut runs {
            let slot = &mut firsts[*column];
            run.rows_of(&who, |_, ts| *slot = Some(slot.map_or(ts, |t: i64| t.min(ts))))?;
        }
        pass.add(who, r.get(1)?, r.get(2)?, r.get(3)?, r.get_ref(4)?.as_blob()?);
    }
    Ok(pass.finish())
}

/// [`Store::firsts`] from the rollups: one row per device and (type, name), folded into user
/// keys inside SQLite. With the types and names listed (as every report lists them), each
/// (type, name) is read apart, in user key order from the primary key ([`by_user_key`]), and the
/// ordered runs are merged here into one row per user: a GROUP BY over the computed user key
/// sorted every row and was the largest part of a report.
fn query_firsts(conn: &Connection, project: &str, filter: &EventFilter) -> rusqlite::Result<Vec<UserEvents>> {
    if filter.names.is_empty() || filter.types.is_empty() {
        return query_firsts_by_row(conn, project, filter);
    }
    let types: Vec<&str> = filter.types.iter().map(|t| t.as_str()).collect();
    // Every (type, name) asked about, in the order ties are broken: type, then name (bytes).
    let mut columns: Vec<(&str, &str)> = types.iter().flat_map(|t| filter.names.iter().map(move |n| (*t, n.as_str()))).collect();
    columns.sort_unstable();
    columns.dedup();
    // Per user key, the first time of each column.
    let mut users: Vec<(String, Vec<Option<i64>>)> = Vec::new();
    for (column, (kind, name)) in columns.iter().enumerate() {
        let args: [&dyn rusqlite::ToSql; 3] = [&project, kind, name];
        let first_ts = |r: &rusqlite::Row<'_>| r.get::<_, i64>(2);
        users = by_user_key(conn, "rollup_events", "r.first_ts", ("r.project = ?1 AND r.type = ?2 AND r.name = ?3", &args), first_ts, |run| {
            let mut merged = Vec::with_capacity(users.len());
            let mut earlier = users.into_iter().peekable();
            for (who, _, ts) in run {
                while let Some(user) = earlier.next_if(|(u, _)| *u < who) {
                    merged.push(user);
                }
                match merged.last_mut() {
                    // Another device of the same user in this run.
                    Some((last, firsts)) if *last == who => firsts[column] = Some(firsts[column].map_or(ts, |t: i64| t.min(ts))),
                    _ => {
                        let (who, mut firsts) = earlier.next_if(|(u, _)| *u == who).unwrap_or_else(|| (who, vec![None; columns.len()]));
                        firsts[column] = Some(ts);
                        merged.push((who, firsts));
                    }
                }
            }
            merged.extend(earlier);
            Ok(merged)
        })?;
    }
    Ok(users
        .into_iter()
        .map(|(user, firsts)| {
            // Sized exactly: collecting an unknown count rounds a handful of events up to 4 or
            // 8, which for every user was tens of MB at scale.
            let mut events: Vec<UserEvent> = Vec::with_capacity(firsts.iter().flatten().count());
            events.extend(columns.iter().zip(firsts).filter_map(|((kind, name), ts)| {
                let kind = EventType::parse(kind).unwrap_or(EventType::Track);
                Some(UserEvent { ts: ts?, kind, name: (*name).to_owned(), props: Vec::new() })
            }));
            // Columns are in (type, name) order, so a stable sort by time keeps ties in that order.
            events.sort_by_key(|e| e.ts);
            UserEvents { user, events }
        })
        .collect())
}

/// [`query_firsts`] for a filter that leaves the types or the names open: one row per user and
/// (type, name).
fn query_firsts_by_row(conn: &Connection, project: &str, filter: &EventFilter) -> rusqlite::Result<Vec<UserEvents>> {
    let mut sql = format!("SELECT {WHO} AS who, r.type, r.name, MIN(r.first_ts) AS at FROM rollup_events r WHERE r.project = ?");
    let types: Vec<&str> = filter.types.iter().map(|t| t.as_str()).collect();
    let names: Vec<&str> = filter.names.iter().map(String::as_str).collect();
    for (column, values) in [("r.type", &types), ("r.name", &names)] {
        if !values.is_empty() {
            sql.push_str(&format!(" AND {column} IN ({})", vec!["?"; values.len()].join(",")));
        }
    }
    // The order `Store::firsts` promises: users by key, each user's by time, then type and name.
    sql.push_str(" GROUP BY who, r.type, r.name ORDER BY who, at, r.type, r.name");
    let mut args: Vec<&dyn rusqlite::ToSql> = vec![&project];
    args.extend(types.iter().map(|t| t as &dyn rusqlite::ToSql));
    args.extend(names.iter().map(|n| n as &dyn rusqlite::ToSql));
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query(args.as_slice())?;
    let mut users: Vec<UserEvents> = Vec::new();
    while let Some(row) = rows.next()? {
        let who = row.get_ref(0)?.as_str()?;
        let event = UserEvent {
            ts: row.get(3)?,
            kind: EventType::parse(row.get_ref(1)?.as_str()?).unwrap_or(EventType::Track),
            name: row.get(2)?,
            props: Vec::new(),
        };
        match users.last_mut() {
            Some(u) if u.user == who => u.events.push(event),
            _ => users.push(UserEvents { user: who.to_owned(), events: vec![event] }),
        }
    }
    Ok(users)
}

/// [`Store::user_counts`] from the per-device event rollup: the user's devices by the identity
/// rule (as erasure selects their rollup rows), through the rollup's key, so one user's read
/// costs their own rows.
fn query_user_counts(conn: &Connection, project: &str, user: &str, names: &[String], except: &str) -> rusqlite::Result<Vec<(String, u64)>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let devices = user_events_condition(
        "?2",
        "SELECT anonymous_id FROM identities WHERE project = ?1 AND user_id = ?2",
        "SELECT anonymous_id FROM identities WHERE project = ?1",
        "user_id = ''",
    );
    let sql = format!(
        "SELECT name, SUM(events) FROM rollup_events WHERE project = ?1 AND type = 'track' AND name IN ({}) AND anonymous_id != ?3 AND {devices}
         GROUP BY name ORDER BY name",
        (0..names.len()).map(|i| format!("?{}", i + 4)).collect::<Vec<_>>().join(", ")
    );
    let mut args: Vec<&dyn rusqlite::ToSql> = vec![&project, &user, &except];
    args.extend(names.iter().map(|n| n as &dyn rusqlite::ToSql));
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(args.as_slice(), |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// [`Store::tips`] from the tip rollup: its rows keyed by user key, sorted by SQLite, merged
/// over a user's devices and the tip's event names ([`merge_tip_rows`]).
fn query_tips(conn: &Connection, project: &str) -> rusqlite::Result<Vec<UserTip>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {WHO} AS who, r.tip_id, r.name, r.milestone, r.milestone_ts, r.milestone_event FROM rollup_tips r
         WHERE r.project = ?1 ORDER BY who, r.tip_id"
    ))?;
    let rows = stmt.query_map([project], |r| {
        let milestone: Option<String> = r.get(3)?;
        let earliest = match milestone {
            Some(m) => Some(((r.get(4)?, r.get(5)?), m)),
            None => None,
        };
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, earliest))
    })?;
    Ok(merge_tip_rows(rows.collect::<rusqlite::Result<Vec<_>>>()?))
}

/// [`Store::metrics`] from the metric rollup, merged over a user's devices as [`query_tips`].
fn query_metrics(conn: &Connection, project: &str) -> rusqlite::Result<Vec<UserMetric>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {WHO} AS who, r.name, r.first_ts, r.first_event, r.first_value, r.last_ts, r.last_event, r.last_value
         FROM rollup_metrics r WHERE r.project = ?1 ORDER BY who, r.name"
    ))?;
    let rows = stmt.query_map([project], |r| Ok((r.get(0)?, r.get(1)?, ((r.get(2)?, r.get(3)?), r.get(4)?), ((r.get(5)?, r.get(6)?), r.get(7)?))))?;
    Ok(merge_metric_rows(rows.collect::<rusqlite::Result<Vec<_>>>()?))
}

fn query_events(conn: &Connection, project: &str, filter: &EventFilter) -> rusqlite::Result<Vec<UserEvents>> {
    let mut links = Links::new(conn, project)?;
    let mut sql = format!(
        "SELECT user_id, anonymous_id, ts, id, type, name, {} FROM events WHERE project = ?",
        if filter.with_props { "props" } else { "''" }
    );
    let types: Vec<&str> = filter.types.iter().map(|t| t.as_str()).collect();
    let mut args: Vec<&dyn rusqlite::ToSql> = vec![&project];
    let any_of = |sql: &mut String, column: &str, values: &[&str]| {
        if !values.is_empty() {
            sql.push_str(&format!(" AND {column} IN ({})", vec!["?"; values.len()].join(",")));
        }
    };
    let names: Vec<&str> = filter.names.iter().map(String::as_str).collect();
    any_of(&mut sql, "type", &types);
    any_of(&mut sql, "name", &names);
    args.extend(types.iter().map(|t| t as &dyn rusqlite::ToSql));
    args.extend(names.iter().map(|n| n as &dyn rusqlite::ToSql));
    if let Some(since) = &filter.since {
        sql.push_str(" AND ts >= ?");
        args.push(since);
    }
    if let Some(until) = &filter.until {
        sql.push_str(" AND ts < ?");
        args.push(until);
    }
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query(args.as_slice())?;
    // Grouped and sorted here rather than by SQL: each user's few events sort quickly, where an
    // ORDER BY over the user key sorts every row of the answer at once.
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut users: Vec<(String, Vec<(i64, String, UserEvent)>)> = Vec::new();
    while let Some(row) = rows.next()? {
        let who = links.user_key(row.get(0)?, row.get(1)?)?;
        let kind = row.get_ref(4)?.as_str()?;
        let props = if filter.with_props {
            match onramp::core::json::parse(row.get_ref(6)?.as_str()?) {
                Ok(onramp::core::json::Value::Obj(entries)) => entries,
                // Ingest stored it from a parsed object, so this only happens to a damaged file.
                _ => Vec::new(),
            }
        } else {
            Vec::new()
        };
        let ts: i64 = row.get(2)?;
        let event = UserEvent {
            ts,
            // Ingest only stores known types; an unknown one is read as a plain track event.
            kind: EventType::parse(kind).unwrap_or(EventType::Track),
            name: row.get(5)?,
            props,
        };
        let slot = *index.entry(who.clone()).or_insert_with(|| {
            users.push((who, Vec::new()));
            users.len() - 1
        });
        users[slot].1.push((ts, row.get(3)?, event));
    }
    // Users in key order, as the contract asks (stores are compared answer for answer).
    users.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(users
        .into_iter()
        .map(|(user, mut events)| {
            events.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
            UserEvents { user, events: events.into_iter().map(|(_, _, e)| e).collect() }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use onramp::core::wire::Event;

    /// A request of track events `name` from one device.
    fn request(ids: &[&str], name: &str) -> WriteRequest {
        request_answered(ids, name).0
    }

    /// [`request`], with the receiver of its answer.
    fn request_answered(ids: &[&str], name: &str) -> (WriteRequest, oneshot::Receiver<Result<(), StoreError>>) {
        let rows = events(ids.iter().map(|id| (*id).to_owned()), name).into_iter().map(Row::new).collect();
        let (reply, answer) = oneshot::channel();
        ((rows, reply), answer)
    }

    /// Track events `name` from one device.
    fn events(ids: impl Iterator<Item = String>, name: &str) -> Vec<StoredEvent> {
        ids.zip(1_000..)
            .map(|(id, ts)| {
                let event = Event {
                    id,
                    kind: EventType::Track,
                    name: name.into(),
                    anonymous_id: "anon-1".into(),
                    user_id: Some("user-1".into()),
                    user_hash: None,
                    ts,
                    props: vec![("n".into(), Value::Num(ts as f64))],
                };
                StoredEvent { project: "demo".into(), event, ts, sent_at: 2_000, received_at: 2_000 }
            })
            .collect()
    }

    /// How many times the WAL has started over: its header's checkpoint sequence number.
    fn wal_restarts(database: &Path) -> u32 {
        let header = std::fs::read(wal_path(database)).unwrap_or_default();
        header.get(12..16).map_or(0, |n| u32::from_be_bytes([n[0], n[1], n[2], n[3]]))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn under_constant_writes_the_wal_starts_over_at_the_checkpoint_threads_request_and_keeps_every_event() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.db");
        // SQLite's own checkpoint is off: only the checkpoint thread's request can start the
        // WAL over, past 64 pages.
        let store = Arc::new(SqliteStore::open_with(path.clone(), WalLimits { restart: 64, backstop: 0 }).expect("open"));
        let restarts = wal_restarts(&path);
        // 32 senders, each sending its next batch when the last is acknowledged, as the
        // benchmark does: the writer always has the next commit waiting, so the WAL is never
        // all copied between two commits unless the writer copies the last ones itself.
        let stop = Arc::new(AtomicBool::new(false));
        let senders: Vec<_> = (0..32)
            .map(|sender| {
                let (store, stop) = (store.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut acknowledged = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let ids = (0..50).map(|i| format!("e{sender}-{acknowledged}-{i}"));
                        store.insert(events(ids, "task_done")).await.expect("acknowledged");
                        acknowledged += 50;
                    }
                    acknowledged
                })
            })
            .collect();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while wal_restarts(&path) < restarts + 3 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        stop.store(true, Ordering::Relaxed);
        let mut acknowledged = 0;
        for sender in senders {
            acknowledged += sender.await.expect("sender");
        }
        assert!(wal_restarts(&path) >= restarts + 3, "the WAL did not start over three times in a minute");
        drop(store);
        let conn = open(&path).expect("open");
        let stored: i64 = conn.query_row("SELECT count(*) FROM events", [], |r| r.get(0)).expect("count");
        assert_eq!(stored, acknowledged);
        let integrity: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("integrity");
        assert_eq!(integrity, "ok");
        assert_eq!(sqlite_rollup::verify(&conn, None).expect("verify"), Vec::<String>::new());
    }

    #[test]
    fn a_request_that_cannot_be_stored_fails_alone_and_the_rest_of_its_group_is_committed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = open(&dir.path().join("w.db")).expect("open");
        migrate(&mut conn).expect("migrate");
        // SQLite refuses this request's events, as it would on a damaged page.
        conn.execute_batch("CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.name = 'refused' BEGIN SELECT RAISE(ABORT, 'no'); END")
            .expect("trigger");
        // The last request resends `a2` beside a new event.
        let group = [request(&["a1", "a2"], "task_done"), request(&["r1"], "refused"), request(&["b1", "a2"], "task_done")];
        let results = write_group(&mut conn, &group);
        assert!(results[0].is_ok() && results[1].is_err() && results[2].is_ok(), "{results:?}");
        let ids: Vec<String> =
            conn.prepare("SELECT id FROM events ORDER BY id").and_then(|mut s| s.query_map([], |r| r.get(0))?.collect()).expect("ids");
        assert_eq!(ids, ["a1", "a2", "b1"]);
        let counted: i64 = conn.query_row("SELECT SUM(events) FROM rollup_events", [], |r| r.get(0)).expect("count");
        assert_eq!(counted, 3, "the resend is not counted, the refused event is not either");
        assert_eq!(sqlite_rollup::verify(&conn, None).expect("verify"), Vec::<String>::new());

        // A group that can all be stored is one transaction: every request acknowledged.
        let group = [request(&["c1"], "task_done"), request(&["c2", "c1"], "task_done")];
        assert!(write_group(&mut conn, &group).iter().all(Result::is_ok));
        assert_eq!(sqlite_rollup::verify(&conn, None).expect("verify"), Vec::<String>::new());
    }

    /// Whether this process holds a POSIX lock on `database` (`/proc/locks` names the owner's
    /// pid and the file's inode).
    #[cfg(target_os = "linux")]
    fn locked_by_this_process(database: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let inode = std::fs::metadata(database).expect("stat").ino().to_string();
        let pid = std::process::id().to_string();
        std::fs::read_to_string("/proc/locks").expect("/proc/locks").lines().any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1) == Some(&"POSIX") && fields.get(4) == Some(&pid.as_str()) && fields.get(5).and_then(|f| f.rsplit(':').next()) == Some(inode.as_str())
        })
    }

    /// A store syncs the database file through a descriptor of its own. Closing it when the
    /// store shut down dropped the shared lock that every other connection of this process holds
    /// on the file (POSIX locks belong to the process), after which other processes took the
    /// file as theirs alone (the flaky `rollups_match_a_recompute_and_are_rebuilt_and_migrated`).
    #[cfg(target_os = "linux")]
    #[test]
    fn a_store_that_shuts_down_leaves_the_locks_of_other_connections_to_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("l.db");
        let mut conn = open(&path).expect("open");
        migrate(&mut conn).expect("migrate");
        // In WAL mode a connection holds its shared lock on the file from its first read on.
        conn.query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0)).expect("read");
        assert!(locked_by_this_process(&path));
        // What the checkpoint thread does with the database file, from its first sync to the
        // store's end; twice, as two stores on the file would.
        for _ in 0..2 {
            let mut database = SyncedFile::database(&path);
            database.sync().expect("sync");
            drop(database);
            assert!(locked_by_this_process(&path), "the connection's lock is still held");
        }
    }

    fn health() -> WriterHealth {
        WriterHealth { running: AtomicBool::new(true), failed_at: AtomicU64::new(0), sync_failed_at: AtomicU64::new(0) }
    }

    #[test]
    fn committed_requests_are_answered_only_after_the_sync_and_fail_with_it() {
        let (committed, to_sync) = std::sync::mpsc::channel::<Committed>();
        let (first, mut first_answer) = request_answered(&["a1"], "task_done");
        let (second, mut second_answer) = request_answered(&["b1"], "task_done");
        let (refused, refused_answer) = request_answered(&["r1"], "refused");
        // Two commits wait together: one sync serves both.
        committed.send(vec![(first, Ok(())), (refused, Err("no".into()))]).expect("send");
        committed.send(vec![(second, Ok(()))]).expect("send");
        drop(committed);
        let mut syncs = 0;
        sync_loop(
            to_sync,
            || {
                syncs += 1;
                assert!(first_answer.try_recv().is_err() && second_answer.try_recv().is_err(), "nobody is answered before the sync");
                Ok(())
            },
            &health(),
        );
        assert_eq!(syncs, 1);
        assert!(matches!(first_answer.try_recv(), Ok(Ok(()))) && matches!(second_answer.try_recv(), Ok(Ok(()))));
        assert!(matches!(refused_answer.blocking_recv(), Ok(Err(StoreError::Unavailable(m))) if m == "no"), "a failed commit stays failed");

        // A sync that fails fails every request it was to make durable, and readiness hears of it.
        let (committed, to_sync) = std::sync::mpsc::channel::<Committed>();
        let (request, answer) = request_answered(&["c1"], "task_done");
        committed.send(vec![(request, Ok(()))]).expect("send");
        drop(committed);
        let health = health();
        sync_loop(to_sync, || Err(std::io::Error::other("disk gone")), &health);
        assert!(matches!(answer.blocking_recv(), Ok(Err(StoreError::Unavailable(m))) if m.contains("disk gone")));
        assert_ne!(health.sync_failed_at.load(Ordering::Relaxed), 0);
    }
}
