//! The micro-survey card, in the tips' shadow root: [`crate::core::surveys`] decides which
//! survey is due; this builds it, reads the answer and reports it (docs/SURVEYS.md).
//!
//! A small non-modal card in a corner (`position`, logical: `bottom-right` is the end side, so
//! it mirrors in right-to-left pages). Scales are a `fieldset` whose `legend` is the question,
//! with native radio buttons (arrow keys move between scores, as the platform does); the
//! follow-up is a labelled `textarea` of at most 1 000 characters. Enter sends (the form's own
//! submit), Esc dismisses, "Ask me later" snoozes. The card takes focus when it appears only if
//! the user is not working in the page (focus on `body`), so it never steals a keystroke; focus
//! goes back where it was when it leaves. Text from the plan and the user goes in as text
//! nodes only.
//!
//! Buttons carry their action in `data-a`, as the tips' do: `x` dismiss, `l` ask me later.

use wasm_bindgen::JsCast;
use web_sys::{Element, Event, HtmlElement, KeyboardEvent};

use super::dom::{self, button, child, set, Listener, Timeout};
use super::render::Ctx;
use crate::core::engine::{Emit, Engine};
use crate::core::json::Value;
use crate::core::plan::{CsatScale, Survey, SurveyKind, MAX_ANSWER_CHARS};
use crate::core::storage::KeyValue;
use crate::core::surveys;
use crate::core::vocab::survey as names;
use crate::core::wire::EventType;

/// How long the thank-you stays before the card goes.
const THANKS_MS: i64 = 2500;

pub struct Card {
    pub survey: usize,
    pub shown_at: i64,
    wrap: HtmlElement,
    /// Where focus goes back to when the card leaves.
    restore: Option<HtmlElement>,
    /// Answered: the thank-you is on screen until this timer drops the card.
    pub thanks: Option<Timeout>,
    _events: [Listener; 4],
}

impl Drop for Card {
    fn drop(&mut self) {
        let inside = self.has_focus();
        self.wrap.remove();
        if inside {
            if let Some(el) = self.restore.take().filter(|e| e.is_connected()) {
                super::focus_later(Some(el));
            }
        }
    }
}

const FACES: [(&str, &str); 3] = [("\u{1F61E}", "unhappy"), ("\u{1F610}", "neutral"), ("\u{1F600}", "happy")];

/// The labels of a scale's two ends.
fn ends(survey: &Survey) -> Option<(&'static str, &'static str)> {
    match (survey.kind, survey.scale) {
        (SurveyKind::Nps, _) => Some(("npsLow", "npsHigh")),
        (SurveyKind::Ces, _) => Some(("cesLow", "cesHigh")),
        (SurveyKind::Csat, CsatScale::Five) => Some(("csatLow", "csatHigh")),
        _ => None,
    }
}

/// Builds survey `i`'s card in `root` and reports it shown.
pub fn mount(root: &Element, i: usize, survey: &Survey, ctx: &Ctx, now: i64) -> Option<Card> {
    let wrap = child(root, "section", "v", "")?;
    set(&wrap, "data-corner", survey.corner.as_str());
    set(&wrap, "data-kind", survey.kind.as_str());
    set(&wrap, "role", "dialog");
    set(&wrap, "aria-labelledby", "onramp-sq");
    set(&wrap, "tabindex", "-1");
    let events = [
        Listener::new(&wrap, "click", false, move |e| on_click(i, e)),
        Listener::new(&wrap, "keydown", false, move |e| on_key(i, e)),
        Listener::new(&wrap, "submit", false, move |e| {
            e.prevent_default();
            super::survey_act(i, "s");
        }),
        Listener::new(&wrap, "change", false, move |_| super::survey_act(i, "c")),
    ];
    let x = button(&wrap, "x", "x", "\u{00D7}")?;
    set(&x, "aria-label", ctx.label("close"));
    let form = child(&wrap, "form", "", "")?;
    set(&form, "novalidate", "");
    let question = ctx.text(&survey.question);
    if survey.kind == SurveyKind::Question {
        let q = child(&form, "label", "q", question)?;
        set(&q, "id", "onramp-sq");
        set(&q, "for", "onramp-st");
    } else {
        let fs = child(&form, "fieldset", "", "")?;
        let legend = child(&fs, "legend", "q", question)?;
        set(&legend, "id", "onramp-sq");
        let scale = child(&fs, "div", "sc", "")?;
        set(&scale, "data-n", if survey.scores().count() > 7 { "11" } else { "few" });
        for score in survey.scores() {
            let label = child(&scale, "label", "", "")?;
            let input = child(&label, "input", "", "")?;
            set(&input, "type", "radio");
            set(&input, "name", "onramp-score");
            let mut value = String::new();
            dom::num(&mut value, score as f64);
            set(&input, "value", &value);
            if survey.kind == SurveyKind::Csat && survey.scale == CsatScale::Faces {
                let (face, name) = FACES[(score - 1) as usize];
                let f = child(&label, "span", "f", face)?;
                set(&f, "aria-hidden", "true");
                child(&label, "span", "vh", ctx.label(name))?;
            } else {
                child(&label, "span", "", &value)?;
            }
        }
        if let Some((low, high)) = ends(survey) {
            let row = child(&fs, "div", "ends", "")?;
            set(&row, "aria-hidden", "true");
            child(&row, "span", "", ctx.label(low))?;
            child(&row, "span", "", ctx.label(high))?;
        }
    }
    let open = child(&form, "div", "o", "")?;
    if survey.kind != SurveyKind::Question {
        let l = child(&open, "label", "", "")?;
        set(&l, "for", "onramp-st");
        set(&l, "id", "onramp-sl");
    }
    let text = child(&open, "textarea", "", "")?;
    set(&text, "id", "onramp-st");
    set(&text, "rows", "3");
    let mut max = String::new();
    dom::num(&mut max, MAX_ANSWER_CHARS as f64);
    set(&text, "maxlength", &max);
    let error = child(&form, "p", "e", "")?;
    set(&error, "role", "alert");
    let row = child(&form, "div", "r", "")?;
    button(&row, "b", "l", ctx.label("askLater"))?;
    let send = child(&row, "button", "b pr", ctx.label("send"))?;
    set(&send, "type", "submit");
    let card = Card { survey: i, shown_at: now, wrap, restore: None, thanks: None, _events: events };
    follow_up(&card, survey, ctx);
    Some(card)
}

impl Card {
    /// Takes focus when the user is not working in the page; remembers where it came from.
    pub fn offer_focus(&mut self) {
        let active = dom::document().and_then(|d| d.active_element());
        let body = dom::document().and_then(|d| d.body()).map(Element::from);
        if active.is_none() || active == body {
            super::focus_later(Some(self.wrap.clone()));
        } else {
            self.restore = active.and_then(|a| a.dyn_into().ok());
        }
    }

    /// Focus is in the card (the shadow root's active element is inside it).
    fn has_focus(&self) -> bool {
        let root = self.wrap.get_root_node().dyn_into::<web_sys::ShadowRoot>().ok();
        root.and_then(|r| r.active_element()).is_some_and(|a| self.wrap.contains(Some(&a)))
    }

    fn find(&self, selector: &str) -> Option<Element> {
        self.wrap.query_selector(selector).ok().flatten()
    }

    /// The chosen score, if any.
    pub fn score(&self) -> Option<u8> {
        let input = self.find("input:checked")?;
        input.get_attribute("value")?.parse().ok()
    }

    pub fn text(&self) -> String {
        self.find("textarea").and_then(|t| js_sys::Reflect::get(&t, &"value".into()).ok()).and_then(|v| v.as_string()).unwrap_or_default()
    }

    /// Says what is missing, and puts focus where it can be given.
    pub fn missing(&self, ctx: &Ctx, survey: &Survey) {
        let (label, at) = if survey.kind == SurveyKind::Question { ("writeAnswer", "textarea") } else { ("chooseScore", "input") };
        if let Some(e) = self.find(".e") {
            e.set_text_content(Some(ctx.label(label)));
        }
        super::focus_later(self.find(at).and_then(|e| e.dyn_into().ok()));
    }

    /// Answered: a thank-you in place of the form (announced), then gone.
    pub fn thank(&mut self, ctx: &Ctx) {
        let had_focus = self.has_focus();
        self.wrap.set_text_content(None);
        if let Some(p) = child(&self.wrap, "p", "t", ctx.label("thanks")) {
            set(&p, "role", "status");
        }
        if had_focus {
            // Keep focus in the card (it is about to go) or give it back now.
            match self.restore.clone().filter(|e| e.is_connected()) {
                Some(el) => super::focus_later(Some(el)),
                None => super::focus_later(Some(self.wrap.clone())),
            }
        }
        self.thanks = Timeout::new(THANKS_MS, super::survey_done);
    }
}

/// Shows the follow-up question for the score chosen so far (an NPS survey's depends on the
/// group), or hides the text box when there is none.
pub fn follow_up(card: &Card, survey: &Survey, ctx: &Ctx) {
    if survey.kind == SurveyKind::Question {
        return;
    }
    let text = ctx.text(survey.follow_up.for_group(card.score().and_then(|s| survey.group(s))));
    if let Some(l) = card.find("#onramp-sl") {
        l.set_text_content(Some(text));
    }
    if let Some(o) = card.find(".o") {
        let _ = if text.is_empty() { o.set_attribute("hidden", "") } else { o.remove_attribute("hidden") };
    }
}

fn on_click(i: usize, e: Event) {
    let action = e.target().and_then(|t| t.dyn_into::<Element>().ok()).and_then(|t| t.closest("[data-a]").ok().flatten()).and_then(|a| a.get_attribute("data-a"));
    if let Some(action) = action {
        super::survey_act(i, &action);
    }
}

fn on_key(i: usize, e: Event) {
    let Some(k) = e.dyn_ref::<KeyboardEvent>() else { return };
    if k.key() == "Escape" {
        e.prevent_default();
        e.stop_propagation();
        super::survey_act(i, "x");
    }
}

/// Queues a `survey` event about `survey`, per docs/EVENTS.md.
pub fn emit(out: &mut Vec<Emit>, name: &str, props: Vec<(String, Value)>) {
    out.push(Emit { kind: EventType::Survey, name: name.into(), props });
}

/// What a user's action on survey `survey` does: records it and reports it. Returns true when
/// the card should go (dismissed or snoozed); an answer keeps it for the thank-you.
pub fn act(card: &mut Card, survey: &Survey, action: &str, ctx: &Ctx, engine: &mut Engine, store: &mut dyn KeyValue, out: &mut Vec<Emit>, now: i64) -> bool {
    match action {
        "x" | "l" => {
            let snooze = action == "l";
            engine.update(store, |state, _| if snooze { surveys::record_snoozed(state, survey, now) } else { surveys::record_dismissed(state, survey, now) });
            emit(out, if snooze { names::SNOOZED } else { names::DISMISSED }, surveys::props(survey));
            true
        }
        "c" => {
            follow_up(card, survey, ctx);
            if let Some(e) = card.find(".e") {
                e.set_text_content(None);
            }
            false
        }
        "s" if card.thanks.is_none() => {
            let (score, text) = (card.score(), card.text());
            let missing = if survey.kind == SurveyKind::Question { text.trim().is_empty() } else { score.is_none() };
            if missing {
                card.missing(ctx, survey);
                return false;
            }
            engine.update(store, |state, _| surveys::record_answered(state, survey, now));
            emit(out, names::ANSWERED, surveys::answer_props(survey, score, &text));
            card.thank(ctx);
            false
        }
        _ => false,
    }
}
