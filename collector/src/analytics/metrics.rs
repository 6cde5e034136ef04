//! The seed metrics the SDK measures and reports as `metric` events (docs/EVENTS.md):
//! core-task completion, first-session length, and the interval before a user's first return.

use std::collections::HashSet;

use onramp::core::vocab::metric;

use super::time::{DAY, HOUR, MINUTE};
use super::{Histogram, Quantiles, User};
use crate::store::UserMetric;

pub const SESSION_EDGES: [i64; 5] = [MINUTE, 5 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR];
pub const RETURN_EDGES: [i64; 5] = [HOUR, 4 * HOUR, DAY, 3 * DAY, 7 * DAY];

#[derive(Clone, Debug, PartialEq)]
pub struct Distribution {
    /// Users who reported it.
    pub users: usize,
    pub quantiles: Quantiles,
    pub histogram: Histogram,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SeedMetrics {
    /// Users who reported a core-task completion ratio, and the mean of each one's latest ratio.
    pub core_task_users: usize,
    pub core_task_completion: Option<f64>,
    /// Each user's first reported first-session length.
    pub first_session: Distribution,
    /// Each user's first reported return interval.
    pub return_interval: Distribution,
}

fn distribution(values: Vec<i64>, edges: &[i64]) -> Distribution {
    Distribution { users: values.len(), histogram: Histogram::new(edges, values.iter().copied()), quantiles: Quantiles::of(values) }
}

/// Seed metrics of the selected `users`, from every user's first and latest value of each
/// metric ([`crate::store::Store::metrics`]).
pub fn seed_metrics(users: &[User], metrics: &[UserMetric]) -> SeedMetrics {
    let selected: HashSet<&str> = users.iter().map(|u| u.id.as_str()).collect();
    let (mut ratios, mut sessions, mut returns) = (Vec::new(), Vec::new(), Vec::new());
    for m in metrics.iter().filter(|m| selected.contains(m.user.as_str())) {
        match m.name.as_str() {
            metric::CORE_TASK_COMPLETION => ratios.push(m.latest),
            metric::FIRST_SESSION_LENGTH => sessions.push(m.first as i64),
            metric::RETURN_INTERVAL => returns.push(m.first as i64),
            _ => {}
        }
    }
    SeedMetrics {
        core_task_users: ratios.len(),
        core_task_completion: (!ratios.is_empty()).then(|| ratios.iter().sum::<f64>() / ratios.len() as f64),
        first_session: distribution(sessions, &SESSION_EDGES),
        return_interval: distribution(returns, &RETURN_EDGES),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::test_support::user;
    use crate::store::{UserEvent, UserEvents};
    use onramp::core::json::Value;
    use onramp::core::wire::EventType;

    fn metric(ts: i64, name: &str, key: &str, v: f64) -> UserEvent {
        UserEvent { ts, kind: EventType::Metric, name: name.into(), props: vec![(key.into(), Value::Num(v))] }
    }

    #[test]
    fn takes_latest_ratio_and_first_durations_per_user() {
        let users = vec![user("a", 0), user("b", 0)];
        let events = vec![
            UserEvents {
                user: "a".into(),
                events: vec![
                    metric(1, "core_task_completion", "value", 0.2),
                    metric(2, "first_session_length", "valueMs", 120_000.0),
                    metric(3, "core_task_completion", "value", 1.0),
                    metric(4, "return_interval", "valueMs", 2.0 * HOUR as f64),
                    metric(5, "return_interval", "valueMs", 1.0),
                ],
            },
            UserEvents { user: "b".into(), events: vec![metric(1, "core_task_completion", "value", 0.5)] },
            UserEvents { user: "x".into(), events: vec![metric(1, "core_task_completion", "value", 0.0)] },
        ];
        let m = seed_metrics(&users, &crate::store::metrics_of(&events));
        assert_eq!(m.core_task_users, 2);
        assert_eq!(m.core_task_completion, Some(0.75));
        assert_eq!(m.first_session.quantiles.p50, Some(120_000));
        assert_eq!(m.first_session.histogram.counts, vec![0, 1, 0, 0, 0, 0]);
        assert_eq!(m.return_interval.users, 1);
        assert_eq!(m.return_interval.quantiles.p90, Some(2 * HOUR));
    }
}
