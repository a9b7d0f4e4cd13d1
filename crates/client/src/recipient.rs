//! The recipient's encryption key, checked by the sender itself.
//!
//! A lookup by name ([`MailboxLookup`]) carries the recipient's signed name
//! claim, which binds their X25519 encryption key to the name (issue 17).
//! The dispatch unit that answers, and anything between it and the sender,
//! is not trusted with that binding: [`recipient_key`] accepts the key only
//! from a claim the looked-up user signed for the very name the sender
//! asked for. Sealing to the key is `dem-seal`'s business, next door to
//! whoever calls this.

use dem_identity::{NameClaimError, UserId};
use dem_proto::dispatch::MailboxLookup;

/// Why the key in a lookup cannot be trusted.
#[derive(Debug, thiserror::Error)]
pub enum RecipientKeyError {
    /// The answer carries no claim: the unit predates kept claims, or the
    /// record was made before them, or the unit (or someone between)
    /// stripped it. Whether to send unsealed is the caller's call.
    #[error("the dispatch unit's answer for {name:?} carries no signed name claim")]
    NoClaim {
        /// The name asked for.
        name: String,
    },
    /// The claim's signature or body is bad, or it is not self-signed.
    #[error("the name claim for {name:?} does not verify")]
    Invalid {
        /// The name asked for.
        name: String,
        #[source]
        source: NameClaimError,
    },
    /// A good claim, but by another user than the mailbox looked up: the
    /// answer pairs someone's key with someone else's mailbox.
    #[error("the name claim for {name:?} is by {claimed}, but the mailbox found is {user}'s")]
    OtherUser {
        /// The name asked for.
        name: String,
        /// Who signed the claim.
        claimed: UserId,
        /// Whose mailbox the lookup found.
        user: UserId,
    },
    /// A good claim, but for another name than the one asked for.
    #[error("asked for {asked:?}, but the name claim is for {claimed:?}")]
    OtherName {
        /// The name asked for.
        asked: String,
        /// The name the claim is for.
        claimed: String,
    },
}

/// The encryption key of `name`'s holder, from `lookup`, the dispatch
/// unit's answer to a lookup of `name`.
///
/// The claim must verify, be signed by `lookup.user` (the mailbox the mail
/// will go to) and be for `name`. `Ok(None)` when the holder's claim binds
/// no key (one made before keys existed): the holder cannot open sealed
/// mail yet.
pub fn recipient_key(
    lookup: &MailboxLookup,
    name: &str,
) -> Result<Option<[u8; 32]>, RecipientKeyError> {
    let signed = lookup
        .name_claim
        .as_ref()
        .ok_or_else(|| RecipientKeyError::NoClaim {
            name: name.to_string(),
        })?;
    let claim = signed
        .verify()
        .map_err(|source| RecipientKeyError::Invalid {
            name: name.to_string(),
            source,
        })?;
    if claim.user != lookup.user {
        return Err(RecipientKeyError::OtherUser {
            name: name.to_string(),
            claimed: claim.user,
            user: lookup.user,
        });
    }
    if claim.name.as_str() != name {
        return Err(RecipientKeyError::OtherName {
            asked: name.to_string(),
            claimed: claim.name.to_string(),
        });
    }
    Ok(claim.encryption_key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dem_identity::{Epoch, KeyPair, Name, SignedNameClaim};

    fn lookup(user: UserId, claim: Option<SignedNameClaim>) -> MailboxLookup {
        MailboxLookup {
            user,
            epoch: Epoch(1),
            hosts: Vec::new(),
            home: None,
            name_claim: claim,
        }
    }

    fn claim(key: &KeyPair, name: &str, enc: Option<[u8; 32]>) -> SignedNameClaim {
        SignedNameClaim::sign(key, Name::new(name).unwrap(), enc, 5).unwrap()
    }

    #[test]
    fn a_good_claim_gives_its_key() {
        let alice = KeyPair::from_seed(&[1; 32]);
        let l = lookup(alice.user_id(), Some(claim(&alice, "alice", Some([7; 32]))));
        assert_eq!(recipient_key(&l, "alice").unwrap(), Some([7; 32]));
        let l = lookup(alice.user_id(), Some(claim(&alice, "alice", None)));
        assert_eq!(recipient_key(&l, "alice").unwrap(), None, "no key yet");
    }

    #[test]
    fn a_claim_for_another_user_or_name_is_refused() {
        let alice = KeyPair::from_seed(&[1; 32]);
        let mallory = KeyPair::from_seed(&[2; 32]);
        // A unit pairing alice's mailbox with mallory's key (and claim).
        let l = lookup(
            alice.user_id(),
            Some(claim(&mallory, "alice", Some([6; 32]))),
        );
        assert!(matches!(
            recipient_key(&l, "alice"),
            Err(RecipientKeyError::OtherUser { claimed, user, .. })
                if claimed == mallory.user_id() && user == alice.user_id()
        ));
        // alice's genuine claim, but for another of her names.
        let l = lookup(
            alice.user_id(),
            Some(claim(&alice, "alice2", Some([7; 32]))),
        );
        assert!(matches!(
            recipient_key(&l, "alice"),
            Err(RecipientKeyError::OtherName { .. })
        ));
    }

    #[test]
    fn a_swapped_key_or_missing_claim_is_refused() {
        let alice = KeyPair::from_seed(&[1; 32]);
        let mut swapped = claim(&alice, "alice", Some([7; 32]));
        let mut body = swapped.verify().unwrap();
        body.encryption_key = Some([6; 32]);
        swapped.0.body = rmp_serde::to_vec_named(&body).unwrap();
        let l = lookup(alice.user_id(), Some(swapped));
        assert!(matches!(
            recipient_key(&l, "alice"),
            Err(RecipientKeyError::Invalid { .. })
        ));
        let l = lookup(alice.user_id(), None);
        assert!(matches!(
            recipient_key(&l, "alice"),
            Err(RecipientKeyError::NoClaim { .. })
        ));
    }
}
