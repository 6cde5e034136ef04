//! `/sdk/v1/`: the SDK bundle as browsers should get it.
//!
//! `cargo xtask build` writes each served file next to its brotli (`.br`) and gzip (`.gz`)
//! forms, and names the files the loader fetches by their content (`onramp.3f9a0c12de.mjs`).
//! So a file is answered precompressed by `Accept-Encoding` (no compression per request), a
//! content-hashed file is cached for a year as immutable (a new release has new names), and
//! everything else — `loader.js` above all, which names the hashed files — for five minutes, so
//! a release reaches pages within minutes. The bundle is readable from any origin: customers
//! load it from their own pages (`import()` and the wasm fetch are CORS requests).

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use tower_http::cors::{Any, CorsLayer};

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const SHORT: &str = "public, max-age=300";

/// The SDK routes (`/sdk/v1`, from the binary or from `--dist`) with their caching policy and
/// CORS: customers load the SDK from their own origin, so the bundle is readable from anywhere.
pub fn cached_and_shared<S: Clone + Send + Sync + 'static>(sdk: Router<S>) -> Router<S> {
    sdk.layer(CorsLayer::new().allow_origin(Any)).layer(axum::middleware::from_fn(cache_control))
}

async fn cache_control(request: Request, next: Next) -> Response {
    let policy = if is_content_hashed(request.uri().path()) { IMMUTABLE } else { SHORT };
    let mut response = next.run(request).await;
    let status = response.status();
    if status.is_success() || status == axum::http::StatusCode::NOT_MODIFIED {
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(policy));
    }
    // The CORS layer writes its own `Vary: origin, …` over the file server's; caches must key
    // on the encoding too.
    let varies = response.headers().get_all(header::VARY).iter().any(|v| {
        v.to_str().is_ok_and(|v| v.to_ascii_lowercase().contains("accept-encoding"))
    });
    if !varies {
        response.headers_mut().append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    response
}

/// Whether the file's name carries its content hash: `name.<10 lowercase hex digits>.ext`, as
/// `cargo xtask build` writes them (xtask/src/main.rs, `hashed_name`).
pub fn is_content_hashed(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let mut parts = name.rsplit('.');
    let (Some(_ext), Some(hash), Some(stem)) = (parts.next(), parts.next(), parts.next()) else { return false };
    !stem.is_empty() && hash.len() == 10 && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::is_content_hashed;

    #[test]
    fn only_names_with_a_content_hash_are_immutable() {
        assert!(is_content_hashed("/sdk/v1/onramp.3f9a0c12de.mjs"));
        assert!(is_content_hashed("/sdk/v1/onramp_bg.0123456789.wasm"));
        assert!(is_content_hashed("guide.abcdef0123.wasm"));
        for plain in [
            "/sdk/v1/loader.js",
            "/sdk/v1/index.mjs",
            "/sdk/v1/onramp_bg.wasm",
            "/sdk/v1/onramp.js",
            "/sdk/v1/onramp.3F9A0C12DE.mjs", // xtask writes lowercase only
            "/sdk/v1/onramp.3f9a0c12d.mjs",  // 9 digits
            "/sdk/v1/.3f9a0c12de.mjs",       // no stem
            "/sdk/v1/3f9a0c12de.mjs",
        ] {
            assert!(!is_content_hashed(plain), "{plain}");
        }
    }
}
