//! `onramp-collector rollup rebuild|verify [--project P] [--db FILE | --store URL]`
//!
//! - `rebuild` recomputes the per-device rollups reports read from the stored events (after an
//!   upgrade, a restore, or a plan rename), telling its progress on stderr.
//! - `verify` compares the stored rollups with a recompute and prints every difference, one per
//!   line; it exits 1 when there is any (a healthy store prints none).
//!
//! The store is chosen as the collector chooses it: `--db FILE` / `--store URL`, else
//! `ONRAMP_STORE` / `ONRAMP_DB`, else `onramp.db`. Kept apart from `main` so the command line
//! parser can change without touching what the commands do.

use std::process::ExitCode;
use std::sync::Arc;

use crate::store::clickhouse::ClickHouseStore;
use crate::store::sqlite::SqliteStore;
use crate::store::Store;

pub const USAGE: &str = "usage: onramp-collector rollup rebuild|verify [--project P] [--db FILE | --store URL]";

pub enum Command {
    Rebuild,
    Verify,
}

pub struct Options {
    pub command: Command,
    pub project: Option<String>,
    /// `clickhouse://…`, `sqlite:FILE` or a SQLite file path.
    pub store: String,
}

/// `args` are what follows `rollup` on the command line.
pub fn parse(args: &[String]) -> Result<Options, String> {
    let command = match args.first().map(String::as_str) {
        Some("rebuild") => Command::Rebuild,
        Some("verify") => Command::Verify,
        _ => return Err(USAGE.into()),
    };
    let env = |name: &str| std::env::var(name).ok();
    let mut store = env("ONRAMP_STORE").or_else(|| env("ONRAMP_DB")).unwrap_or_else(|| "onramp.db".into());
    let mut project = None;
    let mut rest = args[1..].iter();
    while let Some(flag) = rest.next() {
        let mut value = || rest.next().cloned().ok_or(format!("{flag} needs a value; {USAGE}"));
        match flag.as_str() {
            "--project" => project = Some(value()?),
            "--db" | "--store" => store = value()?,
            other => return Err(format!("unknown option {other}; {USAGE}")),
        }
    }
    Ok(Options { command, project, store })
}

async fn open(url: &str) -> Result<Arc<dyn Store>, String> {
    if url.starts_with("clickhouse://") {
        Ok(Arc::new(ClickHouseStore::open(url).await.map_err(|e| format!("cannot open {url}: {e}"))?))
    } else {
        let path = url.strip_prefix("sqlite:").unwrap_or(url);
        if !std::path::Path::new(path).exists() {
            return Err(format!("{path}: no such database"));
        }
        Ok(Arc::new(SqliteStore::open(path).map_err(|e| format!("cannot open {path}: {e}"))?))
    }
}

/// A line of progress as a bar, when the line says how far (`…(42%)…`).
fn bar(line: &str) -> String {
    let pct = line.split('(').nth(1).and_then(|s| s.split('%').next()).and_then(|p| p.parse::<usize>().ok());
    match pct {
        Some(p) => format!("[{:<20}] {line}", "#".repeat(p.min(100) / 5)),
        None => line.to_string(),
    }
}

/// Runs `onramp-collector rollup …`.
pub async fn cli(args: &[String]) -> ExitCode {
    let options = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let store = match open(&options.store).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("onramp-collector: {e}");
            return ExitCode::FAILURE;
        }
    };
    let project = options.project.as_deref();
    match options.command {
        Command::Rebuild => {
            let started = std::time::Instant::now();
            match store.rebuild_rollups(project, Box::new(|line| eprintln!("{}", bar(&line)))).await {
                Ok(events) => {
                    println!("rebuilt the rollups of {} from {events} events in {:.1} s", project.unwrap_or("every project"), started.elapsed().as_secs_f64());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("onramp-collector: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Verify => match store.verify_rollups(project).await {
            Ok(differences) if differences.is_empty() => ExitCode::SUCCESS,
            Ok(differences) => {
                for d in &differences {
                    println!("{d}");
                }
                eprintln!("{} differences; `onramp-collector rollup rebuild` recomputes the rollups", differences.len());
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("onramp-collector: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands_and_options() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let o = parse(&args("verify --project acme --db x.db")).expect("parse");
        assert!(matches!(o.command, Command::Verify));
        assert_eq!((o.project.as_deref(), o.store.as_str()), (Some("acme"), "x.db"));
        assert!(parse(&args("rebuild --nope")).is_err());
        assert!(parse(&args("explode")).is_err());
        assert_eq!(bar("rollups: 5/10 events (50%) — demo track a"), "[##########          ] rollups: 5/10 events (50%) — demo track a");
    }
}
