//! SQLite's health tables (migration 0010): snapshots by day, transitions once. The read
//! routes' answers are counted, filtered, sorted and cut here, in SQL, over the index of
//! migration 0013: a record's `day` is its `computed_at`'s UTC day (`crate::health::diff`), so
//! "records of day D and later" is a range of `computed_at`.

use onramp::core::time::DAY;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, Row};

use super::{HealthCounts, HealthFilter, HealthListQuery, HealthRecord, HealthTransition};

pub fn save(conn: &mut Connection, project: &str, records: &[HealthRecord], transitions: &[HealthTransition]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut put = tx.prepare_cached(
            "INSERT OR REPLACE INTO health_snapshots (project, kind, id, day, computed_at, score, band, stage, detail, account)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, CASE WHEN json_valid(?9) THEN json_extract(?9, '$.account') END)",
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

fn record(r: &Row) -> rusqlite::Result<HealthRecord> {
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
}

pub fn records(conn: &Connection, project: &str, since_day: i64, entity: Option<(String, String)>) -> rusqlite::Result<Vec<HealthRecord>> {
    let (kind, id) = entity.unzip();
    let mut stmt = conn.prepare_cached(
        "SELECT kind, id, day, computed_at, score, band, stage, detail FROM health_snapshots
         WHERE project = ?1 AND day >= ?2 AND (?3 IS NULL OR (kind = ?3 AND id = ?4))
         ORDER BY kind, id, day",
    )?;
    let rows = stmt.query_map(params![project, since_day, kind, id], record)?;
    rows.collect()
}

/// `Store::health_newest`.
pub fn newest(conn: &Connection, project: &str, kind: &str, since_day: i64) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT max(computed_at) FROM health_snapshots WHERE project = ?1 AND kind = ?2 AND computed_at >= ?3")?
        .query_row(params![project, kind, since_day.saturating_mul(DAY)], |r| r.get(0))
}

/// `filter`'s conditions beyond its kind, as SQL to append to a WHERE over `health_snapshots`,
/// their values pushed onto `values` in order.
fn selecting(filter: &HealthFilter, values: &mut Vec<SqlValue>) -> String {
    let mut sql = String::new();
    let one_of = |column: &str, names: &[&String], values: &mut Vec<SqlValue>| {
        values.extend(names.iter().map(|n| SqlValue::Text(n.to_string())));
        format!("{column} IN ({})", vec!["?"; names.len()].join(", "))
    };
    if !filter.bands.is_empty() {
        let named: Vec<&String> = filter.bands.iter().filter(|b| *b != "none").collect();
        let mut any = Vec::new();
        if !named.is_empty() {
            any.push(one_of("band", &named, values));
        }
        if filter.bands.iter().any(|b| b == "none") {
            any.push("band IS NULL".to_string());
        }
        sql += &format!(" AND ({})", any.join(" OR "));
    }
    if !filter.stages.is_empty() {
        let stages: Vec<&String> = filter.stages.iter().collect();
        sql += &format!(" AND {}", one_of("stage", &stages, values));
    }
    if let Some(account) = &filter.account {
        // A user's account (its breakdown's, kept in `account`); an account is also selected by
        // its own id.
        sql += " AND (account = ?";
        values.push(SqlValue::Text(account.clone()));
        if filter.kind == "account" {
            sql += " OR id = ?";
            values.push(SqlValue::Text(account.clone()));
        }
        sql += ")";
    }
    sql
}

/// `Store::health_counts`.
pub fn counts(conn: &Connection, project: &str, filter: &HealthFilter, newest: i64) -> rusqlite::Result<HealthCounts> {
    let current = [SqlValue::Text(project.into()), SqlValue::Text(filter.kind.clone()), SqlValue::Integer(newest)];
    let mut stmt = conn.prepare_cached(
        "SELECT band, stage, count(*) FROM health_snapshots WHERE project = ?1 AND kind = ?2 AND computed_at = ?3 GROUP BY band, stage",
    )?;
    let groups: Vec<(Option<String>, String, u64)> = stmt.query_map(params_from_iter(&current), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<rusqlite::Result<_>>()?;
    let selected = if filter.is_everyone() {
        groups.iter().map(|g| g.2).sum()
    } else {
        let mut values = current.to_vec();
        let sql = format!("SELECT count(*) FROM health_snapshots WHERE project = ? AND kind = ? AND computed_at = ?{}", selecting(filter, &mut values));
        conn.prepare(&sql)?.query_row(params_from_iter(&values), |r| r.get(0))?
    };
    Ok(HealthCounts { groups, selected })
}

/// `Store::health_bands_by_day`: counted per run and band in the counting index's order (no
/// sort), the few runs of a day then added up.
pub fn bands_by_day(conn: &Connection, project: &str, kind: &str, since_day: i64) -> rusqlite::Result<Vec<(i64, Option<String>, u64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT computed_at, band, count(*) FROM health_snapshots WHERE project = ?1 AND kind = ?2 AND computed_at >= ?3
         GROUP BY computed_at, band",
    )?;
    let rows = stmt.query_map(params![project, kind, since_day.saturating_mul(DAY)], |r| Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get(2)?)))?;
    let mut days: std::collections::BTreeMap<(i64, Option<String>), u64> = std::collections::BTreeMap::new();
    for row in rows {
        let (at, band, n): (i64, Option<String>, u64) = row?;
        *days.entry((at.div_euclid(DAY), band)).or_default() += n;
    }
    Ok(days.into_iter().map(|((day, band), n)| (day, band, n)).collect())
}

/// `Store::health_list`: read in the index's order (score, then id; SQLite puts no score
/// first), so a page stops after `limit` rows, starts at its cursor by a seek (a CSV export
/// reads each row once), and reads no other breakdown.
pub fn list(conn: &Connection, project: &str, query: &HealthListQuery) -> rusqlite::Result<Vec<(HealthRecord, Option<u32>)>> {
    // Each position as a range the index seeks to: after a row without a score, first the
    // rest of those (by id), then every row with one.
    let ranges: Vec<(&str, Vec<SqlValue>)> = match &query.after {
        None => vec![("", Vec::new())],
        Some(c) => match c.score {
            Some(score) => vec![(" AND (score, id) > (?, ?)", vec![SqlValue::Integer(score.into()), SqlValue::Text(c.id.clone())])],
            None => vec![(" AND score IS NULL AND id > ?", vec![SqlValue::Text(c.id.clone())]), (" AND score IS NOT NULL", Vec::new())],
        },
    };
    let mut out = Vec::new();
    for (range, bounds) in ranges {
        let left = query.limit - out.len();
        if left == 0 {
            break;
        }
        // The page's ids from the index alone (every filter column is in it), then their rows:
        // a filter that keeps few rows never reads the others' breakdowns.
        let mut values = vec![SqlValue::Integer(query.history_since_day)];
        let mut sql = String::from(
            "SELECT s.kind, s.id, s.day, s.computed_at, s.score, s.band, s.stage, s.detail,
                    (SELECT h.score FROM health_snapshots h WHERE h.project = s.project AND h.kind = s.kind AND h.id = s.id
                     AND h.day >= ? AND h.day <= s.day - 7 ORDER BY h.day DESC LIMIT 1)
             FROM (SELECT id FROM health_snapshots WHERE project = ? AND kind = ? AND computed_at = ?",
        );
        values.extend([SqlValue::Text(project.into()), SqlValue::Text(query.filter.kind.clone()), SqlValue::Integer(query.newest)]);
        sql += &selecting(&query.filter, &mut values);
        sql += range;
        values.extend(bounds);
        sql += " ORDER BY score, id LIMIT ?) AS page
                 JOIN health_snapshots s ON s.project = ? AND s.kind = ? AND s.id = page.id AND s.day = ?
                 ORDER BY s.score, s.id";
        values.push(SqlValue::Integer(i64::try_from(left).unwrap_or(i64::MAX)));
        values.extend([SqlValue::Text(project.into()), SqlValue::Text(query.filter.kind.clone()), SqlValue::Integer(query.newest.div_euclid(DAY))]);
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(&values), |r| Ok((record(r)?, r.get(8)?)))?;
        for row in rows {
            out.push(row?);
        }
    }
    Ok(out)
}

/// `Store::health_transition_counts`.
pub fn transition_counts(conn: &Connection, project: &str, kind: &str, since: i64, until: i64) -> rusqlite::Result<Vec<(String, String, String, u64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT what, from_state, to_state, count(*) FROM health_transitions
         WHERE project = ?1 AND kind = ?2 AND at >= ?3 AND at < ?4 GROUP BY what, from_state, to_state",
    )?;
    let rows = stmt.query_map(params![project, kind, since, until], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    rows.collect()
}

pub fn transitions(conn: &Connection, project: &str, since: i64, until: i64, entity: Option<(String, String)>) -> rusqlite::Result<Vec<HealthTransition>> {
    let (kind, id) = entity.unzip();
    let mut stmt = conn.prepare_cached(
        "SELECT kind, id, at, what, from_state, to_state, detail FROM health_transitions
         WHERE project = ?1 AND at >= ?2 AND at < ?3 AND (?4 IS NULL OR (kind = ?4 AND id = ?5)) ORDER BY at, kind, id, what",
    )?;
    let rows = stmt.query_map(params![project, since, until, kind, id], |r| {
        Ok(HealthTransition { kind: r.get(0)?, id: r.get(1)?, at: r.get(2)?, what: r.get(3)?, from: r.get(4)?, to: r.get(5)?, detail: r.get(6)? })
    })?;
    rows.collect()
}
