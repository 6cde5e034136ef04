//! `onramp-collector [--listen ADDR] [--db FILE | --store URL] [--www DIR] [--dist DIR]
//!                   [--webhook URL [--due m:24h,…] [--stall-scan 60s]] [--plan [PROJECT=]FILE]...`
//! `onramp-collector plan check FILE…`
//! `onramp-collector rollup rebuild|verify [--project P] [--db FILE | --store URL]` (see `rollup`)
//!
//! With no flags: listens on 127.0.0.1:8080, stores events in `onramp.db` (SQLite), and serves
//! the demo project (write key `wk_demo`, read token `rt_demo`). `--store
//! clickhouse://HOST:PORT/DB` stores them in ClickHouse instead (docs/SCALING.md); `--store
//! sqlite:FILE` is the same as `--db FILE`.
//!
//! Projects: `--config FILE` (JSON, see `config`) and/or `--project ID:WRITE_KEY:READ_TOKEN:ORIGINS`
//! (repeatable; ORIGINS comma-separated, `*` for any); without either, the demo project.
//! `--rate-limit N`: requests per second per write key (burst 2N). `--quiet`: no request log
//! (one JSON line per request on stderr otherwise).
//!
//! Each flag may also be given as an environment variable: ONRAMP_LISTEN, ONRAMP_DB,
//! ONRAMP_STORE, ONRAMP_WWW, ONRAMP_DIST, ONRAMP_CONFIG, ONRAMP_PROJECTS (projects separated by
//! `;`), ONRAMP_RATE_LIMIT, ONRAMP_QUIET=1. Flags override the environment; the file is read
//! first, so `--project` adds to it.
//!
//! `--plan [PROJECT=]FILE` (repeatable; PROJECT defaults to the first project) is a project's
//! onboarding plan: validated and stored at start, so it replaces a stored plan (a bad plan stops
//! the collector with its error). Without it the demo project is served the repository's demo plan
//! until a plan is stored with `PUT /v1/plan`. Environment: ONRAMP_PLAN (one FILE).
//!
//! `onramp-collector plan check FILE…` validates plan files with the SDK's own validator and exits
//! non-zero if any is invalid.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use onramp_collector::analytics::stalled::parse_due;
use onramp_collector::analytics::time::parse_duration;
use onramp_collector::store::clickhouse::ClickHouseStore;
use onramp_collector::store::sqlite::SqliteStore;
use onramp_collector::store::Store;
use onramp_collector::config::RateLimit;
use onramp_collector::webhook::Webhook;
use onramp_collector::{AppState, Config, Project};

/// Where events are stored.
enum StoreChoice {
    Sqlite(PathBuf),
    ClickHouse(String),
}

impl StoreChoice {
    fn parse(url: &str) -> StoreChoice {
        if url.starts_with("clickhouse://") {
            StoreChoice::ClickHouse(url.into())
        } else {
            StoreChoice::Sqlite(url.strip_prefix("sqlite:").unwrap_or(url).into())
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

struct Args {
    webhook: Option<Webhook>,
    listen: String,
    store: StoreChoice,
    config: Config,
    quiet: bool,
    /// Plan files given explicitly (project id, path): stored at start.
    plans: Vec<(String, PathBuf)>,
}

/// `ID:WRITE_KEY:READ_TOKEN:ORIGINS`.
fn parse_project(spec: &str) -> Result<Project, String> {
    let parts: Vec<&str> = spec.splitn(4, ':').collect();
    match parts.as_slice() {
        [id, wk, rt, origins] if !id.is_empty() && !wk.is_empty() && !rt.is_empty() => Ok(Project {
            id: (*id).into(),
            write_key: (*wk).into(),
            read_token: (*rt).into(),
            allowed_origins: origins.split(',').filter(|o| !o.is_empty()).map(String::from).collect(),
            admin_token: None,
        }),
        _ => Err(format!("--project {spec}: expected ID:WRITE_KEY:READ_TOKEN:ORIGINS")),
    }
}

fn parse_args() -> Result<Args, String> {
    let env = |name: &str| std::env::var(name).ok();
    let mut config = Config::for_repository();
    let mut listen = env("ONRAMP_LISTEN").unwrap_or_else(|| "127.0.0.1:8080".into());
    let mut store = match env("ONRAMP_STORE") {
        Some(url) => StoreChoice::parse(&url),
        None => StoreChoice::Sqlite(env("ONRAMP_DB").unwrap_or_else(|| "onramp.db".into()).into()),
    };
    if let Some(dir) = env("ONRAMP_WWW") {
        config.www_dir = dir.into();
    }
    if let Some(dir) = env("ONRAMP_DIST") {
        config.dist_dir = dir.into();
    }
    let mut config_file = env("ONRAMP_CONFIG").map(PathBuf::from);
    let mut projects: Vec<Project> = Vec::new();
    for spec in env("ONRAMP_PROJECTS").unwrap_or_default().split(';').filter(|s| !s.is_empty()) {
        projects.push(parse_project(spec)?);
    }
    let mut rate_limit = env("ONRAMP_RATE_LIMIT");
    let mut quiet = env("ONRAMP_QUIET").is_some_and(|v| v == "1");
    let (mut webhook, mut due, mut scan) = (None, Vec::new(), std::time::Duration::from_secs(60));
    let mut plan_specs: Vec<String> = env("ONRAMP_PLAN").into_iter().collect();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--config" => config_file = Some(value()?.into()),
            "--project" => projects.push(parse_project(&value()?)?),
            "--rate-limit" => rate_limit = Some(value()?),
            "--quiet" => quiet = true,
            "--listen" => listen = value()?,
            "--db" => store = StoreChoice::Sqlite(value()?.into()),
            "--store" => store = StoreChoice::parse(&value()?),
            "--www" => config.www_dir = value()?.into(),
            "--dist" => config.dist_dir = value()?.into(),
            "--webhook" => webhook = Some(value()?),
            "--due" => due = parse_due(&value()?).map_err(|e| format!("--due: {e}"))?,
            "--stall-scan" => {
                let text = value()?;
                let ms = parse_duration(&text).filter(|ms| *ms > 0).ok_or(format!("--stall-scan: {text:?} is not a duration such as 60s"))?;
                scan = std::time::Duration::from_millis(ms as u64);
            }
            "--plan" => plan_specs.push(value()?),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if let Some(path) = config_file {
        config.load_file(&path)?;
    }
    if !projects.is_empty() {
        // Flags add to the file's projects, or replace the demo project when there is no file.
        if config.projects == vec![Config::demo_project()] {
            config.projects.clear();
        }
        config.projects.extend(projects);
    }
    if let Some(n) = rate_limit {
        let n: f64 = n.parse().ok().filter(|n: &f64| *n > 0.0).ok_or(format!("--rate-limit {n}: expected a positive number"))?;
        config.rate_limit = RateLimit { per_second: n, burst: (2.0 * n).max(1.0) };
    }
    let webhook = webhook.map(|url| Webhook::new(&url, due, scan)).transpose()?;
    let mut plans = Vec::new();
    for spec in plan_specs {
        let (project, path) = match spec.split_once('=') {
            Some((project, path)) => (project.to_string(), path),
            None => (config.projects.first().map(|p| p.id.clone()).unwrap_or_default(), spec.as_str()),
        };
        if !config.projects.iter().any(|p| p.id == project) {
            return Err(format!("--plan {spec}: no project {project:?}"));
        }
        config.plan_files.retain(|(p, _)| *p != project);
        config.plan_files.push((project.clone(), path.into()));
        plans.push((project, PathBuf::from(path)));
    }
    Ok(Args { webhook, listen, store, config, quiet, plans })
}

const USAGE: &str = "usage: onramp-collector [--listen ADDR] [--db FILE | --store clickhouse://HOST:PORT/DB] \
[--www DIR] [--dist DIR] [--config FILE] [--project ID:WRITE_KEY:READ_TOKEN:ORIGINS]... [--rate-limit N] [--quiet] \
[--webhook http://HOST/PATH [--due milestone:24h,…] [--stall-scan 60s]] [--plan [PROJECT=]FILE]...
       onramp-collector plan check FILE...";

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
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("rollup") {
        return onramp_collector::rollup::cli(&argv[1..]).await;
    }
    if argv.first().map(String::as_str) == Some("plan") {
        return match argv.get(1).map(String::as_str) {
            Some("check") if onramp_collector::plans::check_files(&argv[2..]) => ExitCode::SUCCESS,
            Some("check") => ExitCode::FAILURE,
            _ => {
                eprintln!("{USAGE}");
                ExitCode::from(2)
            }
        };
    }
    let args = match parse_args() {
        Ok(a) => a,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let store = match args.store.open().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("onramp-collector: {e}");
            return ExitCode::FAILURE;
        }
    };
    // A bad plan stops the start, before anything listens.
    for (_, path) in &args.config.plan_files {
        if let Err(e) = onramp_collector::plans::load_file(path) {
            eprintln!("onramp-collector: {e}");
            return ExitCode::FAILURE;
        }
    }
    let listener = match tokio::net::TcpListener::bind(&args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("onramp-collector: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or(args.listen);
    println!("onramp-collector listening on http://{addr} ({})", args.store.describe());
    let mut state = AppState::new(args.config, store);
    state.log_requests = !args.quiet;
    if let Some(hook) = args.webhook {
        tokio::spawn(onramp_collector::webhook::scan_loop(state.clone(), hook.clone()));
        state.webhook = Some(Arc::new(hook));
    }
    for (project, path) in &args.plans {
        let Some(plan) = state.plans.get(project) else { continue };
        // A store that keeps no plans still serves the file (the fallback); say so, go on.
        if let Err(e) = state.store.put_plan(project, plan.text.clone(), &plan.plan.version, state.now()).await {
            eprintln!("onramp-collector: plan {} not stored ({e}); serving it from the file", path.display());
        }
    }
    match onramp_collector::run(listener, state, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("onramp-collector: {e}");
            ExitCode::FAILURE
        }
    }
}
