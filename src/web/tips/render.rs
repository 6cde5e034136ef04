//! Builds each tip's DOM inside the shadow root. Text from the plan goes in as text nodes (or
//! the safe markup subset of [`crate::core::markup`]); nothing here ever parses HTML.
//!
//! Buttons carry their action in `data-a`; one click listener per tip reads it (see `mod.rs`):
//! `x` close, `l` later, `n` next, `b` back, `c` the call to action, `o` open/close (hotspot,
//! checklist), `m:<milestone>` mark as done, `s:<tip>` show me.

use web_sys::{Element, HtmlElement};

use super::dom::{self, button, child, set};
use crate::core::engine::UserState;
use crate::core::json::Value;
use crate::core::markup;
use crate::core::plan::{CtaAction, MilestoneKind, Plan, Text, Tip, TipKind};

/// What every renderer needs: the locale and the chrome's labels.
pub struct Ctx<'a> {
    pub locale: &'a str,
    pub default_locale: &'a str,
    /// `init({ tips: { labels: { next: "Weiter", … } } })`, else English.
    pub labels: &'a Value,
}

const LABELS: [(&str, &str); 30] = [
    ("notNow", "Not now"),
    ("copied", "Copied"),
    ("close", "Close"),
    ("later", "Later"),
    ("next", "Next"),
    ("back", "Back"),
    ("done", "Done"),
    ("skip", "Skip"),
    ("of", "of"),
    ("gotIt", "Got it"),
    ("markDone", "Mark as done"),
    ("showMe", "Show me"),
    ("checklist", "Getting started"),
    ("progress", "Progress"),
    ("tip", "Tip"),
    ("completed", "Completed"),
    // Surveys.
    ("askLater", "Ask me later"),
    ("send", "Send"),
    ("thanks", "Thank you for your answer!"),
    ("unhappy", "Unhappy"),
    ("neutral", "Neutral"),
    ("happy", "Happy"),
    ("npsLow", "0 = not at all likely"),
    ("npsHigh", "10 = extremely likely"),
    ("cesLow", "1 = very difficult"),
    ("cesHigh", "7 = very easy"),
    ("csatLow", "1 = very unsatisfied"),
    ("csatHigh", "5 = very satisfied"),
    ("chooseScore", "Choose a score first."),
    ("writeAnswer", "Write your answer first."),
];

impl Ctx<'_> {
    pub fn label<'k>(&'k self, key: &'k str) -> &'k str {
        self.labels
            .get(key)
            .and_then(Value::as_str)
            .or_else(|| LABELS.iter().find(|(k, _)| *k == key).map(|(_, v)| *v))
            .unwrap_or(key)
    }

    pub fn text<'t>(&self, t: &'t Text) -> &'t str {
        t.get(self.locale, self.default_locale)
    }
}

/// Appends `text` with the safe markup subset: `<b>`, `<i>` and `<a href="http(s)…">` are the
/// only elements made, everything else is a text node.
pub fn rich(parent: &Element, text: &str) {
    for span in markup::parse(text) {
        let mut at: Element = parent.clone();
        for (on, tag) in [(span.href.is_some(), "a"), (span.bold, "b"), (span.italic, "i")] {
            if on {
                let Some(e) = child(&at, tag, "", "") else { return };
                if let Some(href) = &span.href {
                    if tag == "a" {
                        set(&e, "href", href);
                        set(&e, "target", "_blank");
                        set(&e, "rel", "noopener noreferrer");
                    }
                }
                at = e.into();
            }
        }
        if let Some(doc) = dom::document() {
            let _ = at.append_child(&doc.create_text_node(&span.text));
        }
    }
}

/// Title (if any) and body; returns the id naming the dialog. Ids are per tip index, unique in
/// the shadow root (the only scope `aria-labelledby` reaches).
pub(super) fn heading(box_: &Element, title: &str, body: &str, n: usize) -> String {
    let mut id = String::from("onramp-t");
    dom::num(&mut id, n as f64);
    if !title.is_empty() {
        if let Some(h) = child(box_, "h2", "", title) {
            set(&h, "id", &id);
        }
    } else {
        id.push('b');
    }
    if let Some(p) = child(box_, "p", "", "") {
        if title.is_empty() {
            set(&p, "id", &id);
        }
        rich(&p, body);
    }
    id
}

/// The call to action: a link for URLs (new tab for other sites), a button for actions.
fn cta(row: &Element, tip: &Tip, ctx: &Ctx) -> bool {
    let Some(c) = &tip.cta else { return false };
    let label = ctx.text(&c.label);
    match &c.action {
        CtaAction::Url(url) => {
            if let Some(a) = child(row, "a", "b pr", label) {
                set(&a, "href", url);
                set(&a, "data-a", "c");
                // Other sites open in a new tab that cannot reach back to this page.
                if !crate::core::markup::same_site_path(url) {
                    set(&a, "target", "_blank");
                    set(&a, "rel", "noopener noreferrer");
                }
            }
        }
        CtaAction::Action(_) => {
            button(row, "b pr", "c", label);
        }
    }
    true
}

/// A floating card: a tooltip, a tour step, or a hotspot's opened tip. Positioned by the caller.
pub fn card(parent: &Element, tip: &Tip, step: usize, n: usize, ctx: &Ctx) -> Option<HtmlElement> {
    let c = child(parent, "div", "c", "")?;
    child(&c, "div", "a", "")?;
    let tour = tip.kind == TipKind::Tour;
    let (title, body) = match tip.steps.get(step) {
        Some(s) if tour => {
            let t = ctx.text(&s.title);
            (if t.is_empty() { ctx.text(&tip.title) } else { t }, ctx.text(&s.body))
        }
        _ => (ctx.text(&tip.title), ctx.text(&tip.body)),
    };
    let id = heading(&c, title, body, n);
    // A plain tooltip describes its target; tours and opened hotspots are small non-modal dialogs.
    set(&c, "role", if tip.kind == TipKind::Tooltip { "tooltip" } else { "dialog" });
    set(&c, "aria-labelledby", &id);
    let row = child(&c, "div", "r", "")?;
    if tour {
        let total = tip.steps.len();
        let mut count = String::new();
        dom::num(&mut count, (step + 1) as f64);
        count.push(' ');
        count.push_str(ctx.label("of"));
        count.push(' ');
        dom::num(&mut count, total as f64);
        child(&row, "span", "n", &count)?;
        button(&row, "b", "x", ctx.label("skip"));
        if step > 0 {
            button(&row, "b", "b", ctx.label("back"));
        }
        let last = step + 1 >= total;
        if last && cta(&row, tip, ctx) {
            return Some(c);
        }
        button(&row, "b pr", "n", ctx.label(if last { "done" } else { "next" }));
    } else {
        later_and_go(&row, &c, tip, ctx);
    }
    Some(c)
}

/// Later, then the call to action (or Got it), then the × in the corner.
fn later_and_go(row: &Element, corner: &Element, tip: &Tip, ctx: &Ctx) {
    button(row, "b", "l", ctx.label("later"));
    if !cta(row, tip, ctx) {
        button(row, "b pr", "x", ctx.label("gotIt"));
    }
    close(corner, ctx);
}

fn close(parent: &Element, ctx: &Ctx) {
    if let Some(x) = button(parent, "x", "x", "×") {
        set(&x, "aria-label", ctx.label("close"));
    }
}

/// A welcome or announcement: a modal dialog over a scrim. Focus is moved in by the caller.
pub fn modal(parent: &Element, tip: &Tip, n: usize, ctx: &Ctx) -> Option<HtmlElement> {
    let scrim = child(parent, "div", "s", "")?;
    let m = child(&scrim, "div", "m", "")?;
    set(&m, "role", "dialog");
    set(&m, "aria-modal", "true");
    let id = heading(&m, ctx.text(&tip.title), ctx.text(&tip.body), n);
    set(&m, "aria-labelledby", &id);
    let row = child(&m, "div", "r", "")?;
    later_and_go(&row, &m, tip, ctx);
    Some(m)
}

/// A hotspot's pulsing beacon: a button that opens the tip.
pub fn beacon(parent: &Element, tip: &Tip, open: bool, ctx: &Ctx) -> Option<HtmlElement> {
    let b = button(parent, "h", "o", "")?;
    let title = ctx.text(&tip.title);
    let mut name = String::from(ctx.label("tip"));
    if !title.is_empty() {
        name.push_str(": ");
        name.push_str(title);
    }
    set(&b, "aria-label", &name);
    set(&b, "aria-expanded", if open { "true" } else { "false" });
    Some(b)
}

/// The checklist: a launcher with progress, and (when open) the panel listing the plan's
/// milestones, with "Mark as done" for customer milestones and "Show me" where a tip leads there.
pub fn checklist(parent: &Element, plan: &Plan, state: &UserState, tip: &Tip, open: bool, ctx: &Ctx) -> Option<(HtmlElement, HtmlElement)> {
    let title = match ctx.text(&tip.title) {
        "" => ctx.label("checklist"),
        t => t,
    };
    let total = plan.milestones.len();
    let done = plan.milestones.iter().filter(|m| state.reached.contains_key(&m.id)).count();
    let mut frac = String::new();
    dom::num(&mut frac, done as f64);
    frac.push('/');
    dom::num(&mut frac, total as f64);

    let launcher = button(parent, "b l", "o", title)?;
    child(&launcher, "span", "", &frac)?;
    set(&launcher, "aria-expanded", if open { "true" } else { "false" });
    let panel = child(parent, "div", "p", "")?;
    panel.set_hidden(!open);
    set(&panel, "role", "dialog");
    set(&panel, "tabindex", "-1");
    set(&panel, "aria-labelledby", "onramp-cl");
    let h = child(&panel, "h2", "", title)?;
    set(&h, "id", "onramp-cl");
    close(&panel, ctx);
    let body = ctx.text(&tip.body);
    if !body.is_empty() {
        let p = child(&panel, "p", "", "")?;
        rich(&p, body);
    }
    let bar = child(&panel, "div", "g", "")?;
    set(&bar, "role", "progressbar");
    set(&bar, "aria-label", ctx.label("progress"));
    set(&bar, "aria-valuemin", "0");
    let (now, max) = frac.split_once('/').unwrap_or(("", frac.as_str()));
    set(&bar, "aria-valuemax", max);
    set(&bar, "aria-valuenow", now);
    set(&bar, "aria-valuetext", &frac);
    let fill = child(&bar, "i", "", "")?;
    let mut w = String::from("width:");
    dom::num(&mut w, if total == 0 { 0.0 } else { 100.0 * done as f64 / total as f64 });
    w.push('%');
    dom::style(&fill, &w);
    let ul = child(&panel, "ul", "", "")?;
    for m in &plan.milestones {
        let li = child(&ul, "li", "", "")?;
        let reached = state.reached.contains_key(&m.id);
        let mark = child(&li, "span", "k", if reached { "✓" } else { "" })?;
        child(&li, "span", "", ctx.text(&m.title))?;
        if reached {
            set(&li, "data-done", "");
            set(&mark, "role", "img");
            set(&mark, "aria-label", ctx.label("completed"));
            continue;
        }
        set(&mark, "aria-hidden", "true");
        let mut action = String::new();
        if m.kind == MilestoneKind::Customer {
            action.push_str("m:");
            action.push_str(&m.id);
            button(&li, "b", &action, ctx.label("markDone"));
        } else if let Some(i) = plan.tips.iter().position(|t| t.kind != TipKind::Checklist && t.milestone.as_deref() == Some(&m.id)) {
            action.push_str("s:");
            dom::num(&mut action, i as f64);
            button(&li, "b", &action, ctx.label("showMe"));
        }
    }
    Some((launcher, panel))
}
