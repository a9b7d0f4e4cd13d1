//! Attachment replicas and references, sans-IO.
//!
//! An attachment is immutable and named by its BLAKE3, so its replicas
//! never need syncing: the keeper only keeps R copies listed and collects
//! the attachment once no mail references it. [`plan_attachment`] is the
//! mailbox keeper's [`super::keeper::plan`] (smallest online listed host
//! leads, drops expired holders, adds copies up to R, trims extras in one
//! deterministic order) plus that collection. [`holders_after_put`] is the
//! listing a host reports after an attachment was streamed to it,
//! [`unlisted_attachment`] what an unlisted copy does before it goes, and
//! [`RefTracker`] remembers which attachments each local mailbox
//! references, so a host rescans only the mailboxes that changed.
//! `node/attachment_keeper.rs` and `node/attachment_refs.rs` drive these.

use std::collections::{BTreeSet, HashMap};

use super::keeper::{KeeperPlan, Member, plan};
use dem_identity::HostId;
use dem_proto::AttachmentId;

/// What this host should do about one attachment it stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachmentPlan {
    /// Not listed: the copy is stale and goes after a grace period.
    NotMember,
    /// Listed, and either another host leads or nothing needs changing.
    Steady,
    /// Leader, and no mail references it any more: remove the listing.
    Collect,
    /// Leader: record `keep` plus `add` new copies at the next epoch.
    Reshape { keep: Vec<HostId>, add: usize },
}

/// Decides for host `me`, wanting `r` replicas, given the listing and
/// whether the attachment's reference lease still holds.
pub fn plan_attachment(
    me: HostId,
    r: usize,
    listed: &[Member],
    referenced: bool,
) -> AttachmentPlan {
    match plan(me, r, listed, None) {
        KeeperPlan::NotMember => AttachmentPlan::NotMember,
        KeeperPlan::Follow { .. } => AttachmentPlan::Steady,
        KeeperPlan::Lead { .. } if !referenced => AttachmentPlan::Collect,
        KeeperPlan::Lead {
            keep,
            add,
            changed: true,
            ..
        } => AttachmentPlan::Reshape { keep, add },
        KeeperPlan::Lead { .. } => AttachmentPlan::Steady,
    }
}

/// What a host does with a copy of an attachment that has stayed unlisted
/// for the grace period ([`super::unlisted`]). The content is immutable
/// and named by its hash, so "holds what the listing lacks" means: no
/// live listed holder (confirmed by offering it the copy, which it
/// verifies against the id or answers it already stores).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnlistedAttachment {
    /// Nothing references it any more (collected, or never recorded):
    /// the copy goes.
    Discard,
    /// Offer the copy to these live listed holders, in listing order; it
    /// goes once one of them holds it.
    Offer(Vec<HostId>),
    /// Still referenced, but no listed holder is live: keep the copy.
    HoldBack,
}

/// Decides for an unlisted copy, given the listing (`None`: dispatch knows
/// no such attachment) and whether mail still references it.
pub fn unlisted_attachment(listed: Option<&[Member]>, referenced: bool) -> UnlistedAttachment {
    let Some(listed) = listed else {
        return UnlistedAttachment::Discard;
    };
    if listed.is_empty() && !referenced {
        return UnlistedAttachment::Discard;
    }
    let live: Vec<HostId> = listed.iter().filter(|m| m.online).map(|m| m.host).collect();
    if live.is_empty() {
        UnlistedAttachment::HoldBack
    } else {
        UnlistedAttachment::Offer(live)
    }
}

/// The listing `me` reports after `sender` streamed an attachment to it:
/// a listed sender (a holder leaving) is replaced in place, anyone else (a
/// user uploading) adds `me` to what is listed.
pub fn holders_after_put(listed: &[HostId], sender: HostId, me: HostId) -> Vec<HostId> {
    let mut hosts: Vec<HostId> = listed.iter().copied().filter(|h| *h != me).collect();
    match hosts.iter().position(|h| *h == sender) {
        Some(i) => hosts[i] = me,
        None => hosts.push(me),
    }
    hosts
}

/// Which attachments each local mailbox's mails reference, as of which
/// log position.
#[derive(Debug, Default)]
pub struct RefTracker {
    /// Mailbox id → (its last log seq when scanned, what it references).
    scanned: HashMap<String, (u64, BTreeSet<AttachmentId>)>,
}

impl RefTracker {
    /// Whether `mailbox` changed (or was never scanned) since its last scan.
    pub fn needs_scan(&self, mailbox: &str, last_seq: u64) -> bool {
        self.scanned
            .get(mailbox)
            .is_none_or(|(seq, _)| *seq != last_seq)
    }

    /// `mailbox` at `last_seq` references `ids`.
    pub fn record(&mut self, mailbox: &str, last_seq: u64, ids: BTreeSet<AttachmentId>) {
        self.scanned.insert(mailbox.to_string(), (last_seq, ids));
    }

    /// Forgets mailboxes that are no longer here.
    pub fn retain(&mut self, here: &BTreeSet<String>) {
        self.scanned.retain(|m, _| here.contains(m));
    }

    /// Every referenced attachment once, in id order, in batches of at most
    /// `batch_max` ids.
    pub fn batches(&self, batch_max: usize) -> Vec<Vec<AttachmentId>> {
        let all: BTreeSet<&AttachmentId> = self.scanned.values().flat_map(|(_, ids)| ids).collect();
        let all: Vec<AttachmentId> = all.into_iter().cloned().collect();
        all.chunks(batch_max.max(1)).map(<[_]>::to_vec).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(b: u8) -> HostId {
        HostId([b; 32])
    }

    fn m(b: u8, online: bool) -> Member {
        Member { host: h(b), online }
    }

    fn att(b: u8) -> AttachmentId {
        format!("{b:02x}").repeat(32).parse().unwrap()
    }

    #[test]
    fn an_unlisted_copy_goes_only_once_a_live_holder_has_it_or_nobody_needs_it() {
        use UnlistedAttachment::*;
        assert_eq!(unlisted_attachment(None, true), Discard, "never recorded");
        assert_eq!(unlisted_attachment(Some(&[]), false), Discard, "collected");
        // Referenced but listed nowhere: the only copy may be this one.
        assert_eq!(unlisted_attachment(Some(&[]), true), HoldBack);
        let down = [m(1, false), m(2, false)];
        assert_eq!(unlisted_attachment(Some(&down), true), HoldBack);
        let some_up = [m(1, false), m(2, true), m(3, true)];
        assert_eq!(
            unlisted_attachment(Some(&some_up), true),
            Offer(vec![h(2), h(3)])
        );
    }

    #[test]
    fn the_leader_regenerates_trims_and_collects() {
        let listed = [m(1, false), m(2, true), m(3, true)];
        assert_eq!(
            plan_attachment(h(2), 3, &listed, true),
            AttachmentPlan::Reshape {
                keep: vec![h(2), h(3)],
                add: 1
            }
        );
        assert_eq!(
            plan_attachment(h(3), 3, &listed, true),
            AttachmentPlan::Steady
        );
        assert_eq!(
            plan_attachment(h(9), 3, &listed, true),
            AttachmentPlan::NotMember
        );
        assert_eq!(
            plan_attachment(h(2), 3, &listed, false),
            AttachmentPlan::Collect
        );
        assert_eq!(
            plan_attachment(h(3), 3, &listed, false),
            AttachmentPlan::Steady,
            "only the leader collects"
        );
        let full = [m(4, true), m(2, true), m(3, true)];
        assert_eq!(
            plan_attachment(h(2), 3, &full, true),
            AttachmentPlan::Steady
        );
        let extra = [m(5, true), m(4, true), m(2, true), m(3, true)];
        assert_eq!(
            plan_attachment(h(2), 3, &extra, true),
            AttachmentPlan::Reshape {
                keep: vec![h(2), h(5), h(4)],
                add: 0
            }
        );
    }

    #[test]
    fn a_put_replaces_a_leaving_holder_or_adds_the_receiver() {
        assert_eq!(holders_after_put(&[], h(7), h(1)), vec![h(1)]);
        assert_eq!(
            holders_after_put(&[h(2), h(3), h(4)], h(3), h(1)),
            vec![h(2), h(1), h(4)]
        );
        assert_eq!(
            holders_after_put(&[h(2), h(3)], h(7), h(1)),
            vec![h(2), h(3), h(1)]
        );
        assert_eq!(
            holders_after_put(&[h(1), h(2)], h(7), h(1)),
            vec![h(2), h(1)]
        );
    }

    #[test]
    fn references_are_rescanned_only_on_change_and_batched() {
        let mut t = RefTracker::default();
        assert!(t.needs_scan("a", 0));
        t.record("a", 5, [att(1), att(2)].into());
        t.record("b", 2, [att(2), att(3)].into());
        assert!(!t.needs_scan("a", 5));
        assert!(t.needs_scan("a", 6));
        assert_eq!(t.batches(2), vec![vec![att(1), att(2)], vec![att(3)]]);
        t.retain(&["b".to_string()].into());
        assert_eq!(t.batches(10), vec![vec![att(2), att(3)]]);
        t.record("b", 3, BTreeSet::new());
        assert!(t.batches(10).is_empty());
    }
}
