//! The `onramp-collector` binary: parses flags (each with an environment fallback; a flag wins
//! over its variable), then serves, or runs one of the subcommands. `onramp-collector --help`
//! lists everything; the README's operator section explains it.
//!
//! With no flags: listens on 127.0.0.1:8080, stores events in `onramp.db` (SQLite), serves the
//! demo project (write key `wk_demo`, read token `rt_demo`) with its plan, and serves the SDK
//! bundle, dashboard and demo page compiled into the binary.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use onramp_collector::analytics::stalled::{parse_due, Due};
use onramp_collector::analytics::time::parse_duration;
use onramp_collector::config::{PlanSource, RateLimit};
use onramp_collector::serve::Limits;
use onramp_collector::store::clickhouse::ClickHouseStore;
use onramp_collector::store::sqlite::SqliteStore;
use onramp_collector::store::Store;
use onramp_collector::webhook::Webhook;
use onramp_collector::{AppState, Config, Project};

#[derive(Parser)]
#[command(name = "onramp-collector", version, about = "Receives onramp event batches, stores them, and answers milestone-funnel queries.")]
// A flag given twice takes its last value (scripts append overrides to a base command line);
// repeatable flags (`--project`, `--plan`) still collect every value.
#[command(args_override_self = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    serve: ServeArgs,
}

/// Without a subcommand the collector serves. Subcommands are one-off operations; those that
/// touch stored data act on the store (`--db` / `--store`) directly, so they need access to the
/// database itself, which is an operator's.
#[derive(Subcommand)]
enum Command {
    /// Onboarding plan files.
    #[command(subcommand)]
    Plan(PlanCommand),
    /// A user's stored data: erase it (GDPR art. 17) or export it as JSON (art. 15).
    #[command(subcommand)]
    Users(UsersCommand),
    /// The per-user rollups reports read: recompute them, or compare them with a recompute.
    #[command(subcommand)]
    Rollup(RollupCommand),
    /// A consistent copy of the SQLite database, taken while the collector runs.
    Backup {
        /// Where to write the copy (must not exist).
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Erase a user's events, identity links and derived rows.
    Delete {
        /// The user id (or, for a visitor never identified, the anonymous id).
        user: String,
        #[arg(long, value_name = "ID")]
        project: String,
    },
    /// Print everything stored about a user as JSON.
    Export {
        user: String,
        #[arg(long, value_name = "ID")]
        project: String,
    },
}

#[derive(Subcommand)]
enum RollupCommand {
    /// Recompute the rollups from the stored events (after an upgrade, a restore or a plan
    /// rename), with progress on stderr.
    Rebuild {
        /// Only this project (default: every project).
        #[arg(long, value_name = "ID")]
        project: Option<String>,
    },
    /// Compare the stored rollups with a recompute and print every difference; exits 1 if any.
    Verify {
        /// Only this project (default: every project).
        #[arg(long, value_name = "ID")]
        project: Option<String>,
    },
}

#[derive(Subcommand)]
enum PlanCommand {
    /// Validate plan files with the SDK's own validator; exits non-zero if any is invalid.
    Check {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

/// Where events are stored; shared by serving and the subcommands that open the store.
#[derive(Args)]
struct StoreArgs {
    /// SQLite database file.
    #[arg(long, global = true, env = "ONRAMP_DB", value_name = "FILE", default_value = "onramp.db")]
    db: PathBuf,
    /// Store URL instead of --db: `clickhouse://HOST:PORT/DB[?cluster=NAME&nodes=HOST:PORT,…]`
    /// (docs/SCALING.md) or `sqlite:FILE`. Wins over --db.
    #[arg(long, global = true, env = "ONRAMP_STORE", value_name = "URL")]
    store: Option<String>,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to serve the API, SDK, dashboard and demo on.
    #[arg(long, env = "ONRAMP_LISTEN", value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Projects file (JSON: projects with write keys, read tokens, allowed origins; rate limit;
    /// admin token). Without it and without --project, the demo project.
    #[arg(long, env = "ONRAMP_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// A project, added to the file's (repeatable; ORIGINS comma-separated, `*` for any). In the
    /// environment, several separated by `;`.
    #[arg(long = "project", env = "ONRAMP_PROJECTS", value_name = "ID:WRITE_KEY:READ_TOKEN:ORIGINS", value_delimiter = ';')]
    projects: Vec<String>,
    /// Who may change a project's plan (repeatable): an editor token named NAME (the version
    /// history's author). In the environment, several separated by `;`.
    #[arg(long = "editor", env = "ONRAMP_EDITORS", value_name = "PROJECT:NAME:TOKEN", value_delimiter = ';', hide_env_values = true)]
    editors: Vec<String>,
    /// A project's onboarding plan (repeatable; PROJECT defaults to the first project), validated
    /// and stored at start. Without a plan `GET /v1/plan` answers 204 and the SDK shows nothing.
    #[arg(long = "plan", env = "ONRAMP_PLAN", value_name = "[PROJECT=]FILE")]
    plans: Vec<String>,
    /// Requests per second per write key (burst twice that); default 200.
    #[arg(long, env = "ONRAMP_RATE_LIMIT", value_name = "N")]
    rate_limit: Option<f64>,
    /// The global admin token: privacy operations, imports, and /metrics (see the README).
    #[arg(long, env = "ONRAMP_ADMIN_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// No request log (one JSON line per request on stderr otherwise).
    #[arg(long, env = "ONRAMP_QUIET", value_parser = clap::builder::FalseyValueParser::new())]
    quiet: bool,
    /// Do not keep each project's default dashboard view computed in the background while its
    /// data is quiet (a report's CPU a minute; the first open then computes it).
    #[arg(long, env = "ONRAMP_NO_WARM", value_parser = clap::builder::FalseyValueParser::new())]
    no_warm: bool,
    /// Serve the SDK bundle from this directory instead of the copy in the binary.
    #[arg(long, env = "ONRAMP_DIST", value_name = "DIR")]
    dist: Option<PathBuf>,
    /// Serve the dashboard and demo (a `www/` directory) from here instead of the binary.
    #[arg(long, env = "ONRAMP_WWW", value_name = "DIR")]
    www: Option<PathBuf>,
    /// POST `value_reached` and `user_stalled` events to this URL.
    #[arg(long, env = "ONRAMP_WEBHOOK", value_name = "URL")]
    webhook: Option<String>,
    /// Due windows for stall alerts in projects whose plan gives none, e.g. `invited:24h,upload:3d`.
    #[arg(long, env = "ONRAMP_DUE", value_name = "MILESTONE:DURATION,…", value_parser = due_list)]
    due: Option<DueList>,
    /// Let the webhook reach loopback and private addresses (a relay on the same host or
    /// network); refused otherwise.
    #[arg(long, env = "ONRAMP_WEBHOOK_ALLOW_PRIVATE", value_parser = clap::builder::FalseyValueParser::new())]
    webhook_allow_private: bool,
    /// How often to scan for newly stalled users.
    #[arg(long, env = "ONRAMP_STALL_SCAN", value_name = "DURATION", default_value = "60s", value_parser = duration)]
    stall_scan: Duration,
    /// Serve /healthz, /readyz and /metrics (without a token) on this address too, and not
    /// /metrics on --listen.
    #[arg(long, env = "ONRAMP_ADMIN_LISTEN", value_name = "ADDR")]
    admin_listen: Option<String>,
    /// A request's headers must arrive within this time; keep-alive connections idle this long
    /// are closed.
    #[arg(long, env = "ONRAMP_HEADER_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = duration)]
    header_timeout: Duration,
    /// A request's body must arrive whole within this time (else 408).
    #[arg(long, env = "ONRAMP_BODY_TIMEOUT", value_name = "DURATION", default_value = "30s", value_parser = duration)]
    body_timeout: Duration,
    /// Open connections at most; the last few are kept for health probes. Default: the
    /// open-file limit (raised to its hard limit at start) less 64, at most 16384.
    #[arg(long, env = "ONRAMP_MAX_CONNECTIONS", value_name = "N")]
    max_connections: Option<usize>,
    /// On SIGTERM, how long requests in flight and background work may take before the
    /// collector exits anyway.
    #[arg(long, env = "ONRAMP_DRAIN_TIMEOUT", value_name = "DURATION", default_value = "20s", value_parser = duration)]
    drain_timeout: Duration,
}

/// Raises the soft open-file limit to the hard one and leaves room for the store's files.
fn default_max_connections() -> usize {
    let soft = rlimit::increase_nofile_limit(65_536).unwrap_or(1024);
    (soft as usize).saturating_sub(64).clamp(16, 16_384)
}

/// `60s`, `5m`, `2h`, `7d`, `500ms`.
fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text)
        .filter(|ms| *ms > 0)
        .map(|ms| Duration::from_millis(ms as u64))
        .ok_or(format!("{text:?} is not a duration such as 60s"))
}

#[derive(Clone)]
struct DueList(Vec<Due>);

fn due_list(text: &str) -> Result<DueList, String> {
    parse_due(text).map(DueList)
}

/// Where events are stored.
enum StoreChoice {
    Sqlite(PathBuf),
    ClickHouse(String),
}

impl StoreChoice {
    fn from_args(args: &StoreArgs) -> StoreChoice {
        match &args.store {
            Some(url) if url.starts_with("clickhouse://") => StoreChoice::ClickHouse(url.clone()),
            Some(url) => StoreChoice::Sqlite(url.strip_prefix("sqlite:").unwrap_or(url).into()),
            None => StoreChoice::Sqlite(args.db.clone()),
        }
    }

    async fn open(&self) -> Result<Arc<dyn Store>, String> {
        match self {
            StoreChoice::Sqlite(path) => match SqliteStore::open(path) {
                Ok(s) => Ok(Arc::new(s)),
                Err(e) => Err(format!("cannot open {}: {e}", path.display())),
            },
            StoreChoice::ClickHouse(url) => match ClickHouseStore::open(url).await {
                Ok(s) => Ok(Arc::new(s)),
                Err(e) => Err(format!("cannot open {url}: {e}")),
            },
        }
    }

    fn describe(&self) -> String {
        match self {
            StoreChoice::Sqlite(path) => format!("SQLite: {}", path.display()),
            StoreChoice::ClickHouse(url) => format!("ClickHouse: {url}"),
        }
    }
}

/// `ID:WRITE_KEY:READ_TOKEN:ORIGINS`.
fn parse_project(spec: &str) -> Result<Project, String> {
    let parts: Vec<&str> = spec.splitn(4, ':').collect();
    match parts.as_slice() {
        [id, wk, rt, origins] if !id.is_empty() && !wk.is_empty() && !rt.is_empty() => Ok(Project::new(
            id,
            wk,
            rt,
            origins.split(',').filter(|o| !o.is_empty()).map(String::from).collect(),
        )),
        _ => Err(format!("--project {spec}: expected ID:WRITE_KEY:READ_TOKEN:ORIGINS")),
    }
}

/// The configuration the flags describe: the file first, then the flags on top.
fn config(args: &ServeArgs) -> Result<Config, String> {
    let mut config = Config::default();
    config.www_dir = args.www.clone();
    config.dist_dir = args.dist.clone();
    if let Some(path) = &args.config {
        config.load_file(path)?;
        // A configured collector serves its own projects, not the demo's plan.
        config.plan_files.clear();
    }
    let projects = args.projects.iter().filter(|s| !s.is_empty()).map(|s| parse_project(s)).collect::<Result<Vec<_>, _>>()?;
    if !projects.is_empty() {
        // Flags add to the file's projects, or replace the demo project when there is no file.
        if config.projects == vec![Config::demo_project()] {
            config.projects.clear();
            config.plan_files.clear();
        }
        config.projects.extend(projects);
    }
    for spec in args.editors.iter().filter(|s| !s.is_empty()) {
        let usage = || format!("--editor {spec}: expected PROJECT:NAME:TOKEN");
        let mut parts = spec.splitn(3, ':');
        let (Some(id), Some(name), Some(token)) = (parts.next(), parts.next(), parts.next()) else { return Err(usage()) };
        let project = config.projects.iter_mut().find(|p| p.id == id).ok_or_else(|| format!("--editor {spec}: no project {id:?}"))?;
        if name.is_empty() || token.is_empty() || token == project.read_token || token == project.write_key {
            return Err(format!("{}; the token must be its own (not the read token or write key)", usage()));
        }
        project.editor_tokens.insert(name.into(), token.into());
    }
    if let Some(n) = args.rate_limit {
        if !(n > 0.0) {
            return Err(format!("--rate-limit {n}: expected a positive number"));
        }
        config.rate_limit = RateLimit { per_second: n, burst: (2.0 * n).max(1.0) };
    }
    if args.admin_token.is_some() {
        config.admin_token = args.admin_token.clone();
    }
    config.admin_listen = args.admin_listen.clone();
    config.limits = Limits {
        header_timeout: args.header_timeout,
        body_timeout: args.body_timeout,
        max_connections: match args.max_connections {
            Some(0) => return Err("--max-connections: at least 1".into()),
            Some(n) => n,
            None => default_max_connections(),
        },
        drain_timeout: args.drain_timeout,
    };
    for spec in &args.plans {
        let (project, path) = match spec.split_once('=') {
            Some((project, path)) => (project.to_string(), path),
            None => (config.projects.first().map(|p| p.id.clone()).unwrap_or_default(), spec.as_str()),
        };
        if !config.projects.iter().any(|p| p.id == project) {
            return Err(format!("--plan {spec}: no project {project:?}"));
        }
        config.plan_files.retain(|(p, _)| *p != project);
        config.plan_files.push((project, PlanSource::File(path.into())));
    }
    Ok(config)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Plan(PlanCommand::Check { files })) => match onramp_collector::plans::check_files(&files) {
            true => ExitCode::SUCCESS,
            false => ExitCode::FAILURE,
        },
        Some(Command::Users(command)) => users(&cli.store, command).await,
        Some(Command::Rollup(command)) => rollup(&cli.store, command).await,
        Some(Command::Backup { file }) => match StoreChoice::from_args(&cli.store) {
            StoreChoice::Sqlite(db) => match onramp_collector::store::sqlite::backup(&db, &file) {
                Ok(()) => {
                    println!("backed up {} to {}", db.display(), file.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("onramp-collector backup: {e}");
                    ExitCode::FAILURE
                }
            },
            StoreChoice::ClickHouse(_) => {
                eprintln!("onramp-collector backup: for ClickHouse use its own BACKUP or clickhouse-backup (docs/SCALING.md)");
                ExitCode::from(2)
            }
        },
        None => serve(cli.store, cli.serve).await,
    }
}

async fn rollup(store_args: &StoreArgs, command: RollupCommand) -> ExitCode {
    let choice = StoreChoice::from_args(store_args);
    // Checking must not create an empty database where the operator mistyped a path.
    if let StoreChoice::Sqlite(path) = &choice {
        if !path.exists() {
            eprintln!("onramp-collector: {}: no such database", path.display());
            return ExitCode::FAILURE;
        }
    }
    let store = match choice.open().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("onramp-collector: {e}");
            return ExitCode::FAILURE;
        }
    };
    match command {
        RollupCommand::Rebuild { project } => onramp_collector::rollup::rebuild(&*store, project.as_deref()).await,
        RollupCommand::Verify { project } => onramp_collector::rollup::verify(&*store, project.as_deref()).await,
    }
}

async fn users(store_args: &StoreArgs, command: UsersCommand) -> ExitCode {
    let store = match StoreChoice::from_args(store_args).open().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("onramp-collector: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match command {
        UsersCommand::Delete { user, project } => store
            .erase_user(&project, &user)
            .await
            .map(|n| format!("erased {user} of {project}: {n} events, identity links and derived rows"))
            .map_err(|e| e.to_string()),
        UsersCommand::Export { user, project } => {
            onramp_collector::privacy::export_from(store.as_ref(), &project, &user, onramp_collector::system_now_ms())
                .await
                .map(|doc| doc.to_string())
        }
    };
    match result {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("onramp-collector: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(store_args: StoreArgs, args: ServeArgs) -> ExitCode {
    let config = match config(&args) {
        Ok(c) => c,
        Err(message) => {
            eprintln!("onramp-collector: {message}");
            return ExitCode::from(2);
        }
    };
    let webhook = match &args.webhook {
        Some(url) => match Webhook::new(url, args.due.clone().map(|d| d.0).unwrap_or_default(), args.stall_scan) {
            Ok(mut hook) => {
                hook.allow_private = args.webhook_allow_private;
                Some(Arc::new(hook))
            }
            Err(e) => {
                eprintln!("onramp-collector: {e}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    // A bad plan stops the start, before anything listens.
    for (_, source) in &config.plan_files {
        if let Err(e) = onramp_collector::plans::load(source) {
            eprintln!("onramp-collector: {e}");
            return ExitCode::FAILURE;
        }
    }
    let choice = StoreChoice::from_args(&store_args);
    let store = match choice.open().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("onramp-collector: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(&args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("onramp-collector: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or(args.listen.clone());
    let admin = match &args.admin_listen {
        Some(admin_addr) => match tokio::net::TcpListener::bind(admin_addr).await {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("onramp-collector: cannot listen on {admin_addr}: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let explicit_plans: Vec<(String, PathBuf)> = config
        .plan_files
        .iter()
        .filter_map(|(p, s)| match s {
            PlanSource::File(path) => Some((p.clone(), path.clone())),
            PlanSource::Demo => None,
        })
        .collect();
    let mut state = AppState::new(config, store);
    state.log_requests = !args.quiet;
    if let Some(hook) = webhook {
        state.webhook = Some(hook.clone());
        state.spawn_background(onramp_collector::webhook::scan_loop(state.clone(), hook.clone()));
        state.spawn_background(onramp_collector::webhook::delivery_loop(state.clone(), hook));
        for p in state.config.projects.iter().filter(|p| p.webhook_secret.is_none()) {
            eprintln!("onramp-collector: project {:?} has no webhookSecret: its webhook requests go unsigned", p.id);
        }
    }
    // Customer health on each plan's schedule (default hourly; docs/HEALTH.md).
    state.spawn_background(onramp_collector::health::schedule_loop(state.clone()));
    // Each project's default dashboard view kept computed while its data is quiet.
    if !args.no_warm {
        state.spawn_background(onramp_collector::query::warm_loop(state.clone()));
    }
    if state.config.projects.iter().any(|p| p.retention_days.is_some()) {
        state.spawn_background(onramp_collector::privacy::retention_loop(state.clone()));
    }
    for (project, path) in &explicit_plans {
        let Some(plan) = state.plans.get(project) else { continue };
        // A store that keeps no plans still serves the file (the fallback); say so, go on.
        if let Err(e) = onramp_collector::plans::publish_file(&state, project, path, plan).await {
            eprintln!("onramp-collector: plan {} not stored ({e}); serving it from the file", path.display());
        }
    }
    startup_warnings(&state).await;
    if let Some(admin) = admin.as_ref().and_then(|a| a.local_addr().ok()) {
        println!("onramp-collector admin (probes, metrics) on http://{admin}");
    }
    println!("onramp-collector listening on http://{addr} ({})", choice.describe());
    match onramp_collector::serve::serve(listener, admin, state, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("onramp-collector: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What a new operator would otherwise find out from a silent page.
async fn startup_warnings(state: &AppState) {
    for project in &state.config.projects {
        let stored = state.store.plan(&project.id).await.ok().flatten().is_some();
        if !stored && !state.plans.contains_key(&project.id) {
            eprintln!(
                "onramp-collector: project {:?} has no plan: GET /v1/plan answers 204 and the SDK shows no tips \
                 and detects no milestones. Start with --plan {}=FILE (see docs/PLANS.md) or PUT /v1/plan.",
                project.id, project.id
            );
        }
    }
    if state.config.dist_dir.is_none() && !onramp_collector::assets::sdk_embedded() {
        eprintln!(
            "onramp-collector: this binary was built without the SDK bundle, so /sdk/v1/ answers 404; \
             build it with `cargo xtask build` (or serve a bundle with --dist DIR)."
        );
    }
}
