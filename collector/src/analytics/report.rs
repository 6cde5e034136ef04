//! The standard sections of a report (funnel of milestones, time-to-value, cohorts, first-day
//! activation, stalled users) as tallies a store computes in one pass over its users, holding
//! counts, the durations its exact histograms are made of (one number per selected user and
//! step while the pass runs) and the listed users, never the user list itself.
//!
//! [`crate::store::Store::report_tallies`] takes a [`ReportQuery`] and returns [`Tallies`]; the
//! shape is the same for every store (a GROUP BY per user key, then per step, cohort and
//! duration), so a store may compute them inside its engine. [`Tally`] is the one definition:
//! the default (every user read, then tallied here), SQLite's streaming fold and ClickHouse's
//! merge of its two sorted answers all feed it one selected user at a time, and [`super::ttv`],
//! [`super::funnel`] and [`super::stalled`] turn the tallies into the figures the API returns
//! (Rust divides and picks quantiles).

use onramp::core::funnel::{self, StepEvent};

use super::stalled::{Due, Stall, StallSorter};
use super::ttv::{Period, ACTIVATION_WINDOW, HISTOGRAM_EDGES};
use super::{FirstReach, Selection, Step, User, UserFirsts};
use crate::store::{UserEvent, UserEvents};

/// What one report asks of the store.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportQuery {
    pub selection: Selection,
    /// Time-to-value and cohort rows, in the request's order; also the funnel's steps.
    pub steps: Vec<Step>,
    pub value: Step,
    /// Whether to place users in the funnel of `steps` (every step a milestone: their first
    /// times are all the matcher needs), within `window` of step 1.
    pub funnel: bool,
    pub window: Option<i64>,
    /// Whether to list the users at each funnel step.
    pub funnel_users: bool,
    pub period: Period,
    pub due: Vec<Due>,
    /// At most this many stalls listed (the earliest due); all when `None`.
    pub stall_limit: Option<usize>,
    /// Milestones whose time from sign-up is wanted over every selected user
    /// ([`Tallies::population`]: the tips'), and whose first reach the users of `interest` need.
    pub population: Vec<Step>,
    /// Further steps whose first reach the users of `interest` need (the survey's milestone,
    /// an experiment's completion step), not wanted over everyone.
    pub reach: Vec<Step>,
    /// User keys, sorted, whose resolved users (when selected) and first times the answer
    /// needs one by one (those with tips, seed metrics or survey events).
    pub interest: Vec<String>,
    /// Whether to count the dashboard's filter choices ([`TraitChoices`]).
    pub trait_choices: bool,
    pub now: i64,
}

impl ReportQuery {
    /// Every step whose first reach the tallies need, each once, in (kind, name) order: the
    /// columns a store reads per user.
    pub fn columns(&self) -> Vec<Step> {
        let mut columns: Vec<Step> = self.steps.iter().chain([&self.value]).cloned().collect();
        columns.extend(self.due.iter().map(|d| Step::milestone(&d.milestone)));
        columns.extend(self.population.iter().chain(&self.reach).cloned());
        columns.sort();
        columns.dedup();
        columns
    }
}

/// An exact histogram of durations (ms): each distinct value with how many users had it,
/// ascending. What a store's `GROUP BY duration` returns, and all a quantile needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Durations(pub Vec<(i64, u64)>);

impl Durations {
    pub fn of(mut values: Vec<i64>) -> Durations {
        values.sort_unstable();
        let mut counts: Vec<(i64, u64)> = Vec::new();
        for v in values {
            match counts.last_mut() {
                Some((last, n)) if *last == v => *n += 1,
                _ => counts.push((v, 1)),
            }
        }
        Durations(counts)
    }

    /// These durations without one occurrence of each of `values` (every one of them listed).
    pub fn without(&self, values: &[i64]) -> Durations {
        let mut less = Durations::of(values.to_vec()).0.into_iter().peekable();
        let mut counts = Vec::with_capacity(self.0.len());
        for &(v, n) in &self.0 {
            let gone = less.next_if(|(w, _)| *w == v).map_or(0, |(_, m)| m);
            if n > gone {
                counts.push((v, n - gone));
            }
        }
        Durations(counts)
    }

    pub fn count(&self) -> u64 {
        self.0.iter().map(|(_, n)| n).sum()
    }

    /// Nearest-rank percentile, as [`percentile`] of the values listed one by one.
    pub fn percentile(&self, pct: u32) -> Option<i64> {
        let rank = super::nearest_rank(pct, self.count() as usize)? as u64;
        let mut below = 0;
        self.0.iter().find(|(_, c)| {
            below += c;
            below >= rank
        })
        .map(|(v, _)| *v)
    }
}

/// The percentiles every report shows of some durations (nearest rank): median, p75, p90.
pub const PERCENTILES: [u32; 3] = [50, 75, 90];

/// What the reports show of some durations (ms): how many, and their [`PERCENTILES`]. A store
/// may count it inside its engine (ClickHouse does) instead of handing over every value; the
/// default takes it from the exact histogram ([`Summary::of`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub count: u64,
    /// Per [`PERCENTILES`] entry; `None` when there are no durations.
    pub percentiles: [Option<i64>; PERCENTILES.len()],
}

impl Summary {
    pub fn of(d: &Durations) -> Summary {
        Summary { count: d.count(), percentiles: PERCENTILES.map(|p| d.percentile(p)) }
    }

    /// The `pct` percentile, one of [`PERCENTILES`] (`None` for another).
    pub fn percentile(&self, pct: u32) -> Option<i64> {
        self.percentiles[PERCENTILES.iter().position(|&p| p == pct)?]
    }
}

/// How many durations fall in each bucket `[edges[i-1], edges[i])` of [`HISTOGRAM_EDGES`], open
/// at both ends: the time-to-value histogram.
pub type Buckets = [u64; HISTOGRAM_EDGES.len() + 1];

fn buckets(d: &Durations) -> Buckets {
    let mut counts = [0; HISTOGRAM_EDGES.len() + 1];
    for &(v, n) in &d.0 {
        counts[HISTOGRAM_EDGES.partition_point(|&e| e <= v)] += n;
    }
    counts
}

/// Time from sign-up to each step and to value, and first-day activation, of some users.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepTimes {
    pub users: u64,
    pub steps: Vec<Summary>,
    pub value: Summary,
    /// The value's durations bucketed.
    pub histogram: Buckets,
    /// Users who signed up at least [`ACTIVATION_WINDOW`] before now, and those of them who
    /// reached value within it.
    pub eligible: u64,
    pub activated: u64,
}

/// One funnel step: users at it, the time from the previous step of each, and (when asked)
/// who they are, sorted.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FunnelTally {
    pub users: u64,
    pub gaps: Summary,
    pub user_ids: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Tallies {
    /// Selected users, and selected visitors who never identified (not users: counted apart).
    pub users: u64,
    pub visitors: u64,
    pub ttv: StepTimes,
    /// Per cohort start (see [`Period::start`]), oldest first. The cohort table shows each
    /// step's count and the value's times ([`super::ttv::cohorts_of`]): ClickHouse's engine
    /// leaves the other steps' percentiles out (`None`).
    pub cohorts: Vec<(i64, StepTimes)>,
    /// Empty unless [`ReportQuery::funnel`].
    pub funnel: Vec<FunnelTally>,
    /// Every stalled (user, milestone) pair, and the first [`ReportQuery::stall_limit`] of them
    /// by due time, then user and milestone.
    pub stalled: u64,
    pub stalls: Vec<Stall>,
    /// Without a [`ReportQuery::stall_limit`] (an export), every stall instead, to be read in
    /// list order from the sorter (`stalls` is then empty).
    pub export: Option<StallSorter>,
    /// Per [`ReportQuery::population`] step, the time from sign-up of every selected user who
    /// reached it.
    pub population: Vec<Durations>,
    /// The selected users among [`ReportQuery::interest`], by key, and their first times of
    /// [`ReportQuery::columns`] (as [`crate::store::Store::firsts`] gives them).
    pub interest: Vec<User>,
    pub interest_firsts: Vec<UserEvents>,
    pub traits: TraitChoices,
}

/// Trait keys the dashboard does not offer as filters: not a filter, or personal.
pub const HIDDEN_TRAITS: [&str; 3] = [onramp::core::vocab::prop::SIGNED_UP_AT, "email", "name"];

/// A key with more values than this (an id, say) is no use as a filter.
pub const MAX_TRAIT_CHOICES: usize = 50;

/// The dashboard's filter choices: per trait key, each value (as `trait.KEY=` compares it) with
/// its number of users, over every identified user whatever the selection, so a filter can be
/// undone. Keys in [`HIDDEN_TRAITS`] or with more than [`MAX_TRAIT_CHOICES`] values are left out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TraitChoices {
    counts: std::collections::BTreeMap<String, std::collections::BTreeMap<String, usize>>,
    /// Keys past [`MAX_TRAIT_CHOICES`] values: no longer counted.
    too_many: std::collections::BTreeSet<String>,
}

impl TraitChoices {
    pub fn add(&mut self, user: &User) {
        for (key, value) in &user.traits {
            // Asked before the text is made: a report passes every user, and many traits are
            // hidden or have too many values (10 M events: median 650 → 620 ms of CPU a report).
            if self.counts_key(key) {
                self.add_users(key, super::trait_text(value), 1);
            }
        }
    }

    fn counts_key(&self, key: &str) -> bool {
        !HIDDEN_TRAITS.contains(&key) && !self.too_many.contains(key)
    }

    /// Counts `users` more users whose `key` is `text` (as [`super::trait_text`] writes it): one
    /// user's trait, or a store's count of them.
    pub fn add_users(&mut self, key: &str, text: String, users: usize) {
        if !self.counts_key(key) {
            return;
        }
        let values = self.counts.entry(key.to_owned()).or_default();
        *values.entry(text).or_default() += users;
        if values.len() > MAX_TRAIT_CHOICES {
            self.counts.remove(key);
            self.too_many.insert(key.to_owned());
        }
    }

    /// Per key (in key order), its values with their users, most users first, then by value.
    pub fn choices(&self) -> Vec<(&str, Vec<(&str, usize)>)> {
        self.counts
            .iter()
            .map(|(key, values)| {
                let mut values: Vec<(&str, usize)> = values.iter().map(|(v, n)| (v.as_str(), *n)).collect();
                values.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
                (key.as_str(), values)
            })
            .collect()
    }
}

/// [`StepTimes`] while users are added.
#[derive(Default)]
struct Times {
    users: u64,
    steps: Vec<Vec<i64>>,
    value: Vec<i64>,
    eligible: u64,
    activated: u64,
}

impl Times {
    fn new(steps: usize) -> Times {
        Times { steps: vec![Vec::new(); steps], ..Times::default() }
    }

    fn finish(self) -> StepTimes {
        let value = Durations::of(self.value);
        StepTimes {
            users: self.users,
            steps: self.steps.into_iter().map(|d| Summary::of(&Durations::of(d))).collect(),
            value: Summary::of(&value),
            histogram: buckets(&value),
            eligible: self.eligible,
            activated: self.activated,
        }
    }
}

/// Adds selected users one at a time (any order) to the tallies of a [`ReportQuery`].
pub struct Tally<'q> {
    query: &'q ReportQuery,
    columns: Vec<Step>,
    /// Per step, value and due milestone, its column.
    step_columns: Vec<usize>,
    value_column: usize,
    due_columns: Vec<usize>,
    users: u64,
    visitors: u64,
    ttv: Times,
    cohorts: std::collections::BTreeMap<i64, Times>,
    funnel: Vec<(u64, Vec<i64>, Vec<String>)>,
    step_events: Vec<StepEvent>,
    stalled: u64,
    stalls: Vec<Stall>,
    /// Every stall, when there is no limit.
    export: Option<StallSorter>,
    /// Once the list holds [`ReportQuery::stall_limit`] stalls, the latest due time among
    /// them: a stall due later cannot be listed, so it is only counted (not built: at 10 M
    /// events a million stalls were two strings each).
    stall_bar: Option<i64>,
    population_columns: Vec<usize>,
    population: Vec<Vec<i64>>,
    interest: Vec<User>,
    interest_firsts: Vec<UserEvents>,
    traits: TraitChoices,
    /// [`Tally::add_reaching`]'s first times, kept to reuse its allocation.
    firsts: Vec<Option<i64>>,
}

impl<'q> Tally<'q> {
    pub fn new(query: &'q ReportQuery) -> Tally<'q> {
        let columns = query.columns();
        let column = |s: &Step| columns.binary_search(s).unwrap_or_default();
        let steps = query.steps.len();
        Tally {
            step_columns: query.steps.iter().map(column).collect(),
            value_column: column(&query.value),
            due_columns: query.due.iter().map(|d| column(&Step::milestone(&d.milestone))).collect(),
            population_columns: query.population.iter().map(column).collect(),
            columns,
            query,
            users: 0,
            visitors: 0,
            ttv: Times::new(steps),
            cohorts: std::collections::BTreeMap::new(),
            funnel: if query.funnel { vec![(0, Vec::new(), Vec::new()); steps] } else { Vec::new() },
            step_events: Vec::new(),
            stalled: 0,
            stalls: Vec::new(),
            export: query.stall_limit.is_none().then(StallSorter::default),
            stall_bar: None,
            population: vec![Vec::new(); query.population.len()],
            interest: Vec::new(),
            interest_firsts: Vec::new(),
            traits: TraitChoices::default(),
            firsts: Vec::new(),
        }
    }

    /// The steps whose first reach [`Tally::add`] takes, in order ([`ReportQuery::columns`]).
    pub fn columns(&self) -> &[Step] {
        &self.columns
    }

    /// One user key of the project (every one, in any order): `identified` false for a visitor
    /// who never identified, with the first time they reached each of [`Tally::columns`].
    pub fn add(&mut self, user: &User, identified: bool, firsts: &[Option<i64>]) {
        if identified && self.query.trait_choices {
            self.traits.add(user);
        }
        if !self.query.selection.admits(user) {
            return;
        }
        if identified {
            self.add_selected(user, firsts);
        } else {
            // Not a user: only counted, apart.
            self.visitors += 1;
        }
    }

    /// [`Tally::add`] with the user's first times read from `entry`, their first events.
    pub fn add_reaching(&mut self, user: &User, identified: bool, entry: UserFirsts<'_>) {
        let mut firsts = std::mem::take(&mut self.firsts);
        firsts.clear();
        firsts.extend(self.columns.iter().map(|step| entry.at(step)));
        self.add(user, identified, &firsts);
        self.firsts = firsts;
    }

    fn add_selected(&mut self, user: &User, firsts: &[Option<i64>]) {
        self.users += 1;
        let since = |column: usize| firsts[column].map(|at| (at - user.signed_up_at).max(0));
        let to_value = since(self.value_column);
        let eligible = user.signed_up_at + ACTIVATION_WINDOW <= self.query.now;
        let activated = eligible && to_value.is_some_and(|t| t < ACTIVATION_WINDOW);
        let steps = self.query.steps.len();
        let cohort = self.cohorts.entry(self.query.period.start(user.signed_up_at)).or_insert_with(|| Times::new(steps));
        for times in [&mut self.ttv, cohort] {
            times.users += 1;
            for (list, &column) in times.steps.iter_mut().zip(&self.step_columns) {
                list.extend(since(column));
            }
            times.value.extend(to_value);
            times.eligible += u64::from(eligible);
            times.activated += u64::from(activated);
        }
        if self.query.funnel {
            self.place_in_funnel(&user.id, firsts);
        }
        for (times, &column) in self.population.iter_mut().zip(&self.population_columns) {
            times.extend(since(column));
        }
        if self.query.interest.binary_search(&user.id).is_ok() {
            self.interest.push(user.clone());
            // As `Store::firsts` gives them: by time, ties in (type, name) order (the columns').
            let mut events: Vec<UserEvent> = self.columns.iter().zip(firsts).filter_map(|(step, ts)| Some(UserEvent { ts: (*ts)?, kind: step.kind.event_type(), name: step.name.clone(), props: Vec::new() })).collect();
            events.sort_by_key(|e| e.ts);
            self.interest_firsts.push(UserEvents { user: user.id.clone(), events });
        }
        let query = self.query;
        for (i, d) in query.due.iter().enumerate() {
            let column = self.due_columns[i];
            let reached = firsts[column].is_some();
            let Some(due_at) = super::stalled::stalled_since(user, d, reached, self.query.now) else { continue };
            self.stalled += 1;
            if self.stall_bar.is_some_and(|bar| due_at > bar) {
                continue;
            }
            let Some(stall) = super::stalled::stall(user, d, reached, self.query.now) else { continue };
            if let Some(export) = &mut self.export {
                export.push(stall);
            } else {
                self.stalls.push(stall);
                // Keep the list near its limit as it grows, not every stall of a large project.
                if self.query.stall_limit.is_some_and(|limit| self.stalls.len() >= 2 * limit.max(512)) {
                    self.trim_stalls();
                }
            }
        }
    }

    /// The funnel of milestones (`onramp::core::funnel::reach`) over a user's first times: a
    /// milestone is reached once, so each step has at most one event, the column's.
    fn place_in_funnel(&mut self, user: &str, firsts: &[Option<i64>]) {
        self.step_events.clear();
        for (step, &column) in self.step_columns.iter().enumerate() {
            if let Some(ts) = firsts[column] {
                self.step_events.push(StepEvent { ts, step, event: column });
            }
        }
        self.step_events.sort_by_key(|s| (s.ts, s.step));
        let times = funnel::reach(self.step_columns.len(), &self.step_events, self.query.window);
        for (i, (users, gaps, ids)) in self.funnel.iter_mut().take(times.len()).enumerate() {
            *users += 1;
            if i > 0 {
                gaps.push(times[i] - times[i - 1]);
            }
            if self.query.funnel_users {
                ids.push(user.to_owned());
            }
        }
    }

    fn trim_stalls(&mut self) {
        super::stalled::sort_stalls(&mut self.stalls);
        if let Some(limit) = self.query.stall_limit {
            self.stalls.truncate(limit);
            if self.stalls.len() == limit {
                self.stall_bar = self.stalls.last().map(|s| s.due_at);
            }
        }
    }

    pub fn finish(mut self) -> Tallies {
        self.trim_stalls();
        Tallies {
            users: self.users,
            visitors: self.visitors,
            ttv: self.ttv.finish(),
            cohorts: self.cohorts.into_iter().map(|(start, t)| (start, t.finish())).collect(),
            funnel: self
                .funnel
                .into_iter()
                .map(|(users, gaps, mut user_ids)| {
                    user_ids.sort();
                    FunnelTally { users, gaps: Summary::of(&Durations::of(gaps)), user_ids }
                })
                .collect(),
            stalled: self.stalled,
            stalls: self.stalls,
            export: self.export,
            population: self.population.into_iter().map(Durations::of).collect(),
            interest: self.interest,
            interest_firsts: self.interest_firsts,
            traits: self.traits,
        }
    }
}

/// [`Tallies`] of `query` from resolved users and visitors and their first times (covering
/// [`ReportQuery::columns`]): the definition, and what a store without its own computes.
pub fn tally(query: &ReportQuery, users: &[User], visitors: &[User], reach: &FirstReach) -> Tallies {
    let mut tally = Tally::new(query);
    for user in users {
        tally.add_reaching(user, true, reach.of(&user.id));
    }
    for visitor in visitors {
        tally.add(visitor, false, &[]);
    }
    tally.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_histograms_give_the_listed_values_percentiles() {
        let values = vec![5, 1, 9, 5, 5, 3, 100, 7, 7, 2, 5];
        let d = Durations::of(values.clone());
        assert_eq!(d.count(), values.len() as u64);
        for pct in [0, 1, 10, 25, 50, 75, 90, 99, 100] {
            let mut sorted = values.clone();
            sorted.sort_unstable();
            assert_eq!(d.percentile(pct), crate::analytics::percentile(&sorted, pct), "p{pct}");
        }
        assert_eq!(Durations::default().percentile(50), None);
    }

    #[test]
    fn durations_without_some_values_are_the_rest_listed() {
        let all = Durations::of(vec![1, 2, 2, 3, 5, 5, 5]);
        assert_eq!(all.without(&[2, 5, 5]), Durations::of(vec![1, 2, 3, 5]));
        assert_eq!(all.without(&[]), all);
        assert_eq!(Durations::of(vec![4]).without(&[4]), Durations::default());
    }

    #[test]
    fn the_listed_stalls_are_the_first_of_all_stalls_however_many_are_only_counted() {
        use crate::analytics::stalled::{sort_stalls, stall, Due};
        let due = vec![Due { milestone: "a".into(), within_ms: 10 }, Due { milestone: "b".into(), within_ms: 7 }];
        let query = ReportQuery {
            selection: Selection::default(),
            steps: vec![Step::milestone("a")],
            value: Step::milestone("a"),
            funnel: false,
            window: None,
            funnel_users: false,
            period: Period::Day,
            due: due.clone(),
            stall_limit: Some(5),
            population: Vec::new(),
            reach: Vec::new(),
            interest: Vec::new(),
            trait_choices: false,
            now: 1_000_000,
        };
        // 3 000 users, sign-ups out of order with many ties (so due times tie across users and
        // milestones); every third reached `a`. Enough stalls for the list to be trimmed and
        // then to turn later ones away.
        let users: Vec<User> = (0..3000).map(|i| crate::analytics::test_support::user(&format!("u{i:04}"), (i * 7919 % 1000) as i64)).collect();
        let mut tally = Tally::new(&query);
        let mut all = Vec::new();
        for (i, u) in users.iter().enumerate() {
            let reached_a = i % 3 == 0;
            let firsts: Vec<Option<i64>> = tally.columns().iter().map(|c| (c.name == "a" && reached_a).then_some(5)).collect();
            tally.add(u, true, &firsts);
            all.extend(due.iter().filter_map(|d| stall(u, d, d.milestone == "a" && reached_a, query.now)));
        }
        let tallies = tally.finish();
        assert_eq!(tallies.stalled, all.len() as u64);
        sort_stalls(&mut all);
        all.truncate(5);
        assert_eq!(tallies.stalls, all);
    }

    #[test]
    fn trait_choices_count_users_and_drop_hidden_keys_and_keys_with_too_many_values() {
        use onramp::core::json::Value;
        let mut choices = TraitChoices::default();
        for i in 0..=MAX_TRAIT_CHOICES {
            let mut u = crate::analytics::test_support::user(&format!("u{i}"), 0);
            u.traits = vec![
                ("email".into(), Value::Str(format!("{i}@x"))),
                ("id".into(), Value::Num(i as f64)),
                ("plan".into(), Value::Str(if i % 3 == 0 { "pro" } else { "free" }.into())),
            ];
            choices.add(&u);
        }
        assert_eq!(choices.choices(), vec![("plan", vec![("free", 34), ("pro", 17)])], "51 ids: too many; email hidden");
    }
}
