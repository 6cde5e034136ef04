//! Preview and debug mode (docs/AUTHORING.md): opened by a link from the plan editor that
//! carries a short-lived signed token in the URL fragment (`#onramp-preview=…`). The page then
//! shows a panel, in the tips' shadow root, listing each milestone, capture rule and tip with
//! what the engine and the scheduler say about it, lets the product manager show any tip now,
//! and picks elements for selectors ([`picker`]).
//!
//! Nothing done in preview is recorded as a real user's event: from the moment the fragment is
//! seen, what the SDK records is kept here (to show and count) instead of going to the outbox,
//! and the user's stored state is not written (the engine works on an in-memory copy). The
//! token is checked with the collector (`GET /v1/preview`) before the panel opens; a page view
//! with a refused token still records nothing, and says why once in the console.
//!
//! The token is remembered in this tab's `sessionStorage` until it expires, so the preview
//! follows the PM through the app's pages and reloads.

mod panel;
mod picker;

use std::cell::RefCell;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::core::json::{self, Value};
use crate::core::plan::Plan;
use crate::core::wire::{Event, EventType};

const FRAGMENT: &str = "onramp-preview=";
const SESSION_KEY: &str = "onramp.preview";
/// Events kept to show in the panel (the counts cover all of them).
const KEPT: usize = 50;

struct Preview {
    check_url: String,
    /// Until when, and made by whom, once the collector vouched for the token.
    verified: Option<(i64, String)>,
    plan_started: bool,
    /// Per capture rule: events it produced in this page view.
    matches: Vec<u32>,
    /// The latest events recorded and kept back: type, name, time.
    kept: Vec<(EventType, String, i64)>,
    kept_total: u32,
    panel: Option<panel::Panel>,
}

thread_local! {
    static PREVIEW: RefCell<Option<Preview>> = const { RefCell::new(None) };
}

/// Called by `init`: turns preview on when the page was opened with a preview token (which then
/// leaves the address bar) or this tab is in a preview already. Returns whether it is on.
pub fn begin(collector: &str, write_key: &str) -> bool {
    let Some(window) = web_sys::window() else { return false };
    let session = window.session_storage().ok().flatten();
    let location = window.location();
    let hash = location.hash().unwrap_or_default();
    let token = match hash.find(FRAGMENT) {
        Some(at) => {
            let rest = &hash[at + FRAGMENT.len()..];
            let end = rest.find('&').unwrap_or(rest.len());
            let token = js_sys::decode_uri_component(&rest[..end]).map(String::from).unwrap_or_default();
            // The app's own fragment (a hash route) stays; the token goes.
            let mut kept = String::from(hash[..at].trim_end_matches(['&', '#']));
            let tail = rest[end..].trim_start_matches('&');
            if !tail.is_empty() {
                kept.push_str(if kept.is_empty() { "#" } else { "&" });
                kept.push_str(tail);
            }
            let url = location.pathname().unwrap_or_default() + &location.search().unwrap_or_default() + &kept;
            if let Ok(history) = window.history() {
                let _ = history.replace_state_with_url(&JsValue::NULL, "", Some(&url));
            }
            if let Some(s) = &session {
                let _ = s.set_item(SESSION_KEY, &token);
            }
            Some(token)
        }
        None => session.as_ref().and_then(|s| s.get_item(SESSION_KEY).ok().flatten()),
    };
    let Some(token) = token.filter(|t| !t.is_empty()) else { return false };
    let mut check_url = String::from(collector.trim_end_matches('/'));
    check_url.push_str("/v1/preview?token=");
    check_url.push_str(&String::from(js_sys::encode_uri_component(&token)));
    check_url.push_str("&writeKey=");
    check_url.push_str(&String::from(js_sys::encode_uri_component(write_key)));
    let preview = Preview {
        check_url,
        verified: None,
        plan_started: false,
        matches: Vec::new(),
        kept: Vec::new(),
        kept_total: 0,
        panel: None,
    };
    PREVIEW.with(|p| *p.borrow_mut() = Some(preview));
    verify();
    true
}

thread_local! {
    /// In preview the user's stored state is not written: the SDK's writes for this page view
    /// land here, over what `localStorage` holds (`None`: removed).
    static OVERLAY: RefCell<std::collections::BTreeMap<String, Option<String>>> = const { RefCell::new(std::collections::BTreeMap::new()) };
}

/// In preview, what the SDK wrote for `key` in this page view, if it wrote it.
pub fn stored(key: &str) -> Option<Option<String>> {
    if !active() {
        return None;
    }
    OVERLAY.with(|o| o.borrow().get(key).cloned())
}

/// In preview, keeps a write (or, with `None`, a removal) in memory and says so.
pub fn store(key: &str, value: Option<&str>) -> bool {
    if !active() {
        return false;
    }
    OVERLAY.with(|o| o.borrow_mut().insert(key.into(), value.map(String::from)));
    true
}

/// `localStorage`'s keys under `prefix` as the SDK sees them in preview.
pub fn stored_keys(mut keys: Vec<String>, prefix: &str) -> Vec<String> {
    if !active() {
        return keys;
    }
    OVERLAY.with(|o| {
        for (key, value) in o.borrow().range(prefix.to_string()..).take_while(|(k, _)| k.starts_with(prefix)) {
            match value {
                Some(_) if !keys.contains(key) => keys.push(key.clone()),
                None => keys.retain(|k| k != key),
                Some(_) => {}
            }
        }
    });
    keys
}

pub fn active() -> bool {
    PREVIEW.with(|p| p.try_borrow().map(|p| p.is_some()).unwrap_or(true))
}

/// What the SDK recorded in preview: kept here and counted, never sent.
pub fn keep(events: Vec<Event>, plan: Option<&Plan>) {
    if events.is_empty() {
        return;
    }
    PREVIEW.with(|p| {
        let Ok(mut guard) = p.try_borrow_mut() else { return };
        let Some(p) = guard.as_mut() else { return };
        for e in events {
            if let Some(rule) = plan.and_then(|plan| crate::core::preview::rule_of(plan, &e.name, &e.props)) {
                if p.matches.len() <= rule {
                    p.matches.resize(rule + 1, 0);
                }
                p.matches[rule] += 1;
            }
            if p.kept.len() >= KEPT {
                p.kept.remove(0);
            }
            p.kept.push((e.kind, e.name, e.ts));
            p.kept_total += 1;
        }
    });
    panel::refresh_soon();
}

/// The plan is running and the tips layer is up: the panel may open.
pub fn plan_started() {
    PREVIEW.with(|p| {
        if let Some(p) = p.borrow_mut().as_mut() {
            p.plan_started = true;
        }
    });
    open_when_ready();
}

fn open_when_ready() {
    let ready = PREVIEW.with(|p| p.borrow().as_ref().is_some_and(|p| p.verified.is_some() && p.plan_started && p.panel.is_none()));
    if ready {
        if let Some(panel) = panel::Panel::open() {
            PREVIEW.with(|p| {
                if let Some(p) = p.borrow_mut().as_mut() {
                    p.panel = Some(panel);
                }
            });
            panel::refresh();
        }
    }
}

thread_local! {
    static IGNORE: Closure<dyn FnMut(JsValue)> = Closure::new(|_: JsValue| {});
}

/// Asks the collector whether the token is genuine, unexpired and for this project.
fn verify() {
    let Some(window) = web_sys::window() else { return };
    let Some(url) = PREVIEW.with(|p| p.borrow().as_ref().map(|p| p.check_url.clone())) else { return };
    let on_text = Closure::<dyn FnMut(JsValue)>::new(move |text: JsValue| {
        let doc = json::parse(&text.as_string().unwrap_or_default()).unwrap_or(Value::Null);
        match doc.get("expiresAt").and_then(Value::as_f64) {
            Some(expires) => {
                let by = doc.get("by").and_then(Value::as_str).unwrap_or_default().to_owned();
                PREVIEW.with(|p| {
                    if let Some(p) = p.borrow_mut().as_mut() {
                        p.verified = Some((expires as i64, by));
                    }
                });
                open_when_ready();
            }
            None => {
                let why = doc.get("error").and_then(Value::as_str).unwrap_or("the collector did not vouch for it");
                refused(why);
            }
        }
    });
    let on_response = Closure::<dyn FnMut(JsValue)>::new(move |response: JsValue| {
        let Some(response) = response.dyn_ref::<web_sys::Response>() else { return };
        if let Ok(text) = response.text() {
            IGNORE.with(|ignore| {
                let _ = text.then2(&on_text, ignore);
            });
        }
    });
    let on_error = Closure::<dyn FnMut(JsValue)>::new(|_: JsValue| refused("the collector could not be reached"));
    let _ = window.fetch_with_str(&url).then2(&on_response, &on_error);
    // Once per page view.
    on_response.forget();
    on_error.forget();
}

/// A token the collector refused: no panel, and this tab forgets it. The page view still
/// records nothing (it was opened as a preview).
fn refused(why: &str) {
    if let Some(s) = web_sys::window().and_then(|w| w.session_storage().ok().flatten()) {
        let _ = s.remove_item(SESSION_KEY);
    }
    let mut message = String::from("onramp: preview link refused: ");
    message.push_str(why);
    message.push_str(". Nothing on this page view is recorded; reload without the link to record again.");
    web_sys::console::warn_1(&message.into());
}

/// Leaves preview: the tab forgets the token and the page reloads as it is, so nothing of the
/// preview's in-memory state can reach storage or the collector.
fn end() {
    let Some(window) = web_sys::window() else { return };
    if let Some(s) = window.session_storage().ok().flatten() {
        let _ = s.remove_item(SESSION_KEY);
    }
    let _ = window.location().reload();
}
