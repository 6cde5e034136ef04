//! The error every handler returns. Bad input is answered with a 4xx saying what to fix;
//! internal failures are logged and answered without their details.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use onramp::core::wire::{Rejection, WireError};
use serde_json::json;

use crate::store::StoreError;

#[derive(Debug)]
pub enum ApiError {
    /// Malformed body or events; each error names the event index and field.
    BadBatch(Vec<WireError>),
    BadRequest(String),
    /// A plan that does not validate: where, what is wrong, what was expected.
    BadPlan(onramp::core::plan::PlanError),
    UnknownWriteKey,
    /// A valid key used from an origin the project does not allow.
    OriginNotAllowed(String),
    Unauthorized,
    /// An admin operation without a valid admin token.
    AdminRequired,
    /// A plan change without an editor token (or admin token) of the project.
    EditorRequired,
    /// A plan change based on a version that is no longer current.
    Conflict { message: String, current: Option<u64> },
    /// The named thing does not exist (a plan version, say).
    NotFound(String),
    /// A preview token that is not genuine, has expired, or is for another project.
    PreviewRefused(String),
    /// The body is over the batch limit (bytes).
    TooLarge(usize),
    /// The body could not be read as HTTP (a malformed chunk, say).
    MalformedBody(String),
    /// The client went away before sending its whole body; nobody will read the answer.
    Aborted,
    /// The body did not arrive within the body timeout.
    BodyTimeout,
    /// Events over the per-event limit, named like [`ApiError::BadBatch`], so the client drops
    /// just those.
    EventsTooLarge(Vec<WireError>),
    /// Over the write key's rate limit; retry after this many seconds.
    RateLimited(u64),
    /// Shutting down: this request was not taken; retry (another instance, or after restart).
    Draining,
    Store(StoreError),
}

impl ApiError {
    /// The `reason` label in metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::BadBatch(errors) if errors.iter().any(|e| e.field == "ts") => "too_old",
            ApiError::BadBatch(_) => "invalid",
            ApiError::BadRequest(_) => "bad_body",
            ApiError::BadPlan(_) => "invalid_plan",
            ApiError::UnknownWriteKey | ApiError::Unauthorized | ApiError::AdminRequired | ApiError::EditorRequired => {
                "unknown_key"
            }
            ApiError::Conflict { .. } => "conflict",
            ApiError::NotFound(_) => "not_found",
            ApiError::PreviewRefused(_) => "unknown_key",
            ApiError::OriginNotAllowed(_) => "origin",
            ApiError::TooLarge(_) | ApiError::EventsTooLarge(_) => "too_large",
            ApiError::MalformedBody(_) => "bad_body",
            ApiError::Aborted => "aborted",
            ApiError::BodyTimeout => "timeout",
            ApiError::RateLimited(_) => "rate_limited",
            ApiError::Draining => "draining",
            ApiError::Store(_) => "unavailable",
        }
    }
}


fn with_retry_after(status: StatusCode, body: serde_json::Value, seconds: u64) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        ApiError::Store(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            ApiError::BadBatch(errors) => {
                return (StatusCode::BAD_REQUEST, Json(Rejection::new("invalid batch", &errors))).into_response()
            }
            ApiError::EventsTooLarge(errors) => {
                let body = Rejection::new("events over the per-event size limit", &errors);
                return (StatusCode::PAYLOAD_TOO_LARGE, Json(body)).into_response();
            }
            ApiError::RateLimited(seconds) => {
                let body = json!({"error": format!("too many requests for this write key; retry after {seconds} s")});
                return with_retry_after(StatusCode::TOO_MANY_REQUESTS, body, seconds);
            }
            ApiError::Draining => {
                let body = json!({"error": "the collector is shutting down, retry shortly"});
                return with_retry_after(StatusCode::SERVICE_UNAVAILABLE, body, 1);
            }
            ApiError::BadRequest(message) => (StatusCode::BAD_REQUEST, json!({"error": message})),
            ApiError::BadPlan(e) => (
                StatusCode::BAD_REQUEST,
                json!({"error": e.to_string(), "pointer": e.pointer, "problem": e.problem, "expected": e.expected}),
            ),
            ApiError::UnknownWriteKey => (StatusCode::UNAUTHORIZED, json!({"error": "unknown write key"})),
            ApiError::OriginNotAllowed(origin) => (
                StatusCode::FORBIDDEN,
                json!({"error": format!("origin {origin} is not allowed for this write key")}),
            ),
            ApiError::Unauthorized => {
                (StatusCode::UNAUTHORIZED, json!({"error": "a valid read token is required (Authorization: Bearer …)"}))
            }
            ApiError::EditorRequired => (
                StatusCode::UNAUTHORIZED,
                json!({"error": "an editor token of the project is required (Authorization: Bearer …); the read token only reads reports"}),
            ),
            ApiError::Conflict { message, current } => (StatusCode::CONFLICT, json!({"error": message, "current": current})),
            ApiError::NotFound(what) => (StatusCode::NOT_FOUND, json!({"error": what})),
            ApiError::PreviewRefused(why) => (StatusCode::UNAUTHORIZED, json!({"error": why})),
            ApiError::AdminRequired => (
                StatusCode::UNAUTHORIZED,
                json!({"error": "an admin token is required (Authorization: Bearer …); the read token is not enough"}),
            ),
            ApiError::TooLarge(limit) => {
                (StatusCode::PAYLOAD_TOO_LARGE, json!({"error": format!("body larger than {limit} bytes")}))
            }
            ApiError::MalformedBody(why) => {
                (StatusCode::BAD_REQUEST, json!({"error": format!("malformed request body: {why}")}))
            }
            ApiError::Aborted => (StatusCode::BAD_REQUEST, json!({"error": "the request body ended early"})),
            ApiError::BodyTimeout => {
                (StatusCode::REQUEST_TIMEOUT, json!({"error": "the request body did not arrive in time"}))
            }
            ApiError::Store(e) => {
                eprintln!("onramp-collector: {e}");
                let body = json!({"error": "storage unavailable, retry later"});
                return with_retry_after(StatusCode::SERVICE_UNAVAILABLE, body, 5);
            }
        };
        (status, Json(body)).into_response()
    }
}
