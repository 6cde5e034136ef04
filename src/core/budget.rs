//! The one fatigue budget: however many kinds of guidance a plan has (tips, tours, surveys,
//! prompts), one user sees at most `caps.maxPerSession` of them per session and
//! `caps.maxPerDay` per day, whichever kind. Every kind asks [`may_show`] before it puts a
//! new surface on screen and calls [`record_shown`] when it does; both read and write the
//! user's state (`session.shown`, `day`), which merges across tabs like the rest of it
//! (G-counters: see `engine`).
//!
//! A surface already on screen, or continuing in the session it was first shown in (a tour
//! resuming after a reload), is not charged again: only a new showing is. The checklist is a
//! launcher the user opens, never a nudge, so it is not charged (as with the tip caps).
//!
//! A day is 24 hours from the first surface shown in it (the core has no time zone; a rolling
//! day is what "at most N a day" means to the user anyway).

use super::engine::{DayState, UserState};
use super::plan::TipCaps;

pub const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// The kinds of guidance surface charged to the budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    /// A tooltip, hotspot or modal.
    Tip,
    Tour,
    Survey,
    /// A growth prompt (issue 16).
    Prompt,
}

/// Why the budget says no.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spent {
    /// `caps.maxPerSession` surfaces shown in this session.
    Session { shown: u32, max: u32 },
    /// `caps.maxPerDay` surfaces shown since `since` (back at `since` + 24 h).
    Day { shown: u32, max: u32, since: i64 },
}

/// Surfaces shown in the day that is current at `now`.
pub fn shown_today(state: &UserState, now: i64) -> u32 {
    if now - state.day.start < DAY_MS { state.day.shown.total() } else { 0 }
}

/// Whether one more surface of any kind may be shown at `now`; `Err` says which cap is spent.
pub fn check(caps: &TipCaps, state: &UserState, now: i64) -> Result<(), Spent> {
    let in_session = state.session.shown.total();
    if in_session >= caps.max_per_session {
        return Err(Spent::Session { shown: in_session, max: caps.max_per_session });
    }
    let today = shown_today(state, now);
    if today >= caps.max_per_day {
        return Err(Spent::Day { shown: today, max: caps.max_per_day, since: state.day.start });
    }
    Ok(())
}

/// [`check`] as a yes or no, for a surface of `kind`.
pub fn may_show(caps: &TipCaps, state: &UserState, kind: Surface, now: i64) -> bool {
    let _ = kind; // every kind draws on the same budget; the parameter documents the caller
    check(caps, state, now).is_ok()
}

/// Charges one new showing of a surface of `kind` to the session and the day (this tab's entry
/// in their G-counters).
pub fn record_shown(state: &mut UserState, tab: &str, kind: Surface, now: i64) {
    let _ = kind;
    state.session.shown.add(tab, 1);
    if now - state.day.start >= DAY_MS {
        state.day = DayState { start: now, ..DayState::default() };
    }
    state.day.shown.add(tab, 1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::engine::SessionState;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const T0: i64 = 1_700_000_000_000;
    const H: i64 = 3_600_000;

    fn caps(session: u32, day: u32) -> TipCaps {
        TipCaps { max_per_session: session, max_per_day: day, ..TipCaps::default() }
    }

    fn new_session(s: &mut UserState, t: i64) {
        s.session = SessionState { start: t, last: t, ..SessionState::default() };
    }

    #[test]
    fn every_kind_draws_on_one_session_budget() {
        let c = caps(3, 10);
        let mut s = UserState::default();
        new_session(&mut s, T0);
        for kind in [Surface::Tip, Surface::Survey, Surface::Prompt] {
            assert!(may_show(&c, &s, kind, T0));
            record_shown(&mut s, "tab", kind, T0);
        }
        for kind in [Surface::Tip, Surface::Tour, Surface::Survey, Surface::Prompt] {
            assert!(!may_show(&c, &s, kind, T0), "{kind:?} after three surfaces of other kinds");
        }
        assert_eq!(check(&c, &s, T0), Err(Spent::Session { shown: 3, max: 3 }));
        new_session(&mut s, T0 + H);
        assert!(may_show(&c, &s, Surface::Survey, T0 + H), "a new session has a new budget");
    }

    #[test]
    fn the_day_cap_holds_across_sessions_and_rolls_after_24_hours() {
        let c = caps(2, 3);
        let mut s = UserState::default();
        for (i, t) in [T0, T0 + H, T0 + 2 * H].into_iter().enumerate() {
            new_session(&mut s, t);
            assert!(may_show(&c, &s, Surface::Tip, t), "showing {i}");
            record_shown(&mut s, "tab", Surface::Tip, t);
        }
        new_session(&mut s, T0 + 3 * H);
        assert_eq!(check(&c, &s, T0 + 3 * H), Err(Spent::Day { shown: 3, max: 3, since: T0 }));
        assert!(may_show(&c, &s, Surface::Tip, T0 + 24 * H), "the day rolls 24 h after its first surface");
        record_shown(&mut s, "tab", Surface::Tip, T0 + 24 * H);
        assert_eq!((s.day.start, shown_today(&s, T0 + 24 * H)), (T0 + 24 * H, 1));
    }

    #[test]
    fn two_tabs_count_together_when_their_states_merge() {
        let c = caps(2, 10);
        let mut a = UserState::default();
        new_session(&mut a, T0);
        let mut b = a.clone();
        record_shown(&mut a, "tab-a", Surface::Tip, T0);
        record_shown(&mut b, "tab-b", Surface::Survey, T0 + 1);
        a.merge(&b);
        assert_eq!((a.session.shown.total(), shown_today(&a, T0 + 2)), (2, 2));
        assert!(!may_show(&c, &a, Surface::Prompt, T0 + 2));
        let again = a.clone();
        a.merge(&again);
        assert_eq!(a.session.shown.total(), 2, "merging again changes nothing");
    }

    #[test]
    fn zero_caps_show_nothing() {
        let s = UserState::default();
        assert!(!may_show(&caps(0, 5), &s, Surface::Survey, T0));
        assert!(!may_show(&caps(5, 0), &s, Surface::Survey, T0));
    }
}
