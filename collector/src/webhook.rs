//! The optional webhook (`--webhook URL`): a JSON POST when a user reaches value or stalls, so a
//! customer-success tool can act without polling the dashboard.
//!
//! - `value_reached` is sent once the batch carrying the SDK's `time_to_value` milestone event is
//!   committed. A resent batch can send it again: receivers should treat it as at-least-once and
//!   key on `user`.
//! - `user_stalled` comes from a periodic scan. A scan announces the stalls whose due time fell
//!   since the previous scan, so each is announced once without the collector remembering what it
//!   sent (it stays stateless); stalls that fell due while no collector ran are not announced,
//!   but they are all on the dashboard's stalled list.
//!
//! Only `http://` URLs: the collector carries no TLS client, so point it at a local relay or a
//! TLS-terminating proxy for an `https://` receiver.

use std::time::Duration;

use onramp::core::wire::EventType;
use serde_json::{json, Value};

use crate::analytics::stalled::{self, Due, Stall};
use crate::analytics::FirstReach;
use crate::query;
use crate::store::{EventFilter, StoreError, StoredEvent};
use crate::{AppState, Project};

/// The SDK's value marker (docs/EVENTS.md).
const VALUE_EVENT: &str = query::DEFAULT_VALUE;

#[derive(Clone, Debug)]
pub struct Webhook {
    pub url: String,
    /// Due windows for stall alerts in projects whose plan gives none (`--due`).
    pub due: Vec<Due>,
    /// How often to scan for stalls.
    pub scan_every: Duration,
    client: reqwest::Client,
}

impl Webhook {
    pub fn new(url: &str, due: Vec<Due>, scan_every: Duration) -> Result<Webhook, String> {
        if !url.starts_with("http://") {
            return Err(format!("--webhook {url}: only http:// URLs are supported (use a relay for https)"));
        }
        let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().map_err(|e| e.to_string())?;
        Ok(Webhook { url: url.into(), due, scan_every, client })
    }

    /// POSTs `body`; a receiver that is down or slow is logged, never retried into a backlog.
    async fn post(&self, body: Value) {
        match self.client.post(&self.url).json(&body).send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => eprintln!("onramp-collector: webhook {} answered {}", self.url, r.status()),
            Err(e) => eprintln!("onramp-collector: webhook {} failed: {e}", self.url),
        }
    }

    /// After a committed batch: announces every `time_to_value` event in it, in the background so
    /// the SDK's acknowledgement never waits for a receiver.
    pub fn after_commit(&self, events: &[StoredEvent]) {
        let bodies: Vec<Value> = events.iter().filter_map(value_reached).collect();
        if bodies.is_empty() {
            return;
        }
        let hook = self.clone();
        tokio::spawn(async move {
            for body in bodies {
                hook.post(body).await;
            }
        });
    }
}

fn value_reached(s: &StoredEvent) -> Option<Value> {
    let e = &s.event;
    if e.kind != onramp::core::wire::EventType::Milestone || e.name != VALUE_EVENT {
        return None;
    }
    let prop = |k: &str| e.prop(k).map(|v| serde_json::from_str::<Value>(&v.to_json()).unwrap_or(Value::Null));
    Some(json!({
        "type": "value_reached",
        "project": s.project,
        "user": e.user_id.as_deref().unwrap_or(&e.anonymous_id),
        "milestone": prop("milestone"),
        "ttvMs": prop("sinceSignupMs"),
        "at": s.ts,
    }))
}

fn stalled_body(project: &str, s: &Stall) -> Value {
    json!({
        "type": "user_stalled",
        "project": project,
        "user": s.user,
        "milestone": s.milestone,
        "signedUpAt": s.signed_up_at,
        "dueAt": s.due_at,
        "lastSeen": s.last_seen,
    })
}

/// The stalls of `project` whose due time is in `(after, until]`.
pub async fn stalls_due_between(
    state: &AppState,
    project: &Project,
    due: &[Due],
    after: i64,
    until: i64,
) -> Result<Vec<Stall>, StoreError> {
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let users = query::load_users(state, project).await?;
    let names: Vec<String> = due.iter().map(|d| d.milestone.clone()).collect();
    let filter = EventFilter { types: vec![EventType::Milestone], ..EventFilter::names(&names) };
    let reached = state.store.firsts(&project.id, &filter).await?;
    let all = stalled::stalled(&users, due, &FirstReach::new(&reached), until);
    Ok(stalled::newly_stalled(all, after, until))
}

/// Scans every project for new stalls every `scan_every` until shutdown; run it with
/// [`AppState::spawn_background`].
pub async fn scan_loop(state: AppState, hook: Webhook) {
    // Per project: the end of the last span scanned.
    let start = state.now();
    let mut after: Vec<i64> = state.config.projects.iter().map(|_| start).collect();
    let mut tick = tokio::time::interval(hook.scan_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stopping = state.stopping();
    tokio::pin!(stopping);
    loop {
        // A scan under way finishes (within the drain timeout); none starts after shutdown.
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stopping => return,
        }
        let until = state.now();
        for (project, after) in state.config.projects.iter().zip(after.iter_mut()) {
            let due = match query::plan_defaults(&state, project).await.due {
                plan_due if !plan_due.is_empty() => plan_due,
                _ => hook.due.clone(),
            };
            match stalls_due_between(&state, project, &due, *after, until).await {
                Ok(stalls) => {
                    for s in &stalls {
                        hook.post(stalled_body(&project.id, s)).await;
                    }
                    *after = until;
                }
                // The span stays unscanned, so the next scan covers it.
                Err(e) => eprintln!("onramp-collector: stall scan: {e}"),
            }
        }
    }
}
