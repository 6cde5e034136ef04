//! serde types to and from [`Value`], with an error that carries no message.
//!
//! Why not serde-wasm-bindgen (or serde_json) for typed documents in the wasm: their errors
//! format what they found (`invalid type: floating point `1.5`, expected u32`), and that
//! formatting pulls `core::fmt` with Rust's float printing into the bundle. Measured on the full
//! SDK's wasm with the persisted user state as its only serde type (`cargo xtask build`, after
//! wasm-opt -Oz), against the hand-written state JSON before it (221 729 B raw, 97 115 gzip,
//! 82 839 brotli): with serde-wasm-bindgen 268 464 / 116 954 / 98 542 (+46.7 KB raw, +19.8 KB
//! gzip; `<f64 as Display>::fmt` alone 13.9 KB raw); with this bridge, over the [`Value`] the
//! browser's `JSON.parse` already fills (src/web/browser_json.rs) and the writer the SDK already
//! has, 231 231 / 100 781 / 85 388 (+9.5 KB raw, +3.7 KB gzip). The SDK never shows serde's
//! messages anyway: a stored document it cannot read is simply not trusted (see
//! `core::persisted`). Where a message matters (the collector's 400, `plan check`) the native
//! side uses serde_json with its full errors.
//!
//! The same bridge runs natively and in the browser, so the unit tests exercise the code the
//! SDK ships.

use serde::de::{self, DeserializeSeed, Deserializer, Expected, MapAccess, SeqAccess, Unexpected, Visitor};
use serde::ser::{self, Serialize};

use super::json::{self, ParseError, Value};

/// "Not the shape expected", and nothing more (see the module docs for why).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShapeError;

impl std::fmt::Display for ShapeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not the expected shape")
    }
}

impl std::error::Error for ShapeError {}

// Every constructor overridden: the defaults would format their arguments.
impl de::Error for ShapeError {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        ShapeError
    }
    fn invalid_type(_: Unexpected, _: &dyn Expected) -> Self {
        ShapeError
    }
    fn invalid_value(_: Unexpected, _: &dyn Expected) -> Self {
        ShapeError
    }
    fn invalid_length(_: usize, _: &dyn Expected) -> Self {
        ShapeError
    }
    fn unknown_variant(_: &str, _: &'static [&'static str]) -> Self {
        ShapeError
    }
    fn unknown_field(_: &str, _: &'static [&'static str]) -> Self {
        ShapeError
    }
    fn missing_field(_: &'static str) -> Self {
        ShapeError
    }
    fn duplicate_field(_: &'static str) -> Self {
        ShapeError
    }
}

impl ser::Error for ShapeError {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        ShapeError
    }
}

/// Reads a typed document from JSON text: the platform's reader ([`json::parse`]) makes the
/// [`Value`], this bridge the type.
pub fn from_text<T: de::DeserializeOwned>(text: &str) -> Result<T, ParseError> {
    let value = json::parse(text)?;
    T::deserialize(&value).map_err(|_| ParseError { message: String::from("not the expected shape") })
}

/// Writes a typed document as JSON text with the SDK's own writer; `None` if `T` refuses to
/// serialise (a number JSON cannot hold, bytes).
pub fn to_text<T: Serialize>(value: &T) -> Option<String> {
    value.serialize(ValueSerializer).ok().map(|v| v.to_json())
}

impl<'de> Deserializer<'de> for &'de Value {
    type Error = ShapeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ShapeError> {
        match self {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            // Whole numbers as integers, so integer fields read them (serde's i64 refuses a float).
            Value::Num(n) if n.fract() == 0.0 && *n >= 0.0 && *n < 1.8e19 => visitor.visit_u64(*n as u64),
            Value::Num(n) if n.fract() == 0.0 && *n < 0.0 && *n >= -9.2e18 => visitor.visit_i64(*n as i64),
            Value::Num(n) => visitor.visit_f64(*n),
            Value::Str(s) => visitor.visit_borrowed_str(s),
            Value::Arr(items) => visitor.visit_seq(Items(items.iter())),
            Value::Obj(entries) => visitor.visit_map(Entries { entries: entries.iter(), value: None }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ShapeError> {
        match self {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, ShapeError> {
        visitor.visit_newtype_struct(self)
    }

    /// Unit variants, as [`ValueSerializer`] writes them: the variant's name.
    fn deserialize_enum<V: Visitor<'de>>(self, _: &'static str, _: &'static [&'static str], visitor: V) -> Result<V::Value, ShapeError> {
        match self {
            Value::Str(s) => visitor.visit_enum(de::value::BorrowedStrDeserializer::<ShapeError>::new(s)),
            _ => Err(ShapeError),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

struct Items<'de>(std::slice::Iter<'de, Value>);

impl<'de> SeqAccess<'de> for Items<'de> {
    type Error = ShapeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, ShapeError> {
        self.0.next().map(|v| seed.deserialize(v)).transpose()
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Entries<'de> {
    entries: std::slice::Iter<'de, (String, Value)>,
    value: Option<&'de Value>,
}

impl<'de> MapAccess<'de> for Entries<'de> {
    type Error = ShapeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, ShapeError> {
        let Some((key, value)) = self.entries.next() else { return Ok(None) };
        self.value = Some(value);
        let key = de::value::BorrowedStrDeserializer::<ShapeError>::new(key);
        seed.deserialize(key).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, ShapeError> {
        seed.deserialize(self.value.take().ok_or(ShapeError)?)
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// Serialises into a [`Value`]: the JSON data model only (no bytes; enums as their variant name,
/// or a one-key object for a variant with data).
struct ValueSerializer;

impl ser::Serializer for ValueSerializer {
    type Ok = Value;
    type Error = ShapeError;
    type SerializeSeq = ItemsOut;
    type SerializeTuple = ItemsOut;
    type SerializeTupleStruct = ItemsOut;
    type SerializeTupleVariant = ser::Impossible<Value, ShapeError>;
    type SerializeMap = EntriesOut;
    type SerializeStruct = EntriesOut;
    type SerializeStructVariant = ser::Impossible<Value, ShapeError>;

    fn serialize_bool(self, v: bool) -> Result<Value, ShapeError> {
        Ok(Value::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Value, ShapeError> {
        Ok(Value::Num(v.into()))
    }
    fn serialize_i16(self, v: i16) -> Result<Value, ShapeError> {
        Ok(Value::Num(v.into()))
    }
    fn serialize_i32(self, v: i32) -> Result<Value, ShapeError> {
        Ok(Value::Num(v.into()))
    }
    /// Only what a JSON number (an f64 in the browser) holds exactly: a larger integer would be
    /// read back as another number.
    fn serialize_i64(self, v: i64) -> Result<Value, ShapeError> {
        const EXACT: i64 = 1 << 53;
        if (-EXACT..=EXACT).contains(&v) {
            Ok(Value::Num(v as f64))
        } else {
            Err(ShapeError)
        }
    }
    fn serialize_u8(self, v: u8) -> Result<Value, ShapeError> {
        Ok(Value::Num(v.into()))
    }
    fn serialize_u16(self, v: u16) -> Result<Value, ShapeError> {
        Ok(Value::Num(v.into()))
    }
    fn serialize_u32(self, v: u32) -> Result<Value, ShapeError> {
        Ok(Value::Num(v.into()))
    }
    fn serialize_u64(self, v: u64) -> Result<Value, ShapeError> {
        i64::try_from(v).map_err(|_| ShapeError).and_then(|v| self.serialize_i64(v))
    }
    fn serialize_f32(self, v: f32) -> Result<Value, ShapeError> {
        self.serialize_f64(v.into())
    }
    fn serialize_f64(self, v: f64) -> Result<Value, ShapeError> {
        Ok(if v.is_finite() { Value::Num(v) } else { Value::Null })
    }
    fn serialize_char(self, v: char) -> Result<Value, ShapeError> {
        Ok(Value::Str(v.into()))
    }
    fn serialize_str(self, v: &str) -> Result<Value, ShapeError> {
        Ok(Value::Str(v.into()))
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<Value, ShapeError> {
        Err(ShapeError)
    }
    fn serialize_none(self) -> Result<Value, ShapeError> {
        Ok(Value::Null)
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<Value, ShapeError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Value, ShapeError> {
        Ok(Value::Null)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Value, ShapeError> {
        Ok(Value::Null)
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<Value, ShapeError> {
        Ok(Value::Str(variant.into()))
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, _: &'static str, value: &T) -> Result<Value, ShapeError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Value, ShapeError> {
        Ok(Value::Obj(vec![(variant.into(), value.serialize(self)?)]))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<ItemsOut, ShapeError> {
        Ok(ItemsOut(Vec::with_capacity(len.unwrap_or(0))))
    }
    fn serialize_tuple(self, len: usize) -> Result<ItemsOut, ShapeError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<ItemsOut, ShapeError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> Result<Self::SerializeTupleVariant, ShapeError> {
        Err(ShapeError)
    }
    fn serialize_map(self, len: Option<usize>) -> Result<EntriesOut, ShapeError> {
        Ok(EntriesOut { entries: Vec::with_capacity(len.unwrap_or(0)), key: None })
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<EntriesOut, ShapeError> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> Result<Self::SerializeStructVariant, ShapeError> {
        Err(ShapeError)
    }
}

struct ItemsOut(Vec<Value>);

impl ser::SerializeSeq for ItemsOut {
    type Ok = Value;
    type Error = ShapeError;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), ShapeError> {
        self.0.push(value.serialize(ValueSerializer)?);
        Ok(())
    }
    fn end(self) -> Result<Value, ShapeError> {
        Ok(Value::Arr(self.0))
    }
}

impl ser::SerializeTuple for ItemsOut {
    type Ok = Value;
    type Error = ShapeError;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), ShapeError> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<Value, ShapeError> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeTupleStruct for ItemsOut {
    type Ok = Value;
    type Error = ShapeError;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), ShapeError> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<Value, ShapeError> {
        ser::SerializeSeq::end(self)
    }
}

struct EntriesOut {
    entries: Vec<(String, Value)>,
    key: Option<String>,
}

impl ser::SerializeMap for EntriesOut {
    type Ok = Value;
    type Error = ShapeError;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), ShapeError> {
        match key.serialize(ValueSerializer)? {
            Value::Str(k) => {
                self.key = Some(k);
                Ok(())
            }
            // JSON object keys are strings.
            _ => Err(ShapeError),
        }
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), ShapeError> {
        let key = self.key.take().ok_or(ShapeError)?;
        self.entries.push((key, value.serialize(ValueSerializer)?));
        Ok(())
    }
    fn end(self) -> Result<Value, ShapeError> {
        Ok(Value::Obj(self.entries))
    }
}

impl ser::SerializeStruct for EntriesOut {
    type Ok = Value;
    type Error = ShapeError;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, key: &'static str, value: &T) -> Result<(), ShapeError> {
        self.entries.push((key.into(), value.serialize(ValueSerializer)?));
        Ok(())
    }
    fn end(self) -> Result<Value, ShapeError> {
        Ok(Value::Obj(self.entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// A wire event (its type is an enum) reads through the bridge as it does through serde_json.
    #[test]
    fn unit_variants_read_back() {
        let text = r#"{"id":"e1","type":"track","name":"signed_up","anonymousId":"a","ts":5,"props":{"captured":"submit"}}"#;
        let event: crate::core::wire::Event = from_text(text).expect("event");
        assert_eq!((event.kind, event.name.as_str()), (crate::core::wire::EventType::Track, "signed_up"));
        assert_eq!(from_text::<crate::core::wire::EventType>(r#""nope""#), Err(ParseError { message: String::from("not the expected shape") }));
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct Doc {
        when: i64,
        count: u32,
        maybe: Option<i64>,
        ratio: f64,
        name: String,
        list: Vec<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        absent: Option<bool>,
        nested: Inner,
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq, Default)]
    #[serde(default)]
    struct Inner {
        #[serde(alias = "old")]
        new: i64,
    }

    #[test]
    fn round_trips_a_typed_document() {
        let doc = Doc {
            when: 1_700_000_000_000,
            count: 3,
            maybe: None,
            ratio: 0.25,
            name: "é \"q\"".into(),
            list: vec![-1, 0, 9_007_199_254_740_992],
            absent: None,
            nested: Inner { new: -5 },
        };
        let text = to_text(&doc).expect("serialises");
        assert_eq!(text, r#"{"when":1700000000000,"count":3,"maybe":null,"ratio":0.25,"name":"é \"q\"","list":[-1,0,9007199254740992],"nested":{"new":-5}}"#);
        assert_eq!(from_text::<Doc>(&text), Ok(doc));
    }

    #[test]
    fn reads_defaults_aliases_and_ignores_unknown_fields() {
        let doc: Doc = from_text(r#"{"count":2,"nested":{"old":4},"extra":[1,{"a":null}]}"#).expect("reads");
        assert_eq!(doc, Doc { count: 2, nested: Inner { new: 4 }, ..Doc::default() });
    }

    #[test]
    fn refuses_the_wrong_shape_without_a_message_to_format() {
        for text in [r#"{"count":1.5}"#, r#"{"count":-1}"#, r#"{"count":5000000000}"#, r#"{"when":"soon"}"#, r#"{"list":{}}"#, "3", "{"] {
            assert!(from_text::<Doc>(text).is_err(), "{text}");
        }
    }

    #[test]
    fn refuses_to_write_what_json_numbers_cannot_hold() {
        assert_eq!(to_text(&Doc { when: i64::MAX, ..Doc::default() }), None);
    }
}
