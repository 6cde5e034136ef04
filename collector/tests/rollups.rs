//! The SQLite store's rollups: maintained at ingest, checked by `onramp-collector rollup verify`,
//! recomputed by `rollup rebuild`, and built by the migration for a database that predates them.
//! The commands run as the real binary on the real file.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use common::history::{history, NOW};
use common::{post, serve_with_clock};
use onramp_collector::store::sqlite::SqliteStore;

/// Runs `onramp-collector rollup ARGS --db DB`: (exit code, stdout).
fn rollup(args: &str, db: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_onramp-collector"))
        .arg("rollup")
        .args(args.split_whitespace())
        .arg("--db")
        .arg(db)
        .output()
        .expect("run onramp-collector");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn report(db: &Path) -> String {
    let c = serve_with_clock(Arc::new(SqliteStore::open(db).expect("open")), Some(NOW)).await;
    let r = reqwest::Client::new()
        .get(format!("{}/v1/report?due=project_created:24h,file_uploaded:3d", c.url))
        .bearer_auth("rt_demo")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    r.text().await.expect("body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_match_a_recompute_and_are_rebuilt_and_migrated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("r.db");
    {
        let c = serve_with_clock(Arc::new(SqliteStore::open(&db).expect("open")), Some(NOW)).await;
        // Resends, second devices, identifies after anonymous events: maintained at ingest.
        for body in history(0..200, 11) {
            assert_eq!(post(&c.url, body).await.status(), 200);
        }
    }
    assert_eq!(rollup("verify", &db), (0, String::new()), "ingest kept the rollups equal to a recompute");
    let answer = report(&db).await;
    let parsed: serde_json::Value = serde_json::from_str(&answer).expect("json");
    let (users, visitors) = (parsed["funnel"]["users"].as_u64().unwrap_or(0), parsed["visitors"].as_u64().unwrap_or(0));
    assert!(users > 100 && visitors > 0 && users + visitors == 200, "users and visitors who never identified, apart: {answer:.300}");
    assert!(parsed["traits"]["plan"].is_array(), "traits from the rollup: {answer:.300}");

    // Damage two rows: verify names them, rebuild repairs them.
    let conn = rusqlite::Connection::open(&db).expect("open");
    conn.execute_batch(
        "UPDATE rollup_events SET first_ts = first_ts + 1 WHERE name = 'project_created' AND anonymous_id = 'anon-7';
         DELETE FROM rollup_devices WHERE anonymous_id = 'anon-9';
         UPDATE rollup_traits SET value = '\"gold\"' WHERE key = 'plan' AND anonymous_id = (SELECT MIN(anonymous_id) FROM rollup_traits);
         UPDATE rollup_tips SET milestone = 'elsewhere' WHERE (project, user_id, anonymous_id, tip_id, name) =
           (SELECT project, user_id, anonymous_id, tip_id, name FROM rollup_tips WHERE milestone IS NOT NULL ORDER BY 1, 2, 3, 4, 5 LIMIT 1);
         UPDATE rollup_metrics SET last_value = last_value + 1 WHERE (project, user_id, anonymous_id, name) =
           (SELECT project, user_id, anonymous_id, name FROM rollup_metrics WHERE name = 'first_session_length' ORDER BY 1, 2, 3, 4 LIMIT 1);",
    )
    .expect("damage");
    let (code, out) = rollup("verify", &db);
    assert_eq!(code, 1);
    let lines: Vec<&str> = out.lines().collect();
    // anon-9 had two device rows (before and after identify), both gone.
    assert_eq!(lines.len(), 10, "{out}");
    assert_eq!(lines.iter().filter(|l| l.starts_with("rollup_tips") && l.contains("elsewhere")).count(), 1, "{out}");
    assert_eq!(lines.iter().filter(|l| l.starts_with("rollup_tips")).count(), 2, "{out}");
    assert_eq!(lines.iter().filter(|l| l.starts_with("rollup_metrics")).count(), 2, "{out}");
    assert_eq!(lines.iter().filter(|l| l.starts_with("rollup_traits") && l.contains("\"plan\"")).count(), 2, "{out}");
    assert_eq!(lines.iter().filter(|l| l.starts_with("rollup_devices recomputed, not stored") && l.contains("\"anon-9\"")).count(), 2, "{out}");
    assert_eq!(lines.iter().filter(|l| l.starts_with("rollup_events") && l.contains("\"anon-7\"")).count(), 2, "{out}");
    assert_ne!(report(&db).await, answer, "reports read the rollups");
    assert_eq!(rollup("rebuild --project demo", &db).0, 0);
    assert_eq!(rollup("verify --project demo", &db), (0, String::new()));
    assert_eq!(report(&db).await, answer);

    // A database from before the rollups (and so before the webhook outbox, plan versions and
    // health, which came after them): the migration builds them on first start.
    conn.execute_batch(
        "DROP TABLE rollup_devices; DROP TABLE rollup_events; DROP TABLE identities; DROP TABLE webhook_outbox;
         DROP TABLE rollup_traits;
         DROP TABLE plan_versions; DROP TABLE rollup_tips; DROP TABLE rollup_metrics;
         DROP TABLE health_snapshots; DROP TABLE health_transitions;
         CREATE TABLE identities (project TEXT NOT NULL, anonymous_id TEXT NOT NULL, user_id TEXT NOT NULL,
                                  PRIMARY KEY (project, anonymous_id)) WITHOUT ROWID;
         INSERT OR REPLACE INTO identities SELECT project, anonymous_id, user_id FROM events WHERE user_id IS NOT NULL;
         PRAGMA user_version = 4;",
    )
    .expect("downgrade");
    drop(conn);
    assert_eq!(report(&db).await, answer, "migrated on open");
    assert_eq!(rollup("verify", &db), (0, String::new()));
}

/// Batches that arrive together share a commit, and the writer folds each commit's events into
/// one upsert per rollup row. Sent all at once, each batch twice (a resend racing its original,
/// maybe in the same commit), the rollups still equal a recompute, and the report equals the one
/// of the same batches sent one at a time (one commit each).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_committed_together_give_the_rollups_of_batches_committed_apart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (together, apart) = (dir.path().join("together.db"), dir.path().join("apart.db"));
    let bodies = history(0..120, 23);
    {
        let c = serve_with_clock(Arc::new(SqliteStore::open(&together).expect("open")), Some(NOW)).await;
        let mut sends = tokio::task::JoinSet::new();
        for body in bodies.iter().chain(&bodies) {
            let (url, body) = (c.url.clone(), body.clone());
            sends.spawn(async move { post(&url, body).await.status() });
        }
        while let Some(status) = sends.join_next().await {
            assert_eq!(status.expect("send"), 200);
        }
    }
    {
        let c = serve_with_clock(Arc::new(SqliteStore::open(&apart).expect("open")), Some(NOW)).await;
        for body in &bodies {
            assert_eq!(post(&c.url, body.clone()).await.status(), 200);
        }
    }
    assert_eq!(rollup("verify", &together), (0, String::new()), "rollups folded per commit equal a recompute");
    assert_eq!(report(&together).await, report(&apart).await);
}
