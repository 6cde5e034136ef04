//! Stable selectors for an element a product manager picked in preview (the element picker):
//! candidates best first, from what the element and its ancestors carry. Test attributes
//! (`data-testid` and kin) and ids come first because teams keep them stable on purpose; then
//! short class paths; a structural path (`:nth-of-type`) last, as it breaks when the page
//! changes. The browser layer keeps the first candidate that matches exactly the picked element.
//!
//! Pure, so the choice is tested natively; guide build only (`format!` is fine here).

/// One element as the picker reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Node {
    /// Lower case.
    pub tag: String,
    pub id: Option<String>,
    pub classes: Vec<String>,
    /// Its `data-*` attributes, in document order.
    pub data: Vec<(String, String)>,
    /// 1-based position among its parent's children of the same tag.
    pub nth_of_type: usize,
}

/// Attributes teams put on elements for tests, most specific first.
const TEST_ATTRIBUTES: [&str; 7] = ["data-testid", "data-test-id", "data-test", "data-cy", "data-qa", "data-e2e", "data-pw"];

/// An id or class that a framework or build generated (`:r1:`, `ember123`, `css-1x2y3z`,
/// a UUID) changes between builds or page loads: not worth anchoring on.
fn generated(name: &str) -> bool {
    let mut run = 0;
    let mut longest = 0;
    for c in name.chars() {
        run = if c.is_ascii_digit() { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let hashed_prefix = ["css-", "sc-", "jsx-", "emotion-", "svelte-", "ng-", "_"].iter().any(|p| name.starts_with(p));
    name.is_empty() || name.len() > 40 || longest >= 3 || name.contains(':') || hashed_prefix
}

/// CSS identifier escaping (as `CSS.escape`) for ids and classes.
pub fn ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, c) in name.chars().enumerate() {
        let plain = c.is_ascii_alphanumeric() || c == '-' || c == '_' || !c.is_ascii();
        if i == 0 && c.is_ascii_digit() {
            out.push_str(&format!("\\{:x} ", c as u32));
        } else if plain {
            out.push(c);
        } else {
            out.push('\\');
            out.push(c);
        }
    }
    out
}

fn attribute(name: &str, value: &str) -> String {
    format!("[{name}=\"{}\"]", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The element's own short selectors, best first.
fn own(node: &Node) -> Vec<String> {
    let mut out = Vec::new();
    for attr in TEST_ATTRIBUTES {
        if let Some((_, v)) = node.data.iter().find(|(k, _)| k == attr) {
            out.push(attribute(attr, v));
        }
    }
    if let Some(id) = node.id.as_deref().filter(|id| !generated(id)) {
        out.push(format!("#{}", ident(id)));
    }
    // Other data attributes (not framework bookkeeping such as Vue's `data-v-…`).
    for (k, v) in &node.data {
        let bookkeeping = k.starts_with("data-v-") || k.starts_with("data-react") || TEST_ATTRIBUTES.contains(&k.as_str());
        if !bookkeeping && !v.is_empty() && v.len() <= 40 {
            out.push(format!("{}{}", node.tag, attribute(k, v)));
        }
    }
    let classes: Vec<&String> = node.classes.iter().filter(|c| !generated(c)).take(2).collect();
    if let Some(first) = classes.first() {
        out.push(format!("{}.{}", node.tag, ident(first)));
    }
    if classes.len() == 2 {
        out.push(format!("{}.{}.{}", node.tag, ident(classes[0]), ident(classes[1])));
    }
    out
}

/// An ancestor's selector good enough to anchor on: a test attribute or a stable id.
fn anchor(node: &Node) -> Option<String> {
    own(node).into_iter().find(|s| s.starts_with('[') || s.starts_with('#'))
}

fn structural(node: &Node) -> String {
    format!("{}:nth-of-type({})", node.tag, node.nth_of_type.max(1))
}

/// Candidate selectors for `path[0]`, best first; `path[1..]` are its ancestors up to the root
/// of its tree (the document, or the shadow root it is in). The last candidate is a structural
/// path from the root, which always finds the element while the page keeps its shape.
pub fn candidates(path: &[Node]) -> Vec<String> {
    let Some(element) = path.first() else { return Vec::new() };
    let mut out = own(element);
    let short = out.clone();
    // The element's part under an anchor: its short class selector, else its tag.
    let tail = short.iter().find(|s| s.starts_with(element.tag.as_str()) && s.contains('.')).cloned().unwrap_or_else(|| element.tag.clone());
    // Under the nearest anchored ancestor: `[data-testid="invite-form"] button.primary`.
    if let Some((depth, a)) = path.iter().enumerate().skip(1).find_map(|(i, n)| anchor(n).map(|a| (i, a))) {
        out.push(format!("{a} {tail}"));
        let steps: Vec<String> = path[..depth].iter().rev().map(structural).collect();
        out.push(format!("{a} > {}", steps.join(" > ")));
    }
    // Under a short class path of the parent: `nav.sidebar a.item`.
    if let Some(parent) = path.get(1) {
        if let Some(p) = own(parent).into_iter().find(|s| s.contains('.')) {
            out.push(format!("{p} {tail}"));
        }
    }
    let full: Vec<String> = path.iter().rev().filter(|n| n.tag != "html").map(structural).collect();
    out.push(full.join(" > "));
    let mut seen = std::collections::HashSet::new();
    out.retain(|s| seen.insert(s.clone()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(tag: &str, id: Option<&str>, classes: &[&str], data: &[(&str, &str)], nth: usize) -> Node {
        Node {
            tag: tag.into(),
            id: id.map(Into::into),
            classes: classes.iter().map(|c| c.to_string()).collect(),
            data: data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            nth_of_type: nth,
        }
    }

    #[test]
    fn test_attributes_and_ids_come_first_then_classes_then_structure() {
        let path = [
            node("button", Some("save"), &["btn", "primary"], &[("data-testid", "save-project"), ("data-v-1a2b3c", "")], 2),
            node("form", Some("project-form"), &[], &[], 1),
            node("body", None, &[], &[], 1),
        ];
        let c = candidates(&path);
        assert_eq!(&c[..4], ["[data-testid=\"save-project\"]", "#save", "button.btn", "button.btn.primary"]);
        assert!(c.contains(&"#project-form button.btn".to_string()));
        assert_eq!(c.last().map(String::as_str), Some("body:nth-of-type(1) > form:nth-of-type(1) > button:nth-of-type(2)"));
    }

    #[test]
    fn generated_ids_and_classes_are_not_anchored_on() {
        for name in [":r1:", "ember123", "css-1x2y3z", "sc-bdVaJa", "a1b2c3d4-0000-4000-8000-000000000000", "_3xYz"] {
            assert!(generated(name), "{name}");
        }
        for name in ["new-project", "upload-file", "btn", "h2", "step-1"] {
            assert!(!generated(name), "{name}");
        }
        let path = [node("a", Some(":r7:"), &["css-9f8e7d"], &[], 3), node("nav", None, &["sidebar"], &[], 1)];
        assert_eq!(candidates(&path), ["nav.sidebar a", "nav:nth-of-type(1) > a:nth-of-type(3)"]);
    }

    #[test]
    fn awkward_names_are_escaped() {
        assert_eq!(ident("1st"), "\\31 st");
        assert_eq!(ident("a.b"), "a\\.b");
        assert_eq!(attribute("data-testid", "say \"hi\""), "[data-testid=\"say \\\"hi\\\"\"]");
    }
}
