//! Prompt conversion: `prompt_shown` → `prompt_action` → the prompt's goal (docs/EXPERIMENTS.md,
//! "Prompts").
//!
//! For each prompt (the plan's, and any other with events), over the selected users:
//!
//! - **shown**: users with a `prompt_shown`; their first one is when they were shown it;
//! - **acted**: of those, users with a `prompt_action` at or after it;
//! - **converted**: of those, users who reached the prompt's goal (its milestone's `milestone`
//!   event, or its `track` event) at or after their first action and at most the goal's
//!   `within` after it. Without a goal in the current plan, conversion is not reported;
//! - **dismissed**: users shown it who said "not now" at least once.
//!
//! Rates are over users shown it. **By NPS group**: each user's group is their latest NPS answer
//! (`survey_answered` of an `nps` survey, its `group`) at or before their first showing, else
//! `none`.

use std::collections::{BTreeMap, HashMap, HashSet};

use onramp::core::plan::Prompt;
use onramp::core::vocab::{prompt, prop, survey};
use onramp::core::wire::EventType;

use super::{ratio, Step, User};
use crate::store::UserEvents;

/// A prompt's goal as analytics reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Goal {
    pub step: Step,
    pub within_ms: i64,
}

impl Goal {
    pub fn of(p: &Prompt) -> Option<Goal> {
        let g = p.goal.as_ref()?;
        let step = match (&g.milestone, &g.event) {
            (Some(m), _) => Step::milestone(m),
            (None, Some(e)) => Step::event(e),
            (None, None) => return None,
        };
        Some(Goal { step, within_ms: g.within_ms })
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Funnel {
    pub shown: usize,
    pub acted: usize,
    pub dismissed: usize,
    /// `None` without a goal.
    pub converted: Option<usize>,
    pub action_rate: f64,
    pub conversion_rate: Option<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PromptReport {
    pub prompt_id: String,
    pub goal: Option<Goal>,
    pub all: Funnel,
    /// `detractor`, `passive`, `promoter`, then `none`; only groups with someone shown it.
    pub by_group: Vec<(String, Funnel)>,
}

/// One user's path through one prompt.
#[derive(Default)]
struct Path {
    shown: Option<i64>,
    acted: Option<i64>,
    dismissed: bool,
}

const GROUP_ORDER: [&str; 4] = ["detractor", "passive", "promoter", "none"];

/// `prompt_events`: the users' `prompt` events with props; `survey_events`: their `survey`
/// events with props; `goal_events`: every event that can reach a goal of `plan_prompts`.
pub fn prompts(users: &[User], plan_prompts: &[Prompt], prompt_events: &[UserEvents], survey_events: &[UserEvents], goal_events: &[UserEvents]) -> Vec<PromptReport> {
    let selected: HashSet<&str> = users.iter().map(|u| u.id.as_str()).collect();
    // prompt id → user → path
    let mut paths: BTreeMap<&str, BTreeMap<&str, Path>> = plan_prompts.iter().map(|p| (p.id.as_str(), BTreeMap::new())).collect();
    for u in prompt_events.iter().filter(|u| selected.contains(u.user.as_str())) {
        for e in u.events.iter().filter(|e| e.kind == EventType::Prompt) {
            let Some(id) = e.prop(prop::PROMPT_ID).and_then(|v| v.as_str()) else { continue };
            let path = paths.entry(id).or_default().entry(u.user.as_str()).or_default();
            // Events come in time order.
            match e.name.as_str() {
                prompt::SHOWN => {
                    path.shown.get_or_insert(e.ts);
                }
                prompt::ACTION if path.shown.is_some() => {
                    path.acted.get_or_insert(e.ts);
                }
                prompt::DISMISSED => path.dismissed = true,
                _ => {}
            }
        }
    }
    let nps: HashMap<&str, Vec<(i64, &str)>> = survey_events
        .iter()
        .map(|u| {
            let answers = u
                .events
                .iter()
                .filter(|e| e.kind == EventType::Survey && e.name == survey::ANSWERED)
                .filter(|e| e.prop(prop::SURVEY_KIND).and_then(|v| v.as_str()) == Some("nps"))
                .filter_map(|e| e.prop(prop::GROUP).and_then(|v| v.as_str()).map(|g| (e.ts, g)))
                .collect();
            (u.user.as_str(), answers)
        })
        .collect();
    let group_at = |user: &str, at: i64| -> String {
        nps.get(user)
            .and_then(|answers| answers.iter().filter(|(ts, _)| *ts <= at).max_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(b.1))))
            .map_or("none", |(_, g)| g)
            .to_string()
    };
    let goals: HashMap<&str, &UserEvents> = goal_events.iter().map(|u| (u.user.as_str(), u)).collect();
    let converted = |user: &str, acted: i64, goal: &Goal| {
        goals.get(user).is_some_and(|u| {
            u.events.iter().any(|e| goal.step.matches(e.kind, &e.name) && e.ts >= acted && e.ts - acted <= goal.within_ms)
        })
    };
    paths
        .into_iter()
        .map(|(id, users)| {
            let goal = plan_prompts.iter().find(|p| p.id == id).and_then(Goal::of);
            let mut all = Funnel::default();
            let mut groups: BTreeMap<String, Funnel> = BTreeMap::new();
            for (user, path) in &users {
                let Some(shown) = path.shown else { continue };
                let did_convert = goal.as_ref().map(|g| path.acted.is_some_and(|a| converted(user, a, g)));
                for f in [&mut all, groups.entry(group_at(user, shown)).or_default()] {
                    f.shown += 1;
                    f.acted += path.acted.is_some() as usize;
                    f.dismissed += path.dismissed as usize;
                    f.converted = did_convert.map(|c| f.converted.unwrap_or(0) + c as usize);
                }
            }
            let finish = |mut f: Funnel| {
                f.action_rate = ratio(f.acted, f.shown);
                if goal.is_some() {
                    let c = f.converted.unwrap_or(0);
                    f.converted = Some(c);
                    f.conversion_rate = Some(ratio(c, f.shown));
                }
                f
            };
            let mut by_group: Vec<(String, Funnel)> = groups.into_iter().map(|(g, f)| (g, finish(f))).collect();
            by_group.sort_by_key(|(g, _)| GROUP_ORDER.iter().position(|o| o == g).unwrap_or(GROUP_ORDER.len()));
            PromptReport { prompt_id: id.to_string(), goal: goal.clone(), all: finish(all), by_group }
        })
        .collect()
}
