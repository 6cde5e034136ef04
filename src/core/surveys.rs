//! Survey scheduling: whether a micro-survey is due for this user now, and what showing,
//! answering, dismissing or snoozing one does to the user's state. Pure, like `tips`: the
//! browser layer passes the clock and the page, renders the answer and records changes through
//! `Engine::update`, so they persist and merge across tabs; the collector serves the same
//! history from the survey events (`GET /v1/state`), so devices agree (docs/SURVEYS.md).
//!
//! A survey is never nagging. It shows
//! - only once its `when` holds: its milestone reached, its event seen (with its filters), the
//!   time after sign-up passed, or on a matching page; then after its `delay`;
//! - never to an identified user in a holdout ([`super::holdout`]): the global one, or the
//!   survey's own control group (`controlPercent`, the experiment `survey:<id>`);
//! - only to the users its `sample` picks (a hash of the survey id and the user, so the same
//!   user always gets the same answer on every device);
//! - once per contact: a survey shown and not answered or dismissed (still open in another tab,
//!   or lost to a reload) comes back only after its "ask me later" time, exactly as when the user
//!   asked for later; then as `recontact` says (`once`, `until_answered`, `every`);
//! - never within `caps.minGapBetweenSurveys` (7 days by default) of any survey shown before;
//! - and only while the fatigue budget ([`super::budget`]) shared with tips and prompts allows.
//!
//! One survey at a time: the first due in plan order. Unlike tips, surveys may ask anonymous
//! visitors (a route or event survey); what a visitor was asked carries over at `identify`.
//! Visitors are in no experiment (docs/EXPERIMENTS.md: arms are drawn for user ids), so the
//! holdouts apply from `identify` on.

use super::budget;
use super::engine::{SurveyState, UserState};
use super::holdout;
use super::json::Value;
use super::plan::{Plan, Recontact, Survey, SurveyWhen};
use super::vocab::prop;

/// What the browser knows about this page view that the persisted state does not.
#[derive(Clone, Copy, Debug)]
pub struct Page<'a> {
    pub now: i64,
    pub path: &'a str,
    pub hash: &'a str,
    /// When the current route was entered: a page survey's delay counts from here.
    pub route_since: i64,
    /// Who the sample is drawn for: the user id, or the anonymous id before `identify`.
    pub user: &'a str,
    /// Whether `user` is an identified user id: only then do the holdouts apply.
    pub identified: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Show,
    /// Not before this time.
    At(i64),
    Never,
}

/// Whether `user` is in a survey's `sample` percent: FNV-1a of `surveyId:user` into [0, 100).
/// Deterministic, so every device and tab of the user agrees, and independent per survey.
pub fn sampled(survey: &Survey, user: &str) -> bool {
    if survey.sample >= 100.0 {
        return true;
    }
    let h = [survey.id.as_bytes(), b":", user.as_bytes()].iter().fold(holdout::FNV_OFFSET, |h, bytes| holdout::fnv1a(h, bytes));
    ((h % 10_000) as f64) / 100.0 < survey.sample
}

/// The holdout gate for a survey: the global holdout, or the survey's own control group.
pub fn withheld(plan: &Plan, survey: &Survey, user: &str) -> Option<holdout::Withheld> {
    holdout::withheld(plan, user, Some((&holdout::survey_experiment(&survey.id), survey.control_percent)))
}

fn state<'a>(state: &'a UserState, survey: &Survey) -> Option<&'a SurveyState> {
    state.surveys.get(&survey.id)
}

/// When the survey's `when` first held, before its delay; `None` while it has not.
fn triggered_at(survey: &Survey, state: &UserState, ss: &SurveyState, page: &Page) -> Option<i64> {
    let on_page = survey.path.as_ref().is_none_or(|p| p.matches(page.path)) && survey.hash.as_ref().is_none_or(|h| h.matches(page.hash));
    if !on_page {
        return None;
    }
    match &survey.when {
        SurveyWhen::Milestone(m) => state.reached.get(m).copied(),
        SurveyWhen::Event { .. } => ss.triggered,
        SurveyWhen::AfterSignup(after) => Some(state.signup_or_first_seen().0 + after),
        SurveyWhen::Page => Some(page.route_since),
    }
}

/// What the user was already asked says about this survey: `None` when it may never be asked
/// again (`recontact`), else not before the time returned (`i64::MIN`: no wait). Shown and not
/// closed since (open in another tab, lost to a reload, "ask me later") waits for `askLater`;
/// every survey waits for `caps.minGapBetweenSurveys` after the last one shown.
fn not_before(plan: &Plan, state: &UserState, survey: &Survey, ss: &SurveyState) -> Option<i64> {
    let closed = ss.answered.max(ss.dismissed);
    let mut at = i64::MIN;
    match survey.recontact {
        Recontact::Once if closed.is_some() => return None,
        Recontact::UntilAnswered if ss.answered.is_some() => return None,
        Recontact::Every(every) => at = closed.map_or(at, |c| c.saturating_add(every)),
        _ => {}
    }
    if let Some(shown) = ss.last_shown.filter(|s| closed.is_none_or(|c| c < *s)) {
        at = at.max(shown.saturating_add(survey.ask_later_ms));
    }
    at = at.max(ss.snoozed_until.unwrap_or(i64::MIN));
    if let Some(last) = state.surveys.values().filter_map(|s| s.last_shown).max() {
        at = at.max(last.saturating_add(plan.caps.min_gap_between_surveys_ms));
    }
    Some(at)
}

/// Whether survey `i` may be shown now.
pub fn verdict(plan: &Plan, state: &UserState, i: usize, page: &Page) -> Verdict {
    let Some(survey) = plan.surveys.get(i) else { return Verdict::Never };
    if page.identified && withheld(plan, survey, page.user).is_some() {
        return Verdict::Never;
    }
    if !sampled(survey, page.user) {
        return Verdict::Never;
    }
    let ss = self::state(state, survey).cloned().unwrap_or_default();
    let Some(wait) = not_before(plan, state, survey, &ss) else { return Verdict::Never };
    let mut at = page.now.max(wait);
    let Some(trigger) = triggered_at(survey, state, &ss, page) else { return Verdict::Never };
    at = at.max(trigger + survey.delay_ms);
    if at > page.now {
        return Verdict::At(at);
    }
    match budget::check(&plan.caps, state, page.now) {
        Ok(()) => Verdict::Show,
        Err(budget::Spent::Day { since, .. }) => Verdict::At(since + budget::DAY_MS),
        Err(budget::Spent::Session { .. }) => Verdict::Never,
    }
}

/// The earliest time any survey may be asked of `user` (the user id), whatever page they are
/// on; `None` when none ever can be again (held out of a survey counts as never). The lean
/// tracker cannot show surveys, so the full SDK marks a user lean only until then
/// (`machine::LEAN_KEY`): a survey some weeks after sign-up, or every 90 days, brings the guide
/// back when it is due. A survey still waiting
/// for its event, a page survey, or one on a milestone reached, may be due at any page view:
/// "now" (its milestone not yet reached keeps the guide loaded by itself while it is open).
pub fn next_ask(plan: &Plan, state: &UserState, user: &str) -> Option<i64> {
    let mut next: Option<i64> = None;
    for survey in plan.surveys.iter().filter(|s| sampled(s, user) && withheld(plan, s, user).is_none()) {
        let ss = self::state(state, survey).cloned().unwrap_or_default();
        let Some(at) = not_before(plan, state, survey, &ss) else { continue };
        let trigger = match &survey.when {
            SurveyWhen::Milestone(m) => match state.reached.get(m) {
                Some(t) => *t,
                None => continue,
            },
            SurveyWhen::Event { .. } => ss.triggered.unwrap_or(i64::MIN),
            SurveyWhen::AfterSignup(after) => state.signup_or_first_seen().0.saturating_add(*after),
            SurveyWhen::Page => i64::MIN,
        };
        let at = at.max(trigger.saturating_add(survey.delay_ms));
        next = Some(next.map_or(at, |n| n.min(at)));
    }
    next
}

/// The survey to show (the first due in plan order), and when to ask again.
pub fn pick(plan: &Plan, state: &UserState, page: &Page) -> (Option<usize>, Option<i64>) {
    let mut wake: Option<i64> = None;
    for i in 0..plan.surveys.len() {
        match verdict(plan, state, i, page) {
            Verdict::Show => return (Some(i), wake),
            Verdict::At(t) => wake = Some(wake.map_or(t, |w| w.min(t))),
            Verdict::Never => {}
        }
    }
    (None, wake)
}

/// An event happened: surveys waiting for it (props passing their filters) are triggered.
/// Returns true when the state changed.
pub fn observe(plan: &Plan, state: &mut UserState, name: &str, props: &[(String, Value)], ts: i64) -> bool {
    let mut changed = false;
    for survey in &plan.surveys {
        let SurveyWhen::Event { event, filters } = &survey.when else { continue };
        if event == name && filters.iter().all(|f| f.op.test(props.iter().find(|(k, _)| *k == f.prop).map(|(_, v)| v))) {
            let ss = state.surveys.entry(survey.id.clone()).or_default();
            if ss.triggered.is_none() {
                ss.triggered = Some(ts);
                changed = true;
            }
        }
    }
    changed
}

fn entry<'a>(state: &'a mut UserState, survey: &Survey) -> &'a mut SurveyState {
    state.surveys.entry(survey.id.clone()).or_default()
}

/// The survey is on screen: a new contact, charged to the fatigue budget.
pub fn record_shown(state: &mut UserState, tab: &str, survey: &Survey, now: i64) {
    entry(state, survey).last_shown = Some(now);
    budget::record_shown(state, tab, budget::Surface::Survey, now);
}

pub fn record_answered(state: &mut UserState, survey: &Survey, now: i64) {
    entry(state, survey).answered = Some(now);
}

pub fn record_dismissed(state: &mut UserState, survey: &Survey, now: i64) {
    entry(state, survey).dismissed = Some(now);
}

/// "Ask me later": back after the survey's `askLater` (7 days by default).
pub fn record_snoozed(state: &mut UserState, survey: &Survey, now: i64) {
    entry(state, survey).snoozed_until = Some(now + survey.ask_later_ms);
}

/// Whether a survey on screen in this tab should go: answered, dismissed or snoozed (maybe in
/// another tab) since `shown_at`.
pub fn closed_since(state: &UserState, survey: &Survey, shown_at: i64) -> bool {
    self::state(state, survey).is_some_and(|s| {
        s.answered.is_some_and(|t| t >= shown_at) || s.dismissed.is_some_and(|t| t >= shown_at) || s.snoozed_until.is_some_and(|t| t > shown_at)
    })
}

/// The props of every survey event: `surveyId`, `surveyKind`.
pub fn props(survey: &Survey) -> Vec<(String, Value)> {
    vec![(prop::SURVEY_ID.into(), Value::Str(survey.id.clone())), (prop::SURVEY_KIND.into(), Value::Str(survey.kind.as_str().into()))]
}

/// The props of `survey_answered`: `score` (absent for open questions), `group`, and `text`
/// (trimmed, at most 1 000 characters, absent when empty).
pub fn answer_props(survey: &Survey, score: Option<u8>, text: &str) -> Vec<(String, Value)> {
    let mut out = props(survey);
    if let Some(score) = score.filter(|s| survey.scores().contains(s)) {
        out.push((prop::SCORE.into(), Value::Num(score as f64)));
        if let Some(group) = survey.group(score) {
            out.push((prop::GROUP.into(), Value::Str(group.into())));
        }
    }
    let text: String = text.trim().chars().take(super::plan::MAX_ANSWER_CHARS).collect();
    if !text.is_empty() {
        out.push((prop::TEXT.into(), Value::Str(text)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::engine::SessionState;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const T0: i64 = 1_700_000_000_000;
    const H: i64 = 3_600_000;
    const D: i64 = 24 * H;

    fn plan(surveys: &str) -> Plan {
        let text = String::from(
            r#"{"version":"1","milestones":[{"id":"created","title":"Create","condition":{"event":"create"},"value":true}],"surveys":"#,
        ) + surveys
            + "}";
        Plan::parse(&text).expect("valid plan")
    }

    fn page(now: i64) -> Page<'static> {
        Page { now, path: "/app", hash: "", route_since: T0, user: "u1", identified: true }
    }

    fn user(now: i64) -> UserState {
        UserState { signup: Some(T0), session: SessionState { start: now, last: now, ..SessionState::default() }, ..UserState::default() }
    }

    #[test]
    fn a_milestone_survey_waits_for_the_milestone_and_its_delay() {
        let p = plan(r#"[{"id":"s","kind":"csat","question":"How was it?","when":{"milestone":"created"},"delay":"10s"}]"#);
        let mut s = user(T0);
        assert_eq!(verdict(&p, &s, 0, &page(T0)), Verdict::Never);
        s.reached.insert("created".into(), T0 + 1000);
        assert_eq!(verdict(&p, &s, 0, &page(T0 + 2000)), Verdict::At(T0 + 11_000));
        assert_eq!(verdict(&p, &s, 0, &page(T0 + 11_000)), Verdict::Show);
    }

    #[test]
    fn an_event_survey_needs_its_filters() {
        let p = plan(r#"[{"id":"s","kind":"ces","question":"Easy?","when":{"event":"export","where":{"format":"csv"}}}]"#);
        let mut s = user(T0);
        assert!(!observe(&p, &mut s, "export", &[("format".into(), Value::Str("pdf".into()))], T0));
        assert_eq!(verdict(&p, &s, 0, &page(T0)), Verdict::Never);
        assert!(observe(&p, &mut s, "export", &[("format".into(), Value::Str("csv".into()))], T0 + 5));
        assert!(!observe(&p, &mut s, "export", &[("format".into(), Value::Str("csv".into()))], T0 + 9), "the first trigger counts");
        assert_eq!(verdict(&p, &s, 0, &page(T0 + 10)), Verdict::Show);
    }

    #[test]
    fn days_after_signup_and_pages() {
        let p = plan(
            r#"[{"id":"nps","kind":"nps","question":"Recommend?","when":{"afterSignup":"14d"}},
                {"id":"route","kind":"question","question":"Missing anything?","when":{"path":"/settings*"},"delay":"2s"}]"#,
        );
        let s = user(T0);
        assert_eq!(verdict(&p, &s, 0, &page(T0 + D)), Verdict::At(T0 + 14 * D));
        assert_eq!(verdict(&p, &s, 1, &page(T0 + 5000)), Verdict::Never, "another page");
        let settings = Page { path: "/settings/team", route_since: T0 + 4000, ..page(T0 + 5000) };
        assert_eq!(verdict(&p, &s, 1, &settings), Verdict::At(T0 + 6000));
    }

    #[test]
    fn once_until_answered_and_every() {
        let p = plan(
            r#"[{"id":"once","kind":"csat","question":"Q","when":{"path":"/*"}},
                {"id":"until","kind":"csat","question":"Q","when":{"path":"/*"},"recontact":"until_answered"},
                {"id":"every","kind":"nps","question":"Q","when":{"path":"/*"},"recontact":{"every":"90d"}}],
             "caps":{"minGapBetweenSurveys":0,"maxPerSession":100,"maxPerDay":100}"#,
        );
        let mut s = user(T0);
        let t = T0 + 1000;
        for survey in &p.surveys {
            record_shown(&mut s, "tab", survey, t);
            record_dismissed(&mut s, survey, t + 1);
        }
        let later = T0 + 8 * D;
        assert_eq!(verdict(&p, &s, 0, &page(later)), Verdict::Never, "once: dismissed is done");
        assert_eq!(verdict(&p, &s, 1, &page(later)), Verdict::Show, "until_answered: asked again");
        assert_eq!(verdict(&p, &s, 2, &page(later)), Verdict::At(t + 1 + 90 * D));
        record_answered(&mut s, &p.surveys[1], later);
        assert_eq!(verdict(&p, &s, 1, &page(later + D)), Verdict::Never, "until_answered: answered is done");
    }

    #[test]
    fn next_ask_says_until_when_a_finished_user_may_go_without_the_guide() {
        let p = plan(
            r#"[{"id":"nps","kind":"nps","question":"Q","when":{"afterSignup":"14d"},"recontact":{"every":"90d"}},
                {"id":"after","kind":"csat","question":"Q","when":{"milestone":"created"},"delay":"1h"}],
             "caps":{"minGapBetweenSurveys":"7d"}"#,
        );
        let mut s = user(T0);
        assert_eq!(next_ask(&p, &s, "u1"), Some(T0 + 14 * D), "the NPS survey 14 days after sign-up");
        s.reached.insert("created".into(), T0 + D);
        assert_eq!(next_ask(&p, &s, "u1"), Some(T0 + D + H), "the milestone survey an hour after it");
        let csat = &p.surveys[1];
        record_shown(&mut s, "tab", csat, T0 + D + H);
        record_answered(&mut s, csat, T0 + D + H + 5);
        assert_eq!(next_ask(&p, &s, "u1"), Some(T0 + 14 * D), "the CSAT survey is done (once)");
        let nps = &p.surveys[0];
        record_shown(&mut s, "tab", nps, T0 + 14 * D);
        record_answered(&mut s, nps, T0 + 14 * D + 9);
        assert_eq!(next_ask(&p, &s, "u1"), Some(T0 + 104 * D + 9), "asked again 90 days after the answer");
        let once = plan(r#"[{"id":"e","kind":"ces","question":"Q","when":{"event":"export"}},{"id":"p","kind":"question","question":"Q","when":{"path":"/settings*"}}]"#);
        let mut s = user(T0);
        assert!(next_ask(&once, &s, "u1").is_some_and(|t| t <= T0), "an event or page may come at any page view");
        for survey in &once.surveys {
            record_shown(&mut s, "tab", survey, T0);
            record_dismissed(&mut s, survey, T0 + 1);
        }
        assert_eq!(next_ask(&once, &s, "u1"), None, "nothing left to ask");
    }

    #[test]
    fn shown_elsewhere_or_snoozed_waits_for_ask_later_and_every_survey_waits_for_the_global_gap() {
        let p = plan(
            r#"[{"id":"a","kind":"csat","question":"Q","when":{"path":"/*"},"askLater":"3d"},
                {"id":"b","kind":"ces","question":"Q","when":{"path":"/*"}}]"#,
        );
        let mut s = user(T0);
        record_shown(&mut s, "tab-1", &p.surveys[0], T0);
        assert_eq!(verdict(&p, &s, 0, &page(T0 + 1)), Verdict::At(T0 + 7 * D), "open in another tab: not twice; the global gap is longer");
        assert_eq!(verdict(&p, &s, 1, &page(T0 + 1)), Verdict::At(T0 + 7 * D), "the global wait between any two surveys");
        record_snoozed(&mut s, &p.surveys[0], T0 + 5);
        assert!(closed_since(&s, &p.surveys[0], T0));
        assert_eq!(pick(&p, &s, &page(T0 + 7 * D)).0, Some(0));
    }

    #[test]
    fn sampling_is_deterministic_per_user_and_near_the_percentage() {
        let p = plan(r#"[{"id":"s","kind":"nps","question":"Q","when":{"path":"/*"},"sample":30}]"#);
        let users: Vec<String> = (0..2000).map(|i| format!("user-{i}")).collect();
        let picked = users.iter().filter(|u| sampled(&p.surveys[0], u)).count();
        assert!((500..700).contains(&picked), "{picked} of 2000 at 30%");
        assert!(users.iter().all(|u| sampled(&p.surveys[0], u) == sampled(&p.surveys[0], u)));
        let none = plan(r#"[{"id":"s","kind":"nps","question":"Q","when":{"path":"/*"},"sample":0}]"#);
        assert!(users.iter().all(|u| !sampled(&none.surveys[0], u)));
    }

    #[test]
    fn a_held_out_user_is_never_asked_and_a_control_group_misses_only_its_survey() {
        let mut p = plan(
            r#"[{"id":"nps","kind":"nps","question":"Q","when":{"path":"/*"},"controlPercent":40},
                {"id":"ces","kind":"ces","question":"Q","when":{"path":"/*"}}],
             "holdouts":{"salt":"acme","globalPercent":20}"#,
        );
        let s = user(T0);
        // The oracle is the documented draw (docs/EXPERIMENTS.md), asked of each experiment id.
        let control = |exp: &str, u: &str, pct: f64| holdout::draw("acme", exp, u) < pct / 100.0;
        let (mut held, mut nps_control) = (0, 0);
        for i in 0..1000 {
            let u = ["user-", &i.to_string()].concat();
            let pg = Page { user: &u, ..page(T0) };
            let want = if control("global", &u, 20.0) {
                held += 1;
                assert_eq!(verdict(&p, &s, 0, &pg), Verdict::Never);
                assert_eq!(verdict(&p, &s, 1, &pg), Verdict::Never, "no survey at all, control group or not");
                assert_eq!(pick(&p, &s, &pg), (None, None));
                continue;
            } else if control("survey:nps", &u, 40.0) {
                nps_control += 1;
                assert_eq!(verdict(&p, &s, 0, &pg), Verdict::Never);
                Some(1)
            } else {
                Some(0)
            };
            assert_eq!(pick(&p, &s, &pg).0, want, "{u}");
            assert_eq!(verdict(&p, &s, 1, &pg), Verdict::Show);
            // Before identify the same id is a visitor's: in no experiment, asked as anyone.
            assert_eq!(pick(&p, &s, &Page { identified: false, ..pg }).0, Some(0));
        }
        assert!((150..250).contains(&held), "{held} of 1000 held out at 20 %");
        assert!((250..390).contains(&nps_control), "{nps_control} of {} in the control group at 40 %", 1000 - held);
        // Without holdouts, the same users are all asked.
        p.holdouts.global_percent = 0.0;
        p.surveys[0].control_percent = 0.0;
        assert!((0..100).all(|i| pick(&p, &s, &Page { user: &["user-", &i.to_string()].concat(), ..page(T0) }).0 == Some(0)));
    }

    #[test]
    fn the_budget_is_shared_with_tips() {
        let p = plan(r#"[{"id":"s","kind":"csat","question":"Q","when":{"path":"/*"}}],"caps":{"maxPerSession":1}"#);
        let mut s = user(T0);
        budget::record_shown(&mut s, "tab", budget::Surface::Tip, T0);
        assert_eq!(verdict(&p, &s, 0, &page(T0)), Verdict::Never);
    }

    #[test]
    fn answers_carry_score_group_and_plain_text_cut_at_1000_characters() {
        let p = plan(
            r#"[{"id":"n","kind":"nps","question":"Q","when":{"path":"/*"},"followUp":{"detractor":"What went wrong?","promoter":"What do you love?"}},
                {"id":"c","kind":"csat","question":"Q","when":{"path":"/*"},"scale":"1-5"}]"#,
        );
        let nps = &p.surveys[0];
        let long = "é".repeat(1500);
        let props = answer_props(nps, Some(6), &long);
        assert_eq!(props[2], (prop::SCORE.into(), Value::Num(6.0)));
        assert_eq!(props[3], (prop::GROUP.into(), Value::Str("detractor".into())));
        assert_eq!(props[4].1.as_str().map(|t| t.chars().count()), Some(1000));
        assert_eq!(nps.follow_up.for_group(nps.group(9)).get("en", "en"), "What do you love?");
        assert_eq!(nps.follow_up.for_group(nps.group(7)).get("en", "en"), "", "no passive text and no common one");
        assert_eq!(answer_props(nps, Some(11), "").len(), 2, "a score off the scale is left out");
        let csat = &p.surveys[1];
        assert_eq!([1, 2, 3, 4, 5].map(|n| csat.group(n).unwrap_or("")), ["unhappy", "unhappy", "neutral", "happy", "happy"]);
    }
}
