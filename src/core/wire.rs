//! The wire format: one batch of events, as the SDK sends it and the collector receives it.
//!
//! Defined once, here, and used by both sides. A batch is sent as `text/plain` JSON (a
//! CORS-simple request, so `sendBeacon` and `keepalive` fetches need no preflight on unload):
//!
//! ```json
//! {"writeKey":"wk_demo","sentAt":1700000000500,"events":[
//!   {"id":"0190d4c2-…","type":"track","name":"project_created","anonymousId":"a1",
//!    "userId":"u1","ts":1700000000000,"props":{"plan":"pro"}}]}
//! ```
//!
//! `sentAt` and `ts` are the client's clock in Unix milliseconds; the collector compares `sentAt`
//! with its own receive time to correct skew. `id` is a UUIDv7 chosen by the SDK, so a resend
//! after a lost acknowledgement is recognised and stored once.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::json::{self, Value};

/// Segment's limits, which customers already know: 32 KB per event, 500 KB per batch.
pub const MAX_EVENT_BYTES: usize = 32 * 1024;
pub const MAX_BATCH_BYTES: usize = 500 * 1024;
pub const MAX_EVENTS_PER_BATCH: usize = 1000;

/// What an event records. The names are the wire strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(rename_all = "lowercase"))]
pub enum EventType {
    /// A product action: `track()` calls and auto-captured page activity.
    Track,
    /// Links the anonymous id to a user id and carries traits such as `signedUpAt`.
    Identify,
    /// A milestone was reached; props carry `sinceSignupMs`.
    Milestone,
    /// Something happened to a tip: shown, dismissed, snoozed, CTA clicked.
    Tip,
    /// A seed metric computed in the SDK (first-session length, return interval…).
    Metric,
    /// Something happened to a micro-survey: shown, answered, dismissed, snoozed.
    Survey,
    /// Something happened to a growth prompt: shown, acted on, put off.
    Prompt,
    /// The user was assigned to an arm of a holdout experiment.
    Experiment,
}

impl EventType {
    pub const ALL: [EventType; 8] = [
        EventType::Track,
        EventType::Identify,
        EventType::Milestone,
        EventType::Tip,
        EventType::Metric,
        EventType::Survey,
        EventType::Prompt,
        EventType::Experiment,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Track => "track",
            EventType::Identify => "identify",
            EventType::Milestone => "milestone",
            EventType::Tip => "tip",
            EventType::Metric => "metric",
            EventType::Survey => "survey",
            EventType::Prompt => "prompt",
            EventType::Experiment => "experiment",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// An event's props: always a JSON object on the wire, its keys in the order they were given.
pub type Props = Vec<(String, Value)>;

/// One event. The serde derive is the definition of its JSON form: the collector reads events
/// with it, and [`Event::write_json`] (the tracker's hand-written writer) is tested against it.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(rename_all = "camelCase"))]
pub struct Event {
    #[cfg_attr(feature = "serde", serde(deserialize_with = "checks::id"))]
    pub id: String,
    #[cfg_attr(feature = "serde", serde(rename = "type"))]
    pub kind: EventType,
    #[cfg_attr(feature = "serde", serde(deserialize_with = "checks::name"))]
    pub name: String,
    #[cfg_attr(feature = "serde", serde(deserialize_with = "checks::anonymous_id"))]
    pub anonymous_id: String,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "checks::user_id"))]
    pub user_id: Option<String>,
    /// Identity verification: HMAC-SHA256 of `user_id` with the project's identity secret, hex,
    /// computed by the customer's backend and passed to `identify` (docs/IDENTITY.md).
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "checks::user_hash"))]
    pub user_hash: Option<String>,
    /// Client clock, Unix milliseconds.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "checks::ts"))]
    pub ts: i64,
    /// Always a JSON object; `null` or absent reads as empty.
    #[cfg_attr(feature = "serde", serde(default, with = "checks::props"))]
    pub props: Props,
}

/// The fields of an [`Event`] as the wire names them, so an error can name one as a `&'static`.
pub const EVENT_FIELDS: [&str; 8] = ["id", "type", "name", "anonymousId", "userId", "userHash", "ts", "props"];

#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize), serde(rename_all = "camelCase"))]
pub struct Batch {
    pub write_key: String,
    pub sent_at: i64,
    pub events: Vec<Event>,
}

/// Why a batch was refused. `index` names the offending event, `field` its field, so a client
/// can drop just the bad events and a developer can read what to fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireError {
    pub index: Option<usize>,
    pub field: &'static str,
    pub message: String,
}

impl WireError {
    /// An event refused for its size alone (the collector answers 413 when all errors are).
    pub fn is_too_large(&self) -> bool {
        self.field == EVENT_ITSELF && self.message.starts_with("is larger than")
    }
}

/// [`WireError::field`] when the problem is the event as a whole (not an object, too large).
pub const EVENT_ITSELF: &str = "(event)";
/// [`WireError::field`] when the body as a whole is unreadable.
pub const BODY_ITSELF: &str = "(body)";

impl ::core::fmt::Display for WireError {
    fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
        match self.index {
            Some(i) => write!(f, "events[{i}].{}: {}", self.field, self.message),
            None => write!(f, "{}: {}", self.field, self.message),
        }
    }
}

/// The body of the collector's 400 and 413 answers to a batch, which the SDK reads to drop just
/// the events named: `{"error": "invalid batch", "errors": [{"index", "field", "message"}]}`.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Rejection {
    pub error: String,
    pub errors: Vec<RejectedEvent>,
}

/// One entry of [`Rejection::errors`]: `index` is absent when the whole body was refused.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RejectedEvent {
    pub index: Option<usize>,
    pub field: String,
    pub message: String,
}

/// The JSON keys of a [`Rejection`], for the tracker's hand-written reader of it (delivery).
pub const REJECTION_ERRORS: &str = "errors";
pub const REJECTION_INDEX: &str = "index";

/// `POST /v1/known`: which of these event ids the collector already stores. A page asks before
/// sending events that may have arrived already (beaconed by a page that closed, or in a
/// keepalive fetch whose answer it never read), so a reload does not send them twice.
/// `{"writeKey": "wk_…", "ids": ["0190…", …]}`, as `text/plain` like a batch.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(rename_all = "camelCase"))]
pub struct KnownQuery {
    pub write_key: String,
    pub ids: Vec<String>,
}

/// The answer to a [`KnownQuery`]: the ids among those asked that are stored (`{"known": […]}`).
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Known {
    pub known: Vec<String>,
}

/// At most this many ids per [`KnownQuery`] (about 40 bytes each).
pub const MAX_KNOWN_IDS: usize = 500;
/// The JSON keys of a [`KnownQuery`] and a [`Known`], for the tracker's hand-written writer and
/// reader (delivery): the tracker carries no serde.
pub const KNOWN_QUERY_IDS: &str = "ids";
pub const KNOWN_IDS: &str = "known";

impl Rejection {
    pub fn new(error: &str, errors: &[WireError]) -> Rejection {
        Rejection {
            error: error.into(),
            errors: errors
                .iter()
                .map(|e| RejectedEvent { index: e.index, field: e.field.into(), message: e.to_string() })
                .collect(),
        }
    }
}

impl Event {
    /// The event's JSON form, written by hand: the lean tracker sends every event through this
    /// and carries no serde (serde's derive and its error formatting cost the tracker's wasm far
    /// more than these few lines; see issue 12). `the_hand_written_writer_is_the_serde_form`
    /// checks it against the derive, which is the definition.
    pub fn write_json(&self, out: &mut String) {
        out.push_str("{\"id\":");
        json::write_str(out, &self.id);
        out.push_str(",\"type\":\"");
        out.push_str(self.kind.as_str());
        out.push_str("\",\"name\":");
        json::write_str(out, &self.name);
        out.push_str(",\"anonymousId\":");
        json::write_str(out, &self.anonymous_id);
        if let Some(user) = &self.user_id {
            out.push_str(",\"userId\":");
            json::write_str(out, user);
        }
        if let Some(hash) = &self.user_hash {
            out.push_str(",\"userHash\":");
            json::write_str(out, hash);
        }
        out.push_str(",\"ts\":");
        json::write_num(out, self.ts as f64);
        out.push_str(",\"props\":");
        // Borrowing as a Value::Obj would need a clone; write the entries directly.
        out.push('{');
        for (i, (k, v)) in self.props.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json::write_str(out, k);
            out.push(':');
            v.write_to(out);
        }
        out.push('}');
        out.push('}');
    }

    pub fn to_json(&self) -> String {
        // Room for the usual event up front: growing the string step by step was a visible
        // part of `track()` (profiled in Chromium).
        let mut out = String::with_capacity(192 + self.name.len() + 32 * self.props.len());
        self.write_json(&mut out);
        out
    }

    pub fn prop(&self, key: &str) -> Option<&Value> {
        json::field(&self.props, key)
    }
}

impl Batch {
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(64 + self.events.len() * 200);
        out.push_str("{\"writeKey\":");
        json::write_str(&mut out, &self.write_key);
        out.push_str(",\"sentAt\":");
        json::write_num(&mut out, self.sent_at as f64);
        out.push_str(",\"events\":[");
        for (i, e) in self.events.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            e.write_json(&mut out);
        }
        out.push_str("]}");
        out
    }
}

/// Reading batches: the collector's side (and tests), with serde_json.
#[cfg(all(feature = "serde", not(target_arch = "wasm32")))]
mod read {
    use super::*;
    use serde::Deserialize;
    use serde_json::value::RawValue;

    /// The envelope, its events still unread (their exact text, in document order) so each can
    /// be refused on its own.
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Envelope<'a> {
        /// May come in a header instead.
        #[serde(default)]
        write_key: Option<String>,
        #[serde(deserialize_with = "checks::sent_at")]
        sent_at: i64,
        #[serde(borrow)]
        events: Vec<&'a RawValue>,
    }

    const ENVELOPE_FIELDS: [&str; 3] = ["writeKey", "sentAt", "events"];

    type PathError = serde_path_to_error::Error<serde_json::Error>;

    /// Reads `text` as a `T` with the path of any error.
    fn read<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, PathError> {
        // Almost every text is valid: it is read plainly, and only a failure is read again with
        // its path tracked (tracking every field was a tenth of the collector's parsing time).
        if let Ok(value) = serde_json::from_str(text) {
            return Ok(value);
        }
        let mut reader = serde_json::Deserializer::from_str(text);
        let mut track = serde_path_to_error::Track::new();
        let value = T::deserialize(serde_path_to_error::Deserializer::new(&mut reader, &mut track));
        // Text after the document ("{…} x") is refused like any syntax error.
        match value.and_then(|v| reader.end().map(|()| v)) {
            Ok(v) => Ok(v),
            Err(e) => Err(serde_path_to_error::Error::new(track.path(), e)),
        }
    }

    /// The field an error is about: the first step of its path, or the one serde names as missing.
    fn field_of(error: &PathError, fields: &'static [&'static str], whole: &'static str) -> &'static str {
        let named = match error.path().iter().next() {
            Some(serde_path_to_error::Segment::Map { key }) => Some(key.clone()),
            // serde's own wording for a missing field: "missing field `name`".
            _ => error.inner().to_string().split('`').nth(1).map(String::from),
        };
        named.and_then(|n| fields.iter().copied().find(|f| *f == n)).unwrap_or(whole)
    }

    /// serde_json's message, in our words where they are clearer: no position (the event index
    /// and field say where), "is required" for a missing field, "nested too deeply" for its
    /// stack guard.
    fn message_of(error: &PathError) -> String {
        let text = error.inner().to_string();
        let text = match text.rfind(" at line ") {
            Some(at) => &text[..at],
            None => &text,
        };
        if text.starts_with("missing field") {
            "is required".into()
        } else if text.starts_with("recursion limit exceeded") {
            "nested too deeply".into()
        } else {
            text.into()
        }
    }

    /// "expected an object, found …" when `text` is JSON but not an object.
    fn not_an_object(text: &str) -> Option<String> {
        match json::parse(text) {
            Ok(v) if v.as_object().is_none() => Some(format!("expected an object, found {}", v.kind())),
            _ => None,
        }
    }

    impl Event {
        /// Reads one event from its JSON text; `index` is only used to label errors.
        pub fn from_json_text(text: &str, index: usize) -> Result<Event, WireError> {
            let at = |field, message| WireError { index: Some(index), field, message };
            if !text.trim_start().starts_with('{') {
                return Err(at(EVENT_ITSELF, not_an_object(text).unwrap_or_else(|| "expected an object".into())));
            }
            read(text).map_err(|e| at(field_of(&e, &EVENT_FIELDS, EVENT_ITSELF), message_of(&e)))
        }
    }

    impl Batch {
        /// Parses and validates a whole batch. The first bad event is reported; see
        /// [`Batch::parse_lenient`] for the per-event form the collector uses.
        pub fn parse(text: &str) -> Result<Batch, WireError> {
            let (batch, mut errors) = Batch::parse_lenient(text)?;
            match errors.is_empty() {
                true => Ok(batch),
                false => Err(errors.swap_remove(0)),
            }
        }

        /// Parses a batch, returning the good events and one error per bad event. An error in the
        /// envelope (not JSON, no events array, too many events) fails the whole batch.
        pub fn parse_lenient(text: &str) -> Result<(Batch, Vec<WireError>), WireError> {
            let top = |field: &'static str, message: String| WireError { index: None, field, message };
            // Text that starts as an object is one or is not JSON: only other text is parsed
            // whole to say what it is instead (parsing every body twice was a quarter of the
            // collector's parsing time).
            if !text.trim_start().starts_with('{') {
                if let Some(message) = not_an_object(text) {
                    return Err(top(BODY_ITSELF, message));
                }
            }
            let envelope: Envelope = read(text).map_err(|e| {
                let syntax = e.inner().is_syntax() || e.inner().is_eof();
                match syntax {
                    true => top(BODY_ITSELF, json::ParseError::from(e.into_inner()).describe()),
                    false => top(field_of(&e, &ENVELOPE_FIELDS, BODY_ITSELF), message_of(&e)),
                }
            })?;
            if envelope.events.len() > MAX_EVENTS_PER_BATCH {
                return Err(top("events", format!("has {} events; at most {MAX_EVENTS_PER_BATCH} per batch", envelope.events.len())));
            }
            let mut events = Vec::with_capacity(envelope.events.len());
            let mut errors = Vec::new();
            // Each event's size as sent on, written into one reused string rather than a new
            // one per event (the collector reads 50-event batches at thousands a second).
            let mut written = String::new();
            let mut too_large = |e: &Event| {
                written.clear();
                e.write_json(&mut written);
                written.len() > MAX_EVENT_BYTES
            };
            for (i, raw) in envelope.events.into_iter().enumerate() {
                match Event::from_json_text(raw.get(), i) {
                    Ok(e) if too_large(&e) => errors.push(WireError {
                        index: Some(i),
                        field: EVENT_ITSELF,
                        message: format!("is larger than {MAX_EVENT_BYTES} bytes"),
                    }),
                    Ok(e) => events.push(e),
                    Err(e) => errors.push(e),
                }
            }
            Ok((Batch { write_key: envelope.write_key.unwrap_or_default(), sent_at: envelope.sent_at, events }, errors))
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn props_keep_their_order() {
            let text = r#"{"sentAt":1,"events":[{"id":"a","type":"track","name":"n","anonymousId":"x","ts":5,"props":{"z":1,"a":{"y":2,"b":3}}}]}"#;
            let batch = Batch::parse(text).expect("valid");
            assert_eq!(batch.events[0].to_json(), r#"{"id":"a","type":"track","name":"n","anonymousId":"x","ts":5,"props":{"z":1,"a":{"y":2,"b":3}}}"#);
        }

        #[test]
        fn deep_props_are_refused_by_name() {
            let deep = "[".repeat(5000) + &"]".repeat(5000);
            let text = format!(r#"{{"sentAt":1,"events":[{{"id":"a","type":"track","name":"n","anonymousId":"x","ts":5,"props":{{"x":{deep}}}}}]}}"#);
            match Batch::parse_lenient(&text) {
                Ok((_, errors)) => assert!(errors[0].message.contains("nested too deeply"), "{}", errors[0]),
                Err(e) => assert!(e.message.contains("nested too deeply"), "{e}"),
            }
        }
    }
}

/// The rules of each field, as serde `deserialize_with` functions: their messages are what the
/// collector's 400 says about the field.
#[cfg(feature = "serde")]
mod checks {
    use super::*;

    const MAX_ID_LEN: usize = 64;
    const MAX_NAME_LEN: usize = 200;
    const MAX_ANONYMOUS_ID_LEN: usize = 128;
    const MAX_USER_ID_LEN: usize = 256;
    const MAX_USER_HASH_LEN: usize = 128;
    use serde::de::{Deserialize, Deserializer, Error};
    use serde::ser::{SerializeMap, Serializer};

    fn text<'de, D: Deserializer<'de>>(d: D, max: usize) -> Result<String, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() {
            return Err(D::Error::custom("must not be empty"));
        }
        if s.len() > max {
            return Err(D::Error::custom(format!("is longer than {max} bytes")));
        }
        Ok(s)
    }

    fn optional_text<'de, D: Deserializer<'de>>(d: D, max: usize) -> Result<Option<String>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => text(serde::de::value::StringDeserializer::<D::Error>::new(s), max).map(Some),
        }
    }

    pub fn id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        text(d, MAX_ID_LEN)
    }
    pub fn name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        text(d, MAX_NAME_LEN)
    }
    pub fn anonymous_id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        text(d, MAX_ANONYMOUS_ID_LEN)
    }
    pub fn user_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        optional_text(d, MAX_USER_ID_LEN)
    }
    pub fn user_hash<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        optional_text(d, MAX_USER_HASH_LEN)
    }

    /// Unix milliseconds: a whole number, not negative.
    pub fn ts<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        match f64::deserialize(d) {
            Ok(n) if n.is_finite() && n >= 0.0 && n.fract() == 0.0 && n < 9.2e18 => Ok(n as i64),
            _ => Err(D::Error::custom("expected Unix milliseconds as a whole number")),
        }
    }

    /// The batch's send time: any non-negative number (a fraction is dropped).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn sent_at<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        match f64::deserialize(d) {
            Ok(n) if (0.0..9.2e18).contains(&n) => Ok(n as i64),
            _ => Err(D::Error::custom("expected Unix milliseconds")),
        }
    }

    pub mod props {
        use super::*;

        pub fn serialize<S: Serializer>(props: &Props, s: S) -> Result<S::Ok, S::Error> {
            let mut map = s.serialize_map(Some(props.len()))?;
            for (k, v) in props {
                map.serialize_entry(k, v)?;
            }
            map.end()
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Props, D::Error> {
            match Value::deserialize(d)? {
                Value::Null => Ok(Vec::new()),
                Value::Obj(entries) => Ok(entries),
                other => Err(D::Error::custom(format!("expected an object, found {}", other.kind()))),
            }
        }
    }
}

// Reading batches is the collector's side: these run natively.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    fn sample() -> Batch {
        Batch {
            write_key: "wk_demo".into(),
            sent_at: 1_700_000_000_500,
            events: vec![Event {
                id: "0190d4c2-0000-7000-8000-000000000001".into(),
                kind: EventType::Track,
                name: "project_created".into(),
                anonymous_id: "anon-1".into(),
                user_id: Some("u1".into()),
                user_hash: Some("9f86d081884c7d65".into()),
                ts: 1_700_000_000_000,
                props: vec![("plan".into(), Value::Str("pro <b>".into()))],
            }],
        }
    }

    #[test]
    fn batch_round_trips() {
        let b = sample();
        assert_eq!(Batch::parse(&b.to_json()), Ok(b));
    }

    #[test]
    fn errors_name_the_event_and_field() {
        let text = r#"{"sentAt":1,"events":[
            {"id":"a","type":"track","name":"ok","anonymousId":"x","ts":5},
            {"id":"b","type":"track","name":7,"anonymousId":"x","ts":5},
            {"id":"c","type":"bogus","name":"n","anonymousId":"x","ts":5}]}"#;
        let (batch, errors) = Batch::parse_lenient(text).expect("envelope ok");
        assert_eq!(batch.events.len(), 1);
        assert_eq!(errors[0].to_string(), "events[1].name: invalid type: integer `7`, expected a string");
        assert_eq!(errors[1].index, Some(2));
        assert_eq!(errors[1].field, "type");
    }

    #[test]
    fn every_field_rule_names_its_field() {
        let ok = r#""id":"a","type":"track","name":"n","anonymousId":"x","ts":5"#;
        let cases = [
            (r#"{"type":"track","name":"n","anonymousId":"x","ts":5}"#, "id", "is required"),
            (r#"{"id":"","type":"track","name":"n","anonymousId":"x","ts":5}"#, "id", "must not be empty"),
            (&*format!(r#"{{"id":"a","type":"track","name":"{}","anonymousId":"x","ts":5}}"#, "n".repeat(201)), "name", "is longer than 200 bytes"),
            (r#"{"id":"a","type":"bogus","name":"n","anonymousId":"x","ts":5}"#, "type", "unknown variant `bogus`"),
            (r#"{"id":"a","type":"track","name":"n","anonymousId":"x","ts":1.5}"#, "ts", "whole number"),
            (r#"{"id":"a","type":"track","name":"n","anonymousId":"x","ts":-1}"#, "ts", "whole number"),
            (r#"{"id":"a","type":"track","name":"n","anonymousId":"x","ts":"1"}"#, "ts", "whole number"),
            (r#"{"id":"a","type":"track","name":"n","anonymousId":"x","ts":5,"userId":""}"#, "userId", "must not be empty"),
            (r#"{"id":"a","type":"track","name":"n","anonymousId":"x","ts":5,"props":[]}"#, "props", "expected an object, found an array"),
            ("7", EVENT_ITSELF, "expected an object, found a number"),
        ];
        for (event, field, message) in cases {
            let text = format!(r#"{{"sentAt":1,"events":[{{{ok}}},{event}]}}"#);
            let (batch, errors) = Batch::parse_lenient(&text).expect("envelope ok");
            assert_eq!(batch.events.len(), 1, "{event}");
            assert_eq!((errors[0].index, errors[0].field), (Some(1), field), "{event}: {}", errors[0]);
            assert!(errors[0].message.contains(message), "{event}: {}", errors[0]);
        }
        let text = format!(r#"{{"sentAt":1,"events":[{{{ok},"userId":null,"props":null,"extra":1}}]}}"#);
        let batch = Batch::parse(&text).expect("null optionals and unknown fields are fine");
        assert_eq!((batch.events[0].user_id.clone(), batch.events[0].props.len()), (None, 0));
    }

    /// The tracker writes events by hand; the serde derive is the definition it must match.
    #[test]
    fn the_hand_written_writer_is_the_serde_form() {
        let mut b = sample();
        b.events.push(Event { user_id: None, user_hash: None, props: Vec::new(), ..b.events[0].clone() });
        b.events[0].props.push(("n".into(), Value::Num(2.5)));
        b.events[0].props.push(("nested".into(), Value::Arr(vec![Value::Null, Value::Bool(true), Value::Num(-3.0)])));
        assert_eq!(b.to_json(), serde_json::to_string(&b).expect("serialises"));
    }

    #[test]
    fn the_rejection_body_names_each_event() {
        let errors = [WireError { index: Some(3), field: "ts", message: "too old".into() }];
        let body = serde_json::to_value(Rejection::new("invalid batch", &errors)).expect("serialises");
        assert_eq!(body, serde_json::json!({"error": "invalid batch", "errors": [{"index": 3, "field": "ts", "message": "events[3].ts: too old"}]}));
        assert_eq!(body[REJECTION_ERRORS][0][REJECTION_INDEX], 3);
    }

    #[test]
    fn envelope_errors_fail_the_batch() {
        assert_eq!(Batch::parse("[]").expect_err("not object").field, "(body)");
        assert_eq!(Batch::parse(r#"{"events":[]}"#).expect_err("no sentAt").field, "sentAt");
        assert_eq!(Batch::parse(r#"{"sentAt":1}"#).expect_err("no events").field, "events");
        assert_eq!(Batch::parse(r#"{"sentAt":-1,"events":[]}"#).expect_err("bad sentAt").field, "sentAt");
        assert_eq!(Batch::parse(r#"{"sentAt":1,"events":{}}"#).expect_err("events not an array").field, "events");
        assert_eq!(Batch::parse(r#"{"sentAt":1,"events":[]"#).expect_err("not JSON").field, BODY_ITSELF);
    }

    #[test]
    fn oversized_events_are_refused_individually() {
        let mut b = sample();
        let mut big = b.events[0].clone();
        big.props = vec![("blob".into(), Value::Str("x".repeat(MAX_EVENT_BYTES)))];
        b.events.push(big);
        let (ok, errors) = Batch::parse_lenient(&b.to_json()).expect("envelope ok");
        assert_eq!(ok.events.len(), 1);
        assert_eq!(errors[0].index, Some(1));
    }
}
