//! First-come name registration and the lookups that resolve a name, a user
//! id or an attachment id to the hosts holding it (the paper's "valid
//! reference": here, host ids with their addresses and liveness).
//!
//! Within one unit the first accepted claim keeps a name. Two units may
//! accept conflicting claims concurrently; they converge on the claim with
//! the smaller `(issued_ms, user)`, and `issued_ms` must be near the unit's
//! clock so nobody wins by back-dating a claim. The holder's latest signed
//! claim is kept and handed out by lookups by name: it binds the holder's
//! encryption key to the name (issue 17), and a later claim by the holder
//! replaces it, which is how the key is rotated.

pub use dem_proto::dispatch::names::*;

use super::error::{LookupError, NameError};
use super::limits::{MAX_CLAIM_BODY_BYTES, MAX_CLAIM_SKEW_MS};
use super::tables::Merge;
use super::tables::NameRecord;
use super::updates::Update;
use super::{Action, DispatchUnit, validate};
use dem_identity::{HostId, NameClaim, SignedNameClaim, UserId};
use dem_proto::AttachmentId;
use dem_proto::dispatch::ObjectRef;

impl DispatchUnit {
    /// Registers `name` for `user`, first come first served, without
    /// keeping a claim (records made this way have none to hand out).
    ///
    /// Precondition: the caller has verified that the claim
    /// `(name, user, issued_ms)` is signed by `user`'s key. Re-registering a
    /// name one already holds is idempotent; a name held by another user is
    /// refused with [`NameError::Taken`].
    pub fn register_name(
        &mut self,
        now_ms: u64,
        name: &str,
        user: UserId,
        issued_ms: u64,
    ) -> Result<(Registration, Vec<Action>), NameError> {
        self.register(now_ms, name, user, issued_ms, None)
    }

    /// Registers the name of a verified signed claim and keeps the claim,
    /// so lookups by name can hand it (and the encryption key it binds) to
    /// senders.
    ///
    /// Precondition: `claim` is what `signed.verify()` returned. A name
    /// held by another user is refused with [`NameError::Taken`]. If the
    /// user already holds it, a claim issued later than the kept one
    /// replaces it ([`Registration::Renewed`]: a key rotation, replicated
    /// like a registration); an older or equal one changes nothing
    /// ([`Registration::AlreadyYours`]), so replaying an old claim can
    /// never roll a key back.
    pub fn register_claim(
        &mut self,
        now_ms: u64,
        claim: &NameClaim,
        signed: SignedNameClaim,
    ) -> Result<(Registration, Vec<Action>), NameError> {
        let issued_ms = u64::try_from(claim.issued_ms).map_err(|_| NameError::BeforeEpoch {
            issued_ms: claim.issued_ms,
        })?;
        let len = signed.0.body.len();
        if len > MAX_CLAIM_BODY_BYTES {
            return Err(NameError::ClaimTooLarge {
                len,
                max: MAX_CLAIM_BODY_BYTES,
            });
        }
        self.register(
            now_ms,
            claim.name.as_str(),
            claim.user,
            issued_ms,
            Some(signed),
        )
    }

    fn register(
        &mut self,
        now_ms: u64,
        name: &str,
        user: UserId,
        issued_ms: u64,
        claim: Option<SignedNameClaim>,
    ) -> Result<(Registration, Vec<Action>), NameError> {
        validate::name(name)?;
        if issued_ms.abs_diff(now_ms) > MAX_CLAIM_SKEW_MS {
            return Err(NameError::ClaimClock {
                issued_ms,
                now_ms,
                max_skew_ms: MAX_CLAIM_SKEW_MS,
            });
        }
        let (record, registration) = match self.tables.names.get(name) {
            Some(cur) if cur.user == user => {
                // Only a later claim replaces the kept one; the first-claim
                // time stays, so rotating never loses the name to a rival.
                match claim {
                    Some(claim) if claim.0.issued_ms > cur.claim_ms() => {
                        let record = NameRecord {
                            user,
                            issued_ms: cur.issued_ms,
                            claim: Some(claim),
                        };
                        (record, Registration::Renewed)
                    }
                    _ => return Ok((Registration::AlreadyYours, Vec::new())),
                }
            }
            Some(cur) => {
                tracing::debug!(%name, holder = %cur.user.short(), "name taken");
                return Err(NameError::Taken {
                    name: name.to_string(),
                    holder: cur.user,
                });
            }
            None => {
                let record = NameRecord {
                    user,
                    issued_ms,
                    claim,
                };
                (record, Registration::New)
            }
        };
        self.tables.merge_name(&self.limits, name, record.clone())?;
        tracing::info!(%name, user = %user.short(), ?registration, "name registered");
        let update = Update::NameRegistered {
            name: name.to_string(),
            record,
        };
        Ok((registration, vec![Action::Replicate(update)]))
    }

    /// The user holding `name`.
    pub fn resolve_name(&self, name: &str) -> Result<UserId, LookupError> {
        self.tables
            .names
            .get(name)
            .map(|r| r.user)
            .ok_or_else(|| LookupError::UnknownName(name.to_string()))
    }

    /// Where the mailbox of the user named `name` is, with their kept
    /// signed claim (which binds their encryption key to the name).
    pub fn lookup_name(&self, now_ms: u64, name: &str) -> Result<MailboxLookup, LookupError> {
        let rec = self
            .tables
            .names
            .get(name)
            .ok_or_else(|| LookupError::UnknownName(name.to_string()))?;
        let mut found = self.lookup_user(now_ms, rec.user)?;
        found.name_claim = rec.claim.clone();
        Ok(found)
    }

    /// Where `user`'s mailbox is. Carries no name claim: the tables map
    /// names to users only, and a user may hold several names, so there is
    /// no one claim to pick without a reverse index.
    pub fn lookup_user(&self, now_ms: u64, user: UserId) -> Result<MailboxLookup, LookupError> {
        let rec = self
            .tables
            .mailboxes
            .get(&user)
            .ok_or(LookupError::UnknownUser(user))?;
        if rec.hosts.is_empty() {
            return Err(LookupError::NotPlaced(ObjectRef::Mailbox(user)));
        }
        Ok(MailboxLookup {
            user,
            epoch: rec.epoch,
            hosts: rec
                .hosts
                .iter()
                .map(|h| self.host_addr(now_ms, *h))
                .collect(),
            home: rec.home.map(|h| self.host_addr(now_ms, h)),
            name_claim: None,
        })
    }

    /// Where attachment `id` is. One placed but not yet stored (epoch 0)
    /// or removed (a later epoch) has no hosts: the epoch is what a host
    /// storing it again must report above.
    pub fn lookup_attachment(
        &self,
        now_ms: u64,
        id: &AttachmentId,
    ) -> Result<AttachmentLookup, LookupError> {
        let rec = self
            .tables
            .attachments
            .get(id)
            .ok_or(LookupError::UnknownAttachment(*id))?;
        Ok(AttachmentLookup {
            id: *id,
            size_bytes: rec.size_bytes,
            epoch: rec.epoch,
            hosts: rec
                .hosts
                .iter()
                .map(|h| self.host_addr(now_ms, *h))
                .collect(),
            referenced: rec.is_referenced(now_ms),
        })
    }

    pub(crate) fn host_addr(&self, now_ms: u64, host: HostId) -> HostAddr {
        let rec = self.tables.hosts.get(&host);
        HostAddr {
            host,
            addr: rec.map(|r| r.addr.clone()),
            online: rec.is_some_and(|r| r.is_online(now_ms)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::error::NameFormatError;
    use super::super::limits::{Limit, LimitExceeded, Limits};
    use super::super::tables::{AttachmentRecord, MailboxRecord};
    use super::super::testutil::*;
    use super::*;
    use dem_identity::DispatchId;
    use dem_identity::Epoch;

    #[test]
    fn names_are_first_come() {
        let mut u = unit();
        let (r, acts) = u.register_name(1_000, "alice", user(1), 1_000).unwrap();
        assert_eq!((r, acts.len()), (Registration::New, 1));
        let (r, acts) = u.register_name(2_000, "alice", user(1), 2_000).unwrap();
        assert_eq!((r, acts.len()), (Registration::AlreadyYours, 0));
        // Even an earlier-issued claim by someone else is refused locally.
        assert_eq!(
            u.register_name(2_000, "alice", user(2), 900),
            Err(NameError::Taken {
                name: "alice".into(),
                holder: user(1)
            })
        );
        assert_eq!(u.tables().names["alice"].issued_ms, 1_000);
        u.register_name(2_000, "bob", user(2), 2_000).unwrap();
        assert_eq!(u.resolve_name("bob"), Ok(user(2)));
    }

    #[test]
    fn claims_are_checked() {
        let mut u = unit();
        let now = 10 * MAX_CLAIM_SKEW_MS;
        assert!(matches!(
            u.register_name(now, "alice", user(1), now - MAX_CLAIM_SKEW_MS - 1),
            Err(NameError::ClaimClock { .. })
        ));
        assert!(matches!(
            u.register_name(now, "alice", user(1), now + MAX_CLAIM_SKEW_MS + 1),
            Err(NameError::ClaimClock { .. })
        ));
        assert!(matches!(
            u.register_name(now, "Alice", user(1), now).unwrap_err(),
            NameError::Format(NameFormatError::BadChar { ch: 'A', index: 0 })
        ));
        let limits = Limits {
            max_names: 1,
            ..Limits::default()
        };
        let mut u =
            DispatchUnit::with_limits(0, DispatchId([1; 32]), "10.0.0.1:1", limits).unwrap();
        u.register_name(0, "a", user(1), 0).unwrap();
        assert_eq!(
            u.register_name(0, "b", user(1), 0),
            Err(NameError::Limit(LimitExceeded {
                limit: Limit::Names,
                max: 1
            }))
        );
    }

    #[test]
    fn lookups_resolve_hosts() {
        let mut u = unit_with_hosts(0, 2);
        u.register_name(0, "alice", user(1), 0).unwrap();
        assert_eq!(
            u.lookup_name(0, "alice"),
            Err(LookupError::UnknownUser(user(1)))
        );
        assert_eq!(
            u.lookup_name(0, "carol"),
            Err(LookupError::UnknownName("carol".into()))
        );
        let mb = MailboxRecord {
            hosts: vec![host(2), host(9)],
            epoch: Epoch(3),
            home: Some(host(1)),
            ..Default::default()
        };
        u.tables.mailboxes.insert(user(1), mb);
        let l = u.lookup_name(1, "alice").unwrap();
        assert_eq!(l.epoch, Epoch(3));
        assert_eq!(
            l.hosts[0],
            HostAddr {
                host: host(2),
                addr: Some(addr(2)),
                online: true
            }
        );
        assert_eq!(
            l.hosts[1],
            HostAddr {
                host: host(9),
                addr: None,
                online: false
            }
        );
        assert_eq!(l.home.unwrap().host, host(1));

        let id: AttachmentId = "ab".repeat(32).parse().unwrap();
        assert_eq!(
            u.lookup_attachment(0, &id),
            Err(LookupError::UnknownAttachment(id))
        );
        u.tables.attachments.insert(id, AttachmentRecord::default());
        let l = u.lookup_attachment(0, &id).unwrap();
        assert!(
            l.hosts.is_empty() && l.epoch == Epoch(0),
            "placed, not stored"
        );
        let rec = AttachmentRecord {
            hosts: vec![],
            size_bytes: 5,
            epoch: Epoch(2),
            ..Default::default()
        };
        u.tables.attachments.insert(id, rec);
        let l = u.lookup_attachment(0, &id).unwrap();
        assert!(l.hosts.is_empty() && l.epoch == Epoch(2), "removed");
        let rec = AttachmentRecord {
            hosts: vec![host(1)],
            size_bytes: 5,
            epoch: Epoch(3),
            ..Default::default()
        };
        u.tables.attachments.insert(id, rec);
        let l = u.lookup_attachment(LEASE, &id).unwrap();
        assert_eq!(
            (l.size_bytes, l.hosts[0].online),
            (5, false),
            "lease over at LEASE_MS"
        );
    }

    const LEASE: u64 = super::super::limits::LEASE_MS;
}

#[cfg(test)]
mod claim_tests;
