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

/// A collector on the SQLite file `db`, its clock at [`NOW`].
async fn serve_at(db: &Path) -> common::Collector {
    serve_with_clock(Arc::new(SqliteStore::open(db).expect("open")), Some(NOW)).await
}

/// Posts `bodies` to `c` one after another; each is accepted.
async fn post_all<'a>(c: &common::Collector, bodies: impl IntoIterator<Item = &'a String>) {
    for body in bodies {
        assert_eq!(post(&c.url, body.clone()).await.status(), 200);
    }
}

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
    let c = serve_at(db).await;
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
        let c = serve_at(&db).await;
        // Resends, second devices, identifies after anonymous events: maintained at ingest.
        post_all(&c, &history(0..200, 11)).await;
    }
    assert_eq!(rollup("verify", &db), (0, String::new()), "ingest kept the rollups equal to a recompute");
    let answer = report(&db).await;
    let parsed: serde_json::Value = serde_json::from_str(&answer).expect("json");
    let (users, visitors) = (parsed["funnel"]["users"].as_u64().unwrap_or(0), parsed["visitors"].as_u64().unwrap_or(0));
    assert!(users > 100 && visitors > 0 && users + visitors == 200, "users and visitors who never identified, apart: {answer:.300}");
    assert!(parsed["traits"]["plan"].is_array(), "traits from the rollup: {answer:.300}");

    // Damage some rows: verify names them, rebuild repairs them.
    let conn = rusqlite::Connection::open(&db).expect("open");
    conn.execute_batch(
        "UPDATE rollup_events SET first_ts = first_ts + 1 WHERE name = 'project_created' AND anonymous_id = 'anon-7';
         DELETE FROM rollup_devices WHERE anonymous_id = 'anon-9';
         UPDATE rollup_traits SET value = '\"gold\"' WHERE key = 'plan' AND anonymous_id = (SELECT MIN(anonymous_id) FROM rollup_traits);
         UPDATE rollup_tips SET milestone = 'elsewhere' WHERE (project, user_id, anonymous_id, tip_id, name) =
           (SELECT project, user_id, anonymous_id, tip_id, name FROM rollup_tips WHERE milestone IS NOT NULL ORDER BY 1, 2, 3, 4, 5 LIMIT 1);
         UPDATE rollup_metrics SET last_value = last_value + 1 WHERE (project, user_id, anonymous_id, name) =
           (SELECT project, user_id, anonymous_id, name FROM rollup_metrics WHERE name = 'first_session_length' ORDER BY 1, 2, 3, 4 LIMIT 1);
         UPDATE rollup_users SET identified = 1 - identified WHERE user_key = (SELECT MIN(user_key) FROM rollup_users);",
    )
    .expect("damage");
    let (code, out) = rollup("verify", &db);
    assert_eq!(code, 1);
    let lines: Vec<&str> = out.lines().collect();
    // anon-9 had two device rows (before and after identify), both gone.
    assert_eq!(lines.len(), 12, "{out}");
    assert_eq!(lines.iter().filter(|l| l.starts_with("rollup_users")).count(), 2, "{out}");
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
         DROP TABLE health_snapshots; DROP TABLE health_transitions; DROP TABLE rollup_users;
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
        let c = serve_at(&together).await;
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
        let c = serve_at(&apart).await;
        post_all(&c, &bodies).await;
    }
    assert_eq!(rollup("verify", &together), (0, String::new()), "rollups folded per commit equal a recompute");
    assert_eq!(report(&together).await, report(&apart).await);
}

/// The per-user rollup (one row per user key) through identity merges: visits before the
/// identify, a device linked to one user and then, by an identify with an earlier time that
/// arrives later, to another (the first link by event time wins, so the device moves), a
/// visitor who never identifies, traits set out of order, resends. Sent in two different orders
/// (and every batch twice), both files hold the same per-user rows, equal to a recompute from
/// the events, and give the same report; a user's erasure leaves a recompute's rows too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_rows_equal_a_recompute_after_merges_relinks_resends_and_any_order() {
    use common::{batch, event};
    use serde_json::json;
    let t0 = NOW - 3 * common::history::DAY;
    let typed = |id: &str, kind: &str, name: &str, anon: &str, user: Option<&str>, ts: i64, props: serde_json::Value| {
        let mut e = event(id, name, anon, user, ts);
        e["type"] = json!(kind);
        e["props"] = props;
        e
    };
    let batches: Vec<String> = vec![
        // anon-a visits, reaches signed_up and uses the product before identifying.
        batch(NOW, vec![
            typed("a1", "milestone", "signed_up", "anon-a", None, t0, json!({})),
            event("a2", "page_viewed", "anon-a", None, t0 + 1),
        ]),
        // Identified as user-1 …
        batch(NOW, vec![
            typed("a3", "identify", "identify", "anon-a", Some("user-1"), t0 + 100, json!({"plan": "pro", "signedUpAt": t0})),
            typed("a4", "milestone", "project_created", "anon-a", Some("user-1"), t0 + 200, json!({})),
        ]),
        // … but an identify as user-2 from before that arrives later wins the link: anon-a's
        // anonymous rows move from user-1 to user-2.
        batch(NOW, vec![typed("a5", "identify", "identify", "anon-a", Some("user-2"), t0 + 50, json!({"plan": "free"}))]),
        // user-2's own device, with an older plan and a later one sent first.
        batch(NOW, vec![
            typed("b2", "identify", "identify", "anon-b", Some("user-2"), t0 + 400, json!({"plan": "team", "signedUpAt": t0 - 1000})),
            typed("b3", "milestone", "project_created", "anon-b", Some("user-2"), t0 + 300, json!({})),
        ]),
        batch(NOW, vec![typed("b1", "identify", "identify", "anon-b", Some("user-2"), t0 + 10, json!({"plan": "trial", "role": "dev"}))]),
        // A visitor who never identifies.
        batch(NOW, vec![typed("c1", "milestone", "signed_up", "anon-c", None, t0 + 5, json!({})), event("c2", "page_viewed", "anon-c", None, t0 + 6)]),
        // anon-d visits, then identifies as user-3 with a milestone in the same batch.
        batch(NOW, vec![event("d1", "page_viewed", "anon-d", None, t0 + 7)]),
        batch(NOW, vec![
            typed("d2", "identify", "identify", "anon-d", Some("user-3"), t0 + 8, json!({"plan": "pro"})),
            typed("d3", "milestone", "signed_up", "anon-d", Some("user-3"), t0 + 8, json!({})),
        ]),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let (forward, backward) = (dir.path().join("forward.db"), dir.path().join("backward.db"));
    for (db, order) in [(&forward, batches.clone()), (&backward, batches.iter().rev().cloned().collect::<Vec<_>>())] {
        let c = serve_at(db).await;
        post_all(&c, order.iter().chain(&order)).await;
    }
    // A stored row: user key, identified, first and last seen, packed traits and milestones.
    type UserRow = (String, bool, i64, i64, Vec<u8>, Vec<u8>);
    let rows = |db: &Path| -> Vec<UserRow> {
        let conn = rusqlite::Connection::open(db).expect("open");
        let mut stmt = conn.prepare("SELECT user_key, identified, first_seen, last_seen, traits, milestones FROM rollup_users ORDER BY user_key").expect("prepare");
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))).expect("query");
        rows.collect::<Result<_, _>>().expect("rows")
    };
    for db in [&forward, &backward] {
        assert_eq!(rollup("verify", db), (0, String::new()), "{}", db.display());
    }
    let (f, b) = (rows(&forward), rows(&backward));
    assert_eq!(f, b, "the same rows whatever the order");
    let keys: Vec<(&str, bool)> = f.iter().map(|r| (r.0.as_str(), r.1)).collect();
    assert_eq!(keys, [("anon-c", false), ("user-1", true), ("user-2", true), ("user-3", true)]);
    // user-2 took anon-a's anonymous rows: seen from t0 (the visit), signed_up reached at t0.
    let user2 = &f[2];
    assert_eq!((user2.2, user2.3), (t0, t0 + 400));
    assert_eq!(report(&forward).await, report(&backward).await);

    // Erasing user-1 leaves the others' rows as a recompute gives them.
    {
        use onramp_collector::store::Store;
        let store = SqliteStore::open(&forward).expect("open");
        assert!(store.erase_user("demo", "user-1").await.expect("erase") > 0);
    }
    assert_eq!(rollup("verify", &forward), (0, String::new()), "after erasure");
    let keys: Vec<String> = rows(&forward).into_iter().map(|r| r.0).collect();
    assert_eq!(keys, ["anon-c", "user-2", "user-3"]);
}

/// A running collector's cached report ends when another process changes the file, as it ends
/// when the collector itself commits: `rollup rebuild` is run beside a running collector (after
/// a restore or a plan rename), and an erasure by `users delete` must not stay in the answers.
/// The collector's clock stands still here, so a cached answer would never expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_after_another_process_changed_the_file_is_computed_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("c.db");
    let c = serve_at(&db).await;
    post_all(&c, &history(0..60, 5)).await;
    let path = "/v1/report?due=project_created:24h,file_uploaded:3d";
    let answer = common::get(&c.url, path).await;
    assert_eq!(common::get(&c.url, path).await, answer);
    // Another writer turns the first visitor into a user (a damaged row, as `rollup verify`
    // would name it): the next report reads it.
    let conn = rusqlite::Connection::open(&db).expect("open");
    let flipped = conn
        .execute("UPDATE rollup_users SET identified = 1 - identified WHERE user_key = (SELECT MIN(user_key) FROM rollup_users WHERE NOT identified)", [])
        .expect("damage");
    assert_eq!(flipped, 1);
    let damaged = common::get(&c.url, path).await;
    assert_eq!(damaged["visitors"].as_u64(), answer["visitors"].as_u64().map(|v| v - 1), "the other writer's change is read");
    // `rollup rebuild` in its own process repairs it: the next report is the first one again.
    assert_eq!(rollup("rebuild", &db).0, 0);
    assert_eq!(common::get(&c.url, path).await, answer, "the rebuild is read");
}
