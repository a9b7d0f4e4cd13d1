//! Version vectors: for each replica that ever made a change to a mailbox,
//! how many of its changes this copy has applied.
//!
//! Every mutation is stamped at the replica where it happened with an
//! [`OpId`]: that replica's number (the `replica` of its `op-context`) and
//! its own per-mailbox sequence number. Replicas apply each origin's ops in
//! sequence order and never skip one, so "applied everything of origin `o`
//! up to `n`" is one integer, and the vector of those integers says exactly
//! which ops a copy has. Two vectors tell what each side lacks, which is
//! all anti-entropy needs to send "only what the other lacks".

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Most origins one mailbox's vector may name. Each host that ever held a
/// replica and took a change adds one; a vector from a peer with more is
/// refused rather than letting a peer make us allocate without bound.
pub const VV_ORIGINS_MAX: usize = 4096;

/// Identity of one op: where it was made and its number there (from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OpId {
    pub origin: u64,
    pub seq: u64,
}

/// How an op relates to what a copy has applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Already applied: a duplicate, skip it.
    Seen,
    /// The next op of its origin: apply it.
    Next,
    /// Ops of its origin before it are missing: it must wait for them.
    Gap,
}

/// origin → highest sequence number applied (absent means 0).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionVector(BTreeMap<u64, u64>);

impl VersionVector {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, origin: u64) -> u64 {
        self.0.get(&origin).copied().unwrap_or(0)
    }

    /// How `op` fits after what this vector has applied.
    pub fn fit(&self, op: OpId) -> Fit {
        let have = self.get(op.origin);
        if op.seq <= have {
            Fit::Seen
        } else if op.seq == have + 1 {
            Fit::Next
        } else {
            Fit::Gap
        }
    }

    /// Records that `op` was applied. Only the next op of its origin may be
    /// recorded: anything else is a bug in the caller.
    pub fn record(&mut self, op: OpId) {
        assert_eq!(
            self.fit(op),
            Fit::Next,
            "op {op:?} recorded out of order after {self:?}"
        );
        self.0.insert(op.origin, op.seq);
    }

    /// The id the next local change of `origin` gets.
    pub fn next_of(&self, origin: u64) -> OpId {
        OpId {
            origin,
            seq: self.get(origin) + 1,
        }
    }

    /// Whether this copy has applied everything `other` has.
    pub fn covers(&self, other: &VersionVector) -> bool {
        other.0.iter().all(|(o, n)| self.get(*o) >= *n)
    }

    /// Whether `op` is among what this vector has applied.
    pub fn contains(&self, op: OpId) -> bool {
        op.seq <= self.get(op.origin)
    }

    /// Total number of ops applied, over all origins.
    pub fn total(&self) -> u64 {
        self.0.values().fold(0u64, |a, n| a.saturating_add(*n))
    }

    /// Number of origins named.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.0.iter().map(|(o, n)| (*o, *n))
    }
}

impl FromIterator<(u64, u64)> for VersionVector {
    fn from_iter<I: IntoIterator<Item = (u64, u64)>>(iter: I) -> Self {
        Self(iter.into_iter().filter(|(_, n)| *n > 0).collect())
    }
}

impl std::fmt::Display for VersionVector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[")?;
        for (i, (o, n)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{:04x}:{n}", o >> 48)?;
        }
        f.write_str("]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(origin: u64, seq: u64) -> OpId {
        OpId { origin, seq }
    }

    #[test]
    fn ops_fit_in_sequence_per_origin() {
        let mut vv = VersionVector::new();
        assert_eq!(vv.fit(id(7, 1)), Fit::Next);
        assert_eq!(vv.fit(id(7, 2)), Fit::Gap);
        vv.record(id(7, 1));
        assert_eq!(vv.fit(id(7, 1)), Fit::Seen);
        assert_eq!(vv.fit(id(7, 2)), Fit::Next);
        assert_eq!(vv.fit(id(9, 1)), Fit::Next);
        assert_eq!(vv.next_of(7), id(7, 2));
    }

    #[test]
    fn covers_is_componentwise() {
        let a: VersionVector = [(1, 3), (2, 1)].into_iter().collect();
        let b: VersionVector = [(1, 2)].into_iter().collect();
        let c: VersionVector = [(3, 1)].into_iter().collect();
        assert!(a.covers(&b));
        assert!(!b.covers(&a));
        assert!(!a.covers(&c));
        assert!(a.covers(&VersionVector::new()));
        assert_eq!(a.total(), 4);
    }

    #[test]
    #[should_panic(expected = "out of order")]
    fn recording_a_gap_is_a_bug() {
        let mut vv = VersionVector::new();
        vv.record(id(1, 2));
    }
}
