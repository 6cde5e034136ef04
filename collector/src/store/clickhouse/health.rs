//! ClickHouse's health tables (migration 0008): the SQLite store's `sqlite_health`, in SQL that
//! 18.16 runs. Reads use FINAL, so a snapshot written twice in a day (or by two collectors)
//! counts once.

use std::time::Duration;

use super::rowbinary::{put_i64, put_str, Reader};
use super::{quote, ClickHouseStore};
use crate::store::{HealthRecord, HealthTransition, StoreError};

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

    pub(super) async fn health_transition_rows(&self, project: &str, since: i64, until: i64) -> Result<Vec<HealthTransition>, StoreError> {
        let answer = self
            .select(&format!(
                "SELECT kind, id, at, what, from_state, to_state, detail FROM health_transitions FINAL
                 WHERE project = {} AND at >= {since} AND at < {until} ORDER BY at, kind, id, what",
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
