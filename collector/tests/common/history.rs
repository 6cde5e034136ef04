//! A generated onboarding history: anonymous visits linked by identify, milestones, tips,
//! metrics, resends, second devices, same-millisecond ties and skewed client clocks. Shared by
//! the equivalence test and the store benchmark (`examples/store_bench.rs`).

use serde_json::{json, Value};

/// The collector clock in tests that compare stores: batches sent "now" by this clock get no
/// skew correction, so both collectors store the same times.
pub const NOW: i64 = 1_800_000_000_000;

pub const HOUR: i64 = 3_600_000;
pub const DAY: i64 = 24 * HOUR;
pub const STEPS: [&str; 4] = ["signed_up", "project_created", "teammate_invited", "file_uploaded"];

/// A small deterministic generator, so a failure replays exactly.
pub struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The batches of the first days of users `users`, as the SDK would send them. Each user has
/// their own generator state, so any range of users can be generated on its own.
pub fn history(users: std::ops::Range<usize>, seed: u64) -> Vec<String> {
    let mut batches = Vec::new();
    for u in users {
        let mut rng = Lcg(seed.wrapping_mul(1_000_003).wrapping_add(u as u64));
        let anon = format!("anon-{u}");
        let user = format!("user-{u:04}");
        let signup = NOW - 14 * DAY + rng.below(13 * DAY as u64) as i64;
        let identified = rng.chance(80);
        let mut n = 0;
        let id = |n: &mut u32| {
            *n += 1;
            format!("{u:04}-{n:03}")
        };
        let ev = |id: String, kind: &str, name: &str, anon: &str, user: Option<&str>, ts: i64, props: Value| {
            let mut e = json!({"id": id, "type": kind, "name": name, "anonymousId": anon, "ts": ts, "props": props});
            if let Some(u) = user {
                e["userId"] = json!(u);
            }
            e
        };
        // Before identify: anonymous only, then the identify that links the device.
        // The track event and, at the same millisecond, the milestone the SDK reports for it.
        let mut first = vec![
            ev(id(&mut n), "track", "signed_up", &anon, None, signup, json!({})),
            ev(id(&mut n), "milestone", "signed_up", &anon, None, signup, json!({"sinceSignupMs": 0, "kind": "feature"})),
        ];
        let who = identified.then_some(user.as_str());
        if identified {
            let plan = if rng.chance(50) { "pro" } else { "trial" };
            let mut traits = json!({"plan": plan});
            if rng.chance(85) {
                traits["signedUpAt"] = json!(signup);
            }
            first.push(ev(id(&mut n), "identify", "identify", &anon, who, signup + 1 + rng.below(1000) as i64, traits));
        }
        let mut later = Vec::new();
        let mut t = signup + 2_000;
        for (i, step) in STEPS.iter().enumerate().skip(1) {
            if !rng.chance(75 - 10 * i as u64) {
                break;
            }
            t += rng.below(30 * HOUR as u64) as i64 + 1;
            let props = json!({"sinceSignupMs": t - signup, "signupKnown": true, "value": *step == "file_uploaded", "kind": "feature"});
            later.push(ev(id(&mut n), "milestone", step, &anon, who, t, props));
            if *step == "file_uploaded" {
                later.push(ev(id(&mut n), "milestone", "time_to_value", &anon, who, t, json!({"sinceSignupMs": t - signup, "milestone": step, "signupKnown": true})));
            }
            // Tips around the step; the shown and its outcome share a millisecond now and then.
            if rng.chance(60) {
                let shown = t - 1 - rng.below(HOUR as u64) as i64;
                let tip = json!({"tipId": format!("tip-{step}"), "milestone": step, "sinceSignupMs": shown - signup});
                later.push(ev(id(&mut n), "tip", "tip_shown", &anon, who, shown, tip.clone()));
                let outcome = ["tip_dismissed", "tip_cta_clicked", "tip_snoozed"][rng.below(3) as usize];
                let at = if rng.chance(20) { shown } else { shown + 1 + rng.below(60_000) as i64 };
                later.push(ev(id(&mut n), "tip", outcome, &anon, who, at, tip));
            }
        }
        if rng.chance(70) {
            later.push(ev(id(&mut n), "metric", "first_session_length", &anon, who, signup + HOUR, json!({"valueMs": rng.below(3 * HOUR as u64), "sinceSignupMs": HOUR})));
        }
        if rng.chance(10) {
            later.push(ev(id(&mut n), "metric", "events_dropped", &anon, who, signup + 2 * HOUR, json!({"count": 1 + rng.below(20), "reason": "quota"})));
        }
        // A second device of an identified user, events carrying the user id.
        if identified && rng.chance(20) {
            let phone = format!("anon-{u}-phone");
            later.push(ev(id(&mut n), "track", "project_created", &phone, who, signup + 3 * HOUR, json!({"template": "kanban"})));
        }
        // A client clock 10 minutes behind: the collector corrects by sentAt.
        let skew = if rng.chance(15) { -10 * 60_000 } else { 0 };
        let shift = |events: Vec<Value>| -> Vec<Value> {
            events
                .into_iter()
                .map(|mut e| {
                    e["ts"] = json!(e["ts"].as_i64().unwrap_or(0) + skew);
                    e
                })
                .collect()
        };
        let first = json!({"writeKey": "wk_demo", "sentAt": NOW + skew, "events": shift(first)}).to_string();
        let later = json!({"writeKey": "wk_demo", "sentAt": NOW + skew, "events": shift(later)}).to_string();
        // Lost acknowledgements: some batches arrive twice.
        if rng.chance(10) {
            batches.push(first.clone());
        }
        batches.push(first);
        batches.push(later);
    }
    batches
}

