//! Golden tests for plan validation: every example plan in `pkg-config/plans/` is valid, and
//! every broken plan in `tests/plans/broken/` gives exactly the error in its `.err` file.
//! `UPDATE_GOLDEN=1 cargo test --test plans` rewrites the `.err` files (review the diff!).
//! The same plans are checked against `pkg-config/plan.schema.json` with a real JSON Schema
//! validator in `tests/plan-schema.test.mjs`.

use std::path::{Path, PathBuf};

use onramp::core::health::HealthModel;
use onramp::core::plan::{Plan, PlanError};

/// What `plan check` and the collector run: the plan, then its health model (native only).
fn parse(text: &str) -> Result<Plan, PlanError> {
    let plan = Plan::parse(text)?;
    let doc = onramp::core::json::parse(text).map_err(|e| PlanError { pointer: String::new(), problem: e.to_string(), expected: "JSON".into() })?;
    HealthModel::from_plan(&doc)?;
    Ok(plan)
}

fn files(dir: &str, ext: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    out.sort();
    out
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn example_plans_are_valid() {
    let plans = files("pkg-config/plans", "json");
    assert!(plans.len() >= 3, "the three documented examples are there");
    for path in plans {
        if let Err(e) = parse(&read(&path)) {
            panic!("{}: {e}", path.display());
        }
    }
}

#[test]
fn broken_plans_give_their_exact_errors() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let broken = files("tests/plans/broken", "json");
    assert!(broken.len() >= 20);
    let mut failures = Vec::new();
    for path in broken {
        let got = match parse(&read(&path)) {
            Ok(_) => "(accepted)".to_string(),
            Err(e) => e.to_string(),
        };
        let golden = path.with_extension("err");
        if update {
            std::fs::write(&golden, format!("{got}\n")).unwrap_or_else(|e| panic!("{}: {e}", golden.display()));
            continue;
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_default();
        if want.trim_end() != got {
            failures.push(format!("{}:\n  want: {}\n  got:  {got}", path.display(), want.trim_end()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
