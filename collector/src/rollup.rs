//! `onramp-collector rollup rebuild|verify [--project P] [--db FILE | --store URL]`
//!
//! - `rebuild` recomputes the per-device rollups reports read from the stored events (after an
//!   upgrade, a restore, or a plan rename), telling its progress on stderr.
//! - `verify` compares the stored rollups with a recompute and prints every difference, one per
//!   line; it exits 1 when there is any (a healthy store prints none).
//!
//! The store is chosen as the collector chooses it (`--db FILE` / `--store URL`, or their
//! environment variables); `main` parses the command line and calls [`rebuild`] or [`verify`].

use std::process::ExitCode;

use crate::store::Store;

/// A line of progress as a bar, when the line says how far (`…(42%)…`).
fn bar(line: &str) -> String {
    let pct = line.split('(').nth(1).and_then(|s| s.split('%').next()).and_then(|p| p.parse::<usize>().ok());
    match pct {
        Some(p) => format!("[{:<20}] {line}", "#".repeat(p.min(100) / 5)),
        None => line.to_string(),
    }
}

/// `rollup rebuild`: recomputes `project`'s rollups (every project's when `None`).
pub async fn rebuild(store: &dyn Store, project: Option<&str>) -> ExitCode {
    let started = std::time::Instant::now();
    match store.rebuild_rollups(project, Box::new(|line| eprintln!("{}", bar(&line)))).await {
        Ok(events) => {
            let whose = project.unwrap_or("every project");
            println!("rebuilt the rollups of {whose} from {events} events in {:.1} s", started.elapsed().as_secs_f64());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("onramp-collector: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `rollup verify`: prints every difference between the stored rollups and a recompute.
pub async fn verify(store: &dyn Store, project: Option<&str>) -> ExitCode {
    match store.verify_rollups(project).await {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_with_a_percentage_is_drawn_as_a_bar() {
        assert_eq!(bar("rollups: 5/10 events (50%) — demo track a"), "[##########          ] rollups: 5/10 events (50%) — demo track a");
        assert_eq!(bar("rollups: starting"), "rollups: starting");
    }
}
