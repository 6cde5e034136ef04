//! Time-to-value: how long from sign-up to each milestone and to the value milestone, and the
//! same by sign-up cohort.

use super::report::{self, ReportQuery, StepTimes, Summary};
use super::time::{day_start, week_start, DAY, HOUR};
use super::{ratio, FirstReach, Histogram, Quantiles, Step, User};

/// Bucket edges of the time-to-value histogram: 1 h, 4 h, 1 d, 3 d, 7 d, 14 d, 30 d.
pub const HISTOGRAM_EDGES: [i64; 7] = [HOUR, 4 * HOUR, DAY, 3 * DAY, 7 * DAY, 14 * DAY, 30 * DAY];

/// First-day activation: value reached within this long of sign-up.
pub const ACTIVATION_WINDOW: i64 = DAY;

#[derive(Clone, Debug, PartialEq)]
pub struct MilestoneTimes {
    pub step: Step,
    /// Users who reached it (at any time).
    pub reached: usize,
    /// Time from sign-up to reaching it, over the users who did.
    pub quantiles: Quantiles,
}

/// Users who signed up at least [`ACTIVATION_WINDOW`] ago, and those of them who reached value
/// within it. Younger users are left out of both: they have not had their whole first day.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Activation {
    pub eligible: usize,
    pub activated: usize,
    pub rate: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TtvReport {
    pub users: usize,
    pub milestones: Vec<MilestoneTimes>,
    pub value: MilestoneTimes,
    /// Time-to-value of the users who reached value, bucketed by [`HISTOGRAM_EDGES`].
    pub histogram: Histogram,
    pub first_day: Activation,
}

fn milestone_times(step: &Step, times: &Summary) -> MilestoneTimes {
    MilestoneTimes { step: step.clone(), reached: times.count as usize, quantiles: Quantiles::of_summary(times) }
}

fn activation(t: &StepTimes) -> Activation {
    let (eligible, activated) = (t.eligible as usize, t.activated as usize);
    Activation { eligible, activated, rate: ratio(activated, eligible) }
}

/// The time-to-value report from its tally ([`super::report::Tallies::ttv`]).
pub fn ttv_of(steps: &[Step], value: &Step, t: &StepTimes) -> TtvReport {
    TtvReport {
        users: t.users as usize,
        milestones: steps.iter().zip(&t.steps).map(|(s, times)| milestone_times(s, times)).collect(),
        histogram: Histogram { edges: HISTOGRAM_EDGES.to_vec(), counts: t.histogram.to_vec() },
        value: milestone_times(value, &t.value),
        first_day: activation(t),
    }
}

/// What [`ttv`] and [`cohorts`] ask of [`report::tally`].
fn query(steps: &[Step], value: &Step, period: Period, now: i64) -> ReportQuery {
    ReportQuery {
        selection: Default::default(),
        steps: steps.to_vec(),
        value: value.clone(),
        funnel: false,
        window: None,
        funnel_users: false,
        period,
        due: Vec::new(),
        stall_limit: Some(0),
        population: Vec::new(),
        reach: Vec::new(),
        interest: Vec::new(),
        trait_choices: false,
        now,
    }
}

/// Time-to-value of `users` for each of `steps` and for the `value` step.
pub fn ttv(steps: &[Step], value: &Step, users: &[User], reach: &FirstReach, now: i64) -> TtvReport {
    let t = report::tally(&query(steps, value, Period::Day, now), users, &[], reach);
    ttv_of(steps, value, &t.ttv)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    Day,
    Week,
}

impl Period {
    pub fn parse(text: &str) -> Option<Period> {
        match text {
            "day" => Some(Period::Day),
            "week" => Some(Period::Week),
            _ => None,
        }
    }
    pub fn start(self, ts: i64) -> i64 {
        match self {
            Period::Day => day_start(ts),
            Period::Week => week_start(ts),
        }
    }
}

/// One row of the cohort table: the users who signed up in one day or week.
#[derive(Clone, Debug, PartialEq)]
pub struct Cohort {
    /// Start of the day or week (UTC midnight), Unix ms.
    pub start: i64,
    pub users: usize,
    /// Users who reached each step (at any time, in any order), as in the request's `steps`.
    pub reached: Vec<usize>,
    pub value: MilestoneTimes,
    pub first_day: Activation,
}

/// The cohort table, oldest cohort first; periods with no sign-ups are left out.
pub fn cohorts(period: Period, steps: &[Step], value: &Step, users: &[User], reach: &FirstReach, now: i64) -> Vec<Cohort> {
    cohorts_of(value, &report::tally(&query(steps, value, period, now), users, &[], reach).cohorts)
}

/// The cohort table from its tally ([`super::report::Tallies::cohorts`]).
pub fn cohorts_of(value: &Step, cohorts: &[(i64, StepTimes)]) -> Vec<Cohort> {
    cohorts
        .iter()
        .map(|(start, t)| Cohort {
            start: *start,
            users: t.users as usize,
            reached: t.steps.iter().map(|d| d.count as usize).collect(),
            value: milestone_times(value, &t.value),
            first_day: activation(t),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::test_support::{events, user};

    #[test]
    fn quantiles_histogram_and_first_day_activation() {
        let users = vec![user("a", 0), user("b", 0), user("c", 10 * DAY), user("d", 0)];
        let all = [
            events("a", &[(HOUR / 2, "project"), (2 * HOUR, "value")]),
            events("b", &[(3 * DAY, "value")]),
            events("c", &[(10 * DAY + HOUR, "value")]),
            events("d", &[(HOUR, "project")]),
        ];
        let reach = FirstReach::new(&all);
        let steps = vec![Step::milestone("project")];
        let r = ttv(&steps, &Step::milestone("value"), &users, &reach, 10 * DAY + 2 * HOUR);
        assert_eq!(r.milestones[0].reached, 2);
        assert_eq!(r.milestones[0].quantiles.p50, Some(HOUR / 2));
        assert_eq!(r.value.reached, 3);
        assert_eq!((r.value.quantiles.p50, r.value.quantiles.p90), (Some(2 * HOUR), Some(3 * DAY)));
        assert_eq!(r.histogram.counts, vec![0, 2, 0, 0, 1, 0, 0, 0]);
        // c signed up 2 h before `now`: not yet eligible, though already activated.
        assert_eq!(r.first_day, Activation { eligible: 3, activated: 1, rate: 1.0 / 3.0 });
    }

    #[test]
    fn cohorts_group_by_sign_up_day_and_week() {
        // Day 4 (1970-01-05) is a Monday.
        let users = vec![user("a", 4 * DAY + HOUR), user("b", 5 * DAY), user("c", 4 * DAY + 2 * HOUR)];
        let all = [events("a", &[(4 * DAY + 2 * HOUR, "value")]), events("b", &[(7 * DAY, "value")])];
        let reach = FirstReach::new(&all);
        let days = cohorts(Period::Day, &[], &Step::milestone("value"), &users, &reach, 30 * DAY);
        assert_eq!(days.iter().map(|c| (c.start, c.users)).collect::<Vec<_>>(), vec![(4 * DAY, 2), (5 * DAY, 1)]);
        assert_eq!(days[0].value.reached, 1);
        assert_eq!(days[0].first_day.activated, 1);
        assert_eq!(days[1].value.quantiles.p50, Some(2 * DAY));
        let weeks = cohorts(Period::Week, &[], &Step::milestone("value"), &users, &reach, 30 * DAY);
        assert_eq!(weeks.len(), 1);
        assert_eq!((weeks[0].start, weeks[0].users, weeks[0].value.reached), (4 * DAY, 3, 2));
    }
}
