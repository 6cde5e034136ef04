//! `POST /v1/batch`: limit, parse, authenticate, rate-limit, validate, correct clocks, store,
//! acknowledge.
//!
//! A 2xx is only sent after the store committed every event, so an acknowledged event is never
//! lost. Nothing of a refused request is stored. The answers, as the SDK reads them:
//!
//! | status | when | the SDK |
//! |---|---|---|
//! | 200 `{"accepted": n, "clamped": k}` | committed (`k` events dated in the future were clamped) | removes the events |
//! | 400 `{"errors": [{"index", "field", "message"}]}` | malformed body, or events that are invalid or dated absurdly far in the past | drops the listed events, resends the rest |
//! | 401 / 403 (readable by any origin) | unknown write key / origin not allowed for it | drops its queue as `rejected`, says so once in the console, sends nothing more from the page |
//! | 413 | body over 500 KB, or events over 32 KB (listed like a 400) | drops listed events, or splits the batch |
//! | 429 + `Retry-After` | over the write key's rate limit | waits that long |
//! | 503 + `Retry-After` | storage unavailable, or shutting down | waits, retries |

use axum::body::{to_bytes, Body};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use onramp::core::json::Value;
use onramp::core::vocab;
use onramp::core::wire::{Batch, Event, EventType, Known, KnownQuery, WireError, MAX_BATCH_BYTES, MAX_KNOWN_IDS};
use serde_json::json;

use crate::error::ApiError;
use crate::ops::BatchOutcome;
use crate::store::StoredEvent;
use crate::{AppState, Project};

/// Events dated further ahead of the collector's clock than this are clamped to receive time:
/// clock correction cannot fix a client whose clock is simply wrong by days.
pub const MAX_FUTURE_MS: i64 = 23 * 3600 * 1000;

/// Events dated (after correction) further back than this are refused with a reason: the SDK
/// gives up on events after 7 days, so anything this old is a broken client or a replay.
pub const MAX_PAST_MS: i64 = 30 * 24 * 3600 * 1000;

/// A send offset (`received_at − sent_at`) up to this size is taken as network delay, not clock
/// skew, and left uncorrected.
pub const TRUSTED_OFFSET_MS: i64 = 5_000;

/// The clock correction for a batch whose send offset is `offset`: none up to
/// [`TRUSTED_OFFSET_MS`], the whole offset from twice that, a linear ramp between.
///
/// Why not the whole offset always (PostHog's rule): the offset is the client's skew plus that
/// batch's network delay, and each batch has its own delay. Two events a millisecond apart that
/// leave in different batches (a prompt's action, then the goal the host's callback tracks) would
/// swap order whenever the second batch travelled faster, and order decides funnels and
/// conversions. A client clock a few seconds off changes no report; one minutes off is still
/// corrected in full. The ramp keeps the correction continuous, so near the threshold a delay's
/// jitter moves events by at most twice the jitter, never by the threshold.
fn clock_correction(offset: i64) -> i64 {
    let size = offset.saturating_abs();
    let correction = if size <= TRUSTED_OFFSET_MS {
        0
    } else if size >= 2 * TRUSTED_OFFSET_MS {
        size
    } else {
        2 * (size - TRUSTED_OFFSET_MS)
    };
    correction * offset.signum()
}

/// Client time corrected by the client's clock offset, measured as `received_at − sent_at`
/// ([`clock_correction`]), and clamped to receive time when it lands more than
/// [`MAX_FUTURE_MS`] ahead.
pub fn correct_timestamp(client_ts: i64, sent_at: i64, received_at: i64) -> i64 {
    corrected_time(client_ts, sent_at, received_at).0
}

/// [`correct_timestamp`], and whether the clamp to receive time replaced the corrected time.
fn corrected_time(client_ts: i64, sent_at: i64, received_at: i64) -> (i64, bool) {
    let corrected = client_ts.saturating_add(clock_correction(received_at.saturating_sub(sent_at)));
    if corrected > received_at.saturating_add(MAX_FUTURE_MS) {
        (received_at, true)
    } else {
        (corrected.max(0), false)
    }
}

/// Echoes the origin when it may read the answer (an allowed origin), so browsers see errors
/// from their own project and nobody else's.
pub(crate) fn cors_headers(headers: &mut HeaderMap, origin: Option<&HeaderValue>) {
    if let Some(origin) = origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// Preflight for clients that send `application/json` or a key header; the SDK itself sends
/// `text/plain` and never needs one. Only origins some project allows get a yes.
pub async fn preflight(State(state): State<AppState>, request_headers: HeaderMap) -> Response {
    let origin = request_headers.get(header::ORIGIN).filter(|o| origin_allowed_somewhere(&state, o));
    let Some(origin) = origin else { return StatusCode::FORBIDDEN.into_response() };
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    cors_headers(headers, Some(origin));
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("content-type, x-onramp-write-key"));
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    response
}

fn origin_allowed_somewhere(state: &AppState, origin: &HeaderValue) -> bool {
    origin.to_str().is_ok_and(|o| state.config.any_allows_origin(o))
}

/// Who sent a batch, and so which checks apply.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source<'a> {
    /// The SDK, with the public write key: rate-limited, origin-checked, events at most
    /// [`MAX_PAST_MS`] old, client clocks corrected by `sentAt`.
    Live,
    /// `POST /v1/import[?project=ID]` with an admin token (the project's, or the global one):
    /// a team's existing history, events of any age, their times taken as sent (only clamped
    /// when in the future).
    Import { project: Option<&'a str> },
}

/// `POST /v1/import` (`Authorization: Bearer ADMIN_TOKEN`): the batch format of `/v1/batch`, for
/// history of any age. Idempotent by event id like every write, and it feeds the rollups like
/// live events; the same answers (200 after the commit, 400 naming event and field). The admin
/// token is checked as for the other admin routes ([`crate::privacy::authorize_admin`]).
pub async fn import(
    State(state): State<AppState>,
    Query(q): Query<crate::privacy::ProjectParam>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut outcome = BatchOutcome::default();
    let result = accept(&state, &headers, body, &mut outcome, Source::Import { project: q.project.as_deref() }).await;
    answer(&state, result, outcome)
}

/// The response to a write, counted in the metrics, with the outcome for the request log.
fn answer(state: &AppState, result: Result<(usize, usize), ApiError>, mut outcome: BatchOutcome) -> Response {
    let mut response = match result {
        Ok((accepted, clamped)) => {
            state.metrics.accepted(accepted);
            (StatusCode::OK, Json(json!({ "accepted": accepted, "clamped": clamped }))).into_response()
        }
        Err(e) => {
            outcome.reason = Some(e.reason());
            state.metrics.rejected(e.reason(), outcome.events);
            e.into_response()
        }
    };
    response.extensions_mut().insert(outcome);
    response
}

pub async fn batch(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let mut outcome = BatchOutcome::default();
    let result = accept(&state, &headers, body, &mut outcome, Source::Live).await;
    let mut response = answer(&state, result, outcome);
    sdk_cors(&state, &headers, &mut response);
    response
}

/// The SDK's CORS answer. A refusal of the key or the origin (401/403) is readable by any
/// origin: the SDK on a page the project does not allow must see the answer to stop retrying
/// and to say which origin to allow. It carries nothing of the project's.
fn sdk_cors(state: &AppState, headers: &HeaderMap, response: &mut Response) {
    let refused = matches!(response.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN);
    let origin = headers.get(header::ORIGIN).filter(|o| refused || origin_allowed_somewhere(state, o));
    cors_headers(response.headers_mut(), origin);
}

/// `POST /v1/known` ([`KnownQuery`]): which of these event ids the project stores. A page asks
/// before resending events that may have arrived without its reading the answer (a closing
/// page's beacons, a crashed tab's keepalive fetch), so they are not sent twice. Authenticated
/// and rate-limited like a batch; it reveals only whether ids the asker already holds (random
/// UUIDv7s) were stored. An event still on its way to the store is not named yet: the page then
/// sends it, and the store keeps it once.
pub async fn known(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let mut response = match known_ids(&state, &headers, body).await {
        Ok(known) => (StatusCode::OK, Json(Known { known })).into_response(),
        Err(e) => e.into_response(),
    };
    sdk_cors(&state, &headers, &mut response);
    response
}

async fn known_ids(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Vec<String>, ApiError> {
    if state.is_draining() {
        return Err(ApiError::Draining);
    }
    let body = read_body(state, body, MAX_KNOWN_IDS * 128).await?;
    let query: KnownQuery =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("expected {{\"writeKey\", \"ids\": [event ids]}}: {e}")))?;
    if query.ids.len() > MAX_KNOWN_IDS {
        return Err(ApiError::BadRequest(format!("ids: {} ids; at most {MAX_KNOWN_IDS} per question", query.ids.len())));
    }
    let project = authenticate(state, headers, &query.write_key)?;
    state.limiter.check(&project.write_key, std::time::Instant::now()).map_err(ApiError::RateLimited)?;
    Ok(state.store.known_ids(&project.id, query.ids).await?)
}

async fn accept(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    outcome: &mut BatchOutcome,
    source: Source<'_>,
) -> Result<(usize, usize), ApiError> {
    if state.is_draining() {
        return Err(ApiError::Draining);
    }
    let body = read_body(state, body, MAX_BATCH_BYTES).await?;
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::BadRequest("body is not UTF-8".into()))?;
    let (batch, mut errors) = Batch::parse_lenient(text).map_err(|e| ApiError::BadBatch(vec![e]))?;
    outcome.events = batch.events.len() + errors.len();
    let project = match source {
        Source::Live => authenticate(state, headers, &batch.write_key)?,
        Source::Import { project } => crate::privacy::authorize_admin(state, headers, project)?,
    };
    outcome.project = Some(project.id.clone());
    if source == Source::Live {
        state.limiter.check(&project.write_key, std::time::Instant::now()).map_err(ApiError::RateLimited)?;
    }

    let received_at = state.now();
    let parse_bad: Vec<usize> = errors.iter().filter_map(|e| e.index).collect();
    // History is dated by the system it came from: an import has no send offset to correct.
    let sent_at = match source {
        Source::Live => batch.sent_at,
        Source::Import { .. } => received_at,
    };
    let mut clamped = 0;
    let mut stored = Vec::with_capacity(batch.events.len());
    for (index, mut event) in batch.events.into_iter().enumerate() {
        if let Err(e) = crate::identity::check(project, &mut event) {
            errors.push(WireError { index: Some(original_index(index, &parse_bad)), ..e });
        }
        if let Err(message) = normalize_signed_up_at(&mut event, received_at) {
            errors.push(WireError { index: Some(original_index(index, &parse_bad)), field: "props.signedUpAt", message });
            continue;
        }
        let (ts, was_clamped) = corrected_time(event.ts, sent_at, received_at);
        if source == Source::Live && ts < received_at - MAX_PAST_MS {
            errors.push(WireError {
                index: Some(original_index(index, &parse_bad)),
                field: "ts",
                message: "is more than 30 days before the collector's clock, even after correcting by sentAt; \
                          refused as too old"
                    .into(),
            });
            continue;
        }
        clamped += usize::from(was_clamped);
        stored.push(StoredEvent { project: project.id.clone(), ts, event, sent_at: batch.sent_at, received_at });
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.index);
        return Err(match errors.iter().all(WireError::is_too_large) {
            true => ApiError::EventsTooLarge(errors),
            false => ApiError::BadBatch(errors),
        });
    }
    let count = stored.len();
    // Worked out before the events move into the store; empty without a webhook. Imported
    // history is not news: no webhook for it.
    let notifications = match &state.webhook {
        Some(_) if source == Source::Live => {
            let mut n = crate::webhook::value_notifications(&stored, received_at);
            n.extend(crate::webhook::survey_notifications(&stored, received_at));
            n
        }
        _ => Vec::new(),
    };
    state.store.insert(stored).await?;
    // In the outbox before the acknowledgement: if this fails, the SDK resends the batch, the
    // events are deduplicated and the notifications written then.
    if let (Some(hook), false) = (&state.webhook, notifications.is_empty()) {
        state.store.enqueue_notifications(notifications).await?;
        hook.wake();
    }
    Ok((count, clamped))
}

/// Stores an identify's `signedUpAt` trait as Unix ms, by the one definition in
/// [`onramp::core::time::signed_up_at`], so every report reads the same sign-up time whatever
/// unit or format the host page sent. A `null` means "unknown" and is dropped; anything else that
/// is not a time from 2000-01-01 to a day after `now` is refused.
fn normalize_signed_up_at(event: &mut Event, now: i64) -> Result<(), String> {
    if event.kind != EventType::Identify {
        return Ok(());
    }
    let Some(slot) = event.props.iter().position(|(k, _)| k == vocab::prop::SIGNED_UP_AT) else { return Ok(()) };
    let value = &event.props[slot].1;
    if *value == Value::Null {
        event.props.remove(slot);
        return Ok(());
    }
    match onramp::core::time::signed_up_at(value, now) {
        Ok(ms) => {
            event.props[slot].1 = Value::Num(ms as f64);
            Ok(())
        }
        Err(why) => Err(format!("{why}; found {}", value.to_json())),
    }
}

/// Reads a whole request body of at most `limit` bytes within the body timeout. Reading stops
/// at the limit, so a huge body is refused without being buffered whole; the error says which
/// of too large (413), malformed (400), cut off by the client, or too slow (408) it was.
pub(crate) async fn read_body(state: &AppState, body: Body, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    match tokio::time::timeout(state.config.limits.body_timeout, to_bytes(body, limit)).await {
        Err(_) => Err(ApiError::BodyTimeout),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => Err(body_error(e.into_inner(), limit)),
    }
}

fn body_error(e: axum::BoxError, limit: usize) -> ApiError {
    if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
        return ApiError::TooLarge(limit);
    }
    // hyper reports a client that went away as an I/O error (the body ended before its
    // length, or the connection was reset) under its own error; anything else is malformed.
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&*e);
    while let Some(err) = cause {
        let gone = err.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_incomplete_message)
            || err
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| matches!(io.kind(), UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe));
        if gone {
            return ApiError::Aborted;
        }
        cause = err.source();
    }
    ApiError::MalformedBody(e.to_string())
}

/// `parse_lenient` returns the good events without their positions; the `n`th good event's
/// position in the batch is `n` plus the number of bad events before it.
fn original_index(n: usize, bad: &[usize]) -> usize {
    let mut bad = bad.to_vec();
    bad.sort_unstable();
    let mut index = n;
    for b in bad {
        if b <= index {
            index += 1;
        }
    }
    index
}

fn authenticate<'a>(state: &'a AppState, headers: &HeaderMap, write_key: &str) -> Result<&'a Project, ApiError> {
    let key = match write_key {
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
        // 10 minutes ahead.
        assert_eq!(correct_timestamp(700_000, 700_000, 100_000), 100_000);
    }

    #[test]
    fn a_send_offset_within_network_delay_is_not_corrected() {
        // Two events 1 ms apart in two batches, one 40 ms in transit, the other 3 ms: their
        // order survives (it would not if each batch's delay were subtracted).
        let (action, goal) = (1_000_000, 1_000_001);
        assert!(correct_timestamp(goal, 1_000_002, 1_000_005) > correct_timestamp(action, 1_000_000, 1_000_040));
        assert_eq!(correct_timestamp(action, 1_000_000, 1_000_000 + 5_000), action);
        assert_eq!(correct_timestamp(action, 1_000_000, 1_000_000 - 5_000), action);
    }

    #[test]
    fn the_correction_ramps_up_without_a_jump() {
        // From 5 s of offset (none) to 10 s (all of it): 7.5 s corrects by 5 s, and 1 ms more
        // offset never moves a time by more than 2 ms.
        assert_eq!(correct_timestamp(0, 0, 7_500), 5_000);
        assert_eq!(correct_timestamp(100_000, 7_500, 0), 95_000);
        for offset in (4_000..11_000).step_by(7) {
            let step = clock_correction(offset + 1) - clock_correction(offset);
            assert!((0..=2).contains(&step), "offset {offset}: {step}");
            assert_eq!(clock_correction(-offset), -clock_correction(offset));
        }
    }

    #[test]
    fn positions_of_good_events_skip_the_bad_ones() {
        // Events 0 and 2 were bad: good events 0, 1, 2 sat at 1, 3, 4.
        assert_eq!([0, 1, 2].map(|n| original_index(n, &[2, 0])), [1, 3, 4]);
    }

    #[test]
    fn clamps_far_future_events() {
        let now = 100 * 3600 * 1000;
        assert_eq!(correct_timestamp(now + 48 * 3600 * 1000, now, now), now);
    }
}
