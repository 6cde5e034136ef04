//! A report's sections counted inside ClickHouse (issue 11: aggregation inside the engine), on
//! a single server whose report asks only milestones: the per-user rollup's report columns
//! (migration 11: sign-up, milestone first times and trait texts as columns) give each user's
//! sign-up, selection and first times in SQL, and GROUP BY cohort (beside a group of every
//! selected user) counts users, first-day activation, stalls and the funnel, and sorts each
//! step's durations to pick the nearest-rank percentiles and histogram buckets
//! ([`Summary`]). The collector receives a row per cohort, the first stalls (ORDER BY … LIMIT),
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
use crate::analytics::report::{Durations, FunnelTally, ReportQuery, StepTimes, Summary, Tallies, TraitChoices, HIDDEN_TRAITS, MAX_TRAIT_CHOICES, PERCENTILES};
use crate::analytics::stalled::Stall;
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
        format!(
            "SELECT {} FROM (SELECT * FROM rollup_users FINAL WHERE project = {}) WHERE {}",
            select.join(", "),
            self.project,
            admits.join(" AND ")
        )
    }

    /// Durations `values` of the users where `condition` holds, sorted, as the `Array(Int64)`
    /// [`read_summary`] reads: count, each of [`PERCENTILES`] (nearest rank), then the count
    /// in each bucket of [`HISTOGRAM_EDGES`].
    fn summary(values: &str, condition: &str) -> String {
        let sorted = format!("arraySort(groupArrayIf({values}, {condition}))");
        let mut parts = vec![format!("toInt64(length({sorted}))")];
        for p in PERCENTILES {
            parts.push(format!("{sorted}[greatest(intDiv({p} * length({sorted}) + 99, 100), 1)]"));
        }
        let mut low = None;
        for high in HISTOGRAM_EDGES.iter().map(Some).chain([None]) {
            let within = match (low, high) {
                (None, Some(h)) => format!("x < {h}"),
                (Some(l), Some(h)) => format!("x >= {l} AND x < {h}"),
                (Some(l), None) => format!("x >= {l}"),
                (None, None) => "1".to_owned(),
            };
            parts.push(format!("toInt64(arrayCount(x -> {within}, {sorted}))"));
            low = high;
        }
        format!("[{}]", parts.join(", "))
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
    /// activated, a summary per step, the value's, then for everyone the stalled count and per
    /// funnel step its users, gaps and (when asked) user ids.
    fn sections(&self) -> String {
        let q = self.query;
        let v = self.column(&q.value);
        let everyone = format!("g = {EVERYONE}");
        let eligible = format!("s <= {}", q.now - ACTIVATION_WINDOW);
        let mut select = vec![
            "g".to_owned(),
            "countIf(ident)".to_owned(),
            "countIf(NOT ident)".to_owned(),
            format!("countIf(ident AND {eligible})"),
            format!("countIf(ident AND {eligible} AND r{v} AND d{v} < {ACTIVATION_WINDOW})"),
        ];
        for step in q.steps.iter().chain([&q.value]) {
            let c = self.column(step);
            select.push(Self::summary(&format!("d{c}"), &format!("ident AND r{c}")));
        }
        let stalled: Vec<String> = q
            .due
            .iter()
            .map(|d| format!("toUInt64(s <= {} AND NOT r{})", q.now.saturating_sub(d.within_ms), self.column(&Step::milestone(&d.milestone))))
            .collect();
        select.push(if stalled.is_empty() { "toUInt64(0)".to_owned() } else { format!("sumIf({}, ident AND {everyone})", stalled.join(" + ")) });
        if q.funnel && !q.steps.is_empty() {
            let mut inner = Vec::new();
            for k in 0..q.steps.len() {
                inner.push(format!("{} AS f{k}", self.funnel_step(k)));
                let at = |k: usize| format!("t{}", self.column(&q.steps[k]));
                let reached = format!("ident AND {everyone} AND f{k}");
                select.push(format!("countIf({reached})"));
                let gap = if k == 0 { "toInt64(0)".to_owned() } else { format!("{} - {}", at(k), at(k - 1)) };
                select.push(Self::summary(&gap, &format!("{reached} AND {}", if k == 0 { "0" } else { "1" })));
                select.push(if q.funnel_users { format!("groupArrayIf(id, {reached})") } else { "emptyArrayString()".to_owned() });
            }
            return format!(
                "SELECT {} FROM (SELECT *, {} FROM ({})) GROUP BY arrayJoin([{}, {EVERYONE}]) AS g",
                select.join(", "),
                inner.join(", "),
                self.users(),
                self.cohort()
            );
        }
        format!("SELECT {} FROM ({}) GROUP BY arrayJoin([{}, {EVERYONE}]) AS g", select.join(", "), self.users(), self.cohort())
    }

    /// The first `limit` stalls (due time, user, milestone, sign-up, last seen) in list order
    /// (`stalled::sort_stalls`: due time, then user, then milestone; strings compare as bytes
    /// in both).
    fn stalls(&self, limit: usize) -> String {
        let q = self.query;
        let due: Vec<String> = q
            .due
            .iter()
            .map(|d| {
                let c = self.column(&Step::milestone(&d.milestone));
                format!("(s + {w}, {m}, s <= {last} AND NOT r{c})", w = d.within_ms, m = quote(&d.milestone), last = q.now.saturating_sub(d.within_ms))
            })
            .collect();
        format!(
            "SELECT tupleElement(stall, 1) AS due_at, id, tupleElement(stall, 2) AS milestone, s, ls
             FROM ({}) ARRAY JOIN arrayFilter(x -> tupleElement(x, 3), [{}]) AS stall
             WHERE ident ORDER BY due_at, id, milestone LIMIT {limit}",
            self.users(),
            due.join(", ")
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
               FROM (SELECT * FROM rollup_users FINAL WHERE project = {}) ARRAY JOIN trait_keys AS key, trait_texts AS text
               WHERE deleted = 0 AND identified AND key NOT IN ({})
               GROUP BY key, text)
             GROUP BY key HAVING count() <= {MAX_TRAIT_CHOICES}",
            self.project,
            quote_list(HIDDEN_TRAITS)
        )
    }
}

/// A [`ReportSql::summary`] as ClickHouse answers it.
fn read_summary(r: &mut Reader<'_>) -> Result<Summary, StoreError> {
    let values = (0..r.length()?).map(|_| r.i64()).collect::<Result<Vec<i64>, _>>()?;
    let mut summary = Summary::default();
    let n = PERCENTILES.len();
    if values.len() != 1 + n + summary.buckets.len() {
        return Err(StoreError::Unavailable(format!("ClickHouse's report summary has {} values", values.len())));
    }
    summary.count = values[0] as u64;
    if summary.count > 0 {
        for (p, v) in summary.percentiles.iter_mut().zip(&values[1..=n]) {
            *p = Some(*v);
        }
    }
    for (b, v) in summary.buckets.iter_mut().zip(&values[1 + n..]) {
        *b = *v as u64;
    }
    Ok(summary)
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
            let times = StepTimes { users, steps: summaries, value: read_summary(&mut r)?, eligible, activated };
            let stalled = r.u64()?;
            let mut funnel = Vec::new();
            if query.funnel {
                for _ in 0..steps {
                    let (users, gaps) = (r.u64()?, read_summary(&mut r)?);
                    let mut user_ids = (0..r.length()?).map(|_| r.str()).collect::<Result<Vec<String>, _>>()?;
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
