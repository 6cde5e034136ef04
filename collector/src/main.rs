//! `onramp-collector [--listen ADDR] [--db FILE] [--www DIR] [--dist DIR]`
//!
//! With no flags: listens on 127.0.0.1:8080, stores events in `onramp.db` (SQLite), and serves
//! the demo project (write key `wk_demo`, read token `rt_demo`). Each flag may also be given as
//! an environment variable: ONRAMP_LISTEN, ONRAMP_DB, ONRAMP_WWW, ONRAMP_DIST.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use onramp_collector::store::sqlite::SqliteStore;
use onramp_collector::{AppState, Config};

struct Args {
    listen: String,
    db: PathBuf,
    config: Config,
}

fn parse_args() -> Result<Args, String> {
    let env = |name: &str| std::env::var(name).ok();
    let mut config = Config::for_repository();
    let mut listen = env("ONRAMP_LISTEN").unwrap_or_else(|| "127.0.0.1:8080".into());
    let mut db = PathBuf::from(env("ONRAMP_DB").unwrap_or_else(|| "onramp.db".into()));
    if let Some(dir) = env("ONRAMP_WWW") {
        config.www_dir = dir.into();
    }
    if let Some(dir) = env("ONRAMP_DIST") {
        config.dist_dir = dir.into();
    }
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => listen = value()?,
            "--db" => db = value()?.into(),
            "--www" => config.www_dir = value()?.into(),
            "--dist" => config.dist_dir = value()?.into(),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(Args { listen, db, config })
}

const USAGE: &str = "usage: onramp-collector [--listen ADDR] [--db FILE] [--www DIR] [--dist DIR]";

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
    let args = match parse_args() {
        Ok(a) => a,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let store = match SqliteStore::open(&args.db) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("onramp-collector: cannot open {}: {e}", args.db.display());
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
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or(args.listen);
    println!("onramp-collector listening on http://{addr} (SQLite: {})", args.db.display());
    let state = AppState::new(args.config, Arc::new(store));
    match onramp_collector::run(listener, state, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("onramp-collector: {e}");
            ExitCode::FAILURE
        }
    }
}
