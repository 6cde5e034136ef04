//! Customer health and lifecycle, computed by the collector (docs/HEALTH.md).
//!
//! A computation reads what the store already keeps (the user rollups, each user's first
//! milestone and feature events, the last 30 days' activity, the `return_interval` metric and
//! survey answers) through the [`Store`] trait, so SQLite and ClickHouse give the same answer,
//! gathers each user's [`Facts`], scores them with the pure [`onramp::core::health`] and folds
//! users into their accounts. It then stores the day's snapshot of every user and account, and
//! compares with the previous one: every band or stage change is stored as a transition and
//! sent to the webhook (`health_changed` / `stage_changed`) with what moved, each once.
//!
//! - [`compute`]: the answer for `now`, stored nowhere (what the tests' oracle is matched with).
//! - [`run`]: compute, store, find transitions, notify: the hourly loop ([`schedule_loop`]) and
//!   `POST /v1/health/compute`.
//! - [`api`]: the read routes.

pub mod api;

use std::collections::{BTreeMap, HashMap};

use onramp::core::health::{self as core, Facts, Health, HealthModel, Measure, MilestoneFact, Scored};
use onramp::core::json::Value;
use onramp::core::time::DAY;
use onramp::core::vocab;
use onramp::core::wire::EventType;
use serde_json::{json, Value as Json};

use crate::analytics::{self, User};
use crate::store::{EventFilter, HealthRecord, HealthTransition, Notification, Store, StoreError};
use crate::{AppState, Project};

/// The trait `group()` sets (docs/EVENTS.md): the user's account.
pub const ACCOUNT_ID: &str = "accountId";
/// The trait `group()` sets with the account's own traits.
pub const ACCOUNT_TRAITS: &str = "account";

/// `user` or `account`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    User,
    Account,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Account => "account",
        }
    }
    pub fn parse(text: &str) -> Option<Kind> {
        match text {
            "user" => Some(Kind::User),
            "account" => Some(Kind::Account),
            _ => None,
        }
    }
}

/// One user's or account's health at the computation's `now`.
#[derive(Clone, Debug, PartialEq)]
pub struct Entity {
    pub kind: Kind,
    pub id: String,
    pub health: Health,
    pub last_seen: i64,
    /// A user's account (its `accountId` trait).
    pub account: Option<String>,
    /// An account's users, by id.
    pub members: Vec<String>,
    /// An account's traits: the `account` trait of its most recently seen user.
    pub traits: Option<Value>,
    /// An account's progress on the plan's account milestones.
    pub account_milestones: Vec<AccountProgress>,
}

/// How far an account got on one account milestone.
#[derive(Clone, Debug, PartialEq)]
pub struct AccountProgress {
    pub id: String,
    pub title: String,
    pub reached_at: Option<i64>,
    /// Users who reached the milestone, or matching events, so far (at most `needed`).
    pub progress: u32,
    pub needed: u32,
    /// The account's first sign-up plus the milestone's `due`.
    pub due_at: Option<i64>,
}

/// The latest NPS/CSAT answer as 0–100 from its `group` (an NPS answer without one is grouped
/// by its score: 0–6 detractor, 7–8 passive, 9–10 promoter).
fn satisfaction(props: &crate::store::UserEvent) -> Option<(f64, String)> {
    let kind = props.prop(vocab::prop::SURVEY_KIND)?.as_str()?;
    if kind != "nps" && kind != "csat" {
        return None;
    }
    let group = props.prop(vocab::prop::GROUP).and_then(Value::as_str);
    let value = match (kind, group) {
        (_, Some("promoter" | "happy")) => 100.0,
        (_, Some("passive" | "neutral")) => 50.0,
        (_, Some("detractor" | "unhappy")) => 0.0,
        ("nps", _) => match props.prop(vocab::prop::SCORE).and_then(Value::as_f64)? {
            s if s >= 9.0 => 100.0,
            s if s >= 7.0 => 50.0,
            _ => 0.0,
        },
        _ => return None,
    };
    Some((value, kind.to_string()))
}

/// What the account milestones are reached from, per user: each user's first reach of each plan
/// milestone, and the times of the `track` events the account milestones count.
pub struct Reaches {
    /// User → plan milestone id → first reach (former ids read as the plan id).
    pub milestones: HashMap<String, HashMap<String, i64>>,
    /// User → counted event name → every matching event's time up to `now`.
    counted: HashMap<String, HashMap<String, Vec<i64>>>,
}

impl Reaches {
    /// Reads them from the store; `value_id` (the value milestone, or `time_to_value` without a
    /// plan) is read with the plan's milestones.
    pub async fn read(store: &dyn Store, project: &str, plan: Option<&onramp::core::plan::Plan>, model: &HealthModel, value_id: &str, now: i64) -> Result<Reaches, StoreError> {
        // Milestones: each plan id and former id, read as the plan id.
        let mut milestone_of: HashMap<String, String> = HashMap::new();
        milestone_of.insert(value_id.to_string(), value_id.to_string());
        for m in plan.map_or(&[][..], |p| &p.milestones[..]) {
            for name in std::iter::once(&m.id).chain(&m.aliases) {
                milestone_of.insert(name.clone(), m.id.clone());
            }
        }
        let mut names: Vec<String> = milestone_of.keys().cloned().collect();
        names.sort();
        let mut milestones: HashMap<String, HashMap<String, i64>> = HashMap::new();
        for u in store.firsts(project, &EventFilter { types: vec![EventType::Milestone], names, ..EventFilter::default() }).await? {
            let per = milestones.entry(u.user).or_default();
            for e in &u.events {
                if let Some(id) = milestone_of.get(&e.name) {
                    let at = per.entry(id.clone()).or_insert(e.ts);
                    *at = (*at).min(e.ts);
                }
            }
        }

        // Account milestones counted over events: every matching `track` event's time, per user.
        let mut counted: Vec<String> = model
            .account_milestones
            .iter()
            .filter_map(|m| match &m.reach {
                core::AccountReach::Count { event, .. } => Some(event.clone()),
                core::AccountReach::Milestone(_) => None,
            })
            .collect();
        counted.sort();
        counted.dedup();
        let mut counts: HashMap<String, HashMap<String, Vec<i64>>> = HashMap::new();
        if !counted.is_empty() {
            let filter = EventFilter { types: vec![EventType::Track], names: counted, until: Some(now + 1), ..EventFilter::default() };
            for u in store.events(project, &filter).await? {
                let per = counts.entry(u.user).or_default();
                for e in u.events {
                    per.entry(e.name).or_default().push(e.ts);
                }
            }
        }
        Ok(Reaches { milestones, counted: counts })
    }

    /// The times `user` contributes to account milestone `m` ([`core::AccountMilestone::progress`]).
    fn times(&self, user: &str, m: &core::AccountMilestone) -> Vec<i64> {
        match &m.reach {
            core::AccountReach::Milestone(id) => self.milestones.get(user).and_then(|r| r.get(id.as_str())).copied().into_iter().collect(),
            core::AccountReach::Count { event, .. } => self.counted.get(user).and_then(|c| c.get(event)).cloned().unwrap_or_default(),
        }
    }

    /// How far the account whose users are `members` got on each account milestone of `model`.
    fn account_progress<'m>(&self, model: &'m HealthModel, members: &[&str]) -> Vec<(&'m core::AccountMilestone, Option<i64>, u32)> {
        model
            .account_milestones
            .iter()
            .map(|m| {
                let (reached_at, progress) = m.progress(members.iter().flat_map(|u| self.times(u, m)).collect());
                (m, reached_at, progress)
            })
            .collect()
    }
}

/// The account of user `user` (its `accountId` trait) and when it reached each account milestone
/// it reached, computed as [`compute`] computes an account's: for `GET /v1/state`, so a tip that
/// targets account progress (`accountMilestone`) stops once any teammate reached it. `None` for a
/// user with no account (or unknown to the store).
pub async fn account_reached(store: &dyn Store, project: &str, plan: &onramp::core::plan::Plan, model: &HealthModel, user: &str, now: i64) -> Result<Option<(String, Vec<(String, i64)>)>, StoreError> {
    let (users, _visitors) = analytics::resolve_users(store.users(project).await?, now);
    let Some(account) = users.iter().find(|u| u.id == user).and_then(account_of) else { return Ok(None) };
    let members: Vec<&str> = users.iter().filter(|u| account_of(u).as_deref() == Some(account.as_str())).map(|u| u.id.as_str()).collect();
    let value_id = plan.value_milestone().map_or(vocab::milestone::TIME_TO_VALUE, |m| m.id.as_str());
    let reaches = Reaches::read(store, project, Some(plan), model, value_id, now).await?;
    let reached = reaches.account_progress(model, &members).into_iter().filter_map(|(m, at, _)| Some((m.id.clone(), at?))).collect();
    Ok(Some((account, reached)))
}

/// Computes every user's and account's health at `now` from the store (see the module docs).
pub async fn compute(store: &dyn Store, project: &str, plan: Option<&onramp::core::plan::Plan>, model: &HealthModel, now: i64) -> Result<Vec<Entity>, StoreError> {
    let (users, _visitors) = analytics::resolve_users(store.users(project).await?, now);
    let value_id = plan.and_then(|p| p.value_milestone()).map_or(vocab::milestone::TIME_TO_VALUE.to_string(), |m| m.id.clone());
    let reaches = Reaches::read(store, project, plan, model, &value_id, now).await?;
    let reached = &reaches.milestones;

    // Breadth: the plan's captured features (capture-rule events).
    let mut features: Vec<String> = plan.map_or(Vec::new(), |p| p.capture.iter().map(|r| r.event.clone()).collect());
    features.sort();
    features.dedup();
    let mut used: HashMap<String, u32> = HashMap::new();
    if !features.is_empty() {
        for u in store.firsts(project, &EventFilter { types: vec![EventType::Track], names: features.clone(), ..EventFilter::default() }).await? {
            used.insert(u.user, u.events.len() as u32);
        }
    }

    // Active days in the last 7 and 30 days: now − 30 d < ts ≤ now.
    let window = EventFilter { since: Some(now - 30 * DAY + 1), until: Some(now + 1), ..EventFilter::default() };
    let mut active: HashMap<String, (u32, u32)> = HashMap::new();
    for u in store.events(project, &window).await? {
        let mut days: Vec<i64> = u.events.iter().map(|e| e.ts.div_euclid(DAY)).collect();
        days.dedup(); // events come sorted by time
        let week = u.events.iter().filter(|e| e.ts > now - 7 * DAY).map(|e| e.ts.div_euclid(DAY)).collect::<std::collections::BTreeSet<_>>().len();
        active.insert(u.user, (week as u32, days.len() as u32));
    }

    // The latest return interval and NPS/CSAT answer up to now.
    let until_now = |types: &[EventType], name: &str| EventFilter { types: types.to_vec(), names: vec![name.into()], until: Some(now + 1), with_props: true, ..EventFilter::default() };
    let mut returns: HashMap<String, i64> = HashMap::new();
    for u in store.events(project, &until_now(&[EventType::Metric], vocab::metric::RETURN_INTERVAL)).await? {
        if let Some(ms) = u.events.iter().rev().find_map(|e| e.prop(vocab::prop::VALUE_MS).and_then(Value::as_f64)) {
            returns.insert(u.user, ms as i64);
        }
    }
    let mut answers: HashMap<String, (f64, String)> = HashMap::new();
    for u in store.events(project, &until_now(&[EventType::Survey], vocab::survey::ANSWERED)).await? {
        if let Some(a) = u.events.iter().rev().find_map(satisfaction) {
            answers.insert(u.user, a);
        }
    }

    let due: Vec<(&str, String, i64)> = plan.map_or(Vec::new(), |p| {
        p.milestones
            .iter()
            .filter(|m| m.required)
            .filter_map(|m| m.due_ms.map(|d| (m.id.as_str(), m.title.get(&p.default_locale, &p.default_locale).to_string(), d)))
            .collect()
    });
    let mut out = Vec::with_capacity(users.len());
    for u in &users {
        let none = HashMap::new();
        let mine = reached.get(u.id.as_str()).unwrap_or(&none);
        let (active_days_7, active_days_30) = active.get(&u.id).copied().unwrap_or((0, 0));
        let facts = Facts {
            now,
            signed_up_at: u.signed_up_at,
            last_seen: u.last_seen.min(now),
            value_reached_at: mine.get(value_id.as_str()).copied(),
            milestones: due
                .iter()
                .map(|(id, title, d)| MilestoneFact { title: title.clone(), due_at: u.signed_up_at + d, reached_at: mine.get(*id).copied() })
                .collect(),
            active_days_7,
            active_days_30,
            return_interval_ms: returns.get(&u.id).copied(),
            features_used: used.get(&u.id).copied().unwrap_or(0),
            features_total: features.len() as u32,
            satisfaction: answers.get(&u.id).cloned(),
        };
        out.push(Entity {
            kind: Kind::User,
            id: u.id.clone(),
            health: core::score(model, &facts),
            last_seen: facts.last_seen,
            account: account_of(u),
            members: Vec::new(),
            traits: None,
            account_milestones: Vec::new(),
        });
    }
    let accounts = accounts(model, &users, &out, &reaches, now);
    out.extend(accounts);
    Ok(out)
}

fn account_of(u: &User) -> Option<String> {
    match onramp::core::json::field(&u.traits, ACCOUNT_ID)? {
        Value::Str(s) if !s.is_empty() => Some(s.clone()),
        Value::Num(n) => Some(Value::Num(*n).to_json()),
        _ => None,
    }
}

/// Folds users into their accounts ([`core::account`]); an account's measures are its users'
/// mean points per measure, its reasons those of its lowest-scoring user, prefixed with whose.
fn accounts(model: &HealthModel, users: &[User], scored: &[Entity], reaches: &Reaches, now: i64) -> Vec<Entity> {
    let mut by_account: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, e) in scored.iter().enumerate() {
        if let Some(a) = &e.account {
            by_account.entry(a.clone()).or_default().push(i);
        }
    }
    let mut out = Vec::new();
    for (account, members) in by_account {
        let healths: Vec<&Health> = members.iter().map(|&i| &scored[i].health).collect();
        let Some((score, band, stage)) = core::account(model, &healths) else { continue };
        let mut measures: Vec<Scored> = Vec::new();
        for (_, m) in Measure::ALL {
            let points: Vec<u32> = healths.iter().filter_map(|h| h.measures.iter().find(|s| s.measure == m).and_then(|s| s.points)).collect();
            let weighted: Vec<(u32, u32)> = points.iter().map(|&p| (1, p)).collect();
            if let Some(p) = core::weighted_score(&weighted) {
                measures.push(Scored { measure: m, value: None, points: Some(p), weight: 0, share: 0.0 });
            }
        }
        let worst = members.iter().copied().filter(|&i| scored[i].health.score.is_some()).min_by_key(|&i| (scored[i].health.score, &scored[i].id));
        let signed_up = members.iter().filter_map(|&i| users.iter().find(|u| u.id == scored[i].id)).map(|u| u.signed_up_at).min();
        let ids: Vec<&str> = members.iter().map(|&i| scored[i].id.as_str()).collect();
        let progress: Vec<AccountProgress> = reaches
            .account_progress(model, &ids)
            .into_iter()
            .map(|(m, reached_at, progress)| {
                AccountProgress {
                    id: m.id.clone(),
                    title: m.title.clone(),
                    reached_at,
                    progress,
                    needed: m.needed(),
                    due_at: m.due_ms.zip(signed_up).map(|(d, s)| s + d),
                }
            })
            .collect();
        // Overdue account milestones first, then the lowest-scoring user's reasons.
        let mut reasons: Vec<String> = progress
            .iter()
            .filter(|p| p.reached_at.is_none() && p.due_at.is_some_and(|d| d <= now))
            .map(|p| {
                let late = (now - p.due_at.unwrap_or(now)) / DAY;
                let when = match late {
                    0 => "overdue since today".to_string(),
                    1 => "1 day overdue".to_string(),
                    n => format!("{n} days overdue"),
                };
                format!("'{}' {when} ({} of {})", p.title, p.progress, p.needed)
            })
            .collect();
        if let Some(i) = worst {
            reasons.extend(scored[i].health.reasons.iter().map(|r| format!("{}: {r}", scored[i].id)));
        }
        let last = members.iter().copied().max_by_key(|&i| (scored[i].last_seen, std::cmp::Reverse(&scored[i].id)));
        let traits = last.and_then(|i| users.iter().find(|u| u.id == scored[i].id)).and_then(|u| onramp::core::json::field(&u.traits, ACCOUNT_TRAITS).cloned());
        out.push(Entity {
            kind: Kind::Account,
            id: account,
            health: Health { score, band, stage, profile: "account", measures, missing: Vec::new(), reasons },
            last_seen: last.map_or(0, |i| scored[i].last_seen),
            account: None,
            members: members.iter().map(|&i| scored[i].id.clone()).collect(),
            traits,
            account_milestones: progress,
        });
    }
    out
}

fn num(v: Option<f64>) -> Json {
    v.map_or(Json::Null, |x| json!(x))
}

/// A measure as every answer shows it.
pub fn measure_json(s: &Scored) -> Json {
    json!({
        "measure": s.measure.as_str(),
        "unit": s.measure.unit(),
        "value": num(s.value),
        "points": s.points,
        "weight": s.weight,
        "sharePct": (s.share * 10.0).round() / 10.0,
    })
}

/// The stored breakdown of an entity.
pub fn detail_json(e: &Entity) -> Json {
    let h = &e.health;
    let missing: Vec<&str> = h.missing.iter().map(|m| m.as_str()).collect();
    let note = (!missing.is_empty()).then(|| format!("no data for {}: left out, the other measures re-weighted to 100%", missing.join(", ")));
    json!({
        "profile": h.profile,
        "measures": h.measures.iter().map(measure_json).collect::<Vec<_>>(),
        "missing": missing,
        "note": note,
        "reasons": h.reasons,
        "lastSeen": e.last_seen,
        "account": e.account,
        "members": (e.kind == Kind::Account).then_some(&e.members),
        "traits": e.traits.as_ref().and_then(|t| serde_json::to_value(t).ok()),
        "accountMilestones": (e.kind == Kind::Account).then(|| e.account_milestones.iter().map(|p| json!({
            "id": p.id,
            "title": p.title,
            "reached": p.reached_at.is_some(),
            "reachedAt": p.reached_at,
            "progress": p.progress,
            "needed": p.needed,
            "dueAt": p.due_at,
        })).collect::<Vec<_>>()),
    })
}

/// A stored breakdown's measures, read back to compare with a new computation.
fn stored_measures(detail: &Json) -> Vec<Scored> {
    let list = detail.get("measures").and_then(Json::as_array).cloned().unwrap_or_default();
    list.iter()
        .filter_map(|m| {
            let name = m.get("measure")?.as_str()?;
            let measure = Measure::ALL.iter().find(|(n, _)| *n == name)?.1;
            Some(Scored {
                measure,
                value: m.get("value").and_then(Json::as_f64),
                points: m.get("points").and_then(Json::as_u64).map(|p| p as u32),
                weight: m.get("weight").and_then(Json::as_u64).unwrap_or(0) as u32,
                share: 0.0,
            })
        })
        .collect()
}

fn band_str(b: Option<core::Band>) -> String {
    b.map_or("none", |b| b.as_str()).to_string()
}

/// What one run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunSummary {
    pub computed_at: i64,
    pub users: usize,
    pub accounts: usize,
    pub transitions: usize,
}

/// The day's records and the transitions since `previous` (the latest stored record of each
/// entity), with their webhook notifications. A first computation of an entity is no transition.
pub fn diff(project: &str, entities: &[Entity], previous: &HashMap<(String, String), HealthRecord>, now: i64) -> (Vec<HealthRecord>, Vec<HealthTransition>, Vec<Notification>) {
    let (mut records, mut transitions, mut notes) = (Vec::new(), Vec::new(), Vec::new());
    for e in entities {
        let band = e.health.band.map(|b| b.as_str().to_string());
        let detail = detail_json(e);
        let record = HealthRecord {
            kind: e.kind.as_str().into(),
            id: e.id.clone(),
            day: now.div_euclid(DAY),
            computed_at: now,
            score: e.health.score,
            band: band.clone(),
            stage: e.health.stage.as_str().into(),
            detail: detail.to_string(),
        };
        if let Some(prev) = previous.get(&(record.kind.clone(), record.id.clone())) {
            let prev_detail: Json = serde_json::from_str(&prev.detail).unwrap_or(Json::Null);
            let moved: Vec<Json> = core::moved(&stored_measures(&prev_detail), &e.health.measures)
                .iter()
                .map(|c| json!({
                    "measure": c.measure.as_str(),
                    "unit": c.measure.unit(),
                    "from": {"value": num(c.from_value), "points": c.from_points},
                    "to": {"value": num(c.to_value), "points": c.to_points},
                }))
                .collect();
            let changes = [
                ("band", "health_changed", prev.band.clone().unwrap_or_else(|| "none".into()), band_str(e.health.band)),
                ("stage", "stage_changed", prev.stage.clone(), record.stage.clone()),
            ];
            for (what, kind, from, to) in changes {
                if from == to {
                    continue;
                }
                let payload = json!({
                    "type": kind,
                    "project": project,
                    "kind": record.kind,
                    "id": record.id,
                    "from": from,
                    "to": to,
                    "score": {"from": prev.score, "to": record.score},
                    "band": {"from": prev.band, "to": record.band},
                    "stage": {"from": prev.stage, "to": record.stage},
                    "since": prev.computed_at,
                    "at": now,
                    "moved": moved,
                    "measures": detail["measures"],
                    "reasons": detail["reasons"],
                    "missing": detail["missing"],
                });
                // Keyed by the previous computation, not this one: a run retried after a crash
                // finds the same change and the outbox keeps one notification for it.
                let key = format!("{}:{}:{}", record.kind, record.id, prev.computed_at);
                notes.push(crate::webhook::notification(project, kind, &key, payload.clone(), now));
                transitions.push(HealthTransition {
                    kind: record.kind.clone(),
                    id: record.id.clone(),
                    at: now,
                    what: what.into(),
                    from,
                    to,
                    detail: payload.to_string(),
                });
            }
        }
        records.push(record);
    }
    (records, transitions, notes)
}

/// The latest stored record of every entity (reading back at most `lookback` days).
pub async fn latest(store: &dyn Store, project: &str, since_day: i64) -> Result<HashMap<(String, String), HealthRecord>, StoreError> {
    let mut out: HashMap<(String, String), HealthRecord> = HashMap::new();
    for r in store.health_records(project, since_day, None).await? {
        let key = (r.kind.clone(), r.id.clone());
        match out.get(&key) {
            Some(have) if have.computed_at >= r.computed_at => {}
            _ => {
                out.insert(key, r);
            }
        }
    }
    Ok(out)
}

/// How far back a run looks for an entity's previous record: one unseen longer is treated as new.
const PREVIOUS_LOOKBACK_DAYS: i64 = 400;

/// Computes, stores and notifies for one project (see the module docs).
pub async fn run(state: &AppState, project: &Project) -> Result<RunSummary, StoreError> {
    let now = state.now();
    let served = crate::plans::current(state, &project.id).await.ok().flatten();
    let model = served.as_ref().map(|s| s.health.clone()).unwrap_or_default();
    let entities = compute(state.store.as_ref(), &project.id, served.as_ref().map(|s| &s.plan), &model, now).await?;
    let previous = latest(state.store.as_ref(), &project.id, now.div_euclid(DAY) - PREVIOUS_LOOKBACK_DAYS).await?;
    let (records, transitions, notes) = diff(&project.id, &entities, &previous, now);
    let summary = RunSummary {
        computed_at: now,
        users: entities.iter().filter(|e| e.kind == Kind::User).count(),
        accounts: entities.iter().filter(|e| e.kind == Kind::Account).count(),
        transitions: transitions.len(),
    };
    // Notifications first: once the records are stored, the change is no longer found.
    if let Some(hook) = &state.webhook {
        if !notes.is_empty() {
            state.store.enqueue_notifications(notes).await?;
            hook.wake();
        }
    }
    state.store.save_health(&project.id, records, transitions).await?;
    Ok(summary)
}

/// Recomputes every project's health on its plan's schedule (default hourly), the first time one
/// period after start: a restart costs no extra computation, and a project never computed is
/// computed on its first read. Run it with [`AppState::spawn_background`].
pub async fn schedule_loop(state: AppState) {
    let mut next: Vec<Option<i64>> = state.config.projects.iter().map(|_| None).collect();
    let stopping = state.stopping();
    tokio::pin!(stopping);
    loop {
        for (project, next) in state.config.projects.iter().zip(next.iter_mut()) {
            if next.is_some_and(|at| state.now() < at) {
                continue;
            }
            let every = match crate::plans::current(&state, &project.id).await {
                Ok(Some(s)) => s.health.schedule_ms,
                _ => HealthModel::default().schedule_ms,
            };
            if next.is_some() {
                if let Err(e) = run(&state, project).await {
                    eprintln!("onramp-collector: health: {e}");
                }
            }
            *next = Some(state.now() + every);
        }
        tokio::select! {
            // Checking the clock is cheap; the plan is read only when a project is due.
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = &mut stopping => return,
        }
    }
}
