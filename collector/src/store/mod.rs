//! Storage backends. The collector writes accepted events and reads each user's events back for
//! analytics; everything else (funnel matching, quantiles) is computed in shared Rust code, so
//! every backend gives the same answers.

pub mod sqlite;

use std::future::Future;
use std::pin::Pin;

use onramp::core::wire::Event;

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

/// One user's events, sorted by corrected time. `user` is the user id once known (through the
/// event itself or an identify event for its anonymous id), the anonymous id otherwise.
#[derive(Clone, Debug, PartialEq)]
pub struct UserEvents {
    pub user: String,
    pub events: Vec<(i64, String)>,
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

pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

pub trait Store: Send + Sync + 'static {
    /// Stores events durably; resolves only after they are committed. Events whose id is
    /// already stored are ignored, so retries are harmless.
    fn insert(&self, events: Vec<StoredEvent>) -> StoreFuture<'_, ()>;

    /// Every user's events with one of `names`, each user's sorted by time.
    fn user_events(&self, project: &str, names: &[String]) -> StoreFuture<'_, Vec<UserEvents>>;
}
