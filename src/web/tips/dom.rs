//! The few DOM pieces tips are built from, gloo-style: a [`Listener`], [`Timeout`] or
//! [`Observer`] removes itself from the page when dropped, so a tip that owns them cleans up
//! everything by being dropped. Finding targets (through open shadow roots and same-origin
//! iframes) and measuring them also lives here.

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{Document, Element, Event, EventTarget, HtmlElement, MutationObserver, MutationObserverInit};

use crate::core::placement::Rect;

pub fn window() -> Option<web_sys::Window> {
    web_sys::window()
}

pub fn document() -> Option<Document> {
    window()?.document()
}

/// `<tag class="class">`; `None` only when there is no document.
pub fn el(tag: &str, class: &str) -> Option<HtmlElement> {
    let e = document()?.create_element(tag).ok()?;
    if !class.is_empty() {
        e.set_class_name(class);
    }
    e.dyn_into().ok()
}

/// `el` appended to `parent`, with `text` as its only content when not empty.
pub fn child(parent: &Element, tag: &str, class: &str, text: &str) -> Option<HtmlElement> {
    let e = el(tag, class)?;
    if !text.is_empty() {
        e.set_text_content(Some(text));
    }
    parent.append_child(&e).ok()?;
    Some(e)
}

pub fn set(e: &Element, name: &str, value: &str) {
    let _ = e.set_attribute(name, value);
}

/// A button carrying its action in `data-a`; clicks are handled by the tip's one listener.
pub fn button(parent: &Element, class: &str, action: &str, label: &str) -> Option<HtmlElement> {
    let b = child(parent, "button", class, label)?;
    set(&b, "type", "button");
    set(&b, "data-a", action);
    Some(b)
}

/// Writes `v` rounded to an integer, without `format!` (which would pull core::fmt's float code
/// into the bundle).
pub fn num(out: &mut String, v: f64) {
    let mut n = v.round() as i64;
    if n < 0 {
        out.push('-');
        n = -n;
    }
    let start = out.len();
    loop {
        out.insert(start, (b'0' + (n % 10) as u8) as char);
        n /= 10;
        if n == 0 {
            break;
        }
    }
}

/// `name:<v>px;`
pub fn px(out: &mut String, name: &str, v: f64) {
    out.push_str(name);
    out.push(':');
    num(out, v);
    out.push_str("px;");
}

/// Sets inline style through the CSSOM (`style.cssText`), which a strict `style-src` CSP allows,
/// unlike a `style` attribute.
pub fn style(e: &HtmlElement, css: &str) {
    e.style().set_css_text(css);
}

/// An event listener that is removed when dropped.
pub struct Listener {
    target: EventTarget,
    kind: &'static str,
    capture: bool,
    cb: Closure<dyn FnMut(Event)>,
}

impl Listener {
    pub fn new(target: &EventTarget, kind: &'static str, capture: bool, f: impl FnMut(Event) + 'static) -> Listener {
        let cb = Closure::<dyn FnMut(Event)>::new(f);
        let _ = target.add_event_listener_with_callback_and_bool(kind, cb.as_ref().unchecked_ref(), capture);
        Listener { target: target.clone(), kind, capture, cb }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.target.remove_event_listener_with_callback_and_bool(self.kind, self.cb.as_ref().unchecked_ref(), self.capture);
    }
}

/// A `setTimeout` that is cleared when dropped.
pub struct Timeout {
    id: i32,
    _cb: Closure<dyn FnMut()>,
}

impl Timeout {
    pub fn new(ms: i64, f: impl FnMut() + 'static) -> Option<Timeout> {
        let cb = Closure::<dyn FnMut()>::new(f);
        // setTimeout takes a signed 32-bit delay; longer ones would fire at once.
        let ms = ms.clamp(0, i32::MAX as i64) as i32;
        let id = window()?.set_timeout_with_callback_and_timeout_and_arguments_0(cb.as_ref().unchecked_ref(), ms).ok()?;
        Some(Timeout { id, _cb: cb })
    }
}

impl Drop for Timeout {
    fn drop(&mut self) {
        if let Some(w) = window() {
            w.clear_timeout_with_handle(self.id);
        }
    }
}

/// A `MutationObserver` on a document's (or shadow root's) elements and their visibility, disconnected when
/// dropped. This is how a tip waits for a target that appears later: no polling.
pub struct Observer {
    observer: MutationObserver,
    _cb: Closure<dyn FnMut()>,
}

impl Observer {
    pub fn new(node: &web_sys::Node, f: impl FnMut() + 'static) -> Option<Observer> {
        let cb = Closure::<dyn FnMut()>::new(f);
        let observer = MutationObserver::new(cb.as_ref().unchecked_ref()).ok()?;
        let init = MutationObserverInit::new();
        init.set_child_list(true);
        init.set_subtree(true);
        init.set_attributes(true);
        // Only what can make an element appear or move; not every attribute of the page.
        let filter = js_sys::Array::of3(&"hidden".into(), &"class".into(), &"style".into());
        init.set_attribute_filter(&filter);
        observer.observe_with_options(node, &init).ok()?;
        Some(Observer { observer, _cb: cb })
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.observer.disconnect();
    }
}

/// A target found in the page, with the iframes it is inside (outermost first), whose offsets
/// turn its rect into coordinates of the top page.
pub struct Found {
    pub el: Element,
    pub frames: Vec<Element>,
}

/// How far a search for a target got: the shadow root or iframe document it stopped in (to
/// observe as well as the page), and the last iframe on the way (whose `load` may bring it).
#[derive(Default)]
pub struct Partial {
    pub root: Option<web_sys::Node>,
    pub frame: Option<Element>,
}

/// Finds a target. Segments separated by `>>>` descend into the previous match's open shadow
/// root, or into its document when it is a same-origin `<iframe>`:
/// `"#editor-frame >>> my-toolbar >>> button.bold"`. A malformed selector is just "not found":
/// the host page never sees an exception.
pub fn find(selector: &str) -> Result<Found, Partial> {
    let mut frames = Vec::new();
    let mut partial = Partial::default();
    let mut found: Option<Element> = None;
    for part in crate::core::substr::split(selector, ">>>") {
        let part = part.trim();
        let next = match found.take() {
            None => document().and_then(|d| d.query_selector(part).ok().flatten()),
            Some(prev) => {
                if let Some(frame) = prev.dyn_ref::<web_sys::HtmlIFrameElement>() {
                    let doc = frame.content_document();
                    partial.frame = Some(prev.clone());
                    frames.push(prev);
                    let next = doc.as_ref().and_then(|d| d.query_selector(part).ok().flatten());
                    partial.root = doc.map(Into::into);
                    next
                } else {
                    let root = prev.shadow_root();
                    let next = root.as_ref().and_then(|r| r.query_selector(part).ok().flatten());
                    partial.root = root.map(Into::into);
                    next
                }
            }
        };
        found = Some(next.ok_or_else(|| std::mem::take(&mut partial))?);
    }
    let el = found.ok_or(Partial::default())?;
    // Present but not rendered (display:none, a hidden SPA page) counts as not there yet.
    let r = rect(&el, &frames);
    if r.w > 0.0 || r.h > 0.0 {
        Ok(Found { el, frames })
    } else {
        Err(partial)
    }
}

/// The element's rect in the top page's viewport.
pub fn rect(el: &Element, frames: &[Element]) -> Rect {
    let r = el.get_bounding_client_rect();
    let mut out = Rect::new(r.x(), r.y(), r.width(), r.height());
    for f in frames {
        let fr = f.get_bounding_client_rect();
        out.x += fr.x() + f.client_left() as f64;
        out.y += fr.y() + f.client_top() as f64;
    }
    out
}

/// The layout viewport without scrollbars: what `position: fixed` coordinates span.
pub fn viewport() -> (f64, f64) {
    document().and_then(|d| d.document_element()).map_or((0.0, 0.0), |e| (e.client_width() as f64, e.client_height() as f64))
}
