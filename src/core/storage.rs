//! Key-value storage behind a trait: `localStorage` in the browser, memory in tests and when
//! the browser refuses storage (private modes, full quota). Everything the SDK persists (the
//! event queue, the user's milestone state) goes through it.

use std::collections::BTreeMap;

pub trait KeyValue {
    fn get(&self, key: &str) -> Option<String>;
    /// Returns false when the value could not be stored (quota exceeded, storage disabled),
    /// so callers can fall back to memory instead of losing data silently.
    fn set(&mut self, key: &str, value: &str) -> bool;
    fn remove(&mut self, key: &str);
    /// Keys starting with `prefix` (to find other tabs' queues, for instance).
    fn keys_with_prefix(&self, prefix: &str) -> Vec<String>;
}

/// In-memory storage, optionally with a byte quota to exercise the "storage full" paths.
#[derive(Clone, Debug, Default)]
pub struct MemoryStorage {
    pub entries: BTreeMap<String, String>,
    pub quota_bytes: Option<usize>,
}

impl MemoryStorage {
    pub fn with_quota(bytes: usize) -> MemoryStorage {
        MemoryStorage { entries: BTreeMap::new(), quota_bytes: Some(bytes) }
    }

    fn used_without(&self, key: &str) -> usize {
        self.entries.iter().filter(|(k, _)| k.as_str() != key).map(|(k, v)| k.len() + v.len()).sum()
    }
}

impl KeyValue for MemoryStorage {
    fn get(&self, key: &str) -> Option<String> {
        self.entries.get(key).cloned()
    }
    fn set(&mut self, key: &str, value: &str) -> bool {
        if let Some(quota) = self.quota_bytes {
            if self.used_without(key) + key.len() + value.len() > quota {
                return false;
            }
        }
        self.entries.insert(key.into(), value.into());
        true
    }
    fn remove(&mut self, key: &str) {
        self.entries.remove(key);
    }
    fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        self.entries.keys().filter(|k| k.starts_with(prefix)).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_refuses_writes_that_do_not_fit() {
        let mut s = MemoryStorage::with_quota(10);
        assert!(s.set("a", "12345"));
        assert!(!s.set("b", "123456789"));
        assert!(s.set("a", "123456789"), "replacing a value frees its old bytes");
        assert_eq!(s.keys_with_prefix("a"), vec!["a".to_string()]);
    }
}
