//! The SDK's identity and outbox, independent of the browser.
//!
//! [`Client`] turns API calls into wire events (with ids, timestamps and the current identity).
//! Delivery (persistence, batching, retries) is [`super::delivery`]'s job. The browser layer
//! supplies the clock and randomness.

use alloc::string::String;
use alloc::vec::Vec;

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
    /// The identity-verification hash for `user_id` given to `identify` (docs/IDENTITY.md);
    /// sent with every event of that user.
    pub user_hash: Option<String>,
    /// The account given to `group()`: every event carries it as `props.accountId` (unless the
    /// event's own props name one).
    pub account_id: Option<String>,
    /// Events recorded and not yet handed to the delivery outbox, oldest first.
    outbox: Vec<Event>,
    /// Millisecond and counter of the last id, so ids made in one millisecond stay ordered.
    last_id_ms: u64,
    id_counter: u16,
}

impl Client {
    pub fn new(anonymous_id: String) -> Client {
        Client { anonymous_id, user_id: None, user_hash: None, account_id: None, outbox: Vec::new(), last_id_ms: 0, id_counter: 0 }
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
        mut props: Vec<(String, Value)>,
        now_ms: i64,
        entropy: &mut impl Entropy,
    ) -> Event {
        if let Some(account) = &self.account_id {
            if !props.iter().any(|(k, _)| k == "accountId") {
                props.push(("accountId".into(), Value::Str(account.clone())));
            }
        }
        Event {
            id: self.next_event_id(now_ms, entropy),
            kind,
            name: name.into(),
            anonymous_id: self.anonymous_id.clone(),
            user_id: self.user_id.clone(),
            user_hash: self.user_id.as_ref().and(self.user_hash.clone()),
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
    ///
    /// A `userHash` trait is taken out of the traits (it is a credential, not a trait) and sent
    /// with every event of this user, for collectors that verify identities.
    pub fn identify(&mut self, user_id: &str, mut traits: Vec<(String, Value)>, now_ms: i64, entropy: &mut impl Entropy) {
        let hash = traits.iter().position(|(k, _)| k == "userHash").map(|i| traits.remove(i).1);
        if self.user_id.as_deref() != Some(user_id) || hash.is_some() {
            self.user_hash = hash.and_then(|h| h.as_str().map(String::from));
        }
        self.user_id = Some(user_id.into());
        self.record(EventType::Identify, "identify", traits, now_ms, entropy);
    }

    /// Log-out: forget the user (and their account) and start a new anonymous identity. Queued events keep the
    /// identity they were recorded under.
    pub fn reset(&mut self, new_anonymous_id: String) {
        self.user_id = None;
        self.user_hash = None;
        self.account_id = None;
        self.anonymous_id = new_anonymous_id;
    }

    /// The events recorded since the last call, oldest first, for the delivery outbox
    /// ([`super::delivery::Outbox`]), which persists, batches and retries them.
    pub fn take_recorded(&mut self) -> Vec<Event> {
        ::core::mem::take(&mut self.outbox)
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

    #[test]
    fn user_hash_goes_with_every_event_of_its_user_and_never_into_traits() {
        let mut c = Client::new("anon".into());
        let mut rng = Counter(0);
        let traits = vec![("plan".into(), Value::Str("pro".into())), ("userHash".into(), Value::Str("ab12".into()))];
        c.identify("u1", traits, 1, &mut rng);
        c.record(EventType::Track, "x", vec![], 2, &mut rng);
        c.identify("u1", vec![], 3, &mut rng); // again, without the hash: still u1's
        let events = c.take_recorded();
        assert_eq!(events[0].props, vec![("plan".to_string(), Value::Str("pro".into()))], "not a trait");
        assert!(events.iter().all(|e| e.user_hash.as_deref() == Some("ab12")));
        assert!(events[0].to_json().contains(r#""userHash":"ab12""#));
        c.identify("u2", vec![], 4, &mut rng);
        assert_eq!(c.record(EventType::Track, "y", vec![], 5, &mut rng).user_hash, None, "another user: not u1's hash");
        c.identify("u2", vec![("userHash".into(), Value::Str("cd34".into()))], 6, &mut rng);
        c.reset("anon2".into());
        assert_eq!(c.record(EventType::Track, "z", vec![], 7, &mut rng).user_hash, None, "anonymous events carry none");
    }
}
