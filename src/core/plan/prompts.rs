//! The plan's `prompts`: growth moments shown when a milestone is reached (docs/PLANS.md,
//! docs/EXPERIMENTS.md). Read, validating or trusting, like the rest of the plan (see [`super::Mode`]).

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::{cta_url, err, found, index, milestone_ref, one_of, percent, priority, string, unreadable, Failed, Milestone, Mode, Obj, Text, HOUR_MS, MAX_NAME};
use crate::core::json::Value;

const MAX_PROMPTS: usize = 20;
const DAY_MS: i64 = 24 * HOUR_MS;

/// What a prompt asks for. Only `review` changes a rule: it may not be routed by NPS group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromptKind {
    Invite,
    Upgrade,
    Referral,
    Review,
    Resources,
    Contact,
    Other,
}

impl PromptKind {
    const ALL: [(&'static str, PromptKind); 7] = [
        ("invite", PromptKind::Invite),
        ("upgrade", PromptKind::Upgrade),
        ("referral", PromptKind::Referral),
        ("review", PromptKind::Review),
        ("resources", PromptKind::Resources),
        ("contact", PromptKind::Contact),
        ("other", PromptKind::Other),
    ];
}

/// The answer groups of an NPS survey (`survey_answered`'s `group`).
pub const NPS_GROUPS: [&str; 3] = ["detractor", "passive", "promoter"];

/// What the prompt's call to action does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PromptAction {
    /// Opens an absolute http(s) URL in a new tab, or a path on the page's own site.
    Url(String),
    /// Asks the host app to act: `onramp.on("action", (name, context) => …)` gets this name.
    Host(String),
    /// Copies this text to the clipboard (a referral link); `{userId}` is replaced by the user's id.
    Copy(String),
}

impl PromptAction {
    /// The `action` prop of `prompt_action`.
    pub fn kind(&self) -> &'static str {
        match self {
            PromptAction::Url(_) => "url",
            PromptAction::Host(_) => "host",
            PromptAction::Copy(_) => "copy",
        }
    }
}

/// What counts as the prompt converting: a milestone or a `track` event, within `within_ms` of
/// the call to action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Goal {
    pub milestone: Option<String>,
    pub event: Option<String>,
    pub within_ms: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Prompt {
    pub id: String,
    pub kind: PromptKind,
    /// Shown once this milestone is reached…
    pub milestone: String,
    /// …this long after it (default at once)…
    pub delay_ms: i64,
    /// …for at most this long after that (default 7 days).
    pub window_ms: i64,
    pub title: Text,
    pub body: Text,
    pub cta_label: Text,
    pub action: PromptAction,
    /// Shown only to users whose latest NPS answer is in one of these groups; empty: everyone.
    pub nps_groups: Vec<String>,
    pub goal: Option<Goal>,
    pub priority: i32,
    /// Shown in at most this many sessions (default 2).
    pub max_shows: u32,
    /// "Not now" hides it for this long (default 3 days).
    pub snooze_ms: i64,
    pub control_percent: f64,
}

fn prompt<M: Mode>(v: &Value, ptr: &str, milestones: &[Milestone]) -> Result<Prompt, Failed> {
    let o = Obj::<M>::new(
        v,
        ptr.into(),
        &["id", "kind", "milestone", "delay", "window", "title", "body", "cta", "npsGroups", "goal", "priority", "cap", "controlPercent"],
    )?;
    let kind = o.choice("kind", &PromptKind::ALL, Some(PromptKind::Other))?;
    let milestone = milestone_ref::<M>(o.required("milestone", "the id of the milestone that opens the prompt")?, &o.at("milestone"), milestones)?;
    let c = Obj::<M>::new(o.required("cta", "a call to action: {\"label\", and \"url\", \"action\" or \"copy\"}")?, o.at("cta"), &["label", "url", "action", "copy"])?;
    let action = match (c.get("url"), c.get("action"), c.get("copy")) {
        (Some(u), None, None) => PromptAction::Url(cta_url::<M>(u, &c.at("url"))?),
        (None, Some(a), None) => PromptAction::Host(super::id::<M>(a, &c.at("action"))?),
        (None, None, Some(t)) => PromptAction::Copy(string::<M>(t, &c.at("copy"), 2000, "the text to copy, such as \"https://example.com/r/{userId}\"")?),
        _ => return bad!(&c.ptr, "not exactly one of \"url\", \"action\" and \"copy\"", "a \"url\" to open, an \"action\" for the host app, or a text to \"copy\""),
    };
    let groups = o.array("npsGroups", 3, "an array of NPS groups")?;
    let mut nps_groups = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        let s = g.as_str().unwrap_or("");
        // Trusting, a group this release does not know matches no answer.
        check!(NPS_GROUPS.contains(&s), &index(&o.at("npsGroups"), i), found(g), &one_of(&NPS_GROUPS));
        nps_groups.push(s.to_string());
    }
    // Review gating (asking only happy customers) breaks review sites' rules: a review prompt
    // goes to every group or to none.
    check!(
        kind != PromptKind::Review || nps_groups.is_empty() || nps_groups.len() >= NPS_GROUPS.len(),
        &o.at("npsGroups"),
        "a review prompt for some NPS groups only (review gating)",
        "no npsGroups on a review prompt: every user who is asked gets the same request"
    );
    let goal = match o.get("goal") {
        None => None,
        Some(g) => {
            let g = Obj::<M>::new(g, o.at("goal"), &["milestone", "event", "within"])?;
            let (milestone, event) = match (g.get("milestone"), g.get("event")) {
                (Some(m), None) => (Some(milestone_ref::<M>(m, &g.at("milestone"), milestones)?), None),
                (None, Some(e)) => (None, Some(string::<M>(e, &g.at("event"), MAX_NAME, "an event name")?)),
                _ => return bad!(&g.ptr, "not exactly one of \"milestone\" and \"event\"", "{\"milestone\": id} or {\"event\": name}"),
            };
            Some(Goal { milestone, event, within_ms: g.duration_opt("within")?.unwrap_or(7 * DAY_MS) })
        }
    };
    let priority = priority::<M>(o.get("priority"), &o.at("priority"))?;
    let (max_shows, snooze_ms) = match o.get("cap") {
        None => (2, 3 * DAY_MS),
        Some(cap) => {
            let cap = Obj::<M>::new(cap, o.at("cap"), &["maxShows", "snooze"])?;
            (cap.whole_or("maxShows", 2, 1.0, "a whole number ≥ 1")?, cap.duration_opt("snooze")?.unwrap_or(3 * DAY_MS))
        }
    };
    Ok(Prompt {
        id: o.id("id")?,
        kind,
        milestone,
        delay_ms: o.duration_opt("delay")?.unwrap_or(0),
        window_ms: o.duration_opt("window")?.unwrap_or(7 * DAY_MS),
        title: o.text("title", false)?,
        body: o.text("body", true)?,
        cta_label: c.text("label", true)?,
        action,
        nps_groups,
        goal,
        priority,
        max_shows,
        snooze_ms,
        control_percent: percent::<M>(o.get("controlPercent"), &o.at("controlPercent"))?,
    })
}

/// The plan's `prompts`, with unique ids.
pub(super) fn prompts<M: Mode>(items: &[Value], milestones: &[Milestone]) -> Result<Vec<Prompt>, Failed> {
    check!(items.len() <= MAX_PROMPTS, "/prompts", [&items.len().to_string(), " items"].concat(), "at most 20 prompts");
    let mut out: Vec<Prompt> = Vec::with_capacity(items.len());
    for (i, v) in items.iter().enumerate() {
        let p = index("/prompts", i);
        let prompt = prompt::<M>(v, &p, milestones)?;
        if let Some(j) = out.iter().position(|o| M::CHECK && o.id == prompt.id) {
            return err(&(p + "/id"), ["\"", &prompt.id, "\" is already used by /prompts/", &j.to_string()].concat(), "a unique prompt id");
        }
        out.push(prompt);
    }
    Ok(out)
}
