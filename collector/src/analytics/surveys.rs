//! Micro-survey results (docs/SURVEYS.md, "What product managers read"): per survey, over the
//! selected users and a period of answer times,
//!
//! - **respondents**: users with a `survey_answered` in the period; each counts once, by their
//!   **latest answer** in it (the latest time; two at the same millisecond: the higher score);
//! - **NPS** = % promoters − % detractors of respondents with a score (0–6 detractor, 7–8
//!   passive, 9–10 promoter), from −100 to 100;
//! - **CSAT** = % satisfied: the happy face (3 of 3) or 4–5 (of 5), by the survey's scale in the
//!   plan (a survey no longer in the plan: 1–5 when any score is above 3);
//! - **CES** = the mean score (1–7);
//! - **response rate** = users who answered in the period ÷ users shown it in the period (only
//!   answers of users seen to be shown it count, so it is never above 1);
//! - **distribution**: respondents per score;
//! - each split by the milestone (the value milestone unless `milestone=` says): reached by the
//!   time of the user's latest survey event in the period, or not; by sign-up week (cohort); and
//!   by one trait's value (`split=KEY`);
//! - **answers**: every answer with text in the period, newest first, with user, score, group and
//!   whether the milestone was reached when answering. Text is plain text everywhere.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use onramp::core::json::Value;
use onramp::core::plan::{score_group, CsatScale, Plan, SurveyKind};
use onramp::core::vocab::{prop, survey};

use super::{time, trait_text, FirstReach, Step, User};
use crate::store::UserEvents;

/// One answer as reports show it.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub user: String,
    pub ts: i64,
    pub score: Option<u8>,
    pub group: Option<&'static str>,
    pub text: Option<String>,
    /// The split milestone was reached when the user answered.
    pub reached: bool,
}

/// The figures of one group of users for one survey.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub shown: usize,
    pub answered: usize,
    pub dismissed: usize,
    pub snoozed: usize,
    pub response_rate: Option<f64>,
    /// Respondents (latest answers) and those with a score.
    pub respondents: usize,
    pub scored: usize,
    /// nps: promoters, passives, detractors; csat: happy, neutral, unhappy.
    pub groups: [usize; 3],
    /// nps, csat (%) or ces (mean); `None` without a scored answer and for open questions.
    pub score: Option<f64>,
    /// Respondents per score, ascending.
    pub distribution: BTreeMap<u8, usize>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SurveyResult {
    pub id: String,
    pub kind: SurveyKind,
    pub all: Summary,
    /// Reached the split milestone, and not.
    pub reached: Summary,
    pub not_reached: Summary,
    /// Per sign-up week (Monday, UTC, ms), ascending.
    pub cohorts: Vec<(i64, Summary)>,
    /// Per value of the `split` trait (users without it under `None`).
    pub by_trait: Vec<(Option<String>, Summary)>,
    /// Answers with text, newest first.
    pub answers: Vec<Answer>,
}

/// What one user did with one survey in the period.
#[derive(Default)]
struct Did {
    shown: bool,
    dismissed: bool,
    snoozed: bool,
    /// Latest answer: (ts, score).
    latest: Option<(i64, Option<u8>)>,
    /// Latest survey event of any kind.
    last: i64,
}

/// Options of the report.
pub struct Options<'a> {
    /// Answer times counted: `[from, until)`.
    pub from: i64,
    pub until: i64,
    pub milestone: &'a Step,
    pub by_trait: Option<&'a str>,
}

/// The results of every survey with an event among the selected `users` in the period.
/// `survey_events` are the `survey` events with props; `reach` must cover `options.milestone`.
pub fn results(users: &[User], survey_events: &[UserEvents], plan: Option<&Plan>, reach: &FirstReach, options: &Options) -> Vec<SurveyResult> {
    let selected: HashMap<&str, &User> = users.iter().map(|u| (u.id.as_str(), u)).collect();
    // survey id → (kind, user → what they did), and the answers with text.
    let mut surveys: BTreeMap<String, (Option<SurveyKind>, BTreeMap<&str, Did>, Vec<(i64, &str, Option<u8>, String)>, bool)> = BTreeMap::new();
    for u in survey_events.iter().filter(|u| selected.contains_key(u.user.as_str())) {
        for e in u.events.iter().filter(|e| e.ts >= options.from && e.ts < options.until) {
            let Some(id) = e.prop(prop::SURVEY_ID).and_then(Value::as_str) else { continue };
            let entry = surveys.entry(id.to_string()).or_insert_with(|| (None, BTreeMap::new(), Vec::new(), false));
            if entry.0.is_none() {
                entry.0 = e.prop(prop::SURVEY_KIND).and_then(Value::as_str).and_then(|k| SurveyKind::ALL.iter().find(|(n, _)| *n == k)).map(|(_, k)| *k);
            }
            let did = entry.1.entry(u.user.as_str()).or_default();
            did.last = did.last.max(e.ts);
            match e.name.as_str() {
                survey::SHOWN => did.shown = true,
                survey::DISMISSED => did.dismissed = true,
                survey::SNOOZED => did.snoozed = true,
                survey::ANSWERED => {
                    let score = e.prop(prop::SCORE).and_then(Value::as_f64).filter(|s| s.fract() == 0.0 && (0.0..=10.0).contains(s)).map(|s| s as u8);
                    entry.3 |= score.is_some_and(|s| s > 3);
                    if did.latest.is_none_or(|(ts, best)| (e.ts, score) > (ts, best)) {
                        did.latest = Some((e.ts, score));
                    }
                    if let Some(text) = e.prop(prop::TEXT).and_then(Value::as_str).map(str::trim).filter(|t| !t.is_empty()) {
                        entry.2.push((e.ts, u.user.as_str(), score, text.to_string()));
                    }
                }
                _ => {}
            }
        }
    }
    surveys
        .into_iter()
        .map(|(id, (kind, did, texts, above_three))| {
            let planned = plan.and_then(|p| p.surveys.iter().find(|s| s.id == id));
            let kind = planned.map(|s| s.kind).or(kind).unwrap_or(SurveyKind::Question);
            let scale = match planned {
                Some(s) => s.scale,
                None if above_three => CsatScale::Five,
                None => CsatScale::Faces,
            };
            let group_of = |score: Option<u8>| score.and_then(|s| score_group(kind, scale, s));
            let reached_by = |user: &str, at: i64| {
                selected.get(user).is_some_and(|u| reach.since_signup(u, options.milestone).is_some_and(|since| u.signed_up_at + since <= at))
            };
            let summarize = |keep: &dyn Fn(&str, &Did) -> bool| {
                let members: Vec<(&str, &Did)> = did.iter().filter(|(u, d)| keep(u, d)).map(|(u, d)| (*u, d)).collect();
                summary(kind, &members, &group_of)
            };
            let all = summarize(&|_, _| true);
            let reached = summarize(&|u, d| reached_by(u, d.last));
            let not_reached = summarize(&|u, d| !reached_by(u, d.last));
            let weeks: BTreeSet<i64> = did.keys().filter_map(|u| selected.get(u)).map(|u| time::week_start(u.signed_up_at)).collect();
            let cohorts = weeks
                .into_iter()
                .map(|w| (w, summarize(&|u, _| selected.get(u).is_some_and(|u| time::week_start(u.signed_up_at) == w))))
                .collect();
            let trait_of = |u: &str| options.by_trait.and_then(|k| selected.get(u)?.trait_value(k).map(trait_text));
            let by_trait = match options.by_trait {
                None => Vec::new(),
                Some(_) => {
                    let values: BTreeSet<Option<String>> = did.keys().map(|u| trait_of(u)).collect();
                    values.into_iter().map(|v| { let s = summarize(&|u, _| trait_of(u) == v); (v, s) }).collect()
                }
            };
            let mut answers: Vec<Answer> = texts
                .into_iter()
                .map(|(ts, user, score, text)| Answer { user: user.into(), ts, score, group: group_of(score), text: Some(text), reached: reached_by(user, ts) })
                .collect();
            answers.sort_by(|a, b| b.ts.cmp(&a.ts).then_with(|| a.user.cmp(&b.user)));
            SurveyResult { id, kind, all, reached, not_reached, cohorts, by_trait, answers }
        })
        .collect()
}

fn summary(kind: SurveyKind, members: &[(&str, &Did)], group_of: &dyn Fn(Option<u8>) -> Option<&'static str>) -> Summary {
    let mut s = Summary::default();
    let mut sum = 0u64;
    for (_, d) in members {
        s.shown += d.shown as usize;
        s.dismissed += (d.shown && d.dismissed) as usize;
        s.snoozed += (d.shown && d.snoozed) as usize;
        let Some((_, score)) = d.latest else { continue };
        s.answered += d.shown as usize;
        s.respondents += 1;
        let Some(score) = score else { continue };
        s.scored += 1;
        sum += score as u64;
        *s.distribution.entry(score).or_default() += 1;
        let slot = match group_of(Some(score)) {
            Some("promoter" | "happy") => 0,
            Some("passive" | "neutral") => 1,
            Some(_) => 2,
            None => continue,
        };
        s.groups[slot] += 1;
    }
    s.response_rate = (s.shown > 0).then(|| s.answered as f64 / s.shown as f64);
    let pct = |n: usize| 100.0 * n as f64 / s.scored as f64;
    s.score = match kind {
        _ if s.scored == 0 => None,
        SurveyKind::Nps => Some(pct(s.groups[0]) - pct(s.groups[2])),
        SurveyKind::Csat => Some(pct(s.groups[0])),
        SurveyKind::Ces => Some(sum as f64 / s.scored as f64),
        SurveyKind::Question => None,
    };
    s
}

/// Formula-safe CSV of the answers (every answer with text, newest first), one row each.
pub fn to_csv(results: &[SurveyResult]) -> String {
    let mut out = String::from("survey,kind,user,answered_at,score,group,milestone_reached,text\r\n");
    let mut rows: Vec<(&SurveyResult, &Answer)> = results.iter().flat_map(|r| r.answers.iter().map(move |a| (r, a))).collect();
    rows.sort_by(|a, b| b.1.ts.cmp(&a.1.ts).then_with(|| a.0.id.cmp(&b.0.id)));
    for (r, a) in rows {
        let fields = [
            super::stalled::csv_field(&r.id),
            r.kind.as_str().to_string(),
            super::stalled::csv_field(&a.user),
            time::iso(a.ts),
            a.score.map(|s| s.to_string()).unwrap_or_default(),
            a.group.unwrap_or("").to_string(),
            a.reached.to_string(),
            super::stalled::csv_field(a.text.as_deref().unwrap_or("")),
        ];
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::test_support::{events, user};
    use crate::store::UserEvent;
    use onramp::core::wire::EventType;

    fn ev(ts: i64, name: &str, id: &str, kind: &str, score: Option<f64>, text: Option<&str>) -> UserEvent {
        let mut props = vec![("surveyId".to_string(), Value::Str(id.into())), ("surveyKind".into(), Value::Str(kind.into()))];
        if let Some(s) = score {
            props.push(("score".into(), Value::Num(s)));
        }
        if let Some(t) = text {
            props.push(("text".into(), Value::Str(t.into())));
        }
        UserEvent { ts, kind: EventType::Survey, name: name.into(), props }
    }

    #[test]
    fn nps_counts_each_users_latest_answer_and_ties_take_the_higher_score() {
        let users: Vec<User> = ["a", "b", "c", "d"].iter().map(|id| user(id, 0)).collect();
        let shown = |ts| ev(ts, "survey_shown", "n", "nps", None, None);
        let answer = |ts, s| ev(ts, "survey_answered", "n", "nps", Some(s), None);
        let data = vec![
            UserEvents { user: "a".into(), events: vec![shown(1), answer(2, 3.0), answer(5, 10.0)] }, // latest: promoter
            UserEvents { user: "b".into(), events: vec![shown(1), answer(2, 6.0), answer(2, 8.0)] },  // tie: passive
            UserEvents { user: "c".into(), events: vec![shown(1), answer(3, 0.0)] },                  // detractor
            UserEvents { user: "d".into(), events: vec![shown(1)] },
        ];
        let reach_rows = [events("a", &[(4, "value")])];
        let reach = FirstReach::new(&reach_rows);
        let step = Step::milestone("value");
        let r = &results(&users, &data, None, &reach, &Options { from: 0, until: 100, milestone: &step, by_trait: None })[0];
        assert_eq!((r.all.respondents, r.all.groups), (3, [1, 1, 1]));
        assert_eq!(r.all.score, Some(0.0));
        assert_eq!(r.all.response_rate, Some(0.75));
        assert_eq!(r.all.distribution, BTreeMap::from([(0, 1), (8, 1), (10, 1)]));
        assert_eq!((r.reached.respondents, r.reached.score), (1, Some(100.0)), "a reached value before answering");
        let period = &results(&users, &data, None, &reach, &Options { from: 0, until: 5, milestone: &step, by_trait: None })[0];
        assert_eq!(period.all.groups, [0, 1, 2], "a's later answer is outside the period");
    }

    #[test]
    fn csat_ces_and_texts_newest_first_as_plain_csv() {
        let users: Vec<User> = ["a", "b"].iter().map(|id| user(id, 0)).collect();
        let data = vec![
            UserEvents { user: "a".into(), events: vec![ev(1, "survey_shown", "c", "csat", None, None), ev(2, "survey_answered", "c", "csat", Some(3.0), Some("=cmd|' /C calc'!A0"))] },
            UserEvents { user: "b".into(), events: vec![ev(1, "survey_shown", "c", "csat", None, None), ev(3, "survey_answered", "c", "csat", Some(1.0), Some("<b>bad</b>, \"really\""))] },
        ];
        let reach = FirstReach::new(&[]);
        let step = Step::milestone("value");
        let r = &results(&users, &data, None, &reach, &Options { from: 0, until: 100, milestone: &step, by_trait: None })[0];
        assert_eq!(r.all.score, Some(50.0), "faces: one happy of two");
        assert_eq!(r.answers.iter().map(|a| a.user.as_str()).collect::<Vec<_>>(), ["b", "a"]);
        let csv = to_csv(std::slice::from_ref(r));
        assert!(csv.contains(",\"<b>bad</b>, \"\"really\"\"\"\r\n"), "{csv}");
        assert!(csv.contains(",'=cmd|' /C calc'!A0\r\n"), "a formula is defused: {csv}");
    }
}
