//! Serving and storing each project's onboarding plan.
//!
//! - `GET /v1/plan?writeKey=…`: the plan the SDK runs on, with an `ETag` and `Cache-Control:
//!   no-cache`, so browsers revalidate on every load and get a 304 while it is unchanged; 204 when
//!   the project has none. The write key is public, like the plan itself (it ships to every
//!   browser anyway).
//! - `PUT /v1/plan` with the read token: validates with the one validator in
//!   [`onramp::core::plan`] and stores; a bad plan is answered 400 with its JSON pointer.
//! - At start, plan files (`--plan FILE`, or the repository's demo plan for the demo project)
//!   stand in for projects that have no stored plan.
//!
//! The plan is read from the store on every request rather than cached, so several collectors
//! behind a load balancer never disagree about it after a PUT.

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use onramp::core::plan::{Plan, PlanError};
use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
use crate::ingest::cors_headers;
use crate::AppState;

/// Plans are small documents; this bounds what a PUT may make every browser download.
pub const MAX_PLAN_BYTES: usize = 256 * 1024;

/// A validated plan with its text (served verbatim) and entity tag.
#[derive(Clone, Debug)]
pub struct ServedPlan {
    pub text: String,
    pub etag: String,
    pub plan: Plan,
}

impl ServedPlan {
    pub fn parse(text: String) -> Result<ServedPlan, PlanError> {
        let plan = Plan::parse(&text)?;
        Ok(ServedPlan { etag: etag(&text), text, plan })
    }
}

/// A strong entity tag from the text: FNV-1a 64 is plenty to tell versions of one document
/// apart, and needs no dependency.
pub fn etag(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"p{h:016x}\"")
}

/// Reads and validates a start-up plan; the error names the file and the field.
pub fn load(source: &crate::config::PlanSource) -> Result<ServedPlan, String> {
    match source {
        crate::config::PlanSource::File(path) => load_file(path),
        crate::config::PlanSource::Demo => {
            ServedPlan::parse(crate::assets::DEMO_PLAN.into()).map_err(|e| format!("the demo plan: {e}"))
        }
    }
}

/// Reads and validates a plan file; the error names the file and the field.
pub fn load_file(path: &std::path::Path) -> Result<ServedPlan, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    ServedPlan::parse(text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The project's current plan: the stored one, else the plan file it was started with.
pub async fn current(state: &AppState, project: &str) -> Result<Option<ServedPlan>, ApiError> {
    if let Some(text) = state.store.plan(project).await? {
        // Only validated plans are stored, but a newer validator may refuse an old one: then
        // the start-up file stands in rather than failing every page.
        if let Ok(plan) = ServedPlan::parse(text) {
            return Ok(Some(plan));
        }
    }
    Ok(state.plans.get(project).cloned())
}

#[derive(Deserialize)]
pub struct PlanQuery {
    #[serde(rename = "writeKey")]
    write_key: Option<String>,
}

pub async fn get(State(state): State<AppState>, Query(q): Query<PlanQuery>, headers: HeaderMap) -> Response {
    let origin = readable_by(&state, q.write_key.as_deref(), &headers);
    let mut response = serve(&state, q, &headers).await.unwrap_or_else(|e| e.into_response());
    cors_headers(response.headers_mut(), origin.as_ref());
    response
}

/// The origin that may read the answer to an SDK read (`/v1/plan`, `/v1/state`): the key's
/// project's allowed origins (any project's, for an unknown key), as `/v1/batch` does, so a
/// refusal is not readable by every other site.
pub(crate) fn readable_by(state: &AppState, write_key: Option<&str>, headers: &HeaderMap) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    let o = origin.to_str().ok()?;
    let allowed = match write_key.and_then(|k| state.config.project_by_write_key(k)) {
        Some(project) => project.allows_origin(o),
        None => state.config.any_allows_origin(o),
    };
    allowed.then(|| origin.clone())
}

/// The project of an SDK read: its write key is required and known, and the page's origin
/// (when the browser says it) allowed.
pub(crate) fn sdk_project<'a>(state: &'a AppState, write_key: Option<String>, headers: &HeaderMap) -> Result<&'a crate::Project, ApiError> {
    let key = write_key.ok_or_else(|| ApiError::BadRequest("writeKey: required".into()))?;
    let project = state.config.project_by_write_key(&key).ok_or(ApiError::UnknownWriteKey)?;
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        if !project.allows_origin(origin) {
            return Err(ApiError::OriginNotAllowed(origin.into()));
        }
    }
    Ok(project)
}

async fn serve(state: &AppState, q: PlanQuery, headers: &HeaderMap) -> Result<Response, ApiError> {
    let project = sdk_project(state, q.write_key, headers)?;
    let Some(plan) = current(state, &project.id).await? else {
        // 204, not 404: browsers log every 4xx in the console, and a project without a plan is
        // not an error on the customer's page. The SDK then runs without milestones.
        let mut r = StatusCode::NO_CONTENT.into_response();
        r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return Ok(r);
    };
    let etag = HeaderValue::from_str(&plan.etag).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim().trim_start_matches("W/") == plan.etag || t.trim() == "*"));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = plan.text.into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        r
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, etag);
    // Revalidate every time: a PM's change reaches the next page load, at the cost of a 304.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("ETag"));
    Ok(response)
}

pub async fn put(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let project = crate::query::authorize(&state, &headers, None)?;
    let body = crate::ingest::read_body(&state, body, MAX_PLAN_BYTES).await?;
    let text = String::from_utf8(body.to_vec()).map_err(|_| ApiError::BadRequest("body is not UTF-8".into()))?;
    let plan = ServedPlan::parse(text).map_err(ApiError::BadPlan)?;
    state.store.put_plan(&project.id, plan.text.clone(), &plan.plan.version, state.now()).await?;
    let mut response = Json(json!({"version": plan.plan.version, "etag": plan.etag})).into_response();
    if let Ok(etag) = HeaderValue::from_str(&plan.etag) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
}

/// `onramp-collector plan check FILE…`: validates each file with the SDK's own validator.
/// Returns whether all were valid, after printing one line per file.
pub fn check_files(paths: &[std::path::PathBuf]) -> bool {
    let mut ok = !paths.is_empty();
    for path in paths {
        match load_file(path) {
            Ok(p) => println!(
                "{}: ok (version {}, {} milestones, {} capture rules, {} tips)",
                path.display(),
                p.plan.version,
                p.plan.milestones.len(),
                p.plan.capture.len(),
                p.plan.tips.len()
            ),
            Err(e) => {
                eprintln!("{e}");
                ok = false;
            }
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_differ_by_content_and_are_quoted() {
        assert_ne!(etag("{\"a\":1}"), etag("{\"a\":2}"));
        assert!(etag("x").starts_with("\"p") && etag("x").ends_with('"'));
    }
}
