//! Privacy operations, all behind an admin token (never the read token a dashboard link
//! carries):
//!
//! - `DELETE /v1/users/{id}`: erases the user's events, identity links and per-user derived
//!   rows in the store (GDPR art. 17, right to erasure).
//! - `GET /v1/users/{id}/export`: all of them as one JSON document (art. 15, right of access).
//! - Retention: a project's `retentionDays` deletes its raw events older than that, hourly.
//!
//! `{id}` is a user key as reports show it: a user id, or the anonymous id of a visitor who was
//! never identified (see `store`'s Identity rules). The CLI has the same operations
//! (`onramp-collector users delete|export`), acting on the database directly.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
use crate::store::{Store, UserData};
use crate::{AppState, Project};

/// How often retention runs.
pub const RETENTION_EVERY: Duration = Duration::from_secs(3600);

const DAY_MS: i64 = 24 * 3600 * 1000;

#[derive(Deserialize)]
pub struct ProjectParam {
    pub project: Option<String>,
}

/// The project an admin request acts on: `?project=ID` opened by that project's admin token or
/// the global one; without `?project`, the project whose own admin token this is, or the only
/// project there is. Other admin routes (imports, say) use the same check.
pub fn authorize_admin<'a>(state: &'a AppState, headers: &HeaderMap, project: Option<&str>) -> Result<&'a Project, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let config = &state.config;
    match project {
        Some(id) => config.project_for_admin(id, token).ok_or(ApiError::AdminRequired),
        None => {
            let own = config.projects.iter().find(|p| p.admin_token.as_deref().is_some_and(|t| !t.is_empty() && t == token));
            match (own, config.is_global_admin(token), config.projects.as_slice()) {
                (Some(p), _, _) => Ok(p),
                (None, true, [only]) => Ok(only),
                (None, true, _) => Err(ApiError::BadRequest("project: required with the global admin token".into())),
                (None, false, _) => Err(ApiError::AdminRequired),
            }
        }
    }
}

pub async fn erase(
    State(state): State<AppState>,
    Path(user): Path<String>,
    Query(q): Query<ProjectParam>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let project = authorize_admin(&state, &headers, q.project.as_deref())?;
    let erased = state.store.erase_user(&project.id, &user).await?;
    Ok(Json(json!({"project": project.id, "user": user, "erasedEvents": erased})))
}

pub async fn export(
    State(state): State<AppState>,
    Path(user): Path<String>,
    Query(q): Query<ProjectParam>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let project = authorize_admin(&state, &headers, q.project.as_deref())?;
    let data = state.store.user_data(&project.id, &user).await?;
    let mut response = Json(export_document(&project.id, &user, data, state.now())).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"onramp-user-export.json\""));
    Ok(response)
}

/// The export's JSON document (also what `onramp-collector users export` prints).
pub fn export_document(project: &str, user: &str, data: UserData, now: i64) -> serde_json::Value {
    let identities: Vec<_> = data.identities.iter().map(|(a, u)| json!({"anonymousId": a, "userId": u})).collect();
    json!({"project": project, "user": user, "exportedAt": now, "events": data.events, "identities": identities})
}

/// Deletes, in every project with a retention period, the raw events older than it. Returns the
/// number deleted per project that has one.
pub async fn apply_retention(state: &AppState) -> Vec<(String, Result<u64, crate::store::StoreError>)> {
    let mut out = Vec::new();
    for project in &state.config.projects {
        let Some(days) = project.retention_days else { continue };
        let before = state.now() - i64::from(days) * DAY_MS;
        out.push((project.id.clone(), state.store.delete_events_before(&project.id, before).await));
    }
    out
}

/// Applies retention at start and every [`RETENTION_EVERY`] until shutdown; run it with
/// [`AppState::spawn_background`].
pub async fn retention_loop(state: AppState) {
    let mut tick = tokio::time::interval(RETENTION_EVERY);
    let stopping = state.stopping();
    tokio::pin!(stopping);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stopping => return,
        }
        for (project, result) in apply_retention(&state).await {
            match result {
                Ok(0) => {}
                Ok(n) => eprintln!("onramp-collector: retention: deleted {n} events of {project}"),
                Err(e) => eprintln!("onramp-collector: retention for {project}: {e}"),
            }
        }
    }
}

/// For the CLI: the user's export from a store opened directly.
pub async fn export_from(store: &dyn Store, project: &str, user: &str, now: i64) -> Result<serde_json::Value, String> {
    let data = store.user_data(project, user).await.map_err(|e| e.to_string())?;
    Ok(export_document(project, user, data, now))
}
