//! onramp-collector: receives event batches from the onramp SDK, stores them, answers funnel
//! queries, and serves the SDK bundle, the demo page and the dashboard.
//!
//! # Layout
//!
//! - [`config`]: projects (write keys, read tokens, allowed origins) and paths.
//! - [`ingest`]: `POST /v1/batch`, from body to committed rows.
//! - [`identity`]: identity verification (`userHash`).
//! - [`user_state`]: `GET /v1/state`, a user's milestone state across devices for the SDK.
//! - [`query`]: the read API behind the dashboard (`/v1/funnel`, `/v1/ttv`, `/v1/cohorts`,
//!   `/v1/tips`, `/v1/experiments`, `/v1/prompts`, `/v1/metrics`, `/v1/stalled`, `/v1/surveys`, `/v1/report`).
//! - [`analytics`]: the pure math behind it, shared by every store.
//! - [`store`]: storage backends behind one trait; SQLite is the default, ClickHouse the one
//!   to scale out with (docs/SCALING.md).
//! - [`error`]: the one error type every handler returns, mapped to HTTP statuses.
//! - [`plans`]: the plan the SDK runs on, its versions, and editing it (editor token).
//! - [`preview`]: signed, short-lived preview links for the SDK's preview and debug panel.
//! - [`privacy`]: erasure, export and retention of users' data (admin token).
//! - [`ops`]: Prometheus metrics, the per-key rate limiter, structured request logs.
//! - [`sdk_files`]: the SDK bundle, precompressed and cached by name.
//! - [`serve`]: the server loop: timeouts, the connection cap, bounded draining on shutdown.
//! - [`assets`]: the SDK bundle, dashboard and demo compiled into the binary.
//! - [`rollup`]: `onramp-collector rollup rebuild|verify`.
//!
//! [`app`] builds the router from its state so tests can drive it with or without a socket;
//! [`run`] serves it on a listener until the shutdown future resolves.

pub mod analytics;
pub mod assets;
pub mod config;
pub mod error;
pub mod health;
pub mod identity;
pub mod ingest;
pub mod ops;
pub mod plans;
pub mod preview;
pub mod privacy;
pub mod query;
pub mod sdk_files;
pub mod serve;
pub mod rollup;
pub mod store;
pub mod user_state;
pub mod webhook;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
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
    /// Tasks that run beside the server (stall scans, webhook deliveries) and take part in
    /// shutdown: told to stop, and waited for within the drain timeout.
    pub background: Arc<Background>,
}

/// See [`AppState::background`].
pub struct Background {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Mutex<tokio::task::JoinSet<()>>,
}

impl Default for Background {
    fn default() -> Background {
        Background { stop: tokio::sync::watch::channel(false).0, tasks: Mutex::default() }
    }
}

impl AppState {
    pub fn new(config: Config, store: Arc<dyn Store>) -> AppState {
        // A bad file is reported and skipped here; `main` refuses to start on one first.
        let plans = config
            .plan_files
            .iter()
            .filter_map(|(project, source)| match plans::load(source) {
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
            background: Arc::default(),
            report_cache: Arc::default(),
        }
    }
    pub fn now(&self) -> i64 {
        (self.clock)()
    }
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Runs `task` beside the server; it should end soon after [`AppState::stopping`] resolves.
    pub fn spawn_background(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.background.tasks.lock().unwrap_or_else(|p| p.into_inner()).spawn(task);
    }

    /// Resolves once shutdown has begun.
    pub fn stopping(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stop = self.background.stop.subscribe();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    }

    /// Stops taking batches and tells the background tasks to finish.
    pub fn begin_shutdown(&self) {
        self.draining.store(true, Ordering::Relaxed);
        let _ = self.background.stop.send(true);
    }

    /// Waits for every background task to end.
    pub async fn background_finished(&self) {
        let mut tasks = std::mem::take(&mut *self.background.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        while tasks.join_next().await.is_some() {}
    }
}

pub fn system_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/v1/batch", post(ingest::batch).options(ingest::preflight))
        .route("/v1/known", post(ingest::known).options(ingest::preflight))
        .route("/v1/import", post(ingest::import))
        .route("/v1/plan", get(plans::get).put(plans::put))
        .route("/v1/plan/check", post(plans::check))
        .route("/v1/plan/schema", get(plans::schema))
        .route("/v1/plan/versions", get(plans::versions))
        .route("/v1/plan/versions/{number}", get(plans::version_text))
        .route("/v1/plan/rollback", post(plans::rollback))
        .route("/v1/preview", post(preview::mint).get(preview::check))
        .route("/v1/state", get(user_state::get))
        .route("/v1/funnel", get(query::funnel))
        .route("/v1/ttv", get(query::time_to_value))
        .route("/v1/cohorts", get(query::cohorts))
        .route("/v1/tips", get(query::tip_effect))
        .route("/v1/experiments", get(query::experiments))
        .route("/v1/prompts", get(query::prompts))
        .route("/v1/metrics", get(query::seed_metrics))
        .route("/v1/stalled", get(query::stalled))
        .route("/v1/surveys", get(query::surveys))
        .route("/v1/report", get(query::report))
        .route("/v1/health", get(health::api::list))
        .route("/v1/health/compute", post(health::api::compute))
        .route("/v1/health/{kind}/{id}", get(health::api::one))
        .route("/v1/lifecycle", get(health::api::lifecycle))
        .route("/v1/users/{id}", axum::routing::delete(privacy::erase))
        .route("/v1/users/{id}/export", get(privacy::export))
        .merge(static_files(&state.config))
        .merge(probe_routes(state.config.admin_listen.is_none()))
        .layer(axum::middleware::from_fn_with_state(state.clone(), ops::log_requests))
        .with_state(state)
}

/// The SDK bundle, the demo page, the dashboard and the landing page: from the binary (see
/// [`assets`]), or from the directories `--dist` / `--www` name.
fn static_files(config: &Config) -> Router<AppState> {
    let sdk = match &config.dist_dir {
        Some(dir) => Router::new().nest_service("/sdk/v1", ServeDir::new(dir).precompressed_br().precompressed_gzip()),
        None => Router::new().nest_service("/sdk/v1", get(assets::serve::<assets::Sdk>)),
    };
    let sdk = sdk_files::cached_and_shared(sdk);
    let www = match &config.www_dir {
        Some(www) => Router::new()
            .nest_service("/demo", ServeDir::new(www.join("demo")))
            .nest_service("/dashboard", ServeDir::new(www.join("dashboard")))
            .route_service("/", ServeFile::new(www.join("index.html"))),
        None => Router::new()
            .route("/", get(assets::serve::<assets::Www>))
            .route("/demo", get(|| async { axum::response::Redirect::permanent("/demo/") }))
            .route("/dashboard", get(|| async { axum::response::Redirect::permanent("/dashboard/") }))
            .route("/demo/", get(assets::serve::<assets::Www>))
            .route("/demo/{*path}", get(assets::serve::<assets::Www>))
            .route("/dashboard/", get(assets::serve::<assets::Www>))
            .route("/dashboard/{*path}", get(assets::serve::<assets::Www>)),
    };
    sdk.merge(www)
}

/// `/healthz`, `/readyz`, and `/metrics` when `with_metrics` (on the public address it is left
/// out when an admin address serves it).
fn probe_routes(with_metrics: bool) -> Router<AppState> {
    let routes = Router::new().route("/healthz", get(|| async { "ok" })).route("/readyz", get(readyz));
    match with_metrics {
        true => routes.route("/metrics", get(prometheus)),
        false => routes,
    }
}

/// What a connection in the cap's reserve (`on_public_address`: a 503 for anything else) or the
/// admin address (`/metrics` with no token; 404 for anything else) serves.
pub fn probes(state: AppState, on_public_address: bool) -> Router {
    let routes = match on_public_address {
        true => probe_routes(state.config.admin_listen.is_none()),
        false => probe_routes(true),
    };
    let state = match on_public_address {
        true => state,
        // The admin address is trusted: the metrics need no token there.
        false => AppState { config: Arc::new(Config { admin_token: None, ..(*state.config).clone() }), ..state },
    };
    match on_public_address {
        true => routes.fallback(serve::busy).with_state(state),
        false => routes.with_state(state),
    }
}

/// Ready to take traffic: not shutting down, and the store (its writer and its reads) answers.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining".to_string());
    }
    match tokio::time::timeout(Duration::from_secs(2), state.store.ready()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready".to_string()),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}")),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "not ready: the store did not answer within 2 s".to_string()),
    }
}

/// Prometheus metrics. With an admin token configured they need it (`Authorization: Bearer`);
/// on the admin address (`--admin-listen`) they are open.
async fn prometheus(State(state): State<AppState>, headers: HeaderMap) -> axum::response::Response {
    if state.config.admin_token.is_some() {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !state.config.is_global_admin(token) {
            return (StatusCode::UNAUTHORIZED, "the admin token is required (Authorization: Bearer …)\n").into_response();
        }
    }
    let text = state.metrics.render(state.store.queue_depth(), state.is_draining());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Serves until `shutdown` resolves, then stops accepting connections, answers requests already
/// in flight (each batch among them only after its commit) within the drain timeout, and
/// returns. So after a SIGTERM every acknowledged batch is in the store, and every
/// unacknowledged one is the client's to resend. See [`serve`] for the limits.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve::serve(listener, None, state, shutdown).await
}
