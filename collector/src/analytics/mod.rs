//! What product managers read, computed from the rows any [`crate::store::Store`] returns.
//!
//! Everything here is pure: no sockets, no SQL, no clock (the caller passes `now`). Every store
//! feeds the same functions, so SQLite and ClickHouse give identical answers.
//!
//! # Definitions (the contract the API documents and the simulation test checks)
//!
//! - A user's **sign-up time** is the latest `signedUpAt` trait from their identify events, read
//!   by the one definition shared with the SDK ([`onramp::core::time::signed_up_at`]: ms, seconds
//!   below 1e11 or ISO 8601, within 2000-01-01 … now + 1 day; ingest stores it normalised and
//!   refuses other values); without one, their first-seen time stands in and `signupKnown` is
//!   false.
//! - **Traits** are the props of the user's identify events, merged in time order (later wins).
//! - A **step** is a plan milestone or an ad-hoc event ([`Step`]). A milestone is reached only by
//!   its `milestone` event, which the SDK sends once the milestone's whole condition holds (its
//!   `where`, `count` and `after`); a `track` event that happens to share the milestone's id
//!   never counts for it. An ad-hoc step names a `track` event and counts only those.
//! - A user **reaches** a step at the first event matching it; the time since sign-up is
//!   clamped at zero.
//! - **Quantiles** are nearest-rank: the p-th percentile of n sorted values is the value at rank
//!   ⌈p·n/100⌉ (1-based), so it is always a value some user actually had; the median is p50.
//! - Times are UTC; days start at midnight, weeks on Monday.
//!
//! # Layout
//!
//! - [`report`]: the standard sections as tallies a store counts in one pass over the selected
//!   users (counts and exact duration histograms), the shape every store answers.
//! - [`funnel`]: ordered steps within a conversion window (the matcher is `onramp::core::funnel`).
//! - [`ttv`]: time-to-value quantiles, histogram, first-day activation, and cohort tables.
//! - [`tips`]: each tip's effect on reaching its milestone, and its dismiss rate.
//! - [`metrics`]: the SDK's seed metrics.
//! - [`prompts`]: prompt conversion, overall and per NPS group.
//! - [`experiments`]: lift of guidance on the holdout experiments, with [`stats`]' intervals.
//! - [`stalled`]: users past a milestone's due window without reaching it.
//! - [`surveys`]: NPS, CSAT, CES, response rates and answers of the micro-surveys.
//! - [`time`]: UTC calendar and the date and duration syntax of the API.

pub mod experiments;
pub mod funnel;
pub mod metrics;
pub mod prompts;
pub mod report;
pub mod stalled;
pub mod surveys;
pub mod stats;
pub mod time;
pub mod tips;
pub mod ttv;

use std::collections::HashMap;

use onramp::core::json::{self, Value};
use onramp::core::wire::EventType;

use crate::store::{UserEvent, UserEvents, UserSeen};

/// Whether a report step is a milestone or an ad-hoc event (the API says which for every step).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StepKind {
    /// Reached by the `milestone` event of that id.
    Milestone,
    /// Reached by a `track` event of that name.
    Event,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Milestone => "milestone",
            StepKind::Event => "event",
        }
    }

    /// The one event type that can reach a step of this kind.
    pub fn event_type(self) -> EventType {
        match self {
            StepKind::Milestone => EventType::Milestone,
            StepKind::Event => EventType::Track,
        }
    }
}

/// One step of a funnel, a time-to-value row, a value milestone or a due window.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Step {
    pub kind: StepKind,
    pub name: String,
}

impl Step {
    pub fn milestone(name: &str) -> Step {
        Step { kind: StepKind::Milestone, name: name.into() }
    }

    pub fn event(name: &str) -> Step {
        Step { kind: StepKind::Event, name: name.into() }
    }

    /// A step as a request spells it: `milestone:ID`, `event:NAME`, or a bare name, which is a
    /// milestone when `milestones` (the plan's ids and the SDK's reserved ones) has it and an
    /// ad-hoc event otherwise. So `invoice_sent` in a plan that defines it means the milestone,
    /// and `event:invoice_sent` asks for the raw `track` events of that name.
    pub fn parse(text: &str, milestones: &[String]) -> Step {
        if let Some(id) = text.strip_prefix("milestone:") {
            Step::milestone(id)
        } else if let Some(name) = text.strip_prefix("event:") {
            Step::event(name)
        } else if milestones.iter().any(|m| m == text) {
            Step::milestone(text)
        } else {
            Step::event(text)
        }
    }

    pub fn matches(&self, kind: EventType, name: &str) -> bool {
        kind == self.kind.event_type() && name == self.name
    }
}

/// A user as analytics sees them.
#[derive(Clone, Debug, PartialEq)]
pub struct User {
    pub id: String,
    pub signed_up_at: i64,
    /// False when first-seen stands in for an unknown sign-up time.
    pub signup_known: bool,
    pub first_seen: i64,
    pub last_seen: i64,
    pub traits: Vec<(String, Value)>,
}

impl User {
    pub fn trait_value(&self, key: &str) -> Option<&Value> {
        json::field(&self.traits, key)
    }
}

/// The store's user list as reports see it: identified users, and apart from them the visitors
/// who never identified (keyed by anonymous id; resolved the same way), each sorted by key. A stored
/// `signedUpAt` outside the accepted range (written before ingest checked it) counts as unknown.
pub fn resolve_users(seen: Vec<UserSeen>, now: i64) -> (Vec<User>, Vec<User>) {
    let (mut users, mut visitors) = (Vec::new(), Vec::new());
    for s in seen {
        match resolve_user(s, now) {
            (user, true) => users.push(user),
            (user, false) => visitors.push(user),
        }
    }
    // Stores return users in any order; reports list them sorted.
    users.sort_by(|a, b| a.id.cmp(&b.id));
    visitors.sort_by(|a, b| a.id.cmp(&b.id));
    (users, visitors)
}

/// One user as analytics sees them, and whether they identified (false: a visitor).
pub fn resolve_user(s: UserSeen, now: i64) -> (User, bool) {
    let signup = json::field(&s.traits, onramp::core::vocab::prop::SIGNED_UP_AT).and_then(|v| onramp::core::time::signed_up_at(v, now).ok());
    let user = User {
        signed_up_at: signup.unwrap_or(s.first_seen),
        signup_known: signup.is_some(),
        id: s.user,
        first_seen: s.first_seen,
        last_seen: s.last_seen,
        traits: s.traits,
    };
    (user, s.identified)
}

/// A trait value as the API compares and shows it: strings as they are, numbers in JSON form.
pub fn trait_text(v: &Value) -> String {
    match v {
        Value::Str(s) => s.clone(),
        other => other.to_json(),
    }
}

/// Which users a report covers: sign-up in `[signup_from, signup_until)` and, for each trait
/// named, a value among those listed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selection {
    pub signup_from: Option<i64>,
    pub signup_until: Option<i64>,
    pub traits: Vec<(String, Vec<String>)>,
}

impl Selection {
    pub fn admits(&self, user: &User) -> bool {
        self.signup_from.is_none_or(|from| user.signed_up_at >= from)
            && self.signup_until.is_none_or(|until| user.signed_up_at < until)
            && self.traits.iter().all(|(key, allowed)| {
                user.trait_value(key).is_some_and(|v| allowed.iter().any(|a| *a == trait_text(v)))
            })
    }
}

/// Nearest-rank percentile (`pct` in 0..=100) of ascending `sorted`; `None` when empty.
pub fn percentile(sorted: &[i64], pct: u32) -> Option<i64> {
    Some(sorted[nearest_rank(pct, sorted.len())? - 1])
}

/// The 1-based rank of the `pct` percentile (0..=100) among `n` ascending values, `None` when
/// `n` is 0: the one rule for lists ([`percentile`]) and histograms ([`report::Durations`]).
pub fn nearest_rank(pct: u32, n: usize) -> Option<usize> {
    // Integer arithmetic: ⌈pct·n/100⌉ computed in floats misrounds for some n.
    (n > 0).then(|| (pct as usize * n).div_ceil(100).clamp(1, n))
}

/// Median, p75 and p90 of some durations, as every report shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quantiles {
    pub count: usize,
    pub p50: Option<i64>,
    pub p75: Option<i64>,
    pub p90: Option<i64>,
}

impl Quantiles {
    pub fn of(mut values: Vec<i64>) -> Quantiles {
        values.sort_unstable();
        Quantiles {
            count: values.len(),
            p50: percentile(&values, 50),
            p75: percentile(&values, 75),
            p90: percentile(&values, 90),
        }
    }

    /// The same figures from a summary of the values.
    pub fn of_summary(s: &report::Summary) -> Quantiles {
        Quantiles { count: s.count as usize, p50: s.percentile(50), p75: s.percentile(75), p90: s.percentile(90) }
    }
}

/// Counts per bucket `[edges[i-1], edges[i])`, with an open first and last bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Histogram {
    /// Upper bounds (exclusive) of every bucket but the last, ascending.
    pub edges: Vec<i64>,
    pub counts: Vec<u64>,
}

impl Histogram {
    pub fn new(edges: &[i64], values: impl IntoIterator<Item = i64>) -> Histogram {
        let mut counts = vec![0u64; edges.len() + 1];
        for v in values {
            counts[edges.partition_point(|&e| e <= v)] += 1;
        }
        Histogram { edges: edges.to_vec(), counts }
    }
}

/// `a / b`, or 0 when there is nobody to divide by.
pub fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// When each user first had an event of each type and name, read from each user's events
/// sorted by time (as [`crate::store::Store::firsts`] gives them: one per (type, name)). A
/// user's entry is their own slice of events, scanned in place: a user has a handful of firsts,
/// so this beats a map per user, and a copy of every user's firsts cost an allocation per user
/// and tens of MB at scale.
pub struct FirstReach<'a> {
    by_user: HashMap<&'a str, &'a [UserEvent]>,
}

impl<'a> FirstReach<'a> {
    pub fn new(events: &'a [UserEvents]) -> FirstReach<'a> {
        FirstReach { by_user: events.iter().map(|u| (u.user.as_str(), u.events.as_slice())).collect() }
    }

    /// When `user` first reached `step`, as time since their sign-up (never negative).
    pub fn since_signup(&self, user: &User, step: &Step) -> Option<i64> {
        self.of(&user.id).since_signup(user, step)
    }

    pub fn at(&self, user: &str, step: &Step) -> Option<i64> {
        self.of(user).at(step)
    }

    /// One user's first times, looked up once for all the steps a report asks about (a lookup
    /// per user and step was most of the reports' time at scale).
    pub fn of(&self, user: &str) -> UserFirsts<'_> {
        UserFirsts(self.by_user.get(user).copied().unwrap_or(&[]))
    }
}

/// One user's entry of [`FirstReach`].
#[derive(Clone, Copy)]
pub struct UserFirsts<'a>(&'a [UserEvent]);

impl<'a> UserFirsts<'a> {
    /// The entry of a user whose first events are `events`, sorted by time.
    pub fn new(events: &'a [UserEvent]) -> UserFirsts<'a> {
        UserFirsts(events)
    }

    /// The time of the user's first event reaching `step`: events are sorted by time, so the
    /// first that matches is the earliest.
    pub fn at(&self, step: &Step) -> Option<i64> {
        self.0.iter().find(|e| step.matches(e.kind, &e.name)).map(|e| e.ts)
    }

    /// [`FirstReach::since_signup`] of `user`, whose entry this is.
    pub fn since_signup(&self, user: &User, step: &Step) -> Option<i64> {
        Some((self.at(step)? - user.signed_up_at).max(0))
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use onramp::core::json::Value;
    use onramp::core::wire::EventType;

    use super::User;
    use crate::store::{UserEvent, UserEvents};

    pub fn user(id: &str, signed_up_at: i64) -> User {
        User {
            id: id.into(),
            signed_up_at,
            signup_known: true,
            first_seen: signed_up_at,
            last_seen: signed_up_at,
            traits: Vec::new(),
        }
    }

    pub fn events(id: &str, list: &[(i64, &str)]) -> UserEvents {
        let events = list
            .iter()
            .map(|(ts, name)| UserEvent { ts: *ts, kind: EventType::Milestone, name: name.to_string(), props: vec![] })
            .collect();
        UserEvents { user: id.into(), events }
    }

    pub fn tip(ts: i64, name: &str, tip: &str, milestone: &str) -> UserEvent {
        let props = vec![("tipId".into(), Value::Str(tip.into())), ("milestone".into(), Value::Str(milestone.into()))];
        UserEvent { ts, kind: EventType::Tip, name: name.into(), props }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<i64> = (1..=10).collect();
        assert_eq!(percentile(&v, 50), Some(5));
        assert_eq!(percentile(&v, 90), Some(9));
        assert_eq!(percentile(&v, 100), Some(10));
        assert_eq!(percentile(&v, 0), Some(1));
        assert_eq!(percentile(&[7], 75), Some(7));
        assert_eq!(percentile(&[], 50), None);
        // ⌈0.75·3⌉ = 3, not 2.
        assert_eq!(percentile(&[1, 2, 3], 75), Some(3));
    }

    #[test]
    fn histogram_buckets_are_half_open() {
        let h = Histogram::new(&[10, 20], [0, 9, 10, 19, 20, 1000]);
        assert_eq!(h.counts, vec![2, 2, 2]);
    }

    #[test]
    fn sign_up_comes_from_the_traits_and_falls_back_to_first_seen() {
        let traits = vec![("plan".to_string(), Value::Str("pro".into())), ("seats".into(), Value::Num(3.0)), ("signedUpAt".into(), Value::Num(1e12))];
        let seen = vec![
            UserSeen { user: "b".into(), first_seen: 5, last_seen: 9, identified: true, traits: Vec::new() },
            UserSeen { user: "anon".into(), first_seen: 3, last_seen: 4, identified: false, traits: Vec::new() },
            UserSeen { user: "a".into(), first_seen: 1, last_seen: 2, identified: true, traits },
            UserSeen { user: "c".into(), first_seen: 7, last_seen: 7, identified: true, traits: vec![("signedUpAt".into(), Value::Num(-1e18))] },
        ];
        let (users, visitors) = resolve_users(seen, 2_000_000_000_000);
        assert_eq!(users.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(visitors.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(), ["anon"], "never identified: apart");
        assert_eq!((users[0].signed_up_at, users[0].signup_known), (1_000_000_000_000, true));
        assert_eq!(users[0].trait_value("plan"), Some(&Value::Str("pro".into())));
        assert_eq!((users[1].signed_up_at, users[1].signup_known), (5, false));
        assert_eq!((users[2].signed_up_at, users[2].signup_known), (7, false), "an impossible stored time is unknown");

        let pro = Selection { traits: vec![("plan".into(), vec!["pro".into()]), ("seats".into(), vec!["3".into()])], ..Default::default() };
        assert!(pro.admits(&users[0]));
        assert!(!pro.admits(&users[1]), "a missing trait never matches");
        let early = Selection { signup_until: Some(1_000_000_000_000), ..Default::default() };
        assert!(early.admits(&users[1]) && !early.admits(&users[0]));
    }
}
