//! Tips in the page: tooltips, hotspots, modals, tours and the checklist, rendered inside one
//! shadow root so the host page's CSS cannot reach them and theirs cannot leak out.
//!
//! [`crate::core::tips`] decides which tips may show; this module renders its answer, keeps
//! anchored tips beside their targets, and reports what the user does. Each [`Surface`] owns its
//! DOM, listeners, observers and timers: dropping it removes them all.
//!
//! Re-entrancy: rendering runs with the UI state and the engine borrowed, so nothing in here
//! calls code that may run the host page's handlers (which may call onramp) while they are held.
//! Focus moves, which fire focus events, wait until both are released ([`FOCUS`]).

mod dom;
mod prompt;
mod render;
mod survey;

use std::cell::{Cell, RefCell};

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{Element, Event, HtmlElement, KeyboardEvent, ShadowRoot};

use crate::core::engine::{Emit, Engine, UserState};
use crate::core::json::Value;
use crate::core::vocab::{prop, tip};
use crate::core::placement::{self, Side};
use crate::core::plan::{CtaAction, Tip, TipKind};
use crate::core::storage::KeyValue;
use crate::core::surveys;
use crate::core::tips::{self as sched, Page};
use crate::core::vocab::survey as vocab_survey;
use crate::core::wire::EventType;
use dom::{Found, Listener, Observer, Timeout};
use render::Ctx;

/// How long a tip waits for its target to appear before reporting `tip_target_missing`.
const TARGET_WAIT_MS: i64 = 5000;
/// How long a shown tip stays where it is while its target is gone, before it is hidden and
/// `tip_target_missing` is reported. Frameworks that re-render asynchronously (a refetch, a
/// suspended route, a virtualised row scrolled out and back) bring an equal target back within
/// this; the card meanwhile keeps its place, its focus and its announcement.
const TARGET_GRACE_MS: i64 = 1500;
const BEACON: f64 = 24.0;
/// Events remembered for `afterEvent` triggers in one page view.
const MAX_SEEN: usize = 64;
const CSS: &str = include_str!("tips.css");
/// The host element resists the page's CSS: inline `!important` beats any stylesheet rule, and
/// `all: initial` stops inherited fonts, colours and transforms (custom properties, which
/// theme the tips, still inherit).
const HOST_CSS: &str = "all:initial!important;display:block!important;position:fixed!important;top:0!important;left:0!important;width:0!important;height:0!important;overflow:visible!important;visibility:visible!important;opacity:1!important;pointer-events:auto!important;z-index:var(--onramp-z,2147483000)!important;direction:";

thread_local! {
    static UI: RefCell<Option<Ui>> = const { RefCell::new(None) };
    /// Focus to move once nothing is borrowed.
    static FOCUS: RefCell<Option<HtmlElement>> = const { RefCell::new(None) };
    /// An animation frame is requested to follow the targets ([`schedule_follow`]).
    static FRAME: Cell<bool> = const { Cell::new(false) };
    /// A [`refresh`] is queued for the end of the running script ([`refresh_soon`]).
    static REFRESH_SOON: Cell<bool> = const { Cell::new(false) };
}

struct Ui {
    root: ShadowRoot,
    locale: String,
    labels: Value,
    rtl: bool,
    surfaces: Vec<Surface>,
    href: String,
    route_since: i64,
    seen: Vec<(String, i64)>,
    /// Tips whose target is missing on this route.
    skip: Vec<usize>,
    /// `(tip, step)` already reported missing in this page view.
    reported: Vec<(usize, usize)>,
    forced: Option<usize>,
    /// The tip preview's "show now" asked for (shown whatever the schedule says) until closed.
    review: Option<usize>,
    /// Open the checklist when it is next rendered (a CTA asked for it).
    open_checklist: bool,
    /// The user is working in this tip: focus its main button after rendering.
    focus_tip: Option<usize>,
    wake: Option<Timeout>,
    /// The micro-survey on screen (at most one), and when the next one may be due.
    survey: Option<survey::Card>,
    survey_wake: Option<Timeout>,
    /// The growth prompt on screen.
    prompt: Option<prompt::PromptSurface>,
    /// The one observer of the page's DOM, while a tip is anchored or waits for its target.
    observer: Option<Observer>,
    _route: Vec<Listener>,
}

struct Surface {
    tip: usize,
    kind: TipKind,
    /// The tour step on screen; Back shows earlier ones, the state keeps the furthest.
    step: usize,
    /// What the DOM was built for: the tour's stored step, or the checklist's milestones reached.
    built_for: usize,
    open: bool,
    wrap: HtmlElement,
    /// Beside the target: the card of a tooltip or tour, the beacon of a hotspot.
    float: Option<HtmlElement>,
    /// A hotspot's opened card, or the checklist's panel.
    card: Option<HtmlElement>,
    target: Option<Found>,
    /// The side of the target the plan asks for.
    side: Side,
    counted: bool,
    /// Where focus goes back to when the tip goes away: what had it before the modal opened, or
    /// before focus last came into the tip from the page.
    restore: Option<HtmlElement>,
    _events: [Listener; 3],
    follow: Vec<Listener>,
    /// The target was on screen and went away: the grace period runs (`timer`).
    lost: bool,
    /// The user asked for this tip (Next, Back) while its target was not there yet: focus its
    /// main button when the target appears.
    focus_on_attach: bool,
    /// An observer of the open shadow root or iframe document a search for the target stopped
    /// in (the page itself is watched by `Ui::observer`).
    watch: Option<Observer>,
    watch_root: Option<web_sys::Node>,
    timer: Option<Timeout>,
}

/// A second `init` replaces the UI: the old host element goes with it.
impl Drop for Ui {
    fn drop(&mut self) {
        self.root.host().remove();
    }
}

impl Drop for Surface {
    fn drop(&mut self) {
        self.wrap.remove();
    }
}

fn now() -> i64 {
    js_sys::Date::now() as i64
}

/// Runs `f` later, from an empty stack (used when the UI is busy: a host handler called back).
fn defer(f: fn()) {
    if let Some(w) = dom::window() {
        let cb = Closure::once_into_js(f);
        let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(cb.unchecked_ref(), 0);
    }
}

fn flush_focus() {
    if let Some(el) = FOCUS.with(|f| f.borrow_mut().take()) {
        let _ = el.focus();
    }
}

fn focus_later(el: Option<HtmlElement>) {
    if let Some(el) = el {
        FOCUS.with(|f| *f.borrow_mut() = Some(el));
    }
}

/// Work on the UI with the engine, its storage and the events to record.
type Work<'a> = dyn FnMut(&mut Ui, &mut Engine, &mut dyn KeyValue, &mut Vec<Emit>) + 'a;
/// The same, for the surface at an index of `Ui::surfaces`.
type SurfaceWork<'a> = dyn FnMut(&mut Ui, usize, &mut Engine, &mut dyn KeyValue, &mut Vec<Emit>) + 'a;

/// Runs `f` on the UI and the engine; false when the UI was busy (the caller defers).
/// (A `dyn` closure: one copy of this and of the engine access, not one per caller.)
fn with_both(f: &mut Work) -> bool {
    with_both_from(false, f)
}

/// [`with_both`]; `from_page`: part of a call from the page (see `Machine::with_engine`).
fn with_both_from(from_page: bool, f: &mut Work) -> bool {
    let done = UI.with(|cell| {
        let Ok(mut guard) = cell.try_borrow_mut() else { return false };
        if let Some(ui) = guard.as_mut() {
            super::with_engine(from_page, |engine, store, out| f(ui, engine, store, out));
        }
        true
    });
    flush_focus();
    done
}

fn location() -> (String, String, String) {
    let Some(l) = dom::window().map(|w| w.location()) else { return Default::default() };
    (l.href().unwrap_or_default(), l.pathname().unwrap_or_default(), l.hash().unwrap_or_default())
}

/// Starts rendering tips. `options` is init's `tips` object: `{ locale, dir, theme, labels }`,
/// all optional (the page's `lang` and `dir`, and the system's colour scheme, by default).
pub fn start(options: &Value, default_locale: &str) {
    let Some(doc) = dom::document() else { return };
    let Some(html) = doc.document_element() else { return };
    let opt = |k: &str| options.get(k).and_then(Value::as_str).map(str::to_owned);
    let attr = |k: &str| html.get_attribute(k).filter(|v| !v.is_empty());
    let locale = opt("locale")
        .or_else(|| attr("lang"))
        .or_else(|| dom::window().and_then(|w| w.navigator().language()))
        .unwrap_or_else(|| default_locale.to_owned());
    let rtl = opt("dir").or_else(|| attr("dir")).is_some_and(|d| d.eq_ignore_ascii_case("rtl"));

    let Some(host) = dom::el("onramp-tips", "") else { return };
    dom::style(&host, &(String::from(HOST_CSS) + if rtl { "rtl!important" } else { "ltr!important" }));
    dom::set(&host, "dir", if rtl { "rtl" } else { "ltr" });
    if let Some(theme) = opt("theme") {
        dom::set(&host, "data-theme", &theme);
    }
    let Ok(root) = host.attach_shadow(&web_sys::ShadowRootInit::new(web_sys::ShadowRootMode::Open)) else { return };
    // A constructed stylesheet is not subject to a strict `style-src` CSP; a <style> element is
    // the fallback for browsers without them.
    let adopted = web_sys::CssStyleSheet::new().ok().filter(|s| s.replace_sync(CSS).is_ok()).is_some_and(|sheet| {
        js_sys::Reflect::set(&root, &"adoptedStyleSheets".into(), &js_sys::Array::of1(&sheet)).unwrap_or(false)
    });
    if !adopted {
        dom::child(root.unchecked_ref(), "style", "", CSS);
    }
    if html.append_child(&host).is_err() {
        return;
    }
    let w: web_sys::EventTarget = match dom::window() {
        Some(w) => w.into(),
        None => return,
    };
    let mut route = vec![Listener::new(&w, "popstate", false, |_| on_route()), Listener::new(&w, "hashchange", false, |_| on_route())];
    // SPA navigations by pushState fire no event of their own; the Navigation API reports them.
    if let Ok(nav) = js_sys::Reflect::get(&w, &"navigation".into()) {
        if let Some(nav) = nav.dyn_ref::<web_sys::EventTarget>() {
            route.push(Listener::new(nav, "currententrychange", false, |_| on_route()));
        }
    }
    let ui = Ui {
        root,
        locale,
        labels: options.get("labels").cloned().unwrap_or(Value::Null),
        rtl,
        surfaces: Vec::new(),
        href: location().0,
        route_since: now(),
        seen: Vec::new(),
        skip: Vec::new(),
        reported: Vec::new(),
        forced: None,
        review: None,
        open_checklist: false,
        focus_tip: None,
        wake: None,
        survey: None,
        survey_wake: None,
        prompt: None,
        observer: None,
        _route: route,
    };
    UI.with(|cell| {
        if let Ok(mut g) = cell.try_borrow_mut() {
            *g = Some(ui);
        }
    });
    // After the calls queued with init (identify, typically) have run: a tip shown to the
    // anonymous visitor a moment before `identify` would not count for the user. They run in
    // the same script (the loader's replay, or the page's own calls), so a microtask comes
    // after them; a timer came after whatever else the loading page had queued too.
    refresh_soon();
}

#[cfg(feature = "preview")]
/// For the preview panel: `f` gets the engine, this page as the scheduler sees it, the tips on
/// screen, and the scheduler's pick. `None` while the UI or the engine is busy or absent.
pub fn inspect<R>(f: impl FnOnce(&Engine, &Page, &[usize], sched::Pick) -> R) -> Option<R> {
    let mut f = Some(f);
    let mut out = None;
    with_both(&mut |ui, engine, _, _| {
        let (_, path, hash) = location();
        let page = ui.page(engine, now(), &path, &hash);
        let on_screen: Vec<usize> = ui.surfaces.iter().map(|s| s.tip).collect();
        let pick = sched::pick(engine.plan(), &engine.state, &page, &ui.on_screen());
        if let Some(f) = f.take() {
            out = Some(f(engine, &page, &on_screen, pick));
        }
    });
    out
}

#[cfg(feature = "preview")]
/// Preview's "show now": tip `i` on screen whatever the schedule says, until it is closed.
pub fn show_now(i: usize) {
    let ok = with_both(&mut |ui, engine, store, out| {
        ui.review = Some(i);
        ui.skip.retain(|&s| s != i);
        ui.reported.retain(|&(t, _)| t != i);
        ui.focus_tip = Some(i);
        ui.reconcile(engine, store, out);
    });
    if !ok {
        defer(refresh);
    }
}

#[cfg(feature = "preview")]
/// The shadow root the tips live in (the preview panel lives there too).
pub fn shadow_root() -> Option<ShadowRoot> {
    UI.with(|cell| cell.try_borrow().ok()?.as_ref().map(|ui| ui.root.clone()))
}

#[cfg(feature = "preview")]
/// The element `selector` (with `>>>` into open shadow roots and same-origin frames) finds
/// now, as tips look for their targets.
pub fn find_target(selector: &str) -> Option<Element> {
    dom::find(selector).ok().map(|f| f.el)
}

/// Re-decides what is on screen: after an event, a milestone, identify, a route change, a timer.
pub fn refresh() {
    if !with_both(&mut |ui, engine, store, out| ui.reconcile(engine, store, out)) {
        defer(refresh);
    }
}

/// An event happened (tracked or auto-captured): `afterEvent` triggers, and tour steps that
/// advance on it.
pub fn on_event(name: &str) {
    let name = name.to_owned();
    let ok = with_both_from(true, &mut |ui, engine, store, out| {
        let t = now();
        if ui.seen.len() >= MAX_SEEN {
            ui.seen.remove(0);
        }
        ui.seen.push((name.clone(), t));
        for (i, step) in sched::steps_done(engine.plan(), &engine.state, Some(&name)) {
            ui.complete_step(engine, store, out, i, step, t);
        }
    });
    if ok {
        refresh_soon();
    } else {
        defer(refresh);
    }
}

/// One [`refresh`] at the end of the running script, however many events it tracked: the
/// tips are rendered from the state the last one left (the page cannot paint in between).
/// Per event, `reconcile` was the largest part of a full SDK's `track()` in Chromium's
/// profiler (the page's location read three times, the schedule picked, two timers reset).
fn refresh_soon() {
    if REFRESH_SOON.with(|r| r.replace(true)) {
        return;
    }
    let cb = Closure::once_into_js(|| {
        REFRESH_SOON.with(|r| r.set(false));
        refresh();
    });
    match dom::window() {
        Some(w) => w.queue_microtask(cb.unchecked_ref()),
        None => REFRESH_SOON.with(|r| r.set(false)),
    }
}

fn on_route() {
    let ok = with_both(&mut |ui, engine, store, out| {
        let href = location().0;
        if href != ui.href {
            ui.href = href;
            ui.route_since = now();
            ui.skip.clear();
        }
        ui.reconcile(engine, store, out);
    });
    if !ok {
        defer(on_route);
    }
}

fn with_surface(i: usize, f: &mut SurfaceWork) {
    with_both(&mut |ui, engine, store, out| {
        if let Some(pos) = ui.surfaces.iter().position(|s| s.tip == i) {
            f(ui, pos, engine, store, out);
        }
    });
}

/// The page changed (a DOM mutation, a scroll, a resize, an iframe load): follow the targets in
/// the next animation frame. However many mutations a framework's re-render makes, the targets
/// are looked up and measured once, in the frame, before it is painted (mutation callbacks
/// run before it; scroll and resize events are dispatched in it, before its callbacks), so no
/// frame shows a card at a stale place and no layout is forced per mutation.
fn schedule_follow() {
    if FRAME.with(|f| f.replace(true)) {
        return;
    }
    // A hidden tab runs no animation frames: a target that appears there is still found in time.
    if dom::document().is_some_and(|d| d.hidden()) {
        return defer(follow_targets);
    }
    let requested = dom::window().is_some_and(|w| {
        let cb = Closure::once_into_js(follow_targets);
        w.request_animation_frame(cb.unchecked_ref()).is_ok()
    });
    if !requested {
        FRAME.with(|f| f.set(false));
    }
}

fn follow_targets() {
    FRAME.with(|f| f.set(false));
    if !with_both(&mut |ui, engine, store, out| ui.follow_all(engine, store, out)) {
        schedule_follow();
    }
}

/// The target did not appear in time, or stayed away past the grace period: report it once, hide
/// the tip and let the next tip have its turn.
fn target_timeout(i: usize) {
    with_both(&mut |ui, engine, store, out| {
        let Some(pos) = ui.surfaces.iter().position(|s| s.tip == i && (s.target.is_none() || s.lost)) else { return };
        let step = ui.surfaces[pos].step;
        if let Some(tip) = engine.plan().tips.get(i) {
            if !ui.reported.contains(&(i, step)) {
                ui.reported.push((i, step));
                let selector = Value::Str(selector(tip, step).to_owned());
                emit(out, engine, i, tip::TARGET_MISSING, Some(step), Some((prop::SELECTOR, selector)));
            }
        }
        ui.skip.push(i);
        if ui.forced == Some(i) {
            ui.forced = None;
        }
        // A tip reviewed in preview whose target is not here: the panel then says so.
        if ui.review == Some(i) {
            ui.review = None;
        }
        let gone = ui.surfaces.remove(pos);
        ui.give_back_focus(&gone);
        ui.reconcile(engine, store, out);
    });
}

fn on_click(i: usize, e: Event) {
    let action = e.target().and_then(|t| t.dyn_into::<Element>().ok()).and_then(|t| t.closest("[data-a]").ok().flatten()).and_then(|a| a.get_attribute("data-a"));
    if let Some(action) = action {
        act(i, &action);
    }
}

fn on_key(i: usize, e: Event) {
    let Some(k) = e.dyn_ref::<KeyboardEvent>() else { return };
    match k.key().as_str() {
        "Escape" => {
            // The key was for the tip: the host page should not also act on it.
            e.prevent_default();
            e.stop_propagation();
            act(i, "esc");
        }
        "Tab" => with_surface(i, &mut |ui, pos, _, _, _| ui.trap(pos, k)),
        _ => {}
    }
}

fn act(i: usize, action: &str) {
    with_surface(i, &mut |ui, pos, engine, store, out| {
        ui.act(pos, action, engine, store, out);
        ui.reconcile(engine, store, out);
    });
}

/// The user acted on survey `i`'s card (see `survey::act`).
fn survey_act(i: usize, action: &str) {
    let ok = with_both(&mut |ui, engine, store, out| {
        let plan = engine.shared_plan();
        let Some(s) = plan.surveys.get(i) else { return };
        let Some(card) = ui.survey.as_mut().filter(|c| c.survey == i) else { return };
        let ctx = Ctx { locale: &ui.locale, default_locale: &plan.default_locale, labels: &ui.labels };
        if survey::act(card, s, action, &ctx, engine, store, out, now()) {
            ui.survey = None;
            ui.reconcile(engine, store, out);
        }
    });
    if !ok {
        defer(refresh);
    }
}

/// The thank-you has been read: the card goes.
fn survey_done() {
    if !with_both(&mut |ui, engine, store, out| {
        ui.survey = None;
        ui.reconcile(engine, store, out);
    }) {
        defer(survey_done);
    }
}

/// The selector of a tip's target at a tour step.
fn selector(tip: &Tip, step: usize) -> &str {
    match tip.kind {
        TipKind::Tour => tip.steps.get(step).map_or("", |s| s.target.as_str()),
        _ => tip.target.as_deref().unwrap_or(""),
    }
}

/// Records a change to tip `i`'s state, persisted and merged across tabs like the engine's own.
fn record(engine: &mut Engine, store: &mut dyn KeyValue, i: usize, f: impl FnOnce(&mut UserState, &Tip, &str) -> bool) -> bool {
    engine.update_with_plan(store, |plan, state, tab| plan.tips.get(i).is_some_and(|tip| f(state, tip, tab)))
}

/// Queues a `tip` event about tip `i`, per docs/EVENTS.md.
fn emit(out: &mut Vec<Emit>, engine: &Engine, i: usize, name: &str, step: Option<usize>, extra: Option<(&str, Value)>) {
    let Some(tip) = engine.plan().tips.get(i) else { return };
    let step = step.filter(|_| tip.kind == TipKind::Tour);
    let mut props = vec![(prop::TIP_ID.to_owned(), Value::Str(tip.id.clone()))];
    if let Some(m) = &tip.milestone {
        props.push((prop::MILESTONE.into(), Value::Str(m.clone())));
    }
    props.push((prop::SINCE_SIGNUP_MS.into(), Value::Num(engine.state.since_signup(now()) as f64)));
    if let Some(s) = step {
        props.push((prop::STEP.into(), Value::Num(s as f64)));
    }
    if let Some((k, v)) = extra {
        props.push((k.into(), v));
    }
    out.push(Emit { kind: EventType::Tip, name: name.into(), props });
}

fn first_button(el: &Element) -> Option<HtmlElement> {
    // The primary action when there is one, else the first control.
    el.query_selector(".pr").ok().flatten().or_else(|| el.query_selector("[data-a]").ok().flatten())?.dyn_into().ok()
}

/// Focus came into the tip: remember from where, to give it back there when the tip goes away.
fn on_focus_in(i: usize, e: Event) {
    let from = js_sys::Reflect::get(&e, &"relatedTarget".into()).ok().and_then(|t| t.dyn_into::<HtmlElement>().ok());
    let Some(from) = from else { return };
    with_surface(i, &mut |ui, pos, _, _, _| {
        let s = &mut ui.surfaces[pos];
        if s.kind != TipKind::Modal && !s.wrap.contains(Some(&from)) {
            s.restore = Some(from.clone());
        }
    });
}

/// Tips that sit beside a target in the page.
fn anchored(kind: TipKind) -> bool {
    matches!(kind, TipKind::Tooltip | TipKind::Hotspot | TipKind::Tour)
}

impl Ui {
    /// The page as the scheduler sees it.
    fn page<'a>(&'a self, engine: &'a Engine, t: i64, path: &'a str, hash: &'a str) -> Page<'a> {
        Page {
            now: t,
            path,
            hash,
            route_since: self.route_since,
            seen: &self.seen,
            skip: &self.skip,
            forced: self.forced,
            review: self.review,
            user: (!engine.is_anonymous()).then(|| engine.identity()),
        }
    }

    /// The tips holding their place (a hotspot's closed beacon holds none).
    fn on_screen(&self) -> Vec<usize> {
        self.surfaces.iter().filter(|s| s.kind != TipKind::Hotspot || s.open).map(|s| s.tip).collect()
    }

    fn ctx<'a>(&'a self, engine: &'a Engine) -> Ctx<'a> {
        Ctx { locale: &self.locale, default_locale: &engine.plan().default_locale, labels: &self.labels }
    }

    fn reconcile(&mut self, engine: &mut Engine, store: &mut dyn KeyValue, out: &mut Vec<Emit>) {
        let t = now();
        for (i, step) in sched::steps_done(engine.plan(), &engine.state, None) {
            self.complete_step(engine, store, out, i, step, t);
        }
        let (_, path, hash) = location();
        let on_screen = self.on_screen();
        let page = self.page(engine, t, &path, &hash);
        let pick = sched::pick(engine.plan(), &engine.state, &page, &on_screen);
        // A prompt on screen keeps the stage: no new tip takes the user's attention beside it.
        let focus = pick.focus.filter(|f| self.prompt.is_none() || on_screen.contains(f));
        let want = [focus, pick.checklist];
        let mut k = 0;
        while k < self.surfaces.len() {
            if want.contains(&Some(self.surfaces[k].tip)) {
                k += 1;
            } else {
                let gone = self.surfaces.remove(k);
                self.give_back_focus(&gone);
            }
        }
        for i in want.into_iter().flatten() {
            match self.surfaces.iter().position(|s| s.tip == i) {
                None => self.mount(i, engine, store, out),
                Some(pos) => self.update(pos, engine, store, out),
            }
        }
        if let Some(i) = self.focus_tip.take() {
            if let Some(s) = self.surfaces.iter_mut().find(|s| s.tip == i) {
                // A tour step whose target is not there yet gets the focus when it appears.
                s.focus_on_attach = anchored(s.kind) && s.target.is_none();
                focus_later(match (s.kind, s.open) {
                    // The checklist's panel itself, so a screen reader announces the dialog.
                    (TipKind::Checklist, true) => s.card.clone(),
                    (_, true) => s.card.as_ref().and_then(|c| first_button(c)),
                    _ => s.float.as_ref().and_then(|c| first_button(c)),
                });
            }
        }
        // A survey card and a prompt share the corner: one at a time.
        let prompt_wake = self.reconcile_prompt(engine, store, out, t, focus.is_some() || self.survey.is_some());
        let wake = match (pick.wake, prompt_wake) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.wake = wake.and_then(|at| Timeout::new(at - t + 20, refresh));
        self.reconcile_survey(engine, store, out, t, &path, &hash);
        // One observer for the page, only while some tip follows or waits for a target: a page
        // with no anchored tip pays nothing for its mutations.
        if !self.surfaces.iter().any(|s| anchored(s.kind)) {
            self.observer = None;
        } else if self.observer.is_none() {
            self.observer = dom::document().and_then(|d| Observer::new(&d, schedule_follow));
        }
    }

    /// The survey on screen stays until it is answered, dismissed or snoozed (here or in
    /// another tab); otherwise the first survey due is shown, unless a modal tip holds the page.
    fn reconcile_survey(&mut self, engine: &mut Engine, store: &mut dyn KeyValue, out: &mut Vec<Emit>, t: i64, path: &str, hash: &str) {
        if let Some(card) = &self.survey {
            let closed = engine.plan().surveys.get(card.survey).is_none_or(|s| surveys::closed_since(&engine.state, s, card.shown_at));
            if card.thanks.is_some() || !closed {
                return;
            }
            self.survey = None;
        }
        // The collector's ledger is the truth about what this user was asked on other devices:
        // while its answer is on the way (after identify), no survey starts.
        if engine.hold_once {
            self.survey_wake = None;
            return;
        }
        let user = engine.identity().to_owned();
        let page = surveys::Page { now: t, path, hash, route_since: self.route_since, user: &user, identified: !engine.is_anonymous() };
        let (pick, wake) = surveys::pick(engine.plan(), &engine.state, &page);
        self.survey_wake = wake.and_then(|at| Timeout::new(at - t + 20, refresh));
        let Some(i) = pick.filter(|_| self.prompt.is_none() && !self.surfaces.iter().any(|s| s.kind == TipKind::Modal)) else { return };
        let plan = engine.shared_plan();
        let Some(s) = plan.surveys.get(i) else { return };
        let Some(mut card) = survey::mount(self.root.unchecked_ref(), i, s, &self.ctx(engine), t) else { return };
        engine.update(store, |state, tab| surveys::record_shown(state, tab, s, t));
        survey::emit(out, vocab_survey::SHOWN, surveys::props(s));
        card.offer_focus();
        self.survey = Some(card);
    }

    /// Focus inside a tip that goes away returns to where it came from, else to the tip's
    /// target, whichever is still in the page (a route change may have removed both; then the
    /// page keeps the focus it decides on).
    fn give_back_focus(&self, gone: &Surface) {
        let inside = self.root.active_element().is_some_and(|a| gone.wrap.contains(Some(&a)));
        if inside {
            let target = gone.target.as_ref().and_then(|t| t.el.clone().dyn_into::<HtmlElement>().ok());
            focus_later([gone.restore.clone(), target].into_iter().flatten().find(|e| e.is_connected()));
        }
    }

    fn mount(&mut self, i: usize, engine: &mut Engine, store: &mut dyn KeyValue, out: &mut Vec<Emit>) {
        let Some(tip) = engine.plan().tips.get(i) else { return };
        let Some(wrap) = dom::child(self.root.unchecked_ref(), "div", "", "") else { return };
        let events = [
            Listener::new(&wrap, "click", false, move |e| on_click(i, e)),
            Listener::new(&wrap, "keydown", false, move |e| on_key(i, e)),
            Listener::new(&wrap, "focusin", false, move |e| on_focus_in(i, e)),
        ];
        let kind = tip.kind;
        let mut s = Surface {
            tip: i,
            kind,
            step: sched::step(&engine.state, tip),
            built_for: 0,
            open: false,
            wrap,
            float: None,
            card: None,
            target: None,
            side: Side::Auto,
            counted: false,
            restore: None,
            _events: events,
            follow: Vec::new(),
            lost: false,
            focus_on_attach: false,
            watch: None,
            watch_root: None,
            timer: None,
        };
        s.built_for = s.step;
        match kind {
            TipKind::Modal => {
                s.restore = dom::document().and_then(|d| d.active_element()).and_then(|a| a.dyn_into().ok());
                s.float = render::modal(&s.wrap, tip, i, &self.ctx(engine));
                focus_later(s.float.as_ref().and_then(|m| first_button(m)));
                self.shown(&mut s, engine, store, out);
            }
            TipKind::Checklist => {
                s.open = std::mem::take(&mut self.open_checklist);
                self.build_checklist(&mut s, engine);
                self.shown(&mut s, engine, store, out);
            }
            _ => self.anchor(&mut s, engine, store, out),
        }
        self.surfaces.push(s);
    }

    /// A surface already on screen: rebuild what changed (a tour's step, the checklist's progress).
    fn update(&mut self, pos: usize, engine: &mut Engine, store: &mut dyn KeyValue, out: &mut Vec<Emit>) {
        let s = &self.surfaces[pos];
        let Some(tip) = engine.plan().tips.get(s.tip) else { return };
        match s.kind {
            TipKind::Checklist => {
                let done = engine.state.reached.len();
                let open_now = std::mem::take(&mut self.open_checklist);
                if done != s.built_for || open_now {
                    let mut s = self.surfaces.remove(pos);
                    let had_focus = self.root.active_element().is_some_and(|a| s.wrap.contains(Some(&a)));
                    s.open |= open_now || had_focus;
                    self.build_checklist(&mut s, engine);
                    if had_focus {
                        focus_later(s.card.clone());
                    }
                    self.surfaces.insert(pos, s);
                }
            }
            TipKind::Tour => {
                let stored = sched::step(&engine.state, tip);
                if stored != s.built_for {
                    let mut s = self.surfaces.remove(pos);
                    s.step = stored;
                    s.built_for = stored;
                    self.rebuild_anchor(&mut s, engine, store, out);
                    self.surfaces.insert(pos, s);
                }
            }
            _ => {}
        }
    }

    fn build_checklist(&self, s: &mut Surface, engine: &Engine) {
        let Some(tip) = engine.plan().tips.get(s.tip) else { return };
        s.wrap.set_text_content(None);
        s.built_for = engine.state.reached.len();
        if let Some((launcher, panel)) = render::checklist(&s.wrap, engine.plan(), &engine.state, tip, s.open, &self.ctx(engine)) {
            s.float = Some(launcher);
            s.card = Some(panel);
        }
    }

    /// A tour moved to another step, or Back was pressed: a new card for that step, at its
    /// target. (A target that is only replaced or moved keeps its card: see [`Ui::follow`].)
    fn rebuild_anchor(&self, s: &mut Surface, engine: &mut Engine, store: &mut dyn KeyValue, out: &mut Vec<Emit>) {
        s.float = None;
        s.card = None;
        s.target = None;
        s.lost = false;
        s.timer = None;
        s.follow.clear();
        s.wrap.set_text_content(None);
        self.anchor(s, engine, store, out);
    }

    /// Finds the target of the surface's tip (at its step) and attaches to it, or waits for it.
    fn anchor(&self, s: &mut Surface, engine: &mut Engine, store: &mut dyn KeyValue, out: &mut Vec<Emit>) {
        let Some(tip) = engine.plan().tips.get(s.tip) else { return };
        match dom::find(selector(tip, s.step)) {
            Ok(found) => self.attach(s, found, engine, store, out),
            Err(partial) => self.wait(s, partial),
        }
    }

    /// Waits for the target: observes the page (and the shadow root or iframe the search stopped
    /// in) for changes, and gives up after [`TARGET_WAIT_MS`].
    fn wait(&self, s: &mut Surface, partial: dom::Partial) {
        let i = s.tip;
        self.watch_partial(s, partial);
        if s.timer.is_none() {
            s.timer = Timeout::new(TARGET_WAIT_MS, move || target_timeout(i));
        }
    }

    /// Observes where a search for the target stopped, beside the page: the open shadow root or
    /// iframe document, and the iframe's `load`.
    fn watch_partial(&self, s: &mut Surface, partial: dom::Partial) {
        if partial.root != s.watch_root {
            s.watch = partial.root.as_ref().and_then(|root| Observer::new(root, schedule_follow));
            s.watch_root = partial.root;
        }
        s.follow.clear();
        if let Some(frame) = partial.frame {
            s.follow.push(Listener::new(&frame, "load", false, |_| schedule_follow()));
        }
    }

    /// Listeners that keep the surface beside `found`: scrolls (in every window on the way),
    /// resizes, and Esc on the target.
    fn follow_listeners(&self, s: &Surface, found: &Found) -> Vec<Listener> {
        let i = s.tip;
        // Scroll in the capture phase: scrolls of any container reach the window that way.
        let mut follow = Vec::new();
        let mut windows: Vec<web_sys::EventTarget> = dom::window().into_iter().map(Into::into).collect();
        for f in &found.frames {
            if let Some(w) = f.dyn_ref::<web_sys::HtmlIFrameElement>().and_then(|f| f.content_window()) {
                windows.push(w.into());
            }
        }
        for w in &windows {
            follow.push(Listener::new(w, "scroll", true, |_| schedule_follow()));
        }
        if let Some(w) = windows.first() {
            follow.push(Listener::new(w, "resize", false, |_| schedule_follow()));
        }
        if s.kind != TipKind::Hotspot {
            // Esc on the target itself closes its tip, as it would from inside the tip.
            follow.push(Listener::new(&found.el, "keydown", false, move |e| {
                if e.dyn_ref::<KeyboardEvent>().is_some_and(|k| k.key() == "Escape") {
                    act(i, "esc");
                }
            }));
        }
        follow
    }

    /// The target is there: render beside it and follow it.
    fn attach(&self, s: &mut Surface, found: Found, engine: &mut Engine, store: &mut dyn KeyValue, out: &mut Vec<Emit>) {
        let i = s.tip;
        s.timer = None;
        let Some(tip) = engine.plan().tips.get(i) else { return };
        let ctx = self.ctx(engine);
        if s.kind != TipKind::Hotspot {
            let r = dom::rect(&found.el, &found.frames);
            let (vw, vh) = dom::viewport();
            if !r.visible_in(vw, vh) {
                let opts = web_sys::ScrollIntoViewOptions::new();
                opts.set_block(web_sys::ScrollLogicalPosition::Center);
                found.el.scroll_into_view_with_scroll_into_view_options(&opts);
            }
        }
        s.follow = self.follow_listeners(s, &found);
        s.float = match s.kind {
            TipKind::Hotspot => render::beacon(&s.wrap, tip, s.open, &ctx),
            _ => render::card(&s.wrap, tip, s.step, i, &ctx),
        };
        if s.kind == TipKind::Hotspot && s.open {
            s.card = render::card(&s.wrap, tip, 0, i, &ctx);
        }
        s.side = match (s.kind, tip.steps.get(s.step)) {
            (TipKind::Tour, Some(step)) => step.placement,
            _ => tip.placement,
        };
        s.target = Some(found);
        self.position(s);
        if std::mem::take(&mut s.focus_on_attach) {
            focus_later(s.float.as_ref().and_then(|c| first_button(c)));
        }
        self.shown(s, engine, store, out);
    }

    fn shown(&self, s: &mut Surface, engine: &mut Engine, store: &mut dyn KeyValue, out: &mut Vec<Emit>) {
        if s.counted {
            return;
        }
        s.counted = true;
        let t = now();
        if record(engine, store, s.tip, |state, tip, tab| sched::record_shown(state, tab, tip, t)) {
            emit(out, engine, s.tip, tip::SHOWN, Some(s.step), None);
        }
    }

    /// One animation frame's work: every anchored tip follows its target.
    fn follow_all(&mut self, engine: &mut Engine, store: &mut dyn KeyValue, out: &mut Vec<Emit>) {
        for pos in 0..self.surfaces.len() {
            if anchored(self.surfaces[pos].kind) {
                self.follow(pos, engine, store, out);
            }
        }
    }

    /// After a change in the page: the selector is looked up again, and the card moves to what
    /// it finds now, whether that is the same element moved, or a new one a framework rendered
    /// in its place. The card itself is kept (no new node, so no entrance animation, no second
    /// announcement, focus stays on its button). A target that is gone keeps the card in place
    /// for [`TARGET_GRACE_MS`].
    fn follow(&mut self, pos: usize, engine: &mut Engine, store: &mut dyn KeyValue, out: &mut Vec<Emit>) {
        let mut s = self.surfaces.remove(pos);
        let sel = engine.plan().tips.get(s.tip).map_or(String::new(), |tip| selector(tip, s.step).to_owned());
        let current = s.target.as_ref().map(|t| t.el.clone());
        match (dom::find(&sel), current) {
            (Ok(found), Some(el)) => {
                let was_lost = std::mem::take(&mut s.lost);
                if was_lost {
                    s.timer = None;
                    s.watch = None;
                    s.watch_root = None;
                }
                if was_lost || found.el != el {
                    s.follow = self.follow_listeners(&s, &found);
                    s.target = Some(found);
                }
                self.position(&s);
            }
            (Ok(found), None) => self.attach(&mut s, found, engine, store, out),
            (Err(partial), Some(el)) => {
                // Still in the page and still what the selector names, only not rendered (a
                // hidden page, a collapsed panel): hidden until it shows again, as before.
                let last = crate::core::substr::split(&sel, ">>>").last().unwrap_or("").trim();
                if el.is_connected() && el.matches(last).unwrap_or(false) {
                    self.position(&s);
                } else if !s.lost {
                    s.lost = true;
                    let i = s.tip;
                    self.watch_partial(&mut s, partial);
                    s.timer = Timeout::new(TARGET_GRACE_MS, move || target_timeout(i));
                }
            }
            (Err(partial), None) => self.wait(&mut s, partial),
        }
        self.surfaces.insert(pos, s);
    }

    /// Places the surface beside its target. Reads (the target, the viewport, the card's size)
    /// come before writes, so at most the one layout the frame needs anyway is done here.
    fn position(&self, s: &Surface) {
        let Some(t) = &s.target else { return };
        let r = dom::rect(&t.el, &t.frames);
        let (vw, vh) = dom::viewport();
        let visible = r.visible_in(vw, vh) && (r.w > 0.0 || r.h > 0.0);
        // A card holding the keyboard focus stays where it is: hidden, it would drop the focus
        // to the page's start (WCAG 2.4.3).
        if !visible && self.root.active_element().is_some_and(|a| s.wrap.contains(Some(&a))) {
            return;
        }
        for el in [&s.float, &s.card].into_iter().flatten() {
            // Only a change is written: an unchanged `hidden` would still dirty the style.
            if el.hidden() == visible {
                el.set_hidden(!visible);
            }
        }
        if !visible {
            return;
        }
        let side = s.side;
        let mut css = String::new();
        match (&s.kind, &s.float) {
            (TipKind::Hotspot, Some(b)) => {
                // The card first: it measures itself, and no write may come before a read.
                if let Some(card) = &s.card {
                    place(card, r, side, vw, vh);
                }
                let (x, y) = placement::beacon(r, BEACON, vw, vh, self.rtl);
                dom::px(&mut css, "left", x);
                dom::px(&mut css, "top", y);
                dom::style(b, &css);
            }
            (_, Some(card)) => place(card, r, side, vw, vh),
            _ => {}
        }
    }

    fn complete_step(&mut self, engine: &mut Engine, store: &mut dyn KeyValue, out: &mut Vec<Emit>, i: usize, step: usize, t: i64) {
        if record(engine, store, i, |state, tip, _| sched::record_step(state, tip, step, t)) {
            emit(out, engine, i, tip::TOUR_STEP_COMPLETED, Some(step), None);
        }
    }

    /// The tip goes away for good (`tip_dismissed`, `tip_cta_clicked`) or for a while
    /// (`tip_snoozed`).
    fn close(&mut self, pos: usize, engine: &mut Engine, store: &mut dyn KeyValue, out: &mut Vec<Emit>, event: &str) {
        let t = now();
        let s = self.surfaces.remove(pos);
        record(engine, store, s.tip, |state, tip, _| {
            if event == tip::SNOOZED {
                sched::record_snoozed(state, tip, t)
            } else {
                sched::record_dismissed(state, tip, t)
            }
            true
        });
        emit(out, engine, s.tip, event, Some(s.step), None);
        if self.review == Some(s.tip) {
            self.review = None;
        }
        if self.forced == Some(s.tip) {
            self.forced = None;
        }
        self.give_back_focus(&s);
    }

    fn act(&mut self, pos: usize, action: &str, engine: &mut Engine, store: &mut dyn KeyValue, out: &mut Vec<Emit>) {
        let i = self.surfaces[pos].tip;
        let Some(tip) = engine.plan().tips.get(i) else { return };
        let (kind, open, step) = (tip.kind, self.surfaces[pos].open, self.surfaces[pos].step);
        let cta = tip.cta.as_ref().map(|c| c.action.clone());
        let milestone = tip.milestone.clone();
        let action = match action {
            // Esc closes what is open: a hotspot's card or the checklist's panel, else the tip.
            "esc" if matches!(kind, TipKind::Hotspot | TipKind::Checklist) => {
                if !open {
                    return;
                }
                "o"
            }
            "esc" => "x",
            "x" if kind == TipKind::Checklist => "o",
            a => a,
        };
        let t = now();
        match action {
            "x" => self.close(pos, engine, store, out, tip::DISMISSED),
            "l" => self.close(pos, engine, store, out, tip::SNOOZED),
            "n" => self.next(pos, engine, store, out),
            "b" => {
                let mut s = self.surfaces.remove(pos);
                s.step = s.step.saturating_sub(1);
                self.rebuild_anchor(&mut s, engine, store, out);
                self.surfaces.insert(pos, s);
                self.focus_tip = Some(i);
            }
            "c" => {
                let Some(cta) = cta else { return };
                emit(out, engine, i, tip::CTA_CLICKED, Some(step), None);
                match cta {
                    CtaAction::Action(a) if a == "next" => return self.next(pos, engine, store, out),
                    CtaAction::Action(a) if a == "open_checklist" => {
                        self.open_checklist = true;
                        self.forced = engine.plan().tips.iter().position(|t| t.kind == TipKind::Checklist);
                        self.focus_tip = self.forced;
                    }
                    CtaAction::Action(a) if a == "mark_done" => {
                        if let Some(m) = &milestone {
                            out.extend(engine.mark_done(store, m, t));
                        }
                    }
                    // A URL navigates by itself (the link's default action); "dismiss" just closes.
                    _ => {}
                }
                // The call to action did the tip's job: it is not shown again.
                record(engine, store, i, |state, tip, _| {
                    sched::record_dismissed(state, tip, t);
                    true
                });
                let s = self.surfaces.remove(pos);
                self.give_back_focus(&s);
            }
            "o" => {
                let mut s = self.surfaces.remove(pos);
                s.open = !s.open;
                if kind == TipKind::Checklist {
                    if s.open {
                        emit(out, engine, i, tip::CHECKLIST_OPENED, None, None);
                    }
                    self.build_checklist(&mut s, engine);
                    focus_later(if s.open { s.card.clone() } else { s.float.clone() });
                } else if let Some(tip) = engine.plan().tips.get(i) {
                    let ctx = self.ctx(engine);
                    s.wrap.set_text_content(None);
                    s.float = render::beacon(&s.wrap, tip, s.open, &ctx);
                    s.card = if s.open { render::card(&s.wrap, tip, 0, i, &ctx) } else { None };
                    self.position(&s);
                    focus_later(if s.open { s.card.as_ref().and_then(|c| first_button(c)) } else { s.float.clone() });
                }
                self.surfaces.insert(pos, s);
            }
            a => {
                if let Some(m) = a.strip_prefix("m:") {
                    out.extend(engine.mark_done(store, m, t));
                    emit(out, engine, i, tip::CUSTOMER_MILESTONE_MARKED, None, Some((prop::MILESTONE, Value::Str(m.to_owned()))));
                } else if let Some(n) = a.strip_prefix("s:").and_then(|n| n.parse::<usize>().ok()) {
                    self.forced = Some(n);
                    self.focus_tip = Some(n);
                    let mut s = self.surfaces.remove(pos);
                    s.open = false;
                    self.build_checklist(&mut s, engine);
                    self.surfaces.insert(pos, s);
                }
            }
        }
    }

    /// Next: forward through steps seen before (after Back), else the current step is completed.
    fn next(&mut self, pos: usize, engine: &mut Engine, store: &mut dyn KeyValue, out: &mut Vec<Emit>) {
        let i = self.surfaces[pos].tip;
        let Some(tip) = engine.plan().tips.get(i) else { return };
        let stored = sched::step(&engine.state, tip);
        self.focus_tip = Some(i);
        let mut s = self.surfaces.remove(pos);
        if s.step < stored {
            s.step += 1;
            self.rebuild_anchor(&mut s, engine, store, out);
        } else {
            self.complete_step(engine, store, out, i, s.step, now());
        }
        self.surfaces.insert(pos, s);
    }

    /// Tab stays inside an open modal.
    fn trap(&self, pos: usize, k: &KeyboardEvent) {
        let s = &self.surfaces[pos];
        let Some(m) = s.float.as_ref().filter(|_| s.kind == TipKind::Modal) else { return };
        let (Some(first), Some(last)) = (m.query_selector("[data-a]").ok().flatten(), m.last_element_child()) else { return };
        let active = self.root.active_element();
        let wrap_to = if k.shift_key() && active.as_ref() == Some(&first) {
            last
        } else if !k.shift_key() && active.as_ref() == Some(&last) {
            first
        } else {
            return;
        };
        k.prevent_default();
        if let Ok(el) = wrap_to.dyn_into::<HtmlElement>() {
            // Focus within our own shadow root: no host handler runs for it.
            let _ = el.focus();
        }
    }
}

fn place(card: &HtmlElement, r: placement::Rect, side: Side, vw: f64, vh: f64) {
    let b = card.get_bounding_client_rect();
    let p = placement::place(r, b.width(), b.height(), vw, vh, side);
    let mut css = String::new();
    dom::px(&mut css, "left", p.x);
    dom::px(&mut css, "top", p.y);
    dom::px(&mut css, "--a", p.arrow);
    dom::style(card, &css);
    dom::set(card, "data-side", p.side.as_str());
}
