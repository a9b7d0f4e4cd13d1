//! Handing back an unlisted copy's ops before it goes, the driver around
//! [`crate::replica::hand_back`].
//!
//! A copy the listing no longer names (a replica dropped while its host
//! was paused or down, a trimmed extra, a move's source) may hold
//! acknowledged ops no listed replica has: W replicas acknowledged a mail
//! and were killed together before anti-entropy spread it, and the keeper
//! rebuilt the listing from a copy that lacked it. Once such a copy has
//! stayed unlisted for the grace period, each keeper round its host
//! - asks every listed replica for its vector (`Holds`);
//! - discards the copy if one of them holds everything it holds;
//! - otherwise sends the most complete one the ops it lacks
//!   (`HandBack`: that replica takes them as it takes `Sync`, in order and
//!   without gaps) and asks again next round;
//! - and if no listed replica answers, keeps the copy, *held back*, which
//!   `Replicas` (so `dem admin status`) reports.
//!
//! The receiving side is here too: a `HandBack` is taken only by a host
//! that is itself listed for the mailbox, only from a host the dispatch
//! unit knows (replicas trust each other's ops; users do not get to hand
//! any back), and counted in the replication traffic.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_bytes::ByteBuf;

use super::Node;
use super::serve::{internal, mailbox_id};
use super::sync::{Listing, SYNC_BATCH_BYTES, SYNC_OPS_MAX, SYNC_TIMEOUT};
use crate::mailbox::MailboxCallError;
use crate::replica::{HandBack, Since, VersionVector, hand_back, missing_ops};
use dem_identity::{HostId, UserId};
use dem_net::WireError;
use dem_proto::host::NOT_HERE;
use dem_proto::ids::MailboxId;
use dem_proto::{DispatchRequest, DispatchResponse, HostRequest, HostResponse};

/// Most `HandBack` batches one keeper round sends for one copy; the rest
/// goes next round (a round must not stall on one mailbox).
const HAND_BACK_BATCHES_MAX: usize = 8;
/// How long the hosts dispatch knows are trusted before asking again.
const KNOWN_HOSTS_TTL: Duration = Duration::from_secs(10);

/// The hosts the dispatch unit knew when last asked, with their addresses.
#[derive(Default)]
pub(super) struct KnownHosts {
    fetched: Option<Instant>,
    addrs: HashMap<HostId, String>,
}

/// What one hand-back round did with an unlisted copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum HandBackOutcome {
    /// A listed replica holds everything: the copy was discarded.
    Discarded,
    /// Kept: ops were offered, or nobody listed answered, or the copy
    /// holds ops older than a peer's window can take as ops.
    HeldBack,
}

impl Node {
    /// One hand-back round for the stale, unlisted copy of `user`'s
    /// mailbox, given the listing that does not name this host.
    pub(super) async fn hand_back_round(
        &self,
        user: UserId,
        id: &MailboxId,
        listing: &Listing,
    ) -> Result<HandBackOutcome, WireError> {
        let (_, _, ours) = self
            .mailboxes
            .since(id, VersionVector::new(), 0)
            .await
            .map_err(internal)?;
        let answers = self.listed_vectors(user, listing).await;
        match hand_back(&ours, &answers) {
            HandBack::Discard { holder } => {
                // The round took a while (a listed host may have been slow
                // to answer): if meanwhile this host was listed again or
                // its copy changed (a keeper copied a fresh one here), the
                // decision is stale.
                let now_listed = self.is_holder(user, self.id).await?;
                let (_, _, now) = self
                    .mailboxes
                    .since(id, VersionVector::new(), 0)
                    .await
                    .map_err(internal)?;
                if now_listed || now != ours {
                    return Ok(HandBackOutcome::HeldBack);
                }
                tracing::info!(mailbox = %user.short(), host = %self.id.short(), holder = %holder.short(), "discarding an unlisted replica: a listed one holds all of it");
                self.replication.forget(id);
                self.mailboxes.remove(id).await.map_err(internal)?;
                Ok(HandBackOutcome::Discarded)
            }
            HandBack::Offer { to, its } => {
                let addr = listing
                    .members
                    .iter()
                    .find(|m| m.host == to)
                    .and_then(|m| m.addr.clone())
                    .ok_or_else(|| internal("a listed replica that answered has no address"))?;
                tracing::info!(mailbox = %user.short(), host = %self.id.short(), to = %to.short(), ops = missing_ops(&ours, &its), "handing back ops no listed replica holds");
                if let Err(e) = self.offer_ops(user, id, &addr, to, its).await {
                    tracing::warn!(mailbox = %user.short(), host = %self.id.short(), to = %to.short(), error = %e.message, "handing back failed; the copy is kept");
                }
                Ok(HandBackOutcome::HeldBack)
            }
            HandBack::HoldBack => {
                tracing::info!(mailbox = %user.short(), host = %self.id.short(), "holding back an unlisted replica: no listed replica answered");
                Ok(HandBackOutcome::HeldBack)
            }
        }
    }

    /// What each listed replica holds, asked of all at once (each bounded
    /// by [`SYNC_TIMEOUT`]); `None` for one that is offline, holds no copy
    /// or did not answer.
    async fn listed_vectors(
        &self,
        user: UserId,
        listing: &Listing,
    ) -> Vec<(HostId, Option<VersionVector>)> {
        let mut asks = tokio::task::JoinSet::new();
        for (i, m) in listing.members.iter().enumerate() {
            let (Some(addr), true, Some(node)) = (m.addr.clone(), m.online, self.me.upgrade())
            else {
                continue;
            };
            let host = m.host;
            asks.spawn(async move { (i, node.holds_at(user, &addr, host).await) });
        }
        let mut answers: Vec<(HostId, Option<VersionVector>)> =
            listing.members.iter().map(|m| (m.host, None)).collect();
        while let Some(done) = asks.join_next().await {
            if let Ok((i, vv)) = done
                && let Some(slot) = answers.get_mut(i)
            {
                slot.1 = vv;
            }
        }
        answers
    }

    /// The vector of the copy `host` holds; `None` if it holds none or
    /// did not answer in time.
    async fn holds_at(&self, user: UserId, addr: &str, host: HostId) -> Option<VersionVector> {
        let req = HostRequest::Holds { mailbox: user };
        let answer =
            tokio::time::timeout(SYNC_TIMEOUT, self.session.host_request(addr, host, &req)).await;
        match answer {
            Ok(Ok(HostResponse::Holds { vv })) => vv,
            Ok(_) => None,
            Err(_) => {
                self.session.drop_connection(addr).await;
                None
            }
        }
    }

    /// Sends `to` (at vector `its`) the ops this copy holds beyond it, a
    /// few batches at most.
    async fn offer_ops(
        &self,
        user: UserId,
        id: &MailboxId,
        addr: &str,
        to: HostId,
        mut its: VersionVector,
    ) -> Result<(), WireError> {
        for _ in 0..HAND_BACK_BATCHES_MAX {
            let (since, messages, ours) = self
                .mailboxes
                .since(id, its.clone(), SYNC_BATCH_BYTES)
                .await
                .map_err(internal)?;
            let (ops, more) = match since {
                Since::Ops { ops, more } => (ops, more),
                Since::Full => {
                    // Ops older than this copy's window cannot go as ops,
                    // and a whole copy would not merge with what the
                    // listed replica has of its own: keep the copy.
                    return Err(WireError::new(
                        dem_proto::dispatch::CONFLICT,
                        "the listed replica lacks ops older than this copy's window",
                    ));
                }
            };
            if ops.is_empty() {
                return Ok(());
            }
            let (ops, messages) = super::sync::shipped(ops, messages);
            let req = HostRequest::HandBack {
                mailbox: user,
                ops,
                messages,
            };
            let answer =
                tokio::time::timeout(SYNC_TIMEOUT, self.session.host_request(addr, to, &req)).await;
            let vv = match answer {
                Ok(Ok(HostResponse::Synced { vv })) => vv,
                Ok(Ok(other)) => return Err(internal(format!("answered {other:?}"))),
                Ok(Err(e)) => return Err(WireError::new(WireError::BUSY, e.to_string())),
                Err(_) => {
                    self.session.drop_connection(addr).await;
                    return Err(WireError::new(WireError::BUSY, "no answer in time"));
                }
            };
            if vv == its {
                return Err(internal("the listed replica applied nothing"));
            }
            if !more && vv.covers(&ours) {
                return Ok(());
            }
            its = vv;
        }
        Ok(())
    }

    /// `HandBack` from `from`, whose copy of `user`'s mailbox is unlisted.
    pub(super) async fn handle_hand_back(
        &self,
        user: UserId,
        ops: Vec<ByteBuf>,
        messages: Vec<ByteBuf>,
        from: HostId,
    ) -> Result<HostResponse, WireError> {
        // Each op names at most one message: more blobs than ops is
        // someone filling this host's store.
        if messages.len() > ops.len() {
            return Err(WireError::new(
                WireError::BAD_REQUEST,
                format!("{} messages for {} ops", messages.len(), ops.len()),
            ));
        }
        if ops.len() > SYNC_OPS_MAX {
            return Err(WireError::new(
                WireError::TOO_LARGE,
                format!("{} ops, at most {SYNC_OPS_MAX}", ops.len()),
            ));
        }
        let id = mailbox_id(&user)?;
        if self.mailboxes.moved_to(&id).is_some()
            || !self.mailboxes.contains(&id).map_err(internal)?
            || !self.is_holder(user, self.id).await?
        {
            return Err(WireError::new(
                NOT_HERE,
                "this host is not a listed replica of that mailbox",
            ));
        }
        let Some(from_addr) = self.known_host(from).await? else {
            return Err(WireError::new(
                WireError::FORBIDDEN,
                "only a host the dispatch unit knows may hand back ops",
            ));
        };
        let op_bytes: u64 = ops.iter().map(|o| o.len() as u64).sum();
        self.fetch_plugin_code_at(user, &ops, from, &from_addr)
            .await;
        let vv = self
            .mailboxes
            .apply(
                &id,
                ops.into_iter().map(ByteBuf::into_vec).collect(),
                messages.into_iter().map(ByteBuf::into_vec).collect(),
            )
            .await
            .map_err(|e| match e {
                MailboxCallError::Unknown(_) | MailboxCallError::Moved { .. } => {
                    WireError::new(NOT_HERE, "this host does not hold that mailbox")
                }
                MailboxCallError::Import(m) => {
                    WireError::new(WireError::BAD_REQUEST, m.to_string())
                }
                e => internal(e),
            })?;
        self.traffic.hand_back_ops(op_bytes);
        tracing::info!(mailbox = %user.short(), host = %self.id.short(), from = %from.short(), "took ops handed back by an unlisted replica");
        Ok(HostResponse::Synced { vv })
    }

    /// The address of `host` if the dispatch unit knows it (asked at most
    /// every [`KNOWN_HOSTS_TTL`], or at once for a host not seen yet).
    pub(super) async fn known_host(&self, host: HostId) -> Result<Option<String>, WireError> {
        {
            let known = self.known_hosts();
            if let Some(addr) = known.addrs.get(&host) {
                return Ok(Some(addr.clone()));
            }
            // A stranger does not get to make this host ask dispatch for
            // the whole status more than once per TTL.
            if known.fetched.is_some_and(|t| t.elapsed() < KNOWN_HOSTS_TTL) {
                return Ok(None);
            }
        }
        let view = match self.session.dispatch(&DispatchRequest::Status).await {
            Ok(DispatchResponse::Status(view)) => view,
            Ok(other) => return Err(internal(format!("dispatch answered {other:?}"))),
            Err(e) => {
                return Err(WireError::new(
                    WireError::BUSY,
                    format!("no dispatch unit answered: {e}"),
                ));
            }
        };
        let mut known = self.known_hosts();
        known.fetched = Some(Instant::now());
        known.addrs = view.hosts.iter().map(|h| (h.id, h.addr.clone())).collect();
        Ok(known.addrs.get(&host).cloned())
    }

    fn known_hosts(&self) -> std::sync::MutexGuard<'_, KnownHosts> {
        self.known_hosts.lock().unwrap_or_else(|p| p.into_inner())
    }
}
