//! The onboarding plan: milestones, auto-capture rules and tips for one product.
//!
//! A plan is a JSON document written by a product team (schema: `pkg-config/plan.schema.json`,
//! examples: `pkg-config/plans/`). This module owns its types and its one reader, which runs in
//! two modes ([`Mode`]):
//!
//! - **validating** ([`Plan::from_value`], [`Plan::parse`]): used by the collector when a plan is
//!   stored (`PUT /v1/plan`, `--plan`, `POST /v1/plan/check`) and by `onramp-collector plan
//!   check`. Parsing stops at the first problem and reports it as a [`PlanError`]: a JSON
//!   pointer into the document, what is wrong there, and what was expected. Unknown fields are
//!   errors (a misspelt `"requried": false` must not silently mean "required"), except keys
//!   starting with `$` (`$schema`, `$comment`), which are free for tooling and notes.
//! - **trusting** ([`Plan::trusting`], [`Plan::capture_only`]): the SDK's. Every plan it gets
//!   was validated by the collector, so it builds the same [`Plan`] from the same code with the
//!   checks and their messages compiled out; a plan it cannot read is reported by the field's
//!   pointer alone, one console line, and fields it does not know are left unread.
//!
//! The validator is compiled everywhere (the core's tests run in the browser too) but only
//! native code calls it, so it is not linked into any wasm the SDK ships.

/// How the plan is read. Both modes run the same functions below; each rule only the
/// validator enforces is written once, inside `check!` or under `if M::CHECK`, and since
/// `CHECK` is a constant the trusting instances carry neither the check nor its message (nor
/// the `format!` and `core::fmt` code the messages need). Measured on the full SDK's wasm: see
/// BENCHMARKS.md, section 5.
pub trait Mode {
    const CHECK: bool;
}

/// The collector's mode: every rule, and a message a plan's author can act on.
pub enum Validate {}
impl Mode for Validate {
    const CHECK: bool = true;
}

/// The SDK's mode: what is needed to build the plan and to keep the page safe, nothing more.
pub enum Trust {}
impl Mode for Trust {
    const CHECK: bool = false;
}

/// A value that cannot be read as the format says: the validator's full error, the trusting
/// reader's pointer alone (the problem and expectation are never built).
macro_rules! bad {
    ($ptr:expr, $problem:expr, $expected:expr) => {
        if M::CHECK {
            err($ptr, $problem, $expected)
        } else {
            Err(unreadable(String::from($ptr)).into())
        }
    };
}

/// A rule only the validator enforces: the trusting reader neither tests nor explains it.
macro_rules! check {
    ($ok:expr, $ptr:expr, $problem:expr, $expected:expr) => {
        if M::CHECK && !$ok {
            return err($ptr, $problem, $expected);
        }
    };
}

mod prompts;

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use alloc::boxed::Box;
use alloc::{format, vec};

pub use prompts::{Goal, Prompt, PromptAction, PromptKind, NPS_GROUPS};

use super::json::{self, Value};
use ::core::marker::PhantomData;
use super::time::{parse_duration, HOUR as HOUR_MS};

/// The reader's error inside the reader, boxed: every field's `Result` then carries one
/// pointer instead of a `PlanError`'s three strings, which the reader moved at each step. The
/// full SDK's wasm, which inlines the whole reader into one function, was 10.5 KB raw (1.8 KB
/// gzip) larger with the error unboxed (`cargo xtask build`, branch `guide-size`). The public
/// readers still answer a plain [`PlanError`].
pub(crate) type Failed = Box<PlanError>;

/// Limits that keep a hostile or mistaken plan from costing the page much.
const MAX_MILESTONES: usize = 100;
const MAX_RULES: usize = 200;
const MAX_TIPS: usize = 100;
const MAX_SURVEYS: usize = 50;
const MAX_STEPS: usize = 20;
const MAX_ID: usize = 64;
const MAX_NAME: usize = 200;
const MAX_TEXT: usize = 2000;
const MAX_SELECTOR: usize = 500;
const MAX_COUNT: f64 = 1_000_000.0;

/// The plan's top-level fields. `health` and `lifecycle` are read by the collector only
/// (`super::health`, native builds): the SDK accepts them unread, so they cost the wasm nothing.
const TOP_FIELDS: &[&str] = &[
    "version", "product", "defaultLocale", "milestones", "capture", "tips", "surveys", "caps", "holdouts", "prompts", "health", "lifecycle",
];

/// Milestone event names the engine emits itself; a milestone may not take them as its id.
pub const RESERVED_IDS: [&str; 2] = [super::vocab::milestone::ONBOARDING_COMPLETED, super::vocab::milestone::TIME_TO_VALUE];

/// Tips are for a user's first hours: without a `window`, a tip may show in the first 24 h.
pub const DEFAULT_TIP_WINDOW_MS: i64 = 24 * HOUR_MS;

#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Reported with every milestone event (`planVersion`), so analytics can tell plans apart.
    pub version: String,
    pub product: String,
    /// The locale texts fall back to when the user's is missing.
    pub default_locale: String,
    pub milestones: Vec<Milestone>,
    pub capture: Vec<CaptureRule>,
    pub tips: Vec<Tip>,
    /// Micro-surveys (docs/SURVEYS.md).
    pub surveys: Vec<Survey>,
    pub caps: TipCaps,
    pub holdouts: Holdouts,
    /// Growth prompts at milestones.
    pub prompts: Vec<Prompt>,
}

/// The holdout experiments' settings (see [`super::holdout`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Holdouts {
    /// The project's salt for the assignment hash; changing it re-draws every user.
    pub salt: String,
    /// Percentage (0 to 50) of users who get no guidance at all.
    pub global_percent: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MilestoneKind {
    /// Detected from the user's events.
    Feature,
    /// Happens outside the product; confirmed by the user ("mark as done") or by a server call.
    Customer,
}

impl MilestoneKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MilestoneKind::Feature => "feature",
            MilestoneKind::Customer => "customer",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Milestone {
    /// The identity of the milestone across plan versions; titles may change freely.
    pub id: String,
    /// Former ids: state reached under one of them counts for this milestone (a rename).
    pub aliases: Vec<String>,
    pub title: Text,
    pub description: Text,
    pub kind: MilestoneKind,
    /// Required for feature milestones; optional for customer milestones.
    pub condition: Option<Condition>,
    /// Due this long after sign-up (used to flag stalled users), if set.
    pub due_ms: Option<i64>,
    pub required: bool,
    /// The milestone whose completion means the user got value: exactly one per plan.
    pub value: bool,
}

/// When a milestone is reached: `count` events named `event` whose props pass every filter,
/// counted only once the `after` milestone (if any) has been reached.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub event: String,
    pub filters: Vec<Filter>,
    pub count: u32,
    pub after: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Filter {
    pub prop: String,
    pub op: Op,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Eq(Value),
    Ne(Value),
    In(Vec<Value>),
    Gt(f64),
    Gte(f64),
    Lt(f64),
    Lte(f64),
    Exists(bool),
    Contains(String),
}

/// Turns page activity into a named `track` event with no code in the host page.
#[derive(Clone, Debug, PartialEq)]
pub struct CaptureRule {
    pub event: String,
    pub on: Capture,
    /// Added to the captured event's props.
    pub props: Vec<(String, Value)>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Capture {
    /// A click on (or inside) an element matching the selector, now or added later.
    Click { selector: String },
    /// A form matching the selector is submitted.
    Submit { selector: String },
    /// An element matching the selector appears in the page (absent → present).
    Appear { selector: String },
    /// The page or SPA route matches: `path` against `location.pathname`, `hash` against
    /// `location.hash`; both must match when both are given.
    View { path: Option<Pattern>, hash: Option<Pattern> },
}

impl Capture {
    pub fn name(&self) -> &'static str {
        match self {
            Capture::Click { .. } => "click",
            Capture::Submit { .. } => "submit",
            Capture::Appear { .. } => "appear",
            Capture::View { .. } => "view",
        }
    }
    pub fn selector(&self) -> Option<&str> {
        match self {
            Capture::Click { selector } | Capture::Submit { selector } | Capture::Appear { selector } => Some(selector),
            Capture::View { .. } => None,
        }
    }
}

/// A glob over a URL path or hash: `*` matches any run of characters (including `/`), every other
/// character matches itself. `/projects/*` matches `/projects/42/board`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern(pub String);

impl Pattern {
    pub fn matches(&self, text: &str) -> bool {
        glob(self.0.as_bytes(), text.as_bytes())
    }
}

/// Iterative glob with one backtrack point: linear in practice, no recursion on hostile input.
fn glob(pat: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pat.len() && pat[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pat.len() && pat[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

/// Text in one or more locales. A plain string in the plan is stored under the default locale.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Text(pub Vec<(String, String)>);

impl Text {
    /// The text for `locale` (`de-AT`), falling back to its language (`de`), then to
    /// `default_locale`, then to whatever the plan gives first.
    pub fn get(&self, locale: &str, default_locale: &str) -> &str {
        let language = locale.split('-').next().unwrap_or(locale);
        [locale, language, default_locale]
            .iter()
            .find_map(|want| self.0.iter().find(|(l, _)| l.eq_ignore_ascii_case(want)))
            .or_else(|| self.0.first())
            .map_or("", |(_, t)| t.as_str())
    }
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|(_, t)| t.is_empty())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TipKind {
    Tooltip,
    Hotspot,
    Modal,
    Checklist,
    Tour,
}

impl TipKind {
    const ALL: [(&'static str, TipKind); 5] = [
        ("tooltip", TipKind::Tooltip),
        ("hotspot", TipKind::Hotspot),
        ("modal", TipKind::Modal),
        ("checklist", TipKind::Checklist),
        ("tour", TipKind::Tour),
    ];
    pub fn as_str(self) -> &'static str {
        TipKind::ALL.iter().find(|(_, k)| *k == self).map_or("", |(s, _)| s)
    }
    /// Tooltips and hotspots are anchored to an element, so they need a target.
    pub fn needs_target(self) -> bool {
        matches!(self, TipKind::Tooltip | TipKind::Hotspot)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Placement {
    Top,
    Right,
    Bottom,
    Left,
    #[default]
    Auto,
}

impl Placement {
    const ALL: [(&'static str, Placement); 5] = [
        ("top", Placement::Top),
        ("right", Placement::Right),
        ("bottom", Placement::Bottom),
        ("left", Placement::Left),
        ("auto", Placement::Auto),
    ];
    pub fn as_str(self) -> &'static str {
        Placement::ALL.iter().find(|(_, p)| *p == self).map_or("auto", |(s, _)| s)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tip {
    pub id: String,
    pub kind: TipKind,
    /// The milestone this tip leads to: once reached, the tip has done its job.
    pub milestone: Option<String>,
    /// The account milestone (`health.accountMilestones`) this tip leads to: once the user's
    /// account reached it, by any teammate, the tip has done its job.
    pub account_milestone: Option<String>,
    /// CSS selector of the element the tip is anchored to.
    pub target: Option<String>,
    pub title: Text,
    pub body: Text,
    pub placement: Placement,
    pub trigger: Trigger,
    pub window: Window,
    /// Higher first when several tips could show.
    pub priority: i32,
    pub cap: TipCap,
    pub steps: Vec<TourStep>,
    pub cta: Option<Cta>,
    /// Percentage (0 to 50) of users who never see this tip, to measure its effect.
    pub control_percent: f64,
}

/// When a tip becomes eligible: on a matching page/route, after an event, after a delay.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Trigger {
    pub path: Option<Pattern>,
    pub hash: Option<Pattern>,
    pub after_event: Option<String>,
    pub delay_ms: i64,
}

/// A span relative to the user's sign-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub from_ms: i64,
    pub until_ms: i64,
}

impl Default for Window {
    fn default() -> Window {
        Window { from_ms: 0, until_ms: DEFAULT_TIP_WINDOW_MS }
    }
}

impl Window {
    pub fn contains(&self, since_signup_ms: i64) -> bool {
        since_signup_ms >= self.from_ms && since_signup_ms < self.until_ms
    }
}

/// Per-tip frequency cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TipCap {
    /// Shown at most this many times in all.
    pub max_shows: u32,
    /// At least this long between two showings of this tip.
    pub min_gap_ms: i64,
    /// How long "snooze" hides the tip.
    pub snooze_ms: i64,
}

impl Default for TipCap {
    fn default() -> TipCap {
        TipCap { max_shows: 3, min_gap_ms: HOUR_MS, snooze_ms: 24 * HOUR_MS }
    }
}

/// Plan-wide caps, so several tips together never nag; `max_per_session` and `max_per_day` are
/// the one fatigue budget every kind of guidance surface is charged to ([`super::budget`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TipCaps {
    pub max_tips_per_session: u32,
    pub min_gap_ms: i64,
    /// Guidance surfaces of any kind (tips, tours, surveys, prompts) per session.
    pub max_per_session: u32,
    /// The same per day (24 hours from the first surface of the day).
    pub max_per_day: u32,
    /// The global wait between any two surveys for one user.
    pub min_gap_between_surveys_ms: i64,
}

impl Default for TipCaps {
    fn default() -> TipCaps {
        TipCaps { max_tips_per_session: 3, min_gap_ms: 60_000, max_per_session: 3, max_per_day: 5, min_gap_between_surveys_ms: 7 * 24 * HOUR_MS }
    }
}

/// How long "ask me later" hides a survey unless the survey says otherwise.
pub const DEFAULT_ASK_LATER_MS: i64 = 7 * 24 * HOUR_MS;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SurveyKind {
    /// Customer satisfaction: three faces, or 1–5.
    Csat,
    /// Net promoter score, 0–10.
    Nps,
    /// Customer effort score, 1–7 ("how easy").
    Ces,
    /// Open text.
    Question,
}

impl SurveyKind {
    pub const ALL: [(&'static str, SurveyKind); 4] =
        [("csat", SurveyKind::Csat), ("nps", SurveyKind::Nps), ("ces", SurveyKind::Ces), ("question", SurveyKind::Question)];
    pub fn as_str(self) -> &'static str {
        SurveyKind::ALL.iter().find(|(_, k)| *k == self).map_or("", |(s, _)| s)
    }
}

/// A CSAT survey's scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CsatScale {
    /// Unhappy, neutral, happy: scores 1–3.
    #[default]
    Faces,
    /// 1–5.
    Five,
}

/// Where the survey card sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Corner {
    #[default]
    BottomRight,
    BottomLeft,
    TopRight,
    TopLeft,
}

impl Corner {
    pub const ALL: [(&'static str, Corner); 4] = [
        ("bottom-right", Corner::BottomRight),
        ("bottom-left", Corner::BottomLeft),
        ("top-right", Corner::TopRight),
        ("top-left", Corner::TopLeft),
    ];
    pub fn as_str(self) -> &'static str {
        Corner::ALL.iter().find(|(_, c)| *c == self).map_or("bottom-right", |(s, _)| s)
    }
}

/// What makes a survey due.
#[derive(Clone, Debug, PartialEq)]
pub enum SurveyWhen {
    /// The milestone is reached.
    Milestone(String),
    /// An event whose props pass the filters happened.
    Event { event: String, filters: Vec<Filter> },
    /// This long after sign-up.
    AfterSignup(i64),
    /// Only the page/route condition (`path`/`hash`): on matching pages.
    Page,
}

/// Whether and when a user is asked again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recontact {
    /// Asked once: answered or dismissed, never again.
    Once,
    /// Asked again (after the global wait) until answered.
    UntilAnswered,
    /// Asked again this long after the last answer or dismissal.
    Every(i64),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Survey {
    pub id: String,
    pub kind: SurveyKind,
    pub scale: CsatScale,
    pub question: Text,
    /// The follow-up question under the scale (`nps`: per group when given per group).
    pub follow_up: FollowUp,
    pub when: SurveyWhen,
    /// `when` is further restricted to pages matching these.
    pub path: Option<Pattern>,
    pub hash: Option<Pattern>,
    pub delay_ms: i64,
    /// Percentage of users asked, 0–100, chosen deterministically per user.
    pub sample: f64,
    pub recontact: Recontact,
    pub ask_later_ms: i64,
    pub corner: Corner,
    /// Percentage (0 to 50) of identified users never asked this survey, to measure its effect
    /// (the experiment `survey:<id>`, docs/EXPERIMENTS.md).
    pub control_percent: f64,
}

/// The follow-up question: none, one text, or (nps) one per group.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FollowUp {
    pub all: Text,
    pub detractor: Text,
    pub passive: Text,
    pub promoter: Text,
}

impl FollowUp {
    /// The text for an answer in `group` (`detractor`, …): the group's own, else the common one.
    pub fn for_group(&self, group: Option<&str>) -> &Text {
        let own = match group {
            Some("detractor") => &self.detractor,
            Some("passive") => &self.passive,
            Some("promoter") => &self.promoter,
            _ => &self.all,
        };
        if own.is_empty() { &self.all } else { own }
    }
    pub fn is_empty(&self) -> bool {
        self.all.is_empty() && self.detractor.is_empty() && self.passive.is_empty() && self.promoter.is_empty()
    }
}

impl Survey {
    /// The scores the scale offers, lowest first.
    pub fn scores(&self) -> ::core::ops::RangeInclusive<u8> {
        match (self.kind, self.scale) {
            (SurveyKind::Csat, CsatScale::Faces) => 1..=3,
            (SurveyKind::Csat, CsatScale::Five) => 1..=5,
            (SurveyKind::Nps, _) => 0..=10,
            (SurveyKind::Ces, _) => 1..=7,
            // Open text has no scale: an empty range (no radios, and no score is in it).
            #[allow(clippy::reversed_empty_ranges)]
            (SurveyKind::Question, _) => 1..=0,
        }
    }

    /// The answer's group (`vocab::prop::GROUP`): nps detractor 0–6, passive 7–8, promoter
    /// 9–10; csat unhappy, neutral, happy (faces 1, 2, 3; or 1–2, 3, 4–5). None for the others.
    pub fn group(&self, score: u8) -> Option<&'static str> {
        score_group(self.kind, self.scale, score)
    }
}

/// The group of a `score` on a survey of `kind` (and, for csat, `scale`): the one definition the
/// SDK reports and the collector's survey analytics count by (docs/SURVEYS.md).
pub fn score_group(kind: SurveyKind, scale: CsatScale, score: u8) -> Option<&'static str> {
    match (kind, scale) {
        (SurveyKind::Nps, _) => Some(match score {
            0..=6 => "detractor",
            7..=8 => "passive",
            _ => "promoter",
        }),
        (SurveyKind::Csat, CsatScale::Faces) => Some(["unhappy", "neutral", "happy"][(score.clamp(1, 3) - 1) as usize]),
        (SurveyKind::Csat, CsatScale::Five) => Some(match score {
            0..=2 => "unhappy",
            3 => "neutral",
            _ => "happy",
        }),
        _ => None,
    }
}

/// Answers longer than this are cut (characters, not bytes).
pub const MAX_ANSWER_CHARS: usize = 1000;

#[derive(Clone, Debug, PartialEq)]
pub struct TourStep {
    pub target: String,
    pub title: Text,
    pub body: Text,
    pub placement: Placement,
    pub advance_on: Option<Advance>,
}

/// What moves a tour to its next step besides the user's "Next".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Advance {
    Event(String),
    Milestone(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Cta {
    pub label: Text,
    pub action: CtaAction,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CtaAction {
    /// An absolute `http:` or `https:` URL (never `javascript:`), or a same-site path
    /// ([`crate::core::markup::same_site_path`]; never `//host`).
    Url(String),
    /// One of [`CTA_ACTIONS`].
    Action(String),
}

pub const CTA_ACTIONS: [&str; 4] = ["next", "dismiss", "open_checklist", "mark_done"];

/// The first problem found in a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanError {
    /// JSON pointer (RFC 6901) to the offending value; "" is the whole document.
    pub pointer: String,
    pub problem: String,
    pub expected: String,
}

impl PlanError {
    /// "plan <pointer>: <problem>; expected <expected>", built without `core::fmt`, whose
    /// formatting code the lean tracker would otherwise carry for this one message.
    pub fn message(&self) -> String {
        let at = if self.pointer.is_empty() { "(document)" } else { &self.pointer };
        let mut out = String::with_capacity(16 + at.len() + self.problem.len() + self.expected.len());
        for part in ["plan ", at, ": ", &self.problem, "; expected ", &self.expected] {
            out.push_str(part);
        }
        out
    }
}

impl ::core::fmt::Display for PlanError {
    fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
        f.write_str(&self.message())
    }
}

pub(crate) fn err<T>(pointer: &str, problem: impl Into<String>, expected: &str) -> Result<T, Failed> {
    Err(Box::new(PlanError { pointer: pointer.into(), problem: problem.into(), expected: expected.into() }))
}

/// The trusting reader's error: the pointer of the field it could not read, and two fixed
/// sentences (what is wrong there is `onramp-collector plan check`'s to say).
fn unreadable(pointer: String) -> PlanError {
    PlanError {
        pointer,
        problem: String::from("cannot be read"),
        expected: String::from("a plan that `onramp-collector plan check` accepts"),
    }
}

/// `ptr` extended by one reference token, escaped per RFC 6901.
fn child(ptr: &str, key: &str) -> String {
    let mut out = String::with_capacity(ptr.len() + key.len() + 1);
    out.push_str(ptr);
    out.push('/');
    for c in key.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
    out
}

pub(crate) fn index(ptr: &str, i: usize) -> String {
    let mut token = String::new();
    json::write_num(&mut token, i as f64);
    child(ptr, &token)
}

pub(crate) fn found(v: &Value) -> String {
    match v {
        Value::Str(s) if s.chars().count() <= 40 => {
            let mut out = String::from("found ");
            json::write_str(&mut out, s);
            out
        }
        Value::Num(n) => {
            let mut out = String::from("found ");
            json::write_num(&mut out, *n);
            out
        }
        Value::Bool(b) => String::from(if *b { "found true" } else { "found false" }),
        other => String::from("found ") + other.kind(),
    }
}

/// An object being read, with its pointer; checks types and (validating) unknown keys.
pub(crate) struct Obj<'a, M: Mode> {
    v: &'a Value,
    pub(crate) ptr: String,
    mode: PhantomData<M>,
}

impl<'a, M: Mode> Obj<'a, M> {
    pub(crate) fn new(v: &'a Value, ptr: String, fields: &[&str]) -> Result<Obj<'a, M>, Failed> {
        let Some(entries) = v.as_object() else {
            return bad!(&ptr, found(v), "an object");
        };
        // Validating, an unknown field is an error (a misspelt key must not silently fall back
        // to its default); trusting, it belongs to a newer plan and is left unread.
        if M::CHECK {
            for (k, _) in entries {
                if !k.starts_with('$') && !fields.contains(&k.as_str()) {
                    return err(&child(&ptr, k), "unknown field", &one_of(fields));
                }
            }
        }
        Ok(Obj { v, ptr, mode: PhantomData })
    }

    pub(crate) fn at(&self, key: &str) -> String {
        child(&self.ptr, key)
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        match self.v.get(key) {
            None | Some(Value::Null) => None,
            some => some,
        }
    }

    /// A required field is absent: the validator points at the object and names the field,
    /// the trusting reader points at the field.
    fn missing<T>(&self, key: &str, expected: &str) -> Result<T, Failed> {
        if M::CHECK {
            err(&self.ptr, format!("missing \"{key}\""), expected)
        } else {
            Err(unreadable(self.at(key)).into())
        }
    }

    fn required(&self, key: &str, expected: &str) -> Result<&'a Value, Failed> {
        self.get(key).map_or_else(|| self.missing(key, expected), Ok)
    }

    fn str_req(&self, key: &str, max: usize, expected: &str) -> Result<String, Failed> {
        string::<M>(self.required(key, expected)?, &self.at(key), max, expected)
    }

    fn str_opt(&self, key: &str, max: usize, expected: &str) -> Result<Option<String>, Failed> {
        self.get(key).map(|v| string::<M>(v, &self.at(key), max, expected)).transpose()
    }

    fn id(&self, key: &str) -> Result<String, Failed> {
        id::<M>(self.required(key, ID_EXPECTED)?, &self.at(key))
    }

    fn id_opt(&self, key: &str) -> Result<Option<String>, Failed> {
        self.get(key).map(|v| id::<M>(v, &self.at(key))).transpose()
    }

    fn bool_or(&self, key: &str, default: bool) -> Result<bool, Failed> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => bad!(&self.at(key), found(v), "true or false"),
        }
    }

    pub(crate) fn duration_opt(&self, key: &str) -> Result<Option<i64>, Failed> {
        self.get(key).map(|v| duration::<M>(v, &self.at(key))).transpose()
    }

    /// A whole number in `min..=MAX_COUNT`; trusting, any number (cast saturates).
    fn whole_or(&self, key: &str, default: u32, min: f64, expected: &str) -> Result<u32, Failed> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Num(n)) if !M::CHECK || (n % 1.0 == 0.0 && *n >= min && *n <= MAX_COUNT) => Ok(*n as u32),
            Some(v) => bad!(&self.at(key), found(v), expected),
        }
    }

    fn text(&self, key: &str, required: bool) -> Result<Text, Failed> {
        match self.get(key) {
            None if required => self.missing(key, TEXT_EXPECTED),
            None => Ok(Text::default()),
            Some(v) => text::<M>(v, &self.at(key)),
        }
    }

    pub(crate) fn array(&self, key: &str, max: usize, expected: &str) -> Result<&'a [Value], Failed> {
        match self.get(key) {
            None => Ok(&[]),
            Some(Value::Arr(items)) => {
                check!(items.len() <= max, &self.at(key), format!("{} items", items.len()), &format!("at most {max} items"));
                Ok(items)
            }
            Some(v) => bad!(&self.at(key), found(v), expected),
        }
    }

    pub(crate) fn choice<T: Copy>(&self, key: &str, options: &[(&str, T)], default: Option<T>) -> Result<T, Failed> {
        let names = || options.iter().map(|(n, _)| *n).collect::<Vec<&str>>();
        match (self.get(key), default) {
            (None, Some(d)) => Ok(d),
            (None, None) => {
                if M::CHECK {
                    err(&self.ptr, format!("missing \"{key}\""), &one_of(&names()))
                } else {
                    Err(unreadable(self.at(key)).into())
                }
            }
            (Some(v), _) => {
                let s = v.as_str().unwrap_or("");
                options.iter().find(|(n, _)| *n == s).map_or_else(|| bad!(&self.at(key), found(v), &one_of(&names())), |(_, t)| Ok(*t))
            }
        }
    }
}

fn one_of(names: &[&str]) -> String {
    let mut out = String::from("one of ");
    for (i, n) in names.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(n);
    }
    out
}

const PERCENT_EXPECTED: &str = "a percentage from 0 to 50";

/// A holdout or control percentage: more than half the users without guidance would measure
/// guidance on the minority.
fn percent<M: Mode>(v: Option<&Value>, ptr: &str) -> Result<f64, Failed> {
    match v {
        None => Ok(0.0),
        Some(Value::Num(n)) if !M::CHECK || (0.0..=50.0).contains(n) => Ok(*n),
        Some(v) => bad!(ptr, found(v), PERCENT_EXPECTED),
    }
}

const ID_EXPECTED: &str = "an id of 1 to 64 letters, digits, '_', '-' or '.'";
const TEXT_EXPECTED: &str = "a non-empty string, or an object of locale to string such as {\"en\": \"…\"}";
const DURATION_EXPECTED: &str = "a duration such as \"30m\", \"24h\" or \"7d\" (units ms, s, m, h, d, w), or milliseconds";
const SELECTOR_EXPECTED: &str = "a CSS selector such as \"#new-project\" or \"form.invite\"";
const EVENT_EXPECTED: &str = "an event name (a string of 1 to 200 bytes)";

fn string<M: Mode>(v: &Value, ptr: &str, max: usize, expected: &str) -> Result<String, Failed> {
    let Value::Str(s) = v else {
        return bad!(ptr, found(v), expected);
    };
    check!(!s.trim().is_empty(), ptr, "empty string", expected);
    check!(s.len() <= max, ptr, format!("{} bytes long", s.len()), expected);
    Ok(s.clone())
}

fn id<M: Mode>(v: &Value, ptr: &str) -> Result<String, Failed> {
    let s = string::<M>(v, ptr, MAX_ID, ID_EXPECTED)?;
    check!(s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')), ptr, found(v), ID_EXPECTED);
    Ok(s)
}

fn text<M: Mode>(v: &Value, ptr: &str) -> Result<Text, Failed> {
    match v {
        Value::Str(_) => Ok(Text(vec![(String::new(), string::<M>(v, ptr, MAX_TEXT, TEXT_EXPECTED)?)])),
        Value::Obj(entries) if !(M::CHECK && entries.is_empty()) => {
            let mut out = Vec::with_capacity(entries.len());
            for (locale, t) in entries {
                let p = child(ptr, locale);
                check!(
                    !locale.is_empty() && locale.len() <= 20 && locale.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
                    &p,
                    "not a locale",
                    "a locale tag such as \"en\" or \"pt-BR\""
                );
                out.push((locale.clone(), string::<M>(t, &p, MAX_TEXT, "a non-empty string")?));
            }
            Ok(Text(out))
        }
        other => bad!(ptr, found(other), TEXT_EXPECTED),
    }
}

/// Kept by the trusting reader too: it bounds every duration the engine adds to a time.
fn duration<M: Mode>(v: &Value, ptr: &str) -> Result<i64, Failed> {
    let ms = match v {
        Value::Num(n) if n % 1.0 == 0.0 && *n >= 0.0 && *n <= 3.2e11 => Some(*n as i64),
        // Ten years is beyond any onboarding window; larger is a mistake (or an overflow).
        Value::Str(s) => parse_duration(s).filter(|ms| *ms <= 3650 * 24 * HOUR_MS),
        _ => None,
    };
    ms.map_or_else(|| bad!(ptr, found(v), DURATION_EXPECTED), Ok)
}

/// A light syntax check: the browser layer also asks the browser itself. Braces and `;` are
/// refused so a selector can never smuggle CSS rules into the tips' stylesheet: a guard the
/// trusting reader keeps too.
fn selector<M: Mode>(v: &Value, ptr: &str) -> Result<String, Failed> {
    let s = string::<M>(v, ptr, MAX_SELECTOR, SELECTOR_EXPECTED)?;
    let mut depth: [i32; 2] = [0, 0];
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '(') => depth[0] += 1,
            (None, ')') => depth[0] -= 1,
            (None, '[') => depth[1] += 1,
            (None, ']') => depth[1] -= 1,
            (None, '{' | '}' | ';') => return bad!(ptr, String::from("'") + c.encode_utf8(&mut [0; 4]) + "' in the selector", SELECTOR_EXPECTED),
            _ => {}
        }
        if depth[0] < 0 || depth[1] < 0 {
            break;
        }
    }
    if quote.is_some() || depth != [0, 0] {
        return bad!(ptr, "unbalanced brackets or quotes", SELECTOR_EXPECTED);
    }
    Ok(s)
}

fn pattern<M: Mode>(v: &Value, ptr: &str, lead: char) -> Result<Pattern, Failed> {
    let expected = if lead == '/' {
        "a URL path pattern starting with '/', such as \"/projects/*\""
    } else {
        "a hash route pattern starting with '#', such as \"#/team*\""
    };
    let s = string::<M>(v, ptr, MAX_SELECTOR, expected)?;
    check!(s.starts_with(lead) || s.starts_with('*'), ptr, found(v), expected);
    Ok(Pattern(s))
}

fn event_name<M: Mode>(v: &Value, ptr: &str) -> Result<String, Failed> {
    string::<M>(v, ptr, MAX_NAME, EVENT_EXPECTED)
}

/// A call to action's URL: an absolute http(s) URL or a same-site path, never `javascript:`.
/// The tips set it as a link's `href`, so the trusting reader keeps this check too.
fn cta_url<M: Mode>(v: &Value, ptr: &str) -> Result<String, Failed> {
    let url = string::<M>(v, ptr, 2000, "an http: or https: URL")?;
    if crate::core::markup::safe_url(&url) || crate::core::markup::same_site_path(&url) {
        Ok(url)
    } else {
        bad!(ptr, found(v), "an absolute http: or https: URL, or a path on this site starting with a single '/'")
    }
}

impl Plan {
    /// Parses and validates a plan document.
    pub fn parse(text: &str) -> Result<Plan, PlanError> {
        let doc = json::parse(text).map_err(|e| PlanError {
            pointer: String::new(),
            problem: e.to_string(),
            expected: "a JSON document".into(),
        })?;
        Plan::from_value(&doc)
    }

    /// Validates a plan document: every rule of the format, and the first problem found with
    /// its pointer, what is wrong and what was expected. The collector runs it on every plan
    /// it stores (`PUT /v1/plan`, `--plan`) and `onramp-collector plan check` on files; the
    /// SDK never does (see [`Plan::trusting`]), so none of it reaches the browser.
    pub fn from_value(doc: &Value) -> Result<Plan, PlanError> {
        read::<Validate>(doc).map_err(|e| *e)
    }

    /// Reads a plan the collector has validated, as the full SDK does: the same reader as
    /// [`Plan::from_value`] with its checks and messages compiled out (see [`Mode`]), so for
    /// every valid plan it builds the same `Plan`. What it still refuses is what it cannot
    /// build (a field of the wrong type, an unknown kind, a required field missing) and what
    /// would be unsafe in the page (a CSS selector with braces, a `javascript:` link, a
    /// duration past ten years); the error is the field's pointer alone. Fields it does not
    /// know are left unread, so a plan newer than this release still loads. What it accepts
    /// unchecked and how the engine takes it: a reference to a milestone the plan does not
    /// define stays as written and is never reached (an `after` gate on it stays shut, a
    /// survey, prompt or tour step waiting for it never comes, a tip leading to it is only
    /// retired by its window and caps); an `after` cycle leaves its milestones unreached; a
    /// tour without steps is over at once; a tooltip without a target finds none and waits;
    /// no value milestone means no `time_to_value` event (two: the first reached gives it);
    /// of two milestones with one id, the first is the one the engine finds; numbers outside
    /// their range are taken as they come (whole counts saturate). `tests/plan_readers.rs`
    /// runs such plans through the engine, tips, surveys and prompts.
    pub fn trusting(doc: &Value) -> Result<Plan, PlanError> {
        read::<Trust>(doc).map_err(|e| *e)
    }

    /// The plan's version and auto-capture rules, and nothing else: what the lean tracker
    /// needs (see `web`). It never builds the milestone engine or the tips, and it does not
    /// validate either: the collector validated the plan when it was stored (`PUT /v1/plan`,
    /// `--plan`, `onramp-collector plan check`), so a rule the tracker cannot read is reported
    /// by its pointer alone, with no problem text formatted here. That keeps the validator's
    /// messages, and the `core::fmt` code they pull in, out of the tracker's bundle (measured
    /// in the commit that made it: see BENCHMARKS.md, section 5). Fields it does not know are
    /// ignored, so a plan with sections newer than this release still captures.
    ///
    /// Its rule reader is its own, smaller than [`Plan::trusting`]'s (which checks selectors
    /// for the tips' stylesheet and reads through the generic `Obj`): reading the rules with
    /// `capture_rule::<Trust>` instead made the tracker's wasm 2 439 B raw, 844 B gzip larger
    /// (measured with `cargo xtask build`). `tests/plan_readers.rs` checks that it reads the
    /// same rules as the validator on every repository and generated plan.
    pub fn capture_only(doc: &Value) -> Result<(String, Vec<CaptureRule>), PlanError> {
        let version = match doc.get("version") {
            Some(Value::Str(v)) if !v.is_empty() => v.clone(),
            _ => return Err(unreadable(String::from("/version"))),
        };
        let rules = match doc.get("capture") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Arr(rules)) => rules,
            Some(_) => return Err(unreadable(String::from("/capture"))),
        };
        let mut capture = Vec::with_capacity(rules.len());
        for (i, rule) in rules.iter().enumerate() {
            capture.push(read_capture_rule(rule).map_err(|field| unreadable(child(&index("/capture", i), field)))?);
        }
        Ok((version, capture))
    }

    pub fn milestone(&self, id: &str) -> Option<&Milestone> {
        self.milestones.iter().find(|m| m.id == id)
    }

    pub fn value_milestone(&self) -> Option<&Milestone> {
        self.milestones.iter().find(|m| m.value)
    }

    /// Every CSS selector in the plan with its pointer, so the browser layer can ask the browser
    /// whether it parses and report a bad one as precisely as any other error. (Pointers built
    /// without `format!`: this runs in the SDK.)
    pub fn selectors(&self) -> Vec<(String, &str)> {
        let mut out = Vec::new();
        for (i, r) in self.capture.iter().enumerate() {
            if let Some(s) = r.on.selector() {
                out.push((index("/capture", i) + "/selector", s));
            }
        }
        for (i, t) in self.tips.iter().enumerate() {
            let tip = index("/tips", i);
            if let Some(s) = &t.target {
                out.push((child(&tip, "target"), s.as_str()));
            }
            for (j, step) in t.steps.iter().enumerate() {
                out.push((index(&child(&tip, "steps"), j) + "/target", step.target.as_str()));
            }
        }
        out
    }
}

/// The one reader of the plan format, validating or trusting (see [`Mode`]).
fn read<M: Mode>(doc: &Value) -> Result<Plan, Failed> {
    let top = Obj::<M>::new(doc, String::new(), TOP_FIELDS)?;
    let version = top.str_req("version", MAX_ID, "a version string such as \"2026-11-23.1\"")?;
    let product = top.str_opt("product", MAX_NAME, "the product's name")?.unwrap_or_default();
    let default_locale = top.str_opt("defaultLocale", 20, "a locale tag such as \"en\"")?.unwrap_or_else(|| "en".into());

    let items = top.array("milestones", MAX_MILESTONES, "an array of milestones")?;
    check!(!items.is_empty(), "/milestones", if top.get("milestones").is_some() { "empty" } else { "missing" }, "at least one milestone");
    let mut milestones: Vec<Milestone> = Vec::with_capacity(items.len());
    for (i, v) in items.iter().enumerate() {
        let m = milestone::<M>(v, &index("/milestones", i))?;
        if M::CHECK {
            for name in ::core::iter::once(&m.id).chain(&m.aliases) {
                let clash = milestones.iter().position(|o| o.id == *name || o.aliases.contains(name));
                if let Some(j) = clash {
                    let what = if *name == m.id { "/id" } else { "/aliases" };
                    return err(&(index("/milestones", i) + what), format!("\"{name}\" is already used by /milestones/{j}"), "ids and aliases unique across milestones");
                }
            }
        }
        milestones.push(m);
    }
    if M::CHECK {
        check_milestone_references(&milestones)?;
        let values: Vec<usize> = milestones.iter().enumerate().filter(|(_, m)| m.value).map(|(i, _)| i).collect();
        match values.as_slice() {
            [_] => {}
            [] => return err("/milestones", "no milestone has \"value\": true", "exactly one value milestone"),
            [first, second, ..] => {
                return err(&format!("/milestones/{second}/value"), format!("a second value milestone (the first is /milestones/{first})"), "exactly one value milestone")
            }
        }
    }

    let rules = top.array("capture", MAX_RULES, "an array of capture rules")?;
    let mut capture = Vec::with_capacity(rules.len());
    for (i, v) in rules.iter().enumerate() {
        capture.push(capture_rule::<M>(v, &index("/capture", i))?);
    }

    let caps = match top.get("caps") {
        None => TipCaps::default(),
        Some(v) => {
            let o = Obj::<M>::new(v, "/caps".into(), &["maxTipsPerSession", "minGapBetweenTips", "maxPerSession", "maxPerDay", "minGapBetweenSurveys"])?;
            let d = TipCaps::default();
            let max_tips_per_session = o.whole_or("maxTipsPerSession", d.max_tips_per_session, 0.0, "a whole number ≥ 0")?;
            // Unset, the budget is the tip cap a plan already has (and a day at least one
            // session's worth), so plans written before the budget keep their behaviour.
            let max_per_session = o.whole_or("maxPerSession", max_tips_per_session, 0.0, "a whole number ≥ 0")?;
            TipCaps {
                max_tips_per_session,
                min_gap_ms: o.duration_opt("minGapBetweenTips")?.unwrap_or(d.min_gap_ms),
                max_per_session,
                max_per_day: o.whole_or("maxPerDay", d.max_per_day.max(max_per_session), 0.0, "a whole number ≥ 0")?,
                min_gap_between_surveys_ms: o.duration_opt("minGapBetweenSurveys")?.unwrap_or(d.min_gap_between_surveys_ms),
            }
        }
    };

    // The health section is the collector's to validate (`super::health`, native builds); a
    // tip needs only its account milestone ids to check `accountMilestone` against.
    let account_milestones: Vec<&str> = if M::CHECK {
        doc.get("health")
            .and_then(|h| h.get("accountMilestones"))
            .and_then(Value::as_array)
            .unwrap_or(&[])
            .iter()
            .filter_map(|m| m.get("id").and_then(Value::as_str))
            .collect()
    } else {
        Vec::new()
    };
    let tip_items = top.array("tips", MAX_TIPS, "an array of tips")?;
    let mut tips: Vec<Tip> = Vec::with_capacity(tip_items.len());
    for (i, v) in tip_items.iter().enumerate() {
        let p = index("/tips", i);
        let t = tip::<M>(v, &p, &milestones, &account_milestones)?;
        if M::CHECK {
            if let Some(j) = tips.iter().position(|o| o.id == t.id) {
                return err(&(p + "/id"), format!("\"{}\" is already used by /tips/{j}", t.id), "a unique tip id");
            }
        }
        tips.push(t);
    }
    let survey_items = top.array("surveys", MAX_SURVEYS, "an array of surveys")?;
    let mut surveys: Vec<Survey> = Vec::with_capacity(survey_items.len());
    for (i, v) in survey_items.iter().enumerate() {
        let p = index("/surveys", i);
        let s = survey::<M>(v, &p, &milestones)?;
        if M::CHECK {
            if let Some(j) = surveys.iter().position(|o| o.id == s.id) {
                return err(&(p + "/id"), format!("\"{}\" is already used by /surveys/{j}", s.id), "a unique survey id");
            }
        }
        surveys.push(s);
    }
    let holdouts = match top.get("holdouts") {
        None => Holdouts::default(),
        Some(v) => {
            let o = Obj::<M>::new(v, "/holdouts".into(), &["salt", "globalPercent"])?;
            Holdouts {
                salt: o.str_req("salt", MAX_ID, "the project's salt for holdout assignment: a string of 1 to 64 bytes")?,
                global_percent: percent::<M>(o.get("globalPercent"), &o.at("globalPercent"))?,
            }
        }
    };
    let prompts = prompts::prompts::<M>(top.array("prompts", usize::MAX, "an array of prompts")?, &milestones)?;
    Ok(Plan { version, product, default_locale, milestones, capture, tips, surveys, caps, holdouts, prompts })
}

fn survey<M: Mode>(v: &Value, ptr: &str, milestones: &[Milestone]) -> Result<Survey, Failed> {
    let o = Obj::<M>::new(
        v,
        ptr.into(),
        &["id", "kind", "scale", "question", "followUp", "when", "delay", "sample", "recontact", "askLater", "position", "controlPercent"],
    )?;
    let id = o.id("id")?;
    let kind = o.choice("kind", &SurveyKind::ALL, None)?;
    let scale = match o.get("scale") {
        None => CsatScale::Faces,
        Some(_) if M::CHECK && kind != SurveyKind::Csat => return err(&o.at("scale"), "only used by \"kind\": \"csat\"", "no \"scale\" on this kind"),
        Some(_) => o.choice("scale", &[("faces", CsatScale::Faces), ("1-5", CsatScale::Five)], None)?,
    };
    let follow_up = match o.get("followUp") {
        None => FollowUp::default(),
        Some(f @ Value::Obj(entries)) if kind == SurveyKind::Nps && entries.iter().any(|(k, _)| ["detractor", "passive", "promoter"].contains(&k.as_str())) => {
            let g = Obj::<M>::new(f, o.at("followUp"), &["detractor", "passive", "promoter", "all"])?;
            FollowUp { all: g.text("all", false)?, detractor: g.text("detractor", false)?, passive: g.text("passive", false)?, promoter: g.text("promoter", false)? }
        }
        Some(_) if M::CHECK && kind == SurveyKind::Question => {
            return err(&o.at("followUp"), "a follow-up on an open question", "no \"followUp\" on a question survey")
        }
        Some(_) => FollowUp { all: o.text("followUp", true)?, ..FollowUp::default() },
    };
    let w = Obj::<M>::new(o.required("when", WHEN_EXPECTED)?, o.at("when"), &["milestone", "event", "where", "afterSignup", "path", "hash"])?;
    let path = w.get("path").map(|p| pattern::<M>(p, &w.at("path"), '/')).transpose()?;
    let hash = w.get("hash").map(|p| pattern::<M>(p, &w.at("hash"), '#')).transpose()?;
    if M::CHECK {
        let triggers = ["milestone", "event", "afterSignup"].iter().filter(|k| w.get(k).is_some()).count();
        if triggers > 1 {
            return err(&w.ptr, "more than one of \"milestone\", \"event\" and \"afterSignup\"", WHEN_EXPECTED);
        }
        if w.get("where").is_some() && w.get("event").is_none() {
            return err(&w.at("where"), "filters without \"event\"", "\"where\" beside an \"event\"");
        }
    }
    let when = if let Some(m) = w.get("milestone") {
        SurveyWhen::Milestone(milestone_ref::<M>(m, &w.at("milestone"), milestones)?)
    } else if let Some(e) = w.get("event") {
        SurveyWhen::Event { event: event_name::<M>(e, &w.at("event"))?, filters: filters(&w)? }
    } else if w.get("afterSignup").is_some() {
        SurveyWhen::AfterSignup(w.duration_opt("afterSignup")?.unwrap_or(0))
    } else if path.is_some() || hash.is_some() {
        SurveyWhen::Page
    } else {
        return bad!(&w.ptr, "no condition", WHEN_EXPECTED);
    };
    let sample = match o.get("sample") {
        None => 100.0,
        Some(Value::Num(n)) if !M::CHECK || (0.0..=100.0).contains(n) => *n,
        Some(v) => return bad!(&o.at("sample"), found(v), "a percentage from 0 to 100"),
    };
    let recontact = match o.get("recontact") {
        None => Recontact::Once,
        Some(Value::Str(s)) if s == "once" => Recontact::Once,
        Some(Value::Str(s)) if s == "until_answered" => Recontact::UntilAnswered,
        Some(r @ Value::Obj(_)) => {
            let r = Obj::<M>::new(r, o.at("recontact"), &["every"])?;
            match r.duration_opt("every")? {
                Some(ms) if ms > 0 => Recontact::Every(ms),
                _ => return bad!(&r.ptr, "missing or zero \"every\"", RECONTACT_EXPECTED),
            }
        }
        Some(v) => return bad!(&o.at("recontact"), found(v), RECONTACT_EXPECTED),
    };
    Ok(Survey {
        question: o.text("question", true)?,
        delay_ms: o.duration_opt("delay")?.unwrap_or(0),
        ask_later_ms: o.duration_opt("askLater")?.unwrap_or(DEFAULT_ASK_LATER_MS),
        corner: o.choice("position", &Corner::ALL, Some(Corner::BottomRight))?,
        control_percent: percent::<M>(o.get("controlPercent"), &o.at("controlPercent"))?,
        id,
        kind,
        scale,
        follow_up,
        when,
        path,
        hash,
        sample,
        recontact,
    })
}

const WHEN_EXPECTED: &str = "one of {\"milestone\": id}, {\"event\": name, \"where\": filters}, {\"afterSignup\": \"14d\"}, optionally with \"path\"/\"hash\" (or those alone)";
const RECONTACT_EXPECTED: &str = "\"once\", \"until_answered\" or {\"every\": \"90d\"}";

fn milestone<M: Mode>(v: &Value, ptr: &str) -> Result<Milestone, Failed> {
    let o = Obj::<M>::new(v, ptr.into(), &["id", "aliases", "title", "description", "kind", "condition", "due", "required", "value"])?;
    let id = o.id("id")?;
    check!(!RESERVED_IDS.contains(&id.as_str()), &o.at("id"), format!("\"{id}\" is reserved for the engine's own events"), "another id");
    let mut aliases = Vec::new();
    for (i, a) in o.array("aliases", 20, "an array of former ids")?.iter().enumerate() {
        aliases.push(self::id::<M>(a, &index(&o.at("aliases"), i))?);
    }
    let kind = o.choice("kind", &[("feature", MilestoneKind::Feature), ("customer", MilestoneKind::Customer)], Some(MilestoneKind::Feature))?;
    let condition = o.get("condition").map(|c| condition::<M>(c, &o.at("condition"))).transpose()?;
    // Trusting, a feature milestone without a condition is simply never detected.
    check!(condition.is_some() || kind != MilestoneKind::Feature, ptr, "missing \"condition\"", "a condition for a feature milestone (or \"kind\": \"customer\")");
    Ok(Milestone {
        title: o.text("title", true)?,
        description: o.text("description", false)?,
        due_ms: o.duration_opt("due")?,
        required: o.bool_or("required", true)?,
        value: o.bool_or("value", false)?,
        id,
        aliases,
        kind,
        condition,
    })
}

fn condition<M: Mode>(v: &Value, ptr: &str) -> Result<Condition, Failed> {
    let o = Obj::<M>::new(v, ptr.into(), &["event", "where", "count", "after"])?;
    let event = event_name::<M>(o.required("event", EVENT_EXPECTED)?, &o.at("event"))?;
    let count = o.whole_or("count", 1, 1.0, "a whole number from 1 to 1000000")?;
    let after = o.id_opt("after")?;
    Ok(Condition { event, filters: filters(&o)?, count, after })
}

/// An object's `where`: property filters.
fn filters<M: Mode>(o: &Obj<M>) -> Result<Vec<Filter>, Failed> {
    let mut filters = Vec::new();
    if let Some(w) = o.get("where") {
        let wp = o.at("where");
        let Some(entries) = w.as_object() else {
            return bad!(&wp, found(w), "an object of property filters such as {\"plan\": \"pro\"}");
        };
        for (prop, f) in entries {
            filters.push(Filter { prop: prop.clone(), op: op::<M>(f, &child(&wp, prop))? });
        }
    }
    Ok(filters)
}

const OP_EXPECTED: &str = "a value to equal, or one object of eq, ne, in, gt, gte, lt, lte, exists, contains";

fn op<M: Mode>(v: &Value, ptr: &str) -> Result<Op, Failed> {
    let Value::Obj(entries) = v else {
        return Ok(Op::Eq(v.clone()));
    };
    let [(name, arg)] = entries.as_slice() else {
        return bad!(ptr, format!("an object with {} fields", entries.len()), OP_EXPECTED);
    };
    let p = child(ptr, name);
    let num = |arg: &Value| arg.as_f64().map_or_else(|| bad!(&p, found(arg), "a number"), Ok);
    Ok(match name.as_str() {
        "eq" => Op::Eq(arg.clone()),
        "ne" => Op::Ne(arg.clone()),
        "in" => match arg {
            Value::Arr(items) if !(M::CHECK && items.is_empty()) => Op::In(items.clone()),
            _ => return bad!(&p, found(arg), "a non-empty array of values"),
        },
        "gt" => Op::Gt(num(arg)?),
        "gte" => Op::Gte(num(arg)?),
        "lt" => Op::Lt(num(arg)?),
        "lte" => Op::Lte(num(arg)?),
        "exists" => match arg {
            Value::Bool(b) => Op::Exists(*b),
            _ => return bad!(&p, found(arg), "true or false"),
        },
        "contains" => Op::Contains(string::<M>(arg, &p, MAX_TEXT, "a non-empty string")?),
        _ => return bad!(&p, "unknown operator", OP_EXPECTED),
    })
}

/// Checks `after` references: they must name another milestone, and never form a cycle
/// (a cycle would make every milestone in it unreachable). The validator's only.
fn check_milestone_references(milestones: &[Milestone]) -> Result<(), Failed> {
    fn after_of(m: &Milestone) -> Option<&str> {
        m.condition.as_ref().and_then(|c| c.after.as_deref())
    }
    for (i, m) in milestones.iter().enumerate() {
        let Some(after) = after_of(m) else { continue };
        let ptr = format!("/milestones/{i}/condition/after");
        if after == m.id {
            return err(&ptr, "refers to its own milestone", "the id of another milestone");
        }
        if !milestones.iter().any(|o| o.id == after) {
            return err(&ptr, format!("no milestone has id \"{after}\""), "the id of another milestone");
        }
        let mut seen = 0;
        let mut next = Some(after);
        while let Some(id) = next {
            if id == m.id {
                return err(&ptr, format!("\"after\" chain from \"{}\" leads back to it", m.id), "milestones ordered without a cycle");
            }
            seen += 1;
            if seen > milestones.len() {
                break;
            }
            next = milestones.iter().find(|o| o.id == id).and_then(after_of);
        }
    }
    Ok(())
}

fn capture_rule<M: Mode>(v: &Value, ptr: &str) -> Result<CaptureRule, Failed> {
    let o = Obj::<M>::new(v, ptr.into(), &["event", "on", "selector", "path", "hash", "props"])?;
    let event = event_name::<M>(o.required("event", EVENT_EXPECTED)?, &o.at("event"))?;
    #[derive(Clone, Copy)]
    enum On {
        Click,
        Submit,
        Appear,
        View,
    }
    let on = o.choice("on", &[("click", On::Click), ("submit", On::Submit), ("view", On::View), ("appear", On::Appear)], None)?;
    let on = match on {
        On::View => {
            check!(o.get("selector").is_none(), &o.at("selector"), "not used by \"on\": \"view\"", "\"path\" and/or \"hash\" patterns");
            let path = o.get("path").map(|p| pattern::<M>(p, &o.at("path"), '/')).transpose()?;
            let hash = o.get("hash").map(|p| pattern::<M>(p, &o.at("hash"), '#')).transpose()?;
            if path.is_none() && hash.is_none() {
                return if M::CHECK {
                    err(ptr, "missing \"path\" and \"hash\"", "a \"path\" or \"hash\" pattern for a view rule")
                } else {
                    Err(unreadable(o.at("path")).into())
                };
            }
            Capture::View { path, hash }
        }
        other => {
            for key in ["path", "hash"] {
                check!(o.get(key).is_none(), &o.at(key), "only used by \"on\": \"view\"", "\"selector\" for click, submit and appear rules");
            }
            let selector = selector::<M>(o.required("selector", SELECTOR_EXPECTED)?, &o.at("selector"))?;
            match other {
                On::Click => Capture::Click { selector },
                On::Submit => Capture::Submit { selector },
                _ => Capture::Appear { selector },
            }
        }
    };
    let props = match o.get("props") {
        None => Vec::new(),
        Some(Value::Obj(entries)) => entries.clone(),
        Some(other) => return bad!(&o.at("props"), found(other), "an object of properties to add"),
    };
    Ok(CaptureRule { event, on, props })
}

/// A capture rule read without checks or messages (the tracker's way, see
/// [`Plan::capture_only`]); `Err` names the field it could not read.
fn read_capture_rule(v: &Value) -> Result<CaptureRule, &'static str> {
    let text = |key: &'static str| match v.get(key) {
        Some(Value::Str(s)) if !s.is_empty() => Ok(Some(s.clone())),
        None | Some(Value::Null) => Ok(None),
        Some(_) => Err(key),
    };
    let event = text("event")?.ok_or("event")?;
    let on = match (text("on")?.as_deref(), text("selector")?) {
        (Some("view"), _) => {
            let (path, hash) = (text("path")?.map(Pattern), text("hash")?.map(Pattern));
            if path.is_none() && hash.is_none() {
                return Err("path");
            }
            Capture::View { path, hash }
        }
        (Some("click"), Some(selector)) => Capture::Click { selector },
        (Some("submit"), Some(selector)) => Capture::Submit { selector },
        (Some("appear"), Some(selector)) => Capture::Appear { selector },
        (Some("click" | "submit" | "appear"), None) => return Err("selector"),
        _ => return Err("on"),
    };
    let props = match v.get("props") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Obj(entries)) => entries.clone(),
        Some(_) => return Err("props"),
    };
    Ok(CaptureRule { event, on, props })
}

/// A milestone id this plan defines. Trusting, the id is taken as written (see
/// [`Plan::trusting`] for what an unknown one does).
fn milestone_ref<M: Mode>(v: &Value, ptr: &str, milestones: &[Milestone]) -> Result<String, Failed> {
    let id = id::<M>(v, ptr)?;
    check!(milestones.iter().any(|m| m.id == id), ptr, format!("no milestone has id \"{id}\""), "the id of a milestone in this plan");
    Ok(id)
}

fn tip<M: Mode>(v: &Value, ptr: &str, milestones: &[Milestone], account_milestones: &[&str]) -> Result<Tip, Failed> {
    let o = Obj::<M>::new(
        v,
        ptr.into(),
        &["id", "kind", "milestone", "accountMilestone", "target", "title", "body", "placement", "trigger", "window", "priority", "cap", "steps", "cta", "controlPercent"],
    )?;
    let id = o.id("id")?;
    let kind = o.choice("kind", &TipKind::ALL, None)?;
    let milestone = o.get("milestone").map(|m| milestone_ref::<M>(m, &o.at("milestone"), milestones)).transpose()?;
    let account_milestone = match o.get("accountMilestone") {
        None => None,
        Some(m) => {
            let account = self::id::<M>(m, &o.at("accountMilestone"))?;
            check!(
                account_milestones.contains(&account.as_str()),
                &o.at("accountMilestone"),
                format!("no account milestone has id \"{account}\""),
                "the id of an account milestone in /health/accountMilestones"
            );
            Some(account)
        }
    };
    let target = o.get("target").map(|t| selector::<M>(t, &o.at("target"))).transpose()?;
    check!(target.is_some() || !kind.needs_target(), ptr, "missing \"target\"", "a target selector for a tooltip or hotspot");
    let placement = o.choice("placement", &Placement::ALL, Some(Placement::Auto))?;
    let trigger = match o.get("trigger") {
        None => Trigger::default(),
        Some(t) => {
            let t = Obj::<M>::new(t, o.at("trigger"), &["path", "hash", "afterEvent", "delay"])?;
            Trigger {
                path: t.get("path").map(|p| pattern::<M>(p, &t.at("path"), '/')).transpose()?,
                hash: t.get("hash").map(|p| pattern::<M>(p, &t.at("hash"), '#')).transpose()?,
                after_event: t.get("afterEvent").map(|e| event_name::<M>(e, &t.at("afterEvent"))).transpose()?,
                delay_ms: t.duration_opt("delay")?.unwrap_or(0),
            }
        }
    };
    let window = match o.get("window") {
        None => Window::default(),
        Some(w) => {
            let w = Obj::<M>::new(w, o.at("window"), &["from", "until"])?;
            let window = Window {
                from_ms: w.duration_opt("from")?.unwrap_or(0),
                until_ms: w.duration_opt("until")?.unwrap_or(DEFAULT_TIP_WINDOW_MS),
            };
            // Trusting, a window that ends before it starts contains no time: the tip never shows.
            check!(window.until_ms > window.from_ms, &w.at("until"), "not after \"from\"", "a window that ends after it starts");
            window
        }
    };
    let priority = priority::<M>(o.get("priority"), &o.at("priority"))?;
    let cap = match o.get("cap") {
        None => TipCap::default(),
        Some(c) => {
            let c = Obj::<M>::new(c, o.at("cap"), &["maxShows", "minGap", "snooze"])?;
            let d = TipCap::default();
            TipCap {
                max_shows: c.whole_or("maxShows", d.max_shows, 1.0, "a whole number ≥ 1")?,
                min_gap_ms: c.duration_opt("minGap")?.unwrap_or(d.min_gap_ms),
                snooze_ms: c.duration_opt("snooze")?.unwrap_or(d.snooze_ms),
            }
        }
    };
    let mut steps = Vec::new();
    let step_items = o.array("steps", MAX_STEPS, "an array of tour steps")?;
    check!(kind != TipKind::Tour || !step_items.is_empty(), ptr, "a tour without \"steps\"", "at least one step for a tour");
    check!(kind == TipKind::Tour || step_items.is_empty(), &o.at("steps"), "steps on a tip that is not a tour", "\"kind\": \"tour\", or no steps");
    for (i, s) in step_items.iter().enumerate() {
        let s = Obj::<M>::new(s, index(&o.at("steps"), i), &["target", "title", "body", "placement", "advanceOn"])?;
        let advance_on = match s.get("advanceOn") {
            None => None,
            Some(a) => {
                let a = Obj::<M>::new(a, s.at("advanceOn"), &["event", "milestone"])?;
                match (a.get("event"), a.get("milestone")) {
                    (Some(e), None) => Some(Advance::Event(event_name::<M>(e, &a.at("event"))?)),
                    (None, Some(m)) => Some(Advance::Milestone(milestone_ref::<M>(m, &a.at("milestone"), milestones)?)),
                    _ => return bad!(&a.ptr, "not exactly one of \"event\" and \"milestone\"", "{\"event\": name} or {\"milestone\": id}"),
                }
            }
        };
        steps.push(TourStep {
            target: selector::<M>(s.required("target", SELECTOR_EXPECTED)?, &s.at("target"))?,
            title: s.text("title", false)?,
            body: s.text("body", true)?,
            placement: s.choice("placement", &Placement::ALL, Some(Placement::Auto))?,
            advance_on,
        });
    }
    let cta = match o.get("cta") {
        None => None,
        Some(c) => {
            let c = Obj::<M>::new(c, o.at("cta"), &["label", "url", "action"])?;
            let label = c.text("label", true)?;
            let action = match (c.get("url"), c.get("action")) {
                (Some(u), None) => CtaAction::Url(cta_url::<M>(u, &c.at("url"))?),
                (None, Some(a)) => {
                    let s = a.as_str().unwrap_or("");
                    // Trusting, an action this release does not know does nothing when clicked.
                    check!(CTA_ACTIONS.contains(&s), &c.at("action"), found(a), &one_of(&CTA_ACTIONS));
                    CtaAction::Action(s.into())
                }
                _ => return bad!(&c.ptr, "not exactly one of \"url\" and \"action\"", "a \"url\" or an \"action\""),
            };
            Some(Cta { label, action })
        }
    };
    Ok(Tip {
        title: o.text("title", false)?,
        body: o.text("body", kind != TipKind::Tour && kind != TipKind::Checklist)?,
        id,
        kind,
        milestone,
        account_milestone,
        target,
        placement,
        trigger,
        window,
        priority,
        cap,
        steps,
        cta,
        control_percent: percent::<M>(o.get("controlPercent"), &o.at("controlPercent"))?,
    })
}

/// A tip's or prompt's priority: a whole number from -1000 to 1000 (trusting, any number; the
/// cast saturates).
fn priority<M: Mode>(v: Option<&Value>, ptr: &str) -> Result<i32, Failed> {
    match v {
        None => Ok(0),
        Some(Value::Num(n)) if !M::CHECK || (n % 1.0 == 0.0 && n.abs() <= 1000.0) => Ok(*n as i32),
        Some(p) => bad!(ptr, found(p), "a whole number from -1000 to 1000"),
    }
}

impl Condition {
    /// Whether one event counts towards this condition (the `after` gate is the engine's).
    pub fn matches(&self, name: &str, props: &[(String, Value)]) -> bool {
        name == self.event
            && self.filters.iter().all(|f| {
                let v = props.iter().find(|(k, _)| *k == f.prop).map(|(_, v)| v);
                f.op.test(v)
            })
    }
}

impl Op {
    pub fn test(&self, v: Option<&Value>) -> bool {
        let num = v.and_then(Value::as_f64);
        match self {
            Op::Eq(want) => v == Some(want),
            Op::Ne(want) => v != Some(want),
            Op::In(set) => v.is_some_and(|v| set.contains(v)),
            Op::Gt(n) => num.is_some_and(|x| x > *n),
            Op::Gte(n) => num.is_some_and(|x| x >= *n),
            Op::Lt(n) => num.is_some_and(|x| x < *n),
            Op::Lte(n) => num.is_some_and(|x| x <= *n),
            Op::Exists(want) => v.is_some_and(|v| *v != Value::Null) == *want,
            Op::Contains(s) => match v {
                Some(Value::Str(t)) => super::substr::contains(t, s),
                Some(Value::Arr(items)) => items.iter().any(|i| i.as_str() == Some(s)),
                _ => false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    pub(crate) const MINIMAL: &str = r#"{"version":"1","milestones":[
        {"id":"a","title":"A","condition":{"event":"e"}},
        {"id":"b","title":"B","value":true,"condition":{"event":"f","count":2,"after":"a"}}]}"#;

    fn error(text: &str) -> String {
        Plan::parse(text).expect_err("should be refused").to_string()
    }

    #[test]
    fn capture_only_reads_the_same_rules_as_the_full_parse() {
        for text in [include_str!("../../pkg-config/plans/trackly.json"), include_str!("../../pkg-config/plans/shopfront.json")] {
            let plan = Plan::parse(text).expect("example plan");
            let (version, rules) = Plan::capture_only(&json::parse(text).expect("json")).expect("capture");
            assert_eq!((version, rules), (plan.version, plan.capture));
        }
        let bad = json::parse(r#"{"version":"1","capture":[{"event":"x","on":"hover","selector":"a"}]}"#).expect("json");
        assert_eq!(Plan::capture_only(&bad).expect_err("bad rule").pointer, "/capture/0/on");
        // The tracker names the field it cannot read, and ignores sections it does not know.
        for (text, pointer) in [
            (r#"{"capture":[]}"#, "/version"),
            (r#"{"version":"1","capture":{}}"#, "/capture"),
            (r#"{"version":"1","capture":[{"event":"x","on":"view","path":"/a"},{"event":"x","on":"click"}]}"#, "/capture/1/selector"),
            (r#"{"version":"1","capture":[{"event":"x","on":"view"}]}"#, "/capture/0/path"),
            (r#"{"version":"1","capture":[{"on":"click","selector":"a"}]}"#, "/capture/0/event"),
            (r#"{"version":"1","capture":[{"event":"x","on":"submit","selector":"form","props":[1]}]}"#, "/capture/0/props"),
        ] {
            let error = Plan::capture_only(&json::parse(text).expect("json")).expect_err(text);
            assert_eq!(error.pointer, pointer, "{text}");
            assert!(error.message().starts_with(&format!("plan {pointer}: cannot be read")), "{}", error.message());
        }
        let newer = r#"{"version":"2","surveys":[{"id":"nps"}],"capture":[{"event":"x","on":"click","selector":"a","later":1}]}"#;
        let (version, rules) = Plan::capture_only(&json::parse(newer).expect("json")).expect("newer plan");
        assert_eq!((version.as_str(), rules[0].on.selector()), ("2", Some("a")));
    }

    #[test]
    fn the_trusting_reader_builds_the_validators_plan_and_names_what_it_cannot_read() {
        for text in [
            MINIMAL,
            include_str!("../../pkg-config/plans/trackly.json"),
            include_str!("../../pkg-config/plans/shopfront.json"),
            include_str!("../../pkg-config/plans/relay-crm.json"),
        ] {
            let doc = json::parse(text).expect("json");
            assert_eq!(Plan::trusting(&doc), Ok(Plan::from_value(&doc).expect("valid")));
        }
        let doc = json::parse(r#"{"version":"1","milestones":[{"id":"a","title":"A","value":true,"condition":{"event":"e","count":"2"}}]}"#).expect("json");
        assert_eq!(
            Plan::trusting(&doc).expect_err("a string count").message(),
            "plan /milestones/0/condition/count: cannot be read; expected a plan that `onramp-collector plan check` accepts"
        );
        // What only the validator checks: read as written.
        let doc = json::parse(r#"{"version":"1","milestones":[{"id":"a","title":"A","requried":false,"condition":{"event":"e","count":0,"after":"zz"}}]}"#).expect("json");
        let plan = Plan::trusting(&doc).expect("read unchecked");
        assert_eq!(plan.milestones[0].condition.as_ref().map(|c| (c.count, c.after.as_deref())), Some((0, Some("zz"))));
        assert!(plan.milestones[0].required);
    }

    #[test]
    fn a_tips_account_milestone_must_name_one_in_the_health_section() {
        let plan = |health: &str| {
            format!(
                r##"{{"version":"1","milestones":[{{"id":"v","title":"V","value":true,"condition":{{"event":"v"}}}}],{health}
                "tips":[{{"id":"t","kind":"modal","body":"B","accountMilestone":"team3"}}]}}"##
            )
        };
        let ok = Plan::parse(&plan(r#""health":{"accountMilestones":[{"id":"team3","title":"T","event":"invited","count":3}]},"#)).expect("valid");
        assert_eq!(ok.tips[0].account_milestone.as_deref(), Some("team3"));
        let expected = "plan /tips/0/accountMilestone: no account milestone has id \"team3\"; expected the id of an account milestone in /health/accountMilestones";
        assert_eq!(error(&plan("")), expected);
        assert_eq!(error(&plan(r#""health":{"accountMilestones":[{"id":"team","title":"T","milestone":"v"}]},"#)), expected);
        // A milestone id is not an account milestone id.
        assert_eq!(error(&plan(r#""health":{},"#)), expected);
    }

    #[test]
    fn parses_a_minimal_plan_with_defaults() {
        let p = Plan::parse(MINIMAL).expect("valid");
        assert_eq!(p.milestones.len(), 2);
        assert!(p.milestones[0].required);
        assert_eq!(p.milestones[1].condition.as_ref().map(|c| c.count), Some(2));
        assert_eq!(p.value_milestone().map(|m| m.id.as_str()), Some("b"));
        assert_eq!(p.caps, TipCaps::default());
    }

    #[test]
    fn errors_carry_pointer_problem_and_expectation() {
        assert_eq!(
            error(r#"{"version":"1","milestones":[{"id":"a","title":"A","condition":{"event":"e","count":0}}]}"#),
            "plan /milestones/0/condition/count: found 0; expected a whole number from 1 to 1000000"
        );
        assert_eq!(
            error(r#"{"version":"1","milestones":[{"id":"a","title":"A","requried":false,"condition":{"event":"e"}}]}"#),
            "plan /milestones/0/requried: unknown field; expected one of id, aliases, title, description, kind, condition, due, required, value"
        );
        // The reader's own words: serde_json here, the browser's JSON.parse in the SDK.
        #[cfg(not(target_arch = "wasm32"))]
        assert_eq!(error("{"), "plan (document): invalid JSON: EOF while parsing an object at line 1 column 1; expected a JSON document");
    }

    #[test]
    fn surveys_are_validated_with_pointers() {
        let plan = |surveys: &str| {
            String::from(r#"{"version":"1","milestones":[{"id":"a","title":"A","value":true,"condition":{"event":"e"}}],"surveys":"#) + surveys + "}"
        };
        let cases = [
            (r#"[{"id":"s","kind":"stars","question":"Q","when":{"path":"/*"}}]"#, "plan /surveys/0/kind: found \"stars\"; expected one of csat, nps, ces, question"),
            (r#"[{"id":"s","kind":"nps","question":"Q","when":{"milestone":"zz"}}]"#, "plan /surveys/0/when/milestone: no milestone has id \"zz\"; expected the id of a milestone in this plan"),
            (r#"[{"id":"s","kind":"nps","question":"Q","when":{"milestone":"a","event":"e"}}]"#, "plan /surveys/0/when: more than one of \"milestone\", \"event\" and \"afterSignup\"; expected one of {\"milestone\": id}, {\"event\": name, \"where\": filters}, {\"afterSignup\": \"14d\"}, optionally with \"path\"/\"hash\" (or those alone)"),
            (r#"[{"id":"s","kind":"nps","question":"Q","when":{"path":"/*"},"sample":120}]"#, "plan /surveys/0/sample: found 120; expected a percentage from 0 to 100"),
            (r#"[{"id":"s","kind":"nps","question":"Q","when":{"path":"/*"},"scale":"1-5"}]"#, "plan /surveys/0/scale: only used by \"kind\": \"csat\"; expected no \"scale\" on this kind"),
            (r#"[{"id":"s","kind":"csat","question":"Q","when":{"path":"/*"},"recontact":"always"}]"#, "plan /surveys/0/recontact: found \"always\"; expected \"once\", \"until_answered\" or {\"every\": \"90d\"}"),
            (r#"[{"id":"s","kind":"csat","when":{"path":"/*"}}]"#, "plan /surveys/0: missing \"question\"; expected a non-empty string, or an object of locale to string such as {\"en\": \"…\"}"),
            (r#"[{"id":"s","kind":"csat","question":"Q","when":{"path":"/*"}},{"id":"s","kind":"ces","question":"Q","when":{"path":"/*"}}]"#, "plan /surveys/1/id: \"s\" is already used by /surveys/0; expected a unique survey id"),
            (r#"[{"id":"s","kind":"nps","question":"Q","when":{"where":{"x":1}}}]"#, "plan /surveys/0/when/where: filters without \"event\"; expected \"where\" beside an \"event\""),
            (r#"[{"id":"s","kind":"nps","question":"Q","when":{"path":"/*"},"controlPercent":60}]"#, "plan /surveys/0/controlPercent: found 60; expected a percentage from 0 to 50"),
            (r#"[{"id":"s","kind":"nps","question":"Q","when":{"path":"/*"},"controlPercent":"10"}]"#, "plan /surveys/0/controlPercent: found \"10\"; expected a percentage from 0 to 50"),
        ];
        for (surveys, want) in cases {
            assert_eq!(error(&plan(surveys)), want);
        }
        let ok = Plan::parse(&plan(
            r#"[{"id":"n","kind":"nps","question":{"en":"Recommend us?","de":"Empfehlen?"},"when":{"event":"export","where":{"n":{"gte":2}}},
                 "followUp":{"detractor":"What went wrong?","promoter":"What do you love?"},"delay":"5s","sample":50,"recontact":{"every":"90d"},
                 "askLater":"3d","position":"top-left","controlPercent":12.5}]"#,
        ))
        .expect("valid");
        let s = &ok.surveys[0];
        assert_eq!(s.control_percent, 12.5);
        assert_eq!((s.kind, s.sample, s.recontact, s.ask_later_ms, s.corner), (SurveyKind::Nps, 50.0, Recontact::Every(90 * 24 * HOUR_MS), 72 * HOUR_MS, Corner::TopLeft));
        assert_eq!(s.question.get("de-AT", "en"), "Empfehlen?");
        assert!(matches!(&s.when, SurveyWhen::Event { event, filters } if event == "export" && filters.len() == 1));
    }

    #[test]
    fn pointers_escape_slashes_and_tildes() {
        let text = r#"{"version":"1","milestones":[{"id":"a","title":"A","value":true,"condition":{"event":"e","where":{"a/b~":{"bogus":1}}}}]}"#;
        assert_eq!(Plan::parse(text).expect_err("bad op").pointer, "/milestones/0/condition/where/a~1b~0/bogus");
    }

    #[test]
    fn after_cycles_are_refused() {
        let text = r#"{"version":"1","milestones":[
            {"id":"a","title":"A","value":true,"condition":{"event":"e","after":"b"}},
            {"id":"b","title":"B","condition":{"event":"f","after":"a"}}]}"#;
        assert_eq!(
            error(text),
            "plan /milestones/0/condition/after: \"after\" chain from \"a\" leads back to it; expected milestones ordered without a cycle"
        );
    }

    #[test]
    fn conditions_filter_on_props() {
        let text = r#"{"version":"1","milestones":[{"id":"a","title":"A","value":true,"condition":{"event":"e",
            "where":{"plan":"pro","seats":{"gte":3},"tags":{"contains":"x"},"gone":{"exists":false},"c":{"in":["r","g"]}}}}]}"#;
        let c = Plan::parse(text).expect("valid").milestones[0].condition.clone().expect("condition");
        let props = |seats: f64| {
            vec![
                ("plan".to_string(), Value::Str("pro".into())),
                ("seats".to_string(), Value::Num(seats)),
                ("tags".to_string(), Value::Arr(vec![Value::Str("x".into())])),
                ("c".to_string(), Value::Str("g".into())),
            ]
        };
        assert!(c.matches("e", &props(3.0)));
        assert!(!c.matches("e", &props(2.0)));
        assert!(!c.matches("other", &props(3.0)));
    }

    #[test]
    fn globs_match_paths_and_hashes() {
        let p = Pattern("/projects/*".into());
        assert!(p.matches("/projects/42/board"));
        assert!(!p.matches("/project"));
        assert!(Pattern("#/team*".into()).matches("#/team"));
        assert!(Pattern("*a*b*".into()).matches("xxaxxbxx"));
        assert!(!Pattern("/a".into()).matches("/ab"));
    }

    #[test]
    fn text_falls_back_by_language_then_default() {
        let t = Text(vec![("en".into(), "Hi".into()), ("de".into(), "Hallo".into())]);
        assert_eq!(t.get("de-AT", "en"), "Hallo");
        assert_eq!(t.get("fr", "en"), "Hi");
        assert_eq!(Text(vec![("pt".into(), "Olá".into())]).get("fr", "en"), "Olá");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h"), Some(86_400_000));
        assert_eq!(parse_duration("7d"), Some(604_800_000));
        assert_eq!(parse_duration("500ms"), Some(500));
        assert_eq!(parse_duration("h"), None);
        assert_eq!(parse_duration("5y"), None);
    }
}
