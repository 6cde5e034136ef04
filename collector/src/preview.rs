//! Preview links: a short-lived signed token that opens the SDK's preview and debug panel in the
//! customer's own app (docs/AUTHORING.md).
//!
//! - `POST /v1/preview` with an editor token: `{"token", "expiresAt", "expiresIn"}` (seconds).
//!   The dashboard puts the token in the app URL's fragment (`#onramp-preview=…`), so it never
//!   reaches the app's server or its logs, and no read or editor token is ever in the page.
//! - `GET /v1/preview?token=…&writeKey=…`: the SDK asks whether the token is genuine, unexpired
//!   and for the write key's project before it opens the panel: `{"project", "expiresAt", "by"}`,
//!   or 401. CORS as for `GET /v1/plan`.
//!
//! The token is `pv1.<project>.<expires ms>.<editor>.<signature>` (each part base64url), signed
//! with HMAC-SHA256 under a key derived from the project's read token: every collector of the
//! project can check it with no shared state, and changing the read token revokes every link.
//! It opens nothing but the panel: the panel only shows what the page already has (the public
//! plan and the visitor's own state).

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;

use crate::error::ApiError;
use crate::{AppState, Project};

/// How long a preview link works: long enough to click through a flow, short enough that a link
/// pasted into a ticket is dead by the next day.
pub const PREVIEW_TTL_MS: i64 = 30 * 60 * 1000;

const PREFIX: &str = "pv1";

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

fn mac(project: &Project, signed: &str) -> Option<Hmac<Sha256>> {
    // The signing key is derived, so the read token itself never signs anything public.
    let mut derive = Hmac::<Sha256>::new_from_slice(project.read_token.as_bytes()).ok()?;
    derive.update(b"onramp preview tokens v1");
    let key = derive.finalize().into_bytes();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(signed.as_bytes());
    Some(mac)
}

/// A token for `project`, valid until `expires` (Unix ms), naming the editor who made it.
pub fn sign(project: &Project, editor: &str, expires: i64) -> String {
    let signed = format!("{PREFIX}.{}.{expires}.{}", b64().encode(&project.id), b64().encode(editor));
    let signature = mac(project, &signed).map(|m| b64().encode(m.finalize().into_bytes())).unwrap_or_default();
    format!("{signed}.{signature}")
}

/// A verified token: whose project, until when, made by whom.
#[derive(Debug, PartialEq, Eq)]
pub struct Verified {
    pub project: String,
    pub expires: i64,
    pub editor: String,
}

/// Checks the token's signature (in constant time) and expiry against `now`.
pub fn verify<'a>(projects: &'a [Project], token: &str, now: i64) -> Result<(&'a Project, Verified), &'static str> {
    let parts: Vec<&str> = token.split('.').collect();
    let [PREFIX, project, expires, editor, signature] = parts.as_slice() else { return Err("not a preview token") };
    let decode = |s: &str| b64().decode(s).ok().and_then(|b| String::from_utf8(b).ok());
    let (Some(id), Some(editor)) = (decode(project), decode(editor)) else { return Err("not a preview token") };
    let expires: i64 = expires.parse().map_err(|_| "not a preview token")?;
    let project = projects.iter().find(|p| p.id == id).ok_or("not a preview token")?;
    let signed = &token[..token.len() - signature.len() - 1];
    let signature = b64().decode(signature).map_err(|_| "not a preview token")?;
    mac(project, signed).ok_or("not a preview token")?.verify_slice(&signature).map_err(|_| "not a preview token")?;
    if expires <= now {
        return Err("this preview link has expired; open a new one from the plan editor");
    }
    Ok((project, Verified { project: id, expires, editor }))
}

/// `POST /v1/preview`.
pub async fn mint(State(state): State<AppState>, Query(q): Query<crate::privacy::ProjectParam>, headers: HeaderMap) -> Result<Response, ApiError> {
    let (project, author) = crate::plans::authorize_editor(&state, &headers, q.project.as_deref())?;
    let expires = state.now() + PREVIEW_TTL_MS;
    let token = sign(project, &author.name, expires);
    let mut r = Json(json!({"token": token, "project": project.id, "expiresAt": expires, "expiresIn": PREVIEW_TTL_MS / 1000})).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    Ok(r)
}

#[derive(Deserialize)]
pub struct CheckQuery {
    token: Option<String>,
    #[serde(rename = "writeKey")]
    write_key: Option<String>,
}

/// `GET /v1/preview?token=…&writeKey=…`.
pub async fn check(State(state): State<AppState>, Query(q): Query<CheckQuery>, headers: HeaderMap) -> Response {
    let key = q.write_key.as_deref().and_then(|k| state.config.project_by_write_key(k));
    let origin = headers.get(header::ORIGIN).filter(|o| {
        let Ok(o) = o.to_str() else { return false };
        key.map_or_else(|| state.config.any_allows_origin(o), |p| p.allows_origin(o))
    });
    let origin = origin.cloned();
    let answer = (|| {
        let page_project = key.ok_or(ApiError::UnknownWriteKey)?;
        let token = q.token.as_deref().ok_or_else(|| ApiError::BadRequest("token: required".into()))?;
        let (project, verified) = verify(&state.config.projects, token, state.now()).map_err(|e| ApiError::PreviewRefused(e.into()))?;
        if project.id != page_project.id {
            return Err(ApiError::PreviewRefused("this preview link is for another project".into()));
        }
        Ok(Json(json!({"project": verified.project, "expiresAt": verified.expires, "by": verified.editor})).into_response())
    })();
    let mut response = answer.unwrap_or_else(|e: ApiError| e.into_response());
    crate::ingest::cors_headers(response.headers_mut(), origin.as_ref());
    response.headers_mut().insert(header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    #[test]
    fn tokens_verify_until_they_expire_and_not_once_altered() {
        let projects = vec![Config::demo_project(), Project { id: "b".into(), read_token: "rt_b".into(), ..Config::demo_project() }];
        let token = sign(&projects[0], "dana", 2_000);
        let (p, v) = verify(&projects, &token, 1_999).expect("valid");
        assert_eq!((p.id.as_str(), v.expires, v.editor.as_str()), ("demo", 2_000, "dana"));
        assert!(verify(&projects, &token, 2_000).expect_err("expired").contains("expired"));
        // Another expiry, project or editor with the same signature is refused.
        let later = token.replacen(".2000.", ".9999.", 1);
        assert!(verify(&projects, &later, 0).is_err());
        let parts: Vec<&str> = token.split('.').collect();
        let moved = format!("pv1.{}.{}.{}.{}", b64().encode("b"), parts[2], parts[3], parts[4]);
        assert!(verify(&projects, &moved, 0).is_err());
        assert!(verify(&projects, "pv1.x", 0).is_err());
        assert!(verify(&projects, "", 0).is_err());
        // A new read token revokes every link signed under the old one.
        let rotated = vec![Project { read_token: "rt_new".into(), ..Config::demo_project() }];
        assert!(verify(&rotated, &token, 0).is_err());
    }
}
