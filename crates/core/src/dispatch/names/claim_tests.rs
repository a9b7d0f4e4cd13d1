//! Tests of the kept signed name claims: rotation by a later claim, no
//! rollback by an older one, replicated records that join in any order,
//! refusal of claims a peer could forge, and tables with and without
//! claims surviving the trip through `tables.bin`'s encoding.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::super::error::RecordClaimError;
use super::super::limits::MAX_CLAIM_BODY_BYTES;
use super::super::tables::{
    DispatchTables, HostRecord, MailboxRecord, NetworkSettings, UnitRecord,
};
use super::super::testutil::*;
use super::super::{Limits, UpdateError};
use super::*;
use dem_identity::{DispatchId, KeyPair, NAME_CLAIM, Name, Signed};
use dem_proto::AttachmentId;
use dem_proto::dispatch::tables::AttachmentRecord;

const T: u64 = 1_700_000_000_000;

fn key(b: u8) -> KeyPair {
    KeyPair::from_seed(&[b; 32])
}

fn signed(key: &KeyPair, name: &str, enc: u8, at: u64) -> (NameClaim, SignedNameClaim) {
    let s =
        SignedNameClaim::sign(key, Name::new(name).unwrap(), Some([enc; 32]), at as i64).unwrap();
    (s.verify().unwrap(), s)
}

fn register(u: &mut DispatchUnit, now: u64, claim: (NameClaim, SignedNameClaim)) -> Registration {
    u.register_claim(now, &claim.0, claim.1).unwrap().0
}

/// The encryption key the unit hands out for `name`.
fn key_of(u: &DispatchUnit, name: &str) -> Option<[u8; 32]> {
    let rec = &u.tables().names[name];
    rec.claim.as_ref()?.verify().unwrap().encryption_key
}

#[test]
fn a_later_claim_rotates_the_key_and_is_replicated() {
    let mut u = unit_with_hosts(T, 1);
    let alice = key(1);
    assert_eq!(
        register(&mut u, T, signed(&alice, "alice", 1, T)),
        Registration::New
    );
    let (claim, s2) = signed(&alice, "alice", 2, T + 10);
    let (r, acts) = u.register_claim(T + 10, &claim, s2.clone()).unwrap();
    assert_eq!(r, Registration::Renewed);
    let rec = &u.tables().names["alice"];
    assert_eq!(rec.issued_ms, T, "the first claim's time keeps the name");
    assert_eq!(rec.claim.as_ref(), Some(&s2));
    match &updates(&acts)[..] {
        [Update::NameRegistered { name, record }] => {
            assert_eq!((name.as_str(), record), ("alice", rec));
        }
        other => panic!("expected one name update, got {other:?}"),
    }
    // Lookups by name hand out the current claim.
    u.tables.mailboxes.insert(
        alice.user_id(),
        MailboxRecord {
            hosts: vec![host(1)],
            ..Default::default()
        },
    );
    let found = u.lookup_name(T, "alice").unwrap();
    assert_eq!(found.name_claim, Some(s2));
    assert_eq!(u.lookup_user(T, alice.user_id()).unwrap().name_claim, None);
}

#[test]
fn an_older_or_equal_claim_never_rolls_the_key_back() {
    let mut u = unit();
    let alice = key(1);
    let first = signed(&alice, "alice", 1, T);
    register(&mut u, T, first.clone());
    register(&mut u, T + 20, signed(&alice, "alice", 2, T + 20));
    for replay in [
        first,
        signed(&alice, "alice", 3, T + 5),
        signed(&alice, "alice", 4, T + 20),
    ] {
        let (r, acts) = u.register_claim(T + 30, &replay.0, replay.1).unwrap();
        assert_eq!((r, acts.len()), (Registration::AlreadyYours, 0));
        assert_eq!(key_of(&u, "alice"), Some([2; 32]));
    }
}

#[test]
fn another_users_claim_is_refused() {
    let mut u = unit();
    register(&mut u, T, signed(&key(1), "alice", 1, T));
    let (claim, s) = signed(&key(2), "alice", 9, T + 10);
    assert_eq!(
        u.register_claim(T + 10, &claim, s),
        Err(NameError::Taken {
            name: "alice".into(),
            holder: key(1).user_id()
        })
    );
    assert_eq!(key_of(&u, "alice"), Some([1; 32]));
}

#[test]
fn a_record_without_claim_takes_a_later_one() {
    let mut u = unit();
    let alice = key(1);
    u.register_name(T, "alice", alice.user_id(), T).unwrap();
    assert_eq!(
        register(&mut u, T, signed(&alice, "alice", 1, T)),
        Registration::AlreadyYours,
        "not later than the record"
    );
    assert_eq!(
        register(&mut u, T + 1, signed(&alice, "alice", 1, T + 1)),
        Registration::Renewed
    );
    assert_eq!(key_of(&u, "alice"), Some([1; 32]));
}

#[test]
fn claims_respect_the_limits() {
    let mut u = unit();
    let (c, s) = signed(&key(1), "alice", 1, T - MAX_CLAIM_SKEW_MS - 1);
    assert!(matches!(
        u.register_claim(T, &c, s),
        Err(NameError::ClaimClock { .. })
    ));
    // Unknown fields are ignored, so a good signature does not bound the
    // body: the unit does.
    #[derive(Serialize, Deserialize)]
    struct Padded {
        name: Name,
        user: dem_identity::UserId,
        issued_ms: i64,
        padding: Vec<u8>,
    }
    let padded = Padded {
        name: Name::new("alice").unwrap(),
        user: key(1).user_id(),
        issued_ms: T as i64,
        padding: vec![0; MAX_CLAIM_BODY_BYTES],
    };
    let env: Signed<Padded> = Signed::sign(&key(1), NAME_CLAIM, T as i64, &padded).unwrap();
    let s: SignedNameClaim =
        rmp_serde::from_slice(&rmp_serde::to_vec_named(&env).unwrap()).unwrap();
    let c = s.verify().unwrap();
    assert!(matches!(
        u.register_claim(T, &c, s.clone()),
        Err(NameError::ClaimTooLarge { .. })
    ));
    let record = NameRecord {
        user: key(1).user_id(),
        issued_ms: T,
        claim: Some(s),
    };
    let update = Update::NameRegistered {
        name: "alice".into(),
        record,
    };
    assert!(matches!(
        u.apply_update(T, update),
        Err(UpdateError::Claim {
            source: RecordClaimError::TooLarge { .. },
            ..
        })
    ));
}

#[test]
fn replicated_claims_converge_on_the_later_one_in_either_order() {
    let alice = key(1);
    let mut a = unit();
    let mut b = unit();
    let (c1, s1) = signed(&alice, "alice", 1, T);
    let u1 = updates(&a.register_claim(T, &c1, s1).unwrap().1);
    // b saw none of a's: it registers anew, later, with a new key.
    let (c2, s2) = signed(&alice, "alice", 2, T + 50);
    let u2 = updates(&b.register_claim(T + 50, &c2, s2.clone()).unwrap().1);
    let mut x = blank();
    let mut y = blank();
    for upd in u1.iter().chain(&u2) {
        x.apply_update(0, upd.clone()).unwrap();
    }
    for upd in u2.iter().chain(&u1).chain(&u2) {
        y.apply_update(0, upd.clone()).unwrap();
    }
    assert_eq!(x.tables(), y.tables());
    let rec = &x.tables().names["alice"];
    assert_eq!((rec.issued_ms, rec.claim.as_ref()), (T, Some(&s2)));
    // A rival's later claim still loses to the holder's first one, even
    // though the holder's current claim is later than the rival's.
    let (c3, s3) = signed(&key(3), "alice", 3, T + 10);
    let rival = updates(&blank().register_claim(T + 10, &c3, s3).unwrap().1);
    for upd in rival {
        assert!(!x.apply_update(0, upd).unwrap());
    }
    assert_eq!(x.tables().names["alice"].user, alice.user_id());
}

#[test]
fn forged_replicated_claims_are_refused() {
    let mut u = blank();
    let alice = key(1);
    let (_, good) = signed(&alice, "alice", 1, T);
    let refusal = |u: &mut DispatchUnit, name: &str, user, issued_ms, claim| {
        let record = NameRecord {
            user,
            issued_ms,
            claim: Some(claim),
        };
        match u.apply_update(
            0,
            Update::NameRegistered {
                name: name.into(),
                record,
            },
        ) {
            Err(UpdateError::Claim { source, .. }) => source,
            other => panic!("expected a claim refusal, got {other:?}"),
        }
    };
    let mallory = key(6).user_id();
    assert_eq!(
        refusal(&mut u, "alice", mallory, T, good.clone()),
        RecordClaimError::OtherUser {
            claimed: alice.user_id(),
            holder: mallory
        }
    );
    assert_eq!(
        refusal(&mut u, "bob", alice.user_id(), T, good.clone()),
        RecordClaimError::OtherName {
            claimed: "alice".into()
        }
    );
    assert!(matches!(
        refusal(&mut u, "alice", alice.user_id(), T + 1, good.clone()),
        RecordClaimError::BeforeFirst { .. }
    ));
    let mut swapped = good.clone();
    let mut body = swapped.verify().unwrap();
    body.encryption_key = Some([6; 32]);
    swapped.0.body = rmp_serde::to_vec_named(&body).unwrap();
    assert!(matches!(
        refusal(&mut u, "alice", alice.user_id(), T, swapped),
        RecordClaimError::Invalid(_)
    ));
    assert!(u.tables().names.is_empty());
}

/// `DispatchTables` as saved before name records kept claims.
#[derive(Serialize)]
struct OldTables {
    hosts: BTreeMap<HostId, HostRecord>,
    names: BTreeMap<String, OldNameRecord>,
    mailboxes: BTreeMap<dem_identity::UserId, MailboxRecord>,
    attachments: BTreeMap<AttachmentId, AttachmentRecord>,
    units: BTreeMap<DispatchId, UnitRecord>,
    settings: Option<NetworkSettings>,
}

#[derive(Serialize)]
struct OldNameRecord {
    user: dem_identity::UserId,
    issued_ms: u64,
}

#[test]
fn tables_with_and_without_claims_survive_persistence() {
    // tables.bin is `rmp_serde::to_vec_named` of the tables, restored
    // through `from_snapshot`, which checks every record.
    let restore = |bytes: &[u8]| {
        let tables: DispatchTables = rmp_serde::from_slice(bytes).unwrap();
        DispatchUnit::from_snapshot(DispatchId([1; 32]), Limits::default(), &tables).unwrap()
    };
    let mut u = unit();
    register(&mut u, T, signed(&key(1), "alice", 1, T));
    register(&mut u, T + 5, signed(&key(1), "alice", 2, T + 5));
    u.register_name(T, "bob", key(2).user_id(), T).unwrap();
    let back = restore(&rmp_serde::to_vec_named(u.tables()).unwrap());
    assert_eq!(back.tables().names, u.tables().names);
    assert_eq!(key_of(&back, "alice"), Some([2; 32]));
    assert_eq!(back.tables().names["bob"].claim, None);

    let old = OldTables {
        hosts: BTreeMap::new(),
        names: BTreeMap::from([(
            "carol".to_string(),
            OldNameRecord {
                user: user(3),
                issued_ms: 7,
            },
        )]),
        mailboxes: BTreeMap::new(),
        attachments: BTreeMap::new(),
        units: BTreeMap::new(),
        settings: None,
    };
    let back = restore(&rmp_serde::to_vec_named(&old).unwrap());
    let rec = &back.tables().names["carol"];
    assert_eq!((rec.user, rec.issued_ms, &rec.claim), (user(3), 7, &None));
}

#[test]
fn a_kept_claim_under_another_holder_is_checked() {
    let mut u = blank();
    let alice = key(1);
    let (c, s) = signed(&alice, "alice", 1, T);
    let rec = NameRecord {
        user: c.user,
        issued_ms: T,
        claim: Some(s.clone()),
    };
    let update = |record| Update::NameRegistered {
        name: "alice".into(),
        record,
    };
    assert!(u.apply_update(0, update(rec.clone())).unwrap());
    assert!(!u.apply_update(0, update(rec)).unwrap(), "a duplicate");
    // The same claim, moved under an earlier rival: not waved through.
    let forged = NameRecord {
        user: user(0),
        issued_ms: 0,
        claim: Some(s),
    };
    assert!(matches!(
        u.apply_update(0, update(forged)),
        Err(UpdateError::Claim {
            source: RecordClaimError::OtherUser { .. },
            ..
        })
    ));
    assert_eq!(u.tables().names["alice"].user, alice.user_id());
}
