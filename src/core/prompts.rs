//! Prompt scheduling: which growth prompt may be on screen now (docs/PLANS.md, "Prompts"), and
//! what seeing one, taking its call to action or saying "not now" does to the user's state.
//! Pure, like [`super::tips`]; the browser layer renders the answer.
//!
//! A prompt shows to an identified user outside its holdout, once its milestone is reached and
//! its `delay` has passed, for at most its `window` after that; never again after its call to
//! action; not while "not now" holds (`snooze`); in at most `maxShows` sessions; only to its NPS
//! groups when it names some (the user's latest NPS answer). One prompt at a time, the highest
//! `priority` first, and never beside a tip that holds the user's attention.
//!
//! Prompts spend the **fatigue budget** shared by every kind of guidance ([`super::budget`]:
//! `caps.maxPerSession`, `caps.maxPerDay`) and, like tips, count toward `maxTipsPerSession` and
//! the gap between two nudges: [`budget`] and [`charge_budget`] are the one place that says so.
//! Each prompt's state lives in the user's tip states under `prompt:<id>` ([`state_key`]; tip ids
//! cannot contain `:`), so it persists and merges across tabs like a tip's.

use super::budget::{self as shared, Spent, Surface};
use super::engine::{TipState, UserState};
use super::holdout::{self, Withheld};
use super::plan::{Plan, Prompt};
use super::tips::Verdict;

/// Where a prompt's state is kept in [`UserState::tips`].
pub fn state_key(prompt: &Prompt) -> String {
    String::from("prompt:") + &prompt.id
}

/// The experiment id of a prompt's control group.
pub fn experiment(prompt: &Prompt) -> String {
    String::from("prompt:") + &prompt.id
}

/// Why a prompt may or may not show now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    Ready,
    Anonymous,
    HeldOut(Withheld),
    /// Its milestone is not reached yet.
    Waiting,
    /// Not before `at` (its delay after the milestone, or "not now").
    NotYet { at: i64 },
    /// Its window after the milestone has closed.
    WindowEnded,
    /// Its call to action was taken.
    Done,
    Capped,
    /// The user's latest NPS group is not one it is for.
    OtherGroup,
    /// The tips' session cap, which prompts count toward, is spent.
    SessionCapped,
    /// The fatigue budget shared by tips, surveys and prompts is spent (the day's frees up).
    Budget(Spent),
    /// The gap between guidance shown has not passed yet.
    Gap { at: i64 },
}

fn state<'a>(state: &'a UserState, prompt: &Prompt) -> Option<&'a TipState> {
    state.tips.get(&state_key(prompt))
}

/// True when the prompt was shown in the current session: it may continue without counting again.
pub fn shown_this_session(s: &UserState, prompt: &Prompt) -> bool {
    state(s, prompt).and_then(|t| t.last_shown).is_some_and(|l| l >= s.session.start)
}

/// Whether one more prompt may show now: the fatigue budget shared by every kind of guidance,
/// then the tips' session cap and the gap between two nudges, which prompts count toward.
pub fn budget(plan: &Plan, s: &UserState, now: i64) -> Result<(), Why> {
    shared::check(&plan.caps, s, now).map_err(Why::Budget)?;
    if s.session.tips_shown.total() >= plan.caps.max_tips_per_session {
        return Err(Why::SessionCapped);
    }
    match s.session.last_tip.map(|l| l + plan.caps.min_gap_ms) {
        Some(at) if at > now => Err(Why::Gap { at }),
        _ => Ok(()),
    }
}

/// Charges one showing to the shared budget and to the counters tips' caps read.
pub fn charge_budget(s: &mut UserState, tab: &str, now: i64) {
    shared::record_shown(s, tab, Surface::Prompt, now);
    s.session.tips_shown.add(tab, 1);
    s.session.last_tip = Some(now);
}

/// Whether prompt `i` may show now for `user` (`None` before `identify`), and why.
pub fn explain(plan: &Plan, s: &UserState, i: usize, user: Option<&str>, now: i64) -> (Verdict, Why) {
    let never = |why| (Verdict::Never, why);
    let Some(p) = plan.prompts.get(i) else { return never(Why::Done) };
    let Some(user) = user else { return never(Why::Anonymous) };
    if let Some(w) = holdout::withheld(plan, user, Some((&experiment(p), p.control_percent))) {
        return never(Why::HeldOut(w));
    }
    let Some(&reached) = s.reached.get(&p.milestone) else { return never(Why::Waiting) };
    let ps = state(s, p).cloned().unwrap_or_default();
    if ps.dismissed.is_some() {
        return never(Why::Done);
    }
    if !p.nps_groups.is_empty() && !s.latest_nps.as_ref().is_some_and(|(_, g)| p.nps_groups.contains(g)) {
        return never(Why::OtherGroup);
    }
    let opens = reached.saturating_add(p.delay_ms);
    if now >= opens.saturating_add(p.window_ms) && !shown_this_session(s, p) {
        return never(Why::WindowEnded);
    }
    if shown_this_session(s, p) {
        return match ps.snoozed_until.filter(|u| *u > now) {
            Some(_) => never(Why::Capped),
            None => (Verdict::Show, Why::Ready),
        };
    }
    if ps.shown.total() >= p.max_shows {
        return never(Why::Capped);
    }
    let mut at = opens.max(ps.snoozed_until.unwrap_or(i64::MIN));
    if let Err(why) = budget(plan, s, now) {
        match why {
            Why::Gap { at: gap } => at = at.max(gap),
            Why::Budget(Spent::Day { since, .. }) => at = at.max(since + shared::DAY_MS),
            other => return never(other),
        }
    }
    if at > now {
        (Verdict::At(at), Why::NotYet { at })
    } else {
        (Verdict::Show, Why::Ready)
    }
}

/// The prompt to have on screen, and when to ask again. `on_screen` keeps its place while it
/// may still show; `tip_focus` is whether a tip holds the user's attention (then no new prompt).
pub fn pick(plan: &Plan, s: &UserState, user: Option<&str>, now: i64, on_screen: Option<usize>, tip_focus: bool) -> (Option<usize>, Option<i64>) {
    let (mut best, mut wake): (Option<(bool, i32, usize)>, Option<i64>) = (None, None);
    for (i, p) in plan.prompts.iter().enumerate() {
        match explain(plan, s, i, user, now).0 {
            Verdict::Show => {
                let rank = (on_screen == Some(i) || shown_this_session(s, p), p.priority, usize::MAX - i);
                if best.is_none_or(|(a, b, c)| rank > (a, b, c)) {
                    best = Some(rank);
                }
            }
            Verdict::At(t) => wake = Some(wake.map_or(t, |w| w.min(t))),
            Verdict::Never => {}
        }
    }
    let chosen = best.map(|(_, _, inv)| usize::MAX - inv);
    // A tip the user is reading keeps the stage; a prompt already up keeps its place.
    let chosen = chosen.filter(|i| !tip_focus || on_screen == Some(*i));
    (chosen, wake)
}

fn entry<'a>(s: &'a mut UserState, prompt: &Prompt) -> &'a mut TipState {
    s.tips.entry(state_key(prompt)).or_default()
}

/// Records that the prompt is on screen; true when this is a new showing (then `prompt_shown`
/// is reported and the shared budget charged).
pub fn record_shown(s: &mut UserState, tab: &str, prompt: &Prompt, now: i64) -> bool {
    if shown_this_session(s, prompt) {
        return false;
    }
    let ps = entry(s, prompt);
    ps.shown.add(tab, 1);
    ps.last_shown = Some(now);
    charge_budget(s, tab, now);
    true
}

/// The call to action was taken: the prompt has done its job and never shows again.
pub fn record_action(s: &mut UserState, prompt: &Prompt, now: i64) {
    entry(s, prompt).dismissed = Some(now);
}

/// "Not now": hidden for the prompt's `snooze`, then it may come back (within its window and
/// `maxShows`).
pub fn record_not_now(s: &mut UserState, prompt: &Prompt, now: i64) {
    entry(s, prompt).snoozed_until = Some(now.saturating_add(prompt.snooze_ms));
}

/// A prompt may still show: its milestone is reached, its window not over, and it is not done.
/// (Before its milestone, the milestone itself keeps the guide loaded.) While one is pending,
/// pages load the full SDK rather than the lean tracker.
pub fn pending(plan: &Plan, s: &UserState, now: i64) -> bool {
    plan.prompts.iter().any(|p| {
        let done = state(s, p).is_some_and(|t| t.dismissed.is_some());
        !done && s.reached.get(&p.milestone).is_some_and(|r| now < r.saturating_add(p.delay_ms).saturating_add(p.window_ms))
    })
}

/// The user's latest NPS answer, from a `survey_answered` event's props.
pub fn note_nps(s: &mut UserState, group: &str, at: i64) {
    let answer = Some((at, group.to_string()));
    if answer > s.latest_nps {
        s.latest_nps = answer;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::engine::SessionState;
    use crate::core::tips::{self, Page};

    const H: i64 = 3_600_000;
    const T0: i64 = 1_700_000_000_000;

    fn plan(extra: &str) -> Plan {
        let text = [
            r#"{"version":"1","caps":{"maxTipsPerSession":2,"minGapBetweenTips":"1m"},
            "milestones":[{"id":"made","title":"Make","condition":{"event":"made"}},
                          {"id":"shared","title":"Share","value":true,"condition":{"event":"shared"}}],
            "tips":[{"id":"t1","kind":"modal","body":"One"},{"id":"t2","kind":"modal","body":"Two"}],
            "prompts":[
              {"id":"invite","kind":"invite","milestone":"shared","body":"Invite your team","priority":5,
               "cta":{"label":"Invite","action":"open_invite"},"goal":{"event":"teammate_invited","within":"3d"}},
              {"id":"later","milestone":"shared","delay":"2d","window":"1d","body":"Upgrade","cta":{"label":"See plans","url":"/billing"}},
              {"id":"review","kind":"review","milestone":"made","body":"Review us","cta":{"label":"Review","url":"https://example.com/review"}},
              {"id":"refer","kind":"referral","milestone":"made","npsGroups":["promoter"],"body":"Refer a friend","cta":{"label":"Copy link","copy":"https://example.com/r/{userId}"}}"#,
            extra,
            "]}",
        ]
        .concat();
        Plan::parse(&text).expect("valid plan")
    }

    fn user(now: i64) -> UserState {
        UserState { signup: Some(T0), session: SessionState { start: now - 1000, last: now, ..SessionState::default() }, ..UserState::default() }
    }

    fn idx(p: &Plan, id: &str) -> usize {
        p.prompts.iter().position(|x| x.id == id).expect("prompt")
    }

    #[test]
    fn a_prompt_waits_for_its_milestone_then_its_delay_and_closes_after_its_window() {
        let p = plan("");
        let now = T0 + H;
        let mut s = user(now);
        let (invite, later) = (idx(&p, "invite"), idx(&p, "later"));
        assert_eq!(explain(&p, &s, invite, Some("u"), now).1, Why::Waiting);
        assert_eq!(explain(&p, &s, invite, None, now).1, Why::Anonymous);
        s.reached.insert("shared".into(), now - 10);
        assert_eq!(explain(&p, &s, invite, Some("u"), now), (Verdict::Show, Why::Ready));
        assert_eq!(explain(&p, &s, later, Some("u"), now).0, Verdict::At(now - 10 + 48 * H));
        let after = now + 80 * H;
        let s2 = UserState { session: SessionState { start: after - 1, last: after, ..SessionState::default() }, ..s.clone() };
        assert_eq!(explain(&p, &s2, later, Some("u"), after).1, Why::WindowEnded, "2 d delay + 1 d window");
        assert_eq!(pick(&p, &s, Some("u"), now, None, false).0, Some(invite));
        assert_eq!(pick(&p, &s, Some("u"), now, None, true).0, None, "a tip holds the user's attention");
    }

    #[test]
    fn prompts_and_tips_spend_one_budget() {
        let p = plan("");
        let now = T0 + H;
        let mut s = user(now);
        s.reached.insert("made".into(), now - 10);
        let review = idx(&p, "review");
        // One tip shown: the session cap of 2 has room for the prompt, after the 1-minute gap.
        tips::record_shown(&mut s, "tab", &p.tips[0], now - 30_000);
        assert_eq!(explain(&p, &s, review, Some("u"), now), (Verdict::At(now + 30_000), Why::NotYet { at: now + 30_000 }));
        let later = now + 60_000;
        assert_eq!(explain(&p, &s, review, Some("u"), later).0, Verdict::Show);
        assert!(record_shown(&mut s, "tab", &p.prompts[review], later));
        assert!(!record_shown(&mut s, "tab", &p.prompts[review], later + 1), "once per session");
        assert_eq!(s.session.tips_shown.total(), 2, "the prompt was charged to the tips' budget");
        // Now the tips' own cap is spent by the prompt…
        let page = Page { now: later + 120_000, path: "/", hash: "", route_since: 0, seen: &[], skip: &[], forced: None, review: None, user: Some("u") };
        assert!(matches!(tips::explain(&p, &s, 1, &page).1, tips::Why::SessionCapped { .. }));
        // …and the other prompts' too: the shared budget (`maxPerSession`, by default
        // `maxTipsPerSession`) says no first.
        note_nps(&mut s, "promoter", later);
        assert_eq!(explain(&p, &s, idx(&p, "refer"), Some("u"), later + 120_000).1, Why::Budget(Spent::Session { shown: 2, max: 2 }));
        assert_eq!(crate::core::budget::shown_today(&s, later), 2, "the prompt was charged to the day's budget too");
    }

    #[test]
    fn action_ends_a_prompt_not_now_snoozes_it_and_nps_routes_the_referral() {
        let p = plan("");
        let now = T0 + H;
        let mut s = user(now);
        s.reached.insert("made".into(), now - 10);
        let (review, refer) = (idx(&p, "review"), idx(&p, "refer"));
        assert_eq!(explain(&p, &s, refer, Some("u"), now).1, Why::OtherGroup, "no NPS answer yet");
        note_nps(&mut s, "detractor", now - 5);
        assert_eq!(explain(&p, &s, refer, Some("u"), now).1, Why::OtherGroup);
        note_nps(&mut s, "promoter", now - 4);
        note_nps(&mut s, "passive", now - 100);
        assert_eq!(s.latest_nps, Some((now - 4, "promoter".into())), "the latest answer wins");
        assert_eq!(explain(&p, &s, refer, Some("u"), now).0, Verdict::Show);
        // The review prompt goes to everybody, whatever their answer.
        assert_eq!(explain(&p, &s, review, Some("u"), now).0, Verdict::Show);
        record_shown(&mut s, "t", &p.prompts[review], now);
        record_not_now(&mut s, &p.prompts[review], now + 1);
        assert_eq!(explain(&p, &s, review, Some("u"), now + 2).1, Why::Capped, "gone for this session");
        let next = now + 4 * 24 * H;
        let mut s2 = s.clone();
        s2.session = SessionState { start: next - 1, last: next, ..SessionState::default() };
        assert_eq!(explain(&p, &s2, review, Some("u"), next).0, Verdict::Show, "back after the 3-day snooze");
        record_action(&mut s2, &p.prompts[review], next + 1);
        assert_eq!(explain(&p, &s2, review, Some("u"), next + 2).1, Why::Done);
    }

    #[test]
    fn a_pending_prompt_keeps_the_guide_until_done_or_its_window_is_over() {
        let p = plan("");
        let now = T0 + H;
        let mut s = user(now);
        assert!(!pending(&p, &s, now), "milestones unreached: their own business");
        s.reached.insert("shared".into(), now);
        assert!(pending(&p, &s, now + 3 * 24 * H - 1), "`later`: 2 d delay + 1 d window");
        record_action(&mut s, &p.prompts[idx(&p, "invite")], now);
        assert!(pending(&p, &s, now + 2 * 24 * H), "`later` still ahead");
        assert!(!pending(&p, &s, now + 8 * 24 * H), "every window over");
    }

    #[test]
    fn review_gating_and_bad_prompts_are_refused_with_the_field_named() {
        let bad = |prompt: &str| {
            let text = [
                r#"{"version":"1","milestones":[{"id":"m","title":"M","value":true,"condition":{"event":"m"}}],"prompts":["#,
                prompt,
                "]}",
            ]
            .concat();
            Plan::parse(&text).expect_err("refused").pointer
        };
        assert_eq!(bad(r#"{"id":"r","kind":"review","milestone":"m","npsGroups":["promoter"],"body":"B","cta":{"label":"L","url":"https://x.io"}}"#), "/prompts/0/npsGroups");
        assert_eq!(bad(r#"{"id":"r","milestone":"nope","body":"B","cta":{"label":"L","url":"https://x.io"}}"#), "/prompts/0/milestone");
        assert_eq!(bad(r#"{"id":"r","milestone":"m","body":"B","cta":{"label":"L","url":"javascript:alert(1)"}}"#), "/prompts/0/cta/url");
        assert_eq!(bad(r#"{"id":"r","milestone":"m","body":"B","cta":{"label":"L","url":"/a","copy":"x"}}"#), "/prompts/0/cta");
        assert_eq!(bad(r#"{"id":"r","milestone":"m","body":"B","npsGroups":["happy"],"cta":{"label":"L","copy":"x"}}"#), "/prompts/0/npsGroups/0");
        // Every group, or none, is not gating.
        let all = r#"{"version":"1","milestones":[{"id":"m","title":"M","value":true,"condition":{"event":"m"}}],"prompts":[{"id":"r","kind":"review","milestone":"m","npsGroups":["promoter","passive","detractor"],"body":"B","cta":{"label":"L","url":"https://x.io"}}]}"#;
        assert!(Plan::parse(all).is_ok());
    }

    #[test]
    fn a_prompts_control_group_and_the_global_holdout_never_see_it() {
        let mut p = plan("");
        let invite = idx(&p, "invite");
        p.prompts[invite].control_percent = 50.0;
        let now = T0 + H;
        let mut s = user(now);
        s.reached.insert("shared".into(), now - 10);
        let mut control = 0;
        for i in 0..200 {
            let u = ["u", &i.to_string()].concat();
            let held = holdout::arm("", "prompt:invite", &u, 50.0) == holdout::Arm::Control;
            control += held as u32;
            assert_eq!(explain(&p, &s, invite, Some(&u), now).1 == Why::HeldOut(Withheld::Control), held);
        }
        assert!((70..130).contains(&control));
        p.holdouts.global_percent = 50.0;
        let held = (0..).map(|i| ["g", &i.to_string()].concat()).find(|u| holdout::draw("", "global", u) < 0.5).expect("one");
        assert_eq!(explain(&p, &s, invite, Some(&held), now).1, Why::HeldOut(Withheld::Global));
    }
}
