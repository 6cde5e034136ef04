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

use super::json::{self, Value};

/// Segment's limits, which customers already know: 32 KB per event, 500 KB per batch.
pub const MAX_EVENT_BYTES: usize = 32 * 1024;
pub const MAX_BATCH_BYTES: usize = 500 * 1024;
pub const MAX_EVENTS_PER_BATCH: usize = 1000;
const MAX_ID_LEN: usize = 64;
const MAX_NAME_LEN: usize = 200;

/// What an event records. The names are the wire strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
}

impl EventType {
    pub const ALL: [EventType; 5] =
        [EventType::Track, EventType::Identify, EventType::Milestone, EventType::Tip, EventType::Metric];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Track => "track",
            EventType::Identify => "identify",
            EventType::Milestone => "milestone",
            EventType::Tip => "tip",
            EventType::Metric => "metric",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub id: String,
    pub kind: EventType,
    pub name: String,
    pub anonymous_id: String,
    pub user_id: Option<String>,
    /// Identity verification: HMAC-SHA256 of `user_id` with the project's identity secret, hex,
    /// computed by the customer's backend and passed to `identify` (docs/IDENTITY.md).
    pub user_hash: Option<String>,
    /// Client clock, Unix milliseconds.
    pub ts: i64,
    /// Always a JSON object.
    pub props: Vec<(String, Value)>,
}

#[derive(Clone, Debug, PartialEq)]
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
        self.field == "(event)" && self.message.starts_with("is larger than")
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.index {
            Some(i) => write!(f, "events[{i}].{}: {}", self.field, self.message),
            None => write!(f, "{}: {}", self.field, self.message),
        }
    }
}

impl Event {
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
        let mut out = String::new();
        self.write_json(&mut out);
        out
    }

    pub fn prop(&self, key: &str) -> Option<&Value> {
        json::field(&self.props, key)
    }

    /// Reads one event; `index` is only used to label errors.
    pub fn from_value(v: &Value, index: usize) -> Result<Event, WireError> {
        let at = |field: &'static str, message: String| WireError { index: Some(index), field, message };
        if v.as_object().is_none() {
            return Err(at("(event)", format!("expected an object, found {}", v.kind())));
        }
        let text = |field: &'static str, max: usize, required: bool| -> Result<Option<String>, WireError> {
            match v.get(field) {
                None | Some(Value::Null) if !required => Ok(None),
                None | Some(Value::Null) => Err(at(field, "is required".into())),
                Some(Value::Str(s)) if s.is_empty() => Err(at(field, "must not be empty".into())),
                Some(Value::Str(s)) if s.len() > max => Err(at(field, format!("is longer than {max} bytes"))),
                Some(Value::Str(s)) => Ok(Some(s.clone())),
                Some(other) => Err(at(field, format!("expected a string, found {}", other.kind()))),
            }
        };
        let id = text("id", MAX_ID_LEN, true)?.unwrap_or_default();
        let kind_text = text("type", 16, true)?.unwrap_or_default();
        let kind = EventType::parse(&kind_text).ok_or_else(|| {
            at("type", format!("unknown type {kind_text:?}; expected track, identify, milestone, tip or metric"))
        })?;
        let name = text("name", MAX_NAME_LEN, true)?.unwrap_or_default();
        let anonymous_id = text("anonymousId", MAX_ID_LEN * 2, true)?.unwrap_or_default();
        let user_id = text("userId", 256, false)?;
        let user_hash = text("userHash", 128, false)?;
        let ts = match v.get("ts") {
            Some(Value::Num(n)) if n.is_finite() && *n >= 0.0 && n.fract() == 0.0 => *n as i64,
            Some(Value::Num(_)) => return Err(at("ts", "expected Unix milliseconds as a whole number".into())),
            None => return Err(at("ts", "is required".into())),
            Some(other) => return Err(at("ts", format!("expected a number, found {}", other.kind()))),
        };
        let props = match v.get("props") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Obj(entries)) => entries.clone(),
            Some(other) => return Err(at("props", format!("expected an object, found {}", other.kind()))),
        };
        Ok(Event { id, kind, name, anonymous_id, user_id, user_hash, ts, props })
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
        let doc = json::parse(text).map_err(|e| top("(body)", e.to_string()))?;
        if doc.as_object().is_none() {
            return Err(top("(body)", format!("expected an object, found {}", doc.kind())));
        }
        let write_key = match doc.get("writeKey") {
            Some(Value::Str(s)) => s.clone(),
            None => String::new(), // may come in a header instead
            Some(other) => return Err(top("writeKey", format!("expected a string, found {}", other.kind()))),
        };
        let sent_at = match doc.get("sentAt") {
            Some(Value::Num(n)) if n.is_finite() && *n >= 0.0 => *n as i64,
            None => return Err(top("sentAt", "is required".into())),
            Some(other) => return Err(top("sentAt", format!("expected Unix milliseconds, found {}", other.kind()))),
        };
        let items = match doc.get("events") {
            Some(Value::Arr(items)) => items,
            None => return Err(top("events", "is required".into())),
            Some(other) => return Err(top("events", format!("expected an array, found {}", other.kind()))),
        };
        if items.len() > MAX_EVENTS_PER_BATCH {
            return Err(top("events", format!("has {} events; at most {MAX_EVENTS_PER_BATCH} per batch", items.len())));
        }
        let mut events = Vec::with_capacity(items.len());
        let mut errors = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match Event::from_value(item, i) {
                Ok(e) if e.to_json().len() > MAX_EVENT_BYTES => errors.push(WireError {
                    index: Some(i),
                    field: "(event)",
                    message: format!("is larger than {MAX_EVENT_BYTES} bytes"),
                }),
                Ok(e) => events.push(e),
                Err(e) => errors.push(e),
            }
        }
        Ok((Batch { write_key, sent_at, events }, errors))
    }
}

#[cfg(test)]
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
        assert_eq!(errors[0].to_string(), "events[1].name: expected a string, found a number");
        assert_eq!(errors[1].index, Some(2));
        assert_eq!(errors[1].field, "type");
    }

    #[test]
    fn envelope_errors_fail_the_batch() {
        assert_eq!(Batch::parse("[]").expect_err("not object").field, "(body)");
        assert_eq!(Batch::parse(r#"{"events":[]}"#).expect_err("no sentAt").field, "sentAt");
        assert_eq!(Batch::parse(r#"{"sentAt":1}"#).expect_err("no events").field, "events");
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
