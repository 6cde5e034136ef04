//! The browser layer: the functions JavaScript calls, and the clock, storage and network the
//! core needs. Nothing here decides anything; it only moves data between the page and
//! [`crate::core`]. Every export catches its own failures: the host page must never see an
//! exception from onramp.

use std::cell::RefCell;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::core::client::{Client, Entropy};
use crate::core::delivery::{Next, Outbox, Policy};
use crate::core::engine::{self, Emit, Engine};
use crate::core::json::{self, Value};
use crate::core::plan::Plan;
use crate::core::storage::KeyValue;
use crate::core::wire::EventType;

mod tips;

/// The outbox's clock tick: heartbeat, adoption of dead tabs, batching by time, retries.
const TICK_MS: i32 = 1000;
const ANON_KEY: &str = "onramp.anonymousId";

struct Sdk {
    client: Client,
    /// The plan's milestone engine; `None` without a (valid) plan.
    engine: Option<Engine>,
    outbox: Outbox<BrowserStorage>,
    batch_url: String,
    /// Made once and reused by every request, so no closure is created or leaked per send.
    on_response: Closure<dyn FnMut(JsValue)>,
    on_400_body: Closure<dyn FnMut(JsValue)>,
    on_413_body: Closure<dyn FnMut(JsValue)>,
    on_network_error: Closure<dyn FnMut(JsValue)>,
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
    fn fill(&mut self, out: &mut [u8]) {
        // Math.random is enough for ids (uniqueness, not secrecy) and needs no extra bindings.
        for b in out {
            *b = (js_sys::Math::random() * 256.0) as u8;
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
        // Busy means a host handler called back into onramp from inside it: drop, never panic.
        let Ok(mut guard) = cell.try_borrow_mut() else { return false };
        let Some(sdk) = guard.as_mut() else { return false };
        f(sdk);
        enqueue_recorded(sdk)
    });
    if send {
        send_batch(false);
    }
}

fn record(client: &mut Client, emits: Vec<Emit>) {
    for e in emits {
        client.record(e.kind, &e.name, e.props, now_ms(), &mut BrowserEntropy);
    }
}

/// Runs `f` with the engine and storage, and records the events it returns: the tips layer's
/// way in. `None` when there is no plan.
fn with_engine<R>(f: impl FnOnce(&mut Engine, &mut dyn KeyValue, &mut Vec<Emit>) -> R) -> Option<R> {
    let mut result = None;
    with_sdk(|sdk| {
        let Some(engine) = sdk.engine.as_mut() else { return };
        let mut out = Vec::new();
        result = Some(f(engine, &mut BrowserStorage(local_storage()), &mut out));
        record(&mut sdk.client, out);
    });
    result
}

/// Moves what the client recorded into the persistent outbox (persisted at once), reports
/// drops, and says whether a batch is due.
fn enqueue_recorded(sdk: &mut Sdk) -> bool {
    let now = now_ms();
    for event in sdk.client.take_recorded() {
        sdk.outbox.push(&event, now);
    }
    sdk.outbox.report_drops(&mut sdk.client, now, &mut BrowserEntropy);
    sdk.outbox.due(now, false)
}

/// Starts the SDK. `config` is `{ writeKey, collector }`; `collector` defaults to this page's
/// origin. A config error disables the SDK with one console message; the page is unaffected.
#[wasm_bindgen]
pub fn init(config: JsValue) {
    let config = to_value(&config);
    let Some(write_key) = config.get("writeKey").and_then(Value::as_str) else {
        console_error("onramp: init: `writeKey` is required (a string such as \"wk_…\"); onramp is disabled");
        return;
    };
    let origin = web_sys::window().and_then(|w| w.location().origin().ok()).unwrap_or_default();
    let collector = config.get("collector").and_then(Value::as_str).unwrap_or(&origin);
    let batch_url = format!("{}/v1/batch", collector.trim_end_matches('/'));

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
    // An inline plan (`init({ plan: {…} })`). A broken plan is one console error; events still flow.
    let plan = config.get("plan").filter(|p| p.as_object().is_some()).and_then(|p| {
        Plan::from_value(p).map_err(|e| console_error(&("onramp: ".to_owned() + &e.to_string() + "; tips are off"))).ok()
    });
    let mut engine = plan.map(|plan| Engine::new(plan, tab.clone(), &anonymous_id, &BrowserStorage(local_storage())));
    let mut first_emits = Vec::new();
    if let Some(e) = engine.as_mut() {
        first_emits = e.touch(&mut BrowserStorage(local_storage()), now_ms());
    }
    let default_locale = engine.as_ref().map(|e| e.plan().default_locale.clone());
    let outbox = Outbox::open(BrowserStorage(storage), write_key.into(), &tab, Policy::default(), now_ms());
    let mut client = Client::new(write_key.into(), anonymous_id);
    record(&mut client, first_emits);
    let sdk = Sdk {
        client,
        engine,
        outbox,
        batch_url,
        on_response: Closure::new(on_response),
        on_400_body: Closure::new(|text: JsValue| settle(400, None, &text.as_string().unwrap_or_default())),
        on_413_body: Closure::new(|text: JsValue| settle(413, None, &text.as_string().unwrap_or_default())),
        on_network_error: Closure::new(|_: JsValue| settle(0, None, "")),
    };
    // A second init replaces the SDK but must not add a second ticker and listeners.
    let first = SDK.with(|cell| cell.borrow_mut().replace(sdk).is_none());
    if first {
        listen();
    }
    if let Some(locale) = default_locale {
        tips::start(config.get("tips").unwrap_or(&Value::Null), &locale);
    }
}

/// Names the user. `traits` may carry `signedUpAt` (ms or ISO string) and anything else.
#[wasm_bindgen]
pub fn identify(user_id: &str, traits: JsValue) {
    let traits = object_entries(to_value(&traits));
    let signed_up = traits.iter().find(|(k, _)| k == "signedUpAt").and_then(|(_, v)| engine::parse_time(v));
    with_sdk(|sdk| {
        sdk.client.identify(user_id, traits, now_ms(), &mut BrowserEntropy);
        if let Some(e) = sdk.engine.as_mut() {
            let out = e.identify(&mut BrowserStorage(local_storage()), user_id, signed_up, now_ms());
            record(&mut sdk.client, out);
        }
    });
    tips::refresh();
}

#[wasm_bindgen]
pub fn track(name: &str, props: JsValue) {
    let props = object_entries(to_value(&props));
    with_sdk(|sdk| {
        if let Some(e) = sdk.engine.as_mut() {
            let out = e.observe(&mut BrowserStorage(local_storage()), name, &props, now_ms());
            sdk.client.record(EventType::Track, name, props, now_ms(), &mut BrowserEntropy);
            record(&mut sdk.client, out);
        } else {
            sdk.client.record(EventType::Track, name, props, now_ms(), &mut BrowserEntropy);
        }
    });
    tips::on_event(name);
}

/// Log-out: forget the user and start a new anonymous identity.
#[wasm_bindgen]
pub fn reset() {
    let id = Client::new_id(now_ms(), &mut BrowserEntropy);
    if let Some(s) = local_storage() {
        let _ = s.set_item(ANON_KEY, &id);
    }
    with_sdk(|sdk| {
        if let Some(e) = sdk.engine.as_mut() {
            e.reset(&BrowserStorage(local_storage()), &id);
        }
        sdk.client.reset(id);
    });
    tips::refresh();
}

/// Sends what is queued now, without waiting for the batch interval or a backoff.
#[wasm_bindgen]
pub fn flush() {
    send_batch(true);
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
        let next = sdk.outbox.settle(status, retry_after, body, now, &mut BrowserEntropy);
        sdk.outbox.report_drops(&mut sdk.client, now, &mut BrowserEntropy);
        next == Next::SendNow
    });
    if again {
        send_batch(true);
    }
}

/// Every second: heartbeat, adopt dead tabs' queues, pick up events recorded outside an
/// exported call (timers, DOM listeners), send what is due.
fn tick() {
    SDK.with(|cell| {
        if let Some(sdk) = cell.try_borrow_mut().ok().as_mut().and_then(|g| g.as_mut()) {
            sdk.outbox.tick(now_ms());
            enqueue_recorded(sdk);
        }
    });
    send_batch(false);
}

/// Hands the whole queue to `sendBeacon`, which the browser delivers even after unload. The
/// events stay queued (and stored) until acknowledged.
fn beacon(retire: bool) {
    SDK.with(|cell| {
        // Busy (re-entered from a host callback): skip; the next tick catches up.
        let Ok(mut guard) = cell.try_borrow_mut() else { return };
        let Some(sdk) = guard.as_mut() else { return };
        enqueue_recorded(sdk);
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

/// The page's timers and listeners; they live as long as the page.
fn listen() {
    let Some(window) = web_sys::window() else { return };
    let on = |target: &web_sys::EventTarget, name: &str, f: Closure<dyn FnMut()>| {
        let _ = target.add_event_listener_with_callback(name, f.as_ref().unchecked_ref());
        f.forget();
    };
    let ticker = Closure::<dyn FnMut()>::new(tick);
    let _ = window.set_interval_with_callback_and_timeout_and_arguments_0(ticker.as_ref().unchecked_ref(), TICK_MS);
    ticker.forget();
    // pagehide: the page is going (closed, reloaded, navigated); mark this tab's queue free
    // for the next page to adopt at once.
    on(&window, "pagehide", Closure::new(|| beacon(true)));
    // Coming back from the back-forward cache: beat again (adopted events are detected).
    on(&window, "pageshow", Closure::new(tick));
    // Hidden is often the last moment a mobile page gets: a tab switch may end in a kill.
    if let Some(document) = window.document() {
        on(
            &document,
            "visibilitychange",
            Closure::new(|| {
                if web_sys::window().and_then(|w| w.document()).is_some_and(|d| d.hidden()) {
                    beacon(false);
                }
            }),
        );
    }
    on(
        &window,
        "online",
        Closure::new(|| {
            SDK.with(|cell| {
                if let Some(sdk) = cell.try_borrow_mut().ok().as_mut().and_then(|g| g.as_mut()) {
                    sdk.outbox.online();
                }
            });
            send_batch(true);
        }),
    );
}
