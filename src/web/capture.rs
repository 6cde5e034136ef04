//! Auto-capture: turns page activity into the plan's named events, with no code in the page.
//!
//! - clicks and form submits: one listener each on `document`, in the capture phase, added by the
//!   ES module at `init` (`www/sdk/index.mjs`) and forwarded here with the other calls, in order;
//!   targets are matched with `closest(selector)`. Delegation means elements added later count,
//!   the capture phase means a page handler calling `stopPropagation` cannot hide them, and
//!   listening from `init` means a click before the wasm or the plan has loaded still counts
//!   (kept here, at most [`MAX_EARLY`], until the plan arrives);
//! - page and route views: `history.pushState`/`replaceState` are wrapped, `popstate` and
//!   `hashchange` listened to, and the ticker re-checks the URL too (routers that kept a
//!   reference to the original `pushState` are still seen, a second late);
//! - elements appearing: one `MutationObserver` on the document; a rule fires when its selector
//!   goes from matching nothing to matching something.
//!
//! Listeners only queue what they saw; the queue is drained on a zero-delay timer, after the
//! page's own handlers have run. So a sign-up form's handler calls `identify` before the
//! captured `signed_up` event reaches the engine, and the event counts for the user with their
//! sign-up time. The event keeps the time it happened at. On page hide the queue is drained at
//! once, before the last beacon.
//!
//! What [`install`] adds to the page (history wrappers, listeners, the observer) comes back as a
//! [`Hooks`] value the SDK owns: a second `init` or a disabled SDK drops it, which removes all of
//! it and forgets the rules, so nothing outlives the SDK it serves or runs twice.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::core::json::Value;
use crate::core::plan::{Capture, CaptureRule};

use super::global::Global;
use super::owned::{function, EventListener};

struct Captured {
    name: String,
    props: Vec<(String, Value)>,
    ts: i64,
}

struct State {
    rules: Vec<CaptureRule>,
    queue: Vec<Captured>,
    drain_scheduled: bool,
    /// `pathname + hash` last seen, so a view is reported once per route change.
    last_url: String,
    /// Per rule: whether its selector matched at the last look (for "appear").
    present: Vec<bool>,
}

/// Clicks and submits seen before the plan arrived.
const MAX_EARLY: usize = 100;

static STATE: Global<Option<State>> = Global::new(None);
/// Made once per page and never dropped: a drain already scheduled when the SDK goes must
/// find a live function (it then finds no state and does nothing).
static DRAIN: Global<Option<JsValue>> = Global::new(None);
static EARLY: Global<Vec<(&'static str, web_sys::Element, i64)>> = Global::new(Vec::new());

/// A click or submit from the page (see the module docs): matched now, or kept for the plan.
#[wasm_bindgen]
pub fn dom_event(kind: &str, target: JsValue, ts: f64) {
    let kind = match kind {
        "click" => "click",
        "submit" => "submit",
        _ => return,
    };
    let Ok(target) = target.dyn_into::<web_sys::Element>() else { return };
    if STATE.with(|s| s.is_some()) {
        enqueue(matches(kind, &target, ts as i64));
    } else {
        EARLY.with(|early| {
            if early.len() < MAX_EARLY {
                early.push((kind, target, ts as i64));
            }
        });
    }
}

/// What capturing added to the page. Dropped, it takes all of it away again and forgets the
/// rules: the history methods are the page's own again (unless the page wrapped them after us,
/// see [`HistoryPatch`]), the listeners are removed and the observer disconnected.
pub struct Hooks {
    _history: Vec<HistoryPatch>,
    _listeners: Vec<EventListener>,
    _observer: Option<Observer>,
}

impl Drop for Hooks {
    fn drop(&mut self) {
        STATE.with(Option::take);
    }
}

/// Starts capturing for `rules`, when the plan has loaded; `None` without a page.
pub fn install(rules: Vec<CaptureRule>) -> Option<Hooks> {
    let window = web_sys::window()?;
    let document = window.document()?;
    let needs = |kind: &str| rules.iter().any(|r| r.on.name() == kind);
    let (views, appears) = (needs("view"), needs("appear"));
    let attributes = attribute_names(&rules);
    let present = vec![false; rules.len()];
    let state = State { rules, queue: Vec::new(), drain_scheduled: false, last_url: String::new(), present };
    STATE.with(|s| s.replace(state));
    for (kind, target, ts) in EARLY.with(::core::mem::take) {
        enqueue(matches(kind, &target, ts));
    }
    let mut hooks = Hooks { _history: Vec::new(), _listeners: Vec::new(), _observer: None };
    if views {
        hooks._history = watch_history(&window);
        hooks._listeners = ["popstate", "hashchange"].map(|name| EventListener::new(&window, name, |_| check_view())).into();
        check_view();
    }
    if appears {
        hooks._observer = observe_mutations(&document, &attributes);
        check_appear();
    }
    Some(hooks)
}

fn now_ms() -> i64 {
    js_sys::Date::now() as i64
}

fn enqueue(found: Vec<Captured>) {
    if found.is_empty() {
        return;
    }
    let schedule = STATE.with(|s| {
        let state = s.as_mut()?;
        state.queue.extend(found);
        let first = !state.drain_scheduled;
        state.drain_scheduled = true;
        Some(first)
    });
    if let (Some(true), Some(w)) = (schedule, web_sys::window()) {
        DRAIN.with(|f| {
            let f = f.get_or_insert_with(|| function(|_| drain()));
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(f.unchecked_ref(), 0);
        });
    }
}

/// Hands what was captured to the SDK as `track` events.
pub fn drain() {
    let queue = STATE.with(|s| {
        let Some(state) = s.as_mut() else { return Vec::new() };
        state.drain_scheduled = false;
        ::core::mem::take(&mut state.queue)
    });
    for c in queue {
        super::dispatch(crate::core::machine::Input::Track { name: c.name, props: c.props, at: Some(c.ts) });
    }
}

fn props_with(rule: &CaptureRule, key: &str, value: &str) -> Vec<(String, Value)> {
    let mut props = rule.props.clone();
    props.push(("captured".into(), Value::Str(rule.on.name().into())));
    props.push((key.into(), Value::Str(value.into())));
    props
}

/// The rules of `kind` whose selector matches `target` or one of its ancestors. Here and in
/// [`check_view`], loops rather than filter/map chains: smaller in the tracker's wasm (see
/// `Outbox::drop_items` in core::delivery for the figure).
fn matches(kind: &str, target: &web_sys::Element, ts: i64) -> Vec<Captured> {
    STATE.with(|s| {
        let Some(state) = s.as_ref() else { return Vec::new() };
        let mut found = Vec::new();
        for r in &state.rules {
            let Some(selector) = r.on.selector().filter(|_| r.on.name() == kind) else { continue };
            // Selectors were checked by the browser at load; a failure here just means no match.
            if target.closest(selector).ok().flatten().is_some() {
                found.push(Captured { name: r.event.clone(), props: props_with(r, "selector", selector), ts });
            }
        }
        found
    })
}

/// Reports a view when the route changed to one a rule matches.
pub fn check_view() {
    let Some(location) = web_sys::window().map(|w| w.location()) else { return };
    let path = location.pathname().unwrap_or_default();
    let hash = location.hash().unwrap_or_default();
    let ts = now_ms();
    let found = STATE.with(|s| {
        let Some(state) = s.as_mut() else { return Vec::new() };
        let url = path.clone() + &hash;
        if url == state.last_url {
            return Vec::new();
        }
        state.last_url = url;
        let mut found = Vec::new();
        for r in &state.rules {
            let Capture::View { path: p, hash: h } = &r.on else { continue };
            if p.as_ref().is_some_and(|p| !p.matches(&path)) || h.as_ref().is_some_and(|h| !h.matches(&hash)) {
                continue;
            }
            let mut props = props_with(r, "path", &path);
            if !hash.is_empty() {
                props.push(("hash".into(), Value::Str(hash.clone())));
            }
            found.push(Captured { name: r.event.clone(), props, ts });
        }
        found
    });
    enqueue(found);
}

type HistoryWrapper = Closure<dyn FnMut(JsValue, JsValue, JsValue) -> Result<JsValue, JsValue>>;

/// One wrapped history method. Dropped, it puts the original back if `history` still holds our
/// wrapper. If the page wrapped it after us, the page's wrapper calls ours: ours then stays alive
/// (it only calls through, since the rules are gone) rather than break the page's chain. The
/// wrapper is JavaScript's (`into_js_value`): alive as long as something there calls it.
struct HistoryPatch {
    history: web_sys::History,
    key: JsValue,
    original: js_sys::Function,
    wrapper: JsValue,
}

impl Drop for HistoryPatch {
    fn drop(&mut self) {
        let current = js_sys::Reflect::get(&self.history, &self.key).unwrap_or(JsValue::UNDEFINED);
        if current == self.wrapper {
            let _ = js_sys::Reflect::set(&self.history, &self.key, &self.original);
        }
    }
}

/// Wraps `pushState` and `replaceState` so SPA navigations are seen as they happen. The
/// original is called first and its result or exception passed on unchanged: the page must
/// behave exactly as without onramp.
fn watch_history(window: &web_sys::Window) -> Vec<HistoryPatch> {
    let Ok(history) = window.history() else { return Vec::new() };
    let mut patches = Vec::new();
    for name in ["pushState", "replaceState"] {
        let key = JsValue::from_str(name);
        let Some(original) = js_sys::Reflect::get(&history, &key).ok().and_then(|f| f.dyn_into::<js_sys::Function>().ok()) else {
            continue;
        };
        let (this, call) = (history.clone(), original.clone());
        let wrapper = HistoryWrapper::new(move |state: JsValue, title: JsValue, url: JsValue| {
            let result = call.call3(&this, &state, &title, &url);
            check_view();
            result
        })
        .into_js_value();
        let _ = js_sys::Reflect::set(&history, &key, &wrapper);
        patches.push(HistoryPatch { history: history.clone(), key, original, wrapper });
    }
    patches
}

/// The attributes an appear rule can come to match by: `class`, `id`, `hidden`, `open`, and
/// those its selectors name in `[…]`. Watching only these spares the check on pages that animate
/// `style` every frame.
fn attribute_names(rules: &[CaptureRule]) -> Vec<String> {
    let mut names: Vec<String> = ["class", "id", "hidden", "open"].map(String::from).to_vec();
    for r in rules {
        let Capture::Appear { selector } = &r.on else { continue };
        for part in selector.split('[').skip(1) {
            // Attribute names are ASCII: the name ends at the first other byte.
            let end = part.bytes().position(|c| !(c.is_ascii_alphanumeric() || c == b'-' || c == b'_')).unwrap_or(part.len());
            let name = part.get(..end).unwrap_or_default();
            if !name.is_empty() && !names.iter().any(|n| n == name) {
                names.push(name.into());
            }
        }
    }
    names
}

/// The document's observer; dropped, it is disconnected (its callback is then JavaScript's to
/// free).
struct Observer {
    observer: web_sys::MutationObserver,
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.observer.disconnect();
    }
}

fn observe_mutations(document: &web_sys::Document, attributes: &[String]) -> Option<Observer> {
    let callback = function(|_| check_appear());
    let observer = web_sys::MutationObserver::new(callback.unchecked_ref()).ok()?;
    let options = web_sys::MutationObserverInit::new();
    options.set_child_list(true);
    options.set_subtree(true);
    // Attributes too: an element can come to match by a class or data attribute changing.
    let filter = js_sys::Array::new();
    for name in attributes {
        filter.push(&JsValue::from_str(name));
    }
    options.set_attribute_filter(&filter);
    let _ = observer.observe_with_options(document, &options);
    Some(Observer { observer })
}

fn check_appear() {
    let Some(document) = web_sys::window().and_then(|w| w.document()) else { return };
    let ts = now_ms();
    let found = STATE.with(|s| {
        let Some(state) = s.as_mut() else { return Vec::new() };
        let mut found = Vec::new();
        for (i, r) in state.rules.iter().enumerate() {
            let Capture::Appear { selector } = &r.on else { continue };
            let now_present = document.query_selector(selector).ok().flatten().is_some();
            if now_present && !state.present[i] {
                found.push(Captured { name: r.event.clone(), props: props_with(r, "selector", selector), ts });
            }
            state.present[i] = now_present;
        }
        found
    });
    enqueue(found);
}
