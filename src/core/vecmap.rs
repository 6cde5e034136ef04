//! A map kept as a sorted `Vec`: the engine's per-user maps hold a handful of entries, and
//! `BTreeMap` with its node code and bulk-build sorts costs tens of kilobytes in the wasm bundle.
//! Same iteration order as `BTreeMap` (by key), and the subset of its API the engine and tips use.

use alloc::string::String;
use alloc::vec::Vec;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VecMap<V>(Vec<(String, V)>);

impl<V> Default for VecMap<V> {
    fn default() -> Self {
        VecMap(Vec::new())
    }
}

pub struct Entry<'a, V> {
    map: &'a mut VecMap<V>,
    at: Result<usize, usize>,
    key: String,
}

impl<'a, V> Entry<'a, V> {
    pub fn or_insert(self, value: V) -> &'a mut V {
        let i = match self.at {
            Ok(i) => i,
            Err(i) => {
                self.map.0.insert(i, (self.key, value));
                i
            }
        };
        &mut self.map.0[i].1
    }
    pub fn or_default(self) -> &'a mut V
    where
        V: Default,
    {
        self.or_insert(V::default())
    }
}

impl<V> VecMap<V> {
    pub fn new() -> Self {
        VecMap(Vec::new())
    }
    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }
    pub fn get(&self, key: &str) -> Option<&V> {
        self.find(key).ok().map(|i| &self.0[i].1)
    }
    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.find(key).ok().map(|i| &mut self.0[i].1)
    }
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }
    pub fn insert(&mut self, key: String, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => Some(::core::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }
    pub fn remove(&mut self, key: &str) -> Option<V> {
        self.find(key).ok().map(|i| self.0.remove(i).1)
    }
    pub fn entry(&mut self, key: String) -> Entry<'_, V> {
        let at = self.find(&key);
        Entry { map: self, at, key }
    }
    pub fn retain(&mut self, mut keep: impl FnMut(&String, &mut V) -> bool) {
        self.0.retain_mut(|(k, v)| keep(k, v));
    }
    pub fn iter(&self) -> impl Iterator<Item = (&String, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(k, _)| k)
    }
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.0.iter().map(|(_, v)| v)
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Builds by inserting, so later duplicates win as in `BTreeMap`, without a sort's code.
impl<V> FromIterator<(String, V)> for VecMap<V> {
    fn from_iter<I: IntoIterator<Item = (String, V)>>(items: I) -> Self {
        let mut map = VecMap::new();
        for (k, v) in items {
            map.insert(k, v);
        }
        map
    }
}

impl<'a, V> IntoIterator for &'a VecMap<V> {
    type Item = (&'a String, &'a V);
    type IntoIter = ::core::iter::Map<::core::slice::Iter<'a, (String, V)>, fn(&'a (String, V)) -> (&'a String, &'a V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl<V> ::core::ops::Index<&str> for VecMap<V> {
    type Output = V;
    /// Panics when the key is absent, as `BTreeMap`'s does (tests only; the SDK uses `get`).
    fn index(&self, key: &str) -> &V {
        match self.get(key) {
            Some(v) => v,
            None => panic!("no entry {key:?}"),
        }
    }
}

/// A JSON object on the wire (the persisted user state's maps).
#[cfg(feature = "serde")]
impl<V: serde::Serialize> serde::Serialize for VecMap<V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

#[cfg(feature = "serde")]
impl<'de, V: serde::Deserialize<'de>> serde::Deserialize<'de> for VecMap<V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries<V>(::core::marker::PhantomData<V>);
        impl<'de, V: serde::Deserialize<'de>> serde::de::Visitor<'de> for Entries<V> {
            type Value = VecMap<V>;
            fn expecting(&self, f: &mut ::core::fmt::Formatter) -> ::core::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut entries: A) -> Result<VecMap<V>, A::Error> {
                let mut map = VecMap::new();
                while let Some((k, v)) = entries.next_entry::<String, V>()? {
                    map.insert(k, v);
                }
                Ok(map)
            }
        }
        d.deserialize_map(Entries(::core::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_keys_sorted_and_unique() {
        let mut m = VecMap::new();
        for k in ["b", "a", "c", "a"] {
            *m.entry(k.to_string()).or_insert(0) += 1;
        }
        assert_eq!(m.iter().map(|(k, v)| (k.as_str(), *v)).collect::<Vec<_>>(), [("a", 2), ("b", 1), ("c", 1)]);
        assert_eq!(m.insert("b".into(), 7), Some(1));
        assert_eq!(m.remove("a"), Some(2));
        m.retain(|_, v| *v > 1);
        assert_eq!(m.keys().collect::<Vec<_>>(), ["b"]);
        assert!(m.contains_key("b") && !m.contains_key("a"));
    }
}
