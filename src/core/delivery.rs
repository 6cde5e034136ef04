//! Reliable delivery: the persistent, bounded, multi-tab outbox and its retry policy.
//!
//! Every decision lives here, tested natively; the browser layer only calls these methods from
//! its timers and listeners and moves the bodies they return over `fetch` and `sendBeacon`.
//!
//! - **Persist before send** (Snowplow): an event is written to storage when it is queued and
//!   removed only when the collector acknowledged it, so it survives reloads, crashes, offline
//!   periods and collector outages. When storage refuses a write (disabled, quota full) the
//!   queue keeps working in memory.
//! - **Bounded**: past [`Policy::max_events`] or [`Policy::max_bytes`] the oldest waiting event is
//!   dropped; every drop is counted and reported as a `metric` `events_dropped` event
//!   (docs/EVENTS.md) by [`Outbox::report_drops`].
//! - **One queue per tab** (RudderStack): each tab writes only its own key and beats a heartbeat.
//!   A tab whose heartbeat stopped (closed, crashed, reloaded) is dead; another tab adopts its
//!   queue under a short lock and marks it adopted, so no two tabs send the same stored events.
//!   A tab that finds itself marked adopted (its timers were throttled in the background) drops
//!   the events it had stored, since the adopter now owns them.
//! - **Retry** (Amplitude, PostHog): exponential backoff with jitter, capped in attempts and in
//!   event age; `Retry-After` (seconds or an HTTP date) is honoured on 429/503; other 4xx are not retried (the events are
//!   dropped and counted); a 400 listing bad indices drops only those events and resends the
//!   rest; a 413 halves the batch.
//!
//! - **Each event once per attempt**: events handed to `sendBeacon` (page hidden) are not beaconed
//!   again on `pagehide`, nor sent by fetch until their acknowledgement window
//!   ([`Policy::flight_ms`]) has passed; a closed tab whose events were on their way is marked
//!   `gone@<end of the window>`, and other tabs adopt its queue only after that.
//! - **Asked before sent again**: events that may have reached the collector without this page
//!   reading the answer (handed to `sendBeacon`, or adopted from a tab that closed with events
//!   on their way or died) are not simply resent once their window has passed: the page first
//!   asks the collector which of their ids it stores (`POST /v1/known`, [`wire::KnownQuery`])
//!   and sends only the others. A reload then sends its closing page's beaconed events once,
//!   not twice. Any answer but a 2xx (an older collector, offline) sends them all: at least once.
//! - **Refused** (401 unknown write key, 403 origin not allowed): retrying cannot help, so the
//!   queue is dropped as `rejected` and this page sends nothing more.
//!
//! Delivery is at-least-once (a lost acknowledgement or an unload beacon means a resend); the
//! collector stores each event id once, which makes storage exactly-once.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use alloc::vec;

use super::client::{Client, Entropy};
use super::json::{self, Value};
use super::num::parse_int;
use super::storage::KeyValue;
use super::vocab;
use super::wire::{self, Event, EventType, MAX_EVENT_BYTES};

/// Storage keys: `onramp.q.<tab>` holds a tab's queue as a JSON array of events,
/// `onramp.hb.<tab>` its heartbeat (Unix ms, or [`ADOPTED`] once another tab took the queue).
pub const QUEUE_PREFIX: &str = "onramp.q.";
pub const BEAT_PREFIX: &str = "onramp.hb.";
const LOCK_KEY: &str = "onramp.lock";
/// Heartbeat value written by the adopter, followed by the time of adoption.
const ADOPTED: &str = "adopted@";
/// Heartbeat value of a closed tab; followed by the end of the acknowledgement window of the
/// events it had on their way, if any (adopters wait for it).
const GONE: &str = "gone";
/// Adoption marks of tabs that never came back are removed after this long.
const ADOPTED_KEPT_MS: i64 = 3600 * 1000;

/// Tunables. The defaults suit browsers: batches fit the 64 KiB budget of `keepalive` fetches
/// and beacons, and the queue stays far below localStorage's 5 MB.
#[derive(Clone, Debug)]
pub struct Policy {
    pub batch_size: usize,
    pub batch_bytes: usize,
    /// A batch smaller than `batch_size` waits at most this long.
    pub flush_interval_ms: i64,
    pub max_events: usize,
    pub max_bytes: usize,
    pub base_backoff_ms: i64,
    pub max_backoff_ms: i64,
    /// Consecutive failed attempts of one batch before it is dropped.
    pub max_attempts: u32,
    /// Events older than this are dropped rather than sent: their moment has passed.
    pub max_age_ms: i64,
    /// A tab whose heartbeat is older than this is dead and its queue may be adopted.
    pub dead_after_ms: i64,
    pub lock_ms: i64,
    /// Queues up to this long are written to storage on every push. Longer ones (a long
    /// outage) are written on the next tick, before the next send and on page hide, so a
    /// `track` call never pays for rewriting hundreds of kilobytes. The browser layer sets 0
    /// and calls [`Outbox::persist_pending`] at the end of the task instead: one write for a
    /// burst of events.
    pub sync_persist_max: usize,
    /// How long events handed to the network (a keepalive fetch, a beacon) count as on their
    /// way: not sent again by this tab, nor adopted by another, before this has passed.
    pub flight_ms: i64,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            batch_size: 50,
            batch_bytes: 60 * 1024,
            flush_interval_ms: 1000,
            max_events: 1000,
            max_bytes: 1024 * 1024,
            base_backoff_ms: 1000,
            max_backoff_ms: 5 * 60 * 1000,
            max_attempts: 30,
            max_age_ms: 7 * 24 * 3600 * 1000,
            dead_after_ms: 10_000,
            lock_ms: 2000,
            sync_persist_max: 100,
            flight_ms: 5000,
        }
    }
}

/// Why events were dropped: the `reason` of the `events_dropped` metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    QueueFull,
    Expired,
    /// The collector refused them with a 4xx that retrying cannot fix (bad key, origin, …).
    Rejected,
    /// The collector named them as invalid in a 400.
    Invalid,
    TooLarge,
    RetriesExhausted,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Expired => "expired",
            DropReason::Rejected => "rejected",
            DropReason::Invalid => "invalid",
            DropReason::TooLarge => "too_large",
            DropReason::RetriesExhausted => "retries_exhausted",
        }
    }
}

/// Whether an item may already be stored by the collector although no answer said so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Doubt {
    None,
    /// Beaconed, or adopted from a tab that had events on their way: ask before sending.
    Unsure,
    /// In the [`wire::KnownQuery`] waiting for its answer.
    Asked,
}

#[derive(Clone, Debug)]
struct Item {
    /// The event's id, for [`wire::KnownQuery`].
    id: String,
    json: String,
    doubt: Doubt,
    /// The event's client time, for the age cap.
    ts: i64,
    /// When it entered this queue, for batching by time.
    queued_at: i64,
    /// Written to storage by the last successful persist.
    stored: bool,
    /// For an `events_dropped` report: its count and reason, so a later report can absorb it
    /// while it is still waiting.
    report: Option<(u32, DropReason)>,
    /// Order of arrival in this queue, for [`Outbox::delivered_up_to`] (`flush()`'s promise).
    seq: u64,
}

/// What the browser layer should do after a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Send again now (acknowledged with more waiting, or a smaller or cleaned batch).
    SendNow,
    /// Nothing until this time (Unix ms).
    RetryAt(i64),
    /// Nothing urgent; the regular tick will batch what comes.
    Idle,
}

pub struct Outbox<S: KeyValue> {
    pub policy: Policy,
    storage: S,
    tab: String,
    queue_key: String,
    beat_key: String,
    /// Oldest first. A deque: a full queue drops its oldest waiting event on every push, and an
    /// acknowledgement removes the front, so removal near the front must not move the rest
    /// (with a `Vec` that move was a measurable part of `track()` on a full queue).
    items: VecDeque<Item>,
    bytes: usize,
    /// Items from the front that are in a request awaiting its answer.
    in_flight: usize,
    /// Items from the front handed to `sendBeacon`, and the end of the acknowledgement window
    /// of everything handed to the network.
    beaconed: usize,
    flight_until: i64,
    /// The collector refused the write key or this page's origin (401/403).
    refused: bool,
    /// A [`wire::KnownQuery`] is on its way (instead of a batch: one request at a time).
    asking: bool,
    /// The next item's `seq`.
    next_seq: u64,
    /// Consecutive failures of the head batch, and when sending may resume.
    attempts: u32,
    retry_at: i64,
    /// Shrinks on 413 and grows back on success.
    batch_limit: usize,
    /// Drops not yet turned into a report.
    unreported: Vec<(DropReason, u32)>,
    /// Pushed events not yet written (see [`Policy::sync_persist_max`]).
    dirty: bool,
    write_key: String,
    /// The latest time a push or a tick was given: a tab that finds itself adopted beats again
    /// with it at once (see [`Outbox::was_adopted`]).
    clock: i64,
}

impl<S: KeyValue> Outbox<S> {
    /// Opens this tab's queue and beats (before anything is stored: other tabs find queues
    /// through heartbeats). The queues of dead tabs (a reload's previous page among them) are
    /// adopted by the first [`Outbox::tick`], not here: adopting reads, re-serialises and
    /// rewrites every event of the queues it finds, and at open that was on the way from the
    /// loader to a ready SDK (a closed page's 1 000 queued events added 125–155 ms to the
    /// tracker's ready in Chromium, measured), while the adopted events wait for a batch anyway.
    pub fn open(storage: S, write_key: String, tab: &str, policy: Policy, now: i64) -> Outbox<S> {
        let mut queue_key = String::from(QUEUE_PREFIX);
        queue_key.push_str(tab);
        let mut beat_key = String::from(BEAT_PREFIX);
        beat_key.push_str(tab);
        let batch_limit = policy.batch_size;
        let mut outbox = Outbox {
            policy,
            storage,
            tab: tab.into(),
            queue_key,
            beat_key,
            items: VecDeque::new(),
            bytes: 0,
            in_flight: 0,
            beaconed: 0,
            flight_until: 0,
            refused: false,
            asking: false,
            next_seq: 0,
            attempts: 0,
            retry_at: 0,
            batch_limit,
            unreported: Vec::new(),
            dirty: false,
            write_key,
            clock: now,
        };
        outbox.beat(now);
        outbox
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// Queues an event and persists the queue (at once while it is short; in any case before
    /// anything is sent).
    pub fn push(&mut self, event: &Event, now: i64) {
        self.clock = now;
        if self.refused {
            self.count_drop(DropReason::Rejected, 1);
            return;
        }
        let json = event.to_json();
        if json.len() > MAX_EVENT_BYTES {
            // The collector would refuse it; better to say so than to retry it forever.
            self.count_drop(DropReason::TooLarge, 1);
            return;
        }
        self.append(Item { id: event.id.clone(), json, doubt: Doubt::None, ts: event.ts, queued_at: now, stored: false, report: None, seq: 0 });
        self.enforce_bounds();
        self.persist_or_defer();
    }

    /// Writes the queue now while it is short, else marks it for the next write (see
    /// [`Policy::sync_persist_max`]).
    fn persist_or_defer(&mut self) {
        if self.items.len() <= self.policy.sync_persist_max {
            self.persist();
        } else {
            self.dirty = true;
        }
    }

    fn append(&mut self, mut item: Item) {
        self.bytes += item.json.len() + 1;
        item.seq = self.next_seq;
        self.next_seq += 1;
        self.items.push_back(item);
    }

    /// A mark for everything queued so far: see [`Outbox::delivered_up_to`].
    pub fn mark(&self) -> u64 {
        self.next_seq
    }

    /// Whether every event queued before `mark` has left the queue: acknowledged, or dropped
    /// (and counted). What `flush()`'s promise waits for.
    pub fn delivered_up_to(&self, mark: u64) -> bool {
        self.items.front().is_none_or(|i| i.seq >= mark)
    }

    /// Whether the collector refused this page's write key or origin (401/403).
    pub fn is_refused(&self) -> bool {
        self.refused
    }

    fn remove(&mut self, index: usize) -> Option<Item> {
        let item = self.items.remove(index)?;
        self.bytes -= item.json.len() + 1;
        if index < self.in_flight {
            self.in_flight -= 1;
        }
        if index < self.beaconed {
            self.beaconed -= 1;
        }
        Some(item)
    }

    fn count_drop(&mut self, reason: DropReason, n: u32) {
        if n == 0 {
            return;
        }
        match self.unreported.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, count)) => *count += n,
            None => self.unreported.push((reason, n)),
        }
    }

    /// Drops (and counts) the items whose place in `mask` is true, never counting dropped
    /// reports, so a collector that refuses everything cannot start a loop of reports about
    /// reports. A mask rather than a list of indices, and plain loops rather than iterator
    /// chains here and in the rest of the outbox: each chain or collected index list was its
    /// own std generic code in the tracker's wasm. Together with the storage scan and
    /// auto-capture's matching they were 3.8 KB raw, 1.4 KB gzip (`cargo xtask build`, issue 12).
    fn drop_items(&mut self, mask: &[bool], reason: DropReason) {
        let mut n = 0;
        for i in (0..mask.len()).rev() {
            if mask.get(i) == Some(&true) && self.remove(i).is_some_and(|item| item.report.is_none()) {
                n += 1;
            }
        }
        self.count_drop(reason, n);
    }

    /// Oldest waiting (not in-flight) events go first when the queue is over its bounds.
    fn enforce_bounds(&mut self) {
        let mut n = 0;
        while self.items.len() > self.policy.max_events || self.bytes > self.policy.max_bytes {
            // Reports are kept: they carry the count of everything dropped so far.
            let Some(oldest) = (self.in_flight..self.items.len()).find(|&i| self.items[i].report.is_none()) else {
                break;
            };
            self.remove(oldest);
            n += 1;
        }
        self.count_drop(DropReason::QueueFull, n);
    }

    /// Writes the queue to this tab's key. A refused write leaves the events in memory (and
    /// unmarked), so the queue keeps working without storage.
    fn persist(&mut self) {
        if self.was_adopted() {
            return;
        }
        self.dirty = false;
        if self.items.is_empty() {
            self.storage.remove(&self.queue_key);
            return;
        }
        let mut out = String::with_capacity(self.bytes + 2);
        out.push('[');
        for (i, item) in self.items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&item.json);
        }
        out.push(']');
        let ok = self.storage.set(&self.queue_key, &out);
        for item in &mut self.items {
            item.stored = ok;
        }
    }

    /// Another tab took our stored events while our heartbeat lapsed: they are its to send now.
    /// Keeps what was never stored, and beats again at once, so every stored queue has a
    /// heartbeat (other tabs find queues through heartbeats alone: [`Outbox::adopt_dead`]).
    fn was_adopted(&mut self) -> bool {
        if !self.storage.get(&self.beat_key).is_some_and(|b| b.starts_with(ADOPTED)) {
            return false;
        }
        self.in_flight = 0;
        self.beaconed = 0;
        self.asking = false;
        self.bytes = 0;
        for item in ::core::mem::take(&mut self.items) {
            if !item.stored {
                self.append(item);
            }
        }
        self.beat(self.clock);
        self.persist();
        true
    }

    /// Writes pushed events that wait for a later write (see [`Policy::sync_persist_max`]).
    pub fn persist_pending(&mut self) {
        if self.dirty {
            self.persist();
        }
    }

    /// Whether pushed events wait to be written.
    pub fn has_unwritten(&self) -> bool {
        self.dirty
    }

    /// Called about once a second: beat, and adopt dead tabs' queues.
    #[inline(never)] // kept out of `track()`'s path: see `machine::Machine::handle`
    pub fn tick(&mut self, now: i64) {
        self.clock = now;
        self.persist_pending();
        self.was_adopted();
        self.beat(now);
        self.adopt_dead(now);
    }

    fn beat(&mut self, now: i64) {
        let mut text = String::new();
        json::write_num(&mut text, now as f64);
        self.storage.set(&self.beat_key, &text);
    }

    /// The page is going away: mark this tab dead at once, so a reload adopts its queue
    /// without waiting for the heartbeat to lapse — but only once the events this tab had on
    /// their way (a keepalive fetch, beacons) have had their acknowledgement window.
    pub fn retire(&mut self) {
        self.persist_pending();
        // Adopted meanwhile: what is left was never stored before, and nothing is on its way.
        self.was_adopted();
        let mut beat = String::from(GONE);
        if self.in_flight > 0 || self.beaconed > 0 {
            beat.push('@');
            json::write_num(&mut beat, self.flight_until as f64);
        }
        self.storage.set(&self.beat_key, &beat);
    }

    /// A heartbeat (Unix ms) older than [`Policy::dead_after_ms`], or a closed tab (`gone`)
    /// whose events on their way have had their acknowledgement window (`gone@<end>`).
    fn beat_is_stale(&self, beat: &str, now: i64) -> bool {
        match beat.strip_prefix(GONE) {
            Some(rest) => rest.strip_prefix('@').and_then(parse_int).is_none_or(|until| now >= until),
            // Unreadable: dead.
            None => parse_int(beat).is_none_or(|t| now - t > self.policy.dead_after_ms),
        }
    }

    /// Adopts the queues of dead tabs, found through their heartbeats in one pass: every
    /// stored queue has one (a tab beats before it stores anything, and again at once when it
    /// finds itself adopted). A dead tab's heartbeat goes with its queue, replaced by an
    /// adoption mark when there was a queue; marks go after [`ADOPTED_KEPT_MS`]. Events of a tab
    /// that did not close with nothing on its way (`gone`) may have reached the collector: they
    /// are asked about before they are sent.
    fn adopt_dead(&mut self, now: i64) {
        let mut locked = false;
        for beat_key in self.storage.keys_with_prefix(BEAT_PREFIX) {
            // strip_prefix, not slicing: no panic path (and its formatting) in the bundle.
            let tab = beat_key.strip_prefix(BEAT_PREFIX).unwrap_or_default();
            let beat = self.storage.get(&beat_key).unwrap_or_default();
            let adopted = beat.strip_prefix(ADOPTED);
            let stale = match adopted {
                Some(at) => parse_int(at).is_some_and(|t| now - t > ADOPTED_KEPT_MS),
                None => self.beat_is_stale(&beat, now),
            };
            if tab == self.tab || !stale {
                continue;
            }
            if !locked {
                if !self.lock(now) {
                    return;
                }
                locked = true;
            }
            let mut queue_key = String::from(QUEUE_PREFIX);
            queue_key.push_str(tab);
            match self.storage.get(&queue_key) {
                Some(text) => {
                    let doubt = if beat == GONE { Doubt::None } else { Doubt::Unsure };
                    for (json, id, ts) in parse_queue(&text) {
                        // Queued long ago: the adopted events go in the next batch.
                        self.append(Item { id, json, doubt, ts: ts as i64, queued_at: 0, stored: false, report: None, seq: 0 });
                    }
                    self.storage.remove(&queue_key);
                    // Tells the owner, should it still be alive, that its stored events moved.
                    let mut mark = String::from(ADOPTED);
                    json::write_num(&mut mark, now as f64);
                    self.storage.set(&beat_key, &mark);
                }
                None => self.storage.remove(&beat_key),
            }
        }
        if locked {
            self.enforce_bounds();
            self.persist();
            self.unlock();
        }
    }

    /// A short lock in storage (Segment's approach): write our claim, read it back. Storage
    /// events between tabs are not atomic, so this narrows the race rather than closing it;
    /// the collector's dedup by event id absorbs what slips through.
    fn lock(&mut self, now: i64) -> bool {
        if let Some(held) = self.storage.get(LOCK_KEY) {
            let (owner, until) = held.split_once('@').unwrap_or(("", "0"));
            if owner != self.tab && parse_int(until).is_some_and(|u| u > now) {
                return false;
            }
        }
        let mut claim = self.tab.clone();
        claim.push('@');
        json::write_num(&mut claim, (now + self.policy.lock_ms) as f64);
        self.storage.set(LOCK_KEY, &claim) && self.storage.get(LOCK_KEY).as_deref() == Some(claim.as_str())
    }

    fn unlock(&mut self) {
        self.storage.remove(LOCK_KEY);
    }

    /// Whether a batch should go now: enough events, the oldest waited long enough, or the
    /// caller forces it (`flush()`, coming back online). Backoff holds unforced sends.
    pub fn due(&self, now: i64, force: bool) -> bool {
        if self.in_flight > 0 || self.asking || self.items.is_empty() || self.refused {
            return false;
        }
        // Beaconed events are on their way: nothing goes by fetch until their window passed
        // (a tab hidden and shown again; new events wait a few seconds, none is sent twice).
        // Checked before the scans below: `track()` asks on every call.
        let beacon_pending = self.beaconed > 0 && now < self.flight_until;
        if !force && (beacon_pending || now < self.retry_at) {
            return false;
        }
        // Events that may have arrived are asked about first ([`Outbox::next_check`]).
        if self.items.iter().any(|i| i.doubt != Doubt::None) {
            return false;
        }
        force || self.items.len() >= self.policy.batch_size || self.items.iter().any(|i| now - i.queued_at >= self.policy.flush_interval_ms)
    }

    /// The next batch body, marking its events in flight, or `None` when nothing is due.
    pub fn next_batch(&mut self, now: i64, force: bool) -> Option<String> {
        self.expire(now);
        if !self.due(now, force) {
            return None;
        }
        if self.dirty {
            // Persist before send: what goes out is in storage first.
            self.persist();
            if !self.due(now, force) {
                return None; // adopted meanwhile
            }
        }
        let (end, body) = self.body(0, self.batch_limit, now);
        self.in_flight = end;
        self.flight_until = self.flight_until.max(now + self.policy.flight_ms);
        Some(body)
    }

    /// The body of a [`wire::KnownQuery`] for the events that may have arrived already, once
    /// their acknowledgement window has passed, or `None`. The answer goes to
    /// [`Outbox::settle`] like a batch's.
    pub fn next_check(&mut self, now: i64) -> Option<String> {
        if self.in_flight > 0 || self.asking || self.refused || now < self.flight_until {
            return None;
        }
        let mut out = String::from("{\"writeKey\":");
        json::write_str(&mut out, &self.write_key);
        out.push_str(",\"");
        out.push_str(wire::KNOWN_QUERY_IDS);
        out.push_str("\":[");
        let mut asked = 0;
        for item in &mut self.items {
            if item.doubt != Doubt::Unsure || asked == wire::MAX_KNOWN_IDS {
                continue;
            }
            if asked > 0 {
                out.push(',');
            }
            json::write_str(&mut out, &item.id);
            item.doubt = Doubt::Asked;
            asked += 1;
        }
        out.push_str("]}");
        self.asking = asked > 0;
        self.asking.then_some(out)
    }

    /// The answer to [`Outbox::next_check`]: the events the collector names are delivered; the
    /// others (all of them, when the answer is not a readable 2xx) are sent like any other.
    fn settle_check(&mut self, status: u16, body: &str) -> Next {
        self.asking = false;
        let known = match status {
            200..=299 => known_ids(body),
            _ => Vec::new(),
        };
        let mut i = 0;
        while i < self.items.len() {
            if self.items[i].doubt == Doubt::Asked {
                if known.contains(&self.items[i].id) {
                    self.remove(i);
                    continue;
                }
                self.items[i].doubt = Doubt::None;
            }
            i += 1;
        }
        self.persist();
        self.send_rest()
    }

    fn expire(&mut self, now: i64) {
        let mut old = Vec::with_capacity(self.items.len());
        let mut any = false;
        for (i, item) in self.items.iter().enumerate() {
            let expired = i >= self.in_flight && now - item.ts > self.policy.max_age_ms;
            any |= expired;
            old.push(expired);
        }
        if any {
            self.drop_items(&old, DropReason::Expired);
            self.persist();
        }
    }

    /// A batch of items from `start`, at most `limit` events and `batch_bytes` long (always at
    /// least one event). Returns the end index and the body.
    fn body(&self, start: usize, limit: usize, now: i64) -> (usize, String) {
        let mut out = String::with_capacity(self.policy.batch_bytes.min(self.bytes + 64));
        out.push_str("{\"writeKey\":");
        json::write_str(&mut out, &self.write_key);
        out.push_str(",\"sentAt\":");
        json::write_num(&mut out, now as f64);
        out.push_str(",\"events\":[");
        let mut end = start;
        while end < self.items.len() && end - start < limit.max(1) {
            let json = &self.items[end].json;
            if end > start && out.len() + json.len() + 2 > self.policy.batch_bytes {
                break;
            }
            if end > start {
                out.push(',');
            }
            out.push_str(json);
            end += 1;
        }
        out.push_str("]}");
        (end, out)
    }

    /// The queued events not yet on their way (not in a fetch, not beaconed before), in bodies
    /// under `batch_bytes`, for `sendBeacon` when the page is hidden or closed. Beacons are
    /// fire-and-forget, so the events stay queued: once their acknowledgement window has passed
    /// they are sent again (by this tab, or by the one that adopts its queue), the collector's
    /// dedup absorbing the repeat and the resend making up for a lost beacon.
    pub fn beacon_bodies(&mut self, now: i64) -> Vec<String> {
        let mut bodies = Vec::new();
        if self.refused {
            return bodies;
        }
        let mut start = self.in_flight.max(self.beaconed);
        for item in self.items.iter_mut().skip(start) {
            item.doubt = Doubt::Unsure;
        }
        if start < self.items.len() {
            self.beaconed = self.items.len();
            self.flight_until = self.flight_until.max(now + self.policy.flight_ms);
        }
        while start < self.items.len() {
            let (end, body) = self.body(start, self.policy.batch_size, now);
            bodies.push(body);
            start = end;
        }
        bodies
    }

    /// The answer to the batch in flight: `status` 0 for a network error; `retry_after` the
    /// header's value; `body` the response text (read for a 400's list of bad events).
    #[inline(never)] // kept out of `track()`'s path: see `machine::Machine::handle`
    pub fn settle(&mut self, status: u16, retry_after: Option<&str>, body: &str, now: i64, rng: &mut impl Entropy) -> Next {
        if self.asking {
            return self.settle_check(status, body);
        }
        if self.in_flight == 0 {
            return Next::Idle;
        }
        let batch = vec![true; self.in_flight];
        let next = match status {
            200..=299 => {
                for _ in 0..self.in_flight {
                    self.remove(0);
                }
                self.attempts = 0;
                self.retry_at = 0;
                self.batch_limit = self.policy.batch_size;
                self.send_more(now)
            }
            400 => {
                let bad = bad_indices(body, self.in_flight);
                if !bad.contains(&true) {
                    self.drop_items(&batch, DropReason::Rejected);
                } else {
                    self.drop_items(&bad, DropReason::Invalid);
                }
                self.in_flight = 0;
                self.send_rest()
            }
            // The collector names events over the per-event limit; otherwise the body was too
            // big as a whole and the batch is halved (down to one event, which is then dropped).
            413 => {
                let big = bad_indices(body, self.in_flight);
                if big.contains(&true) {
                    self.drop_items(&big, DropReason::TooLarge);
                } else if self.in_flight > 1 {
                    self.batch_limit = (self.in_flight / 2).max(1);
                } else {
                    self.drop_items(&batch, DropReason::TooLarge);
                }
                self.in_flight = 0;
                self.send_rest()
            }
            0 | 408 | 429 | 500..=599 => {
                self.attempts += 1;
                if self.attempts >= self.policy.max_attempts {
                    self.attempts = 0;
                    self.drop_items(&batch, DropReason::RetriesExhausted);
                }
                self.in_flight = 0;
                let wait = match (status, retry_after.and_then(|v| retry_after_ms(v, now))) {
                    (429 | 503, Some(ms)) => ms.min(self.policy.max_backoff_ms),
                    _ => self.backoff(rng),
                };
                self.retry_at = now + wait;
                Next::RetryAt(self.retry_at)
            }
            // The write key is unknown or this origin is not allowed for it: every event of
            // this page would meet the same answer.
            401 | 403 => {
                self.drop_items(&vec![true; self.items.len()], DropReason::Rejected);
                self.refused = true;
                Next::Idle
            }
            _ => {
                self.drop_items(&batch, DropReason::Rejected);
                self.send_rest()
            }
        };
        self.persist();
        next
    }

    /// After an acknowledgement: go on at once only if the next batch is already due.
    fn send_more(&self, now: i64) -> Next {
        match self.due(now, false) {
            true => Next::SendNow,
            false => Next::Idle,
        }
    }

    /// After events were dropped from a batch: what is left of it was due, so send it now.
    fn send_rest(&self) -> Next {
        match self.items.is_empty() {
            true => Next::Idle,
            false => Next::SendNow,
        }
    }

    /// Exponential backoff with "equal jitter": half fixed, half random, so retries from many
    /// clients after an outage spread out but none retries at once.
    fn backoff(&self, rng: &mut impl Entropy) -> i64 {
        let exp = self.attempts.saturating_sub(1).min(30);
        let full = self.policy.base_backoff_ms.saturating_mul(1 << exp).min(self.policy.max_backoff_ms);
        let mut r = [0u8; 2];
        rng.fill(&mut r);
        let fraction = u16::from_le_bytes(r) as i64;
        full / 2 + (full / 2) * fraction / 65_536
    }

    /// The network is back: retry now rather than at the end of the backoff.
    pub fn online(&mut self) {
        self.retry_at = 0;
        self.attempts = 0;
    }

    /// Turns counted drops into `metric` `events_dropped` events (one per reason). An earlier
    /// report still waiting to be sent is absorbed into the new one, so a long outage yields
    /// one report, not thousands. Reports may exceed the bound by a few events.
    pub fn report_drops(&mut self, client: &mut Client, now: i64, rng: &mut impl Entropy) {
        if self.refused {
            return; // a report would be refused like the rest; the counts stay in `unreported`
        }
        let drops = ::core::mem::take(&mut self.unreported);
        if drops.is_empty() {
            return;
        }
        for (reason, mut count) in drops {
            if let Some(i) = (self.in_flight..self.items.len()).find(|&i| matches!(self.items[i].report, Some((_, r)) if r == reason)) {
                count += self.items[i].report.map_or(0, |(c, _)| c);
                self.remove(i);
            }
            let props = vec![
                (vocab::prop::COUNT.into(), Value::Num(count as f64)),
                (vocab::prop::REASON.into(), Value::Str(reason.as_str().into())),
            ];
            let event = client.event(EventType::Metric, vocab::metric::EVENTS_DROPPED, props, now, rng);
            self.append(Item { id: event.id.clone(), json: event.to_json(), doubt: Doubt::None, ts: now, queued_at: now, stored: false, report: Some((count, reason)), seq: 0 });
        }
        self.persist_or_defer();
    }

    /// Whether drops wait for [`Outbox::report_drops`] to report them (never on a refused page:
    /// the report would be refused too).
    pub fn has_unreported(&self) -> bool {
        !self.refused && !self.unreported.is_empty()
    }

    /// Drops counted and not yet reported, by reason (for tests and diagnostics).
    pub fn unreported(&self) -> &[(DropReason, u32)] {
        &self.unreported
    }
}

/// The events of a stored queue as (json, id, ts); anything unreadable is skipped rather than
/// blocking the rest. Full validation is the collector's: a 400 drops just the bad event.
/// (Not `Event::from_value`: its messages would cost the bundle more than they give here.)
fn parse_queue(text: &str) -> Vec<(String, String, f64)> {
    json::records(text, "id", "ts")
}

/// The ids a [`wire::Known`] answer names; anything unreadable names none (and so every
/// event asked about is sent).
fn known_ids(body: &str) -> Vec<String> {
    let mut known = Vec::new();
    let Ok(doc) = json::parse(body) else { return known };
    for id in doc.get(wire::KNOWN_IDS).and_then(Value::as_array).unwrap_or_default() {
        if let Some(id) = id.as_str() {
            known.push(String::from(id));
        }
    }
    known
}

/// The events of the batch a 400 or 413 names (`{"errors":[{"index":3,…}]}`,
/// [`wire::Rejection`]), as a mask over the batch (a mask rather than a sorted list: sorting
/// code costs the bundle kilobytes). Read by hand: the tracker carries no serde.
fn bad_indices(body: &str, len: usize) -> Vec<bool> {
    let mut bad = vec![false; len];
    let Ok(doc) = json::parse(body) else { return bad };
    for e in doc.get(wire::REJECTION_ERRORS).and_then(Value::as_array).unwrap_or(&[]) {
        if let Some(i) = e.get(wire::REJECTION_INDEX).and_then(Value::as_f64).filter(|&i| i >= 0.0 && (i as usize) < len) {
            bad[i as usize] = true;
        }
    }
    bad
}

/// How long `Retry-After` asks the client to wait, in ms from `now`: delay-seconds, or an
/// HTTP-date in any of the three forms RFC 9110 (§5.6.7) has recipients accept, as proxies and
/// CDNs in front of a collector may send. A date already past means "now"; anything else
/// unreadable is `None`, and the client's own backoff applies.
fn retry_after_ms(value: &str, now: i64) -> Option<i64> {
    let value = value.trim();
    if let Some(seconds) = parse_int(value) {
        return (seconds >= 0).then(|| seconds.saturating_mul(1000));
    }
    http_date(value).map(|at| (at - now).max(0))
}

/// An HTTP-date as Unix ms: IMF-fixdate `Sun, 06 Nov 1994 08:49:37 GMT`, RFC 850
/// `Sunday, 06-Nov-94 08:49:37 GMT` or asctime `Sun Nov  6 08:49:37 1994`. Hand-written rather
/// than a date crate: a few dozen bytes of wasm.
fn http_date(value: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let mut parts = Vec::new();
    for part in value.split([' ', '-']) {
        if !part.is_empty() {
            parts.push(part);
        }
    }
    let (day, month, year, time) = match parts.as_slice() {
        [_, day, month, year, time, "GMT"] => (day, month, year, time),
        [_, month, day, time, year] => (day, month, year, time),
        _ => return None,
    };
    let month = MONTHS.iter().position(|m| m == month)? as u32 + 1;
    let day = parse_int(day).filter(|d| (1..=31).contains(d))? as u32;
    let mut year = parse_int(year)?;
    if year < 100 {
        // RFC 850's two-digit years: RFC 9110 reads one more than 50 years ahead as the past.
        year += if year < 70 { 2000 } else { 1900 };
    }
    let mut hms = time.split(':').map(parse_int);
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some() || h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some(((crate::core::time::days_from_civil(year, month, day) * 24 + h) * 60 + m) * 60_000 + s * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::client::tests::Counter;
    use crate::core::storage::MemoryStorage;

    fn client() -> Client {
        Client::new("anon".into())
    }

    fn outbox(storage: MemoryStorage, tab: &str, now: i64) -> Outbox<MemoryStorage> {
        Outbox::open(storage, "wk".into(), tab, Policy::default(), now)
    }

    fn push(o: &mut Outbox<MemoryStorage>, c: &mut Client, name: &str, now: i64) {
        let e = c.event(EventType::Track, name, vec![], now, &mut Counter(0));
        o.push(&e, now);
    }

    fn names(body: &str) -> Vec<String> {
        let doc = json::parse(body).expect("json");
        doc.get("events")
            .and_then(Value::as_array)
            .expect("events")
            .iter()
            .map(|e| e.get("name").and_then(Value::as_str).unwrap_or("").to_owned())
            .collect()
    }

    /// The ids a `/v1/known` question asks about.
    fn asked(body: &str) -> Vec<String> {
        let doc = json::parse(body).expect("json");
        assert_eq!(doc.get("writeKey").and_then(Value::as_str), Some("wk"));
        doc.get(wire::KNOWN_QUERY_IDS).and_then(Value::as_array).expect("ids").iter().map(|v| v.as_str().expect("id").to_owned()).collect()
    }

    /// The collector's answer naming `known` as stored.
    fn known(known: &[String]) -> String {
        let mut out = String::from("{\"known\":[");
        for (i, id) in known.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json::write_str(&mut out, id);
        }
        out + "]}"
    }

    fn stored_names(s: &MemoryStorage, tab: &str) -> Vec<String> {
        let mut key = String::from(QUEUE_PREFIX);
        key.push_str(tab);
        let text = s.entries.get(&key).cloned().unwrap_or_else(|| "[]".into());
        parse_queue(&text).into_iter().map(|(j, _, _)| json::parse(&j).ok().and_then(|v| v.get("name").and_then(Value::as_str).map(String::from)).unwrap_or_default()).collect()
    }

    #[test]
    fn persists_before_sending_and_removes_only_on_ack() {
        let mut c = client();
        let mut o = outbox(MemoryStorage::default(), "t1", 0);
        push(&mut o, &mut c, "a", 0);
        assert_eq!(stored_names(o.storage(), "t1"), ["a"], "stored before any send");
        assert_eq!(o.next_batch(10, false), None, "waits for the batch interval");
        let body = o.next_batch(1000, false).expect("due by time");
        assert_eq!(names(&body), ["a"]);
        assert_eq!(o.next_batch(1000, true), None, "one request at a time");
        assert_eq!(o.settle(503, Some("2"), "", 1000, &mut Counter(0)), Next::RetryAt(3000), "Retry-After honoured");
        assert_eq!(stored_names(o.storage(), "t1"), ["a"]);
        assert_eq!(o.next_batch(2000, false), None, "backing off");
        assert!(o.next_batch(3000, false).is_some());
        assert_eq!(o.settle(200, None, "", 3000, &mut Counter(0)), Next::Idle);
        assert!(o.is_empty());
        assert!(stored_names(o.storage(), "t1").is_empty());
    }

    #[test]
    fn long_queues_are_written_on_the_tick_or_before_the_next_send() {
        let mut c = client();
        let policy = Policy { sync_persist_max: 2, ..Policy::default() };
        let mut o = Outbox::open(MemoryStorage::default(), "wk".into(), "t", policy, 0);
        for n in ["a", "b", "c"] {
            push(&mut o, &mut c, n, 0);
        }
        assert_eq!(stored_names(o.storage(), "t"), ["a", "b"], "the third push is deferred");
        o.next_batch(0, true).expect("batch");
        assert_eq!(stored_names(o.storage(), "t"), ["a", "b", "c"], "stored before it is sent");
        push(&mut o, &mut c, "d", 0);
        o.tick(1);
        assert_eq!(stored_names(o.storage(), "t"), ["a", "b", "c", "d"], "stored on the tick");
        push(&mut o, &mut c, "e", 2);
        o.retire();
        assert_eq!(stored_names(o.storage(), "t").len(), 5, "stored on page hide");
    }

    #[test]
    fn batches_by_count_and_splits_by_bytes() {
        let mut c = client();
        let mut o = outbox(MemoryStorage::default(), "t", 0);
        for i in 0..o.policy.batch_size {
            assert!(!o.due(0, false), "not due at {i}");
            push(&mut o, &mut c, "e", 0);
        }
        assert!(o.due(0, false), "a full batch goes at once");
        let mut big = c.event(EventType::Track, "big", vec![("x".into(), Value::Str("y".repeat(20_000)))], 0, &mut Counter(0));
        big.ts = 0;
        let mut o = outbox(MemoryStorage::default(), "t", 0);
        for _ in 0..5 {
            o.push(&big, 0);
        }
        let bodies = o.beacon_bodies(0);
        assert!(bodies.len() >= 2 && bodies.iter().all(|b| b.len() <= o.policy.batch_bytes), "beacons stay under 60 KB");
        assert_eq!(bodies.iter().map(|b| names(b).len()).sum::<usize>(), 5);
        assert_eq!(o.next_batch(0, true), None, "beaconed: asked about before it is sent again");
        let end = o.policy.flight_ms;
        assert_eq!(asked(&o.next_check(end).expect("after the window")).len(), 5);
        assert_eq!(o.settle(200, None, &known(&[]), end, &mut Counter(0)), Next::SendNow, "none arrived");
        assert!(o.next_batch(end, true).is_some_and(|b| b.len() <= o.policy.batch_bytes));
    }

    #[test]
    fn backoff_grows_with_jitter_up_to_the_cap_then_gives_up() {
        let mut c = client();
        let mut o = outbox(MemoryStorage::default(), "t", 0);
        push(&mut o, &mut c, "a", 0);
        let mut now = 0;
        let mut waits = Vec::new();
        for _ in 0..o.policy.max_attempts - 1 {
            o.next_batch(now, true).expect("batch");
            match o.settle(0, None, "", now, &mut Counter(7)) {
                Next::RetryAt(t) => waits.push(t - now),
                other => panic!("{other:?}"),
            }
            now += 1;
        }
        assert!(waits[0] >= 500 && waits[0] <= 1000, "{waits:?}");
        assert!(waits[3] >= 4000 && waits[3] <= 8000, "{waits:?}");
        assert!(waits.iter().all(|w| *w <= o.policy.max_backoff_ms));
        o.next_batch(now, true).expect("last attempt");
        o.settle(500, None, "", now, &mut Counter(7));
        assert!(o.is_empty(), "dropped after max attempts");
        assert_eq!(o.unreported(), &[(DropReason::RetriesExhausted, 1)]);
    }

    #[test]
    fn bad_events_named_by_a_400_are_dropped_and_the_rest_resent() {
        let mut c = client();
        let mut o = outbox(MemoryStorage::default(), "t", 0);
        for n in ["a", "b", "c"] {
            push(&mut o, &mut c, n, 0);
        }
        o.next_batch(0, true).expect("batch");
        let body = r#"{"error":"invalid batch","errors":[{"index":1,"field":"name"}]}"#;
        assert_eq!(o.settle(400, None, body, 0, &mut Counter(0)), Next::SendNow);
        assert_eq!(names(&o.next_batch(0, true).expect("resend")), ["a", "c"]);
        assert_eq!(o.unreported(), &[(DropReason::Invalid, 1)]);
    }

    #[test]
    fn other_4xx_drop_the_batch_without_retry_and_413_splits_it() {
        let mut c = client();
        let mut o = outbox(MemoryStorage::default(), "t", 0);
        for n in ["a", "b", "c", "d"] {
            push(&mut o, &mut c, n, 0);
        }
        o.next_batch(0, true).expect("batch");
        assert_eq!(o.settle(413, None, "", 0, &mut Counter(0)), Next::SendNow);
        assert_eq!(names(&o.next_batch(0, true).expect("half")), ["a", "b"]);
        o.settle(422, None, "{\"error\":\"unprocessable\"}", 0, &mut Counter(0));
        assert_eq!(o.len(), 2);
        assert_eq!(o.unreported(), &[(DropReason::Rejected, 2)]);
        o.next_batch(0, true).expect("rest");
        o.settle(413, None, "", 0, &mut Counter(0));
        o.next_batch(0, true).expect("single");
        o.settle(413, None, "", 0, &mut Counter(0));
        assert_eq!(o.len(), 1, "a single event too large is dropped");
        assert_eq!(o.unreported()[1], (DropReason::TooLarge, 1));
    }

    #[test]
    fn a_413_naming_events_drops_just_those() {
        let mut c = client();
        let mut o = outbox(MemoryStorage::default(), "t", 0);
        for n in ["a", "b", "c"] {
            push(&mut o, &mut c, n, 0);
        }
        o.next_batch(0, true).expect("batch");
        assert_eq!(o.settle(413, None, r#"{"errors":[{"index":2}]}"#, 0, &mut Counter(0)), Next::SendNow);
        assert_eq!(names(&o.next_batch(0, true).expect("rest")), ["a", "b"]);
        assert_eq!(o.unreported(), &[(DropReason::TooLarge, 1)]);
    }

    #[test]
    fn full_queue_drops_oldest_and_reports_once() {
        let mut c = client();
        let policy = Policy { max_events: 3, ..Policy::default() };
        let mut o = Outbox::open(MemoryStorage::default(), "wk".into(), "t", policy, 0);
        for n in ["a", "b", "c", "d", "e"] {
            push(&mut o, &mut c, n, 0);
        }
        assert_eq!(stored_names(o.storage(), "t"), ["c", "d", "e"]);
        o.report_drops(&mut c, 0, &mut Counter(0));
        push(&mut o, &mut c, "f", 0);
        o.report_drops(&mut c, 0, &mut Counter(0));
        let body = o.next_batch(0, true).expect("batch");
        let doc = json::parse(&body).expect("json");
        let events = doc.get("events").and_then(Value::as_array).expect("events");
        let reports: Vec<_> = events.iter().filter(|e| e.get("name").and_then(Value::as_str) == Some("events_dropped")).collect();
        assert_eq!(reports.len(), 1, "one report absorbs the earlier one: {body}");
        let props = reports[0].get("props").expect("props");
        // a, b, then c, d to make room for the first report and f.
        assert_eq!(props.get("count"), Some(&Value::Num(4.0)));
        assert_eq!(props.get("reason"), Some(&Value::Str("queue_full".into())));
        assert_eq!(reports[0].get("type"), Some(&Value::Str("metric".into())));
    }

    #[test]
    fn works_in_memory_when_storage_refuses() {
        let mut c = client();
        let mut o = outbox(MemoryStorage::with_quota(10), "t", 0);
        push(&mut o, &mut c, "a", 0);
        assert!(stored_names(o.storage(), "t").is_empty());
        assert_eq!(names(&o.next_batch(0, true).expect("sent from memory")), ["a"]);
    }

    #[test]
    fn old_events_expire_instead_of_being_sent() {
        let mut c = client();
        let mut o = outbox(MemoryStorage::default(), "t", 0);
        push(&mut o, &mut c, "a", 0);
        let late = o.policy.max_age_ms + 1;
        assert_eq!(o.next_batch(late, true), None);
        assert_eq!(o.unreported(), &[(DropReason::Expired, 1)]);
    }

    #[test]
    fn a_reload_adopts_the_previous_page_queue_at_its_first_tick_when_nothing_was_on_its_way() {
        let mut c = client();
        let mut old = outbox(MemoryStorage::default(), "old", 0);
        push(&mut old, &mut c, "a", 0);
        push(&mut old, &mut c, "b", 0);
        old.retire();
        let storage = old.storage().clone();
        let mut new = outbox(storage, "new", 100);
        // Opening only beats: the scan of other tabs' queues waits for the first tick.
        assert!(new.is_empty() && new.next_batch(100, true).is_none());
        assert_eq!(stored_names(new.storage(), "old"), ["a", "b"]);
        assert!(new.storage().get("onramp.hb.new").is_some(), "beats at open");
        new.tick(1100);
        assert_eq!(names(&new.next_batch(1100, true).expect("resent")), ["a", "b"]);
        assert!(stored_names(new.storage(), "old").is_empty());
        assert_eq!(stored_names(new.storage(), "new"), ["a", "b"]);
    }

    #[test]
    fn a_reload_adopts_events_on_their_way_only_after_their_window() {
        let mut c = client();
        let mut old = outbox(MemoryStorage::default(), "old", 0);
        push(&mut old, &mut c, "fetched", 0);
        old.next_batch(0, true).expect("in a keepalive fetch when the page closed");
        push(&mut old, &mut c, "beaconed", 10);
        assert_eq!(old.beacon_bodies(10).iter().flat_map(|b| names(b)).collect::<Vec<_>>(), ["beaconed"], "the fetch carries the other");
        old.retire();
        let window_end = 10 + old.policy.flight_ms;
        let mut new = outbox(old.storage().clone(), "new", 100);
        assert!(new.is_empty(), "on their way: not adopted yet");
        new.tick(window_end - 1);
        assert!(new.is_empty());
        new.tick(window_end);
        // Either may have arrived: the new page asks, and sends only what the collector lacks.
        assert_eq!(new.next_batch(window_end, true), None, "asked about first");
        let ids = asked(&new.next_check(window_end).expect("asked after the window"));
        assert_eq!(ids.len(), 2);
        assert_eq!(new.next_check(window_end), None, "one question at a time");
        assert_eq!(new.settle(200, None, &known(&ids[1..]), window_end, &mut Counter(0)), Next::SendNow);
        assert_eq!(names(&new.next_batch(window_end, true).expect("the rest")), ["fetched"], "the beacon arrived");
        assert_eq!(new.settle(200, None, "", window_end, &mut Counter(0)), Next::Idle);
        assert!(new.is_empty() && stored_names(new.storage(), "new").is_empty());
    }

    #[test]
    fn a_question_that_gets_no_readable_answer_sends_everything_asked_about() {
        for (status, body) in [(200, "not json"), (404, ""), (0, ""), (503, r#"{"known":["x"]}"#)] {
            let mut c = client();
            let mut o = outbox(MemoryStorage::default(), "t", 0);
            push(&mut o, &mut c, "a", 0);
            push(&mut o, &mut c, "b", 0);
            o.beacon_bodies(0);
            let end = o.policy.flight_ms;
            let ids = asked(&o.next_check(end).expect("asked"));
            assert_eq!(ids.len(), 2);
            o.settle(status, None, body, end, &mut Counter(0));
            assert_eq!(names(&o.next_batch(end, true).expect("sent")), ["a", "b"], "at least once after {status} {body}");
        }
    }

    #[test]
    fn a_tab_that_closed_with_nothing_on_its_way_is_adopted_without_a_question() {
        let mut c = client();
        let mut old = outbox(MemoryStorage::default(), "old", 0);
        push(&mut old, &mut c, "a", 0);
        old.retire();
        let mut new = outbox(old.storage().clone(), "new", 100);
        new.tick(100);
        assert_eq!(new.next_check(100), None);
        assert_eq!(names(&new.next_batch(100, true).expect("sent")), ["a"]);
    }

    #[test]
    fn hidden_then_pagehide_beacons_each_event_once() {
        let mut c = client();
        let mut o = outbox(MemoryStorage::default(), "t", 0);
        push(&mut o, &mut c, "a", 0);
        push(&mut o, &mut c, "b", 0);
        let hidden = o.beacon_bodies(100);
        assert_eq!(hidden.iter().flat_map(|b| names(b)).collect::<Vec<_>>(), ["a", "b"]);
        assert!(o.beacon_bodies(150).is_empty(), "pagehide right after: nothing new to beacon");
        push(&mut o, &mut c, "c", 200);
        assert_eq!(o.beacon_bodies(200).iter().flat_map(|b| names(b)).collect::<Vec<_>>(), ["c"], "only what came since");
        // The tab was only hidden and comes back: nothing is fetched while the beacons may
        // still be answered, then it asks which arrived and sends the rest again (at least once).
        let end = 200 + o.policy.flight_ms;
        assert_eq!(o.next_batch(end - 1, false), None);
        assert_eq!(o.next_check(end - 1), None);
        let ids = asked(&o.next_check(end).expect("after the window"));
        assert_eq!(ids.len(), 3);
        o.settle(200, None, &known(&ids[..2]), end, &mut Counter(0));
        assert_eq!(names(&o.next_batch(end, false).expect("the lost beacon's event")), ["c"]);
        o.settle(200, None, "", end, &mut Counter(0));
        assert!(o.is_empty());
        push(&mut o, &mut c, "d", end);
        assert_eq!(o.beacon_bodies(end).iter().flat_map(|b| names(b)).collect::<Vec<_>>(), ["d"]);
    }

    #[test]
    fn a_refused_origin_drops_the_queue_once_and_sends_nothing_more() {
        let mut c = client();
        let mut o = outbox(MemoryStorage::default(), "t", 0);
        for n in ["a", "b", "c"] {
            push(&mut o, &mut c, n, 0);
        }
        o.policy.batch_size = 2;
        o.batch_limit = 2;
        assert_eq!(names(&o.next_batch(0, true).expect("batch")), ["a", "b"]);
        assert_eq!(o.settle(403, None, r#"{"error":"origin not allowed"}"#, 0, &mut Counter(0)), Next::Idle, "no retry");
        assert!(o.is_refused() && o.is_empty());
        assert!(stored_names(o.storage(), "t").is_empty(), "nothing left for a reload to resend");
        push(&mut o, &mut c, "d", 1);
        o.report_drops(&mut c, 1, &mut Counter(0));
        assert!(o.is_empty(), "no report either: it would be refused too");
        assert_eq!(o.next_batch(5000, true), None);
        assert!(o.beacon_bodies(5000).is_empty());
        assert_eq!(o.unreported(), &[(DropReason::Rejected, 4)]);
    }

    #[test]
    fn delivered_up_to_waits_for_the_acknowledgement_of_earlier_events_only() {
        let mut c = client();
        let mut o = outbox(MemoryStorage::default(), "t", 0);
        assert!(o.delivered_up_to(o.mark()), "nothing queued: at once");
        push(&mut o, &mut c, "a", 0);
        let mark = o.mark();
        push(&mut o, &mut c, "later", 0);
        o.policy.batch_size = 1;
        o.batch_limit = 1;
        o.next_batch(0, true).expect("batch");
        assert!(!o.delivered_up_to(mark), "sent is not acknowledged");
        o.settle(503, None, "", 0, &mut Counter(0));
        assert!(!o.delivered_up_to(mark));
        o.next_batch(0, true).expect("retry");
        o.settle(200, None, "", 0, &mut Counter(0));
        assert!(o.delivered_up_to(mark), "acknowledged; a later event does not hold it back");
        assert!(!o.delivered_up_to(o.mark()));
    }

    #[test]
    fn live_tabs_keep_their_queues_and_dead_ones_are_adopted_once() {
        let mut c = client();
        let mut a = outbox(MemoryStorage::default(), "a", 0);
        push(&mut a, &mut c, "from_a", 0);
        // Tab b shares the storage (a copy stands in for the browser's shared localStorage).
        let mut b = outbox(a.storage().clone(), "b", 1000);
        b.tick(1000);
        assert!(b.is_empty(), "a is alive: b leaves its queue alone");
        // a stops beating (crashed); after dead_after b adopts.
        let later = 1000 + b.policy.dead_after_ms + 1;
        b.tick(later);
        // A crashed tab's keepalive fetch may have arrived: asked about first.
        let ids = asked(&b.next_check(later).expect("adopted"));
        b.settle(200, None, &known(&[]), later, &mut Counter(0));
        assert_eq!(ids.len(), 1);
        assert_eq!(names(&b.next_batch(later, true).expect("adopted")), ["from_a"]);
        // A third tab finds nothing left to adopt.
        let mut c3 = outbox(b.storage().clone(), "c", later + 1);
        assert!(c3.is_empty());
        c3.tick(later + 2);
        assert!(c3.is_empty());
    }

    #[test]
    fn a_throttled_tab_that_was_adopted_drops_what_the_adopter_took() {
        let mut c = client();
        let mut a = outbox(MemoryStorage::default(), "a", 0);
        push(&mut a, &mut c, "stored", 0);
        let mut b = outbox(a.storage().clone(), "b", 20_000);
        b.tick(20_000);
        assert_eq!(b.len(), 1);
        // Hand a the shared storage as b left it, then a wakes up.
        a.storage = b.storage().clone();
        a.tick(20_001);
        assert!(a.is_empty(), "b sends it; a must not");
        push(&mut a, &mut c, "new", 20_002);
        assert_eq!(stored_names(&a.storage, "a"), ["new"]);
    }

    #[test]
    fn a_tab_adopted_while_throttled_beats_again_so_what_it_stores_next_is_not_orphaned() {
        let mut c = client();
        let mut a = outbox(MemoryStorage::default(), "a", 0);
        push(&mut a, &mut c, "stored", 0);
        let mut b = outbox(a.storage().clone(), "b", 20_000);
        b.tick(20_000);
        a.storage = b.storage().clone();
        // a wakes up with a push (no tick yet), stores it, and closes.
        push(&mut a, &mut c, "after", 20_001);
        assert_eq!(stored_names(&a.storage, "a"), ["after"]);
        assert!(a.storage.get("onramp.hb.a").is_some_and(|beat| !beat.starts_with(ADOPTED)), "beats again at once");
        a.retire();
        let mut next = outbox(a.storage().clone(), "next", 20_002);
        next.tick(20_002);
        assert_eq!(names(&next.next_batch(20_002, true).expect("adopted")), ["after"]);
        // Heartbeats of closed tabs do not pile up: a's adoption mark goes after its time.
        assert!(next.storage().get("onramp.hb.a").is_some_and(|beat| beat.starts_with(ADOPTED)));
        next.tick(20_003 + ADOPTED_KEPT_MS + 1);
        assert_eq!(next.storage().get("onramp.hb.a"), None);
    }

    #[test]
    fn lock_is_exclusive_until_it_expires() {
        let mut a = outbox(MemoryStorage::default(), "a", 0);
        assert!(a.lock(0));
        let mut b = outbox(a.storage().clone(), "b", 0);
        assert!(!b.lock(1));
        assert!(b.lock(a.policy.lock_ms + 1));
    }

    #[test]
    fn parses_retry_after_and_bad_indices_defensively() {
        assert_eq!(retry_after_ms(" 7 ", 0), Some(7000));
        assert_eq!(retry_after_ms("-1", 0), None);
        assert_eq!(retry_after_ms("soon", 0), None);
        assert_eq!(retry_after_ms("Wed, 32 Oct 2015 07:28:00 GMT", 0), None);
        assert_eq!(retry_after_ms("Wed, 21 Oct 2015 24:28:00 GMT", 0), None);
        assert_eq!(bad_indices(r#"{"errors":[{"index":2},{"index":0},{"index":99},{"index":null}]}"#, 3), [true, false, true]);
        assert_eq!(bad_indices("<html>", 3), [false; 3]);
    }

    #[test]
    fn retry_after_as_an_http_date_in_each_form() {
        // Unix times from Python's email.utils.parsedate_tz + calendar.timegm.
        const OCT_21_2015: i64 = 1_445_412_480_000;
        const NOV_6_1994: i64 = 784_111_777_000;
        assert_eq!(retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT", OCT_21_2015 - 5000), Some(5000));
        assert_eq!(retry_after_ms("Sun, 06 Nov 1994 08:49:37 GMT", NOV_6_1994 - 1000), Some(1000));
        assert_eq!(retry_after_ms("Sunday, 06-Nov-94 08:49:37 GMT", NOV_6_1994 - 1000), Some(1000));
        assert_eq!(retry_after_ms("Sun Nov  6 08:49:37 1994", NOV_6_1994 - 1000), Some(1000));
        assert_eq!(retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT", OCT_21_2015 + 60_000), Some(0), "already past");

        // The outbox waits until that date on a 503, not its own backoff.
        let now = OCT_21_2015 - 20_000;
        let (mut c, mut o) = (client(), outbox(MemoryStorage::default(), "t1", now));
        push(&mut o, &mut c, "a", now);
        assert!(o.next_batch(now, true).is_some());
        assert_eq!(o.settle(503, Some("Wed, 21 Oct 2015 07:28:00 GMT"), "", now, &mut Counter(0)), Next::RetryAt(OCT_21_2015));
    }
}
