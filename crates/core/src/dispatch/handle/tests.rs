use super::*;
use crate::dispatch::Limits;
use dem_identity::{KeyPair, Name, SignedNameClaim};
use dem_proto::dispatch::NOT_FOUND;

const NOW: u64 = 1_700_000_000_000;

fn state() -> State {
    State {
        unit: DispatchUnit::with_limits(
            NOW,
            DispatchId([0xd0; 32]),
            "10.0.0.1:4000",
            Limits::default(),
        )
        .unwrap(),
        replay: ReplayGuard::new(60_000, 100),
        network: Network::new(&network_key(), DispatchId([0xd0; 32])),
    }
}

fn network_key() -> KeyPair {
    KeyPair::from_seed(&[0x4e; 32])
}

fn claim(key: &KeyPair, name: &str) -> DispatchRequest {
    let claim = SignedNameClaim::sign(key, Name::new(name).unwrap(), None, NOW as i64).unwrap();
    DispatchRequest::Register { claim }
}

fn join(s: &mut State, host: u8) {
    let req = DispatchRequest::Join {
        addr: format!("10.0.1.{host}:4433"),
        capacity: 10,
        load: 0,
        operator: None,
    };
    let out = s.handle(NOW, [host; 32], req);
    assert!(matches!(out.response, Ok(DispatchResponse::Lease { .. })));
    assert!(out.changed);
}

fn refusal(out: Outcome) -> WireError {
    match out.response {
        Err(e) => e,
        Ok(r) => panic!("expected a refusal, got {r:?}"),
    }
}

#[test]
fn register_places_and_a_taken_name_is_refused_clearly() {
    let mut s = state();
    join(&mut s, 1);
    let alice = KeyPair::from_seed(&[1; 32]);
    let out = s.handle(NOW, [9; 32], claim(&alice, "alice"));
    match out.response {
        Ok(DispatchResponse::Registered { user, placement }) => {
            assert_eq!(user, alice.user_id());
            assert_eq!(placement.host, HostId([1; 32]));
        }
        other => panic!("{other:?}"),
    }
    assert!(!out.updates.is_empty());
    // Registering again is idempotent and answers the same placement.
    let again = s.handle(NOW, [9; 32], claim(&alice, "alice"));
    assert!(matches!(
        again.response,
        Ok(DispatchResponse::Registered { .. })
    ));
    let mallory = KeyPair::from_seed(&[2; 32]);
    let err = refusal(s.handle(NOW, [9; 32], claim(&mallory, "alice")));
    assert_eq!(err.code, CONFLICT);
    assert!(err.message.contains("name \"alice\" is taken by"), "{err}");
}

#[test]
fn register_without_hosts_keeps_the_name_and_says_why() {
    let mut s = state();
    let alice = KeyPair::from_seed(&[1; 32]);
    let out = s.handle(NOW, [9; 32], claim(&alice, "alice"));
    assert!(
        out.changed,
        "the name is registered even if placement failed"
    );
    assert_eq!(refusal(out).code, WireError::BUSY);
    assert_eq!(s.unit.resolve_name("alice").unwrap(), alice.user_id());
}

#[test]
fn forged_claim_is_forbidden() {
    let mut s = state();
    let alice = KeyPair::from_seed(&[1; 32]);
    let DispatchRequest::Register { mut claim } = claim(&alice, "alice") else {
        unreachable!()
    };
    claim.0.signature[0] ^= 1;
    let err = refusal(s.handle(NOW, [9; 32], DispatchRequest::Register { claim }));
    assert_eq!(err.code, WireError::FORBIDDEN);
}

#[test]
fn home_must_be_signed_by_its_user_and_not_replayed() {
    let mut s = state();
    join(&mut s, 1);
    let alice = KeyPair::from_seed(&[1; 32]);
    assert!(
        s.handle(NOW, [9; 32], claim(&alice, "alice"))
            .response
            .is_ok()
    );
    let user = alice.user_id();
    let home = Some(HostId([1; 32]));
    let mallory = KeyPair::from_seed(&[2; 32]);
    let forged = Signed::sign(&mallory, HOME, NOW as i64, &home).unwrap();
    let err = refusal(s.handle(NOW, [9; 32], DispatchRequest::Home { user, home: forged }));
    assert_eq!(err.code, WireError::FORBIDDEN);
    let good = Signed::sign(&alice, HOME, NOW as i64, &home).unwrap();
    let req = DispatchRequest::Home {
        user,
        home: good.clone(),
    };
    assert!(s.handle(NOW, [9; 32], req).response.is_ok());
    let replay = DispatchRequest::Home { user, home: good };
    assert_eq!(refusal(s.handle(NOW + 1, [9; 32], replay)).code, CONFLICT);
    // Signed under another tag: refused.
    let wrong_tag = Signed::sign(&alice, MOVE_ORDER, NOW as i64, &home).unwrap();
    let req = DispatchRequest::Home {
        user,
        home: wrong_tag,
    };
    assert_eq!(
        refusal(s.handle(NOW, [9; 32], req)).code,
        WireError::FORBIDDEN
    );
}

#[test]
fn move_order_must_be_the_owners() {
    let mut s = state();
    join(&mut s, 1);
    join(&mut s, 2);
    let alice = KeyPair::from_seed(&[1; 32]);
    assert!(
        s.handle(NOW, [9; 32], claim(&alice, "alice"))
            .response
            .is_ok()
    );
    let order = MoveOrder {
        user: alice.user_id(),
        to: HostId([2; 32]),
    };
    let mallory = KeyPair::from_seed(&[2; 32]);
    let forged = Signed::sign(&mallory, MOVE_ORDER, NOW as i64, &order).unwrap();
    let err = refusal(s.handle(
        NOW,
        [9; 32],
        DispatchRequest::AuthorizeMove { order: forged },
    ));
    assert_eq!(err.code, WireError::FORBIDDEN);
}

#[test]
fn lookups_of_unknown_things_are_not_found() {
    let mut s = state();
    let req = DispatchRequest::LookupName {
        name: "nobody".into(),
    };
    let err = refusal(s.handle(NOW, [9; 32], req));
    assert_eq!(err.code, NOT_FOUND);
    assert!(err.message.contains("nobody"));
}

#[test]
fn heartbeat_before_join_is_refused() {
    let mut s = state();
    let err = refusal(s.handle(NOW, [1; 32], DispatchRequest::Heartbeat { load: 0 }));
    assert_eq!(err.code, NOT_FOUND);
    assert!(err.message.contains("join first"));
}

#[test]
fn place_needs_a_joined_host_and_a_bounded_exclude_list() {
    let mut s = state();
    let object = ObjectRef::Mailbox(UserId([1; 32]));
    let req = DispatchRequest::Place {
        object: object.clone(),
        exclude: vec![],
    };
    assert_eq!(
        refusal(s.handle(NOW, [1; 32], req)).code,
        WireError::FORBIDDEN
    );
    join(&mut s, 1);
    let req = DispatchRequest::Place {
        object,
        exclude: vec![HostId([7; 32]); PLACE_EXCLUDE_MAX + 1],
    };
    assert_eq!(
        refusal(s.handle(NOW, [1; 32], req)).code,
        WireError::TOO_LARGE
    );
}

#[test]
fn only_admitted_units_announce_and_replicate() {
    let mut s = state();
    let other = KeyPair::from_seed(&[0xd1; 32]).dispatch_id();
    let host_update = Update::Host {
        host: HostId([5; 32]),
        record: {
            let mut u = state();
            join(&mut u, 5);
            u.unit.tables().hosts[&HostId([5; 32])].clone()
        },
    };
    let replicate = |updates| DispatchRequest::Replicate { updates };
    let announce = |admission: Vec<u8>| DispatchRequest::Announce {
        addr: "10.0.0.2:4000".into(),
        admission,
    };
    // Unknown: refused, even when it lists itself in the same batch.
    let intro = Update::Unit {
        unit: other,
        record: crate::dispatch::UnitRecord {
            addr: "10.0.0.2:4000".into(),
            seen_ms: NOW,
        },
    };
    for updates in [vec![host_update.clone()], vec![intro, host_update.clone()]] {
        assert_eq!(
            refusal(s.handle(NOW, other.0, replicate(updates))).code,
            WireError::FORBIDDEN
        );
    }
    // An announcement without the network's signature over this unit's id
    // is refused: another network's, another unit's, or garbage.
    let foreign = crate::dispatch::admission::admit(&KeyPair::from_seed(&[9; 32]), other);
    let borrowed = crate::dispatch::admission::admit(&network_key(), DispatchId([0xd0; 32]));
    for admission in [foreign.to_vec(), borrowed.to_vec(), vec![1, 2, 3]] {
        assert_eq!(
            refusal(s.handle(NOW, other.0, announce(admission))).code,
            WireError::FORBIDDEN
        );
    }
    assert!(!s.unit.tables().units.contains_key(&other));
    // Admitted: it is listed and its changes apply.
    let admitted = crate::dispatch::admission::admit(&network_key(), other);
    assert!(
        s.handle(NOW, other.0, announce(admitted.to_vec()))
            .response
            .is_ok()
    );
    let out = s.handle(NOW, other.0, replicate(vec![host_update]));
    assert!(out.response.is_ok());
    assert!(out.changed);
    assert!(out.updates.is_empty(), "replicated changes are not re-sent");
    assert!(s.unit.tables().hosts.contains_key(&HostId([5; 32])));
    let too_many = vec![
        Update::Unit {
            unit: other,
            record: crate::dispatch::UnitRecord {
                addr: "10.0.0.2:4000".into(),
                seen_ms: NOW,
            },
        };
        REPLICATE_UPDATES_MAX + 1
    ];
    assert_eq!(
        refusal(s.handle(NOW, other.0, replicate(too_many))).code,
        WireError::TOO_LARGE
    );
}

#[test]
fn attachment_refs_are_bounded_and_renew_known_attachments() {
    let mut s = state();
    join(&mut s, 1);
    let id: crate::dispatch::AttachmentId = "ab".repeat(32).parse().unwrap();
    let req = DispatchRequest::AttachmentRefs {
        ids: vec![id; ATTACHMENT_REFS_MAX + 1],
    };
    assert_eq!(
        refusal(s.handle(NOW, [9; 32], req)).code,
        WireError::TOO_LARGE
    );
    let place = DispatchRequest::PlaceAttachment { id, size_bytes: 3 };
    assert!(s.handle(NOW, [9; 32], place).response.is_ok());
    let later = NOW + s.unit.limits().attachment_grace_ms / 2;
    let renew = DispatchRequest::AttachmentRefs { ids: vec![id] };
    let out = s.handle(later, [9; 32], renew);
    assert!(matches!(out.response, Ok(DispatchResponse::Done)));
    assert!(out.changed);
    let rec = &s.unit.tables().attachments[&id];
    assert_eq!(
        rec.referenced_until_ms,
        Some(later + s.unit.limits().attachment_grace_ms)
    );
}

#[test]
fn a_later_claim_rotates_the_key_that_lookups_hand_out() {
    let mut s = state();
    join(&mut s, 1);
    let alice = KeyPair::from_seed(&[1; 32]);
    let keyed = |enc: u8, at: u64| DispatchRequest::Register {
        claim: SignedNameClaim::sign(
            &alice,
            Name::new("alice").unwrap(),
            Some([enc; 32]),
            at as i64,
        )
        .unwrap(),
    };
    assert!(s.handle(NOW, [9; 32], keyed(1, NOW)).response.is_ok());
    s.unit
        .tables
        .mailboxes
        .get_mut(&alice.user_id())
        .unwrap()
        .hosts = vec![HostId([1; 32])];
    let out = s.handle(NOW + 10, [9; 32], keyed(2, NOW + 10));
    assert!(
        matches!(out.response, Ok(DispatchResponse::Registered { ref placement, .. }) if placement.host == HostId([1; 32])),
        "{:?}",
        out.response
    );
    assert!(out.changed && !out.updates.is_empty(), "rotation is news");
    let stale = s.handle(NOW + 20, [9; 32], keyed(3, NOW + 5));
    assert!(stale.response.is_ok() && stale.updates.is_empty());
    let req = DispatchRequest::LookupName {
        name: "alice".into(),
    };
    match s.handle(NOW + 20, [9; 32], req).response {
        Ok(DispatchResponse::Mailbox(found)) => {
            let claim = found.name_claim.unwrap().verify().unwrap();
            assert_eq!(claim.encryption_key, Some([2; 32]));
        }
        other => panic!("{other:?}"),
    }
}
