//! ClickHouse's health tables (migration 0008): the SQLite store's `sqlite_health`, in SQL that
//! 18.16 runs. Reads use FINAL, so a snapshot written twice in a day (or by two collectors)
//! counts once. The read routes' answers are counted, filtered, sorted and cut here, in SQL.

use std::collections::HashMap;
use std::time::Duration;

use super::rowbinary::{put_i64, put_str, Reader};
use super::{quote, quote_list, ClickHouseStore};
use crate::store::{HealthCounts, HealthFilter, HealthListQuery, HealthRecord, HealthTransition, StoreError};

/// `filter`'s conditions beyond its kind, as SQL to append to a WHERE over `health_snapshots`.
fn selecting(filter: &HealthFilter) -> String {
    let mut sql = String::new();
    if !filter.bands.is_empty() {
        // No band is stored as ''.
        let bands: Vec<&String> = filter.bands.iter().collect();
        let none = String::new();
        let stored: Vec<&String> = bands.iter().map(|b| if *b == "none" { &none } else { *b }).collect();
        sql += &format!(" AND band IN ({})", quote_list(&stored));
    }
    if !filter.stages.is_empty() {
        sql += &format!(" AND stage IN ({})", quote_list(&filter.stages));
    }
    if let Some(account) = &filter.account {
        // A user's account is the breakdown's top-level `account` (its first key of that name:
        // nothing before it in the breakdown holds one); an account is also selected by its id.
        sql += &format!(" AND (visitParamExtractString(detail, 'account') = {}", quote(account));
        if filter.kind == "account" {
            sql += &format!(" OR id = {}", quote(account));
        }
        sql += ")";
    }
    sql
}

fn band(stored: String) -> Option<String> {
    (!stored.is_empty()).then_some(stored)
}

impl ClickHouseStore {
    pub(super) async fn save_health_rows(&self, project: &str, records: &[HealthRecord], transitions: &[HealthTransition]) -> Result<(), StoreError> {
        // Transitions first: a snapshot stored without its transitions would hide them from the
        // next run, while transitions stored twice fold into one.
        if !transitions.is_empty() {
            let mut rows = Vec::new();
            for t in transitions {
                for s in [project, &t.kind, &t.id] {
                    put_str(&mut rows, s);
                }
                put_i64(&mut rows, t.at);
                for s in [&t.what, &t.from, &t.to, &t.detail] {
                    put_str(&mut rows, s);
                }
            }
            let sql = "INSERT INTO health_transitions (project, kind, id, at, what, from_state, to_state, detail) FORMAT RowBinary";
            self.http.run(sql, rows, Duration::from_secs(60)).await?;
        }
        if !records.is_empty() {
            let mut rows = Vec::new();
            for r in records {
                for s in [project, &r.kind, &r.id] {
                    put_str(&mut rows, s);
                }
                put_i64(&mut rows, r.day);
                put_i64(&mut rows, r.computed_at);
                put_i64(&mut rows, r.score.map_or(-1, i64::from));
                for s in [r.band.as_deref().unwrap_or(""), &r.stage, &r.detail] {
                    put_str(&mut rows, s);
                }
            }
            let sql = "INSERT INTO health_snapshots (project, kind, id, day, computed_at, score, band, stage, detail) FORMAT RowBinary";
            self.http.run(sql, rows, Duration::from_secs(60)).await?;
        }
        Ok(())
    }

    pub(super) async fn health_record_rows(&self, project: &str, since_day: i64, entity: Option<(String, String)>) -> Result<Vec<HealthRecord>, StoreError> {
        let only = entity.map_or(String::new(), |(kind, id)| format!(" AND kind = {} AND id = {}", quote(&kind), quote(&id)));
        let answer = self
            .select(&format!(
                "SELECT kind, id, day, computed_at, score, band, stage, detail FROM health_snapshots FINAL
                 WHERE project = {} AND day >= {since_day}{only} ORDER BY kind, id, day",
                quote(project)
            ))
            .await?;
        let mut r = Reader::new(&answer);
        let mut out = Vec::new();
        while !r.is_empty() {
            let (kind, id, day, computed_at, score, band) = (r.str()?, r.str()?, r.i64()?, r.i64()?, r.i64()?, r.str()?);
            out.push(HealthRecord {
                kind,
                id,
                day,
                computed_at,
                score: u32::try_from(score).ok(),
                band: (!band.is_empty()).then_some(band),
                stage: r.str()?,
                detail: r.str()?,
            });
        }
        Ok(out)
    }

    pub(super) async fn health_transition_rows(&self, project: &str, since: i64, until: i64, entity: Option<(String, String)>) -> Result<Vec<HealthTransition>, StoreError> {
        let only = entity.map_or(String::new(), |(kind, id)| format!(" AND kind = {} AND id = {}", quote(&kind), quote(&id)));
        let answer = self
            .select(&format!(
                "SELECT kind, id, at, what, from_state, to_state, detail FROM health_transitions FINAL
                 WHERE project = {} AND at >= {since} AND at < {until}{only} ORDER BY at, kind, id, what",
                quote(project)
            ))
            .await?;
        let mut r = Reader::new(&answer);
        let mut out = Vec::new();
        while !r.is_empty() {
            out.push(HealthTransition { kind: r.str()?, id: r.str()?, at: r.i64()?, what: r.str()?, from: r.str()?, to: r.str()?, detail: r.str()? });
        }
        Ok(out)
    }

    /// `Store::health_newest`.
    pub(super) async fn health_newest_row(&self, project: &str, kind: &str, since_day: i64) -> Result<Option<i64>, StoreError> {
        let answer = self
            .select(&format!(
                "SELECT count(), max(computed_at) FROM health_snapshots WHERE project = {} AND kind = {} AND day >= {since_day}",
                quote(project),
                quote(kind)
            ))
            .await?;
        let mut r = Reader::new(&answer);
        let (count, newest) = (r.u64()?, r.i64()?);
        Ok((count > 0).then_some(newest))
    }

    /// `Store::health_counts`.
    pub(super) async fn health_count_rows(&self, project: &str, filter: &HealthFilter, newest: i64) -> Result<HealthCounts, StoreError> {
        let current = format!("project = {} AND kind = {} AND computed_at = {newest}", quote(project), quote(&filter.kind));
        let answer = self.select(&format!("SELECT band, stage, count() FROM health_snapshots FINAL WHERE {current} GROUP BY band, stage")).await?;
        let mut r = Reader::new(&answer);
        let mut groups = Vec::new();
        while !r.is_empty() {
            groups.push((band(r.str()?), r.str()?, r.u64()?));
        }
        let selected = if filter.is_everyone() {
            groups.iter().map(|g| g.2).sum()
        } else {
            let answer = self.select(&format!("SELECT count() FROM health_snapshots FINAL WHERE {current}{}", selecting(filter))).await?;
            Reader::new(&answer).u64()?
        };
        Ok(HealthCounts { groups, selected })
    }

    /// `Store::health_bands_by_day`.
    pub(super) async fn health_band_day_rows(&self, project: &str, kind: &str, since_day: i64) -> Result<Vec<(i64, Option<String>, u64)>, StoreError> {
        let answer = self
            .select(&format!(
                "SELECT day, band, count() FROM health_snapshots FINAL WHERE project = {} AND kind = {} AND day >= {since_day}
                 GROUP BY day, band ORDER BY day",
                quote(project),
                quote(kind)
            ))
            .await?;
        let mut r = Reader::new(&answer);
        let mut out = Vec::new();
        while !r.is_empty() {
            out.push((r.i64()?, band(r.str()?), r.u64()?));
        }
        Ok(out)
    }

    /// `Store::health_list`: the page's ids (no score is stored as -1, so it sorts first), then
    /// its rows with their breakdowns, and the scores 7 days back of just its entities: no
    /// other breakdown is read.
    pub(super) async fn health_list_rows(&self, project: &str, q: &HealthListQuery) -> Result<Vec<(HealthRecord, Option<u32>)>, StoreError> {
        let after = match &q.after {
            Some(c) => {
                let score = c.score.map_or(-1, i64::from);
                format!(" AND (score > {score} OR (score = {score} AND id > {}))", quote(&c.id))
            }
            None => String::new(),
        };
        let (project_q, kind_q) = (quote(project), quote(&q.filter.kind));
        let current = format!("project = {project_q} AND kind = {kind_q} AND computed_at = {}", q.newest);
        let page = format!("SELECT id FROM health_snapshots FINAL WHERE {current}{}{after} ORDER BY score, id LIMIT {}", selecting(&q.filter), q.limit);
        let in_set = self.in_set();
        let answer = self
            .select(&format!(
                "SELECT kind, id, day, computed_at, score, band, stage, detail FROM health_snapshots FINAL
                 WHERE {current} AND id {in_set} ({page}) ORDER BY score, id"
            ))
            .await?;
        let mut r = Reader::new(&answer);
        let mut rows = Vec::new();
        while !r.is_empty() {
            let (kind, id, day, computed_at, score, band_stored) = (r.str()?, r.str()?, r.i64()?, r.i64()?, r.i64()?, r.str()?);
            rows.push(HealthRecord { kind, id, day, computed_at, score: u32::try_from(score).ok(), band: band(band_stored), stage: r.str()?, detail: r.str()? });
        }
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let newest_day = q.newest.div_euclid(onramp::core::time::DAY);
        let answer = self
            .select(&format!(
                "SELECT id, argMax(score, day) FROM health_snapshots FINAL
                 WHERE project = {project_q} AND kind = {kind_q} AND day >= {} AND day <= {}
                 AND id {in_set} ({page}) GROUP BY id",
                q.history_since_day,
                newest_day - 7,
            ))
            .await?;
        let mut r = Reader::new(&answer);
        let mut then: HashMap<String, Option<u32>> = HashMap::new();
        while !r.is_empty() {
            then.insert(r.str()?, u32::try_from(r.i64()?).ok());
        }
        Ok(rows.into_iter().map(|row| {
            let before = then.get(&row.id).copied().flatten();
            (row, before)
        }).collect())
    }

    /// `Store::health_transition_counts`.
    pub(super) async fn health_transition_count_rows(&self, project: &str, kind: &str, since: i64, until: i64) -> Result<Vec<(String, String, String, u64)>, StoreError> {
        let answer = self
            .select(&format!(
                "SELECT what, from_state, to_state, count() FROM health_transitions FINAL
                 WHERE project = {} AND kind = {} AND at >= {since} AND at < {until} GROUP BY what, from_state, to_state",
                quote(project),
                quote(kind)
            ))
            .await?;
        let mut r = Reader::new(&answer);
        let mut out = Vec::new();
        while !r.is_empty() {
            out.push((r.str()?, r.str()?, r.str()?, r.u64()?));
        }
        Ok(out)
    }

    /// The erasure of a user's health rows and notifications (`erase_user`).
    pub(super) async fn erase_health(&self, project: &str, user: &str) -> Result<(), StoreError> {
        let this = format!("project = {} AND kind = 'user' AND id = {}", quote(project), quote(user));
        self.delete_where("health_snapshots", &this).await?;
        self.delete_where("health_transitions", &this).await?;
        let notes = format!(
            "project = {} AND kind IN ('health_changed', 'stage_changed') AND startsWith(user, {})",
            quote(project),
            quote(&format!("user:{user}:"))
        );
        self.delete_where("webhook_outbox", &notes).await
    }
}
