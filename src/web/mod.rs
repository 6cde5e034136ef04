//! The browser layer: the functions JavaScript calls, and the clock, storage and network the
//! core needs. Nothing here decides anything; it only moves data between the page and
//! [`crate::core`]. Every export catches its own failures: the host page must never see an
//! exception from onramp.

use std::cell::RefCell;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::core::client::{Client, Entropy};
use crate::core::json::{self, Value};
use crate::core::wire::EventType;

/// How long events may wait before a flush; short, so a closing tab has little left to beacon.
const FLUSH_DELAY_MS: i32 = 1000;
const ANON_KEY: &str = "onramp.anonymousId";

struct Sdk {
    client: Client,
    batch_url: String,
    flush_scheduled: bool,
    /// Made once and reused by every request, so no closure is created or leaked per send.
    on_response: Closure<dyn FnMut(JsValue)>,
    on_network_error: Closure<dyn FnMut(JsValue)>,
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

fn with_sdk(f: impl FnOnce(&mut Sdk)) {
    SDK.with(|cell| {
        if let Some(sdk) = cell.borrow_mut().as_mut() {
            f(sdk);
        }
    });
    schedule_flush();
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

    let on_response = Closure::<dyn FnMut(JsValue)>::new(|response: JsValue| {
        settle(response.dyn_ref::<web_sys::Response>().is_some_and(web_sys::Response::ok));
    });
    let on_network_error = Closure::<dyn FnMut(JsValue)>::new(|_: JsValue| settle(false));
    let sdk = Sdk {
        client: Client::new(write_key.into(), anonymous_id),
        batch_url,
        flush_scheduled: false,
        on_response,
        on_network_error,
    };
    SDK.with(|cell| *cell.borrow_mut() = Some(sdk));
    listen_for_page_hide();
}

/// Names the user. `traits` may carry `signedUpAt` (ms or ISO string) and anything else.
#[wasm_bindgen]
pub fn identify(user_id: &str, traits: JsValue) {
    let traits = object_entries(to_value(&traits));
    with_sdk(|sdk| sdk.client.identify(user_id, traits, now_ms(), &mut BrowserEntropy));
}

#[wasm_bindgen]
pub fn track(name: &str, props: JsValue) {
    let props = object_entries(to_value(&props));
    with_sdk(|sdk| {
        sdk.client.record(EventType::Track, name, props, now_ms(), &mut BrowserEntropy);
    });
}

/// Log-out: forget the user and start a new anonymous identity.
#[wasm_bindgen]
pub fn reset() {
    let id = Client::new_id(now_ms(), &mut BrowserEntropy);
    if let Some(s) = local_storage() {
        let _ = s.set_item(ANON_KEY, &id);
    }
    with_sdk(|sdk| sdk.client.reset(id));
}

/// Sends what is queued now (also called by tests and before navigation).
#[wasm_bindgen]
pub fn flush() {
    SDK.with(|cell| {
        let mut guard = cell.borrow_mut();
        let Some(sdk) = guard.as_mut() else { return };
        sdk.flush_scheduled = false;
        if let Some(batch) = sdk.client.next_batch(now_ms()) {
            send(sdk, batch.to_json());
        }
    });
}

fn schedule_flush() {
    let should = SDK.with(|cell| {
        let mut guard = cell.borrow_mut();
        match guard.as_mut() {
            Some(sdk) if !sdk.flush_scheduled && sdk.client.pending() > 0 => {
                sdk.flush_scheduled = true;
                true
            }
            _ => false,
        }
    });
    if should {
        if let Some(window) = web_sys::window() {
            let cb = Closure::once_into_js(flush);
            let _ = window.set_timeout_with_callback_and_timeout_and_arguments_0(cb.unchecked_ref(), FLUSH_DELAY_MS);
        }
    }
}

fn send(sdk: &Sdk, body: String) {
    let Some(window) = web_sys::window() else { return };
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    // A string body goes as text/plain: a CORS-simple request, no preflight.
    init.set_body(&JsValue::from_str(&body));
    // `keepalive` lets the request finish if the page is closed meanwhile.
    let _ = js_sys::Reflect::set(&init, &JsValue::from_str("keepalive"), &JsValue::TRUE);
    let _ = window.fetch_with_str_and_init(&sdk.batch_url, &init).then2(&sdk.on_response, &sdk.on_network_error);
}

fn settle(ok: bool) {
    SDK.with(|cell| {
        if let Some(sdk) = cell.borrow_mut().as_mut() {
            if ok {
                sdk.client.acknowledge();
            } else {
                sdk.client.release();
            }
        }
    });
    schedule_flush();
}

/// On page hide, hand the queue to `sendBeacon`, which the browser delivers after unload.
fn listen_for_page_hide() {
    let Some(window) = web_sys::window() else { return };
    let on_hide = Closure::<dyn FnMut()>::new(|| {
        SDK.with(|cell| {
            let guard = cell.borrow();
            let Some(sdk) = guard.as_ref() else { return };
            if let (Some(batch), Some(w)) = (sdk.client.unload_batch(now_ms()), web_sys::window()) {
                let _ = w.navigator().send_beacon_with_opt_str(&sdk.batch_url, Some(&batch.to_json()));
            }
        });
    });
    let _ = window.add_event_listener_with_callback("pagehide", on_hide.as_ref().unchecked_ref());
    // Lives as long as the page.
    on_hide.forget();
}
