//! Serving and storing each project's onboarding plan.
//!
//! - `GET /v1/plan?writeKey=…`: the plan the SDK runs on, with an `ETag` and `Cache-Control:
//!   no-cache`, so browsers revalidate on every load and get a 304 while it is unchanged; 204 when
//!   the project has none. The write key is public, like the plan itself (it ships to every
//!   browser anyway).
//! - `PUT /v1/plan[?message=…&base=N]` with an editor token (never the read token; see
//!   [`crate::config`]'s Editor tokens): validates with the one validator in
//!   [`onramp::core::plan`] and publishes it as a new **version** (who, when, message); a bad
//!   plan is answered 400 with its JSON pointer, problem and expectation. With `base` (the
//!   version the edit started from, or `none`) a plan published by someone else meanwhile is
//!   answered 409 rather than silently overwritten.
//! - `POST /v1/plan/check`: the same validation, nothing stored (the editor's inline errors).
//! - `GET /v1/plan/versions`: the history, newest first; `GET /v1/plan/versions/{n}`: one text.
//! - `POST /v1/plan/rollback` `{"version": n}`: publishes version n again as the new current
//!   version (the history keeps growing; nothing is rewritten).
//! - `GET /v1/plan` with an editor token instead of a write key: the live plan, with its
//!   version number in `Onramp-Plan-Version`.
//! - At start, plan files (`--plan FILE`, or the repository's demo plan for the demo project)
//!   stand in for projects that have no stored plan.
//!
//! The plan is read from the store on every request rather than cached, so several collectors
//! behind a load balancer never disagree about it after a PUT.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use onramp::core::health::HealthModel;
use onramp::core::plan::{Plan, PlanError};
use serde::Deserialize;
use serde_json::json;

use crate::config::{Author, AuthorKind};
use crate::error::ApiError;
use crate::ingest::cors_headers;
use crate::privacy::ProjectParam;
use crate::store::{NewPlanVersion, PlanVersion, Published};
use crate::{AppState, Project};

/// Plans are small documents; this bounds what a PUT may make every browser download.
pub const MAX_PLAN_BYTES: usize = 256 * 1024;

/// A version's message is a commit message, not a document.
pub const MAX_MESSAGE_CHARS: usize = 500;

/// The history answers at most this many versions (newest first).
pub const MAX_VERSIONS_LISTED: usize = 500;

/// The header naming the live plan's version number.
pub const VERSION_HEADER: &str = "onramp-plan-version";

/// A validated plan with its text (served verbatim) and entity tag.
#[derive(Clone, Debug)]
pub struct ServedPlan {
    pub text: String,
    pub etag: String,
    pub plan: Plan,
    /// The plan's `health` and `lifecycle` sections with their defaults (docs/HEALTH.md).
    pub health: HealthModel,
}

impl ServedPlan {
    /// Validates the whole plan: what the SDK reads, then the sections only the collector reads.
    pub fn parse(text: String) -> Result<ServedPlan, PlanError> {
        let plan = Plan::parse(&text)?;
        let doc = onramp::core::json::parse(&text).map_err(|e| PlanError { pointer: String::new(), problem: e.to_string(), expected: "a JSON document".into() })?;
        let health = HealthModel::from_plan(&doc)?;
        Ok(ServedPlan { etag: etag(&text), text, plan, health })
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
    /// With an editor token: which project (needed only with the global admin token).
    project: Option<String>,
}

/// The bearer token of a request (tokens that edit never travel in URLs, which end up in logs
/// and browser history).
fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
}

/// The project a plan-editing request acts on, and who is editing (see [`Config::editor_for`]).
///
/// [`Config::editor_for`]: crate::config::Config::editor_for
pub fn authorize_editor<'a>(state: &'a AppState, headers: &HeaderMap, project: Option<&str>) -> Result<(&'a Project, Author), ApiError> {
    state.config.editor_for(project, bearer(headers)).ok_or(ApiError::EditorRequired)
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
    if q.write_key.is_none() && headers.contains_key(header::AUTHORIZATION) {
        return serve_to_editor(state, q.project.as_deref(), headers).await;
    }
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

/// The live plan for the editor: what the SDK gets, plus its version number (absent when it
/// is the start-up file, not a stored version).
async fn serve_to_editor(state: &AppState, project: Option<&str>, headers: &HeaderMap) -> Result<Response, ApiError> {
    let (project, _) = authorize_editor(state, headers, project)?;
    let Some(plan) = current(state, &project.id).await? else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let number = live_number(state, &project.id, &plan).await?;
    let mut r = plan.text.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(etag) = HeaderValue::from_str(&plan.etag) {
        h.insert(header::ETAG, etag);
    }
    if let Some(n) = number {
        h.insert(VERSION_HEADER, HeaderValue::from(n));
    }
    Ok(r)
}

/// The stored version the live plan is, if it is one (not the start-up file standing in).
async fn live_number(state: &AppState, project: &str, live: &ServedPlan) -> Result<Option<u64>, ApiError> {
    let newest = state.store.plan_versions(project, 1).await?;
    Ok(newest.first().filter(|v| v.etag == live.etag).map(|v| v.number))
}

#[derive(Deserialize)]
pub struct PutQuery {
    project: Option<String>,
    message: Option<String>,
    /// The version the edit started from: a number, or `none` when there was no stored version.
    base: Option<String>,
}

fn message(text: Option<String>) -> Result<String, ApiError> {
    let text = text.unwrap_or_default().trim().to_string();
    if text.chars().count() > MAX_MESSAGE_CHARS {
        return Err(ApiError::BadRequest(format!("message: at most {MAX_MESSAGE_CHARS} characters")));
    }
    Ok(text)
}

fn base(text: Option<&str>) -> Result<Option<Option<u64>>, ApiError> {
    match text {
        None | Some("") => Ok(None),
        Some("none") => Ok(Some(None)),
        Some(n) => n
            .parse()
            .map(|n| Some(Some(n)))
            .map_err(|_| ApiError::BadRequest("base: a version number, or none".into())),
    }
}

/// Publishes a validated plan and answers as `PUT /v1/plan` does.
async fn publish(
    state: &AppState,
    project: &Project,
    plan: ServedPlan,
    author: Author,
    message: String,
    base: Option<Option<u64>>,
    rollback_of: Option<u64>,
) -> Result<Response, ApiError> {
    let version = NewPlanVersion {
        text: plan.text.clone(),
        plan_version: plan.plan.version.clone(),
        author,
        message,
        created_at: state.now(),
        rollback_of,
    };
    let number = match state.store.publish_plan(&project.id, version, base).await? {
        Published::Stored(n) => n,
        Published::Conflict { current } => {
            let now = current.map_or("none is stored".to_string(), |n| format!("version {n} is live"));
            let message = format!("the plan changed since you started editing ({now}); reload it and apply your change again");
            return Err(ApiError::Conflict { message, current });
        }
    };
    let body = json!({"number": number, "version": plan.plan.version, "etag": plan.etag, "rollbackOf": rollback_of});
    let mut response = Json(body).into_response();
    if let Ok(etag) = HeaderValue::from_str(&plan.etag) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
}

async fn read_plan(state: &AppState, body: Body) -> Result<ServedPlan, ApiError> {
    let body = crate::ingest::read_body(state, body, MAX_PLAN_BYTES).await?;
    let text = String::from_utf8(body.to_vec()).map_err(|_| ApiError::BadRequest("body is not UTF-8".into()))?;
    ServedPlan::parse(text).map_err(ApiError::BadPlan)
}

pub async fn put(State(state): State<AppState>, Query(q): Query<PutQuery>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let (project, author) = authorize_editor(&state, &headers, q.project.as_deref())?;
    let (message, base) = (message(q.message)?, base(q.base.as_deref())?);
    let plan = read_plan(&state, body).await?;
    publish(&state, project, plan, author, message, base, None).await
}

/// `POST /v1/plan/check`: validates without storing, so the editor shows the collector's own
/// verdict as the PM types. The check itself succeeds either way (200, so browsers log no
/// error for every keystroke): `{"ok": true, …}`, or `{"ok": false, "pointer", "problem",
/// "expected", "error"}` — the same fields a refused `PUT` answers with.
pub async fn check(State(state): State<AppState>, Query(q): Query<PutQuery>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    authorize_editor(&state, &headers, q.project.as_deref())?;
    let body = crate::ingest::read_body(&state, body, MAX_PLAN_BYTES).await?;
    let text = String::from_utf8(body.to_vec()).map_err(|_| ApiError::BadRequest("body is not UTF-8".into()))?;
    let answer = match ServedPlan::parse(text) {
        Ok(plan) => {
            let p = &plan.plan;
            json!({
                "ok": true, "version": p.version, "etag": plan.etag,
                "milestones": p.milestones.len(), "capture": p.capture.len(), "tips": p.tips.len()
            })
        }
        Err(e) => json!({"ok": false, "error": e.to_string(), "pointer": e.pointer, "problem": e.problem, "expected": e.expected}),
    };
    Ok(Json(answer).into_response())
}

fn version_json(v: &PlanVersion) -> serde_json::Value {
    json!({
        "number": v.number, "planVersion": v.plan_version, "etag": v.etag,
        "author": {"kind": v.author_kind, "name": v.author},
        "message": v.message, "createdAt": v.created_at, "rollbackOf": v.rollback_of,
    })
}

/// `GET /v1/plan/versions`: the history, newest first, and which one is live (`live.source`:
/// `version` when it is the newest stored version, `file` when the start-up file stands in,
/// `none` when the SDK gets 204).
pub async fn versions(State(state): State<AppState>, Query(q): Query<ProjectParam>, headers: HeaderMap) -> Result<Response, ApiError> {
    let (project, _) = authorize_editor(&state, &headers, q.project.as_deref())?;
    let history = state.store.plan_versions(&project.id, MAX_VERSIONS_LISTED).await?;
    let live = current(&state, &project.id).await?;
    let current = history.first().filter(|v| live.as_ref().is_some_and(|l| l.etag == v.etag)).map(|v| v.number);
    let source = match (&live, current) {
        (None, _) => "none",
        (Some(_), Some(_)) => "version",
        (Some(_), None) => "file",
    };
    let mut r = Json(json!({
        "project": project.id,
        "current": current,
        "live": {"source": source, "etag": live.map(|l| l.etag)},
        "versions": history.iter().map(version_json).collect::<Vec<_>>(),
    }))
    .into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// `GET /v1/plan/versions/{n}`: one version's text, verbatim.
pub async fn version_text(
    State(state): State<AppState>,
    Path(number): Path<u64>,
    Query(q): Query<ProjectParam>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (project, _) = authorize_editor(&state, &headers, q.project.as_deref())?;
    let text = state
        .store
        .plan_version_text(&project.id, number)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("plan version {number} of {} does not exist", project.id)))?;
    let mut r = text.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    version: u64,
    message: Option<String>,
    /// As `PUT`'s `base`: the version the PM was looking at when they chose to roll back.
    base: Option<u64>,
}

/// `POST /v1/plan/rollback` `{"version": n[, "message": …][, "base": m]}`: one call that
/// publishes version n's text as the new current version. It is validated again: a plan the
/// current validator refuses is not put back in front of users.
pub async fn rollback(
    State(state): State<AppState>,
    Query(q): Query<ProjectParam>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (project, author) = authorize_editor(&state, &headers, q.project.as_deref())?;
    let body = crate::ingest::read_body(&state, body, 4096).await?;
    let request: Rollback =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("expected {{\"version\": n}}: {e}")))?;
    let text = state
        .store
        .plan_version_text(&project.id, request.version)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("plan version {} of {} does not exist", request.version, project.id)))?;
    let plan = ServedPlan::parse(text).map_err(ApiError::BadPlan)?;
    let message = match message(request.message)? {
        m if m.is_empty() => format!("Roll back to version {}", request.version),
        m => m,
    };
    publish(&state, project, plan, author, message, request.base.map(Some), Some(request.version)).await
}

/// The plan's JSON Schema, for the dashboard editor's completion (public, like the plan).
pub const SCHEMA: &str = include_str!("../../pkg-config/plan.schema.json");

/// `GET /v1/plan/schema`.
pub async fn schema() -> Response {
    let mut r = SCHEMA.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/schema+json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// At start, a `--plan FILE` becomes the project's current version unless it already is (a
/// restart publishes nothing new).
pub async fn publish_file(state: &AppState, project: &str, path: &std::path::Path, plan: &ServedPlan) -> Result<Option<u64>, crate::store::StoreError> {
    if state.store.plan(project).await?.as_deref() == Some(plan.text.as_str()) {
        return Ok(None);
    }
    let version = NewPlanVersion {
        text: plan.text.clone(),
        plan_version: plan.plan.version.clone(),
        author: Author { kind: AuthorKind::File, name: path.display().to_string() },
        message: format!("started with --plan {}", path.display()),
        created_at: state.now(),
        rollback_of: None,
    };
    match state.store.publish_plan(project, version, None).await? {
        Published::Stored(n) => Ok(Some(n)),
        Published::Conflict { .. } => Ok(None),
    }
}

/// `onramp-collector plan check FILE…`: validates each file with the SDK's own validator.
/// Returns whether all were valid, after printing one line per file.
pub fn check_files(paths: &[std::path::PathBuf]) -> bool {
    let mut ok = !paths.is_empty();
    for path in paths {
        match load_file(path) {
            Ok(p) => println!(
                "{}: ok (version {}, {} milestones, {} capture rules, {} tips, {} surveys)",
                path.display(),
                p.plan.version,
                p.plan.milestones.len(),
                p.plan.capture.len(),
                p.plan.tips.len(),
                p.plan.surveys.len()
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
