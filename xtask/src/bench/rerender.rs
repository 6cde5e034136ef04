//! Section 2b of `cargo xtask bench`: the main-thread cost of re-rendering 1 000 list rows with and
//! without onramp following a tip's target among them (`bench/rerender.mjs` measures, this
//! writes the rows).

use std::process::Command;

use super::{bench_dir, capture, fresh_db, key_values, num, root, Collector, Result, Table};

pub fn section(table: &mut Table) -> Result {
    table.section("2b. Re-rendering host pages (headless Chromium, Performance metrics of the DevTools protocol)");
    let collector = Collector::start(&fresh_db("rerender.db")?)?;
    let mut node = Command::new("node");
    node.arg(bench_dir().join("rerender.mjs")).env("BENCH_COLLECTOR", &collector.url).current_dir(root());
    let kv = key_values(&capture(table, &mut node)?);
    drop(collector);
    let get = |k: &str| kv.get(k).cloned().unwrap_or_else(|| "?".into());
    let (none, tip) = (num(&kv, "rerender_none_ms"), num(&kv, "rerender_tip_ms"));
    table.row(
        &format!(
            "main-thread CPU time per re-render of {} list rows, all replaced (median of {} loads × {} re-renders)",
            get("rerender_rows"),
            get("rerender_runs"),
            get("rerender_count")
        ),
        &format!(
            "{} ms with a tooltip following a replaced row ({} layouts; task wall time {} ms); {} ms with the SDK and no anchored tip ({} layouts)",
            get("rerender_tip_ms"),
            get("layouts_tip"),
            get("rerender_tip_wall_ms"),
            get("rerender_idle_ms"),
            get("layouts_idle")
        ),
        &format!(
            "without onramp: {} ms ({} layouts; task wall time {} ms); tip beside its new target after every run: {}",
            get("rerender_none_ms"),
            get("layouts_none"),
            get("rerender_none_wall_ms"),
            get("followed")
        ),
        "≤ 10 % over the page alone, no extra layout",
        match (none, tip, num(&kv, "layouts_tip"), num(&kv, "layouts_none")) {
            (Some(n), Some(t), Some(lt), Some(ln)) => Some(t <= n * 1.1 && lt <= ln + 0.05 && get("followed") == "yes"),
            _ => None,
        },
    );
    Ok(())
}
