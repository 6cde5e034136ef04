//! The health read API (read token, like every report):
//!
//! - `GET /v1/health?kind=user|account&band=red,yellow&stage=at_risk&account=A&limit=N&days=30&format=csv`:
//!   the distribution by band and stage, bands over the last `days` days, and the list (worst
//!   score first) with score, band, stage, trend (score change over 7 days) and the measures.
//! - `GET /v1/health/{kind}/{id}?days=90`: one user's or account's breakdown, daily history and
//!   transitions.
//! - `GET /v1/lifecycle?kind=user&from=…&to=…`: stage counts now and the from→to matrices of
//!   stage and band transitions in the period (default: the last 30 days).
//! - `POST /v1/health/compute`: computes now (as the hourly schedule does) and says what it did.
//!
//! Answers come from the stored snapshots, counted, filtered, sorted and cut by the store (in
//! SQL): the collector holds the rows it returns, and a CSV export one page of them at a time.
//! A project never computed is computed on first read.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};

use onramp::core::health::{Band, Stage};
use onramp::core::time::DAY;
use serde_json::{json, Value as Json};

use super::Kind;
use crate::error::ApiError;
use crate::query::authorize;
use crate::store::{HealthCursor, HealthFilter, HealthListQuery, HealthRecord};
use crate::{AppState, Project};

/// At most this many rows in a JSON list by default (the CSV has them all).
const LIST_LIMIT: usize = 500;

fn bad(param: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(format!("{param}: {message}"))
}

struct Params(Vec<(String, String)>);

impl Params {
    fn check(pairs: Vec<(String, String)>, known: &[&str]) -> Result<Params, ApiError> {
        for (k, _) in &pairs {
            if k != "token" && k != "_" && !known.contains(&k.as_str()) {
                return Err(bad(k, format!("unknown parameter; this route takes {}, token", known.join(", "))));
            }
        }
        Ok(Params(pairs))
    }
    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }
    fn list(&self, key: &str) -> Vec<String> {
        self.get(key).map_or(Vec::new(), |v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
    }
    fn kind(&self) -> Result<Kind, ApiError> {
        match self.get("kind") {
            None => Ok(Kind::User),
            Some(k) => Kind::parse(k).ok_or_else(|| bad("kind", format!("expected user or account, found {k:?}"))),
        }
    }
    fn whole(&self, key: &str, default: i64, max: i64) -> Result<i64, ApiError> {
        match self.get(key) {
            None => Ok(default),
            Some(t) => t.parse::<i64>().ok().filter(|n| (1..=max).contains(n)).ok_or_else(|| bad(key, format!("expected a whole number from 1 to {max}, found {t:?}"))),
        }
    }
    fn instant(&self, key: &str) -> Result<Option<i64>, ApiError> {
        self.get(key)
            .map(|t| crate::analytics::time::parse_instant(t).ok_or_else(|| bad(key, format!("expected a date YYYY-MM-DD or Unix milliseconds, found {t:?}"))))
            .transpose()
    }
}

async fn ensure_computed(state: &AppState, project: &Project) -> Result<(), ApiError> {
    let since = state.now().div_euclid(DAY) - super::PREVIOUS_LOOKBACK_DAYS;
    for kind in [Kind::User, Kind::Account] {
        if state.store.health_newest(&project.id, kind.as_str(), since).await?.is_some() {
            return Ok(());
        }
    }
    super::run(state, project).await?;
    Ok(())
}

fn detail(r: &HealthRecord) -> Json {
    serde_json::from_str(&r.detail).unwrap_or(Json::Null)
}

/// The score change since the entity's latest record at least 7 days older, given that
/// record's score (`then`; `None` when there is no such record or it had no score).
fn trend(current: &HealthRecord, then: Option<u32>) -> Option<i64> {
    Some(i64::from(current.score?) - i64::from(then?))
}

fn item(r: &HealthRecord, trend: Option<i64>) -> Json {
    let d = detail(r);
    json!({
        "kind": r.kind,
        "id": r.id,
        "score": r.score,
        "band": r.band,
        "stage": r.stage,
        "trend": trend,
        "computedAt": r.computed_at,
        "profile": d["profile"],
        "measures": d["measures"],
        "missing": d["missing"],
        "note": d["note"],
        "reasons": d["reasons"],
        "lastSeen": d["lastSeen"],
        "account": d["account"],
        "members": d["members"],
        "traits": d["traits"],
        "accountMilestones": d["accountMilestones"],
    })
}

fn zeroes<'a>(names: impl Iterator<Item = &'a str>) -> BTreeMap<String, u64> {
    names.map(|n| (n.to_string(), 0)).collect()
}

fn band_names() -> impl Iterator<Item = &'static str> {
    Band::ALL.iter().map(|(n, _)| *n).chain(["none"])
}

/// `GET /v1/health`.
pub async fn list(State(state): State<AppState>, headers: HeaderMap, Query(pairs): Query<Vec<(String, String)>>) -> Result<Response, ApiError> {
    let project = authorize(&state, &headers, pairs.iter().find(|(k, _)| k == "token").map(|(_, v)| v.as_str()))?;
    let p = Params::check(pairs, &["kind", "band", "stage", "account", "limit", "days", "format"])?;
    let kind = p.kind()?;
    let bands = p.list("band");
    if let Some(b) = bands.iter().find(|b| !band_names().any(|n| n == b.as_str())) {
        return Err(bad("band", format!("expected red, yellow, green or none, found {b:?}")));
    }
    let stages = p.list("stage");
    if let Some(s) = stages.iter().find(|s| Stage::parse(s).is_none()) {
        return Err(bad("stage", format!("expected new, onboarding, activated, adopted, at_risk or dormant, found {s:?}")));
    }
    let account = p.get("account").map(String::from);
    let limit = p.whole("limit", LIST_LIMIT as i64, 100_000)? as usize;
    let days = p.whole("days", 30, 400)?;
    let csv = match p.get("format") {
        None | Some("json") => false,
        Some("csv") => true,
        Some(f) => return Err(bad("format", format!("expected json or csv, found {f:?}"))),
    };
    ensure_computed(&state, project).await?;
    let today = state.now().div_euclid(DAY);
    // The records a run's answer considers: the bands' days and a week before them for trends.
    let since = today - days.max(7) - super::PREVIOUS_LOOKBACK_DAYS.min(7) - 1;
    let filter = HealthFilter { kind: kind.as_str().into(), bands, stages, account };
    let store = state.store.clone();
    let newest = store.health_newest(&project.id, kind.as_str(), since).await?;
    let query = |limit: usize| newest.map(|newest| HealthListQuery { filter: filter.clone(), newest, history_since_day: since, after: None, limit });
    if csv {
        return Ok(csv_response(store, project.id.clone(), query(CSV_PAGE)));
    }
    let (counts, over_time, rows) = tokio::try_join!(
        async {
            match newest {
                Some(newest) => store.health_counts(&project.id, &filter, newest).await.map(Some),
                None => Ok(None),
            }
        },
        store.health_bands_by_day(&project.id, kind.as_str(), today - days + 1),
        async {
            match query(limit) {
                Some(q) => store.health_list(&project.id, &q).await,
                None => Ok(Vec::new()),
            }
        },
    )?;
    let mut by_band = zeroes(band_names());
    let mut by_stage = zeroes(Stage::ALL.iter().map(|(n, _)| *n));
    let total = counts.as_ref().map_or(0, |c| c.selected);
    for (band, stage, n) in counts.map(|c| c.groups).unwrap_or_default() {
        *by_band.entry(band.unwrap_or_else(|| "none".into())).or_default() += n;
        *by_stage.entry(stage).or_default() += n;
    }
    let mut by_day: BTreeMap<i64, BTreeMap<String, u64>> = BTreeMap::new();
    for (day, band, n) in over_time {
        *by_day.entry(day).or_insert_with(|| zeroes(band_names())).entry(band.unwrap_or_else(|| "none".into())).or_default() += n;
    }
    let items: Vec<Json> = rows.iter().map(|(r, then)| item(r, trend(r, *then))).collect();
    let over_time: Vec<Json> = by_day.into_iter().map(|(day, counts)| json!({"day": crate::analytics::time::date(day * DAY), "counts": counts})).collect();
    Ok(axum::Json(json!({
        "kind": kind.as_str(),
        "computedAt": newest,
        "bands": by_band,
        "stages": by_stage,
        "bandsOverTime": over_time,
        "total": total,
        "items": items,
    }))
    .into_response())
}

/// Rows per read of a CSV export: the collector holds one page at a time.
const CSV_PAGE: usize = 2000;

/// The whole list as CSV, streamed a page at a time (each page read after the previous
/// one's last row). A failure after the first bytes ends the body early, which the client
/// sees as a cut-off download.
fn csv_response(store: std::sync::Arc<dyn crate::store::Store>, project: String, first: Option<HealthListQuery>) -> Response {
    let pages = futures_util::stream::unfold((true, first), move |(header, next)| {
        let (store, project) = (store.clone(), project.clone());
        async move {
            let mut out = if header { String::from("kind,id,score,band,stage,trend,account,measures,reasons\r\n") } else { String::new() };
            let Some(mut q) = next else {
                return header.then_some((Ok::<_, std::io::Error>(out), (false, None)));
            };
            let rows = match store.health_list(&project, &q).await {
                Ok(rows) => rows,
                Err(e) => return Some((Err(std::io::Error::other(e.to_string())), (false, None))),
            };
            for (r, then) in &rows {
                csv_row(&mut out, r, trend(r, *then));
            }
            let more = rows.len() == q.limit;
            q.after = rows.last().map(|(r, _)| HealthCursor { score: r.score, id: r.id.clone() });
            Some((Ok(out), (false, more.then_some(q))))
        }
    });
    (
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8"), (header::CONTENT_DISPOSITION, "attachment; filename=\"health.csv\"")],
        axum::body::Body::from_stream(pages),
    )
        .into_response()
}

fn csv_row(out: &mut String, r: &HealthRecord, trend: Option<i64>) {
    let field = crate::analytics::stalled::csv_field;
    let d = detail(r);
    let measures: Vec<String> = d["measures"]
        .as_array()
        .map(|m| m.iter().map(|m| format!("{}={}", m["measure"].as_str().unwrap_or(""), m["points"])).collect())
        .unwrap_or_default();
    let reasons: Vec<&str> = d["reasons"].as_array().map(|r| r.iter().filter_map(Json::as_str).collect()).unwrap_or_default();
    out.push_str(&format!(
        "{},{},{},{},{},{},{},{},{}\r\n",
        r.kind,
        field(&r.id),
        r.score.map_or(String::new(), |s| s.to_string()),
        r.band.as_deref().unwrap_or(""),
        r.stage,
        trend.map_or(String::new(), |t| t.to_string()),
        field(d["account"].as_str().unwrap_or("")),
        field(&measures.join(";")),
        field(&reasons.join("; ")),
    ));
}

/// `GET /v1/health/{kind}/{id}`.
pub async fn one(State(state): State<AppState>, headers: HeaderMap, Path((kind, id)): Path<(String, String)>, Query(pairs): Query<Vec<(String, String)>>) -> Result<Response, ApiError> {
    let project = authorize(&state, &headers, pairs.iter().find(|(k, _)| k == "token").map(|(_, v)| v.as_str()))?;
    let p = Params::check(pairs, &["days"])?;
    let kind = Kind::parse(&kind).ok_or_else(|| bad("kind", format!("expected user or account, found {kind:?}")))?;
    let days = p.whole("days", 90, 400)?;
    ensure_computed(&state, project).await?;
    let now = state.now();
    let history = state.store.health_records(&project.id, now.div_euclid(DAY) - days, Some((kind.as_str().into(), id.clone()))).await?;
    let Some(current) = history.last() else {
        return Err(ApiError::NotFound(format!("no health computed for {} {id:?}", kind.as_str())));
    };
    let then = history.iter().rev().find(|r| r.day <= current.day - 7).map(|r| r.score);
    let transitions: Vec<Json> = state
        .store
        .health_transitions(&project.id, now - days * DAY, now + 1, Some((kind.as_str().into(), id.clone())))
        .await?
        .into_iter()
        .map(|t| {
            let d: Json = serde_json::from_str(&t.detail).unwrap_or(Json::Null);
            json!({"at": t.at, "what": t.what, "from": t.from, "to": t.to, "moved": d["moved"]})
        })
        .collect();
    Ok(axum::Json(json!({
        "current": item(current, then.and_then(|score| trend(current, score))),
        "history": history.iter().map(|r| json!({"day": crate::analytics::time::date(r.day * DAY), "score": r.score, "band": r.band, "stage": r.stage})).collect::<Vec<_>>(),
        "transitions": transitions,
    }))
    .into_response())
}

/// `GET /v1/lifecycle`.
pub async fn lifecycle(State(state): State<AppState>, headers: HeaderMap, Query(pairs): Query<Vec<(String, String)>>) -> Result<Response, ApiError> {
    let project = authorize(&state, &headers, pairs.iter().find(|(k, _)| k == "token").map(|(_, v)| v.as_str()))?;
    let p = Params::check(pairs, &["kind", "from", "to"])?;
    let kind = p.kind()?;
    let now = state.now();
    let until = p.instant("to")?.map_or(now + 1, |t| if p.get("to").is_some_and(|s| s.contains('-')) { t + DAY } else { t });
    let since = p.instant("from")?.unwrap_or(until - 30 * DAY);
    if until <= since {
        return Err(bad("to", "must be after from"));
    }
    ensure_computed(&state, project).await?;
    let store = &state.store;
    let mut stages = zeroes(Stage::ALL.iter().map(|(n, _)| *n));
    if let Some(newest) = store.health_newest(&project.id, kind.as_str(), now.div_euclid(DAY) - super::PREVIOUS_LOOKBACK_DAYS).await? {
        let everyone = HealthFilter { kind: kind.as_str().into(), ..HealthFilter::default() };
        for (_, stage, n) in store.health_counts(&project.id, &everyone, newest).await?.groups {
            *stages.entry(stage).or_default() += n;
        }
    }
    let mut matrices: BTreeMap<&str, BTreeMap<String, BTreeMap<String, u64>>> = BTreeMap::new();
    matrices.insert("stage", BTreeMap::new());
    matrices.insert("band", BTreeMap::new());
    let mut count = 0;
    for (what, from, to, n) in store.health_transition_counts(&project.id, kind.as_str(), since, until).await? {
        let m = matrices.entry(if what == "band" { "band" } else { "stage" }).or_default();
        *m.entry(from).or_default().entry(to).or_default() += n;
        count += n;
    }
    Ok(axum::Json(json!({
        "kind": kind.as_str(),
        "from": since,
        "to": until,
        "stages": stages,
        "transitions": count,
        "stageMatrix": matrices["stage"],
        "bandMatrix": matrices["band"],
    }))
    .into_response())
}

/// `POST /v1/health/compute`.
pub async fn compute(State(state): State<AppState>, headers: HeaderMap, Query(pairs): Query<Vec<(String, String)>>) -> Result<Response, ApiError> {
    let project = authorize(&state, &headers, pairs.iter().find(|(k, _)| k == "token").map(|(_, v)| v.as_str()))?;
    Params::check(pairs, &[])?;
    let s = super::run(&state, project).await?;
    Ok(axum::Json(json!({"computedAt": s.computed_at, "users": s.users, "accounts": s.accounts, "transitions": s.transitions})).into_response())
}
