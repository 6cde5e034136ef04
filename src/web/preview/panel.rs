//! The preview panel: built once when preview opens, its texts updated every second and after
//! each event (in place, so focus and the reader's position survive). Every reason shown is
//! [`crate::core::preview`]'s wording of the scheduler's own [`crate::core::tips::explain`].

use gloo_events::EventListener;
use gloo_timers::callback::{Interval, Timeout};
use wasm_bindgen::JsCast;
use web_sys::{Document, Element, HtmlElement};

use super::super::tips;
use super::{picker, PREVIEW};
use crate::core::preview::{self as words, Seen};
use crate::core::tips::Verdict;

const CSS: &str = include_str!("panel.css");

pub struct Panel {
    root: HtmlElement,
    /// Per milestone: its status line; per rule: its count line; per tip: state and reason.
    milestone_status: Vec<HtmlElement>,
    rule_status: Vec<HtmlElement>,
    tip_state: Vec<HtmlElement>,
    tip_reason: Vec<HtmlElement>,
    header_note: HtmlElement,
    kept: HtmlElement,
    pub(super) pick_result: HtmlElement,
    _click: EventListener,
    _tick: Interval,
}

impl Drop for Panel {
    fn drop(&mut self) {
        self.root.remove();
    }
}

fn el(doc: &Document, parent: &Element, tag: &str, class: &str, text: &str) -> Option<HtmlElement> {
    let e: HtmlElement = doc.create_element(tag).ok()?.dyn_into().ok()?;
    if !class.is_empty() {
        e.set_class_name(class);
    }
    if !text.is_empty() {
        e.set_text_content(Some(text));
    }
    parent.append_child(&e).ok()?;
    Some(e)
}

fn button(doc: &Document, parent: &Element, action: &str, text: &str, label: &str) -> Option<HtmlElement> {
    let b = el(doc, parent, "button", "", text)?;
    let _ = b.set_attribute("type", "button");
    let _ = b.set_attribute("data-pv", action);
    if !label.is_empty() {
        let _ = b.set_attribute("aria-label", label);
    }
    Some(b)
}

impl Panel {
    /// Builds the panel in the tips' shadow root for the running plan.
    pub fn open() -> Option<Panel> {
        let root = tips::shadow_root()?;
        let doc = web_sys::window()?.document()?;
        // Its own constructed stylesheet beside the tips' (no <style>: a strict CSP allows these).
        if let Ok(sheet) = web_sys::CssStyleSheet::new() {
            if sheet.replace_sync(CSS).is_ok() {
                let sheets = js_sys::Reflect::get(&root, &"adoptedStyleSheets".into()).ok();
                let list = sheets.map(|s| js_sys::Array::from(&s)).unwrap_or_default();
                list.push(&sheet);
                let _ = js_sys::Reflect::set(&root, &"adoptedStyleSheets".into(), &list);
            }
        }
        let plan = tips::inspect(|engine, _, _, _| engine.plan().clone())?;
        let host: Element = root.clone().unchecked_into();
        let aside = el(&doc, &host, "aside", "pv", "")?;
        let _ = aside.set_attribute("aria-label", "onramp preview");
        let head = el(&doc, &aside, "div", "pv-head", "")?;
        el(&doc, &head, "h2", "", "onramp preview")?;
        let header_note = el(&doc, &head, "p", "pv-note", "")?;
        let actions = el(&doc, &head, "div", "pv-actions", "")?;
        button(&doc, &actions, "pick", "Pick an element", "")?;
        button(&doc, &actions, "collapse", "Hide details", "")?.set_attribute("aria-expanded", "true").ok()?;
        button(&doc, &actions, "exit", "End preview", "")?;
        let pick_result = el(&doc, &aside, "div", "pv-pick", "")?;
        let _ = pick_result.set_attribute("aria-live", "polite");
        let body = el(&doc, &aside, "div", "pv-body", "")?;
        let kept = el(&doc, &body, "p", "pv-kept", "")?;

        let locale = plan.default_locale.clone();
        el(&doc, &body, "h3", "", "Milestones")?;
        let list = el(&doc, &body, "ul", "", "")?;
        let mut milestone_status = Vec::new();
        for m in &plan.milestones {
            let li = el(&doc, &list, "li", "", "")?;
            let _ = li.set_attribute("data-milestone", &m.id);
            let title = el(&doc, &li, "span", "pv-name", m.title.get(&locale, &locale))?;
            if m.value {
                el(&doc, &title, "span", "pv-badge", "value")?;
            }
            el(&doc, &li, "code", "", &m.id)?;
            milestone_status.push(el(&doc, &li, "span", "pv-status", "")?);
            el(&doc, &li, "span", "pv-detail", &words::condition(m))?;
        }
        el(&doc, &body, "h3", "", "Capture rules")?;
        let list = el(&doc, &body, "ul", "", "")?;
        let mut rule_status = Vec::new();
        for (i, r) in plan.capture.iter().enumerate() {
            let li = el(&doc, &list, "li", "", "")?;
            let _ = li.set_attribute("data-rule", &i.to_string());
            el(&doc, &li, "span", "pv-name", &words::rule(r))?;
            rule_status.push(el(&doc, &li, "span", "pv-status", "")?);
        }
        el(&doc, &body, "h3", "", "Tips")?;
        let list = el(&doc, &body, "ul", "", "")?;
        let (mut tip_state, mut tip_reason) = (Vec::new(), Vec::new());
        for (i, t) in plan.tips.iter().enumerate() {
            let li = el(&doc, &list, "li", "", "")?;
            let _ = li.set_attribute("data-tip", &t.id);
            let name = t.title.get(&locale, &locale);
            el(&doc, &li, "span", "pv-name", if name.is_empty() { &t.id } else { name })?;
            el(&doc, &li, "code", "", &format!("{} · {}", t.kind.as_str(), t.id))?;
            tip_reason.push(el(&doc, &li, "span", "pv-status", "")?);
            tip_state.push(el(&doc, &li, "span", "pv-detail", "")?);
            button(&doc, &li, &format!("show:{i}"), "Show now", &format!("Show now: {}", t.id))?;
        }
        let click = EventListener::new(&aside, "click", |e| {
            let action = e
                .target()
                .and_then(|t| t.dyn_into::<Element>().ok())
                .and_then(|t| t.closest("[data-pv]").ok().flatten())
                .and_then(|b| b.get_attribute("data-pv"));
            match action.as_deref() {
                Some("pick") => picker::start(),
                Some("exit") => super::end(),
                Some("collapse") => toggle_details(),
                Some(other) => {
                    if let Some(i) = other.strip_prefix("show:").and_then(|n| n.parse().ok()) {
                        tips::show_now(i);
                        refresh_soon();
                    }
                }
                None => {}
            }
        });
        Some(Panel {
            root: aside,
            milestone_status,
            rule_status,
            tip_state,
            tip_reason,
            header_note,
            kept,
            pick_result,
            _click: click,
            _tick: Interval::new(1000, refresh),
        })
    }
}

fn toggle_details() {
    PREVIEW.with(|p| {
        let Ok(guard) = p.try_borrow() else { return };
        let Some(panel) = guard.as_ref().and_then(|p| p.panel.as_ref()) else { return };
        let collapsed = !panel.root.class_name().contains("pv-collapsed");
        panel.root.set_class_name(if collapsed { "pv pv-collapsed" } else { "pv" });
        if let Ok(Some(b)) = panel.root.query_selector("[data-pv=collapse]") {
            let _ = b.set_attribute("aria-expanded", if collapsed { "false" } else { "true" });
            b.set_text_content(Some(if collapsed { "Show details" } else { "Hide details" }));
        }
    });
}

fn set(e: &HtmlElement, text: &str) {
    if e.text_content().as_deref() != Some(text) {
        e.set_text_content(Some(text));
    }
}

/// Green (`pv-ok`) or not: a status line's class.
fn mark(e: &HtmlElement, ok: bool) {
    let class = if ok { "pv-status pv-ok" } else { "pv-status" };
    if e.class_name() != class {
        e.set_class_name(class);
    }
}

/// What the panel shows, read from the engine and the scheduler.
struct Snapshot {
    version: String,
    milestones: Vec<(bool, String)>,
    rules_on_page: Vec<Option<u32>>,
    tips: Vec<(Verdict, String, String)>,
}

fn snapshot() -> Option<Snapshot> {
    let doc = web_sys::window()?.document()?;
    tips::inspect(|engine, page, on_screen, pick| {
        let plan = engine.plan();
        let state = &engine.state;
        let now = page.now;
        let milestones = plan
            .milestones
            .iter()
            .map(|m| match state.reached.get(&m.id) {
                Some(&at) => (true, format!("✓ reached {}", words::relative(at, now))),
                None => (false, "not reached".to_string()),
            })
            .collect();
        let rules_on_page = plan
            .capture
            .iter()
            .map(|r| r.on.selector().and_then(|s| doc.query_selector_all(s).ok()).map(|l| l.length()))
            .collect();
        let focus = pick.focus.and_then(|i| plan.tips.get(i));
        let tips = (0..plan.tips.len())
            .filter_map(|i| {
                let seen = Seen { on_screen: on_screen.contains(&i), focus, hash: page.hash, path: page.path };
                let line = words::tip_line(plan, state, i, page, seen)?;
                Some((line.verdict, line.reason, line.state))
            })
            .collect();
        Snapshot { version: plan.version.clone(), milestones, rules_on_page, tips }
    })
}

/// Updates the panel's texts from the engine and the scheduler.
pub fn refresh() {
    // Read first, then write: the engine's borrow must not overlap the panel's (recording an
    // event in between would find the preview busy).
    let Some(snap) = snapshot() else { return };
    let now = js_sys::Date::now() as i64;
    PREVIEW.with(|p| {
        let Ok(guard) = p.try_borrow() else { return };
        let Some(p) = guard.as_ref() else { return };
        let Some(panel) = p.panel.as_ref() else { return };
        let (expires, by) = p.verified.clone().unwrap_or_default();
        let note = if expires > now {
            format!("plan {} · link from {} · expires {}", snap.version, if by.is_empty() { "an editor" } else { &by }, words::relative(expires, now))
        } else {
            "This preview link has expired: end the preview and open a new one from the plan editor.".to_string()
        };
        set(&panel.header_note, &note);
        // Tracks by their name; milestones, tips and metrics say what they are.
        let recent: Vec<String> = p
            .kept
            .iter()
            .rev()
            .take(4)
            .map(|(kind, name, _)| match kind {
                crate::core::wire::EventType::Track => name.clone(),
                other => format!("{} {name}", other.as_str()),
            })
            .collect();
        set(
            &panel.kept,
            &format!(
                "Nothing here is recorded as a user's event: {} kept back on this page{}{}",
                p.kept_total,
                if recent.is_empty() { "" } else { " (latest: " },
                if recent.is_empty() { String::from(".") } else { recent.join(", ") + ")." }
            ),
        );
        for (i, (reached, text)) in snap.milestones.iter().enumerate() {
            if let Some(e) = panel.milestone_status.get(i) {
                set(e, text);
                mark(e, *reached);
            }
        }
        for (i, on_page) in snap.rules_on_page.iter().enumerate() {
            let Some(e) = panel.rule_status.get(i) else { continue };
            let n = p.matches.get(i).copied().unwrap_or(0);
            let mut text = format!("{n} {} on this page view", if n == 1 { "match" } else { "matches" });
            if let Some(k) = on_page {
                text.push_str(&format!(" · {k} {} on the page now", if *k == 1 { "element" } else { "elements" }));
            }
            set(e, &text);
        }
        for (i, (verdict, reason, state)) in snap.tips.iter().enumerate() {
            if let (Some(r), Some(s)) = (panel.tip_reason.get(i), panel.tip_state.get(i)) {
                set(r, reason);
                set(s, state);
                mark(r, *verdict == Verdict::Show);
            }
        }
    });
}

thread_local! {
    static SOON: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Refreshes after the current task (an event, a click), once however many ask.
pub fn refresh_soon() {
    if !SOON.with(|s| s.replace(true)) {
        Timeout::new(0, || {
            SOON.with(|s| s.set(false));
            refresh();
        })
        .forget();
    }
}
