//! The error every handler returns. Bad input is answered with a 4xx saying what to fix;
//! internal failures are logged and answered without their details.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use onramp::core::wire::WireError;
use serde_json::json;

use crate::store::StoreError;

#[derive(Debug)]
pub enum ApiError {
    /// Malformed body or events; each error names the event index and field.
    BadBatch(Vec<WireError>),
    BadRequest(String),
    UnknownWriteKey,
    /// A valid key used from an origin the project does not allow.
    OriginNotAllowed(String),
    Unauthorized,
    TooLarge(usize),
    Store(StoreError),
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
                let list: Vec<_> = errors
                    .iter()
                    .map(|e| json!({"index": e.index, "field": e.field, "message": e.to_string()}))
                    .collect();
                (StatusCode::BAD_REQUEST, json!({"error": "invalid batch", "errors": list}))
            }
            ApiError::BadRequest(message) => (StatusCode::BAD_REQUEST, json!({"error": message})),
            ApiError::UnknownWriteKey => (StatusCode::UNAUTHORIZED, json!({"error": "unknown write key"})),
            ApiError::OriginNotAllowed(origin) => (
                StatusCode::FORBIDDEN,
                json!({"error": format!("origin {origin} is not allowed for this write key")}),
            ),
            ApiError::Unauthorized => {
                (StatusCode::UNAUTHORIZED, json!({"error": "a valid read token is required (Authorization: Bearer …)"}))
            }
            ApiError::TooLarge(limit) => {
                (StatusCode::PAYLOAD_TOO_LARGE, json!({"error": format!("body larger than {limit} bytes")}))
            }
            ApiError::Store(e) => {
                eprintln!("onramp-collector: {e}");
                let mut response =
                    (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": "storage unavailable, retry later"})))
                        .into_response();
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                return response;
            }
        };
        (status, Json(body)).into_response()
    }
}
