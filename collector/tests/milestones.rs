//! A plan milestone is reached only by its `milestone` event; an ad-hoc step counts `track`
//! events of its name. Checked against an independent oracle on both stores.
//!
//! The plan has a milestone `invoice_sent` whose condition is an `invoice_sent` *track* event that
//! is not a test invoice and comes after `client_added`: the milestone id equals an event name,
//! so a report that matched steps by name alone would count test invoices and invoices sent
//! before any client. The generated users send both kinds of events, the milestone events as the
//! SDK would (once the condition holds, sometimes twice from a second device), with same-
//! millisecond ties, identifies that arrive after everything else, batches posted out of order
//! and resent. Every expected figure below is computed from the generated users' own record of
//! what happened, by code that shares nothing with the collector's analytics.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{clickhouse, post, serve_with_clock, Collector};
use onramp_collector::store::sqlite::SqliteStore;
use serde_json::{json, Value};

const H: i64 = 3_600_000;
const D: i64 = 24 * H;
/// The collectors' fixed clock: 2027-01-15T08:00:00Z.
const NOW: i64 = 1_800_000_000_000;
const USERS: usize = 400;

const PLAN: &str = r#"{
  "version": "invoicer-1",
  "product": "Invoicer",
  "milestones": [
    { "id": "client_added", "title": "Add a client", "condition": { "event": "client_added" }, "due": "24h" },
    { "id": "invoice_sent", "title": "Send a real invoice", "value": true, "due": "3d",
      "condition": { "event": "invoice_sent", "where": { "test": { "ne": true } }, "after": "client_added" } }
  ]
}"#;

struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// One simulated user and what truly happened to them.
struct Sim {
    /// The id reports list them under: the user id once identified, else the anonymous id.
    key: String,
    /// Whether they ever identified: visitors who never did are in no report, counted apart.
    identified: bool,
    /// `signedUpAt` when identified with one.
    signed_up_at: Option<i64>,
    /// Track events: (ts, name, is a test invoice).
    tracks: Vec<(i64, &'static str, bool)>,
    /// When the SDK reached each milestone (by the plan's condition), if it did.
    client_added: Option<i64>,
    invoice_sent: Option<i64>,
    /// Every event time of the user, for first-seen.
    times: Vec<i64>,
}

impl Sim {
    fn signup(&self) -> i64 {
        self.signed_up_at.unwrap_or_else(|| *self.times.iter().min().expect("an event"))
    }
    fn since_signup(&self, at: Option<i64>) -> Option<i64> {
        at.map(|t| (t - self.signup()).max(0))
    }
    /// The first track event of `name` at or after `from` (any test flag).
    fn first_track(&self, name: &str, from: i64) -> Option<i64> {
        self.tracks.iter().filter(|(t, n, _)| *n == name && *t >= from).map(|(t, _, _)| *t).min()
    }
}

/// The users and the batches their SDKs sent, in the order they are to be posted.
fn simulate() -> (Vec<Sim>, Vec<String>) {
    let mut rng = Lcg(0x0001_1ce5);
    let mut sims = Vec::new();
    let mut batches: Vec<(u64, String)> = Vec::new();
    for i in 0..USERS {
        let anon = format!("anon-{i:03}");
        let user = format!("user-{i:03}");
        let signup = NOW - 20 * D + rng.below(19 * D as u64) as i64;
        let identified = rng.chance(85);
        let with_signup = identified && rng.chance(90);
        let mut n = 0;
        let mut events = Vec::new();
        let mut ev = |kind: &str, name: &str, ts: i64, props: Value, user_id: Option<&str>, device: &str| {
            n += 1;
            let mut e = json!({"id": format!("{i:03}-{n:02}"), "type": kind, "name": name, "anonymousId": device, "ts": ts, "props": props});
            if let Some(u) = user_id {
                e["userId"] = json!(u);
            }
            events.push(e);
        };
        let mut tracks = Vec::new();
        let mut t = signup + rng.below(H as u64) as i64;
        // Some users send an invoice before adding any client (out of order: no milestone).
        if rng.chance(25) {
            tracks.push((t, "invoice_sent", rng.chance(50)));
            t += 1 + rng.below(2 * H as u64) as i64;
        }
        if rng.chance(80) {
            tracks.push((t, "client_added", false));
            if rng.chance(15) {
                tracks.push((t + rng.below(D as u64) as i64, "client_added", false));
            }
            // Invoices: test ones first often, some real; a real one may share the millisecond
            // of the client (a tie: the milestone follows at the same time).
            let mut at = if rng.chance(10) { t } else { t + 1 + rng.below(3 * D as u64) as i64 };
            for _ in 0..rng.below(4) {
                tracks.push((at, "invoice_sent", rng.chance(45)));
                at += 1 + rng.below(D as u64) as i64;
            }
        }
        tracks.sort();
        // The SDK's milestones, by the plan's condition.
        let client_added = tracks.iter().find(|(_, n, _)| *n == "client_added").map(|(t, _, _)| *t);
        let invoice_sent = client_added
            .and_then(|c| tracks.iter().find(|(t, n, test)| *n == "invoice_sent" && !test && *t >= c).map(|(t, _, _)| *t));
        let tracks: Vec<(i64, &'static str, bool)> = tracks.into_iter().filter(|(t, _, _)| *t < NOW).collect();
        let client_added = client_added.filter(|t| *t < NOW);
        let invoice_sent = invoice_sent.filter(|t| *t < NOW);

        // Before identify everything carries only the anonymous id; the identify comes in its
        // own batch, posted after all the others for some users (a late identify).
        let mut times: Vec<i64> = Vec::new();
        for (ts, name, test) in &tracks {
            let props = if *name == "invoice_sent" { json!({"test": test}) } else { json!({}) };
            ev("track", name, *ts, props, None, &anon);
            times.push(*ts);
        }
        for (id, at) in [("client_added", client_added), ("invoice_sent", invoice_sent)] {
            if let Some(ts) = at {
                ev("milestone", id, ts, json!({"sinceSignupMs": ts - signup}), None, &anon);
                times.push(ts);
            }
        }
        // A second device of an identified user reports the milestone again, later: the first
        // report stands.
        if let (true, Some(ts)) = (identified, invoice_sent) {
            if rng.chance(20) && ts + H < NOW {
                ev("milestone", "invoice_sent", ts + H, json!({}), Some(&user), &format!("{anon}-phone"));
                times.push(ts + H);
            }
        }
        let mut identify = Vec::new();
        if identified {
            let at = signup + rng.below(2 * H as u64) as i64;
            let traits = if with_signup { json!({"signedUpAt": signup, "plan": "pro"}) } else { json!({"plan": "pro"}) };
            identify.push(json!({"id": format!("{i:03}-id"), "type": "identify", "name": "identify", "anonymousId": anon, "userId": user, "ts": at, "props": traits}));
            times.push(at);
        }
        if times.is_empty() {
            continue;
        }
        let late = rng.chance(30);
        let body = |events: Vec<Value>| json!({"writeKey": "wk_demo", "sentAt": NOW, "events": events}).to_string();
        // Posting order: a random rank, so batches of different users interleave out of time
        // order; late identifies go after everything.
        let rank = rng.below(1 << 20);
        if !events.is_empty() {
            let b = body(events);
            if rng.chance(15) {
                batches.push((rng.below(1 << 20), b.clone()));
            }
            batches.push((rank, b));
        }
        if !identify.is_empty() {
            batches.push((if late { (1 << 20) + rank } else { rank }, body(identify)));
        }
        sims.push(Sim {
            key: if identified { user } else { anon },
            identified,
            signed_up_at: with_signup.then_some(signup),
            tracks,
            client_added,
            invoice_sent,
            times,
        });
    }
    batches.sort_by_key(|(rank, _)| *rank);
    (sims, batches.into_iter().map(|(_, b)| b).collect())
}

/// Nearest rank by counting: the smallest value with at least pct% of the values at or below it.
fn quantile(values: &[i64], pct: i64) -> Option<i64> {
    let n = values.len() as i64;
    let mut candidates = values.to_vec();
    candidates.sort();
    candidates.dedup();
    candidates.into_iter().find(|v| values.iter().filter(|x| *x <= v).count() as i64 * 100 >= pct * n)
}

fn quantiles(values: &[i64]) -> Value {
    json!({"count": values.len(), "p50": quantile(values, 50), "p75": quantile(values, 75), "p90": quantile(values, 90)})
}

fn sorted_keys<'a>(sims: impl Iterator<Item = &'a Sim>) -> Vec<&'a str> {
    let mut keys: Vec<&str> = sims.map(|s| s.key.as_str()).collect();
    keys.sort();
    keys
}

async fn get(c: &Collector, path: &str) -> Value {
    let r = reqwest::Client::new().get(format!("{}{path}", c.url)).bearer_auth("rt_demo").send().await.expect("get");
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.expect("json")
}

async fn check(c: &Collector, all: &[Sim], store: &str) {
    let sims: Vec<&Sim> = all.iter().filter(|s| s.identified).collect();
    let visitors = all.len() - sims.len();
    assert!(visitors > 20, "the data has visitors who never identified: {visitors}");
    // The funnel of the plan's milestones: a user is at step 2 when their invoice_sent
    // milestone event came at or after their client_added one.
    let both: Vec<&Sim> = sims.iter().copied().filter(|s| s.client_added.is_some() && s.invoice_sent.is_some()).collect();
    let funnel = get(c, "/v1/funnel?users=true").await;
    let steps = funnel["steps"].as_array().expect("steps");
    assert_eq!(steps[0]["name"], "client_added");
    assert_eq!((steps[0]["kind"].as_str(), steps[1]["kind"].as_str()), (Some("milestone"), Some("milestone")), "{store}");
    assert_eq!(steps[0]["userIds"], json!(sorted_keys(sims.iter().copied().filter(|s| s.client_added.is_some()))), "{store}: client_added");
    assert_eq!(steps[1]["userIds"], json!(sorted_keys(both.iter().copied())), "{store}: invoice_sent");
    let gaps: Vec<i64> = both.iter().map(|s| s.invoice_sent.unwrap_or(0) - s.client_added.unwrap_or(0)).collect();
    assert_eq!(steps[1]["medianMsFromPrevious"], json!(quantile(&gaps, 50)), "{store}: median gap");

    // Within one day of the first step.
    let funnel = get(c, "/v1/funnel?window=1d").await;
    let in_a_day = gaps.iter().filter(|g| **g <= D).count();
    assert_eq!(funnel["steps"][1]["users"], json!(in_a_day), "{store}: windowed");

    // The same names as ad-hoc steps count track events: any invoice (test or not) at or after
    // the first client_added event.
    let adhoc = get(c, "/v1/funnel?steps=event:client_added,event:invoice_sent&users=true").await;
    let steps = adhoc["steps"].as_array().expect("steps");
    assert_eq!(steps[1]["kind"], "event");
    let first_client = |s: &Sim| s.first_track("client_added", i64::MIN);
    let reached: Vec<&Sim> =
        sims.iter().copied().filter(|s| first_client(s).is_some_and(|c| s.first_track("invoice_sent", c).is_some())).collect();
    assert_eq!(steps[1]["userIds"], json!(sorted_keys(reached.into_iter())), "{store}: ad-hoc invoice_sent");

    // Time-to-value: the value milestone is invoice_sent, from sign-up.
    let ttv = get(c, "/v1/ttv").await;
    let value: Vec<i64> = sims.iter().filter_map(|s| s.since_signup(s.invoice_sent)).collect();
    assert_eq!(ttv["value"]["name"], "invoice_sent");
    assert_eq!(ttv["value"]["kind"], "milestone");
    assert_eq!(ttv["value"]["reached"], json!(value.len()), "{store}: value reached");
    assert_eq!(ttv["value"]["ms"], quantiles(&value), "{store}: time to value");
    let clients: Vec<i64> = sims.iter().filter_map(|s| s.since_signup(s.client_added)).collect();
    assert_eq!(ttv["milestones"][0]["ms"], quantiles(&clients), "{store}: time to client_added");
    let eligible: Vec<&Sim> = sims.iter().copied().filter(|s| s.signup() + D <= NOW).collect();
    let activated = eligible.iter().filter(|s| s.since_signup(s.invoice_sent).is_some_and(|t| t < D)).count();
    assert_eq!(ttv["firstDay"], json!({"eligible": eligible.len(), "activated": activated, "rate": activated as f64 / eligible.len() as f64}));

    // The wrong answer this replaces (first invoice_sent of any type) must differ on this data,
    // or the test would prove nothing.
    let by_name = sims.iter().filter(|s| s.first_track("invoice_sent", i64::MIN).is_some() || s.invoice_sent.is_some()).count();
    assert!(by_name > value.len() + 20, "the data has test and early invoices: {by_name} vs {}", value.len());

    // Cohorts by sign-up day count milestones only.
    let cohorts = get(c, "/v1/cohorts?by=day").await;
    let mut truth: BTreeMap<i64, (usize, usize, usize)> = BTreeMap::new();
    for s in &sims {
        let row = truth.entry(s.signup() - s.signup().rem_euclid(D)).or_default();
        row.0 += 1;
        row.1 += usize::from(s.client_added.is_some());
        row.2 += usize::from(s.invoice_sent.is_some());
    }
    let rows = common::cohort_rows(&cohorts);
    assert_eq!(rows, truth.into_iter().map(|(k, (a, b, c))| (k, a, b, c)).collect::<Vec<_>>(), "{store}: cohorts");
    assert_eq!(cohorts["stepKinds"], json!(["milestone", "milestone"]));

    // Stalled: the plan's due windows, (user, milestone) pairs past due and not reached.
    let stalled = get(c, "/v1/stalled").await;
    let due = |s: &Sim, at: Option<i64>, within: i64| usize::from(s.signup() + within <= NOW && at.is_none());
    let total: usize = sims.iter().map(|s| due(s, s.client_added, D) + due(s, s.invoice_sent, 3 * D)).sum();
    assert_eq!(stalled["total"], json!(total), "{store}: stalled pairs");

    // The dashboard's one request says the same, with each step's kind.
    let report = get(c, "/v1/report").await;
    assert_eq!(report["stepKinds"], json!(["milestone", "milestone"]));
    assert_eq!(report["valueKind"], "milestone");
    assert_eq!(report["ttv"]["value"]["ms"], quantiles(&value));
    assert_eq!(report["stalled"]["total"], json!(total));
    assert_eq!(report["visitors"], json!(visitors), "{store}: visitors, apart");
    assert_eq!(report["funnel"]["users"], json!(sims.len()), "{store}: users");
}

/// Stores the plan and posts every batch (out of order, some twice) to `c`, then checks it.
async fn post_and_check(c: &Collector, store: &str) {
    let (sims, batches) = simulate();
    let r = reqwest::Client::new().put(format!("{}/v1/plan", c.url)).bearer_auth("et_demo").body(PLAN).send().await.expect("put");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    // Every identify is posted after all other events (a late identify for everyone), each
    // group by eight concurrent clients (ClickHouse's writer groups them, as in production).
    let (early, late): (Vec<String>, Vec<String>) = batches.into_iter().partition(|b| !b.contains("\"type\":\"identify\""));
    for group in [early, late] {
        let mut tasks = Vec::new();
        for chunk in group.chunks(group.len() / 8 + 1) {
            let (chunk, url) = (chunk.to_vec(), c.url.clone());
            tasks.push(tokio::spawn(async move {
                for b in chunk {
                    // Over the write key's rate limit: wait as told, as the SDK does.
                    let mut r = post(&url, b.clone()).await;
                    while r.status() == 429 {
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        r = post(&url, b.clone()).await;
                    }
                    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
                }
            }));
        }
        for t in tasks {
            t.await.expect("post task");
        }
    }
    check(c, &sims, store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_reaches_milestones_by_their_milestone_event_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteStore::open(dir.path().join("m.db")).expect("sqlite"));
    post_and_check(&serve_with_clock(store, Some(NOW)).await, "SQLite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_reaches_milestones_by_their_milestone_event_only() {
    let (_server, store) = clickhouse().await;
    post_and_check(&serve_with_clock(store, Some(NOW)).await, "ClickHouse").await;
}
