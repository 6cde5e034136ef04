//! Tip effect: do users who saw a tip reach its milestone more often, and sooner?
//!
//! For each tip, the selected users split into those who saw it (`tip_shown`) and those who did
//! not; both groups signed up in the same date range, so they had the same chance to see it.
//! This is an observed difference, not an experiment: users who linger see more tips.

use std::collections::{BTreeMap, HashSet};

use onramp::core::vocab::tip;

use super::report::Durations;
use super::{ratio, FirstReach, Step, User};
use crate::store::UserTip;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Group {
    pub users: usize,
    /// Users who reached the tip's milestone.
    pub completed: usize,
    pub completion_rate: f64,
    /// Median time from sign-up to the milestone, over those who reached it.
    pub median_ms: Option<i64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TipEffect {
    pub tip_id: String,
    /// The milestone the tip leads to (from its events' `milestone` prop).
    pub milestone: Option<String>,
    pub saw: Group,
    pub did_not_see: Group,
    /// Users who dismissed it, over users who saw it.
    pub dismissed: usize,
    pub dismiss_rate: f64,
    pub cta_clicked: usize,
}

/// Every selected user, as the tip groups need them: how many, and per milestone the time from
/// sign-up of those who reached it ([`super::report::Tallies::population`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Population {
    pub users: usize,
    pub reached: BTreeMap<String, Durations>,
}

impl Population {
    /// The population of `users` (every selected user) for `milestones`.
    pub fn of(users: &[User], milestones: &[String], reach: &FirstReach) -> Population {
        let reached = milestones
            .iter()
            .map(|m| {
                let step = Step::milestone(m);
                (m.clone(), Durations::of(users.iter().filter_map(|u| reach.since_signup(u, &step)).collect()))
            })
            .collect();
        Population { users: users.len(), reached }
    }
}

fn group(users: usize, times: &Durations) -> Group {
    let completed = times.count() as usize;
    Group { users, completed, completion_rate: ratio(completed, users), median_ms: times.percentile(50) }
}

/// Times from sign-up to `milestone` of the users who saw a tip.
fn saw_times(members: &[&User], milestone: Option<&str>, reach: &FirstReach) -> Vec<i64> {
    let step = milestone.map(Step::milestone);
    members.iter().filter_map(|u| step.as_ref().and_then(|s| reach.since_signup(u, s))).collect()
}

#[derive(Default)]
struct Seen<'a> {
    milestone: Option<&'a str>,
    shown: HashSet<&'a str>,
    dismissed: HashSet<&'a str>,
    cta: HashSet<&'a str>,
}

/// The milestones the tips in `tips` lead to, so the caller can fetch their reach times.
pub fn milestones(tips: &[UserTip]) -> Vec<String> {
    let mut names: Vec<String> = tips.iter().filter_map(|t| t.milestone.clone()).collect();
    names.sort();
    names.dedup();
    names
}

/// Every tip with at least one event among the selected users, by tip id. `users` are the
/// selected users with tips (or all selected users), `everyone` every selected user
/// ([`Population`] of the tips' milestones). `tips` are every user's tips in (user, tip id)
/// order ([`crate::store::Store::tips`]): a tip leads to the milestone of the first selected
/// user (by key) whose events of it name one. `reach` must cover the tips' milestones for `users`.
/// Those who did not see a tip are every selected user but those who did.
pub fn tip_effects(users: &[User], everyone: &Population, tips: &[UserTip], reach: &FirstReach) -> Vec<TipEffect> {
    let selected: HashSet<&str> = users.iter().map(|u| u.id.as_str()).collect();
    let mut by_tip: BTreeMap<&str, Seen> = BTreeMap::new();
    for t in tips.iter().filter(|t| selected.contains(t.user.as_str())) {
        let seen = by_tip.entry(&t.tip_id).or_default();
        if seen.milestone.is_none() {
            seen.milestone = t.milestone.as_deref();
        }
        for name in &t.names {
            match name.as_str() {
                tip::SHOWN => seen.shown.insert(&t.user),
                tip::DISMISSED => seen.dismissed.insert(&t.user),
                tip::CTA_CLICKED => seen.cta.insert(&t.user),
                _ => false,
            };
        }
    }
    by_tip
        .into_iter()
        .map(|(tip_id, seen)| {
            let saw: Vec<&User> = users.iter().filter(|u| seen.shown.contains(u.id.as_str())).collect();
            let saw_times = saw_times(&saw, seen.milestone, reach);
            let all_times = seen.milestone.and_then(|m| everyone.reached.get(m)).cloned().unwrap_or_default();
            // Only dismissals by users seen to be shown it count (a lost `tip_shown` would
            // otherwise push the rate over 100%).
            let dismissed = seen.dismissed.intersection(&seen.shown).count();
            TipEffect {
                tip_id: tip_id.into(),
                milestone: seen.milestone.map(String::from),
                did_not_see: group(everyone.users - saw.len(), &all_times.without(&saw_times)),
                saw: group(saw.len(), &Durations::of(saw_times)),
                dismissed,
                dismiss_rate: ratio(dismissed, saw.len()),
                cta_clicked: seen.cta.intersection(&seen.shown).count(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::test_support::{events, tip, user};
    use crate::store::UserEvents;

    #[test]
    fn compares_users_who_saw_a_tip_with_those_who_did_not() {
        let users: Vec<User> = ["a", "b", "c", "d"].iter().map(|id| user(id, 0)).collect();
        let tips = vec![
            UserEvents { user: "a".into(), events: vec![tip(1, "tip_shown", "t1", "project"), tip(2, "tip_dismissed", "t1", "project")] },
            UserEvents { user: "b".into(), events: vec![tip(1, "tip_shown", "t1", "project")] },
            UserEvents { user: "z".into(), events: vec![tip(1, "tip_shown", "t1", "project")] },
        ];
        let tips = crate::store::tips_of(&tips);
        assert_eq!(milestones(&tips), vec!["project"]);
        let reached = [events("a", &[(10, "project")]), events("b", &[(30, "project")]), events("c", &[(50, "project")])];
        let reach = FirstReach::new(&reached);
        let effects = tip_effects(&users, &Population::of(&users, &milestones(&tips), &reach), &tips, &reach);
        assert_eq!(effects.len(), 1);
        let t = &effects[0];
        assert_eq!(t.milestone.as_deref(), Some("project"));
        assert_eq!(t.saw, Group { users: 2, completed: 2, completion_rate: 1.0, median_ms: Some(10) });
        assert_eq!(t.did_not_see, Group { users: 2, completed: 1, completion_rate: 0.5, median_ms: Some(50) });
        assert_eq!((t.dismissed, t.dismiss_rate), (1, 0.5));
    }
}
