//! Customer health: the plan's `health` and `lifecycle` sections, and the pure scoring of one
//! user (or one account) from facts the collector gathered (docs/HEALTH.md).
//!
//! Native builds only (the collector and `plan check`): the SDK never scores anyone, and the
//! plan parser in the wasm accepts these two sections unread, so they cost the browser nothing.
//!
//! The score is transparent by construction: each measure turns a raw value (days, hours, a
//! percentage) into points by the first matching tier, the score is the weighted mean of the
//! measures that have data (missing ones are left out and the rest re-weighted, which the
//! [`Health`] says), and every measure that scored low explains itself in words.
//! Points and weights are whole numbers and the mean is rounded with integer arithmetic, so an
//! independent oracle (and both stores) get exactly the same score.

use super::json::Value;
use super::plan::{err, found, index, Failed, PlanError, Validate};

/// The health and lifecycle sections are read by the collector only, always validating.
type Obj<'a> = super::plan::Obj<'a, Validate>;
use super::time::{DAY, HOUR};

/// A measure of how a user is doing. The id is its name in the plan and in every answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Measure {
    /// Required milestones with a due window: % reached on time (late counts half), among those
    /// due by now or already reached.
    Milestones,
    /// Distinct UTC days with any event in the last 7 days (0–7).
    ActiveDays7,
    /// Distinct UTC days with any event in the last 30 days (0–30).
    ActiveDays30,
    /// Hours from the first visit to the start of the next session (the `return_interval` metric).
    ReturnInterval,
    /// % of the plan's captured features (capture-rule events) the user has ever used.
    Breadth,
    /// The latest NPS or CSAT answer on 0–100: promoter/happy 100, passive/neutral 50,
    /// detractor/unhappy 0.
    Satisfaction,
    /// Days since the user's last event.
    LastSeen,
}

impl Measure {
    pub const ALL: [(&'static str, Measure); 7] = [
        ("milestones", Measure::Milestones),
        ("activeDays7", Measure::ActiveDays7),
        ("activeDays30", Measure::ActiveDays30),
        ("returnInterval", Measure::ReturnInterval),
        ("breadth", Measure::Breadth),
        ("satisfaction", Measure::Satisfaction),
        ("lastSeen", Measure::LastSeen),
    ];
    pub fn as_str(self) -> &'static str {
        Measure::ALL.iter().find(|(_, m)| *m == self).map_or("", |(s, _)| s)
    }
    pub fn unit(self) -> &'static str {
        match self {
            Measure::Milestones | Measure::Breadth => "%",
            Measure::ActiveDays7 | Measure::ActiveDays30 | Measure::LastSeen => "days",
            Measure::ReturnInterval => "hours",
            Measure::Satisfaction => "points",
        }
    }
    /// Default tiers: first match wins; no match scores 0.
    fn default_tiers(self) -> Vec<Tier> {
        use Bound::{AtLeast as L, AtMost as M};
        let t = |pairs: &[(Bound, u32)]| pairs.iter().map(|&(bound, points)| Tier { bound, points }).collect();
        match self {
            Measure::Milestones => t(&[(L(100.0), 100), (L(75.0), 75), (L(50.0), 40)]),
            Measure::ActiveDays7 => t(&[(L(4.0), 100), (L(2.0), 70), (L(1.0), 40)]),
            Measure::ActiveDays30 => t(&[(L(12.0), 100), (L(6.0), 70), (L(2.0), 30)]),
            Measure::ReturnInterval => t(&[(M(24.0), 100), (M(72.0), 70), (M(168.0), 40)]),
            Measure::Breadth => t(&[(L(60.0), 100), (L(30.0), 60), (L(1.0), 30)]),
            Measure::Satisfaction => t(&[(L(100.0), 100), (L(50.0), 50)]),
            Measure::LastSeen => t(&[(M(1.0), 100), (M(3.0), 75), (M(7.0), 40), (M(14.0), 10)]),
        }
    }
}

/// A tier's condition on the measure's value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bound {
    AtLeast(f64),
    AtMost(f64),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tier {
    pub bound: Bound,
    /// 0–100.
    pub points: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub measure: Measure,
    /// A whole number; 0 turns the measure off.
    pub weight: u32,
    pub tiers: Vec<Tier>,
}

impl Rule {
    /// Points for `value`: the first tier that holds, else 0.
    pub fn points(&self, value: f64) -> u32 {
        self.tiers
            .iter()
            .find(|t| match t.bound {
                Bound::AtLeast(min) => value >= min,
                Bound::AtMost(max) => value <= max,
            })
            .map_or(0, |t| t.points)
    }
}

/// Which measures count, and how much, for one group of users.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub rules: Vec<Rule>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Band {
    Red,
    Yellow,
    Green,
}

impl Band {
    pub const ALL: [(&'static str, Band); 3] = [("red", Band::Red), ("yellow", Band::Yellow), ("green", Band::Green)];
    pub fn as_str(self) -> &'static str {
        Band::ALL.iter().find(|(_, b)| *b == self).map_or("", |(s, _)| s)
    }
}

/// Lifecycle stages, in the order a healthy customer moves through the first four.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    New,
    Onboarding,
    Activated,
    Adopted,
    AtRisk,
    Dormant,
}

impl Stage {
    pub const ALL: [(&'static str, Stage); 6] = [
        ("new", Stage::New),
        ("onboarding", Stage::Onboarding),
        ("activated", Stage::Activated),
        ("adopted", Stage::Adopted),
        ("at_risk", Stage::AtRisk),
        ("dormant", Stage::Dormant),
    ];
    pub fn as_str(self) -> &'static str {
        Stage::ALL.iter().find(|(_, s)| *s == self).map_or("", |(n, _)| n)
    }
    pub fn parse(text: &str) -> Option<Stage> {
        Stage::ALL.iter().find(|(n, _)| *n == text).map(|(_, s)| *s)
    }
}

/// The lifecycle rules (`lifecycle` in the plan), applied in this order: dormant, at risk,
/// adopted, activated, new, onboarding.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lifecycle {
    /// A user is `new` this long after sign-up (unless activated).
    pub new_for_ms: i64,
    /// Activated users past the onboarding period with at least this many active days in the
    /// last 30 are `adopted`.
    pub adopted_active_days: u32,
    /// Past `new`, a user unseen this long, or scoring in `at_risk_band` or worse, is `at_risk`.
    pub at_risk_after_ms: i64,
    pub at_risk_band: Band,
    /// Unseen this long: `dormant`.
    pub dormant_after_ms: i64,
}

impl Default for Lifecycle {
    fn default() -> Lifecycle {
        Lifecycle { new_for_ms: DAY, adopted_active_days: 8, at_risk_after_ms: 7 * DAY, at_risk_band: Band::Red, dormant_after_ms: 30 * DAY }
    }
}

/// The plan's health model, with every default filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthModel {
    /// Users signed up less than this long ago are scored with the `onboarding` profile, the
    /// rest with `adopted`.
    pub onboarding_ms: i64,
    /// Scores below `yellow` are red, below `green` yellow, the rest green.
    pub yellow: u32,
    pub green: u32,
    /// How often the collector recomputes (it also does on demand).
    pub schedule_ms: i64,
    pub onboarding: Profile,
    pub adopted: Profile,
    pub lifecycle: Lifecycle,
    /// Milestones of an account as a whole (`health.accountMilestones`).
    pub account_milestones: Vec<AccountMilestone>,
}

/// A milestone of an account: reached when any of its users reaches a plan milestone, or when
/// its users together have sent `count` `track` events named `event` ("3 teammates invited").
#[derive(Clone, Debug, PartialEq)]
pub struct AccountMilestone {
    pub id: String,
    pub title: String,
    pub reach: AccountReach,
    /// Due this long after the account's first user signed up.
    pub due_ms: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountReach {
    Milestone(String),
    Count { event: String, count: u32 },
}

impl AccountMilestone {
    /// When the account reached it and how far it got (`count` at most): `times` are, for a
    /// plan milestone, each user's first reach, for an event count, every matching event's time.
    pub fn progress(&self, mut times: Vec<i64>) -> (Option<i64>, u32) {
        times.sort_unstable();
        let needed = match &self.reach {
            AccountReach::Milestone(_) => 1,
            AccountReach::Count { count, .. } => *count as usize,
        };
        (times.get(needed - 1).copied(), times.len().min(needed) as u32)
    }
    pub fn needed(&self) -> u32 {
        match &self.reach {
            AccountReach::Milestone(_) => 1,
            AccountReach::Count { count, .. } => *count,
        }
    }
}

fn profile(weights: &[(Measure, u32)]) -> Profile {
    Profile { rules: weights.iter().map(|&(measure, weight)| Rule { measure, weight, tiers: measure.default_tiers() }).collect() }
}

impl Default for HealthModel {
    fn default() -> HealthModel {
        use Measure::*;
        HealthModel {
            onboarding_ms: 14 * DAY,
            yellow: 50,
            green: 75,
            schedule_ms: HOUR,
            onboarding: profile(&[(Milestones, 3), (ActiveDays7, 2), (ReturnInterval, 1), (Breadth, 1), (Satisfaction, 1), (LastSeen, 2)]),
            adopted: profile(&[(Milestones, 1), (ActiveDays30, 3), (Breadth, 2), (Satisfaction, 2), (LastSeen, 2)]),
            lifecycle: Lifecycle::default(),
            account_milestones: Vec::new(),
        }
    }
}

const ACCOUNT_ID_EXPECTED: &str = "an id of 1 to 64 letters, digits, '_', '-' or '.'";

fn account_milestones(v: &Value, ptr: &str, doc: &Value) -> Result<Vec<AccountMilestone>, Failed> {
    let items = match v {
        Value::Arr(items) if items.len() <= 50 => items,
        other => return err(ptr, found(other), "an array of at most 50 account milestones"),
    };
    let plan_ids: Vec<&str> = doc.get("milestones").and_then(Value::as_array).unwrap_or(&[]).iter().filter_map(|m| m.get("id").and_then(Value::as_str)).collect();
    let mut out: Vec<AccountMilestone> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let o = Obj::new(item, index(ptr, i), &["id", "title", "milestone", "event", "count", "due"])?;
        let id = match o.get("id") {
            Some(Value::Str(s)) if !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')) => s.clone(),
            Some(other) => return err(&o.at("id"), found(other), ACCOUNT_ID_EXPECTED),
            None => return err(&o.ptr, "missing \"id\"", ACCOUNT_ID_EXPECTED),
        };
        if let Some(j) = out.iter().position(|m| m.id == id) {
            return err(&o.at("id"), format!("\"{id}\" is already used by {ptr}/{j}"), "a unique account milestone id");
        }
        let title = match o.get("title") {
            Some(Value::Str(s)) if !s.trim().is_empty() && s.len() <= 200 => s.clone(),
            Some(other) => return err(&o.at("title"), found(other), "a title of 1 to 200 bytes"),
            None => return err(&o.ptr, "missing \"title\"", "a title such as \"3 teammates invited\""),
        };
        let reach = match (o.get("milestone"), o.get("event")) {
            (Some(Value::Str(m)), None) if plan_ids.contains(&m.as_str()) => {
                if o.get("count").is_some() {
                    return err(&o.at("count"), "a count with \"milestone\"", "\"count\" only with \"event\" (a milestone is reached once)");
                }
                AccountReach::Milestone(m.clone())
            }
            (Some(other), None) => return err(&o.at("milestone"), found(other), "the id of a milestone in /milestones"),
            (None, Some(Value::Str(e))) if !e.is_empty() && e.len() <= 200 => {
                let count = match o.get("count") {
                    None => 1,
                    Some(c) => whole(c, &o.at("count"), 1_000_000, "a whole number from 1 to 1000000")?.max(1),
                };
                AccountReach::Count { event: e.clone(), count }
            }
            (None, Some(other)) => return err(&o.at("event"), found(other), "an event name (a string of 1 to 200 bytes)"),
            _ => return err(&o.ptr, "not exactly one of \"milestone\", \"event\"", "either \"milestone\": ID (any user reaches it) or \"event\": NAME with \"count\""),
        };
        out.push(AccountMilestone { id, title, reach, due_ms: o.duration_opt("due")? });
    }
    Ok(out)
}

const WHOLE_0_100: &str = "a whole number from 0 to 100";
const WEIGHT_EXPECTED: &str = "a whole number from 0 to 1000";

fn whole(v: &Value, ptr: &str, max: u32, expected: &str) -> Result<u32, Failed> {
    match v {
        Value::Num(n) if n.fract() == 0.0 && *n >= 0.0 && *n <= f64::from(max) => Ok(*n as u32),
        other => err(ptr, found(other), expected),
    }
}

fn number(v: &Value, ptr: &str) -> Result<f64, Failed> {
    match v {
        Value::Num(n) if n.is_finite() => Ok(*n),
        other => err(ptr, found(other), "a number"),
    }
}

fn tiers(v: &Value, ptr: &str) -> Result<Vec<Tier>, Failed> {
    let items = match v {
        Value::Arr(items) if !items.is_empty() && items.len() <= 20 => items,
        other => return err(ptr, found(other), "an array of 1 to 20 tiers such as {\"atLeast\": 4, \"points\": 100}"),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let o = Obj::new(t, index(ptr, i), &["atLeast", "atMost", "points"])?;
            let bound = match (o.get("atLeast"), o.get("atMost")) {
                (Some(min), None) => Bound::AtLeast(number(min, &o.at("atLeast"))?),
                (None, Some(max)) => Bound::AtMost(number(max, &o.at("atMost"))?),
                _ => return err(&o.ptr.clone(), "not exactly one of \"atLeast\", \"atMost\"", "a tier with either \"atLeast\" or \"atMost\""),
            };
            let points = match o.get("points") {
                Some(p) => whole(p, &o.at("points"), 100, WHOLE_0_100)?,
                None => return err(&o.ptr.clone(), "missing \"points\"", WHOLE_0_100),
            };
            Ok(Tier { bound, points })
        })
        .collect()
}

fn read_profile(v: &Value, ptr: &str) -> Result<Profile, Failed> {
    let names: Vec<&str> = Measure::ALL.iter().map(|(n, _)| *n).collect();
    let o = Obj::new(v, ptr.into(), &names)?;
    let mut rules = Vec::new();
    for (name, measure) in Measure::ALL {
        let Some(m) = o.get(name) else { continue };
        let mp = o.at(name);
        let r = Obj::new(m, mp.clone(), &["weight", "tiers"])?;
        let weight = match r.get("weight") {
            Some(w) => whole(w, &r.at("weight"), 1000, WEIGHT_EXPECTED)?,
            None => 1,
        };
        let tiers = match r.get("tiers") {
            Some(t) => tiers(t, &r.at("tiers"))?,
            None => measure.default_tiers(),
        };
        rules.push(Rule { measure, weight, tiers });
    }
    if rules.iter().all(|r| r.weight == 0) {
        return err(ptr, "no measure with a weight above 0", "at least one measure, such as {\"lastSeen\": {\"weight\": 1}}");
    }
    Ok(Profile { rules })
}

impl HealthModel {
    /// Reads the plan document's `health` and `lifecycle` sections (either may be absent: the
    /// defaults stand in), with the plan's pointer errors.
    pub fn from_plan(doc: &Value) -> Result<HealthModel, PlanError> {
        HealthModel::read(doc).map_err(|e| *e)
    }

    fn read(doc: &Value) -> Result<HealthModel, Failed> {
        let mut model = HealthModel::default();
        if let Some(h) = doc.get("health").filter(|v| !matches!(v, Value::Null)) {
            let o = Obj::new(h, "/health".into(), &["onboardingPeriod", "bands", "schedule", "profiles", "accountMilestones"])?;
            if let Some(v) = o.get("accountMilestones") {
                model.account_milestones = account_milestones(v, &o.at("accountMilestones"), doc)?;
            }
            if let Some(ms) = o.duration_opt("onboardingPeriod")? {
                model.onboarding_ms = ms;
            }
            if let Some(ms) = o.duration_opt("schedule")? {
                if ms < 60_000 {
                    return err(&o.at("schedule"), "shorter than a minute", "a duration of at least \"1m\", such as \"1h\"");
                }
                model.schedule_ms = ms;
            }
            if let Some(b) = o.get("bands") {
                let bo = Obj::new(b, o.at("bands"), &["yellow", "green"])?;
                if let Some(y) = bo.get("yellow") {
                    model.yellow = whole(y, &bo.at("yellow"), 100, WHOLE_0_100)?;
                }
                if let Some(g) = bo.get("green") {
                    model.green = whole(g, &bo.at("green"), 100, WHOLE_0_100)?;
                }
                if model.yellow > model.green {
                    return err(&bo.at("yellow"), "above \"green\"", "yellow ≤ green, such as {\"yellow\": 50, \"green\": 75}");
                }
            }
            if let Some(p) = o.get("profiles") {
                let po = Obj::new(p, o.at("profiles"), &["onboarding", "adopted"])?;
                if let Some(v) = po.get("onboarding") {
                    model.onboarding = read_profile(v, &po.at("onboarding"))?;
                }
                if let Some(v) = po.get("adopted") {
                    model.adopted = read_profile(v, &po.at("adopted"))?;
                }
            }
        }
        if let Some(l) = doc.get("lifecycle").filter(|v| !matches!(v, Value::Null)) {
            let o = Obj::new(l, "/lifecycle".into(), &["newFor", "adoptedActiveDays", "atRiskAfter", "atRiskBand", "dormantAfter"])?;
            let d = &mut model.lifecycle;
            d.new_for_ms = o.duration_opt("newFor")?.unwrap_or(d.new_for_ms);
            if let Some(v) = o.get("adoptedActiveDays") {
                d.adopted_active_days = whole(v, &o.at("adoptedActiveDays"), 30, "a whole number from 0 to 30")?;
            }
            d.at_risk_after_ms = o.duration_opt("atRiskAfter")?.unwrap_or(d.at_risk_after_ms);
            d.at_risk_band = o.choice("atRiskBand", &[("red", Band::Red), ("yellow", Band::Yellow)], Some(d.at_risk_band))?;
            d.dormant_after_ms = o.duration_opt("dormantAfter")?.unwrap_or(d.dormant_after_ms);
            if d.dormant_after_ms <= d.at_risk_after_ms {
                return err(&o.at("dormantAfter"), "not longer than \"atRiskAfter\"", "a longer duration than atRiskAfter");
            }
        }
        Ok(model)
    }

    pub fn band(&self, score: u32) -> Band {
        if score < self.yellow {
            Band::Red
        } else if score < self.green {
            Band::Yellow
        } else {
            Band::Green
        }
    }
}

/// One of the user's milestones with a due window, as the collector found it.
#[derive(Clone, Debug, PartialEq)]
pub struct MilestoneFact {
    /// The milestone's title, as the reasons name it.
    pub title: String,
    pub due_at: i64,
    pub reached_at: Option<i64>,
}

/// What the collector knows about one user at `now`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facts {
    pub now: i64,
    /// Sign-up time (first seen standing in).
    pub signed_up_at: i64,
    pub last_seen: i64,
    /// When the value milestone was first reached.
    pub value_reached_at: Option<i64>,
    pub milestones: Vec<MilestoneFact>,
    pub active_days_7: u32,
    pub active_days_30: u32,
    pub return_interval_ms: Option<i64>,
    pub features_used: u32,
    pub features_total: u32,
    /// The latest NPS/CSAT answer on 0–100, with its survey kind (`nps` | `csat`).
    pub satisfaction: Option<(f64, String)>,
}

/// One measure in a score: its value, its points, and its share of the score.
#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    pub measure: Measure,
    /// `None`: no data, left out of the score.
    pub value: Option<f64>,
    pub points: Option<u32>,
    /// As in the plan.
    pub weight: u32,
    /// The weight's share of the measures that had data, in % (0 when missing).
    pub share: f64,
}

/// A user's health at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Health {
    /// `None` only when no measure had data.
    pub score: Option<u32>,
    pub band: Option<Band>,
    pub stage: Stage,
    /// `onboarding` or `adopted`: which profile scored it.
    pub profile: &'static str,
    pub measures: Vec<Scored>,
    /// Measures with a weight but no data: left out, the others re-weighted.
    pub missing: Vec<Measure>,
    /// Why the score is not higher, in words, worst first.
    pub reasons: Vec<String>,
}

/// A measure's raw value from the facts; `None` when there is no data for it.
pub fn value(measure: Measure, f: &Facts) -> Option<f64> {
    match measure {
        Measure::Milestones => {
            let mut counted = 0u32;
            let mut halves = 0u32;
            for m in &f.milestones {
                match m.reached_at {
                    Some(at) if at <= m.due_at => (counted, halves) = (counted + 1, halves + 2),
                    Some(_) => (counted, halves) = (counted + 1, halves + 1),
                    None if m.due_at <= f.now => counted += 1,
                    None => {}
                }
            }
            (counted > 0).then(|| f64::from(halves) * 50.0 / f64::from(counted))
        }
        Measure::ActiveDays7 => Some(f64::from(f.active_days_7)),
        Measure::ActiveDays30 => Some(f64::from(f.active_days_30)),
        Measure::ReturnInterval => f.return_interval_ms.map(|ms| ms as f64 / HOUR as f64),
        Measure::Breadth => (f.features_total > 0).then(|| f64::from(f.features_used) * 100.0 / f64::from(f.features_total)),
        Measure::Satisfaction => f.satisfaction.as_ref().map(|(v, _)| *v),
        Measure::LastSeen => Some((f.now - f.last_seen).max(0) as f64 / DAY as f64),
    }
}

/// The weighted mean of `(weight, points)`, rounded half up, in integers; `None` when the
/// weights sum to 0.
pub fn weighted_score(parts: &[(u32, u32)]) -> Option<u32> {
    let weights: u64 = parts.iter().map(|&(w, _)| u64::from(w)).sum();
    let sum: u64 = parts.iter().map(|&(w, p)| u64::from(w) * u64::from(p)).sum();
    (weights > 0).then(|| ((2 * sum + weights) / (2 * weights)) as u32)
}

/// Scores one user.
pub fn score(model: &HealthModel, f: &Facts) -> Health {
    let onboarding = f.now - f.signed_up_at < model.onboarding_ms;
    let profile = if onboarding { &model.onboarding } else { &model.adopted };
    let mut measures: Vec<Scored> = profile
        .rules
        .iter()
        .filter(|r| r.weight > 0)
        .map(|r| {
            let value = value(r.measure, f);
            Scored { measure: r.measure, value, points: value.map(|v| r.points(v)), weight: r.weight, share: 0.0 }
        })
        .collect();
    let present: Vec<(u32, u32)> = measures.iter().filter_map(|m| m.points.map(|p| (m.weight, p))).collect();
    let total: u32 = present.iter().map(|(w, _)| w).sum();
    for m in &mut measures {
        if m.points.is_some() {
            m.share = f64::from(m.weight) * 100.0 / f64::from(total);
        }
    }
    let score = weighted_score(&present);
    let band = score.map(|s| model.band(s));
    let missing = measures.iter().filter(|m| m.value.is_none()).map(|m| m.measure).collect();
    let reasons = reasons(&measures, f);
    Health { score, band, stage: stage(&model.lifecycle, model.onboarding_ms, band, f), profile: if onboarding { "onboarding" } else { "adopted" }, measures, missing, reasons }
}

/// The lifecycle stage by the rules, in their order (see [`Lifecycle`]).
pub fn stage(rules: &Lifecycle, onboarding_ms: i64, band: Option<Band>, f: &Facts) -> Stage {
    let unseen = f.now - f.last_seen;
    let age = f.now - f.signed_up_at;
    let activated = f.value_reached_at.is_some_and(|at| at <= f.now);
    if unseen >= rules.dormant_after_ms {
        Stage::Dormant
    } else if (age >= rules.new_for_ms || activated) && (unseen >= rules.at_risk_after_ms || band.is_some_and(|b| b <= rules.at_risk_band)) {
        Stage::AtRisk
    } else if activated && age >= onboarding_ms && f.active_days_30 >= rules.adopted_active_days {
        Stage::Adopted
    } else if activated {
        Stage::Activated
    } else if age < rules.new_for_ms {
        Stage::New
    } else {
        Stage::Onboarding
    }
}

fn plural(n: i64, one: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {one}s")
    }
}

/// Words for every measure that scored under 50 points, lowest points first (then in the
/// profile's order), e.g. "no return in 9 days; 'invite a teammate' 3 days overdue".
fn reasons(measures: &[Scored], f: &Facts) -> Vec<String> {
    let mut low: Vec<&Scored> = measures.iter().filter(|m| m.points.is_some_and(|p| p < 50)).collect();
    low.sort_by_key(|m| m.points);
    let mut out = Vec::new();
    for m in low {
        let v = m.value.unwrap_or(0.0);
        match m.measure {
            Measure::LastSeen => out.push(format!("no return in {}", plural((f.now - f.last_seen).max(0) / DAY, "day"))),
            Measure::Milestones => {
                for ms in f.milestones.iter().filter(|ms| ms.reached_at.is_none() && ms.due_at <= f.now) {
                    let late = (f.now - ms.due_at) / DAY;
                    if late == 0 {
                        out.push(format!("'{}' overdue since today", ms.title));
                    } else {
                        out.push(format!("'{}' {} overdue", ms.title, plural(late, "day")));
                    }
                }
                for ms in f.milestones.iter().filter(|ms| ms.reached_at.is_some_and(|at| at > ms.due_at)) {
                    out.push(format!("'{}' reached late", ms.title));
                }
            }
            Measure::ActiveDays7 => out.push(format!("active {} of the last 7 days", v as u32)),
            Measure::ActiveDays30 => out.push(format!("active {} of the last 30 days", v as u32)),
            Measure::ReturnInterval => out.push(format!("first came back after {}", plural(v as i64 / 24, "day"))),
            Measure::Breadth => out.push(format!("uses {} of {} features", f.features_used, f.features_total)),
            Measure::Satisfaction => {
                let (value, kind) = f.satisfaction.clone().unwrap_or_default();
                let word = match (kind.as_str(), value as u32) {
                    ("nps", 0) => "a detractor",
                    ("nps", 50) => "a passive",
                    (_, 0) => "unhappy",
                    _ => "neutral",
                };
                out.push(format!("latest {} answer: {word}", kind.to_uppercase()));
            }
        }
    }
    out
}

/// An account's health from its users' (each already scored): the rounded mean of their scores,
/// and the most advanced stage any of them is in (adopted > activated > onboarding > new); when
/// none is in those, at risk if any is, else dormant. `None` for an account with no users.
pub fn account(model: &HealthModel, users: &[&Health]) -> Option<(Option<u32>, Option<Band>, Stage)> {
    let first = users.first()?;
    let scores: Vec<(u32, u32)> = users.iter().filter_map(|h| h.score.map(|s| (1, s))).collect();
    let score = weighted_score(&scores);
    let progress = [Stage::Adopted, Stage::Activated, Stage::Onboarding, Stage::New, Stage::AtRisk, Stage::Dormant];
    let stage = progress.iter().copied().find(|s| users.iter().any(|h| h.stage == *s)).unwrap_or(first.stage);
    Some((score, score.map(|s| model.band(s)), stage))
}

/// One thing that changed between two computations.
#[derive(Clone, Debug, PartialEq)]
pub struct MeasureChange {
    pub measure: Measure,
    pub from_value: Option<f64>,
    pub to_value: Option<f64>,
    pub from_points: Option<u32>,
    pub to_points: Option<u32>,
}

/// The measures whose points changed from `before` to `after` (a measure that appeared or went
/// missing counts), in the order of `after`'s profile, then `before`'s leftovers.
pub fn moved(before: &[Scored], after: &[Scored]) -> Vec<MeasureChange> {
    let find = |list: &[Scored], m: Measure| list.iter().find(|s| s.measure == m).cloned();
    let mut order: Vec<Measure> = after.iter().map(|s| s.measure).collect();
    order.extend(before.iter().map(|s| s.measure).filter(|m| !after.iter().any(|s| s.measure == *m)));
    order
        .into_iter()
        .filter_map(|m| {
            let (b, a) = (find(before, m), find(after, m));
            let (fp, tp) = (b.as_ref().and_then(|s| s.points), a.as_ref().and_then(|s| s.points));
            (fp != tp).then(|| MeasureChange {
                measure: m,
                from_value: b.and_then(|s| s.value),
                to_value: a.and_then(|s| s.value),
                from_points: fp,
                to_points: tp,
            })
        })
        .collect()
}

/// The error a plan check prints for a bad `health`/`lifecycle` section, as for any other field.
pub fn check(doc: &Value) -> Result<(), PlanError> {
    HealthModel::from_plan(doc).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::json;

    fn model(text: &str) -> Result<HealthModel, PlanError> {
        HealthModel::from_plan(&json::parse(text).expect("json"))
    }

    fn facts() -> Facts {
        Facts { now: 20 * DAY, signed_up_at: 10 * DAY, last_seen: 20 * DAY, ..Facts::default() }
    }

    #[test]
    fn defaults_stand_in_for_a_plan_without_health() {
        let m = model(r#"{"version":"1"}"#).expect("defaults");
        assert_eq!(m, HealthModel::default());
        assert_eq!((m.yellow, m.green, m.schedule_ms), (50, 75, HOUR));
        assert_eq!(m.band(49), Band::Red);
        assert_eq!(m.band(50), Band::Yellow);
        assert_eq!(m.band(75), Band::Green);
    }

    #[test]
    fn bad_sections_are_reported_with_a_pointer() {
        let e = model(r#"{"health":{"profiles":{"adopted":{"lastSeen":{"tiers":[{"atLeast":1,"atMost":2,"points":5}]}}}}}"#).expect_err("refused");
        assert_eq!(e.pointer, "/health/profiles/adopted/lastSeen/tiers/0");
        let e = model(r#"{"health":{"profiles":{"adopted":{"lastSeen":{"tiers":[{"atMost":1,"points":101}]}}}}}"#).expect_err("refused");
        assert_eq!(e.pointer, "/health/profiles/adopted/lastSeen/tiers/0/points");
        let e = model(r#"{"health":{"profiles":{"adopted":{"lastSeens":{}}}}}"#).expect_err("refused");
        assert_eq!(e.pointer, "/health/profiles/adopted/lastSeens");
        let e = model(r#"{"health":{"bands":{"yellow":80}}}"#).expect_err("refused");
        assert_eq!(e.pointer, "/health/bands/yellow");
        let e = model(r#"{"health":{"profiles":{"adopted":{"lastSeen":{"weight":0}}}}}"#).expect_err("refused");
        assert_eq!(e.pointer, "/health/profiles/adopted");
        let e = model(r#"{"lifecycle":{"atRiskAfter":"40d"}}"#).expect_err("refused");
        assert_eq!(e.pointer, "/lifecycle/dormantAfter");
        let e = model(r#"{"health":{"schedule":"5s"}}"#).expect_err("refused");
        assert_eq!(e.pointer, "/health/schedule");
    }

    #[test]
    fn a_profile_from_the_plan_replaces_the_default_and_keeps_default_tiers() {
        let m = model(r#"{"health":{"onboardingPeriod":"7d","profiles":{"adopted":{"lastSeen":{"weight":2},"breadth":{"tiers":[{"atLeast":50,"points":100}]}}}}}"#).expect("ok");
        assert_eq!(m.onboarding_ms, 7 * DAY);
        assert_eq!(m.adopted.rules.len(), 2);
        assert_eq!(m.adopted.rules[0].measure, Measure::Breadth, "in the measures' order");
        assert_eq!(m.adopted.rules[1].tiers, Measure::LastSeen.default_tiers());
        assert_eq!(m.onboarding, HealthModel::default().onboarding);
    }

    #[test]
    fn first_matching_tier_wins_and_no_match_scores_zero() {
        let r = Rule { measure: Measure::LastSeen, weight: 1, tiers: Measure::LastSeen.default_tiers() };
        assert_eq!(r.points(0.5), 100);
        assert_eq!(r.points(1.0), 100);
        assert_eq!(r.points(1.01), 75);
        assert_eq!(r.points(14.0), 10);
        assert_eq!(r.points(30.0), 0);
    }

    #[test]
    fn missing_measures_are_left_out_and_the_rest_reweighted() {
        // Adopted profile (age 10 d ≥ … no: onboarding is 14 d) → onboarding profile.
        let mut f = facts();
        f.active_days_7 = 4; // 100 × 2
        f.milestones = vec![MilestoneFact { title: "Invite".into(), due_at: 15 * DAY, reached_at: None }]; // 0 % → 0 × 3
        // lastSeen 0 d → 100 × 2; returnInterval, breadth, satisfaction missing.
        let h = score(&HealthModel::default(), &f);
        assert_eq!(h.profile, "onboarding");
        assert_eq!(h.missing, vec![Measure::ReturnInterval, Measure::Breadth, Measure::Satisfaction]);
        assert_eq!(h.score, Some(57), "(0·3 + 100·2 + 100·2) / 7 = 57.1");
        assert_eq!(h.band, Some(Band::Yellow));
        assert_eq!(h.reasons, vec!["'Invite' 5 days overdue"]);
        let share: f64 = h.measures.iter().map(|m| m.share).sum();
        assert!((share - 100.0).abs() < 1e-9);
    }

    #[test]
    fn the_example_in_docs_health_md() {
        let signup = 100 * DAY;
        let f = Facts {
            now: signup + 10 * DAY,
            signed_up_at: signup,
            last_seen: signup + 4 * DAY,
            value_reached_at: None,
            milestones: vec![
                MilestoneFact { title: "Create a project".into(), due_at: signup + 2 * DAY, reached_at: Some(signup + DAY) },
                MilestoneFact { title: "Invite a teammate".into(), due_at: signup + 5 * DAY, reached_at: None },
            ],
            active_days_7: 1,
            active_days_30: 3,
            return_interval_ms: Some(30 * HOUR),
            features_used: 1,
            features_total: 4,
            satisfaction: None,
        };
        let h = score(&HealthModel::default(), &f);
        let points: Vec<Option<u32>> = h.measures.iter().map(|m| m.points).collect();
        assert_eq!(points, vec![Some(40), Some(40), Some(70), Some(30), None, Some(40)]);
        assert_eq!((h.score, h.band, h.stage), (Some(42), Some(Band::Red), Stage::AtRisk));
        assert_eq!(h.missing, vec![Measure::Satisfaction]);
        assert!((h.measures[0].share - 100.0 / 3.0).abs() < 1e-9);
        assert_eq!(h.reasons.join("; "), "uses 1 of 4 features; 'Invite a teammate' 5 days overdue; active 1 of the last 7 days; no return in 6 days");
    }

    #[test]
    fn account_milestones_are_read_and_counted() {
        let doc = r#"{"milestones":[{"id":"invited"}],"health":{"accountMilestones":[
            {"id":"team","title":"3 teammates invited","event":"teammate_invited","count":3,"due":"14d"},
            {"id":"any","title":"Someone invited","milestone":"invited"}]}}"#;
        let m = model(doc).expect("ok");
        assert_eq!(m.account_milestones[0].reach, AccountReach::Count { event: "teammate_invited".into(), count: 3 });
        assert_eq!(m.account_milestones[0].due_ms, Some(14 * DAY));
        assert_eq!(m.account_milestones[0].progress(vec![30, 10]), (None, 2));
        assert_eq!(m.account_milestones[0].progress(vec![30, 10, 20, 5]), (Some(20), 3));
        assert_eq!(m.account_milestones[1].progress(vec![7, 3]), (Some(3), 1));
        let e = model(r#"{"milestones":[{"id":"invited"}],"health":{"accountMilestones":[{"id":"x","title":"X","milestone":"nope"}]}}"#).expect_err("refused");
        assert_eq!(e.pointer, "/health/accountMilestones/0/milestone");
        let e = model(r#"{"health":{"accountMilestones":[{"id":"x","title":"X","event":"e","milestone":"m"}]}}"#).expect_err("refused");
        assert_eq!(e.pointer, "/health/accountMilestones/0");
        let e = model(r#"{"health":{"accountMilestones":[{"id":"x","title":"X","event":"e"},{"id":"x","title":"Y","event":"f"}]}}"#).expect_err("refused");
        assert_eq!(e.pointer, "/health/accountMilestones/1/id");
    }

    #[test]
    fn rounding_is_half_up_in_integers() {
        assert_eq!(weighted_score(&[(1, 50), (1, 51)]), Some(51));
        assert_eq!(weighted_score(&[(1, 50), (1, 50)]), Some(50));
        assert_eq!(weighted_score(&[(0, 50)]), None);
    }

    #[test]
    fn milestones_reached_late_count_half_and_not_yet_due_are_left_out() {
        let mut f = facts();
        f.milestones = vec![
            MilestoneFact { title: "a".into(), due_at: 12 * DAY, reached_at: Some(11 * DAY) },
            MilestoneFact { title: "b".into(), due_at: 12 * DAY, reached_at: Some(13 * DAY) },
            MilestoneFact { title: "c".into(), due_at: 25 * DAY, reached_at: None },
        ];
        assert_eq!(value(Measure::Milestones, &f), Some(75.0));
        f.milestones.truncate(0);
        assert_eq!(value(Measure::Milestones, &f), None);
    }

    #[test]
    fn stages_follow_the_rules_in_order() {
        let rules = Lifecycle::default();
        let mut f = facts();
        f.signed_up_at = f.now - HOUR;
        assert_eq!(stage(&rules, 14 * DAY, Some(Band::Red), &f), Stage::New, "new users are never at risk");
        f.signed_up_at = f.now - 2 * DAY;
        assert_eq!(stage(&rules, 14 * DAY, Some(Band::Yellow), &f), Stage::Onboarding);
        assert_eq!(stage(&rules, 14 * DAY, Some(Band::Red), &f), Stage::AtRisk);
        f.value_reached_at = Some(f.now - DAY);
        assert_eq!(stage(&rules, 14 * DAY, Some(Band::Green), &f), Stage::Activated);
        f.signed_up_at = f.now - 20 * DAY;
        f.active_days_30 = 8;
        assert_eq!(stage(&rules, 14 * DAY, Some(Band::Green), &f), Stage::Adopted);
        f.last_seen = f.now - 7 * DAY;
        assert_eq!(stage(&rules, 14 * DAY, Some(Band::Green), &f), Stage::AtRisk);
        f.last_seen = f.now - 30 * DAY;
        assert_eq!(stage(&rules, 14 * DAY, Some(Band::Green), &f), Stage::Dormant);
    }

    #[test]
    fn reasons_are_words_a_cs_manager_reads() {
        let mut f = facts();
        f.last_seen = f.now - 9 * DAY - HOUR;
        f.signed_up_at = f.now - 20 * DAY;
        f.milestones = vec![MilestoneFact { title: "invite a teammate".into(), due_at: f.now - 3 * DAY, reached_at: None }];
        f.satisfaction = Some((0.0, "nps".into()));
        let h = score(&HealthModel::default(), &f);
        assert_eq!(h.profile, "adopted");
        assert_eq!(h.reasons, vec!["'invite a teammate' 3 days overdue", "active 0 of the last 30 days", "latest NPS answer: a detractor", "no return in 9 days"]);
        assert_eq!(h.band, Some(Band::Red));
    }

    #[test]
    fn moved_lists_measures_whose_points_changed() {
        let s = |measure, value: Option<f64>, points| Scored { measure, value, points, weight: 1, share: 0.0 };
        let before = [s(Measure::LastSeen, Some(0.0), Some(100)), s(Measure::ActiveDays7, Some(3.0), Some(70))];
        let after = [s(Measure::LastSeen, Some(9.0), Some(10)), s(Measure::ActiveDays7, Some(2.0), Some(70))];
        let m = moved(&before, &after);
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].measure, m[0].from_points, m[0].to_points), (Measure::LastSeen, Some(100), Some(10)));
    }

    #[test]
    fn an_account_takes_the_mean_score_and_its_most_advanced_stage() {
        let model = HealthModel::default();
        let h = |score, stage| Health { score: Some(score), band: None, stage, profile: "adopted", measures: vec![], missing: vec![], reasons: vec![] };
        let (a, b) = (h(80, Stage::AtRisk), h(31, Stage::Onboarding));
        assert_eq!(account(&model, &[&a, &b]), Some((Some(56), Some(Band::Yellow), Stage::Onboarding)));
        let c = h(10, Stage::Dormant);
        assert_eq!(account(&model, &[&a, &c]).map(|x| x.2), Some(Stage::AtRisk));
        assert_eq!(account(&model, &[]), None);
    }
}
