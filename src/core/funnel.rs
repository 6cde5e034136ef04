//! The funnel step-matcher, shared by every store.
//!
//! ClickHouse's `windowFunnel` says how far a user got but not *when* each step was reached,
//! and time-to-value needs the when. So each store hands one user's events, sorted by time and
//! labelled with the funnel step they match, to this matcher; SQLite and ClickHouse then give
//! identical answers because they share this code.

/// One user's event that matches funnel step `step` (0-based) at `ts` (ms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepEvent {
    pub ts: i64,
    pub step: usize,
    /// Which of the user's events this is: one event counts for one step only, even when a
    /// funnel repeats a step (`steps=a,a` needs two `a`s, as in ClickHouse's windowFunnel).
    pub event: usize,
}

/// Finds how far through `steps` ordered steps a user got, and when.
///
/// Returns the time each step was reached, for the longest chain `0, 1, 2…` in which each step
/// happens at or after the previous one and all within `window_ms` of step 0 (`None` = no
/// limit). Among chains of equal length the one starting earliest wins; within it each step takes
/// its earliest qualifying event. `events` must be sorted by `ts`.
pub fn reach(steps: usize, events: &[StepEvent], window_ms: Option<i64>) -> Vec<i64> {
    let mut best: Vec<i64> = Vec::new();
    let mut tried_start = i64::MIN;
    for (start_index, first) in events.iter().enumerate() {
        // Only a later step-0 event can give a longer chain; equal starts add nothing.
        if first.step != 0 || first.ts == tried_start || best.len() == steps {
            continue;
        }
        tried_start = first.ts;
        let deadline = window_ms.map_or(i64::MAX, |w| first.ts.saturating_add(w));
        let mut chain = vec![first.ts];
        let mut last_event = first.event;
        for e in &events[start_index + 1..] {
            if e.ts > deadline || chain.len() == steps {
                break;
            }
            if e.step == chain.len() && e.event != last_event {
                chain.push(e.ts);
                last_event = e.event;
            }
        }
        if chain.len() > best.len() {
            best = chain;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(list: &[(i64, usize)]) -> Vec<StepEvent> {
        list.iter().enumerate().map(|(event, &(ts, step))| StepEvent { ts, step, event }).collect()
    }

    #[test]
    fn one_event_counts_for_one_step_of_a_repeated_step() {
        // steps = [a, a]: each `a` event stands for both steps.
        let once = [StepEvent { ts: 5, step: 0, event: 0 }, StepEvent { ts: 5, step: 1, event: 0 }];
        assert_eq!(reach(2, &once, None), vec![5]);
        let twice = [
            StepEvent { ts: 5, step: 0, event: 0 },
            StepEvent { ts: 5, step: 1, event: 0 },
            StepEvent { ts: 9, step: 0, event: 1 },
            StepEvent { ts: 9, step: 1, event: 1 },
        ];
        assert_eq!(reach(2, &twice, None), vec![5, 9]);
    }

    #[test]
    fn takes_steps_in_order_only() {
        // Step 1 before step 0 does not count; the later one does.
        assert_eq!(reach(3, &ev(&[(1, 1), (2, 0), (3, 2), (4, 1)]), None), vec![2, 4]);
    }

    #[test]
    fn window_can_be_met_by_a_later_start() {
        let events = ev(&[(0, 0), (100, 0), (150, 1), (160, 2)]);
        assert_eq!(reach(3, &events, Some(60)), vec![100, 150, 160]);
        assert_eq!(reach(3, &events, None), vec![0, 150, 160]);
    }
}
