//! Calendar arithmetic in UTC, and the date and duration syntax the query API accepts.
//!
//! No date crate: the collector only needs days, ISO weeks and ISO-8601 output, and the civil
//! calendar conversion is a few lines (Howard Hinnant's `days_from_civil`).

pub const SECOND: i64 = 1000;
pub const MINUTE: i64 = 60 * SECOND;
pub const HOUR: i64 = 60 * MINUTE;
pub const DAY: i64 = 24 * HOUR;
pub const WEEK: i64 = 7 * DAY;

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

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

/// `90s`, `30m`, `24h`, `7d`, `2w`, or plain milliseconds.
pub fn parse_duration(text: &str) -> Option<i64> {
    let unit = match text.as_bytes().last()? {
        b's' => SECOND,
        b'm' => MINUTE,
        b'h' => HOUR,
        b'd' => DAY,
        b'w' => WEEK,
        b'0'..=b'9' => return text.parse().ok().filter(|n: &i64| *n >= 0),
        _ => return None,
    };
    let n: i64 = text[..text.len() - 1].parse().ok()?;
    (n >= 0).then(|| n.checked_mul(unit)).flatten()
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
