//! Who may hold how many of a server's connections, so that one peer
//! cannot starve the others: a bound per IP address (taken before the
//! handshake, since that is all that is known then), a bound per peer key
//! (taken once the handshake proved the key), and a bound on handshakes in
//! progress, over which a client must first prove its address with a QUIC
//! Retry. Each taken place is a ticket that gives it back when dropped.
//!
//! Every refusal is counted by its reason in [`ConnectionStats`], plain
//! atomics the host's `/metrics` reads: an operator sees whether peers are
//! turned away for crowding, for their share or for a full server.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::TransportConfig;
use super::tls::ED25519_KEY_BYTES;

/// Counts of places held, by key, each bounded.
struct Counts<K> {
    max: usize,
    held: Mutex<HashMap<K, usize>>,
}

impl<K: Hash + Eq + Copy> Counts<K> {
    fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            held: Mutex::new(HashMap::new()),
        })
    }

    fn take(self: &Arc<Self>, key: K) -> Option<Ticket<K>> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = held.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Ticket {
            counts: self.clone(),
            key,
        })
    }

    fn give_back(&self, key: K) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                held.remove(&key);
            }
        }
    }
}

/// One place held; given back when dropped.
pub(crate) struct Ticket<K: Hash + Eq + Copy> {
    counts: Arc<Counts<K>>,
    key: K,
}

impl<K: Hash + Eq + Copy> Drop for Ticket<K> {
    fn drop(&mut self) {
        self.counts.give_back(self.key);
    }
}

/// A handshake in progress; counted out when dropped.
pub(crate) struct Handshake(Arc<AtomicUsize>);

impl Drop for Handshake {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a server turned a connection away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// Too many handshakes were in progress.
    Handshakes,
    /// The remote address held its share of connections.
    Address,
    /// The peer's key held its share of connections.
    Key,
    /// The server held all the connections it takes.
    Capacity,
}

impl RefusalReason {
    pub const ALL: [Self; 4] = [Self::Handshakes, Self::Address, Self::Key, Self::Capacity];

    /// A short name, for a metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Handshakes => "handshakes",
            Self::Address => "address",
            Self::Key => "key",
            Self::Capacity => "capacity",
        }
    }

    /// What a log line says.
    pub(crate) fn why(self) -> &'static str {
        match self {
            Self::Handshakes => "too many handshakes in progress",
            Self::Address => "this address holds its share of connections",
            Self::Key => "its key holds its share of connections",
            Self::Capacity => "connection limit reached",
        }
    }
}

/// Connections an endpoint's server refused, by reason, since it bound.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    refused: [AtomicU64; RefusalReason::ALL.len()],
}

impl ConnectionStats {
    /// How many were refused for `reason`.
    pub fn refused(&self, reason: RefusalReason) -> u64 {
        self.refused[reason as usize].load(Ordering::Relaxed)
    }

    pub(crate) fn refuse(&self, reason: RefusalReason) {
        self.refused[reason as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// What an incoming connection attempt gets.
pub(crate) enum Verdict {
    /// Go on with the handshake, holding these.
    Admit(Ticket<IpAddr>, Handshake),
    /// Ask the client to prove its address first.
    Retry,
    /// Refuse: the address holds its share, or too many handshakes run.
    Refuse(RefusalReason),
}

/// The bounds of one server.
pub(crate) struct Admission {
    by_address: Arc<Counts<IpAddr>>,
    by_peer: Arc<Counts<[u8; ED25519_KEY_BYTES]>>,
    handshakes: Arc<AtomicUsize>,
    handshakes_max: usize,
    retry_above: usize,
}

impl Admission {
    pub fn new(config: &TransportConfig) -> Self {
        Self {
            by_address: Counts::new(config.connections_per_address_max),
            by_peer: Counts::new(config.connections_per_peer_max),
            handshakes: Arc::new(AtomicUsize::new(0)),
            handshakes_max: config.handshakes_max.max(1),
            retry_above: config.retry_above_handshakes,
        }
    }

    /// Decides on an attempt from `ip`, `validated` if the client already
    /// proved its address.
    pub fn incoming(&self, ip: IpAddr, validated: bool) -> Verdict {
        let running = self.handshakes.load(Ordering::Relaxed);
        if running >= self.retry_above && !validated {
            return Verdict::Retry;
        }
        if running >= self.handshakes_max {
            return Verdict::Refuse(RefusalReason::Handshakes);
        }
        let Some(ticket) = self.by_address.take(ip) else {
            return Verdict::Refuse(RefusalReason::Address);
        };
        self.handshakes.fetch_add(1, Ordering::Relaxed);
        Verdict::Admit(ticket, Handshake(self.handshakes.clone()))
    }

    /// A place for a connection whose handshake proved `peer`; `None` when
    /// that key holds its share.
    pub fn peer(&self, peer: [u8; ED25519_KEY_BYTES]) -> Option<Ticket<[u8; ED25519_KEY_BYTES]>> {
        self.by_peer.take(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> TransportConfig {
        TransportConfig {
            connections_per_address_max: 2,
            connections_per_peer_max: 1,
            handshakes_max: 3,
            retry_above_handshakes: 2,
            ..TransportConfig::default()
        }
    }

    #[test]
    fn one_address_gets_its_share_and_no_more() {
        let a = Admission::new(&config());
        let ip: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        let Verdict::Admit(t1, h1) = a.incoming(ip, true) else {
            panic!("first")
        };
        drop(h1);
        let Verdict::Admit(_t2, h2) = a.incoming(ip, true) else {
            panic!("second")
        };
        drop(h2);
        assert!(matches!(a.incoming(ip, true), Verdict::Refuse(_)));
        assert!(matches!(a.incoming(other, true), Verdict::Admit(..)));
        drop(t1);
        assert!(matches!(a.incoming(ip, true), Verdict::Admit(..)));
    }

    #[test]
    fn many_handshakes_ask_for_retry_then_refuse() {
        let a = Admission::new(&config());
        let mut held = Vec::new();
        for i in 0..2u8 {
            match a.incoming([10, 0, 1, i].into(), false) {
                Verdict::Admit(t, h) => held.push((t, h)),
                _ => panic!("under the retry bound"),
            }
        }
        // Two handshakes run: an unproven address must retry first, a
        // proven one goes on, up to the bound.
        assert!(matches!(
            a.incoming([10, 0, 1, 9].into(), false),
            Verdict::Retry
        ));
        assert!(matches!(
            a.incoming([10, 0, 1, 9].into(), true),
            Verdict::Admit(..)
        ));
        let Verdict::Admit(t, h) = a.incoming([10, 0, 1, 8].into(), true) else {
            panic!("third handshake")
        };
        held.push((t, h));
        assert!(matches!(
            a.incoming([10, 0, 1, 7].into(), true),
            Verdict::Refuse(_)
        ));
        held.clear();
        assert!(matches!(
            a.incoming([10, 0, 1, 7].into(), false),
            Verdict::Admit(..)
        ));
    }

    #[test]
    fn one_key_gets_its_share() {
        let a = Admission::new(&config());
        let first = a.peer([1; 32]).unwrap();
        assert!(a.peer([1; 32]).is_none());
        assert!(a.peer([2; 32]).is_some());
        drop(first);
        assert!(a.peer([1; 32]).is_some());
    }

    #[test]
    fn refusals_are_counted_by_reason() {
        let stats = ConnectionStats::default();
        stats.refuse(RefusalReason::Key);
        stats.refuse(RefusalReason::Key);
        stats.refuse(RefusalReason::Capacity);
        let counts: Vec<u64> = RefusalReason::ALL.map(|r| stats.refused(r)).into();
        assert_eq!(counts, [0, 0, 2, 1]);
    }
}
