//! The browser layer: the functions JavaScript calls, and the clock, storage, network, timers
//! and page events the core's state machine ([`crate::core::machine`]) needs. Nothing here
//! decides anything: every call and page event becomes an [`Input`], the machine answers with
//! [`Effect`]s, and this file carries them out. Every export catches its own failures: the host
//! page must never see an exception from onramp.
//!
//! # One queue
//!
//! Inputs wait in [`INPUTS`] while one is being handled or its effects carried out: a call
//! that arrives meanwhile (a host callback onramp invoked — a wrapped `fetch`, a patched
//! `setItem` or `console.error` — calling back into it) runs right after, in order. No call is
//! dropped because onramp is busy.
//!
//! # Two builds
//!
//! With the `guide` feature (the default) this is the full SDK: events, auto-capture and
//! delivery, plus the milestone engine and the tips UI. Without it, the lean *tracker*: events,
//! auto-capture (the plan's capture rules only) and delivery. The full build writes
//! [`crate::core::machine::LEAN_KEY`] while the engine says the user's onboarding is over; the
//! loader then fetches the tracker alone (see the machine).

pub(crate) mod browser_json;
mod capture;
mod global;
mod owned;

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::core::client::Entropy;
#[cfg(feature = "guide")]
use crate::core::engine::{Emit, Engine};
use crate::core::json::{self, Value};
#[cfg(not(feature = "guide"))]
use crate::core::machine::LoadedPlan;
use crate::core::machine::{Effect, Input, Machine, PlanSource};
use crate::core::plan::{Plan, PlanError};
use crate::core::storage::KeyValue;
use global::Global;
use owned::{function, EventListener, Timeout};

#[cfg(feature = "preview")]
mod preview;
#[cfg(feature = "guide")]
mod tips;

/// `localStorage`, or nothing when the browser refuses it (the outbox then works in memory).
#[derive(Clone)]
struct BrowserStorage(Option<web_sys::Storage>);

impl KeyValue for BrowserStorage {
    fn get(&self, key: &str) -> Option<String> {
        #[cfg(feature = "preview")]
        if let Some(value) = preview::stored(key) {
            return value;
        }
        self.0.as_ref()?.get_item(key).ok().flatten()
    }
    fn set(&mut self, key: &str, value: &str) -> bool {
        #[cfg(feature = "preview")]
        if preview::store(key, Some(value)) {
            return true;
        }
        // Throws QuotaExceededError when full: reported as false, never to the page.
        self.0.as_ref().is_some_and(|s| s.set_item(key, value).is_ok())
    }
    fn remove(&mut self, key: &str) {
        #[cfg(feature = "preview")]
        if preview::store(key, None) {
            return;
        }
        if let Some(s) = &self.0 {
            let _ = s.remove_item(key);
        }
    }
    fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        let Some(s) = &self.0 else { return Vec::new() };
        let mut keys = Vec::new();
        for i in 0..s.length().unwrap_or(0) {
            if let Some(key) = s.key(i).ok().flatten().filter(|k| k.starts_with(prefix)) {
                keys.push(key);
            }
        }
        #[cfg(feature = "preview")]
        let keys = preview::stored_keys(keys, prefix);
        keys
    }
}

/// Random bytes from `crypto.getRandomValues`, drawn [`ENTROPY_POOL`] bytes at a time: one call
/// per id was the largest single cost of `track()` (a crossing into JS and a typed-array view
/// each time, profiled in Chromium); a pool serves 512 event ids per call. With 256 bytes (32
/// ids) the refill was still 7 % of a tracker's `track()` (profiled again), so 4 KB.
struct BrowserEntropy {
    pool: [u8; ENTROPY_POOL],
    used: usize,
}

const ENTROPY_POOL: usize = 4096;

impl BrowserEntropy {
    const fn new() -> BrowserEntropy {
        BrowserEntropy { pool: [0; ENTROPY_POOL], used: ENTROPY_POOL }
    }

    /// `crypto.getRandomValues`, as the docs promise: ids from another user's page must not
    /// be guessable from ours (Math.random's state can be recovered from its outputs).
    fn refill(&mut self) {
        let filled = web_sys::window().and_then(|w| w.crypto().ok()).is_some_and(|c| c.get_random_values_with_u8_array(&mut self.pool).is_ok());
        if !filled {
            // No Web Crypto (never in a current browser): unique still, if guessable.
            for b in &mut self.pool {
                *b = (js_sys::Math::random() * 256.0) as u8;
            }
        }
        self.used = 0;
    }
}

impl Entropy for BrowserEntropy {
    fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            if self.used >= ENTROPY_POOL {
                self.refill();
            }
            // Each byte is handed out once: `used` only grows until the next refill.
            *b = self.pool.get(self.used).copied().unwrap_or_default();
            self.used += 1;
        }
    }
}

type BrowserMachine = Machine<BrowserStorage, BrowserEntropy>;

/// Inputs waiting for the machine, and whether one is being handled now (see the module docs).
struct Inputs {
    queue: VecDeque<Input>,
    busy: bool,
}

/// What onramp added to the page: listeners, timers and auto-capture, owned here so that a
/// disabled SDK or a second `init` drops them ([`owned`] removes a listener and clears a timer when
/// its value is dropped), and `flush()` promises waiting for the machine's answer.
struct Page {
    listeners: Vec<EventListener>,
    tick: Option<Timeout>,
    persist: Option<Timeout>,
    capture: Option<capture::Hooks>,
    flushes: Vec<(u64, js_sys::Function)>,
    next_flush: u64,
    /// The loader's request of the plan, made while the SDK's files loaded (www/sdk/loader.js),
    /// as `{ [url]: Promise<Response> }`: the plan's fetch of that URL adopts it instead of
    /// asking again. (An object looked up by the URL, not a URL and a promise: the two-argument
    /// form cost the tracker 1.2 KB raw in string glue, measured.)
    plan_request: JsValue,
}

impl Page {
    const EMPTY: Page = Page { listeners: Vec::new(), tick: None, persist: None, capture: None, flushes: Vec::new(), next_flush: 0, plan_request: JsValue::UNDEFINED };
}

static INPUTS: Global<Inputs> = Global::new(Inputs { queue: VecDeque::new(), busy: false });
/// Made at the first input (it reads `localStorage`).
static MACHINE: Global<Option<BrowserMachine>> = Global::new(None);
static PAGE: Global<Page> = Global::new(Page::EMPTY);
/// The props [`prop`] gathered for the [`track`] call that follows.
static PROPS: Global<Vec<(String, Value)>> = Global::new(Vec::new());
/// The answers to batch requests. Made once per page and never dropped: a request still on
/// its way when the SDK is disabled must find a live function (the machine then ignores it).
static RESPONSES: Global<Option<Responses>> = Global::new(None);

/// Runs `f` with the machine, made on first use; `None` while it is in use further up the stack.
fn with_machine<R>(f: impl FnOnce(&mut BrowserMachine) -> R) -> Option<R> {
    MACHINE.try_with(|m| f(m.get_or_insert_with(|| Machine::new(BrowserStorage(local_storage()), BrowserEntropy::new()))))
}

/// Runs `f` with the response callbacks, made on first use.
fn with_responses<R>(f: impl FnOnce(&mut Responses) -> R) -> R {
    RESPONSES.with(|r| f(r.get_or_insert_with(Responses::new)))
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

/// Reads a JS value as our JSON value: what JSON would make of it (`toJSON`, functions and
/// `undefined` left out), copied by the browser's own JSON.stringify and JSON.parse (smaller
/// than walking the object through bindings for each kind of value); an object when it is not
/// JSON (a cycle, a BigInt).
fn to_value(js: &JsValue) -> Value {
    if js.is_undefined() || js.is_null() {
        return Value::Obj(Vec::new());
    }
    browser_json::from_js_copy(js).unwrap_or(Value::Obj(Vec::new()))
}

fn object_entries(value: Value) -> Vec<(String, Value)> {
    match value {
        Value::Obj(entries) => entries,
        _ => Vec::new(),
    }
}

/// Hands `input` to the machine now, or after the inputs already waiting, and carries out
/// what it answers.
fn dispatch(input: Input) {
    let start = INPUTS.with(|inputs| {
        inputs.queue.push_back(input);
        !::core::mem::replace(&mut inputs.busy, true)
    });
    if !start {
        return; // the loop below, further up the stack, runs it
    }
    loop {
        let Some(input) = INPUTS.with(|inputs| {
            let next = inputs.queue.pop_front();
            inputs.busy = next.is_some();
            next
        }) else {
            return;
        };
        // The machine is only ever borrowed here and by the tips' `with_engine`, never while
        // host code runs, so this borrow cannot fail; if it ever did, the input waits.
        match with_machine(|m| m.handle(now_ms(), input)) {
            Some(effects) => carry_out(effects),
            None => return INPUTS.with(|inputs| inputs.busy = false),
        }
    }
}

fn carry_out(effects: Vec<Effect>) {
    for effect in effects {
        match effect {
            // Preview records nothing for real: the batch is kept to show, and acknowledged.
            #[cfg(feature = "preview")]
            Effect::Send { body, .. } if preview::active() => {
                keep_in_preview(&body);
                dispatch(Input::Answered { status: 200, retry_after: None, body: String::new() });
            }
            #[cfg(feature = "preview")]
            Effect::Beacon { body, .. } if preview::active() => keep_in_preview(&body),
            // Nothing of preview reached the collector: it knows none of these events.
            #[cfg(feature = "preview")]
            Effect::Ask { .. } if preview::active() => dispatch(Input::Answered { status: 200, retry_after: None, body: String::new() }),
            Effect::Send { url, body } => post(&url, &body),
            Effect::Ask { url, body } => ask(&url, &body),
            Effect::Beacon { url, body } => {
                if let Some(w) = web_sys::window() {
                    let _ = w.navigator().send_beacon_with_opt_str(&url, Some(&body));
                }
            }
            Effect::PersistSoon => {
                let timeout = Timeout::new(0, |_| {
                    dispatch(Input::Persist);
                    // In preview what was recorded goes to the panel at once (see `keep_in_preview`),
                    // not when a batch would be due; no `flush()` waits on id 0.
                    #[cfg(feature = "preview")]
                    if preview::active() {
                        dispatch(Input::Flush(0));
                    }
                });
                PAGE.with(|p| p.persist = Some(timeout));
            }
            Effect::ScheduleTick(ms) => {
                let timeout = Timeout::new(ms, |_| {
                    // Routers that kept the original pushState are still seen, a tick late.
                    capture::check_view();
                    dispatch(Input::Tick);
                });
                PAGE.with(|p| p.tick = Some(timeout));
            }
            Effect::Listen => {
                let listeners = listen();
                PAGE.with(|p| p.listeners = listeners);
            }
            Effect::Stop => {
                let old = PAGE.with(|page| {
                    // A second init's plan request (set just before) is the new SDK's.
                    let new = Page { flushes: ::core::mem::take(&mut page.flushes), next_flush: page.next_flush, plan_request: ::core::mem::take(&mut page.plan_request), ..Page::EMPTY };
                    ::core::mem::replace(page, new)
                });
                drop(old); // removes the listeners, timers and capture hooks
            }
            Effect::LoadPlan(PlanSource::Inline(doc)) => load_plan(&doc),
            Effect::LoadPlan(PlanSource::Url(url)) => fetch_plan(&url),
            Effect::Capture(rules) => {
                // The previous capture goes first: dropping it forgets its rules.
                drop(PAGE.with(|p| p.capture.take()));
                let hooks = capture::install(rules);
                PAGE.with(|p| p.capture = hooks);
            }
            #[cfg(feature = "guide")]
            Effect::StartGuide { options, default_locale } => {
                tips::start(&options, &default_locale);
                #[cfg(feature = "preview")]
                preview::plan_started();
            }
            #[cfg(feature = "guide")]
            Effect::Render(Some(event)) => tips::on_event(&event),
            #[cfg(feature = "guide")]
            Effect::Render(None) => tips::refresh(),
            Effect::Console(message) => console_error(&message),
            #[cfg(feature = "guide")]
            Effect::FetchState { url, user_id } => fetch_state(&url, user_id),
            Effect::ResolveFlush(id) => {
                let done = PAGE.with(|page| {
                    let i = page.flushes.iter().position(|(waiter, _)| *waiter == id)?;
                    Some(page.flushes.swap_remove(i).1)
                });
                if let Some(done) = done {
                    let _ = done.call0(&JsValue::UNDEFINED);
                }
            }
        }
    }
}

/// Runs `f` with the engine and storage, and records the events it returns: the tips layer's
/// way in. `None` when there is no plan (or the machine is handling an input). `from_page`: see
/// [`Machine::with_engine`].
#[cfg(feature = "guide")]
fn with_engine<R>(from_page: bool, f: impl FnOnce(&mut Engine, &mut dyn KeyValue, &mut Vec<Emit>) -> R) -> Option<R> {
    let (result, effects) = with_machine(|m| m.with_engine(now_ms(), from_page, f))?;
    carry_out(effects);
    result
}

/// A batch the machine would have sent, in preview: its events go to the panel instead.
#[cfg(feature = "preview")]
fn keep_in_preview(body: &str) {
    use serde::Deserialize;
    let Ok(batch) = json::parse(body) else { return };
    let Some(Value::Arr(events)) = batch.get("events") else { return };
    let events = events.iter().filter_map(|e| crate::core::wire::Event::deserialize(e).ok()).collect();
    let plan = with_engine(false, |engine, _, _| engine.plan().clone());
    preview::keep(events, plan.as_ref());
}

/// Starts the SDK. `config` is `{ writeKey, collector, plan, tips }`; `collector` defaults to
/// this page's origin. A config error disables the SDK with one console message; the page is
/// unaffected. `plan_request`: the loader's request of the plan, `{ [url]: fetch promise }`,
/// adopted if this init asks for the plan at that URL.
#[wasm_bindgen]
pub fn init(config: JsValue, plan_request: JsValue) {
    PAGE.with(|p| p.plan_request = plan_request);
    let page_origin = web_sys::window().and_then(|w| w.location().origin().ok()).unwrap_or_default();
    let options = to_value(&config);
    #[cfg(feature = "preview")]
    if let Some(write_key) = options.get("writeKey").and_then(Value::as_str) {
        let collector = options.get("collector").and_then(Value::as_str).unwrap_or(&page_origin);
        preview::begin(collector, write_key);
    }
    dispatch(Input::Init { options, page_origin });
}

/// Names the user. `traits` may carry `signedUpAt` (ms or ISO string, sent on as ms) and
/// anything else. Another user than the one this browser was identified as starts a fresh
/// anonymous id, as `reset()` would (docs/IDENTITY.md).
#[wasm_bindgen]
pub fn identify(user_id: String, traits: JsValue) {
    dispatch(Input::Identify { user_id, traits: object_entries(to_value(&traits)) });
}

/// Records a product event; `at` (Unix ms) when it happened earlier than now: a call the
/// paste-in snippet kept while the SDK loaded, or stored during an outage of the loader.
/// `props` is `undefined` when `index.mjs` found them plain and handed them over with [`prop`]
/// just before; else they are read as JSON would read them.
#[wasm_bindgen]
pub fn track(name: String, props: JsValue, at: Option<f64>) {
    let at = at.filter(|t| t.is_finite() && *t > 0.0).map(|t| t as i64);
    // Taken in any case: entries given for props that turned out not plain are dropped.
    let given = PROPS.with(::core::mem::take);
    let props = if props.is_undefined() { given } else { object_entries(to_value(&props)) };
    dispatch(Input::Track { name, props, at });
}

/// One entry of the next [`track`]'s props, from `index.mjs` (its `trackNow`): a string value
/// as `text`, else `num`: a finite number as itself, `true` and `false` as ±∞, `null` as NaN
/// (a plain object's numbers are finite). One call into the wasm per entry instead of the wasm
/// reading the object through a call into JS per key, value and type test.
#[wasm_bindgen]
pub fn prop(key: String, text: Option<String>, num: f64) {
    let value = match text {
        Some(text) => Value::Str(text),
        None if num.is_finite() => Value::Num(num),
        None if num.is_nan() => Value::Null,
        None => Value::Bool(num > 0.0),
    };
    PROPS.with(|p| p.push((key, value)));
}

/// The account (company, workspace, team) the user works in: every later event carries it,
/// across page views, until `reset()`.
#[wasm_bindgen]
pub fn group(account_id: String, traits: JsValue) {
    dispatch(Input::Group { account_id, traits: object_entries(to_value(&traits)) });
}

/// The user (or the page, relaying a server) confirms a customer milestone of the plan. The
/// tracker runs only for users whose milestones are all settled: nothing to confirm there.
#[wasm_bindgen]
pub fn complete(milestone: String) {
    dispatch(Input::Complete(milestone));
}

/// Log-out: forget the user and their account, and start a new anonymous identity.
#[wasm_bindgen]
pub fn reset() {
    dispatch(Input::Reset);
}

/// Sends what is queued now, without waiting for the batch interval or a backoff, and calls
/// `done` once everything queued before this call has left the queue: acknowledged by the
/// collector, or dropped (refused, expired). Without a running SDK, at once. The ES module
/// turns it into `flush()`'s promise.
#[wasm_bindgen]
pub fn flush(done: Option<js_sys::Function>) {
    let id = PAGE.with(|page| {
        page.next_flush += 1;
        let id = page.next_flush;
        if let Some(done) = done {
            page.flushes.push((id, done));
        }
        id
    });
    dispatch(Input::Flush(id));
}

/// Fetches the plan, or adopts the loader's request of it. The collector answers with an ETag
/// and `no-cache`, so the browser's cache revalidates it and a 304 costs no download. A network
/// failure or a project without a plan (204) is not the plan being wrong: onramp goes on
/// without milestones.
#[inline(never)] // kept out of `track()`'s path: see `Machine::handle`
fn fetch_plan(url: &str) {
    let Some(window) = web_sys::window() else { return };
    // Taken whether it matches or not: a later plan load (a second init) asks afresh.
    let adopted = PAGE.with(|p| ::core::mem::take(&mut p.plan_request));
    let adopted = js_sys::Reflect::get(&adopted, &JsValue::from_str(url)).ok().filter(JsValue::is_object);
    let on_response = function(|response: JsValue| {
        // 204: the project has no plan. Anything not 2xx: not the plan's fault either.
        let Some(response) = response.dyn_ref::<web_sys::Response>().filter(|r| r.ok() && r.status() != 204) else { return };
        let on_text = function(|text: JsValue| match json::parse(&text.as_string().unwrap_or_default()) {
            Ok(doc) => load_plan(&doc),
            Err(e) => dispatch(Input::PlanRefused(PlanError {
                pointer: String::new(),
                problem: e.describe(),
                expected: "a JSON document".into(),
            })),
        });
        if let Ok(text) = response.text() {
            with_responses(|r| drop(then(&text, &on_text, &r.ignore)));
        }
    });
    let request = adopted.map_or_else(|| window.fetch_with_str(url), JsCast::unchecked_into::<js_sys::Promise>);
    with_responses(|r| drop(then(&request, &on_response, &r.ignore)));
}

/// Fetches the user's state across devices (`/v1/state`). Anything but a 200 (offline, a
/// refusal) answers `None`: the page goes on with its local state and asks again later. One of
/// the two closures is never called and stays allocated: a few bytes, once per page and user.
#[cfg(feature = "guide")]
fn fetch_state(url: &str, user_id: String) {
    let Some(window) = web_sys::window() else { return };
    let failed = {
        let user_id = user_id.clone();
        Closure::once(move |_: JsValue| dispatch(Input::RemoteState { user_id, body: None }))
    };
    let on_response = Closure::once(move |response: JsValue| {
        let Some(text) = response.dyn_ref::<web_sys::Response>().filter(|r| r.status() == 200).and_then(|r| r.text().ok()) else {
            return dispatch(Input::RemoteState { user_id, body: None });
        };
        let failed_body = {
            let user_id = user_id.clone();
            Closure::once(move |_: JsValue| dispatch(Input::RemoteState { user_id, body: None }))
        };
        let on_text = Closure::once(move |text: JsValue| dispatch(Input::RemoteState { user_id, body: text.as_string() }));
        drop(text.then2(&on_text, &failed_body));
        on_text.forget();
        failed_body.forget();
    });
    drop(window.fetch_with_str(url).then2(&on_response, &failed));
    on_response.forget();
    failed.forget();
}

/// Reads the plan (all of it in the full SDK, its version and capture rules in the tracker)
/// and asks the browser's CSS parser about its selectors, then hands it to the machine. Both
/// read it trustingly ([`Plan::trusting`], [`Plan::capture_only`]): the collector validated it
/// when it was stored, and its full validation (with the messages `plan check` and a refused
/// `PUT /v1/plan` give) is not in any bundle. A plan the SDK cannot read is one console line
/// naming the field.
#[inline(never)] // kept out of `track()`'s path: see `Machine::handle`
fn load_plan(doc: &Value) {
    #[cfg(feature = "guide")]
    let plan = Plan::trusting(doc).and_then(|plan| check_selectors(plan.selectors()).map(|()| plan));
    #[cfg(not(feature = "guide"))]
    let plan = Plan::capture_only(doc).and_then(|(version, capture)| {
        check_selectors(capture.iter().enumerate().filter_map(|(i, r)| {
            let mut pointer = String::from("/capture/");
            crate::core::num::write_int(&mut pointer, i as i64);
            pointer.push_str("/selector");
            Some((pointer, r.on.selector()?))
        }))
        .map(|()| LoadedPlan { version, capture })
    });
    dispatch(match plan {
        Ok(plan) => Input::PlanLoaded(plan),
        Err(e) => Input::PlanRefused(e),
    });
}

/// Asks the browser's own CSS parser about the plan's selectors (the core only checks their
/// shape); the first it refuses is the plan's error.
fn check_selectors<'a>(selectors: impl IntoIterator<Item = (String, &'a str)>) -> Result<(), PlanError> {
    let Some(document) = web_sys::window().and_then(|w| w.document()) else { return Ok(()) };
    for (pointer, selector) in selectors {
        // Tip targets may descend into shadow roots and iframes with `>>>` (docs/TIPS.md):
        // each segment is a selector of its own. The tracker checks capture selectors only,
        // which are plain (matched with `closest`), and so carries no substring search.
        #[cfg(feature = "guide")]
        let refused = crate::core::substr::split(selector, ">>>").any(|part| document.query_selector(part.trim()).is_err());
        #[cfg(not(feature = "guide"))]
        let refused = document.query_selector(selector).is_err();
        if refused {
            return Err(PlanError {
                pointer,
                problem: String::from("the browser cannot parse the selector ") + selector,
                expected: "a valid CSS selector".into(),
            });
        }
    }
    Ok(())
}

#[wasm_bindgen]
extern "C" {
    /// A promise, to call `then` with functions already handed to JavaScript: js-sys's
    /// `then2` takes `Closure`s, which cannot be kept in a [`Global`].
    type Thenable;
    #[wasm_bindgen(method, js_name = then)]
    fn then(this: &Thenable, resolve: &JsValue, reject: &JsValue) -> JsValue;
}

/// `promise.then(resolve, reject)`.
fn then(promise: &js_sys::Promise, resolve: &JsValue, reject: &JsValue) -> JsValue {
    promise.unchecked_ref::<Thenable>().then(resolve, reject)
}

/// The callbacks of batch requests (see [`RESPONSES`]), handed to JavaScript once.
struct Responses {
    on_response: JsValue,
    /// The answer to a `/v1/known` question.
    on_known: JsValue,
    /// The body of an answer that is read (a 400's or 413's list of bad events, a `/v1/known`
    /// answer): one closure for the three, with the status in `body_status` (one request is on
    /// its way at a time). Each closure costs the tracker's wasm its own glue: one for three
    /// was 155 B raw, 106 B gzip smaller (measured).
    on_body: JsValue,
    body_status: u16,
    on_network_error: JsValue,
    /// A rejection handler that does nothing, so a failed fetch is never an unhandled rejection.
    ignore: JsValue,
}

impl Responses {
    fn new() -> Responses {
        Responses {
            on_response: function(on_response),
            on_known: function(on_known),
            on_body: function(|text: JsValue| {
                let status = with_responses(|r| r.body_status);
                dispatch(Input::Answered { status, retry_after: None, body: text.as_string().unwrap_or_default() });
            }),
            body_status: 0,
            on_network_error: function(|_| dispatch(Input::Answered { status: 0, retry_after: None, body: String::new() })),
            ignore: function(|_| {}),
        }
    }

    /// Reads `text` (a response's body) and answers with it as the body of a `status` answer.
    fn read_body(&mut self, status: u16, text: &js_sys::Promise) {
        self.body_status = status;
        drop(then(text, &self.on_body, &self.on_network_error));
    }
}

/// A POST of `body` as text/plain: a CORS-simple request, no preflight.
fn post_text(url: &str, body: &str) -> Option<js_sys::Promise> {
    let window = web_sys::window()?;
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_body(&JsValue::from_str(body));
    // `keepalive` lets the request finish if the page is closed meanwhile.
    let _ = js_sys::Reflect::set(&init, &JsValue::from_str("keepalive"), &JsValue::TRUE);
    Some(window.fetch_with_str_and_init(url, &init))
}

fn post(url: &str, body: &str) {
    if let Some(sent) = post_text(url, body) {
        with_responses(|r| drop(then(&sent, &r.on_response, &r.on_network_error)));
    }
}

fn ask(url: &str, body: &str) {
    if let Some(sent) = post_text(url, body) {
        with_responses(|r| drop(then(&sent, &r.on_known, &r.on_network_error)));
    }
}

fn on_known(response: JsValue) {
    let status = response.dyn_ref::<web_sys::Response>().map_or(0, |r| r.status());
    let text = response.dyn_ref::<web_sys::Response>().filter(|r| r.ok()).and_then(|r| r.text().ok());
    match text {
        Some(text) => with_responses(|r| r.read_body(200, &text)),
        None => dispatch(Input::Answered { status, retry_after: None, body: String::new() }),
    }
}

fn on_response(response: JsValue) {
    let Some(response) = response.dyn_ref::<web_sys::Response>() else {
        return dispatch(Input::Answered { status: 0, retry_after: None, body: String::new() });
    };
    let status = response.status();
    if status == 400 || status == 413 {
        // The body lists the bad events; read it, then answer.
        if let Ok(text) = response.text() {
            with_responses(|r| r.read_body(status, &text));
        }
        return;
    }
    let retry_after = response.headers().get("retry-after").ok().flatten();
    dispatch(Input::Answered { status, retry_after, body: String::new() });
}

/// The page-lifetime listeners (see [`Page`]).
#[inline(never)] // kept out of `track()`'s path: see `Machine::handle`
fn listen() -> Vec<EventListener> {
    let Some(window) = web_sys::window() else { return Vec::new() };
    let mut listeners = vec![
        // pagehide: the page is going (closed, reloaded, navigated); what was captured goes
        // first, then the queue is beaconed and marked free for the next page to adopt.
        EventListener::new(&window, "pagehide", |_| {
            capture::drain();
            dispatch(Input::PageClosed);
        }),
        // Coming back from the back-forward cache: beat again (adopted events are detected).
        EventListener::new(&window, "pageshow", |_| dispatch(Input::Tick)),
        EventListener::new(&window, "online", |_| dispatch(Input::Online)),
    ];
    // Hidden is often the last moment a mobile page gets: a tab switch may end in a kill.
    if let Some(document) = window.document() {
        listeners.push(EventListener::new(&document, "visibilitychange", |_| {
            if web_sys::window().and_then(|w| w.document()).is_some_and(|d| d.hidden()) {
                capture::drain();
                dispatch(Input::PageHidden);
            }
        }));
    }
    listeners
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
