//! The milestone engine: turns one user's events into milestones reached, time-to-value and
//! seed metrics, and keeps the per-user state that tip scheduling reads.
//!
//! Pure Rust: the browser layer hands it events, the clock's readings and a [`KeyValue`] store
//! (localStorage there, memory in tests) and records the events it returns.
//!
//! # State, tabs and merging
//!
//! Several tabs of one user run an engine each over the same storage, and any of them can write
//! at any moment. Every operation therefore reads the stored state, merges it into its own,
//! applies the change and writes the result back (read-merge-write). The merge is a join in the
//! CRDT sense, so whatever order tabs write in, and however often a state is merged again, the
//! result is the same:
//!
//! - milestones reached: union, keeping each milestone's earliest time (a milestone reached in any
//!   tab is reached; the first time it happened is when it happened);
//! - counters: one count per tab, merged by maximum and summed on read (a G-counter). A plain
//!   "last writer wins" number would lose one tab's increments, "maximum of totals" would undercount
//!   when both tabs counted, and "sum of totals" would double-count on every re-merge. A tab only
//!   ever raises its own entry, so the per-tab maximum is exact. Entries exist only for tabs that
//!   counted, and a milestone's counter is dropped once it is reached, so the map stays small;
//! - once-only flags (onboarding completed, metrics sent): union with the earliest time;
//! - times of activity: min for "first", max for "last".
//!
//! Two tabs may still both report the same milestone if they reach it within the same instant
//! between one's read and the other's write; the collector's analytics count a user's milestone
//! once (first wins), so that race costs one duplicate row, never a wrong funnel.
//!
//! # Identity
//!
//! State is kept per identity (`onramp.state.<id>`): the anonymous id before `identify`, the user
//! id after. On `identify` the anonymous state is merged into the user's, so milestones reached
//! before sign-up count for the user. Switching to another user starts from that user's state.
//!
//! # Time
//!
//! Clocks go backwards (NTP corrections, a user fixing their clock): the engine never lets its
//! time run backwards (`max` of the event time and the latest time seen), and durations since
//! sign-up are clamped at zero, so time-to-value is never negative. When the sign-up time is
//! unknown, the first time the engine saw the user stands in and events say `signupKnown: false`.


use alloc::sync::Arc;

use super::json::Value;
use super::persisted;
use super::plan::{MilestoneKind, Plan};
use super::storage::KeyValue;
use super::vecmap::VecMap;

pub use super::time::parse_time;
use super::wire::EventType;

pub const STATE_PREFIX: &str = "onramp.state.";
/// Inactivity after which the next activity starts a new session (the usual analytics default).
pub const SESSION_GAP_MS: i64 = 30 * 60 * 1000;
/// The entry of a `count` condition's G-counter that stands for the user's other devices: the
/// collector serves, under it, the user's matching events sent from every device but the asking
/// one (`GET /v1/state`, docs/IDENTITY.md), so the merge adds them to this device's tabs' own
/// entries without counting this device's events twice.
pub const OTHER_DEVICES: &str = "otherDevices";

pub use super::vocab::metric::{CORE_TASK_COMPLETION, FIRST_SESSION_LENGTH, RETURN_INTERVAL};
pub use super::vocab::milestone::{ONBOARDING_COMPLETED, TIME_TO_VALUE};
use super::vocab;

/// An event the engine wants recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct Emit {
    pub kind: EventType,
    pub name: String,
    pub props: Vec<(String, Value)>,
}

/// A grow-only counter with one entry per tab (see the module docs for why).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GCounter(pub VecMap<u32>);

impl GCounter {
    pub fn total(&self) -> u32 {
        self.0.values().fold(0u32, |a, b| a.saturating_add(*b))
    }
    pub fn add(&mut self, tab: &str, n: u32) {
        let e = self.0.entry(tab.into()).or_insert(0);
        *e = e.saturating_add(n);
    }
    pub fn merge(&mut self, other: &GCounter) {
        for (tab, n) in &other.0 {
            let e = self.0.entry(tab.clone()).or_insert(0);
            *e = (*e).max(*n);
        }
    }
    /// Makes the total at least `total`, the collector's count (its ledger) of showings on all
    /// devices, which includes this browser's delivered ones: the [`LEDGER`] entry holds what
    /// the tabs' own entries do not account for, so nothing is counted twice.
    pub fn raise_to(&mut self, total: u32) {
        let own = self.0.iter().filter(|(k, _)| *k != LEDGER).fold(0u32, |a, (_, n)| a.saturating_add(*n));
        let e = self.0.entry(LEDGER.into()).or_insert(0);
        *e = (*e).max(total.saturating_sub(own));
    }
}

/// The G-counter entry standing for the collector's count (see [`GCounter::raise_to`]); the
/// collector serves counts under it.
pub const LEDGER: &str = "ledger";

/// One tip's history for this user; owned by tip scheduling (`core::tips`), persisted here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TipState {
    pub shown: GCounter,
    pub last_shown: Option<i64>,
    pub dismissed: Option<i64>,
    pub snoozed_until: Option<i64>,
    /// The tour step reached (0-based); tours only move forward, so merge keeps the maximum.
    pub tour_step: u32,
}

impl TipState {
    fn merge(&mut self, o: &TipState) {
        self.shown.merge(&o.shown);
        self.last_shown = max_opt(self.last_shown, o.last_shown);
        self.dismissed = min_opt(self.dismissed, o.dismissed);
        self.snoozed_until = max_opt(self.snoozed_until, o.snoozed_until);
        self.tour_step = self.tour_step.max(o.tour_step);
    }
}

/// The current session, for the plan-wide tip caps (tips per session, gap between tips).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionState {
    pub start: i64,
    /// Last activity in this session.
    pub last: i64,
    pub tips_shown: GCounter,
    pub last_tip: Option<i64>,
    /// Guidance surfaces of every kind shown in this session: the fatigue budget's
    /// ([`super::budget`]).
    pub shown: GCounter,
}

/// The fatigue budget's day: 24 hours from the first surface shown in it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DayState {
    pub start: i64,
    pub shown: GCounter,
}

impl DayState {
    /// The join: two views of one day (starts less than a day apart) count together from the
    /// earlier start; otherwise the later day is the current one.
    fn merge(&mut self, o: &DayState) {
        let (early, late) = if o.start < self.start { (o, &*self) } else { (&*self, o) };
        *self = if late.start - early.start < super::budget::DAY_MS {
            let mut merged = early.clone();
            merged.shown.merge(&late.shown);
            merged
        } else {
            late.clone()
        };
    }
}

/// One survey's history for this user; owned by survey scheduling (`core::surveys`), persisted
/// here, and served by the collector's ledger (`GET /v1/state`) from the survey events.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SurveyState {
    /// When its trigger (an event) first happened, so a delay survives a reload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub triggered: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_shown: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dismissed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snoozed_until: Option<i64>,
}

impl SurveyState {
    fn merge(&mut self, o: &SurveyState) {
        self.triggered = min_opt(self.triggered, o.triggered);
        self.last_shown = max_opt(self.last_shown, o.last_shown);
        self.answered = max_opt(self.answered, o.answered);
        self.dismissed = max_opt(self.dismissed, o.dismissed);
        self.snoozed_until = max_opt(self.snoozed_until, o.snoozed_until);
    }
}

/// The user's account's progress on the plan's account milestones (`health.accountMilestones`),
/// as the collector computed it from every teammate's events (`GET /v1/state`): the SDK sees only
/// this user's events, so it never reaches one itself. Persisted as it is served.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AccountState {
    pub id: String,
    /// Account milestone id → when the account reached it.
    #[serde(skip_serializing_if = "VecMap::is_empty")]
    pub reached: VecMap<i64>,
}

impl AccountState {
    /// The join of two views: the same account's reaches united (earliest time), otherwise the
    /// greater id, so every tab settles on the same one until the collector answers again.
    fn merge(into: &mut Option<AccountState>, o: &Option<AccountState>) {
        match (into.as_mut(), o) {
            (_, None) => {}
            (Some(a), Some(b)) if a.id == b.id => union_min(&mut a.reached, &b.reached),
            (Some(a), Some(b)) if a.id > b.id => {}
            (_, Some(b)) => *into = Some(b.clone()),
        }
    }
}

/// Everything the engine remembers about one user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserState {
    /// Sign-up time when the host told us (`identify` with `signedUpAt`).
    pub signup: Option<i64>,
    /// When this user was first seen: stands in for sign-up when that is unknown.
    pub first_seen: Option<i64>,
    /// The latest time seen; the engine's clock never goes below it.
    pub last_ts: i64,
    /// Milestone id → when it was reached.
    pub reached: VecMap<i64>,
    /// Milestone id → matching events counted so far (until reached).
    pub counts: VecMap<GCounter>,
    /// Once-only events already emitted (onboarding_completed, seed metrics) → when.
    pub done: VecMap<i64>,
    /// Sessions: first session's start and last activity, second session's start.
    pub first_start: Option<i64>,
    pub first_end: Option<i64>,
    pub second_start: Option<i64>,
    pub last_activity: Option<i64>,
    pub session: SessionState,
    /// Tips' states by tip id, and prompts' under `prompt:<id>` ([`super::prompts::state_key`]).
    pub tips: VecMap<TipState>,
    pub day: DayState,
    pub surveys: VecMap<SurveyState>,
    /// The user's latest NPS answer group and when (`survey_answered` of an `nps` survey), for
    /// prompts routed by group.
    pub latest_nps: Option<(i64, String)>,
    /// The user's account's progress, from the collector ([`AccountState`]).
    pub account: Option<AccountState>,
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

fn union_min(into: &mut VecMap<i64>, from: &VecMap<i64>) {
    for (k, t) in from {
        let e = into.entry(k.clone()).or_insert(*t);
        *e = (*e).min(*t);
    }
}

impl UserState {
    /// The join of two states: commutative, associative and idempotent.
    pub fn merge(&mut self, o: &UserState) {
        self.absorb(o);
        self.first_start = min_opt(self.first_start, o.first_start);
        self.second_start = min_opt(self.second_start, o.second_start);
        self.first_end = max_opt(self.first_end, o.first_end);
        // A stale tab may have stretched the first session past the second one's start.
        self.first_end = min_opt(self.first_end, self.second_start);
        self.last_activity = max_opt(self.last_activity, o.last_activity);
        // Two views of the current session: the same session if the later one started within the
        // session gap of the earlier one's last activity (then their tip counts merge), otherwise
        // the later session is the current one.
        let (early, late) =
            if (o.session.start, o.session.last) < (self.session.start, self.session.last) { (&o.session, &self.session) } else { (&self.session, &o.session) };
        self.session = if late.start - early.last <= SESSION_GAP_MS {
            let mut merged = early.clone();
            merged.last = early.last.max(late.last);
            merged.tips_shown.merge(&late.tips_shown);
            merged.shown.merge(&late.shown);
            merged.last_tip = max_opt(early.last_tip, late.last_tip);
            merged
        } else {
            late.clone()
        };
        self.day.merge(&o.day);
    }

    /// Takes over an anonymous visitor's progress on `identify`. Its session bookkeeping is not
    /// merged: it only saw this page load, and would look like a first session; the activity it
    /// stands for is recorded again on the user's own timeline by the caller.
    fn absorb(&mut self, anon: &UserState) {
        self.signup = min_opt(self.signup, anon.signup);
        self.first_seen = min_opt(self.first_seen, anon.first_seen);
        self.last_ts = self.last_ts.max(anon.last_ts);
        union_min(&mut self.reached, &anon.reached);
        for (m, c) in &anon.counts {
            self.counts.entry(m.clone()).or_default().merge(c);
        }
        let reached = &self.reached;
        self.counts.retain(|m, _| !reached.contains_key(m));
        union_min(&mut self.done, &anon.done);
        for (id, t) in &anon.tips {
            self.tips.entry(id.clone()).or_default().merge(t);
        }
        // What a visitor was asked (shown, dismissed, snoozed) is what the user was asked.
        for (id, t) in &anon.surveys {
            self.surveys.entry(id.clone()).or_default().merge(t);
        }
        // The later answer wins (ties by name, so every tab agrees).
        if anon.latest_nps > self.latest_nps {
            self.latest_nps = anon.latest_nps.clone();
        }
        AccountState::merge(&mut self.account, &anon.account);
    }

    /// Sign-up time, or first-seen standing in for it.
    pub fn signup_or_first_seen(&self) -> (i64, bool) {
        match (self.signup, self.first_seen) {
            (Some(s), _) => (s, true),
            (None, Some(f)) => (f, false),
            (None, None) => (self.last_ts, false),
        }
    }

    /// Milliseconds from sign-up to `t`; never negative (clocks disagree, sign-up may come from a
    /// server whose clock is ahead).
    pub fn since_signup(&self, t: i64) -> i64 {
        (t - self.signup_or_first_seen().0).max(0)
    }

    /// The stored form: a versioned serde document ([`super::persisted`]); `None` only if it
    /// cannot be serialised, and then the state stays in memory.
    pub fn to_json(&self) -> Option<String> {
        persisted::write(self)
    }

    /// Reads a stored state of any version the SDK ever wrote ([`super::persisted`]). Storage is
    /// outside our control (other versions, extensions, users editing it): a document that is
    /// not onramp's is an empty state, never trusted and never a panic.
    pub fn from_json(text: &str) -> UserState {
        persisted::read(text).state
    }
}

/// One user's engine in one tab.
pub struct Engine {
    /// Shared, so the tips can hold a survey or prompt of it while the engine records (see
    /// [`Engine::shared_plan`]). `Arc`, not `Rc`: the browser layer keeps the machine in a
    /// `Sync` global (src/web/global.rs); in a wasm without threads its counts are plain adds.
    plan: Arc<Plan>,
    /// This tab's id, for its entries in the G-counters.
    tab: String,
    identity: String,
    /// True until `identify`: an anonymous identity's state is handed to the user it turns into.
    anonymous: bool,
    pub state: UserState,
    /// While the collector's view of this user is on its way (docs/IDENTITY.md), the
    /// once-per-user metrics wait for it: another device may have measured them already.
    /// [`Engine::merge_remote`] or [`Engine::release_held`] measures what is still due.
    pub hold_once: bool,
    /// The text last written to (or read from) storage. Storage still holding it means no other
    /// tab wrote since, and merging it again would change nothing (merge is idempotent), so the
    /// per-event parse is skipped.
    stored: String,
    /// The stored document was written by a newer release (a rollout, another tab): this one
    /// reads it but never overwrites it, and keeps its own changes in memory.
    stored_is_newer: bool,
    /// Changes wait in memory for [`Engine::write`] (the machine's end of the task) instead of
    /// being serialised on every event: every event moves `last_ts` and the session, so the
    /// per-event write was a whole-state JSON document each time (half of a full SDK
    /// `track()`'s wasm time, profiled). Off (write-through) unless [`Engine::defer_writes`].
    defer: bool,
    /// Deferred changes not written yet.
    dirty: bool,
}

fn key(identity: &str) -> String {
    let mut k = String::with_capacity(STATE_PREFIX.len() + identity.len());
    k.push_str(STATE_PREFIX);
    k.push_str(identity);
    k
}

fn props_since(state: &UserState, t: i64) -> Vec<(String, Value)> {
    vec![
        (vocab::prop::SINCE_SIGNUP_MS.into(), Value::Num(state.since_signup(t) as f64)),
        (vocab::prop::SIGNUP_KNOWN.into(), Value::Bool(state.signup.is_some())),
    ]
}

fn emit(kind: EventType, name: &str, props: Vec<(String, Value)>) -> Emit {
    Emit { kind, name: name.into(), props }
}

impl Engine {
    /// An engine for the anonymous identity `anonymous_id`, loading its state.
    pub fn new(plan: Plan, tab: String, anonymous_id: &str, store: &dyn KeyValue) -> Engine {
        let mut engine =
            Engine {
                plan: Arc::new(plan),
                tab,
                identity: anonymous_id.into(),
                anonymous: true,
                state: UserState::default(),
                hold_once: false,
                stored: String::new(),
                stored_is_newer: false,
                defer: false,
                dirty: false,
            };
        engine.sync(store);
        engine.apply_aliases();
        engine
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The plan, for a caller that reads part of it while it updates the engine: cloning a
    /// survey or a prompt instead linked their whole `Clone` code into the full SDK.
    pub fn shared_plan(&self) -> Arc<Plan> {
        Arc::clone(&self.plan)
    }

    /// True until `identify`: tips wait for a user (their windows count from sign-up).
    pub fn is_anonymous(&self) -> bool {
        self.anonymous
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// From now on changes are written by [`Engine::write`], which the owner calls at the end
    /// of the task (and before the page may go): the durability window of the queue beside it.
    pub fn defer_writes(&mut self) {
        self.defer = true;
    }

    /// Changes not written yet ([`Engine::defer_writes`]): the owner should ask for a write.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Merges what other tabs (or earlier page loads) stored.
    ///
    /// With deferred writes and changes waiting, storage is not read again: another tab's
    /// write becomes visible between tasks, not within the one that made these changes (and a
    /// `localStorage.getItem` of the whole state per event is what the deferral saves), and
    /// [`Engine::write`] merges whatever is stored before it writes, so nothing is lost.
    pub fn sync(&mut self, store: &dyn KeyValue) {
        if self.dirty {
            return;
        }
        if let Some(text) = store.get(&key(&self.identity)) {
            if text != self.stored {
                let stored = persisted::read(&text);
                self.stored_is_newer = stored.is_newer();
                self.state.merge(&stored.state);
                self.stored = text;
            }
        }
    }

    /// Stores the state, or with deferred writes marks it for [`Engine::write`]; false when
    /// storage refused it (then it lives in memory only).
    pub fn save(&mut self, store: &mut dyn KeyValue) -> bool {
        if self.defer {
            self.dirty = true;
            return true;
        }
        self.store_now(store)
    }

    /// Writes deferred changes: merges what other tabs stored meanwhile (the merge is a join,
    /// so the order does not matter), then stores the result.
    pub fn write(&mut self, store: &mut dyn KeyValue) -> bool {
        if !std::mem::take(&mut self.dirty) {
            return true;
        }
        self.sync(store);
        self.store_now(store)
    }

    fn store_now(&mut self, store: &mut dyn KeyValue) -> bool {
        if self.stored_is_newer {
            return true;
        }
        let Some(text) = self.state.to_json() else { return false };
        if text == self.stored {
            return true;
        }
        let ok = store.set(&key(&self.identity), &text);
        // On failure the next sync must read storage again, not trust it.
        self.stored = if ok { text } else { String::new() };
        ok
    }

    /// A milestone renamed in a newer plan keeps what was reached under its former ids.
    fn apply_aliases(&mut self) {
        for m in &self.plan.milestones {
            for alias in &m.aliases {
                if let Some(t) = self.state.reached.remove(alias) {
                    let e = self.state.reached.entry(m.id.clone()).or_insert(t);
                    *e = (*e).min(t);
                }
                if let Some(c) = self.state.counts.remove(alias) {
                    self.state.counts.entry(m.id.clone()).or_default().merge(&c);
                }
            }
        }
    }

    /// Replaces the plan (a newer version was fetched). Milestones keep their identity by id;
    /// removed ones stay in the state (harmless, and back if the milestone returns); if the new
    /// plan's required milestones are all reached already, onboarding completes now.
    pub fn set_plan(&mut self, plan: Plan, store: &mut dyn KeyValue, now: i64) -> Vec<Emit> {
        self.plan = Arc::new(plan);
        self.sync(store);
        self.apply_aliases();
        let t = self.clock(now);
        let mut out = Vec::new();
        self.check_completion(t, &mut out);
        self.save(store);
        out
    }

    /// The engine's time for an event at `ts`: never earlier than what it has already seen.
    fn clock(&mut self, ts: i64) -> i64 {
        let t = ts.max(self.state.last_ts);
        self.state.last_ts = t;
        t
    }

    /// Records activity at `t`: first-seen, sessions, and the seed metrics they give.
    fn activity(&mut self, t: i64, out: &mut Vec<Emit>) {
        let s = &mut self.state;
        s.first_seen.get_or_insert(t);
        match (s.first_start, s.last_activity) {
            (None, _) | (_, None) => {
                s.first_start = Some(t);
                s.first_end = Some(t);
                s.session = SessionState { start: t, last: t, ..SessionState::default() };
            }
            (Some(first), Some(last)) if t - last > SESSION_GAP_MS => {
                s.session = SessionState { start: t, last: t, ..SessionState::default() };
                if s.second_start.is_none() {
                    s.second_start = Some(t);
                    let length = s.first_end.unwrap_or(first) - first;
                    self.once(FIRST_SESSION_LENGTH, t, length, out);
                    self.once(RETURN_INTERVAL, t, t - first, out);
                }
            }
            _ => {
                if s.second_start.is_none() {
                    s.first_end = max_opt(s.first_end, Some(t));
                }
            }
        }
        self.state.session.last = self.state.session.last.max(t);
        self.state.last_activity = max_opt(self.state.last_activity, Some(t));
    }

    /// Emits a duration metric once per user.
    fn once(&mut self, name: &str, t: i64, value_ms: i64, out: &mut Vec<Emit>) {
        if self.state.done.contains_key(name) || self.hold_once {
            return;
        }
        self.state.done.insert(name.into(), t);
        let mut props = vec![(vocab::prop::VALUE_MS.into(), Value::Num(value_ms.max(0) as f64))];
        props.extend(props_since(&self.state, t));
        out.push(emit(EventType::Metric, name, props));
    }

    /// Page activity with no event (a page load): keeps sessions and first-seen right.
    pub fn touch(&mut self, store: &mut dyn KeyValue, now: i64) -> Vec<Emit> {
        self.sync(store);
        let t = self.clock(now);
        let mut out = Vec::new();
        self.activity(t, &mut out);
        // A page load may bring a new plan version whose required milestones are all reached.
        self.check_completion(t, &mut out);
        self.save(store);
        out
    }

    /// Feeds one product event (tracked or auto-captured) to the engine.
    pub fn observe(&mut self, store: &mut dyn KeyValue, name: &str, props: &[(String, Value)], ts: i64) -> Vec<Emit> {
        self.sync(store);
        let mut out = Vec::new();
        self.observe_in_memory(name, props, ts, &mut out);
        self.save(store);
        out
    }

    fn observe_in_memory(&mut self, name: &str, props: &[(String, Value)], ts: i64, out: &mut Vec<Emit>) {
        let t = self.clock(ts);
        self.activity(t, out);
        super::surveys::observe(&self.plan, &mut self.state, name, props, t);
        // Gates are judged on the state before this event: an event that reaches milestone A
        // does not also count for a milestone that must come after A.
        let counting: Vec<(String, u32)> = self
            .plan
            .milestones
            .iter()
            .filter(|m| !self.state.reached.contains_key(&m.id))
            .filter_map(|m| {
                let c = m.condition.as_ref()?;
                let gate_open = c.after.as_ref().is_none_or(|a| self.state.reached.contains_key(a));
                (gate_open && c.matches(name, props)).then(|| (m.id.clone(), c.count))
            })
            .collect();
        for (id, needed) in counting {
            let counter = self.state.counts.entry(id.clone()).or_default();
            counter.add(&self.tab, 1);
            if counter.total() >= needed {
                self.reach(&id, t, out);
            }
        }
    }

    /// The user (or a server call relayed by the page) confirms a customer milestone. Returns
    /// nothing when the id is not a milestone of the plan or is already reached.
    pub fn mark_done(&mut self, store: &mut dyn KeyValue, milestone: &str, ts: i64) -> Vec<Emit> {
        self.sync(store);
        let mut out = Vec::new();
        if self.plan.milestone(milestone).is_some() && !self.state.reached.contains_key(milestone) {
            let t = self.clock(ts);
            self.activity(t, &mut out);
            self.reach(milestone, t, &mut out);
        }
        self.save(store);
        out
    }

    fn reach(&mut self, id: &str, t: i64, out: &mut Vec<Emit>) {
        let Some(m) = self.plan.milestone(id) else { return };
        let (value, kind, required) = (m.value, m.kind, m.required);
        self.state.reached.insert(id.into(), t);
        self.state.counts.remove(id);
        let mut props = props_since(&self.state, t);
        props.push((vocab::prop::VALUE.into(), Value::Bool(value)));
        props.push((vocab::prop::KIND.into(), Value::Str(kind.as_str().into())));
        props.push((vocab::prop::PLAN_VERSION.into(), Value::Str(self.plan.version.clone())));
        out.push(emit(EventType::Milestone, id, props));
        if value && !self.state.done.contains_key(TIME_TO_VALUE) {
            self.state.done.insert(TIME_TO_VALUE.into(), t);
            let mut props = props_since(&self.state, t);
            props.push((vocab::prop::MILESTONE.into(), Value::Str(id.into())));
            out.push(emit(EventType::Milestone, TIME_TO_VALUE, props));
        }
        if required {
            let (done, total) = self.required_progress();
            let mut props = vec![
                (vocab::prop::VALUE.into(), Value::Num(if total == 0 { 1.0 } else { done as f64 / total as f64 })),
                (vocab::prop::REACHED.into(), Value::Num(done as f64)),
                (vocab::prop::REQUIRED.into(), Value::Num(total as f64)),
            ];
            props.extend(props_since(&self.state, t));
            out.push(emit(EventType::Metric, CORE_TASK_COMPLETION, props));
        }
        self.check_completion(t, out);
    }

    /// Required milestones reached, and how many the plan requires.
    pub fn required_progress(&self) -> (usize, usize) {
        let required = self.plan.milestones.iter().filter(|m| m.required);
        required.fold((0, 0), |(done, total), m| (done + self.state.reached.contains_key(&m.id) as usize, total + 1))
    }

    fn check_completion(&mut self, t: i64, out: &mut Vec<Emit>) {
        let (done, total) = self.required_progress();
        if total > 0 && done == total && !self.state.done.contains_key(ONBOARDING_COMPLETED) {
            self.state.done.insert(ONBOARDING_COMPLETED.into(), t);
            out.push(emit(EventType::Milestone, ONBOARDING_COMPLETED, props_since(&self.state, t)));
        }
    }

    /// Names the user. The anonymous state merges into the user's (their pre-sign-up milestones
    /// count); a different user than the current one starts from their own state instead.
    pub fn identify(&mut self, store: &mut dyn KeyValue, user_id: &str, signed_up_at: Option<i64>, now: i64) -> Vec<Emit> {
        if user_id != self.identity {
            // The previous identity's deferred changes go under its own key first.
            self.write(store);
            let previous = std::mem::replace(&mut self.identity, user_id.into());
            let before = std::mem::take(&mut self.state);
            self.stored.clear(); // another key: nothing of it has been read yet
            self.stored_is_newer = false;
            self.sync(store);
            // Only an anonymous identity is carried over: never one user's progress to another.
            if self.anonymous {
                self.state.absorb(&before);
                store.remove(&key(&previous));
            }
            self.anonymous = false;
            self.apply_aliases();
        } else {
            self.sync(store);
        }
        if let Some(s) = signed_up_at {
            self.state.signup = Some(s);
        }
        let t = self.clock(now);
        let mut out = Vec::new();
        self.activity(t, &mut out);
        self.assign(user_id, t, &mut out);
        self.save(store);
        out
    }

    /// Reports the user's holdout arms ([`super::holdout`]), each once per user: `done` keeps
    /// `experiment_assigned:<experiment>` and merges across tabs (and devices, by `/v1/state`).
    fn assign(&mut self, user_id: &str, t: i64, out: &mut Vec<Emit>) {
        for (experiment, arm) in super::holdout::assignments(&self.plan, user_id) {
            let key = [vocab::experiment::ASSIGNED, ":", &experiment].concat();
            if self.state.done.contains_key(&key) {
                continue;
            }
            self.state.done.insert(key, t);
            let props = vec![
                (vocab::prop::EXPERIMENT.into(), Value::Str(experiment)),
                (vocab::prop::ARM.into(), Value::Str(arm.as_str().into())),
            ];
            out.push(emit(EventType::Experiment, vocab::experiment::ASSIGNED, props));
        }
    }

    /// Log-out: the next identity starts with its own (usually empty) state.
    pub fn reset(&mut self, store: &mut dyn KeyValue, anonymous_id: &str) {
        self.write(store);
        self.identity = anonymous_id.into();
        self.anonymous = true;
        self.state = UserState::default();
        self.stored.clear();
        self.stored_is_newer = false;
        self.sync(store);
    }

    /// Runs `f` on the synced state and stores the result: for tip scheduling, which records
    /// shows, dismissals and tour steps through here so they merge like everything else.
    pub fn update<R>(&mut self, store: &mut dyn KeyValue, f: impl FnOnce(&mut UserState, &str) -> R) -> R {
        self.sync(store);
        let r = f(&mut self.state, &self.tab);
        self.save(store);
        r
    }

    /// [`Engine::update`] with the plan at hand: tip scheduling reads a tip while it records.
    pub fn update_with_plan<R>(&mut self, store: &mut dyn KeyValue, f: impl FnOnce(&Plan, &mut UserState, &str) -> R) -> R {
        self.sync(store);
        let r = f(&self.plan, &mut self.state, &self.tab);
        self.save(store);
        r
    }

    /// Whether this user may still need the guide (this engine and the tips): anonymous (their
    /// state merges into whoever they turn out to be); a milestone unreached while its due
    /// window is open (or it has none), as reaching it must be seen and reported; the
    /// once-per-user session metrics not yet measured (they need a second session); or a tip
    /// whose window is still ahead, not dismissed, and whose milestone is unreached; or a prompt
    /// still pending ([`super::prompts::pending`]). When none
    /// holds, the user's onboarding is over and pages load the lean tracker alone (`web`).
    pub fn needs_guide(&self, now: i64) -> bool {
        let s = &self.state;
        let since = s.since_signup(now);
        let open_milestone = self.plan.milestones.iter().any(|m| !s.reached.contains_key(&m.id) && m.due_ms.is_none_or(|due| since < due));
        let open_tip = self.plan.tips.iter().any(|t| {
            let done = t.milestone.as_ref().is_some_and(|m| s.reached.contains_key(m));
            let dismissed = s.tips.get(&t.id).is_some_and(|st| st.dismissed.is_some());
            !done && !dismissed && since < t.window.until_ms
        });
        let open_prompt = super::prompts::pending(&self.plan, s, now);
        let open_survey = self.next_survey(now).is_some_and(|at| at <= now);
        self.anonymous || open_milestone || open_tip || open_prompt || open_survey || !s.done.contains_key(RETURN_INTERVAL)
    }

    /// When a survey may next be asked of this user ([`super::surveys::next_ask`]); `None` when
    /// none ever can be again. A user marked lean is marked only until then.
    pub fn next_survey(&self, _now: i64) -> Option<i64> {
        super::surveys::next_ask(&self.plan, &self.state, &self.identity)
    }

    /// Merges the user's state as the collector serves it (`GET /v1/state`, docs/IDENTITY.md):
    /// what they did on other devices. The rules are the cross-tab ones (earliest reached time
    /// and dismissal win, seed metrics once per user); the first two sessions are cut again over
    /// both timelines, so a phone's first page view after days on the laptop is the user's
    /// second session, and its first-session length is measured now if nobody has yet. Ignored
    /// unless the engine is `user`'s (a later identify or reset made it someone else's).
    pub fn merge_remote(&mut self, store: &mut dyn KeyValue, user: &str, remote: &UserState, now: i64) -> Vec<Emit> {
        let mut out = Vec::new();
        if self.anonymous || self.identity != user {
            self.hold_once = false;
            return out;
        }
        self.sync(store);
        let s = &mut self.state;
        // The sign-up time the page gives (its backend's) wins over one the collector has seen.
        let signup = s.signup;
        // Counts served by the ledger include this browser's delivered showings: raise to them.
        let mut remote = remote.clone();
        remote.tips.retain(|id, t| {
            let mut own = s.tips.get(id).map(|l| l.shown.clone()).unwrap_or_default();
            own.raise_to(t.shown.total());
            t.shown = own;
            true
        });
        // The current session and day, when the collector's (any device's) are the same ones.
        if remote.session.last >= s.session.start - SESSION_GAP_MS && remote.session.start <= s.session.last + SESSION_GAP_MS {
            s.session.tips_shown.raise_to(remote.session.tips_shown.total());
            s.session.shown.raise_to(remote.session.shown.total());
            s.session.last_tip = max_opt(s.session.last_tip, remote.session.last_tip);
        }
        if (remote.day.start - s.day.start).abs() < super::budget::DAY_MS {
            s.day.start = s.day.start.min(remote.day.start);
            s.day.shown.raise_to(remote.day.shown.total());
        } else if remote.day.start > s.day.start {
            s.day = DayState { start: remote.day.start, shown: GCounter::default() };
            s.day.shown.raise_to(remote.day.shown.total());
        }
        let remote = &remote;
        s.absorb(remote);
        // The collector knows the user's current account (the latest `group()` it stored) and
        // every teammate's progress: its answer replaces this browser's, which only it wrote.
        s.account = remote.account.clone();
        s.signup = signup.or(remote.signup);
        s.last_activity = max_opt(s.last_activity, remote.last_activity);
        if let (Some(local), Some(other)) = (s.first_start, remote.first_start) {
            let timeline = |x: &UserState, start| (start, x.first_end.unwrap_or(start), x.second_start);
            let (a, b) = if other < local { (timeline(remote, other), timeline(s, local)) } else { (timeline(s, local), timeline(remote, other)) };
            let (first_end, second_start) = if b.0 - a.1 > SESSION_GAP_MS {
                (a.1, min_opt(a.2, Some(b.0))) // b's first session came after a gap: a second session
            } else {
                let second = min_opt(a.2, b.2);
                (min_opt(Some(a.1.max(b.1)), second).unwrap_or(a.1), second)
            };
            (s.first_start, s.first_end, s.second_start) = (Some(a.0), Some(first_end), second_start);
        } else if s.first_start.is_none() {
            (s.first_start, s.first_end, s.second_start) = (remote.first_start, remote.first_end, remote.second_start);
        }
        self.apply_aliases();
        self.hold_once = false;
        let t = self.clock(now);
        self.reach_counted(t, &mut out);
        self.measure_due(t, &mut out);
        self.check_completion(t, &mut out);
        self.save(store);
        out
    }

    /// Reaches every milestone whose count the merged counters already meet: the other devices'
    /// events ([`OTHER_DEVICES`]) and this device's together, none of them enough alone.
    fn reach_counted(&mut self, t: i64, out: &mut Vec<Emit>) {
        let reached = &self.state.reached;
        let met: Vec<String> = self
            .plan
            .milestones
            .iter()
            .filter(|m| !reached.contains_key(&m.id))
            .filter(|m| {
                m.condition.as_ref().is_some_and(|c| {
                    c.after.as_ref().is_none_or(|a| reached.contains_key(a)) && self.state.counts.get(&m.id).is_some_and(|n| n.total() >= c.count)
                })
            })
            .map(|m| m.id.clone())
            .collect();
        for id in met {
            self.reach(&id, t, out);
        }
    }

    /// The collector could not be asked: the once-per-user metrics held for its answer are
    /// measured from local state.
    pub fn release_held(&mut self, store: &mut dyn KeyValue, now: i64) -> Vec<Emit> {
        let mut out = Vec::new();
        if std::mem::take(&mut self.hold_once) {
            self.sync(store);
            let t = self.clock(now);
            self.measure_due(t, &mut out);
            self.save(store);
        }
        out
    }

    /// The session metrics a second session makes due, unless measured already.
    fn measure_due(&mut self, t: i64, out: &mut Vec<Emit>) {
        if let (Some(first), Some(end), Some(second)) = (self.state.first_start, self.state.first_end, self.state.second_start) {
            self.once(FIRST_SESSION_LENGTH, t, end - first, out);
            self.once(RETURN_INTERVAL, t, second - first, out);
        }
    }

    /// Whether `milestone` has been reached, and when.
    pub fn reached(&self, milestone: &str) -> Option<i64> {
        self.state.reached.get(milestone).copied()
    }

    /// Milestones of the plan with their state, in plan order: what a checklist shows.
    pub fn progress(&self) -> Vec<(&str, MilestoneKind, Option<i64>)> {
        self.plan.milestones.iter().map(|m| (m.id.as_str(), m.kind, self.reached(&m.id))).collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::core::storage::MemoryStorage;
    // The same tests run in headless Chromium (`cargo test --target wasm32-unknown-unknown`).
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    pub const TRACKLY: &str = include_str!("../../pkg-config/plans/trackly.json");
    const ANON: &str = "0190d4c2-0000-7000-8000-000000000001";
    const T0: i64 = 1_700_000_000_000;
    const MIN: i64 = 60_000;

    pub fn trackly() -> Plan {
        Plan::parse(TRACKLY).expect("the demo plan is valid")
    }

    #[test]
    fn the_ledgers_counts_raise_the_local_ones_without_counting_a_showing_twice() {
        let mut store = MemoryStorage::default();
        let mut e = Engine::new(trackly(), "tab1".into(), ANON, &store);
        e.identify(&mut store, "ann", Some(T0), T0);
        let welcome = e.plan().tips[0].clone();
        e.update(&mut store, |s, tab| crate::core::tips::record_shown(s, tab, &welcome, T0 + 1));
        // The collector stored that showing and one from the phone, in this same session.
        let mut remote = UserState::default();
        remote.tips.entry(welcome.id.clone()).or_default().shown.add(LEDGER, 2);
        remote.session = SessionState { start: T0 - 5 * MIN, last: T0 + 2, ..SessionState::default() };
        remote.session.shown.add(LEDGER, 2);
        remote.session.tips_shown.add(LEDGER, 2);
        remote.day = DayState { start: T0 - 5 * MIN, ..DayState::default() };
        remote.day.shown.add(LEDGER, 2);
        e.merge_remote(&mut store, "ann", &remote, T0 + 3);
        e.merge_remote(&mut store, "ann", &remote, T0 + 4);
        let s = &e.state;
        let counts = (s.tips[&welcome.id].shown.total(), s.session.tips_shown.total(), s.session.shown.total(), s.day.shown.total());
        assert_eq!(counts, (2, 2, 2, 2), "the laptop's showing once, the phone's once, however often merged");
        assert_eq!(s.day.start, T0 - 5 * MIN, "the collector's day began earlier");
    }

    #[test]
    fn the_collectors_account_progress_replaces_the_local_copy_and_is_stored() {
        let mut store = MemoryStorage::default();
        let mut e = Engine::new(trackly(), "tab1".into(), ANON, &store);
        e.identify(&mut store, "ann", Some(T0), T0);
        let acme = |reached: &[(&str, i64)]| AccountState { id: "acme".into(), reached: reached.iter().map(|(k, t)| (k.to_string(), *t)).collect() };
        let remote = UserState { account: Some(acme(&[("team3", T0 - MIN)])), ..UserState::default() };
        e.merge_remote(&mut store, "ann", &remote, T0 + 1);
        assert_eq!(e.state.account, Some(acme(&[("team3", T0 - MIN)])));
        // Stored: another tab (or the next page) reads it back.
        let mut other = Engine::new(trackly(), "tab2".into(), ANON, &store);
        other.identify(&mut store, "ann", None, T0 + 2);
        assert_eq!(other.state.account, e.state.account);
        let text = e.state.to_json().expect("serialises");
        assert!(text.contains(r#""account":{"id":"acme","reached":{"team3":1699999940000}}"#), "{text}");
        // The user moved to another account: the collector's answer wins, not a union.
        let moved = UserState { account: Some(AccountState { id: "initech".into(), ..AccountState::default() }), ..UserState::default() };
        e.merge_remote(&mut store, "ann", &moved, T0 + 3);
        assert_eq!(e.state.account.as_ref().map(|a| (a.id.as_str(), a.reached.is_empty())), Some(("initech", true)));
        // Tabs merging the same account unite its reaches, and merging is order-free.
        let (mut a, mut b) = (UserState { account: Some(acme(&[("x", 5)])), ..UserState::default() }, UserState { account: Some(acme(&[("x", 3), ("y", 9)])), ..UserState::default() });
        let a0 = a.clone();
        a.merge(&b);
        b.merge(&a0);
        assert_eq!(a.account, Some(acme(&[("x", 3), ("y", 9)])));
        assert_eq!(a.account, b.account);
    }

    #[test]
    fn a_visitors_survey_history_is_the_users_after_identify() {
        let mut store = MemoryStorage::default();
        let mut e = Engine::new(trackly(), "tab1".into(), ANON, &store);
        e.update(&mut store, |s, _| s.surveys.entry("nps".into()).or_default().dismissed = Some(T0));
        e.identify(&mut store, "ann", None, T0 + MIN);
        assert_eq!(e.state.surveys["nps"].dismissed, Some(T0));
    }

    fn names(out: &[Emit]) -> Vec<&str> {
        out.iter().map(|e| e.name.as_str()).collect()
    }

    fn prop<'a>(e: &'a Emit, key: &str) -> Option<&'a Value> {
        crate::core::json::field(&e.props, key)
    }

    fn find<'a>(out: &'a [Emit], name: &str) -> &'a Emit {
        out.iter().find(|e| e.name == name).unwrap_or_else(|| panic!("{name} not emitted in {:?}", names(out)))
    }

    #[test]
    fn the_demo_path_emits_milestones_ttv_and_completion() {
        let mut store = MemoryStorage::default();
        let mut e = Engine::new(trackly(), "tab1".into(), ANON, &store);
        e.identify(&mut store, "ada@example.com", Some(T0), T0);
        let out = e.observe(&mut store, "signed_up", &[], T0 + 10);
        assert_eq!(names(&out), ["signed_up", CORE_TASK_COMPLETION]);
        assert_eq!(prop(&out[0], "sinceSignupMs"), Some(&Value::Num(10.0)));
        assert_eq!(prop(&out[0], "signupKnown"), Some(&Value::Bool(true)));
        assert_eq!(prop(&out[0], "kind"), Some(&Value::Str("feature".into())));
        assert_eq!(prop(&out[0], "planVersion"), Some(&Value::Str("trackly-2026-11-23.1".into())));
        assert_eq!(prop(&out[1], "value"), Some(&Value::Num(0.25)));
        e.observe(&mut store, "project_created", &[], T0 + MIN);
        e.observe(&mut store, "teammate_invited", &[], T0 + 2 * MIN);
        let out = e.observe(&mut store, "file_uploaded", &[], T0 + 3 * MIN);
        assert_eq!(names(&out), ["file_uploaded", TIME_TO_VALUE, CORE_TASK_COMPLETION, ONBOARDING_COMPLETED]);
        assert_eq!(prop(&out[0], "value"), Some(&Value::Bool(true)));
        let ttv = find(&out, TIME_TO_VALUE);
        assert_eq!(prop(ttv, "sinceSignupMs"), Some(&Value::Num((3 * MIN) as f64)));
        assert_eq!(prop(ttv, "milestone"), Some(&Value::Str("file_uploaded".into())));
        assert!(e.observe(&mut store, "file_uploaded", &[], T0 + 4 * MIN).is_empty(), "reached once");
    }

    #[test]
    fn identify_reports_each_holdout_arm_once_per_user() {
        let plan = Plan::parse(
            r#"{"version":"1","holdouts":{"salt":"acme","globalPercent":10},
            "milestones":[{"id":"v","title":"V","value":true,"condition":{"event":"v"}}],
            "tips":[{"id":"hi","kind":"modal","body":"Hi","controlPercent":25}]}"#,
        )
        .expect("valid");
        // Someone outside the global holdout, so in the tip's experiment too.
        let user = (0..).map(|i| ["u", &i.to_string()].concat()).find(|u| crate::core::holdout::draw("acme", "global", u) >= 0.1).expect("one");
        let mut store = MemoryStorage::default();
        let mut e = Engine::new(plan.clone(), "tab1".into(), ANON, &store);
        assert!(e.observe(&mut store, "x", &[], T0).iter().all(|o| o.kind != EventType::Experiment), "anonymous: in no experiment");
        let out: Vec<Emit> = e.identify(&mut store, &user, Some(T0), T0 + 1).into_iter().filter(|o| o.kind == EventType::Experiment).collect();
        assert_eq!(names(&out), [vocab::experiment::ASSIGNED, vocab::experiment::ASSIGNED]);
        assert_eq!(prop(&out[0], "experiment"), Some(&Value::Str("global".into())));
        assert_eq!(prop(&out[0], "arm"), Some(&Value::Str("treatment".into())));
        assert_eq!(prop(&out[1], "experiment"), Some(&Value::Str("tip:hi".into())));
        let tip_arm = crate::core::holdout::arm("acme", "tip:hi", &user, 25.0).as_str();
        assert_eq!(prop(&out[1], "arm"), Some(&Value::Str(tip_arm.into())));
        // Again, and in another tab: nothing more.
        assert!(e.identify(&mut store, &user, None, T0 + 2).iter().all(|o| o.kind != EventType::Experiment));
        let mut other_tab = Engine::new(plan, "tab2".into(), ANON, &store);
        assert!(other_tab.identify(&mut store, &user, None, T0 + 3).iter().all(|o| o.kind != EventType::Experiment));
    }

    #[test]
    fn after_gates_and_counts() {
        let plan = Plan::parse(
            r#"{"version":"1","milestones":[
            {"id":"a","title":"A","condition":{"event":"e"}},
            {"id":"b","title":"B","value":true,"condition":{"event":"e","count":2,"after":"a"}}]}"#,
        )
        .expect("valid");
        let mut store = MemoryStorage::default();
        let mut e = Engine::new(plan, "t".into(), ANON, &store);
        assert_eq!(names(&e.observe(&mut store, "e", &[], T0)), ["a", CORE_TASK_COMPLETION], "the event reaching a does not count for b");
        assert!(!names(&e.observe(&mut store, "e", &[], T0 + 1)).contains(&"b"));
        assert!(names(&e.observe(&mut store, "e", &[], T0 + 2)).contains(&"b"));
    }

    #[test]
    fn events_before_identify_count_for_the_user_with_first_seen_standing_in() {
        let mut store = MemoryStorage::default();
        let mut e = Engine::new(trackly(), "tab1".into(), ANON, &store);
        let out = e.observe(&mut store, "signed_up", &[], T0 + 5000);
        assert_eq!(prop(&out[0], "signupKnown"), Some(&Value::Bool(false)));
        assert_eq!(prop(&out[0], "sinceSignupMs"), Some(&Value::Num(0.0)), "first seen stands in");
        e.identify(&mut store, "ada@example.com", Some(T0), T0 + 6000);
        assert_eq!(e.reached("signed_up"), Some(T0 + 5000));
        assert!(store.get(&key(ANON)).is_none(), "anonymous state handed over");
        let out = e.observe(&mut store, "project_created", &[], T0 + 7000);
        assert_eq!(prop(&out[0], "sinceSignupMs"), Some(&Value::Num(7000.0)));
        assert_eq!(prop(&out[0], "signupKnown"), Some(&Value::Bool(true)));
        // A reload: a new engine, anonymous again until identify, finds the user's progress.
        let mut e2 = Engine::new(trackly(), "tab2".into(), ANON, &store);
        e2.identify(&mut store, "ada@example.com", None, T0 + 8000);
        assert_eq!(e2.reached("project_created"), Some(T0 + 7000));
        assert!(e2.observe(&mut store, "project_created", &[], T0 + 9000).is_empty());
    }

    #[test]
    fn another_user_never_inherits_progress() {
        let mut store = MemoryStorage::default();
        let mut e = Engine::new(trackly(), "t".into(), ANON, &store);
        e.identify(&mut store, "ada", Some(T0), T0);
        e.observe(&mut store, "signed_up", &[], T0 + 1);
        e.identify(&mut store, "bo", Some(T0), T0 + 2);
        assert_eq!(e.reached("signed_up"), None);
        e.reset(&mut store, "0190d4c2-0000-7000-8000-000000000002");
        assert_eq!(e.reached("signed_up"), None);
    }

    #[test]
    fn two_tabs_counting_the_same_milestone_add_up_and_report_once() {
        let plan = Plan::parse(
            r#"{"version":"1","milestones":[{"id":"a","title":"A","value":true,"condition":{"event":"e","count":2}}]}"#,
        )
        .expect("valid");
        let mut store = MemoryStorage::default();
        let mut a = Engine::new(plan.clone(), "A".into(), ANON, &store);
        let mut b = Engine::new(plan, "B".into(), ANON, &store);
        assert!(a.observe(&mut store, "e", &[], T0).is_empty());
        let out = b.observe(&mut store, "e", &[], T0 + 1);
        assert_eq!(names(&out)[0], "a", "one event in each tab makes two");
        assert!(a.observe(&mut store, "e", &[], T0 + 2).is_empty(), "tab A learns it was reached");
    }

    #[test]
    fn counts_from_other_devices_add_to_this_devices_own() {
        let plan = Plan::parse(
            r#"{"version":"1","milestones":[{"id":"exported","title":"X","value":true,"condition":{"event":"export","count":3}},
            {"id":"shared","title":"S","condition":{"event":"share","count":2}}]}"#,
        )
        .expect("valid");
        let mut store = MemoryStorage::default();
        let mut e = Engine::new(plan, "A".into(), ANON, &store);
        e.identify(&mut store, "ann", Some(T0), T0);
        assert!(e.observe(&mut store, "export", &[], T0 + 1).is_empty());
        // The collector: two exports and one share from Ann's laptop (never this device's own).
        let mut remote = UserState::default();
        remote.counts.entry("exported".into()).or_default().add(OTHER_DEVICES, 2);
        remote.counts.entry("shared".into()).or_default().add(OTHER_DEVICES, 1);
        let out = e.merge_remote(&mut store, "ann", &remote, T0 + 2);
        assert_eq!(names(&out).iter().filter(|n| **n == "exported").count(), 1, "1 here + 2 elsewhere = 3: reached at the merge");
        assert_eq!(e.reached("exported"), Some(T0 + 2));
        assert_eq!(e.reached("shared"), None, "1 elsewhere of 2");
        // Served again (the same figure): a G-counter entry, so not added twice.
        assert!(!names(&e.merge_remote(&mut store, "ann", &remote, T0 + 3)).contains(&"shared"));
        let out = e.observe(&mut store, "share", &[], T0 + 4);
        assert_eq!(names(&out)[0], "shared", "one share here makes two with the laptop's");
    }

    #[test]
    fn filtered_and_gated_counts_from_other_devices_reach_their_milestones() {
        let plan = Plan::parse(
            r#"{"version":"1","milestones":[{"id":"exported","title":"X","value":true,"condition":{"event":"export"}},
            {"id":"big","title":"B","condition":{"event":"export","count":2,"where":{"rows":{"gte":100}}}},
            {"id":"shared_after","title":"S","condition":{"event":"share","count":2,"after":"exported"}}]}"#,
        )
        .expect("valid");
        let mut store = MemoryStorage::default();
        let mut e = Engine::new(plan, "A".into(), ANON, &store);
        e.identify(&mut store, "ann", Some(T0), T0);
        assert!(e.observe(&mut store, "share", &[], T0 + 1).is_empty(), "the gate is closed here: not counted");
        let small = [("rows".to_string(), Value::Num(50.0))];
        assert!(!names(&e.observe(&mut store, "export", &small, T0 + 2)).contains(&"big"), "reaches `exported`; 50 rows do not count");
        let rows = [("rows".to_string(), Value::Num(200.0))];
        assert!(e.observe(&mut store, "export", &rows, T0 + 3).is_empty(), "one big export of two");
        // The collector: one big export and one share after the gate on the laptop.
        let mut remote = UserState::default();
        remote.counts.entry("big".into()).or_default().add(OTHER_DEVICES, 1);
        remote.counts.entry("shared_after".into()).or_default().add(OTHER_DEVICES, 1);
        let out = e.merge_remote(&mut store, "ann", &remote, T0 + 4);
        assert!(names(&out).contains(&"big"), "1 here + 1 elsewhere passing the filter");
        assert!(!names(&out).contains(&"shared_after"), "one share of two after the gate");
        assert_eq!(e.reached("big"), Some(T0 + 4));
        assert!(!names(&e.merge_remote(&mut store, "ann", &remote, T0 + 5)).contains(&"shared_after"), "served again: the entry is replaced, not added");
        assert!(names(&e.observe(&mut store, "share", &[], T0 + 6)).contains(&"shared_after"), "this share after the gate and the laptop's");
    }

    #[test]
    fn merge_keeps_the_earliest_reach_and_per_tab_maximum() {
        let mut x = UserState::default();
        x.reached.insert("a".into(), 5);
        x.counts.entry("b".into()).or_default().add("A", 2);
        let mut y = UserState::default();
        y.reached.insert("a".into(), 3);
        y.counts.entry("b".into()).or_default().add("A", 1);
        y.counts.entry("b".into()).or_default().add("B", 4);
        let mut xy = x.clone();
        xy.merge(&y);
        let mut yx = y.clone();
        yx.merge(&x);
        assert_eq!(xy, yx);
        assert_eq!(xy.reached["a"], 3);
        assert_eq!(xy.counts["b"].total(), 6);
        let again = {
            let mut s = xy.clone();
            s.merge(&y);
            s
        };
        assert_eq!(again, xy, "merging twice changes nothing");
    }

    #[test]
    fn the_clock_going_backwards_never_gives_negative_times() {
        let mut store = MemoryStorage::default();
        let mut e = Engine::new(trackly(), "t".into(), ANON, &store);
        e.identify(&mut store, "u", Some(T0 + 10 * MIN), T0 + 10 * MIN);
        for name in ["signed_up", "project_created", "teammate_invited"] {
            e.observe(&mut store, name, &[], T0 + 10 * MIN);
        }
        let out = e.observe(&mut store, "file_uploaded", &[], T0);
        let ttv = find(&out, TIME_TO_VALUE);
        assert_eq!(prop(ttv, "sinceSignupMs"), Some(&Value::Num(0.0)));
        assert_eq!(e.reached("file_uploaded"), Some(T0 + 10 * MIN), "time never runs backwards");
    }

    #[test]
    fn a_changed_plan_keeps_identity_by_id_and_aliases() {
        let v1 = Plan::parse(
            r#"{"version":"1","milestones":[
            {"id":"a","title":"A","condition":{"event":"e"}},
            {"id":"old","title":"Old","value":true,"condition":{"event":"f"}}]}"#,
        )
        .expect("v1");
        let v2 = Plan::parse(
            r#"{"version":"2","milestones":[
            {"id":"a","title":"A, retitled","condition":{"event":"e"}},
            {"id":"new","aliases":["old"],"title":"Renamed","condition":{"event":"f"}},
            {"id":"added","title":"Added","value":true,"condition":{"event":"g"}}]}"#,
        )
        .expect("v2");
        let v3 = Plan::parse(r#"{"version":"3","milestones":[{"id":"a","title":"A","value":true,"condition":{"event":"e"}}]}"#)
            .expect("v3");
        let mut store = MemoryStorage::default();
        let mut e = Engine::new(v1, "t".into(), ANON, &store);
        e.observe(&mut store, "f", &[], T0);
        let mut e = Engine::new(v2.clone(), "t2".into(), ANON, &store);
        assert_eq!(e.reached("new"), Some(T0), "renamed milestone keeps its state");
        assert!(e.observe(&mut store, "f", &[], T0 + 1).is_empty());
        let out = e.observe(&mut store, "e", &[], T0 + 2);
        assert!(!names(&out).contains(&ONBOARDING_COMPLETED), "the added milestone is still open");
        // v3 removes every milestone but `a`, which is reached: onboarding completes now.
        let out = e.set_plan(v3, &mut store, T0 + 3);
        assert_eq!(names(&out), [ONBOARDING_COMPLETED]);
        let out = e.set_plan(v2, &mut store, T0 + 4);
        assert!(out.is_empty(), "completion is reported once");
        // The same on a page load with the new version: the next engine's first touch.
        let mut store2 = MemoryStorage::default();
        let v1b = Plan::parse(r#"{"version":"1","milestones":[{"id":"a","title":"A","condition":{"event":"e"}},
            {"id":"b","title":"B","value":true,"condition":{"event":"f"}}]}"#).expect("v1b");
        let mut old = Engine::new(v1b, "t".into(), ANON, &store2);
        assert!(!names(&old.observe(&mut store2, "e", &[], T0)).contains(&ONBOARDING_COMPLETED));
        let v3 = Plan::parse(r#"{"version":"3","milestones":[{"id":"a","title":"A","value":true,"condition":{"event":"e"}}]}"#).expect("v3");
        let mut new = Engine::new(v3, "t2".into(), ANON, &store2);
        assert_eq!(names(&new.touch(&mut store2, T0 + 5)), [ONBOARDING_COMPLETED]);
    }

    #[test]
    fn customer_milestones_are_marked_done() {
        let mut store = MemoryStorage::default();
        let mut e = Engine::new(trackly(), "t".into(), ANON, &store);
        let out = e.mark_done(&mut store, "kickoff_held", T0);
        assert_eq!(names(&out), ["kickoff_held"]);
        assert_eq!(prop(&out[0], "kind"), Some(&Value::Str("customer".into())));
        assert!(e.mark_done(&mut store, "kickoff_held", T0 + 1).is_empty());
        assert!(e.mark_done(&mut store, "no_such_milestone", T0 + 1).is_empty());
    }

    #[test]
    fn seed_metrics_first_session_length_and_return_interval() {
        let mut store = MemoryStorage::default();
        let mut e = Engine::new(trackly(), "t".into(), ANON, &store);
        assert!(e.touch(&mut store, T0).is_empty());
        e.observe(&mut store, "x", &[], T0 + 5 * MIN);
        e.observe(&mut store, "x", &[], T0 + 12 * MIN);
        // A reload two hours later starts the second session.
        let mut e = Engine::new(trackly(), "t2".into(), ANON, &store);
        let out = e.touch(&mut store, T0 + 132 * MIN);
        assert_eq!(prop(find(&out, FIRST_SESSION_LENGTH), "valueMs"), Some(&Value::Num((12 * MIN) as f64)));
        assert_eq!(prop(find(&out, RETURN_INTERVAL), "valueMs"), Some(&Value::Num((132 * MIN) as f64)));
        assert!(e.touch(&mut store, T0 + 300 * MIN).is_empty(), "each is reported once");
    }

    #[test]
    fn the_guide_is_needed_until_onboarding_is_over() {
        const DAY: i64 = 24 * 60 * MIN;
        let mut store = MemoryStorage::default();
        let mut e = Engine::new(trackly(), "t".into(), ANON, &store);
        assert!(e.needs_guide(T0), "anonymous: who they are is not known yet");
        e.identify(&mut store, "ada@example.com", Some(T0), T0);
        for name in ["signed_up", "project_created", "teammate_invited", "file_uploaded"] {
            e.observe(&mut store, name, &[], T0 + MIN);
        }
        assert!(e.needs_guide(T0 + 2 * MIN), "the customer milestone is open (due in 14 days)");
        e.mark_done(&mut store, "kickoff_held", T0 + 3 * MIN);
        assert!(e.needs_guide(T0 + 4 * MIN), "no second session yet: the return interval is still to be measured");
        e.touch(&mut store, T0 + 2 * 60 * MIN);
        assert!(e.needs_guide(T0 + 2 * 60 * MIN), "the checklist tip's window (14 days) is open");
        assert!(!e.needs_guide(T0 + 14 * DAY), "everything reached, measured, and every tip window closed");
        let mut dismissed = e.state.clone();
        dismissed.tips.entry("getting_started".into()).or_default().dismissed = Some(T0 + 2 * 60 * MIN);
        dismissed.tips.entry("welcome".into()).or_default().dismissed = Some(T0 + 2 * 60 * MIN);
        e.state = dismissed;
        assert!(!e.needs_guide(T0 + 2 * 60 * MIN), "…or dismissed");

        // Nothing reached, but every milestone past its due window and every tip window closed.
        let mut store = MemoryStorage::default();
        let mut late = Engine::new(trackly(), "t".into(), ANON, &store);
        late.identify(&mut store, "bo@example.com", Some(T0), T0);
        late.touch(&mut store, T0 + 60 * MIN);
        assert!(late.needs_guide(T0 + 13 * DAY));
        assert!(!late.needs_guide(T0 + 15 * DAY));
        // A new plan with a milestone this user has not reached and no due window brings it back.
        let mut plan = trackly();
        plan.milestones[4].due_ms = None;
        late.set_plan(plan, &mut store, T0 + 15 * DAY);
        assert!(late.needs_guide(T0 + 15 * DAY));

        // A survey 30 days after sign-up: the lean tracker (which cannot show it) until then.
        let mut store = MemoryStorage::default();
        let mut asked = Engine::new(trackly(), "t".into(), ANON, &store);
        asked.identify(&mut store, "cy@example.com", Some(T0), T0);
        asked.touch(&mut store, T0 + 60 * MIN);
        let mut plan = trackly();
        plan.surveys = Plan::parse(r#"{"version":"s","milestones":[{"id":"m","title":"M","kind":"customer","value":true}],"surveys":[{"id":"nps","kind":"nps","question":"Q","when":{"afterSignup":"30d"}}]}"#)
            .expect("plan")
            .surveys;
        asked.set_plan(plan, &mut store, T0 + 15 * DAY);
        assert!(!asked.needs_guide(T0 + 15 * DAY), "nothing to ask yet");
        assert_eq!(asked.next_survey(T0 + 15 * DAY), Some(T0 + 30 * DAY), "the mark holds until then");
        assert!(asked.needs_guide(T0 + 30 * DAY), "the survey is due: the guide comes back");
    }

    #[test]
    fn tip_state_persists_and_merges() {
        let mut store = MemoryStorage::default();
        let mut a = Engine::new(trackly(), "A".into(), ANON, &store);
        let mut b = Engine::new(trackly(), "B".into(), ANON, &store);
        a.touch(&mut store, T0);
        a.update(&mut store, |s, tab| {
            let t = s.tips.entry("welcome".into()).or_default();
            t.shown.add(tab, 1);
            t.last_shown = Some(T0);
            s.session.tips_shown.add(tab, 1);
        });
        b.update(&mut store, |s, tab| {
            let t = s.tips.entry("welcome".into()).or_default();
            t.shown.add(tab, 1);
            t.dismissed = Some(T0 + 1);
        });
        let reloaded = Engine::new(trackly(), "C".into(), ANON, &store);
        let tip = &reloaded.state.tips["welcome"];
        assert_eq!((tip.shown.total(), tip.last_shown, tip.dismissed), (2, Some(T0), Some(T0 + 1)));
        assert_eq!(reloaded.state.session.tips_shown.total(), 1);
    }

    #[test]
    fn state_round_trips_and_garbage_is_survived() {
        let mut store = MemoryStorage::default();
        let mut e = Engine::new(trackly(), "t".into(), ANON, &store);
        e.identify(&mut store, "u", Some(T0), T0);
        e.observe(&mut store, "signed_up", &[], T0 + 1);
        e.update(&mut store, |s, tab| s.tips.entry("x".into()).or_default().shown.add(tab, 2));
        assert_eq!(UserState::from_json(&e.state.to_json().expect("serialises")), e.state);
        for garbage in ["", "null", "[1]", "{\"reached\":5}", "{\"reached\":{\"a\":\"x\"},\"counts\":{\"b\":{\"t\":-4}}}"] {
            store.set(&key("u"), garbage);
            let mut e = Engine::new(trackly(), "t".into(), ANON, &store);
            e.identify(&mut store, "u", None, T0);
            e.observe(&mut store, "signed_up", &[], T0);
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod properties {
    use super::tests::trackly;
    use super::*;
    use crate::core::storage::MemoryStorage;
    use proptest::prelude::*;

    const NAMES: [&str; 6] = ["signed_up", "project_created", "teammate_invited", "file_uploaded", "noise", "team_viewed"];
    const ANON: &str = "0190d4c2-0000-7000-8000-0000000000aa";

    /// Events as (name index, time step in ms): steps may be negative, so clocks go backwards.
    fn events() -> impl Strategy<Value = Vec<(usize, i64)>> {
        prop::collection::vec((0..NAMES.len(), -3_600_000i64..7_200_000), 1..40)
    }

    fn timeline(steps: &[(usize, i64)]) -> Vec<(&'static str, i64)> {
        let mut t = 1_700_000_000_000;
        steps.iter().map(|(n, d)| {
            t += d;
            (NAMES[*n], t)
        }).collect()
    }

    /// Runs the events, reloading the engine (a new page load, new tab id) at each cut.
    fn run(events: &[(&'static str, i64)], cuts: &[usize], signup: Option<i64>) -> (UserState, Vec<Emit>) {
        let mut store = MemoryStorage::default();
        let mut out = Vec::new();
        let mut engine: Option<Engine> = None;
        for (i, (name, t)) in events.iter().enumerate() {
            if engine.is_none() || cuts.contains(&i) {
                let mut e = Engine::new(trackly(), format!("tab{i}"), ANON, &store);
                out.extend(e.identify(&mut store, "u", signup, *t));
                engine = Some(e);
            }
            if let Some(e) = engine.as_mut() {
                out.extend(e.observe(&mut store, name, &[], *t));
            }
        }
        let state = UserState::from_json(&store.get(&key("u")).unwrap_or_default());
        (state, out)
    }

    /// The state with per-tab detail folded away: what must not depend on how events were split.
    type Logical = (VecMap<i64>, Vec<(String, u32)>, Vec<String>, Option<i64>);
    fn logical(s: &UserState) -> Logical {
        (
            s.reached.clone(),
            s.counts.iter().map(|(k, c)| (k.clone(), c.total())).collect(),
            s.done.keys().cloned().collect(),
            s.first_seen,
        )
    }

    proptest! {
        #[test]
        fn any_split_into_page_loads_gives_the_same_state(steps in events(), cuts in prop::collection::vec(0usize..40, 0..6), signup in prop::option::of(1_699_999_000_000i64..1_700_001_000_000)) {
            let events = timeline(&steps);
            let (whole, whole_out) = run(&events, &[], signup);
            let (split, split_out) = run(&events, &cuts, signup);
            prop_assert_eq!(logical(&whole), logical(&split));
            let milestones = |out: &[Emit]| out.iter().filter(|e| e.kind == EventType::Milestone).map(|e| e.to_owned()).collect::<Vec<_>>();
            prop_assert_eq!(milestones(&whole_out), milestones(&split_out));
        }

        #[test]
        fn milestones_are_reached_at_most_once_and_ttv_is_never_negative(steps in events(), cuts in prop::collection::vec(0usize..40, 0..6), signup in prop::option::of(1_699_990_000_000i64..1_700_010_000_000)) {
            let (_, out) = run(&timeline(&steps), &cuts, signup);
            let mut seen = std::collections::BTreeSet::new();
            for e in out.iter().filter(|e| e.kind == EventType::Milestone) {
                prop_assert!(seen.insert(e.name.clone()), "{} emitted twice", e.name);
                let since = e.props.iter().find(|(k, _)| k == "sinceSignupMs").and_then(|(_, v)| v.as_f64());
                prop_assert!(since.is_some_and(|s| s >= 0.0), "{}: {:?}", e.name, since);
            }
        }

        #[test]
        fn two_tabs_interleaving_report_each_milestone_once(steps in events(), tabs in prop::collection::vec(any::<bool>(), 40)) {
            let mut store = MemoryStorage::default();
            let mut engines = [Engine::new(trackly(), "A".into(), ANON, &store), Engine::new(trackly(), "B".into(), ANON, &store)];
            let mut seen = std::collections::BTreeSet::new();
            for (i, (name, t)) in timeline(&steps).into_iter().enumerate() {
                let e = &mut engines[tabs[i] as usize];
                for emitted in e.observe(&mut store, name, &[], t) {
                    if emitted.kind == EventType::Milestone {
                        prop_assert!(seen.insert(emitted.name.clone()), "{} twice", emitted.name);
                    }
                }
            }
        }

        #[test]
        fn merge_is_commutative_associative_idempotent(a in events(), b in events(), c in events()) {
            let state = |steps: &[(usize, i64)], tab: &str| {
                let mut store = MemoryStorage::default();
                let mut e = Engine::new(trackly(), tab.into(), ANON, &store);
                for (name, t) in timeline(steps) {
                    e.observe(&mut store, name, &[], t);
                }
                e.state
            };
            let (x, y, z) = (state(&a, "A"), state(&b, "B"), state(&c, "C"));
            let m = |p: &UserState, q: &UserState| { let mut r = p.clone(); r.merge(q); r };
            prop_assert_eq!(logical(&m(&x, &y)), logical(&m(&y, &x)));
            prop_assert_eq!(logical(&m(&m(&x, &y), &z)), logical(&m(&x, &m(&y, &z))));
            prop_assert_eq!(m(&m(&x, &y), &y), m(&x, &y));
        }
    }
}
