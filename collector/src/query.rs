//! The read API behind the dashboard. Every route needs the project's read token.
//!
//! Handlers are glue: they parse parameters (answering 400 with the parameter's name when one is
//! wrong), read rows through the [`crate::store::Store`] trait, and hand them to the pure
//! [`crate::analytics`] functions. Parameters every report shares:
//!
//! | parameter | meaning |
//! |---|---|
//! | `from`, `to` | sign-up date range: `YYYY-MM-DD` (UTC; `to` inclusive) or Unix ms (`to` exclusive) |
//! | `trait.KEY=v1,v2` | only users whose identify trait `KEY` is one of the values |
//! | `steps=a,b,c` | steps in order (default: the plan's required milestones): `milestone:ID`, `event:NAME`, or a bare name (the plan's milestone of that id, else `track` events of that name) |
//! | `value=m` | the value milestone, spelled as a step (default: the plan's, else the SDK's `time_to_value` milestone) |
//! | `token` | the read token, for links that cannot send `Authorization` (CSV download) |

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::analytics::stalled::{Due, Stall};
use crate::analytics::time::{self, DAY};
use crate::analytics::ttv::Period;
use crate::analytics::{self as a, FirstReach, Histogram, Quantiles, Selection, Step, StepKind, User};
use crate::error::ApiError;
use crate::store::{EventFilter, StoreError, UserEvents, UserMetric, UserTip};
use onramp::core::wire::EventType;
use crate::{AppState, Project};

/// The read token, from `Authorization: Bearer …` (or `?token=` for CSV links and the like).
pub fn authorize<'a>(state: &'a AppState, headers: &HeaderMap, token: Option<&str>) -> Result<&'a Project, ApiError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    bearer.or(token).and_then(|t| state.config.project_by_read_token(t)).ok_or(ApiError::Unauthorized)
}

/// The SDK's own marker of the value milestone (docs/EVENTS.md), used when no plan names one.
pub const DEFAULT_VALUE: &str = onramp::core::vocab::milestone::TIME_TO_VALUE;

/// At most this many stalled users in a JSON answer (the CSV export has them all).
const STALLED_JSON_LIMIT: usize = 500;

fn bad(param: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(format!("{param}: {message}"))
}

/// A request's query string, checked against the parameters its route knows so that a typo
/// (`step=`) is answered with a 400 rather than silently ignored.
pub struct Params(Vec<(String, String)>);

impl Params {
    fn check(pairs: Vec<(String, String)>, known: &[&str]) -> Result<Params, ApiError> {
        const COMMON: [&str; 4] = ["token", "from", "to", "_"];
        for (key, _) in &pairs {
            let ok = COMMON.contains(&key.as_str()) || known.contains(&key.as_str()) || key.starts_with("trait.");
            if !ok {
                let takes: Vec<&str> = known.iter().copied().chain(["from", "to", "trait.KEY", "token"]).collect();
                return Err(bad(key, format!("unknown parameter; this route takes {}", takes.join(", "))));
            }
        }
        Ok(Params(pairs))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn list(&self, key: &str) -> Option<Vec<String>> {
        let items: Vec<String> =
            self.get(key)?.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
        Some(items)
    }

    fn flag(&self, key: &str) -> Result<bool, ApiError> {
        match self.get(key) {
            None | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") | Some("") => Ok(true),
            Some(other) => Err(bad(key, format!("expected true or false, found {other:?}"))),
        }
    }

    fn duration(&self, key: &str) -> Result<Option<i64>, ApiError> {
        self.get(key)
            .map(|text| time::parse_duration(text).ok_or_else(|| bad(key, format!("expected a duration such as 30m, 24h, 7d or milliseconds, found {text:?}"))))
            .transpose()
    }

    fn selection(&self) -> Result<Selection, ApiError> {
        let instant = |key: &str| -> Result<Option<(i64, bool)>, ApiError> {
            self.get(key)
                .filter(|t| !t.is_empty())
                .map(|text| {
                    let is_date = text.contains('-');
                    time::parse_instant(text)
                        .map(|ts| (ts, is_date))
                        .ok_or_else(|| bad(key, format!("expected a date YYYY-MM-DD or Unix milliseconds, found {text:?}")))
                })
                .transpose()
        };
        let from = instant("from")?.map(|(ts, _)| ts);
        // A date names a whole day, so `to=2026-11-20` includes that day.
        let until = instant("to")?.map(|(ts, is_date)| if is_date { ts + DAY } else { ts });
        if let (Some(f), Some(u)) = (from, until) {
            if u <= f {
                return Err(bad("to", "must be after from"));
            }
        }
        let traits = self
            .0
            .iter()
            .filter_map(|(k, v)| {
                let key = k.strip_prefix("trait.")?;
                Some((key.to_string(), v.split(',').map(|s| s.trim().to_string()).collect()))
            })
            .collect();
        Ok(Selection { signup_from: from, signup_until: until, traits })
    }
}

/// What a project's plan says, where a request leaves it out.
#[derive(Clone, Debug, Default)]
pub struct PlanDefaults {
    /// Every milestone id a bare step name can mean: the plan's (with former ids) and the
    /// SDK's reserved ones (`time_to_value`, `onboarding_completed`).
    pub milestone_ids: Vec<String>,
    /// The required milestones, the default funnel.
    pub milestones: Vec<String>,
    pub value: Option<String>,
    pub due: Vec<Due>,
}

/// The plan's milestones, value milestone and due windows for `project`. Without a stored plan
/// every report needs its `steps` (and stalls their `due`) spelled out in the request.
pub async fn plan_defaults(state: &AppState, project: &Project) -> PlanDefaults {
    let reserved = onramp::core::plan::RESERVED_IDS.map(String::from).to_vec();
    // An unreadable store here only costs the defaults; the report's own reads will say 503.
    let Ok(Some(served)) = crate::plans::current(state, &project.id).await else {
        return PlanDefaults { milestone_ids: reserved, ..PlanDefaults::default() };
    };
    let plan = &served.plan;
    let ids = plan.milestones.iter().flat_map(|m| std::iter::once(&m.id).chain(&m.aliases)).cloned();
    PlanDefaults {
        milestone_ids: ids.chain(reserved).collect(),
        // The funnel of the required path; optional milestones would read as drop-off.
        milestones: plan.milestones.iter().filter(|m| m.required).map(|m| m.id.clone()).collect(),
        value: plan.value_milestone().map(|m| m.id.clone()),
        due: plan
            .milestones
            .iter()
            .filter_map(|m| m.due_ms.map(|within_ms| Due { milestone: m.id.clone(), within_ms }))
            .collect(),
    }
}

/// Every user of `project` with sign-up time and traits resolved (from the store's rollups), and
/// apart from them the visitors who never identified.
pub async fn load_users(state: &AppState, project: &Project) -> Result<(Vec<User>, Vec<User>), StoreError> {
    Ok(a::resolve_users(state.store.users(&project.id).await?, state.now()))
}

/// The selected users of one request, with what every report needs.
struct Ctx<'a> {
    state: &'a AppState,
    project: &'a Project,
    params: Params,
    plan: PlanDefaults,
    /// Selected users: those the answer lists one by one ([`Ctx::resolve`]: users with tips,
    /// seed metrics, survey, prompt or experiment events), or all ([`Ctx::read_users`]); and
    /// how many the request selects.
    users: Vec<User>,
    selected: usize,
    /// Visitors who never identified that the request selects (by the same sign-up range and
    /// trait filters as users); not users, so in no report.
    visitors: usize,
    selection: Selection,
    now: i64,
}

impl<'a> Ctx<'a> {
    /// Reads the whole user list: every selected user into `users`, and the counts.
    async fn read_users(&mut self) -> Result<(), ApiError> {
        let (all, visitors) = load_users(self.state, self.project).await?;
        // Order kept: sorted by user key.
        self.users = all.into_iter().filter(|u| self.selection.admits(u)).collect();
        self.selected = self.users.len();
        self.visitors = visitors.iter().filter(|v| self.selection.admits(v)).count();
        Ok(())
    }

    /// A request, its parameters and the plan's defaults. The user list is not read (`users`
    /// empty, `selected` and `visitors` 0): reports come from the store's pass ([`Ctx::tallies`],
    /// [`Ctx::resolve`]), or [`Ctx::read_users`] reads it.
    async fn load(
        state: &'a AppState,
        headers: &HeaderMap,
        pairs: Vec<(String, String)>,
        known: &[&str],
    ) -> Result<Ctx<'a>, ApiError> {
        let project = authorize(state, headers, pairs.iter().find(|(k, _)| k == "token").map(|(_, v)| v.as_str()))?;
        let params = Params::check(pairs, known)?;
        let selection = params.selection()?;
        let plan = plan_defaults(state, project).await;
        Ok(Ctx { state, project, params, plan, users: Vec::new(), selected: 0, visitors: 0, selection, now: state.now() })
    }

    fn window(&self) -> Result<Option<i64>, ApiError> {
        match self.params.duration("window")? {
            Some(w) => Ok(Some(w)),
            None => self.params.duration("window_ms"),
        }
    }

    fn period(&self) -> Result<Period, ApiError> {
        let by = self.params.get("by").unwrap_or("day");
        Period::parse(by).ok_or_else(|| bad("by", format!("expected day or week, found {by:?}")))
    }

    /// The standard sections for the selected users, counted by the store
    /// ([`crate::store::Store::report_tallies`]): the funnel when every step is a milestone,
    /// time-to-value, cohorts and the stalls of `due` (the first `stall_limit`).
    async fn tallies(&self, steps: &[Step], value: &Step, due: &[Due], stall_limit: Option<usize>) -> Result<a::report::Tallies, ApiError> {
        let query = self.report_query(steps, value, due, stall_limit)?;
        Ok(self.state.store.report_tallies(&self.project.id, &query).await?)
    }

    fn report_query(&self, steps: &[Step], value: &Step, due: &[Due], stall_limit: Option<usize>) -> Result<a::report::ReportQuery, ApiError> {
        Ok(a::report::ReportQuery {
            selection: self.selection.clone(),
            steps: steps.to_vec(),
            value: value.clone(),
            funnel: all_milestones(steps),
            window: self.window()?,
            funnel_users: self.params.flag("users")?,
            period: self.period()?,
            due: due.to_vec(),
            stall_limit,
            population: Vec::new(),
            reach: Vec::new(),
            interest: Vec::new(),
            trait_choices: false,
            now: self.now,
        })
    }

    /// [`Ctx::tallies`] of `query`, which also resolves the users `interest` names (those with
    /// tips, seed metrics, survey, prompt or experiment events): they become `users` (the
    /// selected ones), and
    /// `selected` and `visitors` are counted, so no report here reads the whole user list.
    /// Returns the tallies, those users' first times of the query's steps, and the
    /// [`a::tips::Population`] of its `population` milestones.
    async fn resolve(&mut self, mut query: a::report::ReportQuery, interest: impl Iterator<Item = String>) -> Result<(a::report::Tallies, Vec<UserEvents>, a::tips::Population), ApiError> {
        query.interest = interest.collect();
        query.interest.sort();
        query.interest.dedup();
        let mut tallies = self.state.store.report_tallies(&self.project.id, &query).await?;
        (self.selected, self.visitors) = (tallies.users as usize, tallies.visitors as usize);
        self.users = std::mem::take(&mut tallies.interest);
        let firsts = std::mem::take(&mut tallies.interest_firsts);
        let everyone = a::tips::Population {
            users: self.selected,
            reached: query.population.iter().zip(&tallies.population).map(|(m, d)| (m.name.clone(), d.clone())).collect(),
        };
        Ok((tallies, firsts, everyone))
    }

    fn step(&self, text: &str) -> Step {
        Step::parse(text, &self.plan.milestone_ids)
    }

    fn steps(&self) -> Result<Vec<Step>, ApiError> {
        let steps = match self.params.list("steps") {
            Some(steps) if !steps.is_empty() => steps,
            // Given but empty is a mistake in the request, not a wish for the plan's steps.
            Some(_) => return Err(bad("steps", "empty; give the steps in order, e.g. steps=signed_up,project_created, or leave it out for the plan's")),
            _ if !self.plan.milestones.is_empty() => return Ok(self.plan.milestones.iter().map(|m| Step::milestone(m)).collect()),
            _ => return Err(bad("steps", "give the steps in order, e.g. steps=milestone:signed_up,event:project_created (this project has no plan to take them from)")),
        };
        Ok(steps.iter().map(|s| self.step(s)).collect())
    }

    fn value(&self) -> Step {
        match self.params.get("value").filter(|v| !v.is_empty()) {
            Some(text) => self.step(text),
            None => Step::milestone(self.plan.value.as_deref().unwrap_or(DEFAULT_VALUE)),
        }
    }

    fn due(&self) -> Result<Vec<Due>, ApiError> {
        match self.params.get("due") {
            Some(text) => a::stalled::parse_due(text).map_err(|e| bad("due", e)),
            None => Ok(self.plan.due.clone()),
        }
    }

    async fn events(&self, filter: EventFilter) -> Result<Vec<UserEvents>, ApiError> {
        Ok(self.state.store.events(&self.project.id, &filter).await?)
    }

    /// Every user's tips (from the store's tip rollup), and the milestones the tips lead to.
    async fn tips(&self) -> Result<(Vec<UserTip>, Vec<Step>), ApiError> {
        let tips = self.state.store.tips(&self.project.id).await?;
        let milestones = a::tips::milestones(&tips).iter().map(|m| Step::milestone(m)).collect();
        Ok((tips, milestones))
    }

}

fn all_milestones(steps: &[Step]) -> bool {
    steps.iter().all(|s| s.kind == StepKind::Milestone)
}

/// The events (by type and by name) that can reach one of `steps`.
pub fn reaching(steps: &[Step]) -> EventFilter {
    EventFilter::reaching(steps)
}

fn quantiles_json(q: &Quantiles) -> Value {
    json!({ "count": q.count, "p50": q.p50, "p75": q.p75, "p90": q.p90 })
}

fn histogram_json(h: &Histogram) -> Value {
    json!({ "edgesMs": h.edges, "counts": h.counts })
}

fn milestone_json(m: &a::ttv::MilestoneTimes) -> Value {
    json!({ "name": m.step.name, "kind": m.step.kind.as_str(), "reached": m.reached, "ms": quantiles_json(&m.quantiles) })
}

fn names(steps: &[Step]) -> Vec<&str> {
    steps.iter().map(|s| s.name.as_str()).collect()
}

fn kinds(steps: &[Step]) -> Vec<&'static str> {
    steps.iter().map(|s| s.kind.as_str()).collect()
}

fn activation_json(a: &a::ttv::Activation) -> Value {
    json!({ "eligible": a.eligible, "activated": a.activated, "rate": a.rate })
}

/// The funnel of `steps` over the selected users: from the tallies when every step is a
/// milestone, else by the matcher over every event that can reach a step.
async fn funnel_report(ctx: &Ctx<'_>, tallies: &a::report::Tallies, steps: &[Step]) -> Result<Value, ApiError> {
    let window = ctx.window()?;
    let with_users = ctx.params.flag("users")?;
    let (users, report) = if all_milestones(steps) {
        (tallies.users as usize, a::funnel::funnel_of(steps, tallies.funnel.clone()))
    } else {
        let events = ctx.events(reaching(steps)).await?;
        (ctx.users.len(), a::funnel::funnel(steps, &ctx.users, &events, window))
    };
    let steps: Vec<Value> = report
        .into_iter()
        .map(|s| {
            let mut v = json!({
                "name": s.step.name,
                "kind": s.step.kind.as_str(),
                "users": s.users,
                "conversionFromPrevious": s.conversion_from_previous,
                "conversionFromFirst": s.conversion_from_first,
                "dropOff": s.drop_off,
                "medianMsFromPrevious": s.median_ms_from_previous,
            });
            if with_users {
                v["userIds"] = json!(s.user_ids);
            }
            v
        })
        .collect();
    Ok(json!({ "users": users, "windowMs": window, "steps": steps }))
}

fn ttv_report(tallies: &a::report::Tallies, steps: &[Step], value: &Step) -> Value {
    let r = a::ttv::ttv_of(steps, value, &tallies.ttv);
    json!({
        "users": r.users,
        "milestones": r.milestones.iter().map(milestone_json).collect::<Vec<_>>(),
        "value": milestone_json(&r.value),
        "histogram": histogram_json(&r.histogram),
        "firstDay": activation_json(&r.first_day),
    })
}

fn cohort_report(ctx: &Ctx<'_>, tallies: &a::report::Tallies, steps: &[Step], value: &Step) -> Value {
    let rows: Vec<Value> = a::ttv::cohorts_of(value, &tallies.cohorts)
        .iter()
        .map(|c| {
            json!({
                "start": c.start,
                "label": time::date(c.start),
                "users": c.users,
                "reached": c.reached,
                "value": milestone_json(&c.value),
                "firstDay": activation_json(&c.first_day),
            })
        })
        .collect();
    json!({
        "by": ctx.params.get("by").unwrap_or("day"),
        "steps": names(steps),
        "stepKinds": kinds(steps),
        "valueMilestone": value.name,
        "valueKind": value.kind.as_str(),
        "cohorts": rows,
    })
}

/// `reach` must cover the milestones of `tips` ([`Ctx::tips`]) for `ctx.users`; `everyone` is
/// every selected user ([`a::tips::Population`]).
fn tips_report(ctx: &Ctx<'_>, everyone: &a::tips::Population, tips: &[UserTip], reach: &FirstReach) -> Value {
    let group = |g: &a::tips::Group| {
        json!({ "users": g.users, "completed": g.completed, "completionRate": g.completion_rate, "medianMs": g.median_ms })
    };
    let rows: Vec<Value> = a::tips::tip_effects(&ctx.users, everyone, tips, reach)
        .iter()
        .map(|t| {
            json!({
                "tipId": t.tip_id,
                "milestone": t.milestone,
                "saw": group(&t.saw),
                "didNotSee": group(&t.did_not_see),
                "dismissed": t.dismissed,
                "dismissRate": t.dismiss_rate,
                "ctaClicked": t.cta_clicked,
            })
        })
        .collect();
    json!({ "users": ctx.selected, "tips": rows })
}

/// Survey answers are counted over the last 30 days unless `period` says otherwise.
const DEFAULT_SURVEY_PERIOD_MS: i64 = 30 * DAY;

/// The parameters of the survey report: the period of answer times (`period=30d` or `all`),
/// the milestone answers are split by (`milestone=`, default the value milestone), and a trait
/// to split by (`split=KEY`).
fn survey_options(ctx: &Ctx<'_>) -> Result<(i64, Step, Option<String>), ApiError> {
    let from = match ctx.params.get("period") {
        Some("all") => i64::MIN,
        Some(_) => ctx.now - ctx.params.duration("period")?.unwrap_or(DEFAULT_SURVEY_PERIOD_MS),
        None => ctx.now - DEFAULT_SURVEY_PERIOD_MS,
    };
    let milestone = match ctx.params.get("milestone").filter(|m| !m.is_empty()) {
        Some(text) => ctx.step(text),
        None => ctx.value(),
    };
    Ok((from, milestone, ctx.params.get("split").filter(|b| !b.is_empty()).map(String::from)))
}

fn survey_summary_json(s: &a::surveys::Summary) -> Value {
    json!({
        "shown": s.shown, "answered": s.answered, "dismissed": s.dismissed, "snoozed": s.snoozed,
        "responseRate": s.response_rate, "respondents": s.respondents, "scored": s.scored,
        "groups": s.groups, "score": s.score,
        "distribution": s.distribution.iter().map(|(score, n)| json!({ "score": score, "users": n })).collect::<Vec<_>>(),
    })
}

/// `reach` must cover the milestone of [`survey_options`].
fn surveys_report(ctx: &Ctx<'_>, plan: Option<&onramp::core::plan::Plan>, survey_events: &[UserEvents], reach: &FirstReach) -> Result<(Value, Vec<a::surveys::SurveyResult>), ApiError> {
    let (from, milestone, by) = survey_options(ctx)?;
    let options = a::surveys::Options { from, until: i64::MAX, milestone: &milestone, by_trait: by.as_deref() };
    let results = a::surveys::results(&ctx.users, survey_events, plan, reach, &options);
    let rows: Vec<Value> = results
        .iter()
        .map(|r| {
            json!({
                "surveyId": r.id,
                "kind": r.kind.as_str(),
                // What `score` is: nps (−100…100), csat (% satisfied), ces (mean 1–7).
                "all": survey_summary_json(&r.all),
                "milestoneReached": survey_summary_json(&r.reached),
                "milestoneNotReached": survey_summary_json(&r.not_reached),
                "cohorts": r.cohorts.iter().map(|(week, s)| json!({ "week": time::date(*week), "summary": survey_summary_json(s) })).collect::<Vec<_>>(),
                "byTrait": r.by_trait.iter().map(|(v, s)| json!({ "value": v, "summary": survey_summary_json(s) })).collect::<Vec<_>>(),
                "answers": r.answers.iter().take(SURVEY_ANSWERS_JSON_LIMIT).map(|a| json!({
                    "user": a.user, "at": a.ts, "score": a.score, "group": a.group, "text": a.text, "milestoneReached": a.reached,
                })).collect::<Vec<_>>(),
                "answersTotal": r.answers.len(),
            })
        })
        .collect();
    let report = json!({
        "users": ctx.selected,
        "periodFrom": (from > i64::MIN).then_some(from),
        "milestone": milestone.name,
        "milestoneKind": milestone.kind.as_str(),
        "split": by,
        "surveys": rows,
    });
    Ok((report, results))
}

/// At most this many answer texts per survey in a JSON answer (the CSV export has them all).
const SURVEY_ANSWERS_JSON_LIMIT: usize = 200;

fn metrics_report(ctx: &Ctx<'_>, metrics: &[UserMetric]) -> Value {
    let m = a::metrics::seed_metrics(&ctx.users, metrics);
    let dist = |d: &a::metrics::Distribution| {
        json!({ "users": d.users, "ms": quantiles_json(&d.quantiles), "histogram": histogram_json(&d.histogram) })
    };
    json!({
        "users": ctx.selected,
        "coreTaskCompletion": { "users": m.core_task_users, "rate": m.core_task_completion },
        "firstSessionLength": dist(&m.first_session),
        "returnInterval": dist(&m.return_interval),
    })
}

fn stall_json(s: &Stall) -> Value {
    json!({ "user": s.user, "milestone": s.milestone, "signedUpAt": s.signed_up_at, "dueAt": s.due_at, "lastSeen": s.last_seen })
}

/// The milestones the `due` windows are about.
pub fn due_milestones(due: &[Due]) -> Vec<Step> {
    due.iter().map(|d| Step::milestone(&d.milestone)).collect()
}

fn stalled_json(due: &[Due], tallies: &a::report::Tallies) -> Value {
    json!({
        "due": due.iter().map(|d| json!({ "milestone": d.milestone, "withinMs": d.within_ms })).collect::<Vec<_>>(),
        "total": tallies.stalled,
        "stalled": tallies.stalls.iter().take(STALLED_JSON_LIMIT).map(stall_json).collect::<Vec<_>>(),
    })
}

/// The dashboard's filter choices ([`a::report::TraitChoices`]).
fn traits_report(choices: &a::report::TraitChoices) -> Value {
    let out: serde_json::Map<String, Value> = choices
        .choices()
        .into_iter()
        .map(|(k, values)| (k.to_string(), json!(values.into_iter().map(|(v, n)| json!({ "value": v, "users": n })).collect::<Vec<_>>())))
        .collect();
    Value::Object(out)
}

/// Routes that take only the shared parameters (sign-up range, traits, token).
const SHARED_ONLY: [&str; 0] = [];

pub async fn funnel(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let mut ctx = Ctx::load(&state, &headers, pairs, &["steps", "window", "window_ms", "users"]).await?;
    let steps = ctx.steps()?;
    let tallies = if all_milestones(&steps) {
        ctx.tallies(&steps, &ctx.value(), &[], Some(0)).await?
    } else {
        // Ad-hoc steps may repeat an action: the matcher reads their events, user by user.
        ctx.read_users().await?;
        a::report::Tallies::default()
    };
    let mut report = funnel_report(&ctx, &tallies, &steps).await?;
    report["project"] = json!(ctx.project.id);
    Ok(Json(report))
}

pub async fn time_to_value(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let ctx = Ctx::load(&state, &headers, pairs, &["steps", "value"]).await?;
    let (steps, value) = (ctx.steps()?, ctx.value());
    Ok(Json(ttv_report(&ctx.tallies(&steps, &value, &[], Some(0)).await?, &steps, &value)))
}

pub async fn cohorts(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let ctx = Ctx::load(&state, &headers, pairs, &["steps", "value", "by"]).await?;
    let (steps, value) = (ctx.steps()?, ctx.value());
    Ok(Json(cohort_report(&ctx, &ctx.tallies(&steps, &value, &[], Some(0)).await?, &steps, &value)))
}

pub async fn tip_effect(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let mut ctx = Ctx::load(&state, &headers, pairs, &SHARED_ONLY).await?;
    let (tips, milestones) = ctx.tips().await?;
    let mut query = ctx.report_query(&[], &ctx.value(), &[], Some(0))?;
    query.population = milestones;
    let (_, firsts, everyone) = ctx.resolve(query, tips.iter().map(|t| t.user.clone())).await?;
    Ok(Json(tips_report(&ctx, &everyone, &tips, &FirstReach::new(&firsts))))
}

/// `GET /v1/experiments[?milestone=m][&mde=0.05]`: lift per holdout experiment
/// ([`a::experiments`]); `milestone` is the completion step (default: the value milestone),
/// `mde` the minimum detectable effect on completion the planned sample size is for, as a
/// proportion (0.05 = five percentage points).
pub async fn experiments(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let mut ctx = Ctx::load(&state, &headers, pairs, &["milestone", "mde", "value"]).await?;
    Ok(Json(experiments_report(&mut ctx).await?))
}

async fn experiments_report(ctx: &mut Ctx<'_>) -> Result<Value, ApiError> {
    let value = ctx.value();
    let completion = match ctx.params.get("milestone").filter(|m| !m.is_empty()) {
        Some(text) => ctx.step(text),
        None => value.clone(),
    };
    let mde = match ctx.params.get("mde") {
        None => a::experiments::DEFAULT_MDE,
        Some(text) => text
            .parse::<f64>()
            .ok()
            .filter(|m| *m > 0.0 && *m < 1.0)
            .ok_or_else(|| bad("mde", format!("expected a proportion between 0 and 1 such as 0.05, found {text:?}")))?,
    };
    let assigned = ctx.events(EventFilter::types(&[EventType::Experiment]).with_props()).await?;
    // Only users with an assignment count, so only they are resolved.
    let mut query = ctx.report_query(&[], &value, &[], Some(0))?;
    query.reach = vec![completion.clone()];
    let (_, firsts, _) = ctx.resolve(query, assigned.iter().map(|u| u.user.clone())).await?;
    let reach = FirstReach::new(&firsts);
    let list = a::experiments::experiments(&ctx.users, &assigned, &completion, &value, &reach, ctx.now, mde);
    Ok(json!({
        "project": ctx.project.id,
        "users": ctx.selected,
        "completion": { "name": completion.name, "kind": completion.kind.as_str() },
        "valueMilestone": value.name,
        "valueKind": value.kind.as_str(),
        "mde": mde,
        "confidence": 0.95,
        "experiments": list.iter().map(experiment_json).collect::<Vec<_>>(),
    }))
}

fn experiment_json(e: &a::experiments::Experiment) -> Value {
    use a::experiments::{Comparison, TtvComparison};
    let arm = |f: &a::experiments::ArmFigures| {
        json!({
            "users": f.users,
            "completed": f.completed,
            "completionRate": f.completion_rate,
            "activation": { "eligible": f.eligible, "activated": f.activated, "rate": f.activation_rate },
            "reachedValue": f.reached_value,
            "medianTtvMs": f.median_ttv_ms,
        })
    };
    let diff = |d: &a::stats::Difference| json!({ "estimate": d.difference, "low": d.low, "high": d.high });
    let comparison = |c: &Comparison| match c {
        Comparison::NoData => json!({ "status": "noData" }),
        Comparison::NotEnoughData => json!({ "status": "notEnoughData" }),
        Comparison::Ready { absolute, relative } => json!({
            "status": "ready",
            "absolute": diff(absolute),
            "relative": relative.as_ref().map(diff),
            "significant": absolute.significant(),
        }),
    };
    let ttv = match &e.ttv {
        TtvComparison::NoData => json!({ "status": "noData" }),
        TtvComparison::NotEnoughData => json!({ "status": "notEnoughData" }),
        TtvComparison::Ready(d) => json!({
            "status": "ready",
            "differenceMs": { "estimate": d.difference, "low": d.low, "high": d.high },
            "significant": d.significant(),
        }),
    };
    json!({
        "experiment": e.id,
        "control": arm(&e.control),
        "treatment": arm(&e.treatment),
        "completion": comparison(&e.completion),
        "activation": comparison(&e.activation),
        "ttv": ttv,
        "plannedSampleSize": e.planned.map(|p| json!({
            "baseline": p.baseline, "mde": p.mde, "control": p.control, "treatment": p.treatment, "reached": p.reached,
        })),
    })
}

/// `GET /v1/prompts`: each prompt's conversion, `prompt_shown → prompt_action → goal`, overall
/// and per NPS group ([`a::prompts`]).
pub async fn prompts(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let mut ctx = Ctx::load(&state, &headers, pairs, &SHARED_ONLY).await?;
    let plan_prompts = crate::plans::current(&state, &ctx.project.id).await.ok().flatten().map(|p| p.plan.prompts.clone()).unwrap_or_default();
    let prompt_events = ctx.events(EventFilter::types(&[EventType::Prompt]).with_props()).await?;
    // Only users with a prompt event count, so only they are resolved.
    let query = ctx.report_query(&[], &ctx.value(), &[], Some(0))?;
    ctx.resolve(query, prompt_events.iter().map(|u| u.user.clone())).await?;
    let survey_events = ctx.events(EventFilter::types(&[EventType::Survey]).with_props()).await?;
    let goals: Vec<Step> = plan_prompts.iter().filter_map(a::prompts::Goal::of).map(|g| g.step).collect();
    // Every goal event, not only the first: a goal reached again after the action converts.
    let goal_events = if goals.is_empty() { Vec::new() } else { ctx.events(reaching(&goals)).await? };
    let list = a::prompts::prompts(&ctx.users, &plan_prompts, &prompt_events, &survey_events, &goal_events);
    let funnel = |f: &a::prompts::Funnel| {
        json!({
            "shown": f.shown, "acted": f.acted, "dismissed": f.dismissed, "converted": f.converted,
            "actionRate": f.action_rate, "conversionRate": f.conversion_rate,
        })
    };
    let rows: Vec<Value> = list
        .iter()
        .map(|p| {
            let mut row = funnel(&p.all);
            row["promptId"] = json!(p.prompt_id);
            row["goal"] = json!(p.goal.as_ref().map(|g| json!({ "name": g.step.name, "kind": g.step.kind.as_str(), "withinMs": g.within_ms })));
            row["byNpsGroup"] = json!(p.by_group.iter().map(|(g, f)| { let mut r = funnel(f); r["group"] = json!(g); r }).collect::<Vec<_>>());
            row
        })
        .collect();
    Ok(Json(json!({ "project": ctx.project.id, "users": ctx.selected, "prompts": rows })))
}

pub async fn seed_metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let mut ctx = Ctx::load(&state, &headers, pairs, &SHARED_ONLY).await?;
    let metrics = ctx.state.store.metrics(&ctx.project.id).await?;
    let query = ctx.report_query(&[], &ctx.value(), &[], Some(0))?;
    ctx.resolve(query, metrics.iter().map(|m| m.user.clone())).await?;
    Ok(Json(metrics_report(&ctx, &metrics)))
}

/// `GET /v1/stalled[?due=m:24h,…][&format=csv]`.
pub async fn stalled(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let ctx = Ctx::load(&state, &headers, pairs, &["due", "format"]).await?;
    let due = ctx.due()?;
    // The CSV export lists every stall, sorted in bounded memory by the store's pass
    // ([`a::stalled::StallSorter`]); the JSON the first ones.
    let format = ctx.params.get("format").unwrap_or("json");
    if !matches!(format, "json" | "csv") {
        return Err(bad("format", format!("expected json or csv, found {format:?}")));
    }
    let csv = format == "csv";
    let mut tallies = ctx.tallies(&[], &ctx.value(), &due, if csv { None } else { Some(STALLED_JSON_LIMIT) }).await?;
    if !csv {
        return Ok(Json(stalled_json(&due, &tallies)).into_response());
    }
    let sorted = tallies.export.take().unwrap_or_default().sorted().map_err(|e| StoreError::Unavailable(format!("stalled export: {e}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"stalled-users.csv\""),
        ],
        axum::body::Body::from_stream(stalled_csv_body(sorted, ctx.now)),
    )
        .into_response())
}

/// The CSV of `stalls`, merged from their spilled runs on a blocking thread into a channel of a
/// few pieces that the body drains: the collector holds those pieces, never the whole list,
/// and stops merging when the client goes away. A run that cannot be read back ends the body
/// with an error, so the client sees a cut-off transfer (no final chunk), never a short file
/// that looks complete.
fn stalled_csv_body(stalls: a::stalled::SortedStalls, now: i64) -> impl futures_util::Stream<Item = std::io::Result<String>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<String>>(4);
    tokio::task::spawn_blocking(move || {
        for piece in a::stalled::csv_chunks(stalls, now) {
            let failed = piece.is_err();
            if let Err(e) = &piece {
                eprintln!("onramp-collector: stalled CSV export cut off: {e}");
            }
            if tx.blocking_send(piece).is_err() || failed {
                break;
            }
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|piece| (piece, rx)) })
}

/// `GET /v1/surveys[?period=30d|all][&milestone=m][&split=KEY][&format=csv]`.
pub async fn surveys(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let mut ctx = Ctx::load(&state, &headers, pairs, &["period", "milestone", "split", "format"]).await?;
    let (_, milestone, _) = survey_options(&ctx)?;
    let events = ctx.events(EventFilter::types(&[EventType::Survey]).with_props()).await?;
    let mut query = ctx.report_query(&[], &ctx.value(), &[], Some(0))?;
    query.reach = vec![milestone];
    let (_, reached, _) = ctx.resolve(query, events.iter().map(|u| u.user.clone())).await?;
    let plan = crate::plans::current(&state, &ctx.project.id).await.ok().flatten();
    let (report, results) = surveys_report(&ctx, plan.as_ref().map(|p| &p.plan), &events, &FirstReach::new(&reached))?;
    match ctx.params.get("format").unwrap_or("json") {
        "json" => Ok(Json(report).into_response()),
        "csv" => Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (header::CONTENT_DISPOSITION, "attachment; filename=\"survey-answers.csv\""),
            ],
            a::surveys::to_csv(&results),
        )
            .into_response()),
        other => Err(bad("format", format!("expected json or csv, found {other:?}"))),
    }
}

/// Recent `/v1/report` answers, each under (project, query, plan version) with the store's data
/// version when it was computed: a dashboard reload with no new event is answered without
/// reading the store. An entry is used for at most [`REPORT_CACHE_TTL_MS`] after it was stored,
/// since stalls and first-day activation move with the clock (counted from when the answer was
/// ready, not from when its computation began: at 100 M events on ClickHouse that takes longer
/// than the TTL, and an answer stamped with its start was never served). While the store cannot
/// tell its data version ([`crate::store::Store::data_version`]), nothing is cached.
#[derive(Default)]
pub struct ReportCache {
    /// (key, data version, stored at, answer), most recent last.
    entries: Mutex<Vec<(String, u64, i64, Arc<Value>)>>,
    /// Per key being computed, the lock its computation holds: a request for the same report
    /// meanwhile waits for that answer instead of computing it again beside it (one full report
    /// at 100 M events is a minute of both cores).
    computing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

pub const REPORT_CACHE_TTL_MS: i64 = 60_000;
const REPORT_CACHE_ENTRIES: usize = 32;

impl ReportCache {
    fn get(&self, key: &str, version: u64, now: i64) -> Option<Arc<Value>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .iter()
            .find(|(k, v, at, _)| k == key && *v == version && now - at < REPORT_CACHE_TTL_MS && now >= *at)
            .map(|(_, _, _, answer)| answer.clone())
    }

    fn put(&self, key: String, version: u64, now: i64, answer: Arc<Value>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|(k, _, _, _)| *k != key);
        if entries.len() == REPORT_CACHE_ENTRIES {
            entries.remove(0);
        }
        entries.push((key, version, now, answer));
    }

    /// The lock computations of `key` take turns on; give it back with [`ReportCache::done`].
    fn turn(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut computing = self.computing.lock().unwrap_or_else(|e| e.into_inner());
        computing.entry(key.to_owned()).or_default().clone()
    }

    /// Forgets `key`'s lock once nobody else holds or waits for it (only the map's reference is
    /// left, and nobody can take another without the map's lock).
    fn done(&self, key: &str, turn: Arc<tokio::sync::Mutex<()>>) {
        let mut computing = self.computing.lock().unwrap_or_else(|e| e.into_inner());
        drop(turn);
        if computing.get(key).is_some_and(|t| Arc::strong_count(t) == 1) {
            computing.remove(key);
        }
    }
}

/// Everything the dashboard shows, from one request: one read of the users, one of the first
/// times (funnel of milestones, time-to-value, cohorts, stalls, tips), one of each kind of event
/// the rest needs; served from [`ReportCache`] while the data has not changed.
pub async fn report(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json((*cached_report(&state, &headers, pairs).await?).clone()))
}

/// The report for `pairs` from [`ReportCache`], or computed and kept there.
async fn cached_report(state: &AppState, headers: &HeaderMap, pairs: Vec<(String, String)>) -> Result<Arc<Value>, ApiError> {
    let project = authorize(state, headers, pairs.iter().find(|(k, _)| k == "token").map(|(_, v)| v.as_str()))?;
    // Read before the answer is computed: events stored meanwhile give a newer version, which
    // this answer is never served for.
    let version = state.store.data_version(&project.id).await?;
    let plan = crate::plans::current(state, &project.id).await.ok().flatten().map(|p| p.etag);
    let query: Vec<String> = pairs.iter().filter(|(k, _)| k != "token").map(|(k, v)| format!("{k}={v}")).collect();
    let key = format!("{}\n{}\n{}", project.id, query.join("&"), plan.unwrap_or_default());
    if let Some(answer) = version.and_then(|v| state.report_cache.get(&key, v, state.now())) {
        return Ok(answer);
    }
    let turn = state.report_cache.turn(&key);
    let answer = async {
        let _computing = turn.lock().await;
        // Waited for another computation of this report: its answer serves if no event came since.
        let version = state.store.data_version(&project.id).await?;
        if let Some(answer) = version.and_then(|v| state.report_cache.get(&key, v, state.now())) {
            return Ok(answer);
        }
        let answer = Arc::new(full_report(state, headers, pairs).await?);
        if let Some(v) = version {
            state.report_cache.put(key.clone(), v, state.now(), answer.clone());
        }
        Ok(answer)
    }
    .await;
    state.report_cache.done(&key, turn);
    answer
}

/// What the dashboard asks `/v1/report` for when nothing is chosen (www/dashboard: the cohort
/// select's first option, every other field empty).
const DASHBOARD_DEFAULT_VIEW: &[(&str, &str)] = &[("by", "day")];

/// How long a project's data must stay unchanged before its default view is computed.
const WARM_QUIET: Duration = Duration::from_secs(5);

/// Keeps each project's default dashboard view in the [`ReportCache`], so a product manager's
/// first open is answered from it: computed once the data has stayed unchanged for
/// [`WARM_QUIET`] (after start, after writes go quiet) and again before the answer's
/// [`REPORT_CACHE_TTL_MS`] ends. An answer is cached under the data version read before it was
/// computed, exactly as a request's: never served once newer events are stored. While the store
/// cannot tell its version, nothing is warmed. Run it with
/// [`AppState::spawn_background`].
pub async fn warm_loop(state: AppState) {
    // Per project: the data version last seen and since when (collector uptime, not the
    // injectable clock), and when the default view was last computed at which version.
    let mut seen: Vec<Option<(u64, Instant)>> = vec![None; state.config.projects.len()];
    let mut warmed: Vec<Option<(u64, Instant)>> = vec![None; state.config.projects.len()];
    let refresh = Duration::from_millis(REPORT_CACHE_TTL_MS as u64) - Duration::from_secs(10);
    let stopping = state.stopping();
    tokio::pin!(stopping);
    loop {
        for (i, project) in state.config.projects.iter().enumerate() {
            let Ok(Some(version)) = state.store.data_version(&project.id).await else { continue };
            let quiet_since = match seen[i] {
                Some((v, since)) if v == version => since,
                _ => {
                    seen[i] = Some((version, Instant::now()));
                    continue;
                }
            };
            let fresh = warmed[i].is_some_and(|(v, at)| v == version && at.elapsed() < refresh);
            if quiet_since.elapsed() < WARM_QUIET || fresh {
                continue;
            }
            let mut pairs: Vec<(String, String)> = DASHBOARD_DEFAULT_VIEW.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            pairs.push(("token".into(), project.read_token.clone()));
            // A project whose default view is refused (no plan: the dashboard then asks for
            // other steps) is tried again at the next refresh.
            let _ = cached_report(&state, &HeaderMap::new(), pairs).await;
            warmed[i] = Some((version, Instant::now()));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = &mut stopping => return,
        }
    }
}

async fn full_report(state: &AppState, headers: &HeaderMap, pairs: Vec<(String, String)>) -> Result<Value, ApiError> {
    let mut ctx = Ctx::load(state, headers, pairs, &["steps", "value", "window", "by", "due", "period", "milestone", "split"]).await?;
    let (steps, value, due) = (ctx.steps()?, ctx.value(), ctx.due()?);
    let (tips, tip_milestones) = ctx.tips().await?;
    let metrics = ctx.state.store.metrics(&ctx.project.id).await?;
    let survey_events = ctx.events(EventFilter::types(&[EventType::Survey]).with_props()).await?;
    let (_, survey_milestone, _) = survey_options(&ctx)?;
    // One pass of the store counts the funnel, time-to-value, cohorts, stalls and the filter
    // choices, and resolves only the users the tips, seed metrics and surveys list.
    let mut query = ctx.report_query(&steps, &value, &due, Some(STALLED_JSON_LIMIT))?;
    query.population = tip_milestones;
    query.reach = vec![survey_milestone];
    query.trait_choices = true;
    let interest = tips.iter().map(|t| t.user.clone()).chain(metrics.iter().map(|m| m.user.clone())).chain(survey_events.iter().map(|u| u.user.clone()));
    let (tallies, interest_firsts, everyone) = ctx.resolve(query, interest).await?;
    if !all_milestones(&steps) {
        // Ad-hoc steps may repeat an action: the matcher reads their events, user by user.
        ctx.read_users().await?;
    }
    let reach = FirstReach::new(&interest_firsts);
    let plan = crate::plans::current(state, &ctx.project.id).await.ok().flatten();
    Ok(json!({
        "project": ctx.project.id,
        "now": ctx.now,
        "steps": names(&steps),
        "stepKinds": kinds(&steps),
        "valueMilestone": value.name,
        "valueKind": value.kind.as_str(),
        "funnel": funnel_report(&ctx, &tallies, &steps).await?,
        "ttv": ttv_report(&tallies, &steps, &value),
        "cohorts": cohort_report(&ctx, &tallies, &steps, &value),
        "tips": tips_report(&ctx, &everyone, &tips, &reach),
        "surveys": surveys_report(&ctx, plan.as_ref().map(|p| &p.plan), &survey_events, &reach)?.0,
        "metrics": metrics_report(&ctx, &metrics),
        "stalled": stalled_json(&due, &tallies),
        "visitors": ctx.visitors,
        "traits": traits_report(&tallies.traits),
    }))
}

#[cfg(test)]
mod tests {
    use super::ReportCache;
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn a_cached_report_lives_a_ttl_from_when_it_was_stored() {
        let cache = ReportCache::default();
        // Computed from 0 to 80 s (a 100 M-event report), stored at 80 s.
        cache.put("k".into(), 7, 80_000, Arc::new(json!({"now": 0})));
        assert!(cache.get("k", 7, 80_000 + super::REPORT_CACHE_TTL_MS - 1).is_some());
        assert!(cache.get("k", 7, 80_000 + super::REPORT_CACHE_TTL_MS).is_none(), "past its TTL");
        assert!(cache.get("k", 8, 80_001).is_none(), "another data version");
    }

    #[tokio::test]
    async fn computations_of_one_report_take_turns_and_their_lock_is_forgotten_after() {
        let cache = ReportCache::default();
        let (first, second) = (cache.turn("k"), cache.turn("k"));
        assert!(Arc::ptr_eq(&first, &second), "the same report shares one lock");
        assert!(!Arc::ptr_eq(&first, &cache.turn("other")));
        let held = first.lock().await;
        assert!(second.try_lock().is_err(), "the second waits for the first's answer");
        drop(held);
        cache.done("k", first);
        assert!(cache.computing.lock().expect("lock").contains_key("k"), "still held by the second");
        cache.done("k", second);
        assert!(!cache.computing.lock().expect("lock").contains_key("k"));
    }

    /// What a client of the stalled CSV sees when a run cannot be read back after the answer
    /// started: a 200 whose body fails (no final chunk), not a shorter file that reads as whole.
    #[tokio::test]
    async fn a_failed_export_is_a_cut_off_transfer_not_a_short_file() {
        let sorted = crate::analytics::stalled::sorter_with_a_cut_run().sorted().expect("runs");
        let body = std::sync::Mutex::new(Some(super::stalled_csv_body(sorted, 0)));
        let body = std::sync::Arc::new(body);
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(move || {
                let body = body.lock().expect("lock").take().expect("asked once");
                async move { axum::body::Body::from_stream(body) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let response = reqwest::get(url).await.expect("headers");
        assert_eq!(response.status(), 200);
        assert!(response.text().await.is_err(), "the body must fail, not end");
    }
}
