//! Lift: what guidance is worth, measured on the holdout experiments (docs/EXPERIMENTS.md).
//!
//! Each identified user is in an experiment's arm when they have an `experiment_assigned` event
//! for it (the SDK's assignment, never re-derived here); the first such event per user and
//! experiment counts, so a later plan with other percentages does not move users already
//! counted. For each experiment (`global` first, then by id), per arm:
//!
//! - **completion**: users who reached the completion step (the value milestone unless the
//!   request names another) at any time, over the arm's users;
//! - **first-day activation**: as `/v1/ttv` defines it (value within 24 h of sign-up, over users
//!   who signed up at least 24 h ago);
//! - **time to value**: the median (nearest rank) over users who reached value.
//!
//! Differences are treatment − control (the effect of the guidance). Proportions get Newcombe's
//! hybrid score interval and the relative difference the Katz log interval; the medians a
//! percentile bootstrap ([`super::stats`]). A comparison is reported as `notEnoughData` until
//! both arms have more than 5 users with and more than 5 without the outcome; time to value
//! until both arms have more than 5 users who reached value and more than 5 who did not.

use std::collections::{BTreeMap, HashMap};

use onramp::core::vocab::{experiment, prop};
use onramp::core::wire::EventType;

use super::stats::{self, Difference, MedianDifference};
use super::ttv::ACTIVATION_WINDOW;
use super::{ratio, FirstReach, Step, User};
use crate::store::UserEvents;

/// The experiment id of the global holdout ([`onramp::core::holdout::GLOBAL`]).
pub const GLOBAL: &str = onramp::core::holdout::GLOBAL;
/// The minimum detectable effect the planned sample size is for, when the request names none:
/// five percentage points of completion.
pub const DEFAULT_MDE: f64 = 0.05;
/// The bootstrap's seed: fixed, so an answer is reproducible.
const SEED: u64 = 0x6f6e_7261_6d70;

/// One arm's figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ArmFigures {
    pub users: usize,
    pub completed: usize,
    pub completion_rate: f64,
    /// Signed up at least a day ago, and those of them who reached value within it.
    pub eligible: usize,
    pub activated: usize,
    pub activation_rate: f64,
    /// Users who reached value, and their median time to value.
    pub reached_value: usize,
    pub median_ttv_ms: Option<i64>,
    ttv: Vec<i64>,
}

/// A comparison of the arms on one proportion.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Comparison {
    /// An arm is empty.
    NoData,
    /// The normal approximation is not trusted yet (see the module docs).
    NotEnoughData,
    Ready { absolute: Difference, relative: Option<Difference> },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TtvComparison {
    NoData,
    NotEnoughData,
    Ready(MedianDifference),
}

/// The planned sample size for the minimum detectable effect on completion.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Planned {
    /// The control arm's completion rate the effect is added to.
    pub baseline: f64,
    pub mde: f64,
    /// Users needed in each arm at the arms' current ratio.
    pub control: u64,
    pub treatment: u64,
    /// Both arms have that many.
    pub reached: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Experiment {
    pub id: String,
    pub control: ArmFigures,
    pub treatment: ArmFigures,
    pub completion: Comparison,
    pub activation: Comparison,
    pub ttv: TtvComparison,
    pub planned: Option<Planned>,
}

/// Each selected user's arm per experiment: `experiment → user → is control`.
fn arms<'a>(users: &[User], assigned: &'a [UserEvents]) -> BTreeMap<&'a str, HashMap<&'a str, bool>> {
    let selected: HashMap<&str, ()> = users.iter().map(|u| (u.id.as_str(), ())).collect();
    let mut out: BTreeMap<&str, HashMap<&str, bool>> = BTreeMap::new();
    for u in assigned.iter().filter(|u| selected.contains_key(u.user.as_str())) {
        // Events come in time order: the first assignment per experiment wins.
        for e in u.events.iter().filter(|e| e.kind == EventType::Experiment && e.name == experiment::ASSIGNED) {
            let (Some(id), Some(arm)) = (e.prop(prop::EXPERIMENT).and_then(|v| v.as_str()), e.prop(prop::ARM).and_then(|v| v.as_str())) else {
                continue;
            };
            let control = match arm {
                "control" => true,
                "treatment" => false,
                _ => continue,
            };
            out.entry(id).or_default().entry(u.user.as_str()).or_insert(control);
        }
    }
    out
}

fn figures(members: &[&User], completion: &Step, value: &Step, reach: &FirstReach, now: i64) -> ArmFigures {
    let completed = members.iter().filter(|u| reach.at(&u.id, completion).is_some()).count();
    let eligible: Vec<&&User> = members.iter().filter(|u| u.signed_up_at + ACTIVATION_WINDOW <= now).collect();
    let activated = eligible.iter().filter(|u| reach.since_signup(u, value).is_some_and(|t| t < ACTIVATION_WINDOW)).count();
    let ttv: Vec<i64> = members.iter().filter_map(|u| reach.since_signup(u, value)).collect();
    ArmFigures {
        users: members.len(),
        completed,
        completion_rate: ratio(completed, members.len()),
        eligible: eligible.len(),
        activated,
        activation_rate: ratio(activated, eligible.len()),
        reached_value: ttv.len(),
        median_ttv_ms: stats::median(&ttv),
        ttv,
    }
}

fn compare(t: (usize, usize), c: (usize, usize)) -> Comparison {
    if t.1 == 0 || c.1 == 0 {
        return Comparison::NoData;
    }
    if !stats::enough_data(t.0, t.1) || !stats::enough_data(c.0, c.1) {
        return Comparison::NotEnoughData;
    }
    match stats::newcombe(t.0, t.1, c.0, c.1, stats::Z95) {
        Some(absolute) => Comparison::Ready { absolute, relative: stats::relative(t.0, t.1, c.0, c.1, stats::Z95) },
        None => Comparison::NoData,
    }
}

fn compare_ttv(t: &ArmFigures, c: &ArmFigures) -> TtvComparison {
    if t.ttv.is_empty() || c.ttv.is_empty() {
        return TtvComparison::NoData;
    }
    if !stats::enough_data(t.reached_value, t.users) || !stats::enough_data(c.reached_value, c.users) {
        return TtvComparison::NotEnoughData;
    }
    match stats::median_difference(&t.ttv, &c.ttv, stats::BOOTSTRAP_RESAMPLES, SEED) {
        Some(d) => TtvComparison::Ready(d),
        None => TtvComparison::NoData,
    }
}

/// Every experiment with an assignment among the selected `users`. `assigned` are the users'
/// `experiment` events with props; `reach` must cover `completion` and `value`.
pub fn experiments(users: &[User], assigned: &[UserEvents], completion: &Step, value: &Step, reach: &FirstReach, now: i64, mde: f64) -> Vec<Experiment> {
    let by_id: HashMap<&str, &User> = users.iter().map(|u| (u.id.as_str(), u)).collect();
    let mut out: Vec<Experiment> = arms(users, assigned)
        .into_iter()
        .map(|(id, members)| {
            // Sorted by user id: the bootstrap then sees the same order on every store.
            let mut members: Vec<(&User, bool)> = members.into_iter().filter_map(|(u, control)| by_id.get(u).map(|u| (*u, control))).collect();
            members.sort_by(|a, b| a.0.id.cmp(&b.0.id));
            let pick = |control: bool| members.iter().filter(|(_, c)| *c == control).map(|(u, _)| *u).collect::<Vec<&User>>();
            let control = figures(&pick(true), completion, value, reach, now);
            let treatment = figures(&pick(false), completion, value, reach, now);
            let planned = (control.users > 0 && treatment.users > 0)
                .then(|| stats::sample_size(control.completion_rate, mde, treatment.users as f64 / control.users as f64))
                .flatten()
                .map(|(c, t)| Planned {
                    baseline: control.completion_rate,
                    mde,
                    control: c,
                    treatment: t,
                    reached: control.users as u64 >= c && treatment.users as u64 >= t,
                });
            Experiment {
                id: id.to_string(),
                completion: compare((treatment.completed, treatment.users), (control.completed, control.users)),
                activation: compare((treatment.activated, treatment.eligible), (control.activated, control.eligible)),
                ttv: compare_ttv(&treatment, &control),
                planned,
                control,
                treatment,
            }
        })
        .collect();
    // The global holdout first: it answers "is guidance worth it at all".
    out.sort_by_key(|e| (e.id != GLOBAL, e.id.clone()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::test_support::{events, user};
    use crate::store::UserEvent;
    use onramp::core::json::Value;

    fn assigned(user: &str, list: &[(i64, &str, &str)]) -> UserEvents {
        let events = list
            .iter()
            .map(|(ts, exp, arm)| UserEvent {
                ts: *ts,
                kind: EventType::Experiment,
                name: experiment::ASSIGNED.into(),
                props: vec![(prop::EXPERIMENT.into(), Value::Str(exp.to_string())), (prop::ARM.into(), Value::Str(arm.to_string()))],
            })
            .collect();
        UserEvents { user: user.into(), events }
    }

    #[test]
    fn the_first_assignment_counts_and_unselected_or_unknown_arms_are_left_out() {
        let users = vec![user("a", 0), user("b", 0), user("c", 0)];
        let rows = vec![
            assigned("a", &[(1, "global", "control"), (5, "global", "treatment")]),
            assigned("b", &[(1, "global", "treatment"), (2, "tip:x", "sideways")]),
            assigned("c", &[(1, "tip:x", "control")]),
            assigned("z", &[(1, "global", "control")]),
        ];
        let reached = [events("b", &[(10, "v")])];
        let reach = FirstReach::new(&reached);
        let v = Step::milestone("v");
        let out = experiments(&users, &rows, &v, &v, &reach, 100, DEFAULT_MDE);
        assert_eq!(out.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["global", "tip:x"]);
        let g = &out[0];
        assert_eq!((g.control.users, g.treatment.users, g.treatment.completed), (1, 1, 1));
        assert_eq!(g.completion, Comparison::NotEnoughData);
        assert_eq!(g.ttv, TtvComparison::NoData, "nobody in control reached value");
        assert_eq!((out[1].control.users, out[1].treatment.users), (1, 0), "b's unknown arm is ignored");
        assert_eq!(out[1].completion, Comparison::NoData);
        assert_eq!(out[1].planned, None);
    }
}
