//! `GET /v1/experiments`: lift on the holdout experiments (docs/EXPERIMENTS.md).
//!
//! - The interval arithmetic against Newcombe's published table (1998, method 10) and against
//!   an oracle here that finds Wilson's bounds by bisection on the score statistic, sharing no
//!   formula with the collector.
//! - A seeded simulation with a planted effect (a tip that raises completion from 40 % to 50 %
//!   and cuts time-to-value by 6 h), posted through the real API into SQLite and into a real
//!   clickhouse-server: exact counts against the simulation's own, the planted effect inside
//!   the reported intervals, and byte-identical answers from both stores.
//! - Planted null effects over repeated seeds: called significant at about the nominal 5 %.

mod common;

use std::sync::Arc;

use common::{clickhouse, post, serve_with_clock};
use onramp_collector::analytics::experiments::{experiments, Comparison, TtvComparison, DEFAULT_MDE};
use onramp_collector::analytics::stats;
use onramp_collector::analytics::{FirstReach, Step, User};
use onramp_collector::store::sqlite::SqliteStore;
use onramp_collector::store::{UserEvent, UserEvents};
use onramp::core::json::Value as J;
use onramp::core::wire::EventType;
use serde_json::{json, Value};

const H: i64 = 3_600_000;
const D: i64 = 24 * H;
const NOW: i64 = 1_800_000_000_000;

/// splitmix64, for behaviour.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    /// Exponential with this mean, in ms.
    fn exp(&mut self, mean: f64) -> i64 {
        (-(1.0 - self.unit()).ln() * mean) as i64
    }
}

// ---- the oracle: Wilson bounds by bisection, Newcombe's combination written out ----

/// The p where the score statistic |x/n − p| / √(p(1−p)/n) equals z, below or above x/n.
fn wilson_by_bisection(x: usize, n: usize, upper: bool) -> f64 {
    let (phat, n) = (x as f64 / n as f64, n as f64);
    let score = |p: f64| (phat - p).abs() / (p * (1.0 - p) / n).sqrt();
    let (mut lo, mut hi) = if upper { (phat, 1.0) } else { (0.0, phat) };
    if (upper && phat == 1.0) || (!upper && phat == 0.0) {
        return phat;
    }
    for _ in 0..200 {
        let mid = (lo + hi) / 2.0;
        // Inside the interval the score is below z; moving away from phat it grows.
        let inside = score(mid) < stats::Z95;
        match (upper, inside) {
            (true, true) | (false, false) => lo = mid,
            _ => hi = mid,
        }
    }
    (lo + hi) / 2.0
}

fn oracle_newcombe(x1: usize, n1: usize, x2: usize, n2: usize) -> (f64, f64, f64) {
    let (p1, p2) = (x1 as f64 / n1 as f64, x2 as f64 / n2 as f64);
    let (l1, u1) = (wilson_by_bisection(x1, n1, false), wilson_by_bisection(x1, n1, true));
    let (l2, u2) = (wilson_by_bisection(x2, n2, false), wilson_by_bisection(x2, n2, true));
    let d = p1 - p2;
    (d, d - (p1 - l1).hypot(u2 - p2), d + (u1 - p1).hypot(p2 - l2))
}

#[test]
fn newcombe_intervals_match_the_published_table_and_the_oracle() {
    // Newcombe (1998), Statistics in Medicine 17:873–890, table II, method 10.
    let published = [
        ((56, 70, 48, 80), (0.0524, 0.3339)),
        ((9, 10, 3, 10), (0.1705, 0.8090)),
        ((6, 7, 2, 7), (0.0582, 0.8062)),
        ((5, 56, 0, 29), (-0.0381, 0.1926)),
        ((0, 10, 0, 20), (-0.1611, 0.2775)),
        ((0, 10, 0, 10), (-0.2775, 0.2775)),
        ((10, 10, 0, 20), (0.6791, 1.0)),
        ((10, 10, 0, 10), (0.6075, 1.0)),
    ];
    for ((x1, n1, x2, n2), (lo, hi)) in published {
        let d = stats::newcombe(x1, n1, x2, n2, stats::Z95).expect("arms");
        assert!((d.low - lo).abs() < 5e-5 && (d.high - hi).abs() < 5e-5, "{x1}/{n1} − {x2}/{n2}: {d:?}, published {lo}..{hi}");
        let (od, olo, ohi) = oracle_newcombe(x1, n1, x2, n2);
        assert!((d.difference - od).abs() < 1e-12 && (d.low - olo).abs() < 1e-9 && (d.high - ohi).abs() < 1e-9, "{d:?} vs oracle");
    }
    assert_eq!(stats::newcombe(1, 0, 1, 2, stats::Z95), None, "an empty arm has no interval");
}

// ---- simulated populations ----

struct SimUser {
    id: String,
    control: bool,
    signup: i64,
    /// Time from sign-up to value, when reached.
    ttv: Option<i64>,
}

/// `n` users, a share `control_share` of them in control; completion probability and the TTV
/// distribution per arm: `base + Exp(mean)`, treatment's `base` lowered by `shift`.
fn population(seed: u64, n: usize, control_share: f64, p: (f64, f64), shift: i64) -> Vec<SimUser> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|i| {
            let control = rng.chance(control_share);
            let signup = NOW - 28 * D + (rng.unit() * 7.0 * D as f64) as i64;
            let reached = rng.chance(if control { p.0 } else { p.1 });
            let ttv = 7 * H + rng.exp(30.0 * H as f64).min(19 * D) - if control { 0 } else { shift };
            SimUser { id: format!("user-{i:05}"), control, signup, ttv: reached.then_some(ttv) }
        })
        .collect()
}

fn as_rows(pop: &[SimUser], experiment: &str) -> (Vec<User>, Vec<UserEvents>, Vec<UserEvents>) {
    let users = pop
        .iter()
        .map(|u| User { id: u.id.clone(), signed_up_at: u.signup, signup_known: true, first_seen: u.signup, last_seen: u.signup, traits: vec![] })
        .collect();
    let arm = |u: &SimUser| if u.control { "control" } else { "treatment" };
    let assigned = pop
        .iter()
        .map(|u| UserEvents {
            user: u.id.clone(),
            events: vec![UserEvent {
                ts: u.signup + 1000,
                kind: EventType::Experiment,
                name: "experiment_assigned".into(),
                props: vec![("experiment".into(), J::Str(experiment.into())), ("arm".into(), J::Str(arm(u).into()))],
            }],
        })
        .collect();
    let reached = pop
        .iter()
        .filter_map(|u| u.ttv.map(|t| UserEvents { user: u.id.clone(), events: vec![UserEvent { ts: u.signup + t, kind: EventType::Milestone, name: "activated".into(), props: vec![] }] }))
        .collect();
    (users, assigned, reached)
}

fn median(mut v: Vec<i64>) -> i64 {
    v.sort_unstable();
    v[v.len().div_ceil(2) - 1]
}

#[test]
fn planted_null_effects_are_called_significant_at_about_the_nominal_rate_and_planted_effects_are_covered() {
    const SEEDS: u64 = 200;
    let value = Step::milestone("activated");
    let (mut false_completion, mut false_ttv, mut covered_completion, mut covered_ttv) = (0, 0, 0, 0);
    for seed in 0..SEEDS {
        let null = population(1000 + seed, 600, 0.5, (0.4, 0.4), 0);
        let (users, assigned, reached) = as_rows(&null, "tip:x");
        let e = &experiments(&users, &assigned, &value, &value, &FirstReach::new(&reached), NOW, DEFAULT_MDE)[0];
        match e.completion {
            Comparison::Ready { absolute, .. } => false_completion += absolute.significant() as u32,
            other => panic!("seed {seed}: {other:?}"),
        }
        match e.ttv {
            TtvComparison::Ready(d) => false_ttv += d.significant() as u32,
            other => panic!("seed {seed}: {other:?}"),
        }

        let planted = population(5000 + seed, 600, 0.5, (0.4, 0.5), 6 * H);
        let (users, assigned, reached) = as_rows(&planted, "tip:x");
        let e = &experiments(&users, &assigned, &value, &value, &FirstReach::new(&reached), NOW, DEFAULT_MDE)[0];
        if let Comparison::Ready { absolute, .. } = e.completion {
            covered_completion += (absolute.low <= 0.10 && 0.10 <= absolute.high) as u32;
        }
        if let TtvComparison::Ready(d) = e.ttv {
            covered_ttv += (d.low <= -6 * H && -6 * H <= d.high) as u32;
        }
    }
    // Binomial(200, 0.05): mean 10, P(more than 19) ≈ 0.002. Coverage 95 % nominal: at least
    // 180 of 200 (P(fewer) ≈ 0.006 when the coverage is right).
    assert!(false_completion <= 19, "completion: {false_completion} of {SEEDS} null experiments called significant");
    assert!(false_ttv <= 19, "time to value: {false_ttv} of {SEEDS} null experiments called significant");
    assert!(covered_completion >= 180, "the planted +10 points inside the interval in {covered_completion} of {SEEDS}");
    assert!(covered_ttv >= 180, "the planted −6 h inside the interval in {covered_ttv} of {SEEDS}");
}

// ---- through the API, on both stores ----

fn batches(pop: &[SimUser], global: &[bool]) -> Vec<String> {
    let mut events = Vec::new();
    for (i, u) in pop.iter().enumerate() {
        let id = |k: &str| format!("{}-{k}", u.id);
        let base = |k: &str, kind: &str, name: &str, ts: i64, props: Value| {
            json!({"id": id(k), "type": kind, "name": name, "anonymousId": format!("anon-{}", u.id), "userId": u.id, "ts": ts, "props": props})
        };
        events.push(base("i", "identify", "identify", u.signup, json!({"signedUpAt": u.signup})));
        let arm = |c: bool| if c { "control" } else { "treatment" };
        events.push(base("g", "experiment", "experiment_assigned", u.signup + 1000, json!({"experiment": "global", "arm": arm(global[i])})));
        if !global[i] {
            events.push(base("t", "experiment", "experiment_assigned", u.signup + 1000, json!({"experiment": "tip:welcome", "arm": arm(u.control)})));
            // A resend of the same assignment, and a later contradicting one: the first counts.
            events.push(base("t2", "experiment", "experiment_assigned", u.signup + 2000, json!({"experiment": "tip:welcome", "arm": arm(!u.control)})));
        }
        if let Some(t) = u.ttv {
            events.push(base("m", "milestone", "activated", u.signup + t, json!({})));
            // A `track` event named like the milestone never counts for it.
            events.push(base("tr", "track", "activated", u.signup + 10, json!({})));
        }
    }
    events.chunks(1000).map(|c| json!({"writeKey": "wk_demo", "sentAt": NOW, "events": c}).to_string()).collect()
}

async fn ask(url: &str) -> Value {
    common::get(url, "/v1/experiments?value=milestone:activated&mde=0.1").await
}

#[tokio::test]
async fn a_planted_effect_is_reported_within_its_interval_identically_on_sqlite_and_clickhouse() {
    let pop = population(0x16, 4000, 0.5, (0.4, 0.5), 6 * H);
    let mut rng = Rng(99);
    let global: Vec<bool> = pop.iter().map(|_| rng.chance(0.1)).collect();
    let bodies = batches(&pop, &global);

    let dir = tempfile::tempdir().expect("tmp");
    let sqlite = Arc::new(SqliteStore::open(dir.path().join("e.db")).expect("sqlite"));
    let a = serve_with_clock(sqlite, Some(NOW)).await;
    let (_server, ch) = clickhouse().await;
    let b = serve_with_clock(ch, Some(NOW)).await;
    for body in &bodies {
        let r = post(&a.url, body.clone()).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default().chars().take(400).collect::<String>());
        assert_eq!(post(&b.url, body.clone()).await.status(), 200);
    }
    let r = ask(&a.url).await;
    assert_eq!(r, ask(&b.url).await, "SQLite and ClickHouse answer the same");
    for q in ["/v1/experiments?value=milestone:activated&trait.none=x", "/v1/experiments?value=milestone:activated&from=2027-01-01"] {
        assert_eq!(common::get(&a.url, q).await, common::get(&b.url, q).await, "{q}");
    }

    // The oracle's counts, straight from the simulation.
    let ex: Vec<&Value> = r["experiments"].as_array().expect("list").iter().collect();
    assert_eq!(ex.iter().map(|e| e["experiment"].as_str().expect("id")).collect::<Vec<_>>(), ["global", "tip:welcome"]);
    let tip = ex[1];
    let in_tip: Vec<&SimUser> = pop.iter().zip(&global).filter(|(_, g)| !**g).map(|(u, _)| u).collect();
    let arm = |control: bool| in_tip.iter().copied().filter(move |u| u.control == control);
    let count = |control: bool| arm(control).count();
    let completed = |control: bool| arm(control).filter(|u| u.ttv.is_some()).count();
    for (name, control) in [("control", true), ("treatment", false)] {
        assert_eq!(tip[name]["users"], count(control), "{name} users");
        assert_eq!(tip[name]["completed"], completed(control), "{name} completed");
        let ttvs: Vec<i64> = arm(control).filter_map(|u| u.ttv).collect();
        assert_eq!(tip[name]["medianTtvMs"], median(ttvs.clone()), "{name} median");
        let activated = arm(control).filter(|u| u.ttv.is_some_and(|t| t < D)).count();
        assert_eq!(tip[name]["activation"]["activated"], activated, "{name} activated");
        assert_eq!(tip[name]["activation"]["eligible"], count(control), "everyone signed up over a day ago");
    }
    let (od, olo, ohi) = oracle_newcombe(completed(false), count(false), completed(true), count(true));
    let c = &tip["completion"];
    assert_eq!(c["status"], "ready");
    let f = |v: &Value| v.as_f64().expect("number");
    assert!((f(&c["absolute"]["estimate"]) - od).abs() < 1e-12);
    assert!((f(&c["absolute"]["low"]) - olo).abs() < 1e-9 && (f(&c["absolute"]["high"]) - ohi).abs() < 1e-9);
    assert!(olo <= 0.10 && 0.10 <= ohi, "the planted +10 points lie in [{olo}, {ohi}]");
    assert_eq!(c["significant"], true);
    let t = &tip["ttv"];
    assert_eq!(t["status"], "ready");
    let (lo, hi) = (t["differenceMs"]["low"].as_i64().expect("ms"), t["differenceMs"]["high"].as_i64().expect("ms"));
    assert!(lo <= -6 * H && -6 * H <= hi, "the planted −6 h lies in [{lo}, {hi}] ms");
    assert_eq!(t["significant"], true);
    // The planned size for mde 0.1 at the arms' ratio, from the control arm's rate.
    let p = &tip["plannedSampleSize"];
    let k = count(false) as f64 / count(true) as f64;
    let p1 = completed(true) as f64 / count(true) as f64;
    let expected = oracle_sample_size(p1, p1 + 0.1, k);
    assert_eq!((p["control"].as_u64(), p["treatment"].as_u64()), (Some(expected.0), Some(expected.1)));
    assert_eq!(p["reached"], true);

    // The global holdout had no planted effect on anything.
    let g = ex[0];
    assert_eq!(g["control"]["users"], global.iter().filter(|g| **g).count());
    assert_eq!(g["treatment"]["users"], in_tip.len());
}

/// Sample size, written from the textbook formula (Fleiss, without continuity correction) and
/// the normal quantiles to more digits than a test needs.
fn oracle_sample_size(p1: f64, p2: f64, k: f64) -> (u64, u64) {
    let (za, zb) = (1.959_963_985, 0.841_621_234);
    let pbar = (p1 + k * p2) / (1.0 + k);
    let a = za * (pbar * (1.0 - pbar) * (1.0 + 1.0 / k)).sqrt();
    let b = zb * (p1 * (1.0 - p1) + p2 * (1.0 - p2) / k).sqrt();
    let n = ((a + b) / (p2 - p1)).powi(2).ceil();
    (n as u64, (n * k).ceil() as u64)
}

#[tokio::test]
async fn few_users_read_not_enough_data_and_bad_parameters_are_named() {
    let pop = population(7, 30, 0.5, (0.4, 0.5), 0);
    let bodies = batches(&pop, &vec![false; pop.len()]);
    let dir = tempfile::tempdir().expect("tmp");
    let a = serve_with_clock(Arc::new(SqliteStore::open(dir.path().join("e.db")).expect("sqlite")), Some(NOW)).await;
    for body in bodies {
        assert_eq!(post(&a.url, body).await.status(), 200);
    }
    // A survey's control group (`controlPercent`) is an experiment like a tip's, listed by its id.
    let survey_arms = [("control", 0), ("treatment", 1), ("treatment", 2)];
    let assigned: Vec<Value> = survey_arms
        .iter()
        .map(|(arm, i)| {
            let u = &pop[*i];
            json!({"id": format!("{}-s", u.id), "type": "experiment", "name": "experiment_assigned", "anonymousId": format!("anon-{}", u.id),
                   "userId": u.id, "ts": u.signup + 1500, "props": {"experiment": "survey:nps", "arm": arm}})
        })
        .collect();
    assert_eq!(post(&a.url, json!({"writeKey": "wk_demo", "sentAt": NOW, "events": assigned}).to_string()).await.status(), 200);
    let r = ask(&a.url).await;
    let ids: Vec<&str> = r["experiments"].as_array().expect("list").iter().map(|e| e["experiment"].as_str().expect("id")).collect();
    assert_eq!(ids, ["global", "survey:nps", "tip:welcome"], "global first, then by id");
    let survey = &r["experiments"][1];
    assert_eq!((survey["control"]["users"].as_u64(), survey["treatment"]["users"].as_u64()), (Some(1), Some(2)));
    assert_eq!(survey["completion"]["status"], "notEnoughData");
    let tip = &r["experiments"][2];
    assert_eq!(tip["experiment"], "tip:welcome");
    assert_eq!(tip["completion"]["status"], "notEnoughData");
    assert_eq!(tip["ttv"]["status"], "notEnoughData");
    assert_eq!(tip["plannedSampleSize"]["reached"], false);
    let bad = reqwest::Client::new().get(format!("{}/v1/experiments?mde=5", a.url)).bearer_auth("rt_demo").send().await.expect("get");
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.expect("body").contains("mde"));
}
