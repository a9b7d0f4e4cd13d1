//! Keeping a mailbox's replicas in sync, the driver around
//! `crate::replica`.
//!
//! - Every mutation made here is pushed to the other replicas by a **link**
//!   per (mailbox, peer): a task that, when kicked, sends the peer exactly
//!   the ops it lacks (`Sync`), or a whole copy (`Copy`) if they have left
//!   the window, and records the vector the peer answers. The call that
//!   made the op waits until W replicas, this one included, hold it
//!   durably ([`Node::replicate`]).
//! - The keeper kicks every link periodically: that is anti-entropy, and
//!   also how a replica that was away catches up. A link retries a failed
//!   push on its own only while its peer is a listed replica with a live
//!   lease, and ends once the peer is no longer listed
//!   ([`crate::replica::link_after_failure`]): dialling a dead host holds
//!   the host's connection table for a whole connect timeout, which must
//!   not starve the links to the live replicas.
//! - `Sync` and `Copy` are accepted only from hosts the dispatch unit lists
//!   as holders of the mailbox: replicas trust each other's ops, as each
//!   checked its own callers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_bytes::ByteBuf;
use tokio::sync::{Notify, watch};

use super::serve::{internal, mailbox_id};
use super::{MigrateError, Node};
use crate::dispatch::HostAddr;
use crate::mailbox::MailboxCallError;
use crate::replica::{
    LinkRetry, Member, OpId, Since, VersionVector, link_after_failure, link_wanted,
};
use dem_client::SessionError;
use dem_identity::{Epoch, HostId, UserId};
use dem_net::{NetError, WireError};
use dem_proto::export::TailError;
use dem_proto::host::NOT_HERE;
use dem_proto::ids::MailboxId;
use dem_proto::{DispatchRequest, DispatchResponse, HostRequest, HostResponse};

/// The first [`SYNC_OPS_MAX`] of `ops` and the messages those name, as a
/// `Sync` or `HandBack` carries them.
pub(super) fn shipped(
    ops: Vec<std::sync::Arc<[u8]>>,
    messages: Vec<Vec<u8>>,
) -> (Vec<ByteBuf>, Vec<ByteBuf>) {
    let ops: Vec<std::sync::Arc<[u8]>> = ops.into_iter().take(SYNC_OPS_MAX).collect();
    let named: std::collections::HashSet<[u8; 32]> = ops
        .iter()
        .filter_map(|o| crate::mailbox::actor::message_of(o))
        .collect();
    let messages = messages
        .into_iter()
        .filter(|m| named.contains(blake3::hash(m).as_bytes()))
        .map(ByteBuf::from)
        .collect();
    let ops = ops.into_iter().map(|o| ByteBuf::from(o.to_vec())).collect();
    (ops, messages)
}

/// Op and message bytes per `Sync` message (one op with its message may
/// exceed it: it travels alone). With a stored blob of at most
/// `dem_proto::host::BLOB_BYTES_MAX` (a plaintext message of 2 MiB or a
/// sealed mail of about 2.3 MiB), a batch stays within one 4 MiB request
/// frame.
pub const SYNC_BATCH_BYTES: usize = 3 << 20;
/// Most ops one `Sync` may carry.
pub const SYNC_OPS_MAX: usize = 4096;
/// How long a call waits for W replicas before it is answered as not
/// (yet) replicated.
pub const REPLICATE_TIMEOUT: Duration = Duration::from_secs(10);
/// A cached replica listing older than this is looked up again.
const LISTING_TTL: Duration = Duration::from_secs(2);
/// A link with nothing to do for this long ends.
const LINK_IDLE: Duration = Duration::from_secs(60);
/// Pause after a failed push before the link tries again.
const LINK_RETRY: Duration = Duration::from_millis(250);
/// How often a call waiting for acknowledgements reads the (cached)
/// listing again.
const RELIST_EVERY: Duration = Duration::from_millis(500);
/// Longest one `Sync` may take. A cached connection to a peer that
/// crashed and restarted at the same address looks open until the idle
/// timeout (30 s); past this the connection is dropped and the next push
/// dials afresh, well within [`REPLICATE_TIMEOUT`].
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a `Sync` to a peer replica failed ([`Node::send_sync`]).
#[derive(Debug, thiserror::Error)]
pub(super) enum SendSyncError {
    /// No answer within [`SYNC_TIMEOUT`]; the connection was dropped.
    #[error("no answer within {limit:?}")]
    Timeout { limit: Duration },
    /// The request failed, or the peer refused it (other than "not here",
    /// which means it holds no copy).
    #[error(transparent)]
    Request(#[from] SessionError),
    /// The peer answered something else than its vector.
    #[error("answered {0:?}")]
    Unexpected(Box<HostResponse>),
}

/// Why a whole copy to a peer replica failed ([`Node::send_copy`]).
#[derive(Debug, thiserror::Error)]
pub(super) enum SendCopyError {
    /// The local mailbox could not be exported.
    #[error(transparent)]
    Export(#[from] MailboxCallError),
    /// The export's log tail is unreadable, so its vector is unknown.
    #[error(transparent)]
    Tail(#[from] TailError),
    /// The transfer to the peer failed.
    #[error(transparent)]
    Send(#[from] MigrateError),
}

/// Why one step of a link failed ([`Node::push_once`]); the link then
/// retries or ends as the listing says.
#[derive(Debug, thiserror::Error)]
enum PushError {
    /// The listing has no address for the peer yet.
    #[error("the peer's address is not known yet")]
    NoAddr,
    /// The ops this replica holds beyond the peer's vector could not be
    /// read.
    #[error(transparent)]
    Since(#[from] MailboxCallError),
    /// Sending ops failed.
    #[error(transparent)]
    Sync(#[from] SendSyncError),
    /// Sending a whole copy failed.
    #[error(transparent)]
    Copy(#[from] SendCopyError),
    /// The peer's vector did not move: it lacks ops older than those sent.
    #[error("the peer applied nothing (it lacks older ops)")]
    NoProgress,
}

/// A mailbox's replicas as a dispatch unit listed them.
#[derive(Debug, Clone)]
pub(super) struct Listing {
    pub epoch: Epoch,
    pub members: Vec<HostAddr>,
    pub home: Option<HostId>,
    fetched: Instant,
}

impl Listing {
    /// The listed replicas with whether their lease is live, as the
    /// sans-IO keeper decisions take them.
    pub fn liveness(&self) -> Vec<Member> {
        self.members
            .iter()
            .map(|m| Member {
                host: m.host,
                online: m.online,
            })
            .collect()
    }
}

/// The pushing side towards one peer replica of one mailbox.
pub(super) struct Link {
    kick: Notify,
    /// The peer's vector as it last answered (`None`: not known yet).
    acked: watch::Sender<Option<VersionVector>>,
    /// Ops the peer lacked of this replica's at the last push, for
    /// `/metrics`; kept through a failed push, whose ops it still lacks.
    lag: std::sync::atomic::AtomicU64,
}

/// The host's replication state.
#[derive(Default)]
pub(super) struct Replication {
    listings: std::sync::Mutex<HashMap<MailboxId, Listing>>,
    links: std::sync::Mutex<HashMap<(MailboxId, HostId), Arc<Link>>>,
    /// R and W as the dispatch unit's lease said.
    pub replicas: std::sync::atomic::AtomicUsize,
    pub write_quorum: std::sync::atomic::AtomicUsize,
}

impl Replication {
    pub fn new() -> Self {
        let r = Self::default();
        r.replicas.store(
            crate::dispatch::limits::REPLICAS,
            std::sync::atomic::Ordering::Relaxed,
        );
        r.write_quorum.store(
            crate::dispatch::limits::WRITE_QUORUM,
            std::sync::atomic::Ordering::Relaxed,
        );
        r
    }

    pub fn r(&self) -> usize {
        self.replicas.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn w(&self) -> usize {
        self.write_quorum.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn forget_listing(&self, id: &MailboxId) {
        lock(&self.listings).remove(id);
    }

    /// The vector each peer's link towards it last heard for `id`.
    pub fn peer_vectors(&self, id: &MailboxId) -> HashMap<HostId, VersionVector> {
        lock(&self.links)
            .iter()
            .filter(|((m, _), _)| m == id)
            .filter_map(|((_, peer), link)| link.acked.borrow().clone().map(|vv| (*peer, vv)))
            .collect()
    }

    /// Ops the peers lack, summed over this host's links, and the most
    /// one lacks: as each link last measured, so a scrape costs one pass
    /// over the links and never a mailbox call.
    pub fn lag(&self) -> (u64, u64) {
        lock(&self.links).values().fold((0, 0), |(sum, max), link| {
            let lag = link.lag.load(std::sync::atomic::Ordering::Relaxed);
            (sum.saturating_add(lag), max.max(lag))
        })
    }

    pub fn forget(&self, id: &MailboxId) {
        lock(&self.listings).remove(id);
        lock(&self.links).retain(|(m, _), _| m != id);
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Node {
    /// The listing of `user`'s replicas, cached for [`LISTING_TTL`] unless
    /// `fresh`.
    pub(super) async fn listing(&self, user: UserId, fresh: bool) -> Result<Listing, WireError> {
        let id = mailbox_id(&user)?;
        if !fresh
            && let Some(l) = lock(&self.replication.listings).get(&id)
            && l.fetched.elapsed() < LISTING_TTL
        {
            return Ok(l.clone());
        }
        let found = match self
            .session
            .dispatch(&DispatchRequest::LookupUser { user })
            .await
        {
            Ok(DispatchResponse::Mailbox(found)) => found,
            Ok(other) => return Err(internal(format!("dispatch answered {other:?}"))),
            Err(e) => {
                return Err(WireError::new(
                    WireError::BUSY,
                    format!("no dispatch unit answered: {e}"),
                ));
            }
        };
        let listing = Listing {
            epoch: found.epoch,
            members: found.hosts,
            home: found.home.filter(|h| h.online).map(|h| h.host),
            fetched: Instant::now(),
        };
        lock(&self.replication.listings).insert(id, listing.clone());
        Ok(listing)
    }

    /// Waits until `op` of `user`'s mailbox is durable on W replicas (this
    /// one included), pushing it to the others.
    ///
    /// A replica the keeper dropped from the listing (its lease lapsed
    /// while it was paused or overloaded) cannot get its ops acknowledged:
    /// the listed replicas refuse its `Sync`, and it discards its copy after
    /// a grace period. Its calls are answered "not here", so the caller
    /// looks the mailbox up again and retries at a listed replica
    /// (deliveries are idempotent by mail id).
    pub(super) async fn replicate(&self, user: UserId, op: OpId) -> Result<(), WireError> {
        if !self.is_holder(user, self.id).await? {
            return Err(not_listed());
        }
        let mut listing = self.listing(user, false).await?;
        let id = mailbox_id(&user)?;
        // The links watched so far, by peer. The listing is read again
        // while waiting: a replica the keeper adds meanwhile (with a copy
        // that may already hold the op) counts, one it drops does not.
        let mut acks: HashMap<HostId, watch::Receiver<Option<VersionVector>>> = HashMap::new();
        let mut needed = 0;
        let waited = tokio::time::timeout(REPLICATE_TIMEOUT, async {
            loop {
                needed = self.needed_acks(&listing);
                // A link that ended (its peer looked unlisted to it) is
                // started again below if the peer is listed after all.
                acks.retain(|_, rx| rx.has_changed().is_ok());
                // Only peers with a live lease can answer; kicking a dead
                // one's link would only dial it again.
                for peer in listing.members.iter().filter(|m| m.online) {
                    if peer.host != self.id && !acks.contains_key(&peer.host) {
                        let link = self.link(user, &id, peer);
                        acks.insert(peer.host, link.acked.subscribe());
                        link.kick.notify_one();
                    }
                }
                let have = acks
                    .iter()
                    .filter(|(h, _)| listing.members.iter().any(|m| m.host == **h))
                    .filter(|(_, rx)| rx.borrow().as_ref().is_some_and(|vv| vv.contains(op)))
                    .count();
                if have >= needed {
                    return;
                }
                let changes = acks.values_mut().map(|rx| Box::pin(rx.changed()));
                tokio::select! {
                    (res, _, _) = futures_select_all(changes) => {
                        if res.is_err() {
                            tokio::time::sleep(LINK_RETRY).await;
                        }
                    }
                    _ = tokio::time::sleep(RELIST_EVERY) => {
                        if let Ok(l) = self.listing(user, false).await {
                            listing = l;
                        }
                    }
                }
            }
        })
        .await;
        if waited.is_err() && !self.is_holder(user, self.id).await.unwrap_or(true) {
            return Err(not_listed());
        }
        waited.map_err(|_| {
            WireError::new(
                WireError::BUSY,
                format!(
                    "the change is durable on this replica but fewer than {} of {} replicas confirmed it within {REPLICATE_TIMEOUT:?}; it will reach them when they are back, and a retry is safe",
                    needed + 1,
                    listing.members.len()
                ),
            )
        })
    }

    /// Acknowledgements from peers a call needs besides this replica's
    /// own: W − 1, or fewer if fewer replicas are listed.
    fn needed_acks(&self, listing: &Listing) -> usize {
        self.replication
            .w()
            .min(listing.members.len().max(1))
            .saturating_sub(1)
    }

    /// The link towards `peer` for `id`, started if needed.
    fn link(&self, user: UserId, id: &MailboxId, peer: &HostAddr) -> Arc<Link> {
        let mut links = lock(&self.replication.links);
        if let Some(l) = links.get(&(id.clone(), peer.host)) {
            return l.clone();
        }
        let link = Arc::new(Link {
            kick: Notify::new(),
            acked: watch::Sender::new(None),
            lag: Default::default(),
        });
        links.insert((id.clone(), peer.host), link.clone());
        let Some(node) = self.me.upgrade() else {
            return link;
        };
        let (id, peer, l) = (id.clone(), peer.clone(), link.clone());
        tokio::spawn(async move { node.run_link(user, id, peer, l).await });
        link
    }

    /// Kicks the links to `peers` for `user`'s mailbox (anti-entropy).
    pub(super) fn kick_links(&self, user: UserId, peers: &[HostAddr]) {
        let Ok(id) = mailbox_id(&user) else { return };
        for peer in peers.iter().filter(|p| p.host != self.id) {
            self.link(user, &id, peer).kick.notify_one();
        }
    }

    async fn run_link(
        self: Arc<Self>,
        user: UserId,
        id: MailboxId,
        peer: HostAddr,
        link: Arc<Link>,
    ) {
        let mut peer = peer;
        let span = tracing::debug_span!("link", mailbox = %user.short(), host = %self.id.short(), peer = %peer.host.short());
        loop {
            if tokio::time::timeout(LINK_IDLE, link.kick.notified())
                .await
                .is_err()
            {
                break;
            }
            // Pushes until the peer has everything, or a push fails.
            let mut failed = false;
            loop {
                match tracing::Instrument::instrument(
                    self.push_once(user, &id, &peer, &link),
                    span.clone(),
                )
                .await
                {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(e) => {
                        tracing::debug!(parent: &span, error = %e, "push failed");
                        link.acked.send_replace(None);
                        failed = true;
                        break;
                    }
                }
            }
            if !self.mailboxes.contains(&id).unwrap_or(false) {
                break;
            }
            // The listing as the keeper last refreshed it; if dispatch
            // cannot be asked, keep the link as it was.
            let listing = self.listing(user, false).await.ok();
            // A peer that rejoined may listen elsewhere now.
            let listed_addr = listing
                .as_ref()
                .and_then(|l| l.members.iter().find(|m| m.host == peer.host))
                .and_then(|m| m.addr.clone());
            if failed && listed_addr.is_some() {
                peer.addr = listed_addr;
            }
            match (failed, listing.map(|l| l.liveness())) {
                (false, Some(listed)) if !link_wanted(peer.host, &listed) => break,
                (false, _) => {}
                (true, listed) => {
                    let next =
                        listed.map_or(LinkRetry::Retry, |l| link_after_failure(peer.host, &l));
                    tracing::debug!(parent: &span, ?next, "after a failed push");
                    match next {
                        LinkRetry::Retry => {
                            tokio::time::sleep(LINK_RETRY).await;
                            link.kick.notify_one();
                        }
                        LinkRetry::Idle => {}
                        LinkRetry::End => break,
                    }
                }
            }
        }
        let mut links = lock(&self.replication.links);
        if links
            .get(&(id.clone(), peer.host))
            .is_some_and(|l| Arc::ptr_eq(l, &link))
        {
            links.remove(&(id, peer.host));
        }
    }

    /// One step of a link; `Ok(true)` if there may be more to send.
    async fn push_once(
        &self,
        user: UserId,
        id: &MailboxId,
        peer: &HostAddr,
        link: &Link,
    ) -> Result<bool, PushError> {
        let addr = peer.addr.clone().ok_or(PushError::NoAddr)?;
        let known = link.acked.borrow().clone();
        let Some(peer_vv) = known else {
            let vv = self
                .send_sync(user, &addr, peer.host, Vec::new(), Vec::new())
                .await?;
            match vv {
                Some(vv) => link.acked.send_replace(Some(vv)),
                None => {
                    let vv = self.send_copy(id, &addr, peer.host).await?;
                    link.acked.send_replace(Some(vv))
                }
            };
            return Ok(true);
        };
        let (since, messages, ours) = self
            .mailboxes
            .since(id, peer_vv.clone(), SYNC_BATCH_BYTES)
            .await?;
        let lacks = |vv: &VersionVector| {
            link.lag.store(
                crate::replica::missing_ops(&ours, vv),
                std::sync::atomic::Ordering::Relaxed,
            )
        };
        lacks(&peer_vv);
        match since {
            Since::Ops { ops, .. } if ops.is_empty() => Ok(false),
            Since::Ops { ops, more } => {
                let (ops, messages) = shipped(ops, messages);
                match self
                    .send_sync(user, &addr, peer.host, ops, messages)
                    .await?
                {
                    Some(vv) => {
                        lacks(&vv);
                        let progressed = vv != peer_vv;
                        let done = !more && vv.covers(&ours);
                        link.acked.send_replace(Some(vv));
                        if !progressed {
                            return Err(PushError::NoProgress);
                        }
                        Ok(!done)
                    }
                    None => {
                        link.acked.send_replace(None);
                        Ok(true)
                    }
                }
            }
            Since::Full => {
                let vv = self.send_copy(id, &addr, peer.host).await?;
                link.acked.send_replace(Some(vv));
                Ok(true)
            }
        }
    }

    /// Sends `ops`; the peer's vector, or `None` if it holds no copy.
    /// Bounded by [`SYNC_TIMEOUT`], after which the connection is dropped
    /// (it may lead to a process that is gone).
    pub(super) async fn send_sync(
        &self,
        user: UserId,
        addr: &str,
        host: HostId,
        ops: Vec<ByteBuf>,
        messages: Vec<ByteBuf>,
    ) -> Result<Option<VersionVector>, SendSyncError> {
        let op_bytes: usize = ops.iter().map(|o| o.len()).sum::<usize>()
            + messages.iter().map(|m| m.len()).sum::<usize>();
        let req = HostRequest::Sync {
            mailbox: user,
            ops,
            messages,
        };
        let answer =
            tokio::time::timeout(SYNC_TIMEOUT, self.session.host_request(addr, host, &req)).await;
        let Ok(answer) = answer else {
            self.session.drop_connection(addr).await;
            return Err(SendSyncError::Timeout {
                limit: SYNC_TIMEOUT,
            });
        };
        // Counted once the peer answered, as a copy is: what reached it.
        if answer.is_ok() {
            self.metrics.pushed("sync", op_bytes as u64);
        }
        sync_answer(answer)
    }

    /// Sends a whole copy; the vector the peer then has.
    pub(super) async fn send_copy(
        &self,
        id: &MailboxId,
        addr: &str,
        host: HostId,
    ) -> Result<VersionVector, SendCopyError> {
        let state = self.mailboxes.export(id).await?;
        let vv = state.vv()?;
        let state_bytes = state.snapshot.as_ref().map_or(0, |s| s.bytes.len())
            + state.tail.iter().map(|(_, op)| op.len()).sum::<usize>();
        let request = |header| HostRequest::Copy { header };
        // A copy needs no grant: its stream ends as soon as it is written.
        self.send_mailbox(id, &state, (host, addr), request)
            .await?
            .finish()
            .await?;
        // Counted once the peer took it, as ops are: what reached it.
        self.metrics.pushed("copy", state_bytes as u64);
        tracing::info!(mailbox = %id, peer = %host.short(), "sent a whole copy");
        Ok(vv)
    }

    /// Whether `from` is listed as a holder of `user`'s mailbox (looking
    /// again if the cached listing says no).
    pub(super) async fn is_holder(&self, user: UserId, from: HostId) -> Result<bool, WireError> {
        if self
            .listing(user, false)
            .await?
            .members
            .iter()
            .any(|m| m.host == from)
        {
            return Ok(true);
        }
        Ok(self
            .listing(user, true)
            .await?
            .members
            .iter()
            .any(|m| m.host == from))
    }
}

/// What a peer's answer to a `Sync` says: its vector, or `None` if it
/// holds no copy (it refused with "not here", so a whole copy follows).
fn sync_answer(
    answer: Result<HostResponse, SessionError>,
) -> Result<Option<VersionVector>, SendSyncError> {
    match answer {
        Ok(HostResponse::Synced { vv }) => Ok(Some(vv)),
        Ok(other) => Err(SendSyncError::Unexpected(Box::new(other))),
        Err(SessionError::Net(NetError::Remote(w))) if w.code == NOT_HERE => Ok(None),
        Err(e) => Err(SendSyncError::Request(e)),
    }
}

/// The answer to a call made at a replica that is no longer listed.
fn not_listed() -> WireError {
    WireError::new(
        NOT_HERE,
        "this host is no longer a listed replica of that mailbox; look it up again",
    )
}

/// Waits for the first of several futures (a tiny `select_all`).
async fn futures_select_all<F, T>(futures: impl Iterator<Item = F>) -> (T, usize, ())
where
    F: std::future::Future<Output = T> + Unpin,
{
    let mut futures: Vec<F> = futures.collect();
    std::future::poll_fn(move |cx| {
        for (i, f) in futures.iter_mut().enumerate() {
            if let std::task::Poll::Ready(v) = std::pin::Pin::new(f).poll(cx) {
                return std::task::Poll::Ready((v, i, ()));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: dem_proto::ErrorCode) -> SessionError {
        SessionError::Net(NetError::Remote(WireError::new(code, "refused")))
    }

    /// `/metrics` reads the lag the links measured: the sum over links
    /// and the largest, none counted for a mailbox that has no links.
    #[test]
    fn the_lag_sums_the_links_and_keeps_the_largest() {
        let r = Replication::new();
        assert_eq!(r.lag(), (0, 0));
        let id: MailboxId = "ab".repeat(32).parse().unwrap();
        for (peer, lag) in [(1u8, 3u64), (2, 5), (3, 0)] {
            let link = Link {
                kick: Notify::new(),
                acked: watch::Sender::new(None),
                lag: lag.into(),
            };
            lock(&r.links).insert((id.clone(), HostId([peer; 32])), Arc::new(link));
        }
        assert_eq!(r.lag(), (8, 5));
        r.forget(&id);
        assert_eq!(r.lag(), (0, 0));
    }

    #[test]
    fn only_a_not_here_refusal_means_the_peer_needs_a_whole_copy() {
        let vv = VersionVector::new();
        assert_eq!(
            sync_answer(Ok(HostResponse::Synced { vv: vv.clone() })).unwrap(),
            Some(vv)
        );
        assert_eq!(sync_answer(Err(refused(NOT_HERE))).unwrap(), None);
        // Any other refusal or failure is a failed push, its cause kept.
        match sync_answer(Err(refused(WireError::FORBIDDEN))) {
            Err(SendSyncError::Request(SessionError::Net(NetError::Remote(w)))) => {
                assert_eq!(w.code, WireError::FORBIDDEN)
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            sync_answer(Err(SessionError::Net(NetError::EndOfStream))),
            Err(SendSyncError::Request(SessionError::Net(
                NetError::EndOfStream
            )))
        ));
        assert!(matches!(
            sync_answer(Ok(HostResponse::Done)),
            Err(SendSyncError::Unexpected(r)) if matches!(*r, HostResponse::Done)
        ));
    }

    #[test]
    fn push_failures_read_as_before() {
        let timeout = SendSyncError::Timeout {
            limit: SYNC_TIMEOUT,
        };
        assert_eq!(
            timeout.to_string(),
            format!("no answer within {SYNC_TIMEOUT:?}")
        );
        assert_eq!(
            PushError::from(timeout).to_string(),
            format!("no answer within {SYNC_TIMEOUT:?}")
        );
        assert_eq!(
            SendSyncError::Unexpected(Box::new(HostResponse::Done)).to_string(),
            format!("answered {:?}", HostResponse::Done)
        );
    }
}
