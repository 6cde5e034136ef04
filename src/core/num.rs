//! Numbers to and from JSON text without Rust's float formatting and parsing in the wasm SDK.
//!
//! `f64`'s `Display` (Grisu/Dragon with their tables) and `str::parse::<f64>` (dec2flt) were
//! about 20 KB of the ≈ 100 KB wasm (twiggy, see BENCHMARKS.md), for numbers that are almost
//! always integers: timestamps, counts. So integers take a small exact path here, and the rare
//! fraction or exponent goes to the engine's own shortest round-trip conversions: JavaScript's
//! `parseFloat` and `Number.prototype.toString` in the browser, std natively (the collector,
//! and tests).
//!
//! The only difference the browser sees is notation: JavaScript writes `1e-7` and `1e+21`
//! where Rust writes every digit; both are valid JSON for the same number.

use alloc::string::String;

/// Integers whose every value an `f64` holds exactly (2^53).
const EXACT: f64 = 9_007_199_254_740_992.0;

/// Writes `n` in decimal, without `core::fmt`.
pub fn write_int(out: &mut String, n: i64) {
    if n < 0 {
        out.push('-');
    }
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = n.unsigned_abs();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        out.push(d as char);
    }
}

/// Writes a JSON number: integers without a fraction, non-finite values as `null`.
pub fn write_f64(out: &mut String, n: f64) {
    if !n.is_finite() {
        out.push_str("null");
    } else if n % 1.0 == 0.0 && n.abs() < EXACT {
        write_int(out, n as i64);
    } else {
        platform::write(out, n);
    }
}

/// Reads an integer as `str::parse::<i64>` does (an optional sign, then ASCII digits; `None`
/// on anything else or on overflow). Hand-written for the tracker: std's generic integer
/// parsing, instantiated for each type and call site, cost it 470 B raw, 250 B gzip (measured).
pub fn parse_int(text: &str) -> Option<i64> {
    let (negative, digits) = match text.as_bytes() {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        all => (false, all),
    };
    if digits.is_empty() {
        return None;
    }
    // Accumulated negatively: i64::MIN has no positive counterpart.
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_sub(i64::from(d - b'0'))?;
    }
    if negative {
        Some(v)
    } else {
        v.checked_neg()
    }
}

/// Reads a number token as `str::parse::<f64>` does, accepting the same spellings (so `1.`,
/// `.5` and `01` as well as JSON's own) and refusing the rest.
pub fn parse_f64(text: &str) -> Option<f64> {
    let b = text.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'-' | b'+')));
    let int_start = i;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let int_digits = i - int_start;
    if i == b.len() && int_digits > 0 && int_digits <= 15 {
        // Up to 15 digits is exact in both i64 and f64.
        let v = b[int_start..].iter().fold(0i64, |v, d| v * 10 + i64::from(d - b'0'));
        return Some(if b[0] == b'-' { -(v as f64) } else { v as f64 });
    }
    let mut frac_digits = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
            frac_digits += 1;
        }
    }
    if int_digits + frac_digits == 0 {
        return None;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == exp_start {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    Some(platform::parse(text))
}

#[cfg(not(target_arch = "wasm32"))]
mod platform {
    pub fn write(out: &mut String, n: f64) {
        use ::core::fmt::Write;
        let _ = write!(out, "{n}");
    }
    /// Only called with text `parse_f64` has checked.
    pub fn parse(text: &str) -> f64 {
        text.parse().unwrap_or(f64::NAN)
    }
}

// JavaScript's builtins, not the DOM: the core stays free of web-sys.
#[cfg(target_arch = "wasm32")]
mod platform {
    use alloc::string::String;

    pub fn write(out: &mut String, n: f64) {
        if let Some(s) = js_sys::Number::from(n).to_string_with_radix(10).ok().and_then(|s| s.as_string()) {
            out.push_str(&s);
        }
    }
    /// Only called with text `parse_f64` has checked (the whole of it is a number), which
    /// `parseFloat` reads as Rust would.
    pub fn parse(text: &str) -> f64 {
        js_sys::Number::parse_float(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// std's parser is the oracle: the same answer for every spelling, edge and overflow.
    #[test]
    fn parse_int_reads_what_std_reads() {
        let cases = [
            "", "-", "+", "0", "-0", "+0", "7", "-7", "+7", "007", "12a", "a12", " 1", "1 ", "1.0", "--1", "+-1", "9223372036854775807",
            "9223372036854775808", "-9223372036854775808", "-9223372036854775809", "1700000000000", "٣", "99999999999999999999",
        ];
        for case in cases {
            assert_eq!(parse_int(case), case.parse::<i64>().ok(), "{case:?}");
        }
    }

    fn written(n: f64) -> String {
        let mut s = String::new();
        write_f64(&mut s, n);
        s
    }

    #[test]
    fn writes_integers_exactly_and_fractions_shortest() {
        assert_eq!(written(0.0), "0");
        assert_eq!(written(-0.0), "0");
        assert_eq!(written(1_700_000_000_123.0), "1700000000123");
        assert_eq!(written(-42.0), "-42");
        assert_eq!(written(0.1), "0.1");
        assert_eq!(written(f64::NAN), "null");
        let mut s = String::new();
        write_int(&mut s, i64::MIN);
        assert_eq!(s, i64::MIN.to_string());
    }

    #[test]
    fn parses_what_std_parses() {
        let cases = [
            "0", "-0", "7", "-12", "123456789012345", "1234567890123456789", "1.5", "-0.25", "1e3", "1E-3",
            "2.5e+10", "1.", ".5", "-.5", "01", "1e400", "", "-", ".", "1e", "1e+", "1-2", "1..2", "--1", "1.2.3",
            "e5", "1e5.5", "+1",
        ];
        for case in cases {
            let std: Option<f64> = case.parse().ok();
            let ours = parse_f64(case);
            assert_eq!(ours.map(f64::to_bits), std.map(f64::to_bits), "{case:?}");
        }
    }
}
