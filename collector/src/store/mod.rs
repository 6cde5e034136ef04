//! Storage backends. The collector writes accepted events and reads them back for analytics.
//!
//! The read side is deliberately small and data-oriented: a backend lists the project's users
//! (with when each was first and last seen, whether they ever identified, and their latest
//! traits) and hands over each user's events, filtered by type, name and time. Every piece of
//! analytics math (funnel matching, sign-up resolution, quantiles, cohorts, tip effect, stalls)
//! happens afterwards in shared Rust code
//! ([`crate::analytics`] and `onramp::core`), so SQLite and ClickHouse give identical answers for
//! the same events.
//!
//! # Identity
//!
//! Every read resolves an event to one *user key*: the event's `userId` when it has one, else the
//! user id its `anonymousId` was identified with, else the anonymous id itself. So a visitor's
//! events from before `identify` count for them. The link is one way and the first wins: an
//! anonymous id belongs to the user of its first event (by event time, then event id) that
//! carried a user id, whatever order events arrive in.
//!
//! # Rollups
//!
//! Both stores keep per-device rollups as events are stored (SQLite in the same transaction,
//! ClickHouse by materialized views): first and last seen per device, first and last time and
//! count per device and event (type, name), and the latest value (by event time, then event id)
//! of each identify trait per device — which, folded into users, is each user's latest traits
//! and sign-up time. [`Store::users`] and [`Store::firsts`] read them, folding devices into user
//! keys (ClickHouse by sorting the rollup rows by user key in the engine and folding each
//! user's run as the answer streams in; SQLite by reading the rows in user key order from the rollups'
//! primary keys, only anonymous devices resolved and sorted, and merging the ordered runs), so
//! the user list and every first-reach question cost one row per user, and no report reads
//! identify events. Both stores also keep the fold itself, one row per user key (`user_rows`;
//! SQLite in the commit's transaction, `sqlite_users`; ClickHouse written by the collector after
//! each insert, `clickhouse::users`, on a single server), which their user list and
//! [`Store::report_tallies`] read. [`Store::report_tallies`] answers the standard report
//! sections as counts and exact histograms over the selected users (one streaming pass over the
//! per-user rows; on a ClickHouse cluster, or with an ad-hoc event step, the per-device
//! rollups' sorted answers merged by user key as they stream; one user held at a time), so a
//! report holds what its answer holds, not the user list.
//!
//! # Contract for implementations
//!
//! - [`Store::users`] returns one [`UserSeen`] per user key with at least one event, in any order.
//! - [`Store::events`] returns one [`UserEvents`] per user key with at least one matching event,
//!   users in ascending key order (bytes); each user's events are sorted by corrected time `ts`,
//!   ties broken by event id (ascending bytes), so per-user processing is deterministic on every
//!   backend and answers compare one for one.
//! - `props` is the event's JSON object as stored, parsed with `onramp::core::json` — only when
//!   [`EventFilter::with_props`] asks for it (left empty otherwise: parsing is most of the cost).

pub mod clickhouse;
pub mod sqlite;
pub mod sqlite_health;
pub mod sqlite_rollup;
mod sqlite_users;
mod user_rows;

use std::future::Future;
use std::pin::Pin;

use onramp::core::json::Value;

use crate::analytics::report::{ReportQuery, Tallies};
use onramp::core::wire::{Event, EventType};

/// An accepted event with the collector's view of it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    pub project: String,
    pub event: Event,
    /// Client time corrected for clock skew (Unix ms); see `ingest::correct_timestamp`.
    pub ts: i64,
    pub sent_at: i64,
    pub received_at: i64,
}

/// A user key (see the module docs) with the span of its events and its latest traits.
#[derive(Clone, Debug, PartialEq)]
pub struct UserSeen {
    pub user: String,
    /// Corrected time of the user's earliest and latest event, Unix ms.
    pub first_seen: i64,
    pub last_seen: i64,
    /// Whether the key comes from a user id (an event's own, or its device's link); false for a
    /// visitor who never identified, keyed by their anonymous id.
    pub identified: bool,
    /// Per trait key, the value of the latest identify event (by time, then event id) that set
    /// it, in key order; the store normalised `signedUpAt` to ms at ingest.
    pub traits: Vec<(String, Value)>,
}

/// One stored event as analytics reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct UserEvent {
    /// Corrected time, Unix ms.
    pub ts: i64,
    pub kind: EventType,
    pub name: String,
    /// The props object's entries; empty unless [`EventFilter::with_props`].
    pub props: Vec<(String, Value)>,
}

impl UserEvent {
    pub fn prop(&self, key: &str) -> Option<&Value> {
        onramp::core::json::field(&self.props, key)
    }
}

/// One user's events, sorted by `ts` then event id. `user` is the user key.
#[derive(Clone, Debug, PartialEq)]
pub struct UserEvents {
    pub user: String,
    pub events: Vec<UserEvent>,
}

/// Which events [`Store::events`] returns. Every condition given must hold; an empty list means
/// "any".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub types: Vec<EventType>,
    pub names: Vec<String>,
    /// Inclusive lower bound on `ts`.
    pub since: Option<i64>,
    /// Exclusive upper bound on `ts`.
    pub until: Option<i64>,
    pub with_props: bool,
}

impl EventFilter {
    pub fn types(types: &[EventType]) -> EventFilter {
        EventFilter { types: types.to_vec(), ..EventFilter::default() }
    }
    pub fn names(names: &[String]) -> EventFilter {
        EventFilter { names: names.to_vec(), ..EventFilter::default() }
    }
    /// The events (by type and by name) that can reach one of `steps`.
    pub fn reaching(steps: &[crate::analytics::Step]) -> EventFilter {
        let mut filter = EventFilter::default();
        for s in steps {
            if !filter.types.contains(&s.kind.event_type()) {
                filter.types.push(s.kind.event_type());
            }
            if !filter.names.contains(&s.name) {
                filter.names.push(s.name.clone());
            }
        }
        filter
    }

    pub fn with_props(mut self) -> EventFilter {
        self.with_props = true;
        self
    }
    /// The same test as a backend's WHERE clause, for backends and tests that filter in Rust.
    pub fn matches(&self, kind: EventType, name: &str, ts: i64) -> bool {
        (self.types.is_empty() || self.types.contains(&kind))
            && (self.names.is_empty() || self.names.iter().any(|n| n == name))
            && self.since.is_none_or(|s| ts >= s)
            && self.until.is_none_or(|u| ts < u)
    }
}

/// One user's events of one tip, folded over their devices: what the tip-effect report reads
/// (from the tip rollup, never from the events themselves).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserTip {
    pub user: String,
    /// The events' `tipId` prop (a string; tip events without one are left out).
    pub tip_id: String,
    /// The names of the user's events of this tip (`tip_shown`, `tip_dismissed`, …), each once,
    /// in byte order.
    pub names: Vec<String>,
    /// The `milestone` prop (a string) of the user's earliest event of this tip (by time, then
    /// event id) that has one.
    pub milestone: Option<String>,
}

/// One user's first and latest value of one seed metric (by time, then event id), folded over
/// their devices, from the metric events whose value prop ([`metric_value_prop`]) is a number.
#[derive(Clone, Debug, PartialEq)]
pub struct UserMetric {
    pub user: String,
    pub name: String,
    pub first: f64,
    pub latest: f64,
}

/// The prop holding a seed metric's number (docs/EVENTS.md): `value` for the core-task ratio,
/// `valueMs` for the durations; `None` for metrics no report reads. The SQL that recomputes the
/// metric rollup (SQLite `sqlite_rollup`, ClickHouse migration 9) spells the same choice.
pub fn metric_value_prop(name: &str) -> Option<&'static str> {
    use onramp::core::vocab::{metric, prop};
    match name {
        metric::CORE_TASK_COMPLETION => Some(prop::VALUE),
        metric::FIRST_SESSION_LENGTH | metric::RETURN_INTERVAL => Some(prop::VALUE_MS),
        _ => None,
    }
}

/// [`UserTip`]s from tip events with props (users in key order, each user's events sorted, as
/// [`Store::events`] gives them), in (user, tip id) order: the definition the rollups keep.
pub fn tips_of(events: &[UserEvents]) -> Vec<UserTip> {
    use onramp::core::vocab::prop;
    let mut out = Vec::new();
    for u in events {
        let mut tips: std::collections::BTreeMap<&str, UserTip> = std::collections::BTreeMap::new();
        for e in u.events.iter().filter(|e| e.kind == EventType::Tip) {
            let Some(tip_id) = e.prop(prop::TIP_ID).and_then(|v| v.as_str()) else { continue };
            let tip = tips.entry(tip_id).or_insert_with(|| UserTip { user: u.user.clone(), tip_id: tip_id.into(), names: Vec::new(), milestone: None });
            if !tip.names.contains(&e.name) {
                tip.names.push(e.name.clone());
            }
            // Events are sorted, so the first with a milestone is the earliest.
            if tip.milestone.is_none() {
                tip.milestone = e.prop(prop::MILESTONE).and_then(|v| v.as_str()).map(String::from);
            }
        }
        out.extend(tips.into_values().map(|mut t| {
            t.names.sort();
            t
        }));
    }
    out
}

/// [`UserMetric`]s from metric events with props (as [`tips_of`] takes them), in (user, name)
/// order: the definition the rollups keep.
pub fn metrics_of(events: &[UserEvents]) -> Vec<UserMetric> {
    let mut out = Vec::new();
    for u in events {
        let mut metrics: std::collections::BTreeMap<&str, UserMetric> = std::collections::BTreeMap::new();
        for e in u.events.iter().filter(|e| e.kind == EventType::Metric) {
            let Some(value) = metric_value_prop(&e.name).and_then(|key| e.prop(key)).and_then(|v| v.as_f64()) else { continue };
            let m = metrics.entry(&e.name).or_insert_with(|| UserMetric { user: u.user.clone(), name: e.name.clone(), first: value, latest: value });
            m.latest = value;
        }
        out.extend(metrics.into_values());
    }
    out
}

/// A user's milestone-naming event of one tip, by (ts, event id) then the milestone.
type Earliest = Option<((i64, String), String)>;

/// Merges rollup rows, each one user key's (tip id, event name) with the earliest
/// milestone-naming event among them, sorted by (user, tip id), into [`UserTip`]s: the last fold
/// of [`Store::tips`], which both stores' SQL has grouped by user key.
pub fn merge_tip_rows(rows: impl IntoIterator<Item = (String, String, String, Earliest)>) -> Vec<UserTip> {
    let mut out: Vec<(UserTip, Earliest)> = Vec::new();
    for (user, tip_id, name, milestone) in rows {
        match out.last_mut() {
            Some((t, earliest)) if t.user == user && t.tip_id == tip_id => {
                if !t.names.contains(&name) {
                    t.names.push(name);
                }
                if milestone.as_ref().is_some_and(|m| earliest.as_ref().is_none_or(|e| m.0 < e.0)) {
                    *earliest = milestone;
                }
            }
            _ => out.push((UserTip { user, tip_id, names: vec![name], milestone: None }, milestone)),
        }
    }
    out.into_iter()
        .map(|(mut t, earliest)| {
            t.names.sort();
            t.milestone = earliest.map(|(_, m)| m);
            t
        })
        .collect()
}

/// A metric's value with the (ts, event id) of the event that reported it.
pub type Reported = ((i64, String), f64);

/// Merges rollup rows, each one device's (or user key's) first and latest of one metric, sorted
/// by (user, name), into [`UserMetric`]s: the earliest first and the latest latest.
pub fn merge_metric_rows(rows: impl IntoIterator<Item = (String, String, Reported, Reported)>) -> Vec<UserMetric> {
    let mut out: Vec<(String, String, Reported, Reported)> = Vec::new();
    for (user, name, first, latest) in rows {
        match out.last_mut() {
            Some(m) if m.0 == user && m.1 == name => {
                if first.0 < m.2 .0 {
                    m.2 = first;
                }
                if latest.0 > m.3 .0 {
                    m.3 = latest;
                }
            }
            _ => out.push((user, name, first, latest)),
        }
    }
    out.into_iter().map(|(user, name, first, latest)| UserMetric { user, name, first: first.1, latest: latest.1 }).collect()
}

/// A user's stored data, as a privacy export returns it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UserData {
    /// Each event with every stored column: `id`, `type`, `name`, `anonymousId`, `userId`,
    /// `ts`, `clientTs`, `sentAt`, `receivedAt`, `props`; ordered by `ts`, then `id`.
    pub events: Vec<serde_json::Value>,
    /// `(anonymous id, user id)` links that involve the user.
    pub identities: Vec<(String, String)>,
}

/// The SQL condition (SQLite and ClickHouse alike) selecting the events that belong to the
/// user key `user` of `project`, by the [Identity](self#identity) rule: its user id; else,
/// with no user id, an anonymous id linked to it, or the anonymous id itself when that id is
/// linked to nobody. `linked` and `all_linked` are the (quoted) anonymous ids linked to the user
/// and to anyone; `user_is_null` is the backend's test for "no user id".
pub fn user_events_condition(user: &str, linked: &str, all_linked: &str, user_is_null: &str) -> String {
    format!(
        "(user_id = {user} OR ({user_is_null} AND (anonymous_id IN ({linked}) OR (anonymous_id = {user} AND anonymous_id NOT IN ({all_linked})))))"
    )
}

/// A webhook notification in the outbox (see `crate::webhook`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// The `webhook-id`: derived from (project, kind, user), so the same on every retry and on
    /// every collector.
    pub id: String,
    pub project: String,
    /// `value_reached`, `user_stalled`, or `health_changed` / `stage_changed` (keyed
    /// `{kind}:{id}:{previous computation}` in `user`; see `crate::health`).
    pub kind: String,
    pub user: String,
    /// The JSON body, exactly as signed and sent.
    pub payload: String,
    pub created_at: i64,
    /// Attempts made so far.
    pub attempts: u32,
}

/// The outcome of one delivery attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    Delivered { at: i64 },
    /// Failed; try again at `next`.
    Retry { next: i64, error: String },
    /// Failed for the last time.
    GaveUp { at: i64, error: String },
}

#[derive(Debug)]
pub enum StoreError {
    /// The store cannot take writes or answer now; the client should retry (HTTP 503).
    Unavailable(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Unavailable(why) => write!(f, "storage unavailable: {why}"),
        }
    }
}

/// Where a long operation reports how far it got (one line each time).
pub type Progress = Box<dyn FnMut(String) + Send>;

/// Keeps each user's first event of each (type, name), in time order (events come sorted).
pub fn first_of_each(users: Vec<UserEvents>) -> Vec<UserEvents> {
    users
        .into_iter()
        .map(|mut u| {
            let mut seen = std::collections::HashSet::new();
            u.events.retain(|e| seen.insert((e.kind, e.name.clone())));
            for e in &mut u.events {
                e.props.clear();
            }
            u
        })
        .collect()
}

pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

pub trait Store: Send + Sync + 'static {
    /// Stores events durably; resolves only after they are committed. Events whose id is
    /// already stored for the same project are ignored, so retries are harmless; the same id in
    /// another project is another event.
    fn insert(&self, events: Vec<StoredEvent>) -> StoreFuture<'_, ()>;

    /// The ids among `ids` that `project` stores (committed), in any order (`POST /v1/known`).
    /// A store that cannot tell names none, and the page sends those events again: the dedup
    /// by id keeps each once.
    fn known_ids(&self, _project: &str, _ids: Vec<String>) -> StoreFuture<'_, Vec<String>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Every user key of `project` with its first and last event time, whether it identified,
    /// and its latest traits, in any order.
    fn users(&self, project: &str) -> StoreFuture<'_, Vec<UserSeen>>;

    /// The events of `project` that pass `filter`, grouped by user key, each user's sorted by
    /// `ts` then event id. Users with no matching event are left out.
    fn events(&self, project: &str, filter: &EventFilter) -> StoreFuture<'_, Vec<UserEvents>>;

    /// Whether the store can take writes and answer reads now (`/readyz`): its writer is
    /// running and keeping up, and a trivial read succeeds.
    fn ready(&self) -> StoreFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }

    /// Each user key's first event of each (type, name) passing `filter`'s types and names (its
    /// time bounds and `with_props` are ignored): users in key order, each user's events by time,
    /// props empty. What time-to-value, cohorts, stalls and tip effect need. Stores with rollups
    /// answer from them, reading one row per device and name; this default reads every event.
    fn firsts(&self, project: &str, filter: &EventFilter) -> StoreFuture<'_, Vec<UserEvents>> {
        let filter = EventFilter { types: filter.types.clone(), names: filter.names.clone(), ..EventFilter::default() };
        let project = project.to_owned();
        Box::pin(async move { Ok(first_of_each(self.events(&project, &filter).await?)) })
    }

    /// The standard sections of a report (funnel of milestones, time-to-value, cohorts,
    /// first-day activation, stalls) as [`Tallies`]: counts and exact histograms over the users
    /// `query` selects, never a row per user. The shape is a GROUP BY per user key, then per
    /// step, cohort and duration, so a store can compute it inside its engine; this default
    /// reads every user and their first times and tallies them in Rust
    /// ([`crate::analytics::report::tally`], the definition).
    fn report_tallies(&self, project: &str, query: &ReportQuery) -> StoreFuture<'_, Tallies> {
        let (project, query) = (project.to_owned(), query.clone());
        Box::pin(async move {
            let (users, visitors) = crate::analytics::resolve_users(self.users(&project).await?, query.now);
            let columns = query.columns();
            let firsts = if columns.is_empty() { Vec::new() } else { self.firsts(&project, &EventFilter::reaching(&columns)).await? };
            Ok(crate::analytics::report::tally(&query, &users, &visitors, &crate::analytics::FirstReach::new(&firsts)))
        })
    }

    /// Each user key's [`UserTip`]s, in (user, tip id) order. Stores with rollups answer from
    /// them, folding devices into users inside the engine; this default reads the tip events.
    fn tips(&self, project: &str) -> StoreFuture<'_, Vec<UserTip>> {
        let project = project.to_owned();
        Box::pin(async move { Ok(tips_of(&self.events(&project, &EventFilter::types(&[EventType::Tip]).with_props()).await?)) })
    }

    /// Each user key's [`UserMetric`]s, in (user, name) order. Stores with rollups answer from
    /// them; this default reads the metric events.
    fn metrics(&self, project: &str) -> StoreFuture<'_, Vec<UserMetric>> {
        let project = project.to_owned();
        Box::pin(async move { Ok(metrics_of(&self.events(&project, &EventFilter::types(&[EventType::Metric]).with_props()).await?)) })
    }

    /// How many distinct `track` events of each of `names` the user key `user` has stored (see
    /// [Identity](self#identity)), leaving out those sent by the device `except` (an anonymous
    /// id): what `/v1/state` adds to that device's own counts for `count` conditions. Stores with
    /// rollups sum their per-device counts; this default reads the user's events.
    fn user_counts(&self, project: &str, user: &str, names: &[String], except: &str) -> StoreFuture<'_, Vec<(String, u64)>> {
        let (project, user, names, except) = (project.to_owned(), user.to_owned(), names.to_vec(), except.to_owned());
        Box::pin(async move {
            let mut counts: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
            for e in self.user_data(&project, &user).await?.events {
                let (Some("track"), Some(name), Some(anon)) = (e["type"].as_str(), e["name"].as_str(), e["anonymousId"].as_str()) else { continue };
                if anon != except && names.iter().any(|n| n == name) {
                    *counts.entry(name.to_owned()).or_default() += 1;
                }
            }
            Ok(counts.into_iter().collect())
        })
    }

    /// Recomputes the rollups of `project` (every project when `None`) from the stored events,
    /// telling `progress` as it goes; returns the number of events read.
    fn rebuild_rollups(&self, _project: Option<&str>, _progress: Progress) -> StoreFuture<'_, u64> {
        Box::pin(async { Err(StoreError::Unavailable("this store keeps no rollups".into())) })
    }

    /// Every difference between the stored rollups and a recompute from the events, one line
    /// each; empty when they agree.
    fn verify_rollups(&self, _project: Option<&str>) -> StoreFuture<'_, Vec<String>> {
        Box::pin(async { Err(StoreError::Unavailable("this store keeps no rollups".into())) })
    }

    /// A number that changes whenever this store's data may have changed, for caching answers;
    /// `None` when the store cannot tell at the moment (ClickHouse while a deletion or another
    /// mutation is still running).
    fn data_version(&self, _project: &str) -> StoreFuture<'_, Option<u64>> {
        Box::pin(async { Ok(None) })
    }

    /// Write requests accepted and not yet committed (the `/metrics` queue-depth gauge).
    fn queue_depth(&self) -> usize {
        0
    }

    /// Everything stored about the user key `user` (see [Identity](self#identity)): the events
    /// reports attribute to it and its identity links, for a privacy export (GDPR art. 15).
    fn user_data(&self, project: &str, user: &str) -> StoreFuture<'_, UserData>;

    /// Erases what [`Store::user_data`] returns, and any per-user derived rows (GDPR art. 17);
    /// resolves once the erasure is durable. Returns how many events were erased.
    fn erase_user(&self, project: &str, user: &str) -> StoreFuture<'_, u64>;

    /// Deletes the project's raw events dated (corrected time) before `before`, Unix ms
    /// (retention). Returns how many were deleted.
    fn delete_events_before(&self, project: &str, before: i64) -> StoreFuture<'_, u64>;

    /// Adds webhook notifications to the durable outbox, each unless the outbox already holds
    /// one for its (project, kind, user); resolves once they are committed.
    fn enqueue_notifications(&self, notifications: Vec<Notification>) -> StoreFuture<'_, ()>;

    /// Notifications neither delivered nor given up whose next attempt is due at `now`, oldest
    /// first, at most `limit`.
    fn due_notifications(&self, now: i64, limit: usize) -> StoreFuture<'_, Vec<Notification>>;

    /// Records the outcome of an attempt to deliver notification `id`.
    fn record_attempt(&self, id: &str, attempt: Attempt) -> StoreFuture<'_, ()>;

    /// The project's current plan (validated JSON text), if any: the newest version. Stores
    /// that keep no plans say none, and the collector serves the plan file it was started with.
    fn plan(&self, _project: &str) -> StoreFuture<'_, Option<String>> {
        Box::pin(async { Ok(None) })
    }

    /// Publishes a plan as the project's new current version (numbered one past the newest),
    /// unless `base` is given and is not the current version's number (`None` in `base`'s
    /// inner option: "no version yet"). `version.text` has been validated by the caller.
    fn publish_plan(&self, _project: &str, _version: NewPlanVersion, _base: Option<Option<u64>>) -> StoreFuture<'_, Published> {
        Box::pin(async { Err(StoreError::Unavailable("this store keeps no plans; start the collector with --plan FILE".into())) })
    }

    /// The project's plan versions, newest first, at most `limit` (without their texts).
    fn plan_versions(&self, _project: &str, _limit: usize) -> StoreFuture<'_, Vec<PlanVersion>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Stores a health computation: each record replaces the same (kind, id, day) one, each
    /// transition is kept (once: the same (kind, id, at, what) again is ignored). Resolves once
    /// committed.
    fn save_health(&self, _project: &str, _records: Vec<HealthRecord>, _transitions: Vec<HealthTransition>) -> StoreFuture<'_, ()> {
        Box::pin(async { Err(StoreError::Unavailable("this store keeps no health history".into())) })
    }

    /// The project's health records of UTC days `since_day` and later, for every entity or the
    /// one `entity` (kind, id) names, ordered by kind, id, day.
    fn health_records(&self, _project: &str, _since_day: i64, _entity: Option<(String, String)>) -> StoreFuture<'_, Vec<HealthRecord>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// The project's transitions with `since <= at < until` (of the one `entity` (kind, id)
    /// names, or of every entity), ordered by at, kind, id, what.
    fn health_transitions(&self, _project: &str, _since: i64, _until: i64, _entity: Option<(String, String)>) -> StoreFuture<'_, Vec<HealthTransition>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// When the latest computation of `kind` stored its records (their `computed_at`), among
    /// the records of UTC days `since_day` and later; `None` when there is none. That
    /// computation's records are the kind's current health: an entity it did not compute (an
    /// erased user) has none.
    fn health_newest(&self, _project: &str, _kind: &str, _since_day: i64) -> StoreFuture<'_, Option<i64>> {
        Box::pin(async { Ok(None) })
    }

    /// The current records (`computed_at = newest`) of `filter.kind` counted by band and stage,
    /// and how many of them `filter` selects: counted in the engine, no row leaves it.
    fn health_counts(&self, _project: &str, _filter: &HealthFilter, _newest: i64) -> StoreFuture<'_, HealthCounts> {
        Box::pin(async { Ok(HealthCounts::default()) })
    }

    /// Per UTC day from `since_day` on, how many records of `kind` that day had each band
    /// (`None`: no band), in day order.
    fn health_bands_by_day(&self, _project: &str, _kind: &str, _since_day: i64) -> StoreFuture<'_, Vec<(i64, Option<String>, u64)>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// At most `limit` of the current records `filter` selects, worst first ([`HealthCursor`]
    /// order: no score first, then by score, then by id), those after `after` only; each with
    /// the score of the entity's latest record at least 7 days older than it (and of UTC day
    /// `history_since_day` or later), if any. Filtered, sorted and cut in the engine, so a
    /// list of N rows holds N.
    fn health_list(&self, _project: &str, _query: &HealthListQuery) -> StoreFuture<'_, Vec<(HealthRecord, Option<u32>)>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// The transitions of `kind` with `since <= at < until` counted by (what, from, to).
    fn health_transition_counts(&self, _project: &str, _kind: &str, _since: i64, _until: i64) -> StoreFuture<'_, Vec<(String, String, String, u64)>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// The text of version `number` of the project's plan.
    fn plan_version_text(&self, _project: &str, _number: u64) -> StoreFuture<'_, Option<String>> {
        Box::pin(async { Ok(None) })
    }
}

/// One computed health of a user or account (see `crate::health`): the day's snapshot, which a
/// later computation on the same UTC day replaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthRecord {
    /// `user` or `account`.
    pub kind: String,
    pub id: String,
    /// UTC day, days since 1970-01-01.
    pub day: i64,
    /// Collector clock, Unix ms.
    pub computed_at: i64,
    pub score: Option<u32>,
    /// `red` | `yellow` | `green`; `None` without a score.
    pub band: Option<String>,
    pub stage: String,
    /// The breakdown as JSON: measures, missing, reasons, profile, account or members.
    pub detail: String,
}

/// The current health records a list selects (`GET /v1/health`); an empty list selects any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthFilter {
    /// `user` or `account`.
    pub kind: String,
    /// `red`, `yellow`, `green`, or `none` for records without a band.
    pub bands: Vec<String>,
    pub stages: Vec<String>,
    /// Users whose account (the `account` of their breakdown) this is; for accounts, the
    /// account itself too.
    pub account: Option<String>,
}

impl HealthFilter {
    /// Whether the filter selects every record of its kind.
    pub fn is_everyone(&self) -> bool {
        self.bands.is_empty() && self.stages.is_empty() && self.account.is_none()
    }
}

/// What [`Store::health_counts`] answers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthCounts {
    /// (band, `None` without one; stage; records), each pair once.
    pub groups: Vec<(Option<String>, String, u64)>,
    /// The records the filter selects.
    pub selected: u64,
}

/// A position in a health list: the last row's score (`None`: no score) and id. Lists are
/// ordered by (has a score, score, id), ids compared bytewise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCursor {
    pub score: Option<u32>,
    pub id: String,
}

/// What [`Store::health_list`] asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthListQuery {
    pub filter: HealthFilter,
    /// The current computation ([`Store::health_newest`]).
    pub newest: i64,
    /// The trend looks back at records of this UTC day and later only.
    pub history_since_day: i64,
    pub after: Option<HealthCursor>,
    pub limit: usize,
}

/// A band or stage change found by a computation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthTransition {
    pub kind: String,
    pub id: String,
    /// When the computation that found it ran, Unix ms.
    pub at: i64,
    /// `band` or `stage`.
    pub what: String,
    /// The band or stage before (`none` for no band) and after.
    pub from: String,
    pub to: String,
    /// The webhook payload: the change with its per-measure breakdown.
    pub detail: String,
}

/// A plan to publish, with who published it and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewPlanVersion {
    pub text: String,
    /// The plan's own `"version"` field.
    pub plan_version: String,
    pub author: crate::config::Author,
    pub message: String,
    pub created_at: i64,
    /// The version this one restores, for a rollback.
    pub rollback_of: Option<u64>,
}

/// One stored version of a project's plan, as the history lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanVersion {
    pub number: u64,
    pub plan_version: String,
    /// `editor`, `admin` or `file` (see [`crate::config::AuthorKind`]); `unknown` for a plan
    /// stored before versions were kept.
    pub author_kind: String,
    pub author: String,
    pub message: String,
    /// Collector clock, Unix ms.
    pub created_at: i64,
    pub rollback_of: Option<u64>,
    /// The text's entity tag (what `GET /v1/plan` answers with while it is current).
    pub etag: String,
}

/// What [`Store::publish_plan`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Published {
    /// Stored as this version number.
    Stored(u64),
    /// Not stored: the current version is not the one the change was based on.
    Conflict { current: Option<u64> },
}
