//! The files the collector serves besides its API, compiled into the binary so that one
//! executable copied to a server is the whole deployment: the SDK bundle (`dist/`, built by
//! `cargo xtask build` before the collector), the dashboard, the demo page and its plan.
//!
//! `--dist DIR` and `--www DIR` serve those directories from disk instead (to try a change
//! without rebuilding). Serving is deliberately plain — the bytes, a content type, an ETag —
//! so a smarter scheme (precompressed or content-hashed files) can replace [`serve`] alone.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

/// The SDK bundle. Missing when the collector was built before `cargo xtask build` made it;
/// then `/sdk/v1/` answers 404 and the start-up log says why.
#[derive(RustEmbed)]
#[folder = "../dist"]
#[allow_missing = true]
#[exclude = "*.d.ts"]
#[exclude = "package.json"]
pub struct Sdk;

/// `www/`: the dashboard, the demo page and the landing page (not `www/sdk/`, the bundle's
/// sources: `dist/` has the built files).
#[derive(RustEmbed)]
#[folder = "../www"]
#[exclude = "sdk/*"]
pub struct Www;

/// The demo project's plan, served when the collector runs with no configuration.
pub const DEMO_PLAN: &str = include_str!("../../pkg-config/plans/trackly.json");

/// Whether the SDK bundle was embedded (for the start-up log).
pub fn sdk_embedded() -> bool {
    Sdk::get("loader.js").is_some()
}

/// Answers `request` (whose path is relative to the mount point) from the embedded files `E`.
/// A path naming a directory serves its `index.html`. Where `cargo xtask build` left a
/// precompressed form beside a file (`x.br`, `x.gz`), the client gets the smallest one its
/// `Accept-Encoding` allows, so no response is compressed per request.
pub async fn serve<E: RustEmbed>(request: Request) -> Response {
    let path = request.uri().path().trim_start_matches('/');
    let path = match path {
        "" => "index.html".to_owned(),
        p if p.ends_with('/') => format!("{p}index.html"),
        p => p.to_owned(),
    };
    let Some(file) = E::get(&path) else { return StatusCode::NOT_FOUND.into_response() };
    let accepted = request.headers().get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("");
    let (encoding, body) = ["br", "gzip"]
        .into_iter()
        .filter(|encoding| accepts(accepted, encoding))
        .find_map(|encoding| {
            let suffix = if encoding == "br" { "br" } else { "gz" };
            E::get(&format!("{path}.{suffix}")).map(|f| (Some(encoding), f))
        })
        .unwrap_or((None, file.clone()));
    let etag = format!("\"{}{}\"", hex(&body.metadata.sha256_hash()[..12]), encoding.map_or(String::new(), |e| format!("-{e}")));
    let fresh = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim().trim_start_matches("W/") == etag));
    let mut response = if fresh { StatusCode::NOT_MODIFIED.into_response() } else { Body::from(body.data).into_response() };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(file.metadata.mimetype()) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    if let Some(encoding) = encoding {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
    }
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    response
}

/// Whether an `Accept-Encoding` value allows `encoding` (named, or `*`, and not `q=0`).
fn accepts(accept_encoding: &str, encoding: &str) -> bool {
    accept_encoding.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let name = parts.next().unwrap_or("");
        let refused = parts.any(|p| p.strip_prefix("q=").is_some_and(|q| q.parse::<f32>().is_ok_and(|q| q == 0.0)));
        (name.eq_ignore_ascii_case(encoding) || name == "*") && !refused
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn www_is_embedded_without_the_sdk_sources() {
        assert!(Www::get("dashboard/index.html").is_some());
        assert!(Www::get("demo/index.html").is_some());
        assert!(Www::get("sdk/loader.js").is_none());
        assert!(onramp::core::plan::Plan::parse(DEMO_PLAN).is_ok());
    }

    #[test]
    fn accept_encoding_is_read_with_its_weights() {
        assert!(accepts("gzip, deflate, br, zstd", "br"));
        assert!(accepts("gzip;q=1.0, br;q=0.5", "br"));
        assert!(!accepts("gzip, br;q=0", "br"));
        assert!(accepts("*", "gzip"));
        assert!(!accepts("identity", "gzip"));
        assert!(!accepts("", "br"));
    }
}
