//! `GET /v1/prompts`: prompt conversion (`prompt_shown → prompt_action → goal` within the goal's
//! window), overall and per NPS group, against an oracle written here from the definitions in
//! docs/EXPERIMENTS.md, on SQLite and on a real clickhouse-server with identical answers. The
//! ambiguous cases are planted: a goal reached before the action, exactly at the window's end
//! and 1 ms past it, a `track` event named like a milestone goal, an action without a showing,
//! NPS answers given after the showing, and resends.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{clickhouse, post, serve_with_clock};
use onramp_collector::store::sqlite::SqliteStore;
use serde_json::{json, Value};

const H: i64 = 3_600_000;
const D: i64 = 24 * H;
const NOW: i64 = 1_800_000_000_000;

const PLAN: &str = r#"{"version":"p1","milestones":[
  {"id":"signed_up","title":"Sign up","condition":{"event":"signed_up"}},
  {"id":"upgraded","title":"Upgrade","required":false,"condition":{"event":"upgraded"}},
  {"id":"valued","title":"Value","value":true,"condition":{"event":"valued"}}],
 "prompts":[
  {"id":"invite","kind":"invite","milestone":"valued","body":"Invite","cta":{"label":"Invite","action":"invite"},"goal":{"event":"teammate_invited","within":"2d"}},
  {"id":"upgrade","kind":"upgrade","milestone":"valued","body":"Upgrade","cta":{"label":"Plans","url":"/billing"},"goal":{"milestone":"upgraded","within":"1d"}},
  {"id":"review","kind":"review","milestone":"valued","body":"Review","cta":{"label":"Review","url":"https://reviews.example/x"}}]}"#;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> i64 {
        (self.next() % n) as i64
    }
}

/// (user, type, name, ts, props)
type Ev = (String, &'static str, String, i64, Value);

fn population() -> Vec<Ev> {
    let mut r = Rng(16);
    let mut out = Vec::new();
    let goals = [("invite", "track", "teammate_invited", 2 * D), ("upgrade", "milestone", "upgraded", D), ("review", "", "", 0)];
    for i in 0..300 {
        let user = format!("u{i:03}");
        let signup = NOW - 20 * D + r.below(5 * D as u64);
        out.push((user.clone(), "identify", "identify".into(), signup, json!({"signedUpAt": signup})));
        let shown = signup + H + r.below(D as u64);
        // NPS answers: before the showing (counted), or after it (not counted for the group).
        match r.below(5) {
            0 => out.push((user.clone(), "survey", "survey_answered".into(), shown - 10, json!({"surveyId": "nps", "surveyKind": "nps", "score": 9, "group": "promoter"}))),
            1 => {
                out.push((user.clone(), "survey", "survey_answered".into(), shown - 20, json!({"surveyId": "nps", "surveyKind": "nps", "score": 3, "group": "detractor"})));
                out.push((user.clone(), "survey", "survey_answered".into(), shown - 5, json!({"surveyId": "nps", "surveyKind": "nps", "score": 7, "group": "passive"})));
            }
            2 => out.push((user.clone(), "survey", "survey_answered".into(), shown + 5, json!({"surveyId": "nps", "surveyKind": "nps", "score": 10, "group": "promoter"}))),
            3 => out.push((user.clone(), "survey", "survey_answered".into(), shown - 5, json!({"surveyId": "csat", "surveyKind": "csat", "score": 1, "group": "unhappy"}))),
            _ => {}
        }
        for (pid, kind, name, within) in goals {
            let props = |extra: Value| {
                let mut p = json!({"promptId": pid, "milestone": "valued"});
                if let Value::Object(m) = extra {
                    for (k, v) in m {
                        p[k] = v;
                    }
                }
                p
            };
            match r.below(6) {
                0 => continue, // never shown
                1 => {
                    // An action with no showing does not count.
                    out.push((user.clone(), "prompt", "prompt_action".into(), shown, props(json!({"action": "url"}))));
                    continue;
                }
                _ => {}
            }
            out.push((user.clone(), "prompt", "prompt_shown".into(), shown, props(json!({}))));
            // A second showing (another session) and a resend of the first are the same user.
            out.push((user.clone(), "prompt", "prompt_shown".into(), shown + D, props(json!({}))));
            match r.below(3) {
                0 => out.push((user.clone(), "prompt", "prompt_dismissed".into(), shown + 1000, props(json!({})))),
                _ => {
                    let acted = shown + 1000 + r.below(H as u64);
                    out.push((user.clone(), "prompt", "prompt_action".into(), acted, props(json!({"action": "host"}))));
                    if kind.is_empty() {
                        continue;
                    }
                    let at = match r.below(6) {
                        0 => acted - 1,          // before the action: no
                        1 => acted,              // at it: yes
                        2 => acted + within,     // the window's last ms: yes
                        3 => acted + within + 1, // past it: no
                        4 => acted + within / 2, // yes
                        _ => continue,
                    };
                    out.push((user.clone(), kind, name.into(), at, json!({})));
                    // A `track` event named like the milestone goal never counts for it.
                    if kind == "milestone" {
                        out.push((user.clone(), "track", name.into(), acted + 5, json!({})));
                    }
                }
            }
        }
    }
    out
}

#[derive(Default, Debug, PartialEq)]
struct Expected {
    shown: u64,
    acted: u64,
    dismissed: u64,
    converted: u64,
}

/// The oracle: straight from the definitions, per prompt and per (prompt, group).
fn oracle(events: &[Ev]) -> BTreeMap<(String, String), Expected> {
    let mut users: BTreeMap<&str, Vec<&Ev>> = BTreeMap::new();
    for e in events {
        users.entry(e.0.as_str()).or_default().push(e);
    }
    let mut out: BTreeMap<(String, String), Expected> = BTreeMap::new();
    for (user, evs) in &users {
        for (pid, goal_kind, goal_name, within) in [("invite", "track", "teammate_invited", 2 * D), ("upgrade", "milestone", "upgraded", D), ("review", "", "", 0)] {
            let mine = |name: &str| evs.iter().filter(|e| e.1 == "prompt" && e.2 == name && e.4["promptId"] == pid).map(|e| e.3).collect::<Vec<i64>>();
            let Some(&shown) = mine("prompt_shown").iter().min() else { continue };
            let acted = mine("prompt_action").into_iter().filter(|t| *t >= shown).min();
            let dismissed = !mine("prompt_dismissed").is_empty();
            let converted = acted.is_some_and(|a| evs.iter().any(|e| e.1 == goal_kind && e.2 == goal_name && e.3 >= a && e.3 <= a + within));
            let mut answers: Vec<(i64, &str)> = evs
                .iter()
                .filter(|e| e.1 == "survey" && e.4["surveyKind"] == "nps" && e.3 <= shown)
                .map(|e| (e.3, e.4["group"].as_str().unwrap_or("")))
                .collect();
            answers.sort();
            let group = answers.last().map_or("none", |a| a.1).to_string();
            let _ = user;
            for key in [(pid.to_string(), "all".to_string()), (pid.to_string(), group)] {
                let x = out.entry(key).or_default();
                x.shown += 1;
                x.acted += acted.is_some() as u64;
                x.dismissed += dismissed as u64;
                x.converted += converted as u64;
            }
        }
    }
    out
}

fn batches(events: &[Ev]) -> Vec<String> {
    let rows: Vec<Value> = events
        .iter()
        .enumerate()
        .map(|(i, (user, kind, name, ts, props))| {
            json!({"id": format!("e{i:06}"), "type": kind, "name": name, "anonymousId": format!("a-{user}"), "userId": user, "ts": ts, "props": props})
        })
        .collect();
    rows.chunks(1000).map(|c| json!({"writeKey": "wk_demo", "sentAt": NOW, "events": c}).to_string()).collect()
}

async fn put_plan(url: &str) {
    let r = reqwest::Client::new().put(format!("{url}/v1/plan")).bearer_auth("et_demo").body(PLAN).send().await.expect("put");
    assert!(r.status().is_success(), "{}", r.text().await.unwrap_or_default());
}

#[tokio::test]
async fn conversion_per_prompt_and_nps_group_matches_the_oracle_on_sqlite_and_clickhouse() {
    let events = population();
    let expected = oracle(&events);
    let dir = tempfile::tempdir().expect("tmp");
    let a = serve_with_clock(Arc::new(SqliteStore::open(dir.path().join("p.db")).expect("sqlite")), Some(NOW)).await;
    let (_server, ch) = clickhouse().await;
    let b = serve_with_clock(ch, Some(NOW)).await;
    for c in [&a, &b] {
        put_plan(&c.url).await;
        for body in batches(&events) {
            assert_eq!(post(&c.url, body.clone()).await.status(), 200);
            // A resend changes nothing.
            assert_eq!(post(&c.url, body).await.status(), 200);
        }
    }
    let r = common::get(&a.url, "/v1/prompts").await;
    assert_eq!(r, common::get(&b.url, "/v1/prompts").await, "SQLite and ClickHouse answer the same");
    let q = "/v1/prompts?from=2026-12-31&trait.none=x";
    assert_eq!(common::get(&a.url, q).await, common::get(&b.url, q).await);

    let rows = r["prompts"].as_array().expect("rows");
    assert_eq!(rows.iter().map(|p| p["promptId"].as_str().expect("id")).collect::<Vec<_>>(), ["invite", "review", "upgrade"]);
    let check = |row: &Value, key: (String, String), with_goal: bool| {
        let x = &expected[&key];
        assert_eq!(row["shown"], x.shown, "{key:?} shown");
        assert_eq!(row["acted"], x.acted, "{key:?} acted");
        assert_eq!(row["dismissed"], x.dismissed, "{key:?} dismissed");
        if with_goal {
            assert_eq!(row["converted"], x.converted, "{key:?} converted");
            assert_eq!(row["conversionRate"].as_f64(), Some(x.converted as f64 / x.shown as f64));
        } else {
            assert_eq!(row["converted"], Value::Null, "{key:?}: no goal, no conversion");
        }
        assert_eq!(row["actionRate"].as_f64(), Some(x.acted as f64 / x.shown as f64));
    };
    for row in rows {
        let id = row["promptId"].as_str().expect("id").to_string();
        let with_goal = id != "review";
        check(row, (id.clone(), "all".into()), with_goal);
        let groups: Vec<&str> = row["byNpsGroup"].as_array().expect("groups").iter().map(|g| g["group"].as_str().expect("group")).collect();
        let want: Vec<&str> = ["detractor", "passive", "promoter", "none"].into_iter().filter(|g| expected.contains_key(&(id.clone(), g.to_string()))).collect();
        assert_eq!(groups, want, "{id}: groups in order, detractors (only ever answered before a passive) never among them");
        for g in row["byNpsGroup"].as_array().expect("groups") {
            check(g, (id.clone(), g["group"].as_str().expect("group").into()), with_goal);
        }
    }
    let invite = &rows[0];
    assert!(invite["converted"].as_u64().expect("n") > 0 && invite["converted"].as_u64() < invite["acted"].as_u64(), "some convert, not all");
}

/// The host's callback tracks the goal a millisecond after the action, and the SDK sends it in a
/// batch of its own that travels faster (3 ms against 40 ms). Correcting each batch by its own
/// delay would date the goal before the action and lose the conversion; delays are not skew.
#[tokio::test]
async fn a_goal_sent_in_a_faster_batch_than_the_action_still_converts() {
    let dir = tempfile::tempdir().expect("tmp");
    let c = serve_with_clock(Arc::new(SqliteStore::open(dir.path().join("p.db")).expect("sqlite")), Some(NOW)).await;
    put_plan(&c.url).await;
    let ev = |id: &str, kind: &str, name: &str, ts: i64, props: Value| {
        json!({"id": id, "type": kind, "name": name, "anonymousId": "a-pat", "userId": "pat", "ts": ts, "props": props})
    };
    let invite = json!({"promptId": "invite", "milestone": "valued"});
    let shown = ev("e1", "prompt", "prompt_shown", NOW - 100, invite.clone());
    let acted = ev("e2", "prompt", "prompt_action", NOW - 40, json!({"promptId": "invite", "milestone": "valued", "action": "host"}));
    let goal = ev("e3", "track", "teammate_invited", NOW - 39, json!({}));
    let slow = json!({"writeKey": "wk_demo", "sentAt": NOW - 40, "events": [shown, acted]}).to_string();
    let fast = json!({"writeKey": "wk_demo", "sentAt": NOW - 3, "events": [goal]}).to_string();
    assert_eq!(post(&c.url, slow).await.status(), 200);
    assert_eq!(post(&c.url, fast).await.status(), 200);
    let r = common::get(&c.url, "/v1/prompts").await;
    let row = r["prompts"].as_array().expect("rows").iter().find(|p| p["promptId"] == "invite").cloned().expect("invite");
    assert_eq!([&row["shown"], &row["acted"], &row["converted"]], [&json!(1), &json!(1), &json!(1)], "{r}");
}
