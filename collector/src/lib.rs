//! onramp-collector: receives event batches from the onramp SDK, stores them, answers funnel
//! queries, and serves the SDK bundle, the demo page and the dashboard.
//!
//! # Layout
//!
//! - [`config`]: projects (write keys, read tokens, allowed origins) and paths.
//! - [`ingest`]: `POST /v1/batch`, from body to committed rows.
//! - [`query`]: the read API behind the dashboard (`/v1/funnel`, `/v1/ttv`, `/v1/cohorts`,
//!   `/v1/tips`, `/v1/metrics`, `/v1/stalled`, `/v1/report`).
//! - [`analytics`]: the pure math behind it, shared by every store.
//! - [`store`]: storage backends behind one trait; SQLite is the default.
//! - [`error`]: the one error type every handler returns, mapped to HTTP statuses.
//!
//! [`app`] builds the router from its state so tests can drive it with or without a socket;
//! [`run`] serves it on a listener until the shutdown future resolves.

pub mod analytics;
pub mod config;
pub mod error;
pub mod ingest;
pub mod query;
pub mod store;

use std::future::Future;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use tower_http::services::{ServeDir, ServeFile};

pub use config::{Config, Project};
use store::Store;

/// Shared by every request.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Fn() -> i64 + Send + Sync>,
}

impl AppState {
    pub fn new(config: Config, store: Arc<dyn Store>) -> AppState {
        AppState { config: Arc::new(config), store, clock: Arc::new(system_now_ms) }
    }
    pub fn now(&self) -> i64 {
        (self.clock)()
    }
}

pub fn system_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn app(state: AppState) -> Router {
    let www = state.config.www_dir.clone();
    let dist = state.config.dist_dir.clone();
    Router::new()
        .route("/v1/batch", post(ingest::batch).options(ingest::preflight))
        .route("/v1/funnel", get(query::funnel))
        .route("/v1/ttv", get(query::time_to_value))
        .route("/v1/cohorts", get(query::cohorts))
        .route("/v1/tips", get(query::tip_effect))
        .route("/v1/metrics", get(query::seed_metrics))
        .route("/v1/stalled", get(query::stalled))
        .route("/v1/report", get(query::report))
        .route("/healthz", get(|| async { "ok" }))
        .nest_service("/sdk/v1", ServeDir::new(dist))
        .nest_service("/demo", ServeDir::new(www.join("demo")))
        .nest_service("/dashboard", ServeDir::new(www.join("dashboard")))
        .route_service("/", ServeFile::new(www.join("index.html")))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then finishes requests in flight.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state)).with_graceful_shutdown(shutdown).await
}
