//! `GET /v1/state?writeKey=…&user=…[&userHash=…]`: a user's milestone state as the collector
//! knows it from the events it stores, for the SDK to merge at `identify` (docs/IDENTITY.md,
//! "State served by the collector"). One user across devices: a milestone reached on the
//! laptop is reached on the phone, an `after` gate opened on one opens on the other, a tip
//! dismissed on one stays dismissed, the once-per-user seed metrics are not measured again.
//!
//! The answer is the engine's own state document ([`UserState`]), so the SDK merges it with
//! the rules that already hold across tabs. What it holds, derived by [`derive`] from the
//! user's events (every device linked to the user, by the store's identity rule):
//!
//! - `reached`: per milestone of the plan (its id or a former id), the first `milestone` event's
//!   time;
//! - `done`: the first `time_to_value` / `onboarding_completed` milestone and
//!   `first_session_length` / `return_interval` metric events (measured once per user), and
//!   each `experiment_assigned` (`experiment_assigned:<experiment>`: reported once per user);
//! - `nps`: the latest `survey_answered` of an `nps` survey's group (routes prompts);
//! - `tips`: per tip of the plan, the first `tip_dismissed`, the latest `tip_shown` and how many
//!   there were (its `maxShows` counts them on every device), the latest `tip_snoozed` plus the
//!   tip's snooze time, and the furthest `tour_step_completed`;
//! - `surveys` (the survey ledger, docs/SURVEYS.md): per survey of the plan, the latest
//!   `survey_shown`, `survey_answered`, `survey_dismissed`, the latest `survey_snoozed` plus its
//!   "ask me later" time, and the first `track` event that triggers an event survey;
//! - the fatigue budget's counts: surfaces (non-checklist tips, surveys, prompts) shown in the
//!   last session, tips among them, and in the current day, as the engine cuts days;
//! - `signup` (the identify events' `signedUpAt`), `firstSeen`, the first two sessions (30-minute
//!   gaps between event times, as the engine cuts them) and the last activity.
//!
//! - `counts`: with `anonymousId` (the asking device's), per unreached plan milestone whose
//!   condition is a plain count (`count` with no `where` filter and no `after` gate), the user's
//!   `track` events of its name sent from their *other* devices, from the per-device event
//!   rollup, as the G-counter entry [`OTHER_DEVICES`]: the device's own tabs count its own
//!   events, so the merge adds the rest without counting any twice, and a count reached across
//!   devices reaches the milestone.
//!
//!   Conditions with a `where` filter or an `after` gate are counted from the user's events
//!   ([`add_conditional_counts`]): the other devices' `track` events that pass the filter (the
//!   engine's own test) and, under a gate, came after the gate milestone was first reached on
//!   any device.
//!
//! - `account` (docs/TIPS.md, "Account progress"): when the plan declares account milestones
//!   (`health.accountMilestones`), the user's current account (`accountId` trait) and when it
//!   reached each one it reached, as the health computation counts an account's progress
//!   ([`crate::health::account_reached`]): from every teammate's events, not only this user's.
//!
//! Not in it: event names, props, traits and anonymous ids. Tip and survey showings are served under the `ledger` entry
//! of their G-counters; the SDK raises its own to them (`GCounter::raise_to`), so a showing
//! this browser counted and the collector stored is counted once.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use onramp::core::budget::DAY_MS;
use onramp::core::engine::{
    AccountState, DayState, SessionState, UserState, FIRST_SESSION_LENGTH, LEDGER, ONBOARDING_COMPLETED, OTHER_DEVICES,
    RETURN_INTERVAL, SESSION_GAP_MS, TIME_TO_VALUE,
};
use onramp::core::json::Value as CoreValue;
use onramp::core::plan::{Condition, Plan, TipKind};
use onramp::core::vocab::{experiment::ASSIGNED, prompt, prop, survey};
use serde::Deserialize;
use serde_json::Value;

use crate::config::IdentityEnforcement;
use crate::error::ApiError;
use crate::ingest::cors_headers;
use crate::AppState;

/// The user's state from their stored events (`events` as [`crate::store::Store::user_data`]
/// returns them: objects with `type`, `name`, `ts`, `props`, in time order), restricted to
/// the ids `plan` names.
pub fn derive(plan: &Plan, events: &[Value]) -> UserState {
    let mut s = UserState::default();
    let mut times: Vec<i64> = Vec::with_capacity(events.len());
    // Guidance surfaces shown: (time, charged to the fatigue budget, a tip charged to the tip caps).
    let mut surfaces: Vec<(i64, bool, bool)> = Vec::new();
    for e in events {
        let (Some(kind), Some(name), Some(ts)) = (e["type"].as_str(), e["name"].as_str(), e["ts"].as_i64()) else { continue };
        times.push(ts);
        let props = &e["props"];
        match kind {
            "milestone" if [TIME_TO_VALUE, ONBOARDING_COMPLETED].contains(&name) => first(&mut s.done, name, ts),
            "milestone" if plan.milestones.iter().any(|m| m.id == name || m.aliases.iter().any(|a| a == name)) => {
                first(&mut s.reached, name, ts)
            }
            "metric" if [FIRST_SESSION_LENGTH, RETURN_INTERVAL].contains(&name) => first(&mut s.done, name, ts),
            "survey" if name == survey::ANSWERED && props[prop::SURVEY_KIND] == "nps" => {
                if let Some(group) = props[prop::GROUP].as_str() {
                    let answer = Some((ts, group.to_string()));
                    if answer > s.latest_nps {
                        s.latest_nps = answer;
                    }
                }
            }
            "experiment" if name == ASSIGNED => {
                if let Some(experiment) = props[prop::EXPERIMENT].as_str() {
                    first(&mut s.done, &[ASSIGNED, ":", experiment].concat(), ts)
                }
            }
            "identify" => {
                if let Some(at) = props["signedUpAt"].as_f64().filter(|n| n.is_finite()) {
                    s.signup = Some(s.signup.map_or(at as i64, |x| x.min(at as i64)));
                }
            }
            "tip" => {
                let Some(tip) = props["tipId"].as_str().and_then(|id| plan.tips.iter().find(|t| t.id == id)) else { continue };
                let t = s.tips.entry(tip.id.clone()).or_default();
                match name {
                    "tip_dismissed" => t.dismissed = Some(t.dismissed.map_or(ts, |d| d.min(ts))),
                    "tip_shown" => {
                        t.last_shown = Some(t.last_shown.map_or(ts, |d| d.max(ts)));
                        t.shown.add(LEDGER, 1);
                        surfaces.push((ts, tip.kind != TipKind::Checklist, tip.kind != TipKind::Checklist));
                    }
                    "tip_snoozed" => {
                        let until = ts.saturating_add(tip.cap.snooze_ms);
                        t.snoozed_until = Some(t.snoozed_until.map_or(until, |d| d.max(until)));
                    }
                    "tour_step_completed" => {
                        if let Some(step) = props["step"].as_u64() {
                            t.tour_step = t.tour_step.max((step as u32).saturating_add(1));
                        }
                    }
                    _ => {}
                }
            }
            "survey" => {
                let Some(survey) = props["surveyId"].as_str().and_then(|id| plan.surveys.iter().find(|v| v.id == id)) else { continue };
                let v = s.surveys.entry(survey.id.clone()).or_default();
                let latest = |t: &mut Option<i64>, at: i64| *t = Some(t.map_or(at, |d| d.max(at)));
                match name {
                    survey::SHOWN => {
                        latest(&mut v.last_shown, ts);
                        surfaces.push((ts, true, false));
                    }
                    survey::ANSWERED => latest(&mut v.answered, ts),
                    survey::DISMISSED => latest(&mut v.dismissed, ts),
                    survey::SNOOZED => latest(&mut v.snoozed_until, ts.saturating_add(survey.ask_later_ms)),
                    _ => {}
                }
            }
            "prompt" if name == prompt::SHOWN => surfaces.push((ts, true, false)),
            "track" => {
                // An event survey's trigger, as the engine observes it.
                onramp::core::surveys::observe(plan, &mut s, name, &core_props(props), ts);
            }
            _ => {}
        }
    }
    times.sort_unstable();
    if let (Some(&start), Some(&last)) = (times.first(), times.last()) {
        s.first_seen = Some(start);
        s.last_ts = last;
        s.last_activity = Some(last);
        s.first_start = Some(start);
        // Sessions as the engine cuts them: a gap of more than 30 minutes starts a new one.
        let mut session_start = start;
        let mut previous = start;
        for &t in &times[1..] {
            if t - previous > SESSION_GAP_MS {
                if s.second_start.is_none() {
                    s.first_end = Some(previous);
                    s.second_start = Some(t);
                }
                session_start = t;
            }
            previous = t;
        }
        s.first_end.get_or_insert(last);
        s.session = SessionState { start: session_start, last, ..SessionState::default() };
    }
    // The fatigue budget's session and day, as the engine counts them: every surface of the
    // last session, and the day (24 hours from its first surface) the latest surface is in.
    surfaces.sort_unstable();
    for &(ts, _, tip) in surfaces.iter().filter(|(_, charged, _)| *charged) {
        if ts >= s.session.start {
            s.session.shown.add(LEDGER, 1);
            if tip {
                s.session.tips_shown.add(LEDGER, 1);
                s.session.last_tip = Some(ts);
            }
        }
        if ts - s.day.start >= DAY_MS {
            s.day = DayState { start: ts, ..DayState::default() };
        }
        s.day.shown.add(LEDGER, 1);
    }
    s
}

/// A stored event's props as the engine receives them, for the plan's filters.
fn core_props(props: &Value) -> Vec<(String, CoreValue)> {
    props.as_object().map(|o| o.iter().map(|(k, v)| (k.clone(), core_value(v))).collect()).unwrap_or_default()
}

/// A stored prop in the core's JSON type, which the plan's filters test.
fn core_value(v: &Value) -> CoreValue {
    match v {
        Value::Null => CoreValue::Null,
        Value::Bool(b) => CoreValue::Bool(*b),
        Value::Number(n) => CoreValue::Num(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => CoreValue::Str(s.clone()),
        Value::Array(items) => CoreValue::Arr(items.iter().map(core_value).collect()),
        Value::Object(o) => CoreValue::Obj(o.iter().map(|(k, v)| (k.clone(), core_value(v))).collect()),
    }
}

/// The plan's unreached milestones whose condition is a plain count (no `where`, no `after`), by
/// the event name they count.
pub fn plain_counts<'a>(plan: &'a Plan, state: &UserState) -> Vec<(&'a str, &'a str)> {
    plan.milestones
        .iter()
        .filter(|m| !state.reached.contains_key(&m.id))
        .filter_map(|m| m.condition.as_ref().filter(|c| c.filters.is_empty() && c.after.is_none()).map(|c| (m.id.as_str(), c.event.as_str())))
        .collect()
}

/// Adds to `state` the other devices' counts of the plan's unreached milestones whose condition
/// has a `where` filter or an `after` gate (the [`plain_counts`] come from the rollup), read from
/// the user's `events` (as [`derive`] takes them): `track` events not sent by `device` that pass
/// the condition's filters, tested by the engine's own [`Condition::matches`], and, under a gate,
/// stored strictly after the gate milestone's earliest reached time (by any of its ids), as the
/// engine judges a gate on the state before each event: the event that reached the gate, and any
/// in its millisecond, does not count. A gate not reached yet counts nothing.
pub fn add_conditional_counts(plan: &Plan, state: &mut UserState, events: &[Value], device: &str) {
    let wanted: Vec<(&str, &Condition, i64)> = plan
        .milestones
        .iter()
        .filter(|m| !state.reached.contains_key(&m.id))
        .filter_map(|m| {
            let c = m.condition.as_ref().filter(|c| !c.filters.is_empty() || c.after.is_some())?;
            let opened = match &c.after {
                None => i64::MIN,
                Some(gate) => earliest_reached(plan, state, gate)?,
            };
            Some((m.id.as_str(), c, opened))
        })
        .collect();
    let mut counted = vec![0u32; wanted.len()];
    for e in events {
        let (Some("track"), Some(name), Some(ts), Some(anon)) = (e["type"].as_str(), e["name"].as_str(), e["ts"].as_i64(), e["anonymousId"].as_str()) else { continue };
        if anon == device || !wanted.iter().any(|(_, c, _)| c.event == name) {
            continue;
        }
        let props = core_props(&e["props"]);
        for (n, (_, c, opened)) in counted.iter_mut().zip(&wanted) {
            if ts > *opened && c.matches(name, &props) {
                *n = n.saturating_add(1);
            }
        }
    }
    for ((milestone, _, _), n) in wanted.into_iter().zip(counted) {
        if n > 0 {
            state.counts.entry(milestone.into()).or_default().add(OTHER_DEVICES, n);
        }
    }
}

/// The earliest time `milestone` was reached under its id or a former id (`aliases`).
fn earliest_reached(plan: &Plan, state: &UserState, milestone: &str) -> Option<i64> {
    let aliases = plan.milestone(milestone).map(|m| m.aliases.as_slice()).unwrap_or_default();
    std::iter::once(milestone).chain(aliases.iter().map(String::as_str)).filter_map(|id| state.reached.get(id).copied()).min()
}

/// Adds to `state` the other devices' counts (`(event name, events)`) of its [`plain_counts`].
pub fn add_counts(plan: &Plan, state: &mut UserState, counts: &[(String, u64)]) {
    let wanted: Vec<(String, String)> = plain_counts(plan, state).into_iter().map(|(m, e)| (m.to_owned(), e.to_owned())).collect();
    for (milestone, event) in wanted {
        let Some(&(_, n)) = counts.iter().find(|(name, _)| *name == event) else { continue };
        if n > 0 {
            state.counts.entry(milestone).or_default().add(OTHER_DEVICES, u32::try_from(n).unwrap_or(u32::MAX));
        }
    }
}

fn first(map: &mut onramp::core::vecmap::VecMap<i64>, name: &str, ts: i64) {
    let e = map.entry(name.into()).or_insert(ts);
    *e = (*e).min(ts);
}

#[derive(Deserialize)]
pub struct StateQuery {
    #[serde(rename = "writeKey")]
    write_key: Option<String>,
    user: Option<String>,
    #[serde(rename = "userHash")]
    user_hash: Option<String>,
    /// The asking device's anonymous id: its own events are left out of the counts served.
    #[serde(rename = "anonymousId")]
    anonymous_id: Option<String>,
}

pub async fn get(State(state): State<AppState>, Query(q): Query<StateQuery>, headers: HeaderMap) -> Response {
    let origin = crate::plans::readable_by(&state, q.write_key.as_deref(), &headers);
    let mut response = serve(&state, q, &headers).await.unwrap_or_else(|e| e.into_response());
    cors_headers(response.headers_mut(), origin.as_ref());
    response
}

async fn serve(state: &AppState, q: StateQuery, headers: &HeaderMap) -> Result<Response, ApiError> {
    let project = crate::plans::sdk_project(state, q.write_key, headers)?;
    let user = q.user.filter(|u| !u.is_empty()).ok_or_else(|| ApiError::BadRequest("user: required (the id passed to identify)".into()))?;
    // A project that verifies identities lets only the user's own signed pages read their state;
    // `off` (rolling the hashes out) checks a hash that is given, as ingest accepts one.
    if let Some(secret) = project.identity_secret.as_deref() {
        let valid = q.user_hash.as_deref().is_some_and(|h| crate::identity::verify(secret, &user, h));
        let required = project.identity_enforcement != IdentityEnforcement::Off || q.user_hash.is_some();
        if required && !valid {
            return Err(ApiError::BadRequest(format!(
                "userHash: {} for user {user:?}: this project verifies identities (docs/IDENTITY.md)",
                if q.user_hash.is_some() { "does not match" } else { "is missing" }
            )));
        }
    }
    let doc = match crate::plans::current(state, &project.id).await? {
        Some(plan) => {
            let events = state.store.user_data(&project.id, &user).await?.events;
            let mut doc = derive(&plan.plan, &events);
            if let Some(device) = q.anonymous_id.as_deref().filter(|a| !a.is_empty()) {
                let names: Vec<String> = plain_counts(&plan.plan, &doc).iter().map(|(_, e)| e.to_string()).collect();
                add_counts(&plan.plan, &mut doc, &state.store.user_counts(&project.id, &user, &names, device).await?);
                add_conditional_counts(&plan.plan, &mut doc, &events, device);
            }
            // Only a plan with account milestones pays for reading the account's users.
            if !plan.health.account_milestones.is_empty() {
                let found = crate::health::account_reached(state.store.as_ref(), &project.id, &plan.plan, &plan.health, &user, state.now()).await?;
                doc.account = found.map(|(id, reached)| AccountState { id, reached: reached.into_iter().collect() });
            }
            doc
        }
        None => UserState::default(),
    };
    // Derived from stored events, every number finite: it always serialises. Were it ever not
    // to, the SDK keeps its local state on a 5xx (offline first), so that is the honest answer.
    let body = doc.to_json().ok_or_else(|| ApiError::Store(crate::store::StoreError::Unavailable(format!("user {user:?}: state not serialisable"))))?;
    let mut r = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    // Per user and changing with every event: never cached by the browser or a proxy.
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}
