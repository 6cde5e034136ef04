//! The SQLite store's rollups (`migrations/0005_rollups.sql`): per device, first and last seen;
//! per device and event (type, name), first and last time and the number of distinct events; and
//! the identity links (each device's first event with a user id), which fold devices into users.
//!
//! The writer adds each newly stored event in the transaction that stores it ([`add`]), so a
//! committed event is always in the rollups and a resend (ignored by the event id) is never
//! counted twice. [`rebuild`] recomputes them from the events (a migration does on first start;
//! `onramp-collector rollup rebuild` on demand) and [`verify`] lists every difference between
//! the stored rows and a recompute.

use rusqlite::{params, Connection, Transaction};

use super::StoredEvent;

/// Adds one newly stored event to the rollups. Only MIN, MAX and +1, so the order events arrive
/// in does not matter.
pub(super) fn add(tx: &Transaction<'_>, s: &StoredEvent) -> rusqlite::Result<()> {
    let e = &s.event;
    let user = e.user_id.as_deref().unwrap_or("");
    tx.prepare_cached(
        "INSERT INTO rollup_devices (project, user_id, anonymous_id, first_seen, last_seen) VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT (project, user_id, anonymous_id) DO UPDATE SET
           first_seen = MIN(first_seen, excluded.first_seen), last_seen = MAX(last_seen, excluded.last_seen)",
    )?
    .execute(params![s.project, user, e.anonymous_id, s.ts])?;
    tx.prepare_cached(
        "INSERT INTO rollup_events (project, type, name, user_id, anonymous_id, first_ts, last_ts, events)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 1)
         ON CONFLICT (project, type, name, user_id, anonymous_id) DO UPDATE SET
           first_ts = MIN(first_ts, excluded.first_ts), last_ts = MAX(last_ts, excluded.last_ts), events = events + 1",
    )?
    .execute(params![s.project, e.kind.as_str(), e.name, user, e.anonymous_id, s.ts])?;
    Ok(())
}

/// The rollups as recomputed from the events, as SELECTs over `events` restricted by `?1` (a
/// project, or NULL for all). One definition for [`rebuild`] and [`verify`].
const DEVICES_FROM_EVENTS: &str = "SELECT project, COALESCE(user_id, ''), anonymous_id, MIN(ts), MAX(ts) FROM events
     WHERE (?1 IS NULL OR project = ?1) GROUP BY project, COALESCE(user_id, ''), anonymous_id";
const EVENTS_FROM_EVENTS: &str =
    "SELECT project, type, name, COALESCE(user_id, ''), anonymous_id, MIN(ts), MAX(ts), COUNT(*) FROM events
     WHERE (?1 IS NULL OR project = ?1) GROUP BY project, type, name, COALESCE(user_id, ''), anonymous_id";

/// Each device's link, as the writer keeps it: its first event (by time, then id) with a user id.
const LINKS_FROM_EVENTS: &str = "SELECT project, anonymous_id, user_id, ts, id FROM (
         SELECT project, anonymous_id, user_id, ts, id,
                ROW_NUMBER() OVER (PARTITION BY project, anonymous_id ORDER BY ts, id) AS n
         FROM events WHERE user_id IS NOT NULL AND (?1 IS NULL OR project = ?1)
     ) WHERE n = 1";

/// Recomputes the rollups of `project` (or of every project) from the stored events, in the
/// caller's transaction, reporting progress per event name. Returns the events read.
pub fn rebuild(tx: &Transaction<'_>, project: Option<&str>, progress: &mut dyn FnMut(String)) -> rusqlite::Result<u64> {
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
    let device = "(user_id, anonymous_id) IN (SELECT user_id, anonymous_id FROM temp.retention_devices)";
    let event_device = "(COALESCE(user_id, ''), anonymous_id) IN (SELECT user_id, anonymous_id FROM temp.retention_devices)";
    let anonymous = "anonymous_id IN (SELECT anonymous_id FROM temp.retention_devices)";
    for sql in [
        format!("DELETE FROM rollup_devices WHERE project = ?1 AND {device}"),
        format!("DELETE FROM rollup_events WHERE project = ?1 AND {device}"),
        format!("DELETE FROM identities WHERE project = ?1 AND {anonymous}"),
        format!("INSERT INTO rollup_devices {}", DEVICES_FROM_EVENTS.replace("(?1 IS NULL OR project = ?1)", &format!("project = ?1 AND {event_device}"))),
        format!("INSERT INTO rollup_events {}", EVENTS_FROM_EVENTS.replace("(?1 IS NULL OR project = ?1)", &format!("project = ?1 AND {event_device}"))),
        format!(
            "INSERT INTO identities (project, anonymous_id, user_id, linked_ts, link_event) {}",
            LINKS_FROM_EVENTS.replace("(?1 IS NULL OR project = ?1)", &format!("project = ?1 AND {anonymous}"))
        ),
    ] {
        tx.execute(&sql, params![project])?;
    }
    Ok(deleted)
}

fn count(conn: &Connection, table: &str, project: Option<&str>) -> rusqlite::Result<u64> {
    conn.query_row(&format!("SELECT COUNT(*) FROM {table} WHERE ?1 IS NULL OR project = ?1"), params![project], |r| r.get(0))
}

/// Every difference between the stored rollups of `project` (or all) and a recompute from the
/// events, one line each; empty when they agree.
pub fn verify(conn: &Connection, project: Option<&str>) -> rusqlite::Result<Vec<String>> {
    let mut out = Vec::new();
    let checks = [
        ("identities", "SELECT project, anonymous_id, user_id, linked_ts, link_event FROM identities WHERE ?1 IS NULL OR project = ?1", LINKS_FROM_EVENTS),
        ("rollup_devices", "SELECT project, user_id, anonymous_id, first_seen, last_seen FROM rollup_devices WHERE ?1 IS NULL OR project = ?1", DEVICES_FROM_EVENTS),
        (
            "rollup_events",
            "SELECT project, type, name, user_id, anonymous_id, first_ts, last_ts, events FROM rollup_events WHERE ?1 IS NULL OR project = ?1",
            EVENTS_FROM_EVENTS,
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
                        Ok(rusqlite::types::ValueRef::Text(t)) => format!("{:?}", String::from_utf8_lossy(t)),
                        _ => "?".into(),
                    })
                    .collect();
                out.push(format!("{table} {label}: ({})", cells.join(", ")));
            }
        }
    }
    Ok(out)
}
