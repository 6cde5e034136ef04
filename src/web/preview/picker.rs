//! The element picker: while on, a transparent layer over the page (in the tips' shadow root)
//! takes the pointer; hovering highlights the element under it — inside open shadow roots and
//! same-origin frames too — and a click proposes a selector for it
//! ([`crate::core::selector::candidates`], the first that finds exactly that element, as tips
//! find their targets, `>>>` included). Escape leaves. Nothing reaches the page meanwhile: the
//! layer is on top, so the app's own handlers see no hover or click.

use std::cell::RefCell;

use gloo_events::{EventListener, EventListenerOptions};
use wasm_bindgen::JsCast;
use web_sys::{Document, Element, HtmlElement, MouseEvent};

use super::super::tips;
use super::PREVIEW;
use crate::core::selector::{self, Node};

struct Picker {
    layer: HtmlElement,
    highlight: HtmlElement,
    _listeners: Vec<EventListener>,
}

impl Drop for Picker {
    fn drop(&mut self) {
        self.layer.remove();
        self.highlight.remove();
    }
}

thread_local! {
    static PICKER: RefCell<Option<Picker>> = const { RefCell::new(None) };
}

/// What is under a point, and what stands in the way of reaching deeper.
struct Hit {
    element: Element,
    /// Offset of the element's frame from the top page's viewport.
    dx: f64,
    dy: f64,
    warning: Option<String>,
}

fn document() -> Option<Document> {
    web_sys::window()?.document()
}

/// The element under (x, y), descending into open shadow roots and same-origin iframes.
/// Nothing of onramp's counts: the picker's layer stops taking the pointer for the test, and
/// elements of the tips' own shadow root (the panel, a tip) are skipped.
fn hit(x: f64, y: f64) -> Option<Hit> {
    let doc = document()?;
    let ours = tips::shadow_root()?;
    let host = ours.host();
    let layer = PICKER.with(|p| p.borrow().as_ref().map(|p| p.layer.clone()));
    if let Some(l) = &layer {
        let _ = l.style().set_property("pointer-events", "none");
    }
    let ours_node: &web_sys::Node = &ours;
    let not_ours = |e: &Element| *e != host && e.get_root_node() != *ours_node;
    let first = |list: js_sys::Array| list.iter().filter_map(|e| e.dyn_into::<Element>().ok()).find(|e| not_ours(e));
    let found = first(doc.elements_from_point(x as f32, y as f32)).map(|mut element| {
        let (mut dx, mut dy) = (0.0, 0.0);
        let mut warning = None;
        for _ in 0..16 {
            if let Some(root) = element.shadow_root() {
                match first(root.elements_from_point((x - dx) as f32, (y - dy) as f32)) {
                    Some(inner) if inner != element && inner.get_root_node() == *AsRef::<web_sys::Node>::as_ref(&root) => element = inner,
                    _ => break,
                }
            } else if element.tag_name() == "IFRAME" {
                // Not `dyn_ref`: an element of a frame's document fails `instanceof` checks
                // against the top page's classes.
                let frame = element.unchecked_ref::<web_sys::HtmlIFrameElement>();
                let Some(inner_doc) = frame.content_document() else {
                    warning = Some("this is a cross-origin frame: onramp cannot reach inside it, so the selector targets the frame itself".to_string());
                    break;
                };
                let r = frame.get_bounding_client_rect();
                dx += r.left() + f64::from(frame.client_left());
                dy += r.top() + f64::from(frame.client_top());
                match inner_doc.element_from_point((x - dx) as f32, (y - dy) as f32) {
                    Some(inner) => element = inner,
                    None => break,
                }
            } else {
                if element.tag_name().contains('-') && element.child_element_count() == 0 {
                    warning = Some(format!(
                        "<{}> has no open shadow root: if its content sits in a closed one, onramp cannot target inside it, so the selector targets the element itself",
                        element.tag_name().to_lowercase()
                    ));
                }
                break;
            }
        }
        Hit { element, dx, dy, warning }
    });
    if let Some(l) = &layer {
        let _ = l.style().remove_property("pointer-events");
    }
    found
}

fn node(e: &Element) -> Node {
    let tag = e.tag_name().to_lowercase();
    let mut nth = 1;
    let mut sibling = e.previous_element_sibling();
    while let Some(s) = sibling {
        if s.tag_name() == e.tag_name() {
            nth += 1;
        }
        sibling = s.previous_element_sibling();
    }
    let mut data = Vec::new();
    let names = e.get_attribute_names();
    for name in names.iter().filter_map(|n| n.as_string()) {
        if name.starts_with("data-") {
            data.push((name.clone(), e.get_attribute(&name).unwrap_or_default()));
        }
    }
    let classes = e.class_name().split_whitespace().map(String::from).collect();
    Node { tag, id: Some(e.id()).filter(|i| !i.is_empty()), classes, data, nth_of_type: nth }
}

/// The element's path up to the root of its tree, and that root's host (a shadow host, or the
/// frame element of a same-origin iframe) when it is not the top document.
fn path(e: &Element) -> (Vec<Node>, Option<Element>) {
    let mut nodes = vec![node(e)];
    let mut cur = e.clone();
    while let Some(p) = cur.parent_element() {
        nodes.push(node(&p));
        cur = p;
    }
    let root = cur.get_root_node();
    // By node type, not `dyn_ref`: a frame's nodes fail `instanceof` against the top page's
    // classes.
    let host = match root.node_type() {
        web_sys::Node::DOCUMENT_FRAGMENT_NODE => Some(root.unchecked_ref::<web_sys::ShadowRoot>().host()),
        web_sys::Node::DOCUMENT_NODE => {
            root.unchecked_ref::<Document>().default_view().and_then(|w| w.frame_element().ok().flatten())
        }
        _ => None,
    };
    (nodes, host)
}

/// How many elements `selector` matches in `e`'s own tree (document or shadow root).
fn count_in_tree(e: &Element, selector: &str) -> u32 {
    let root = e.get_root_node();
    let list = match root.node_type() {
        web_sys::Node::DOCUMENT_FRAGMENT_NODE => root.unchecked_ref::<web_sys::ShadowRoot>().query_selector_all(selector).ok(),
        web_sys::Node::DOCUMENT_NODE => root.unchecked_ref::<Document>().query_selector_all(selector).ok(),
        _ => None,
    };
    list.map_or(0, |l| l.length())
}

/// The selector for `e` in its own tree: the first candidate matching only it, or the best
/// one with how many it matches.
fn local(e: &Element) -> (String, u32) {
    let (nodes, _) = path(e);
    let candidates = selector::candidates(&nodes);
    for c in &candidates {
        if count_in_tree(e, c) == 1 && e.matches(c).unwrap_or(false) {
            return (c.clone(), 1);
        }
    }
    let best = candidates.last().cloned().unwrap_or_else(|| e.tag_name().to_lowercase());
    let n = count_in_tree(e, &best);
    (best, n)
}

/// The full selector (with `>>>` for each shadow root or frame on the way), and warnings.
fn propose(e: &Element) -> (String, Vec<String>) {
    let mut parts = Vec::new();
    let mut warnings = Vec::new();
    let mut cur = e.clone();
    for _ in 0..8 {
        let (s, n) = local(&cur);
        if n != 1 {
            warnings.push(format!("`{s}` matches {n} elements; onramp uses the first"));
        }
        parts.push(s);
        match path(&cur).1 {
            Some(host) => cur = host,
            None => break,
        }
    }
    parts.reverse();
    (parts.join(" >>> "), warnings)
}

/// Turns the picker on (the panel's "Pick an element").
pub fn start() {
    let Some(root) = tips::shadow_root() else { return };
    let Some(doc) = document() else { return };
    let make = |class: &str| -> Option<HtmlElement> {
        let e: HtmlElement = doc.create_element("div").ok()?.dyn_into().ok()?;
        e.set_class_name(class);
        root.append_child(&e).ok()?;
        Some(e)
    };
    let (Some(layer), Some(highlight)) = (make("pv-layer"), make("pv-highlight")) else { return };
    let _ = layer.set_attribute("aria-label", "Element picker: click an element of the page, Escape to stop");
    let _ = layer.set_attribute("role", "application");
    let _ = layer.set_attribute("tabindex", "-1");
    let _ = layer.focus();
    let mut listeners = Vec::new();
    let move_highlight = highlight.clone();
    listeners.push(EventListener::new(&layer, "mousemove", move |e| {
        let Some(m) = e.dyn_ref::<MouseEvent>() else { return };
        let Some(h) = hit(f64::from(m.client_x()), f64::from(m.client_y())) else { return };
        let r = h.element.get_bounding_client_rect();
        let style = format!(
            "top:{}px;left:{}px;width:{}px;height:{}px",
            r.top() + h.dy,
            r.left() + h.dx,
            r.width(),
            r.height()
        );
        let _ = move_highlight.set_attribute("style", &style);
        let _ = move_highlight.set_attribute("data-tag", &h.element.tag_name().to_lowercase());
    }));
    let options = EventListenerOptions::enable_prevent_default();
    listeners.push(EventListener::new_with_options(&layer, "click", options, |e| {
        e.prevent_default();
        e.stop_propagation();
        let Some(m) = e.dyn_ref::<MouseEvent>() else { return };
        let picked = hit(f64::from(m.client_x()), f64::from(m.client_y()));
        stop();
        if let Some(h) = picked {
            show(&h);
        }
    }));
    if let Some(w) = web_sys::window() {
        listeners.push(EventListener::new_with_options(&w, "keydown", EventListenerOptions::enable_prevent_default(), |e| {
            if e.dyn_ref::<web_sys::KeyboardEvent>().is_some_and(|k| k.key() == "Escape") {
                e.prevent_default();
                stop();
            }
        }));
    }
    PICKER.with(|p| *p.borrow_mut() = Some(Picker { layer, highlight, _listeners: listeners }));
}

fn stop() {
    // Dropped after the borrow ends: the listener running now is among what it removes.
    let picker = PICKER.with(|p| p.borrow_mut().take());
    if let Some(picker) = picker {
        gloo_timers::callback::Timeout::new(0, move || drop(picker)).forget();
    }
}

/// Puts the proposal in the panel: the selector, what it finds, and warnings.
fn show(h: &Hit) {
    let (proposal, mut warnings) = propose(&h.element);
    if let Some(w) = &h.warning {
        warnings.push(w.clone());
    }
    if proposal.contains(":nth-of-type(") {
        warnings.push("a positional selector breaks when the page's layout changes: a data-testid on the element is sturdier".to_string());
    }
    let found = tips::find_target(&proposal);
    let exact = found.as_ref() == Some(&h.element);
    if !exact {
        warnings.push("this selector does not find the picked element the way tips look for targets".to_string());
    }
    PREVIEW.with(|p| {
        let Ok(guard) = p.try_borrow() else { return };
        let Some(panel) = guard.as_ref().and_then(|p| p.panel.as_ref()) else { return };
        let box_ = &panel.pick_result;
        box_.set_text_content(None);
        let Some(doc) = document() else { return };
        let line = |tag: &str, class: &str, text: &str| {
            let e = doc.create_element(tag).ok()?;
            e.set_class_name(class);
            e.set_text_content(Some(text));
            box_.append_child(&e).ok()?;
            Some(e)
        };
        line("p", "", "Selector for a rule, a tip target or a tour step:");
        if let Ok(input) = doc.create_element("input") {
            let _ = input.set_attribute("readonly", "");
            let _ = input.set_attribute("value", &proposal);
            let _ = input.set_attribute("aria-label", "Proposed selector");
            let _ = input.set_attribute("data-selector", &proposal);
            let _ = box_.append_child(&input);
            if let Some(i) = input.dyn_ref::<web_sys::HtmlInputElement>() {
                let _ = i.focus();
                i.select();
            }
        }
        line("p", if exact { "pv-ok" } else { "pv-warn" }, if exact { "Matches exactly the picked element." } else { "Check it before use." });
        for w in warnings {
            line("p", "pv-warn", &w);
        }
    });
}
