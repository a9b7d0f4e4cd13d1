//! The keeper's rebalancing step: now and then, ask a dispatch unit
//! whether a replica set this host leads should shed a replica to a less
//! loaded host (`dispatch::rebalance`), and carry the move out.
//!
//! The move is a regeneration with a swap: copy to the target, then list
//! the target in place of the shed host at the next epoch. The shed host
//! finds itself unlisted and, like any unlisted copy, hands back what no
//! listed replica holds before it discards (`handback.rs`), so a move
//! racing a delivery loses nothing. The set is checked once more here
//! before anything is copied: it must still be complete, led by this host,
//! with every live peer caught up, since the unit answered from its tables
//! and this host knows the copies.
//!
//! Asking costs the unit a pass over its tables, so a host asks only every
//! [`REBALANCE_ROUNDS`] keeper rounds while the answers are "none", and
//! again at the next round after a move (there may be more to shed).

use std::time::Instant;

use super::Node;
use super::serve::mailbox_id;
use crate::dispatch::ObjectRef;
use crate::replica::{Freshness, KeeperPlan, plan_fresh};
use dem_identity::HostId;
use dem_net::WireError;
use dem_proto::dispatch::placement::RebalanceMove;
use dem_proto::{DispatchRequest, DispatchResponse};

/// Keeper rounds between asks while the network is balanced.
pub(super) const REBALANCE_ROUNDS: u32 = 10;

/// When to ask next: a countdown in keeper rounds.
#[derive(Debug, Default)]
pub(super) struct RebalancePacer {
    wait_rounds: u32,
}

impl RebalancePacer {
    /// Whether this round should ask (and count one round down if not).
    pub fn due(&mut self) -> bool {
        if self.wait_rounds == 0 {
            return true;
        }
        self.wait_rounds -= 1;
        false
    }

    /// After an ask: again next round if a move came back.
    pub fn asked(&mut self, moved: bool) {
        self.wait_rounds = if moved { 0 } else { REBALANCE_ROUNDS };
    }
}

impl Node {
    /// One rebalancing ask, if due; a proposed move is carried out.
    pub(super) async fn rebalance_round(&self) {
        if !self.rebalance_pacer().due() {
            return;
        }
        let answer = self.session.dispatch(&DispatchRequest::Rebalance).await;
        let mv = match answer {
            Ok(DispatchResponse::Rebalance(mv)) => mv,
            Ok(other) => {
                tracing::debug!(host = %self.id.short(), "dispatch answered a rebalance ask with {other:?}");
                None
            }
            Err(e) => {
                tracing::debug!(host = %self.id.short(), error = %e, "rebalance ask");
                None
            }
        };
        self.rebalance_pacer().asked(mv.is_some());
        if let Some(mv) = mv {
            let shed = self.shed(&mv).await;
            self.metrics.rebalanced(shed.is_ok());
            if let Err(e) = shed {
                tracing::info!(host = %self.id.short(), to = %mv.placement.host.short(), shed = %mv.shed.short(), error = %e.message, "rebalancing move not made");
            }
        }
    }

    fn rebalance_pacer(&self) -> std::sync::MutexGuard<'_, RebalancePacer> {
        self.rebalance_pacer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Copies the mailbox to the move's target and lists it in place of
    /// the shed host.
    async fn shed(&self, mv: &RebalanceMove) -> Result<(), WireError> {
        let skip = |why: &str| {
            Err(WireError::new(
                dem_proto::ErrorCode::Conflict,
                why.to_owned(),
            ))
        };
        let ObjectRef::Mailbox(user) = mv.placement.object else {
            return skip("only mailboxes are rebalanced");
        };
        let id = mailbox_id(&user)?;
        if self.mailboxes.moved_to(&id).is_some() {
            return skip("the mailbox is moving");
        }
        let started = Instant::now();
        let listing = self.listing(user, true).await?;
        let listed: Vec<HostId> = listing.members.iter().map(|m| m.host).collect();
        let target = mv.placement.host;
        if !listed.contains(&mv.shed) || listed.contains(&target) {
            return skip("the listing changed");
        }
        let members = listing.liveness();
        let r = self.replication.r();
        let settled = matches!(
            plan_fresh(self.id, r, &members, listing.home, Freshness::SETTLED),
            KeeperPlan::Lead { changed: false, .. }
        );
        if !settled {
            return skip("the set is not settled under this host's lead");
        }
        let fresh = self.freshness(&id, &listing).await;
        if !fresh.peers_caught_up || fresh.leader_behind {
            return skip("the replicas are not in sync yet");
        }
        // A short probe first, as for a regenerated copy: a cached
        // connection to a restarted host looks open until it times out.
        self.send_sync(user, &mv.placement.addr, target, Vec::new(), Vec::new())
            .await
            .map_err(|e| WireError::new(WireError::BUSY, format!("probing the target: {e}")))?;
        self.send_copy(&id, &mv.placement.addr, target)
            .await
            .map_err(|e| WireError::new(WireError::BUSY, format!("copying to the target: {e}")))?;
        let hosts: Vec<HostId> = listed
            .iter()
            .copied()
            .filter(|h| *h != mv.shed)
            .chain([target])
            .collect();
        let req = DispatchRequest::LocationUpdate {
            object: ObjectRef::Mailbox(user),
            hosts,
            epoch: listing.epoch.next(),
        };
        let done = self.session.dispatch(&req).await;
        self.replication.forget_listing(&id);
        done.map_err(|e| WireError::new(WireError::BUSY, format!("recording the move: {e}")))?;
        tracing::info!(mailbox = %user.short(), host = %self.id.short(), to = %target.short(), shed = %mv.shed.short(), took_ms = started.elapsed().as_millis() as u64, "replica moved for balance");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_waits_while_balanced_and_asks_again_after_a_move() {
        let mut p = RebalancePacer::default();
        assert!(p.due());
        p.asked(false);
        for _ in 0..REBALANCE_ROUNDS {
            assert!(!p.due());
        }
        assert!(p.due());
        p.asked(true);
        assert!(p.due());
    }
}
