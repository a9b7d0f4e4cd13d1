//! Attachment reference leases: how the unit knows an attachment may be
//! garbage-collected.
//!
//! An attachment is shared by every mail that references it, on every
//! replica of every recipient's mailbox, and it is uploaded before the mail
//! that references it is delivered. Reference counts would have to be
//! kept exact across all of that (and across units that merge in any
//! order); a lease only needs "some mail still references it" to be said
//! again from time to time. So each record has `referenced_until_ms`: the
//! upload sets it one grace period ahead, a sender reusing a stored
//! attachment renews it, and every host holding a mailbox renews the
//! attachments that mailbox's mails reference (every quarter grace). The
//! later expiry wins when units merge ([`super::tables`]). Once it has
//! passed, a holder may remove the attachment ([`super::location`] refuses
//! the removal before).

use super::tables::Merge;
use super::updates::Update;
use super::{Action, DispatchUnit};
use dem_identity::Epoch;
use dem_proto::AttachmentId;

impl DispatchUnit {
    /// Some mail may reference each of `ids` for another grace period from
    /// `now_ms`: renews their leases. Unknown and removed attachments are
    /// skipped (a renewal creates nothing). A lease with more than three
    /// quarters of a grace period left is not touched, so steady renewals
    /// do not rewrite and replicate the tables every time.
    /// Precondition: the caller bounded `ids` (`ATTACHMENT_REFS_MAX`).
    pub fn handle_attachment_refs(&mut self, now_ms: u64, ids: &[AttachmentId]) -> Vec<Action> {
        let grace_ms = self.limits.attachment_grace_ms;
        let until_ms = now_ms.saturating_add(grace_ms);
        let fresh_ms = until_ms.saturating_sub(grace_ms / 4);
        let mut actions = Vec::new();
        for id in ids {
            let Some(rec) = self.tables.attachments.get(id) else {
                continue;
            };
            let removed = rec.hosts.is_empty() && rec.epoch > Epoch(0);
            let fresh = rec.referenced_until_ms.is_some_and(|u| u >= fresh_ms);
            if removed || fresh {
                continue;
            }
            if let Some(action) = self.renew_attachment(id, until_ms) {
                actions.push(action);
            }
        }
        actions
    }

    /// Sets the reference lease of `id` (which has a record) to at least
    /// `until_ms`.
    pub(crate) fn renew_attachment(&mut self, id: &AttachmentId, until_ms: u64) -> Option<Action> {
        let changed = self
            .tables
            .merge_attachment_referenced(&self.limits, id, until_ms)
            // The record exists, so no table limit applies.
            .unwrap_or(false);
        changed.then_some(Action::Replicate(Update::AttachmentReferenced {
            id: *id,
            until_ms,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::limits::ATTACHMENT_GRACE_MS;
    use super::super::objects::ObjectRef;
    use super::super::testutil::*;
    use super::*;

    fn att(b: u8) -> AttachmentId {
        format!("{b:02x}").repeat(32).parse().unwrap()
    }

    #[test]
    fn uploads_start_a_lease_that_renewals_extend() {
        let mut u = unit_with_hosts(0, 3);
        let (p, _) = u.place_new_attachment(10, &att(1), 5).unwrap();
        let rec = &u.tables().attachments[&att(1)];
        assert_eq!(rec.referenced_until_ms, Some(10 + ATTACHMENT_GRACE_MS));
        assert!(rec.is_referenced(9 + ATTACHMENT_GRACE_MS));
        assert!(!rec.is_referenced(10 + ATTACHMENT_GRACE_MS));
        let obj = ObjectRef::Attachment(att(1));
        u.handle_location_update(20, p.host, &obj, vec![p.host], Epoch(1))
            .unwrap();

        // Fresh leases are left alone; unknown ids are skipped.
        assert!(u.handle_attachment_refs(20, &[att(1), att(2)]).is_empty());
        let later = ATTACHMENT_GRACE_MS / 2;
        let acts = u.handle_attachment_refs(later, &[att(1)]);
        assert_eq!(
            updates(&acts),
            vec![Update::AttachmentReferenced {
                id: att(1),
                until_ms: later + ATTACHMENT_GRACE_MS
            }]
        );
        assert!(!u.tables().attachments.contains_key(&att(2)));

        // Collected only once the lease has passed.
        let end = later + ATTACHMENT_GRACE_MS;
        assert!(
            u.handle_location_update(end - 1, p.host, &obj, vec![], Epoch(2))
                .is_err()
        );
        u.handle_location_update(end, p.host, &obj, vec![], Epoch(2))
            .unwrap();
        // A removed attachment is not renewed.
        assert!(u.handle_attachment_refs(end + 1, &[att(1)]).is_empty());
    }

    #[test]
    fn leases_merge_to_the_later_expiry() {
        let mut a = unit_with_hosts(0, 1);
        a.place_new_attachment(0, &att(1), 5).unwrap();
        let mut b = a.clone();
        let early = Update::AttachmentReferenced {
            id: att(1),
            until_ms: 7,
        };
        let late = Update::AttachmentReferenced {
            id: att(1),
            until_ms: 2 * ATTACHMENT_GRACE_MS,
        };
        a.apply_update(0, early.clone()).unwrap();
        a.apply_update(0, late.clone()).unwrap();
        b.apply_update(0, late).unwrap();
        assert!(
            !b.apply_update(0, early).unwrap(),
            "an earlier expiry loses"
        );
        assert_eq!(a.tables(), b.tables());
        // A lease may arrive before the location it belongs to.
        let early_lease = Update::AttachmentReferenced {
            id: att(9),
            until_ms: 1,
        };
        assert!(a.apply_update(0, early_lease).unwrap());
        assert_eq!(a.tables().attachments[&att(9)].referenced_until_ms, Some(1));
    }
}
