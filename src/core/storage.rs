//! Key-value storage behind a trait: `localStorage` in the browser, memory in tests and when
//! the browser refuses storage (private modes, full quota). Everything the SDK persists (the
//! event queue, the user's milestone state) goes through it.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

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

/// Holds writes until [`WriteBehind::flush`], so a burst of changes in one task (a page's
/// `track` calls, say) costs one storage write per key instead of one per change: in the
/// browser `localStorage.setItem` is by far the dearest part of recording an event. Reads see
/// the pending values, so the owner never notices the delay; other tabs see them after the
/// flush, which the browser layer runs at the end of the task.
pub struct WriteBehind<S> {
    pub inner: S,
    /// Key and value, or `None` for a removal; at most one entry per key.
    pending: Vec<(String, Option<String>)>,
}

impl<S: KeyValue> WriteBehind<S> {
    pub fn new(inner: S) -> WriteBehind<S> {
        WriteBehind { inner, pending: Vec::new() }
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Writes everything pending. A write the storage refuses is dropped here: its owner keeps
    /// the state in memory and writes it again with its next change.
    pub fn flush(&mut self) {
        for (key, value) in ::core::mem::take(&mut self.pending) {
            match value {
                Some(value) => {
                    self.inner.set(&key, &value);
                }
                None => self.inner.remove(&key),
            }
        }
    }

    fn stage(&mut self, key: &str, value: Option<String>) {
        match self.pending.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.pending.push((key.into(), value)),
        }
    }
}

impl<S: KeyValue> KeyValue for WriteBehind<S> {
    fn get(&self, key: &str) -> Option<String> {
        match self.pending.iter().find(|(k, _)| k == key) {
            Some((_, value)) => value.clone(),
            None => self.inner.get(key),
        }
    }
    fn set(&mut self, key: &str, value: &str) -> bool {
        self.stage(key, Some(value.into()));
        true
    }
    fn remove(&mut self, key: &str) {
        self.stage(key, None);
    }
    fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        let mut keys = self.inner.keys_with_prefix(prefix);
        for (key, value) in self.pending.iter().filter(|(k, _)| k.starts_with(prefix)) {
            match value {
                Some(_) if !keys.contains(key) => keys.push(key.clone()),
                None => keys.retain(|k| k != key),
                _ => {}
            }
        }
        keys
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

    #[test]
    fn write_behind_reads_its_own_writes_and_stores_them_on_flush() {
        let mut inner = MemoryStorage::default();
        inner.set("old", "1");
        inner.set("gone", "2");
        let mut s = WriteBehind::new(inner);
        s.set("k", "a");
        s.set("k", "b");
        s.remove("gone");
        assert_eq!(s.get("k").as_deref(), Some("b"));
        assert_eq!(s.get("gone"), None);
        assert_eq!(s.inner.get("k"), None, "nothing written before the flush");
        let mut keys = s.keys_with_prefix("");
        keys.sort();
        assert_eq!(keys, vec!["k".to_string(), "old".to_string()]);
        s.flush();
        assert!(!s.has_pending());
        assert_eq!(s.inner.get("k").as_deref(), Some("b"));
        assert_eq!(s.inner.get("gone"), None);
        assert_eq!(s.inner.get("old").as_deref(), Some("1"));
    }
}
