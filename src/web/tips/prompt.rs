//! Growth prompts on the page (docs/PLANS.md, "Prompts"): a card in the tips' shadow root, at
//! the bottom corner, with "Not now" and the call to action. [`crate::core::prompts`] decides
//! which one may show; this renders it and reports what the user does.
//!
//! A host action reaches the page as an `onramp:action` event on `window` (`detail`: `name`,
//! `context`), which `onramp.on("action", fn)` (www/sdk/index.mjs) hands to the page's callback
//! after this code has returned, so the callback may call onramp freely.

use wasm_bindgen::JsCast;
use web_sys::{Element, Event, HtmlElement, KeyboardEvent};

use super::dom::{self, button, child, set, Listener};
use super::render::{self, Ctx};
use super::{with_both, Ui};
use crate::core::engine::{Emit, Engine};
use crate::core::json::Value;
use crate::core::plan::{Prompt, PromptAction};
use crate::core::prompts;
use crate::core::storage::KeyValue;
use crate::core::vocab::{prompt as names, prop};
use crate::core::wire::EventType;

/// Heading ids of prompts start here, apart from the tips' (which count from 0).
const ID_BASE: usize = 1000;

pub(super) struct PromptSurface {
    pub index: usize,
    wrap: HtmlElement,
    counted: bool,
    /// A referral link was copied: the card stays to say so until closed.
    copied: bool,
    _events: [Listener; 2],
}

impl Drop for PromptSurface {
    fn drop(&mut self) {
        self.wrap.remove();
    }
}

fn on_click(e: Event) {
    let action = e.target().and_then(|t| t.dyn_into::<Element>().ok()).and_then(|t| t.closest("[data-a]").ok().flatten()).and_then(|a| a.get_attribute("data-a"));
    if let Some(action) = action {
        act(&action);
    }
}

fn on_key(e: Event) {
    if e.dyn_ref::<KeyboardEvent>().is_some_and(|k| k.key() == "Escape") {
        e.prevent_default();
        e.stop_propagation();
        act("l");
    }
}

fn act(action: &str) {
    with_both(&mut |ui, engine, store, out| {
        ui.prompt_act(action, engine, store, out);
        ui.reconcile(engine, store, out);
    });
}

fn emit(out: &mut Vec<Emit>, p: &Prompt, name: &str, action: Option<&str>) {
    let mut props = vec![(prop::PROMPT_ID.to_owned(), Value::Str(p.id.clone())), (prop::MILESTONE.to_owned(), Value::Str(p.milestone.clone()))];
    if let Some(a) = action {
        props.push((prop::ACTION.to_owned(), Value::Str(a.to_owned())));
    }
    out.push(Emit { kind: EventType::Prompt, name: name.into(), props });
}

/// The card: title, body, "Not now" and the call to action (a link for a URL).
fn card(parent: &Element, p: &Prompt, n: usize, ctx: &Ctx) -> Option<HtmlElement> {
    let g = child(parent, "div", "q", "")?;
    set(&g, "role", "dialog");
    let id = render::heading(&g, ctx.text(&p.title), ctx.text(&p.body), ID_BASE + n);
    set(&g, "aria-labelledby", &id);
    let row = child(&g, "div", "r", "")?;
    button(&row, "b", "l", ctx.label("notNow"));
    let label = ctx.text(&p.cta_label);
    match &p.action {
        PromptAction::Url(url) => {
            let a = child(&row, "a", "b pr", label)?;
            set(&a, "href", url);
            set(&a, "data-a", "c");
            if !crate::core::markup::same_site_path(url) {
                set(&a, "target", "_blank");
                set(&a, "rel", "noopener noreferrer");
            }
        }
        _ => {
            button(&row, "b pr", "c", label);
        }
    }
    Some(g)
}

/// Tells the host page: `window` gets an `onramp:action` event.
fn host_action(name: &str, p: &Prompt, user: &str) {
    let Some(w) = dom::window() else { return };
    let context = js_sys::Object::new();
    let put = |o: &js_sys::Object, k: &str, v: &str| drop(js_sys::Reflect::set(o, &k.into(), &v.into()));
    put(&context, "promptId", &p.id);
    put(&context, "milestone", &p.milestone);
    put(&context, "userId", user);
    let detail = js_sys::Object::new();
    put(&detail, "name", name);
    drop(js_sys::Reflect::set(&detail, &"context".into(), &context));
    let init = web_sys::CustomEventInit::new();
    init.set_detail(&detail);
    if let Ok(e) = web_sys::CustomEvent::new_with_event_init_dict("onramp:action", &init) {
        drop(w.dispatch_event(&e));
    }
}

impl Ui {
    /// Puts the prompt the scheduler picks on screen (or takes it away). `tip_focus`: a tip
    /// holds the user's attention. Returns when to ask again.
    pub(super) fn reconcile_prompt(&mut self, engine: &mut Engine, store: &mut dyn KeyValue, out: &mut Vec<Emit>, t: i64, tip_focus: bool) -> Option<i64> {
        if self.prompt.as_ref().is_some_and(|p| p.copied) {
            return None;
        }
        let user = (!engine.is_anonymous()).then(|| engine.identity().to_owned());
        let up = self.prompt.as_ref().map(|p| p.index);
        let (pick, wake) = prompts::pick(engine.plan(), &engine.state, user.as_deref(), t, up, tip_focus);
        if pick != up {
            self.prompt = None;
        }
        if let (Some(i), None) = (pick, &self.prompt) {
            let Some(p) = engine.plan().prompts.get(i) else { return wake };
            let Some(wrap) = dom::child(self.root.unchecked_ref(), "div", "", "") else { return wake };
            let events = [Listener::new(&wrap, "click", false, on_click), Listener::new(&wrap, "keydown", false, on_key)];
            if card(&wrap, p, i, &self.ctx(engine)).is_none() {
                return wake;
            }
            self.prompt = Some(PromptSurface { index: i, wrap, counted: false, copied: false, _events: events });
        }
        if let Some(s) = self.prompt.as_mut().filter(|s| !s.counted) {
            s.counted = true;
            let i = s.index;
            let shown = engine.update_with_plan(store, |plan, state, tab| plan.prompts.get(i).is_some_and(|p| prompts::record_shown(state, tab, p, t)));
            if let (true, Some(p)) = (shown, engine.plan().prompts.get(i)) {
                emit(out, p, names::SHOWN, None);
            }
        }
        wake
    }

    /// What the user did in the prompt: `c` the call to action, `l` "not now" (also Esc), `x`
    /// close after a copy.
    pub(super) fn prompt_act(&mut self, action: &str, engine: &mut Engine, store: &mut dyn KeyValue, out: &mut Vec<Emit>) {
        let (copied_label, close_label) = {
            let ctx = self.ctx(engine);
            (ctx.label("copied").to_owned(), ctx.label("close").to_owned())
        };
        let Some(s) = self.prompt.as_mut() else { return };
        let plan = engine.shared_plan();
        let Some(p) = plan.prompts.get(s.index) else { return };
        let t = super::now();
        match action {
            "l" if !s.copied => {
                emit(out, &p, names::DISMISSED, None);
                engine.update_with_plan(store, |_, state, _| prompts::record_not_now(state, &p, t));
                self.prompt = None;
            }
            "c" if !s.copied => {
                emit(out, &p, names::ACTION, Some(p.action.kind()));
                engine.update_with_plan(store, |_, state, _| prompts::record_action(state, &p, t));
                match &p.action {
                    // The link opens by itself (its default action).
                    PromptAction::Url(_) => self.prompt = None,
                    PromptAction::Host(name) => {
                        host_action(name, &p, engine.identity());
                        self.prompt = None;
                    }
                    PromptAction::Copy(text) => {
                        let text = crate::core::substr::replace(&text, "{userId}", engine.identity());
                        if let Some(w) = dom::window() {
                            drop(w.navigator().clipboard().write_text(&text));
                        }
                        s.copied = true;
                        // The card says so, and "Not now" becomes "Close".
                        if let Ok(Some(b)) = s.wrap.query_selector("[data-a=c]") {
                            b.set_text_content(Some(&[copied_label.as_str(), ": ", &text].concat()));
                        }
                        if let Ok(Some(b)) = s.wrap.query_selector("[data-a=l]") {
                            b.set_text_content(Some(&close_label));
                            set(&b, "data-a", "x");
                        }
                    }
                }
            }
            "x" | "l" => self.prompt = None,
            _ => {}
        }
    }
}
