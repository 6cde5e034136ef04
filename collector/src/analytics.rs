//! Analytics computed from each user's events, independent of the store they came from.

use onramp::core::funnel::{self, StepEvent};

use crate::store::UserEvents;

#[derive(Clone, Debug, PartialEq)]
pub struct FunnelStep {
    pub name: String,
    pub users: u64,
    /// Users at this step over users at the previous one (1.0 for the first step).
    pub conversion_from_previous: f64,
    pub conversion_from_first: f64,
    /// Users who reached this step, sorted; reported only when asked for.
    pub user_ids: Vec<String>,
}

/// Users reaching each of `steps` in order, within `window_ms` of the first step.
pub fn funnel(steps: &[String], users: &[UserEvents], window_ms: Option<i64>) -> Vec<FunnelStep> {
    let mut reached: Vec<Vec<String>> = vec![Vec::new(); steps.len()];
    let mut step_events = Vec::new();
    for user in users {
        step_events.clear();
        for (ts, name) in &user.events {
            // An event name may stand for several steps (a funnel that repeats an action).
            for (step, _) in steps.iter().enumerate().filter(|(_, s)| *s == name) {
                step_events.push(StepEvent { ts: *ts, step });
            }
        }
        let depth = funnel::reach(steps.len(), &step_events, window_ms).len();
        for ids in reached.iter_mut().take(depth) {
            ids.push(user.user.clone());
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let first = reached.first().map_or(0, Vec::len);
    let mut previous = first;
    steps
        .iter()
        .zip(reached)
        .map(|(name, mut ids)| {
            ids.sort();
            let users = ids.len();
            let step = FunnelStep {
                name: name.clone(),
                users: users as u64,
                conversion_from_previous: ratio(users, previous),
                conversion_from_first: ratio(users, first),
                user_ids: ids,
            };
            previous = users;
            step
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, events: &[(i64, &str)]) -> UserEvents {
        UserEvents { user: id.into(), events: events.iter().map(|(t, n)| (*t, n.to_string())).collect() }
    }

    #[test]
    fn counts_users_per_step_with_conversion() {
        let steps: Vec<String> = ["signup", "project", "invite"].map(String::from).to_vec();
        let users = [
            user("a", &[(1, "signup"), (2, "project"), (3, "invite")]),
            user("b", &[(1, "signup"), (5, "project")]),
            user("c", &[(1, "signup"), (2, "invite")]),
            user("d", &[(1, "project")]),
        ];
        let report = funnel(&steps, &users, None);
        let counts: Vec<u64> = report.iter().map(|s| s.users).collect();
        assert_eq!(counts, vec![3, 2, 1]);
        assert_eq!(report[1].user_ids, vec!["a", "b"]);
        assert!((report[2].conversion_from_previous - 0.5).abs() < 1e-9);
        assert!((report[2].conversion_from_first - 1.0 / 3.0).abs() < 1e-9);
    }
}
