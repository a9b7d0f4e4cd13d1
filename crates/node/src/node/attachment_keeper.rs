//! The attachment keeper: every keeper round, for each
//! attachment stored here, look at its listing and act on
//! [`plan_attachment`]:
//! - as the leader (smallest online listed host), drop holders whose lease
//!   expired, place and copy new replicas until R are live, trim extras,
//!   and record the new holder set at the next epoch (the unit refuses a
//!   stale epoch, so of two leaders acting on old pictures one lands);
//! - as the leader of an attachment whose reference lease has passed,
//!   remove its listing (garbage collection) and the local copy;
//! - as a host that is not listed (any more), once the copy has stayed
//!   unlisted for a grace period (a fresh copy is listed only once it is
//!   complete), discard it only if nothing references the attachment or a
//!   live listed holder has it — offered the copy, it verifies it against
//!   the id or answers that it stores it already; otherwise the copy is
//!   held back ([`unlisted_attachment`]).
//!
//! Copies are `AttachmentCopy` streams of 1 MiB chunks, each checked on
//! arrival and the whole against the id before the file becomes visible.
//! Each is probed first and bounded in time by its size
//! (`transfer.rs`): rounds run one attachment after another, so one copy
//! stuck on a stale connection would stall every attachment here.
//! An upload (`transfer.rs`) uses the same copies to reach R hosts before
//! it is acknowledged. The references themselves are renewed by
//! `attachment_refs.rs`.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::Node;
use super::serve::internal;
use crate::dispatch::client::ClientError;
use crate::dispatch::{AttachmentId, AttachmentLookup, HostAddr, ObjectRef};
use crate::mailbox::clock::monotonic_ms;
use crate::replica::attachment::{
    AttachmentPlan, UnlistedAttachment, holders_after_put, plan_attachment, unlisted_attachment,
};
use crate::replica::{Member, UnlistedCopies};
use dem_client::SessionError;
use dem_identity::{Epoch, HostId};
use dem_net::WireError;
use dem_proto::dispatch::NOT_FOUND;
use dem_proto::{DispatchRequest, DispatchResponse};
use dem_store::attachments;

/// What the attachment keeper remembers between rounds.
#[derive(Default)]
pub(super) struct AttachmentKeeperState {
    /// Copies stored here that dispatch may not list (yet, or any more).
    copies: UnlistedCopies<AttachmentId>,
    /// Attachments an upload is copying to more hosts right now: the
    /// upload records their set, so the keeper leaves them alone.
    busy: HashSet<AttachmentId>,
}

impl Node {
    fn att_keeper(&self) -> std::sync::MutexGuard<'_, AttachmentKeeperState> {
        self.attachment_keeper
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of `id` is now durable here.
    pub(super) fn attachment_arrived(&self, id: &AttachmentId) {
        let mut k = self.att_keeper();
        k.copies.arrived(id, monotonic_ms());
    }

    /// The unit's listing of `id`; `None` if it knows no such attachment.
    pub(super) async fn attachment_lookup(
        &self,
        id: &AttachmentId,
    ) -> Result<Option<AttachmentLookup>, WireError> {
        let req = DispatchRequest::LookupAttachment { id: *id };
        match self.session.dispatch(&req).await {
            Ok(DispatchResponse::Attachment(found)) => Ok(Some(found)),
            Ok(other) => Err(internal(format!("dispatch answered {other:?}"))),
            Err(SessionError::Dispatch(ClientError::Refused { error, .. }))
                if error.code == NOT_FOUND =>
            {
                Ok(None)
            }
            Err(e) => Err(WireError::new(
                WireError::BUSY,
                format!("no dispatch unit answered: {e}"),
            )),
        }
    }

    /// Records `id` at `hosts`, `epoch`.
    async fn record_holders(
        &self,
        id: &AttachmentId,
        hosts: Vec<HostId>,
        epoch: Epoch,
    ) -> Result<(), WireError> {
        let req = DispatchRequest::LocationUpdate {
            object: ObjectRef::Attachment(*id),
            hosts,
            epoch,
        };
        match self.session.dispatch(&req).await {
            Ok(_) => Ok(()),
            Err(e) => Err(internal(format!("location update: {e}"))),
        }
    }

    /// After an `AttachmentPut` from `sender` is durable here: list this
    /// host (in the sender's place if the sender is a leaving holder), and
    /// for an upload copy it until R hosts hold it. Ok once W do (fewer
    /// only if placement finds fewer hosts).
    pub(super) async fn settle_put(
        self: Arc<Self>,
        id: &AttachmentId,
        sender: HostId,
    ) -> Result<(), WireError> {
        // The keeper leaves the set to this upload meanwhile.
        self.att_keeper().busy.insert(*id);
        let settled = self.clone().settle_put_busy(id, sender).await;
        self.att_keeper().busy.remove(id);
        settled
    }

    async fn settle_put_busy(
        self: Arc<Self>,
        id: &AttachmentId,
        sender: HostId,
    ) -> Result<(), WireError> {
        let found = self.attachment_lookup(id).await?;
        let (listed, epoch) = found
            .as_ref()
            .map(|f| (f.hosts.iter().map(|h| h.host).collect(), f.epoch))
            .unwrap_or((Vec::new(), Epoch(0)));
        let hosts = holders_after_put(&listed, sender, self.id);
        let moved_in = listed.contains(&sender);
        if listed.contains(&self.id) && !moved_in {
            // Listed already (the user's upload found it stored here).
            return Ok(());
        }
        self.record_holders(id, hosts.clone(), epoch.next()).await?;
        if moved_in {
            return Ok(());
        }
        let (held, reachable) = self.clone().add_replicas(id, hosts, epoch.next()).await?;
        let w = self.replication.write_quorum.load(Relaxed).max(1);
        let needed = w.min(reachable);
        if held >= needed {
            Ok(())
        } else {
            Err(WireError::new(
                WireError::BUSY,
                format!(
                    "attachment {id} is durable on {held} of the {needed} hosts needed; \
                     it will be copied to more, and sending it again is safe"
                ),
            ))
        }
    }

    /// Places and copies replicas of `id` (listed at `hosts`, `epoch`)
    /// until R hosts hold it, and records them. Returns how many listed
    /// hosts hold it after, and how many could have (listed + placed).
    async fn add_replicas(
        self: Arc<Self>,
        id: &AttachmentId,
        hosts: Vec<HostId>,
        epoch: Epoch,
    ) -> Result<(usize, usize), WireError> {
        let r = self.replication.r();
        let added = self
            .clone()
            .place_and_copy(id, r.saturating_sub(hosts.len()), &hosts)
            .await;
        let reachable = hosts.len() + added.placed;
        if added.copied.is_empty() {
            return Ok((hosts.len(), reachable));
        }
        let mut all = hosts;
        all.extend(added.copied);
        match self.record_holders(id, all.clone(), epoch.next()).await {
            Ok(()) => Ok((all.len(), reachable)),
            // Someone else changed the set meanwhile: count what it lists
            // (listed copies are complete).
            Err(_) => {
                let listed = self.attachment_lookup(id).await?;
                let online = listed.map_or(0, |f| f.hosts.iter().filter(|h| h.online).count());
                Ok((online, reachable))
            }
        }
    }

    /// Asks dispatch for `n` hosts (avoiding `exclude`) and copies `id` to
    /// each, all at once.
    async fn place_and_copy(
        self: Arc<Self>,
        id: &AttachmentId,
        n: usize,
        exclude: &[HostId],
    ) -> Added {
        let mut exclude = exclude.to_vec();
        let mut copies = tokio::task::JoinSet::new();
        let mut placed = 0;
        for _ in 0..n {
            let req = DispatchRequest::Place {
                object: ObjectRef::Attachment(*id),
                exclude: exclude.clone(),
            };
            let p = match self.session.dispatch(&req).await {
                Ok(DispatchResponse::Placement(p)) => p,
                Ok(_) | Err(_) => break,
            };
            exclude.push(p.host);
            placed += 1;
            let node = self.clone();
            let id = *id;
            copies.spawn(async move {
                match node.copy_attachment(&id, p.host, &p.addr, false).await {
                    Ok(()) => Some(p.host),
                    Err(e) => {
                        tracing::warn!(attachment = %id, to = %p.host.short(), error = %e, "copying an attachment replica failed");
                        None
                    }
                }
            });
        }
        let mut copied = Vec::new();
        while let Some(done) = copies.join_next().await {
            if let Ok(Some(host)) = done {
                copied.push(host);
            }
        }
        // Listing order is preference order: keep it deterministic.
        copied.sort();
        Added { placed, copied }
    }

    /// Runs attachment keeper rounds forever.
    pub async fn keep_attachments(self: Arc<Self>, every: Duration) {
        let grace_ms =
            u64::try_from((every * 5).max(Duration::from_secs(3)).as_millis()).unwrap_or(u64::MAX);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let store = self.attachments.clone();
            let Ok(Ok(stored)) = tokio::task::spawn_blocking(move || store.list()).await else {
                continue;
            };
            let ids: Vec<AttachmentId> = stored
                .iter()
                .filter_map(|m| m.id.to_hex().parse().ok())
                .collect();
            {
                let here: HashSet<&AttachmentId> = ids.iter().collect();
                let mut k = self.att_keeper();
                k.copies
                    .prune(|id| here.contains(id), monotonic_ms(), grace_ms);
            }
            for id in ids {
                if let Err(e) = self.clone().keep_attachment(&id, grace_ms).await {
                    tracing::debug!(attachment = %id, host = %self.id.short(), error = %e.message, "attachment keeper round");
                }
            }
        }
    }

    /// One keeper step for attachment `id`, stored here.
    async fn keep_attachment(
        self: Arc<Self>,
        id: &AttachmentId,
        grace_ms: u64,
    ) -> Result<(), WireError> {
        if self.att_keeper().busy.contains(id) {
            return Ok(());
        }
        let found = self.attachment_lookup(id).await?;
        let hosts: &[HostAddr] = found.as_ref().map_or(&[], |f| &f.hosts[..]);
        let members: Vec<Member> = hosts
            .iter()
            .map(|h| Member {
                host: h.host,
                online: h.online,
            })
            .collect();
        let referenced = found.as_ref().is_none_or(|f| f.referenced);
        let epoch = found.as_ref().map_or(Epoch(0), |f| f.epoch);
        let plan = plan_attachment(self.id, self.replication.r(), &members, referenced);
        if plan != AttachmentPlan::NotMember {
            self.att_keeper().copies.listed(id);
        }
        match plan {
            AttachmentPlan::NotMember => {
                let listed = found.as_ref().map(|_| &members[..]);
                self.discard_attachment_if_stale(id, grace_ms, listed, referenced, hosts)
                    .await
            }
            AttachmentPlan::Steady => Ok(()),
            AttachmentPlan::Collect => {
                self.record_holders(id, Vec::new(), epoch.next()).await?;
                tracing::info!(attachment = %id, host = %self.id.short(), "attachment collected: no mail references it");
                self.remove_attachment(id).await
            }
            AttachmentPlan::Reshape { keep, add } => {
                let listed: Vec<HostId> = members.iter().map(|m| m.host).collect();
                let added = self.clone().place_and_copy(id, add, &listed).await;
                let mut all = keep;
                all.extend(added.copied);
                if all == listed {
                    return Ok(());
                }
                self.record_holders(id, all.clone(), epoch.next()).await?;
                tracing::info!(attachment = %id, host = %self.id.short(), replicas = all.len(), epoch = epoch.next().0, "attachment holder set changed");
                Ok(())
            }
        }
    }

    /// Removes an unlisted copy once it has been unlisted for `grace` (and
    /// did not just arrive), and only if nothing references it or a live
    /// listed holder has it; else holds it back.
    async fn discard_attachment_if_stale(
        &self,
        id: &AttachmentId,
        grace_ms: u64,
        listed: Option<&[Member]>,
        referenced: bool,
        hosts: &[HostAddr],
    ) -> Result<(), WireError> {
        if !self.att_keeper().copies.stale(id, monotonic_ms(), grace_ms) {
            return Ok(());
        }
        let holder = match unlisted_attachment(listed, referenced) {
            UnlistedAttachment::Discard => None,
            UnlistedAttachment::Offer(live) => {
                let mut holder = None;
                for to in live {
                    let Some(addr) = hosts
                        .iter()
                        .find(|h| h.host == to)
                        .and_then(|h| h.addr.clone())
                    else {
                        continue;
                    };
                    match self.copy_attachment(id, to, &addr, false).await {
                        Ok(()) => {
                            holder = Some(to);
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(attachment = %id, host = %self.id.short(), to = %to.short(), error = %e, "offering an unlisted attachment copy failed");
                        }
                    }
                }
                if holder.is_none() {
                    self.hold_back_attachment(id);
                    return Ok(());
                }
                holder
            }
            UnlistedAttachment::HoldBack => {
                self.hold_back_attachment(id);
                return Ok(());
            }
        };
        // The copy may have been listed again while it was offered.
        if self
            .attachment_lookup(id)
            .await?
            .is_some_and(|f| f.hosts.iter().any(|h| h.host == self.id))
        {
            return Ok(());
        }
        self.att_keeper().copies.discarded(id);
        match holder {
            Some(h) => {
                tracing::info!(attachment = %id, host = %self.id.short(), holder = %h.short(), "discarding an unlisted attachment copy: a live listed holder has it")
            }
            None => {
                tracing::info!(attachment = %id, host = %self.id.short(), "discarding an unlisted attachment copy nothing references")
            }
        }
        self.remove_attachment(id).await
    }

    /// Keeps the unlisted copy `id`: it may be the only one.
    fn hold_back_attachment(&self, id: &AttachmentId) {
        let mut k = self.att_keeper();
        if !k.copies.is_held_back(id) {
            tracing::info!(attachment = %id, host = %self.id.short(), "holding back an unlisted attachment copy: no live listed holder has it");
        }
        k.copies.hold_back(id, true);
    }

    /// The attachments whose unlisted copies are held back here, at most
    /// `max`.
    pub(super) fn held_back_attachments(&self, max: usize) -> Vec<AttachmentId> {
        let k = self.att_keeper();
        k.copies.held_back().take(max).copied().collect()
    }

    async fn remove_attachment(&self, id: &AttachmentId) -> Result<(), WireError> {
        let local = *id;
        let store = self.attachments.clone();
        match tokio::task::spawn_blocking(move || store.remove(&local)).await {
            Ok(Ok(())) | Ok(Err(attachments::RemoveError::NotFound(_))) => Ok(()),
            Ok(Err(e)) => Err(internal(e)),
            Err(e) => Err(internal(e)),
        }
    }
}

/// What [`Node::place_and_copy`] achieved.
struct Added {
    /// Hosts dispatch placed a copy on.
    placed: usize,
    /// Those that now hold a complete copy, in id order.
    copied: Vec<HostId>,
}
