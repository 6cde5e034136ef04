//! The SQLite store's rollups (`migrations/0005_rollups.sql`, `0008_rollup_traits.sql`): per
//! device, first and last seen; per device and event (type, name), first and last time and the
//! number of distinct events; per device and identify trait, the latest value (by event time,
//! then event id); per device and tip, and per device and seed metric, what the tip-effect and
//! seed-metric reports need (`0011_rollup_tips_metrics.sql`); and the identity links (each device's first event with a user id), which fold
//! devices into users.
//!
//! The writer folds each commit's newly stored events into the rollups in the transaction that
//! stores them ([`Changes`]), so a committed event is always in the rollups and a resend (ignored
//! by the event id) is never counted twice. [`rebuild`] recomputes them from the events (a migration does on first start;
//! `onramp-collector rollup rebuild` on demand) and [`verify`] lists every difference between
//! the stored rows and a recompute.

use std::collections::{btree_map, BTreeMap};

use onramp::core::json::{self, Value};
use onramp::core::vocab::{metric, prop};
use onramp::core::wire::EventType;
use rusqlite::{params, Connection, Transaction};

use super::{metric_value_prop, StoredEvent};

/// Event time, then event id: the order in which ties between events are broken.
type Stamp<'a> = (i64, &'a str);
/// Five columns of a rollup row's key, as the fields of [`Changes`] name them.
type Key5<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str);
/// A metric's first and latest value, each with its stamp.
type FirstAndLatest<'a> = ((Stamp<'a>, f64), (Stamp<'a>, f64));

/// What a commit's newly stored events change in the rollups and the identity links, each row
/// folded over those events in memory (MIN, MAX, a sum of counts, the least or greatest
/// [`Stamp`]), so the commit makes one upsert per row instead of one per event: the SDK's batch
/// of 50 events from one device was 100 upserts of the same two rows, a third of the writer's
/// time. The fold is the upserts' own order-independent rule, so the rows come out as the
/// per-event upserts made them (and as a recompute, `rollup verify`, makes them). Only events the
/// commit newly stored belong here: a resend (ignored by its id) changes nothing.
#[derive(Default)]
pub(super) struct Changes<'a> {
    /// (project, user id or '', anonymous id) → (first seen, last seen).
    devices: Fold<(&'a str, &'a str, &'a str), (i64, i64)>,
    /// (project, type, name, user id or '', anonymous id) → (first, last, events).
    events: Fold<Key5<'a>, (i64, i64, i64)>,
    /// (project, anonymous id) → the earliest event with a user id, and that user.
    links: Fold<(&'a str, &'a str), (Stamp<'a>, &'a str)>,
    /// (project, user id or '', anonymous id, trait) → the latest identify's value.
    traits: Fold<(&'a str, &'a str, &'a str, &'a str), (Stamp<'a>, &'a Value)>,
    /// (project, user id or '', anonymous id, tip id, tip event name) → the earliest such event
    /// with a milestone, and that milestone (none: the row exists, without a milestone).
    tips: Fold<Key5<'a>, Option<(Stamp<'a>, &'a str)>>,
    /// (project, user id or '', anonymous id, metric) → its first and latest value.
    metrics: Fold<(&'a str, &'a str, &'a str, &'a str), FirstAndLatest<'a>>,
}

impl<'a> Changes<'a> {
    /// Folds in one newly stored event.
    pub(super) fn add(&mut self, s: &'a StoredEvent) {
        let e = &s.event;
        let (project, anon, ts) = (s.project.as_str(), e.anonymous_id.as_str(), s.ts);
        let user = e.user_id.as_deref().unwrap_or("");
        let stamp = (ts, e.id.as_str());
        self.devices.add((project, user, anon), (ts, ts), |seen, (first, last)| *seen = (seen.0.min(first), seen.1.max(last)));
        let counts = |c: &mut (i64, i64, i64), (first, last, n): (i64, i64, i64)| *c = (c.0.min(first), c.1.max(last), c.2 + n);
        self.events.add((project, e.kind.as_str(), &e.name, user, anon), (ts, ts, 1), counts);
        if let Some(user) = &e.user_id {
            self.links.add((project, anon), (stamp, user), earliest);
        }
        match e.kind {
            EventType::Identify => {
                for (key, value) in &e.props {
                    self.traits.add((project, user, anon, key), (stamp, value), latest);
                }
            }
            EventType::Tip => {
                let Some(tip_id) = json::field(&e.props, prop::TIP_ID).and_then(|v| v.as_str()) else { return };
                let milestone = json::field(&e.props, prop::MILESTONE).and_then(|v| v.as_str()).map(|m| (stamp, m));
                // The earliest event with a milestone; one without never replaces it.
                self.tips.add((project, user, anon, tip_id, &e.name), milestone, |old, new| {
                    if new.is_some_and(|(at, _)| old.is_none_or(|(was, _)| at < was)) {
                        *old = new;
                    }
                });
            }
            EventType::Metric => {
                let value = metric_value_prop(&e.name).and_then(|key| json::field(&e.props, key)).and_then(|v| v.as_f64());
                let Some(value) = value else { return };
                self.metrics.add((project, user, anon, &e.name), ((stamp, value), (stamp, value)), |span, (first, last)| {
                    earliest(&mut span.0, first);
                    latest(&mut span.1, last);
                });
            }
            _ => {}
        }
    }

    /// Applies the folded rows to the stored ones, in key order (neighbouring rows share pages).
    pub(super) fn write(self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        let mut devices = tx.prepare_cached(
            "INSERT INTO rollup_devices (project, user_id, anonymous_id, first_seen, last_seen) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (project, user_id, anonymous_id) DO UPDATE SET
               first_seen = MIN(first_seen, excluded.first_seen), last_seen = MAX(last_seen, excluded.last_seen)",
        )?;
        // The per-user rollup's share of the same rows, written last (`sqlite_users`).
        let mut users = super::sqlite_users::Changes::default();
        for ((project, user, anon), (first, last)) in self.devices.into_rows() {
            devices.execute(params![project, user, anon, first, last])?;
            users.seen(project, user, anon, first, last);
        }
        let mut events = tx.prepare_cached(
            "INSERT INTO rollup_events (project, type, name, user_id, anonymous_id, first_ts, last_ts, events)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (project, type, name, user_id, anonymous_id) DO UPDATE SET
               first_ts = MIN(first_ts, excluded.first_ts), last_ts = MAX(last_ts, excluded.last_ts), events = events + excluded.events",
        )?;
        for ((project, kind, name, user, anon), (first, last, count)) in self.events.into_rows() {
            events.execute(params![project, kind, name, user, anon, first, last, count])?;
            if kind == EventType::Milestone.as_str() {
                users.milestone(project, user, anon, name, first);
            }
        }
        // The first link by event time (then event id) wins, whatever order events arrive in.
        let mut link = tx.prepare_cached(
            "INSERT INTO identities (project, anonymous_id, user_id, linked_ts, link_event) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (project, anonymous_id) DO UPDATE SET
               user_id = excluded.user_id, linked_ts = excluded.linked_ts, link_event = excluded.link_event
             WHERE (excluded.linked_ts, excluded.link_event) < (identities.linked_ts, identities.link_event)",
        )?;
        for ((project, anon), ((ts, event), user)) in self.links.into_rows() {
            users.link(tx, project, anon, user, (ts, event))?;
            link.execute(params![project, anon, user, ts, event])?;
        }
        for ((project, user, anon, key), ((ts, event), value)) in self.traits.into_rows() {
            let value = value.to_json();
            set_trait(tx, project, user, anon, key, &value, ts, event)?;
            users.set_trait(project, user, anon, key, (ts, event), value);
        }
        // The earliest (ts, event) with a milestone wins; a row without one changes nothing.
        let mut tips = tx.prepare_cached(
            "INSERT INTO rollup_tips (project, user_id, anonymous_id, tip_id, name, milestone, milestone_ts, milestone_event)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (project, user_id, anonymous_id, tip_id, name) DO UPDATE SET
               milestone = excluded.milestone, milestone_ts = excluded.milestone_ts, milestone_event = excluded.milestone_event
             WHERE excluded.milestone IS NOT NULL AND (rollup_tips.milestone IS NULL
               OR (excluded.milestone_ts, excluded.milestone_event) < (rollup_tips.milestone_ts, rollup_tips.milestone_event))",
        )?;
        for ((project, user, anon, tip_id, name), earliest) in self.tips.into_rows() {
            let (ts, event, milestone) = match earliest {
                Some(((ts, event), milestone)) => (Some(ts), Some(event), Some(milestone)),
                None => (None, None, None),
            };
            tips.execute(params![project, user, anon, tip_id, name, milestone, ts, event])?;
        }
        let mut metrics = tx.prepare_cached(
            "INSERT INTO rollup_metrics (project, user_id, anonymous_id, name, first_ts, first_event, first_value, last_ts, last_event, last_value)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (project, user_id, anonymous_id, name) DO UPDATE SET
               first_ts = CASE WHEN (excluded.first_ts, excluded.first_event) < (first_ts, first_event) THEN excluded.first_ts ELSE first_ts END,
               first_value = CASE WHEN (excluded.first_ts, excluded.first_event) < (first_ts, first_event) THEN excluded.first_value ELSE first_value END,
               first_event = CASE WHEN (excluded.first_ts, excluded.first_event) < (first_ts, first_event) THEN excluded.first_event ELSE first_event END,
               last_ts = CASE WHEN (excluded.last_ts, excluded.last_event) > (last_ts, last_event) THEN excluded.last_ts ELSE last_ts END,
               last_value = CASE WHEN (excluded.last_ts, excluded.last_event) > (last_ts, last_event) THEN excluded.last_value ELSE last_value END,
               last_event = CASE WHEN (excluded.last_ts, excluded.last_event) > (last_ts, last_event) THEN excluded.last_event ELSE last_event END",
        )?;
        for ((project, user, anon, name), (((first_ts, first_event), first), ((last_ts, last_event), last))) in self.metrics.into_rows() {
            metrics.execute(params![project, user, anon, name, first_ts, first_event, first, last_ts, last_event, last])?;
        }
        users.write(tx)
    }
}

/// Rows folded per key, in key order. The last key is kept apart: a batch's events mostly repeat
/// their neighbour's device (and often its event name), which then costs one comparison instead
/// of a search of the map (the search was a tenth of the writer's time).
struct Fold<K, V> {
    rows: BTreeMap<K, V>,
    last: Option<(K, V)>,
}

impl<K, V> Default for Fold<K, V> {
    fn default() -> Self {
        Fold { rows: BTreeMap::new(), last: None }
    }
}

impl<K: Ord, V> Fold<K, V> {
    /// Folds `value` into `key`'s row with `merge(row, value)`, which must not depend on the
    /// order values come in.
    fn add(&mut self, key: K, value: V, merge: impl Fn(&mut V, V)) {
        match &mut self.last {
            Some((last, row)) if *last == key => merge(row, value),
            _ => {
                // A key's row is in `last` or in `rows`, never both.
                let row = match self.rows.remove(&key) {
                    Some(mut row) => {
                        merge(&mut row, value);
                        row
                    }
                    None => value,
                };
                if let Some((key, row)) = self.last.replace((key, row)) {
                    self.rows.insert(key, row);
                }
            }
        }
    }

    fn into_rows(mut self) -> btree_map::IntoIter<K, V> {
        if let Some((key, row)) = self.last.take() {
            self.rows.insert(key, row);
        }
        self.rows.into_iter()
    }
}

/// Merges that keep the earliest or the latest of two stamped values.
fn earliest<'a, T>(held: &mut (Stamp<'a>, T), new: (Stamp<'a>, T)) {
    if new.0 < held.0 {
        *held = new;
    }
}

fn latest<'a, T>(held: &mut (Stamp<'a>, T), new: (Stamp<'a>, T)) {
    if new.0 > held.0 {
        *held = new;
    }
}

/// The tip rollup as recomputed from the events passing `condition` (on `events`, `?1` bound as
/// in [`rebuild`]): per device, tip and name, the milestone of the earliest (ts, id) event that
/// has one. SQLite's JSON functions read the props as ingest's parser does for these flat
/// string props.
fn tips_from_events(condition: &str) -> String {
    format!(
        "SELECT project, user_id, anonymous_id, tip_id, name, milestone, CASE WHEN milestone IS NOT NULL THEN ts END, CASE WHEN milestone IS NOT NULL THEN id END
         FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY project, user_id, anonymous_id, tip_id, name ORDER BY milestone IS NULL, ts, id) AS n
               FROM (SELECT project, COALESCE(user_id, '') AS user_id, anonymous_id, json_extract(props, '$.{tip}') AS tip_id, name, ts, id,
                            CASE WHEN json_type(props, '$.{milestone}') = 'text' THEN json_extract(props, '$.{milestone}') END AS milestone
                     FROM events WHERE type = 'tip' AND json_type(props, '$.{tip}') = 'text' AND {condition}))
         WHERE n = 1",
        tip = prop::TIP_ID,
        milestone = prop::MILESTONE,
    )
}

/// The metric rollup as recomputed from the events passing `condition` (as [`tips_from_events`]):
/// per device and seed metric, the value of the first and the latest (ts, id) event whose value
/// prop ([`metric_value_prop`]) is a number.
fn metrics_from_events(condition: &str) -> String {
    let path = |name: &str| format!("WHEN '{name}' THEN '$.{}'", metric_value_prop(name).unwrap_or_default());
    let path = format!(
        "CASE name {} {} {} END",
        path(metric::CORE_TASK_COMPLETION),
        path(metric::FIRST_SESSION_LENGTH),
        path(metric::RETURN_INTERVAL)
    );
    format!(
        "SELECT project, user_id, anonymous_id, name,
                MAX(CASE WHEN a = 1 THEN ts END), MAX(CASE WHEN a = 1 THEN id END), MAX(CASE WHEN a = 1 THEN value END),
                MAX(CASE WHEN z = 1 THEN ts END), MAX(CASE WHEN z = 1 THEN id END), MAX(CASE WHEN z = 1 THEN value END)
         FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY project, user_id, anonymous_id, name ORDER BY ts, id) AS a,
                         ROW_NUMBER() OVER (PARTITION BY project, user_id, anonymous_id, name ORDER BY ts DESC, id DESC) AS z
               FROM (SELECT project, COALESCE(user_id, '') AS user_id, anonymous_id, name, ts, id, CAST(json_extract(props, {path}) AS REAL) AS value
                     FROM events WHERE type = 'metric' AND json_type(props, {path}) IN ('integer', 'real') AND {condition}))
         WHERE a = 1 OR z = 1 GROUP BY project, user_id, anonymous_id, name"
    )
}

/// Recomputes the tip and metric rollups (`migrations/0011_rollup_tips_metrics.sql` builds them
/// with this).
pub fn rebuild_tips_metrics(tx: &Transaction<'_>, project: Option<&str>, progress: &mut dyn FnMut(String)) -> rusqlite::Result<()> {
    let all = "(?1 IS NULL OR project = ?1)";
    for (table, from_events) in [("rollup_tips", tips_from_events(all)), ("rollup_metrics", metrics_from_events(all))] {
        tx.execute(&format!("DELETE FROM {table} WHERE {all}"), params![project])?;
        progress(format!("{table}: reading events"));
        tx.execute(&format!("INSERT INTO {table} {from_events}"), params![project])?;
        progress(format!("{table}: done ({} rows)", count(tx, table, project)?));
    }
    Ok(())
}

/// Keeps a device's trait value from the identify with the greatest (time, event id): the same
/// row whatever order identifies arrive in.
#[allow(clippy::too_many_arguments)]
fn set_trait(tx: &Connection, project: &str, user: &str, anonymous_id: &str, key: &str, value: &str, ts: i64, event: &str) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO rollup_traits (project, user_id, anonymous_id, key, value, ts, event) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (project, user_id, anonymous_id, key) DO UPDATE SET
           value = excluded.value, ts = excluded.ts, event = excluded.event
         WHERE (excluded.ts, excluded.event) > (rollup_traits.ts, rollup_traits.event)",
    )?
    .execute(params![project, user, anonymous_id, key, value, ts, event])?;
    Ok(())
}

/// A trait row's key (project, user id or '', anonymous id, trait) and its (value JSON, ts, event).
type TraitRows = BTreeMap<(String, String, String, String), (String, i64, String)>;

/// The trait rollup as recomputed from the identify events passing `condition` (SQL on `events`,
/// with `?1` bound to `project`): the stored props are parsed and re-serialised by the same code
/// as ingest, so the values compare as text.
fn traits_from_events(conn: &Connection, condition: &str, project: Option<&str>) -> rusqlite::Result<TraitRows> {
    let mut stmt = conn.prepare(&format!(
        "SELECT project, COALESCE(user_id, ''), anonymous_id, ts, id, props FROM events WHERE type = 'identify' AND {condition}"
    ))?;
    let mut rows = stmt.query(params![project])?;
    let mut out = TraitRows::new();
    while let Some(row) = rows.next()? {
        let (project, user, anon, ts, id): (String, String, String, i64, String) = (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?);
        let Ok(Value::Obj(props)) = json::parse(row.get_ref(5)?.as_str()?) else { continue };
        for (key, value) in props {
            let slot = out.entry((project.clone(), user.clone(), anon.clone(), key)).or_insert((String::new(), i64::MIN, String::new()));
            if (ts, id.as_str()) > (slot.1, slot.2.as_str()) {
                *slot = (value.to_json(), ts, id.clone());
            }
        }
    }
    Ok(out)
}

fn insert_traits(tx: &Transaction<'_>, rows: TraitRows) -> rusqlite::Result<()> {
    for ((project, user, anon, key), (value, ts, event)) in rows {
        set_trait(tx, &project, &user, &anon, &key, &value, ts, &event)?;
    }
    Ok(())
}

fn stored_traits(conn: &Connection, project: Option<&str>) -> rusqlite::Result<TraitRows> {
    let mut stmt = conn.prepare("SELECT project, user_id, anonymous_id, key, value, ts, event FROM rollup_traits WHERE ?1 IS NULL OR project = ?1")?;
    let rows = stmt.query_map(params![project], |r| Ok(((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?), (r.get(4)?, r.get(5)?, r.get(6)?))))?;
    rows.collect()
}

/// The rollups as recomputed from the events, as SELECTs over `events` restricted by `?1` (a
/// project, or NULL for all). One definition for [`rebuild`] and [`verify`].
const DEVICES_FROM_EVENTS: &str = "SELECT project, COALESCE(user_id, ''), anonymous_id, MIN(ts), MAX(ts) FROM events
     WHERE (?1 IS NULL OR project = ?1) GROUP BY project, COALESCE(user_id, ''), anonymous_id";
const EVENTS_FROM_EVENTS: &str =
    "SELECT project, type, name, COALESCE(user_id, ''), anonymous_id, MIN(ts), MAX(ts), COUNT(*) FROM events
     WHERE (?1 IS NULL OR project = ?1) GROUP BY project, type, name, COALESCE(user_id, ''), anonymous_id";

/// Each device's link, as the writer keeps it: its first event (by time, then id) with a user id.
pub(super) const LINKS_FROM_EVENTS: &str = "SELECT project, anonymous_id, user_id, ts, id FROM (
         SELECT project, anonymous_id, user_id, ts, id,
                ROW_NUMBER() OVER (PARTITION BY project, anonymous_id ORDER BY ts, id) AS n
         FROM events WHERE user_id IS NOT NULL AND (?1 IS NULL OR project = ?1)
     ) WHERE n = 1";

/// Recomputes the rollups of `project` (or of every project) from the stored events, in the
/// caller's transaction, reporting progress per event name. Returns the events read.
pub fn rebuild(tx: &Transaction<'_>, project: Option<&str>, progress: &mut dyn FnMut(String)) -> rusqlite::Result<u64> {
    let events = rebuild_counts(tx, project, progress)?;
    rebuild_traits(tx, project, progress)?;
    rebuild_tips_metrics(tx, project, progress)?;
    super::sqlite_users::rebuild(tx, project, progress)?;
    Ok(events)
}

/// Recomputes the trait rollup (`migrations/0008_rollup_traits.sql` builds it with this).
pub fn rebuild_traits(tx: &Transaction<'_>, project: Option<&str>, progress: &mut dyn FnMut(String)) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM rollup_traits WHERE ?1 IS NULL OR project = ?1", params![project])?;
    progress("traits: reading identify events".into());
    insert_traits(tx, traits_from_events(tx, "(?1 IS NULL OR project = ?1)", project)?)?;
    progress(format!("traits: done ({} rows)", count(tx, "rollup_traits", project)?));
    Ok(())
}

/// Recomputes the identity links and the per-device rollups of `migrations/0005_rollups.sql`
/// (which builds them with this). Returns the events read.
pub fn rebuild_counts(tx: &Transaction<'_>, project: Option<&str>, progress: &mut dyn FnMut(String)) -> rusqlite::Result<u64> {
    tx.execute("DELETE FROM rollup_devices WHERE ?1 IS NULL OR project = ?1", params![project])?;
    tx.execute("DELETE FROM rollup_events WHERE ?1 IS NULL OR project = ?1", params![project])?;
    tx.execute("DELETE FROM identities WHERE ?1 IS NULL OR project = ?1", params![project])?;
    tx.execute(&format!("INSERT INTO identities (project, anonymous_id, user_id, linked_ts, link_event) {LINKS_FROM_EVENTS}"), params![project])?;
    progress(format!("identities: done ({} links)", count(tx, "identities", project)?));
    // One group per (project, type, name): the `events_by_type` index lists them cheaply, and
    // each is one indexed INSERT … SELECT, so progress can be told as it goes.
    let groups: Vec<(String, String, String, u64)> = tx
        .prepare("SELECT project, type, name, COUNT(*) FROM events WHERE ?1 IS NULL OR project = ?1 GROUP BY project, type, name")?
        .query_map(params![project], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let total: u64 = groups.iter().map(|g| g.3).sum();
    progress(format!("rollups: {total} events in {} event names to read", groups.len()));
    tx.execute(&format!("INSERT INTO rollup_devices {DEVICES_FROM_EVENTS}"), params![project])?;
    progress(format!("rollups: devices done ({} rows)", count(tx, "rollup_devices", project)?));
    let mut done = 0;
    let mut insert = tx.prepare(
        "INSERT INTO rollup_events
         SELECT project, type, name, COALESCE(user_id, ''), anonymous_id, MIN(ts), MAX(ts), COUNT(*) FROM events
         WHERE project = ?1 AND type = ?2 AND name = ?3 GROUP BY COALESCE(user_id, ''), anonymous_id",
    )?;
    for (project, kind, name, events) in &groups {
        insert.execute(params![project, kind, name])?;
        done += events;
        progress(format!("rollups: {done}/{total} events ({:.0}%) — {project} {kind} {name}", 100.0 * done as f64 / total.max(1) as f64));
    }
    Ok(total)
}

/// Retention: deletes `project`'s events dated before `before` and recomputes the rollups and
/// identity links of every device that had one, in the caller's transaction, so the rollups stay
/// what a recompute from the remaining events gives (`rollup verify` finds nothing). Returns the
/// events deleted.
pub fn delete_events_before(tx: &Transaction<'_>, project: &str, before: i64) -> rusqlite::Result<u64> {
    tx.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS retention_devices (user_id TEXT NOT NULL, anonymous_id TEXT NOT NULL,
           PRIMARY KEY (user_id, anonymous_id)) WITHOUT ROWID;
         DELETE FROM temp.retention_devices;",
    )?;
    tx.execute(
        "INSERT OR IGNORE INTO temp.retention_devices
         SELECT DISTINCT COALESCE(user_id, ''), anonymous_id FROM events WHERE project = ?1 AND ts < ?2",
        params![project, before],
    )?;
    let deleted = tx.execute("DELETE FROM events WHERE project = ?1 AND ts < ?2", params![project, before])? as u64;
    if deleted == 0 {
        return Ok(0);
    }
    // Every device whose rows or link may change, and its anonymous rows (a link may move them):
    // their users' rows are recomputed from what remains, under the keys before and after.
    let devices: Vec<(String, String)> = tx
        .prepare("SELECT user_id, anonymous_id FROM temp.retention_devices UNION SELECT '', anonymous_id FROM temp.retention_devices")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut users = super::sqlite_users::keys_of(tx, project, &devices)?;
    let device = "(user_id, anonymous_id) IN (SELECT user_id, anonymous_id FROM temp.retention_devices)";
    let event_device = "(COALESCE(user_id, ''), anonymous_id) IN (SELECT user_id, anonymous_id FROM temp.retention_devices)";
    let anonymous = "anonymous_id IN (SELECT anonymous_id FROM temp.retention_devices)";
    for sql in [
        format!("DELETE FROM rollup_devices WHERE project = ?1 AND {device}"),
        format!("DELETE FROM rollup_events WHERE project = ?1 AND {device}"),
        format!("DELETE FROM identities WHERE project = ?1 AND {anonymous}"),
        format!("DELETE FROM rollup_traits WHERE project = ?1 AND {device}"),
        format!("DELETE FROM rollup_tips WHERE project = ?1 AND {device}"),
        format!("DELETE FROM rollup_metrics WHERE project = ?1 AND {device}"),
        format!("INSERT INTO rollup_tips {}", tips_from_events(&format!("project = ?1 AND {event_device}"))),
        format!("INSERT INTO rollup_metrics {}", metrics_from_events(&format!("project = ?1 AND {event_device}"))),
        format!("INSERT INTO rollup_devices {}", DEVICES_FROM_EVENTS.replace("(?1 IS NULL OR project = ?1)", &format!("project = ?1 AND {event_device}"))),
        format!("INSERT INTO rollup_events {}", EVENTS_FROM_EVENTS.replace("(?1 IS NULL OR project = ?1)", &format!("project = ?1 AND {event_device}"))),
        format!(
            "INSERT INTO identities (project, anonymous_id, user_id, linked_ts, link_event) {}",
            LINKS_FROM_EVENTS.replace("(?1 IS NULL OR project = ?1)", &format!("project = ?1 AND {anonymous}"))
        ),
    ] {
        tx.execute(&sql, params![project])?;
    }
    insert_traits(tx, traits_from_events(tx, &format!("project = ?1 AND {event_device}"), Some(project))?)?;
    users.extend(super::sqlite_users::keys_of(tx, project, &devices)?);
    super::sqlite_users::refresh(tx, project, &users)?;
    Ok(deleted)
}

fn count(conn: &Connection, table: &str, project: Option<&str>) -> rusqlite::Result<u64> {
    conn.query_row(&format!("SELECT COUNT(*) FROM {table} WHERE ?1 IS NULL OR project = ?1"), params![project], |r| r.get(0))
}

/// Every difference between the stored rollups of `project` (or all) and a recompute from the
/// events, one line each; empty when they agree.
pub fn verify(conn: &Connection, project: Option<&str>) -> rusqlite::Result<Vec<String>> {
    let mut out = Vec::new();
    let all = "(?1 IS NULL OR project = ?1)";
    let (tips, metrics) = (tips_from_events(all), metrics_from_events(all));
    let checks = [
        ("identities", "SELECT project, anonymous_id, user_id, linked_ts, link_event FROM identities WHERE ?1 IS NULL OR project = ?1", LINKS_FROM_EVENTS),
        ("rollup_devices", "SELECT project, user_id, anonymous_id, first_seen, last_seen FROM rollup_devices WHERE ?1 IS NULL OR project = ?1", DEVICES_FROM_EVENTS),
        (
            "rollup_events",
            "SELECT project, type, name, user_id, anonymous_id, first_ts, last_ts, events FROM rollup_events WHERE ?1 IS NULL OR project = ?1",
            EVENTS_FROM_EVENTS,
        ),
        (
            "rollup_tips",
            "SELECT project, user_id, anonymous_id, tip_id, name, milestone, milestone_ts, milestone_event FROM rollup_tips WHERE ?1 IS NULL OR project = ?1",
            tips.as_str(),
        ),
        (
            "rollup_metrics",
            "SELECT project, user_id, anonymous_id, name, first_ts, first_event, first_value, last_ts, last_event, last_value FROM rollup_metrics WHERE ?1 IS NULL OR project = ?1",
            metrics.as_str(),
        ),
    ];
    for (table, stored, recomputed) in checks {
        for (label, a, b) in [("stored, not in a recompute", stored, recomputed), ("recomputed, not stored", recomputed, stored)] {
            let mut stmt = conn.prepare(&format!("{a} EXCEPT {b}"))?;
            let columns = stmt.column_count();
            let mut rows = stmt.query(params![project])?;
            while let Some(row) = rows.next()? {
                let cells: Vec<String> = (0..columns)
                    .map(|i| match row.get_ref(i) {
                        Ok(rusqlite::types::ValueRef::Integer(n)) => n.to_string(),
                        Ok(rusqlite::types::ValueRef::Real(x)) => x.to_string(),
                        Ok(rusqlite::types::ValueRef::Null) => "NULL".into(),
                        Ok(rusqlite::types::ValueRef::Text(t)) => format!("{:?}", String::from_utf8_lossy(t)),
                        _ => "?".into(),
                    })
                    .collect();
                out.push(format!("{table} {label}: ({})", cells.join(", ")));
            }
        }
    }
    let (stored, fresh) = (stored_traits(conn, project)?, traits_from_events(conn, "(?1 IS NULL OR project = ?1)", project)?);
    let line = |label: &str, (p, u, a, k): &(String, String, String, String), (v, ts, e): &(String, i64, String)| {
        format!("rollup_traits {label}: ({p:?}, {u:?}, {a:?}, {k:?}, {v:?}, {ts}, {e:?})")
    };
    for (key, row) in &stored {
        if fresh.get(key) != Some(row) {
            out.push(line("stored, not in a recompute", key, row));
        }
    }
    for (key, row) in &fresh {
        if stored.get(key) != Some(row) {
            out.push(line("recomputed, not stored", key, row));
        }
    }
    let traits = fresh.iter().map(|((p, u, a, k), (v, ts, e))| ((p.as_str(), u.as_str(), a.as_str(), k.as_str()), (v.as_str(), *ts, e.as_str())));
    out.extend(super::sqlite_users::verify(conn, project, (DEVICES_FROM_EVENTS, LINKS_FROM_EVENTS), traits)?);
    Ok(out)
}
