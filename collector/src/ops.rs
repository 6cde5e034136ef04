//! Operations: Prometheus metrics, the per-key rate limiter, and one JSON log line per request.
//!
//! Hand-written rather than a metrics crate: a handful of counters and one histogram, rendered in
//! the Prometheus text format, are all `/metrics` needs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::json;

use crate::config::RateLimit;
use crate::AppState;

/// Upper bounds of the batch latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// Why events or batches were refused: the `reason` label, and the log's `reason`.
pub const REASONS: [&str; 11] = [
    "invalid",
    "too_large",
    "unknown_key",
    "origin",
    "rate_limited",
    "unavailable",
    "draining",
    "too_old",
    "bad_body",
    "aborted",
    "timeout",
];

#[derive(Default)]
pub struct Metrics {
    accepted: AtomicU64,
    /// Indexed like [`REASONS`]; counts events where known, else one per request.
    rejected: [AtomicU64; REASONS.len()],
    batches: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    /// Sum of batch latencies in microseconds.
    latency_sum_us: AtomicU64,
    /// Connections closed at once because the cap was reached.
    connections_refused: AtomicU64,
}

impl Metrics {
    pub fn accepted(&self, n: usize) {
        self.accepted.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn rejected(&self, reason: &str, n: usize) {
        if let Some(i) = REASONS.iter().position(|r| *r == reason) {
            self.rejected[i].fetch_add(n.max(1) as u64, Ordering::Relaxed);
        }
    }

    pub fn batch_latency(&self, seconds: f64) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| seconds <= *b) {
            self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub fn accepted_total(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition.
    pub fn render(&self, queue_depth: usize, draining: bool) -> String {
        use std::fmt::Write as _;
        let mut out = String::with_capacity(2048);
        let _ = writeln!(out, "# HELP onramp_events_accepted_total Events committed to the store.");
        let _ = writeln!(out, "# TYPE onramp_events_accepted_total counter");
        let _ = writeln!(out, "onramp_events_accepted_total {}", self.accepted.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP onramp_events_rejected_total Events (or whole requests) refused, by reason.");
        let _ = writeln!(out, "# TYPE onramp_events_rejected_total counter");
        for (reason, n) in REASONS.iter().zip(&self.rejected) {
            let _ = writeln!(out, "onramp_events_rejected_total{{reason=\"{reason}\"}} {}", n.load(Ordering::Relaxed));
        }
        let _ = writeln!(out, "# HELP onramp_batch_duration_seconds Time from request to answer on /v1/batch.");
        let _ = writeln!(out, "# TYPE onramp_batch_duration_seconds histogram");
        let mut cumulative = 0;
        for (bound, n) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "onramp_batch_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.batches.load(Ordering::Relaxed);
        let _ = writeln!(out, "onramp_batch_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "onramp_batch_duration_seconds_sum {sum}");
        let _ = writeln!(out, "onramp_batch_duration_seconds_count {count}");
        let _ = writeln!(out, "# HELP onramp_writer_queue_depth Write requests waiting for the store's writer.");
        let _ = writeln!(out, "# TYPE onramp_writer_queue_depth gauge");
        let _ = writeln!(out, "onramp_writer_queue_depth {queue_depth}");
        let _ = writeln!(out, "# HELP onramp_connections_refused_total Connections closed at once: the connection cap was reached.");
        let _ = writeln!(out, "# TYPE onramp_connections_refused_total counter");
        let _ = writeln!(out, "onramp_connections_refused_total {}", self.connections_refused.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP onramp_draining 1 while shutting down (no new batches accepted).");
        let _ = writeln!(out, "# TYPE onramp_draining gauge");
        let _ = writeln!(out, "onramp_draining {}", u8::from(draining));
        out
    }
}

/// A token bucket per write key. Keys are only added after authentication, so the map is
/// bounded by the number of configured projects.
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> RateLimiter {
        RateLimiter { limit, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `key`; `Err(seconds)` says when the next one will be there.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), u64> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (tokens, last) = buckets.entry(key.to_owned()).or_insert((self.limit.burst, now));
        let refill = now.saturating_duration_since(*last).as_secs_f64() * self.limit.per_second;
        *tokens = (*tokens + refill).min(self.limit.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.limit.per_second).ceil().max(1.0) as u64)
        }
    }
}

/// What the ingest handler tells the log line about a batch (a response extension).
#[derive(Clone, Debug, Default)]
pub struct BatchOutcome {
    pub project: Option<String>,
    pub events: usize,
    pub reason: Option<&'static str>,
}

/// One JSON line per request on stderr: time, method, path, status, duration, and for batches
/// the project, event count and refusal reason. Static files and probes are logged too, which
/// keeps the middleware simple; the volume is the batch traffic anyway.
pub async fn log_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let seconds = started.elapsed().as_secs_f64();
    let outcome = response.extensions().get::<BatchOutcome>().cloned();
    if outcome.is_some() {
        state.metrics.batch_latency(seconds);
    }
    if !state.log_requests {
        return response;
    }
    let mut line = json!({
        "ts": state.now(),
        "method": method,
        "path": path,
        "status": response.status().as_u16(),
        "ms": (seconds * 1000.0 * 1000.0).round() / 1000.0,
    });
    if let Some(o) = outcome {
        line["project"] = json!(o.project);
        line["events"] = json!(o.events);
        if let Some(reason) = o.reason {
            line["reason"] = json!(reason);
        }
    }
    // One write per line: `eprintln!("{line}")` wrote each JSON token to the unbuffered stderr
    // with a system call of its own: 50 per batch request (counted with strace).
    let mut text = line.to_string();
    text.push('\n');
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), text.as_bytes());
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_allows_a_burst_then_says_when_to_retry() {
        let limiter = RateLimiter::new(RateLimit { per_second: 1.0, burst: 2.0 });
        let t0 = Instant::now();
        assert!(limiter.check("k", t0).is_ok());
        assert!(limiter.check("k", t0).is_ok());
        assert_eq!(limiter.check("k", t0), Err(1));
        assert!(limiter.check("other", t0).is_ok(), "per key");
        assert!(limiter.check("k", t0 + Duration::from_millis(1100)).is_ok(), "refilled");
    }

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.accepted(3);
        m.rejected("invalid", 2);
        m.batch_latency(0.003);
        let text = m.render(4, false);
        assert!(text.contains("onramp_events_accepted_total 3\n"));
        assert!(text.contains("onramp_events_rejected_total{reason=\"invalid\"} 2\n"));
        assert!(text.contains("onramp_batch_duration_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("onramp_batch_duration_seconds_bucket{le=\"0.0025\"} 0\n"));
        assert!(text.contains("onramp_writer_queue_depth 4\n"));
    }
}
