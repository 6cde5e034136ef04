//! SQLite's health tables (migration 0010): snapshots by day, transitions once.

use rusqlite::{params, Connection};

use super::{HealthRecord, HealthTransition};

pub fn save(conn: &mut Connection, project: &str, records: &[HealthRecord], transitions: &[HealthTransition]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut put = tx.prepare_cached(
            "INSERT OR REPLACE INTO health_snapshots (project, kind, id, day, computed_at, score, band, stage, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for r in records {
            put.execute(params![project, r.kind, r.id, r.day, r.computed_at, r.score, r.band, r.stage, r.detail])?;
        }
        let mut add = tx.prepare_cached(
            "INSERT OR IGNORE INTO health_transitions (project, kind, id, at, what, from_state, to_state, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for t in transitions {
            add.execute(params![project, t.kind, t.id, t.at, t.what, t.from, t.to, t.detail])?;
        }
    }
    tx.commit()
}

pub fn records(conn: &Connection, project: &str, since_day: i64, entity: Option<(String, String)>) -> rusqlite::Result<Vec<HealthRecord>> {
    let (kind, id) = entity.unzip();
    let mut stmt = conn.prepare_cached(
        "SELECT kind, id, day, computed_at, score, band, stage, detail FROM health_snapshots
         WHERE project = ?1 AND day >= ?2 AND (?3 IS NULL OR (kind = ?3 AND id = ?4))
         ORDER BY kind, id, day",
    )?;
    let rows = stmt.query_map(params![project, since_day, kind, id], |r| {
        Ok(HealthRecord {
            kind: r.get(0)?,
            id: r.get(1)?,
            day: r.get(2)?,
            computed_at: r.get(3)?,
            score: r.get(4)?,
            band: r.get(5)?,
            stage: r.get(6)?,
            detail: r.get(7)?,
        })
    })?;
    rows.collect()
}

pub fn transitions(conn: &Connection, project: &str, since: i64, until: i64) -> rusqlite::Result<Vec<HealthTransition>> {
    let mut stmt = conn.prepare_cached(
        "SELECT kind, id, at, what, from_state, to_state, detail FROM health_transitions
         WHERE project = ?1 AND at >= ?2 AND at < ?3 ORDER BY at, kind, id, what",
    )?;
    let rows = stmt.query_map(params![project, since, until], |r| {
        Ok(HealthTransition { kind: r.get(0)?, id: r.get(1)?, at: r.get(2)?, what: r.get(3)?, from: r.get(4)?, to: r.get(5)?, detail: r.get(6)? })
    })?;
    rows.collect()
}
