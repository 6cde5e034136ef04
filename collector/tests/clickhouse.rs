//! The collector over a real socket with a real clickhouse-server (Debian's 18.16), started by
//! the test itself on loopback with a temporary config and data directory.

mod common;

use common::{batch, clickhouse, event, funnel, known, post, serve};
use onramp_collector::analytics::Step;
use onramp_collector::store::Store;
use serde_json::json;

#[tokio::test]
async fn stores_batches_once_links_identities_and_reports_the_funnel() {
    let (_server, store) = clickhouse().await;
    let c = serve(store.clone()).await;
    let body = batch(1_000_000, vec![
        event("e1", "signed_up", "anon-a", None, 1_000_000),
        json!({"id": "e2", "type": "identify", "name": "identify", "anonymousId": "anon-a", "userId": "alice", "ts": 1_000_001}),
        event("e3", "project_created", "anon-a", Some("alice"), 1_000_002),
        event("e4", "signed_up", "anon-b", Some("bob"), 1_000_003),
        event("e5", "it's", "anon-q", Some("quote\\'d"), 1_000_004),
        // Linked to two users: the first link by event time wins, not the first to arrive.
        event("e6", "identify", "anon-r", Some("ron-later"), 1_000_006),
        event("e7", "identify", "anon-r", Some("ron"), 1_000_005),
        event("e8", "opened", "anon-r", None, 1_000_007),
    ]);
    assert_eq!(post(&c.url, body.clone()).await.status(), 200);
    // A resend of the same events (lost acknowledgement) is stored once.
    assert_eq!(post(&c.url, body).await.status(), 200);

    let report = funnel(&c.url, "event:signed_up,event:project_created").await;
    assert_eq!(report["steps"][0]["userIds"], json!(["alice", "bob"]), "anon-a's early event counts for alice");
    assert_eq!(report["steps"][1]["userIds"], json!(["alice"]));
    assert_eq!(report["steps"][1]["conversionFromPrevious"], 0.5);
    // Names and ids with quotes and backslashes survive the round trip.
    assert_eq!(funnel(&c.url, "it's").await["steps"][0]["userIds"], json!(["quote\\'d"]));
    let (rows, distinct) = store.event_counts().await.expect("counts");
    assert_eq!((rows, distinct), (16, 8), "the resend is stored, and folded by FINAL");
    assert_eq!(funnel(&c.url, "opened").await["steps"][0]["userIds"], json!(["ron"]));
    assert_eq!(
        store.window_funnel_counts("demo", &[Step::event("signed_up"), Step::event("project_created")], None).await.expect("windowFunnel"),
        vec![2, 1]
    );

    // The same event id in another project is another event (the key is per project), and
    // the demo project's copy is untouched.
    let other = onramp::core::wire::Batch::parse(&batch(1_000_000, vec![event("e1", "signed_up", "anon-a", None, 1_000_000)]))
        .expect("batch")
        .events
        .into_iter()
        .map(|event| onramp_collector::store::StoredEvent { project: "other".into(), ts: event.ts, event, sent_at: 1_000_000, received_at: 1_000_000 })
        .collect();
    store.insert(other).await.expect("insert");
    assert_eq!(store.users("other").await.expect("users").len(), 1);
    assert_eq!(store.event_counts().await.expect("counts").1, 9);
    assert_eq!(funnel(&c.url, "event:signed_up").await["steps"][0]["userIds"], json!(["alice", "bob"]));
    // Which ids are stored (`/v1/known`): the demo project's only, quotes and all.
    assert_eq!(known(&c.url, "wk_demo", &["e8", "nope", "e1", "it's"]).await, (200, vec!["e1".into(), "e8".into()]));
    assert_eq!(store.known_ids("other", vec!["e1".into(), "e2".into()]).await.expect("known"), ["e1"]);
}

#[tokio::test]
async fn migrations_are_idempotent_and_recorded() {
    let (server, _store) = clickhouse().await;
    // A second collector starting against the same database migrates nothing twice.
    let _again = onramp_collector::store::clickhouse::ClickHouseStore::open(&server.store_url("onramp")).await.expect("reopen");
    let versions = server.query("SELECT count(), max(version) FROM onramp.onramp_migrations").expect("query");
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/clickhouse")).expect("dir").count();
    assert_eq!(versions.trim(), format!("{files}\t{files}"), "one recorded version per migration file");
    let engine = server.query("SELECT engine FROM system.tables WHERE database = 'onramp' AND name = 'events'").expect("query");
    assert_eq!(engine.trim(), "ReplacingMergeTree");
}

/// A database from before the trait rollup: identifies stored without their trait arrays (as
/// an older collector wrote them). Applying the migration writes them again with the arrays, so
/// users get their traits and sign-up times, and the rollups equal a recompute.
#[tokio::test]
async fn the_trait_migration_backfills_identifies_stored_before_it() {
    let (server, store) = clickhouse().await;
    let old = "INSERT INTO onramp.events (project, anonymous_id, id, type, name, user_id, ts, client_ts, sent_at, received_at, props, first_seen) VALUES";
    server
        .query(&format!(
            "{old} ('demo', 'anon-a', 'i1', 'identify', 'identify', 'alice', 5, 5, 9, 9, '{{\"plan\":\"pro\",\"signedUpAt\":1700000000000}}', 100),
                   ('demo', 'anon-a', 'i2', 'identify', 'identify', 'alice', 7, 7, 9, 9, '{{\"plan\":\"team\"}}', 100),
                   ('demo', 'anon-b', 'i3', 'identify', 'identify', 'bob', 6, 6, 9, 9, '{{}}', 100)"
        ))
        .expect("insert as an old collector");
    let traits = |users: Vec<onramp_collector::store::UserSeen>| users.into_iter().map(|u| (u.user, u.traits)).collect::<Vec<_>>();
    let mut before = traits(store.users("demo").await.expect("users"));
    before.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(before.iter().all(|(_, t)| t.is_empty()), "not in the rollup yet: {before:?}");
    server.query("ALTER TABLE onramp.onramp_migrations DELETE WHERE version >= 6").expect("forget migration 6 and those after it");
    while server.query("SELECT count() FROM system.mutations WHERE is_done = 0").expect("mutations").trim() != "0" {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let store = onramp_collector::store::clickhouse::ClickHouseStore::open(&server.store_url("onramp")).await.expect("migrate");
    let mut after = traits(store.users("demo").await.expect("users"));
    after.sort_by(|a, b| a.0.cmp(&b.0));
    use onramp::core::json::Value;
    assert_eq!(
        after,
        vec![
            ("alice".to_string(), vec![("plan".to_string(), Value::Str("team".into())), ("signedUpAt".into(), Value::Num(1_700_000_000_000.0))]),
            ("bob".to_string(), vec![]),
        ]
    );
    assert_eq!(store.verify_rollups(None).await.expect("verify"), Vec::<String>::new());
    assert_eq!(server.query("SELECT count() FROM onramp.events FINAL").expect("count").trim(), "3", "written again, not added");
}

/// A database from before the tip and metric rollups (migration 9): tip and metric events stored
/// with no view to sum them up. Applying the migration fills the rollups from them, so the
/// tip-effect and seed-metric reads, and `rollup verify`, agree with a recompute from the events.
#[tokio::test]
async fn the_tip_and_metric_migration_backfills_events_stored_before_it() {
    let (server, _old_store) = clickhouse().await;
    for table in ["rollup_tips_mv", "rollup_metrics_mv", "rollup_tips", "rollup_metrics"] {
        server.query(&format!("DROP TABLE onramp.{table}")).expect("as before migration 9");
    }
    let old = "INSERT INTO onramp.events (project, anonymous_id, id, type, name, user_id, ts, client_ts, sent_at, received_at, props, first_seen) VALUES";
    server
        .query(&format!(
            r#"{old} ('demo', 'anon-a', 't1', 'tip', 'tip_shown', 'alice', 5, 5, 9, 9, '{{"tipId":"welcome"}}', 100),
                   ('demo', 'anon-a', 't2', 'tip', 'tip_dismissed', 'alice', 6, 6, 9, 9, '{{"milestone":"m1","tipId":"welcome"}}', 100),
                   ('demo', 'anon-a', 't3', 'tip', 'tip_shown', 'alice', 7, 7, 9, 9, '{{"tipId":5}}', 100),
                   ('demo', 'anon-a', 'm1', 'metric', 'core_task_completion', 'alice', 5, 5, 9, 9, '{{"value":0.25}}', 100),
                   ('demo', 'anon-a', 'm2', 'metric', 'core_task_completion', 'alice', 8, 8, 9, 9, '{{"value":0.75}}', 100),
                   ('demo', 'anon-a', 'm3', 'metric', 'core_task_completion', 'alice', 9, 9, 9, 9, '{{"value":"n/a"}}', 100),
                   ('demo', 'anon-b', 'm4', 'metric', 'return_interval', 'bob', 6, 6, 9, 9, '{{"valueMs":7200000}}', 100)"#
        ))
        .expect("insert as an old collector");
    server.query("ALTER TABLE onramp.onramp_migrations DELETE WHERE version >= 9").expect("forget migration 9 and those after it");
    while server.query("SELECT count() FROM system.mutations WHERE is_done = 0").expect("mutations").trim() != "0" {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let store = onramp_collector::store::clickhouse::ClickHouseStore::open(&server.store_url("onramp")).await.expect("migrate");
    use onramp_collector::store::{UserMetric, UserTip};
    let welcome = UserTip { user: "alice".into(), tip_id: "welcome".into(), names: vec!["tip_dismissed".into(), "tip_shown".into()], milestone: Some("m1".into()) };
    assert_eq!(store.tips("demo").await.expect("tips"), vec![welcome], "a tipId that is not a string names no tip");
    assert_eq!(
        store.metrics("demo").await.expect("metrics"),
        vec![
            UserMetric { user: "alice".into(), name: "core_task_completion".into(), first: 0.25, latest: 0.75 },
            UserMetric { user: "bob".into(), name: "return_interval".into(), first: 7_200_000.0, latest: 7_200_000.0 },
        ],
        "a value that is not a number is skipped"
    );
    assert_eq!(store.verify_rollups(None).await.expect("verify"), Vec::<String>::new());
}

/// Plan versions in ClickHouse: the same scenario as SQLite's (tests/plans.rs), and a plan stored
/// before versions were kept (migration 0002's table only) is version 1 and stays in the history.
#[tokio::test]
async fn plan_versions_author_message_conflict_and_rollback() {
    let (server, store) = clickhouse().await;
    let c = common::serve_with_clock(store.clone(), Some(common::plan_versions::NOW)).await;
    common::plan_versions::scenario(&c.url).await;

    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../pkg-config/plans/trackly.json")).expect("plan");
    let legacy = demo.replace('\n', " ");
    let sql = format!(
        "INSERT INTO onramp.plans (project, body, version, updated_at) VALUES ('old', {}, 'trackly-2026-11-23.1', 7)",
        onramp_collector::store::clickhouse::quote(&legacy)
    );
    server.query(&sql).expect("insert legacy plan");
    let history = store.plan_versions("old", 10).await.expect("versions");
    assert_eq!((history.len(), history[0].number, history[0].author_kind.as_str()), (1, 1, "unknown"));
    assert_eq!(store.plan("old").await.expect("plan"), Some(legacy.clone()));
    let new = onramp_collector::store::NewPlanVersion {
        text: demo.clone(),
        plan_version: "trackly-2026-11-23.1".into(),
        author: onramp_collector::config::Author { kind: onramp_collector::config::AuthorKind::Editor, name: "dana".into() },
        message: "first versioned change".into(),
        created_at: 9,
        rollback_of: None,
    };
    assert_eq!(store.publish_plan("old", new, Some(Some(1))).await.expect("publish"), onramp_collector::store::Published::Stored(2));
    let history = store.plan_versions("old", 10).await.expect("versions");
    assert_eq!(history.iter().map(|v| (v.number, v.author.as_str())).collect::<Vec<_>>(), [(2, "dana"), (1, "")]);
    assert_eq!(store.plan_version_text("old", 1).await.expect("text"), Some(legacy), "the old plan is kept to roll back to");
    assert_eq!(store.plan("old").await.expect("plan"), Some(demo));
}

/// ClickHouse dies while batches are being posted: requests are answered 503 with Retry-After
/// until it is back, clients retry as the SDK does, and in the end every acknowledged event is
/// stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_answers_503_and_loses_no_acknowledged_event() {
    let (mut server, store) = clickhouse().await;
    let c = serve(store.clone()).await;
    let url = c.url.clone();

    // Four clients, each posting 30 batches of 10 events in turn, retrying a batch until 200.
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut clients = Vec::new();
    for client in 0..4 {
        let (url, acked) = (url.clone(), acked_tx.clone());
        clients.push(tokio::spawn(async move {
            let mut refused = 0;
            for b in 0..30 {
                let ids: Vec<String> = (0..10).map(|i| format!("c{client}-b{b}-e{i}")).collect();
                let events = ids.iter().map(|id| event(id, "signed_up", &format!("anon-{client}-{b}"), None, 1_000)).collect();
                let body = batch(1_000, events);
                loop {
                    let r = post(&url, body.clone()).await;
                    if r.status() == 200 {
                        ids.iter().for_each(|id| acked.send(id.clone()).expect("send"));
                        break;
                    }
                    assert_eq!(r.status(), 503, "only an outage may refuse a valid batch");
                    assert!(r.headers().contains_key("retry-after"), "503 must say when to retry");
                    refused += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
            refused
        }));
    }
    drop(acked_tx);

    // Let some batches through, then take ClickHouse down mid-stream.
    let mut acked = Vec::new();
    while acked.len() < 100 {
        acked.push(acked_rx.recv().await.expect("clients stopped early"));
    }
    server.kill();
    let r = post(&url, batch(1_000, vec![event("probe", "signed_up", "anon-probe", None, 1_000)])).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "5");
    let read = reqwest::Client::new().get(format!("{url}/v1/funnel?steps=signed_up")).bearer_auth("rt_demo").send().await.expect("get");
    assert_eq!(read.status(), 503, "reads fail the same way, without details");
    assert!(!read.text().await.expect("body").contains("127.0.0.1"), "the store's address is not leaked");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let server = tokio::task::spawn_blocking(move || server.restart().map(|()| server)).await.expect("join").expect("restart");

    let mut refused = 0;
    for client in clients {
        refused += client.await.expect("client");
    }
    while let Some(id) = acked_rx.recv().await {
        acked.push(id);
    }
    assert!(refused > 0, "some requests must have met the outage");
    assert_eq!(store.queue_depth(), 0, "every request was answered");
    assert_eq!(acked.len(), 4 * 30 * 10);

    let stored = server.query("SELECT id FROM onramp.events FINAL WHERE id != 'probe' ORDER BY id").expect("query");
    let mut stored: Vec<&str> = stored.lines().collect();
    acked.sort();
    assert_eq!(stored.len(), acked.len(), "each acknowledged event exactly once");
    stored.dedup();
    assert_eq!(stored, acked);
}

/// Two clickhouse-servers as two shards behind one Distributed table, written and read through
/// two stateless collectors: each user lands on one shard, both shards get users, and the
/// answers match a single SQLite store fed the same events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shard_cluster_behind_two_collectors() {
    use onramp_collector::store::clickhouse::{server::LocalServer, ClickHouseStore};
    use std::sync::Arc;

    let shards = tokio::task::spawn_blocking(|| LocalServer::start_cluster("onramp_two", 2)).await.expect("join").expect("start");
    let nodes: Vec<String> = shards.iter().map(|s| format!("127.0.0.1:{}", s.http_port)).collect();
    // Each collector talks to a different node; any node can take reads and writes.
    let mut collectors = Vec::new();
    for node in &nodes {
        let url = format!("clickhouse://{node}/onramp?cluster=onramp_two&nodes={}", nodes.join(","));
        let store = ClickHouseStore::open(&url).await.expect("open cluster store");
        collectors.push(serve(Arc::new(store)).await);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = serve(Arc::new(onramp_collector::store::sqlite::SqliteStore::open(dir.path().join("e.db")).expect("sqlite"))).await;

    for u in 0..40 {
        let anon = format!("anon-{u}");
        let user = format!("user-{u:02}");
        let mut events = vec![event(&format!("{u}-a"), "signed_up", &anon, None, 1_000 + u)];
        if u % 2 == 0 {
            events.push(json!({"id": format!("{u}-i"), "type": "identify", "name": "identify", "anonymousId": anon, "userId": user, "ts": 2_000 + u}));
            events.push(event(&format!("{u}-b"), "project_created", &anon, Some(&user), 3_000 + u));
        }
        let body = batch(5_000, events);
        // Alternate collectors, as a load balancer would.
        assert_eq!(post(&collectors[u as usize % 2].url, body.clone()).await.status(), 200);
        assert_eq!(post(&sqlite.url, body).await.status(), 200);
    }
    for s in &shards {
        let local: u64 = s.query("SELECT count() FROM onramp.events_local").expect("count").trim().parse().expect("number");
        assert!(local > 0, "both shards hold events");
    }
    // A plan stored through one collector is served by the other (plans are sharded too).
    let plan = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../pkg-config/plans/shopfront.json")).expect("plan");
    let put = reqwest::Client::new().put(format!("{}/v1/plan", collectors[0].url)).bearer_auth("et_demo").body(plan.clone());
    assert_eq!(put.send().await.expect("put").status(), 200);
    let served = reqwest::get(format!("{}/v1/plan?writeKey=wk_demo", collectors[1].url)).await.expect("get");
    assert_eq!(served.text().await.expect("body"), plan);

    let expected = funnel(&sqlite.url, "event:signed_up,event:project_created").await;
    assert_eq!(expected["steps"][1]["users"], 20);
    for c in &collectors {
        assert_eq!(funnel(&c.url, "event:signed_up,event:project_created").await["steps"], expected["steps"]);
    }
    // The tallies' one GROUP BY per user over the Distributed tables (GLOBAL join), as SQLite
    // counts them; the clock's own fields aside (these collectors read the system clock).
    let without_clock = |mut v: serde_json::Value| {
        for key in ["now", "periodFrom"] {
            v.as_object_mut().expect("object").remove(key);
        }
        v
    };
    let ttv = "/v1/ttv?steps=event:signed_up,event:project_created&value=event:project_created";
    let expected = without_clock(common::get(&sqlite.url, ttv).await);
    assert_eq!(expected["users"], 20, "{expected}");
    for c in &collectors {
        assert_eq!(without_clock(common::get(&c.url, ttv).await), expected);
    }
}

/// The report cache's data version comes from the server, so it holds for every collector
/// writing there: the same while nothing changes (reads, background merges), new after every
/// insert and every deletion.
#[tokio::test]
async fn data_version_changes_with_inserts_and_deletions_only() {
    let (server, store) = clickhouse().await;
    let version = || async { store.data_version("demo").await.expect("version").expect("no deletion running") };
    let stored = |events: Vec<serde_json::Value>| {
        onramp::core::wire::Batch::parse(&batch(1_000_000, events))
            .expect("batch")
            .events
            .into_iter()
            .map(|event| onramp_collector::store::StoredEvent { project: "demo".into(), ts: event.ts, event, sent_at: 1_000_000, received_at: 1_000_000 })
            .collect::<Vec<_>>()
    };
    let empty = version().await;
    store.insert(stored(vec![event("e1", "signed_up", "anon-a", Some("alice"), 1_000_000)])).await.expect("insert");
    let one = version().await;
    assert!(one > empty, "an insert changes the version ({empty} then {one})");
    store.insert(stored(vec![event("e2", "opened", "anon-b", Some("bob"), 1_000_001)])).await.expect("insert");
    let two = version().await;
    assert!(two > one, "so does the next ({one} then {two})");
    assert_eq!(store.users("demo").await.expect("users").len(), 2);
    for table in ["events", "rollup_devices", "rollup_events", "links"] {
        server.query(&format!("OPTIMIZE TABLE onramp.{table} FINAL")).expect("merge");
    }
    assert_eq!(version().await, two, "reads and merges leave it as it is");
    store.erase_user("demo", "alice").await.expect("erase");
    let erased = version().await;
    assert!(erased > two, "a deletion changes it ({two} then {erased})");
    assert_eq!(store.users("demo").await.expect("users").len(), 1);
}

/// `/v1/report` on ClickHouse (one row per user from its own GROUP BY) answers byte for byte as
/// on SQLite, over a stream with every case identity and arrival make ambiguous: an identify
/// posted last whose event time comes before the device's earlier-posted link to another user
/// (the first link by event time wins), a milestone reached while anonymous, resent batches,
/// events tied on the same millisecond, sign-up times from traits and from first seen, and a
/// visitor who never identifies.
#[tokio::test]
async fn report_equals_sqlite_with_late_identifies_resends_and_ties() {
    use onramp_collector::store::sqlite::SqliteStore;
    use std::sync::Arc;
    const NOW: i64 = 1_800_000_000_000;
    const H: i64 = 3_600_000;
    let t = |hours: i64, ms: i64| NOW - 80 * H + hours * H + ms;
    let first = vec![
        event("a1", "page_viewed", "dev-a", None, t(0, 0)),
        milestone("a2", "m1", "dev-a", None, t(1, 0)),
        // dev-s is linked to sam by this batch; a later batch links it to pat earlier in time.
        identify("s1", "dev-s", "sam", t(5, 0), json!({"plan": "pro"})),
        milestone("s2", "m1", "dev-s", None, t(6, 0)),
        // Ties: three events on one millisecond, two of them milestones.
        identify("b1", "dev-b", "bob", t(2, 7), json!({"signedUpAt": t(2, 0), "plan": "free"})),
        milestone("b2", "m1", "dev-b", Some("bob"), t(2, 7)),
        milestone("b3", "m2", "dev-b", Some("bob"), t(2, 7)),
        event("v1", "page_viewed", "dev-v", None, t(3, 0)),
        milestone("v2", "m1", "dev-v", None, t(3, 0)),
    ];
    let second = vec![
        milestone("a3", "m2", "dev-a", Some("ann"), t(30, 0)),
        milestone("c1", "m1", "dev-c", Some("cat"), t(40, 0)),
        identify("c2", "dev-c", "cat", t(40, 0), json!({"signedUpAt": t(39, 0), "plan": "pro"})),
        milestone("s3", "m2", "dev-s", None, t(41, 0)),
    ];
    // Posted last: the identifies that decide who dev-a and dev-s belong to.
    let late = vec![identify("a4", "dev-a", "ann", t(0, 500), json!({"signedUpAt": t(0, 0), "plan": "free"})), identify("s4", "dev-s", "pat", t(4, 0), json!({"plan": "team"}))];
    let bodies: Vec<String> = [first.clone(), second, first, late.clone(), late].into_iter().map(|events| batch(NOW, events)).collect();

    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = common::serve_with_clock(Arc::new(SqliteStore::open(dir.path().join("r.db")).expect("sqlite")), Some(NOW)).await;
    let (_server, store) = clickhouse().await;
    let ch = common::serve_with_clock(store.clone(), Some(NOW)).await;
    for body in &bodies {
        assert_eq!(post(&sqlite.url, body.clone()).await.status(), 200);
        assert_eq!(post(&ch.url, body.clone()).await.status(), 200);
    }
    let paths = [
        "/v1/report?steps=milestone:m1,milestone:m2&value=milestone:m2&due=m1:1h,m2:24h",
        "/v1/report?steps=milestone:m1,milestone:m2&value=milestone:m2&window=2h&by=week",
        "/v1/report?steps=milestone:m1,milestone:m2&value=milestone:m2&trait.plan=pro,team&due=m2:1h",
        "/v1/funnel?steps=milestone:m1,milestone:m2&users=true",
    ];
    let mut answers = Vec::new();
    for path in paths {
        let (expected, got) = (read(&sqlite.url, path).await, read(&ch.url, path).await);
        assert_eq!(got, expected, "{path}: ClickHouse differs from SQLite");
        answers.push(serde_json::from_str::<serde_json::Value>(&got).expect("JSON"));
    }
    // Not vacuous: dev-s's anonymous milestone counts for pat (linked earlier by event time),
    // not sam (linked by the batch posted first); dev-a's for ann, though identified last.
    assert_eq!(answers[3]["steps"][0]["userIds"], json!(["ann", "bob", "cat", "pat"]), "{}", answers[3]);
}

#[tokio::test]
async fn a_large_stalled_export_is_every_stall_in_order() {
    let (_server, store) = common::clickhouse().await;
    common::stalled_export::check(store).await;
}

/// The per-user rollup through the identity cases that re-key rows: a late earlier identify
/// moving a device (with its anonymous milestone and its traits) from one user to another, an
/// anonymous visitor linked after the fact, erasing a user and a visitor, and retention; after
/// each, ClickHouse's reports equal SQLite's byte for byte, `rollup verify` finds nothing on
/// either, and the erased user has no row left.
#[tokio::test]
async fn per_user_rollup_follows_moves_erasure_and_retention_as_sqlite_does() {
    use onramp_collector::store::sqlite::SqliteStore;
    use std::sync::Arc;
    const NOW: i64 = 1_800_000_000_000;
    const H: i64 = 3_600_000;
    let t = |hours: i64| NOW - 80 * H + hours * H;
    let batches = [
        vec![
            milestone("x1", "m1", "dev-x", None, t(1)),
            identify("x2", "dev-x", "sam", t(5), json!({"plan": "pro", "signedUpAt": t(0)})),
            milestone("y1", "m2", "dev-y", Some("sam"), t(6)),
            milestone("z1", "m1", "dev-z", None, t(2)),
            event("w1", "page_viewed", "dev-w", None, t(3)),
        ],
        // Late and earlier: dev-x is pat's; its anonymous m1 moves from sam to pat, sam keeps
        // dev-y and the identify sam sent himself.
        vec![identify("x3", "dev-x", "pat", t(2), json!({"plan": "team"})), milestone("x4", "m2", "dev-x", None, t(7))],
        // dev-w's visitor identifies: the visitor's key goes, wes gets its page view.
        vec![identify("w2", "dev-w", "wes", t(8), json!({"plan": "pro"})), milestone("w3", "m1", "dev-w", None, t(9))],
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite_store = Arc::new(SqliteStore::open(dir.path().join("u.db")).expect("sqlite"));
    let sqlite = common::serve_with_clock(sqlite_store.clone(), Some(NOW)).await;
    let (server, store) = clickhouse().await;
    let ch = common::serve_with_clock(store.clone(), Some(NOW)).await;
    let paths = [
        "/v1/report?steps=milestone:m1,milestone:m2&value=milestone:m2&due=m1:1h,m2:24h",
        "/v1/report?steps=milestone:m1,milestone:m2&value=milestone:m2&trait.plan=pro&by=week",
        "/v1/funnel?steps=milestone:m1,milestone:m2&users=true",
    ];
    let same = |when: &'static str| {
        let (sqlite, ch) = (sqlite.url.clone(), ch.url.clone());
        async move {
            let mut funnel = serde_json::Value::Null;
            for path in paths {
                let (expected, got) = (read(&sqlite, path).await, read(&ch, path).await);
                assert_eq!(got, expected, "{when}, {path}: ClickHouse differs from SQLite");
                funnel = serde_json::from_str(&got).expect("JSON");
            }
            funnel["steps"][0]["userIds"].clone()
        }
    };
    let verified = |when: &'static str| {
        let (store, sqlite_store) = (store.clone(), sqlite_store.clone());
        async move {
            assert_eq!(store.verify_rollups(None).await.expect("verify"), Vec::<String>::new(), "{when}: ClickHouse");
            assert_eq!(sqlite_store.verify_rollups(None).await.expect("verify"), Vec::<String>::new(), "{when}: SQLite");
        }
    };
    let rows = |key: &str| server.query(&format!("SELECT count() FROM onramp.rollup_users WHERE user_key = '{key}'")).expect("query").trim().to_owned();

    assert_eq!(post(&sqlite.url, batch(NOW, batches[0].clone())).await.status(), 200);
    assert_eq!(post(&ch.url, batch(NOW, batches[0].clone())).await.status(), 200);
    assert_eq!(same("first batch").await, json!(["sam"]), "dev-x's anonymous m1 is sam's");
    verified("first batch").await;
    for body in &batches[1..] {
        assert_eq!(post(&sqlite.url, batch(NOW, body.clone())).await.status(), 200);
        assert_eq!(post(&ch.url, batch(NOW, body.clone())).await.status(), 200);
    }
    assert_eq!(same("after the moves").await, json!(["pat", "wes"]), "dev-x moved to pat; sam reached no m1 himself");
    verified("after the moves").await;

    assert_eq!(store.erase_user("demo", "pat").await.expect("erase"), sqlite_store.erase_user("demo", "pat").await.expect("erase"));
    assert_eq!(store.erase_user("demo", "dev-z").await.expect("erase"), sqlite_store.erase_user("demo", "dev-z").await.expect("erase"));
    assert_eq!(same("after erasure").await, json!(["wes"]));
    verified("after erasure").await;
    assert_eq!(rows("pat"), "0", "no row of the erased user is left, not even a deleted one");
    assert_eq!(rows("dev-z"), "0");

    assert_eq!(store.delete_events_before("demo", t(7)).await.expect("retention"), sqlite_store.delete_events_before("demo", t(7)).await.expect("retention"));
    same("after retention").await;
    verified("after retention").await;
    // New events after all that keep being folded in.
    let more = vec![milestone("y2", "m1", "dev-y", Some("sam"), t(10))];
    assert_eq!(post(&sqlite.url, batch(NOW, more.clone())).await.status(), 200);
    assert_eq!(post(&ch.url, batch(NOW, more)).await.status(), 200);
    assert_eq!(same("after more events").await, json!(["sam", "wes"]));
    verified("after more events").await;
}

fn milestone(id: &str, name: &str, anon: &str, user: Option<&str>, ts: i64) -> serde_json::Value {
    let mut e = event(id, name, anon, user, ts);
    e["type"] = json!("milestone");
    e
}

fn identify(id: &str, anon: &str, user: &str, ts: i64, traits: serde_json::Value) -> serde_json::Value {
    json!({"id": id, "type": "identify", "name": "identify", "anonymousId": anon, "userId": user, "ts": ts, "props": traits})
}

/// A read route's body, asked with the demo read token (status 200 asserted).
async fn read(url: &str, path: &str) -> String {
    let response = reqwest::Client::new().get(format!("{url}{path}")).bearer_auth("rt_demo").send().await.expect("read");
    assert_eq!(response.status(), 200, "{path}");
    response.text().await.expect("body")
}

/// The report's sections counted inside ClickHouse at their edges, against SQLite's per-user
/// pass byte for byte: durations exactly on the histogram's edges and tied between users (the
/// nearest-rank percentiles), a funnel step exactly at and 1 ms past the conversion window,
/// at the same millisecond as the step before and before it, a repeated step, a tracked event
/// named like a milestone (never the milestone), sign-ups on a day's and a week's first and
/// previous millisecond, first-day activation at exactly a day, a stall due exactly now and
/// one 1 ms later, more stalls than the report lists with tied due times, sign-ups in seconds
/// and ISO 8601 and none, a visitor, a trait with more values than the filter choices keep,
/// and trait and date filters.
#[tokio::test]
async fn report_sections_counted_in_clickhouse_equal_sqlite_at_their_edges() {
    use onramp_collector::store::sqlite::SqliteStore;
    use std::sync::Arc;
    const NOW: i64 = 1_800_000_000_000; // 2027-01-15T08:00:00Z, a Friday
    const H: i64 = 3_600_000;
    const D: i64 = 24 * H;
    const W: i64 = 2 * H; // the conversion window asked
    let midnight = NOW - NOW % D - 10 * D; // 2027-01-05, a Tuesday; the Monday is a day before
    let mut events = Vec::new();
    let n = std::cell::Cell::new(0);
    let id = || {
        n.set(n.get() + 1);
        format!("e{}", n.get())
    };
    let user = |events: &mut Vec<serde_json::Value>, who: &str, signup: serde_json::Value, first: i64, traits: serde_json::Value, reached: &[(&str, i64)]| {
        let dev = format!("dev-{who}");
        let mut props = traits;
        if !signup.is_null() {
            props["signedUpAt"] = signup;
        }
        events.push(identify(&id(), &dev, who, first, props));
        for (m, ts) in reached {
            events.push(milestone(&id(), m, &dev, Some(who), *ts));
        }
    };
    let s1 = midnight;
    user(&mut events, "u1", json!(s1), s1, json!({"plan": "pro", "seats": 3}), &[("m1", s1 + H), ("m2", s1 + H + W), ("m3", s1 + D)]);
    let s2 = midnight - 1;
    user(&mut events, "u2", json!(s2), s2, json!({"plan": "free", "seats": 3}), &[("m1", s2 + H - 1), ("m2", s2 + H - 1 + W + 1), ("m3", s2 + D - 1)]);
    let s3 = midnight + 5 * H;
    // A tracked `m1` an hour before the milestone `m1`: not the milestone.
    events.push(milestone(&id(), "m3", "dev-u3", Some("u3"), s3 + H));
    events.push(event(&id(), "m1", "dev-u3", Some("u3"), s3 + H));
    user(&mut events, "u3", json!(s3), s3, json!({"plan": "pro"}), &[("m1", s3 + 3 * H), ("m2", s3 + 3 * H)]);
    // Sign-up in seconds, and durations tied with u1's.
    let s4 = midnight - D; // the Monday's first millisecond
    user(&mut events, "u4", json!(s4 / 1000), s4, json!({"plan": "team", "seats": 10}), &[("m1", s4 + H), ("m2", s4 + 4 * H), ("m3", s4 + 4 * H)]);
    let s5 = midnight - D - 1; // the Sunday before
    user(&mut events, "u5", json!("2027-01-03T23:59:59.999Z"), s5, json!({"plan": "pro"}), &[("m1", s5 + H), ("m3", s5 + 3 * D)]);
    // No sign-up time: first seen stands in.
    user(&mut events, "u6", serde_json::Value::Null, midnight + 2 * H, json!({"plan": "free"}), &[("m2", midnight + 3 * H)]);
    // Due exactly now (m1:1h) and a millisecond later.
    user(&mut events, "u7", json!(NOW - H), NOW - H, json!({"plan": "pro"}), &[]);
    user(&mut events, "u8", json!(NOW - H + 1), NOW - H + 1, json!({"plan": "pro"}), &[]);
    // Sixty users signed up at three instants (tied due times), each with its own `team`: too
    // many values to offer as a filter. 180 stalls in all with m1:1h,m2:2h,m3:3h, more than a
    // report lists when asked with `due` of every milestone twice.
    for i in 0..60 {
        let s = midnight + (i % 3) * H;
        let reached: Vec<(&str, i64)> = if i % 4 == 0 { vec![("m1", s + (i % 5) * H)] } else { Vec::new() };
        user(&mut events, &format!("t{i:02}"), json!(s), s, json!({"plan": if i % 2 == 0 { "pro" } else { "free" }, "team": format!("team-{i}"), "email": format!("{i}@x")}), &reached);
    }
    events.push(milestone(&id(), "m1", "dev-visitor", None, midnight + 3 * H));
    let bodies: Vec<String> = events.chunks(40).map(|c| batch(NOW, c.to_vec())).collect();

    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = common::serve_with_clock(Arc::new(SqliteStore::open(dir.path().join("e.db")).expect("sqlite")), Some(NOW)).await;
    let (_server, store) = clickhouse().await;
    let ch = common::serve_with_clock(store.clone(), Some(NOW)).await;
    for body in &bodies {
        assert_eq!(post(&sqlite.url, body.clone()).await.status(), 200);
        assert_eq!(post(&ch.url, body.clone()).await.status(), 200);
    }
    let steps = "steps=milestone:m1,milestone:m2,milestone:m3&value=milestone:m3";
    let day = |ms: i64| format!("{ms}");
    let paths = [
        format!("/v1/report?{steps}&window=2h&due=m1:1h,m2:2h,m3:3h"),
        format!("/v1/report?{steps}&window=2h&by=week&due=m1:1h,m2:2h,m3:3h,m1:1h,m2:2h,m3:3h,m1:1h,m2:2h,m3:3h"),
        format!("/v1/report?steps=milestone:m1,milestone:m1,milestone:m2&value=milestone:m2&trait.plan=pro,team&due=m1:1h"),
        format!("/v1/report?{steps}&trait.seats=3&from={}&to={}", day(s2), day(s1 + 1)),
        format!("/v1/report?{steps}&from={}&by=week", day(s4)),
        format!("/v1/report?{steps}&trait.plan=none"),
        "/v1/funnel?steps=milestone:m1,milestone:m2,milestone:m3&window=2h&users=true".to_string(),
        format!("/v1/funnel?steps=milestone:m1,milestone:m2,milestone:m3&window_ms={}&users=true", W + 1),
        format!("/v1/ttv?{steps}&trait.plan=pro"),
        format!("/v1/cohorts?{steps}&by=day"),
        format!("/v1/cohorts?{steps}&by=week"),
        "/v1/stalled?due=m1:1h".to_string(),
    ];
    let mut answers = Vec::new();
    for path in &paths {
        let (expected, got) = (read(&sqlite.url, path).await, read(&ch.url, path).await);
        assert_eq!(got, expected, "{path}: ClickHouse differs from SQLite");
        answers.push(serde_json::from_str::<serde_json::Value>(&got).expect("JSON"));
    }
    // Not vacuous: the edges fall where they should.
    let funnel = &answers[6]["steps"];
    assert_eq!(funnel[1]["userIds"], json!(["u1", "u3"]), "m2 at exactly the window counts, or at m1's millisecond; 1 ms past it not: {funnel}");
    assert_eq!(funnel[2]["userIds"], json!([]), "u3's m3 came before its m2; u1's is past the window");
    assert_eq!(answers[7]["steps"][1]["userIds"], json!(["u1", "u2", "u3"]));
    let report = &answers[0];
    // m1: u6, u7 (due exactly now; u8 a millisecond later is not) and 45 of the sixty; m2 and
    // m3: u5 or u6 (u3's m3 counts, though before its m1) and all sixty.
    assert_eq!(report["stalled"]["total"], json!(47 + 61 + 61), "{}", report["stalled"]);
    let choices = report["traits"].to_string();
    assert!(choices.contains("\"plan\"") && !choices.contains("team-") && !choices.contains("@x"), "{choices}");
    assert_eq!(answers[1]["stalled"]["stalled"].as_array().map(Vec::len), Some(500), "more stalls than listed");
}

/// A database from before the report columns (migration 11): rows of `rollup_users` with the
/// packed traits and milestones only (the columns at their defaults, as an older collector
/// left them). `rollup verify` names every such row; applying the migration fills them, after
/// which the report is the one computed from rows written with their columns.
#[tokio::test]
async fn the_report_columns_migration_fills_rows_written_before_it() {
    const NOW: i64 = 1_800_000_000_000;
    const H: i64 = 3_600_000;
    let (server, store) = clickhouse().await;
    let ch = common::serve_with_clock(store.clone(), Some(NOW)).await;
    let events = vec![
        identify("i1", "dev-a", "ann", NOW - 50 * H, json!({"plan": "pro", "signedUpAt": NOW - 50 * H})),
        milestone("m1", "m1", "dev-a", Some("ann"), NOW - 49 * H),
        identify("i2", "dev-b", "bob", NOW - 40 * H, json!({"plan": "free"})),
        milestone("m2", "m2", "dev-b", Some("bob"), NOW - 30 * H),
    ];
    assert_eq!(post(&ch.url, batch(NOW, events)).await.status(), 200);
    let path = "/v1/report?steps=milestone:m1,milestone:m2&value=milestone:m2&due=m1:1h&trait.plan=pro,free";
    let expected = read(&ch.url, path).await;
    server
        .query("ALTER TABLE onramp.rollup_users UPDATE signup_known = 0, signup = 0, milestone_names = [], milestone_times = [], trait_keys = [], trait_texts = [] WHERE 1")
        .expect("blank the columns");
    while server.query("SELECT count() FROM system.mutations WHERE is_done = 0").expect("mutations").trim() != "0" {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let differences = store.verify_rollups(None).await.expect("verify");
    assert_eq!(differences.iter().filter(|d| d.contains("report columns differ")).count(), 2, "{differences:?}");
    server.query("ALTER TABLE onramp.onramp_migrations DELETE WHERE version >= 11").expect("forget migration 11");
    while server.query("SELECT count() FROM system.mutations WHERE is_done = 0").expect("mutations").trim() != "0" {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let store = std::sync::Arc::new(onramp_collector::store::clickhouse::ClickHouseStore::open(&server.store_url("onramp")).await.expect("migrate"));
    assert_eq!(store.verify_rollups(None).await.expect("verify"), Vec::<String>::new());
    let migrated = common::serve_with_clock(store, Some(NOW)).await;
    assert_eq!(read(&migrated.url, path).await, expected);
    assert!(expected.contains("\"users\":2"), "{expected}");
}

/// Several collectors writing to one server (four stores, each with its own writer, as four
/// collector processes have): rounds of batches for the same users posted to all at once, one
/// of them a late earlier identify that moves a device (and its anonymous milestone) to another
/// user while the other collectors are adding that device's and both users' events. Afterwards
/// `rollup verify` finds nothing and the reports equal SQLite's (given every batch in turn),
/// byte for byte: no collector's row can hide another's events.
#[tokio::test]
async fn collectors_writing_at_once_keep_the_per_user_rollup_exact() {
    use onramp_collector::store::clickhouse::ClickHouseStore;
    use onramp_collector::store::sqlite::SqliteStore;
    use std::sync::Arc;
    const NOW: i64 = 1_800_000_000_000;
    const H: i64 = 3_600_000;
    const ROUNDS: i64 = 16;
    const COLLECTORS: usize = 4;
    let t = |hours: i64, ms: i64| NOW - 80 * H + hours * H + ms;
    let users: Vec<String> = ["ann", "bob", "cat", "dan", "eve", "fay"].map(str::to_owned).into();
    // Per round, one batch per collector: each user's milestone, page view and identify (the
    // trait's latest value decided by time, not by which collector wrote last), one device per
    // user per collector; the shared visitor dev-v on both.
    let round = |r: i64, side: i64| {
        let mut events = Vec::new();
        for (u, user) in users.iter().enumerate() {
            let u = u as i64;
            let dev = format!("dev-{user}-{side}");
            let user = user.as_str();
            let id = |what: &str| format!("{what}-{user}-{r}-{side}");
            let ts = t(r, 1000 * u + side);
            // A milestone of its own per round and collector: an event one writer's row hid from
            // another's is never made up for by a later round.
            let name = format!("m{}", r * COLLECTORS as i64 + side);
            events.push(milestone(&id("m"), &name, &dev, Some(user), ts));
            events.push(event(&id("p"), "page_viewed", &dev, None, ts + 1));
            events.push(identify(&id("i"), &dev, user, ts + 2, json!({"plan": format!("p{r}-{side}"), "signedUpAt": t(0, u)})));
        }
        events.push(milestone(&format!("v-{r}-{side}"), &format!("v{}", r * COLLECTORS as i64 + side), "dev-v", None, t(r + 1, side)));
        match (r, side) {
            // dev-v is bob's, then (late, earlier in time, while the other side writes) ann's.
            (2, 0) => events.push(identify("v-bob", "dev-v", "bob", t(20, 0), json!({"plan": "vb"}))),
            (7, 1) => events.push(identify("v-ann", "dev-v", "ann", t(1, 0), json!({"plan": "va"}))),
            _ => {}
        }
        batch(NOW, events)
    };

    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite_store = Arc::new(SqliteStore::open(dir.path().join("c.db")).expect("sqlite"));
    let sqlite = common::serve_with_clock(sqlite_store.clone(), Some(NOW)).await;
    let (server, store) = clickhouse().await;
    let mut stores = vec![store.clone()];
    for _ in 1..COLLECTORS {
        stores.push(Arc::new(ClickHouseStore::open(&server.store_url("onramp")).await.expect("another collector's store")));
    }
    let mut collectors = Vec::new();
    for s in &stores {
        collectors.push(common::serve_with_clock(s.clone(), Some(NOW)).await);
    }
    for r in 0..ROUNDS {
        let bodies: Vec<String> = (0..COLLECTORS as i64).map(|side| round(r, side)).collect();
        let posts = collectors.iter().zip(&bodies).map(|(c, body)| post(&c.url, body.clone()));
        for response in futures_util::future::join_all(posts).await {
            assert_eq!(response.status(), 200, "round {r}");
        }
        for body in bodies {
            assert_eq!(post(&sqlite.url, body).await.status(), 200);
        }
    }
    assert_eq!(store.verify_rollups(None).await.expect("verify"), Vec::<String>::new(), "the per-user rows equal a recompute");
    assert_eq!(sqlite_store.verify_rollups(None).await.expect("verify"), Vec::<String>::new());
    let paths = [
        "/v1/report?steps=milestone:m1,milestone:v2,milestone:m30&value=milestone:m30&due=m1:1h,v2:24h",
        "/v1/report?steps=milestone:m5,milestone:v40,milestone:m63&value=milestone:m63&trait.plan=p15-0,p15-3,va&by=week",
        "/v1/funnel?steps=milestone:v1,milestone:v9,milestone:v30&users=true",
    ];
    for path in paths {
        let expected = read(&sqlite.url, path).await;
        for c in &collectors {
            assert_eq!(read(&c.url, path).await, expected, "{path}: ClickHouse differs from SQLite");
        }
    }
    // Every user's seen times and latest traits too (what the rows hold beside milestones).
    let sorted = |mut users: Vec<onramp_collector::store::UserSeen>| {
        users.sort_by(|a, b| a.user.cmp(&b.user));
        users
    };
    let expected = sorted(sqlite_store.users("demo").await.expect("users"));
    for s in &stores {
        assert_eq!(sorted(s.users("demo").await.expect("users")), expected);
    }
    // Not vacuous: dev-v's anonymous events went with the late identify to ann.
    assert_eq!(expected.iter().map(|u| u.user.as_str()).collect::<Vec<_>>(), users, "dev-v is linked, not a visitor of its own");
}

/// A database from before `device_rows` and the version clock (migration 12), as an older
/// collector left it: events stored with no view to fill `device_rows`, and `rollup_users` rows
/// versioned by the former scale (sums of block numbers, far above the clock's), one of them
/// missing an event. Applying the migration fills `device_rows` from the events and rewrites
/// every row, so the stale row is gone and rows written after it (clock versions) win.
#[tokio::test]
async fn the_device_rows_migration_fills_them_and_rewrites_older_rows() {
    let (server, _store) = clickhouse().await;
    for statement in ["DROP TABLE onramp.device_rows_mv", "DROP TABLE onramp.device_rows", "DROP TABLE onramp.rollup_clock"] {
        server.query(statement).expect("back to migration 10");
    }
    server.query("ALTER TABLE onramp.onramp_migrations DELETE WHERE version > 10").expect("forget migration 12");
    while server.query("SELECT count() FROM system.mutations WHERE is_done = 0").expect("mutations").trim() != "0" {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let old = "INSERT INTO onramp.events (project, anonymous_id, id, type, name, user_id, ts, client_ts, sent_at, received_at, props, first_seen, trait_keys, trait_values) VALUES";
    server
        .query(&format!(
            "{old} ('demo', 'anon-a', 'i1', 'identify', 'identify', 'alice', 5, 5, 9, 9, '{{\"plan\":\"pro\"}}', 100, ['plan'], ['\"pro\"']),
                   ('demo', 'anon-a', 'm1', 'milestone', 'm1', '', 6, 6, 9, 9, '{{}}', 100, [], []),
                   ('demo', 'anon-b', 'm2', 'milestone', 'm2', 'bob', 7, 7, 9, 9, '{{}}', 100, [], [])"
        ))
        .expect("insert as an old collector");
    // alice's row as a collector racing another could leave it: without her milestone.
    // Packed as `UserRow::pack_traits` does: plan = "pro" from i1 at 5.
    let packed = "unhex('04706c616e0500000000000000026931052270726f22')";
    server
        .query(&format!(
            "INSERT INTO onramp.rollup_users (project, user_key, version, deleted, identified, first_seen, last_seen, traits, milestones) \
             SELECT 'demo', 'alice', toUInt64(1000000000000), 0, 1, 5, 6, {packed}, ''"
        ))
        .expect("a stale row");
    let store = std::sync::Arc::new(onramp_collector::store::clickhouse::ClickHouseStore::open(&server.store_url("onramp")).await.expect("migrate"));
    assert_eq!(store.verify_rollups(None).await.expect("verify"), Vec::<String>::new());
    let rows = server.query("SELECT user_key, max(version) < 1000000000000 FROM onramp.rollup_users FINAL GROUP BY user_key ORDER BY user_key").expect("rows");
    assert_eq!(rows, "alice\t1\nbob\t1\n", "every row rewritten at the clock's scale");
    // New events after the upgrade are folded in (no row of the former scale outranks them).
    let c = common::serve_with_clock(store.clone(), Some(1_000_000)).await;
    let late = json!({"id": "m3", "type": "milestone", "name": "m3", "anonymousId": "anon-a", "ts": 1_000_000});
    assert_eq!(post(&c.url, batch(1_000_000, vec![late])).await.status(), 200);
    assert_eq!(store.verify_rollups(None).await.expect("verify"), Vec::<String>::new());
    let users = store.users("demo").await.expect("users");
    assert_eq!(users.iter().find(|u| u.user == "alice").map(|u| u.last_seen), Some(1_000_000));
}
