//! Answers about names and locations: registration outcomes, lookups.
//! A lookup by name carries the holder's signed name claim, which the
//! sender checks itself (`dem-client`'s `recipient_key`).

use serde::{Deserialize, Serialize};

use dem_identity::{Epoch, HostId, SignedNameClaim, UserId};

use crate::AttachmentId;

/// The outcome of a successful registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registration {
    /// The name is now the user's.
    New,
    /// The user already held the name: nothing changed (the claim was not
    /// later than the one kept, so an old claim never rolls a key back).
    AlreadyYours,
    /// The user already held the name and their later claim replaced the
    /// kept one: a key rotation.
    Renewed,
}

/// A holder host, resolved for a client to connect to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostAddr {
    pub host: HostId,
    /// `None` if this unit has not yet heard of the host itself (its record
    /// is still being replicated).
    pub addr: Option<String>,
    pub online: bool,
}

/// Where a user's mailbox is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxLookup {
    pub user: UserId,
    pub epoch: Epoch,
    /// Holders in the order the holders reported them.
    pub hosts: Vec<HostAddr>,
    /// The owner's own host, while connected.
    pub home: Option<HostAddr>,
    /// The holder's current signed name claim, which binds their
    /// encryption key to the name, for the sender to verify itself: on
    /// lookups by name, when the unit keeps one. `None` from lookups by
    /// user id and from units that predate kept claims.
    #[serde(default)]
    pub name_claim: Option<SignedNameClaim>,
}

/// Where an attachment is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentLookup {
    pub id: AttachmentId,
    pub size_bytes: u64,
    pub epoch: Epoch,
    pub hosts: Vec<HostAddr>,
    /// Whether its reference lease holds: some mail may reference it, so
    /// it must not be collected yet.
    #[serde(default = "referenced_by_default")]
    pub referenced: bool,
}

/// An answer from a unit that predates reference leases: keep everything.
fn referenced_by_default() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use dem_identity::{KeyPair, Name};

    /// `MailboxLookup` as units sent it before kept claims.
    #[derive(Serialize, Deserialize)]
    struct OldMailboxLookup {
        user: UserId,
        epoch: Epoch,
        hosts: Vec<HostAddr>,
        home: Option<HostAddr>,
    }

    #[test]
    fn lookups_with_and_without_claims_decode_both_ways() {
        let alice = KeyPair::from_seed(&[1; 32]);
        let old = OldMailboxLookup {
            user: alice.user_id(),
            epoch: Epoch(2),
            hosts: Vec::new(),
            home: None,
        };
        let new: MailboxLookup =
            rmp_serde::from_slice(&rmp_serde::to_vec_named(&old).unwrap()).unwrap();
        assert_eq!((new.user, new.name_claim), (alice.user_id(), None));
        let claim =
            SignedNameClaim::sign(&alice, Name::new("alice").unwrap(), Some([7; 32]), 5).unwrap();
        let new = MailboxLookup {
            name_claim: Some(claim),
            ..new
        };
        let wire = rmp_serde::to_vec_named(&new).unwrap();
        assert_eq!(rmp_serde::from_slice::<MailboxLookup>(&wire).unwrap(), new);
        // An old peer ignores the field it does not know.
        let seen: OldMailboxLookup = rmp_serde::from_slice(&wire).unwrap();
        assert_eq!(seen.epoch, Epoch(2));
    }
}
