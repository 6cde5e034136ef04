//! Page listeners and timers as owned values, as gloo's `EventListener` and `Timeout` are:
//! dropped, they are removed from the page. gloo's crates need std, which the lean tracker
//! leaves out (see src/lib.rs); these are the two pieces of them the SDK's page layer used.
//!
//! The callbacks are handed to JavaScript (`into_js_value`): the browser holds them while they
//! are registered and frees them after, so these values hold only `JsValue`s and can live in a
//! [`super::global::Global`].
//!
//! Every callback is a plain `fn(JsValue)`: each Rust closure is a type of its own, with its own
//! vtable and drop in the wasm (and, through `Closure::once`, its own adapter), where function
//! pointers share one. Measured on the tracker's wasm (`cargo xtask build`): vtable shims 10 → 1,
//! `Closure::once` adapters 5 → 0, closure signatures in the glue 3 → 2; 2 543 B raw, 1 095 B
//! gzip, 804 B brotli smaller.
//!
//! The tips have their own `Listener`, `Timeout` and `Observer` (src/web/tips/dom.rs), which take
//! capturing closures (a tip's state) and a capture flag. They are guide-only; the tracker's
//! callbacks need no state, and taking closures here would bring back the per-closure glue above.

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

/// `addEventListener(kind, callback)` on `target` until dropped.
pub struct EventListener {
    target: web_sys::EventTarget,
    kind: &'static str,
    callback: JsValue,
}

impl EventListener {
    pub fn new(target: &web_sys::EventTarget, kind: &'static str, callback: fn(JsValue)) -> EventListener {
        let callback = function(callback);
        let _ = target.add_event_listener_with_callback(kind, callback.unchecked_ref());
        EventListener { target: target.clone(), kind, callback }
    }
}

impl Drop for EventListener {
    fn drop(&mut self) {
        let _ = self.target.remove_event_listener_with_callback(self.kind, self.callback.unchecked_ref());
    }
}

/// `setTimeout(callback, ms)`, cleared when dropped before it ran.
pub struct Timeout {
    id: Option<i32>,
}

impl Timeout {
    pub fn new(ms: u32, callback: fn(JsValue)) -> Timeout {
        let callback = function(callback);
        let id = web_sys::window().and_then(|w| w.set_timeout_with_callback_and_timeout_and_arguments_0(callback.unchecked_ref(), ms as i32).ok());
        Timeout { id }
    }
}

impl Drop for Timeout {
    fn drop(&mut self) {
        if let (Some(id), Some(w)) = (self.id, web_sys::window()) {
            w.clear_timeout_with_handle(id);
        }
    }
}

/// `f` as a JavaScript function, which the browser frees once nothing there refers to it.
pub fn function(f: fn(JsValue)) -> JsValue {
    Closure::<dyn FnMut(JsValue)>::new(f).into_js_value()
}
