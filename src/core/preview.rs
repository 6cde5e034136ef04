//! The preview panel's words: the scheduler's reasons ([`tips::Why`]) and the plan's
//! milestones, rules and tips as a product manager reads them. Pure, so the wording is tested
//! with plain `cargo test`; the browser layer (`src/web/preview`) only puts it on screen.
//!
//! Only the guide build's preview uses this; `format!` is fine here (the tracker never links it).

use super::engine::UserState;
use super::plan::{Capture, CaptureRule, Milestone, MilestoneKind, Op, Plan, Tip};
use super::tips::{self, Verdict, Why};

/// A span as people say it: "20 s", "45 min", "3 h", "2 d".
pub fn span(ms: i64) -> String {
    let ms = ms.max(0);
    let (s, min, h) = (ms / 1000, ms / 60_000, ms / 3_600_000);
    match () {
        _ if s < 60 => format!("{s} s"),
        _ if min < 60 => format!("{min} min"),
        _ if h < 48 => format!("{h} h"),
        _ => format!("{} d", h / 24),
    }
}

/// "3 h ago" or "in 3 h", from `now`.
pub fn relative(at: i64, now: i64) -> String {
    if at <= now {
        format!("{} ago", span(now - at))
    } else {
        format!("in {}", span(at - now))
    }
}

/// What the panel says about one tip, with the scheduler's verdict it explains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TipLine {
    pub verdict: Verdict,
    pub why: Why,
    /// "shown 2 of 3 times · dismissed 4 min ago": the user's record of this tip.
    pub state: String,
    /// Why it is, or is not, on screen now.
    pub reason: String,
}

/// Facts about this page the scheduler does not hold.
#[derive(Clone, Copy, Debug)]
pub struct Seen<'a> {
    /// On screen now.
    pub on_screen: bool,
    /// The tip that holds the user's attention (one at a time), when it is another one.
    pub focus: Option<&'a Tip>,
    /// `location.hash` and `pathname`, for "other page" reasons.
    pub hash: &'a str,
    pub path: &'a str,
}

/// The line for tip `i`: [`tips::explain`]'s verdict and reason, in words.
pub fn tip_line(plan: &Plan, state: &UserState, i: usize, page: &tips::Page, seen: Seen) -> Option<TipLine> {
    let tip = plan.tips.get(i)?;
    let (verdict, why) = tips::explain(plan, state, i, page);
    let now = page.now;
    let milestone_at = |id: &str| state.reached.get(id).copied();
    let code = |s: &str| format!("`{s}`");
    let reason = match why {
        Why::Ready if seen.on_screen => "on screen".to_string(),
        Why::Ready => match seen.focus {
            Some(other) if other.id != tip.id && tip.kind != super::plan::TipKind::Checklist => {
                format!("ready, waiting: {} has the user's attention (one tip at a time)", code(&other.id))
            }
            _ => "ready to show".to_string(),
        },
        Why::Requested => "shown on request".to_string(),
        Why::Anonymous => "visitor not identified yet: tips are for signed-up users".to_string(),
        Why::HeldOut(super::holdout::Withheld::Global) => "user is in the global holdout: no guidance".to_string(),
        Why::HeldOut(super::holdout::Withheld::Control) => "user is in this tip's control group".to_string(),
        Why::MilestoneReached => {
            let m = tip.milestone.as_deref().unwrap_or_default();
            match milestone_at(m) {
                Some(at) => format!("milestone {} already reached ({})", code(m), relative(at, now)),
                None => format!("milestone {} already reached", code(m)),
            }
        }
        Why::AccountMilestoneReached { at } => {
            format!("account milestone {} already reached by the account ({})", code(tip.account_milestone.as_deref().unwrap_or_default()), relative(at, now))
        }
        Why::ValueReached => {
            let m = plan.value_milestone().map_or("", |m| m.id.as_str());
            format!("value milestone {} reached: tips have done their job", code(m))
        }
        Why::ChecklistComplete => "every required milestone is reached".to_string(),
        Why::TourFinished => "tour finished".to_string(),
        Why::Dismissed { at } => format!("dismissed {}", relative(at, now)),
        Why::WindowEnded { at } => format!("window ended {}", relative(at, now)),
        Why::TargetMissing => {
            format!("target {} not found on this page", code(tip.target.as_deref().or(tip.steps.first().map(|s| s.target.as_str())).unwrap_or("")))
        }
        Why::OtherPage => {
            let t = &tip.trigger;
            let want = match (&t.path, &t.hash) {
                (Some(p), Some(h)) => format!("path {} and hash {}", code(&p.0), code(&h.0)),
                (Some(p), None) => format!("path {}", code(&p.0)),
                (None, Some(h)) => format!("hash {}", code(&h.0)),
                (None, None) => String::new(),
            };
            let here = if seen.hash.is_empty() { seen.path } else { seen.hash };
            format!("only on pages matching {want} (this page: {})", code(here))
        }
        Why::WaitingForEvent => {
            format!("waiting for event {} in this page view", code(tip.trigger.after_event.as_deref().unwrap_or("")))
        }
        Why::Capped { shown, max } => format!("capped: shown {shown} of {max} times"),
        Why::SessionCapped { shown, max } => format!("capped: {shown} shown this session (at most {max})"),
        Why::Budget(crate::core::budget::Spent::Session { shown, max }) => {
            format!("fatigue budget: {shown} tips, surveys or prompts shown this session (at most {max})")
        }
        Why::Budget(crate::core::budget::Spent::Day { shown, max, since }) => {
            format!("fatigue budget: {shown} tips, surveys or prompts shown today (at most {max}); frees up {}", relative(since + crate::core::budget::DAY_MS, now))
        }
        Why::SnoozedThisSession { until } => format!("snoozed, back in a later session ({})", relative(until, now)),
        Why::WindowOpens { at } => format!("window opens {}", relative(at, now)),
        Why::Delay { at } => format!("trigger delay: shows {}", relative(at, now)),
        Why::Snoozed { at } => format!("snoozed: back {}", relative(at, now)),
        Why::TipGap { at } => format!("its own gap between showings: next {}", relative(at, now)),
        Why::SessionGap { at } => format!("gap between tips: next {}", relative(at, now)),
    };
    let ts = state.tips.get(&tip.id);
    let mut parts = vec![format!("shown {} of {} times", ts.map_or(0, |t| t.shown.total()), tip.cap.max_shows)];
    if let Some(at) = ts.and_then(|t| t.dismissed) {
        parts.push(format!("dismissed {}", relative(at, now)));
    }
    if let Some(until) = ts.and_then(|t| t.snoozed_until).filter(|u| *u > now) {
        parts.push(format!("snoozed until {}", relative(until, now)));
    }
    if tip.kind == super::plan::TipKind::Tour {
        parts.push(format!("step {} of {}", tips::step(state, tip).min(tip.steps.len()) + 1, tip.steps.len()));
    }
    Some(TipLine { verdict, why, state: parts.join(" · "), reason })
}

/// A milestone's condition: "event `project_created` after `signed_up`".
pub fn condition(m: &Milestone) -> String {
    let Some(c) = m.condition.as_ref().filter(|_| m.kind != MilestoneKind::Customer) else {
        return "confirmed by the user (\"mark as done\") or a server call".to_string();
    };
    let mut out = format!("event `{}`", c.event);
    for f in &c.filters {
        let op = match &f.op {
            Op::Eq(v) => format!("= {}", v.to_json()),
            Op::Ne(v) => format!("≠ {}", v.to_json()),
            Op::In(vs) => format!("in [{}]", vs.iter().map(|v| v.to_json()).collect::<Vec<_>>().join(", ")),
            Op::Gt(n) => format!("> {n}"),
            Op::Gte(n) => format!("≥ {n}"),
            Op::Lt(n) => format!("< {n}"),
            Op::Lte(n) => format!("≤ {n}"),
            Op::Exists(b) => format!("{} present", if *b { "is" } else { "not" }),
            Op::Contains(s) => format!("contains \"{s}\""),
        };
        out.push_str(&format!(" where {} {op}", f.prop));
    }
    if c.count > 1 {
        out.push_str(&format!(" × {}", c.count));
    }
    if let Some(after) = &c.after {
        out.push_str(&format!(" after `{after}`"));
    }
    out
}

/// A capture rule: "click on `#upload-file` → `file_uploaded`".
pub fn rule(r: &CaptureRule) -> String {
    let on = match &r.on {
        Capture::View { path, hash } => {
            let mut s = String::from("view of");
            if let Some(p) = path {
                s.push_str(&format!(" path `{}`", p.0));
            }
            if let Some(h) = hash {
                s.push_str(&format!(" hash `{}`", h.0));
            }
            s
        }
        other => format!("{} on `{}`", other.name(), other.selector().unwrap_or_default()),
    };
    format!("{on} → `{}`", r.event)
}

/// Which capture rule an event the SDK recorded came from: the first rule with its name, kind
/// and selector (the props auto-capture adds, see `src/web/capture.rs`).
pub fn rule_of(plan: &Plan, name: &str, props: &[(String, super::json::Value)]) -> Option<usize> {
    let prop = |k: &str| props.iter().find(|(p, _)| p == k).and_then(|(_, v)| v.as_str());
    let captured = prop("captured")?;
    plan.capture.iter().position(|r| {
        r.event == name && r.on.name() == captured && (r.on.selector().is_none() || r.on.selector() == prop("selector"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::engine::SessionState;
    use crate::core::json::Value;
    use crate::core::tips::Page;

    const H: i64 = 3_600_000;
    const SIGNUP: i64 = 1_700_000_000_000;

    fn plan() -> Plan {
        Plan::parse(include_str!("../../pkg-config/plans/trackly.json")).expect("demo plan")
    }

    fn page(now: i64, hash: &str) -> Page<'_> {
        Page { now, path: "/demo/", hash, route_since: now - 10_000, seen: &[], skip: &[], forced: None, review: None, user: Some("u1") }
    }

    fn user(now: i64) -> UserState {
        UserState { signup: Some(SIGNUP), session: SessionState { start: now - 1000, last: now, ..SessionState::default() }, ..UserState::default() }
    }

    fn seen<'a>(hash: &'a str) -> Seen<'a> {
        Seen { on_screen: false, focus: None, hash, path: "/demo/" }
    }

    #[test]
    fn spans_read_as_people_say_them() {
        assert_eq!([span(20_000), span(45 * 60_000), span(3 * H), span(50 * H)], ["20 s", "45 min", "3 h", "2 d"]);
        assert_eq!(relative(SIGNUP, SIGNUP + 3 * H), "3 h ago");
        assert_eq!(relative(SIGNUP + 90_000, SIGNUP), "in 1 min");
    }

    #[test]
    fn the_issues_examples_read_as_written() {
        let p = plan();
        let i = |id: &str| p.tips.iter().position(|t| t.id == id).expect("tip");
        // create_project: 24-hour window; 27 h after sign-up it ended 3 h ago.
        let now = SIGNUP + 27 * H;
        let line = tip_line(&p, &user(now), i("create_project"), &page(now, "#/projects"), seen("#/projects")).expect("line");
        assert_eq!(line.reason, "window ended 3 h ago");
        assert_eq!(line.verdict, Verdict::Never);
        // Target missing on this route (the tips layer gave up looking).
        let now = SIGNUP + H;
        let skip = [i("create_project")];
        let pg = Page { skip: &skip, ..page(now, "#/projects") };
        assert_eq!(tip_line(&p, &user(now), skip[0], &pg, seen("#/projects")).expect("line").reason, "target `#new-project` not found on this page");
        // Milestone reached 2 h ago.
        let mut s = user(now);
        s.reached.insert("project_created".into(), now - 2 * H);
        let line = tip_line(&p, &s, i("create_project"), &page(now, "#/projects"), seen("#/projects")).expect("line");
        assert_eq!(line.reason, "milestone `project_created` already reached (2 h ago)");
        // The session cap: 3 tips this session.
        let mut s = user(now);
        s.session.tips_shown.add("tab", 3);
        let line = tip_line(&p, &s, i("create_project"), &page(now, "#/projects"), seen("#/projects")).expect("line");
        assert_eq!(line.reason, "capped: 3 shown this session (at most 3)");
        // Ready, but another tip holds the user's attention.
        let welcome = &p.tips[i("welcome")];
        let pg = page(now, "#/projects");
        let line = tip_line(&p, &user(now), i("create_project"), &pg, Seen { focus: Some(welcome), ..seen("#/projects") }).expect("line");
        assert_eq!((line.verdict, line.reason.as_str()), (Verdict::Show, "ready, waiting: `welcome` has the user's attention (one tip at a time)"));
        let line = tip_line(&p, &user(now), i("create_project"), &pg, Seen { on_screen: true, ..seen("#/projects") }).expect("line");
        assert_eq!(line.reason, "on screen");
        // Another page.
        let line = tip_line(&p, &user(now), i("create_project"), &page(now, "#/team"), seen("#/team")).expect("line");
        assert_eq!(line.reason, "only on pages matching hash `#/projects*` (this page: `#/team`)");
    }

    #[test]
    fn conditions_and_rules_in_words() {
        let p = plan();
        assert_eq!(condition(&p.milestones[1]), "event `project_created` after `signed_up`");
        assert!(condition(&p.milestones[4]).starts_with("confirmed by the user"));
        assert_eq!(rule(&p.capture[3]), "click on `#upload-file` → `file_uploaded`");
        assert_eq!(rule(&p.capture[4]), "view of hash `#/team*` → `team_viewed`");
        let props = vec![("captured".to_string(), Value::Str("click".into())), ("selector".into(), Value::Str("#upload-file".into()))];
        assert_eq!(rule_of(&p, "file_uploaded", &props), Some(3));
        assert_eq!(rule_of(&p, "file_uploaded", &[]), None, "a track() call is no rule's");
        let view = vec![("captured".to_string(), Value::Str("view".into())), ("path".into(), Value::Str("/".into()))];
        assert_eq!(rule_of(&p, "team_viewed", &view), Some(4));
    }
}
