//! The SQLite store's per-user rollup (`migrations/0012_rollup_users.sql`): one row per project
//! and user key with what a report reads of each user (identified, first and last seen, the
//! latest value of each identify trait, the first time of each milestone), so a report steps
//! one row per user instead of every device, trait and milestone row.
//!
//! A row is a function of the per-device rollups and the identity links ([`fold`] computes it
//! for every user in one ordered pass, [`recompute`] for one user). The writer keeps it so in
//! the transaction that stores the events ([`Changes`]): new rows of a device fold into its
//! user's row with order-independent merges ([`UserRow::merge`]); a device that a link moves to
//! another user (its first identify, or an earlier link arriving late) has both users'
//! rows recomputed. [`rebuild`] and [`verify`] recompute every row.
//!
//! The row itself, packed and unpacked, is `user_rows::UserRow`, which ClickHouse's per-user
//! rollup shares.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::sqlite::{key_statements, KeyOrder};
use super::user_rows::UserRow;

/// What a commit changes in the per-user rollup: its newly stored events' device, trait and
/// milestone rows (as [`super::sqlite_rollup::Changes`] folded them), and the devices its links
/// moved from one user to another.
#[derive(Default)]
pub(super) struct Changes {
    /// (project, user id or '', anonymous id) → the device's new rows.
    devices: BTreeMap<(String, String, String), UserRow>,
    /// (project, user key): users that gained or lost a device through a link.
    moved: BTreeSet<(String, String)>,
}

impl Changes {
    fn device(&mut self, project: &str, user: &str, anon: &str) -> &mut UserRow {
        self.devices
            .entry((project.to_owned(), user.to_owned(), anon.to_owned()))
            .or_insert_with(|| UserRow::seen(!user.is_empty(), i64::MAX, i64::MIN))
    }

    pub(super) fn seen(&mut self, project: &str, user: &str, anon: &str, first: i64, last: i64) {
        let row = self.device(project, user, anon);
        row.first_seen = row.first_seen.min(first);
        row.last_seen = row.last_seen.max(last);
    }

    pub(super) fn milestone(&mut self, project: &str, user: &str, anon: &str, name: &str, first: i64) {
        self.device(project, user, anon).add_milestone(name.to_owned(), first);
    }

    pub(super) fn set_trait(&mut self, project: &str, user: &str, anon: &str, key: &str, stamp: (i64, &str), value: String) {
        self.device(project, user, anon).add_trait(key.to_owned(), (stamp.0, stamp.1.to_owned()), value);
    }

    /// Called before a link (project, anonymous id → user, at `stamp`) is written, with the
    /// stored one: when it moves the device's anonymous rows to another user, both users'
    /// rows are recomputed.
    pub(super) fn link(&mut self, tx: &Connection, project: &str, anon: &str, user: &str, stamp: (i64, &str)) -> rusqlite::Result<()> {
        let stored: Option<(String, i64, String)> = tx
            .prepare_cached("SELECT user_id, linked_ts, link_event FROM identities WHERE project = ?1 AND anonymous_id = ?2")?
            .query_row(params![project, anon], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        let from = match stored {
            None => anon.to_owned(),
            Some((old, ts, event)) if stamp < (ts, event.as_str()) && old != user => old,
            Some(_) => return Ok(()),
        };
        self.moved.insert((project.to_owned(), from));
        self.moved.insert((project.to_owned(), user.to_owned()));
        Ok(())
    }

    /// Writes the changed users' rows, after the per-device rollups and links of the commit.
    pub(super) fn write(self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        let mut users: BTreeMap<(String, String), UserRow> = BTreeMap::new();
        for ((project, user, anon), mut row) in self.devices {
            let key = if user.is_empty() {
                match linked_user(tx, &project, &anon)? {
                    Some(linked) => {
                        row.identified = true;
                        linked
                    }
                    None => anon,
                }
            } else {
                user
            };
            let key = (project, key);
            if self.moved.contains(&key) {
                continue;
            }
            match users.get_mut(&key) {
                Some(held) => held.merge(row),
                None => drop(users.insert(key, row)),
            }
        }
        for ((project, key), row) in users {
            let merged = match load(tx, &project, &key)? {
                Some(mut stored) => {
                    stored.merge(row);
                    stored
                }
                None => row,
            };
            store(tx, &project, &key, Some(&merged))?;
        }
        let mut names = MilestoneNames::default();
        for (project, key) in self.moved {
            let row = recompute(tx, &project, &key, &mut names)?;
            store(tx, &project, &key, row.as_ref())?;
        }
        Ok(())
    }
}

fn linked_user(conn: &Connection, project: &str, anon: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT user_id FROM identities WHERE project = ?1 AND anonymous_id = ?2")?
        .query_row(params![project, anon], |r| r.get(0))
        .optional()
}

fn load(conn: &Connection, project: &str, key: &str) -> rusqlite::Result<Option<UserRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT identified, first_seen, last_seen, traits, milestones FROM rollup_users WHERE project = ?1 AND user_key = ?2",
    )?;
    let mut rows = stmt.query(params![project, key])?;
    let Some(r) = rows.next()? else { return Ok(None) };
    let row = UserRow::unpack(r.get(0)?, r.get(1)?, r.get(2)?, r.get_ref(3)?.as_blob()?, r.get_ref(4)?.as_blob()?);
    // Only a damaged row fails to unpack: it is recomputed, as `rollup rebuild` would.
    match row {
        Some(row) => Ok(Some(row)),
        None => recompute(conn, project, key, &mut MilestoneNames::default()),
    }
}

/// Writes `key`'s row, or deletes it when the user has no device left.
fn store(conn: &Connection, project: &str, key: &str, row: Option<&UserRow>) -> rusqlite::Result<()> {
    match row {
        Some(row) => conn
            .prepare_cached(
                "INSERT OR REPLACE INTO rollup_users (project, user_key, identified, first_seen, last_seen, traits, milestones)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![project, key, row.identified, row.first_seen, row.last_seen, row.pack_traits(), row.pack_milestones()])?,
        None => conn.prepare_cached("DELETE FROM rollup_users WHERE project = ?1 AND user_key = ?2")?.execute(params![project, key])?,
    };
    Ok(())
}

/// A project's milestone names (from the event rollup's key), read once per commit that needs
/// them.
#[derive(Default)]
pub(super) struct MilestoneNames(BTreeMap<String, Vec<String>>);

impl MilestoneNames {
    fn of(&mut self, conn: &Connection, project: &str) -> rusqlite::Result<&[String]> {
        if !self.0.contains_key(project) {
            // A skip scan of the key: one seek per name, however many rows each has.
            let mut next = conn.prepare_cached(
                "SELECT name FROM rollup_events WHERE project = ?1 AND type = 'milestone' AND name > ?2 ORDER BY name LIMIT 1",
            )?;
            let mut names: Vec<String> = Vec::new();
            while let Some(name) = next.query_row(params![project, names.last().map_or("", String::as_str)], |r| r.get(0)).optional()? {
                names.push(name);
            }
            self.0.insert(project.to_owned(), names);
        }
        Ok(&self.0[project])
    }
}

/// `key`'s row as the per-device rollups and links give it (`None`: no device has that key).
pub(super) fn recompute(conn: &Connection, project: &str, key: &str, names: &mut MilestoneNames) -> rusqlite::Result<Option<UserRow>> {
    // The key's devices: its user id's, the anonymous ones linked to it, and the anonymous
    // device of that id when it is linked to nobody; each with whether it is identified.
    let mut devices: Vec<(String, String, bool, i64, i64)> = Vec::new();
    let mut stmt = conn.prepare_cached("SELECT anonymous_id, first_seen, last_seen FROM rollup_devices WHERE project = ?1 AND user_id = ?2")?;
    let rows = stmt.query_map(params![project, key], |r| Ok((key.to_owned(), r.get(0)?, true, r.get(1)?, r.get(2)?)))?;
    devices.extend(rows.collect::<rusqlite::Result<Vec<_>>>()?);
    let mut stmt = conn.prepare_cached(
        "SELECT d.anonymous_id, d.first_seen, d.last_seen FROM identities i
         JOIN rollup_devices d ON d.project = i.project AND d.user_id = '' AND d.anonymous_id = i.anonymous_id
         WHERE i.project = ?1 AND i.user_id = ?2",
    )?;
    let rows = stmt.query_map(params![project, key], |r| Ok((String::new(), r.get(0)?, true, r.get(1)?, r.get(2)?)))?;
    devices.extend(rows.collect::<rusqlite::Result<Vec<_>>>()?);
    if linked_user(conn, project, key)?.is_none() {
        let mut stmt = conn.prepare_cached("SELECT first_seen, last_seen FROM rollup_devices WHERE project = ?1 AND user_id = '' AND anonymous_id = ?2")?;
        devices.extend(stmt.query_row(params![project, key], |r| Ok((String::new(), key.to_owned(), false, r.get(0)?, r.get(1)?))).optional()?);
    }
    let mut user: Option<UserRow> = None;
    let names = names.of(conn, project)?.to_vec();
    for (user_id, anon, identified, first, last) in devices {
        let mut row = UserRow::seen(identified, first, last);
        let mut stmt = conn.prepare_cached("SELECT key, value, ts, event FROM rollup_traits WHERE project = ?1 AND user_id = ?2 AND anonymous_id = ?3")?;
        let mut traits = stmt.query(params![project, user_id, anon])?;
        while let Some(t) = traits.next()? {
            row.add_trait(t.get(0)?, (t.get(2)?, t.get(3)?), t.get(1)?);
        }
        let mut first_ts = conn.prepare_cached(
            "SELECT first_ts FROM rollup_events WHERE project = ?1 AND type = 'milestone' AND name = ?2 AND user_id = ?3 AND anonymous_id = ?4",
        )?;
        for name in &names {
            if let Some(ts) = first_ts.query_row(params![project, name, user_id, anon], |r| r.get::<_, i64>(0)).optional()? {
                row.add_milestone(name.clone(), ts);
            }
        }
        match &mut user {
            Some(user) => user.merge(row),
            None => user = Some(row),
        }
    }
    Ok(user)
}

/// Every user row of `project` as the per-device rollups give it, in user key order, in one
/// ordered pass ([`KeyOrder`] runs over the devices, the traits and each milestone name).
pub(super) fn fold(conn: &Connection, project: &str, mut each: impl FnMut(String, UserRow) -> rusqlite::Result<()>) -> rusqlite::Result<()> {
    let names = MilestoneNames::default().of(conn, project)?.to_vec();
    let mut device_statements = key_statements(conn, "rollup_devices", "r.first_seen, r.last_seen", "r.project = ?1")?;
    let mut trait_statements = key_statements(conn, "rollup_traits", "r.key, r.value, r.ts, r.event", "r.project = ?1")?;
    let mut name_statements = Vec::with_capacity(names.len());
    for _ in &names {
        name_statements.push(key_statements(conn, "rollup_events", "r.first_ts", "r.project = ?1 AND r.type = 'milestone' AND r.name = ?2")?);
    }
    let mut devices = KeyOrder::new(&mut device_statements, &[&project], |r| Ok((r.get::<_, i64>(2)?, r.get::<_, i64>(3)?)))?.peekable();
    let mut traits = KeyOrder::new(&mut trait_statements, &[&project], |r| Ok((r.get::<_, String>(2)?, r.get::<_, String>(3)?, r.get::<_, i64>(4)?, r.get::<_, String>(5)?)))?;
    let mut runs = Vec::with_capacity(names.len());
    for (statements, name) in name_statements.iter_mut().zip(&names) {
        runs.push(KeyOrder::new(statements, &[&project, name], |r| r.get::<_, i64>(2))?);
    }
    while let Some(device) = devices.next() {
        let (who, identified, (first, last)) = device?;
        let mut row = UserRow::seen(identified, first, last);
        while let Some(Ok((_, more, (first, last)))) = devices.next_if(|r| r.as_ref().is_ok_and(|(key, _, _)| *key == who)) {
            row.merge(UserRow::seen(more, first, last));
        }
        traits.rows_of(&who, |_, (key, value, ts, event)| row.add_trait(key, (ts, event), value))?;
        for (run, name) in runs.iter_mut().zip(&names) {
            run.rows_of(&who, |_, ts| row.add_milestone(name.clone(), ts))?;
        }
        each(who, row)?;
    }
    Ok(())
}

fn projects(conn: &Connection, project: Option<&str>) -> rusqlite::Result<Vec<String>> {
    if let Some(project) = project {
        return Ok(vec![project.to_owned()]);
    }
    let mut next = conn.prepare("SELECT project FROM rollup_devices WHERE project > ?1 ORDER BY project LIMIT 1")?;
    let mut all: Vec<String> = Vec::new();
    while let Some(p) = next.query_row(params![all.last().map_or("", String::as_str)], |r| r.get(0)).optional()? {
        all.push(p);
    }
    Ok(all)
}

/// Recomputes the per-user rollup of `project` (or every project) from the per-device rollups,
/// which must be current (`sqlite_rollup::rebuild` recomputes them first).
pub fn rebuild(tx: &Transaction<'_>, project: Option<&str>, progress: &mut dyn FnMut(String)) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM rollup_users WHERE ?1 IS NULL OR project = ?1", params![project])?;
    for project in projects(tx, project)? {
        progress(format!("users: folding the devices of {project}"));
        let mut done = 0u64;
        fold(tx, &project, |key, row| {
            store(tx, &project, &key, Some(&row))?;
            done += 1;
            if done.is_multiple_of(100_000) {
                progress(format!("users: {done} of {project}"));
            }
            Ok(())
        })?;
        progress(format!("users: done ({done} users of {project})"));
    }
    Ok(())
}

/// Every difference between the stored per-user rows and a recompute from the events, one line
/// each. The recompute is written apart from [`fold`] (which builds the rows from the per-device
/// rollups): the devices, links and milestones straight from `events` by SQL (`devices`,
/// `links`: `sqlite_rollup`'s recomputing SELECTs, `?1` the project or NULL), and the traits
/// as `sqlite_rollup::verify` recomputed them, each (project, user id or '', anonymous id,
/// key) with its (value, ts, event).
pub(super) fn verify<'a>(
    conn: &Connection,
    project: Option<&str>,
    (devices, links): (&str, &str),
    traits: impl Iterator<Item = ((&'a str, &'a str, &'a str, &'a str), (&'a str, i64, &'a str))>,
) -> rusqlite::Result<Vec<String>> {
    let mut linked: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut stmt = conn.prepare(links)?;
    let mut rows = stmt.query(params![project])?;
    while let Some(r) = rows.next()? {
        linked.insert((r.get(0)?, r.get(1)?), r.get(2)?);
    }
    // A device's (project, user key) and whether it is identified, by the recomputed links.
    let key = |project: &str, user: &str, anon: &str| match linked.get(&(project.to_owned(), anon.to_owned())) {
        _ if !user.is_empty() => ((project.to_owned(), user.to_owned()), true),
        Some(linked) => ((project.to_owned(), linked.clone()), true),
        None => ((project.to_owned(), anon.to_owned()), false),
    };
    let mut fresh: BTreeMap<(String, String), UserRow> = BTreeMap::new();
    let mut stmt = conn.prepare(devices)?;
    let mut rows = stmt.query(params![project])?;
    while let Some(r) = rows.next()? {
        let (k, identified) = key(r.get_ref(0)?.as_str()?, r.get_ref(1)?.as_str()?, r.get_ref(2)?.as_str()?);
        let row = UserRow::seen(identified, r.get(3)?, r.get(4)?);
        match fresh.get_mut(&k) {
            Some(held) => held.merge(row),
            None => drop(fresh.insert(k, row)),
        }
    }
    let mut stmt = conn.prepare(
        "SELECT project, COALESCE(user_id, ''), anonymous_id, name, MIN(ts) FROM events WHERE type = 'milestone' AND (?1 IS NULL OR project = ?1)
         GROUP BY project, COALESCE(user_id, ''), anonymous_id, name",
    )?;
    let mut rows = stmt.query(params![project])?;
    while let Some(r) = rows.next()? {
        let (k, _) = key(r.get_ref(0)?.as_str()?, r.get_ref(1)?.as_str()?, r.get_ref(2)?.as_str()?);
        if let Some(row) = fresh.get_mut(&k) {
            row.add_milestone(r.get(3)?, r.get(4)?);
        }
    }
    for ((project, user, anon, trait_key), (value, ts, event)) in traits {
        if let Some(row) = fresh.get_mut(&key(project, user, anon).0) {
            row.add_trait(trait_key.to_owned(), (ts, event.to_owned()), value.to_owned());
        }
    }

    let mut out = Vec::new();
    let line = |label: &str, (project, key): &(String, String), row: &UserRow| format!("rollup_users {label}: ({project:?}, {key:?}, {row:?})");
    let mut stmt = conn.prepare(
        "SELECT project, user_key, identified, first_seen, last_seen, traits, milestones FROM rollup_users WHERE ?1 IS NULL OR project = ?1",
    )?;
    let mut rows = stmt.query(params![project])?;
    while let Some(r) = rows.next()? {
        let k: (String, String) = (r.get(0)?, r.get(1)?);
        let Some(stored) = UserRow::unpack(r.get(2)?, r.get(3)?, r.get(4)?, r.get_ref(5)?.as_blob()?, r.get_ref(6)?.as_blob()?) else {
            out.push(format!("rollup_users damaged: ({:?}, {:?})", k.0, k.1));
            continue;
        };
        match fresh.remove(&k) {
            Some(row) if row == stored => {}
            Some(row) => {
                out.push(line("stored, not in a recompute", &k, &stored));
                out.push(line("recomputed, not stored", &k, &row));
            }
            None => out.push(line("stored, not in a recompute", &k, &stored)),
        }
    }
    for (k, row) in &fresh {
        out.push(line("recomputed, not stored", k, row));
    }
    Ok(out)
}

/// The user key of each of `devices` (project, user id or '', anonymous id) by the current
/// links: the rows whose keys a deletion (erasure, retention) must recompute, before and after.
pub(super) fn keys_of(conn: &Connection, project: &str, devices: &[(String, String)]) -> rusqlite::Result<BTreeSet<String>> {
    let mut keys = BTreeSet::new();
    for (user, anon) in devices {
        keys.insert(if user.is_empty() { linked_user(conn, project, anon)?.unwrap_or_else(|| anon.clone()) } else { user.clone() });
    }
    Ok(keys)
}

/// Recomputes (or deletes) the rows of `keys` after a deletion changed their devices.
pub(super) fn refresh(tx: &Transaction<'_>, project: &str, keys: &BTreeSet<String>) -> rusqlite::Result<()> {
    let mut names = MilestoneNames::default();
    for key in keys {
        let row = recompute(tx, project, key, &mut names)?;
        store(tx, project, key, row.as_ref())?;
    }
    Ok(())
}
