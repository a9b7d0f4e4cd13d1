//! The keeper: every `keeper` interval, for each mailbox held here, look at
//! its replica listing and act on [`crate::replica::plan`]:
//! - as a follower, kick the links to the other live replicas
//!   (anti-entropy: each side pushes what the other lacks);
//! - as the leader, also drop replicas whose lease expired, place and copy
//!   new ones until R are live, trim extras, and record the new listing at
//!   the next epoch — the unit refuses a stale epoch, so of two leaders
//!   acting on old pictures only one lands;
//! - as a host that is no longer listed, once the copy has stayed unlisted
//!   for a grace period (a fresh copy is listed only once it is complete),
//!   hand back what no listed replica holds and only then discard it
//!   (`handback.rs`); a copy nobody listed can take is held back.
//!
//! The leader drops a replica whose lease lapsed only once R live
//! replicas hold what it holds, and places a new copy only while no live
//! peer holds ops it lacks ([`crate::replica::plan_fresh`]): a pause must
//! not cost data, and a copy starts from the most complete state.
//!
//! After the round, the host may ask to shed a replica for balance
//! (`rebalance.rs`).
//!
//! Host leases are the failure detector: a replica whose host stops
//! renewing its lease is offline in every unit's answer.

use std::sync::Arc;
use std::time::Duration;

use super::Node;
use super::handback::HandBackOutcome;
use super::serve::mailbox_id;
use crate::dispatch::ObjectRef;
use crate::mailbox::clock::monotonic_ms;
use crate::replica::{Freshness, KeeperPlan, UnlistedCopies, VersionVector, plan_fresh};
use dem_identity::{HostId, UserId};
use dem_net::WireError;
use dem_proto::ids::MailboxId;
use dem_proto::{DispatchRequest, DispatchResponse};

/// Rounds a leader behind a live peer waits for anti-entropy before it
/// copies from itself anyway (the peer's pushes may keep failing).
const BEHIND_ROUNDS_MAX: u32 = 3;

/// What the keeper remembers between rounds.
#[derive(Default)]
pub(super) struct KeeperState {
    /// Copies held here that dispatch may not list (yet, or any more).
    copies: UnlistedCopies<MailboxId>,
    /// Rounds this host led a mailbox while a live peer held ops it
    /// lacked, in a row.
    behind_rounds: std::collections::HashMap<MailboxId, u32>,
    /// This host's vector when it last weighed its peers' copies.
    marks: std::collections::HashMap<MailboxId, VersionVector>,
}

impl KeeperState {
    /// A copy of `id` just arrived (or was created) here.
    pub fn copied(&mut self, id: &MailboxId) {
        self.copies.arrived(id, monotonic_ms());
    }

    /// Whether the copy of `id` here is unlisted and held back.
    pub fn held_back(&self, id: &MailboxId) -> bool {
        self.copies.is_held_back(id)
    }
}

impl Node {
    /// Runs keeper rounds forever.
    pub async fn keep(self: Arc<Self>, every: Duration) {
        let grace_ms =
            u64::try_from((every * 5).max(Duration::from_secs(3)).as_millis()).unwrap_or(u64::MAX);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Ok(ids) = self.mailboxes.list() else {
                continue;
            };
            {
                let here: std::collections::HashSet<&MailboxId> = ids.iter().collect();
                let mut k = self.keeper();
                k.copies
                    .prune(|id| here.contains(id), monotonic_ms(), grace_ms);
                k.behind_rounds.retain(|id, _| here.contains(id));
                k.marks.retain(|id, _| here.contains(id));
            }
            for id in ids {
                let Ok(user) = id.as_str().parse::<UserId>() else {
                    continue;
                };
                if self.mailboxes.moved_to(&id).is_some() {
                    continue;
                }
                if let Err(e) = self.keep_one(user, grace_ms).await {
                    tracing::debug!(mailbox = %user.short(), host = %self.id.short(), error = %e.message, "keeper round");
                }
            }
            self.rebalance_round().await;
        }
    }

    /// One keeper step for `user`'s mailbox.
    pub(super) async fn keep_one(&self, user: UserId, grace_ms: u64) -> Result<(), WireError> {
        let id = mailbox_id(&user)?;
        let listing = self.listing(user, true).await?;
        let members = listing.liveness();
        let live_peers = |peers: &[HostId]| -> Vec<crate::dispatch::HostAddr> {
            listing
                .members
                .iter()
                .filter(|m| peers.contains(&m.host))
                .cloned()
                .collect()
        };
        let r = self.replication.r();
        // The vectors matter only where the set would change: a settled
        // plan without changes stays one with them (they only hold
        // changes back), and reading them wakes the mailbox.
        let settled = plan_fresh(self.id, r, &members, listing.home, Freshness::SETTLED);
        let decided = match settled {
            KeeperPlan::Lead { changed: true, .. } => {
                let fresh = self.freshness(&id, &listing).await;
                plan_fresh(self.id, r, &members, listing.home, fresh)
            }
            other => other,
        };
        match decided {
            KeeperPlan::NotMember => self.discard_if_stale(user, &id, &listing, grace_ms).await,
            KeeperPlan::Follow { peers } => {
                self.keeper().copies.listed(&id);
                self.kick_links(user, &live_peers(&peers));
                Ok(())
            }
            KeeperPlan::Lead {
                peers,
                keep,
                add,
                changed,
            } => {
                self.keeper().copies.listed(&id);
                self.kick_links(user, &live_peers(&peers));
                if changed {
                    self.reshape(user, &id, &listing, keep, add).await;
                }
                Ok(())
            }
        }
    }

    fn keeper(&self) -> std::sync::MutexGuard<'_, KeeperState> {
        self.keeper_state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What this host knows of its live peers' copies against its own,
    /// from the vectors its links last heard (see [`Freshness`]).
    pub(super) async fn freshness(
        &self,
        id: &MailboxId,
        listing: &super::sync::Listing,
    ) -> Freshness {
        let Ok((_, _, ours)) = self.mailboxes.since(id, VersionVector::new(), 0).await else {
            return Freshness {
                peers_caught_up: false,
                leader_behind: false,
            };
        };
        let acked = self.replication.peer_vectors(id);
        let mut k = self.keeper();
        // Peers are measured against what this host held when it last
        // looked: a copy made since holds that, and under a steady stream
        // of writes no peer ever holds the very latest op at the instant
        // of a round (those are on their way over the links).
        let mark = k
            .marks
            .insert(id.clone(), ours.clone())
            .unwrap_or(ours.clone());
        let live = listing
            .members
            .iter()
            .filter(|m| m.online && m.host != self.id);
        let (mut caught_up, mut behind) = (true, false);
        for m in live {
            match acked.get(&m.host) {
                Some(vv) => {
                    caught_up &= vv.covers(&mark);
                    behind |= !ours.covers(vv);
                }
                None => caught_up = false,
            }
        }
        let rounds = k.behind_rounds.entry(id.clone()).or_insert(0);
        *rounds = if behind { rounds.saturating_add(1) } else { 0 };
        Freshness {
            peers_caught_up: caught_up,
            leader_behind: behind && *rounds <= BEHIND_ROUNDS_MAX,
        }
    }

    /// For a copy this host holds but dispatch no longer lists: once it
    /// has stayed unlisted for the grace period, hand back what no listed
    /// replica holds, and discard it only once one holds all of it.
    async fn discard_if_stale(
        &self,
        user: UserId,
        id: &MailboxId,
        listing: &super::sync::Listing,
        grace_ms: u64,
    ) -> Result<(), WireError> {
        if !self.keeper().copies.stale(id, monotonic_ms(), grace_ms) {
            return Ok(());
        }
        let outcome = self.hand_back_round(user, id, listing).await;
        let mut k = self.keeper();
        match outcome {
            Ok(HandBackOutcome::Discarded) => k.copies.discarded(id),
            Ok(HandBackOutcome::HeldBack) | Err(_) => k.copies.hold_back(id, true),
        }
        outcome.map(|_| ())
    }

    /// As leader: place and copy `add` new replicas, then record `keep`
    /// plus them at the next epoch.
    async fn reshape(
        &self,
        user: UserId,
        id: &MailboxId,
        listing: &super::sync::Listing,
        keep: Vec<HostId>,
        add: usize,
    ) {
        let mut hosts = keep;
        let mut exclude: Vec<HostId> = listing.members.iter().map(|m| m.host).collect();
        for _ in 0..add {
            let placement = match self
                .session
                .dispatch(&DispatchRequest::Place {
                    object: ObjectRef::Mailbox(user),
                    exclude: exclude.clone(),
                })
                .await
            {
                Ok(DispatchResponse::Placement(p)) => p,
                Ok(_) | Err(_) => break,
            };
            exclude.push(placement.host);
            // A short probe first: a cached connection to a host that
            // crashed and restarted looks open until its idle timeout, and
            // a copy sent on it would stall this keeper round (every
            // mailbox's) that long. A failed probe drops the connection;
            // the next round places again.
            if let Err(e) = self
                .send_sync(
                    user,
                    &placement.addr,
                    placement.host,
                    Vec::new(),
                    Vec::new(),
                )
                .await
            {
                tracing::warn!(mailbox = %user.short(), host = %self.id.short(), to = %placement.host.short(), error = %e, "a new replica's host did not answer");
                continue;
            }
            match self.send_copy(id, &placement.addr, placement.host).await {
                Ok(_) => {
                    self.metrics.regenerated();
                    hosts.push(placement.host)
                }
                Err(e) => {
                    tracing::warn!(mailbox = %user.short(), host = %self.id.short(), to = %placement.host.short(), error = %e, "copying a new replica failed");
                }
            }
        }
        let listed: Vec<HostId> = listing.members.iter().map(|m| m.host).collect();
        if hosts == listed {
            return;
        }
        let req = DispatchRequest::LocationUpdate {
            object: ObjectRef::Mailbox(user),
            hosts: hosts.clone(),
            epoch: listing.epoch.next(),
        };
        match self.session.dispatch(&req).await {
            Ok(_) => {
                tracing::info!(mailbox = %user.short(), host = %self.id.short(), replicas = hosts.len(), epoch = listing.epoch.next().0, "replica set changed");
            }
            Err(e) => {
                tracing::warn!(mailbox = %user.short(), host = %self.id.short(), error = %e, "recording the replica set failed");
            }
        }
        self.replication.forget_listing(id);
    }
}
