//! The per-user row both stores keep (SQLite `rollup_users`, `sqlite_users`; ClickHouse
//! `rollup_users`, migration 10): what a report reads of each user key (identified, first and
//! last seen, the latest value of each identify trait, the first time of each milestone), a
//! function of the per-device rollups and the identity links.
//!
//! Traits and milestones are packed in ClickHouse's RowBinary layout (LEB128 length-prefixed
//! strings, little-endian integers; written by `clickhouse::rowbinary`): BLOBs in SQLite,
//! `String` columns in ClickHouse, that a report decodes without allocating, or checking as
//! UTF-8, what it does not need ([`ReportRows`]).

use std::collections::BTreeMap;

use onramp::core::json::Value;

use super::clickhouse::rowbinary::{put_i64, put_len, put_str, put_strs, Reader};
use super::UserSeen;
use crate::analytics::report::{ReportQuery, Tallies, Tally};
use crate::analytics::StepKind;

/// A trait's value as stored (JSON) with the (time, event id) of the identify that set it.
type StampedValue = ((i64, String), String);

/// One user's row of the per-user rollup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct UserRow {
    pub identified: bool,
    pub first_seen: i64,
    pub last_seen: i64,
    /// Per trait key, the latest value (by time, then event id).
    pub traits: BTreeMap<String, StampedValue>,
    /// Per milestone name, the first time reached.
    pub milestones: BTreeMap<String, i64>,
}

impl UserRow {
    pub(super) fn seen(identified: bool, first_seen: i64, last_seen: i64) -> UserRow {
        UserRow { identified, first_seen, last_seen, traits: BTreeMap::new(), milestones: BTreeMap::new() }
    }

    /// Folds in `other` (more devices, or more events of the same ones): the same row whatever
    /// the order rows are merged in.
    pub(super) fn merge(&mut self, other: UserRow) {
        self.identified |= other.identified;
        self.first_seen = self.first_seen.min(other.first_seen);
        self.last_seen = self.last_seen.max(other.last_seen);
        for (key, (stamp, value)) in other.traits {
            self.add_trait(key, stamp, value);
        }
        for (name, ts) in other.milestones {
            self.add_milestone(name, ts);
        }
    }

    pub(super) fn add_trait(&mut self, key: String, stamp: (i64, String), value: String) {
        match self.traits.get_mut(&key) {
            Some(held) if stamp > held.0 => *held = (stamp, value),
            Some(_) => {}
            None => drop(self.traits.insert(key, (stamp, value))),
        }
    }

    pub(super) fn add_milestone(&mut self, name: String, ts: i64) {
        let first = self.milestones.entry(name).or_insert(ts);
        *first = (*first).min(ts);
    }

    pub(super) fn pack_traits(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (key, ((ts, event), value)) in &self.traits {
            put_str(&mut out, key);
            put_i64(&mut out, *ts);
            put_str(&mut out, event);
            put_str(&mut out, value);
        }
        out
    }

    pub(super) fn pack_milestones(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, ts) in &self.milestones {
            put_str(&mut out, name);
            put_i64(&mut out, *ts);
        }
        out
    }

    pub(super) fn unpack(identified: bool, first_seen: i64, last_seen: i64, traits: &[u8], milestones: &[u8]) -> Option<UserRow> {
        let mut row = UserRow::seen(identified, first_seen, last_seen);
        let text = |bytes: &[u8]| std::str::from_utf8(bytes).ok().map(str::to_owned);
        for t in Traits::of(traits) {
            let t = t?;
            row.traits.insert(text(t.key)?, ((t.ts, text(t.event)?), text(t.value)?));
        }
        for m in Milestones::of(milestones) {
            let (name, ts) = m?;
            row.milestones.insert(text(name)?, ts);
        }
        Some(row)
    }
}

/// A row's columns that ClickHouse's report computes on (its migration 11): derived from the
/// packed traits and milestones (`rollup verify` checks they agree), written beside them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ReportColumns {
    /// The `signedUpAt` trait as Unix ms ([`onramp::core::time::parse_time`]), when it reads as
    /// one at or after [`onramp::core::time::EARLIEST_SIGNUP_MS`]; a report adds the upper
    /// bound, which depends on its `now` ([`onramp::core::time::signed_up_at`]).
    pub signup: Option<i64>,
    /// Per milestone, in name order, the first time reached.
    pub milestones: Vec<(String, i64)>,
    /// Per trait key, in key order, its latest value as a filter compares it
    /// ([`crate::analytics::trait_text`]); a value that does not parse is left out, as the
    /// report's pass leaves it out.
    pub traits: Vec<(String, String)>,
}

impl ReportColumns {
    pub(super) fn of(row: &UserRow) -> ReportColumns {
        let parsed = |json: &str| onramp::core::json::parse(json).ok();
        let signup = row
            .traits
            .get(onramp::core::vocab::prop::SIGNED_UP_AT)
            .and_then(|(_, json)| onramp::core::time::parse_time(&parsed(json)?))
            .filter(|ms| *ms >= onramp::core::time::EARLIEST_SIGNUP_MS);
        ReportColumns {
            signup,
            milestones: row.milestones.iter().map(|(name, ts)| (name.clone(), *ts)).collect(),
            traits: row.traits.iter().filter_map(|(key, (_, json))| Some((key.clone(), crate::analytics::trait_text(&parsed(json)?)))).collect(),
        }
    }

    /// In the migration's column order: `signup_known`, `signup`, `milestone_names`,
    /// `milestone_times`, `trait_keys`, `trait_texts`.
    pub(super) fn put(&self, out: &mut Vec<u8>) {
        out.push(u8::from(self.signup.is_some()));
        put_i64(out, self.signup.unwrap_or(0));
        put_strs(out, self.milestones.iter().map(|(name, _)| name.as_str()));
        put_len(out, self.milestones.len());
        for (_, ts) in &self.milestones {
            put_i64(out, *ts);
        }
        put_strs(out, self.traits.iter().map(|(key, _)| key.as_str()));
        put_strs(out, self.traits.iter().map(|(_, text)| text.as_str()));
    }

    /// What [`ReportColumns::put`] wrote, as ClickHouse gives it back.
    pub(super) fn read(r: &mut Reader<'_>) -> Result<ReportColumns, crate::store::StoreError> {
        let (known, signup) = (r.u8()? != 0, r.i64()?);
        let strs = |r: &mut Reader<'_>| (0..r.length()?).map(|_| r.str()).collect::<Result<Vec<String>, _>>();
        let names = strs(r)?;
        let times = (0..r.length()?).map(|_| r.i64()).collect::<Result<Vec<i64>, _>>()?;
        let (keys, texts) = (strs(r)?, strs(r)?);
        Ok(ReportColumns { signup: known.then_some(signup), milestones: names.into_iter().zip(times).collect(), traits: keys.into_iter().zip(texts).collect() })
    }
}

/// One packed trait, borrowed from the row (UTF-8 text, unchecked).
pub(super) struct PackedTrait<'a> {
    pub key: &'a [u8],
    pub ts: i64,
    pub event: &'a [u8],
    /// JSON.
    pub value: &'a [u8],
}

/// The traits of a packed `traits` BLOB, in key order; `None` from a damaged one. Strings are
/// checked as UTF-8 only where they are used (a report passes over the event ids and the
/// milestone names it does not ask for; checking them all was a tenth of its time).
pub(super) struct Traits<'a>(Reader<'a>);

impl<'a> Traits<'a> {
    pub fn of(bytes: &'a [u8]) -> Traits<'a> {
        Traits(Reader::new(bytes))
    }
}

impl<'a> Iterator for Traits<'a> {
    type Item = Option<PackedTrait<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let p = &mut self.0;
        let t = (|| Ok::<_, crate::store::StoreError>(PackedTrait { key: p.bytes()?, ts: p.i64()?, event: p.bytes()?, value: p.bytes()? }))().ok();
        if t.is_none() {
            *p = Reader::new(&[]);
        }
        Some(t)
    }
}

/// The (name, first time) pairs of a packed `milestones` BLOB, in name order (names as UTF-8
/// bytes, unchecked).
pub(super) struct Milestones<'a>(Reader<'a>);

impl<'a> Milestones<'a> {
    pub fn of(bytes: &'a [u8]) -> Milestones<'a> {
        Milestones(Reader::new(bytes))
    }
}

impl<'a> Iterator for Milestones<'a> {
    type Item = Option<(&'a [u8], i64)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let p = &mut self.0;
        let m = (|| Ok::<_, crate::store::StoreError>((p.bytes()?, p.i64()?)))().ok();
        if m.is_none() {
            *p = Reader::new(&[]);
        }
        Some(m)
    }
}

/// A user's traits from their packed row, in key order: those `wanted` names, parsed (ingest
/// stored each value from a parsed one, so only a damaged row fails to parse). Sized exactly:
/// collecting an unknown count rounds up, which for every user was tens of MB at scale.
pub(super) fn unpack_traits(packed: &[u8], wanted: impl Fn(&[u8]) -> bool) -> Vec<(String, Value)> {
    let traits = || Traits::of(packed).map_while(|t| t).filter(|t| wanted(t.key));
    let mut out = Vec::with_capacity(traits().count());
    out.extend(traits().filter_map(|t| {
        let value = onramp::core::json::parse(std::str::from_utf8(t.value).ok()?).ok()?;
        Some((std::str::from_utf8(t.key).ok()?.to_owned(), value))
    }));
    out
}

/// A user as [`crate::store::Store::users`] returns them, from their row (every trait parsed).
pub(super) fn unpack_user(user: String, identified: bool, first_seen: i64, last_seen: i64, traits: &[u8]) -> UserSeen {
    UserSeen { user, identified, first_seen, last_seen, traits: unpack_traits(traits, |_| true) }
}

/// [`crate::store::Store::report_tallies`] over per-user rows, one at a time in any order:
/// each row gives the user's sign-up, traits and first time of every milestone column. A
/// column that is an ad-hoc event (a `track` name) is not in the row: the store fills it in
/// between [`ReportRows::start`] and [`ReportRows::add`] (SQLite from its per-device event
/// rollup; ClickHouse reads such reports from its per-device rollups instead).
pub(super) struct ReportRows<'q> {
    tally: Tally<'q>,
    now: i64,
    /// The traits parsed: every key for the filter choices and the users of interest (a
    /// survey's split trait), else only those the sign-up time and the selection need.
    all_keys: bool,
    keys: Vec<String>,
    /// Milestone columns, in name order (as the columns and the packed milestones are sorted).
    milestones: Vec<(usize, String)>,
    firsts: Vec<Option<i64>>,
}

impl<'q> ReportRows<'q> {
    pub(super) fn new(query: &'q ReportQuery) -> ReportRows<'q> {
        let tally = Tally::new(query);
        let mut keys: Vec<String> = vec![onramp::core::vocab::prop::SIGNED_UP_AT.to_owned()];
        keys.extend(query.selection.traits.iter().map(|(k, _)| k.clone()));
        let milestones =
            tally.columns().iter().enumerate().filter(|(_, s)| s.kind == StepKind::Milestone).map(|(i, s)| (i, s.name.clone())).collect();
        let firsts = vec![None; tally.columns().len()];
        ReportRows { now: query.now, all_keys: query.trait_choices || !query.interest.is_empty(), keys, milestones, firsts, tally }
    }

    /// Whether every column is a milestone, so the rows alone answer the report.
    pub(super) fn rows_suffice(&self) -> bool {
        self.milestones.len() == self.firsts.len()
    }

    pub(super) fn columns(&self) -> &[crate::analytics::Step] {
        self.tally.columns()
    }

    /// Starts a user's row: their first time of each milestone column from the packed
    /// `milestones`, the other columns empty for the caller to fill.
    pub(super) fn start(&mut self, milestones: &[u8]) -> &mut [Option<i64>] {
        self.firsts.fill(None);
        let mut reached = Milestones::of(milestones).map_while(|m| m).peekable();
        for (column, name) in &self.milestones {
            while reached.next_if(|(n, _)| *n < name.as_bytes()).is_some() {}
            self.firsts[*column] = reached.next_if(|(n, _)| *n == name.as_bytes()).map(|(_, ts)| ts);
        }
        &mut self.firsts
    }

    /// Adds the user [`ReportRows::start`] started.
    pub(super) fn add(&mut self, user: String, identified: bool, first_seen: i64, last_seen: i64, traits: &[u8]) {
        let (all_keys, keys) = (self.all_keys, &self.keys);
        let traits = unpack_traits(traits, |key| all_keys || keys.iter().any(|k| k.as_bytes() == key));
        let seen = UserSeen { user, identified, first_seen, last_seen, traits };
        let (user, identified) = crate::analytics::resolve_user(seen, self.now);
        self.tally.add(&user, identified, &self.firsts);
    }

    pub(super) fn finish(self) -> Tallies {
        self.tally.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_pack_and_unpack_to_themselves() {
        let mut row = UserRow::seen(true, 5, 9);
        row.add_trait("plan".into(), (7, "e1".into()), "\"pro\"".into());
        row.add_trait("k".repeat(200), (8, "e2".into()), "1".into());
        row.add_milestone("signed_up".into(), 6);
        row.add_milestone("é".into(), -3);
        let back = UserRow::unpack(true, 5, 9, &row.pack_traits(), &row.pack_milestones());
        assert_eq!(back, Some(row.clone()));
        // Cut short: damaged, never a wrong value.
        let packed = row.pack_traits();
        assert_eq!(UserRow::unpack(true, 5, 9, &packed[..packed.len() - 1], &[]), None);
    }

    #[test]
    fn merging_is_order_independent() {
        let mut a = UserRow::seen(false, 10, 20);
        a.add_trait("plan".into(), (15, "b".into()), "\"free\"".into());
        a.add_milestone("m".into(), 12);
        let mut b = UserRow::seen(true, 5, 18);
        b.add_trait("plan".into(), (15, "c".into()), "\"pro\"".into());
        b.add_milestone("m".into(), 14);
        b.add_milestone("n".into(), 7);
        let (mut ab, mut ba) = (a.clone(), b.clone());
        ab.merge(b);
        ba.merge(a);
        assert_eq!(ab, ba);
        assert_eq!((ab.identified, ab.first_seen, ab.last_seen), (true, 5, 20));
        assert_eq!(ab.traits["plan"].1, "\"pro\"", "the later (ts, event) wins");
        assert_eq!(ab.milestones, BTreeMap::from([("m".into(), 12), ("n".into(), 7)]));
    }
}
