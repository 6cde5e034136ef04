//! The store at scale: ClickHouse over its HTTP interface.
//!
//! Chosen with `--store clickhouse://HOST:PORT/DB`. The collector itself keeps no state: every
//! accepted event goes to ClickHouse before it is acknowledged, so any number of collectors can
//! run behind a load balancer. With `?cluster=NAME&nodes=HOST:PORT,…` the tables are sharded over
//! a ClickHouse cluster (a Distributed table over one local table per node; docs/SCALING.md).
//!
//! Writes use group commit, like the SQLite store: one task gathers the rows of every request
//! that arrives within [`FLUSH_INTERVAL`] (or until [`MAX_ROWS_PER_INSERT`]) into one RowBinary
//! INSERT, and answers each request only after that INSERT succeeded. ClickHouse wants few large
//! inserts (each one is a part on disk to merge later), never one per request.
//!
//! When ClickHouse is unreachable the insert fails, every request in the group is answered
//! 503 with Retry-After, and the SDK keeps the events in its persistent queue and retries; the
//! event id makes the retry harmless if the failed insert did in fact land.

mod health;
mod report;
// Also SQLite's per-user rollup packs its rows in this layout (`sqlite_users`).
pub(super) mod rowbinary;
pub mod server;
mod users;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use self::rowbinary::{put_i64, put_str, put_strs, put_u64, Reader};
use onramp::core::json;
use onramp::core::wire::EventType;

use crate::analytics::report::{ReportQuery, Tallies, Tally};
use crate::analytics::{Step, UserFirsts};

use super::{
    user_events_condition, Attempt, EventFilter, HealthCounts, HealthFilter, HealthListQuery, HealthRecord, HealthTransition, NewPlanVersion, Notification, PlanVersion, Progress, Published, Store,
    StoreError, StoreFuture, StoredEvent, UserData, UserEvent, UserEvents, UserMetric, UserSeen, UserTip, merge_metric_rows, merge_tip_rows, Reported,
};

/// How long the writer waits for more requests after the first one of a group. Bounds the
/// latency group commit adds to a request; 150 ms keeps inserts to a handful per second.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(150);
/// A group is inserted at once when it reaches this many rows.
pub const MAX_ROWS_PER_INSERT: usize = 100_000;
/// Requests waiting for the writer; beyond this, `insert` waits (back-pressure on ingest).
const QUEUE_REQUESTS: usize = 4096;

/// One schema version: its statements (`{db}` and `{TABLE}` stand for the database and each
/// sharded table's local name) and, for a cluster, the tables that get a Distributed table over
/// their local ones, with the sharding key.
struct Migration {
    sql: &'static str,
    sharded: &'static [(&'static str, &'static str)],
}

/// Sharded by device, so one device's events and its identity link live together and every
/// copy of a resent event reaches the same shard to be folded.
const BY_DEVICE: &str = "cityHash64(project, anonymous_id)";

const MIGRATIONS: &[Migration] = &[
    Migration {
        sql: include_str!("../../../migrations/clickhouse/0001_events.sql"),
        sharded: &[("events", BY_DEVICE), ("identities", BY_DEVICE)],
    },
    Migration {
        sql: include_str!("../../../migrations/clickhouse/0002_plans.sql"),
        sharded: &[("plans", "cityHash64(project)")],
    },
    // Rollups of a device live on the shard of its events (the views read the local table).
    Migration {
        sql: include_str!("../../../migrations/clickhouse/0003_rollups.sql"),
        sharded: &[("rollup_devices", BY_DEVICE), ("rollup_events", BY_DEVICE)],
    },
    Migration {
        sql: include_str!("../../../migrations/clickhouse/0004_first_links.sql"),
        sharded: &[("links", BY_DEVICE)],
    },
    Migration {
        sql: include_str!("../../../migrations/clickhouse/0005_webhook_outbox.sql"),
        sharded: &[("webhook_outbox", "cityHash64(project, user)"), ("webhook_attempts", "cityHash64(id)")],
    },
    Migration {
        sql: include_str!("../../../migrations/clickhouse/0006_rollup_traits.sql"),
        sharded: &[("rollup_traits", BY_DEVICE)],
    },
    Migration {
        sql: include_str!("../../../migrations/clickhouse/0007_plan_versions.sql"),
        sharded: &[("plan_versions", "cityHash64(project)")],
    },
    Migration {
        sql: include_str!("../../../migrations/clickhouse/0008_health.sql"),
        sharded: &[("health_snapshots", "cityHash64(project, kind, id)"), ("health_transitions", "cityHash64(project, kind, id)")],
    },
    Migration {
        sql: include_str!("../../../migrations/clickhouse/0009_rollup_tips_metrics.sql"),
        sharded: &[("rollup_tips", BY_DEVICE), ("rollup_metrics", BY_DEVICE)],
    },
    // `rollup_users` is one table per server (kept on a single server only; `users`).
    Migration {
        sql: include_str!("../../../migrations/clickhouse/0010_rollup_users.sql"),
        sharded: &[("user_devices", BY_DEVICE), ("device_links", BY_DEVICE)],
    },
    Migration { sql: include_str!("../../../migrations/clickhouse/0011_rollup_users_columns.sql"), sharded: &[] },
    Migration {
        sql: include_str!("../../../migrations/clickhouse/0012_device_rows.sql"),
        sharded: &[("device_rows", BY_DEVICE)],
    },
];

/// The migration (1-based) that adds `device_rows` and the version clock: applying it rewrites
/// every `rollup_users` row (versions of the former scale would outrank the clock's).
const DEVICE_ROWS_MIGRATION: usize = 12;

/// The migration (1-based) that adds the identify trait arrays: applying it writes the
/// identifies already stored again with their arrays ([`backfill_traits`]).
const TRAITS_MIGRATION: usize = 6;

/// Every sharded table of every migration: a later migration may name an earlier one's table.
fn sharded_tables() -> impl Iterator<Item = &'static str> {
    MIGRATIONS.iter().flat_map(|m| m.sharded.iter().map(|(table, _)| *table))
}

type WriteRequest = (Vec<StoredEvent>, oneshot::Sender<Result<(), StoreError>>);

/// Where the data lives, parsed from the `--store` URL.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// `http://HOST:PORT`: the node this collector reads and writes through.
    pub http: String,
    pub database: String,
    /// The cluster name from the servers' `<remote_servers>`, when sharded.
    pub cluster: Option<String>,
    /// Every node's `http://HOST:PORT`, for migrations (each needs its local tables).
    pub nodes: Vec<String>,
}

impl Target {
    /// `clickhouse://HOST:PORT/DB[?cluster=NAME&nodes=HOST:PORT,HOST:PORT]`
    pub fn parse(url: &str) -> Result<Target, String> {
        let usage = "expected clickhouse://HOST:PORT/DATABASE[?cluster=NAME&nodes=HOST:PORT,…]";
        let rest = url.strip_prefix("clickhouse://").ok_or_else(|| format!("{url}: {usage}"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (host, database) = path.split_once('/').ok_or_else(|| format!("{url}: no database; {usage}"))?;
        // The name is spliced into DDL, so only plain identifiers are accepted.
        if database.is_empty() || !database.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("{url}: database name must be letters, digits and _"));
        }
        let mut target =
            Target { http: format!("http://{host}"), database: database.into(), cluster: None, nodes: Vec::new() };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("cluster", name)) if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                    target.cluster = Some(name.into())
                }
                Some(("nodes", list)) => {
                    target.nodes = list.split(',').filter(|n| !n.is_empty()).map(|n| format!("http://{n}")).collect()
                }
                _ => return Err(format!("{url}: unknown or malformed option {pair}; {usage}")),
            }
        }
        if target.nodes.is_empty() {
            target.nodes.push(target.http.clone());
        }
        Ok(target)
    }

    /// The local (MergeTree) table behind `table` on each node.
    fn local(&self, table: &str) -> String {
        match self.cluster {
            Some(_) => format!("{table}_local"),
            None => table.into(),
        }
    }
}

/// One HTTP endpoint of ClickHouse, with the settings every statement needs.
#[derive(Clone)]
struct Http {
    client: reqwest::Client,
    url: String,
    settings: String,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl Http {
    fn new(url: &str, settings: &str) -> Result<Http, StoreError> {
        let client = reqwest::Client::builder()
            // An unreachable server should turn into a quick 503, not a hung request.
            .connect_timeout(Duration::from_secs(2))
            .build()
            .map_err(unavailable)?;
        Ok(Http { client, url: url.into(), settings: settings.into() })
    }

    /// Runs `sql` (with `body` appended as the INSERT's data, if any) and returns the answer.
    async fn run(&self, sql: &str, body: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, StoreError> {
        let request = if body.is_empty() {
            self.client.post(format!("{}/?{}", self.url, self.settings)).body(sql.to_owned())
        } else {
            // The statement goes in the URL so the data can be streamed as the body.
            let url = format!("{}/?{}&query={}", self.url, self.settings, percent_encode(sql));
            self.client.post(url).body(body)
        };
        let response = request.timeout(timeout).send().await.map_err(|e| unavailable(format!("ClickHouse at {}: {e}", self.url)))?;
        let ok = response.status().is_success();
        let bytes = response.bytes().await.map_err(unavailable)?;
        if ok {
            Ok(bytes.to_vec())
        } else {
            Err(unavailable(format!("ClickHouse at {}: {}", self.url, String::from_utf8_lossy(&bytes).trim())))
        }
    }

    async fn execute(&self, sql: &str) -> Result<(), StoreError> {
        self.run(sql, Vec::new(), Duration::from_secs(60)).await.map(drop)
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// ClickHouse string literals separated by commas, for `IN (…)`.
pub fn quote_list<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    items.into_iter().map(|s| quote(s.as_ref())).collect::<Vec<_>>().join(", ")
}

/// A ClickHouse string literal.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// [`ClickHouseStore::with_user_key`] with its join (`ANY LEFT JOIN` or the `GLOBAL` one) and
/// `IN` spelled out.
fn keyed_sql(join: &str, in_set: &str, links: &str, project: &str, source: &str, columns: &[&str], anonymous: Option<&str>) -> String {
    let only = anonymous.map_or(String::new(), |devices| format!(" AND anonymous_id {in_set} ({devices})"));
    format!(
        "SELECT if(user_id != '', user_id, if(linked_user != '', linked_user, anonymous_id)) AS who, {columns}
         FROM ({source})
         {join} (SELECT anonymous_id, argMinMerge(first_user) AS linked_user FROM {links} WHERE project = {project}{only}
                 GROUP BY anonymous_id)
         USING anonymous_id",
        columns = columns.join(", "),
    )
}

/// In a query of [`ClickHouseStore::with_user_key`]: whether the row's user key comes from a user
/// id (its own or its device's link) rather than a never-identified visitor's anonymous id.
const IDENTIFIED: &str = "(user_id != '' OR linked_user != '') AS identified";

pub struct ClickHouseStore {
    target: Target,
    http: Http,
    writer: mpsc::Sender<WriteRequest>,
    /// Insert requests accepted and not yet answered (the `/metrics` queue-depth gauge).
    depth: AtomicUsize,
}

impl ClickHouseStore {
    /// Connects, applies pending migrations on every node, and starts the writer task (so it
    /// must be called inside a Tokio runtime).
    pub async fn open(url: &str) -> Result<ClickHouseStore, StoreError> {
        let target = Target::parse(url).map_err(StoreError::Unavailable)?;
        let applied = migrate(&target).await?;
        let mut settings = format!("database={}", target.database);
        if target.cluster.is_some() {
            // A Distributed insert is acknowledged only once every shard has its rows; the
            // default (queue locally, send later) would acknowledge rows a node crash can lose.
            settings.push_str("&insert_distributed_sync=1");
        }
        let http = Http::new(&target.http, &settings)?;
        if applied.contains(&TRAITS_MIGRATION) {
            backfill_traits(&http).await?;
        }
        let (writer, requests) = mpsc::channel(QUEUE_REQUESTS);
        let keeps_users = target.cluster.is_none();
        tokio::spawn(write_loop(http.clone(), requests, keeps_users));
        let store = ClickHouseStore { target, http, writer, depth: AtomicUsize::new(0) };
        // Each fills every row: the per-user rollup's, its report columns', and its versions
        // on the clock's scale (one fill for all).
        let fills = [users::USERS_MIGRATION, report::COLUMNS_MIGRATION, DEVICE_ROWS_MIGRATION];
        if let Some(&migration) = applied.iter().find(|m| fills.contains(m)) {
            let log = move |line: String| eprintln!("onramp-collector: ClickHouse migration {migration}: {line}");
            store.rebuild_users(None, &mut (Box::new(log) as Progress)).await?;
        }
        Ok(store)
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The newest `limit` plan versions of `project`, newest first. A project whose plan was
    /// stored before versions were kept (migration 0002's `plans` only) has that plan as
    /// version 1, author `unknown`, returned with its text (it is in no `plan_versions` row).
    async fn newest_plan_versions(&self, project: &str, limit: usize) -> Result<Vec<(PlanVersion, Option<String>)>, StoreError> {
        let sql = format!(
            "SELECT number, version, etag, author_kind, author, message, created_at, rollback_of FROM plan_versions
             WHERE project = {} ORDER BY number DESC, created_at DESC, etag DESC LIMIT {limit}",
            quote(project)
        );
        let answer = self.select(&sql).await?;
        let mut r = Reader::new(&answer);
        let mut out = Vec::new();
        while !r.is_empty() {
            let v = PlanVersion {
                number: r.u64()?,
                plan_version: r.str()?,
                etag: r.str()?,
                author_kind: r.str()?,
                author: r.str()?,
                message: r.str()?,
                created_at: r.u64()? as i64,
                rollback_of: Some(r.u64()?).filter(|n| *n > 0),
            };
            out.push((v, None));
        }
        if out.is_empty() && limit > 0 {
            let sql = format!("SELECT body, version, updated_at FROM plans FINAL WHERE project = {} ORDER BY updated_at DESC LIMIT 1", quote(project));
            let answer = self.select(&sql).await?;
            let mut r = Reader::new(&answer);
            if !r.is_empty() {
                let (body, plan_version, updated_at) = (r.str()?, r.str()?, r.u64()?);
                let legacy = PlanVersion {
                    number: 1,
                    plan_version,
                    author_kind: "unknown".into(),
                    author: String::new(),
                    message: "stored before version history was kept".into(),
                    created_at: updated_at as i64,
                    rollback_of: None,
                    etag: crate::plans::etag(&body),
                };
                out.push((legacy, Some(body)));
            }
        }
        Ok(out)
    }

    async fn select(&self, sql: &str) -> Result<Vec<u8>, StoreError> {
        self.http.run(&format!("{sql}\nFORMAT RowBinary"), Vec::new(), Duration::from_secs(600)).await
    }

    /// `GLOBAL` for a sharded layout: the right side of a join is then computed once and sent
    /// to every shard, rather than each shard joining against only its own slice of it.
    fn join(&self) -> &'static str {
        if self.target.cluster.is_some() {
            "GLOBAL ANY LEFT JOIN"
        } else {
            "ANY LEFT JOIN"
        }
    }

    /// `IN`, or for a sharded layout `GLOBAL IN`: the set is then computed once and sent to
    /// every shard (a plain `IN` over a Distributed table inside a distributed read is refused).
    fn in_set(&self) -> &'static str {
        if self.target.cluster.is_some() {
            "GLOBAL IN"
        } else {
            "IN"
        }
    }

    /// The events of `project` that pass `filter`, deduplicated, each with its user key (its
    /// user id, else the user its anonymous id was linked to, else the anonymous id): the same
    /// rule as the SQLite store's `COALESCE(e.user_id, i.user_id, e.anonymous_id)`.
    ///
    /// `columns` are the event columns to return after the user key, then `identified`
    /// ([`IDENTIFIED`]); only they (and the ones the key and ordering need) are read, so a query
    /// without props never touches that column.
    ///
    /// With a type or name in `filter`, only the devices the event rollup lists for them are
    /// read: `events` is sorted by device, so a report on rare events (surveys, experiments)
    /// reads their devices' granules instead of every event with FINAL.
    fn resolved_events(&self, project: &str, filter: &EventFilter, columns: &[&str]) -> String {
        let project = quote(project);
        let mut kinds = format!("project = {project}");
        let any_of = |conditions: &mut String, column: &str, values: Vec<String>| {
            if !values.is_empty() {
                conditions.push_str(&format!(" AND {column} IN ({})", values.join(", ")));
            }
        };
        any_of(&mut kinds, "type", filter.types.iter().map(|t| quote(t.as_str())).collect());
        any_of(&mut kinds, "name", filter.names.iter().map(|n| quote(n)).collect());
        let mut conditions = kinds.clone();
        let mut anonymous = None;
        if !filter.types.is_empty() || !filter.names.is_empty() {
            conditions.push_str(&format!(" AND anonymous_id {} (SELECT anonymous_id FROM rollup_events WHERE {kinds})", self.in_set()));
            anonymous = Some(format!("SELECT anonymous_id FROM rollup_events WHERE {kinds} AND user_id = ''"));
        }
        if let Some(since) = filter.since {
            conditions.push_str(&format!(" AND ts >= {since}"));
        }
        if let Some(until) = filter.until {
            conditions.push_str(&format!(" AND ts < {until}"));
        }
        let read = columns.iter().filter(|c| !["anonymous_id", "user_id", "id"].contains(c)).copied().collect::<Vec<_>>();
        let source = format!("SELECT anonymous_id, user_id, id, {} FROM events FINAL WHERE {conditions}", read.join(", "));
        let mut columns = columns.to_vec();
        columns.push(IDENTIFIED);
        self.with_user_key(&project, &source, &columns, anonymous.as_deref())
    }

    /// `source` (a query giving `anonymous_id`, `user_id` and `columns` of `project`) with each
    /// row's user key as `who`: its user id, else the user its anonymous id was linked to, else
    /// the anonymous id. `project` is already quoted.
    ///
    /// `anonymous`, when given, selects the anonymous ids of the source's rows without a user id
    /// (a superset will do): only their links are read and joined. Most rollup rows carry a user
    /// id, so this keeps the join's table to a few rows instead of every link of the project.
    fn with_user_key(&self, project: &str, source: &str, columns: &[&str], anonymous: Option<&str>) -> String {
        keyed_sql(self.join(), self.in_set(), "links", project, source, columns, anonymous)
    }

    /// Runs a SELECT and hands each row of its RowBinary answer to `row` while the answer
    /// arrives, so no read holds a whole answer (tens of MB per read at 10 M events). `row`
    /// reads every column of its row before it keeps anything: a row may end in a later chunk,
    /// and is then read again from its start.
    async fn stream(&self, sql: &str, mut row: impl FnMut(&mut Reader<'_>) -> Result<(), StoreError>) -> Result<(), StoreError> {
        let mut rows = self.rows(sql).await?;
        while rows.next(&mut row).await?.is_some() {}
        Ok(())
    }

    /// Runs a SELECT and returns its RowBinary answer to be read a row at a time as it arrives
    /// ([`Rows::next`]): what lets [`Store::report_tallies`] merge two answers by user key.
    async fn rows(&self, sql: &str) -> Result<Rows, StoreError> {
        Rows::open(&self.http, sql).await
    }

    /// Every user run of an answer sorted by user key, each folded as its rows arrive.
    async fn runs<R: Run>(&self, sql: &str) -> Result<Vec<R>, StoreError> {
        let mut runs: Vec<R> = Vec::new();
        self.stream(sql, |r| {
            let row = R::read(r)?;
            match runs.last_mut() {
                Some(run) if run.user() == R::who(&row) => run.add(row),
                _ => runs.push(R::start(row)),
            }
            Ok(())
        })
        .await?;
        Ok(runs)
    }

    /// The SELECT of [`Store::users`]: the rollup rows as stored (one per device and unmerged
    /// part), each state finalized on its own and given its user key by the identity join,
    /// sorted by user key, for [`Folded`] to fold each user's run as it arrives. Grouping by
    /// user key inside ClickHouse (18.16 hashing string keys) or in a hash map here each cost
    /// about twice the CPU of this sort at 10 M events.
    fn users_sql(&self, project: &str) -> String {
        let project = quote(project);
        // A device's first and last seen (trait columns empty), and each device's latest value
        // of each trait as (value, time, event id) (seen columns neutral), in one answer.
        let rows = format!(
            "SELECT anonymous_id, user_id, toUInt8(0) AS is_trait, finalizeAggregation(first_ts) AS first, finalizeAggregation(last_ts) AS last,
                    '' AS key, tuple('', toInt64(0), '') AS latest
             FROM rollup_devices WHERE project = {project}
             UNION ALL
             SELECT anonymous_id, user_id, toUInt8(1) AS is_trait, toInt64(9223372036854775807) AS first, toInt64(-9223372036854775808) AS last,
                    key, finalizeAggregation(latest) AS latest
             FROM rollup_traits WHERE project = {project}"
        );
        format!(
            "{} ORDER BY who",
            self.with_user_key(
                &project,
                &rows,
                &["is_trait", "first", "last", IDENTIFIED, "key", "tupleElement(latest, 1)", "tupleElement(latest, 2)", "tupleElement(latest, 3)"],
                None,
            )
        )
    }

    /// The SELECT of [`Store::firsts`]: one row per stored rollup row (the sort key prunes to
    /// the asked names), its state finalized on its own, keyed by user and sorted as SQLite's
    /// answer is (users by key, then time, then type and name): each user's first row of a
    /// (type, name) is its earliest, the rest are dropped as they arrive (see `users_sql` on
    /// why not GROUP BY).
    fn firsts_sql(&self, project: &str, filter: &EventFilter) -> String {
        let project = quote(project);
        let mut conditions = format!("project = {project}");
        if !filter.types.is_empty() {
            let types: Vec<String> = filter.types.iter().map(|t| quote(t.as_str())).collect();
            conditions.push_str(&format!(" AND type IN ({})", types.join(", ")));
        }
        if !filter.names.is_empty() {
            let names: Vec<String> = filter.names.iter().map(|n| quote(n)).collect();
            conditions.push_str(&format!(" AND name IN ({})", names.join(", ")));
        }
        let rows = format!(
            "SELECT anonymous_id, user_id, type, name, finalizeAggregation(first_ts) AS first FROM rollup_events WHERE {conditions}"
        );
        let anonymous = format!("SELECT anonymous_id FROM rollup_events WHERE {conditions} AND user_id = ''");
        format!("{} ORDER BY who, first, type, name", self.with_user_key(&project, &rows, &["first", "type", "name"], Some(&anonymous)))
    }

    /// How far each user got through `steps`, counted by ClickHouse's own `windowFunnel` rather
    /// than the shared matcher: a cross-check for the matcher and a lighter query at scale.
    ///
    /// 18.16's `windowFunnel` takes a UInt32 timestamp, so times are passed as milliseconds since
    /// the project's earliest matching event; a project whose events span more than 2^31 ms
    /// (24.8 days; the function keeps them in an Int32) is refused. Ties between events with the
    /// same millisecond may be ordered differently from the matcher, which orders by event id.
    pub async fn window_funnel_counts(
        &self,
        project: &str,
        steps: &[Step],
        window_ms: Option<i64>,
    ) -> Result<Vec<u64>, StoreError> {
        if steps.is_empty() {
            return Ok(Vec::new());
        }
        let mut filter = EventFilter::default();
        for s in steps {
            filter.types.push(s.kind.event_type());
            filter.names.push(s.name.clone());
        }
        let inner = self.resolved_events(project, &filter, &["ts", "type", "name"]);
        let span = self.select(&format!("SELECT toInt64(min(ts)), toInt64(max(ts)) FROM ({inner})")).await?;
        let mut r = Reader::new(&span);
        let (min, max) = (r.i64()?, r.i64()?);
        if max - min >= i64::from(i32::MAX) {
            return Err(unavailable("events span more than 2^31 ms; windowFunnel cannot count them in milliseconds"));
        }
        let window = window_ms.unwrap_or(i64::from(i32::MAX)).clamp(0, i64::from(i32::MAX));
        let conditions: Vec<String> = steps
            .iter()
            .map(|s| format!("type = {} AND name = {}", quote(s.kind.event_type().as_str()), quote(&s.name)))
            .collect();
        let sql = format!(
            "SELECT toUInt64(level), toUInt64(count()) FROM (
               SELECT who, windowFunnel({window})(toUInt32(ts - {min}), {conditions}) AS level
               FROM ({inner}) GROUP BY who HAVING max(identified))
             GROUP BY level",
            conditions = conditions.join(", "),
        );
        let answer = self.select(&sql).await?;
        let mut r = Reader::new(&answer);
        let mut counts = vec![0u64; steps.len()];
        while !r.is_empty() {
            let (level, users) = (r.u64()?, r.u64()?);
            for c in counts.iter_mut().take(level as usize) {
                *c += users;
            }
        }
        Ok(counts)
    }

    /// Rows in the events table, before and after folding duplicates (for tests and benches).
    pub async fn event_counts(&self) -> Result<(u64, u64), StoreError> {
        let answer = self
            .select("SELECT toUInt64((SELECT count() FROM events)), toUInt64((SELECT count() FROM events FINAL))")
            .await?;
        let mut r = Reader::new(&answer);
        Ok((r.u64()?, r.u64()?))
    }
}

impl ClickHouseStore {
    /// Anonymous ids linked to `user` (or to anyone, with `None`) in `project`, as a quoted
    /// list for `IN (…)` (`''` when empty: no anonymous id is empty).
    async fn linked(&self, project: &str, user: Option<&str>) -> Result<String, StoreError> {
        let ids: Vec<String> = self.linked_ids(project, user).await?.iter().map(|id| quote(id)).collect();
        Ok(if ids.is_empty() { "''".into() } else { ids.join(", ") })
    }

    /// [`ClickHouseStore::linked`]'s anonymous ids, unquoted.
    async fn linked_ids(&self, project: &str, user: Option<&str>) -> Result<Vec<String>, StoreError> {
        let mut sql = format!("SELECT anonymous_id FROM links WHERE project = {} GROUP BY anonymous_id", quote(project));
        if let Some(user) = user {
            sql.push_str(&format!(" HAVING argMinMerge(first_user) = {}", quote(user)));
        }
        let answer = self.select(&sql).await?;
        let mut r = Reader::new(&answer);
        let mut ids = Vec::new();
        while !r.is_empty() {
            ids.push(r.str()?);
        }
        Ok(ids)
    }

    /// The condition selecting `user`'s events, with the identity links read first (mutations
    /// take literal lists more reliably than subqueries on 18.16).
    async fn user_condition(&self, project: &str, user: &str) -> Result<String, StoreError> {
        let linked = self.linked(project, Some(user)).await?;
        let all = self.linked(project, None).await?;
        Ok(user_events_condition(&quote(user), &linked, &all, "user_id = ''"))
    }

    /// Recomputes the rollups of the events matching `condition` (on columns every rollup has:
    /// `project`, `anonymous_id`) from the events, on every node's local tables. Returns the
    /// events read.
    async fn rebuild_rollups_where(&self, condition: &str, progress: &mut Progress) -> Result<u64, StoreError> {
        let db = &self.target.database;
        let mut events = 0;
        // On every node, its local tables: a device's events and rollups share a shard.
        for node in &self.target.nodes {
            let http = Http::new(node, &format!("database={db}"))?;
            for Rollup { table, columns, states, source, array_join, .. } in &ROLLUPS {
                let local = self.target.local(table);
                progress(format!("{node}: clearing {local}"));
                http.execute(&format!("ALTER TABLE {local} DELETE WHERE {condition}")).await?;
                wait_for_mutations(&http, &local).await?;
                progress(format!("{node}: filling {local} from {}", self.target.local("events")));
                // One pass over every event: far longer than an ordinary statement's 60 s
                // (100 M events take tens of minutes on 2 cores).
                let sql = format!(
                    "INSERT INTO {local} SELECT {columns}, {states} FROM {events} {array_join} WHERE {condition} AND {source} GROUP BY {columns}",
                    events = self.target.local("events"),
                );
                http.run(&sql, Vec::new(), REBUILD_TIMEOUT).await?;
            }
            let answer = http
                .run(&format!("SELECT count() FROM {} WHERE {condition} FORMAT RowBinary", self.target.local("events")), Vec::new(), Duration::from_secs(600))
                .await?;
            events += Reader::new(&answer).u64()?;
            progress(format!("{node}: done ({events} events so far)"));
        }
        Ok(events)
    }

    /// `ALTER TABLE … DELETE WHERE condition` on every node's local table, then waits until
    /// the mutations are done, so the erasure is complete when this returns.
    async fn delete_where(&self, table: &str, condition: &str) -> Result<(), StoreError> {
        let db = &self.target.database;
        let local = self.target.local(table);
        for node in &self.target.nodes {
            let http = Http::new(node, "")?;
            http.execute(&format!("ALTER TABLE {db}.{local} DELETE WHERE {condition}")).await?;
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let pending = http
                    .run(
                        &format!(
                            "SELECT toUInt64(count()) FROM system.mutations WHERE database = {} AND table = {} AND is_done = 0 FORMAT RowBinary",
                            quote(db),
                            quote(&local)
                        ),
                        Vec::new(),
                        Duration::from_secs(10),
                    )
                    .await?;
                if Reader::new(&pending).u64()? == 0 {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(unavailable(format!("the deletion on {node} is still running; it will finish in the background")));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }
}

/// Applies the migrations this node has not seen yet, on every node. Statements are idempotent
/// (`IF NOT EXISTS`), so collectors starting at the same time may both run them safely. Returns
/// the (1-based) migrations applied: after the trait migration the caller runs
/// [`backfill_traits`], after the per-user rollup's it fills that.
async fn migrate(target: &Target) -> Result<Vec<usize>, StoreError> {
    let mut applied = Vec::new();
    for node in &target.nodes {
        let http = Http::new(node, "")?;
        let db = &target.database;
        http.execute(&format!("CREATE DATABASE IF NOT EXISTS {db}")).await?;
        http.execute(&format!(
            "CREATE TABLE IF NOT EXISTS {db}.onramp_migrations (version UInt32, applied_at DateTime DEFAULT now())
             ENGINE = MergeTree ORDER BY version"
        ))
        .await?;
        let done = http.run(&format!("SELECT toUInt64(max(version)) FROM {db}.onramp_migrations FORMAT RowBinary"), Vec::new(), Duration::from_secs(60)).await?;
        let done = Reader::new(&done).u64()? as usize;
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(done) {
            let mut sql = migration.sql.replace("{db}", db);
            for table in sharded_tables() {
                sql = sql.replace(&format!("{{{table}}}"), &target.local(table));
            }
            for statement in statements(&sql) {
                // A migration's INSERT … SELECT fills a new rollup from every stored event: as
                // long as a rebuild, far beyond an ordinary statement's 60 s on a large store.
                let fills = statement.lines().find(|l| !l.trim_start().starts_with("--")).is_some_and(|l| l.starts_with("INSERT"));
                let timeout = if fills { REBUILD_TIMEOUT } else { Duration::from_secs(60) };
                match http.run(statement, Vec::new(), timeout).await.map(drop) {
                    // 18.16 has no ADD COLUMN IF NOT EXISTS: a collector starting beside this
                    // one may have added it.
                    Err(StoreError::Unavailable(e)) if statement.contains(" ADD COLUMN ") && e.contains("already exists") => {}
                    result => result?,
                }
                if target.cluster.is_some() && statement.contains(" ADD COLUMN ") {
                    // The Distributed table over a local one needs the column too.
                    let distributed = sharded_tables()
                        .find(|t| statement.contains(&format!("ALTER TABLE {db}.{t}_local ")))
                        .map(|t| statement.replacen(&format!("{db}.{t}_local"), &format!("{db}.{t}"), 1));
                    if let Some(alter) = distributed {
                        match http.execute(&alter).await {
                            Err(StoreError::Unavailable(e)) if e.contains("already exists") => {}
                            result => result?,
                        }
                    }
                }
            }
            applied.push(i + 1);
            if let Some(cluster) = &target.cluster {
                // On every node, so any node can take reads and writes for the whole cluster.
                for (table, key) in migration.sharded {
                    http.execute(&format!(
                        "CREATE TABLE IF NOT EXISTS {db}.{table} AS {db}.{table}_local
                         ENGINE = Distributed({cluster}, '{db}', {table}_local, {key})"
                    ))
                    .await?;
                }
            }
            http.execute(&format!("INSERT INTO {db}.onramp_migrations (version) VALUES ({})", i + 1)).await?;
        }
    }
    Ok(applied)
}

/// The migration of the trait rollup, for identifies stored before it: writes each again with its
/// trait arrays (the same row and version otherwise, so the copy replaces the original when
/// parts merge), which feeds the view; the other rollups' states are unchanged by a repeat.
/// Reads a batch of identifies at a time, telling the log how far it got.
async fn backfill_traits(http: &Http) -> Result<(), StoreError> {
    let log = |line: String| eprintln!("onramp-collector: ClickHouse migration {TRAITS_MIGRATION}: {line}");
    let pending = "type = 'identify' AND empty(trait_keys) AND props != '{}'";
    let total = Reader::new(&http.run(&format!("SELECT count() FROM events FINAL WHERE {pending} FORMAT RowBinary"), Vec::new(), Duration::from_secs(600)).await?).u64()?;
    log(format!("{total} identify events to read"));
    let mut done = 0;
    let mut after = String::new();
    loop {
        let sql = format!(
            "SELECT project, anonymous_id, id, type, name, user_id, ts, client_ts, sent_at, received_at, props, first_seen
             FROM events FINAL WHERE {pending} AND (project, anonymous_id, id) > ({after}) ORDER BY project, anonymous_id, id LIMIT 10000
             FORMAT RowBinary",
            after = if after.is_empty() { "'', '', ''".to_string() } else { after.clone() },
        );
        let answer = http.run(&sql, Vec::new(), Duration::from_secs(600)).await?;
        let mut r = Reader::new(&answer);
        let mut rows = Vec::new();
        let mut n = 0;
        while !r.is_empty() {
            let (project, anon, id) = (r.str()?, r.str()?, r.str()?);
            let texts = [r.str()?, r.str()?, r.str()?];
            let times = [r.i64()?, r.i64()?, r.i64()?, r.i64()?];
            let (props, version) = (r.str()?, r.u64()?);
            for text in [&project, &anon, &id] {
                put_str(&mut rows, text);
            }
            for text in &texts {
                put_str(&mut rows, text);
            }
            for t in times {
                put_i64(&mut rows, t);
            }
            let traits = match json::parse(&props) {
                Ok(json::Value::Obj(entries)) => entries,
                _ => Vec::new(),
            };
            put_str(&mut rows, &props);
            put_u64(&mut rows, version);
            put_traits(&mut rows, &traits);
            after = format!("{}, {}, {}", quote(&project), quote(&anon), quote(&id));
            n += 1;
        }
        if n == 0 {
            break;
        }
        http.run(&format!("INSERT INTO events ({EVENT_COLUMNS}) FORMAT RowBinary"), rows, Duration::from_secs(600)).await?;
        done += n;
        log(format!("{done}/{total} identify events"));
    }
    Ok(())
}

/// The columns every insert into `events` writes, in RowBinary order.
const EVENT_COLUMNS: &str =
    "project, anonymous_id, id, type, name, user_id, ts, client_ts, sent_at, received_at, props, first_seen, trait_keys, trait_values";

/// An identify's traits as the two arrays the trait rollup's view reads: keys, and values as
/// JSON text (the same text SQLite's rollup keeps). Empty for other events.
fn put_traits(rows: &mut Vec<u8>, traits: &[(String, json::Value)]) {
    put_strs(rows, traits.iter().map(|(k, _)| k.as_str()));
    let values: Vec<String> = traits.iter().map(|(_, v)| v.to_json()).collect();
    put_strs(rows, values.iter().map(String::as_str));
}

/// One `plan_versions` row in RowBinary, in the migration's column order.
fn put_plan_version(rows: &mut Vec<u8>, project: &str, v: &PlanVersion, body: &str) {
    put_str(rows, project);
    put_u64(rows, v.number);
    put_str(rows, body);
    put_str(rows, &v.plan_version);
    put_str(rows, &v.etag);
    put_str(rows, &v.author_kind);
    put_str(rows, &v.author);
    put_str(rows, &v.message);
    put_u64(rows, v.created_at.max(0) as u64);
    put_u64(rows, v.rollback_of.unwrap_or(0));
}

/// The statements of a migration file: split on `;` at line ends, `--` comments dropped (the
/// HTTP interface takes one statement per request).
fn statements(sql: &str) -> Vec<&str> {
    sql.split(";\n")
        .map(str::trim)
        .filter(|s| s.lines().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with("--")))
        .map(|s| s.trim_end_matches(';'))
        .collect()
}

/// With `keeps_users`, each group's user rows are recomputed before its requests are answered:
/// a failure there answers 503 too, and the retry recomputes them.
async fn write_loop(http: Http, mut requests: mpsc::Receiver<WriteRequest>, keeps_users: bool) {
    while let Some(first) = requests.recv().await {
        let deadline = Instant::now() + FLUSH_INTERVAL;
        let mut rows = first.0.len();
        let mut group = vec![first];
        while rows < MAX_ROWS_PER_INSERT {
            match tokio::time::timeout_at(deadline, requests.recv()).await {
                Ok(Some(next)) => {
                    rows += next.0.len();
                    group.push(next);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let events: Vec<&StoredEvent> = group.iter().flat_map(|(events, _)| events).collect();
        let result = async {
            insert(&http, events.iter().copied()).await?;
            if keeps_users {
                users::refresh_after_insert(&http, &events).await?;
            }
            Ok::<(), StoreError>(())
        }
        .await;
        for (_, reply) in group {
            let _ = reply.send(result.as_ref().map(|_| ()).map_err(unavailable));
        }
    }
}

/// One INSERT for the events; the materialized views add them to the rollups and the identity
/// links within it. The request is only acknowledged when all succeeded, and a retry repeats
/// them harmlessly (the rollups' states are idempotent).
async fn insert<'a>(http: &Http, events: impl Iterator<Item = &'a StoredEvent>) -> Result<(), StoreError> {
    let mut rows = Vec::new();
    for (i, s) in events.enumerate() {
        let e = &s.event;
        // Versions order rows by receive time, then by position in this insert, so that equal
        // receive times still resolve as SQLite's commit order does (first copy of an event)
        // whatever order ClickHouse sorts a block's rows in.
        let arrival = ((s.received_at.max(0) as u64) << 20) | (i as u64 & 0xF_FFFF);
        put_str(&mut rows, &s.project);
        put_str(&mut rows, &e.anonymous_id);
        put_str(&mut rows, &e.id);
        put_str(&mut rows, e.kind.as_str());
        put_str(&mut rows, &e.name);
        put_str(&mut rows, e.user_id.as_deref().unwrap_or(""));
        put_i64(&mut rows, s.ts);
        put_i64(&mut rows, e.ts);
        put_i64(&mut rows, s.sent_at);
        put_i64(&mut rows, s.received_at);
        put_str(&mut rows, &onramp::core::json::Value::Obj(e.props.clone()).to_json());
        put_u64(&mut rows, u64::MAX - arrival);
        put_traits(&mut rows, if e.kind == EventType::Identify { &e.props } else { &[] });
    }
    if rows.is_empty() {
        return Ok(());
    }
    let timeout = Duration::from_secs(30);
    http.run(
        &format!("INSERT INTO events ({EVENT_COLUMNS}) FORMAT RowBinary"),
        rows,
        timeout,
    )
    .await?;
    Ok(())
}

/// How long one rollup's recompute may run (`rollup rebuild`).
pub(super) const REBUILD_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// One rollup table and how it is recomputed from the events (the same as its migration's view).
struct Rollup {
    table: &'static str,
    /// The key columns.
    columns: &'static str,
    /// The states, as the view computes them.
    states: &'static str,
    /// Which events it sums up, and how their rows are unrolled (`ARRAY JOIN …` or nothing).
    source: &'static str,
    array_join: &'static str,
    /// Its values as text, for `rollup verify`: as stored (merging the states) and as recomputed
    /// from the events.
    stored: [&'static str; 3],
    recomputed: [&'static str; 3],
}

const ROLLUPS: [Rollup; 9] = [
    Rollup {
        table: "rollup_devices",
        columns: "project, anonymous_id, user_id",
        states: "minState(ts), maxState(ts)",
        source: "1",
        array_join: "",
        stored: ["toString(minMerge(first_ts))", "toString(maxMerge(last_ts))", "''"],
        recomputed: ["toString(min(ts))", "toString(max(ts))", "''"],
    },
    Rollup {
        table: "user_devices",
        columns: "project, user_id, anonymous_id",
        states: "minState(ts)",
        source: "user_id != ''",
        array_join: "",
        stored: ["toString(minMerge(first_ts))", "''", "''"],
        recomputed: ["toString(min(ts))", "''", "''"],
    },
    Rollup {
        table: "rollup_events",
        columns: "project, type, name, anonymous_id, user_id",
        states: "minState(ts), maxState(ts), uniqExactState(id)",
        source: "1",
        array_join: "",
        stored: ["toString(minMerge(first_ts))", "toString(maxMerge(last_ts))", "toString(uniqExactMerge(ids))"],
        recomputed: ["toString(min(ts))", "toString(max(ts))", "toString(uniqExact(id))"],
    },
    Rollup {
        table: "links",
        columns: "project, anonymous_id",
        states: "argMinState(user_id, (ts, id))",
        source: "user_id != ''",
        array_join: "",
        stored: ["argMinMerge(first_user)", "''", "''"],
        recomputed: ["argMin(user_id, (ts, id))", "''", "''"],
    },
    Rollup {
        table: "device_links",
        columns: "project, anonymous_id",
        states: "argMinState(user_id, (ts, id))",
        source: "user_id != ''",
        array_join: "",
        stored: ["argMinMerge(first_user)", "''", "''"],
        recomputed: ["argMin(user_id, (ts, id))", "''", "''"],
    },
    Rollup {
        table: "rollup_traits",
        columns: "project, anonymous_id, user_id, key",
        states: "argMaxState((value, ts, id), (ts, id))",
        source: "type = 'identify'",
        array_join: "ARRAY JOIN trait_keys AS key, trait_values AS value",
        stored: [
            "tupleElement(argMaxMerge(latest), 1)",
            "toString(tupleElement(argMaxMerge(latest), 2))",
            "tupleElement(argMaxMerge(latest), 3)",
        ],
        recomputed: [
            "tupleElement(argMax((value, ts, id), (ts, id)), 1)",
            "toString(tupleElement(argMax((value, ts, id), (ts, id)), 2))",
            "tupleElement(argMax((value, ts, id), (ts, id)), 3)",
        ],
    },
    Rollup {
        table: "rollup_tips",
        columns: "project, anonymous_id, user_id, tip_id, name",
        states: TIP_MILESTONE_STATE,
        source: "type = 'tip' AND substring(visitParamExtractRaw(props, 'tipId'), 1, 1) = '\"'",
        array_join: "ARRAY JOIN [visitParamExtractString(props, 'tipId')] AS tip_id, [toUInt8(substring(visitParamExtractRaw(props, 'milestone'), 1, 1) != '\"')] AS no_milestone",
        stored: ["toString(argMinMerge(milestone))", "''", "''"],
        recomputed: ["toString(argMin((no_milestone, visitParamExtractString(props, 'milestone'), ts, id), (no_milestone, ts, id)))", "''", "''"],
    },
    Rollup {
        table: "rollup_metrics",
        columns: "project, anonymous_id, user_id, name",
        states: "argMinState((value, ts, id), (ts, id)), argMaxState((value, ts, id), (ts, id))",
        source: "type = 'metric' AND match(value, '^-?[0-9]')",
        array_join: "ARRAY JOIN [multiIf(name = 'core_task_completion', visitParamExtractRaw(props, 'value'), name IN ('first_session_length', 'return_interval'), visitParamExtractRaw(props, 'valueMs'), '')] AS value",
        stored: ["toString(argMinMerge(first))", "toString(argMaxMerge(latest))", "''"],
        recomputed: ["toString(argMin((value, ts, id), (ts, id)))", "toString(argMax((value, ts, id), (ts, id)))", "''"],
    },
    Rollup {
        table: "device_rows",
        columns: "project, anonymous_id, user_id, part, key",
        states: "minState(ts), maxState(ts), argMaxState((value, ts, id), (ts, id))",
        source: "1",
        array_join: DEVICE_ROWS_PARTS,
        stored: ["toString(minMerge(first_ts))", "toString(maxMerge(last_ts))", "toString(argMaxMerge(latest))"],
        recomputed: ["toString(min(ts))", "toString(max(ts))", "toString(argMax((value, ts, id), (ts, id)))"],
    },
];

/// The user rows' per-device rollup (migration 12): each event's `seen` row, and a row per
/// trait of an identify and for a milestone's name.
const DEVICE_ROWS_PARTS: &str = "ARRAY JOIN
    arrayConcat(['seen'], if(type = 'identify', arrayMap(k -> 'trait', trait_keys), emptyArrayString()), if(type = 'milestone', ['milestone'], emptyArrayString())) AS part,
    arrayConcat([''], if(type = 'identify', trait_keys, emptyArrayString()), if(type = 'milestone', [name], emptyArrayString())) AS key,
    arrayConcat([''], if(type = 'identify', trait_values, emptyArrayString()), if(type = 'milestone', [''], emptyArrayString())) AS value";

/// The tip rollup's state (migration 9): (no milestone?, milestone, ts, id) of the earliest
/// event by (no milestone?, ts, id).
const TIP_MILESTONE_STATE: &str = "argMinState((no_milestone, visitParamExtractString(props, 'milestone'), ts, id), (no_milestone, ts, id))";

/// Waits until `table` has no unfinished mutation (18.16 runs `ALTER … DELETE` in the
/// background and has no setting to wait for it). Mutations run in the merge pool, so a server
/// whose merges are stopped never finishes them: give up after ten minutes.
async fn wait_for_mutations(http: &Http, table: &str) -> Result<(), StoreError> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let answer = http
            .run(
                &format!("SELECT count() FROM system.mutations WHERE database = currentDatabase() AND table = {} AND is_done = 0 FORMAT RowBinary", quote(table)),
                Vec::new(),
                Duration::from_secs(60),
            )
            .await?;
        if Reader::new(&answer).u64()? == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(unavailable(format!("the deletion of {table}'s old rollups has not finished after 10 minutes (are merges stopped?)")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Holds one count in the queue-depth gauge for as long as it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(depth: &'a AtomicUsize) -> Waiting<'a> {
        depth.fetch_add(1, Ordering::Relaxed);
        Waiting(depth)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Store for ClickHouseStore {
    fn save_health(&self, project: &str, records: Vec<HealthRecord>, transitions: Vec<HealthTransition>) -> StoreFuture<'_, ()> {
        let project = project.to_owned();
        Box::pin(async move { self.save_health_rows(&project, &records, &transitions).await })
    }

    fn health_records(&self, project: &str, since_day: i64, entity: Option<(String, String)>) -> StoreFuture<'_, Vec<HealthRecord>> {
        let project = project.to_owned();
        Box::pin(async move { self.health_record_rows(&project, since_day, entity).await })
    }

    fn health_transitions(&self, project: &str, since: i64, until: i64, entity: Option<(String, String)>) -> StoreFuture<'_, Vec<HealthTransition>> {
        let project = project.to_owned();
        Box::pin(async move { self.health_transition_rows(&project, since, until, entity).await })
    }

    fn health_newest(&self, project: &str, kind: &str, since_day: i64) -> StoreFuture<'_, Option<i64>> {
        let (project, kind) = (project.to_owned(), kind.to_owned());
        Box::pin(async move { self.health_newest_row(&project, &kind, since_day).await })
    }

    fn health_counts(&self, project: &str, filter: &HealthFilter, newest: i64) -> StoreFuture<'_, HealthCounts> {
        let (project, filter) = (project.to_owned(), filter.clone());
        Box::pin(async move { self.health_count_rows(&project, &filter, newest).await })
    }

    fn health_bands_by_day(&self, project: &str, kind: &str, since_day: i64) -> StoreFuture<'_, Vec<(i64, Option<String>, u64)>> {
        let (project, kind) = (project.to_owned(), kind.to_owned());
        Box::pin(async move { self.health_band_day_rows(&project, &kind, since_day).await })
    }

    fn health_list(&self, project: &str, query: &HealthListQuery) -> StoreFuture<'_, Vec<(HealthRecord, Option<u32>)>> {
        let (project, query) = (project.to_owned(), query.clone());
        Box::pin(async move { self.health_list_rows(&project, &query).await })
    }

    fn health_transition_counts(&self, project: &str, kind: &str, since: i64, until: i64) -> StoreFuture<'_, Vec<(String, String, String, u64)>> {
        let (project, kind) = (project.to_owned(), kind.to_owned());
        Box::pin(async move { self.health_transition_count_rows(&project, &kind, since, until).await })
    }

    fn enqueue_notifications(&self, notifications: Vec<Notification>) -> StoreFuture<'_, ()> {
        let mut rows = Vec::new();
        for n in &notifications {
            for text in [&n.id, &n.project, &n.kind, &n.user, &n.payload] {
                put_str(&mut rows, text);
            }
            put_i64(&mut rows, n.created_at);
            put_u64(&mut rows, u64::MAX - n.created_at.max(0) as u64);
        }
        Box::pin(async move {
            if rows.is_empty() {
                return Ok(());
            }
            let sql = "INSERT INTO webhook_outbox (id, project, kind, user, payload, created_at, first) FORMAT RowBinary";
            self.http.run(sql, rows, Duration::from_secs(30)).await.map(drop)
        })
    }

    fn due_notifications(&self, now: i64, limit: usize) -> StoreFuture<'_, Vec<Notification>> {
        // A notification with no attempt row yet joins to zeros: due at once.
        let sql = format!(
            "SELECT id, project, kind, user, payload, created_at, toUInt64(attempts) FROM
               (SELECT id, project, kind, user, payload, created_at FROM webhook_outbox FINAL)
             {join} (SELECT id, attempts, next_attempt_at, delivered_at, failed_at FROM webhook_attempts FINAL) USING id
             WHERE delivered_at = 0 AND failed_at = 0 AND next_attempt_at <= {now}
             ORDER BY next_attempt_at, id LIMIT {limit}",
            join = self.join()
        );
        Box::pin(async move {
            let answer = self.select(&sql).await?;
            let mut r = Reader::new(&answer);
            let mut out = Vec::new();
            while !r.is_empty() {
                out.push(Notification {
                    id: r.str()?,
                    project: r.str()?,
                    kind: r.str()?,
                    user: r.str()?,
                    payload: r.str()?,
                    created_at: r.i64()?,
                    attempts: r.u64()? as u32,
                });
            }
            Ok(out)
        })
    }

    fn record_attempt(&self, id: &str, attempt: Attempt) -> StoreFuture<'_, ()> {
        let id = id.to_owned();
        Box::pin(async move {
            let sql = format!("SELECT toUInt64(max(attempts)) FROM webhook_attempts WHERE id = {}", quote(&id));
            let before = Reader::new(&self.select(&sql).await?).u64()?;
            let (next, delivered, failed, error) = match attempt {
                Attempt::Delivered { at } => (0, at, 0, String::new()),
                Attempt::Retry { next, error } => (next, 0, 0, error),
                Attempt::GaveUp { at, error } => (0, 0, at, error),
            };
            let mut row = Vec::new();
            put_str(&mut row, &id);
            put_u64(&mut row, before + 1);
            for n in [next, delivered, failed] {
                put_i64(&mut row, n);
            }
            put_str(&mut row, &error);
            let sql = "INSERT INTO webhook_attempts (id, attempts, next_attempt_at, delivered_at, failed_at, last_error) FORMAT RowBinary";
            self.http.run(sql, row, Duration::from_secs(30)).await.map(drop)
        })
    }

    fn known_ids(&self, project: &str, ids: Vec<String>) -> StoreFuture<'_, Vec<String>> {
        let project = quote(project);
        Box::pin(async move {
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            // Existence only: no FINAL needed (a row not yet merged is still stored).
            let list = quote_list(ids);
            let answer = self.select(&format!("SELECT DISTINCT id FROM events WHERE project = {project} AND id IN ({list})")).await?;
            let mut r = Reader::new(&answer);
            let mut known = Vec::new();
            while !r.is_empty() {
                known.push(r.str()?);
            }
            Ok(known)
        })
    }

    fn user_data(&self, project: &str, user: &str) -> StoreFuture<'_, UserData> {
        let (project, user) = (project.to_owned(), user.to_owned());
        Box::pin(async move {
            let condition = self.user_condition(&project, &user).await?;
            let answer = self
                .select(&format!(
                    "SELECT id, type, name, anonymous_id, user_id, ts, client_ts, sent_at, received_at, props
                     FROM events FINAL WHERE project = {} AND {condition} ORDER BY ts, id",
                    quote(&project)
                ))
                .await?;
            let mut r = Reader::new(&answer);
            let mut events = Vec::new();
            while !r.is_empty() {
                let (id, kind, name, anon, user_id) = (r.str()?, r.str()?, r.str()?, r.str()?, r.str()?);
                let (ts, client_ts, sent_at, received_at, props) = (r.i64()?, r.i64()?, r.i64()?, r.i64()?, r.str()?);
                events.push(serde_json::json!({
                    "id": id, "type": kind, "name": name, "anonymousId": anon,
                    "userId": if user_id.is_empty() { None } else { Some(user_id) },
                    "ts": ts, "clientTs": client_ts, "sentAt": sent_at, "receivedAt": received_at,
                    "props": serde_json::from_str::<serde_json::Value>(&props).unwrap_or(serde_json::Value::String(props)),
                }));
            }
            let answer = self
                .select(&format!(
                    "SELECT anonymous_id, argMinMerge(first_user) AS linked_user FROM links WHERE project = {}
                     GROUP BY anonymous_id HAVING linked_user = {u} OR anonymous_id = {u} ORDER BY anonymous_id",
                    quote(&project),
                    u = quote(&user)
                ))
                .await?;
            let mut r = Reader::new(&answer);
            let mut identities = Vec::new();
            while !r.is_empty() {
                identities.push((r.str()?, r.str()?));
            }
            Ok(UserData { events, identities })
        })
    }

    /// Per-user derived tables are one more `delete_where` line here, as in SQLite's `ERASE_USER`.
    /// The condition is computed once, before anything is deleted: it reads the identity links.
    fn erase_user(&self, project: &str, user: &str) -> StoreFuture<'_, u64> {
        let (project, user) = (project.to_owned(), user.to_owned());
        Box::pin(async move {
            let erased = self.user_data(&project, &user).await?.events.len() as u64;
            let condition = format!("project = {} AND {}", quote(&project), self.user_condition(&project, &user).await?);
            let linked = self.linked(&project, Some(&user)).await?;
            // The keys whose rows can change: the user's devices' other user ids (their
            // events stay) and anonymous ids; the user's own rows are deleted below.
            let mut devices: std::collections::BTreeSet<String> = self.linked_ids(&project, Some(&user)).await?.into_iter().collect();
            devices.insert(user.clone());
            let keys = if self.keeps_users() { users::keys_of_devices(&self.http, &project, devices.iter().map(String::as_str)).await? } else { Default::default() };
            for table in ["events", "rollup_devices", "rollup_events", "rollup_traits", "rollup_tips", "rollup_metrics", "device_rows"] {
                self.delete_where(table, &condition).await?;
            }
            self.delete_where("user_devices", &format!("project = {} AND user_id = {}", quote(&project), quote(&user))).await?;
            // The devices whose links go are relinked from their remaining events (another
            // user's identify on the same device), as a recompute would: their rollups are
            // recomputed from what remains.
            let unlinked = format!("project = {} AND (anonymous_id IN ({linked}) OR anonymous_id = {})", quote(&project), quote(&user));
            self.rebuild_rollups_where(&unlinked, &mut (Box::new(|_| ()) as Progress)).await?;
            if self.keeps_users() {
                users::refresh(&self.http, &project, &keys.into_iter().filter(|k| *k != user).collect()).await?;
                self.delete_where("rollup_users", &format!("project = {} AND user_key = {}", quote(&project), quote(&user))).await?;
            }
            self.delete_where("webhook_outbox", &format!("project = {} AND user = {}", quote(&project), quote(&user))).await?;
            self.erase_health(&project, &user).await?;
            Ok(erased)
        })
    }

    fn delete_events_before(&self, project: &str, before: i64) -> StoreFuture<'_, u64> {
        let name = project.to_owned();
        let project = quote(project);
        Box::pin(async move {
            let answer = self.select(&format!("SELECT toUInt64(count()) FROM events FINAL WHERE project = {project} AND ts < {before}")).await?;
            let n = Reader::new(&answer).u64()?;
            if n == 0 {
                return Ok(0);
            }
            // The devices that lose events get their rollups recomputed from what remains, so
            // the rollups stay what a recompute gives (`rollup verify` finds nothing).
            let answer = self.select(&format!("SELECT DISTINCT anonymous_id FROM events WHERE project = {project} AND ts < {before}")).await?;
            let mut r = Reader::new(&answer);
            let mut devices = std::collections::BTreeSet::new();
            while !r.is_empty() {
                devices.insert(r.str()?);
            }
            // Read before the deletion: the user ids those devices carried.
            let keys = if self.keeps_users() { users::keys_of_devices(&self.http, &name, devices.iter().map(String::as_str)).await? } else { Default::default() };
            self.delete_where("events", &format!("project = {project} AND ts < {before}")).await?;
            let devices: Vec<String> = devices.iter().map(|d| quote(d)).collect();
            for chunk in devices.chunks(1000) {
                let condition = format!("project = {project} AND anonymous_id IN ({})", chunk.join(", "));
                self.rebuild_rollups_where(&condition, &mut (Box::new(|_| ()) as Progress)).await?;
            }
            users::refresh(&self.http, &name, &keys).await?;
            Ok(n)
        })
    }

    fn insert(&self, events: Vec<StoredEvent>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            // Counted until answered, even if the request is dropped while waiting.
            let _waiting = Waiting::new(&self.depth);
            self.writer.send((events, reply)).await.map_err(|_| unavailable("writer stopped"))?;
            answer.await.map_err(|_| unavailable("writer stopped"))?
        })
    }

    fn queue_depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// From the server, so it holds for every collector writing to it: per table reports read,
    /// the greater of its newest part's block number and its newest mutation's. A MergeTree
    /// numbers inserts and mutations from one counter, so this grows with every insert and
    /// every deletion, and merges leave it as it is; summed over the tables (and nodes), it
    /// changes whenever a report's answer may. `None` while a deletion is still running (its
    /// rows are half gone): nothing is cached then.
    fn data_version(&self, _project: &str) -> StoreFuture<'_, Option<u64>> {
        Box::pin(async move {
            let tables: Vec<String> = VERSIONED.iter().map(|t| self.target.local(t)).collect();
            let sql = format!("{}\nFORMAT RowBinary", users::version_sql(&tables));
            let (mut version, mut running) = (0, 0);
            for node in &self.target.nodes {
                let http = Http::new(node, &format!("database={}", self.target.database))?;
                let answer = http.run(&sql, Vec::new(), Duration::from_secs(10)).await?;
                let mut r = Reader::new(&answer);
                version += r.u64()?;
                running += r.u64()?;
            }
            Ok((running == 0).then_some(version))
        })
    }

    /// The writer task is running and not swamped, and the server answers a query (the
    /// writer's inserts go to the same server).
    fn ready(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            if self.writer.is_closed() {
                return Err(unavailable("the ClickHouse writer has stopped"));
            }
            if self.queue_depth() >= QUEUE_REQUESTS {
                return Err(unavailable("the writer's queue is full"));
            }
            self.http.run("SELECT 1", Vec::new(), Duration::from_secs(2)).await.map(drop)
        })
    }

    fn plan(&self, project: &str) -> StoreFuture<'_, Option<String>> {
        let project = project.to_owned();
        Box::pin(async move {
            match self.newest_plan_versions(&project, 1).await?.into_iter().next() {
                Some((_, Some(legacy))) => Ok(Some(legacy)),
                Some((current, None)) => self.plan_version_text(&project, current.number).await,
                None => Ok(None),
            }
        })
    }

    /// Written at once, not through the group-commit writer: plans change rarely. ClickHouse
    /// has no transactions, so the `base` check and the number are read just before the
    /// insert: two collectors publishing the same project within that gap may both succeed
    /// (see the migration for how the history keeps both).
    fn publish_plan(&self, project: &str, version: NewPlanVersion, base: Option<Option<u64>>) -> StoreFuture<'_, Published> {
        let project = project.to_owned();
        Box::pin(async move {
            let newest = self.newest_plan_versions(&project, 1).await?.into_iter().next();
            let current = newest.as_ref().map(|(v, _)| v.number);
            if let Some(base) = base {
                if base != current {
                    return Ok(Published::Conflict { current });
                }
            }
            let mut rows = Vec::new();
            if let Some((legacy, Some(body))) = &newest {
                // The plan stored before versions were kept joins the history as version 1.
                put_plan_version(&mut rows, &project, legacy, body);
            }
            let number = current.unwrap_or(0) + 1;
            let stored = PlanVersion {
                number,
                plan_version: version.plan_version.clone(),
                author_kind: version.author.kind.as_str().into(),
                author: version.author.name.clone(),
                message: version.message.clone(),
                created_at: version.created_at,
                rollback_of: version.rollback_of,
                etag: crate::plans::etag(&version.text),
            };
            put_plan_version(&mut rows, &project, &stored, &version.text);
            let columns = "project, number, body, version, etag, author_kind, author, message, created_at, rollback_of";
            self.http
                .run(&format!("INSERT INTO plan_versions ({columns}) FORMAT RowBinary"), rows, Duration::from_secs(30))
                .await?;
            Ok(Published::Stored(number))
        })
    }

    fn plan_versions(&self, project: &str, limit: usize) -> StoreFuture<'_, Vec<PlanVersion>> {
        let project = project.to_owned();
        Box::pin(async move { Ok(self.newest_plan_versions(&project, limit).await?.into_iter().map(|(v, _)| v).collect()) })
    }

    fn plan_version_text(&self, project: &str, number: u64) -> StoreFuture<'_, Option<String>> {
        let sql = format!(
            "SELECT body FROM plan_versions WHERE project = {} AND number = {number} ORDER BY created_at DESC, etag DESC LIMIT 1",
            quote(project)
        );
        let project = project.to_owned();
        Box::pin(async move {
            let answer = self.select(&sql).await?;
            let mut r = Reader::new(&answer);
            if !r.is_empty() {
                return Ok(Some(r.str()?));
            }
            // Version 1 may still be the plan stored before versions were kept.
            let legacy = self.newest_plan_versions(&project, 1).await?.into_iter().next();
            Ok(legacy.and_then(|(v, body)| body.filter(|_| v.number == number)))
        })
    }

    fn users(&self, project: &str) -> StoreFuture<'_, Vec<UserSeen>> {
        let sql = self.users_sql(project);
        let project = project.to_owned();
        Box::pin(async move {
            if self.keeps_users() {
                return self.users_from_rows(&project).await;
            }
            Ok(self.runs::<Folded>(&sql).await?.into_iter().filter_map(Folded::finish).collect())
        })
    }

    fn firsts(&self, project: &str, filter: &EventFilter) -> StoreFuture<'_, Vec<UserEvents>> {
        let sql = self.firsts_sql(project, filter);
        Box::pin(async move { self.runs::<UserEvents>(&sql).await })
    }

    /// On a single server whose report asks only milestones: counted inside ClickHouse from the
    /// per-user rows (`report`), or, for the stalled export, one pass over them (`users`). Else
    /// the two answers `users` and `firsts` read, both sorted by user key,
    /// merged here by user key as they arrive and tallied one user at a time (as SQLite's pass
    /// does): the collector holds one user of each, never the user list (the default held both
    /// whole).
    fn report_tallies(&self, project: &str, query: &ReportQuery) -> StoreFuture<'_, Tallies> {
        let query = query.clone();
        let columns = query.columns();
        let users_sql = self.users_sql(project);
        let firsts_sql = (!columns.is_empty()).then(|| self.firsts_sql(project, &EventFilter::reaching(&columns)));
        let project = project.to_owned();
        Box::pin(async move {
            if self.keeps_users() && report::answers(&query) {
                return self.tallies_in_engine(&project, &query).await;
            }
            if self.keeps_users() {
                if let Some(tallies) = self.tallies_from_rows(&project, &query, "1").await? {
                    return Ok(tallies);
                }
            }
            // Both asked at once: each answer's first row comes only once its sort is done.
            let (mut users, mut firsts) = tokio::try_join!(self.rows(&users_sql), async {
                match &firsts_sql {
                    Some(sql) => self.rows(sql).await.map(Some),
                    None => Ok(None),
                }
            })?;
            let mut tally = Tally::new(&query);
            let (mut user_run, mut first_run) = (None, None);
            let mut next_firsts = match &mut firsts {
                Some(rows) => rows.next_run::<UserEvents>(&mut first_run).await?,
                None => None,
            };
            while let Some(folded) = users.next_run::<Folded>(&mut user_run).await? {
                let Some(seen) = folded.finish() else { continue };
                // First times of keys that are not users (no device row) are never asked for.
                while let (Some(f), Some(rows)) = (&next_firsts, &mut firsts) {
                    if f.user >= seen.user {
                        break;
                    }
                    next_firsts = rows.next_run::<UserEvents>(&mut first_run).await?;
                }
                let events = match &next_firsts {
                    Some(f) if f.user == seen.user => f.events.as_slice(),
                    _ => &[],
                };
                let (user, identified) = crate::analytics::resolve_user(seen, query.now);
                tally.add_reaching(&user, identified, UserFirsts::new(events));
            }
            Ok(tally.finish())
        })
    }

    fn user_counts(&self, project: &str, user: &str, names: &[String], except: &str) -> StoreFuture<'_, Vec<(String, u64)>> {
        let (project, user, names, except) = (project.to_owned(), user.to_owned(), names.to_vec(), except.to_owned());
        Box::pin(async move {
            if names.is_empty() {
                return Ok(Vec::new());
            }
            // The user's devices by the identity rule (the condition erasure uses), each
            // device's distinct event ids merged, then summed: an event has one device.
            let devices = self.user_condition(&project, &user).await?;
            let names: Vec<String> = names.iter().map(|n| quote(n)).collect();
            let sql = format!(
                "SELECT name, sum(n) FROM (
                   SELECT name, anonymous_id, user_id, uniqExactMerge(ids) AS n FROM rollup_events
                   WHERE project = {} AND type = 'track' AND name IN ({}) AND anonymous_id != {} AND {devices}
                   GROUP BY name, anonymous_id, user_id)
                 GROUP BY name ORDER BY name",
                quote(&project),
                names.join(", "),
                quote(&except),
            );
            let answer = self.select(&sql).await?;
            let mut r = Reader::new(&answer);
            let mut out = Vec::new();
            while !r.is_empty() {
                out.push((r.str()?, r.u64()?));
            }
            Ok(out)
        })
    }

    fn tips(&self, project: &str) -> StoreFuture<'_, Vec<UserTip>> {
        // Devices folded into user keys per (tip, name) here; the names and the earliest
        // milestone of each (user, tip) are merged by `merge_tip_rows`, as on SQLite.
        let project = quote(project);
        let devices = format!(
            "SELECT anonymous_id, user_id, tip_id, name, argMinMerge(milestone) AS m FROM rollup_tips
             WHERE project = {project} GROUP BY anonymous_id, user_id, tip_id, name"
        );
        let sql = format!(
            "SELECT who, tip_id, name, tupleElement(e, 1), tupleElement(e, 2), tupleElement(e, 3), tupleElement(e, 4)
             FROM (SELECT who, tip_id, name, argMin(m, (tupleElement(m, 1), tupleElement(m, 3), tupleElement(m, 4))) AS e
                   FROM ({}) GROUP BY who, tip_id, name)
             ORDER BY who, tip_id, name",
            self.with_user_key(&project, &devices, &["tip_id", "name", "m"], Some(&format!("SELECT anonymous_id FROM rollup_tips WHERE project = {project} AND user_id = ''")))
        );
        Box::pin(async move {
            let answer = self.select(&sql).await?;
            let mut r = Reader::new(&answer);
            let mut rows = Vec::new();
            while !r.is_empty() {
                let (who, tip_id, name) = (r.str()?, r.str()?, r.str()?);
                let (none, milestone, ts, id) = (r.u8()? != 0, r.str()?, r.i64()?, r.str()?);
                rows.push((who, tip_id, name, (!none).then_some(((ts, id), milestone))));
            }
            Ok(merge_tip_rows(rows))
        })
    }

    fn metrics(&self, project: &str) -> StoreFuture<'_, Vec<UserMetric>> {
        let project = quote(project);
        let devices = format!(
            "SELECT anonymous_id, user_id, name, argMinMerge(first) AS f, argMaxMerge(latest) AS l FROM rollup_metrics
             WHERE project = {project} GROUP BY anonymous_id, user_id, name"
        );
        let sql = format!(
            "SELECT who, name, tupleElement(f, 1), tupleElement(f, 2), tupleElement(f, 3), tupleElement(l, 1), tupleElement(l, 2), tupleElement(l, 3)
             FROM (SELECT who, name, argMin(f, (tupleElement(f, 2), tupleElement(f, 3))) AS f, argMax(l, (tupleElement(l, 2), tupleElement(l, 3))) AS l
                   FROM ({}) GROUP BY who, name)
             ORDER BY who, name",
            self.with_user_key(&project, &devices, &["name", "f", "l"], Some(&format!("SELECT anonymous_id FROM rollup_metrics WHERE project = {project} AND user_id = ''")))
        );
        Box::pin(async move {
            let answer = self.select(&sql).await?;
            let mut r = Reader::new(&answer);
            let mut rows = Vec::new();
            while !r.is_empty() {
                let (who, name) = (r.str()?, r.str()?);
                let mut reported = || -> Result<Option<Reported>, StoreError> {
                    let (text, ts, id) = (r.str()?, r.i64()?, r.str()?);
                    // The view kept only JSON numbers; parsed by the same code as ingest's.
                    Ok(json::parse(&text).ok().and_then(|v| v.as_f64()).map(|v| ((ts, id), v)))
                };
                if let (Some(first), Some(latest)) = (reported()?, reported()?) {
                    rows.push((who, name, first, latest));
                }
            }
            Ok(merge_metric_rows(rows))
        })
    }

    fn rebuild_rollups(&self, project: Option<&str>, mut progress: Progress) -> StoreFuture<'_, u64> {
        let condition = project.map_or("1".to_string(), |p| format!("project = {}", quote(p)));
        let project = project.map(str::to_owned);
        Box::pin(async move {
            let events = self.rebuild_rollups_where(&condition, &mut progress).await?;
            self.rebuild_users(project.as_deref(), &mut progress).await?;
            Ok(events)
        })
    }

    fn verify_rollups(&self, project: Option<&str>) -> StoreFuture<'_, Vec<String>> {
        let condition = project.map_or("1".to_string(), |p| format!("project = {}", quote(p)));
        let project = project.map(str::to_owned);
        Box::pin(async move {
            let mut out = Vec::new();
            for Rollup { table, columns, source, array_join, stored: values, recomputed, .. } in &ROLLUPS {
                // Every rollup as stored and as recomputed, each row as its key and its values.
                let key = format!("concat({})", columns.split(", ").map(|c| format!("{c}, '|'")).collect::<Vec<_>>().join(", "));
                let stored = self
                    .select(&format!("SELECT {key}, concat({}) FROM {table} WHERE {condition} GROUP BY {columns}", values.join(", ' ', ")))
                    .await?;
                let fresh = self
                    .select(&format!(
                        "SELECT {key}, concat({}) FROM events {array_join} WHERE {condition} AND {source} GROUP BY {columns}",
                        recomputed.join(", ' ', "),
                    ))
                    .await?;
                let read = |bytes: &[u8]| -> Result<std::collections::BTreeMap<String, String>, StoreError> {
                    let mut r = Reader::new(bytes);
                    let mut rows = std::collections::BTreeMap::new();
                    while !r.is_empty() {
                        rows.insert(r.str()?, r.str()?);
                    }
                    Ok(rows)
                };
                let (stored, fresh) = (read(&stored)?, read(&fresh)?);
                for (key, value) in &stored {
                    match fresh.get(key) {
                        Some(v) if v == value => {}
                        Some(v) => out.push(format!("{table} {key} stored ({value}), recomputed ({v})")),
                        None => out.push(format!("{table} {key} stored ({value}), not in a recompute")),
                    }
                }
                for (key, value) in fresh.iter().filter(|(k, _)| !stored.contains_key(*k)) {
                    out.push(format!("{table} {key} recomputed ({value}), not stored"));
                }
            }
            out.extend(self.verify_users(project.as_deref()).await?);
            Ok(out)
        })
    }

    fn events(&self, project: &str, filter: &EventFilter) -> StoreFuture<'_, Vec<UserEvents>> {
        // Without props, an empty string stands in so every row has the same shape.
        let (columns, props): (&[&str], &str) =
            if filter.with_props { (&["id", "ts", "type", "name", "props"], "props") } else { (&["id", "ts", "type", "name"], "''") };
        let sql = format!(
            "SELECT who, ts, type, name, {props} FROM ({}) ORDER BY who, ts, id",
            self.resolved_events(project, filter, columns)
        );
        Box::pin(async move { user_events(&self.select(&sql).await?) })
    }
}

/// The tables whose data reports read ([`ClickHouseStore::data_version`]); plans are in the
/// report cache's key already, and webhook and health rows change no report.
const VERSIONED: [&str; 10] =
    ["events", "links", "rollup_devices", "rollup_events", "rollup_traits", "rollup_tips", "rollup_metrics", "user_devices", "device_links", "rollup_users"];

/// One user's rollup rows while [`ClickHouseStore::users`] folds them: first and last seen,
/// whether identified, and per trait key its latest (JSON value, time, event id).
/// An answer being read a row at a time as it arrives ([`ClickHouseStore::rows`]).
struct Rows {
    response: reqwest::Response,
    /// Bytes received and not yet read: a row cut off at a chunk boundary waits here for the
    /// next chunk.
    pending: Vec<u8>,
    used: usize,
}

impl Rows {
    async fn open(http: &Http, sql: &str) -> Result<Rows, StoreError> {
        let request = http.client.post(format!("{}/?{}", http.url, http.settings)).body(format!("{sql}\nFORMAT RowBinary"));
        let response = request.timeout(Duration::from_secs(600)).send().await.map_err(|e| unavailable(format!("ClickHouse at {}: {e}", http.url)))?;
        if !response.status().is_success() {
            let bytes = response.bytes().await.map_err(unavailable)?;
            return Err(unavailable(format!("ClickHouse at {}: {}", http.url, String::from_utf8_lossy(&bytes).trim())));
        }
        Ok(Rows { response, pending: Vec::new(), used: 0 })
    }

    /// The next row, read by `row`, or `None` at the end of the answer. `row` reads every
    /// column of its row before it keeps anything: a row may end in a later chunk, and is then
    /// read again from its start.
    async fn next<T>(&mut self, mut row: impl FnMut(&mut Reader<'_>) -> Result<T, StoreError>) -> Result<Option<T>, StoreError> {
        loop {
            if self.used < self.pending.len() {
                let mut r = Reader::new(&self.pending[self.used..]);
                match row(&mut r) {
                    Ok(value) => {
                        self.used = self.pending.len() - r.remaining();
                        return Ok(Some(value));
                    }
                    Err(_) if r.ran_out() => {}
                    Err(e) => return Err(e),
                }
            }
            self.pending.drain(..self.used);
            self.used = 0;
            match self.response.chunk().await.map_err(unavailable)? {
                Some(chunk) => self.pending.extend_from_slice(&chunk),
                None if self.pending.is_empty() => return Ok(None),
                None => return Err(unavailable("ClickHouse's answer ends mid-row")),
            }
        }
    }

    /// The next user's run of an answer sorted by user key: rows are folded into `current`
    /// until a row of another user arrives, which starts the run after it. `None` once every
    /// run has been returned.
    async fn next_run<R: Run>(&mut self, current: &mut Option<R>) -> Result<Option<R>, StoreError> {
        loop {
            let done = self
                .next(|r| {
                    let row = R::read(r)?;
                    Ok(match current {
                        Some(run) if run.user() == R::who(&row) => {
                            run.add(row);
                            None
                        }
                        _ => current.replace(R::start(row)),
                    })
                })
                .await?;
            match done {
                Some(None) => {}
                Some(run) => return Ok(run),
                None => return Ok(current.take()),
            }
        }
    }
}

/// One user's rows of an answer sorted by user key, folded as they arrive.
trait Run: Sized {
    /// One row, borrowing the answer's bytes.
    type Row<'a>;
    fn read<'a>(r: &mut Reader<'a>) -> Result<Self::Row<'a>, StoreError>;
    fn who<'r>(row: &'r Self::Row<'_>) -> &'r str;
    fn user(&self) -> &str;
    fn start(row: Self::Row<'_>) -> Self;
    fn add(&mut self, row: Self::Row<'_>);
}

/// A user of [`ClickHouseStore::users_sql`]'s answer: the span of its devices' first and
/// last seen, and per trait key the value of the latest (time, event id).
struct Folded {
    user: String,
    first: i64,
    last: i64,
    identified: bool,
    traits: Vec<(String, String, i64, String)>,
}

/// A row of [`ClickHouseStore::users_sql`]'s answer: a device's seen times, or (`is_trait`)
/// one of its trait keys' latest value.
struct SeenRow<'a> {
    who: &'a str,
    is_trait: bool,
    first: i64,
    last: i64,
    identified: bool,
    key: &'a str,
    value: &'a str,
    ts: i64,
    id: &'a str,
}

impl Run for Folded {
    type Row<'a> = SeenRow<'a>;

    fn read<'a>(r: &mut Reader<'a>) -> Result<SeenRow<'a>, StoreError> {
        let (who, is_trait, first, last, identified) = (r.str_ref()?, r.u8()? != 0, r.i64()?, r.i64()?, r.u8()? != 0);
        let (key, value, ts, id) = (r.str_ref()?, r.str_ref()?, r.i64()?, r.str_ref()?);
        Ok(SeenRow { who, is_trait, first, last, identified, key, value, ts, id })
    }

    fn who<'r>(row: &'r SeenRow<'_>) -> &'r str {
        row.who
    }

    fn user(&self) -> &str {
        &self.user
    }

    fn start(row: SeenRow<'_>) -> Folded {
        let mut u = Folded { user: row.who.to_owned(), first: row.first, last: row.last, identified: false, traits: Vec::new() };
        u.add(row);
        u
    }

    fn add(&mut self, row: SeenRow<'_>) {
        if !row.is_trait {
            self.first = self.first.min(row.first);
            self.last = self.last.max(row.last);
            self.identified |= row.identified;
            return;
        }
        // Per key, the value of the latest (time, event id) over the user's devices.
        match self.traits.iter_mut().find(|t| t.0 == row.key) {
            Some(t) if (row.ts, row.id) > (t.2, t.3.as_str()) => (t.1, t.2, t.3) = (row.value.to_owned(), row.ts, row.id.to_owned()),
            Some(_) => {}
            None => self.traits.push((row.key.to_owned(), row.value.to_owned(), row.ts, row.id.to_owned())),
        }
    }
}

impl Folded {
    /// The user as [`Store::users`] returns them; `None` for trait rows only: a device of the
    /// user's that the seen rollup does not list (not possible from the views; left out, as
    /// the old join left it out).
    fn finish(self) -> Option<UserSeen> {
        if self.first > self.last {
            return None;
        }
        let mut traits: Vec<(String, json::Value)> =
            self.traits.into_iter().filter_map(|(key, value, _, _)| json::parse(&value).ok().map(|v| (key, v))).collect();
        traits.sort_by(|a, b| a.0.cmp(&b.0));
        Some(UserSeen { user: self.user, first_seen: self.first, last_seen: self.last, identified: self.identified, traits })
    }
}

/// A row of [`ClickHouseStore::firsts_sql`]'s answer: (user key, time, type, name).
type FirstRow<'a> = (&'a str, i64, &'a str, &'a str);

impl Run for UserEvents {
    type Row<'a> = FirstRow<'a>;

    fn read<'a>(r: &mut Reader<'a>) -> Result<FirstRow<'a>, StoreError> {
        Ok((r.str_ref()?, r.i64()?, r.str_ref()?, r.str_ref()?))
    }

    fn who<'r>(row: &'r FirstRow<'_>) -> &'r str {
        row.0
    }

    fn user(&self) -> &str {
        &self.user
    }

    fn start(row: FirstRow<'_>) -> UserEvents {
        let mut u = UserEvents { user: row.0.to_owned(), events: Vec::new() };
        u.add(row);
        u
    }

    /// Rows come by time, so the first of each (type, name) is its earliest; later ones are
    /// dropped.
    fn add(&mut self, (_, ts, kind, name): FirstRow<'_>) {
        // Ingest stores only known types; an unknown one reads as track (as in `user_events`).
        let kind = EventType::parse(kind).unwrap_or(EventType::Track);
        if !self.events.iter().any(|e| e.kind == kind && e.name == name) {
            self.events.push(UserEvent { ts, kind, name: name.to_owned(), props: Vec::new() });
        }
    }
}

/// Rows of (user key, ts, type, name, props), sorted by user key, grouped into users.
fn user_events(answer: &[u8]) -> Result<Vec<UserEvents>, StoreError> {
    let mut r = Reader::new(answer);
    let mut users: Vec<UserEvents> = Vec::new();
    while !r.is_empty() {
        let who = r.str()?;
        let ts = r.i64()?;
        // Ingest only stores known types; an unknown one is read as a plain track event
        // (as the SQLite store does).
        let kind = EventType::parse(&r.str()?).unwrap_or(EventType::Track);
        let name = r.str()?;
        let props = match json::parse(&r.str()?) {
            Ok(json::Value::Obj(entries)) => entries,
            _ => Vec::new(),
        };
        let event = UserEvent { ts, kind, name, props };
        match users.last_mut() {
            Some(u) if u.user == who => u.events.push(event),
            _ => users.push(UserEvents { user: who, events: vec![event] }),
        }
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_store_urls() {
        let t = Target::parse("clickhouse://127.0.0.1:8123/onramp").expect("parse");
        assert_eq!(t.http, "http://127.0.0.1:8123");
        assert_eq!(t.database, "onramp");
        assert_eq!(t.nodes, vec!["http://127.0.0.1:8123"]);
        assert_eq!(t.local("events"), "events");
        let t = Target::parse("clickhouse://a:1/db?cluster=two&nodes=a:1,b:2").expect("parse");
        assert_eq!(t.cluster.as_deref(), Some("two"));
        assert_eq!(t.nodes, vec!["http://a:1", "http://b:2"]);
        assert_eq!(t.local("events"), "events_local");
        assert!(Target::parse("clickhouse://a:1/db;DROP").is_err());
        assert!(Target::parse("clickhouse://a:1").is_err());
        assert!(Target::parse("http://a:1/db").is_err());
    }

    #[test]
    fn quotes_literals() {
        assert_eq!(quote(r"it's \ ok"), r"'it\'s \\ ok'");
    }

    #[test]
    fn splits_migrations_into_statements() {
        let counts: Vec<usize> = MIGRATIONS.iter().map(|m| statements(m.sql).len()).collect();
        assert_eq!(counts, vec![2, 1, 6, 5, 2, 4, 1, 2, 6, 7, 6, 4]);
        for m in MIGRATIONS {
            for statement in statements(m.sql) {
                // Each may run twice (collectors starting together): creates are guarded, and
                // the rollup backfills only add states a repeat leaves as they are.
                // `migrate` takes an existing column as added (18.16 has no ADD COLUMN IF NOT EXISTS).
                let idempotent = statement.contains(" IF NOT EXISTS ")
                    || statement.contains(" ADD COLUMN ")
                    || statement.contains("DROP TABLE IF EXISTS ")
                    || statement.contains("INSERT INTO {db}.{rollup_")
                    || statement.contains("INSERT INTO {db}.{links}")
                    || statement.contains("INSERT INTO {db}.{user_devices}")
                    || statement.contains("INSERT INTO {db}.{device_links}")
                    || statement.contains("INSERT INTO {db}.{device_rows}");
                assert!(idempotent && !statement.ends_with(';'), "{statement}");
            }
            for (table, _) in m.sharded {
                assert!(m.sql.contains(&format!("{{db}}.{{{table}}}")), "{table} is created under its placeholder");
            }
        }
    }
}
