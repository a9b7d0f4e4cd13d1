//! Counters of the replication bytes a host receives, so that benchmarks
//! and tests can see what catching a copy up really cost on the wire
//! (`HostRequest::Traffic`). Every count is a whole frame as it travelled:
//! the u32 length prefix plus the rmp-serde bytes. `serve` counts `Sync`
//! and `HandBack` requests (`handback` the handed-back ops' own bytes), `migrate` the export streams of `Copy` and `Migrate`,
//! `delta_move` the delta streams.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use dem_proto::host::ReplicationTraffic;

/// Bytes of a frame's length prefix.
const PREFIX_BYTES: u64 = 4;

/// The host's counters (see [`ReplicationTraffic`] for each field).
#[derive(Debug, Default)]
pub(super) struct Traffic {
    sync_bytes: AtomicU64,
    full_bytes: AtomicU64,
    delta_bytes: AtomicU64,
    copies: AtomicU64,
    full_moves: AtomicU64,
    delta_moves: AtomicU64,
    hand_back_bytes: AtomicU64,
    hand_back_op_bytes: AtomicU64,
}

/// Which counter a received frame goes to.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Sync,
    Full,
    Delta,
    HandBack,
}

impl Traffic {
    /// Counts a frame of `payload_bytes` (without its prefix).
    pub fn frame(&self, kind: Kind, payload_bytes: usize) {
        let n = payload_bytes as u64 + PREFIX_BYTES;
        let counter = match kind {
            Kind::Sync => &self.sync_bytes,
            Kind::Full => &self.full_bytes,
            Kind::Delta => &self.delta_bytes,
            Kind::HandBack => &self.hand_back_bytes,
        };
        counter.fetch_add(n, Relaxed);
    }

    /// Counts a request frame by encoding it again as `net::write_frame`
    /// does: rmp-serde is deterministic, so this is the size it had on the
    /// wire. The bytes go
    /// to a counting sink, not to memory.
    pub fn request<T: serde::Serialize>(&self, kind: Kind, request: &T) {
        let mut sink = CountingSink(0);
        if rmp_serde::encode::write_named(&mut sink, request).is_ok() {
            self.frame(kind, sink.0);
        }
    }

    /// Counts the ops' own bytes of a `HandBack` taken.
    pub fn hand_back_ops(&self, op_bytes: u64) {
        self.hand_back_op_bytes.fetch_add(op_bytes, Relaxed);
    }

    pub fn copy_received(&self) {
        self.copies.fetch_add(1, Relaxed);
    }

    pub fn full_move_received(&self) {
        self.full_moves.fetch_add(1, Relaxed);
    }

    pub fn delta_move_received(&self) {
        self.delta_moves.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> ReplicationTraffic {
        ReplicationTraffic {
            sync_bytes: self.sync_bytes.load(Relaxed),
            full_bytes: self.full_bytes.load(Relaxed),
            delta_bytes: self.delta_bytes.load(Relaxed),
            copies: self.copies.load(Relaxed),
            full_moves: self.full_moves.load(Relaxed),
            delta_moves: self.delta_moves.load(Relaxed),
            hand_back_bytes: self.hand_back_bytes.load(Relaxed),
            hand_back_op_bytes: self.hand_back_op_bytes.load(Relaxed),
        }
    }
}

/// A writer that only counts.
struct CountingSink(usize);

impl std::io::Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dem_proto::HostRequest;

    #[test]
    fn a_request_counts_as_its_encoded_frame() {
        let t = Traffic::default();
        let req = HostRequest::Traffic;
        t.request(Kind::Sync, &req);
        let encoded = rmp_serde::to_vec_named(&req).expect("encodes");
        t.frame(Kind::Delta, 10);
        let s = t.snapshot();
        assert_eq!(s.sync_bytes, encoded.len() as u64 + 4);
        assert_eq!(s.delta_bytes, 14);
        assert_eq!(s.full_bytes, 0);
    }
}
