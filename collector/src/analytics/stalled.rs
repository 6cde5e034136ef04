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
    stalls.sort_by(|a, b| (a.due_at, &a.user, &a.milestone).cmp(&(b.due_at, &b.user, &b.milestone)));
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

/// The stalled list as CSV, with a header row and ISO-8601 UTC times, in pieces written as they
/// are taken: an export streams, and never holds its whole text beside the list.
pub fn csv_chunks(stalls: Vec<Stall>, now: i64) -> impl Iterator<Item = String> + Send {
    let mut rows = stalls.into_iter().peekable();
    let mut header = true;
    std::iter::from_fn(move || {
        if !header && rows.peek().is_none() {
            return None;
        }
        let mut out = if std::mem::take(&mut header) { String::from("user,milestone,signed_up_at,due_at,last_seen,overdue_hours\r\n") } else { String::new() };
        for s in rows.by_ref().take(CSV_CHUNK) {
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
        Some(out)
    })
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
        let csv: String = csv_chunks(vec![s], 2 * HOUR).collect();
        assert_eq!(
            csv,
            "user,milestone,signed_up_at,due_at,last_seen,overdue_hours\r\n'=cmd|x,\"a,b\",1970-01-01T00:00:00Z,1970-01-01T00:00:00Z,1970-01-01T01:00:00Z,2.0\r\n"
        );
    }

    #[test]
    fn csv_streams_in_pieces_with_one_header() {
        let stall = |i: i64| Stall { user: format!("u{i}"), milestone: "m".into(), signed_up_at: 0, due_at: i, last_seen: 0 };
        let pieces: Vec<String> = csv_chunks((0..2500).map(stall).collect(), HOUR).collect();
        assert_eq!(pieces.len(), 3, "2 500 rows in pieces of 1 024");
        let text = pieces.concat();
        assert_eq!(text.matches("user,milestone").count(), 1);
        assert_eq!(text.lines().count(), 2501);
        assert!(text.lines().nth(2500).is_some_and(|l| l.starts_with("u2499,")));
        assert_eq!(csv_chunks(Vec::new(), 0).collect::<Vec<_>>(), vec!["user,milestone,signed_up_at,due_at,last_seen,overdue_hours\r\n"]);
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
