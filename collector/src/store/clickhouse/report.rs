//! A report's sections counted inside ClickHouse (issue 11: aggregation inside the engine), on
//! a single server whose report asks only milestones: the per-user rollup's report columns
//! (migration 11: sign-up, milestone first times and trait texts as columns) give each user's
//! sign-up, selection and first times in SQL, and GROUP BY cohort (beside a group of every
//! selected user) counts users, first-day activation, stalls, the value's histogram buckets
//! and the funnel, and picks each step's nearest-rank percentiles with `quantilesExact`
//! ([`Summary`], [`ReportSql::summary`]). The collector receives a row per cohort, the first stalls (ORDER BY … LIMIT),
//! the filter choices per trait value, and only the users the answer lists one by one (the
//! users of interest, the funnel's users when asked): never a row per user.
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

/// Users of interest per statement: each is a quoted literal in the SQL.
const INTEREST_CHUNK: usize = 2000;

/// Whether the engine can answer `query`: every column a milestone (the rows hold their first
/// times), and the stalls listed up to a limit (an export lists every one: the per-user pass
/// streams them to its sorter).
pub(super) fn answers(query: &ReportQuery) -> bool {
    query.stall_limit.is_some() && query.columns().iter().all(|c| c.kind == StepKind::Milestone)
}

/// The SQL of one report: names its per-user expressions after the query's columns.
struct ReportSql<'q> {
    query: &'q ReportQuery,
    project: String,
    columns: Vec<Step>,
}

impl<'q> ReportSql<'q> {
    fn new(project: &str, query: &'q ReportQuery) -> ReportSql<'q> {
        ReportSql { query, project: quote(project), columns: query.columns() }
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
            select.push(format!("if(r{c}, milestone_times[i{c}], toInt64(0)) AS t{c}"));
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
        format!(
            "SELECT {} FROM (SELECT user_key, deleted, identified, first_seen, last_seen, signup_known, signup, milestone_names, milestone_times{traits}
                             FROM rollup_users FINAL WHERE project = {}) WHERE {}",
            select.join(", "),
            self.project,
            admits.join(" AND ")
        )
    }

    /// The count and percentiles of durations `values` of the users where `condition` holds,
    /// as an inner (per cohort) and an outer (merged) aggregate: [`read_summary`] reads the
    /// outer's count and `Array(Int64)`.
    ///
    /// `quantilesExact(level)` is the sorted values' element at 0-based index ⌊level·n⌋; over
    /// the values negated, that is the element at n − 1 − ⌊(1 − p/100)·n⌋ = ⌈p·n/100⌉ − 1 of
    /// the values sorted: the nearest rank ([`crate::analytics::nearest_rank`]). (1 − p/100)
    /// is 0.5, 0.25 and 0.1, and a product by 0.1 never rounds below a whole number it reaches,
    /// so the floor is exact; checked on 18.16 for every n up to 3000.)
    fn summary(name: &str, values: &str, condition: &str) -> (String, String) {
        let levels: Vec<String> = PERCENTILES.iter().map(|p| format!("{}", f64::from(100 - p) / 100.0)).collect();
        let levels = levels.join(", ");
        (
            format!("countIf({condition}) AS {name}_n, quantilesExactStateIf({levels})(-({values}), {condition}) AS {name}_q"),
            format!("sum({name}_n), quantilesExactMerge({levels})({name}_q)"),
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
        format!("{} AND r{c} AND t{c} >= t{before}{window}", self.funnel_step(k - 1))
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
    /// funnel step its users, gaps and (when asked) user ids; only everyone's stalls and funnel
    /// are read). Counted per cohort first, then merged per cohort and for everyone (the
    /// cohorts' rows each go to two groups): each user is aggregated once.
    fn sections(&self) -> String {
        let q = self.query;
        let v = self.column(&q.value);
        let eligible = format!("s <= {}", q.now - ACTIVATION_WINDOW);
        let mut inner = vec![
            format!("{} AS g", self.cohort()),
            "countIf(ident) AS users".to_owned(),
            "countIf(NOT ident) AS visitors".to_owned(),
            format!("countIf(ident AND {eligible}) AS eligible"),
            format!("countIf(ident AND {eligible} AND r{v} AND d{v} < {ACTIVATION_WINDOW}) AS activated"),
        ];
        let mut outer = vec!["g2".to_owned(), "sum(users)".to_owned(), "sum(visitors)".to_owned(), "sum(eligible)".to_owned(), "sum(activated)".to_owned()];
        let steps: Vec<&Step> = q.steps.iter().chain([&q.value]).collect();
        for (i, step) in steps.iter().enumerate() {
            // The value is most often a step: its summary, named again, is counted once.
            let first = steps.iter().position(|s| s == step).unwrap_or(i);
            let c = self.column(step);
            let (counted, merged) = Self::summary(&format!("step{first}"), &format!("d{c}"), &format!("ident AND r{c}"));
            if first == i {
                inner.push(counted);
            }
            outer.push(merged);
        }
        let mut histogram = Vec::new();
        let mut low = None;
        for high in HISTOGRAM_EDGES.iter().map(Some).chain([None]) {
            let within = [low.map(|l| format!("d{v} >= {l}")), high.map(|h| format!("d{v} < {h}"))].into_iter().flatten().collect::<Vec<_>>();
            histogram.push(format!("countIf(ident AND r{v} AND {})", within.join(" AND ")));
            low = high;
        }
        inner.push(format!("[{}] AS histogram", histogram.join(", ")));
        outer.push("sumForEach(histogram)".to_owned());
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
                let at = |k: usize| format!("t{}", self.column(&q.steps[k]));
                let gap = if k == 0 { "toInt64(0)".to_owned() } else { format!("{} - {}", at(k), at(k - 1)) };
                // Step 0 has no gap.
                let mut summary_of = |name, condition| {
                    let (i, o) = Self::summary(name, &gap, condition);
                    inner.push(i);
                    outer.push(o);
                };
                summary_of(&format!("funnel{k}"), &format!("ident AND f{k} AND {}", u8::from(k > 0)));
                inner.push(format!("countIf(ident AND f{k}) AS reached{k}"));
                outer.push(format!("sum(reached{k})"));
                if q.funnel_users {
                    inner.push(format!("groupArrayIf(id, ident AND f{k}) AS ids{k}"));
                    outer.push(format!("if(g2 = {EVERYONE}, groupArrayArray(ids{k}), emptyArrayString())"));
                }
            }
        }
        let users = match funnel.is_empty() {
            true => self.users(),
            false => format!("SELECT *, {} FROM ({})", funnel.join(", "), self.users()),
        };
        format!(
            "SELECT {} FROM (SELECT {} FROM ({users}) GROUP BY g) GROUP BY arrayJoin([g, {EVERYONE}]) AS g2",
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
                     FROM (SELECT deleted, identified, trait_keys, trait_texts FROM rollup_users FINAL WHERE project = {})
                     WHERE deleted = 0 AND identified)
               ARRAY JOIN trait_keys AS key, trait_texts AS text
               WHERE key NOT IN ({})
               GROUP BY key, text)
             GROUP BY key HAVING count() <= {MAX_TRAIT_CHOICES}",
            self.project,
            quote_list(HIDDEN_TRAITS)
        )
    }
}

/// A [`ReportSql::summary`] as ClickHouse answers it.
fn read_summary(r: &mut Reader<'_>) -> Result<Summary, StoreError> {
    let count = r.u64()?;
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
    /// docs); the caller checked [`answers`].
    pub(super) async fn tallies_in_engine(&self, project: &str, query: &ReportQuery) -> Result<Tallies, StoreError> {
        let sql = ReportSql::new(project, query);
        let limit = query.stall_limit.unwrap_or(0);
        let sections_sql = sql.sections();
        let (sections, stalls, population, choices, interest) = tokio::try_join!(
            self.select(&sections_sql),
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
                for _ in 0..steps {
                    let (gaps, users) = (read_summary(&mut r)?, r.u64()?);
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
                // A cohort of visitors only has no users to show.
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
