//! Stalled users: past a milestone's due window without having reached it. The list a
//! customer-success manager works through, longest overdue first.

use super::time::{iso, parse_duration};
use super::{FirstReach, Step, User};

/// A milestone and how long after sign-up it is due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    pub milestone: String,
    pub within_ms: i64,
}

/// `project_created:24h,teammate_invited:7d`, as the API's `due=` and the `--due` flag take it.
pub fn parse_due(text: &str) -> Result<Vec<Due>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| {
            let (milestone, within) = item
                .rsplit_once(':')
                .ok_or_else(|| format!("expected milestone:duration such as project_created:24h, found {item:?}"))?;
            let within_ms =
                parse_duration(within).ok_or_else(|| format!("{within:?} is not a duration such as 24h or 7d"))?;
            // Due windows are always milestones; `milestone:ID` is accepted as in `steps`.
            let milestone = milestone.strip_prefix("milestone:").unwrap_or(milestone);
            Ok(Due { milestone: milestone.into(), within_ms })
        })
        .collect()
}

#[derive(Clone, Debug, PartialEq)]
pub struct Stall {
    pub user: String,
    pub milestone: String,
    pub signed_up_at: i64,
    pub due_at: i64,
    pub last_seen: i64,
}

/// Whether `user` is stalled on `due`: its due time is at or before `now` and the user has not
/// `reached` the milestone.
pub fn stall(user: &User, due: &Due, reached: bool, now: i64) -> Option<Stall> {
    let due_at = stalled_since(user, due, reached, now)?;
    Some(Stall {
        user: user.id.clone(),
        milestone: due.milestone.clone(),
        signed_up_at: user.signed_up_at,
        due_at,
        last_seen: user.last_seen,
    })
}

/// When `user` became stalled on `due` (its due time), if they are: [`stall`] without building
/// the stall.
pub fn stalled_since(user: &User, due: &Due, reached: bool, now: i64) -> Option<i64> {
    let due_at = user.signed_up_at.saturating_add(due.within_ms);
    (due_at <= now && !reached).then_some(due_at)
}

/// The order stalls are listed in: longest overdue first, then by user and milestone.
pub fn sort_stalls(stalls: &mut [Stall]) {
    stalls.sort_by(|a, b| list_key(a).cmp(&list_key(b)));
}

/// What [`sort_stalls`] orders by; the export's merge of sorted runs orders by it too.
fn list_key(s: &Stall) -> (i64, &str, &str) {
    (s.due_at, &s.user, &s.milestone)
}

/// Every (user, milestone) among `users` and `due` whose due time is at or before `now` and that
/// the user has not reached, longest overdue first (then by user and milestone).
pub fn stalled(users: &[User], due: &[Due], reach: &FirstReach, now: i64) -> Vec<Stall> {
    // Built once, not per user: at scale the allocations were a visible share of a report.
    let steps: Vec<(&Due, Step)> = due.iter().map(|d| (d, Step::milestone(&d.milestone))).collect();
    let mut stalls: Vec<Stall> = users
        .iter()
        .flat_map(|u| {
            let firsts = reach.of(&u.id);
            steps.iter().filter_map(move |(d, step)| stall(u, d, firsts.at(step).is_some(), now))
        })
        .collect();
    sort_stalls(&mut stalls);
    stalls
}

/// Stalls whose due time falls in `(after, until]`: what a periodic scan announces, so each stall
/// is announced once without remembering which were sent.
pub fn newly_stalled(stalls: Vec<Stall>, after: i64, until: i64) -> Vec<Stall> {
    stalls.into_iter().filter(|s| s.due_at > after && s.due_at <= until).collect()
}

/// Characters that make a spreadsheet read a cell as a formula when they lead it (OWASP's CSV
/// injection list: tab and carriage return too, since some spreadsheets skip them first).
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// RFC 4180 field: quoted when it holds a comma, quote or line break; a field starting with one
/// of [`FORMULA_STARTS`] is prefixed with `'` so a spreadsheet never runs a user-controlled id
/// as a formula.
pub fn csv_field(text: &str) -> String {
    let text = if text.starts_with(FORMULA_STARTS) { format!("'{text}") } else { text.to_string() };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// Stalls per piece of a streamed CSV export.
const CSV_CHUNK: usize = 1024;

/// Stalls an export holds in memory before sorting them and spilling them to disk as a run.
const RUN_LEN: usize = 32 * 1024;

/// Every stall of an export, taken in any order and given back in list order
/// ([`sort_stalls`]) while holding at most [`RUN_LEN`] of them: an external merge sort. A full
/// run is sorted and written to an unnamed temporary file (gone when closed); reading merges
/// the runs. At 10 M events the export lists about a million stalls (50 MB of CSV): held whole
/// with their sort they were the collector's largest allocation.
#[derive(Default)]
pub struct StallSorter {
    run: Vec<Stall>,
    /// Each spilled run with its number of stalls: a run that ends early (even between two
    /// stalls) is an error, not a shorter list.
    spilled: Vec<(std::fs::File, usize)>,
    /// The first failure to spill, reported by [`StallSorter::sorted`] (pushing cannot fail).
    error: Option<std::io::Error>,
}

impl std::fmt::Debug for StallSorter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StallSorter").field("in_memory", &self.run.len()).field("spilled_runs", &self.spilled.len()).finish()
    }
}

impl StallSorter {
    pub fn push(&mut self, stall: Stall) {
        self.run.push(stall);
        if self.run.len() >= RUN_LEN && self.error.is_none() {
            if let Err(e) = self.spill() {
                self.error = Some(e);
            }
        }
    }

    fn spill(&mut self) -> std::io::Result<()> {
        use std::io::{Seek, Write};
        sort_stalls(&mut self.run);
        let count = self.run.len();
        let mut out = std::io::BufWriter::new(tempfile::tempfile()?);
        for s in self.run.drain(..) {
            for text in [&s.user, &s.milestone] {
                out.write_all(&(text.len() as u64).to_le_bytes())?;
                out.write_all(text.as_bytes())?;
            }
            for n in [s.signed_up_at, s.due_at, s.last_seen] {
                out.write_all(&n.to_le_bytes())?;
            }
        }
        let mut file = out.into_inner().map_err(|e| e.into_error())?;
        file.rewind()?;
        self.spilled.push((file, count));
        Ok(())
    }

    /// The stalls in list order; an error if a run could not be spilled, or (as an item) if
    /// one cannot be read back.
    pub fn sorted(mut self) -> std::io::Result<SortedStalls> {
        if let Some(e) = self.error {
            return Err(e);
        }
        sort_stalls(&mut self.run);
        let mut runs: Vec<Run> = vec![Run::Memory(std::mem::take(&mut self.run).into_iter())];
        runs.extend(self.spilled.into_iter().map(|(f, left)| Run::File(std::io::BufReader::new(f), left)));
        let mut heads = std::collections::BinaryHeap::new();
        for (i, run) in runs.iter_mut().enumerate() {
            if let Some(stall) = run.next().transpose()? {
                heads.push(std::cmp::Reverse(Head(stall, i)));
            }
        }
        Ok(SortedStalls { runs, heads })
    }
}

enum Run {
    Memory(std::vec::IntoIter<Stall>),
    /// A spilled run and how many of its stalls are still to be read.
    File(std::io::BufReader<std::fs::File>, usize),
}

impl Run {
    fn next(&mut self) -> Option<std::io::Result<Stall>> {
        match self {
            Run::Memory(stalls) => stalls.next().map(Ok),
            Run::File(_, 0) => None,
            Run::File(file, left) => {
                *left -= 1;
                Some(read_stall(file).and_then(|s| s.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "a spilled run of the stalled export ended early"))))
            }
        }
    }
}

/// The next stall of a run; `None` at the end of its file.
fn read_stall(file: &mut impl std::io::Read) -> std::io::Result<Option<Stall>> {
    use std::io::{Error, ErrorKind, Read};
    let mut word = [0u8; 8];
    match file.read(&mut word[..1])? {
        0 => return Ok(None),
        _ => file.read_exact(&mut word[1..])?,
    }
    let text = |word: [u8; 8], file: &mut dyn Read| -> std::io::Result<String> {
        let mut bytes = vec![0; u64::from_le_bytes(word) as usize];
        file.read_exact(&mut bytes)?;
        String::from_utf8(bytes).map_err(|e| Error::new(ErrorKind::InvalidData, e))
    };
    let user = text(word, file)?;
    file.read_exact(&mut word)?;
    let milestone = text(word, file)?;
    let mut number = || -> std::io::Result<i64> {
        file.read_exact(&mut word)?;
        Ok(i64::from_le_bytes(word))
    };
    Ok(Some(Stall { user, milestone, signed_up_at: number()?, due_at: number()?, last_seen: number()? }))
}

/// A run's next stall, ordered as [`sort_stalls`] orders them.
struct Head(Stall, usize);

impl PartialEq for Head {
    fn eq(&self, other: &Head) -> bool {
        list_key(&self.0) == list_key(&other.0)
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Head) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Head {
    fn cmp(&self, other: &Head) -> std::cmp::Ordering {
        list_key(&self.0).cmp(&list_key(&other.0))
    }
}

/// [`StallSorter::sorted`]: the runs merged. Stalls with equal keys are the same row (one user,
/// milestone and due time), so which run gives one first does not change the list.
pub struct SortedStalls {
    runs: Vec<Run>,
    heads: std::collections::BinaryHeap<std::cmp::Reverse<Head>>,
}

impl Iterator for SortedStalls {
    type Item = std::io::Result<Stall>;

    fn next(&mut self) -> Option<std::io::Result<Stall>> {
        let std::cmp::Reverse(Head(stall, run)) = self.heads.pop()?;
        match self.runs[run].next() {
            Some(Ok(next)) => self.heads.push(std::cmp::Reverse(Head(next, run))),
            Some(Err(e)) => {
                // Nothing after a failed read: the export must end in an error, not skip rows.
                self.heads.clear();
                return Some(Err(e));
            }
            None => {}
        }
        Some(Ok(stall))
    }
}

/// The stalled list as CSV, with a header row and ISO-8601 UTC times, in pieces written as they
/// are taken: an export streams, and never holds its whole text. A stall that cannot be read
/// ends the pieces with that error.
pub fn csv_chunks(
    stalls: impl Iterator<Item = std::io::Result<Stall>> + Send,
    now: i64,
) -> impl Iterator<Item = std::io::Result<String>> + Send {
    let mut rows = stalls.peekable();
    let mut header = true;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || (!header && rows.peek().is_none()) {
            return None;
        }
        let mut out = if std::mem::take(&mut header) { String::from("user,milestone,signed_up_at,due_at,last_seen,overdue_hours\r\n") } else { String::new() };
        for s in rows.by_ref().take(CSV_CHUNK) {
            let s = match s {
                Ok(s) => s,
                Err(e) => {
                    failed = true;
                    return Some(Err(e));
                }
            };
            let overdue_hours = (now - s.due_at) as f64 / 3_600_000.0;
            out.push_str(&format!(
                "{},{},{},{},{},{:.1}\r\n",
                csv_field(&s.user),
                csv_field(&s.milestone),
                iso(s.signed_up_at),
                iso(s.due_at),
                iso(s.last_seen),
                overdue_hours
            ));
        }
        Some(Ok(out))
    })
}

/// A sorter of more than one run whose spilled run was cut short after it was written, as a
/// disk going bad would: reading it back fails part way.
#[cfg(test)]
pub(crate) fn sorter_with_a_cut_run() -> StallSorter {
    let mut sorter = StallSorter::default();
    for i in 0..RUN_LEN + 10 {
        sorter.push(Stall { user: format!("u{i:06}"), milestone: "m".into(), signed_up_at: 0, due_at: i as i64, last_seen: 0 });
    }
    // Cut between two stalls (every one here is the same size): the file still reads as stalls.
    let file = &sorter.spilled[0].0;
    file.set_len(file.metadata().expect("run").len() / 2).expect("cut the run");
    sorter
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::test_support::{events, user};
    use crate::analytics::time::{DAY, HOUR};

    #[test]
    fn lists_users_past_due_without_the_milestone() {
        let users = vec![user("a", 0), user("b", 0), user("c", 5 * DAY)];
        let due = vec![Due { milestone: "project".into(), within_ms: DAY }];
        let all = [events("a", &[(2 * HOUR, "project")])];
        let reach = FirstReach::new(&all);
        let list = stalled(&users, &due, &reach, 5 * DAY + HOUR);
        assert_eq!(list.iter().map(|s| s.user.as_str()).collect::<Vec<_>>(), vec!["b"], "c is not due yet");
        assert_eq!(list[0].due_at, DAY);
        assert_eq!(newly_stalled(list.clone(), DAY - 1, DAY).len(), 1);
        assert_eq!(newly_stalled(list, DAY, 2 * DAY).len(), 0, "announced by the earlier scan");
    }

    #[test]
    fn parses_due_lists() {
        assert_eq!(parse_due("a:24h, b:7d"), Ok(vec![Due { milestone: "a".into(), within_ms: DAY }, Due { milestone: "b".into(), within_ms: 7 * DAY }]));
        assert!(parse_due("a").is_err());
        assert!(parse_due("a:soon").expect_err("bad").contains("soon"));
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let s = Stall { user: "=cmd|x".into(), milestone: "a,b".into(), signed_up_at: 0, due_at: 0, last_seen: HOUR, };
        let csv: String = csv_chunks([s].into_iter().map(Ok), 2 * HOUR).collect::<std::io::Result<_>>().expect("in memory");
        assert_eq!(
            csv,
            "user,milestone,signed_up_at,due_at,last_seen,overdue_hours\r\n'=cmd|x,\"a,b\",1970-01-01T00:00:00Z,1970-01-01T00:00:00Z,1970-01-01T01:00:00Z,2.0\r\n"
        );
    }

    #[test]
    fn csv_streams_in_pieces_with_one_header() {
        let stall = |i: i64| Stall { user: format!("u{i}"), milestone: "m".into(), signed_up_at: 0, due_at: i, last_seen: 0 };
        let pieces: Vec<String> = csv_chunks((0..2500).map(stall).map(Ok), HOUR).collect::<std::io::Result<_>>().expect("in memory");
        assert_eq!(pieces.len(), 3, "2 500 rows in pieces of 1 024");
        let text = pieces.concat();
        assert_eq!(text.matches("user,milestone").count(), 1);
        assert_eq!(text.lines().count(), 2501);
        assert!(text.lines().nth(2500).is_some_and(|l| l.starts_with("u2499,")));
        assert_eq!(csv_chunks(std::iter::empty(), 0).map(Result::unwrap).collect::<Vec<_>>(), vec!["user,milestone,signed_up_at,due_at,last_seen,overdue_hours\r\n"]);
    }

    #[test]
    fn the_sorter_gives_back_every_stall_in_list_order_across_spilled_runs() {
        // Three and a half runs, pushed out of order, due times tied across users and
        // milestones, duplicates of whole rows (one due window named twice).
        let n = RUN_LEN * 7 / 2;
        let stall = |i: usize| Stall {
            user: format!("u{}", i * 7919 % 5000),
            milestone: ["a", "b", "a"][i % 3].into(),
            signed_up_at: (i % 1000) as i64,
            due_at: (i * 104_729 % 20_000) as i64,
            last_seen: i as i64,
        };
        let mut sorter = StallSorter::default();
        let mut all = Vec::new();
        for i in 0..n {
            sorter.push(stall(i));
            all.push(stall(i));
        }
        assert_eq!(sorter.spilled.len(), 3);
        let sorted: Vec<Stall> = sorter.sorted().expect("runs").collect::<std::io::Result<_>>().expect("read back");
        sort_stalls(&mut all);
        let key = |s: &Stall| (s.due_at, s.user.clone(), s.milestone.clone());
        assert_eq!(sorted.iter().map(key).collect::<Vec<_>>(), all.iter().map(key).collect::<Vec<_>>());
        assert_eq!(sorted.len(), n);
        let rows = |list: &[Stall]| {
            let mut rows: Vec<String> = list.iter().map(|s| format!("{s:?}")).collect();
            rows.sort();
            rows
        };
        assert_eq!(rows(&sorted), rows(&all), "every field comes back");
        assert_eq!(StallSorter::default().sorted().expect("nothing").count(), 0);
    }

    #[test]
    fn a_stall_that_cannot_be_read_ends_the_csv_with_the_error() {
        let ok = Stall { user: "u".into(), milestone: "m".into(), signed_up_at: 0, due_at: 0, last_seen: 0 };
        let rows = vec![Ok(ok.clone()), Err(std::io::Error::other("disk gone")), Ok(ok)];
        let pieces: Vec<std::io::Result<String>> = csv_chunks(rows.into_iter(), HOUR).collect();
        assert_eq!(pieces.len(), 1, "the header and first row are not sent as a piece of their own");
        assert!(pieces[0].as_ref().is_err_and(|e| e.to_string() == "disk gone"));
    }

    #[test]
    fn a_run_cut_short_ends_the_export_in_an_error_after_the_rows_before_it() {
        let pieces: Vec<std::io::Result<String>> = csv_chunks(sorter_with_a_cut_run().sorted().expect("runs"), HOUR).collect();
        let (last, before) = pieces.split_last().expect("pieces");
        assert!(last.is_err(), "the export ends in the read error");
        let rows: usize = before.iter().map(|p| p.as_ref().expect("pieces before the error").lines().count()).sum();
        assert!(rows > 1000 && rows < RUN_LEN, "about half the spilled run, in order, then nothing: {rows}");
    }

    #[test]
    fn csv_defuses_every_formula_start_owasp_lists() {
        // Expected fields written out by hand, not derived from FORMULA_STARTS.
        let cases = [
            ("=1+1", "'=1+1"),
            ("+1", "'+1"),
            ("-1", "'-1"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=cmd", "'\t=cmd"),
            ("\r=cmd", "\"'\r=cmd\""),
            ("plain", "plain"),
            ("a=b", "a=b"),
        ];
        for (user, want) in cases {
            assert_eq!(csv_field(user), want, "{user:?}");
        }
    }
}
