//! Tip scheduling: which tips may be on screen now, and what seeing, dismissing or snoozing a
//! tip does to the user's state. Pure: the browser layer passes the clock and the page, renders
//! the answer, and records changes through `Engine::update` so they persist and merge across tabs.
//!
//! A tip is never nagging. It shows
//! - only inside its window relative to sign-up (by default the first 24 hours),
//! - only while its milestone is unreached; once reached, it goes away at once,
//! - only on pages matching its trigger, after its trigger event and delay,
//! - never again once dismissed, not while snoozed, in at most `maxShows` sessions `minGap` apart;
//!
//! and across every surface together (tooltips, hotspots, modals, tours) at most
//! `maxTipsPerSession` tips per session, `minGapBetweenTips` apart. One tip holds the user's
//! attention at a time (a tooltip, hotspot, modal or tour), beside at most one checklist. The
//! checklist itself is a launcher that waits to be opened, never a nudge: it is not charged to
//! the plan-wide caps (its own `cap` still applies).
//!
//! A tip already shown in this session continues without counting again: a tour resumes at its
//! step after a reload or a route change, a tooltip comes back when its page does.
//!
//! Tips are for users: an anonymous visitor (before `identify`) sees none. Once the plan's value
//! milestone is reached the tips have done their job and stop, except the checklist, which stays
//! (a launcher the user opens) until every required milestone is reached. A tip that is not on
//! screen yet does not start when a more important one is due within [`SOON_MS`]: a hotspot
//! must not take the place of the welcome a second before it.
//!
//! What the user asks for (a checklist's "Show me", a modal's "open checklist") is `forced`: it
//! skips caps, gaps, windows and earlier dismissals, but never shows a tip whose milestone is
//! reached.

use super::budget;
use super::engine::{TipState, UserState};
use super::holdout::{self, Withheld};
use super::plan::{Advance, Plan, Tip, TipKind};

/// A more important tip due this soon keeps its place free.
pub const SOON_MS: i64 = 5000;

/// What the browser knows about this page view that the persisted state does not.
#[derive(Clone, Copy, Debug)]
pub struct Page<'a> {
    pub now: i64,
    /// `location.pathname` and `location.hash`.
    pub path: &'a str,
    pub hash: &'a str,
    /// When the current route was entered: trigger delays count from here.
    pub route_since: i64,
    /// Events seen in this page view and when, for `afterEvent` triggers.
    pub seen: &'a [(String, i64)],
    /// Tips whose target is missing on this route: skipped, so the next tip gets its turn.
    pub skip: &'a [usize],
    /// A tip the user asked for.
    pub forced: Option<usize>,
    /// A tip a product manager asked to review (preview's "show now"): shown whatever the
    /// schedule, the user's state or the milestones say.
    pub review: Option<usize>,
    /// The user, once `identify` named them; `None` for an anonymous visitor.
    pub user: Option<&'a str>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Show,
    /// Not before this time (a delay, a gap, a snooze or a window that has not opened yet).
    At(i64),
    Never,
}

/// The tips to have on screen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pick {
    /// The one tip holding attention: a tooltip, hotspot, modal or tour.
    pub focus: Option<usize>,
    pub checklist: Option<usize>,
    /// When to ask again because some tip's `At` comes due.
    pub wake: Option<i64>,
}

fn tip_state<'a>(state: &'a UserState, tip: &Tip) -> Option<&'a TipState> {
    state.tips.get(&tip.id)
}

/// True when the tip was shown in the current session: it may continue without counting again.
pub fn shown_this_session(state: &UserState, tip: &Tip) -> bool {
    tip_state(state, tip).and_then(|t| t.last_shown).is_some_and(|l| l >= state.session.start)
}

/// The tour step to show (tours only move forward; `Back` is a view of the browser layer).
pub fn step(state: &UserState, tip: &Tip) -> usize {
    tip_state(state, tip).map_or(0, |t| t.tour_step as usize)
}

/// The holdout gate for a tip: the global holdout, or the tip's own control group.
pub fn withheld_tip(plan: &Plan, user: &str, tip: &Tip) -> Option<Withheld> {
    holdout::withheld(plan, user, Some((&holdout::tip_experiment(&tip.id), tip.control_percent)))
}

/// Why a tip may or may not show now: the branch of [`explain`] that decided. The preview
/// panel words these for the product manager, so they are the scheduler's own reasons, never
/// re-derived. Times are Unix ms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// Nothing holds it back.
    Ready,
    /// Asked for: by the user (a checklist's "Show me") or by preview's "show now".
    Requested,
    /// Before `identify`: tips are for users.
    Anonymous,
    /// The user is in the global holdout (no guidance at all) or in this tip's control group
    /// (docs/EXPERIMENTS.md).
    HeldOut(Withheld),
    /// Its milestone is reached.
    MilestoneReached,
    /// The user's account reached its account milestone (any teammate may have).
    AccountMilestoneReached { at: i64 },
    /// The plan's value milestone is reached: tips have done their job.
    ValueReached,
    /// A checklist whose required milestones are all reached.
    ChecklistComplete,
    /// A tour past its last step.
    TourFinished,
    Dismissed { at: i64 },
    /// The window relative to sign-up closed at `at`.
    WindowEnded { at: i64 },
    /// Its target was not found on this route.
    TargetMissing,
    /// The trigger's `path` or `hash` does not match this page.
    OtherPage,
    /// The trigger's `afterEvent` has not happened in this page view.
    WaitingForEvent,
    /// Its own `cap.maxShows` is spent.
    Capped { shown: u32, max: u32 },
    /// The plan's `maxTipsPerSession` is spent.
    SessionCapped { shown: u32, max: u32 },
    /// The fatigue budget shared with surveys and prompts (`caps.maxPerSession`, `maxPerDay`).
    Budget(budget::Spent),
    /// Snoozed in this session: back in a later one.
    SnoozedThisSession { until: i64 },
    /// Not before `at`: the window opens then.
    WindowOpens { at: i64 },
    /// Not before `at`: the trigger's delay.
    Delay { at: i64 },
    /// Not before `at`: snoozed.
    Snoozed { at: i64 },
    /// Not before `at`: its own `cap.minGap` since it was last shown.
    TipGap { at: i64 },
    /// Not before `at`: the plan's `minGapBetweenTips` since the last tip.
    SessionGap { at: i64 },
}

/// Whether tip `i` may show now.
pub fn verdict(plan: &Plan, state: &UserState, i: usize, page: &Page) -> Verdict {
    explain(plan, state, i, page).0
}

/// Whether tip `i` may show now, and the reason. When several things delay it, the reason is
/// the one that ends last (the one that decides when it may show).
pub fn explain(plan: &Plan, state: &UserState, i: usize, page: &Page) -> (Verdict, Why) {
    let never = |why| (Verdict::Never, why);
    let Some(tip) = plan.tips.get(i) else { return never(Why::Dismissed { at: 0 }) };
    if page.review == Some(i) {
        return (Verdict::Show, Why::Requested);
    }
    let reached = |m: &String| state.reached.contains_key(m);
    let Some(user) = page.user else { return never(Why::Anonymous) };
    // Before the user's own request: a holdout gets no guidance at all, asked for or not.
    if let Some(w) = withheld_tip(plan, user, tip) {
        return never(Why::HeldOut(w));
    }
    if tip.milestone.as_ref().is_some_and(reached) {
        return never(Why::MilestoneReached);
    }
    if let Some(at) = tip.account_milestone.as_ref().and_then(|m| state.account.as_ref()?.reached.get(m).copied()) {
        return never(Why::AccountMilestoneReached { at });
    }
    if tip.kind == TipKind::Checklist {
        if plan.milestones.iter().filter(|m| m.required).all(|m| reached(&m.id)) {
            return never(Why::ChecklistComplete);
        }
    } else if page.forced != Some(i) && plan.value_milestone().is_some_and(|m| reached(&m.id)) {
        return never(Why::ValueReached);
    }
    let ts = tip_state(state, tip).cloned().unwrap_or_default();
    if tip.kind == TipKind::Tour && ts.tour_step as usize >= tip.steps.len() {
        return never(Why::TourFinished);
    }
    if page.forced == Some(i) {
        return (Verdict::Show, Why::Requested);
    }
    let now = page.now;
    let since = state.since_signup(now);
    if let Some(at) = ts.dismissed {
        return never(Why::Dismissed { at });
    }
    if since >= tip.window.until_ms {
        return never(Why::WindowEnded { at: now - (since - tip.window.until_ms) });
    }
    if page.skip.contains(&i) {
        return never(Why::TargetMissing);
    }
    let this_session = shown_this_session(state, tip);
    // A tour under way follows its steps' targets from page to page; its trigger only starts it.
    let started_tour = tip.kind == TipKind::Tour && (ts.tour_step > 0 || this_session);
    let t = &tip.trigger;
    if !started_tour
        && (t.path.as_ref().is_some_and(|p| !p.matches(page.path)) || t.hash.as_ref().is_some_and(|h| !h.matches(page.hash)))
    {
        return never(Why::OtherPage);
    }
    // The latest of the times it must wait for, and what it is.
    let mut at = (now, Why::Ready);
    let mut wait = |t: i64, why: Why| {
        if t > at.0 {
            at = (t, why);
        }
    };
    let opens = now + (tip.window.from_ms - since).max(0);
    wait(opens, Why::WindowOpens { at: opens });
    let mut from = page.route_since;
    if let Some(event) = &t.after_event {
        match page.seen.iter().filter(|(e, _)| e == event).map(|(_, at)| *at).max() {
            Some(seen_at) => from = from.max(seen_at),
            None if !this_session => return never(Why::WaitingForEvent),
            None => {}
        }
    }
    if !this_session {
        wait(from + t.delay_ms, Why::Delay { at: from + t.delay_ms });
        if let Some(until) = ts.snoozed_until {
            wait(until, Why::Snoozed { at: until });
        }
        let nudge = tip.kind != TipKind::Checklist;
        if ts.shown.total() >= tip.cap.max_shows {
            return never(Why::Capped { shown: ts.shown.total(), max: tip.cap.max_shows });
        }
        let in_session = state.session.tips_shown.total();
        if nudge && in_session >= plan.caps.max_tips_per_session {
            return never(Why::SessionCapped { shown: in_session, max: plan.caps.max_tips_per_session });
        }
        if let (true, Err(spent)) = (nudge, budget::check(&plan.caps, state, now)) {
            return match spent {
                budget::Spent::Session { .. } => never(Why::Budget(spent)),
                // The day's budget frees up: a wait, not a never.
                budget::Spent::Day { since, .. } => (Verdict::At(since + budget::DAY_MS), Why::Budget(spent)),
            };
        }
        if let Some(last) = ts.last_shown {
            wait(last + tip.cap.min_gap_ms, Why::TipGap { at: last + tip.cap.min_gap_ms });
        }
        if let Some(last) = state.session.last_tip.filter(|_| nudge) {
            wait(last + plan.caps.min_gap_ms, Why::SessionGap { at: last + plan.caps.min_gap_ms });
        }
    } else if let Some(until) = ts.snoozed_until.filter(|u| *u > now) {
        return never(Why::SnoozedThisSession { until });
    }
    match at {
        (t, why) if t > now => (Verdict::At(t), why),
        _ => (Verdict::Show, Why::Ready),
    }
}

/// The tips to have on screen. `on_screen` tips keep their place while they may still show,
/// so a higher-priority tip never pushes away the one the user is reading.
pub fn pick(plan: &Plan, state: &UserState, page: &Page, on_screen: &[usize]) -> Pick {
    let mut out = Pick::default();
    let mut best: [Option<((u8, i32), usize)>; 2] = [None, None];
    // Per lane, the highest priority due within SOON_MS.
    let mut soon: [Option<i32>; 2] = [None, None];
    for (i, tip) in plan.tips.iter().enumerate() {
        let lane = (tip.kind == TipKind::Checklist) as usize;
        match verdict(plan, state, i, page) {
            Verdict::Show => {
                // The user's request first, then what is on screen, then what this session has
                // already shown (it was there before a reload), then priority, then plan order.
                // A hotspot's closed beacon is ambient: it keeps no place against a more
                // important tip (the browser layer lists it in `on_screen` only while open).
                let tier = if page.forced == Some(i) || page.review == Some(i) {
                    3
                } else if on_screen.contains(&i) {
                    2
                } else {
                    (tip.kind != TipKind::Hotspot && shown_this_session(state, tip)) as u8
                };
                let rank = (tier, tip.priority);
                if best[lane].is_none_or(|(r, _)| rank > r) {
                    best[lane] = Some((rank, i));
                }
            }
            Verdict::At(t) => {
                out.wake = Some(out.wake.map_or(t, |w| w.min(t)));
                if t - page.now <= SOON_MS {
                    soon[lane] = Some(soon[lane].map_or(tip.priority, |p| p.max(tip.priority)));
                }
            }
            Verdict::Never => {}
        }
    }
    let keep = |lane: usize| best[lane].filter(|((tier, priority), _)| *tier > 0 || soon[lane].is_none_or(|p| p <= *priority)).map(|(_, i)| i);
    out.focus = keep(0);
    out.checklist = keep(1);
    out
}

fn entry<'a>(state: &'a mut UserState, tip: &Tip) -> &'a mut TipState {
    state.tips.entry(tip.id.clone()).or_default()
}

/// Records that `tip` is on screen. Returns true when this counts as a new showing (the first in
/// this session): then `tip_shown` is reported and the caps are charged.
pub fn record_shown(state: &mut UserState, tab: &str, tip: &Tip, now: i64) -> bool {
    if shown_this_session(state, tip) {
        return false;
    }
    let ts = entry(state, tip);
    ts.shown.add(tab, 1);
    ts.last_shown = Some(now);
    if tip.kind != TipKind::Checklist {
        state.session.tips_shown.add(tab, 1);
        state.session.last_tip = Some(now);
        budget::record_shown(state, tab, if tip.kind == TipKind::Tour { budget::Surface::Tour } else { budget::Surface::Tip }, now);
    }
    true
}

/// Dismissed for good (the close button, Esc, skip, a CTA that did its job).
pub fn record_dismissed(state: &mut UserState, tip: &Tip, now: i64) {
    entry(state, tip).dismissed = Some(now);
    state.session.last_tip = Some(now);
}

/// Hidden for the tip's snooze time ("Later").
pub fn record_snoozed(state: &mut UserState, tip: &Tip, now: i64) {
    entry(state, tip).snoozed_until = Some(now + tip.cap.snooze_ms);
    state.session.last_tip = Some(now);
}

/// Moves a tour past `completed` (its 0-based step). Returns false when it was already past it.
pub fn record_step(state: &mut UserState, tip: &Tip, completed: usize, now: i64) -> bool {
    let ts = entry(state, tip);
    if ts.tour_step as usize > completed {
        return false;
    }
    ts.tour_step = completed as u32 + 1;
    if ts.tour_step as usize >= tip.steps.len() {
        state.session.last_tip = Some(now);
    }
    true
}

/// Tours whose current step waits for what just happened: the event `event`, or (with `None`) any
/// milestone now reached. Returns `(tip, step)` for each step to complete, in order; a milestone
/// reached earlier can complete several steps of one tour at once.
pub fn steps_done(plan: &Plan, state: &UserState, event: Option<&str>) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (i, tip) in plan.tips.iter().enumerate() {
        if tip.kind != TipKind::Tour || tip_state(state, tip).is_some_and(|t| t.dismissed.is_some()) {
            continue;
        }
        let mut s = step(state, tip);
        while let Some(adv) = tip.steps.get(s).and_then(|st| st.advance_on.as_ref()) {
            let done = match adv {
                Advance::Event(e) => event == Some(e.as_str()) && out.iter().all(|(j, _)| *j != i),
                Advance::Milestone(m) => state.reached.contains_key(m),
            };
            if !done {
                break;
            }
            out.push((i, s));
            s += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::engine::{AccountState, SessionState};
    use crate::core::plan::Plan;

    const H: i64 = 3_600_000;
    const SIGNUP: i64 = 1_700_000_000_000;

    fn plan() -> Plan {
        Plan::parse(
            r##"{"version":"1","caps":{"maxTipsPerSession":3,"minGapBetweenTips":"1m"},
            "milestones":[{"id":"made","title":"Make","condition":{"event":"made"}},
                          {"id":"shared","title":"Share","value":true,"condition":{"event":"shared"}}],
            "tips":[
              {"id":"hello","kind":"modal","title":"Hi","body":"Welcome","priority":100,"cap":{"maxShows":1},
               "trigger":{"afterEvent":"signed_up","delay":"1s"}},
              {"id":"make","kind":"tooltip","milestone":"made","target":"#new","body":"Make one","priority":50,
               "trigger":{"hash":"#/projects*"}},
              {"id":"late","kind":"hotspot","milestone":"shared","target":"#share","body":"Share","window":{"from":"2h","until":"3d"}},
              {"id":"tour","kind":"tour","milestone":"shared","trigger":{"hash":"#/files*"},"steps":[
                {"target":"#a","body":"One"},
                {"target":"#b","body":"Two","advanceOn":{"event":"clicked_b"}},
                {"target":"#c","body":"Three","advanceOn":{"milestone":"shared"}}]},
              {"id":"list","kind":"checklist","title":"Getting started","window":{"until":"14d"}}
            ]}"##,
        )
        .expect("valid plan")
    }

    fn user(now: i64) -> UserState {
        UserState {
            signup: Some(SIGNUP),
            session: SessionState { start: now - 1000, last: now, ..SessionState::default() },
            ..UserState::default()
        }
    }

    fn page(now: i64, hash: &str) -> Page<'_> {
        Page { now, path: "/app", hash, route_since: now - 10_000, seen: &[], skip: &[], forced: None, review: None, user: Some("u1") }
    }

    fn idx(plan: &Plan, id: &str) -> usize {
        plan.tips.iter().position(|t| t.id == id).expect("tip")
    }

    #[test]
    fn the_first_day_tooltip_shows_on_its_page_until_its_milestone() {
        let p = plan();
        let now = SIGNUP + H;
        let mut s = user(now);
        let make = idx(&p, "make");
        assert_eq!(verdict(&p, &s, make, &page(now, "#/projects")), Verdict::Show);
        assert_eq!(verdict(&p, &s, make, &page(now, "#/team")), Verdict::Never, "other pages");
        assert_eq!(pick(&p, &s, &page(now, "#/projects"), &[]).focus, Some(make));
        s.reached.insert("made".into(), now);
        assert_eq!(verdict(&p, &s, make, &page(now, "#/projects")), Verdict::Never, "gone once reached");
    }

    #[test]
    fn a_held_out_user_gets_no_tip_even_when_asking_for_one_and_a_control_user_misses_only_that_tip() {
        let mut p = plan();
        p.holdouts = crate::core::plan::Holdouts { salt: "acme".into(), global_percent: 30.0 };
        let make_i = idx(&p, "make");
        p.tips[make_i].control_percent = 40.0;
        let now = SIGNUP + H;
        let s = user(now);
        let (make, list) = (idx(&p, "make"), idx(&p, "list"));
        let users: Vec<String> = (0..400).map(|i| ["u", &i.to_string()].concat()).collect();
        let arm = |u: &str, exp: &str, pct: f64| holdout::arm("acme", exp, u, pct) == holdout::Arm::Control;
        let (mut held, mut control) = (0, 0);
        for u in &users {
            let pg = Page { user: Some(u), ..page(now, "#/projects") };
            let picked = pick(&p, &s, &pg, &[]);
            if arm(u, "global", 30.0) {
                held += 1;
                assert_eq!(picked, Pick::default(), "{u}: nothing at all, checklist included");
                let asked = Page { forced: Some(list), ..pg };
                assert_eq!(explain(&p, &s, list, &asked).1, Why::HeldOut(Withheld::Global), "not even on request");
            } else if arm(u, "tip:make", 40.0) {
                control += 1;
                assert_eq!(explain(&p, &s, make, &pg).1, Why::HeldOut(Withheld::Control));
                assert_eq!(picked.checklist, Some(list), "other guidance unchanged");
                assert_ne!(picked.focus, Some(make));
            } else {
                assert_eq!(picked.focus, Some(make), "{u}: treatment sees it");
            }
        }
        assert!(held > 80 && control > 60, "{held} held out, {control} in make's control group");
        // A product manager's review still shows it.
        let held_user = users.iter().find(|u| arm(u, "global", 30.0)).expect("one");
        let review = Page { user: Some(held_user), review: Some(make), ..page(now, "#/projects") };
        assert_eq!(verdict(&p, &s, make, &review), Verdict::Show);
    }

    #[test]
    fn a_user_who_signed_up_25_hours_ago_sees_none_of_the_24_hour_tips() {
        let p = plan();
        let now = SIGNUP + 25 * H;
        let s = user(now);
        let seen = [("signed_up".to_string(), now - 5000)];
        for hash in ["#/projects", "#/files", "#/team"] {
            let pg = Page { seen: &seen, ..page(now, hash) };
            for id in ["hello", "make", "tour"] {
                assert_eq!(verdict(&p, &s, idx(&p, id), &pg), Verdict::Never, "{id} on {hash}");
            }
            // Tips with longer windows still may.
            assert_eq!(pick(&p, &s, &pg, &[]).checklist, Some(idx(&p, "list")));
            assert_eq!(pick(&p, &s, &pg, &[]).focus, Some(idx(&p, "late")));
        }
        // Exactly at 24 h the default window has closed; a second before it is open.
        let edge = user(SIGNUP + 24 * H);
        assert_eq!(verdict(&p, &edge, idx(&p, "make"), &page(SIGNUP + 24 * H, "#/projects")), Verdict::Never);
        let before = user(SIGNUP + 24 * H - 1000);
        assert_eq!(verdict(&p, &before, idx(&p, "make"), &page(SIGNUP + 24 * H - 1000, "#/projects")), Verdict::Show);
    }

    #[test]
    fn windows_that_open_later_and_trigger_delays_wake_the_scheduler() {
        let p = plan();
        let now = SIGNUP + H;
        let s = user(now);
        assert_eq!(verdict(&p, &s, idx(&p, "late"), &page(now, "")), Verdict::At(SIGNUP + 2 * H));
        let hello = idx(&p, "hello");
        assert_eq!(verdict(&p, &s, hello, &page(now, "")), Verdict::Never, "waits for its event");
        let seen = [("signed_up".to_string(), now - 200)];
        let pg = Page { seen: &seen, ..page(now, "") };
        assert_eq!(verdict(&p, &s, hello, &pg), Verdict::At(now + 800));
        assert_eq!(pick(&p, &s, &pg, &[]).wake, Some(now + 800));
    }

    #[test]
    fn one_session_cap_and_one_gap_cover_every_surface() {
        let p = plan();
        let mut now = SIGNUP + 3 * H;
        let mut s = user(now);
        let seen = [("signed_up".to_string(), now - 5000)];
        // Modal, then (a minute later) the tooltip, then the hotspot: three tips of three kinds.
        for (id, hash) in [("hello", ""), ("make", "#/projects"), ("late", "")] {
            let pg = Page { seen: &seen, ..page(now, hash) };
            let picked = pick(&p, &s, &pg, &[]).focus;
            assert_eq!(picked, Some(idx(&p, id)), "{id}");
            assert!(record_shown(&mut s, "tab", &p.tips[idx(&p, id)], now));
            record_dismissed(&mut s, &p.tips[idx(&p, id)], now + 1000);
            // Within the gap nothing else may show, whatever its kind; the checklist's launcher
            // is no nudge and stays available.
            let pg = Page { seen: &seen, ..page(now + 30_000, "#/files") };
            assert_eq!(pick(&p, &s, &pg, &[]).focus, None);
            assert_eq!(pick(&p, &s, &pg, &[]).checklist, Some(idx(&p, "list")));
            now += 61_001 + 1000;
            s.session.last = now;
        }
        // The cap of 3 is spent: the tour does not show this session.
        let pg = page(now, "#/files");
        assert_eq!(pick(&p, &s, &pg, &[]).focus, None);
        record_shown(&mut s, "tab", &p.tips[idx(&p, "list")], now);
        assert_eq!(s.session.tips_shown.total(), 3, "the checklist is not charged");
        // A new session allows them again.
        s.session = SessionState { start: now + 3 * H, last: now + 3 * H, ..SessionState::default() };
        let later = page(now + 3 * H, "#/files");
        assert_eq!(pick(&p, &s, &later, &[]).focus, Some(idx(&p, "tour")));
    }

    #[test]
    fn dismiss_is_for_good_and_snooze_for_a_while() {
        let p = plan();
        let now = SIGNUP + 3 * H;
        let mut s = user(now);
        let late = idx(&p, "late");
        record_shown(&mut s, "tab", &p.tips[late], now);
        record_snoozed(&mut s, &p.tips[late], now);
        assert_eq!(verdict(&p, &s, late, &page(now + 1000, "")), Verdict::Never, "not again this session");
        // Next session: back after the snooze (1 day), within the tip's 3-day window.
        let next = now + 2 * H;
        s.session = SessionState { start: next, last: next, ..SessionState::default() };
        assert_eq!(verdict(&p, &s, late, &page(next, "")), Verdict::At(now + 24 * H));
        record_dismissed(&mut s, &p.tips[late], next);
        assert_eq!(verdict(&p, &s, late, &page(now + 25 * H, "")), Verdict::Never);
    }

    #[test]
    fn shown_tips_continue_without_counting_again_and_keep_their_place() {
        let p = plan();
        let now = SIGNUP + 3 * H;
        let mut s = user(now);
        let make = idx(&p, "make");
        assert!(record_shown(&mut s, "tab", &p.tips[make], now));
        assert!(!record_shown(&mut s, "tab", &p.tips[make], now + 5), "a reload is not a new showing");
        assert_eq!(s.session.tips_shown.total(), 1);
        // A higher-priority tip becoming due does not push it away.
        let seen = [("signed_up".to_string(), now)];
        let pg = Page { seen: &seen, ..page(now + 70_000, "#/projects") };
        assert_eq!(pick(&p, &s, &pg, &[make]).focus, Some(make));
        assert_eq!(pick(&p, &s, &pg, &[]).focus, Some(make), "shown this session: no gap for itself");
    }

    #[test]
    fn tours_resume_at_their_step_and_advance_on_the_real_action() {
        let p = plan();
        let now = SIGNUP + 3 * H;
        let mut s = user(now);
        let tour = idx(&p, "tour");
        let t = &p.tips[tour];
        assert_eq!(verdict(&p, &s, tour, &page(now, "#/files")), Verdict::Show);
        record_shown(&mut s, "tab", t, now);
        assert!(record_step(&mut s, t, 0, now));
        assert_eq!(step(&s, t), 1);
        // Another route (a step's target may live there): the tour under way continues.
        assert_eq!(verdict(&p, &s, tour, &page(now, "#/projects")), Verdict::Show);
        assert_eq!(steps_done(&p, &s, Some("other")), vec![]);
        assert_eq!(steps_done(&p, &s, Some("clicked_b")), vec![(tour, 1)]);
        record_step(&mut s, t, 1, now);
        assert!(!record_step(&mut s, t, 0, now), "never backwards");
        s.reached.insert("shared".into(), now);
        // Reaching the tour's own milestone ends it; its last step would have completed.
        assert_eq!(steps_done(&p, &s, None), vec![(tour, 2)]);
        assert_eq!(verdict(&p, &s, tour, &page(now, "#/files")), Verdict::Never);
    }

    #[test]
    fn forced_tips_skip_caps_but_not_reached_milestones() {
        let p = plan();
        let now = SIGNUP + 30 * H;
        let mut s = user(now);
        let make = idx(&p, "make");
        record_dismissed(&mut s, &p.tips[make], now - H);
        let pg = Page { forced: Some(make), ..page(now, "#/team") };
        assert_eq!(pick(&p, &s, &pg, &[]).focus, Some(make));
        s.reached.insert("made".into(), now);
        assert_eq!(verdict(&p, &s, make, &pg), Verdict::Never);
        assert_eq!(pick(&p, &s, &pg, &[]).focus, Some(idx(&p, "late")), "the next tip instead");
    }

    #[test]
    fn an_account_tip_shows_until_the_account_reaches_its_milestone_by_any_teammate() {
        let p = Plan::parse(
            r##"{"version":"1","milestones":[{"id":"v","title":"V","value":true,"condition":{"event":"v"}}],
            "health":{"accountMilestones":[{"id":"team3","title":"3 teammates invited","event":"teammate_invited","count":3}]},
            "tips":[{"id":"invite","kind":"tooltip","accountMilestone":"team3","target":"#invite","body":"Invite your team"}]}"##,
        )
        .expect("valid plan");
        let now = SIGNUP + H;
        let pg = page(now, "");
        let mut s = user(now);
        assert_eq!(explain(&p, &s, 0, &pg), (Verdict::Show, Why::Ready), "no account progress known yet");
        s.account = Some(AccountState { id: "acme".into(), reached: Default::default() });
        assert_eq!(explain(&p, &s, 0, &pg), (Verdict::Show, Why::Ready), "the account has not reached it");
        // A teammate's invites reached it: this user reached nothing themselves.
        s.account.as_mut().expect("account").reached.insert("team3".into(), now - 5);
        assert!(s.reached.is_empty());
        assert_eq!(explain(&p, &s, 0, &pg), (Verdict::Never, Why::AccountMilestoneReached { at: now - 5 }));
        assert_eq!(pick(&p, &s, &pg, &[]).focus, None);
        // Another account's reaches are not this one's.
        s.account.as_mut().expect("account").reached = [("other".to_string(), now)].into_iter().collect();
        assert_eq!(explain(&p, &s, 0, &pg).0, Verdict::Show);
    }

    #[test]
    fn anonymous_visitors_see_no_tips() {
        let p = plan();
        let now = SIGNUP + H;
        let pg = Page { user: None, ..page(now, "#/projects") };
        assert_eq!(pick(&p, &user(now), &pg, &[]), Pick::default());
    }

    #[test]
    fn tips_stop_once_the_value_milestone_is_reached_the_checklist_once_all_required_are() {
        let p = plan();
        let now = SIGNUP + 3 * H;
        let mut s = user(now);
        s.reached.insert("shared".into(), now);
        let pg = page(now, "#/projects");
        let picked = pick(&p, &s, &pg, &[]);
        assert_eq!(picked.focus, None, "no tooltip for the unreached 'made' once value is reached");
        assert_eq!(picked.checklist, Some(idx(&p, "list")), "the checklist stays while 'made' is open");
        s.reached.insert("made".into(), now);
        assert_eq!(pick(&p, &s, &pg, &[]).checklist, None);
    }

    #[test]
    fn a_lesser_tip_does_not_start_just_before_a_more_important_one() {
        let p = plan();
        let now = SIGNUP + 3 * H;
        let s = user(now);
        // The welcome (priority 100) is due in 800 ms; the hotspot (0) could show now.
        let seen = [("signed_up".to_string(), now - 200)];
        let pg = Page { seen: &seen, ..page(now, "") };
        assert_eq!(pick(&p, &s, &pg, &[]).focus, None);
        assert_eq!(pick(&p, &s, &pg, &[]).wake, Some(now + 800));
        // What is already on screen stays.
        assert_eq!(pick(&p, &s, &pg, &[idx(&p, "late")]).focus, Some(idx(&p, "late")));
        let later = Page { now: now + 800, ..pg };
        assert_eq!(pick(&p, &s, &later, &[]).focus, Some(idx(&p, "hello")));
    }

    #[test]
    fn a_closed_beacon_makes_way_for_a_more_important_tip() {
        let p = plan();
        let now = SIGNUP + 3 * H;
        let mut s = user(now);
        let late = idx(&p, "late");
        s.session.start = now - 200_000;
        record_shown(&mut s, "tab", &p.tips[late], now - 120_000);
        let seen = [("signed_up".to_string(), now - 5000)];
        let pg = Page { seen: &seen, ..page(now, "") };
        assert_eq!(pick(&p, &s, &pg, &[]).focus, Some(idx(&p, "hello")));
        assert_eq!(pick(&p, &s, &pg, &[late]).focus, Some(late), "not while the user has it open");
    }

    #[test]
    fn missing_targets_give_the_next_tip_its_turn() {
        let p = plan();
        let now = SIGNUP + 3 * H;
        let s = user(now);
        let skip = [idx(&p, "late")];
        let pg = Page { skip: &skip, ..page(now, "") };
        assert_eq!(pick(&p, &s, &page(now, ""), &[]).focus, Some(idx(&p, "late")));
        assert_eq!(pick(&p, &s, &pg, &[]).focus, None);
    }

    #[test]
    fn every_reason_is_the_schedulers_own_in_its_situation() {
        let p = plan();
        let now = SIGNUP + 3 * H;
        let (make, late, hello, tour) = (idx(&p, "make"), idx(&p, "late"), idx(&p, "hello"), idx(&p, "tour"));
        let why = |s: &UserState, i: usize, pg: &Page| explain(&p, s, i, pg).1;
        let s = user(now);
        assert_eq!(why(&s, make, &page(now, "#/projects")), Why::Ready);
        assert_eq!(why(&s, make, &page(now, "#/team")), Why::OtherPage);
        assert_eq!(why(&s, hello, &page(now, "")), Why::WaitingForEvent);
        let seen = [("signed_up".to_string(), now - 200)];
        assert_eq!(why(&s, hello, &Page { seen: &seen, ..page(now, "") }), Why::Delay { at: now + 800 });
        assert_eq!(why(&s, make, &Page { user: None, ..page(now, "#/projects") }), Why::Anonymous);
        assert_eq!(why(&s, make, &Page { skip: &[make], ..page(now, "#/projects") }), Why::TargetMissing);
        // The 24-hour window of `make` ended 3 h before now.
        let later = SIGNUP + 27 * H;
        assert_eq!(why(&user(later), make, &page(later, "#/projects")), Why::WindowEnded { at: SIGNUP + 24 * H });
        let early = user(SIGNUP + H);
        assert_eq!(why(&early, late, &page(SIGNUP + H, "")), Why::WindowOpens { at: SIGNUP + 2 * H });

        let mut s = user(now);
        s.reached.insert("made".into(), now);
        assert_eq!(why(&s, make, &page(now, "#/projects")), Why::MilestoneReached);
        s.reached.insert("shared".into(), now);
        assert_eq!(why(&s, tour, &page(now, "#/files")), Why::MilestoneReached);
        assert_eq!(why(&s, hello, &Page { seen: &seen, ..page(now, "") }), Why::ValueReached);
        assert_eq!(why(&s, idx(&p, "list"), &page(now, "")), Why::ChecklistComplete);
        // Review shows any tip, even one whose milestone is reached.
        assert_eq!(explain(&p, &s, make, &Page { review: Some(make), ..page(now, "#/team") }), (Verdict::Show, Why::Requested));
        assert_eq!(pick(&p, &s, &Page { review: Some(make), ..page(now, "#/team") }, &[]).focus, Some(make));

        // Caps and gaps: hello (maxShows 1) shown in an earlier session; then the session cap.
        let mut s = user(now);
        record_shown(&mut s, "tab", &p.tips[hello], now - 5 * H);
        s.session.start = now - 1000;
        assert_eq!(why(&s, hello, &Page { seen: &seen, ..page(now, "") }), Why::Capped { shown: 1, max: 1 });
        record_shown(&mut s, "tab", &p.tips[late], now - 500);
        assert_eq!(why(&s, make, &page(now, "#/projects")), Why::SessionGap { at: now - 500 + 60_000 });
        s.session.tips_shown.add("tab", 1);
        assert_eq!(why(&s, make, &page(now + H, "#/projects")), Why::SessionCapped { shown: 3, max: 3 });
        record_snoozed(&mut s, &p.tips[late], now);
        assert_eq!(why(&s, late, &page(now + 1, "")), Why::SnoozedThisSession { until: now + 24 * H });
        record_dismissed(&mut s, &p.tips[late], now + 2);
        assert_eq!(why(&s, late, &page(now + 3, "")), Why::Dismissed { at: now + 2 });

        // The reason given for a wait is the one that ends last.
        let p = Plan::parse(
            r##"{"version":"1","caps":{"minGapBetweenTips":"1m"},
            "milestones":[{"id":"v","title":"V","value":true,"condition":{"event":"v"}}],
            "tips":[{"id":"g","kind":"hotspot","target":"#g","body":"G","window":{"until":"3d"},"cap":{"maxShows":5,"minGap":"4h","snooze":"1d"}}]}"##,
        )
        .expect("valid plan");
        let mut s = user(now);
        record_shown(&mut s, "tab", &p.tips[0], now - 3 * H);
        s.session = SessionState { start: now - 1000, last: now, last_tip: Some(now - 100), ..SessionState::default() };
        // Its own gap (4 h after its last showing) ends after the plan's 1-minute gap.
        assert_eq!(explain(&p, &s, 0, &page(now, "")), (Verdict::At(now + H), Why::TipGap { at: now + H }));
        record_snoozed(&mut s, &p.tips[0], now - 3 * H);
        s.session.last_tip = Some(now - 100);
        assert_eq!(explain(&p, &s, 0, &page(now, "")), (Verdict::At(now + 21 * H), Why::Snoozed { at: now + 21 * H }));
        s.tips = Default::default();
        assert_eq!(explain(&p, &s, 0, &page(now, "")), (Verdict::At(now - 100 + 60_000), Why::SessionGap { at: now - 100 + 60_000 }));
    }

    #[test]
    fn explain_and_verdict_agree_everywhere() {
        // verdict() is explain().0 by construction; this pins that the reasons come with the
        // same decision the scheduler acts on, over a sweep of times and pages.
        let p = plan();
        for hours in [0, 1, 2, 3, 23, 24, 25, 71, 72, 400] {
            let now = SIGNUP + hours * H;
            let s = user(now);
            for hash in ["", "#/projects", "#/files"] {
                for i in 0..p.tips.len() {
                    let (v, why) = explain(&p, &s, i, &page(now, hash));
                    assert_eq!(v, verdict(&p, &s, i, &page(now, hash)));
                    assert_eq!(v == Verdict::Show, why == Why::Ready, "{i} at {hours} h on {hash}: {why:?}");
                }
            }
        }
    }
}
