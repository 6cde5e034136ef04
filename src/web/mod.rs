//! The browser layer: the functions JavaScript calls, and the clock, storage and network the
//! core needs. Nothing here decides anything; it only moves data between the page and
//! [`crate::core`]. Every export catches its own failures: the host page must never see an
//! exception from onramp.
//!
//! # Two builds
//!
//! With the `guide` feature (the default) this is the full SDK: events, auto-capture and
//! delivery, plus the milestone engine and the tips UI. Without it, the lean *tracker*: events,
//! auto-capture (the plan's capture rules only) and delivery. The full build writes
//! [`LEAN_KEY`] (the user and the plan version) while the engine says the user's onboarding is
//! over ([`Engine::needs_guide`]) and removes it otherwise; the loader then fetches the tracker
//! alone. The tracker removes the mark when the plan's version changes, another user is
//! identified, or on `reset`, so the next page view brings the guide back.
//!
//! A third build, with `preview`, adds preview and debug mode ([`preview`]) to the guide; the
//! loader fetches it only for a preview link, so no user downloads it.

#[cfg(not(feature = "guide"))]
pub(crate) mod browser_json;
mod capture;

use std::cell::RefCell;

use gloo_events::EventListener;
use gloo_timers::callback::Interval;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::core::client::{Client, Entropy};
use crate::core::delivery::{Next, Outbox, Policy};
#[cfg(feature = "guide")]
use crate::core::engine::{Emit, Engine};
use crate::core::json::{self, Value};
use crate::core::plan::{CaptureRule, Plan, PlanError};
use crate::core::storage::{KeyValue, WriteBehind};
use crate::core::wire::EventType;

#[cfg(feature = "preview")]
mod preview;
#[cfg(feature = "guide")]
mod tips;

/// `localStorage` key read by the loader (www/sdk/loader.js): present, the page loads the lean
/// tracker only. Its value is `<plan version>\n<user id>`.
const LEAN_KEY: &str = "onramp.lean";

/// The outbox's clock tick: heartbeat, adoption of dead tabs, batching by time, retries.
const TICK_MS: u32 = 1000;
const ANON_KEY: &str = "onramp.anonymousId";
#[cfg(feature = "guide")]
type Props = Vec<(String, Value)>;

/// Product events kept while the plan loads, replayed into the engine when it arrives.
#[cfg(feature = "guide")]
const MAX_EARLY: usize = 200;

struct Sdk {
    client: Client,
    outbox: Outbox<BrowserStorage>,
    batch_url: String,
    /// Made once and reused by every request, so no closure is created or leaked per send.
    on_response: Closure<dyn FnMut(JsValue)>,
    on_400_body: Closure<dyn FnMut(JsValue)>,
    on_413_body: Closure<dyn FnMut(JsValue)>,
    on_network_error: Closure<dyn FnMut(JsValue)>,
    /// This page's id: the outbox's tab, and the engine's entry in its per-tab counters.
    #[cfg(feature = "guide")]
    tab: String,
    /// Where the engine keeps the user's milestone state (`localStorage`, or nothing), written
    /// at the end of the task like the outbox (see [`schedule_write`]).
    kv: WriteBehind<BrowserStorage>,
    /// The milestone engine, once the plan has loaded; `None` before, or with no plan.
    #[cfg(feature = "guide")]
    engine: Option<Engine>,
    /// Product events seen before the plan arrived (at most [`MAX_EARLY`]).
    #[cfg(feature = "guide")]
    early: Vec<(String, Props, i64)>,
    /// Sign-up time from `identify`, for an engine that starts after it.
    #[cfg(feature = "guide")]
    signup: Option<i64>,
    /// `init`'s `tips` options, for the tips layer once the plan has loaded.
    #[cfg(feature = "guide")]
    tips_options: Value,
    /// The [`LEAN_KEY`] value last written (full build) or found (tracker).
    lean: Option<String>,
    /// `flush()` promises waiting for the acknowledgement of what was queued before them.
    flush_waiters: Vec<(u64, js_sys::Function)>,
    /// Set right after the SDK is stored (the callbacks find it there).
    hooks: Option<PageHooks>,
    /// Auto-capture's history wrappers, listeners and observer, once the plan has loaded.
    capture: Option<capture::Hooks>,
}

/// `localStorage`, or nothing when the browser refuses it (the outbox then works in memory).
struct BrowserStorage(Option<web_sys::Storage>);

impl KeyValue for BrowserStorage {
    fn get(&self, key: &str) -> Option<String> {
        self.0.as_ref()?.get_item(key).ok().flatten()
    }
    fn set(&mut self, key: &str, value: &str) -> bool {
        // Throws QuotaExceededError when full: reported as false, never to the page.
        self.0.as_ref().is_some_and(|s| s.set_item(key, value).is_ok())
    }
    fn remove(&mut self, key: &str) {
        if let Some(s) = &self.0 {
            let _ = s.remove_item(key);
        }
    }
    fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        let Some(s) = &self.0 else { return Vec::new() };
        let n = s.length().unwrap_or(0);
        (0..n).filter_map(|i| s.key(i).ok().flatten()).filter(|k| k.starts_with(prefix)).collect()
    }
}

thread_local! {
    static SDK: RefCell<Option<Sdk>> = const { RefCell::new(None) };
}

struct BrowserEntropy;
impl Entropy for BrowserEntropy {
    /// `crypto.getRandomValues`, as the docs promise: ids from another user's page must not
    /// be guessable from ours (Math.random's state can be recovered from its outputs).
    fn fill(&mut self, out: &mut [u8]) {
        let filled = web_sys::window().and_then(|w| w.crypto().ok()).is_some_and(|c| c.get_random_values_with_u8_array(out).is_ok());
        if !filled {
            // No Web Crypto (never in a current browser): unique still, if guessable.
            for b in out {
                *b = (js_sys::Math::random() * 256.0) as u8;
            }
        }
    }
}

fn now_ms() -> i64 {
    js_sys::Date::now() as i64
}

fn console_error(message: &str) {
    web_sys::console::error_1(&JsValue::from_str(message));
}

fn local_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}

/// Reads a JS value as our JSON value, via the browser's own JSON.stringify (smaller than
/// walking the object through bindings).
fn to_value(js: &JsValue) -> Value {
    if js.is_undefined() || js.is_null() {
        return Value::Obj(Vec::new());
    }
    js_sys::JSON::stringify(js)
        .ok()
        .and_then(|s| s.as_string())
        .and_then(|s| json::parse(&s).ok())
        .unwrap_or(Value::Obj(Vec::new()))
}

fn object_entries(value: Value) -> Vec<(String, Value)> {
    match value {
        Value::Obj(entries) => entries,
        _ => Vec::new(),
    }
}

/// Runs `f`, then moves what it recorded into the persistent outbox; a full batch goes at once,
/// smaller ones on the next tick.
fn with_sdk(f: impl FnOnce(&mut Sdk)) {
    let send = SDK.with(|cell| {
        // Never busy for the page's calls (they wait in DEFERRED, see `Call`); a timer firing
        // inside a host callback finds its work again on the next tick. Never a panic.
        let Ok(mut guard) = cell.try_borrow_mut() else { return false };
        let Some(sdk) = guard.as_mut() else { return false };
        f(sdk);
        let send = enqueue_recorded(sdk);
        if sdk.kv.has_pending() || sdk.outbox.has_unwritten() {
            schedule_write();
        }
        send
    });
    if send {
        send_batch(false);
    }
}

thread_local! {
    static WRITE_SCHEDULED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Storage writes wait for the end of the task (a 0 ms timer): a burst of `track` calls then
/// costs one `localStorage` write per key, not one per call, and `setItem` is by far the
/// dearest part of recording an event. Sends, the tick and page hide write first.
fn schedule_write() {
    if WRITE_SCHEDULED.with(|s| s.replace(true)) {
        return;
    }
    let Some(window) = web_sys::window() else { return };
    let cb = Closure::once_into_js(write_now);
    let _ = window.set_timeout_with_callback_and_timeout_and_arguments_0(cb.unchecked_ref(), 0);
}

fn write_now() {
    WRITE_SCHEDULED.with(|s| s.set(false));
    SDK.with(|cell| match cell.try_borrow_mut() {
        Ok(mut guard) => {
            if let Some(sdk) = guard.as_mut() {
                write_storage(sdk);
            }
        }
        // Re-entered from a host callback: try again after it.
        Err(_) => schedule_write(),
    });
}

fn write_storage(sdk: &mut Sdk) {
    #[cfg(feature = "preview")]
    if preview::active() {
        return; // preview works on an in-memory copy of the user's state
    }
    sdk.kv.flush();
    sdk.outbox.persist_pending();
}

#[cfg(feature = "guide")]
fn record(client: &mut Client, emits: Vec<Emit>, now: i64) {
    for e in emits {
        client.record(e.kind, &e.name, e.props, now, &mut BrowserEntropy);
    }
}

/// Runs `f` with the engine and storage, and records the events it returns: the tips layer's
/// way in. `None` when there is no plan.
#[cfg(feature = "guide")]
fn with_engine<R>(f: impl FnOnce(&mut Engine, &mut dyn KeyValue, &mut Vec<Emit>) -> R) -> Option<R> {
    let mut result = None;
    with_sdk(|sdk| {
        let Some(engine) = sdk.engine.as_mut() else { return };
        let mut out = Vec::new();
        result = Some(f(engine, &mut sdk.kv, &mut out));
        record(&mut sdk.client, out, now_ms());
    });
    result
}

/// Moves what the client recorded into the persistent outbox (persisted at once), reports
/// drops, and says whether a batch is due.
fn enqueue_recorded(sdk: &mut Sdk) -> bool {
    let now = now_ms();
    #[cfg(feature = "preview")]
    if preview::active() {
        preview::keep(sdk.client.take_recorded(), sdk.engine.as_ref().map(Engine::plan)); // never sent
    }
    for event in sdk.client.take_recorded() {
        sdk.outbox.push(&event, now);
    }
    sdk.outbox.report_drops(&mut sdk.client, now, &mut BrowserEntropy);
    sdk.outbox.due(now, false)
}

/// A call from the page. One that arrives while onramp is busy — a host callback onramp invoked
/// (a wrapped `fetch`, a patched `setItem` or `console.error`) calling back into it — waits in
/// [`DEFERRED`], in order, and runs as soon as onramp is free: no call is dropped.
enum Call {
    Init(JsValue),
    Identify(String, JsValue),
    Track(String, JsValue, Option<f64>),
    Complete(String),
    Reset,
    Flush(Option<js_sys::Function>),
}

thread_local! {
    static DEFERRED: RefCell<std::collections::VecDeque<Call>> = const { RefCell::new(std::collections::VecDeque::new()) };
}

/// Runs `call` now, or after the calls already waiting (see [`Call`]).
fn run(call: Call) {
    let waiting = DEFERRED.with(|d| !d.borrow().is_empty());
    if waiting || SDK.with(|cell| cell.try_borrow_mut().is_err()) {
        DEFERRED.with(|d| d.borrow_mut().push_back(call));
        if !waiting {
            schedule(run_deferred);
        }
        return;
    }
    apply(call);
}

fn run_deferred() {
    loop {
        if SDK.with(|cell| cell.try_borrow_mut().is_err()) {
            return schedule(run_deferred); // still busy (a timer inside a host callback)
        }
        let Some(call) = DEFERRED.with(|d| d.borrow_mut().pop_front()) else { return };
        apply(call);
    }
}

/// Runs `f` at the end of the current task (a 0 ms timer).
fn schedule(f: fn()) {
    let Some(window) = web_sys::window() else { return };
    let cb = Closure::once_into_js(f);
    let _ = window.set_timeout_with_callback_and_timeout_and_arguments_0(cb.unchecked_ref(), 0);
}

fn apply(call: Call) {
    match call {
        Call::Init(config) => start(config),
        Call::Identify(user_id, traits) => identify_user(&user_id, traits),
        Call::Track(name, props, at) => {
            let now = now_ms();
            let ts = at.filter(|t| t.is_finite() && *t > 0.0).map_or(now, |t| (t as i64).min(now));
            record_track(&name, object_entries(to_value(&props)), ts);
        }
        Call::Complete(milestone) => complete_milestone(&milestone),
        Call::Reset => reset_identity(),
        Call::Flush(done) => flush_now(done),
    }
}

/// Starts the SDK. `config` is `{ writeKey, collector }`; `collector` defaults to this page's
/// origin. A config error disables the SDK with one console message; the page is unaffected.
#[wasm_bindgen]
pub fn init(config: JsValue) {
    run(Call::Init(config));
}

/// Names the user. `traits` may carry `signedUpAt` (ms or ISO string, sent on as ms) and
/// anything else.
#[wasm_bindgen]
pub fn identify(user_id: String, traits: JsValue) {
    run(Call::Identify(user_id, traits));
}

/// Records a product event; `at` (Unix ms) when it happened earlier than now: a call the
/// paste-in snippet kept while the SDK loaded, or stored during an outage of the loader.
#[wasm_bindgen]
pub fn track(name: String, props: JsValue, at: Option<f64>) {
    run(Call::Track(name, props, at));
}

/// The user (or the page, relaying a server) confirms a customer milestone of the plan. The
/// tracker runs only for users whose milestones are all settled: nothing to confirm there.
#[wasm_bindgen]
pub fn complete(milestone: String) {
    run(Call::Complete(milestone));
}

/// Log-out: forget the user and start a new anonymous identity.
#[wasm_bindgen]
pub fn reset() {
    run(Call::Reset);
}

/// Sends what is queued now, without waiting for the batch interval or a backoff, and calls
/// `done` once everything queued before this call has left the queue: acknowledged by the
/// collector, or dropped (refused, expired). Without a running SDK, at once. The ES module
/// turns it into `flush()`'s promise.
#[wasm_bindgen]
pub fn flush(done: Option<js_sys::Function>) {
    run(Call::Flush(done));
}

fn start(config: JsValue) {
    let config = to_value(&config);
    let Some(write_key) = config.get("writeKey").and_then(Value::as_str) else {
        console_error("onramp: init: `writeKey` is required (a string such as \"wk_…\"); onramp is disabled");
        return;
    };
    let origin = web_sys::window().and_then(|w| w.location().origin().ok()).unwrap_or_default();
    let collector = config.get("collector").and_then(Value::as_str).unwrap_or(&origin);
    let batch_url = String::from(collector.trim_end_matches('/')) + "/v1/batch";
    #[cfg(feature = "preview")]
    preview::begin(collector, write_key);

    let storage = local_storage();
    let stored = storage.as_ref().and_then(|s| s.get_item(ANON_KEY).ok().flatten());
    let anonymous_id = stored.unwrap_or_else(|| {
        let id = Client::new_id(now_ms(), &mut BrowserEntropy);
        if let Some(s) = &storage {
            let _ = s.set_item(ANON_KEY, &id);
        }
        id
    });

    let tab = Client::new_id(now_ms(), &mut BrowserEntropy);
    let kv = WriteBehind::new(BrowserStorage(storage.clone()));
    // The queue is written at the end of the task, not on every push (see `schedule_write`).
    let policy = Policy { sync_persist_max: 0, ..Policy::default() };
    let outbox = Outbox::open(BrowserStorage(storage), write_key.into(), &tab, policy, now_ms());
    let sdk = Sdk {
        client: Client::new(anonymous_id),
        outbox,
        batch_url,
        on_response: Closure::new(on_response),
        on_400_body: Closure::new(|text: JsValue| settle(400, None, &text.as_string().unwrap_or_default())),
        on_413_body: Closure::new(|text: JsValue| settle(413, None, &text.as_string().unwrap_or_default())),
        on_network_error: Closure::new(|_: JsValue| settle(0, None, "")),
        #[cfg(feature = "guide")]
        tab,
        kv,
        #[cfg(feature = "guide")]
        engine: None,
        #[cfg(feature = "guide")]
        early: Vec::new(),
        #[cfg(feature = "guide")]
        signup: None,
        #[cfg(feature = "guide")]
        tips_options: config.get("tips").cloned().unwrap_or(Value::Null),
        lean: storage_get(LEAN_KEY),
        flush_waiters: Vec::new(),
        hooks: None,
        capture: None,
    };
    // A second init replaces the SDK, and with it the ticker and listeners (dropped here).
    let replaced = SDK.with(|cell| cell.borrow_mut().replace(sdk));
    if let Some(old) = replaced {
        resolve_flushes(old.flush_waiters.into_iter().map(|(_, f)| f));
    }
    let hooks = listen();
    with_sdk(|sdk| sdk.hooks = hooks);
    match config.get("plan") {
        Some(Value::Bool(false)) => {} // the page opted out: events only, no milestones
        Some(plan @ Value::Obj(_)) => start_plan(plan),
        Some(Value::Str(url)) => fetch_plan(url),
        None | Some(Value::Null) => {
            let mut url = String::with_capacity(collector.len() + 32 + write_key.len());
            url.push_str(collector.trim_end_matches('/'));
            url.push_str("/v1/plan?writeKey=");
            url.push_str(&String::from(js_sys::encode_uri_component(write_key)));
            fetch_plan(&url);
        }
        Some(other) => disable(&PlanError {
            pointer: String::new(),
            problem: String::from("init: `plan` is ") + other.kind(),
            expected: "a plan object, the URL of one, or false".into(),
        }),
    }
}

/// Fetches the plan. The collector answers with an ETag and `no-cache`, so the browser's cache
/// revalidates it and a 304 costs no download. A network failure or a project without a plan
/// (204) is not the plan being wrong: onramp goes on without milestones.
fn fetch_plan(url: &str) {
    let Some(window) = web_sys::window() else { return };
    let on_text = Closure::<dyn FnMut(JsValue)>::new(|text: JsValue| match json::parse(&text.as_string().unwrap_or_default()) {
        Ok(doc) => start_plan(&doc),
        Err(e) => disable(&PlanError { pointer: String::new(), problem: e.describe(), expected: "a JSON document".into() }),
    });
    let on_response = Closure::<dyn FnMut(JsValue)>::new(move |response: JsValue| {
        // 204: the project has no plan. Anything not 2xx: not the plan's fault either.
        let Some(response) = response.dyn_ref::<web_sys::Response>().filter(|r| r.ok() && r.status() != 204) else { return };
        if let Ok(text) = response.text() {
            IGNORE.with(|ignore| {
                let _ = text.then2(&on_text, ignore);
            });
        }
    });
    IGNORE.with(|ignore| {
        let _ = window.fetch_with_str(url).then2(&on_response, ignore);
    });
    on_response.forget(); // once per page
}

thread_local! {
    /// A rejection handler that does nothing, so a failed fetch is never an unhandled rejection.
    static IGNORE: Closure<dyn FnMut(JsValue)> = Closure::new(|_: JsValue| {});
}

/// One console error naming the field, and onramp steps aside: the page keeps working, events
/// already queued stay stored for a page with a good plan.
fn disable(error: &PlanError) {
    let mut message = String::from("onramp: ");
    message.push_str(&error.message());
    message.push_str(". onramp is disabled; the page is unaffected.");
    console_error(&message);
    if let Some(sdk) = SDK.with(|cell| cell.borrow_mut().take()) {
        resolve_flushes(sdk.flush_waiters.into_iter().map(|(_, f)| f));
    }
}

/// Asks the browser's own CSS parser about the plan's selectors (the core only checks their
/// shape); the first it refuses is the plan's error.
fn check_selectors<'a>(selectors: impl IntoIterator<Item = (String, &'a str)>) -> Result<(), PlanError> {
    let Some(document) = web_sys::window().and_then(|w| w.document()) else { return Ok(()) };
    for (pointer, selector) in selectors {
        // Tip targets may descend into shadow roots and iframes with `>>>` (docs/TIPS.md):
        // each segment is a selector of its own.
        if selector.split(">>>").any(|part| document.query_selector(part.trim()).is_err()) {
            return Err(PlanError {
                pointer,
                problem: String::from("the browser cannot parse the selector ") + selector,
                expected: "a valid CSS selector".into(),
            });
        }
    }
    Ok(())
}

/// Validates the plan, checks its selectors, then starts the engine, auto-capture and tips.
#[cfg(feature = "guide")]
fn start_plan(doc: &Value) {
    let plan = Plan::from_value(doc).and_then(|plan| check_selectors(plan.selectors()).map(|()| plan));
    let plan = match plan {
        Ok(plan) => plan,
        Err(e) => return disable(&e),
    };
    let rules = plan.capture.clone();
    let locale = plan.default_locale.clone();
    let mut tips_options = Value::Null;
    with_sdk(|sdk| {
        let now = now_ms();
        let mut engine = Engine::new(plan, sdk.tab.clone(), &sdk.client.anonymous_id, &sdk.kv);
        let mut emits = engine.touch(&mut sdk.kv, now);
        if let Some(user) = sdk.client.user_id.clone() {
            emits.extend(engine.identify(&mut sdk.kv, &user, sdk.signup, now));
        }
        for (name, props, ts) in std::mem::take(&mut sdk.early) {
            emits.extend(engine.observe(&mut sdk.kv, &name, &props, ts));
        }
        sdk.engine = Some(engine);
        record(&mut sdk.client, emits, now);
        tips_options = std::mem::replace(&mut sdk.tips_options, Value::Null);
        update_lean_mark(sdk, now);
    });
    start_capture(rules);
    tips::start(&tips_options, &locale);
    #[cfg(feature = "preview")]
    preview::plan_started();
}

/// The tracker reads only the plan's version and capture rules (see [`Plan::capture_only`]).
/// A new plan version may open milestones for this user: the mark goes, the next page view
/// loads the guide.
#[cfg(not(feature = "guide"))]
fn start_plan(doc: &Value) {
    let plan = Plan::capture_only(doc).and_then(|(version, rules)| {
        check_selectors(rules.iter().enumerate().filter_map(|(i, r)| {
            let mut pointer = String::from("/capture/");
            json::write_num(&mut pointer, i as f64);
            pointer.push_str("/selector");
            Some((pointer, r.on.selector()?))
        }))
        .map(|()| (version, rules))
    });
    let (version, rules) = match plan {
        Ok(plan) => plan,
        Err(e) => return disable(&e),
    };
    with_sdk(|sdk| {
        if sdk.lean.as_deref().and_then(|mark| mark.split_once('\n')).is_none_or(|(v, _)| v != version) {
            clear_lean_mark(sdk);
        }
    });
    start_capture(rules);
}

/// Installs auto-capture for the running SDK, which owns what it adds to the page (a disabled
/// or replaced SDK takes it away). The previous capture goes first: dropping it forgets the rules.
fn start_capture(rules: Vec<CaptureRule>) {
    with_sdk(|sdk| drop(sdk.capture.take()));
    let Some(hooks) = capture::install(rules) else { return };
    with_sdk(|sdk| sdk.capture = Some(hooks));
}

/// Full build: writes [`LEAN_KEY`] while this identified user's onboarding is over, removes it
/// otherwise; only when that changes, so an event costs no storage write for it.
#[cfg(feature = "guide")]
fn update_lean_mark(sdk: &mut Sdk, now: i64) {
    let Some(engine) = sdk.engine.as_ref() else { return };
    let mark = (!engine.needs_guide(now)).then(|| {
        let mut mark = engine.plan().version.clone();
        mark.push('\n');
        mark.push_str(engine.identity());
        mark
    });
    if mark != sdk.lean {
        match &mark {
            Some(value) => storage_set(LEAN_KEY, value),
            None => storage_remove(LEAN_KEY),
        }
        sdk.lean = mark;
    }
}

/// The next page view loads the guide again.
#[cfg_attr(feature = "guide", allow(dead_code))]
fn clear_lean_mark(sdk: &mut Sdk) {
    if sdk.lean.take().is_some() {
        storage_remove(LEAN_KEY);
    }
}

fn storage_get(key: &str) -> Option<String> {
    local_storage()?.get_item(key).ok().flatten()
}

#[cfg(feature = "guide")]
fn storage_set(key: &str, value: &str) {
    if let Some(s) = local_storage() {
        let _ = s.set_item(key, value);
    }
}

fn storage_remove(key: &str) {
    if let Some(s) = local_storage() {
        let _ = s.remove_item(key);
    }
}

/// A product event, from `track` or auto-capture: recorded, and shown to the engine.
#[cfg(feature = "guide")]
fn record_track(name: &str, props: Vec<(String, Value)>, ts: i64) {
    with_sdk(|sdk| {
        match sdk.engine.as_mut() {
            Some(engine) => {
                let emits = engine.observe(&mut sdk.kv, name, &props, ts);
                sdk.client.record(EventType::Track, name, props, ts, &mut BrowserEntropy);
                record(&mut sdk.client, emits, ts);
                update_lean_mark(sdk, ts);
            }
            None => {
                if sdk.early.len() < MAX_EARLY {
                    sdk.early.push((name.into(), props.clone(), ts));
                }
                sdk.client.record(EventType::Track, name, props, ts, &mut BrowserEntropy);
            }
        }
    });
    tips::on_event(name);
}

/// A product event, from `track` or auto-capture: recorded.
#[cfg(not(feature = "guide"))]
fn record_track(name: &str, props: Vec<(String, Value)>, ts: i64) {
    with_sdk(|sdk| {
        sdk.client.record(EventType::Track, name, props, ts, &mut BrowserEntropy);
    });
}

fn identify_user(user_id: &str, traits: JsValue) {
    let mut traits = object_entries(to_value(&traits));
    // The collector's definition (core::time::signed_up_at): a sign-up time it would refuse is
    // left out here, with one console line, so the identify itself is still sent and linked.
    let mut signup = None;
    let now = now_ms();
    traits.retain_mut(|(k, v)| {
        if k != "signedUpAt" || *v == Value::Null {
            return true;
        }
        match crate::core::time::signed_up_at(v, now) {
            Ok(ms) => {
                signup = Some(ms);
                *v = Value::Num(ms as f64);
                true
            }
            Err(why) => {
                console_error(&["onramp: identify's signedUpAt ", why, "; left out"].concat());
                false
            }
        }
    });
    let _ = signup; // read by the guide build
    with_sdk(|sdk| {
        let now = now_ms();
        sdk.client.identify(user_id, traits, now, &mut BrowserEntropy);
        #[cfg(feature = "guide")]
        {
            sdk.signup = signup.or(sdk.signup);
            if let Some(engine) = sdk.engine.as_mut() {
                let emits = engine.identify(&mut sdk.kv, user_id, signup, now);
                record(&mut sdk.client, emits, now);
            }
            update_lean_mark(sdk, now);
        }
        // Another user than the one whose onboarding is over: theirs may not be.
        #[cfg(not(feature = "guide"))]
        if sdk.lean.as_deref().and_then(|mark| mark.split_once('\n')).is_none_or(|(_, user)| user != user_id) {
            clear_lean_mark(sdk);
        }
    });
    #[cfg(feature = "guide")]
    tips::refresh();
}


/// The user (or the page, relaying a server) confirms a customer milestone of the plan.
fn complete_milestone(milestone: &str) {
    #[cfg(feature = "guide")]
    {
        with_sdk(|sdk| {
            let now = now_ms();
            if let Some(engine) = sdk.engine.as_mut() {
                let emits = engine.mark_done(&mut sdk.kv, milestone, now);
                record(&mut sdk.client, emits, now);
            }
            update_lean_mark(sdk, now);
        });
        tips::refresh();
    }
    let _ = milestone;
}

fn reset_identity() {
    let id = Client::new_id(now_ms(), &mut BrowserEntropy);
    if let Some(s) = local_storage() {
        let _ = s.set_item(ANON_KEY, &id);
    }
    with_sdk(|sdk| {
        #[cfg(feature = "guide")]
        {
            if let Some(engine) = sdk.engine.as_mut() {
                engine.reset(&sdk.kv, &id);
            }
            sdk.signup = None;
        }
        // The next user's onboarding is unknown: the next page view loads the guide.
        clear_lean_mark(sdk);
        sdk.client.reset(id);
    });
    #[cfg(feature = "guide")]
    tips::refresh();
}

fn flush_now(done: Option<js_sys::Function>) {
    if let Some(done) = done {
        let waiting = SDK.with(|cell| match cell.try_borrow_mut().ok().as_mut().and_then(|g| g.as_mut()) {
            Some(sdk) => {
                let mark = sdk.outbox.mark();
                sdk.flush_waiters.push((mark, done));
                None
            }
            None => Some(done),
        });
        if let Some(done) = waiting {
            let _ = done.call0(&JsValue::UNDEFINED);
        }
    }
    send_batch(true);
    settle_flushes();
}

/// Calls the `flush()` callbacks whose events have all left the queue.
fn settle_flushes() {
    let done: Vec<js_sys::Function> = SDK.with(|cell| {
        let Ok(mut guard) = cell.try_borrow_mut() else { return Vec::new() };
        let Some(sdk) = guard.as_mut() else { return Vec::new() };
        let outbox = &sdk.outbox;
        let (done, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut sdk.flush_waiters).into_iter().partition(|(mark, _)| outbox.delivered_up_to(*mark));
        sdk.flush_waiters = waiting;
        done.into_iter().map(|(_, f)| f).collect()
    });
    resolve_flushes(done);
}

fn resolve_flushes(done: impl IntoIterator<Item = js_sys::Function>) {
    for f in done {
        let _ = f.call0(&JsValue::UNDEFINED);
    }
}

fn send_batch(force: bool) {
    SDK.with(|cell| {
        // Busy (re-entered from a host callback): skip; the next tick catches up.
        let Ok(mut guard) = cell.try_borrow_mut() else { return };
        let Some(sdk) = guard.as_mut() else { return };
        if let Some(body) = sdk.outbox.next_batch(now_ms(), force) {
            post(sdk, &body);
        }
    });
}

fn post(sdk: &Sdk, body: &str) {
    let Some(window) = web_sys::window() else { return };
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    // A string body goes as text/plain: a CORS-simple request, no preflight.
    init.set_body(&JsValue::from_str(body));
    // `keepalive` lets the request finish if the page is closed meanwhile.
    let _ = js_sys::Reflect::set(&init, &JsValue::from_str("keepalive"), &JsValue::TRUE);
    let _ = window.fetch_with_str_and_init(&sdk.batch_url, &init).then2(&sdk.on_response, &sdk.on_network_error);
}

fn on_response(response: JsValue) {
    let Some(response) = response.dyn_ref::<web_sys::Response>() else { return settle(0, None, "") };
    let status = response.status();
    if status == 400 || status == 413 {
        // The body lists the bad events; read it, then settle.
        let read = response.text().ok();
        SDK.with(|cell| {
            if let (Some(sdk), Some(text)) = (cell.try_borrow().ok().as_ref().and_then(|g| g.as_ref()), read) {
                let _ = text.then2(if status == 400 { &sdk.on_400_body } else { &sdk.on_413_body }, &sdk.on_network_error);
            }
        });
        return;
    }
    let retry_after = response.headers().get("retry-after").ok().flatten();
    settle(status, retry_after.as_deref(), "");
}

fn settle(status: u16, retry_after: Option<&str>, body: &str) {
    let again = SDK.with(|cell| {
        let Ok(mut guard) = cell.try_borrow_mut() else { return false };
        let Some(sdk) = guard.as_mut() else { return false };
        let now = now_ms();
        let refused_before = sdk.outbox.is_refused();
        let next = sdk.outbox.settle(status, retry_after, body, now, &mut BrowserEntropy);
        sdk.outbox.report_drops(&mut sdk.client, now, &mut BrowserEntropy);
        if !refused_before && sdk.outbox.is_refused() {
            explain_refusal(status, &sdk.batch_url);
        }
        next == Next::SendNow
    });
    if again {
        send_batch(true);
    }
    settle_flushes();
}

/// One console line when the collector refuses this page (401/403; the SDK then sends nothing
/// more from it): what to change, and where.
fn explain_refusal(status: u16, batch_url: &str) {
    let origin = web_sys::window().and_then(|w| w.location().origin().ok()).unwrap_or_default();
    let collector = batch_url.trim_end_matches("/v1/batch");
    let mut message = String::from("onramp: the collector at ");
    message.push_str(collector);
    if status == 403 {
        message.push_str(" does not allow this page's origin ");
        message.push_str(&origin);
        message.push_str(" for this write key: add \"");
        message.push_str(&origin);
        message.push_str("\" to the project's allowedOrigins");
    } else {
        message.push_str(" does not know this write key: check init's writeKey");
    }
    message.push_str(". Events from this page are dropped.");
    console_error(&message);
}

/// Every second: heartbeat, adopt dead tabs' queues, pick up events recorded outside an
/// exported call (timers, DOM listeners), send what is due.
fn tick() {
    // Routers that kept the original pushState are still seen, a tick late.
    capture::check_view();
    SDK.with(|cell| {
        if let Some(sdk) = cell.try_borrow_mut().ok().as_mut().and_then(|g| g.as_mut()) {
            sdk.outbox.tick(now_ms());
            enqueue_recorded(sdk);
            write_storage(sdk);
        }
    });
    send_batch(false);
    settle_flushes();
}

/// Hands the whole queue to `sendBeacon`, which the browser delivers even after unload. The
/// events stay queued (and stored) until acknowledged.
fn beacon(retire: bool) {
    // Events the page just produced go first: this may be the page's last moment.
    capture::drain();
    SDK.with(|cell| {
        // Busy (re-entered from a host callback): skip; the next tick catches up.
        let Ok(mut guard) = cell.try_borrow_mut() else { return };
        let Some(sdk) = guard.as_mut() else { return };
        enqueue_recorded(sdk);
        // Persist before send, here too: the next page adopts what is stored.
        write_storage(sdk);
        if let Some(w) = web_sys::window() {
            for body in sdk.outbox.beacon_bodies(now_ms()) {
                let _ = w.navigator().send_beacon_with_opt_str(&sdk.batch_url, Some(&body));
            }
        }
        if retire {
            sdk.outbox.retire();
        }
    });
}

/// The ticker and the page-lifetime listeners, owned by the running SDK: a second `init`
/// replaces them and a disabled SDK drops them (gloo removes a listener and clears a timer
/// when its value is dropped), so none outlives the SDK it serves or runs twice.
struct PageHooks {
    _ticker: Interval,
    _listeners: Vec<EventListener>,
}

fn listen() -> Option<PageHooks> {
    let window = web_sys::window()?;
    let mut listeners = vec![
        // pagehide: the page is going (closed, reloaded, navigated); mark this tab's queue free
        // for the next page to adopt.
        EventListener::new(&window, "pagehide", |_| beacon(true)),
        // Coming back from the back-forward cache: beat again (adopted events are detected).
        EventListener::new(&window, "pageshow", |_| tick()),
        EventListener::new(&window, "online", |_| {
            SDK.with(|cell| {
                if let Some(sdk) = cell.try_borrow_mut().ok().as_mut().and_then(|g| g.as_mut()) {
                    sdk.outbox.online();
                }
            });
            send_batch(true);
        }),
    ];
    // Hidden is often the last moment a mobile page gets: a tab switch may end in a kill.
    if let Some(document) = window.document() {
        listeners.push(EventListener::new(&document, "visibilitychange", |_| {
            if web_sys::window().and_then(|w| w.document()).is_some_and(|d| d.hidden()) {
                beacon(false);
            }
        }));
    }
    Some(PageHooks { _ticker: Interval::new(TICK_MS, tick), _listeners: listeners })
}

#[cfg(all(test, feature = "guide"))]
mod tests {
    use wasm_bindgen_test::wasm_bindgen_test;

    use super::*;
    use crate::core::engine::Engine;
    use crate::core::plan::Plan;

    const PLAN: &str = include_str!("../../pkg-config/plans/trackly.json");
    const ANON: &str = "0190d4c2-0000-7000-8000-00000000beef";

    /// The engine over the browser's real localStorage: progress survives a "reload" (a new
    /// engine) and a second tab's write merges in.
    #[wasm_bindgen_test]
    fn engine_state_survives_in_local_storage() {
        let Some(storage) = local_storage() else { panic!("localStorage in the test browser") };
        let _ = storage.clear();
        let plan = Plan::parse(PLAN).expect("demo plan");
        let mut kv = BrowserStorage(Some(storage.clone()));
        let mut first = Engine::new(plan.clone(), "tabA".into(), ANON, &kv);
        first.identify(&mut kv, "wasm@example.com", Some(1_700_000_000_000), 1_700_000_000_000);
        let out = first.observe(&mut kv, "signed_up", &[], 1_700_000_000_500);
        assert_eq!(out[0].name, "signed_up");
        let mut second = Engine::new(plan, "tabB".into(), ANON, &kv);
        second.identify(&mut kv, "wasm@example.com", None, 1_700_000_001_000);
        assert_eq!(second.reached("signed_up"), Some(1_700_000_000_500));
        assert!(second.observe(&mut kv, "signed_up", &[], 1_700_000_002_000).is_empty(), "reached once");
        assert!(storage.get_item("onramp.state.wasm@example.com").ok().flatten().is_some());
        let _ = storage.clear();
    }
}
