//! The window of recent ops a replica keeps in memory to ship to peers.
//!
//! A peer that reports its version vector gets exactly the ops of the
//! window it lacks, in the order this replica applied them — an order in
//! which every op comes after everything its origin had seen, so the peer
//! can apply them one by one. If the peer lacks ops older than the window,
//! only a whole copy of the state can bring it up to date ([`Since::Full`]).
//!
//! The window is bounded in ops and bytes; the oldest ops fall out first.
//! It is rebuilt from the durable log tail when a mailbox wakes, so after a
//! restart it starts at the last snapshot.

use std::collections::VecDeque;
use std::sync::Arc;

use dem_proto::{OpId, VersionVector};

/// Most ops a window keeps.
pub const WINDOW_OPS_MAX: usize = 16_384;
/// Most op bytes a window keeps.
pub const WINDOW_BYTES_MAX: usize = 32 << 20;

/// What a peer needs to catch up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Since {
    /// These ops, in order (empty if the peer lacks nothing); `more` if the
    /// byte budget cut the list short.
    Ops { ops: Vec<Arc<[u8]>>, more: bool },
    /// The peer lacks ops that have left the window: send the whole state.
    Full,
}

/// Recent ops and the version vector just before the oldest of them.
#[derive(Debug, Clone, Default)]
pub struct Window {
    /// What the replica had applied before `ops[0]`.
    base: VersionVector,
    ops: VecDeque<(OpId, Arc<[u8]>)>,
    bytes: usize,
}

impl Window {
    /// An empty window starting after `base` (the state's snapshot).
    pub fn starting_at(base: VersionVector) -> Self {
        Self {
            base,
            ops: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Appends an op just applied; drops the oldest beyond the bounds.
    pub fn push(&mut self, id: OpId, bytes: Arc<[u8]>) {
        self.bytes += bytes.len();
        self.ops.push_back((id, bytes));
        while self.ops.len() > WINDOW_OPS_MAX
            || (self.bytes > WINDOW_BYTES_MAX && self.ops.len() > 1)
        {
            let Some((old, b)) = self.ops.pop_front() else {
                break;
            };
            self.bytes -= b.len();
            self.base.record(old);
        }
    }

    /// The ops a peer at `peer` lacks, up to about `budget_bytes` (at least
    /// one op, so a single large op still travels). `current` is this
    /// replica's vector, for telling whether the window reaches far enough
    /// back.
    pub fn since(
        &self,
        peer: &VersionVector,
        current: &VersionVector,
        budget_bytes: usize,
    ) -> Since {
        let reaches = current.iter().all(|(origin, have)| {
            peer.get(origin) >= have || peer.get(origin) >= self.base.get(origin)
        });
        if !reaches {
            return Since::Full;
        }
        let mut ops = Vec::new();
        let mut bytes = 0;
        for (id, op) in &self.ops {
            if peer.contains(*id) {
                continue;
            }
            if !ops.is_empty() && bytes + op.len() > budget_bytes {
                return Since::Ops { ops, more: true };
            }
            bytes += op.len();
            ops.push(op.clone());
        }
        Since::Ops { ops, more: false }
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(origin: u64, seq: u64) -> (OpId, Arc<[u8]>) {
        (OpId { origin, seq }, Arc::from(vec![origin as u8; 10]))
    }

    fn filled(ids: &[(u64, u64)]) -> (Window, VersionVector) {
        let mut w = Window::starting_at(VersionVector::new());
        let mut vv = VersionVector::new();
        for &(o, s) in ids {
            let (id, bytes) = op(o, s);
            vv.record(id);
            w.push(id, bytes);
        }
        (w, vv)
    }

    fn count(s: Since) -> usize {
        match s {
            Since::Ops { ops, .. } => ops.len(),
            Since::Full => usize::MAX,
        }
    }

    #[test]
    fn ships_only_what_the_peer_lacks() {
        let (w, vv) = filled(&[(1, 1), (2, 1), (1, 2), (2, 2)]);
        let peer: VersionVector = [(1, 2)].into_iter().collect();
        assert_eq!(count(w.since(&peer, &vv, 1 << 20)), 2);
        assert_eq!(count(w.since(&vv, &vv, 1 << 20)), 0);
        assert_eq!(count(w.since(&VersionVector::new(), &vv, 1 << 20)), 4);
    }

    #[test]
    fn budget_cuts_but_always_sends_one() {
        let (w, vv) = filled(&[(1, 1), (1, 2), (1, 3)]);
        match w.since(&VersionVector::new(), &vv, 15) {
            Since::Ops { ops, more } => {
                assert_eq!(ops.len(), 1);
                assert!(more);
            }
            Since::Full => panic!("the window reaches back"),
        }
        assert_eq!(count(w.since(&VersionVector::new(), &vv, 0)), 1);
    }

    #[test]
    fn a_peer_behind_the_window_needs_the_whole_state() {
        let mut w = Window::starting_at([(1, 5)].into_iter().collect());
        let mut vv: VersionVector = [(1, 5)].into_iter().collect();
        let (id, b) = op(1, 6);
        vv.record(id);
        w.push(id, b);
        let behind: VersionVector = [(1, 4)].into_iter().collect();
        assert_eq!(w.since(&behind, &vv, 1 << 20), Since::Full);
        let at_base: VersionVector = [(1, 5)].into_iter().collect();
        assert_eq!(count(w.since(&at_base, &vv, 1 << 20)), 1);
        // An origin the peer never heard of but whose ops all left the
        // window: also the whole state.
        let mut vv2 = vv.clone();
        vv2.record(OpId { origin: 9, seq: 1 });
        let w2 = Window::starting_at(vv2.clone());
        assert_eq!(w2.since(&at_base, &vv2, 1 << 20), Since::Full);
    }

    #[test]
    fn eviction_moves_the_base() {
        let mut w = Window::starting_at(VersionVector::new());
        let mut vv = VersionVector::new();
        for s in 1..=(WINDOW_OPS_MAX as u64 + 3) {
            let (id, b) = op(1, s);
            vv.record(id);
            w.push(id, b);
        }
        assert_eq!(w.len(), WINDOW_OPS_MAX);
        let old: VersionVector = [(1, 2)].into_iter().collect();
        assert_eq!(w.since(&old, &vv, usize::MAX), Since::Full);
        let recent: VersionVector = [(1, 3)].into_iter().collect();
        assert_eq!(count(w.since(&recent, &vv, usize::MAX)), WINDOW_OPS_MAX);
    }
}
