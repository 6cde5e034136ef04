//! `POST /v1/batch`: authenticate, validate, correct clocks, store, acknowledge.
//!
//! A 2xx is only sent after the store committed every event, so an acknowledged event is never
//! lost. Any invalid event refuses the whole batch with a 400 listing each bad event's index and
//! field; nothing of a refused request is stored, and the client can drop just those events and
//! resend the rest.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use onramp::core::wire::{Batch, MAX_BATCH_BYTES};
use serde_json::json;

use crate::error::ApiError;
use crate::store::StoredEvent;
use crate::{AppState, Project};

/// Events dated further ahead of the collector's clock than this are clamped to receive time:
/// clock correction cannot fix a client whose clock is simply wrong by days.
pub const MAX_FUTURE_MS: i64 = 23 * 3600 * 1000;

/// Client time corrected by the client's clock offset, measured as `received_at − sent_at`
/// (PostHog's approach; the network delay is small against real skew).
pub fn correct_timestamp(client_ts: i64, sent_at: i64, received_at: i64) -> i64 {
    let corrected = client_ts.saturating_add(received_at.saturating_sub(sent_at));
    if corrected > received_at.saturating_add(MAX_FUTURE_MS) {
        received_at
    } else {
        corrected.max(0)
    }
}

fn cors_headers(headers: &mut HeaderMap, origin: Option<&HeaderValue>) {
    if let Some(origin) = origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// Preflight for clients that send `application/json` or a key header; the SDK itself sends
/// `text/plain` and never needs one.
pub async fn preflight(request_headers: HeaderMap) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    cors_headers(headers, request_headers.get(header::ORIGIN));
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("content-type, x-onramp-write-key"));
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    response
}

pub async fn batch(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let origin = headers.get(header::ORIGIN).cloned();
    let mut response = match accept(&state, &headers, &body).await {
        Ok(accepted) => (StatusCode::OK, Json(json!({ "accepted": accepted }))).into_response(),
        Err(e) => e.into_response(),
    };
    cors_headers(response.headers_mut(), origin.as_ref());
    response
}

async fn accept(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<usize, ApiError> {
    if body.len() > MAX_BATCH_BYTES {
        return Err(ApiError::TooLarge(MAX_BATCH_BYTES));
    }
    let text = std::str::from_utf8(body).map_err(|_| ApiError::BadRequest("body is not UTF-8".into()))?;
    let (batch, errors) = Batch::parse_lenient(text).map_err(|e| ApiError::BadBatch(vec![e]))?;
    let project = authenticate(state, headers, &batch)?;
    if !errors.is_empty() {
        return Err(ApiError::BadBatch(errors));
    }
    let received_at = state.now();
    let count = batch.events.len();
    let stored = batch
        .events
        .into_iter()
        .map(|event| StoredEvent {
            project: project.id.clone(),
            ts: correct_timestamp(event.ts, batch.sent_at, received_at),
            event,
            sent_at: batch.sent_at,
            received_at,
        })
        .collect();
    state.store.insert(stored).await?;
    Ok(count)
}

fn authenticate<'a>(state: &'a AppState, headers: &HeaderMap, batch: &Batch) -> Result<&'a Project, ApiError> {
    let key = match batch.write_key.as_str() {
        "" => headers.get("x-onramp-write-key").and_then(|v| v.to_str().ok()).unwrap_or(""),
        key => key,
    };
    let project = state.config.project_by_write_key(key).ok_or(ApiError::UnknownWriteKey)?;
    // Browsers always send Origin on cross-origin POSTs; server-side senders have none.
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        if !project.allows_origin(origin) {
            return Err(ApiError::OriginNotAllowed(origin.into()));
        }
    }
    Ok(project)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrects_skew_by_the_send_offset() {
        // Client clock 10 s behind: sent_at reads 10 s earlier than the collector's clock.
        assert_eq!(correct_timestamp(1_000, 5_000, 15_000), 11_000);
    }

    #[test]
    fn clamps_far_future_events() {
        let now = 100 * 3600 * 1000;
        assert_eq!(correct_timestamp(now + 48 * 3600 * 1000, now, now), now);
    }
}
