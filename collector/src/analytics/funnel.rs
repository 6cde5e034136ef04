//! The milestone funnel: how many users reach each step, in order, within a conversion window.

use std::collections::HashSet;

use onramp::core::funnel::{self, StepEvent};
use onramp::core::wire::EventType;

use super::report::{Durations, FunnelTally, Summary};
use super::{ratio, Step, User};
use crate::store::UserEvents;

#[derive(Clone, Debug, PartialEq)]
pub struct FunnelStep {
    pub step: Step,
    pub users: u64,
    /// Users at this step over users at the previous one (1.0 for the first step).
    pub conversion_from_previous: f64,
    pub conversion_from_first: f64,
    /// Users who reached the previous step but not this one (0 for the first step).
    pub drop_off: u64,
    /// Median time from the previous step to this one, over the users who reached it.
    pub median_ms_from_previous: Option<i64>,
    /// Users who reached this step, sorted; reported only when asked for.
    pub user_ids: Vec<String>,
}

/// Users among `users` reaching each of `steps` in order, within `window_ms` of the first step.
/// `events` holds (at least) every user's events that can reach one of `steps`: all of them, or
/// for milestones only each user's first (what [`crate::store::Store::firsts`] returns), since a
/// milestone is reached once, at its first `milestone` event, and a later report of it (from a
/// second device) is no new reach. Steps reached at the same millisecond count in the funnel's
/// order.
pub fn funnel(steps: &[Step], users: &[User], events: &[UserEvents], window_ms: Option<i64>) -> Vec<FunnelStep> {
    let selected: HashSet<&str> = users.iter().map(|u| u.id.as_str()).collect();
    let mut reached: Vec<Vec<String>> = vec![Vec::new(); steps.len()];
    let mut gaps: Vec<Vec<i64>> = vec![Vec::new(); steps.len()];
    let mut step_events = Vec::new();
    for user in events.iter().filter(|u| selected.contains(u.user.as_str())) {
        step_events.clear();
        let mut milestones_seen: Vec<&str> = Vec::new();
        for (event, e) in user.events.iter().enumerate() {
            if e.kind == EventType::Milestone {
                if milestones_seen.contains(&e.name.as_str()) {
                    continue;
                }
                milestones_seen.push(&e.name);
            }
            // An event name may stand for several steps (a funnel that repeats an action).
            for (step, _) in steps.iter().enumerate().filter(|(_, s)| s.matches(e.kind, &e.name)) {
                step_events.push(StepEvent { ts: e.ts, step, event });
            }
        }
        // Stable: one event standing for several steps keeps its steps in order.
        step_events.sort_by_key(|s| (s.ts, s.step));
        let times = funnel::reach(steps.len(), &step_events, window_ms);
        for (i, ids) in reached.iter_mut().take(times.len()).enumerate() {
            ids.push(user.user.clone());
            if i > 0 {
                gaps[i].push(times[i] - times[i - 1]);
            }
        }
    }
    let tallies = reached
        .into_iter()
        .zip(gaps)
        .map(|(mut user_ids, gaps)| {
            user_ids.sort();
            FunnelTally { users: user_ids.len() as u64, gaps: Summary::of(&Durations::of(gaps)), user_ids }
        })
        .collect();
    funnel_of(steps, tallies)
}

/// The funnel's figures from each step's tally ([`super::report::Tallies::funnel`]).
pub fn funnel_of(steps: &[Step], tallies: Vec<FunnelTally>) -> Vec<FunnelStep> {
    let first = tallies.first().map_or(0, |t| t.users as usize);
    let mut previous = first;
    steps
        .iter()
        .zip(tallies)
        .enumerate()
        .map(|(i, (step, t))| {
            let users = t.users as usize;
            let row = FunnelStep {
                step: step.clone(),
                users: users as u64,
                conversion_from_previous: ratio(users, previous),
                conversion_from_first: ratio(users, first),
                drop_off: (previous - users) as u64,
                median_ms_from_previous: if i == 0 { None } else { t.gaps.percentile(50) },
                user_ids: t.user_ids,
            };
            previous = users;
            row
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::test_support::{events, user};

    #[test]
    fn counts_selected_users_per_step_with_conversion_and_drop_off() {
        let steps: Vec<Step> = ["signup", "project", "invite"].map(Step::milestone).to_vec();
        let all = [
            events("a", &[(1, "signup"), (2, "project"), (3, "invite")]),
            events("b", &[(1, "signup"), (5, "project")]),
            events("c", &[(1, "signup"), (2, "invite")]),
            events("d", &[(1, "project")]),
            events("e", &[(1, "signup"), (2, "project")]),
        ];
        let users: Vec<User> = ["a", "b", "c", "d"].iter().map(|id| user(id, 0)).collect();
        let report = funnel(&steps, &users, &all, None);
        let counts: Vec<u64> = report.iter().map(|s| s.users).collect();
        assert_eq!(counts, vec![3, 2, 1], "e is not selected");
        assert_eq!(report[1].user_ids, vec!["a", "b"]);
        assert_eq!(report[1].drop_off, 1);
        assert_eq!(report[0].drop_off, 0);
        assert_eq!(report[1].median_ms_from_previous, Some(1), "gaps 1 and 4: lower median");
        assert!((report[2].conversion_from_previous - 0.5).abs() < 1e-9);
        assert!((report[2].conversion_from_first - 1.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn a_milestone_counts_at_its_first_report_and_ties_count_in_order() {
        let steps: Vec<Step> = ["a", "b"].map(Step::milestone).to_vec();
        // `a` again at 100 (a second device) does not start a chain that fits the window; `b`
        // at the same millisecond as `a` counts, whatever order the events are listed in.
        let late = [events("x", &[(0, "a"), (100, "a"), (110, "b")])];
        assert_eq!(funnel(&steps, &[user("x", 0)], &late, Some(50))[1].users, 0);
        let tie = [events("x", &[(5, "b"), (5, "a")])];
        assert_eq!(funnel(&steps, &[user("x", 0)], &tie, None)[1].users, 1);
    }

    #[test]
    fn window_limits_the_chain() {
        let steps: Vec<Step> = ["signup", "project"].map(Step::milestone).to_vec();
        let all = [events("a", &[(0, "signup"), (100, "project")])];
        let report = funnel(&steps, &[user("a", 0)], &all, Some(50));
        assert_eq!(report[1].users, 0);
        assert_eq!(report[1].conversion_from_previous, 0.0);
    }
}
