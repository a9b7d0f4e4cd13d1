//! Tests of `message-refs` and `take-converted`: what the host's blob
//! store learns from the mailbox.

use std::collections::BTreeMap;

use super::*;
use crate::error::Result;
use crate::testutil::*;

fn hex_of(seed: &str) -> String {
    blob(seed, 0).hash
}

#[test]
fn message_refs_are_unique_ascending_and_paged() -> Result<()> {
    let mut mb = Mailbox::default();
    for i in 0..30 {
        put(&mut mb, i, &format!("m{i}"), i as i64, "INBOX");
    }
    // The same message delivered under a second id names the same blob.
    let mut twin = mail("twin", 99);
    twin.message = blob("m7", 1000);
    mb.deliver(&ctx(40), twin, place("Archive"))?;

    let all = mb.message_refs(0, u32::MAX);
    let mut want: Vec<String> = (0..30).map(|i| hex_of(&format!("m{i}"))).collect();
    want.sort();
    assert_eq!(all, want, "each blob once, ascending");
    let mut paged = Vec::new();
    for offset in (0..40).step_by(7) {
        paged.extend(mb.message_refs(offset, 7));
    }
    assert_eq!(paged, all);
    assert!(mb.message_refs(30, 10).is_empty());
    assert!(mb.message_refs(0, 0).is_empty());
    Ok(())
}

#[test]
fn deleted_mails_blobs_are_not_listed() -> Result<()> {
    let mut mb = Mailbox::default();
    put(&mut mb, 1, "a", 1, "INBOX");
    put(&mut mb, 2, "b", 2, "INBOX");
    let mut twin = mail("twin", 3);
    twin.message = blob("b", 1000);
    mb.deliver(&ctx(3), twin, place("INBOX"))?;

    mb.delete_mail(&ctx(4), "a")?;
    assert_eq!(mb.message_refs(0, 10), [hex_of("b")]);
    // A blob stays listed while any mail still names it.
    mb.delete_mail(&ctx(5), "b")?;
    assert_eq!(mb.message_refs(0, 10), [hex_of("b")]);
    mb.delete_mail(&ctx(6), "twin")?;
    assert!(mb.message_refs(0, 10).is_empty());
    // A late delivery of a deleted id names nothing either.
    put(&mut mb, 7, "a", 1, "INBOX");
    assert!(mb.message_refs(0, 10).is_empty());
    Ok(())
}

/// An earlier delivery of the same id wins with its content, blob
/// included; the blob index follows.
#[test]
fn message_refs_follow_the_winning_delivery() -> Result<()> {
    let mut mb = Mailbox::default();
    let mut late = mail("a", 1);
    late.message = blob("late", 10);
    mb.deliver(&ctx(5), late, place("INBOX"))?;
    let mut early = mail("a", 1);
    early.message = blob("early", 10);
    mb.deliver(&ctx(2), early, place("INBOX"))?;
    assert_eq!(mb.message_refs(0, 10), [hex_of("early")]);
    Ok(())
}

#[test]
fn take_converted_hands_each_out_once_within_bounds() {
    let mut mb = Mailbox::default();
    let big = SNAPSHOT_CHUNK_BYTES_MAX as usize;
    let sizes = [10, 20, big - 25, 1, big + 1, 5];
    mb.converted = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| ([i as u8; 32], vec![i as u8; n]))
        .collect::<BTreeMap<_, _>>();
    let lens = |v: Vec<Vec<u8>>| v.iter().map(Vec::len).collect::<Vec<_>>();
    assert!(mb.take_converted(0).is_empty());
    assert_eq!(lens(mb.take_converted(1)), [10]);
    // Stops before going over the byte bound.
    assert_eq!(lens(mb.take_converted(100)), [20, big - 25, 1]);
    // One message larger than the bound still comes, alone.
    assert_eq!(lens(mb.take_converted(100)), [big + 1]);
    assert_eq!(lens(mb.take_converted(100)), [5]);
    assert!(mb.take_converted(100).is_empty());
}
