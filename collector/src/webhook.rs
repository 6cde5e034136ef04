//! The optional webhook (`--webhook URL`): a signed JSON POST when a user reaches value,
//! stalls or answers a survey (`survey_answered`, with `detractor: true` for NPS 0–6), so a
//! customer-success tool can act without polling the dashboard.
//!
//! - **At most one notification per user and kind** (`value_reached`, `user_stalled`; one per
//!   answer event for `survey_answered`): each is
//!   written to a durable outbox in the store, keyed by (project, kind, user), so resent batches,
//!   repeated milestone events and several collectors cause one notification, not one per event.
//! - **Durable**: `value_reached` is written to the outbox before the batch that caused it is
//!   acknowledged (a crash in between means no acknowledgement, so the SDK resends the batch and
//!   the notification is written then); `user_stalled` comes from a periodic scan that writes
//!   the stalls whose due time fell since its previous scan.
//! - **Retries**: a delivery loop sends due notifications; a failure (no answer, a non-2xx, a
//!   redirect) is retried with exponential backoff from [`Webhook::retry_base`] (doubling, at most
//!   an hour apart) until [`Webhook::max_attempts`]; the `webhook-id` stays the same, so
//!   receivers can drop repeats.
//! - **Signed** the Standard Webhooks way: `webhook-id`, `webhook-timestamp` (Unix seconds) and
//!   `webhook-signature: v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>` with the
//!   project's `webhookSecret` (`whsec_` + base64 of the key, as Standard Webhooks libraries
//!   take it). Receivers verify with any Standard Webhooks library.
//! - **No redirects, no private targets**: a redirect is a failed attempt, never followed; the
//!   receiver's address is resolved for each delivery and refused when it is loopback, private,
//!   link-local or otherwise internal, unless the operator allows it (`--webhook-allow-private`,
//!   e.g. for a relay on the same host). The checked address is the one connected to, so DNS
//!   cannot swap it in between.
//!
//! Customer health adds `health_changed` and `stage_changed`, each once per transition
//! (`crate::health`, docs/HEALTH.md).
//!
//! Only `http://` URLs: the collector carries no TLS client, so point it at a local relay or a
//! TLS-terminating proxy for an `https://` receiver (and allow private targets for it).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use onramp::core::vocab;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::analytics::stalled::{self, Due, Stall};
use crate::analytics::FirstReach;
use crate::query;
use crate::store::{Attempt, Notification, StoreError, StoredEvent};
use crate::{AppState, Project};

/// The SDK's value marker (docs/EVENTS.md).
const VALUE_EVENT: &str = vocab::milestone::TIME_TO_VALUE;

/// Notifications sent per pass of the delivery loop.
const BATCH: usize = 50;

#[derive(Debug)]
pub struct Webhook {
    pub url: String,
    host: String,
    port: u16,
    /// Due windows for stall alerts in projects whose plan gives none (`--due`).
    pub due: Vec<Due>,
    /// How often to scan for stalls.
    pub scan_every: Duration,
    /// Deliver to loopback and private addresses too.
    pub allow_private: bool,
    /// The first retry's delay; each later one doubles it, up to an hour.
    pub retry_base: Duration,
    /// Attempts before a notification is given up (recorded, not deleted).
    pub max_attempts: u32,
    /// Woken when notifications are enqueued, so they go out at once.
    wake: tokio::sync::Notify,
}

impl Webhook {
    pub fn new(url: &str, due: Vec<Due>, scan_every: Duration) -> Result<Webhook, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("--webhook {url}: only http:// URLs are supported (use a relay for https)"))?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                (h, p.parse::<u16>().map_err(|_| format!("--webhook {url}: bad port {p:?}"))?)
            }
            _ => (authority, 80),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || authority.contains('@') {
            return Err(format!("--webhook {url}: expected http://HOST[:PORT]/PATH"));
        }
        Ok(Webhook {
            url: url.into(),
            host: host.into(),
            port,
            due,
            scan_every,
            allow_private: false,
            retry_base: Duration::from_secs(10),
            max_attempts: 12,
            wake: tokio::sync::Notify::new(),
        })
    }

    /// Tells the delivery loop that notifications were enqueued.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// When to try again after `attempts` failed attempts.
    fn backoff(&self, attempts: u32) -> Duration {
        let factor = 1u32 << attempts.saturating_sub(1).min(16);
        self.retry_base.saturating_mul(factor).min(Duration::from_secs(3600))
    }

    /// The address to connect to: the receiver's, resolved now, if it may be reached.
    async fn target(&self) -> Result<SocketAddr, String> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", self.host))?
            .collect();
        let first = *addrs.first().ok_or_else(|| format!("{} has no address", self.host))?;
        if !self.allow_private {
            if let Some(bad) = addrs.iter().find(|a| internal(a.ip())) {
                return Err(format!(
                    "{} resolves to {}, an internal address; refused (--webhook-allow-private allows it)",
                    self.host,
                    bad.ip()
                ));
            }
        }
        Ok(first)
    }

    /// One delivery attempt; `Err` says why it failed.
    async fn deliver(&self, n: &Notification, secret: Option<&str>, now_ms: i64) -> Result<(), String> {
        let addr = self.target().await?;
        // A client per attempt: it connects to the address checked above and nowhere else, and
        // follows no redirect.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .resolve(&self.host, addr)
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?;
        let timestamp = (now_ms / 1000).to_string();
        let mut request = client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("webhook-id", &n.id)
            .header("webhook-timestamp", &timestamp);
        if let Some(secret) = secret {
            request = request.header("webhook-signature", sign(secret, &n.id, &timestamp, &n.payload)?);
        }
        let response = request.body(n.payload.clone()).send().await.map_err(|e| e.to_string())?;
        match response.status() {
            s if s.is_success() => Ok(()),
            s if s.is_redirection() => Err(format!("answered {s} (redirects are not followed)")),
            s => Err(format!("answered {s}")),
        }
    }
}

/// Loopback, private, link-local, shared, unspecified, multicast and broadcast addresses: what a
/// webhook pointed at by a project's configuration must not reach inside the operator's network.
pub fn internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            match v6.to_ipv4_mapped() {
                Some(v4) => internal(IpAddr::V4(v4)),
                None => {
                    v6.is_loopback()
                        || v6.is_unspecified()
                        || v6.is_multicast()
                        || (first & 0xfe00) == 0xfc00 // unique local
                        || (first & 0xffc0) == 0xfe80 // link-local
                }
            }
        }
    }
}

/// The Standard Webhooks signature header value: `v1,` and the base64 HMAC-SHA256 of
/// `{id}.{timestamp}.{body}` keyed with the secret (`whsec_…` is base64 of the key bytes).
pub fn sign(secret: &str, id: &str, timestamp: &str, body: &str) -> Result<String, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = match secret.strip_prefix("whsec_") {
        Some(encoded) => b64.decode(encoded).map_err(|_| "webhookSecret: whsec_ must be followed by base64".to_string())?,
        None => secret.as_bytes().to_vec(),
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    Ok(format!("v1,{}", b64.encode(mac.finalize().into_bytes())))
}

/// The notification of `kind` for `user` in `project`, with its stable id.
pub(crate) fn notification(project: &str, kind: &str, user: &str, payload: Value, now: i64) -> Notification {
    let digest = Sha256::digest(format!("{project}\u{0}{kind}\u{0}{user}").as_bytes());
    let id = digest[..12].iter().map(|b| format!("{b:02x}")).collect::<String>();
    Notification {
        id: format!("msg_{id}"),
        project: project.into(),
        kind: kind.into(),
        user: user.into(),
        payload: payload.to_string(),
        created_at: now,
        attempts: 0,
    }
}

/// The `value_reached` notifications a committed batch causes (one per user at most).
pub fn value_notifications(events: &[StoredEvent], now: i64) -> Vec<Notification> {
    let mut out: Vec<Notification> = Vec::new();
    for s in events {
        let e = &s.event;
        if e.kind != onramp::core::wire::EventType::Milestone || e.name != VALUE_EVENT {
            continue;
        }
        let user = e.user_id.as_deref().unwrap_or(&e.anonymous_id);
        if out.iter().any(|n| n.project == s.project && n.user == user) {
            continue;
        }
        // Value implements Serialize: the prop goes into the payload as it was stored.
        let prop = |k: &str| e.prop(k).and_then(|v| serde_json::to_value(v).ok());
        let payload = json!({
            "type": "value_reached",
            "project": s.project,
            "user": user,
            "milestone": prop(vocab::prop::MILESTONE),
            "ttvMs": prop(vocab::prop::SINCE_SIGNUP_MS),
            "at": s.ts,
        });
        out.push(notification(&s.project, "value_reached", user, payload, now));
    }
    out
}

/// The `survey_answered` notifications a committed batch causes: one per answer event (keyed by
/// its id, so a resent batch adds none), with `detractor: true` for an NPS score of 0–6 so a
/// customer-success manager can act the same day. The answer's text goes as plain JSON text.
pub fn survey_notifications(events: &[StoredEvent], now: i64) -> Vec<Notification> {
    let mut out = Vec::new();
    for s in events {
        let e = &s.event;
        if e.kind != onramp::core::wire::EventType::Survey || e.name != vocab::survey::ANSWERED {
            continue;
        }
        let user = e.user_id.as_deref().unwrap_or(&e.anonymous_id);
        let prop = |k: &str| e.prop(k).and_then(|v| serde_json::to_value(v).ok());
        let kind = e.prop(vocab::prop::SURVEY_KIND).and_then(|v| v.as_str()).unwrap_or("");
        let score = e.prop(vocab::prop::SCORE).and_then(|v| v.as_f64());
        let payload = json!({
            "type": "survey_answered",
            "project": s.project,
            "user": user,
            "surveyId": prop(vocab::prop::SURVEY_ID),
            "surveyKind": kind,
            "score": prop(vocab::prop::SCORE),
            "group": prop(vocab::prop::GROUP),
            "text": prop(vocab::prop::TEXT),
            "detractor": kind == "nps" && score.is_some_and(|n| (0.0..7.0).contains(&n)),
            "at": s.ts,
        });
        // One per answer: the id names the event, not just the user.
        let mut n = notification(&s.project, "survey_answered", user, payload, now);
        n.id = notification(&s.project, "survey_answered", &e.id, Value::Null, now).id;
        out.push(n);
    }
    out
}

fn stalled_notification(project: &str, s: &Stall, now: i64) -> Notification {
    let payload = json!({
        "type": "user_stalled",
        "project": project,
        "user": s.user,
        "milestone": s.milestone,
        "signedUpAt": s.signed_up_at,
        "dueAt": s.due_at,
        "lastSeen": s.last_seen,
    });
    notification(project, "user_stalled", &s.user, payload, now)
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
    let (users, _visitors) = query::load_users(state, project).await?;
    let filter = query::reaching(&query::due_milestones(due));
    let reached = state.store.firsts(&project.id, &filter).await?;
    let all = stalled::stalled(&users, due, &FirstReach::new(&reached), until);
    Ok(stalled::newly_stalled(all, after, until))
}

/// Scans every project for new stalls every `scan_every` until shutdown, writing them to the
/// outbox; run it with [`AppState::spawn_background`].
pub async fn scan_loop(state: AppState, hook: Arc<Webhook>) {
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
            let stalls = stalls_due_between(&state, project, &due, *after, until).await;
            let written = match stalls {
                Ok(stalls) if stalls.is_empty() => Ok(()),
                Ok(stalls) => {
                    let notes = stalls.iter().map(|s| stalled_notification(&project.id, s, until)).collect();
                    state.store.enqueue_notifications(notes).await.map(|()| hook.wake())
                }
                Err(e) => Err(e),
            };
            match written {
                Ok(()) => *after = until,
                // The span stays unscanned, so the next scan covers it.
                Err(e) => eprintln!("onramp-collector: stall scan: {e}"),
            }
        }
    }
}

/// Sends due notifications until shutdown: at once when woken, else every `retry_base` (at most
/// a second apart), so retries go out when due. Run it with [`AppState::spawn_background`].
pub async fn delivery_loop(state: AppState, hook: Arc<Webhook>) {
    let stopping = state.stopping();
    tokio::pin!(stopping);
    let poll = hook.retry_base.min(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = hook.wake.notified() => {}
            _ = tokio::time::sleep(poll) => {}
            _ = &mut stopping => return,
        }
        deliver_due(&state, &hook).await;
    }
}

/// One pass: every notification due now, each attempt recorded.
pub async fn deliver_due(state: &AppState, hook: &Webhook) {
    let due = match state.store.due_notifications(state.now(), BATCH).await {
        Ok(due) => due,
        Err(e) => return eprintln!("onramp-collector: webhook outbox: {e}"),
    };
    for n in due {
        let secret = state.config.projects.iter().find(|p| p.id == n.project).and_then(|p| p.webhook_secret.as_deref());
        let now = state.now();
        let attempt = match hook.deliver(&n, secret, now).await {
            Ok(()) => Attempt::Delivered { at: now },
            Err(error) if n.attempts + 1 >= hook.max_attempts => {
                eprintln!("onramp-collector: webhook {} for {}: {error}; giving up", n.id, n.user);
                Attempt::GaveUp { at: now, error }
            }
            Err(error) => {
                eprintln!("onramp-collector: webhook {} for {}: {error}; will retry", n.id, n.user);
                Attempt::Retry { next: now + hook.backoff(n.attempts + 1).as_millis() as i64, error }
            }
        };
        if let Err(e) = state.store.record_attempt(&n.id, attempt).await {
            eprintln!("onramp-collector: webhook outbox: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_recognised() {
        for ip in ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0", "100.64.0.1", "::1", "fd00::1", "fe80::1", "::ffff:127.0.0.1"] {
            assert!(internal(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "100.128.0.1"] {
            assert!(!internal(ip.parse().expect("ip")), "{ip}");
        }
    }

    #[test]
    fn parses_receiver_urls() {
        let w = Webhook::new("http://hooks.example:8080/in?x=1", vec![], Duration::from_secs(1)).expect("ok");
        assert_eq!((w.host.as_str(), w.port), ("hooks.example", 8080));
        let w = Webhook::new("http://[::1]:9/x", vec![], Duration::from_secs(1)).expect("ok");
        assert_eq!((w.host.as_str(), w.port), ("::1", 9));
        assert_eq!(Webhook::new("http://h/x", vec![], Duration::from_secs(1)).expect("ok").port, 80);
        assert!(Webhook::new("https://h/x", vec![], Duration::from_secs(1)).is_err());
        assert!(Webhook::new("http://user@h/x", vec![], Duration::from_secs(1)).is_err());
    }

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        let w = Webhook::new("http://h/x", vec![], Duration::from_secs(1)).expect("ok");
        let secs: Vec<u64> = [1, 2, 3, 13].iter().map(|a| w.backoff(*a).as_secs()).collect();
        assert_eq!(secs, [10, 20, 40, 3600]);
    }

    #[test]
    fn one_value_notification_per_user_in_a_batch_with_a_stable_id() {
        let a = notification("p", "value_reached", "u", json!({}), 1);
        let b = notification("p", "value_reached", "u", json!({"x": 1}), 2);
        assert_eq!(a.id, b.id, "same project, kind and user: same id");
        assert_ne!(a.id, notification("p", "user_stalled", "u", json!({}), 1).id);
        assert_ne!(a.id, notification("q", "value_reached", "u", json!({}), 1).id);
    }
}
