//! The SDK's identity and outbox, independent of the browser.
//!
//! [`Client`] turns API calls into wire events (with ids, timestamps and the current identity)
//! and keeps them in an outbox until the collector acknowledges them. The browser layer supplies
//! the clock and randomness, and moves batches over the network.

use super::ids::uuid_v7;
use super::json::Value;
use super::wire::{Batch, Event, EventType};

/// Events per request: small enough for one `sendBeacon` (≈60 KB limit) at typical sizes.
pub const BATCH_SIZE: usize = 50;

/// Randomness for ids, supplied by the host (`crypto.getRandomValues` in the browser).
pub trait Entropy {
    fn fill(&mut self, out: &mut [u8]);
}

pub struct Client {
    pub write_key: String,
    pub anonymous_id: String,
    pub user_id: Option<String>,
    /// Events not yet acknowledged, oldest first.
    outbox: Vec<Event>,
    /// How many outbox events (from the front) are in a request awaiting its answer.
    in_flight: usize,
    /// Millisecond and counter of the last id, so ids made in one millisecond stay ordered.
    last_id_ms: u64,
    id_counter: u16,
}

impl Client {
    pub fn new(write_key: String, anonymous_id: String) -> Client {
        Client { write_key, anonymous_id, user_id: None, outbox: Vec::new(), in_flight: 0, last_id_ms: 0, id_counter: 0 }
    }

    /// A fresh random id, used for anonymous ids.
    pub fn new_id(now_ms: i64, entropy: &mut impl Entropy) -> String {
        let mut random = [0u8; 8];
        entropy.fill(&mut random);
        uuid_v7(now_ms.max(0) as u64, 0, random)
    }

    /// An event id that sorts after every id this client made before, even within one
    /// millisecond or when the clock steps back.
    fn next_event_id(&mut self, now_ms: i64, entropy: &mut impl Entropy) -> String {
        let now = now_ms.max(0) as u64;
        if now > self.last_id_ms {
            self.last_id_ms = now;
            self.id_counter = 0;
        } else if self.id_counter < 0x0fff {
            self.id_counter += 1;
        } else {
            // 4096 ids in one millisecond: borrow the next millisecond.
            self.last_id_ms += 1;
            self.id_counter = 0;
        }
        let mut random = [0u8; 8];
        entropy.fill(&mut random);
        uuid_v7(self.last_id_ms, self.id_counter, random)
    }

    /// Records an event and returns a reference to it as queued.
    pub fn record(
        &mut self,
        kind: EventType,
        name: &str,
        props: Vec<(String, Value)>,
        now_ms: i64,
        entropy: &mut impl Entropy,
    ) -> &Event {
        let event = Event {
            id: self.next_event_id(now_ms, entropy),
            kind,
            name: name.into(),
            anonymous_id: self.anonymous_id.clone(),
            user_id: self.user_id.clone(),
            ts: now_ms,
            props,
        };
        self.outbox.push(event);
        &self.outbox[self.outbox.len() - 1]
    }

    /// Links the anonymous id to `user_id`: the identify event carries both, so the collector
    /// attributes this visitor's earlier anonymous events to the user.
    pub fn identify(&mut self, user_id: &str, traits: Vec<(String, Value)>, now_ms: i64, entropy: &mut impl Entropy) {
        self.user_id = Some(user_id.into());
        self.record(EventType::Identify, "identify", traits, now_ms, entropy);
    }

    /// Log-out: forget the user and start a new anonymous identity. Queued events keep the
    /// identity they were recorded under.
    pub fn reset(&mut self, new_anonymous_id: String) {
        self.user_id = None;
        self.anonymous_id = new_anonymous_id;
    }

    pub fn pending(&self) -> usize {
        self.outbox.len()
    }

    /// The next batch to send, or `None` if a request is already out or nothing waits.
    pub fn next_batch(&mut self, now_ms: i64) -> Option<Batch> {
        if self.in_flight > 0 || self.outbox.is_empty() {
            return None;
        }
        self.in_flight = self.outbox.len().min(BATCH_SIZE);
        Some(Batch { write_key: self.write_key.clone(), sent_at: now_ms, events: self.outbox[..self.in_flight].to_vec() })
    }

    /// Every queued event as one batch, for the last-chance beacon on page hide. Beacons are
    /// fire-and-forget, so the events stay queued; a resend is absorbed by the collector's dedup.
    pub fn unload_batch(&self, now_ms: i64) -> Option<Batch> {
        if self.outbox.is_empty() {
            return None;
        }
        let end = self.outbox.len().min(BATCH_SIZE);
        Some(Batch { write_key: self.write_key.clone(), sent_at: now_ms, events: self.outbox[..end].to_vec() })
    }

    /// The collector stored the in-flight batch.
    pub fn acknowledge(&mut self) {
        self.outbox.drain(..self.in_flight);
        self.in_flight = 0;
    }

    /// The in-flight request failed; its events stay queued for a retry.
    pub fn release(&mut self) {
        self.in_flight = 0;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Deterministic entropy for tests.
    pub struct Counter(pub u8);
    impl Entropy for Counter {
        fn fill(&mut self, out: &mut [u8]) {
            for b in out {
                self.0 = self.0.wrapping_add(1);
                *b = self.0;
            }
        }
    }

    #[test]
    fn events_before_identify_carry_the_anonymous_id_only() {
        let mut c = Client::new("wk".into(), "anon".into());
        let mut rng = Counter(0);
        c.record(EventType::Track, "opened", vec![], 10, &mut rng);
        c.identify("u1", vec![], 20, &mut rng);
        c.record(EventType::Track, "clicked", vec![], 30, &mut rng);
        let batch = c.next_batch(40).expect("batch");
        let users: Vec<_> = batch.events.iter().map(|e| e.user_id.as_deref()).collect();
        assert_eq!(users, vec![None, Some("u1"), Some("u1")]);
        assert!(batch.events.iter().all(|e| e.anonymous_id == "anon"));
    }

    #[test]
    fn events_leave_the_outbox_only_when_acknowledged() {
        let mut c = Client::new("wk".into(), "anon".into());
        let mut rng = Counter(0);
        for i in 0..(BATCH_SIZE + 5) {
            c.record(EventType::Track, "e", vec![], i as i64, &mut rng);
        }
        let first = c.next_batch(100).expect("batch");
        assert_eq!(first.events.len(), BATCH_SIZE);
        assert!(c.next_batch(100).is_none(), "one request at a time");
        c.release();
        let retry = c.next_batch(200).expect("retry");
        assert_eq!(retry.events, first.events, "same ids on retry");
        c.acknowledge();
        assert_eq!(c.pending(), 5);
    }

    #[test]
    fn ids_keep_call_order_within_a_millisecond_and_across_clock_steps() {
        let mut c = Client::new("wk".into(), "anon".into());
        let mut rng = Counter(200);
        for ts in [5, 5, 5, 4, 6] {
            c.record(EventType::Track, "e", vec![], ts, &mut rng);
        }
        let ids: Vec<String> = c.next_batch(7).expect("batch").events.into_iter().map(|e| e.id).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
    }

    #[test]
    fn reset_starts_a_new_anonymous_identity() {
        let mut c = Client::new("wk".into(), "anon".into());
        let mut rng = Counter(0);
        c.identify("u1", vec![], 1, &mut rng);
        c.reset("anon2".into());
        let e = c.record(EventType::Track, "x", vec![], 2, &mut rng);
        assert_eq!((e.user_id.as_deref(), e.anonymous_id.as_str()), (None, "anon2"));
    }
}
