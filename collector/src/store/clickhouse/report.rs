//! A report's sections counted inside ClickHouse (issue 11: aggregation inside the engine), on
//! a single server whose report asks only milestones: the per-user rollup's report columns
//! (migration 11: sign-up, milestone first times and trait texts as columns) give each user's
//! sign-up, selection and first times in SQL, and GROUP BY cohort and the value's histogram
//! bucket (beside a group of every selected user) counts users, first-day activation, stalls,
//! the histogram and the funnel, and picks each step's nearest-rank percentiles with
//! `quantilesExact` ([`Summary`], [`ReportSql::summary`]). The collector receives a row per
//! cohort, the first stalls (ORDER BY … LIMIT), the filter choices per trait value, and only the
//! users the answer lists one by one (the users of interest, the funnel's users when asked):
//! never a row per user.
//!
//! While `rollup_users` is one merged part (as `rollup rebuild` leaves it, and background merges
//! in a quiet spell), no key has two rows, and the queries read it without FINAL: every thread
//! of the server reads, and nothing is copied through FINAL's merge. The parts are looked at
//! before and after, and a change in between makes the report read again with FINAL
//! ([`ClickHouseStore::read_users`]). With FINAL, 18.16 reads each table reference as one
//! stream, so the sections query then reads the users in two ranges of user keys side by side
//! ([`ReportSql::users_in`]).
//!
//! The definitions are [`crate::analytics::report::Tally`]'s, restated in SQL: the differential
//! tests (tests/clickhouse.rs) hold both to the SQLite store and the oracle. Only what SQL cannot
//! answer goes the per-user way ([`ClickHouseStore::tallies_from_rows`]): ad-hoc event steps (on
//! the per-device rollups) and the stalled export, which lists every stall.

use onramp::core::time::{DAY, WEEK};

use super::rowbinary::Reader;
use super::{quote, quote_list, ClickHouseStore};
use crate::analytics::report::{Buckets, Durations, FunnelTally, ReportQuery, StepTimes, Summary, Tallies, TraitChoices, HIDDEN_TRAITS, MAX_TRAIT_CHOICES, PERCENTILES};
use crate::analytics::stalled::{Due, Stall};
use crate::analytics::ttv::{Period, ACTIVATION_WINDOW, HISTOGRAM_EDGES};
use crate::analytics::{Step, StepKind};
use crate::store::StoreError;

/// The migration (1-based) that adds the report columns: applying it rewrites every row.
pub(super) const COLUMNS_MIGRATION: usize = 11;

/// The report columns of `rollup_users`, in [`crate::store::user_rows::ReportColumns::put`]'s order.
pub(super) const REPORT_COLUMNS: &str = "signup_known, signup, milestone_names, milestone_times, trait_keys, trait_texts";

/// The group of every selected user, beside each one's cohort: no cohort starts there (cohorts
/// start at whole days).
const EVERYONE: i64 = i64::MIN;

/// The value's histogram bucket ([`ReportSql::sections`]) of a user not in the histogram.
const NO_BUCKET: u8 = 255;

/// Ranges of user keys the sections query reads side by side ([`ReportSql::users_in`]): as
/// many as this machine's cores (ClickHouse's default `max_threads`). More ranges than cores
/// cost a FINAL merge each for nothing, and the stalls and filter choices run beside them.
const SECTIONS_RANGES: usize = 2;

/// Users of interest per statement: each is a quoted literal in the SQL.
const INTEREST_CHUNK: usize = 2000;

/// Whether the engine can answer `query`: every column a milestone (the rows hold their first
/// times), and the stalls listed up to a limit (an export lists every one: the per-user pass
/// streams them to its sorter).
pub(super) fn answers(query: &ReportQuery) -> bool {
    query.stall_limit.is_some() && query.columns().iter().all(|c| c.kind == StepKind::Milestone)
}

/// How a report reads `rollup_users` ([`ClickHouseStore::tallies_in_engine`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Read {
    /// `FINAL`: the newest version of each key, whatever the parts hold. 18.16 reads it as one
    /// stream per table reference and copies every row through its merge.
    Final,
    /// The rows as stored, where no key has two rows ([`keys_unique`]): the same rows as
    /// `FINAL`, read by as many threads as the server gives a query and not copied.
    Plain,
}

impl Read {
    /// `rollup_users` as this read names it in a query's FROM: with ` FINAL` after it, or not.
    pub(super) fn table(self) -> &'static str {
        match self {
            Read::Final => "rollup_users FINAL",
            Read::Plain => "rollup_users",
        }
    }
}

/// An active part of `rollup_users`: its name and merge level (`system.parts`).
pub(super) type Part = (String, u64);

/// Whether no key has two rows in `parts` (the table's active parts): a single part that
/// came out of a merge, which for a ReplacingMergeTree keeps one row per sorting key (a part
/// an INSERT wrote, level 0, may hold several). Newer ClickHouse releases skip FINAL's merge
/// on the same grounds (`do_not_merge_across_partitions_select_final`).
fn keys_unique(parts: &[Part]) -> bool {
    matches!(parts, [(_, level)] if *level > 0)
}

/// The SQL of one report: names its per-user expressions after the query's columns.
struct ReportSql<'q> {
    query: &'q ReportQuery,
    project: String,
    columns: Vec<Step>,
    read: Read,
}

impl<'q> ReportSql<'q> {
    fn new(project: &str, query: &'q ReportQuery, read: Read) -> ReportSql<'q> {
        ReportSql { query, project: quote(project), columns: query.columns(), read }
    }

    fn column(&self, step: &Step) -> usize {
        self.columns.binary_search(step).unwrap_or_default()
    }

    /// Every stored user key of the project with the columns the report reads: `id`, `ident`,
    /// `ls` (last seen), `s` (sign-up: the `signedUpAt` trait up to `now` + 1 day, else first
    /// seen, as `resolve_user`), and per column `c`: `rc` whether reached, `tc` when,
    /// `dc` how long after sign-up (never negative). Only the selected users (`Selection`).
    /// FINAL before any other condition: a filter on a column may not drop an old version of a
    /// row whose newest version it keeps out.
    fn users(&self) -> String {
        self.users_in(&[])
    }

    /// [`ReportSql::users`] read as one `UNION ALL` branch per range of user keys cut at
    /// `splits` (sorted): 18.16 reads `FINAL` as one stream, so one read of the table keeps one
    /// core busy, and the branches run side by side. Each branch's FINAL is exact: a condition on
    /// the sorting key holds for every version of a key or for none, so it drops no version
    /// FINAL would weigh against a kept one, and each key is in exactly one range.
    fn users_in(&self, splits: &[String]) -> String {
        let q = self.query;
        let bound = q.now.saturating_add(DAY);
        let mut select = vec![
            "user_key AS id".to_owned(),
            "identified AS ident".to_owned(),
            "last_seen AS ls".to_owned(),
            format!("if(signup_known AND signup <= {bound}, signup, first_seen) AS s"),
        ];
        for (c, step) in self.columns.iter().enumerate() {
            select.push(format!("indexOf(milestone_names, {}) AS i{c}", quote(&step.name)));
            select.push(format!("i{c} > 0 AS r{c}"));
            // Index 0 (not reached) reads 0 in ClickHouse.
            select.push(format!("milestone_times[i{c}] AS t{c}"));
            select.push(format!("greatest(t{c} - s, toInt64(0)) AS d{c}"));
        }
        let mut admits = vec!["deleted = 0".to_owned()];
        admits.extend(q.selection.signup_from.map(|from| format!("s >= {from}")));
        admits.extend(q.selection.signup_until.map(|until| format!("s < {until}")));
        for (key, allowed) in &q.selection.traits {
            admits.push(format!("indexOf(trait_keys, {key}) > 0 AND has([{allowed}], trait_texts[indexOf(trait_keys, {key})])", key = quote(key), allowed = quote_list(allowed)));
        }
        // Only the columns asked for: the packed ones are most of the table's bytes.
        let traits = if q.selection.traits.is_empty() { "" } else { ", trait_keys, trait_texts" };
        let lows = [None].into_iter().chain(splits.iter().map(Some));
        let highs = splits.iter().map(Some).chain([None]);
        let branches: Vec<String> = lows
            .zip(highs)
            .map(|(low, high)| {
                let low = low.map_or(String::new(), |k| format!(" AND user_key >= {}", quote(k)));
                let high = high.map_or(String::new(), |k| format!(" AND user_key < {}", quote(k)));
                format!(
                    "SELECT user_key, deleted, identified, first_seen, last_seen, signup_known, signup, milestone_names, milestone_times{traits}
                     FROM {} WHERE project = {}{low}{high}",
                    self.read.table(),
                    self.project
                )
            })
            .collect();
        format!("SELECT {} FROM ({}) WHERE {}", select.join(", "), branches.join(" UNION ALL "), admits.join(" AND "))
    }

    /// The count and percentiles of durations `values` of the users where `condition` holds,
    /// as an inner (per cohort) and an outer (merged) aggregate: [`read_summary`] reads the
    /// outer's count and `Array(Int64)`. The percentiles are merged only in the outer groups
    /// where `merged_where` holds (the others answer `[0, 0, 0]`: an empty state).
    fn summary(name: &str, values: &str, condition: &str, merged_where: &str) -> (String, String) {
        let (state, merged) = Self::percentiles(name, values, condition, merged_where);
        (format!("countIf({condition}) AS {name}_n, {state}"), format!("sum({name}_n), {merged}"))
    }

    /// The percentiles alone of [`ReportSql::summary`], for durations whose count is counted
    /// already ([`read_percentiles`] reads them).
    ///
    /// `quantilesExact(level)` is the sorted values' element at 0-based index ⌊level·n⌋; over
    /// the values negated, that is the element at n − 1 − ⌊(1 − p/100)·n⌋ = ⌈p·n/100⌉ − 1 of
    /// the values sorted: the nearest rank ([`crate::analytics::nearest_rank`]). (1 − p/100)
    /// is 0.5, 0.25 and 0.1, and a product by 0.1 never rounds below a whole number it reaches,
    /// so the floor is exact; checked on 18.16 for every n up to 3000.)
    fn percentiles(name: &str, values: &str, condition: &str, merged_where: &str) -> (String, String) {
        let levels: Vec<String> = PERCENTILES.iter().map(|p| format!("{}", f64::from(100 - p) / 100.0)).collect();
        let levels = levels.join(", ");
        (
            format!("quantilesExactStateIf({levels})(-({values}), {condition}) AS {name}_q"),
            format!("quantilesExactMergeIf({levels})({name}_q, {merged_where})"),
        )
    }

    /// Whether the user got through funnel step `k` (`onramp::core::funnel::reach` over first
    /// times: a milestone is reached once, so step `k` is its one time, at or after step
    /// `k - 1`'s, another milestone than it, and within the window of step 0), and the gap.
    fn funnel_step(&self, k: usize) -> String {
        let c = self.column(&self.query.steps[k]);
        if k == 0 {
            return format!("r{c}");
        }
        let (before, first) = (self.column(&self.query.steps[k - 1]), self.column(&self.query.steps[0]));
        if c == before {
            // One event counts for one step only.
            return "0".to_owned();
        }
        let window = self.query.window.map_or(String::new(), |w| format!(" AND t{c} - t{first} <= {w}"));
        // Step k - 1's flag by name: its conditions are not evaluated again.
        format!("f{} AND r{c} AND t{c} >= t{before}{window}", k - 1)
    }

    /// The cohort (`Period::start`) of sign-up `s`.
    fn cohort(&self) -> String {
        let floor = |x: &str, span: i64| format!("({x}) - ((({x}) % {span}) + {span}) % {span}");
        match self.query.period {
            Period::Day => floor("s", DAY),
            Period::Week => format!("{} + {}", floor(&format!("s - {}", 4 * DAY), WEEK), 4 * DAY),
        }
    }

    /// One row per cohort and one for [`EVERYONE`]: (group, users, visitors, eligible,
    /// activated, a summary per step, the value's and its histogram, the stalled count, then per
    /// funnel step its users, gaps' percentiles (none for step 0) and (when asked) user ids;
    /// only everyone's stalls and funnel are read, and only everyone's steps' times other than
    /// the value's are merged: a cohort's row shows the value's times alone). Counted per cohort and grouping key first,
    /// then merged per cohort and for everyone (those rows each go to two groups): each user
    /// is aggregated once. The users are read in ranges cut at `splits` ([`ReportSql::users_in`]).
    ///
    /// Each aggregate is a call per user, so none is counted twice: a funnel step's users are
    /// also its gaps' count, and step 0's are the first step's.
    fn sections(&self, splits: &[String]) -> String {
        let q = self.query;
        let v = self.column(&q.value);
        // Whether identified, eligible for first-day activation (`e`) and activated (`a`) are
        // grouping keys too, as is the value's histogram bucket (`b`: none for users who did
        // not reach it, or visitors): each a hash key a user rather than a count the user's row
        // goes through, and the groups stay few (`a` and `b` follow from the others).
        let mut inner = vec![
            format!("{} AS g", self.cohort()),
            "ident".to_owned(),
            format!("s <= {} AS e", q.now - ACTIVATION_WINDOW),
            format!("ident AND e AND r{v} AND d{v} < {ACTIVATION_WINDOW} AS a"),
        ];
        let bucket: Vec<String> = HISTOGRAM_EDGES.iter().map(|edge| format!("(d{v} >= {edge})")).collect();
        inner.push(format!("if(ident AND r{v}, {}, {NO_BUCKET}) AS b", bucket.join(" + ")));
        inner.push("count() AS n".to_owned());
        let mut outer: Vec<String> = ["g2", "sumIf(n, ident)", "sumIf(n, NOT ident)", "sumIf(n, ident AND e)", "sumIf(n, a)"].map(String::from).to_vec();
        let steps: Vec<&Step> = q.steps.iter().chain([&q.value]).collect();
        for (i, step) in steps.iter().enumerate() {
            // The value is most often a step: its summary, named again, is counted once.
            let first = steps.iter().position(|s| s == step).unwrap_or(i);
            let c = self.column(step);
            // A cohort's row shows its steps' counts and its value's times alone
            // (`ttv::cohorts_of`): the other steps' times are merged for everyone only.
            let merged_where = if *step == &q.value { "1".to_owned() } else { format!("g2 = {EVERYONE}") };
            let (counted, merged) = Self::summary(&format!("step{first}"), &format!("d{c}"), &format!("ident AND r{c}"), &merged_where);
            if first == i {
                inner.push(counted);
            }
            outer.push(merged);
        }
        let histogram: Vec<String> = (0..=HISTOGRAM_EDGES.len()).map(|i| format!("sumIf(n, b = {i})")).collect();
        outer.push(format!("[{}]", histogram.join(", ")));
        let stalled: Vec<String> = q
            .due
            .iter()
            .map(|d| format!("toUInt64(s <= {} AND NOT r{})", q.now.saturating_sub(d.within_ms), self.column(&Step::milestone(&d.milestone))))
            .collect();
        inner.push(if stalled.is_empty() { "toUInt64(0) AS stalled".to_owned() } else { format!("sumIf({}, ident) AS stalled", stalled.join(" + ")) });
        outer.push("sum(stalled)".to_owned());
        let mut funnel = Vec::new();
        if q.funnel {
            for k in 0..q.steps.len() {
                funnel.push(format!("{} AS f{k}", self.funnel_step(k)));
                if k == 0 {
                    // Step 0's users are the first step's (`f0` is its `r`), and it has no gap.
                    outer.push("sum(step0_n)".to_owned());
                } else {
                    let at = |k: usize| format!("t{}", self.column(&q.steps[k]));
                    let (state, merged) = Self::percentiles(&format!("funnel{k}"), &format!("{} - {}", at(k), at(k - 1)), &format!("ident AND f{k}"), &format!("g2 = {EVERYONE}"));
                    inner.push(format!("countIf(ident AND f{k}) AS reached{k}"));
                    inner.push(state);
                    outer.push(format!("sum(reached{k}), {merged}"));
                }
                if q.funnel_users {
                    inner.push(format!("groupArrayIf(id, ident AND f{k}) AS ids{k}"));
                    outer.push(format!("groupArrayArrayIf(ids{k}, g2 = {EVERYONE})"));
                }
            }
        }
        let users = match funnel.is_empty() {
            true => self.users_in(splits),
            false => format!("SELECT *, {} FROM ({})", funnel.join(", "), self.users_in(splits)),
        };
        format!(
            "SELECT {} FROM (SELECT {} FROM ({users}) GROUP BY g, ident, e, a, b) GROUP BY arrayJoin([g, {EVERYONE}]) AS g2",
            outer.join(", "),
            inner.join(", ")
        )
    }

    /// The first `limit` stalls (due time, user, milestone, sign-up, last seen) in list order
    /// (`stalled::sort_stalls`: due time, then user, then milestone; strings compare as bytes
    /// in both). Each user's row goes once to each due milestone it is stalled on (`k`, 1-based
    /// in `due`), by index: a tuple per due milestone and user cost a third more.
    fn stalls(&self, limit: usize) -> String {
        let q = self.query;
        let list = |item: &dyn Fn(&Due) -> String| q.due.iter().map(item).collect::<Vec<_>>().join(", ");
        let stalled = list(&|d| format!("s <= {} AND NOT r{}", q.now.saturating_sub(d.within_ms), self.column(&Step::milestone(&d.milestone))));
        format!(
            "SELECT s + [{within}][k] AS due_at, id, [{milestones}][k] AS milestone, s, ls
             FROM ({users}) ARRAY JOIN arrayFilter((k, stalled) -> stalled, range({n} + 1), [0, {stalled}]) AS k
             WHERE ident ORDER BY due_at, id, milestone LIMIT {limit}",
            within = list(&|d| format!("toInt64({})", d.within_ms)),
            milestones = list(&|d| quote(&d.milestone)),
            users = self.users(),
            n = q.due.len(),
        )
    }

    /// Per population step (by index) each duration with its number of users: the exact
    /// histogram the tips' effect takes values out of ([`Durations::without`]).
    fn population(&self) -> String {
        let reached: Vec<String> = self
            .query
            .population
            .iter()
            .enumerate()
            .map(|(i, step)| {
                let c = self.column(step);
                format!("(toUInt64({i}), d{c}, r{c})")
            })
            .collect();
        format!(
            "SELECT tupleElement(x, 1) AS p, tupleElement(x, 2) AS d, count()
             FROM ({}) ARRAY JOIN arrayFilter(x -> tupleElement(x, 3), [{}]) AS x
             WHERE ident GROUP BY p, d ORDER BY p, d",
            self.users(),
            reached.join(", ")
        )
    }

    /// Per trait key with at most [`MAX_TRAIT_CHOICES`] values, each value with its users,
    /// over every identified user whatever the selection ([`TraitChoices`]).
    fn trait_choices(&self) -> String {
        format!(
            "SELECT key, groupArray((text, n)) FROM (
               SELECT key, text, count() AS n
               FROM (SELECT trait_keys, trait_texts
                     FROM (SELECT deleted, identified, trait_keys, trait_texts FROM {} WHERE project = {})
                     WHERE deleted = 0 AND identified)
               ARRAY JOIN trait_keys AS key, trait_texts AS text
               WHERE key NOT IN ({})
               GROUP BY key, text)
             GROUP BY key HAVING count() <= {MAX_TRAIT_CHOICES}",
            self.read.table(),
            self.project,
            quote_list(HIDDEN_TRAITS)
        )
    }
}

/// A [`ReportSql::summary`] as ClickHouse answers it.
fn read_summary(r: &mut Reader<'_>) -> Result<Summary, StoreError> {
    let count = r.u64()?;
    read_percentiles(r, count)
}

/// [`ReportSql::percentiles`] of `count` durations as ClickHouse answers them.
fn read_percentiles(r: &mut Reader<'_>, count: u64) -> Result<Summary, StoreError> {
    let negated = (0..r.length()?).map(|_| r.i64()).collect::<Result<Vec<i64>, _>>()?;
    let mut summary = Summary { count, ..Summary::default() };
    if negated.len() != PERCENTILES.len() {
        return Err(StoreError::Unavailable(format!("ClickHouse's report gave {} percentiles", negated.len())));
    }
    if count > 0 {
        for (p, v) in summary.percentiles.iter_mut().zip(negated) {
            *p = Some(-v);
        }
    }
    Ok(summary)
}

fn read_histogram(r: &mut Reader<'_>) -> Result<Buckets, StoreError> {
    let mut buckets = Buckets::default();
    if r.length()? != buckets.len() {
        return Err(StoreError::Unavailable("ClickHouse's report histogram has other buckets".into()));
    }
    for b in &mut buckets {
        *b = r.u64()?;
    }
    Ok(buckets)
}

impl ClickHouseStore {
    /// [`crate::store::Store::report_tallies`] counted inside ClickHouse (see the module
    /// docs); the caller checked [`answers`]. Without FINAL when no key has two rows, else with it
    /// ([`ClickHouseStore::read_users`]).
    pub(super) async fn tallies_in_engine(&self, project: &str, query: &ReportQuery) -> Result<Tallies, StoreError> {
        Ok(self.read_users(|read| self.tallies_read(project, query, read)).await?.0)
    }

    /// `read` of `rollup_users` without FINAL where no key has two rows, else with FINAL
    /// ([`ClickHouseStore::read_users_given`]); says which read answered.
    pub(super) async fn read_users<T, F: std::future::Future<Output = Result<T, StoreError>>>(&self, read: impl Fn(Read) -> F) -> Result<(T, Read), StoreError> {
        let parts = self.user_parts().await?;
        self.read_users_given(&parts, read).await
    }

    /// `read` without FINAL if `parts`, the active parts of `rollup_users` seen before the
    /// read, hold no key twice ([`keys_unique`]), and those were still the active parts after
    /// it; else read again with FINAL. Each table reference of a read takes its own snapshot of
    /// the parts, so a part an INSERT added meanwhile would count its keys' older versions too,
    /// and a merge that replaced the part before a reference took its snapshot would make that
    /// reference read nothing. Parts are never active again once replaced, and a new part has a
    /// new name (its block numbers), so the same active set after the read as before means
    /// every snapshot in between was that set.
    async fn read_users_given<T, F: std::future::Future<Output = Result<T, StoreError>>>(&self, parts: &[Part], read: impl Fn(Read) -> F) -> Result<(T, Read), StoreError> {
        if keys_unique(parts) {
            let answer = read(Read::Plain).await?;
            if self.user_parts().await? == parts {
                return Ok((answer, Read::Plain));
            }
        }
        Ok((read(Read::Final).await?, Read::Final))
    }

    /// The active parts of `rollup_users`, by name.
    async fn user_parts(&self) -> Result<Vec<Part>, StoreError> {
        let answer = self
            .select("SELECT name, toUInt64(level) FROM system.parts WHERE database = currentDatabase() AND table = 'rollup_users' AND active ORDER BY name")
            .await?;
        let mut r = Reader::new(&answer);
        let mut parts = Vec::new();
        while !r.is_empty() {
            parts.push((r.str()?, r.u64()?));
        }
        Ok(parts)
    }

    /// The report's queries, all reading `rollup_users` as `read` says.
    async fn tallies_read(&self, project: &str, query: &ReportQuery, read: Read) -> Result<Tallies, StoreError> {
        let sql = ReportSql::new(project, query, read);
        let limit = query.stall_limit.unwrap_or(0);
        let (sections, stalls, population, choices, interest) = tokio::try_join!(
            async {
                // Read plainly, the server splits the read between its threads itself.
                let splits = match read {
                    Read::Final => self.user_key_splits(project).await?,
                    Read::Plain => Vec::new(),
                };
                self.select(&sql.sections(&splits)).await
            },
            async {
                match limit > 0 && !query.due.is_empty() {
                    true => self.select(&sql.stalls(limit)).await,
                    false => Ok(Vec::new()),
                }
            },
            async {
                match query.population.is_empty() {
                    true => Ok(Vec::new()),
                    false => self.select(&sql.population()).await,
                }
            },
            async {
                match query.trait_choices {
                    true => self.select(&sql.trait_choices()).await,
                    false => Ok(Vec::new()),
                }
            },
            self.interest(project, query),
        )?;
        let steps = query.steps.len();
        let mut tallies = Tallies {
            ttv: StepTimes { steps: vec![Summary::default(); steps], ..StepTimes::default() },
            funnel: if query.funnel { vec![FunnelTally::default(); steps] } else { Vec::new() },
            population: vec![Durations::default(); query.population.len()],
            ..Tallies::default()
        };
        let mut r = Reader::new(&sections);
        while !r.is_empty() {
            let group = r.i64()?;
            let (users, visitors, eligible, activated) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
            let summaries = (0..steps).map(|_| read_summary(&mut r)).collect::<Result<Vec<_>, _>>()?;
            let (value, histogram) = (read_summary(&mut r)?, read_histogram(&mut r)?);
            let times = StepTimes { users, steps: summaries, value, histogram, eligible, activated };
            let stalled = r.u64()?;
            let mut funnel = Vec::new();
            if query.funnel {
                for k in 0..steps {
                    let users = r.u64()?;
                    let gaps = if k == 0 { Summary::default() } else { read_percentiles(&mut r, users)? };
                    let mut user_ids = match query.funnel_users {
                        true => (0..r.length()?).map(|_| r.str()).collect::<Result<Vec<String>, _>>()?,
                        false => Vec::new(),
                    };
                    user_ids.sort();
                    funnel.push(FunnelTally { users, gaps, user_ids });
                }
            }
            if group == EVERYONE {
                (tallies.users, tallies.visitors, tallies.stalled) = (times.users, visitors, stalled);
                tallies.ttv = times;
                if query.funnel {
                    tallies.funnel = funnel;
                }
            } else if times.users > 0 {
                // A cohort of visitors only has no users to show. Its steps' times other than
                // the value's were not merged ([`ReportSql::sections`]): counts only.
                let mut times = times;
                for (step, summary) in query.steps.iter().zip(&mut times.steps) {
                    if *step != query.value {
                        summary.percentiles = Summary::default().percentiles;
                    }
                }
                tallies.cohorts.push((group, times));
            }
        }
        tallies.cohorts.sort_by_key(|(start, _)| *start);
        let mut r = Reader::new(&stalls);
        while !r.is_empty() {
            let (due_at, user, milestone, signed_up_at, last_seen) = (r.i64()?, r.str()?, r.str()?, r.i64()?, r.i64()?);
            tallies.stalls.push(Stall { user, milestone, signed_up_at, due_at, last_seen });
        }
        let mut r = Reader::new(&population);
        while !r.is_empty() {
            let (p, d, n) = (r.u64()?, r.i64()?, r.u64()?);
            if let Some(durations) = tallies.population.get_mut(p as usize) {
                durations.0.push((d, n));
            }
        }
        let mut r = Reader::new(&choices);
        tallies.traits = TraitChoices::default();
        while !r.is_empty() {
            let key = r.str()?;
            for _ in 0..r.length()? {
                let (text, n) = (r.str()?, r.u64()?);
                tallies.traits.add_users(&key, text, n as usize);
            }
        }
        (tallies.interest, tallies.interest_firsts) = interest;
        Ok(tallies)
    }

    /// Keys that cut `project`'s `rollup_users` rows into [`SECTIONS_RANGES`] ranges of about
    /// as many rows each, sorted: the key at each cut's offset, the table read in one stream
    /// (rows in key order within each part, so with one large part, as `rollup rebuild`
    /// leaves it, the offsets are the key order's). Any cut gives the same answer
    /// ([`ReportSql::users_in`]); an even one shares the work evenly.
    async fn user_key_splits(&self, project: &str) -> Result<Vec<String>, StoreError> {
        let project = quote(project);
        let rows = Reader::new(&self.select(&format!("SELECT count() FROM rollup_users WHERE project = {project}")).await?).u64()?;
        let mut splits = Vec::new();
        for k in 1..SECTIONS_RANGES as u64 {
            let offset = rows * k / SECTIONS_RANGES as u64;
            let answer = self.select(&format!("SELECT user_key FROM rollup_users WHERE project = {project} LIMIT 1 OFFSET {offset} SETTINGS max_threads = 1")).await?;
            let mut r = Reader::new(&answer);
            if !r.is_empty() {
                splits.push(r.str()?);
            }
        }
        splits.sort();
        splits.dedup();
        Ok(splits)
    }

    /// The selected users among [`ReportQuery::interest`] and their first times, by key: the
    /// per-user pass over only their rows.
    async fn interest(&self, project: &str, query: &ReportQuery) -> Result<(Vec<crate::analytics::User>, Vec<crate::store::UserEvents>), StoreError> {
        let (mut users, mut firsts) = (Vec::new(), Vec::new());
        for chunk in query.interest.chunks(INTEREST_CHUNK) {
            let tallies = self.tallies_from_rows(project, query, &format!("user_key IN ({})", quote_list(chunk))).await?.unwrap_or_default();
            users.extend(tallies.interest);
            firsts.extend(tallies.interest_firsts);
        }
        Ok((users, firsts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::clickhouse::server::LocalServer;

    /// The report's users read in ranges of user keys are the users read at once, wherever the
    /// cuts fall: on a key with versions in several parts, on a key whose newest version is a
    /// deletion, between keys, before every key and after every key (a real clickhouse-server).
    #[tokio::test]
    async fn users_read_in_key_ranges_are_the_users_read_at_once() {
        let server = tokio::task::spawn_blocking(LocalServer::start).await.expect("join").expect("start clickhouse-server");
        let store = ClickHouseStore::open(&server.store_url("onramp")).await.expect("open the store");
        let row = |key: &str, version: u64, deleted: u8, seen: i64, milestones: &str| {
            format!("('demo', '{key}', {version}, {deleted}, 1, {seen}, {seen}, 0, 0, [{milestones}], [{seen}])")
        };
        // Three inserts, three parts: `b`'s newest version is a deletion and an older one
        // arrives after it; `c` and `d` change their milestones; another project has a `b`.
        let inserts = [
            vec![row("a", 1, 0, 10, "'m'"), row("b", 1, 0, 20, "'m'"), row("c", 1, 0, 30, "'n'"), row("d", 1, 0, 40, "'n'")],
            vec![row("b", 3, 1, 21, "'m'"), row("c", 2, 0, 31, "'m'"), row("e", 2, 0, 50, "'m'"), "('other', 'b', 9, 0, 1, 1, 1, 0, 0, ['m'], [1])".to_owned()],
            vec![row("b", 2, 0, 22, "'m'"), row("d", 5, 0, 41, "'m'")],
        ];
        for rows in inserts {
            let sql = format!(
                "INSERT INTO rollup_users (project, user_key, version, deleted, identified, first_seen, last_seen, signup_known, signup, milestone_names, milestone_times) VALUES {}",
                rows.join(", ")
            );
            store.http.execute(&sql).await.expect("insert");
        }
        let query = ReportQuery {
            selection: crate::analytics::Selection::default(),
            steps: vec![Step::milestone("m")],
            value: Step::milestone("m"),
            funnel: true,
            window: None,
            funnel_users: false,
            period: Period::Day,
            due: Vec::new(),
            stall_limit: Some(10),
            population: Vec::new(),
            reach: Vec::new(),
            interest: Vec::new(),
            trait_choices: false,
            now: 1_000,
        };
        let sql = ReportSql::new("demo", &query, Read::Final);
        let users = |splits: &[&str]| {
            let splits: Vec<String> = splits.iter().map(|s| (*s).to_owned()).collect();
            let sql = format!("SELECT id, ls, r0, t0 FROM ({}) ORDER BY id FORMAT TSV", sql.users_in(&splits));
            let store = &store;
            async move { String::from_utf8(store.http.run(&sql, Vec::new(), std::time::Duration::from_secs(30)).await.expect("select")).expect("UTF-8") }
        };
        let whole = users(&[]).await;
        assert_eq!(whole, "a\t10\t1\t10\nc\t31\t1\t31\nd\t41\t1\t41\ne\t50\t1\t50\n", "the newest version of each key, and no deleted one");
        for splits in [&["a"][..], &["b"], &["c"], &["d"], &["e"], &["0"], &["z"], &["bb"], &["b", "d"], &["a", "b", "c", "d", "e"]] {
            assert_eq!(users(splits).await, whole, "cut at {splits:?}");
        }
        let splits = store.user_key_splits("demo").await.expect("splits");
        assert_eq!(splits.len(), SECTIONS_RANGES - 1, "{splits:?}");
        assert!(["a", "b", "c", "d", "e"].contains(&splits[0].as_str()), "a key of the project: {splits:?}");
        assert_eq!(store.user_key_splits("none").await.expect("no rows"), Vec::<String>::new());
    }

    /// The report reads `rollup_users` without FINAL only while no key has two rows, and only
    /// keeps that answer if the parts it looked at were still the active ones after the read:
    /// an INSERT or a merge between the look and the read makes it read again with FINAL (a real
    /// clickhouse-server; the plain read over the new parts is shown to be wrong).
    #[tokio::test]
    async fn the_report_reads_without_final_only_while_no_key_has_two_rows() {
        let server = tokio::task::spawn_blocking(LocalServer::start).await.expect("join").expect("start clickhouse-server");
        let store = ClickHouseStore::open(&server.store_url("onramp")).await.expect("open the store");
        let insert = |rows: Vec<String>| {
            let sql = format!(
                "INSERT INTO rollup_users (project, user_key, version, deleted, identified, first_seen, last_seen, signup_known, signup, milestone_names, milestone_times, trait_keys, trait_texts) VALUES {}",
                rows.join(", ")
            );
            let store = &store;
            async move { store.http.execute(&sql).await.expect("insert") }
        };
        // Signed up at 0; `m` then `n` reached at the times given (0: not reached).
        let row = |key: &str, version: u64, deleted: u8, m: i64, n: i64, plan: &str| {
            let (names, times) = match (m, n) {
                (0, 0) => (String::new(), String::new()),
                (m, 0) => ("'m'".to_owned(), m.to_string()),
                (m, n) => ("'m', 'n'".to_owned(), format!("{m}, {n}")),
            };
            format!("('demo', '{key}', {version}, {deleted}, 1, 0, {}, 1, 0, [{names}], [{times}], ['plan'], ['{plan}'])", m.max(n))
        };
        let optimize = || async { store.http.execute("OPTIMIZE TABLE rollup_users FINAL").await.expect("optimize") };
        insert(vec![row("a", 1, 0, 10, 0, "free"), row("b", 1, 0, 20, 0, "free"), row("c", 1, 0, 0, 0, "free"), row("d", 1, 0, 40, 50, "trial")]).await;
        insert(vec![row("a", 2, 0, 10, 30, "paid"), row("b", 2, 1, 20, 0, "free"), row("e", 2, 0, 60, 0, "trial")]).await;
        let query = ReportQuery {
            selection: crate::analytics::Selection::default(),
            steps: vec![Step::milestone("m"), Step::milestone("n")],
            value: Step::milestone("n"),
            funnel: true,
            window: None,
            funnel_users: true,
            period: Period::Day,
            due: vec![Due { milestone: "n".into(), within_ms: 100 }],
            stall_limit: Some(10),
            population: Vec::new(),
            reach: Vec::new(),
            interest: Vec::new(),
            trait_choices: true,
            now: 1_000,
        };
        let read = |read: Read| {
            let (store, query) = (&store, &query);
            async move { format!("{:?}", store.tallies_read("demo", query, read).await.expect("report")) }
        };
        let given = |parts: Vec<Part>| {
            let (store, query) = (&store, &query);
            async move {
                let (tallies, read) = store.read_users_given(&parts, |read| store.tallies_read("demo", query, read)).await.expect("report");
                (format!("{tallies:?}"), read)
            }
        };
        // Two parts a key is in twice: FINAL, and the plain read would count `a` and `b` twice.
        let parts = store.user_parts().await.expect("parts");
        assert_eq!(parts.len(), 2, "{parts:?}");
        assert!(!keys_unique(&parts));
        let newest = read(Read::Final).await;
        assert_ne!(read(Read::Plain).await, newest, "the old versions would count");
        assert_eq!(given(parts).await, (newest.clone(), Read::Final));

        // Merged into one part: each key once, read plainly, the same answer.
        optimize().await;
        let merged = store.user_parts().await.expect("parts");
        assert!(keys_unique(&merged), "{merged:?}");
        assert_eq!(given(merged.clone()).await, (newest.clone(), Read::Plain));
        assert_eq!(format!("{:?}", store.tallies_in_engine("demo", &query).await.expect("report")), newest);

        // An INSERT after the look at the parts: `c` reaches both milestones, `d` is deleted.
        insert(vec![row("c", 3, 0, 70, 80, "paid"), row("d", 3, 1, 40, 50, "trial")]).await;
        let inserted = read(Read::Final).await;
        assert_ne!(inserted, newest);
        assert_ne!(read(Read::Plain).await, inserted, "the plain read over the new part counts `c` and `d` twice");
        assert_eq!(given(merged.clone()).await, (inserted.clone(), Read::Final));

        // A merge after the look: the part looked at is gone (a reference that took its
        // snapshot before the merge would have read it, one after it the merged part).
        optimize().await;
        let remerged = store.user_parts().await.expect("parts");
        assert!(keys_unique(&remerged) && remerged != merged, "{remerged:?} after {merged:?}");
        assert_eq!(given(merged).await, (inserted.clone(), Read::Final));
        assert_eq!(given(remerged).await, (inserted, Read::Plain));
    }
}
