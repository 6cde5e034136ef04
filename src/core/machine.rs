//! The SDK as one sans-IO state machine: [`Machine::handle`] takes the time and one [`Input`]
//! (a call the page made, a timer, the page being hidden or closed, the network's answers) and
//! returns the [`Effect`]s the browser layer must carry out (send, beacon, schedule, render,
//! console lines, resolve `flush()`). It never touches the network, timers or the DOM, so the
//! whole init → plan → replay → send → acknowledge flow is tested natively (see the tests).
//!
//! Storage is the one service it uses directly, through [`KeyValue`]: `localStorage` is
//! synchronous, and the outbox's multi-tab lock must read its own claim back at once. Writes
//! that can wait for the end of the task (the queue after a burst of `track` calls, the
//! engine's state) are asked for with [`Effect::PersistSoon`]; the host answers with
//! [`Input::Persist`] from a 0 ms timer.
//!
//! The browser layer feeds inputs through one queue: a call made while an input is being
//! handled (a host callback onramp invoked calling back into it) waits there, in order, and is
//! never dropped.

use alloc::string::String;
use alloc::vec::Vec;
use alloc::vec;

use super::client::{Client, Entropy};
use super::delivery::{Next, Outbox, Policy};
#[cfg(feature = "guide")]
use super::engine::{Emit, Engine};
use super::json::Value;
use super::plan::{CaptureRule, PlanError};
use super::storage::{KeyValue, WriteBehind};
use super::wire::EventType;

/// `localStorage` key read by the loader (www/sdk/loader.js): present, the page loads the lean
/// tracker only. Its value is `<plan version>\n<user id>`, and `\n<time>` when a survey may be
/// asked at that time (Unix ms): the tracker removes the mark once it has passed.
pub const LEAN_KEY: &str = "onramp.lean";

/// The parts of a [`LEAN_KEY`] value: plan version, user id, and until when it holds.
#[cfg(not(feature = "guide"))]
fn lean_parts(mark: &str) -> (&str, &str, Option<i64>) {
    let mut lines = mark.split('\n');
    let version = lines.next().unwrap_or_default();
    let user = lines.next().unwrap_or_default();
    (version, user, lines.next().and_then(super::num::parse_int))
}
/// This browser's anonymous id.
pub const ANON_KEY: &str = "onramp.anonymousId";
/// The user this anonymous id was identified as: identifying as someone else starts a fresh
/// anonymous id (docs/IDENTITY.md), even on a later page view.
pub const USER_KEY: &str = "onramp.userId";
/// The account given to `group()`, carried by every later event until `reset()`.
pub const ACCOUNT_KEY: &str = "onramp.accountId";

/// The tick: heartbeat, adoption of dead tabs, batching by time, retries.
pub const TICK_MS: u32 = 1000;

/// Product events kept while the plan loads, replayed into the engine when it arrives.
#[cfg(feature = "guide")]
const MAX_EARLY: usize = 200;

type Props = Vec<(String, Value)>;

/// The plan as the machine receives it, read and checked by the browser layer (selectors need
/// the browser's CSS parser). The full SDK needs all of it; the tracker only the version and
/// the capture rules ([`super::plan::Plan::capture_only`]).
#[cfg(feature = "guide")]
pub type LoadedPlan = super::plan::Plan;
#[cfg(not(feature = "guide"))]
pub struct LoadedPlan {
    pub version: String,
    pub capture: Vec<CaptureRule>,
}

pub enum Input {
    /// `init(options)`; `page_origin` is the page's own origin (the default collector).
    Init { options: Value, page_origin: String },
    Identify { user_id: String, traits: Props },
    Track { name: String, props: Props, at: Option<i64> },
    Group { account_id: String, traits: Props },
    /// A customer milestone confirmed by the user or the page (full SDK only).
    Complete(String),
    Reset,
    /// `flush()`: the host resolves waiter `id` when [`Effect::ResolveFlush`] names it.
    Flush(u64),
    Tick,
    /// The 0 ms timer asked for by [`Effect::PersistSoon`].
    Persist,
    PageHidden,
    PageClosed,
    Online,
    /// The plan arrived, read and checked.
    PlanLoaded(LoadedPlan),
    /// The plan cannot be used: onramp steps aside with one console line naming the field.
    PlanRefused(PlanError),
    /// The collector answered a [`Effect::Send`] (`body` read for 400 and 413 only) or an
    /// [`Effect::Ask`] (`body` read for a 2xx): `status` 0 for a network error.
    Answered { status: u16, retry_after: Option<String>, body: String },
    /// The collector answered a [`Effect::FetchState`] for `user_id`: the state document on a
    /// 200, `None` on anything else (offline, an error): local state goes on alone.
    #[cfg(feature = "guide")]
    RemoteState { user_id: String, body: Option<String> },
}

impl Input {
    /// A call the page made through the API: what follows from it may wait for the end of the
    /// task (see `Running::after`).
    fn is_page_call(&self) -> bool {
        matches!(self, Input::Identify { .. } | Input::Track { .. } | Input::Group { .. } | Input::Complete(_) | Input::Reset)
    }
}

/// Where the plan comes from; the host fetches or reads it and answers with
/// [`Input::PlanLoaded`] or [`Input::PlanRefused`] (or nothing: no plan, events only).
#[derive(Debug, PartialEq)]
pub enum PlanSource {
    Inline(Value),
    Url(String),
}

#[derive(Debug, PartialEq)]
pub enum Effect {
    /// POST `body` to `url` (a keepalive fetch) and answer with [`Input::Answered`].
    Send { url: String, body: String },
    /// POST `body` to `url` (which of these events the collector stores, `/v1/known`) and
    /// answer with [`Input::Answered`], the body read on a 2xx.
    Ask { url: String, body: String },
    /// Hand `body` to `navigator.sendBeacon`: no answer.
    Beacon { url: String, body: String },
    /// Answer with [`Input::Persist`] at the end of the task.
    PersistSoon,
    /// Answer with [`Input::Tick`] after this long (one pending tick at a time).
    ScheduleTick(u32),
    /// Add the page-lifetime listeners (hidden, closed, shown, online), replacing any.
    Listen,
    /// Remove every listener, timer and capture hook: onramp is disabled.
    Stop,
    LoadPlan(PlanSource),
    /// Start auto-capture with these rules (replacing earlier ones).
    Capture(Vec<CaptureRule>),
    /// Start the tips UI with init's `tips` options and the plan's default locale.
    #[cfg(feature = "guide")]
    StartGuide { options: Value, default_locale: String },
    /// Re-decide what the tips show; with an event's name after that event (tour steps,
    /// `afterEvent` triggers).
    #[cfg(feature = "guide")]
    Render(Option<String>),
    Console(String),
    ResolveFlush(u64),
    /// GET `url` (the user's state, `/v1/state`) and answer with [`Input::RemoteState`].
    #[cfg(feature = "guide")]
    FetchState { url: String, user_id: String },
}

/// The running SDK, between `init` and a disabling error.
struct Running<S: KeyValue> {
    client: Client,
    outbox: Outbox<S>,
    /// The collector's base URL (no trailing slash), and its batch endpoint.
    collector: String,
    batch_url: String,
    known_url: String,
    page_origin: String,
    /// The engine's user state (and the small keys above), written at the end of the task.
    kv: WriteBehind<S>,
    /// The [`LEAN_KEY`] value last written (full SDK) or found (tracker).
    lean: Option<String>,
    /// `flush()` waiters and the outbox mark each waits for.
    flushes: Vec<(u64, u64)>,
    persist_asked: bool,
    #[cfg(feature = "guide")]
    tab: String,
    #[cfg(feature = "guide")]
    engine: Option<Engine>,
    #[cfg(feature = "guide")]
    early: Vec<(String, Props, i64)>,
    #[cfg(feature = "guide")]
    signup: Option<i64>,
    #[cfg(feature = "guide")]
    tips_options: Value,
    /// `/v1/state?writeKey=…`, the user's state across devices (docs/IDENTITY.md).
    #[cfg(feature = "guide")]
    state_url: String,
    /// The user whose state was asked for on this page (and not refused): asked once per page
    /// and user, again after a failure at the next `identify` or when the browser is back online.
    #[cfg(feature = "guide")]
    state_asked: Option<String>,
    /// Asked and not answered yet: the engine holds the once-per-user metrics meanwhile.
    #[cfg(feature = "guide")]
    state_pending: bool,
    /// A state that arrived before the plan, merged when the engine starts.
    #[cfg(feature = "guide")]
    remote: Option<(String, super::engine::UserState)>,
}

pub struct Machine<S: KeyValue + Clone, E: Entropy> {
    storage: S,
    entropy: E,
    sdk: Option<Running<S>>,
}

impl<S: KeyValue + Clone, E: Entropy> Machine<S, E> {
    pub fn new(storage: S, entropy: E) -> Self {
        Machine { storage, entropy, sdk: None }
    }

    pub fn is_running(&self) -> bool {
        self.sdk.is_some()
    }

    /// Every input's handling but `track`'s (the hot one) stays a function of its own
    /// (`#[inline(never)]`): inlined, the tracker's whole machine and browser layer made one
    /// 17 KB wasm function, which Chromium compiled on the main thread at the first call (init,
    /// on the way to ready) and optimised as a whole before `track()` got its fast code.
    pub fn handle(&mut self, now: i64, input: Input) -> Vec<Effect> {
        let mut fx = Vec::new();
        if let Input::Init { options, page_origin } = input {
            self.init(now, &options, page_origin, &mut fx);
        } else if let Input::PlanRefused(error) = input {
            self.disable(&error, &mut fx);
        } else if let Some(sdk) = self.sdk.as_mut() {
            let from_page = input.is_page_call();
            sdk.handle(now, input, &mut self.storage, &mut self.entropy, &mut fx);
            sdk.after(now, from_page, &mut self.entropy, &mut fx);
        } else if let Input::Flush(id) = input {
            fx.push(Effect::ResolveFlush(id)); // nothing to wait for
        }
        fx
    }

    /// Runs `f` with the engine and its storage, and records the events it returns: the tips
    /// layer's way in. `None` when there is no plan (or no SDK). `from_page`: the tips' part of
    /// a call from the page (an event's tour steps), so a batch it makes due and the drop
    /// report wait for the end of the task, as for the call itself (see [`Running::after`]).
    #[cfg(feature = "guide")]
    pub fn with_engine<R>(
        &mut self,
        now: i64,
        from_page: bool,
        f: impl FnOnce(&mut Engine, &mut dyn KeyValue, &mut Vec<Emit>) -> R,
    ) -> (Option<R>, Vec<Effect>) {
        let mut fx = Vec::new();
        let Some(sdk) = self.sdk.as_mut() else { return (None, fx) };
        let Some(engine) = sdk.engine.as_mut() else { return (None, fx) };
        let mut out = Vec::new();
        let r = f(engine, &mut sdk.kv, &mut out);
        sdk.record_emits(out, now, &mut self.entropy);
        sdk.update_lean_mark(now);
        sdk.after(now, from_page, &mut self.entropy, &mut fx);
        (Some(r), fx)
    }

    #[inline(never)] // see `Machine::handle`
    fn init(&mut self, now: i64, options: &Value, page_origin: String, fx: &mut Vec<Effect>) {
        if let Some(mut old) = self.sdk.take() {
            // A second init replaces the SDK: what it has not written yet is written (its queue
            // is adopted by the new one), its listeners go, its waiters are answered.
            old.write();
            fx.push(Effect::Stop);
            resolve_all(old.flushes, fx);
        }
        let Some(write_key) = options.get("writeKey").and_then(Value::as_str) else {
            fx.push(Effect::Console("onramp: init: `writeKey` is required (a string such as \"wk_…\"); onramp is disabled".into()));
            return;
        };
        let collector = String::from(options.get("collector").and_then(Value::as_str).unwrap_or(&page_origin).trim_end_matches('/'));
        let storage = &mut self.storage;
        let anonymous_id = storage.get(ANON_KEY).unwrap_or_else(|| {
            let id = Client::new_id(now, &mut self.entropy);
            storage.set(ANON_KEY, &id);
            id
        });
        let tab = Client::new_id(now, &mut self.entropy);
        // The queue is written at the end of the task, not on every push (see `PersistSoon`).
        let policy = Policy { sync_persist_max: 0, ..Policy::default() };
        let outbox = Outbox::open(self.storage.clone(), write_key.into(), &tab, policy, now);
        let mut client = Client::new(anonymous_id);
        client.account_id = self.storage.get(ACCOUNT_KEY);
        let sdk = Running {
            client,
            outbox,
            batch_url: collector.clone() + "/v1/batch",
            known_url: collector.clone() + "/v1/known",
            collector: collector.clone(),
            page_origin,
            kv: WriteBehind::new(self.storage.clone()),
            lean: self.storage.get(LEAN_KEY),
            flushes: Vec::new(),
            persist_asked: false,
            #[cfg(feature = "guide")]
            tab,
            #[cfg(feature = "guide")]
            engine: None,
            #[cfg(feature = "guide")]
            early: Vec::new(),
            #[cfg(feature = "guide")]
            signup: None,
            #[cfg(feature = "guide")]
            tips_options: options.get("tips").cloned().unwrap_or(Value::Null),
            #[cfg(feature = "guide")]
            state_url: {
                let mut url = collector.clone() + "/v1/state?writeKey=";
                encode_component(&mut url, write_key);
                url
            },
            #[cfg(feature = "guide")]
            state_asked: None,
            #[cfg(feature = "guide")]
            state_pending: false,
            #[cfg(feature = "guide")]
            remote: None,
        };
        self.sdk = Some(sdk);
        fx.push(Effect::Listen);
        fx.push(Effect::ScheduleTick(TICK_MS));
        match options.get("plan") {
            Some(Value::Bool(false)) => {} // the page opted out: events only, no milestones
            Some(plan @ Value::Obj(_)) => fx.push(Effect::LoadPlan(PlanSource::Inline(plan.clone()))),
            Some(Value::Str(url)) => fx.push(Effect::LoadPlan(PlanSource::Url(url.clone()))),
            None | Some(Value::Null) => {
                let mut url = collector;
                url.push_str("/v1/plan?writeKey=");
                encode_component(&mut url, write_key);
                fx.push(Effect::LoadPlan(PlanSource::Url(url)));
            }
            Some(other) => self.disable(
                &PlanError {
                    pointer: String::new(),
                    problem: String::from("init: `plan` is ") + other.kind(),
                    expected: "a plan object, the URL of one, or false".into(),
                },
                fx,
            ),
        }
    }

    /// One console error naming the field, and onramp steps aside: the page keeps working,
    /// events already queued stay stored for a page with a good plan.
    #[inline(never)] // see `Machine::handle`
    fn disable(&mut self, error: &PlanError, fx: &mut Vec<Effect>) {
        let mut message = String::from("onramp: ");
        message.push_str(&error.message());
        message.push_str(". onramp is disabled; the page is unaffected.");
        fx.push(Effect::Console(message));
        if let Some(mut sdk) = self.sdk.take() {
            sdk.write();
            fx.push(Effect::Stop);
            resolve_all(sdk.flushes, fx);
        }
    }
}

impl<S: KeyValue> Running<S> {
    fn handle(&mut self, now: i64, input: Input, storage: &mut S, rng: &mut impl Entropy, fx: &mut Vec<Effect>) {
        match input {
            Input::Init { .. } | Input::PlanRefused(_) => {} // handled by the machine
            Input::Track { name, props, at } => {
                let ts = at.filter(|t| *t > 0).map_or(now, |t| t.min(now));
                self.track(name, props, ts, rng, fx);
            }
            Input::Identify { user_id, traits } => self.identify(now, user_id, traits, storage, rng, fx),
            Input::Group { account_id, traits } => self.group(now, account_id, traits, storage, rng, fx),
            Input::Complete(milestone) => self.complete(now, &milestone, rng, fx),
            Input::Reset => self.reset(now, storage, rng, fx),
            Input::Flush(id) => {
                self.flushes.push((id, self.outbox.mark()));
                self.enqueue_recorded(now, rng);
                self.send(now, true, fx);
            }
            Input::Tick => {
                self.outbox.tick(now);
                self.enqueue_recorded(now, rng);
                self.write();
                self.send(now, false, fx);
                fx.push(Effect::ScheduleTick(TICK_MS));
            }
            Input::Persist => {
                self.persist_asked = false;
                // What the page's calls left for the end of the task (see `after`): the drop
                // report goes into the queue before it is written; a due batch goes in `after`.
                self.outbox.report_drops(&mut self.client, now, rng);
                self.write();
            }
            Input::PageHidden => self.beacon(now, false, rng, fx),
            Input::PageClosed => self.beacon(now, true, rng, fx),
            Input::Online => {
                self.outbox.online();
                self.send(now, true, fx);
                #[cfg(feature = "guide")]
                if let Some(user) = self.client.user_id.clone() {
                    self.ask_state(&user, fx);
                }
            }
            #[cfg(feature = "guide")]
            Input::RemoteState { user_id, body } => self.remote_state(now, user_id, body, rng, fx),
            Input::PlanLoaded(plan) => self.start_plan(now, plan, storage, rng, fx),
            Input::Answered { status, retry_after, body } => self.answered(now, status, retry_after, &body, rng, fx),
        }
    }

    #[inline(never)] // see `Machine::handle`
    fn answered(&mut self, now: i64, status: u16, retry_after: Option<String>, body: &str, rng: &mut impl Entropy, fx: &mut Vec<Effect>) {
        let refused_before = self.outbox.is_refused();
        let next = self.outbox.settle(status, retry_after.as_deref(), body, now, rng);
        self.outbox.report_drops(&mut self.client, now, rng);
        if !refused_before && self.outbox.is_refused() {
            fx.push(Effect::Console(self.refusal(status)));
        }
        if next == Next::SendNow {
            self.send(now, true, fx);
        }
    }

    /// After every input: what was recorded goes into the outbox, a due batch goes out,
    /// finished `flush()`es resolve, and pending writes get their moment.
    ///
    /// After a call from the page (`from_page`: `track`, `identify`, …) the report of events
    /// the full queue dropped and a batch that became due wait for the end of the task
    /// ([`Effect::PersistSoon`], answered by [`Input::Persist`]), when the queue is written
    /// anyway: a burst of calls then makes one report and one request, and no call pays for a
    /// fetch (the first request of a page costs milliseconds) or for an id and a serialised
    /// event per dropped event. The window is the one the queue's write already has: a page
    /// killed within the task loses the calls of that task, and with them the drop count.
    fn after(&mut self, now: i64, from_page: bool, rng: &mut impl Entropy, fx: &mut Vec<Effect>) {
        let mut wait = false;
        if from_page {
            self.queue_recorded(now);
            wait = self.outbox.has_unreported() || self.outbox.due(now, false);
        } else if self.enqueue_recorded(now, rng) {
            self.send(now, false, fx);
        }
        let outbox = &self.outbox;
        self.flushes.retain(|&(id, mark)| {
            let done = outbox.delivered_up_to(mark);
            if done {
                fx.push(Effect::ResolveFlush(id));
            }
            !done
        });
        #[cfg(feature = "guide")]
        let engine_dirty = self.engine.as_ref().is_some_and(Engine::is_dirty);
        #[cfg(not(feature = "guide"))]
        let engine_dirty = false;
        if !self.persist_asked && (wait || engine_dirty || self.kv.has_pending() || self.outbox.has_unwritten()) {
            self.persist_asked = true;
            fx.push(Effect::PersistSoon);
        }
    }

    /// Moves what the client recorded into the persistent outbox.
    fn queue_recorded(&mut self, now: i64) {
        for event in self.client.take_recorded() {
            self.outbox.push(&event, now);
        }
    }

    /// Moves what the client recorded into the persistent outbox, reports drops, and says
    /// whether a batch is due.
    fn enqueue_recorded(&mut self, now: i64, rng: &mut impl Entropy) -> bool {
        self.queue_recorded(now);
        self.outbox.report_drops(&mut self.client, now, rng);
        self.outbox.due(now, false)
    }

    /// The next request: a question about events that may have arrived already (see
    /// [`super::delivery`]), else a due batch.
    fn send(&mut self, now: i64, force: bool, fx: &mut Vec<Effect>) {
        if let Some(body) = self.outbox.next_check(now) {
            fx.push(Effect::Ask { url: self.known_url.clone(), body });
        } else if let Some(body) = self.outbox.next_batch(now, force) {
            fx.push(Effect::Send { url: self.batch_url.clone(), body });
        }
    }

    fn write(&mut self) {
        #[cfg(feature = "guide")]
        if let Some(engine) = self.engine.as_mut() {
            engine.write(&mut self.kv);
        }
        self.kv.flush();
        self.outbox.persist_pending();
    }

    /// The page is hidden or going: the whole queue goes to `sendBeacon`, which the browser
    /// delivers even after unload; the events stay queued until acknowledged.
    #[inline(never)] // see `Machine::handle`
    fn beacon(&mut self, now: i64, retire: bool, rng: &mut impl Entropy, fx: &mut Vec<Effect>) {
        self.enqueue_recorded(now, rng);
        // Persist before send, here too: the next page adopts what is stored.
        self.write();
        for body in self.outbox.beacon_bodies(now) {
            fx.push(Effect::Beacon { url: self.batch_url.clone(), body });
        }
        if retire {
            self.outbox.retire();
        }
    }

    /// One console line when the collector refuses this page (401/403; the SDK then sends
    /// nothing more from it): what to change, and where.
    fn refusal(&self, status: u16) -> String {
        let origin = self.page_origin.as_str();
        let mut parts = vec!["onramp: the collector at ", self.collector.as_str()];
        if status == 403 {
            parts.extend([" does not allow this page's origin ", origin, " for this write key: add \"", origin, "\" to the project's allowedOrigins"]);
        } else {
            parts.push(" does not know this write key: check init's writeKey");
        }
        parts.push(". Events from this page are dropped.");
        joined(&parts)
    }

    fn track(&mut self, name: String, props: Props, ts: i64, rng: &mut impl Entropy, fx: &mut Vec<Effect>) {
        #[cfg(feature = "guide")]
        {
            match self.engine.as_mut() {
                Some(engine) => {
                    let emits = engine.observe(&mut self.kv, &name, &props, ts);
                    self.client.record(EventType::Track, &name, props, ts, rng);
                    self.record_emits(emits, ts, rng);
                    self.update_lean_mark(ts);
                    fx.push(Effect::Render(Some(name)));
                }
                None => {
                    if self.early.len() < MAX_EARLY {
                        self.early.push((name.clone(), props.clone(), ts));
                    }
                    self.client.record(EventType::Track, &name, props, ts, rng);
                }
            }
        }
        #[cfg(not(feature = "guide"))]
        {
            let _ = &fx;
            self.client.record(EventType::Track, &name, props, ts, rng);
        }
    }

    #[inline(never)] // see `Machine::handle`
    fn identify(&mut self, now: i64, user_id: String, mut traits: Props, storage: &mut S, rng: &mut impl Entropy, fx: &mut Vec<Effect>) {
        if user_id.is_empty() {
            fx.push(Effect::Console("onramp: identify needs a user id; ignored".into()));
            return;
        }
        // One anonymous id never maps to two users (docs/IDENTITY.md): someone else than the
        // user this browser was identified as starts afresh, as after `reset()`.
        let previous = self.client.user_id.clone().or_else(|| storage.get(USER_KEY));
        if previous.as_deref().is_some_and(|p| p != user_id) {
            self.reset(now, storage, rng, fx);
        }
        // The collector's definition (core::time::signed_up_at): a sign-up time it would refuse
        // is left out here, with one console line, so the identify itself is still sent.
        let mut signup = None;
        traits.retain_mut(|(k, v)| {
            // `matches!`, not `==`: Value's derived (recursive) equality would cost the tracker
            // 365 B for this one test (measured).
            if k != "signedUpAt" || matches!(v, Value::Null) {
                return true;
            }
            match super::time::signed_up_at(v, now) {
                Ok(ms) => {
                    signup = Some(ms);
                    *v = Value::Num(ms as f64);
                    true
                }
                Err(why) => {
                    fx.push(Effect::Console(joined(&["onramp: identify's signedUpAt ", why, "; left out"])));
                    false
                }
            }
        });
        if previous.as_deref() != Some(user_id.as_str()) {
            storage.set(USER_KEY, &user_id);
        }
        self.client.identify(&user_id, traits, now, rng);
        #[cfg(feature = "guide")]
        {
            self.signup = signup.or(self.signup);
            // Asked first: the engine holds the once-per-user metrics for the answer.
            self.ask_state(&user_id, fx);
            if let Some(engine) = self.engine.as_mut() {
                let emits = engine.identify(&mut self.kv, &user_id, signup, now);
                self.record_emits(emits, now, rng);
            }
            self.update_lean_mark(now);
            fx.push(Effect::Render(None));
        }
        #[cfg(not(feature = "guide"))]
        {
            let _ = signup;
            // Another user than the one whose onboarding is over: theirs may not be.
            if self.lean.as_deref().map(lean_parts).is_none_or(|(_, user, _)| user != user_id) {
                self.clear_lean_mark(storage);
            }
        }
    }

    /// `group(accountId, traits)`: the user works in this account. A `group` event (type
    /// `identify`, so the account becomes one of the user's traits in reports) carries the
    /// account's traits under `account`; every later event carries `accountId` in its props.
    #[inline(never)] // see `Machine::handle`
    fn group(&mut self, now: i64, account_id: String, traits: Props, storage: &mut S, rng: &mut impl Entropy, fx: &mut Vec<Effect>) {
        if account_id.is_empty() {
            fx.push(Effect::Console("onramp: group needs an account id; ignored".into()));
            return;
        }
        storage.set(ACCOUNT_KEY, &account_id);
        self.client.account_id = Some(account_id);
        let props = if traits.is_empty() { Vec::new() } else { vec![("account".into(), Value::Obj(traits))] };
        self.client.record(EventType::Identify, "group", props, now, rng);
    }

    #[inline(never)] // see `Machine::handle`
    fn complete(&mut self, now: i64, milestone: &str, rng: &mut impl Entropy, fx: &mut Vec<Effect>) {
        #[cfg(feature = "guide")]
        {
            if let Some(engine) = self.engine.as_mut() {
                let emits = engine.mark_done(&mut self.kv, milestone, now);
                self.record_emits(emits, now, rng);
            }
            self.update_lean_mark(now);
            fx.push(Effect::Render(None));
        }
        let _ = (now, milestone, rng, &fx);
    }

    /// Log-out: a new anonymous id, no user, no account; queued events keep the identity they
    /// were recorded under.
    #[inline(never)] // see `Machine::handle`
    fn reset(&mut self, now: i64, storage: &mut S, rng: &mut impl Entropy, fx: &mut Vec<Effect>) {
        let id = Client::new_id(now, rng);
        storage.set(ANON_KEY, &id);
        storage.remove(USER_KEY);
        storage.remove(ACCOUNT_KEY);
        #[cfg(feature = "guide")]
        {
            if let Some(engine) = self.engine.as_mut() {
                engine.reset(&mut self.kv, &id);
                engine.hold_once = false;
            }
            self.signup = None;
            self.state_asked = None;
            self.state_pending = false;
            self.remote = None;
            fx.push(Effect::Render(None));
        }
        let _ = &fx;
        // The next user's onboarding is unknown: the next page view loads the guide.
        self.clear_lean_mark(storage);
        self.client.reset(id);
    }

    /// Asks the collector for `user`'s state across devices, unless this page already did.
    /// With identity verification the read needs the user's hash, as their events do.
    #[cfg(feature = "guide")]
    fn ask_state(&mut self, user: &str, fx: &mut Vec<Effect>) {
        if self.state_asked.as_deref() == Some(user) {
            return;
        }
        self.state_asked = Some(user.into());
        self.state_pending = true;
        if let Some(engine) = self.engine.as_mut() {
            engine.hold_once = true;
        }
        let mut url = self.state_url.clone();
        url.push_str("&user=");
        encode_component(&mut url, user);
        if let Some(hash) = &self.client.user_hash {
            url.push_str("&userHash=");
            encode_component(&mut url, hash);
        }
        // So the counts served are the other devices' (engine::OTHER_DEVICES).
        url.push_str("&anonymousId=");
        encode_component(&mut url, &self.client.anonymous_id);
        fx.push(Effect::FetchState { url, user_id: user.into() });
    }

    /// The collector's answer to [`Running::ask_state`]: merged into the engine (kept until the
    /// plan arrives), or, on a failure, asked again later. An answer for someone who is no longer
    /// the user (a reset or another identify meanwhile) is dropped.
    #[cfg(feature = "guide")]
    #[inline(never)] // see `Machine::handle`
    fn remote_state(&mut self, now: i64, user: String, body: Option<String>, rng: &mut impl Entropy, fx: &mut Vec<Effect>) {
        if self.client.user_id.as_deref() != Some(user.as_str()) {
            return;
        }
        self.state_pending = false;
        let Some(body) = body else {
            // Offline or refused: local state alone for now, asked again later.
            self.state_asked = None;
            if let Some(engine) = self.engine.as_mut() {
                let emits = engine.release_held(&mut self.kv, now);
                self.record_emits(emits, now, rng);
            }
            return;
        };
        let remote = super::engine::UserState::from_json(&body);
        match self.engine.as_mut() {
            Some(engine) => {
                let emits = engine.merge_remote(&mut self.kv, &user, &remote, now);
                self.record_emits(emits, now, rng);
                self.update_lean_mark(now);
                fx.push(Effect::Render(None));
            }
            None => self.remote = Some((user, remote)),
        }
    }

    fn clear_lean_mark(&mut self, storage: &mut S) {
        if self.lean.take().is_some() {
            storage.remove(LEAN_KEY);
        }
    }

    /// The full SDK starts the engine (replaying the events seen while the plan loaded),
    /// auto-capture and the tips.
    #[cfg(feature = "guide")]
    #[inline(never)] // see `Machine::handle`
    fn start_plan(&mut self, now: i64, plan: LoadedPlan, _storage: &mut S, rng: &mut impl Entropy, fx: &mut Vec<Effect>) {
        let rules = plan.capture.clone();
        let default_locale = plan.default_locale.clone();
        let mut engine = Engine::new(plan, self.tab.clone(), &self.client.anonymous_id, &self.kv);
        // Its state is written with the queue, at the end of the task (`write`).
        engine.defer_writes();
        // Held while the answer is on its way, or here and merged below, after identify.
        engine.hold_once = self.state_pending || self.remote.is_some();
        let mut emits = engine.touch(&mut self.kv, now);
        if let Some(user) = self.client.user_id.clone() {
            emits.extend(engine.identify(&mut self.kv, &user, self.signup, now));
        }
        for (name, props, ts) in ::core::mem::take(&mut self.early) {
            emits.extend(engine.observe(&mut self.kv, &name, &props, ts));
        }
        if let Some((user, remote)) = self.remote.take() {
            emits.extend(engine.merge_remote(&mut self.kv, &user, &remote, now));
        }
        self.engine = Some(engine);
        self.record_emits(emits, now, rng);
        self.update_lean_mark(now);
        fx.push(Effect::Capture(rules));
        let options = ::core::mem::replace(&mut self.tips_options, Value::Null);
        fx.push(Effect::StartGuide { options, default_locale });
    }

    /// The tracker reads only the plan's version and capture rules. A new plan version may
    /// open milestones for this user, and a survey may have come due: the mark goes, the next
    /// page view loads the guide.
    #[cfg(not(feature = "guide"))]
    #[inline(never)] // see `Machine::handle`
    fn start_plan(&mut self, now: i64, plan: LoadedPlan, storage: &mut S, _rng: &mut impl Entropy, fx: &mut Vec<Effect>) {
        // A survey that has come due needs the guide too.
        if self.lean.as_deref().map(lean_parts).is_none_or(|(v, _, until)| v != plan.version || until.is_some_and(|t| t <= now)) {
            self.clear_lean_mark(storage);
        }
        fx.push(Effect::Capture(plan.capture));
    }

    #[cfg(feature = "guide")]
    fn record_emits(&mut self, emits: Vec<Emit>, now: i64, rng: &mut impl Entropy) {
        for e in emits {
            #[cfg(feature = "guide")]
            self.note_nps(&e, now);
            self.client.record(e.kind, &e.name, e.props, now, rng);
        }
    }

    /// An NPS answer (`survey_answered` of an `nps` survey) on its way out: remembered as the
    /// user's latest group, which routes prompts ([`super::prompts`]).
    #[cfg(feature = "guide")]
    fn note_nps(&mut self, e: &Emit, now: i64) {
        use super::vocab::{prop, survey};
        let field = |k: &str| super::json::field(&e.props, k).and_then(Value::as_str);
        if e.kind != EventType::Survey || e.name != survey::ANSWERED || field(prop::SURVEY_KIND) != Some("nps") {
            return;
        }
        let (Some(group), Some(engine)) = (field(prop::GROUP), self.engine.as_mut()) else { return };
        engine.update(&mut self.kv, |state, _| super::prompts::note_nps(state, group, now));
    }

    /// Full SDK: writes [`LEAN_KEY`] while this identified user's onboarding is over, removes
    /// it otherwise; only when that changes, so an event costs no storage write for it.
    #[cfg(feature = "guide")]
    fn update_lean_mark(&mut self, now: i64) {
        let Some(engine) = self.engine.as_ref() else { return };
        let mark = (!engine.needs_guide(now)).then(|| {
            let until = engine.next_survey(now).map(|t| format!("\n{t}")).unwrap_or_default();
            [engine.plan().version.as_str(), "\n", engine.identity(), &until].concat()
        });
        if mark != self.lean {
            match &mark {
                Some(value) => drop(self.kv.inner.set(LEAN_KEY, value)),
                None => self.kv.inner.remove(LEAN_KEY),
            }
            self.lean = mark;
        }
    }
}

/// Answers every `flush()` waiter of an SDK that stops. A loop, not `extend` with a `map`:
/// smaller in the tracker.
fn resolve_all(flushes: Vec<(u64, u64)>, fx: &mut Vec<Effect>) {
    for (id, _) in flushes {
        fx.push(Effect::ResolveFlush(id));
    }
}

/// `parts` end to end. Hand-written for size: `[..].concat()` is std's generic join, with its
/// own length sum and overflow panic; this loop is 473 B raw (230 B gzip) smaller in the tracker (measured).
fn joined(parts: &[&str]) -> String {
    let mut text = String::new();
    for part in parts {
        text.push_str(part);
    }
    text
}

/// `encodeURIComponent` for a query value (the write key).
fn encode_component(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
}

/// The init → plan → replay → send → acknowledge flow, natively: the browser layer only
/// carries out these effects, so what they say here is what the page does.
#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    // The same tests run compiled to wasm in headless Chromium (`cargo test --target
    // wasm32-unknown-unknown`).
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::core::client::tests::Counter;
    use crate::core::json;
    use crate::core::storage::MemoryStorage;
    use crate::core::vocab;

    /// One `localStorage` shared by the tabs and page views of a test.
    #[derive(Clone, Default)]
    struct Shared(Rc<RefCell<MemoryStorage>>);
    impl KeyValue for Shared {
        fn get(&self, key: &str) -> Option<String> {
            self.0.borrow().get(key)
        }
        fn set(&mut self, key: &str, value: &str) -> bool {
            self.0.borrow_mut().set(key, value)
        }
        fn remove(&mut self, key: &str) {
            self.0.borrow_mut().remove(key)
        }
        fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
            self.0.borrow().keys_with_prefix(prefix)
        }
    }

    const T0: i64 = 1_700_000_000_000;
    const ORIGIN: &str = "https://app.example";

    fn options(plan: Option<Value>) -> Value {
        let mut entries = vec![("writeKey".to_string(), Value::Str("wk_demo".into())), ("collector".into(), Value::Str("https://c.example/".into()))];
        if let Some(plan) = plan {
            entries.push(("plan".into(), plan));
        }
        Value::Obj(entries)
    }

    /// A page view: a machine over `storage`, initialised at `now`.
    fn page(storage: &Shared, plan: Option<Value>, now: i64, seed: u8) -> (Machine<Shared, Counter>, Vec<Effect>) {
        let mut m = Machine::new(storage.clone(), Counter(seed));
        let fx = m.handle(now, Input::Init { options: options(plan), page_origin: ORIGIN.into() });
        (m, fx)
    }

    fn no_plan() -> Option<Value> {
        Some(Value::Bool(false))
    }

    fn track(m: &mut Machine<Shared, Counter>, now: i64, name: &str) -> Vec<Effect> {
        m.handle(now, Input::Track { name: name.into(), props: Vec::new(), at: None })
    }

    /// The events in the batches sent (`Send`) or beaconed (`Beacon`) among `fx`.
    fn events(fx: &[Effect], beacon: bool) -> Vec<Value> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Send { body, .. } if !beacon => Some(body),
                Effect::Beacon { body, .. } if beacon => Some(body),
                _ => None,
            })
            .flat_map(|body| json::parse(body).expect("a JSON batch").get("events").and_then(Value::as_array).expect("events").to_vec())
            .collect()
    }

    fn names(events: &[Value]) -> Vec<String> {
        events.iter().map(|e| e.get("name").and_then(Value::as_str).unwrap_or_default().to_string()).collect()
    }

    fn field<'a>(event: &'a Value, key: &str) -> Option<&'a str> {
        event.get(key).and_then(Value::as_str)
    }

    fn prop<'a>(event: &'a Value, key: &str) -> Option<&'a Value> {
        event.get("props").and_then(|p| p.get(key))
    }

    /// The ids of the `/v1/known` questions among `fx`.
    fn asked(fx: &[Effect]) -> Vec<String> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Ask { url, body } => Some((url, body)),
                _ => None,
            })
            .flat_map(|(url, body)| {
                assert_eq!(url, "https://c.example/v1/known");
                let doc = json::parse(body).expect("a JSON question");
                doc.get("ids").and_then(Value::as_array).expect("ids").iter().map(|v| v.as_str().unwrap_or_default().to_owned()).collect::<Vec<_>>()
            })
            .collect()
    }

    /// The collector's answer to a question: these ids are stored.
    fn known(ids: &[String]) -> Input {
        let known: Vec<Value> = ids.iter().map(|id| Value::Str(id.clone())).collect();
        let body = Value::Obj(vec![("known".into(), Value::Arr(known))]).to_json();
        Input::Answered { status: 200, retry_after: None, body }
    }

    fn ack() -> Input {
        Input::Answered { status: 200, retry_after: None, body: String::new() }
    }

    fn consoles(fx: &[Effect]) -> Vec<&str> {
        fx.iter().filter_map(|e| if let Effect::Console(m) = e { Some(m.as_str()) } else { None }).collect()
    }

    #[test]
    fn init_listens_ticks_and_asks_for_the_collectors_plan() {
        let storage = Shared::default();
        let (_, fx) = page(&storage, None, T0, 0);
        assert_eq!(
            fx,
            vec![
                Effect::Listen,
                Effect::ScheduleTick(TICK_MS),
                Effect::LoadPlan(PlanSource::Url("https://c.example/v1/plan?writeKey=wk_demo".into()))
            ]
        );
        assert!(storage.get(ANON_KEY).is_some(), "the anonymous id is stored");
        let mut m = Machine::new(storage.clone(), Counter(0));
        let fx = m.handle(T0, Input::Init { options: Value::Obj(Vec::new()), page_origin: ORIGIN.into() });
        assert_eq!(consoles(&fx).len(), 1, "one console line without a write key");
        assert!(!m.is_running());
    }

    #[test]
    fn events_go_in_a_batch_on_the_tick_and_flush_resolves_only_after_the_acknowledgement() {
        let storage = Shared::default();
        let (mut m, _) = page(&storage, no_plan(), T0, 0);
        for i in 0..3 {
            let fx = track(&mut m, T0 + i, "opened");
            assert!(events(&fx, false).is_empty(), "not sent at once: batched");
            assert!(fx.contains(&Effect::PersistSoon) || i > 0, "written at the end of the task");
        }
        m.handle(T0 + 5, Input::Persist);
        assert!(storage.keys_with_prefix("onramp.q.").len() == 1, "persisted before sending");
        let fx = m.handle(T0 + 10, Input::Flush(7));
        assert_eq!(names(&events(&fx, false)), ["opened"; 3], "flush sends at once");
        assert!(!fx.contains(&Effect::ResolveFlush(7)), "not before the acknowledgement");
        // A 503: the promise still waits; the retry after the backoff is acknowledged.
        let fx = m.handle(T0 + 20, Input::Answered { status: 503, retry_after: Some("0".into()), body: String::new() });
        assert!(!fx.contains(&Effect::ResolveFlush(7)));
        let fx = m.handle(T0 + 2000, Input::Tick);
        assert_eq!(names(&events(&fx, false)).len(), 3, "resent");
        assert!(fx.contains(&Effect::ScheduleTick(TICK_MS)), "the next tick");
        let fx = m.handle(T0 + 2010, ack());
        assert!(fx.contains(&Effect::ResolveFlush(7)));
        assert!(storage.keys_with_prefix("onramp.q.").is_empty(), "removed from storage once acknowledged");
        // Nothing queued: a flush resolves at once.
        assert!(m.handle(T0 + 2020, Input::Flush(8)).contains(&Effect::ResolveFlush(8)));
    }

    /// A burst of calls in one task: no call sends or reports drops itself; at the end of the
    /// task (the `PersistSoon` timer) the full batch goes in one request and the events the
    /// full queue dropped in one report, both written before anything is sent.
    #[test]
    fn a_burst_of_calls_sends_its_batch_and_reports_its_drops_at_the_end_of_the_task() {
        let storage = Shared::default();
        let (mut m, _) = page(&storage, no_plan(), T0, 0);
        let max = Policy::default().max_events;
        let mut asked = 0;
        for i in 0..max + 30 {
            let fx = track(&mut m, T0 + 1, "clicked");
            assert!(events(&fx, false).is_empty(), "call {i} sent nothing itself");
            asked += fx.iter().filter(|e| **e == Effect::PersistSoon).count();
        }
        assert_eq!(asked, 1, "one end-of-task write asked for the whole burst");
        let fx = m.handle(T0 + 2, Input::Persist);
        let sent = events(&fx, false);
        assert_eq!(sent.len(), Policy::default().batch_size, "one full batch, at the end of the task");
        let stored = json::parse(&storage.get(&storage.keys_with_prefix("onramp.q.")[0]).expect("queue stored")).expect("a JSON queue");
        let stored = stored.as_array().expect("an array");
        let reports: Vec<&Value> = stored.iter().filter(|e| field(e, "name") == Some(vocab::metric::EVENTS_DROPPED)).collect();
        assert_eq!(reports.len(), 1, "one report for the burst, stored with the queue");
        assert_eq!(prop(reports[0], "count"), Some(&Value::Num(30.0)), "every dropped event counted");
        assert_eq!(stored.len(), max + 1, "the bound, and the report beside it");
    }

    #[cfg(feature = "guide")]
    #[test]
    fn events_before_the_plan_are_replayed_into_the_engine_when_it_arrives() {
        let storage = Shared::default();
        let (mut m, fx) = page(&storage, None, T0, 0);
        assert!(matches!(fx.last(), Some(Effect::LoadPlan(PlanSource::Url(_)))));
        m.handle(T0 + 1, Input::Identify { user_id: "u1".into(), traits: vec![("signedUpAt".into(), Value::Num(T0 as f64))] });
        track(&mut m, T0 + 2, "signed_up");
        let fx = m.handle(T0 + 3, Input::PlanLoaded(crate::core::engine::tests::trackly()));
        assert!(fx.iter().any(|e| matches!(e, Effect::Capture(rules) if !rules.is_empty())), "auto-capture starts");
        assert!(fx.iter().any(|e| matches!(e, Effect::StartGuide { .. })), "the tips start");
        let fx = m.handle(T0 + 10, Input::Flush(1));
        let sent = events(&fx, false);
        let milestone = sent.iter().find(|e| field(e, "type") == Some("milestone")).expect("a milestone from the replayed event");
        assert_eq!(field(milestone, "name"), Some("signed_up"));
        assert_eq!(field(milestone, "userId"), Some("u1"));
        // The engine's clock never runs backwards: the replayed event counts at the plan's arrival.
        assert!(prop(milestone, "sinceSignupMs").and_then(Value::as_f64).is_some_and(|ms| (2.0..=3.0).contains(&ms)));
        // After the plan, an event reaches the engine at once and the tips hear of it.
        let fx = track(&mut m, T0 + 20, "project_created");
        assert!(fx.contains(&Effect::Render(Some("project_created".into()))));
    }

    #[test]
    fn a_batch_beaconed_when_hidden_is_not_beaconed_again_on_pagehide_nor_sent_in_its_window() {
        let storage = Shared::default();
        let (mut m, _) = page(&storage, no_plan(), T0, 0);
        for i in 0..5 {
            track(&mut m, T0 + i, "d_beacon");
        }
        let fx = m.handle(T0 + 10, Input::PageHidden);
        assert_eq!(names(&events(&fx, true)).len(), 5, "beaconed once when hidden");
        let fx = m.handle(T0 + 20, Input::PageClosed);
        assert!(events(&fx, true).is_empty(), "not again on pagehide");
        // Shown again (no pagehide came): nothing goes by fetch until the window passed.
        let mut m2 = m;
        let fx = m2.handle(T0 + 1500, Input::Tick);
        assert!(events(&fx, false).is_empty(), "within the acknowledgement window");
        let fx = m2.handle(T0 + 6000, Input::Tick);
        assert!(events(&fx, false).is_empty(), "asked about before they are sent again");
        let ids = asked(&fx);
        assert_eq!(ids.len(), 5);
        // Two beacons of five were lost: those go again, the others not.
        let fx = m2.handle(T0 + 6050, known(&ids[2..]));
        assert_eq!(events(&fx, false).iter().map(|e| field(e, "id").unwrap_or_default().to_owned()).collect::<Vec<_>>(), ids[..2]);
    }

    #[test]
    fn a_queue_left_by_another_tab_is_adopted_at_the_first_tick_and_sent_once() {
        let storage = Shared::default();
        let (mut old, _) = page(&storage, no_plan(), T0, 0);
        for _ in 0..3 {
            track(&mut old, T0, "left_behind");
        }
        old.handle(T0 + 1, Input::Persist);
        // That tab died (no pagehide); a page opened long after its heartbeat lapsed.
        let later = T0 + 60_000;
        let (mut new, fx) = page(&storage, no_plan(), later, 50);
        assert!(events(&fx, false).is_empty() && asked(&fx).is_empty(), "init leaves the scan to the first tick");
        assert_eq!(storage.keys_with_prefix(crate::core::delivery::QUEUE_PREFIX).len(), 1, "still the old tab's");
        assert!(fx.contains(&Effect::ScheduleTick(TICK_MS)));
        let fx = new.handle(later + i64::from(TICK_MS), Input::Tick);
        // A dead tab's keepalive fetch may have arrived: asked about before it is sent.
        let ids = asked(&fx);
        assert_eq!(ids.len(), 3);
        let fx = new.handle(later + 1001, known(&[]));
        assert_eq!(names(&events(&fx, false)), ["left_behind"; 3]);
        let fx = new.handle(later + 1002, ack());
        assert!(events(&fx, false).is_empty());
        let fx = new.handle(later + 2000, Input::Tick);
        assert!(events(&fx, false).is_empty() && asked(&fx).is_empty(), "sent once");
        assert!(storage.keys_with_prefix(crate::core::delivery::QUEUE_PREFIX).is_empty(), "nothing left queued");
    }

    #[test]
    fn a_reload_adopts_the_queue_but_skips_events_in_flight_until_their_window_passed() {
        let storage = Shared::default();
        let (mut old, _) = page(&storage, no_plan(), T0, 0);
        for i in 0..4 {
            track(&mut old, T0 + i, "before_reload");
        }
        let fx = old.handle(T0 + 10, Input::PageHidden);
        assert_eq!(events(&fx, true).len(), 4);
        old.handle(T0 + 11, Input::PageClosed);
        // The reloaded page, a moment later: the old tab's events are on their way.
        let (mut new, _) = page(&storage, no_plan(), T0 + 200, 50);
        let fx = new.handle(T0 + 1300, Input::Tick);
        assert!(events(&fx, false).is_empty(), "not adopted within the window");
        let fx = new.handle(T0 + 5100, Input::Tick);
        assert!(events(&fx, false).is_empty(), "adopted after the window, and asked about");
        let ids = asked(&fx);
        assert_eq!(ids.len(), 4);
        // The beacons arrived: nothing is sent twice, and the queue is empty.
        let fx = new.handle(T0 + 5200, known(&ids));
        assert!(events(&fx, false).is_empty(), "not sent again");
        let fx = new.handle(T0 + 9000, Input::Tick);
        assert!(events(&fx, false).is_empty() && asked(&fx).is_empty(), "and not later");
        assert!(storage.0.borrow().entries.keys().all(|k| !k.starts_with(crate::core::delivery::QUEUE_PREFIX)), "nothing left queued");
    }

    #[test]
    fn a_refused_origin_gives_one_console_line_and_nothing_is_sent_again() {
        let storage = Shared::default();
        let (mut m, _) = page(&storage, no_plan(), T0, 0);
        track(&mut m, T0, "a");
        let fx = m.handle(T0 + 1, Input::Flush(1));
        assert_eq!(events(&fx, false).len(), 1);
        let fx = m.handle(T0 + 2, Input::Answered { status: 403, retry_after: None, body: String::new() });
        let lines = consoles(&fx);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains("https://app.example") && lines[0].contains("allowedOrigins"), "{}", lines[0]);
        assert!(fx.contains(&Effect::ResolveFlush(1)), "the events are dropped: nothing to wait for");
        let mut later = Vec::new();
        for i in 0..5 {
            later.extend(track(&mut m, T0 + 10 + i, "b"));
            later.extend(m.handle(T0 + 2000 * (i + 1), Input::Tick));
        }
        later.extend(m.handle(T0 + 20_000, Input::PageHidden));
        later.extend(m.handle(T0 + 20_001, Input::Flush(2)));
        assert!(events(&later, false).is_empty() && events(&later, true).is_empty(), "no retry, no beacon");
        assert!(consoles(&later).is_empty(), "one line, not one per event");
        assert!(later.contains(&Effect::ResolveFlush(2)));
        // 401: the write key.
        let storage = Shared::default();
        let (mut m, _) = page(&storage, no_plan(), T0, 0);
        track(&mut m, T0, "a");
        m.handle(T0 + 1, Input::Flush(1));
        let fx = m.handle(T0 + 2, Input::Answered { status: 401, retry_after: None, body: String::new() });
        assert!(consoles(&fx)[0].contains("writeKey"));
    }

    #[test]
    fn identifying_as_another_user_starts_a_fresh_anonymous_id_even_after_a_reload() {
        let storage = Shared::default();
        let (mut m, _) = page(&storage, no_plan(), T0, 0);
        let first_anon = storage.get(ANON_KEY).expect("anonymous id");
        track(&mut m, T0, "browsing");
        m.handle(T0 + 1, Input::Identify { user_id: "alice".into(), traits: Vec::new() });
        m.handle(T0 + 2, Input::Identify { user_id: "alice".into(), traits: Vec::new() });
        assert_eq!(storage.get(ANON_KEY).as_deref(), Some(first_anon.as_str()), "the same user again: same id");
        m.handle(T0 + 3, Input::Identify { user_id: "bob".into(), traits: Vec::new() });
        track(&mut m, T0 + 4, "as_bob");
        let sent = events(&m.handle(T0 + 5, Input::Flush(1)), false);
        let by_name = |n: &str| sent.iter().filter(|e| field(e, "name") == Some(n)).collect::<Vec<_>>();
        let identifies = by_name("identify");
        assert_eq!(field(identifies[0], "anonymousId"), Some(first_anon.as_str()), "alice links the browsing");
        let bob_anon = field(identifies[2], "anonymousId").expect("anon");
        assert_ne!(bob_anon, first_anon, "bob starts from a fresh anonymous id");
        assert_eq!(field(by_name("as_bob")[0], "anonymousId"), Some(bob_anon));
        assert_eq!(field(by_name("browsing")[0], "userId"), None, "queued events keep their identity");
        m.handle(T0 + 6, ack());
        // A later page view: the browser was bob's; carol gets a fresh id too.
        let (mut next, _) = page(&storage, no_plan(), T0 + 60_000, 90);
        next.handle(T0 + 60_001, Input::Identify { user_id: "bob".into(), traits: Vec::new() });
        assert_eq!(storage.get(ANON_KEY).as_deref(), Some(bob_anon), "bob again: kept");
        next.handle(T0 + 60_002, Input::Identify { user_id: "carol".into(), traits: Vec::new() });
        assert_ne!(storage.get(ANON_KEY).as_deref(), Some(bob_anon), "carol: fresh");
        // After reset, the next user is not "another user": the anonymous visitor becomes them.
        next.handle(T0 + 60_003, Input::Reset);
        let anon = storage.get(ANON_KEY);
        next.handle(T0 + 60_004, Input::Identify { user_id: "dave".into(), traits: Vec::new() });
        assert_eq!(storage.get(ANON_KEY), anon);
    }

    #[test]
    fn group_puts_the_account_on_every_later_event_across_page_views_until_reset() {
        let storage = Shared::default();
        let (mut m, _) = page(&storage, no_plan(), T0, 0);
        track(&mut m, T0, "before");
        m.handle(T0 + 1, Input::Group { account_id: "acme".into(), traits: vec![("plan".into(), Value::Str("pro".into()))] });
        track(&mut m, T0 + 2, "after");
        m.handle(T0 + 3, Input::Track { name: "own".into(), props: vec![("accountId".into(), Value::Str("other".into()))], at: None });
        let sent = events(&m.handle(T0 + 4, Input::Flush(1)), false);
        assert_eq!(names(&sent), ["before", "group", "after", "own"]);
        assert_eq!(prop(&sent[0], "accountId"), None);
        assert_eq!(field(&sent[1], "type"), Some("identify"));
        assert_eq!(prop(&sent[1], "account").and_then(|a| a.get("plan")), Some(&Value::Str("pro".into())));
        assert_eq!(prop(&sent[2], "accountId"), Some(&Value::Str("acme".into())));
        assert_eq!(prop(&sent[3], "accountId"), Some(&Value::Str("other".into())), "an event's own accountId wins");
        m.handle(T0 + 5, ack());
        let (mut next, _) = page(&storage, no_plan(), T0 + 60_000, 70);
        track(&mut next, T0 + 60_001, "reloaded");
        next.handle(T0 + 60_002, Input::Reset);
        track(&mut next, T0 + 60_003, "logged_out");
        let sent = events(&next.handle(T0 + 60_004, Input::Flush(1)), false);
        assert_eq!(prop(&sent[0], "accountId"), Some(&Value::Str("acme".into())), "a reload keeps it");
        assert_eq!(prop(&sent[1], "accountId"), None, "reset clears it");
        assert_eq!(storage.get(ACCOUNT_KEY), None);
        // Another user identifying clears it too (as reset would).
        next.handle(T0 + 60_005, Input::Identify { user_id: "u1".into(), traits: Vec::new() });
        next.handle(T0 + 60_006, Input::Group { account_id: "acme".into(), traits: Vec::new() });
        next.handle(T0 + 60_007, Input::Identify { user_id: "u2".into(), traits: Vec::new() });
        assert_eq!(storage.get(ACCOUNT_KEY), None);
    }

    #[test]
    fn a_bad_plan_disables_onramp_with_one_line_and_answers_waiting_flushes() {
        let storage = Shared::default();
        let (mut m, _) = page(&storage, None, T0, 0);
        track(&mut m, T0, "kept");
        m.handle(T0 + 1, Input::Flush(3));
        let error = PlanError { pointer: "/milestones/0/id".into(), problem: "is empty".into(), expected: "an id".into() };
        let fx = m.handle(T0 + 2, Input::PlanRefused(error));
        assert_eq!(consoles(&fx).len(), 1);
        assert!(consoles(&fx)[0].contains("/milestones/0/id"));
        assert!(fx.contains(&Effect::Stop) && fx.contains(&Effect::ResolveFlush(3)));
        assert!(!m.is_running());
        assert!(m.handle(T0 + 3, Input::Tick).is_empty(), "nothing runs any more");
        assert!(!storage.keys_with_prefix("onramp.q.").is_empty(), "queued events stay stored for a later page");
    }

    #[test]
    fn a_second_init_replaces_the_first_and_answers_its_flushes() {
        let storage = Shared::default();
        let (mut m, _) = page(&storage, no_plan(), T0, 0);
        track(&mut m, T0, "x");
        m.handle(T0 + 1, Input::Flush(1));
        track(&mut m, T0 + 1, "y"); // recorded, not yet written (that waits for the end of the task)
        let fx = m.handle(T0 + 2, Input::Init { options: options(no_plan()), page_origin: ORIGIN.into() });
        assert_eq!(fx[..2], [Effect::Stop, Effect::ResolveFlush(1)]);
        assert!(fx.contains(&Effect::Listen));
        // The replaced SDK's queue is adopted once its heartbeat lapses: nothing is lost.
        let fx = m.handle(T0 + 12_000, Input::Tick);
        let ids = asked(&fx);
        assert_eq!(ids.len(), 2, "its tab did not close: asked about first");
        let fx = m.handle(T0 + 12_001, known(&[]));
        assert_eq!(names(&events(&fx, false)), ["x", "y"]);
    }

    #[test]
    fn an_impossible_sign_up_time_is_left_out_with_one_line_and_the_identify_still_sent() {
        let storage = Shared::default();
        let (mut m, _) = page(&storage, no_plan(), T0, 0);
        let fx = m.handle(T0, Input::Identify { user_id: "u".into(), traits: vec![("signedUpAt".into(), Value::Num(-5.0))] });
        assert_eq!(consoles(&fx).len(), 1);
        let sent = events(&m.handle(T0 + 1, Input::Flush(1)), false);
        assert_eq!(names(&sent), ["identify"]);
        assert_eq!(prop(&sent[0], "signedUpAt"), None);
    }

    const MIN: i64 = 60_000;
    const DAY: i64 = 24 * 60 * MIN;

    /// What the collector serves (`GET /v1/state`, docs/IDENTITY.md) for a user who, on a laptop
    /// at T0, signed up at T0 + 1 min and dismissed the welcome tip, in one 10-minute session.
    fn laptop_state() -> String {
        let (t0, end) = (T0, T0 + 10 * MIN);
        format!(
            r#"{{"v":1,"signup":null,"firstSeen":{t0},"lastTs":{end},"reached":{{"signed_up":{}}},"counts":{{}},"done":{{}},
            "firstStart":{t0},"firstEnd":{end},"secondStart":null,"lastActivity":{end},"session":{{"start":{t0},"last":{end},"tips":{{}},"lastTip":null}},
            "tips":{{"welcome":{{"shown":{{}},"last":{t0},"dismissed":{},"snoozedUntil":null,"step":0}}}}}}"#,
            T0 + MIN,
            T0 + 2 * MIN
        )
    }

    fn fetches(fx: &[Effect]) -> Vec<(&str, &str)> {
        fx.iter().filter_map(|e| if let Effect::FetchState { url, user_id } = e { Some((url.as_str(), user_id.as_str())) } else { None }).collect()
    }

    /// Everything sent from now on: flushed and acknowledged.
    fn sent(m: &mut Machine<Shared, Counter>, now: i64) -> Vec<Value> {
        let sent = events(&m.handle(now, Input::Flush(now as u64)), false);
        m.handle(now, ack());
        sent
    }

    #[cfg(feature = "guide")]
    fn reached(m: &mut Machine<Shared, Counter>, now: i64, milestone: &str) -> Option<i64> {
        m.with_engine(now, false, |e, _, _| e.reached(milestone)).0.flatten()
    }

    /// The engine's state is written once per task, with the queue (`Input::Persist`), or when
    /// the page is hidden; the write merges what another tab stored meanwhile, and the next
    /// task's first event reads what the other tab wrote.
    #[cfg(feature = "guide")]
    #[test]
    fn the_users_state_is_written_at_the_end_of_the_task_merged_with_other_tabs() {
        let storage = Shared::default();
        let stored = || {
            let anon = storage.get(ANON_KEY).unwrap_or_default();
            storage.get(&[crate::core::engine::STATE_PREFIX, &anon].concat())
        };
        let reached_in_storage = |id: &str| stored().and_then(|text| crate::core::engine::UserState::from_json(&text).reached.get(id).copied());
        let (mut a, _) = page(&storage, None, T0, 5);
        let (mut b, _) = page(&storage, None, T0, 6);
        for tab in [&mut a, &mut b] {
            tab.handle(T0, Input::PlanLoaded(crate::core::engine::tests::trackly()));
            tab.handle(T0, Input::Persist);
        }
        let before = stored();
        assert!(before.is_some(), "the first page view's state is stored");
        // Tab A: two events in one task. Nothing is serialised or written until its end.
        let fx = track(&mut a, T0 + 1, "signed_up");
        assert!(fx.contains(&Effect::PersistSoon), "the write is asked for");
        track(&mut a, T0 + 2, "teammate_invited");
        assert_eq!(stored(), before, "not written within the task");
        // Meanwhile tab B's task: its own event, written at its end.
        track(&mut b, T0 + 3, "file_uploaded");
        b.handle(T0 + 3, Input::Persist);
        assert_eq!(reached_in_storage("file_uploaded"), Some(T0 + 3));
        assert_eq!(reached_in_storage("signed_up"), None);
        // Tab A's end of task: its changes and B's, merged.
        a.handle(T0 + 4, Input::Persist);
        assert_eq!((reached_in_storage("signed_up"), reached_in_storage("teammate_invited"), reached_in_storage("file_uploaded")), (Some(T0 + 1), Some(T0 + 2), Some(T0 + 3)));
        // Tab B's next task reads A's write before its event: signed_up is not reached twice.
        sent(&mut b, T0 + 5);
        track(&mut b, T0 + 6, "signed_up");
        let milestones: Vec<String> = sent(&mut b, T0 + 7).iter().filter(|e| field(e, "type") == Some("milestone")).map(|e| field(e, "name").unwrap_or_default().to_string()).collect();
        assert!(!milestones.contains(&"signed_up".to_string()), "{milestones:?}");
        assert_eq!(reached(&mut b, T0 + 7, "signed_up"), Some(T0 + 1));
        // A page hidden before its end-of-task timer: the state is written with the beacon.
        track(&mut a, T0 + 8, "project_created");
        assert_eq!(reached_in_storage("project_created"), None);
        a.handle(T0 + 9, Input::PageHidden);
        assert_eq!(reached_in_storage("project_created"), Some(T0 + 8));
        // A reload (a new page over the same storage) starts from all of it.
        let (mut c, _) = page(&storage, None, T0 + 10, 7);
        c.handle(T0 + 10, Input::PlanLoaded(crate::core::engine::tests::trackly()));
        for id in ["signed_up", "teammate_invited", "file_uploaded", "project_created"] {
            assert!(reached(&mut c, T0 + 11, id).is_some(), "{id} survives the reload");
        }
    }

    #[cfg(feature = "guide")]
    #[test]
    fn identify_fetches_the_users_state_and_merges_it_like_another_tab() {
        let phone = Shared::default();
        let now = T0 + 2 * DAY;
        let (mut m, _) = page(&phone, None, now, 1);
        m.handle(now, Input::PlanLoaded(crate::core::engine::tests::trackly()));
        let fx = m.handle(now + 1, Input::Identify { user_id: "ann b".into(), traits: vec![("userHash".into(), Value::Str("ab/+".into()))] });
        let anon = m.sdk.as_ref().map(|s| s.client.anonymous_id.clone()).unwrap_or_default();
        let url = format!("https://c.example/v1/state?writeKey=wk_demo&user=ann%20b&userHash=ab%2F%2B&anonymousId={anon}");
        assert_eq!(fetches(&fx), [(url.as_str(), "ann b")], "the device's anonymous id, so the counts served are the other devices'");
        assert!(fetches(&m.handle(now + 2, Input::Identify { user_id: "ann b".into(), traits: Vec::new() })).is_empty(), "once per page and user");
        // Before the answer the phone knows nothing of the laptop: its own signed_up goes out.
        track(&mut m, now + 3, "signed_up");
        assert!(names(&sent(&mut m, now + 4)).contains(&"signed_up".to_string()));

        // Offline: local state goes on alone, and the state is asked for again once online.
        assert!(m.handle(now + 5, Input::RemoteState { user_id: "ann b".into(), body: None }).is_empty());
        assert_eq!(reached(&mut m, now + 5, "signed_up"), Some(now + 3));
        assert_eq!(fetches(&m.handle(now + 6, Input::Online)).len(), 1, "reconciles when back online");

        let fx = m.handle(now + 7, Input::RemoteState { user_id: "ann b".into(), body: Some(laptop_state()) });
        assert!(fx.contains(&Effect::Render(None)), "the tips are decided again");
        assert_eq!(reached(&mut m, now + 7, "signed_up"), Some(T0 + MIN), "the earliest reached time wins");
        let dismissed = m.with_engine(now, false, |e, _, _| e.state.tips.get("welcome").and_then(|t| t.dismissed)).0.flatten();
        assert_eq!(dismissed, Some(T0 + 2 * MIN), "dismissed on the laptop, dismissed here");
        // This page view is the user's second session: the laptop's first one is measured, once.
        let out = sent(&mut m, now + 8);
        assert_eq!(names(&out), ["first_session_length", "return_interval"]);
        assert_eq!(prop(&out[0], "valueMs"), Some(&Value::Num((10 * MIN) as f64)));
        // The user's own timeline on this device starts at identify (now + 1).
        assert_eq!(prop(&out[1], "valueMs"), Some(&Value::Num((2 * DAY + 1) as f64)));
        // `after` holds across devices: project_created needs signed_up, reached on the laptop.
        track(&mut m, now + 9, "project_created");
        let out = sent(&mut m, now + 10);
        assert!(names(&out).contains(&"project_created".to_string()) && !names(&out).contains(&"signed_up".to_string()), "{:?}", names(&out));
        // The same answer again (another identify after a failure, say) changes nothing.
        m.handle(now + 11, Input::RemoteState { user_id: "ann b".into(), body: Some(laptop_state()) });
        assert_eq!(names(&sent(&mut m, now + 12)), Vec::<String>::new());
    }

    #[cfg(feature = "guide")]
    #[test]
    fn a_state_before_the_plan_waits_for_it_and_one_for_a_former_user_is_dropped() {
        let storage = Shared::default();
        let now = T0 + 5 * MIN; // within the laptop's session: the same session, no metric
        let (mut m, _) = page(&storage, None, now, 2);
        m.handle(now, Input::Identify { user_id: "ann".into(), traits: Vec::new() });
        m.handle(now + 1, Input::RemoteState { user_id: "ann".into(), body: Some(laptop_state()) });
        m.handle(now + 2, Input::PlanLoaded(crate::core::engine::tests::trackly()));
        assert_eq!(reached(&mut m, now + 2, "signed_up"), Some(T0 + MIN));
        assert!(!names(&sent(&mut m, now + 3)).iter().any(|n| n == "signed_up" || n == "first_session_length"));
        // A shared computer: Ann logs out; her late answer must not become the next user's.
        m.handle(now + 4, Input::Reset);
        m.handle(now + 5, Input::RemoteState { user_id: "ann".into(), body: Some(laptop_state()) });
        assert_eq!(reached(&mut m, now + 5, "signed_up"), None);
        let fx = m.handle(now + 6, Input::Identify { user_id: "bob".into(), traits: Vec::new() });
        let anon = m.sdk.as_ref().map(|s| s.client.anonymous_id.clone()).unwrap_or_default();
        let url = format!("https://c.example/v1/state?writeKey=wk_demo&user=bob&anonymousId={anon}");
        assert_eq!(fetches(&fx), [(url.as_str(), "bob")]);
        // Bob without a reset after Ann: also a fresh start, and Ann's answer is dropped.
        let fx = m.handle(now + 7, Input::Identify { user_id: "cy".into(), traits: Vec::new() });
        assert_eq!(fetches(&fx).len(), 1);
        m.handle(now + 8, Input::RemoteState { user_id: "bob".into(), body: Some(laptop_state()) });
        assert_eq!(reached(&mut m, now + 8, "signed_up"), None);
    }

    #[cfg(feature = "guide")]
    #[test]
    fn a_second_session_waits_for_the_collector_before_measuring_the_first_one() {
        // Ann's first session on this laptop at T0; she is back two days later.
        let laptop = Shared::default();
        let (mut m, _) = page(&laptop, None, T0, 3);
        m.handle(T0, Input::PlanLoaded(crate::core::engine::tests::trackly()));
        m.handle(T0, Input::Identify { user_id: "ann".into(), traits: Vec::new() });
        m.handle(T0 + 1, Input::RemoteState { user_id: "ann".into(), body: Some("{}".into()) });
        track(&mut m, T0 + 5 * MIN, "files_viewed");
        sent(&mut m, T0 + 5 * MIN);
        m.handle(T0 + 5 * MIN, Input::Persist);
        let later = T0 + 2 * DAY;
        let measured = r#"{"done":{"first_session_length":1,"return_interval":1}}"#.to_string();
        for (answer, plan_first, expected) in [
            // The phone measured it already (the collector's `done`): not again.
            (Some(measured.clone()), true, Vec::<String>::new()),
            // The same, with the answer in before the plan.
            (Some(measured), false, Vec::new()),
            // Offline: measured from local state alone.
            (None, true, vec!["first_session_length".to_string(), "return_interval".to_string()]),
        ] {
            let storage = Shared(Rc::new(RefCell::new(laptop.0.borrow().clone())));
            let (mut m, _) = page(&storage, None, later, 4);
            if plan_first {
                m.handle(later, Input::PlanLoaded(crate::core::engine::tests::trackly()));
            }
            m.handle(later, Input::Identify { user_id: "ann".into(), traits: Vec::new() });
            assert!(!names(&sent(&mut m, later + 1)).iter().any(|n| n == "first_session_length"), "held for the answer");
            m.handle(later + 2, Input::RemoteState { user_id: "ann".into(), body: answer });
            if !plan_first {
                m.handle(later + 2, Input::PlanLoaded(crate::core::engine::tests::trackly()));
            }
            let names = names(&sent(&mut m, later + 3));
            assert_eq!(names.iter().filter(|n| n.ends_with("_length") || n.ends_with("_interval")).cloned().collect::<Vec<_>>(), expected);
        }
    }
}
