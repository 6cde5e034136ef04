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
//! - [`store`]: storage backends behind one trait; SQLite is the default, ClickHouse the one
//!   to scale out with (docs/SCALING.md).
//! - [`error`]: the one error type every handler returns, mapped to HTTP statuses.
//! - [`ops`]: Prometheus metrics, the per-key rate limiter, structured request logs.
//! - [`rollup`]: `onramp-collector rollup rebuild|verify`.
//!
//! [`app`] builds the router from its state so tests can drive it with or without a socket;
//! [`run`] serves it on a listener until the shutdown future resolves.

pub mod analytics;
pub mod config;
pub mod error;
pub mod ingest;
pub mod ops;
pub mod plans;
pub mod query;
pub mod rollup;
pub mod store;
pub mod webhook;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
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
    pub metrics: Arc<ops::Metrics>,
    pub limiter: Arc<ops::RateLimiter>,
    /// Set when shutdown begins: new batches get 503, `/readyz` says not ready.
    pub draining: Arc<AtomicBool>,
    /// One JSON line per request on stderr.
    pub log_requests: bool,
    /// Told when a user reaches value (see [`webhook`]); `None` without `--webhook`.
    pub webhook: Option<Arc<webhook::Webhook>>,
    /// Plans from the plan files, by project id: served while a project has no stored plan.
    pub plans: Arc<HashMap<String, plans::ServedPlan>>,
    /// Recent `/v1/report` answers (see [`query::ReportCache`]).
    pub report_cache: Arc<query::ReportCache>,
}

impl AppState {
    pub fn new(config: Config, store: Arc<dyn Store>) -> AppState {
        // A bad file is reported and skipped here; `main` refuses to start on one first.
        let plans = config
            .plan_files
            .iter()
            .filter_map(|(project, path)| match plans::load_file(path) {
                Ok(plan) => Some((project.clone(), plan)),
                Err(e) => {
                    eprintln!("onramp-collector: {e}");
                    None
                }
            })
            .collect();
        AppState {
            limiter: Arc::new(ops::RateLimiter::new(config.rate_limit)),
            config: Arc::new(config),
            store,
            clock: Arc::new(system_now_ms),
            metrics: Arc::default(),
            draining: Arc::default(),
            log_requests: false,
            webhook: None,
            plans: Arc::new(plans),
            report_cache: Arc::default(),
        }

    }
    pub fn now(&self) -> i64 {
        (self.clock)()
    }
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
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
        .route("/v1/import", post(ingest::import))
        .route("/v1/plan", get(plans::get).put(plans::put))
        .route("/v1/funnel", get(query::funnel))
        .route("/v1/ttv", get(query::time_to_value))
        .route("/v1/cohorts", get(query::cohorts))
        .route("/v1/tips", get(query::tip_effect))
        .route("/v1/metrics", get(query::seed_metrics))
        .route("/v1/stalled", get(query::stalled))
        .route("/v1/report", get(query::report))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(prometheus))
        // Customers load the SDK from their own origin: the loader's `import()`, the ES module
        // and the wasm fetch are all CORS requests, so the bundle is readable from anywhere.
        .merge(
            Router::new()
                .nest_service("/sdk/v1", ServeDir::new(dist))
                .layer(tower_http::cors::CorsLayer::new().allow_origin(tower_http::cors::Any)),
        )
        .nest_service("/demo", ServeDir::new(www.join("demo")))
        .nest_service("/dashboard", ServeDir::new(www.join("dashboard")))
        .route_service("/", ServeFile::new(www.join("index.html")))
        .layer(axum::middleware::from_fn_with_state(state.clone(), ops::log_requests))
        .with_state(state)
}

/// Ready to take traffic: not shutting down, and the store's writer is keeping up.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else {
        (StatusCode::OK, "ready")
    }
}

async fn prometheus(State(state): State<AppState>) -> impl IntoResponse {
    let text = state.metrics.render(state.store.queue_depth(), state.is_draining());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// Serves until `shutdown` resolves, then stops accepting connections, answers requests already
/// in flight (each batch among them only after its commit) and returns. So after a SIGTERM
/// every acknowledged batch is in the store, and every unacknowledged one is the client's to
/// resend.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let draining = state.draining.clone();
    let shutdown = async move {
        shutdown.await;
        draining.store(true, Ordering::Relaxed);
    };
    axum::serve(listener, app(state)).with_graceful_shutdown(shutdown).await
}
