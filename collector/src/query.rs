//! The read API behind the dashboard. Every route needs the project's read token.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::analytics;
use crate::error::ApiError;
use crate::{AppState, Project};

/// The read token, from `Authorization: Bearer …` (or `?token=` for CSV links and the like).
pub fn authorize<'a>(state: &'a AppState, headers: &HeaderMap, token: Option<&str>) -> Result<&'a Project, ApiError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    bearer.or(token).and_then(|t| state.config.project_by_read_token(t)).ok_or(ApiError::Unauthorized)
}

#[derive(Deserialize)]
pub struct FunnelParams {
    /// Comma-separated event or milestone names, in order.
    steps: String,
    /// Conversion window from the first step, in milliseconds.
    window_ms: Option<i64>,
    /// `true` to list the users at each step.
    #[serde(default)]
    users: bool,
    token: Option<String>,
}

pub async fn funnel(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<FunnelParams>,
) -> Result<Json<Value>, ApiError> {
    let project = authorize(&state, &headers, params.token.as_deref())?;
    let steps: Vec<String> =
        params.steps.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
    if steps.is_empty() {
        return Err(ApiError::BadRequest("steps: give at least one step name, e.g. ?steps=signed_up,project_created".into()));
    }
    let users = state.store.user_events(&project.id, &steps).await?;
    let report = analytics::funnel(&steps, &users, params.window_ms);
    let steps: Vec<Value> = report
        .into_iter()
        .map(|s| {
            let mut v = json!({
                "name": s.name,
                "users": s.users,
                "conversionFromPrevious": s.conversion_from_previous,
                "conversionFromFirst": s.conversion_from_first,
            });
            if params.users {
                v["userIds"] = json!(s.user_ids);
            }
            v
        })
        .collect();
    Ok(Json(json!({ "project": project.id, "steps": steps })))
}
