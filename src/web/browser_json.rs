//! JSON text in the browser is the browser's job: `JSON.parse` reads it, and the result is
//! walked into the core's [`Value`], so the SDK carries no JSON reader of its own (issue 12).
//! Typed documents (the persisted user state) then go from the [`Value`] through serde
//! (`core::json_serde`). A stored queue's events are the exception ([`records`]): the browser
//! writes each one out again, and only its text, id and time cross into the wasm.

use alloc::string::String;
use alloc::vec::Vec;

use wasm_bindgen::{JsCast, JsValue};

use crate::core::json::{ParseError, Value, MAX_DEPTH};

/// The `SyntaxError`'s own message ("Unexpected token } in JSON at position 32"), or a
/// generic one when the thrown value is not an `Error`.
fn syntax_error(thrown: JsValue) -> ParseError {
    let message = thrown
        .dyn_ref::<js_sys::Error>()
        .and_then(|e| e.message().as_string())
        .unwrap_or_else(|| String::from("the browser's JSON.parse refused it"));
    ParseError { message }
}

pub fn parse(text: &str) -> Result<Value, ParseError> {
    let js = js_sys::JSON::parse(text).map_err(syntax_error)?;
    from_js(&js, 0).ok_or_else(|| ParseError { message: String::from("nested too deeply") })
}

#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    /// `JSON.parse` of a string that stays in JS (js_sys's takes a `&str`, which would copy the
    /// text into the wasm and back).
    #[wasm_bindgen(js_namespace = JSON, js_name = parse, catch)]
    fn parse_js_string(text: &js_sys::JsString) -> Result<JsValue, JsValue>;
}

/// See [`crate::core::json::records`]: the array is parsed and each element written out again by
/// the browser; only the string, the number and that text cross into the wasm.
pub fn records(text: &str, name: &str, number: &str) -> Vec<(String, String, f64)> {
    let mut out = Vec::new();
    let Some(items) = js_sys::JSON::parse(text).ok().and_then(|v| v.dyn_into::<js_sys::Array>().ok()) else { return out };
    let (name, number) = (JsValue::from_str(name), JsValue::from_str(number));
    for item in items.iter() {
        // Reflect.get throws on a primitive element: it has no such field.
        let string = js_sys::Reflect::get(&item, &name).ok().and_then(|v| v.as_string());
        let num = js_sys::Reflect::get(&item, &number).ok().and_then(|v| v.as_f64());
        // `as_string`, not `String::from`: that unwraps (a panic path in the bundle).
        let text = js_sys::JSON::stringify(&item).ok().and_then(|t| JsValue::from(t).as_string());
        if let (Some(string), Some(num), Some(text)) = (string, num, text) {
            out.push((text, string, num));
        }
    }
    out
}

/// `js` as JSON would see it, read through `JSON.stringify` and `JSON.parse` without the text
/// ever crossing into the wasm: every `track()` pays for this, and the two copies of the text
/// (UTF-16 to UTF-8 and back) showed in its profile (Chromium). `None` when `js` is not
/// JSON (a cycle, a BigInt, `undefined`) or nests too deeply.
pub fn from_js_copy(js: &JsValue) -> Option<Value> {
    let text = js_sys::JSON::stringify(js).ok()?;
    let copy = parse_js_string(&text).ok()?;
    from_js(&copy, 0)
}

/// A value `JSON.parse` made (so only null, booleans, numbers, strings, arrays and plain
/// objects) as a [`Value`]; `None` past [`MAX_DEPTH`].
fn from_js(js: &JsValue, depth: usize) -> Option<Value> {
    // Numbers and strings first: each test is a call into JS, and props are mostly those.
    if let Some(n) = js.as_f64() {
        return Some(Value::Num(n));
    }
    if let Some(s) = js.as_string() {
        return Some(Value::Str(s));
    }
    if let Some(b) = js.as_bool() {
        return Some(Value::Bool(b));
    }
    if !js.is_object() {
        return Some(Value::Null);
    }
    if depth >= MAX_DEPTH {
        return None;
    }
    if let Some(items) = js.dyn_ref::<js_sys::Array>() {
        // A loop, not `collect::<Option<_>>()`: smaller in the tracker.
        let mut out = Vec::with_capacity(items.length() as usize);
        for item in items.iter() {
            out.push(from_js(&item, depth + 1)?);
        }
        return Some(Value::Arr(out));
    }
    entries(js, depth).map(Value::Obj)
}

/// An object's own entries, its values read by [`from_js`] one level deeper.
fn entries(js: &JsValue, depth: usize) -> Option<Vec<(String, Value)>> {
    let entries = js_sys::Object::entries(js.unchecked_ref());
    let mut out = Vec::with_capacity(entries.length() as usize);
    for pair in entries.iter() {
        let pair: js_sys::Array = pair.unchecked_into();
        out.push((pair.get(0).as_string()?, from_js(&pair.get(1), depth + 1)?));
    }
    Some(out)
}
