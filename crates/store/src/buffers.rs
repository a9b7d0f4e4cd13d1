//! Reused buffers for the snapshot files the store reads whole (to ship a
//! mailbox, or to wake it).
//!
//! A fresh 8 MiB buffer costs thousands of page faults, and on a virtual
//! machine a fault costs microseconds: reading an 8.6 MB snapshot file
//! from the page cache took 8–11 ms into fresh memory and about 1 ms into
//! memory touched before. So a read takes a buffer from this pool, and the
//! `Bytes` handed out gives it back once its last clone is dropped (when
//! quinn has sent the last chunk, or the guest has restored the state).
//! The pool keeps at most [`POOL_BUFFERS_MAX`] buffers of at most
//! [`POOLED_BYTES_MAX`] each, so what it holds on to is bounded.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// Buffers kept for reuse; more are freed when given back.
pub const POOL_BUFFERS_MAX: usize = 2;
/// A larger buffer is freed when given back, not kept.
pub const POOLED_BYTES_MAX: usize = 64 << 20;

/// Free buffers, shared with the `Bytes` handed out.
#[derive(Debug, Default, Clone)]
pub(super) struct BufferPool {
    free: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl BufferPool {
    /// A buffer of `len` bytes, reused if the pool has one: only bytes no
    /// earlier use reached are zeroed (the rest holds old data, which the
    /// caller overwrites).
    pub fn take(&self, len: usize) -> Vec<u8> {
        let reused = {
            let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
            // The largest fits most often; the pool holds two at most.
            let largest = (0..free.len()).max_by_key(|&i| free.get(i).map_or(0, Vec::capacity));
            largest.map(|i| free.swap_remove(i))
        };
        let mut buf = reused.unwrap_or_default();
        if buf.len() < len {
            buf.resize(len, 0);
        } else {
            buf.truncate(len);
        }
        buf
    }

    /// `buf` as shared bytes; it returns to the pool when the last clone
    /// is dropped.
    pub fn share(&self, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled {
            buf,
            free: Arc::clone(&self.free),
        })
    }

    #[cfg(test)]
    fn free_buffers(&self) -> usize {
        self.free.lock().map_or(0, |f| f.len())
    }
}

/// A pooled buffer inside a `Bytes`.
struct Pooled {
    buf: Vec<u8>,
    free: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if self.buf.capacity() > POOLED_BYTES_MAX {
            return;
        }
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if free.len() < POOL_BUFFERS_MAX {
            free.push(std::mem::take(&mut self.buf));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_comes_back_when_its_last_clone_is_dropped() {
        let pool = BufferPool::default();
        let mut buf = pool.take(1000);
        buf.fill(7);
        let bytes = pool.share(buf);
        let slice = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(pool.free_buffers(), 0, "a slice still holds it");
        assert_eq!(&slice[..], &[7; 10]);
        drop(slice);
        assert_eq!(pool.free_buffers(), 1);
        let again = pool.take(400);
        assert_eq!(again.len(), 400);
        assert!(again.capacity() >= 1000, "the same buffer, not a new one");
        assert_eq!(pool.free_buffers(), 0);
        // Grown past its old length: the new part is zeroed.
        let mut longer = again;
        longer.truncate(0);
        let shared = pool.share(longer);
        drop(shared);
        let grown = pool.take(1500);
        assert_eq!(grown.len(), 1500);
        assert!(
            grown
                .get(1000..)
                .is_some_and(|tail| tail.iter().all(|&b| b == 0))
        );
    }

    #[test]
    fn the_pool_keeps_few_and_not_huge_buffers() {
        let pool = BufferPool::default();
        let held: Vec<Bytes> = (0..POOL_BUFFERS_MAX + 2)
            .map(|_| pool.share(pool.take(64)))
            .collect();
        drop(held);
        assert_eq!(pool.free_buffers(), POOL_BUFFERS_MAX);
        let pool = BufferPool::default();
        drop(pool.share(Vec::with_capacity(POOLED_BYTES_MAX + 1)));
        assert_eq!(pool.free_buffers(), 0);
    }
}
