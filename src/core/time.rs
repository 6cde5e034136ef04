//! Time syntax shared by the SDK and the collector: durations (`"24h"`, `"7d"`) in plans and
//! query parameters, `signedUpAt` as ms or ISO 8601, and the civil-calendar conversion. One
//! implementation, so a duration or a date means the same in a plan, the engine and a report.

use super::json::Value;

pub const SECOND: i64 = 1000;
pub const MINUTE: i64 = 60 * SECOND;
pub const HOUR: i64 = 60 * MINUTE;
pub const DAY: i64 = 24 * HOUR;
pub const WEEK: i64 = 7 * DAY;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Milliseconds from `"500ms"`, `"90s"`, `"30m"`, `"24h"`, `"7d"`, `"2w"`, or plain digits (ms).
pub fn parse_duration(text: &str) -> Option<i64> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at_checked(split)?;
    let n = super::num::parse_int(digits)?;
    let unit_ms = match unit {
        "" | "ms" => 1,
        "s" => SECOND,
        "m" => MINUTE,
        "h" => HOUR,
        "d" => DAY,
        "w" => WEEK,
        _ => return None,
    };
    n.checked_mul(unit_ms)
}

/// `signedUpAt` as Unix ms: a number (ms; values below 1e11 are taken as seconds, since ms
/// timestamps have been above that since 1973) or an ISO 8601 date/time string.
pub fn parse_time(v: &Value) -> Option<i64> {
    match v {
        Value::Num(n) if n.is_finite() && *n > 0.0 => Some(if *n < 1e11 { (*n * 1000.0) as i64 } else { *n as i64 }),
        Value::Str(s) => parse_iso8601(s),
        _ => None,
    }
}

/// The earliest sign-up time accepted, 2000-01-01T00:00:00Z: anything earlier is a unit mistake
/// (seconds read as ms, a date's year alone) or garbage, and would skew every time-to-value.
pub const EARLIEST_SIGNUP_MS: i64 = 946_684_800_000;

/// A user's `signedUpAt` trait as Unix ms — the one definition the SDK and the collector share.
///
/// Read by [`parse_time`] (ms; a number below 1e11 is seconds; or an ISO 8601 string) and
/// accepted only from [`EARLIEST_SIGNUP_MS`] to `now` + 1 day (a day of clock skew). The
/// collector normalises at ingest and refuses anything else, naming the field.
pub fn signed_up_at(v: &Value, now: i64) -> Result<i64, &'static str> {
    let ms = parse_time(v).ok_or("expected Unix milliseconds, Unix seconds or an ISO 8601 date")?;
    if (EARLIEST_SIGNUP_MS..=now.saturating_add(DAY)).contains(&ms) {
        Ok(ms)
    } else {
        Err("is outside 2000-01-01 … now + 1 day")
    }
}

/// `YYYY-MM-DD`, optionally `THH:MM[:SS[.fff]]` and `Z` or `±HH:MM` (UTC when absent).
pub fn parse_iso8601(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        part.iter().all(u8::is_ascii_digit).then(|| part.iter().fold(0i64, |a, d| a * 10 + (d - b'0') as i64))
    };
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let mut ms = days_from_civil(y, mo as u32, d as u32) * DAY;
    let mut i = 10;
    if matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        let (h, mi) = (num(11, 2)?, num(14, 2)?);
        if b.get(13) != Some(&b':') || h > 23 || mi > 59 {
            return None;
        }
        ms += (h * 60 + mi) * 60_000;
        i = 16;
        if b.get(16) == Some(&b':') {
            let sec = num(17, 2)?;
            if sec > 60 {
                return None;
            }
            ms += sec * 1000;
            i = 19;
            if b.get(19) == Some(&b'.') {
                i = 20;
                let mut scale = 100;
                while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
                    ms += (c - b'0') as i64 * scale;
                    scale /= 10;
                    i += 1;
                }
            }
        }
    }
    match b.get(i) {
        None => Some(ms),
        Some(b'Z' | b'z') if i + 1 == b.len() => Some(ms),
        Some(sign @ (b'+' | b'-')) if b.len() == i + 6 && b[i + 3] == b':' => {
            let offset = (num(i + 1, 2)? * 60 + num(i + 4, 2)?) * 60_000;
            Some(if *sign == b'+' { ms - offset } else { ms + offset })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h"), Some(DAY));
        assert_eq!(parse_duration("7d"), Some(WEEK));
        assert_eq!(parse_duration("500ms"), Some(500));
        assert_eq!(parse_duration("1500"), Some(1500));
        for bad in ["", "h", "-1h", "5y", "1.5h", "7 d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn signed_up_at_accepts_ms_seconds_and_iso_strings() {
        assert_eq!(parse_time(&Value::Num(1_700_000_000_123.0)), Some(1_700_000_000_123));
        assert_eq!(parse_time(&Value::Num(1_700_000_000.0)), Some(1_700_000_000_000));
        assert_eq!(parse_iso8601("2023-11-14T22:13:20Z"), Some(1_700_000_000_000));
        assert_eq!(parse_iso8601("2023-11-14T22:13:20.123Z"), Some(1_700_000_000_123));
        assert_eq!(parse_iso8601("2023-11-15T00:13:20+02:00"), Some(1_700_000_000_000));
        assert_eq!(parse_iso8601("1970-01-01"), Some(0));
        assert_eq!(parse_iso8601("2024-02-29T00:00"), Some(1_709_164_800_000));
        for bad in ["", "2023-13-01", "2023-11-14T25:00", "yesterday", "2023-11-14Tx"] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
    }

    #[test]
    fn signed_up_at_is_one_time_within_2000_and_tomorrow() {
        let now = 1_800_000_000_000;
        // Seconds, milliseconds and ISO text of the same instant are the same sign-up time.
        for v in [Value::Num(1_700_000_000.0), Value::Num(1_700_000_000_000.0), Value::Str("2023-11-14T22:13:20Z".into())] {
            assert_eq!(signed_up_at(&v, now), Ok(1_700_000_000_000), "{v:?}");
        }
        assert_eq!(signed_up_at(&Value::Num(EARLIEST_SIGNUP_MS as f64), now), Ok(EARLIEST_SIGNUP_MS));
        assert_eq!(signed_up_at(&Value::Num((now + DAY) as f64), now), Ok(now + DAY));
        for bad in [-1e18, 0.0, 1e18, 1e300, (EARLIEST_SIGNUP_MS - 1) as f64, (now + DAY + 1) as f64] {
            assert!(signed_up_at(&Value::Num(bad), now).is_err(), "{bad}");
        }
        assert!(signed_up_at(&Value::Str("1999-12-31".into()), now).is_err());
        assert!(signed_up_at(&Value::Str("soon".into()), now).is_err());
        assert!(signed_up_at(&Value::Bool(true), now).is_err());
    }
}
