//! The plan's readers agree: for every valid plan, the SDK's trusting reader (`Plan::trusting`,
//! no checks, no messages) builds exactly the `Plan` the collector's validator
//! (`Plan::from_value`) builds, and the lean tracker's `Plan::capture_only` the same version and
//! capture rules. Checked on every plan document in the repository
//! (example plans, test fixtures, the JSON examples in the docs) and on generated valid plans,
//! with and without fields from a newer release. Also: what the trusting reader refuses it
//! names by pointer, what it accepts unchecked never breaks the engine, and it never panics.
//!
//! The generator below writes plans from the documented format (docs/PLANS.md), not from the
//! reader's code; the validator accepting each one is part of the property.

use std::path::{Path, PathBuf};

use onramp::core::engine::Engine;
use onramp::core::json::{self, Value};
use onramp::core::plan::Plan;
use onramp::core::storage::MemoryStorage;
use proptest::prelude::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name();
        if path.is_dir() {
            if !["node_modules", "target", ".git", "artifacts"].iter().any(|skip| name == *skip) {
                walk(&path, out);
            }
        } else if path.extension().is_some_and(|x| x == "json" || x == "md" || x == "rs") {
            out.push(path);
        }
    }
}

/// Every JSON document in the repository's plan places, every ```json block in its docs, and
/// every raw string in its Rust sources and tests that is a JSON document (the unit tests'
/// plans).
fn documents() -> Vec<(String, Value)> {
    let mut files = Vec::new();
    for dir in ["pkg-config", "tests", "collector/tests", "collector/src", "src", "www", "examples", "docs"] {
        walk(&Path::new(ROOT).join(dir), &mut files);
    }
    files.push(Path::new(ROOT).join("README.md"));
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let name = path.strip_prefix(ROOT).unwrap_or(&path).display().to_string();
        if name.ends_with(".rs") {
            for hashes in ["#", "##", "###"] {
                let (open, close) = (["r", hashes, "\""].concat(), ["\"", hashes].concat());
                for (i, literal) in text.split(open.as_str()).skip(1).enumerate() {
                    let literal = literal.split(close.as_str()).next().unwrap_or("");
                    if let Ok(doc) = json::parse(literal) {
                        out.push((format!("{name} r{hashes} string {i}"), doc));
                    }
                }
            }
        } else if name.ends_with(".md") {
            for (i, block) in text.split("```json").skip(1).enumerate() {
                let block = block.split("```").next().unwrap_or("");
                if let Ok(doc) = json::parse(block) {
                    out.push((format!("{name} block {i}"), doc));
                }
            }
        } else if let Ok(doc) = json::parse(&text) {
            out.push((name, doc));
        }
    }
    out
}

#[test]
fn every_plan_in_the_repository_reads_the_same_both_ways() {
    let mut valid = Vec::new();
    for (name, doc) in documents() {
        // Not a plan, or a broken one: the trusting reader may refuse or read it, never panic.
        let trusted = Plan::trusting(&doc);
        if let Ok(plan) = Plan::from_value(&doc) {
            assert_eq!(trusted.as_ref(), Ok(&plan), "{name}");
            assert_eq!(Plan::capture_only(&doc), Ok((plan.version.clone(), plan.capture.clone())), "{name}: the tracker's reader");
            valid.push(name);
        }
    }
    for must in ["pkg-config/plans/trackly.json", "pkg-config/plans/shopfront.json", "pkg-config/plans/relay-crm.json"] {
        assert!(valid.iter().any(|v| v == must), "{must} read: {valid:?}");
    }
    assert!(valid.len() >= 25, "plans compared: {valid:?}");
    eprintln!("{} plans compared: {valid:?}", valid.len());
}

/// The broken fixtures (`tests/plans/broken`, each refused by the validator): the trusting
/// reader refuses those it cannot build or that would be unsafe in a page, naming the field,
/// and reads the rest.
#[test]
fn broken_fixtures_are_refused_by_pointer_or_read_unchecked() {
    let refused = [
        ("bad-duration", "/milestones/0/due"),
        ("bad-operator", "/milestones/0/condition/where/seats/atLeast"),
        ("capture-unknown-on", "/capture/0/on"),
        ("capture-view-without-pattern", "/capture/0/path"),
        ("cta-javascript-url", "/tips/0/cta/url"),
        ("cta-backslash-path", "/tips/0/cta/url"),
        ("cta-scheme-relative", "/tips/0/cta/url"),
        ("missing-version", "/version"),
        ("holdout-without-salt", "/holdouts/salt"),
        ("selector-injection", "/capture/0/selector"),
        ("selector-unbalanced", "/capture/0/selector"),
        ("survey-unknown-kind", "/surveys/0/kind"),
        ("tip-bad-placement", "/tips/0/placement"),
        ("tip-control-not-a-number", "/tips/0/controlPercent"),
        ("top-array", ""),
        ("tour-step-advance-both", "/tips/0/steps/0/advanceOn"),
    ];
    let dir = Path::new(ROOT).join("tests/plans/broken");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir).expect("broken plans").flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "json")).collect();
    names.sort();
    let mut seen = 0;
    for path in names {
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
        let Ok(doc) = json::parse(&std::fs::read_to_string(&path).expect("read")) else { continue };
        let refused_by_collector = Plan::from_value(&doc).is_err() || onramp::core::health::HealthModel::from_plan(&doc).is_err();
        assert!(refused_by_collector, "{name}: the collector refuses it");
        match (refused.iter().find(|(n, _)| *n == name), Plan::trusting(&doc)) {
            (Some((_, pointer)), Err(e)) => {
                assert_eq!(e.pointer, *pointer, "{name}");
                assert_eq!(e.message(), format!("plan {}: cannot be read; expected a plan that `onramp-collector plan check` accepts", if pointer.is_empty() { "(document)" } else { pointer }));
                seen += 1;
            }
            (Some(_), Ok(_)) => panic!("{name}: read, should be refused"),
            (None, Err(e)) => panic!("{name}: refused at {e}, should be read unchecked"),
            (None, Ok(plan)) => run_engine(&plan),
        }
    }
    assert_eq!(seen, refused.len(), "every listed fixture exists");
}

/// Runs a plan through everything the full SDK does with it, without a browser: identify,
/// events named in the plan, customer milestones, tips, surveys and prompts picked.
fn run_engine(plan: &Plan) {
    use onramp::core::tips::Page;
    const T0: i64 = 1_700_000_000_000;
    let mut store = MemoryStorage::default();
    let mut e = Engine::new(plan.clone(), "tab".into(), "0190d4c2-0000-7000-8000-000000000001", &store);
    e.identify(&mut store, "ann", Some(T0), T0);
    let mut names: Vec<String> = plan.milestones.iter().filter_map(|m| m.condition.as_ref().map(|c| c.event.clone())).collect();
    names.extend(plan.capture.iter().map(|r| r.event.clone()));
    names.push("anything".into());
    for (i, name) in names.iter().enumerate() {
        for k in 0..3 {
            e.observe(&mut store, name, &[("plan".into(), Value::Str("pro".into())), ("seats".into(), Value::Num(5.0))], T0 + (i * 3 + k) as i64 * 1000);
        }
    }
    for m in &plan.milestones {
        e.mark_done(&mut store, &m.id, T0 + 100_000);
    }
    e.mark_done(&mut store, "not-in-the-plan", T0 + 100_001);
    for now in [T0 + 200_000, T0 + 3 * 86_400_000] {
        e.touch(&mut store, now);
        let _ = e.needs_guide(now);
        e.update_with_plan(&mut store, |plan, state, _| {
            let seen = [("anything".to_string(), now)];
            for (path, hash) in [("/", ""), ("/projects/1", "#/team")] {
                let page = Page { now, path, hash, route_since: now - 10_000, seen: &seen, skip: &[], forced: None, review: None, user: Some("ann") };
                let _ = onramp::core::tips::pick(plan, state, &page, &[]);
                for i in 0..plan.tips.len() {
                    let _ = onramp::core::tips::explain(plan, state, i, &page);
                }
                let survey_page = onramp::core::surveys::Page { now, path, hash, route_since: now - 10_000, user: "ann", identified: true };
                let _ = onramp::core::surveys::pick(plan, state, &survey_page);
                let _ = onramp::core::prompts::pick(plan, state, Some("ann"), now, None, false);
            }
            let _ = onramp::core::tips::steps_done(plan, state, Some("anything"));
        });
    }
    let _ = e.save(&mut store);
}

/// What a plan that slipped past validation may hold, read and run without a panic.
#[test]
fn plans_the_validator_would_refuse_run_safely_when_read_trustingly() {
    let docs = [
        // An `after` cycle, a reference to an unknown milestone, no value milestone.
        r##"{"version":"1","milestones":[
            {"id":"a","title":"A","condition":{"event":"e","after":"b"}},
            {"id":"b","title":"B","condition":{"event":"f","after":"a"}},
            {"id":"c","title":"C","condition":{"event":"g","after":"zz","count":0}}],
          "tips":[{"id":"t","kind":"tooltip","body":"B","milestone":"zz"},
                  {"id":"t","kind":"tour","steps":[]},
                  {"id":"u","kind":"tour","milestone":"ghost","steps":[{"target":"#x","body":"S","advanceOn":{"milestone":"ghost"}}]},
                  {"id":"w","kind":"modal","body":"W","window":{"from":"2d","until":"1d"},"priority":1e9,"controlPercent":100,
                   "cta":{"label":"L","action":"launch_rockets"}}],
          "surveys":[{"id":"s","kind":"nps","question":"Q","when":{"milestone":"zz"},"sample":500,"scale":"1-5"},
                     {"id":"s","kind":"question","question":"Q","followUp":"F","when":{"afterSignup":"1d","milestone":"a"}}],
          "prompts":[{"id":"p","kind":"review","milestone":"nope","npsGroups":["promoter","fan"],"body":"B","cta":{"label":"L","copy":"x"},
                      "goal":{"milestone":"nope"}}],
          "holdouts":{"salt":"s","globalPercent":99},
          "caps":{"maxTipsPerSession":-3,"maxPerDay":1e12}}"##,
        // Two value milestones, duplicate ids and aliases, reserved ids, empty strings.
        r#"{"version":"","milestones":[
            {"id":"time_to_value","title":"","value":true,"kind":"customer"},
            {"id":"time_to_value","title":"X","value":true,"aliases":["time_to_value"],"condition":{"event":"","where":{"x":{"in":[]}}}},
            {"id":"f","title":"F"}]}"#,
    ];
    for text in docs {
        let doc = json::parse(text).expect("json");
        assert!(Plan::from_value(&doc).is_err(), "the validator refuses {text}");
        let plan = Plan::trusting(&doc).unwrap_or_else(|e| panic!("{e}: {text}"));
        run_engine(&plan);
    }
}

#[test]
fn a_newer_plan_loads_and_a_malformed_one_names_its_field() {
    let newer = r#"{"version":"9","schemaLevel":3,"banners":[{"id":"b"}],
        "milestones":[{"id":"a","title":"A","value":true,"condition":{"event":"e","window":"1d"},"icon":"star"}],
        "tips":[{"id":"t","kind":"modal","body":"B","animation":"fade","cta":{"label":"Go","url":"/next","style":"ghost"}}]}"#;
    let plan = Plan::trusting(&json::parse(newer).expect("json")).expect("a plan with newer fields loads");
    assert_eq!((plan.milestones[0].id.as_str(), plan.tips[0].id.as_str()), ("a", "t"));
    assert_eq!(Plan::from_value(&json::parse(newer).expect("json")).expect_err("the validator names the unknown field").pointer, "/schemaLevel");

    let m = r#""milestones":[{"id":"a","title":"A","value":true,"condition":{"event":"e"}}]"#;
    for (text, pointer) in [
        (r#"[]"#.to_string(), ""),
        (r#"{"version":1}"#.to_string(), "/version"),
        (format!(r#"{{"version":"1",{m},"tips":{{}}}}"#), "/tips"),
        (format!(r#"{{"version":"1",{m},"tips":[{{"id":"t","kind":"banner"}}]}}"#), "/tips/0/kind"),
        (format!(r#"{{"version":"1",{m},"tips":[{{"id":"t"}}]}}"#), "/tips/0/kind"),
        (format!(r#"{{"version":"1",{m},"tips":[{{"kind":"modal","body":"B"}}]}}"#), "/tips/0/id"),
        (format!(r#"{{"version":"1",{m},"tips":[{{"id":"t","kind":"modal"}}]}}"#), "/tips/0/body"),
        (format!(r#"{{"version":"1",{m},"tips":[{{"id":"t","kind":"modal","body":{{"en":5}}}}]}}"#), "/tips/0/body/en"),
        (format!(r#"{{"version":"1",{m},"tips":[{{"id":"t","kind":"modal","body":"B","trigger":{{"delay":"soon"}}}}]}}"#), "/tips/0/trigger/delay"),
        (format!(r#"{{"version":"1",{m},"tips":[{{"id":"t","kind":"modal","body":"B","cta":{{"label":"L","url":"javascript:alert(1)"}}}}]}}"#), "/tips/0/cta/url"),
        (format!(r#"{{"version":"1",{m},"tips":[{{"id":"t","kind":"tooltip","body":"B","target":"a{{color:red}}"}}]}}"#), "/tips/0/target"),
        (format!(r#"{{"version":"1",{m},"tips":[{{"id":"t","kind":"tour","steps":[{{"body":"S"}}]}}]}}"#), "/tips/0/steps/0/target"),
        (r#"{"version":"1","milestones":[{"id":"a","title":"A","condition":{"event":"e","where":{"n":{"gt":"3"}}}}]}"#.to_string(), "/milestones/0/condition/where/n/gt"),
        (r#"{"version":"1","milestones":[{"id":"a","title":"A","condition":{"event":"e","where":{"n":{"gt":3,"lt":5}}}}]}"#.to_string(), "/milestones/0/condition/where/n"),
        (r#"{"version":"1","milestones":[{"id":"a","title":"A","due":"99999d"}]}"#.to_string(), "/milestones/0/due"),
        (r#"{"version":"1","milestones":[{"id":"a~/b","title":"A","required":"yes"}]}"#.to_string(), "/milestones/0/required"),
        (format!(r#"{{"version":"1",{m},"surveys":[{{"id":"s","kind":"nps","question":"Q","when":{{}}}}]}}"#), "/surveys/0/when"),
        (format!(r#"{{"version":"1",{m},"prompts":[{{"id":"p","milestone":"a","body":"B","cta":{{"label":"L"}}}}]}}"#), "/prompts/0/cta"),
        (format!(r#"{{"version":"1",{m},"prompts":[{{"id":"p","milestone":"a","body":"B","cta":{{"label":"L","url":"//evil.example"}}}}]}}"#), "/prompts/0/cta/url"),
    ] {
        let doc = json::parse(&text).expect("json");
        let e = Plan::trusting(&doc).expect_err(&text);
        assert_eq!(e.pointer, pointer, "{text}");
        assert_eq!(e.problem, "cannot be read", "{text}");
        let v = Plan::from_value(&doc).expect_err("the validator refuses it too");
        assert!(!v.problem.is_empty() && v.problem != "cannot be read", "{v}");
    }
}

/// A source of choices for the generator: proptest draws and shrinks the bytes.
struct Tape<'a>(&'a [u8], usize);

impl Tape<'_> {
    fn pick(&mut self, n: usize) -> usize {
        let b = self.0.get(self.1).copied().unwrap_or(0) as usize;
        self.1 += 1;
        b % n.max(1)
    }
    fn coin(&mut self) -> bool {
        self.pick(2) == 1
    }
    fn one<'s>(&mut self, options: &[&'s str]) -> &'s str {
        options[self.pick(options.len())]
    }
}

fn s(text: &str) -> Value {
    Value::Str(text.into())
}

fn num(n: f64) -> Value {
    Value::Num(n)
}

/// An object with the fields that are `Some`, in order.
fn obj(fields: Vec<(&str, Option<Value>)>) -> Value {
    Value::Obj(fields.into_iter().filter_map(|(k, v)| Some((k.to_string(), v?))).collect())
}

fn text(t: &mut Tape, base: &str) -> Value {
    match t.pick(3) {
        0 => s(base),
        1 => obj(vec![("en", Some(s(base))), ("de", Some(s(&(String::from("DE ") + base))))]),
        _ => obj(vec![("pt-BR", Some(s(base)))]),
    }
}

fn duration(t: &mut Tape) -> Value {
    match t.pick(4) {
        0 => s(t.one(&["30m", "24h", "7d", "2w", "500ms", "90s"])),
        1 => num((t.pick(100) * 60_000) as f64),
        2 => s("1h"),
        _ => num(0.0),
    }
}

fn filters(t: &mut Tape) -> Option<Value> {
    let n = t.pick(3);
    if n == 0 {
        return None;
    }
    let ops = ["eq", "ne", "in", "gt", "gte", "lt", "lte", "exists", "contains", "plain"];
    let mut out = Vec::new();
    for i in 0..n {
        let op = t.one(&ops);
        let arg = match op {
            "in" => Value::Arr(vec![s("a"), num(2.0), Value::Bool(true)]),
            "gt" | "gte" | "lt" | "lte" => num(t.pick(10) as f64 - 2.5),
            "exists" => Value::Bool(t.coin()),
            "contains" => s("x"),
            _ => [s("pro"), num(3.0), Value::Null, Value::Bool(false), Value::Arr(vec![s("a")])][t.pick(5)].clone(),
        };
        let filter = if op == "plain" { arg } else { obj(vec![(op, Some(arg))]) };
        out.push((["p", &i.to_string(), t.one(&["", "/x", "~y"])].concat(), filter));
    }
    Some(Value::Obj(out))
}

fn maybe<T>(t: &mut Tape, f: impl FnOnce(&mut Tape) -> T) -> Option<T> {
    if t.coin() {
        Some(f(t))
    } else {
        None
    }
}

const SELECTORS: [&str; 5] = ["#new-project", "form.invite", "a[href='/x;y']", "button:not(.ghost)", "my-widget >>> button"];
const EVENTS: [&str; 4] = ["signup", "project_created", "file uploaded", "invite_sent"];

/// A valid plan (docs/PLANS.md), and the pointers of its records (where a newer release could
/// add a field).
fn valid_plan(t: &mut Tape) -> (Value, Vec<String>) {
    let mut records = vec![String::new()];
    let count = 1 + t.pick(4);
    let value_at = t.pick(count);
    let mut milestone_ids: Vec<String> = Vec::new();
    let mut milestones = Vec::new();
    for i in 0..count {
        let id = ["m", &i.to_string()].concat();
        let customer = t.pick(4) == 0;
        let after = if i > 0 && t.coin() { Some(s(&milestone_ids[t.pick(i)])) } else { None };
        let condition = if customer && t.coin() {
            None
        } else {
            let count = maybe(t, |t| num((1 + t.pick(5)) as f64));
            let event = s(t.one(&EVENTS));
            Some(obj(vec![("event", Some(event)), ("where", filters(t)), ("count", count), ("after", after)]))
        };
        milestones.push(obj(vec![
            ("id", Some(s(&id))),
            ("aliases", if t.coin() { Some(Value::Arr(vec![s(&["old-", &id].concat())])) } else { None }),
            ("title", Some(text(t, "Title"))),
            ("description", maybe(t, |t| text(t, "Why it matters"))),
            ("kind", if customer { Some(s("customer")) } else { maybe(t, |_| s("feature")) }),
            ("condition", condition),
            ("due", maybe(t, duration)),
            ("required", maybe(t, |t| Value::Bool(t.coin()))),
            ("value", if i == value_at { Some(Value::Bool(true)) } else { maybe(t, |_| Value::Bool(false)) }),
        ]));
        records.push(["/milestones/", &i.to_string()].concat());
        milestone_ids.push(id);
    }
    let mut capture = Vec::new();
    for i in 0..t.pick(4) {
        let on = t.one(&["click", "submit", "appear", "view"]);
        let (selector, path, hash) = if on == "view" {
            match t.pick(3) {
                0 => (None, Some(s("/projects/*")), None),
                1 => (None, None, Some(s("#/team*"))),
                _ => (None, Some(s("*")), Some(s("#/x"))),
            }
        } else {
            (Some(s(t.one(&SELECTORS[..4]))), None, None)
        };
        let props = maybe(t, |_| obj(vec![("source", Some(s("plan"))), ("n", Some(num(1.0)))]));
        capture.push(obj(vec![("event", Some(s(t.one(&EVENTS)))), ("on", Some(s(on))), ("selector", selector), ("path", path), ("hash", hash), ("props", props)]));
        records.push(["/capture/", &i.to_string()].concat());
    }
    let health = t.coin();
    let mut tips = Vec::new();
    for i in 0..t.pick(4) {
        let kind = t.one(&["tooltip", "hotspot", "modal", "checklist", "tour"]);
        let anchored = kind == "tooltip" || kind == "hotspot";
        let tour = kind == "tour";
        let steps = if tour {
            let mut steps = Vec::new();
            for _ in 0..1 + t.pick(3) {
                let advance = match t.pick(3) {
                    0 => Some(obj(vec![("event", Some(s(t.one(&EVENTS))))])),
                    1 => Some(obj(vec![("milestone", Some(s(&milestone_ids[t.pick(milestone_ids.len())])))])),
                    _ => None,
                };
                steps.push(obj(vec![
                    ("target", Some(s(t.one(&SELECTORS)))),
                    ("title", maybe(t, |t| text(t, "Step"))),
                    ("body", Some(text(t, "Do this"))),
                    ("placement", maybe(t, |t| s(t.one(&["top", "right", "bottom", "left", "auto"])))),
                    ("advanceOn", advance),
                ]));
            }
            Some(Value::Arr(steps))
        } else {
            None
        };
        let cta = maybe(t, |t| {
            let (url, action) = match t.pick(3) {
                0 => (Some(s("https://example.com/help?a=1")), None),
                1 => (Some(s("/billing")), None),
                _ => (None, Some(s(t.one(&["next", "dismiss", "open_checklist", "mark_done"])))),
            };
            obj(vec![("label", Some(text(t, "Go"))), ("url", url), ("action", action)])
        });
        let window = maybe(t, |t| {
            let from = t.pick(3) as f64 * 3_600_000.0;
            obj(vec![("from", if from > 0.0 { Some(num(from)) } else { None }), ("until", Some(s(t.one(&["4h", "2d", "30d"]))))])
        });
        tips.push(obj(vec![
            ("id", Some(s(&["tip-", &i.to_string()].concat()))),
            ("kind", Some(s(kind))),
            ("milestone", maybe(t, |t| s(&milestone_ids[t.pick(milestone_ids.len())]))),
            ("accountMilestone", if health && t.coin() { Some(s("team3")) } else { None }),
            ("target", if anchored || t.pick(3) == 0 { Some(s(t.one(&SELECTORS))) } else { None }),
            ("title", maybe(t, |t| text(t, "Hello"))),
            ("body", if tour || kind == "checklist" { maybe(t, |t| text(t, "Body")) } else { Some(text(t, "**Bold** body")) }),
            ("placement", maybe(t, |t| s(t.one(&["top", "right", "bottom", "left", "auto"])))),
            (
                "trigger",
                maybe(t, |t| {
                    obj(vec![
                        ("path", maybe(t, |_| s("/projects*"))),
                        ("hash", maybe(t, |_| s("#/files*"))),
                        ("afterEvent", maybe(t, |t| s(t.one(&EVENTS)))),
                        ("delay", maybe(t, duration)),
                    ])
                }),
            ),
            ("window", window),
            ("priority", maybe(t, |t| num(t.pick(21) as f64 - 10.0))),
            ("cap", maybe(t, |t| obj(vec![("maxShows", maybe(t, |t| num((1 + t.pick(4)) as f64))), ("minGap", maybe(t, duration)), ("snooze", maybe(t, duration))]))),
            ("steps", steps),
            ("cta", cta),
            ("controlPercent", maybe(t, |t| num(t.pick(101) as f64 / 2.0))),
        ]));
        records.push(["/tips/", &i.to_string()].concat());
    }
    let mut surveys = Vec::new();
    for i in 0..t.pick(3) {
        let kind = t.one(&["csat", "nps", "ces", "question"]);
        let follow_up = match (kind, t.pick(3)) {
            ("question", _) | (_, 0) => None,
            ("nps", 1) => Some(obj(vec![("detractor", Some(text(t, "What went wrong?"))), ("promoter", maybe(t, |t| text(t, "What do you love?"))), ("all", maybe(t, |t| text(t, "Why?")))])),
            _ => Some(text(t, "Tell us more")),
        };
        let page = (maybe(t, |_| s("/app/*")), maybe(t, |_| s("#/home")));
        let when = match t.pick(4) {
            0 => vec![("milestone", Some(s(&milestone_ids[t.pick(milestone_ids.len())])))],
            1 => vec![("event", Some(s(t.one(&EVENTS)))), ("where", filters(t))],
            2 => vec![("afterSignup", Some(duration(t)))],
            _ => vec![("path", Some(s("/")))],
        };
        let when = obj(when.into_iter().chain([("path", page.0), ("hash", page.1)]).filter(|(_, v)| v.is_some()).fold(Vec::new(), |mut acc, (k, v)| {
            if !acc.iter().any(|(key, _): &(&str, Option<Value>)| *key == k) {
                acc.push((k, v));
            }
            acc
        }));
        surveys.push(obj(vec![
            ("id", Some(s(&["survey.", &i.to_string()].concat()))),
            ("kind", Some(s(kind))),
            ("scale", if kind == "csat" { maybe(t, |t| s(t.one(&["faces", "1-5"]))) } else { None }),
            ("question", Some(text(t, "How likely?"))),
            ("followUp", follow_up),
            ("when", Some(when)),
            ("delay", maybe(t, duration)),
            ("sample", maybe(t, |t| num(t.pick(101) as f64))),
            ("recontact", maybe(t, |t| [s("once"), s("until_answered"), obj(vec![("every", Some(s("90d")))])][t.pick(3)].clone())),
            ("askLater", maybe(t, duration)),
            ("position", maybe(t, |t| s(t.one(&["bottom-right", "bottom-left", "top-right", "top-left"])))),
            ("controlPercent", maybe(t, |t| num(t.pick(51) as f64))),
        ]));
        records.push(["/surveys/", &i.to_string()].concat());
    }
    let mut prompts = Vec::new();
    for i in 0..t.pick(3) {
        let kind = maybe(t, |t| t.one(&["invite", "upgrade", "referral", "review", "resources", "contact", "other"]));
        let review = kind == Some("review");
        let (url, action, copy) = match t.pick(3) {
            0 => (Some(s("https://example.com/upgrade")), None, None),
            1 => (None, Some(s("open_invite")), None),
            _ => (None, None, Some(s("https://example.com/r/{userId}"))),
        };
        let groups = if review { maybe(t, |_| Value::Arr(vec![s("detractor"), s("passive"), s("promoter")])) } else { maybe(t, |_| Value::Arr(vec![s("promoter")])) };
        prompts.push(obj(vec![
            ("id", Some(s(&["prompt_", &i.to_string()].concat()))),
            ("kind", kind.map(s)),
            ("milestone", Some(s(&milestone_ids[t.pick(milestone_ids.len())]))),
            ("delay", maybe(t, duration)),
            ("window", maybe(t, duration)),
            ("title", maybe(t, |t| text(t, "Invite your team"))),
            ("body", Some(text(t, "It is better together"))),
            ("cta", Some(obj(vec![("label", Some(text(t, "Invite"))), ("url", url), ("action", action), ("copy", copy)]))),
            ("npsGroups", groups),
            (
                "goal",
                maybe(t, |t| {
                    let (m, e) = if t.coin() { (Some(s(&milestone_ids[0])), None) } else { (None, Some(s("invite_sent"))) };
                    obj(vec![("milestone", m), ("event", e), ("within", maybe(t, duration))])
                }),
            ),
            ("priority", maybe(t, |t| num(t.pick(5) as f64))),
            ("cap", maybe(t, |t| obj(vec![("maxShows", maybe(t, |_| num(3.0))), ("snooze", maybe(t, duration))]))),
            ("controlPercent", maybe(t, |_| num(10.0))),
        ]));
        records.push(["/prompts/", &i.to_string()].concat());
    }
    let plan = obj(vec![
        ("$comment", maybe(t, |_| s("tooling notes"))),
        ("version", Some(s(t.one(&["1", "2026-11-23.1", "v 2"])))),
        ("product", maybe(t, |_| s("Trackly"))),
        ("defaultLocale", maybe(t, |t| s(t.one(&["en", "de", "pt-BR"])))),
        ("milestones", Some(Value::Arr(milestones))),
        ("capture", if capture.is_empty() && t.coin() { None } else { Some(Value::Arr(capture)) }),
        ("tips", if tips.is_empty() { None } else { Some(Value::Arr(tips)) }),
        ("surveys", if surveys.is_empty() { None } else { Some(Value::Arr(surveys)) }),
        (
            "caps",
            maybe(t, |t| {
                obj(vec![
                    ("maxTipsPerSession", maybe(t, |t| num(t.pick(5) as f64))),
                    ("minGapBetweenTips", maybe(t, duration)),
                    ("maxPerSession", maybe(t, |t| num(t.pick(5) as f64))),
                    ("maxPerDay", maybe(t, |t| num(t.pick(9) as f64))),
                    ("minGapBetweenSurveys", maybe(t, duration)),
                ])
            }),
        ),
        ("holdouts", maybe(t, |t| obj(vec![("salt", Some(s("acme-2026"))), ("globalPercent", maybe(t, |t| num(t.pick(51) as f64)))]))),
        ("prompts", if prompts.is_empty() { None } else { Some(Value::Arr(prompts)) }),
        ("health", if health { Some(obj(vec![("accountMilestones", Some(Value::Arr(vec![obj(vec![("id", Some(s("team3"))), ("title", Some(s("Team of 3"))), ("event", Some(s("invite_sent"))), ("count", Some(num(3.0)))])])))])) } else { None }),
    ]);
    (plan, records)
}

/// The document with a field a newer release might add, in the record at `pointer`.
fn with_newer_field(doc: &Value, pointer: &str) -> Value {
    fn insert(v: &mut Value, path: &[&str]) {
        match (v, path.split_first()) {
            (Value::Obj(entries), None) => entries.push(("introducedLater".into(), Value::Arr(vec![Value::Num(1.0)]))),
            (Value::Obj(entries), Some((key, rest))) => {
                if let Some((_, child)) = entries.iter_mut().find(|(k, _)| k == key) {
                    insert(child, rest);
                }
            }
            (Value::Arr(items), Some((i, rest))) => {
                if let Some(child) = i.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                    insert(child, rest);
                }
            }
            _ => {}
        }
    }
    let mut doc = doc.clone();
    let path: Vec<&str> = pointer.split('/').skip(1).collect();
    insert(&mut doc, &path);
    doc
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn generated_valid_plans_read_the_same_both_ways(bytes in prop::collection::vec(any::<u8>(), 200..400), which in any::<prop::sample::Index>()) {
        let (doc, records) = valid_plan(&mut Tape(&bytes, 0));
        let plan = Plan::from_value(&doc).map_err(|e| TestCaseError::fail(format!("{e}\n{}", doc.to_json())))?;
        prop_assert_eq!(Plan::trusting(&doc), Ok(plan.clone()));
        prop_assert_eq!(Plan::capture_only(&doc), Ok((plan.version.clone(), plan.capture.clone())));
        // The same text, as the SDK receives it.
        prop_assert_eq!(Plan::trusting(&json::parse(&doc.to_json()).expect("json")), Ok(plan.clone()));
        // A field from a newer release: the validator names it, the SDK reads the plan as before.
        let record = which.get(&records);
        let newer = with_newer_field(&doc, record);
        let refused = Plan::from_value(&newer).expect_err("unknown field");
        prop_assert_eq!(refused.pointer, [record.as_str(), "/introducedLater"].concat());
        prop_assert_eq!(Plan::trusting(&newer), Ok(plan));
    }
}
