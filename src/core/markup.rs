//! The small, safe markup a plan's tip text may use, and nothing else:
//!
//! - `**bold**`, `*italic*`
//! - `[label](https://example.com/docs)`: links with `http:` or `https:` URLs only
//! - `\*` for a literal star (likewise `\[`, `\]`, `\\`)
//!
//! Everything else is text. Tip text is never HTML: the browser layer turns each [`Span`] into
//! text nodes inside `<b>`, `<i>` or `<a>` elements it creates itself, so a plan carrying
//! `<script>`, `onerror=` attributes or `javascript:` URLs shows those characters and runs
//! nothing. A link whose URL is not http(s) keeps its label as plain text.

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;

/// A run of text with one formatting.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub text: String,
    pub bold: bool,
    pub italic: bool,
    /// Only ever an `http:`/`https:` URL (see [`safe_url`]).
    pub href: Option<String>,
}

/// True for absolute `http:` and `https:` URLs without whitespace or control characters (which
/// browsers strip, so `java\tscript:` could otherwise sneak past a prefix check).
pub fn safe_url(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://"))
        && url.len() > 8
        && !url.chars().any(|c| c <= ' ' || c == '\u{7f}' || c == '"' || c == '<' || c == '>' || c == '\\')
}

/// True for a path on the page's own site: one leading `/`, never `//` or `/\\` (browsers read
/// both as "another host": `//evil.example/x` leaves the site), and no whitespace, control
/// characters or backslashes anywhere (browsers strip or rewrite those, so `/\t/evil.example`
/// would become `//evil.example`).
pub fn same_site_path(url: &str) -> bool {
    url.starts_with('/')
        && !url.starts_with("//")
        && !url.chars().any(|c| c <= ' ' || c == '\u{7f}' || c == '\\')
}

/// Splits tip text into formatted runs.
pub fn parse(src: &str) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    let mut cur = Span::default();
    let mut i = 0;
    let b = src.as_bytes();
    // Indexing by byte is safe: every marker is ASCII, and text is copied by char boundaries
    // found with `char_indices`-compatible arithmetic (`len_utf8`).
    while i < b.len() {
        let rest = src.get(i..).unwrap_or_default();
        if b[i] == b'\\' && matches!(b.get(i + 1), Some(b'*' | b'[' | b']' | b'\\' | b'_')) {
            cur.text.push(b[i + 1] as char);
            i += 2;
            continue;
        }
        if let Some(after) = rest.strip_prefix("**") {
            if cur.bold || super::substr::contains(after, "**") {
                flush(&mut out, &mut cur);
                cur.bold = !cur.bold;
            } else {
                cur.text.push_str("**");
            }
            i += 2;
            continue;
        }
        if b[i] == b'*' && (cur.italic || rest.get(1..).is_some_and(|r| r.contains('*'))) {
            flush(&mut out, &mut cur);
            cur.italic = !cur.italic;
            i += 1;
            continue;
        }
        if b[i] == b'[' {
            if let Some((label, url, used)) = link(rest) {
                flush(&mut out, &mut cur);
                let href = safe_url(url).then(|| url.to_owned());
                out.push(Span { text: label.to_owned(), bold: cur.bold, italic: cur.italic, href });
                i += used;
                continue;
            }
        }
        let Some(c) = rest.chars().next() else { break };
        cur.text.push(c);
        i += c.len_utf8();
    }
    flush(&mut out, &mut cur);
    // Merge neighbours that ended up with the same formatting (a rejected link, say).
    let mut merged: Vec<Span> = Vec::with_capacity(out.len());
    for s in out {
        match merged.last_mut() {
            Some(last) if last.bold == s.bold && last.italic == s.italic && last.href.is_none() && s.href.is_none() => {
                last.text.push_str(&s.text)
            }
            _ => merged.push(s),
        }
    }
    merged
}

fn flush(out: &mut Vec<Span>, cur: &mut Span) {
    if !cur.text.is_empty() {
        out.push(Span { text: ::core::mem::take(&mut cur.text), ..cur.clone() });
    }
}

/// `[label](url)` at the start of `s`: the label, the URL and the bytes used.
fn link(s: &str) -> Option<(&str, &str, usize)> {
    let close = s.find(']')?;
    let label = s.get(1..close)?;
    if label.is_empty() || label.contains('[') || !s.get(close + 1..)?.starts_with('(') {
        return None;
    }
    let url_start = close + 2;
    let url_len = s.get(url_start..)?.find(')')?;
    let url = s.get(url_start..url_start + url_len)?;
    Some((label, url.trim(), url_start + url_len + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Span {
        Span { text: s.into(), ..Span::default() }
    }

    #[test]
    fn plain_text_is_one_span() {
        assert_eq!(parse("Create your first project."), vec![text("Create your first project.")]);
        assert_eq!(parse(""), vec![]);
    }

    #[test]
    fn bold_italic_and_links() {
        let spans = parse("Click **New project**, then *name it*. See [the guide](https://example.com/guide?a=1).");
        assert_eq!(
            spans,
            vec![
                text("Click "),
                Span { text: "New project".into(), bold: true, ..Span::default() },
                text(", then "),
                Span { text: "name it".into(), italic: true, ..Span::default() },
                text(". See "),
                Span { href: Some("https://example.com/guide?a=1".into()), ..text("the guide") },
                text("."),
            ]
        );
        let nested = parse("**bold [link](http://a.example) *both***");
        assert_eq!(nested[1], Span { text: "link".into(), bold: true, href: Some("http://a.example".into()), ..Span::default() });
        assert_eq!(nested[3], Span { text: "both".into(), bold: true, italic: true, href: None });
    }

    #[test]
    fn unclosed_markers_and_escapes_are_text() {
        assert_eq!(parse("2 * 3 = 6"), vec![text("2 * 3 = 6")]);
        assert_eq!(parse("**not closed"), vec![text("**not closed")]);
        assert_eq!(parse(r"\*literal\* and \[x\](y)"), vec![text("*literal* and [x](y)")]);
        assert_eq!(parse("[no url] and [](https://a.b) and [x](unclosed"), vec![text("[no url] and [](https://a.b) and [x](unclosed")]);
        assert_eq!(parse("héllo **wörld**")[1].text, "wörld");
    }

    #[test]
    fn html_is_text() {
        for hostile in [
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "<a href=\"javascript:alert(1)\" onclick=\"alert(2)\">x</a>",
            "<b onmouseover=alert(1)>hi</b>",
            "<svg/onload=alert(1)>",
            "&lt;script&gt;",
        ] {
            assert_eq!(parse(hostile), vec![text(hostile)], "{hostile}");
        }
    }

    #[test]
    fn only_http_links_become_links() {
        for url in [
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            " javascript:alert(1)",
            "java\tscript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "vbscript:msgbox(1)",
            "//evil.example/x",
            "/relative",
            "https://",
            "https://ok.example/\"onmouseover=\"alert(1)",
            "https://ok.example/<script>",
            "https://ok.example/a b",
            "\u{1}https://ok.example",
        ] {
            let spans = parse(&("[label](".to_owned() + url + ")"));
            assert!(spans.iter().all(|s| s.href.is_none()), "{url:?} became a link: {spans:?}");
            assert!(spans.iter().any(|s| s.text.contains("label")), "{url:?} lost its label");
        }
        for url in ["https://example.com", "HTTP://example.com/a#b", "https://example.com/a?x=1&y=2"] {
            assert!(safe_url(url), "{url}");
        }
    }

    #[test]
    fn same_site_paths_never_lead_to_another_host() {
        for ok in ["/", "/docs", "/a/b?c=d#e", "/%2F%2Fevil.example"] {
            assert!(same_site_path(ok), "{ok}");
        }
        for bad in ["//evil.example/x", "/\\evil.example/x", "/\t/evil.example", "/\n/evil.example", "/a\\b", "https://a.b", "docs", "", " /docs"] {
            assert!(!same_site_path(bad), "{bad:?}");
        }
    }
}
