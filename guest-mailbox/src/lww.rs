//! Last-writer-wins maps: the keyed collections (contacts, allow and block
//! lists, preferences, plugins) as registers stamped with (hlc, replica).
//!
//! Every replica applies the same operations, but concurrent ones may reach
//! it in any order. A key therefore keeps the stamp of its last write even
//! when that write removed it (a tombstone), so an older write arriving
//! late loses against it exactly as it would had it arrived first.
//!
//! Why writes never fail on "already there" or "already gone": the guest
//! cannot tell an operation made here from one replayed from a replica. A
//! put of a present key or a remove of a removed key must still move the
//! stamp forward when it is a concurrent replica's write, and the same code
//! runs at the origin, so at the origin it succeeds too (put is an upsert,
//! a repeated remove is a no-op that refreshes the tombstone). A key never
//! seen at all is still `not-found` on remove: under causal delivery a
//! replayed remove always finds at least the write it saw.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::state::Stamp;

/// One key's register: its value, or a tombstone when `live` is false.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lww<V> {
    /// Stamp of the last write, put or remove.
    pub stamp: Stamp,
    pub live: bool,
    /// Reset to the default when removed, so tombstones stay small.
    pub value: V,
}

/// What a write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// The write is the newest for its key and took effect.
    Applied,
    /// A newer write (or this very one, replayed) already holds the key.
    Stale,
    /// A remove of a key this map never held.
    Unknown,
}

/// A map of LWW registers that also counts its live keys, so limits are
/// checked without a scan. Serialises as the bare `BTreeMap`.
#[derive(Clone, Debug, PartialEq)]
pub struct LwwMap<V> {
    entries: BTreeMap<String, Lww<V>>,
    live: usize,
}

impl<V> Default for LwwMap<V> {
    fn default() -> Self {
        LwwMap {
            entries: BTreeMap::new(),
            live: 0,
        }
    }
}

impl<V: Default> LwwMap<V> {
    /// Live entries only, by key.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &V)> {
        self.entries
            .iter()
            .filter(|(_, e)| e.live)
            .map(|(k, e)| (k, &e.value))
    }

    /// Every register, tombstones included, by key.
    pub fn registers(&self) -> &BTreeMap<String, Lww<V>> {
        &self.entries
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.entries.get(key).filter(|e| e.live).map(|e| &e.value)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Live keys.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Tombstones.
    pub fn removed(&self) -> usize {
        self.entries.len() - self.live
    }

    /// Sets `key` to `value` unless a write at least as new is there.
    pub fn put(&mut self, key: String, value: V, stamp: Stamp) -> Write {
        match self.entries.get_mut(&key) {
            Some(e) if e.stamp >= stamp => Write::Stale,
            Some(e) => {
                if !e.live {
                    self.live += 1;
                }
                *e = Lww {
                    stamp,
                    live: true,
                    value,
                };
                Write::Applied
            }
            None => {
                self.live += 1;
                self.entries.insert(
                    key,
                    Lww {
                        stamp,
                        live: true,
                        value,
                    },
                );
                Write::Applied
            }
        }
    }

    /// Turns `key` into a tombstone unless a write at least as new is there.
    pub fn remove(&mut self, key: &str, stamp: Stamp) -> Write {
        let Some(e) = self.entries.get_mut(key) else {
            return Write::Unknown;
        };
        if e.stamp >= stamp {
            return Write::Stale;
        }
        if e.live {
            self.live -= 1;
        }
        *e = Lww {
            stamp,
            live: false,
            value: V::default(),
        };
        Write::Applied
    }

    /// Forgets the oldest tombstones beyond `max`. A forgotten tombstone
    /// lets an older, late put of that key win again; only a collection
    /// that churned through more than `max` removed keys is exposed.
    pub fn prune(&mut self, max: usize) {
        while self.removed() > max {
            let oldest = self
                .entries
                .iter()
                .filter(|(_, e)| !e.live)
                .min_by_key(|(k, e)| (e.stamp, *k))
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.entries.remove(&k),
                None => break,
            };
        }
    }
}

impl<V: Default> FromIterator<(String, V)> for LwwMap<V> {
    /// Live entries stamped zero: what a schema-1 state had, whose writes
    /// carried no stamps, so any stamped write supersedes them.
    fn from_iter<I: IntoIterator<Item = (String, V)>>(iter: I) -> Self {
        let entries: BTreeMap<String, Lww<V>> = iter
            .into_iter()
            .map(|(k, value)| {
                let e = Lww {
                    stamp: Stamp::default(),
                    live: true,
                    value,
                };
                (k, e)
            })
            .collect();
        LwwMap {
            live: entries.len(),
            entries,
        }
    }
}

impl<V: Serialize> Serialize for LwwMap<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.entries.serialize(s)
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for LwwMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries = BTreeMap::<String, Lww<V>>::deserialize(d)?;
        let live = entries.values().filter(|e| e.live).count();
        Ok(LwwMap { entries, live })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(hlc: u64) -> Stamp {
        Stamp { hlc, replica: 1 }
    }

    #[test]
    fn newest_write_wins_in_any_order() {
        let writes: [(u64, Option<&str>); 3] = [(1, Some("a")), (3, None), (2, Some("b"))];
        let mut results = Vec::new();
        for order in [[0, 1, 2], [2, 1, 0], [1, 0, 2], [2, 0, 1]] {
            let mut m = LwwMap::<String>::default();
            m.put("k".into(), "seed".into(), st(0));
            for i in order {
                let (h, v) = writes[i];
                match v {
                    Some(v) => m.put("k".into(), v.into(), st(h)),
                    None => m.remove("k", st(h)),
                };
            }
            results.push(m);
        }
        assert!(results.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(results[0].get("k"), None);
        assert_eq!((results[0].len(), results[0].removed()), (0, 1));
    }

    #[test]
    fn remove_of_unknown_key_and_replays() {
        let mut m = LwwMap::<String>::default();
        assert_eq!(m.remove("x", st(1)), Write::Unknown);
        assert_eq!(m.put("x".into(), "v".into(), st(2)), Write::Applied);
        assert_eq!(m.put("x".into(), "v".into(), st(2)), Write::Stale);
        assert_eq!(m.remove("x", st(3)), Write::Applied);
        assert_eq!(m.remove("x", st(4)), Write::Applied);
        assert_eq!(m.remove("x", st(4)), Write::Stale);
    }

    #[test]
    fn prune_drops_oldest_tombstones_only() {
        let mut m = LwwMap::<String>::default();
        for i in 0..5 {
            m.put(format!("k{i}"), "v".into(), st(i));
        }
        for i in 0..4 {
            m.remove(&format!("k{i}"), st(10 + i));
        }
        m.prune(2);
        let keys: Vec<&String> = m.registers().keys().collect();
        assert_eq!(keys, ["k2", "k3", "k4"]);
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn serde_round_trip_recounts() {
        let mut m = LwwMap::<String>::default();
        m.put("a".into(), "1".into(), st(1));
        m.put("b".into(), "2".into(), st(2));
        m.remove("a", st(3));
        let bytes = rmp_serde::to_vec(&m).unwrap();
        let back: LwwMap<String> = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.len(), 1);
    }
}
