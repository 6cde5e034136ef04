//! The persisted form of one user's milestone state (`onramp.state.<identity>` in
//! `localStorage`): a versioned serde document, read back through every version the SDK ever
//! wrote, so no user's progress is lost when a page loads a newer SDK.
//!
//! The in-memory [`UserState`] is free to change; this module is the storage format and its
//! migrations. JSON text goes through [`json::to_text`]/[`json::from_text`]: serde_json natively,
//! the browser's `JSON.parse`/`JSON.stringify` with serde-wasm-bindgen in the guide's wasm.
//!
//! # Versions
//!
//! - **1** (SDK before issue 12): written by hand, `"v": 1` written but never read, every field
//!   present with `null` for an unknown time; a tip's last showing under `"last"` and its tour
//!   step under `"step"`, the session's tip counter under `"tips"`.
//! - **2** (now): the serde derive below; unknown times and empty maps left out (the state is
//!   written on every event, and `localStorage.setItem` is the dearest part of recording one);
//!   self-explaining names (`lastShown`, `tourStep`, `tipsShown`). Version 1's names are read as
//!   aliases: that is the whole 1 → 2 migration, checked field by field in the tests.
//! - A document without `v` is read as version 1 (the only earlier writer). A version newer
//!   than [`VERSION`] (a tab already running the next release, during a rollout) is read for the
//!   fields this release knows and never overwritten by it ([`Stored::is_newer`]): this release
//!   keeps its changes in memory, and the newer release, which can read this one's format, owns
//!   the document.
//! - A document that is not one of these (edited by hand, by an extension) is not trusted: the
//!   state starts empty rather than from a half-read guess, and is never a panic.

use serde::{Deserialize, Serialize};

use super::engine::{AccountState, DayState, GCounter, SessionState, SurveyState, TipState, UserState};
use super::json;
use super::vecmap::VecMap;

/// The version this SDK writes.
pub const VERSION: u32 = 2;

#[derive(Serialize, Deserialize, Default, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default)]
struct StoredUser {
    /// Absent in no document this SDK wrote; 0 here means "before versions", read as 1.
    v: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    signup: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_seen: Option<i64>,
    last_ts: i64,
    #[serde(skip_serializing_if = "VecMap::is_empty")]
    reached: VecMap<i64>,
    #[serde(skip_serializing_if = "VecMap::is_empty")]
    counts: VecMap<VecMap<u32>>,
    #[serde(skip_serializing_if = "VecMap::is_empty")]
    done: VecMap<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_start: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_end: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    second_start: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_activity: Option<i64>,
    session: StoredSession,
    #[serde(skip_serializing_if = "VecMap::is_empty")]
    tips: VecMap<StoredTip>,
    #[serde(skip_serializing_if = "StoredDay::is_empty")]
    day: StoredDay,
    #[serde(skip_serializing_if = "VecMap::is_empty")]
    surveys: VecMap<SurveyState>,
    /// The latest NPS answer group (added in version 2 without a version bump: older readers
    /// ignore it, and its absence means "no answer").
    #[serde(skip_serializing_if = "Option::is_none")]
    nps: Option<StoredNps>,
    /// The account's progress served by the collector (added in version 2 without a version
    /// bump, like `nps`: older readers ignore it, and its absence means "not known").
    #[serde(skip_serializing_if = "Option::is_none")]
    account: Option<AccountState>,
}

/// The fatigue budget's day (added in version 2 without a version bump: absent reads as empty,
/// and an older release reading it ignores it).
#[derive(Serialize, Deserialize, Default, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default)]
struct StoredDay {
    start: i64,
    #[serde(skip_serializing_if = "VecMap::is_empty")]
    shown: VecMap<u32>,
}

impl StoredDay {
    fn is_empty(&self) -> bool {
        self.start == 0 && self.shown.is_empty()
    }
}

#[derive(Serialize, Deserialize, Default, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default)]
struct StoredNps {
    at: i64,
    group: String,
}

#[derive(Serialize, Deserialize, Default, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default)]
struct StoredSession {
    start: i64,
    last: i64,
    #[serde(alias = "tips", skip_serializing_if = "VecMap::is_empty")]
    tips_shown: VecMap<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_tip: Option<i64>,
    /// Guidance surfaces of every kind (the fatigue budget).
    #[serde(skip_serializing_if = "VecMap::is_empty")]
    shown: VecMap<u32>,
}

#[derive(Serialize, Deserialize, Default, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default)]
struct StoredTip {
    #[serde(skip_serializing_if = "VecMap::is_empty")]
    shown: VecMap<u32>,
    #[serde(alias = "last", skip_serializing_if = "Option::is_none")]
    last_shown: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dismissed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    snoozed_until: Option<i64>,
    #[serde(alias = "step", skip_serializing_if = "is_zero")]
    tour_step: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The state as this SDK stores it; `None` only if serialising fails (a time outside what a
/// JavaScript number holds exactly), and then the caller keeps the state in memory.
pub fn write(state: &UserState) -> Option<String> {
    json::to_text(&StoredUser::from(state))
}

/// A stored document, read.
#[derive(Debug, PartialEq)]
pub struct Stored {
    pub state: UserState,
    /// The version that wrote it (1 for a document from before versions).
    pub version: u32,
}

impl Stored {
    /// Written by a newer release: this one must not overwrite it.
    pub fn is_newer(&self) -> bool {
        self.version > VERSION
    }
}

/// A stored state, from any version (see the module docs); unreadable text is an empty state.
pub fn read(text: &str) -> Stored {
    match json::from_text::<StoredUser>(text) {
        Ok(stored) => Stored { version: stored.v.max(1), state: migrate(stored) },
        Err(_) => Stored { state: UserState::default(), version: VERSION },
    }
}

/// Brings a document of any version to the current meaning. Version 1 differs from 2 only in
/// names, which serde reads as aliases, so nothing is left to do for it here; a later version
/// that changes a meaning adds its step here, oldest first.
fn migrate(stored: StoredUser) -> UserState {
    UserState::from(stored)
}

impl From<&UserState> for StoredUser {
    fn from(s: &UserState) -> StoredUser {
        StoredUser {
            v: VERSION,
            signup: s.signup,
            first_seen: s.first_seen,
            last_ts: s.last_ts,
            reached: s.reached.clone(),
            counts: s.counts.iter().map(|(k, c)| (k.clone(), c.0.clone())).collect(),
            done: s.done.clone(),
            first_start: s.first_start,
            first_end: s.first_end,
            second_start: s.second_start,
            last_activity: s.last_activity,
            session: StoredSession {
                start: s.session.start,
                last: s.session.last,
                tips_shown: s.session.tips_shown.0.clone(),
                last_tip: s.session.last_tip,
                shown: s.session.shown.0.clone(),
            },
            day: StoredDay { start: s.day.start, shown: s.day.shown.0.clone() },
            surveys: s.surveys.clone(),
            tips: s
                .tips
                .iter()
                .map(|(id, t)| {
                    let tip = StoredTip {
                        shown: t.shown.0.clone(),
                        last_shown: t.last_shown,
                        dismissed: t.dismissed,
                        snoozed_until: t.snoozed_until,
                        tour_step: t.tour_step,
                    };
                    (id.clone(), tip)
                })
                .collect(),
            nps: s.latest_nps.as_ref().map(|(at, group)| StoredNps { at: *at, group: group.clone() }),
            account: s.account.clone(),
        }
    }
}

impl From<StoredUser> for UserState {
    fn from(s: StoredUser) -> UserState {
        UserState {
            signup: s.signup,
            first_seen: s.first_seen,
            last_ts: s.last_ts,
            reached: s.reached,
            counts: s.counts.iter().map(|(k, c)| (k.clone(), GCounter(c.iter().map(|(t, n)| (t.clone(), *n)).collect()))).collect(),
            done: s.done,
            first_start: s.first_start,
            first_end: s.first_end,
            second_start: s.second_start,
            last_activity: s.last_activity,
            session: SessionState {
                start: s.session.start,
                last: s.session.last,
                tips_shown: GCounter(s.session.tips_shown),
                last_tip: s.session.last_tip,
                shown: GCounter(s.session.shown),
            },
            day: DayState { start: s.day.start, shown: GCounter(s.day.shown) },
            surveys: s.surveys,
            tips: s
                .tips
                .iter()
                .map(|(id, t)| {
                    let tip = TipState {
                        shown: GCounter(t.shown.iter().map(|(k, n)| (k.clone(), *n)).collect()),
                        last_shown: t.last_shown,
                        dismissed: t.dismissed,
                        snoozed_until: t.snoozed_until,
                        tour_step: t.tour_step,
                    };
                    (id.clone(), tip)
                })
                .collect(),
            latest_nps: s.nps.map(|n| (n.at, n.group)),
            account: s.account,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// A state as the SDK before issue 12 wrote it (`UserState::to_json` at a80d3a9, byte for
    /// byte): two tabs' counters, a reached value milestone, a tour in progress, a dismissed tip.
    const V1: &str = r#"{"v":1,"signup":1700000000000,"firstSeen":1699999990000,"lastTs":1700000500000,"reached":{"created_project":1700000100000,"invited":1700000400000},"counts":{"exported":{"tab-a":2,"tab-b":1}},"done":{"first_session_length":1700000300000,"time_to_value":1700000100000},"firstStart":1699999990000,"firstEnd":1700000200000,"secondStart":1700000300000,"lastActivity":1700000500000,"session":{"start":1700000300000,"last":1700000500000,"tips":{"tab-a":2},"lastTip":1700000450000},"tips":{"tour-1":{"shown":{"tab-a":1,"tab-b":2},"last":1700000450000,"dismissed":null,"snoozedUntil":1700090000000,"step":2},"welcome":{"shown":{"tab-a":1},"last":1700000000500,"dismissed":1700000001000,"snoozedUntil":null,"step":0}}}"#;

    fn counter(entries: &[(&str, u32)]) -> GCounter {
        GCounter(entries.iter().map(|(k, n)| (k.to_string(), *n)).collect())
    }

    fn v1_state() -> UserState {
        let mut s = UserState {
            signup: Some(1_700_000_000_000),
            first_seen: Some(1_699_999_990_000),
            last_ts: 1_700_000_500_000,
            first_start: Some(1_699_999_990_000),
            first_end: Some(1_700_000_200_000),
            second_start: Some(1_700_000_300_000),
            last_activity: Some(1_700_000_500_000),
            session: SessionState {
                start: 1_700_000_300_000,
                last: 1_700_000_500_000,
                tips_shown: counter(&[("tab-a", 2)]),
                last_tip: Some(1_700_000_450_000),
                ..SessionState::default()
            },
            ..UserState::default()
        };
        s.reached.insert("created_project".into(), 1_700_000_100_000);
        s.reached.insert("invited".into(), 1_700_000_400_000);
        s.counts.insert("exported".into(), counter(&[("tab-a", 2), ("tab-b", 1)]));
        s.done.insert("first_session_length".into(), 1_700_000_300_000);
        s.done.insert("time_to_value".into(), 1_700_000_100_000);
        let tour = TipState {
            shown: counter(&[("tab-a", 1), ("tab-b", 2)]),
            last_shown: Some(1_700_000_450_000),
            dismissed: None,
            snoozed_until: Some(1_700_090_000_000),
            tour_step: 2,
        };
        s.tips.insert("tour-1".into(), tour);
        let welcome =
            TipState { shown: counter(&[("tab-a", 1)]), last_shown: Some(1_700_000_000_500), dismissed: Some(1_700_000_001_000), ..TipState::default() };
        s.tips.insert("welcome".into(), welcome);
        s
    }

    #[test]
    fn version_1_is_read_field_by_field() {
        assert_eq!(read(V1), Stored { state: v1_state(), version: 1 });
    }

    #[test]
    fn a_version_1_state_is_rewritten_as_version_2_and_reads_back_the_same() {
        let text = write(&read(V1).state).expect("serialises");
        assert!(text.starts_with(r#"{"v":2,"#), "{text}");
        assert!(text.contains(r#""lastShown":1700000450000"#) && text.contains(r#""tourStep":2"#), "{text}");
        assert!(!text.contains("null") && !text.contains(r#""step""#) && !text.contains(r#""last":1700000450000"#), "nulls and version 1 names are gone: {text}");
        assert_eq!(read(&text), Stored { state: v1_state(), version: 2 });
    }

    #[test]
    fn a_document_without_a_version_is_read_as_version_1() {
        let unversioned = V1.replacen(r#""v":1,"#, "", 1);
        assert_eq!(read(&unversioned), Stored { state: v1_state(), version: 1 });
    }

    #[test]
    fn a_newer_version_keeps_what_this_release_knows() {
        let newer = V1.replacen(r#""v":1,"#, r#""v":7,"cohort":{"x":[1,2]},"#, 1);
        let stored = read(&newer);
        assert_eq!(stored.state, v1_state());
        assert!(stored.is_newer());
    }

    /// The upgrade as a user lives it: a page with this SDK finds the old SDK's state, and the
    /// milestones reached before are neither lost nor reported again.
    #[test]
    fn an_engine_upgraded_over_a_version_1_state_keeps_its_milestones() {
        use crate::core::engine::{tests::trackly, Engine, ONBOARDING_COMPLETED};
        use crate::core::storage::{KeyValue, MemoryStorage};
        let t0 = 1_700_000_000_000;
        let old = format!(
            r#"{{"v":1,"signup":{t0},"firstSeen":{t0},"lastTs":{t1},"reached":{{"signed_up":{t0},"project_created":{t1}}},"counts":{{}},"done":{{}},"firstStart":{t0},"firstEnd":{t1},"secondStart":null,"lastActivity":{t1},"session":{{"start":{t0},"last":{t1},"tips":{{}},"lastTip":null}},"tips":{{}}}}"#,
            t1 = t0 + 60_000
        );
        let mut store = MemoryStorage::default();
        store.set("onramp.state.ada@example.com", &old);
        let mut e = Engine::new(trackly(), "tab".into(), "anon", &store);
        e.identify(&mut store, "ada@example.com", None, t0 + 120_000);
        assert_eq!((e.reached("signed_up"), e.reached("project_created")), (Some(t0), Some(t0 + 60_000)));
        assert!(e.observe(&mut store, "signed_up", &[], t0 + 130_000).iter().all(|m| m.name != "signed_up"), "not reported again");
        e.observe(&mut store, "teammate_invited", &[], t0 + 140_000);
        let out = e.observe(&mut store, "file_uploaded", &[], t0 + 150_000);
        assert!(out.iter().any(|m| m.name == ONBOARDING_COMPLETED), "the old milestones count towards completion");
        let now_stored = store.get("onramp.state.ada@example.com").expect("stored");
        assert_eq!(read(&now_stored).version, VERSION, "rewritten in the current format");
        assert_eq!(read(&now_stored).state.reached.get("signed_up"), Some(&t0));
    }

    #[test]
    fn a_newer_release_s_document_is_never_overwritten() {
        use crate::core::engine::{tests::trackly, Engine};
        use crate::core::storage::{KeyValue, MemoryStorage};
        let newer = V1.replacen(r#""v":1,"#, r#""v":3,"#, 1);
        let mut store = MemoryStorage::default();
        store.set("onramp.state.ada@example.com", &newer);
        let mut e = Engine::new(trackly(), "tab".into(), "anon", &store);
        e.identify(&mut store, "ada@example.com", None, 1_700_000_600_000);
        e.observe(&mut store, "signed_up", &[], 1_700_000_700_000);
        assert_eq!(e.reached("created_project"), Some(1_700_000_100_000), "read");
        assert_eq!(e.reached("signed_up"), Some(1_700_000_700_000), "kept in memory");
        assert_eq!(store.get("onramp.state.ada@example.com").as_deref(), Some(newer.as_str()), "not overwritten");
    }

    #[test]
    fn an_empty_state_is_small() {
        assert_eq!(write(&UserState::default()).as_deref(), Some(r#"{"v":2,"lastTs":0,"session":{"start":0,"last":0}}"#));
    }

    #[test]
    fn what_onramp_did_not_write_is_not_trusted() {
        for text in ["", "not json", "[]", "7", r#"{"v":"two"}"#, r#"{"reached":[1,2]}"#, r#"{"reached":{"a":"soon"}}"#] {
            let stored = read(text);
            assert_eq!(stored.state, UserState::default(), "{text}");
            assert!(!stored.is_newer(), "{text}");
        }
    }
}
