//! Property-based fuzzing of every parser that reads untrusted text: the JSON reader, the batch
//! parser the collector runs on every request, the plan readers (validating and trusting), and the outbox's reading of
//! stored queues and collector answers. Inputs are random documents, random bytes, and valid
//! documents mutated (truncated, spliced, bytes flipped). The properties: no panic, errors
//! instead of stack overflows on deep nesting, and output no larger than the input warrants.
//!
//! `PROPTEST_CASES=10000 cargo test --test fuzz` for a longer run.

use onramp::core::json::{self, Value, MAX_DEPTH};
use onramp::core::plan::Plan;
use onramp::core::wire::{Batch, MAX_EVENTS_PER_BATCH};
use proptest::prelude::*;

/// Random JSON values, nested a few levels.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-1e15f64..1e15).prop_map(Value::Num),
        any::<i32>().prop_map(|n| Value::Num(n as f64)),
        ".{0,12}".prop_map(Value::Str),
        prop_oneof![Just("<script>".to_string()), Just("'; DROP TABLE events;--".to_string()), Just("\u{0}\u{1f}\"\\".to_string())]
            .prop_map(Value::Str),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Arr),
            // Unique keys: with duplicates the last wins (as in JSON.parse), so no round trip.
            prop::collection::btree_map("[a-zA-Z_]{1,8}", inner, 0..6).prop_map(|m| Value::Obj(m.into_iter().collect())),
        ]
    })
}

/// A plausible batch: mostly valid events, some with wrong types or missing fields.
fn batch_text() -> impl Strategy<Value = String> {
    let event = (
        prop_oneof![Just(Value::Str("e1".into())), Just(Value::Num(1.0)), Just(Value::Null)],
        prop_oneof![Just("track"), Just("identify"), Just("metric"), Just("bogus")],
        value(),
        prop_oneof![(0i64..2_000_000_000_000).prop_map(|n| Value::Num(n as f64)), value()],
    )
        .prop_map(|(id, kind, props, ts)| {
            Value::Obj(vec![
                ("id".into(), id),
                ("type".into(), Value::Str(kind.into())),
                ("name".into(), Value::Str("n".into())),
                ("anonymousId".into(), Value::Str("a".into())),
                ("ts".into(), ts),
                ("props".into(), props),
            ])
        });
    (prop::collection::vec(event, 0..8), value()).prop_map(|(events, extra)| {
        Value::Obj(vec![
            ("writeKey".into(), Value::Str("wk".into())),
            ("sentAt".into(), Value::Num(1.0)),
            ("events".into(), Value::Arr(events)),
            ("extra".into(), extra),
        ])
        .to_json()
    })
}

/// Mutations of a valid text: cut it, splice random text in, or replace a byte with another.
fn mutate(text: String) -> impl Strategy<Value = String> {
    let len = text.len();
    (0..=len, 0..=len, ".{0,8}", any::<u8>(), 0..3u8).prop_map(move |(a, b, insert, byte, how)| {
        let (a, b) = (a.min(b), a.max(b));
        let bytes = text.as_bytes();
        let mut out: Vec<u8> = match how {
            0 => bytes[..a].to_vec(),
            1 => [&bytes[..a], insert.as_bytes(), &bytes[b..]].concat(),
            _ => {
                let mut v = bytes.to_vec();
                if a < v.len() {
                    v[a] = byte;
                }
                v
            }
        };
        // The parsers take &str: keep the text valid UTF-8 as the collector does.
        while std::str::from_utf8(&out).is_err() {
            out.pop();
        }
        String::from_utf8(out).unwrap_or_default()
    })
}

fn example_plans() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pkg-config/plans");
    let mut plans: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).filter_map(|e| std::fs::read_to_string(e.path()).ok()).collect())
        .unwrap_or_default();
    plans.sort();
    plans
}

proptest! {
    #[test]
    fn json_round_trips_generated_values(v in value()) {
        let text = v.to_json();
        let back = json::parse(&text).expect("our own output parses");
        prop_assert_eq!(back.to_json(), text);
    }

    #[test]
    fn json_never_panics_on_arbitrary_text(text in ".{0,200}") {
        let _ = json::parse(&text);
    }

    #[test]
    fn json_never_panics_on_mutated_documents(text in value().prop_flat_map(|v| mutate(v.to_json()))) {
        if let Ok(v) = json::parse(&text) {
            // Bounded output: re-serialising never grows past a small factor of the input
            // (escapes of control characters are at most 6 bytes each).
            prop_assert!(v.to_json().len() <= text.len() * 6 + 4);
        }
    }

    #[test]
    fn batch_parser_never_panics_and_labels_errors_in_range(text in batch_text().prop_flat_map(mutate)) {
        if let Ok((batch, errors)) = Batch::parse_lenient(&text) {
            prop_assert!(batch.events.len() + errors.len() <= MAX_EVENTS_PER_BATCH);
            for e in &errors {
                prop_assert!(e.index.is_some_and(|i| i < batch.events.len() + errors.len()), "{}", e);
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }

    #[test]
    fn batch_parser_round_trips_what_it_accepts(text in batch_text()) {
        if let Ok((batch, errors)) = Batch::parse_lenient(&text) {
            if errors.is_empty() {
                prop_assert_eq!(Batch::parse(&batch.to_json()), Ok(batch));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn plan_parser_never_panics_on_mutated_plans(
        text in prop::sample::select(example_plans()).prop_flat_map(mutate)
    ) {
        let validated = Plan::parse(&text);
        // The SDK's trusting reader too, and it reads what the validator accepts the same way.
        if let Ok(doc) = json::parse(&text) {
            let trusted = Plan::trusting(&doc);
            if let Ok(plan) = validated {
                prop_assert_eq!(trusted, Ok(plan));
            }
            let _ = Plan::capture_only(&doc);
        }
    }

    #[test]
    fn plan_parser_never_panics_on_generated_documents(v in value()) {
        let _ = Plan::parse(&v.to_json());
        let _ = Plan::trusting(&v);
        let wrapped = Value::Obj(vec![("version".into(), Value::Num(1.0)), ("milestones".into(), v.clone())]);
        let _ = Plan::parse(&wrapped.to_json());
        let _ = Plan::trusting(&wrapped);
        // Every section of a plan given a random value, as a plan that slipped past validation.
        for key in ["tips", "surveys", "prompts", "capture", "caps", "holdouts"] {
            let doc = Value::Obj(vec![
                ("version".into(), Value::Str("1".into())),
                ("milestones".into(), json::parse(r#"[{"id":"a","title":"A","value":true,"condition":{"event":"e"}}]"#).expect("json")),
                (key.into(), v.clone()),
            ]);
            let _ = Plan::trusting(&doc);
            let _ = Plan::capture_only(&doc);
        }
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    for open in ["[", "{\"a\":"] {
        let text = open.repeat(200_000);
        let err = json::parse(&text).expect_err("too deep");
        assert!(err.message.starts_with("nested too deeply"), "{err}");
    }
    let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
    assert!(json::parse(&ok).is_ok());
    let batch = format!(r#"{{"sentAt":1,"events":[{{"props":{}}}]}}"#, "[".repeat(100_000));
    assert!(Batch::parse_lenient(&batch).is_err());
    assert!(Plan::parse(&"[".repeat(100_000)).is_err());
}

#[test]
fn too_many_events_fail_the_envelope_before_any_event_is_read() {
    let events = vec!["{}"; MAX_EVENTS_PER_BATCH + 1].join(",");
    let err = Batch::parse_lenient(&format!(r#"{{"sentAt":1,"events":[{events}]}}"#)).expect_err("too many");
    assert_eq!(err.field, "events");
}
