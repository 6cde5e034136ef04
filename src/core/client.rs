//! The SDK's identity and outbox, independent of the browser.
//!
//! [`Client`] turns API calls into wire events (with ids, timestamps and the current identity).
//! Delivery (persistence, batching, retries) is [`super::delivery`]'s job. The browser layer
//! supplies the clock and randomness.

use super::ids::uuid_v7;
use super::json::Value;
use super::wire::{Event, EventType};

/// Randomness for ids, supplied by the host (`crypto.getRandomValues` in the browser).
pub trait Entropy {
    fn fill(&mut self, out: &mut [u8]);
}

pub struct Client {
    pub anonymous_id: String,
    pub user_id: Option<String>,
    /// Events recorded and not yet handed to the delivery outbox, oldest first.
    outbox: Vec<Event>,
    /// Millisecond and counter of the last id, so ids made in one millisecond stay ordered.
    last_id_ms: u64,
    id_counter: u16,
}

impl Client {
    pub fn new(anonymous_id: String) -> Client {
        Client { anonymous_id, user_id: None, outbox: Vec::new(), last_id_ms: 0, id_counter: 0 }
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

    /// A new event under the current identity, with the next id; not queued.
    pub fn event(
        &mut self,
        kind: EventType,
        name: &str,
        props: Vec<(String, Value)>,
        now_ms: i64,
        entropy: &mut impl Entropy,
    ) -> Event {
        Event {
            id: self.next_event_id(now_ms, entropy),
            kind,
            name: name.into(),
            anonymous_id: self.anonymous_id.clone(),
            user_id: self.user_id.clone(),
            ts: now_ms,
            props,
        }
    }

    /// Records an event and returns a reference to it as recorded. It waits here until the
    /// browser layer moves it into the persistent outbox ([`Client::take_recorded`]).
    pub fn record(
        &mut self,
        kind: EventType,
        name: &str,
        props: Vec<(String, Value)>,
        now_ms: i64,
        entropy: &mut impl Entropy,
    ) -> &Event {
        let event = self.event(kind, name, props, now_ms, entropy);
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

    /// The events recorded since the last call, oldest first, for the delivery outbox
    /// ([`super::delivery::Outbox`]), which persists, batches and retries them.
    pub fn take_recorded(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.outbox)
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
        let mut c = Client::new("anon".into());
        let mut rng = Counter(0);
        c.record(EventType::Track, "opened", vec![], 10, &mut rng);
        c.identify("u1", vec![], 20, &mut rng);
        c.record(EventType::Track, "clicked", vec![], 30, &mut rng);
        let events = c.take_recorded();
        let users: Vec<_> = events.iter().map(|e| e.user_id.as_deref()).collect();
        assert_eq!(users, vec![None, Some("u1"), Some("u1")]);
        assert!(events.iter().all(|e| e.anonymous_id == "anon"));
    }

    #[test]
    fn recorded_events_are_taken_once() {
        let mut c = Client::new("anon".into());
        let mut rng = Counter(0);
        c.record(EventType::Track, "a", vec![], 1, &mut rng);
        assert_eq!(c.take_recorded().len(), 1);
        assert!(c.take_recorded().is_empty());
    }

    #[test]
    fn ids_keep_call_order_within_a_millisecond_and_across_clock_steps() {
        let mut c = Client::new("anon".into());
        let mut rng = Counter(200);
        for ts in [5, 5, 5, 4, 6] {
            c.record(EventType::Track, "e", vec![], ts, &mut rng);
        }
        let ids: Vec<String> = c.take_recorded().into_iter().map(|e| e.id).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
    }

    #[test]
    fn reset_starts_a_new_anonymous_identity() {
        let mut c = Client::new("anon".into());
        let mut rng = Counter(0);
        c.identify("u1", vec![], 1, &mut rng);
        c.reset("anon2".into());
        let e = c.record(EventType::Track, "x", vec![], 2, &mut rng);
        assert_eq!((e.user_id.as_deref(), e.anonymous_id.as_str()), (None, "anon2"));
    }
}
