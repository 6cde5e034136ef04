//! The per-user rollup on ClickHouse (migration 10, `rollup_users`): one row per project and
//! user key, [`UserRow`] as SQLite keeps it, so a report reads one row per user (500 k at
//! 10 M events) instead of every device, trait and milestone row (3.9 M) joined to the
//! identity links and sorted by user key.
//!
//! A row is a function of the per-device rows (`device_rows`, migration 12: each device's
//! seen times, latest traits and milestone firsts per user id it carried) and the links
//! (`device_links`). After each group's insert the collector recomputes, from those, every
//! user key the group's devices can be part of ([`refresh_after_insert`], [`keys_of_devices`]:
//! the user ids they carried and their own anonymous ids), which covers the new events' users
//! and both users of a device whose link the insert moved (a first identify, or an earlier one
//! arriving late). Both tables are keyed by device in 256-row granules, and a key's devices
//! come from `user_devices` (keyed by user), so the recompute reads a few granules per device.
//!
//! Rows are versioned by when they were computed ([`version`]: a tick of `rollup_clock`, taken
//! after the insert and before anything the row is computed from): FINAL keeps the newest. A
//! key left with no device gets a `deleted` row. Several collectors writing to one server keep
//! exact rows, because no row is ever merged into a stored one: a table numbers its parts in
//! commit order, so an insert that finished before a row's tick is in the row, and one that
//! finished after it is followed by its own writer's tick and recompute, of a higher version.
//! The newest row of a key therefore holds every event that reached it (two rows of one
//! version saw the same ticks, so the same finished inserts). An earlier version merged new
//! events into the stored row (read FINAL, then written back): two collectors could read the
//! same row and each write it without the other's events.
//!
//! Kept on a single server only: on a cluster (no single block counter, and no single reader
//! of the links) reports read the per-device rollups as before.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::rowbinary::{put_bytes, put_i64, put_str, put_u64, Reader};
use super::{keyed_sql, quote, quote_list, ClickHouseStore, Http, Rows, Run, IDENTIFIED};
use crate::analytics::report::{ReportQuery, Tallies};
use crate::store::user_rows::{unpack_user, ReportColumns, ReportRows, UserRow};
use super::report::{Read, REPORT_COLUMNS};
use crate::store::{Progress, StoreError, StoredEvent, UserSeen};

/// The migration (1-based) that adds `rollup_users`: applying it fills the table
/// ([`ClickHouseStore::rebuild_users`]).
pub(super) const USERS_MIGRATION: usize = 10;

/// Keys (or devices) per recompute statement: each is a quoted literal in the SQL, and the
/// server parses at most 256 KiB of it.
const CHUNK: usize = 2000;

/// Users written per INSERT while rebuilding.
const REBUILD_BATCH: usize = 50_000;

/// The data version of `tables` (the report cache's key): per table, the newest block number
/// of its parts and mutations (a MergeTree numbers inserts and mutations from one counter;
/// merges keep it), summed. Any insert or deletion a later read can see raises it.
pub(super) fn version_sql(tables: &[String]) -> String {
    let tables = quote_list(tables);
    format!(
        "SELECT toUInt64(sum(v)), toUInt64(sum(running)) FROM (
           SELECT table, max(v) AS v, sum(running) AS running FROM (
             SELECT table, max(max_block_number) AS v, toUInt64(0) AS running FROM system.parts
             WHERE database = currentDatabase() AND active AND table IN ({tables}) GROUP BY table
             UNION ALL
             SELECT table, max(toInt64(extract(mutation_id, '[0-9]+'))) AS v, toUInt64(sum(is_done = 0)) AS running FROM system.mutations
             WHERE database = currentDatabase() AND table IN ({tables}) GROUP BY table)
           GROUP BY table)"
    )
}

/// The version of rows computed from data read after this returns: a tick of `rollup_clock`
/// (migration 12), then the clock's newest block number. A table numbers its parts in commit
/// order, so whatever finished before this call is older than its tick, and a row of this
/// version holds it; an insert that finishes later is followed by its writer's tick, whose
/// number is higher than this version, and that writer's recompute replaces the row.
async fn version(http: &Http) -> Result<u64, StoreError> {
    http.run("INSERT INTO rollup_clock VALUES (0)", Vec::new(), Duration::from_secs(60)).await?;
    let sql = "SELECT toUInt64(max(max_block_number)) FROM system.parts
               WHERE database = currentDatabase() AND table = 'rollup_clock' AND active FORMAT RowBinary";
    Reader::new(&http.run(sql, Vec::new(), Duration::from_secs(60)).await?).u64()
}

/// Every row of `device_rows` of `project` (when `keys` are given, quoted, with the quoted
/// anonymous ids of their devices: those keys' only), with its user key `who`, sorted by it:
/// `kind` 0 a device's first and last seen, 1 a trait's latest (value, ts, id) under `key`, 2 a
/// milestone's first time under `key`. Each stored row's state is finalized on its own (rows of
/// unmerged parts fold like devices). The links come from `device_links` (as `links`, in small
/// granules: a few devices' links are a few granules).
fn fold_sql(project: &str, keys: Option<(&str, &str)>) -> String {
    let project = quote(project);
    let (devices, only_keys) = match keys {
        Some((keys, devices)) => (format!(" AND anonymous_id IN ({devices})"), format!(" WHERE who IN ({keys})")),
        None => (String::new(), String::new()),
    };
    let rows = format!(
        "SELECT anonymous_id, user_id, toUInt8(multiIf(part = 'seen', 0, part = 'trait', 1, 2)) AS kind,
                finalizeAggregation(first_ts) AS first, finalizeAggregation(last_ts) AS last, key, finalizeAggregation(latest) AS l
         FROM device_rows WHERE project = {project}{devices}"
    );
    let columns = ["kind", "first", "last", IDENTIFIED, "key", "tupleElement(l, 1) AS value", "tupleElement(l, 2) AS ts", "tupleElement(l, 3) AS id"];
    // Only the links of devices with anonymous rows are joined: for some keys' devices, the
    // devices themselves (a subquery selecting those with anonymous rows made the index go
    // unused: 0.2 s instead of 0.02 s a batch at 10 M events).
    let anonymous = match keys {
        Some((_, devices)) => devices.to_owned(),
        None => format!("SELECT anonymous_id FROM device_rows WHERE project = {project} AND user_id = '' AND part = 'seen'"),
    };
    let keyed = keyed_sql("ANY LEFT JOIN", "IN", "device_links", &project, &rows, &columns, Some(&anonymous));
    format!("SELECT * FROM ({keyed}){only_keys} ORDER BY who")
}

/// One user key's rows of [`fold_sql`]'s answer, folded.
struct Folding {
    user: String,
    row: UserRow,
}

/// (who, kind, first, last, identified, key, value, ts, id)
type FoldRow<'a> = (&'a str, u8, i64, i64, bool, &'a str, &'a str, i64, &'a str);

impl Run for Folding {
    type Row<'a> = FoldRow<'a>;

    fn read<'a>(r: &mut Reader<'a>) -> Result<FoldRow<'a>, StoreError> {
        Ok((r.str_ref()?, r.u8()?, r.i64()?, r.i64()?, r.u8()? != 0, r.str_ref()?, r.str_ref()?, r.i64()?, r.str_ref()?))
    }

    fn who<'r>(row: &'r FoldRow<'_>) -> &'r str {
        row.0
    }

    fn user(&self) -> &str {
        &self.user
    }

    fn start(row: FoldRow<'_>) -> Folding {
        let mut f = Folding { user: row.0.to_owned(), row: UserRow::seen(false, i64::MAX, i64::MIN) };
        f.add(row);
        f
    }

    fn add(&mut self, (_, kind, first, last, identified, key, value, ts, id): FoldRow<'_>) {
        match kind {
            0 => self.row.merge(UserRow::seen(identified, first, last)),
            1 => self.row.add_trait(key.to_owned(), (ts, id.to_owned()), value.to_owned()),
            _ => self.row.add_milestone(key.to_owned(), first),
        }
    }
}

impl Folding {
    /// The user's row; `None` without a device row (not possible from the views).
    fn finish(self) -> (String, Option<UserRow>) {
        let has_device = self.row.first_seen <= self.row.last_seen;
        (self.user, has_device.then_some(self.row))
    }
}

/// [`fold_sql`]'s answer as it streams in, one user key's row at a time.
struct Fold {
    rows: Rows,
    current: Option<Folding>,
}

impl Fold {
    async fn open(http: &Http, project: &str, keys: Option<(&str, &str)>) -> Result<Fold, StoreError> {
        Ok(Fold { rows: Rows::open(http, &fold_sql(project, keys)).await?, current: None })
    }

    /// The next user key and its row (`None`: no device row).
    async fn next(&mut self) -> Result<Option<(String, Option<UserRow>)>, StoreError> {
        Ok(self.rows.next_run::<Folding>(&mut self.current).await?.map(Folding::finish))
    }
}

/// Writes rows of `project` (`None`: the key has no device left) with `version`.
async fn write_rows(http: &Http, project: &str, version: u64, rows: &[(String, Option<UserRow>)]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut body = Vec::new();
    for (key, row) in rows {
        put_str(&mut body, project);
        put_str(&mut body, key);
        put_u64(&mut body, version);
        let gone = UserRow::seen(false, 0, 0);
        let r = row.as_ref().unwrap_or(&gone);
        body.push(u8::from(row.is_none()));
        body.push(u8::from(r.identified));
        put_i64(&mut body, r.first_seen);
        put_i64(&mut body, r.last_seen);
        put_bytes(&mut body, &r.pack_traits());
        put_bytes(&mut body, &r.pack_milestones());
        ReportColumns::of(r).put(&mut body);
    }
    let sql = format!("INSERT INTO rollup_users (project, user_key, version, deleted, identified, first_seen, last_seen, traits, milestones, {REPORT_COLUMNS}) FORMAT RowBinary");
    http.run(&sql, body, Duration::from_secs(600)).await.map(drop)
}

/// Recomputes the rows of `keys` of `project` and writes them (a `deleted` row for a key with
/// no device).
pub(super) async fn refresh(http: &Http, project: &str, keys: &BTreeSet<String>) -> Result<(), StoreError> {
    if keys.is_empty() {
        return Ok(());
    }
    let version = version(http).await?;
    let keys: Vec<&String> = keys.iter().collect();
    for chunk in keys.chunks(CHUNK) {
        let list = quote_list(chunk);
        // The keys' devices: those that carried them as user ids, and their own anonymous ids.
        let sql = format!("SELECT DISTINCT anonymous_id FROM user_devices WHERE project = {} AND user_id IN ({list}) FORMAT RowBinary", quote(project));
        let answer = http.run(&sql, Vec::new(), Duration::from_secs(60)).await?;
        let mut r = Reader::new(&answer);
        let mut devices: BTreeSet<String> = chunk.iter().map(|k| (*k).clone()).collect();
        while !r.is_empty() {
            devices.insert(r.str()?);
        }
        let devices = quote_list(&devices);
        let mut rows: BTreeMap<String, Option<UserRow>> = chunk.iter().map(|k| ((*k).clone(), None)).collect();
        let mut fold = Fold::open(http, project, Some((&list, &devices))).await?;
        while let Some((user, row)) = fold.next().await? {
            rows.insert(user, row);
        }
        write_rows(http, project, version, &rows.into_iter().collect::<Vec<_>>()).await?;
    }
    Ok(())
}

/// Every user key whose row the devices (`anonymous ids`) of `project` can be part of: every
/// user id a device carried, and its own anonymous id if it sent an event without one (a
/// device that never did is never a key of its own).
pub(super) async fn keys_of_devices<'a>(http: &Http, project: &str, devices: impl IntoIterator<Item = &'a str>) -> Result<BTreeSet<String>, StoreError> {
    let mut keys = BTreeSet::new();
    let devices: Vec<&str> = devices.into_iter().collect();
    for chunk in devices.chunks(CHUNK) {
        let list = quote_list(chunk);
        let sql = format!(
            "SELECT DISTINCT if(user_id = '', anonymous_id, user_id) FROM device_rows WHERE project = {} AND anonymous_id IN ({list}) AND part = 'seen' FORMAT RowBinary",
            quote(project)
        );
        let answer = http.run(&sql, Vec::new(), Duration::from_secs(60)).await?;
        let mut r = Reader::new(&answer);
        while !r.is_empty() {
            keys.insert(r.str()?);
        }
    }
    Ok(keys)
}

/// After `events` are inserted: recomputes every user key their devices can be part of
/// ([`keys_of_devices`]: the keys of the new events, and both keys of a device whose link they
/// moved), from data read after the insert ([`refresh`]).
pub(super) async fn refresh_after_insert(http: &Http, events: &[&StoredEvent]) -> Result<(), StoreError> {
    let mut devices: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for s in events {
        devices.entry(&s.project).or_default().insert(&s.event.anonymous_id);
    }
    for (project, devices) in devices {
        let keys = keys_of_devices(http, project, devices).await?;
        refresh(http, project, &keys).await?;
    }
    Ok(())
}

impl ClickHouseStore {
    /// Whether this store keeps `rollup_users` (a single server; see the module docs).
    pub(super) fn keeps_users(&self) -> bool {
        self.target.cluster.is_none()
    }

    /// Recomputes every row of `project` (every project when `None`) from the per-device
    /// rollups, which must be current.
    pub(super) async fn rebuild_users(&self, project: Option<&str>, progress: &mut Progress) -> Result<(), StoreError> {
        if !self.keeps_users() {
            return Ok(());
        }
        let http = &self.http;
        let version = version(http).await?;
        let projects = match project {
            Some(p) => vec![p.to_owned()],
            None => {
                let answer = http.run("SELECT DISTINCT project FROM rollup_devices ORDER BY project FORMAT RowBinary", Vec::new(), Duration::from_secs(600)).await?;
                let mut r = Reader::new(&answer);
                let mut all = Vec::new();
                while !r.is_empty() {
                    all.push(r.str()?);
                }
                all
            }
        };
        let condition = project.map_or("1".to_string(), |p| format!("project = {}", quote(p)));
        progress("users: clearing rollup_users".into());
        self.delete_where("rollup_users", &condition).await?;
        for project in projects {
            progress(format!("users: folding the devices of {project}"));
            let mut batch = Vec::with_capacity(REBUILD_BATCH);
            let mut done = 0u64;
            let mut fold = Fold::open(http, &project, None).await?;
            while let Some((user, row)) = fold.next().await? {
                if row.is_some() {
                    batch.push((user, row));
                }
                if batch.len() == REBUILD_BATCH {
                    write_rows(http, &project, version, &batch).await?;
                    done += batch.len() as u64;
                    batch.clear();
                    progress(format!("users: {done} of {project}"));
                }
            }
            write_rows(http, &project, version, &batch).await?;
            done += batch.len() as u64;
            progress(format!("users: done ({done} users of {project})"));
        }
        // Written in batches, the rows sit in several parts per partition, which a report's
        // FINAL merges on every read until background merges join them (at 10 M events they
        // had not after minutes; a report's ClickHouse CPU was 0.13 s more than over one part).
        progress("users: merging rollup_users' parts".into());
        http.run("OPTIMIZE TABLE rollup_users FINAL", Vec::new(), super::REBUILD_TIMEOUT).await?;
        Ok(())
    }

    /// Every difference between the stored rows and a recompute from the per-device rollups
    /// (which `rollup verify` checks against the events), one line each.
    pub(super) async fn verify_users(&self, project: Option<&str>) -> Result<Vec<String>, StoreError> {
        if !self.keeps_users() {
            return Ok(Vec::new());
        }
        let condition = project.map_or("1".to_string(), |p| format!("project = {}", quote(p)));
        let answer = self
            .select(&format!(
                "SELECT project, user_key, identified, first_seen, last_seen, traits, milestones, {REPORT_COLUMNS} FROM rollup_users FINAL WHERE {condition} AND deleted = 0"
            ))
            .await?;
        let mut r = Reader::new(&answer);
        let mut out = Vec::new();
        let mut stored: BTreeMap<(String, String), UserRow> = BTreeMap::new();
        while !r.is_empty() {
            let key = (r.str()?, r.str()?);
            let (identified, first, last, traits, milestones) = (r.u8()? != 0, r.i64()?, r.i64()?, r.bytes()?, r.bytes()?);
            let columns = ReportColumns::read(&mut r)?;
            match UserRow::unpack(identified, first, last, traits, milestones) {
                Some(row) if ReportColumns::of(&row) != columns => out.push(format!("rollup_users report columns differ from the packed row: ({:?}, {:?}, {columns:?})", key.0, key.1)),
                Some(row) => drop(stored.insert(key, row)),
                None => out.push(format!("rollup_users damaged: ({:?}, {:?})", key.0, key.1)),
            }
        }
        let mut projects: BTreeSet<String> = stored.keys().map(|(p, _)| p.clone()).collect();
        if let Some(p) = project {
            projects.insert(p.to_owned());
        } else {
            let answer = self.select("SELECT DISTINCT project FROM rollup_devices").await?;
            let mut r = Reader::new(&answer);
            while !r.is_empty() {
                projects.insert(r.str()?);
            }
        }
        let line = |label: &str, (project, key): &(String, String), row: &UserRow| format!("rollup_users {label}: ({project:?}, {key:?}, {row:?})");
        for p in projects {
            let mut fold = Fold::open(&self.http, &p, None).await?;
            while let Some((user, row)) = fold.next().await? {
                let Some(row) = row else { continue };
                let k = (p.clone(), user);
                match stored.remove(&k) {
                    Some(s) if s == row => {}
                    Some(s) => {
                        out.push(line("stored, not in a recompute", &k, &s));
                        out.push(line("recomputed, not stored", &k, &row));
                    }
                    None => out.push(line("recomputed, not stored", &k, &row)),
                }
            }
        }
        for (k, row) in &stored {
            out.push(line("stored, not in a recompute", k, row));
        }
        Ok(out)
    }

    /// The rows of `project` whose user key meets `keys` (SQL), as stored, newest version of
    /// each key, handed to `each` as (user key, identified, first seen, last seen, packed
    /// traits, packed milestones).
    async fn user_rows(&self, project: &str, keys: &str, read: Read, mut each: impl FnMut(String, bool, i64, i64, &[u8], &[u8])) -> Result<(), StoreError> {
        let sql = format!(
            "SELECT user_key, identified, first_seen, last_seen, traits, milestones FROM {} WHERE project = {} AND {keys} AND deleted = 0",
            read.table(),
            quote(project)
        );
        self.stream(&sql, |r| {
            let (who, identified, first, last, traits, milestones) = (r.str_ref()?, r.u8()? != 0, r.i64()?, r.i64()?, r.bytes()?, r.bytes()?);
            each(who.to_owned(), identified, first, last, traits, milestones);
            Ok(())
        })
        .await
    }

    /// [`crate::store::Store::users`] from the per-user rows.
    /// Without FINAL where no key has two rows ([`ClickHouseStore::read_users`]).
    pub(super) async fn users_from_rows(&self, project: &str) -> Result<Vec<UserSeen>, StoreError> {
        let read = |read| async move {
            let mut users = Vec::new();
            self.user_rows(project, "1", read, |user, identified, first, last, traits, _| users.push(unpack_user(user, identified, first, last, traits))).await?;
            Ok(users)
        };
        Ok(self.read_users(read).await?.0)
    }

    /// [`crate::store::Store::report_tallies`] in one pass over the per-user rows (those whose
    /// key meets `keys`, SQL), when every column is a milestone (the rows hold those); `None`
    /// otherwise.
    /// Without FINAL where no key has two rows ([`ClickHouseStore::read_users`]).
    pub(super) async fn tallies_from_rows(&self, project: &str, query: &ReportQuery, keys: &str) -> Result<Option<Tallies>, StoreError> {
        if !ReportRows::new(query).rows_suffice() {
            return Ok(None);
        }
        let read = |read| async move {
            let mut pass = ReportRows::new(query);
            self.user_rows(project, keys, read, |user, identified, first, last, traits, milestones| {
                pass.start(milestones);
                pass.add(user, identified, first, last, traits);
            })
            .await?;
            Ok(pass.finish())
        };
        let mut tallies = self.read_users(read).await?.0;
        // The users of interest by key, as the other stores give them (FINAL's order is the
        // table's, but nothing promises it).
        let mut interest: Vec<_> = std::mem::take(&mut tallies.interest).into_iter().zip(std::mem::take(&mut tallies.interest_firsts)).collect();
        interest.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        (tallies.interest, tallies.interest_firsts) = interest.into_iter().unzip();
        Ok(Some(tallies))
    }
}
