//! Substring search and splitting for the guide's wasm, on bytes and `str::get`.
//!
//! std's `&str` patterns (`split(">>>")`, `contains("**")`, `replace`) and `&s[i..]` slicing
//! each carry a panic path (`slice_error_fail`) that formats the offending character with
//! `{:?}`: that one path links `char`'s `Debug`, its escaping and Unicode's printable tables
//! into the bundle. These helpers cannot panic, so with every guide caller using them the full
//! SDK's wasm leaves all of it out (measured: see BENCHMARKS.md's change log, branch
//! `guide-size`). The strings here are short (selectors, tip text), so a plain scan is enough.

use alloc::string::String;

/// Byte offset of the first `needle` in `hay` (`Some(0)` for an empty needle, as `str::find`).
pub fn find(hay: &str, needle: &str) -> Option<usize> {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    let last = h.len().checked_sub(n.len())?;
    (0..=last).find(|&i| h.get(i..i + n.len()) == Some(n))
}

pub fn contains(hay: &str, needle: &str) -> bool {
    find(hay, needle).is_some()
}

/// `hay` split on `sep` (not empty), as `str::split` splits it.
pub fn split<'a>(hay: &'a str, sep: &'a str) -> impl Iterator<Item = &'a str> {
    let mut rest = Some(hay);
    ::core::iter::from_fn(move || {
        let r = rest?;
        // A match starts on `sep`'s first byte, a char boundary, so `get` succeeds there.
        match find(r, sep).filter(|_| !sep.is_empty()) {
            Some(i) => {
                rest = r.get(i + sep.len()..);
                r.get(..i)
            }
            None => rest.take(),
        }
    })
}

/// `hay` with every `from` replaced by `to` (`from` not empty).
pub fn replace(hay: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(hay.len());
    let mut parts = split(hay, from);
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    for part in parts {
        out.push_str(to);
        out.push_str(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn agrees_with_std() {
        let cases = ["", "a", ">>>", "a>>>b", ">>>a>>>", "a >>> b >>> c", "é>>>ü>>>", "a>>b>>>>c", ">>>>>>", "**x**", "{userId}/{userId}"];
        for hay in cases {
            for needle in [">>>", "**", "{userId}", "é", "a"] {
                assert_eq!(find(hay, needle), hay.find(needle), "find({hay:?}, {needle:?})");
                assert_eq!(split(hay, needle).collect::<Vec<_>>(), hay.split(needle).collect::<Vec<_>>(), "split({hay:?}, {needle:?})");
                assert_eq!(replace(hay, needle, "<>"), hay.replace(needle, "<>"), "replace({hay:?}, {needle:?})");
            }
            assert_eq!(find(hay, ""), Some(0));
        }
    }
}
