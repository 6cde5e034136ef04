//! JSON values, and JSON text without a reader of our own.
//!
//! [`Value`] is the core's dynamic JSON value: event props, user traits, plan filter operands.
//! Objects keep their keys in document order (a `Vec`, smaller and faster than a map for the
//! handful of keys they hold).
//!
//! JSON *text* is read by the platform's reader, never by one written here: the browser's own
//! `JSON.parse` in the wasm SDK (src/web/browser_json.rs), serde_json natively (the collector,
//! `onramp-collector plan check`, tests). Typed documents go through serde: the wire batch on the
//! collector with serde_json, the persisted user state with [`from_text`] and [`to_text`]
//! (serde over this [`Value`], [`super::json_serde`]).
//!
//! What stays hand-written is the *writer* ([`write_str`], [`write_num`], [`Value::write_to`]):
//! the lean tracker serialises every event it sends with it and carries no serde (see
//! `wire::Event::write_json` for the measured cost of the alternative).

use alloc::string::String;
use alloc::vec::Vec;

/// Deepest nesting the browser-side reader accepts (serde_json's own limit is 128); deeper
/// documents are refused rather than risking the stack.
pub const MAX_DEPTH: usize = 64;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Value>),
    /// Keys keep document order; objects here are small, so a Vec beats a map in size and speed.
    Obj(Vec<(String, Value)>),
}

/// JSON text that could not be read; `message` is the reader's own account of where and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub message: String,
}

impl ParseError {
    /// "invalid JSON: <reader's message>", built without `core::fmt` (see
    /// [`super::plan::PlanError::message`]).
    pub fn describe(&self) -> String {
        String::from("invalid JSON: ") + &self.message
    }
}

impl ::core::fmt::Display for ParseError {
    fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// The value under `key` in an object's entries (event props, user traits).
pub fn field<'a>(entries: &'a [(String, Value)], key: &str) -> Option<&'a Value> {
    entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

impl Value {
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Obj(entries) => field(entries, key),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Num(n) => Some(*n),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Arr(items) => Some(items),
            _ => None,
        }
    }
    pub fn as_object(&self) -> Option<&[(String, Value)]> {
        match self {
            Value::Obj(entries) => Some(entries),
            _ => None,
        }
    }
    /// The JSON type name, for error messages ("expected a string, found a number").
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Num(_) => "a number",
            Value::Str(_) => "a string",
            Value::Arr(_) => "an array",
            Value::Obj(_) => "an object",
        }
    }

    pub fn to_json(&self) -> String {
        let mut out = String::new();
        self.write_to(&mut out);
        out
    }

    pub fn write_to(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Num(n) => write_num(out, *n),
            Value::Str(s) => write_str(out, s),
            Value::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_to(out);
                }
                out.push(']');
            }
            Value::Obj(entries) => {
                out.push('{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_str(out, k);
                    out.push(':');
                    v.write_to(out);
                }
                out.push('}');
            }
        }
    }
}

/// Writes a number; integers (the common case: timestamps, counts) without a fraction.
pub use super::num::write_f64 as write_num;

/// Writes `s` as a JSON string. Almost every string of an event needs no escape (ids, names,
/// most values): those are found eight bytes at a time and copied whole; the byte-by-byte
/// scan below was the largest single part of a tracker's `track()` in Chromium's profiler
/// (a tenth of its samples). Otherwise runs that need no escape are copied whole: per `char`
/// pushes made this the largest part of an event's serialisation. Multi-byte UTF-8 never needs
/// escaping, so the scan is by byte and a run always ends on a character boundary.
pub fn write_str(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 2);
    out.push('"');
    if !needs_escape(s.as_bytes()) {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut run = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        // `get`, not indexing: always a boundary here, and indexing would bring in the
        // formatting of a slicing panic (bytes the tracker does not otherwise carry).
        out.push_str(s.get(run..i).unwrap_or_default());
        run = i + 1;
        if escape.is_empty() {
            out.push_str("\\u00");
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        } else {
            out.push_str(escape);
        }
    }
    out.push_str(s.get(run..).unwrap_or_default());
    out.push('"');
}

/// Whether any byte of `bytes` is one JSON escapes: a control character (below 0x20), `"` or
/// `\`. Eight bytes at a time (the classic "has a zero byte" / "has a byte less than n" word
/// tests, exact as yes/no answers), the rest one by one.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH != 0;
    let mut words = bytes.chunks_exact(8);
    for chunk in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let v = u64::from_le_bytes(w);
        if v.wrapping_sub(ONES * 0x20) & !v & HIGH != 0 || has_zero(v ^ (ONES * u64::from(b'"'))) || has_zero(v ^ (ONES * u64::from(b'\\'))) {
            return true;
        }
    }
    words.remainder().iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Reads JSON text: the browser's `JSON.parse` in the wasm SDK, serde_json natively. Both are
/// strict RFC 8259 readers (no `01`, `1.`, `-.5`; lone surrogates refused or replaced), so the
/// SDK, the collector and `plan check` agree on what a valid document is.
#[cfg(target_arch = "wasm32")]
pub use crate::web::browser_json::parse;

#[cfg(all(feature = "serde", not(target_arch = "wasm32")))]
pub fn parse(text: &str) -> Result<Value, ParseError> {
    serde_json::from_str(text).map_err(ParseError::from)
}

/// The elements of a JSON array that are objects with a string under `name` and a number under
/// `number`: each one's own JSON text (the platform's writing of it: the browser's
/// `JSON.stringify`, natively [`Value::to_json`]) with that string and number; the other
/// elements are left out, and text that is not a JSON array gives none. A stored queue's events
/// are read this way: in the browser an element never becomes a [`Value`] (walked into one
/// through the JS boundary and written out again, a closed tab's 1 000 stored events took one
/// 58-117 ms task of the main thread to adopt in Chromium at load 10, 30-37 ms this way).
#[cfg(target_arch = "wasm32")]
pub use crate::web::browser_json::records;

#[cfg(all(feature = "serde", not(target_arch = "wasm32")))]
pub fn records(text: &str, name: &str, number: &str) -> Vec<(String, String, f64)> {
    let Ok(Value::Arr(items)) = parse(text) else { return Vec::new() };
    let field = |v: &Value| Some((v.get(name)?.as_str()?.to_owned(), v.get(number)?.as_f64()?));
    items.iter().filter_map(|v| field(v).map(|(s, n)| (v.to_json(), s, n))).collect()
}

#[cfg(all(feature = "serde", not(target_arch = "wasm32")))]
impl From<serde_json::Error> for ParseError {
    fn from(e: serde_json::Error) -> ParseError {
        let message = e.to_string();
        // serde_json's stack guard (128 levels): say what it means for the document.
        match message.strip_prefix("recursion limit exceeded") {
            Some(at) => ParseError { message: String::from("nested too deeply") + at },
            None => ParseError { message },
        }
    }
}

/// Typed documents to and from JSON text, the same code natively and in the browser (see
/// [`super::json_serde`] for why not serde-wasm-bindgen or serde_json there).
#[cfg(feature = "serde")]
pub use super::json_serde::{from_text, to_text};

/// `Value` is the serde data model's own dynamic value, so it crosses serde_json (the collector)
/// and serde-wasm-bindgen (the guide) like any typed field. Objects keep their key order.
#[cfg(feature = "serde")]
mod serde_impl {
    use super::Value;
    use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
    use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

    impl Serialize for Value {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match self {
                Value::Null => s.serialize_unit(),
                Value::Bool(b) => s.serialize_bool(*b),
                // Whole numbers as integers, so serde_json writes `5`, not `5.0`, as the
                // hand-written writer does.
                Value::Num(n) if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 => s.serialize_i64(*n as i64),
                Value::Num(n) if n.is_finite() => s.serialize_f64(*n),
                Value::Num(_) => s.serialize_unit(),
                Value::Str(t) => s.serialize_str(t),
                Value::Arr(items) => {
                    let mut seq = s.serialize_seq(Some(items.len()))?;
                    for item in items {
                        seq.serialize_element(item)?;
                    }
                    seq.end()
                }
                Value::Obj(entries) => {
                    let mut map = s.serialize_map(Some(entries.len()))?;
                    for (k, v) in entries {
                        map.serialize_entry(k, v)?;
                    }
                    map.end()
                }
            }
        }
    }

    impl<'de> Deserialize<'de> for Value {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
            d.deserialize_any(ValueVisitor)
        }
    }

    struct ValueVisitor;

    impl<'de> Visitor<'de> for ValueVisitor {
        type Value = Value;

        fn expecting(&self, f: &mut ::core::fmt::Formatter) -> ::core::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_none<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            Value::deserialize(d)
        }
        fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
            Ok(Value::Bool(b))
        }
        fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
            Ok(Value::Num(n as f64))
        }
        fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
            Ok(Value::Num(n as f64))
        }
        fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
            Ok(Value::Num(n))
        }
        fn visit_str<E>(self, s: &str) -> Result<Value, E> {
            Ok(Value::Str(s.into()))
        }
        fn visit_string<E>(self, s: String) -> Result<Value, E> {
            Ok(Value::Str(s))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(256));
            while let Some(item) = seq.next_element()? {
                items.push(item);
            }
            Ok(Value::Arr(items))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut entries: Vec<(String, Value)> = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
            while let Some((k, v)) = map.next_entry::<String, Value>()? {
                // A repeated key: the last one wins, as in `JSON.parse`.
                match entries.iter_mut().find(|(key, _)| *key == k) {
                    Some(slot) => slot.1 = v,
                    None => entries.push((k, v)),
                }
            }
            Ok(Value::Obj(entries))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // In headless Chromium these read with the browser's JSON.parse: both readers, one behaviour.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// The word-at-a-time test against its definition: every byte value at every place of
    /// strings one to two words long, beside bytes that need no escape (ASCII and UTF-8's high
    /// bytes, whose borrows and high bits the word tests must not mistake).
    #[test]
    fn needs_escape_is_the_byte_by_byte_answer() {
        let by_byte = |b: &[u8]| b.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
        for len in 1..=17 {
            for at in 0..len {
                for value in 0..=255u8 {
                    for filler in [b'a', b' ', 0x21, 0x5d, 0x80, 0xff] {
                        let mut bytes = vec![filler; len];
                        bytes[at] = value;
                        assert_eq!(needs_escape(&bytes), by_byte(&bytes), "{bytes:?}");
                    }
                }
            }
        }
    }

    /// A stored queue's records: each event's own text with its id and time; anything else in
    /// the array is left out, and what is not an array gives none.
    #[test]
    fn records_give_each_text_with_its_string_and_number() {
        let text = r#"[{"id":"a","ts":17,"props":{"x":[1,"b",null]}}, 2 ,{"ts":"late","id":"b"},{"id":"c","ts":1.5}]"#;
        assert_eq!(
            records(text, "id", "ts"),
            [
                (r#"{"id":"a","ts":17,"props":{"x":[1,"b",null]}}"#.to_string(), "a".to_string(), 17.0),
                (r#"{"id":"c","ts":1.5}"#.to_string(), "c".to_string(), 1.5),
            ]
        );
        assert_eq!(records("[]", "id", "ts"), []);
        assert_eq!(records(r#"{"id":"a","ts":1}"#, "id", "ts"), []);
        assert_eq!(records("[1,", "id", "ts"), []);
    }

    /// Every escape, at the start, middle and end, beside multi-byte characters: read back by
    /// the platform's reader (serde_json natively, `JSON.parse` in the browser), each string is
    /// itself again.
    #[test]
    fn strings_read_back_as_written() {
        for s in ["", "plain", "\"", "a\"b\\c", "\n\r\t\u{1}\u{1f}", "é\u{0}ü", "日本\"語\n", "\u{1F600}\\", "x\u{7f}y", "\u{2028}"] {
            let mut out = String::new();
            write_str(&mut out, s);
            assert_eq!(parse(&out).ok().as_ref().and_then(Value::as_str), Some(s), "{out}");
        }
    }

    #[test]
    fn round_trips_nested_documents() {
        let text = r#"{"a":[1,2.5,-3,true,false,null],"b":{"c":"x\"y\\z\n\u00e9"},"d":[]}"#;
        let v = parse(text).expect("valid");
        assert_eq!(v.get("b").and_then(|b| b.get("c")).and_then(Value::as_str), Some("x\"y\\z\né"));
        assert_eq!(parse(&v.to_json()).expect("reparse"), v);
    }

    #[test]
    fn keeps_key_order_and_the_last_of_a_repeated_key() {
        let v = parse(r#"{"z":1,"a":2,"z":3}"#).expect("valid");
        assert_eq!(v, Value::Obj(vec![("z".into(), Value::Num(3.0)), ("a".into(), Value::Num(2.0))]));
    }

    #[test]
    fn decodes_surrogate_pairs() {
        assert_eq!(parse(r#""\ud83d\ude80""#).expect("valid"), Value::Str("🚀".into()));
    }

    /// What the old hand-written reader accepted or mis-decoded (issue 12): a strict reader
    /// refuses them, in the browser and natively alike.
    #[test]
    fn refuses_what_json_does_not_allow() {
        for text in ["{", "[1,]", "{\"a\" 1}", "tru", "1 2", "\"abc", "01", "1.", "-.5"] {
            let err = parse(text).expect_err(text);
            assert!(err.describe().starts_with("invalid JSON: "), "{text}: {err}");
        }
        // `JSON.parse` keeps a lone surrogate (the browser layer then replaces it with U+FFFD
        // when it becomes a Rust string); serde_json refuses it.
        #[cfg(not(target_arch = "wasm32"))]
        assert!(parse(r#""\ud83d\u0041""#).is_err());
    }

    #[test]
    fn writes_integers_without_fraction() {
        let mut s = String::new();
        write_num(&mut s, 1_700_000_000_123.0);
        assert_eq!(s, "1700000000123");
    }

    /// The hand-written writer (what the tracker sends) and serde's agree on every value.
    #[cfg(all(feature = "serde", not(target_arch = "wasm32")))]
    #[test]
    fn the_hand_written_writer_matches_serde() {
        let text = r#"{"a":[1,2.5,-3,true,false,null],"b":{"c":"x\"y\\z\n\u0001é🚀"},"d":[],"e":{}}"#;
        let v = parse(text).expect("valid");
        assert_eq!(v.to_json(), to_text(&v).expect("serialises"));
        assert_eq!(v.to_json(), text);
    }
}
