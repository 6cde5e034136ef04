//! Calendar arithmetic in UTC, and the date and duration syntax the query API accepts.
//!
//! No date crate: the collector only needs days, ISO weeks and ISO-8601 output. The civil
//! calendar conversion and the duration syntax are the SDK's own ([`onramp::core::time`]), so a
//! plan's `"7d"` and a query's `7d` are the same span.

pub use onramp::core::time::{days_from_civil, parse_duration, DAY, HOUR, MINUTE, SECOND, WEEK};

/// The date of a day number from [`days_from_civil`].
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

/// Midnight UTC starting the day that contains `ts`.
pub fn day_start(ts: i64) -> i64 {
    ts.div_euclid(DAY) * DAY
}

/// Midnight UTC starting the ISO week (Monday) that contains `ts`. 1970-01-01 was a Thursday.
pub fn week_start(ts: i64) -> i64 {
    (ts - 4 * DAY).div_euclid(WEEK) * WEEK + 4 * DAY
}

/// `YYYY-MM-DD` of the UTC day containing `ts`.
pub fn date(ts: i64) -> String {
    let (y, m, d) = civil_from_days(ts.div_euclid(DAY));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DDTHH:MM:SSZ`, for CSV exports a spreadsheet reads as a date.
pub fn iso(ts: i64) -> String {
    let ms = ts.rem_euclid(DAY);
    format!("{}T{:02}:{:02}:{:02}Z", date(ts), ms / HOUR, ms % HOUR / MINUTE, ms % MINUTE / SECOND)
}

/// A date `YYYY-MM-DD` (UTC midnight) or Unix milliseconds.
pub fn parse_instant(text: &str) -> Option<i64> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok();
    }
    let mut parts = text.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    let valid = (1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m) && (1970..=9999).contains(&y);
    valid.then(|| days_from_civil(y, m, d) * DAY)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    (days_from_civil(ny, nm, 1) - days_from_civil(y, m, 1)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        for z in [-1000, 0, 11_017, 20_000, 20_780] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }

    #[test]
    fn weeks_start_on_monday() {
        // 2026-11-23 is a Monday; the 29th a Sunday.
        let monday = parse_instant("2026-11-23").expect("date");
        assert_eq!(week_start(monday), monday);
        assert_eq!(week_start(monday + 6 * DAY + 23 * HOUR), monday);
        assert_eq!(week_start(monday - 1), monday - WEEK);
        assert_eq!(date(monday), "2026-11-23");
        assert_eq!(iso(monday + 13 * HOUR + 5 * MINUTE + 7 * SECOND), "2026-11-23T13:05:07Z");
    }

    #[test]
    fn parses_dates_and_durations() {
        assert_eq!(parse_instant("1970-01-02"), Some(DAY));
        assert_eq!(parse_instant("12345"), Some(12_345));
        assert_eq!(parse_instant("2026-02-29"), None);
        assert_eq!(parse_instant("2026-13-01"), None);
        assert_eq!(parse_instant("yesterday"), None);
        assert_eq!(parse_duration("24h"), Some(DAY));
        assert_eq!(parse_duration("7d"), Some(WEEK));
        assert_eq!(parse_duration("1500"), Some(1500));
        assert_eq!(parse_duration("-1h"), None);
        assert_eq!(parse_duration("h"), None);
    }
}
