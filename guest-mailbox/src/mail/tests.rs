use super::*;
use crate::limits::{
    ATTACHMENTS_MAX, FOLDERS_MAX, MAIL_INDEX_BYTES_MAX, MAILBOX_INDEX_BYTES_MAX, MESSAGE_BYTES_MAX,
    MESSAGE_ID_BYTES_MAX, RECIPIENTS_MAX, REFERENCES_MAX,
};
use crate::testutil::*;
use crate::wit::{MailboxError, NewMail, Placement};

fn summary(mb: &Mailbox, id: &str) -> MailSummary {
    mb.get(id).unwrap().summary
}

#[test]
fn deliver_assigns_growing_uids_and_stores_placement() {
    let mut mb = Mailbox::default();
    let mut p = place("INBOX");
    p.flags = MailFlags::FLAGGED;
    p.keywords = vec!["$Important".into()];
    p.spam_score = Some(0.25);
    let d = mb.deliver(&ctx(1), mail("a", 10), p).unwrap();
    assert_eq!((d.uid, d.folder.as_str(), d.duplicate), (1, "INBOX", false));
    let d = put(&mut mb, 2, "b", 5, "inbox");
    assert_eq!((d.uid, d.folder.as_str()), (2, "INBOX"));
    let s = summary(&mb, "a");
    assert_eq!(s.received_ms, ctx(1).now_ms);
    assert_eq!(s.flags, MailFlags::FLAGGED);
    assert_eq!(s.keywords, vec!["$Important".to_string()]);
    assert_eq!(s.spam_score, Some(0.25));
    assert_eq!(s.attachment_count, 0);
    // The exact message size as the host reported it.
    assert_eq!(s.size_bytes, 1000);
    assert_eq!(mb.state.folders["INBOX"].uid_next, 3);
}

#[test]
fn deliver_is_idempotent_and_never_resurrects() {
    let mut mb = Mailbox::default();
    put(&mut mb, 1, "a", 10, "Work");
    let before = mb.state.clone();
    let d = put(&mut mb, 2, "a", 99, "INBOX");
    assert!(d.duplicate);
    assert_eq!((d.uid, d.folder.as_str()), (1, "Work"));
    assert_eq!(mb.state, before);

    mb.delete_mail(&ctx(3), "a").unwrap();
    let d = put(&mut mb, 4, "a", 10, "Work");
    assert!(d.duplicate);
    assert!(mb.state.mails.is_empty());
}

#[test]
fn deliver_validates_limits_without_panicking() {
    let mut mb = Mailbox::default();
    let p = || place("INBOX");
    let err = |mb: &mut Mailbox, m: NewMail, p: Placement| mb.deliver(&ctx(1), m, p).unwrap_err();

    let m = mail("", 1);
    assert!(matches!(
        err(&mut mb, m, p()),
        MailboxError::InvalidArgument(_)
    ));
    let m = mail(&"x".repeat(MAIL_ID_BYTES_MAX + 1), 1);
    assert!(matches!(err(&mut mb, m, p()), MailboxError::TooLarge(_)));

    let mut m = mail("big", 1);
    m.subject = "x".repeat(MAIL_INDEX_BYTES_MAX as usize + 1);
    match err(&mut mb, m, p()) {
        MailboxError::TooLarge(l) => {
            assert_eq!(l.what, "mail index bytes");
            assert_eq!(l.limit, MAIL_INDEX_BYTES_MAX);
        }
        e => panic!("{e:?}"),
    }

    let mut m = mail("rcpt", 1);
    m.to = vec!["x@y".into(); RECIPIENTS_MAX];
    assert!(matches!(err(&mut mb, m, p()), MailboxError::TooLarge(_)));

    let mut m = mail("att", 1);
    m.attachments = vec![attachment(); ATTACHMENTS_MAX + 1];
    assert!(matches!(err(&mut mb, m, p()), MailboxError::TooLarge(_)));

    let mut m = mail("hash", 1);
    let mut a = attachment();
    a.hash = "AB".repeat(32);
    m.attachments = vec![a];
    assert!(matches!(
        err(&mut mb, m, p()),
        MailboxError::InvalidArgument(_)
    ));

    let mut pl = p();
    pl.keywords = (0..=KEYWORDS_MAX).map(|i| format!("k{i}")).collect();
    assert!(matches!(
        err(&mut mb, mail("kw", 1), pl),
        MailboxError::TooLarge(_)
    ));
    let mut pl = p();
    pl.keywords = vec!["bad kw".into()];
    assert!(matches!(
        err(&mut mb, mail("kw", 1), pl),
        MailboxError::InvalidName(_)
    ));

    assert!(mb.state.mails.is_empty());
    assert_eq!(mb.state.folders["INBOX"].uid_next, 1);
}

#[test]
fn deliver_refuses_past_the_mailbox_index_limit() {
    let mut mb = Mailbox::default();
    // Pretend the index is nearly full rather than filling 1 GiB.
    mb.idx.index_bytes = MAILBOX_INDEX_BYTES_MAX - 10;
    let e = mb
        .deliver(&ctx(1), mail("a", 1), place("INBOX"))
        .unwrap_err();
    match e {
        MailboxError::LimitReached(l) => {
            assert_eq!(l.what, "mailbox index bytes");
            assert_eq!(l.limit, MAILBOX_INDEX_BYTES_MAX);
        }
        e => panic!("{e:?}"),
    }
}

/// Message bytes live beside the mailbox: however large the messages,
/// only their index entries count against the state.
#[test]
fn message_sizes_do_not_count_against_the_state() -> Result<()> {
    let mut mb = Mailbox::default();
    for i in 0..4u64 {
        let mut m = mail(&format!("huge{i}"), i as i64);
        m.size_bytes = MESSAGE_BYTES_MAX;
        m.message.size_bytes = MESSAGE_BYTES_MAX;
        mb.deliver(&ctx(i), m, place("INBOX"))?;
    }
    let stats = mb.stats();
    assert_eq!(stats.mail_bytes, 4 * MESSAGE_BYTES_MAX);
    assert!(stats.state_bytes < 4096, "{}", stats.state_bytes);
    assert_eq!(mb.list_folders()[0].size_bytes, 4 * MESSAGE_BYTES_MAX);
    Ok(())
}

#[test]
fn deliver_creates_missing_folder_with_parents() {
    let mut mb = Mailbox::default();
    let d = put(&mut mb, 1, "a", 1, "Lists/rust");
    assert_eq!((d.folder.as_str(), d.uid), ("Lists/rust", 1));
    assert!(mb.state.folders.contains_key("Lists"));
    assert_eq!(mb.state.folders["Lists"].uid_validity, 2);
    assert_eq!(mb.state.folders["Lists/rust"].uid_validity, 3);
}

#[test]
fn deliver_falls_back_to_inbox() {
    let mut mb = Mailbox::default();
    // Invalid folder name: never lose the mail.
    let d = put(&mut mb, 1, "a", 1, "bad//name");
    assert_eq!(d.folder, "INBOX");
    // Folder limit reached.
    for i in 1..FOLDERS_MAX {
        mb.create_folder(&ctx(2), &format!("f{i}")).unwrap();
    }
    let d = put(&mut mb, 3, "b", 1, "new");
    assert_eq!(d.folder, "INBOX");
    assert!(!mb.state.folders.contains_key("new"));
    // An existing folder still works.
    assert_eq!(put(&mut mb, 4, "c", 1, "f7").folder, "f7");
}

#[test]
fn deliver_drops_non_finite_spam_score() {
    let mut mb = Mailbox::default();
    let mut p = place("INBOX");
    p.spam_score = Some(f32::NAN);
    mb.deliver(&ctx(1), mail("a", 1), p).unwrap();
    assert_eq!(summary(&mb, "a").spam_score, None);
}

#[test]
fn list_folder_pages_newest_first() {
    let mut mb = Mailbox::default();
    put(&mut mb, 1, "old", 100, "INBOX");
    put(&mut mb, 2, "new", 300, "INBOX");
    put(&mut mb, 3, "mid", 200, "INBOX");
    put(&mut mb, 4, "mid2", 200, "INBOX"); // same date, higher uid: first
    put(&mut mb, 5, "other", 999, "Work");
    let page = mb.list_folder("INBOX", 0, 10).unwrap();
    assert_eq!(page.total, 4);
    assert_eq!(ids(&page.items), ["new", "mid2", "mid", "old"]);
    let page = mb.list_folder("inbox", 1, 2).unwrap();
    assert_eq!(ids(&page.items), ["mid2", "mid"]);
    assert!(mb.list_folder("INBOX", 10, 10).unwrap().items.is_empty());
    assert!(mb.list_folder("INBOX", 0, 0).unwrap().items.is_empty());
    assert_eq!(mb.list_folder("INBOX", 0, u32::MAX).unwrap().items.len(), 4);
    assert!(matches!(
        mb.list_folder("Nope", 0, 10),
        Err(MailboxError::NotFound(_))
    ));
}

#[test]
fn list_folder_caps_the_page() {
    let mut mb = Mailbox::default();
    for i in 0..PAGE_LIMIT_MAX + 5 {
        put(&mut mb, 1, &format!("m{i}"), i64::from(i), "INBOX");
    }
    let page = mb.list_folder("INBOX", 0, u32::MAX).unwrap();
    assert_eq!(page.items.len(), PAGE_LIMIT_MAX as usize);
    assert_eq!(page.total, PAGE_LIMIT_MAX + 5);
}

#[test]
fn get_returns_the_index_and_where_the_bytes_are() -> Result<()> {
    let mut mb = Mailbox::default();
    let mut m = mail("a", 1);
    m.references = vec!["<r1@x>".into(), "<r2@x>".into()];
    m.message = blob("stored", 800);
    m.size_bytes = 5000;
    let mut cut = attachment();
    cut.splice_at = Some(700);
    m.attachments = vec![attachment(), cut.clone()];
    mb.deliver(&ctx(1), m, place("INBOX"))?;
    let d = mb.get("a")?;
    assert_eq!(d.references, ["<r1@x>", "<r2@x>"]);
    assert_eq!(d.message, blob("stored", 800));
    assert_eq!(d.attachments, vec![attachment(), cut]);
    assert_eq!(d.summary.attachment_count, 2);
    assert_eq!(d.summary.size_bytes, 5000);
    assert!(matches!(mb.get("zz"), Err(MailboxError::NotFound(_))));
    Ok(())
}

/// The limits the index adds: references, message ids, blob hashes,
/// sizes and splice positions.
#[test]
fn deliver_refuses_bad_index_entries() {
    let mut mb = Mailbox::default();
    let refused = |mb: &mut Mailbox, m: NewMail| {
        mb.deliver(&ctx(1), m, place("INBOX"))
            .expect_err("delivery was refused")
    };
    let too_large = |e: MailboxError, what: &str| match e {
        MailboxError::TooLarge(l) => assert_eq!(l.what, what),
        e => panic!("{e:?}"),
    };

    let mut m = mail("refs", 1);
    m.references = (0..=REFERENCES_MAX).map(|i| format!("<{i}@x>")).collect();
    too_large(refused(&mut mb, m), "references");
    let mut m = mail("refs", 1);
    m.references = vec![format!("<{}>", "x".repeat(MESSAGE_ID_BYTES_MAX))];
    too_large(refused(&mut mb, m), "message id");
    let mut m = mail("mid", 1);
    m.message_id = "x".repeat(MESSAGE_ID_BYTES_MAX + 1);
    too_large(refused(&mut mb, m), "message id");
    let mut m = mail("irt", 1);
    m.in_reply_to = Some("x".repeat(MESSAGE_ID_BYTES_MAX + 1));
    too_large(refused(&mut mb, m), "message id");
    let mut m = mail("size", 1);
    m.size_bytes = MESSAGE_BYTES_MAX + 1;
    too_large(refused(&mut mb, m), "message bytes");
    let mut m = mail("stored", 1);
    m.message.size_bytes = MESSAGE_BYTES_MAX + 1;
    too_large(refused(&mut mb, m), "stored bytes");

    for hash in ["AB".repeat(32), "ab".repeat(31), String::new()] {
        let mut m = mail("hash", 1);
        m.message.hash = hash;
        assert!(matches!(
            refused(&mut mb, m),
            MailboxError::InvalidArgument(_)
        ));
    }

    let spliced = |at: &[u64]| {
        let mut m = mail("splice", 1);
        m.message.size_bytes = 100;
        m.attachments = at
            .iter()
            .map(|&at| AttachmentRef {
                splice_at: Some(at),
                ..attachment()
            })
            .collect();
        m
    };
    for bad in [&[101][..], &[50, 10], &[0, 100, 99]] {
        assert!(matches!(
            refused(&mut mb, spliced(bad)),
            MailboxError::InvalidArgument(_)
        ));
    }
    assert!(mb.state.mails.is_empty());
    // In order (equal positions too) and within the stored bytes is fine.
    mb.deliver(&ctx(2), spliced(&[0, 10, 10, 100]), place("INBOX"))
        .expect("good splice positions");
}

#[test]
fn set_flags_adds_and_removes_flags_and_keywords() {
    let mut mb = Mailbox::default();
    put(&mut mb, 1, "a", 1, "INBOX");
    assert_eq!(mb.list_folders()[0].unseen, 1);
    let st = mb
        .set_flags(
            &ctx(2),
            "a",
            &flags(MailFlags::SEEN | MailFlags::FLAGGED, &["work", "$Later"]),
            &none(),
        )
        .unwrap();
    assert_eq!(st.flags, MailFlags::SEEN | MailFlags::FLAGGED);
    assert_eq!(st.keywords, ["$Later", "work"]);
    assert_eq!(mb.list_folders()[0].unseen, 0);
    let st = mb
        .set_flags(&ctx(3), "a", &none(), &flags(MailFlags::SEEN, &["work"]))
        .unwrap();
    assert_eq!(st.flags, MailFlags::FLAGGED);
    assert_eq!(st.keywords, ["$Later"]);
    assert_eq!(mb.list_folders()[0].unseen, 1);
    // Both add and remove: add wins.
    let st = mb
        .set_flags(
            &ctx(4),
            "a",
            &flags(MailFlags::DRAFT, &[]),
            &flags(MailFlags::DRAFT, &[]),
        )
        .unwrap();
    assert!(st.flags.contains(MailFlags::DRAFT));
    // Repeated keywords in one list are harmless.
    let st = mb
        .set_flags(
            &ctx(5),
            "a",
            &none(),
            &flags(MailFlags::empty(), &["$Later", "$Later"]),
        )
        .unwrap();
    assert!(st.keywords.is_empty());
    let st = mb
        .set_flags(
            &ctx(6),
            "a",
            &flags(MailFlags::empty(), &["x", "x"]),
            &none(),
        )
        .unwrap();
    assert_eq!(st.keywords, ["x"]);
    assert!(matches!(
        mb.set_flags(&ctx(5), "zz", &none(), &none()),
        Err(MailboxError::NotFound(_))
    ));
    assert!(matches!(
        mb.set_flags(&ctx(5), "a", &flags(MailFlags::empty(), &["a b"]), &none()),
        Err(MailboxError::InvalidName(_))
    ));
}

#[test]
fn set_flags_ignores_stale_stamps_per_element() {
    let mut mb = Mailbox::default();
    put(&mut mb, 1, "a", 1, "INBOX");
    mb.set_flags(&ctx(10), "a", &flags(MailFlags::SEEN, &["k"]), &none())
        .unwrap();
    // Older remove of the same elements: ignored, Ok with current state.
    let st = mb
        .set_flags(&ctx(5), "a", &none(), &flags(MailFlags::SEEN, &["k"]))
        .unwrap();
    assert_eq!(st.flags, MailFlags::SEEN);
    assert_eq!(st.keywords, ["k"]);
    // An older change of another flag still applies: it was never
    // overwritten by a newer one.
    let st = mb
        .set_flags(&ctx(6), "a", &flags(MailFlags::ANSWERED, &[]), &none())
        .unwrap();
    assert_eq!(st.flags, MailFlags::SEEN | MailFlags::ANSWERED);
    // Replica breaks hlc ties.
    let mut c = ctx(10);
    c.replica = 2;
    let st = mb
        .set_flags(&c, "a", &none(), &flags(MailFlags::SEEN, &[]))
        .unwrap();
    assert!(!st.flags.contains(MailFlags::SEEN));
    // A removed keyword remembers its stamp: an older add loses.
    mb.set_flags(&ctx(20), "a", &none(), &flags(MailFlags::empty(), &["k"]))
        .unwrap();
    let st = mb
        .set_flags(&ctx(15), "a", &flags(MailFlags::empty(), &["k"]), &none())
        .unwrap();
    assert!(st.keywords.is_empty());
    // Changes older than the delivery are ignored.
    let mut mb = Mailbox::default();
    put(&mut mb, 5, "b", 1, "INBOX");
    let st = mb
        .set_flags(&ctx(4), "b", &flags(MailFlags::SEEN, &[]), &none())
        .unwrap();
    assert!(st.flags.is_empty());
}

#[test]
fn set_flags_keyword_limit_is_all_or_nothing() {
    let mut mb = Mailbox::default();
    put(&mut mb, 1, "a", 1, "INBOX");
    let first: Vec<String> = (0..KEYWORDS_MAX).map(|i| format!("k{i}")).collect();
    let refs: Vec<&str> = first.iter().map(String::as_str).collect();
    mb.set_flags(&ctx(2), "a", &flags(MailFlags::empty(), &refs), &none())
        .unwrap();
    let e = mb
        .set_flags(
            &ctx(3),
            "a",
            &flags(MailFlags::SEEN, &["one-more"]),
            &none(),
        )
        .unwrap_err();
    assert!(matches!(e, MailboxError::LimitReached(_)));
    assert!(!mb.state.mails["a"].seen());
    // Swapping one keyword for another fits.
    mb.set_flags(
        &ctx(4),
        "a",
        &flags(MailFlags::empty(), &["one-more"]),
        &flags(MailFlags::empty(), &["k0"]),
    )
    .unwrap();
    assert_eq!(mb.state.mails["a"].keywords.len(), KEYWORDS_MAX);
}

#[test]
fn keyword_stamps_stay_bounded() {
    let mut mb = Mailbox::default();
    put(&mut mb, 1, "a", 1, "INBOX");
    for i in 0..(KEYWORD_STAMPS_MAX as u64 + 20) {
        let k = format!("k{i}");
        mb.set_flags(
            &ctx(2 + 2 * i),
            "a",
            &flags(MailFlags::empty(), &[&k]),
            &none(),
        )
        .unwrap();
        mb.set_flags(
            &ctx(3 + 2 * i),
            "a",
            &none(),
            &flags(MailFlags::empty(), &[&k]),
        )
        .unwrap();
    }
    assert_eq!(mb.state.mails["a"].keyword_stamps.len(), KEYWORD_STAMPS_MAX);
    // The newest removal is still remembered.
    let last = format!("k{}", KEYWORD_STAMPS_MAX + 19);
    assert!(mb.state.mails["a"].keyword_stamps.contains_key(&last));
}

#[test]
fn move_assigns_new_uid_and_respects_stamps() {
    let mut mb = Mailbox::default();
    put(&mut mb, 1, "a", 1, "INBOX");
    put(&mut mb, 2, "b", 2, "INBOX");
    mb.create_folder(&ctx(3), "Archive").unwrap();
    assert_eq!(mb.move_mail(&ctx(4), "a", "Archive").unwrap(), 1);
    assert_eq!(mb.move_mail(&ctx(5), "b", "Archive").unwrap(), 2);
    assert_eq!(summary(&mb, "a").folder, "Archive");
    // Same folder: no-op returning the current uid.
    assert_eq!(mb.move_mail(&ctx(6), "a", "Archive").unwrap(), 1);
    // Back to INBOX: a fresh uid there, old uids are never reused.
    assert_eq!(mb.move_mail(&ctx(7), "a", "inbox").unwrap(), 3);
    assert_eq!(mb.list_folder("Archive", 0, 10).unwrap().total, 1);
    // Stale move: ignored, current uid.
    assert_eq!(mb.move_mail(&ctx(5), "a", "Archive").unwrap(), 3);
    assert_eq!(summary(&mb, "a").folder, "INBOX");
    assert!(matches!(
        mb.move_mail(&ctx(8), "a", "Nope"),
        Err(MailboxError::NotFound(_))
    ));
    assert!(matches!(
        mb.move_mail(&ctx(8), "zz", "INBOX"),
        Err(MailboxError::NotFound(_))
    ));
    let info = mb.list_folders();
    assert_eq!((info[0].total, info[0].unseen), (1, 1));
}

#[test]
fn same_folder_move_still_wins_over_older_moves() {
    let mut mb = Mailbox::default();
    put(&mut mb, 1, "a", 1, "INBOX");
    mb.create_folder(&ctx(2), "B").unwrap();
    mb.move_mail(&ctx(10), "a", "INBOX").unwrap();
    mb.move_mail(&ctx(5), "a", "B").unwrap();
    assert_eq!(summary(&mb, "a").folder, "INBOX");
}

#[test]
fn delete_records_tombstones_and_history() {
    let mut mb = Mailbox::default();
    put(&mut mb, 1, "a", 1, "INBOX");
    put(&mut mb, 2, "b", 2, "INBOX");
    put(&mut mb, 3, "c", 3, "INBOX");
    mb.delete_mail(&ctx(5), "b").unwrap();
    mb.delete_mail(&ctx(4), "c").unwrap();
    mb.delete_mail(&ctx(6), "b").unwrap(); // idempotent, keeps the first
    // An id never seen is recorded, so its delivery arriving later (from
    // a replica that had it first) stays deleted.
    mb.delete_mail(&ctx(7), "never").unwrap();
    assert!(put(&mut mb, 8, "never", 8, "INBOX").duplicate);
    assert!(matches!(
        mb.delete_mail(&ctx(9), ""),
        Err(MailboxError::InvalidArgument(_))
    ));
    let h = mb.delete_history(0, 10);
    assert_eq!(h.len(), 3);
    assert_eq!(
        (h[0].id.as_str(), h[0].deleted_ms, h[0].hlc),
        ("c", ctx(4).now_ms, 4)
    );
    assert_eq!((h[1].id.as_str(), h[1].hlc), ("b", 5));
    assert_eq!(h[2].id, "never");
    assert_eq!(mb.delete_history(1, 10).len(), 2);
    assert!(mb.delete_history(0, 0).is_empty());
    assert_eq!(mb.list_folder("INBOX", 0, 10).unwrap().total, 1);
    assert_eq!(mb.idx.mail_bytes, mb.state.mails["a"].size_bytes);
}

#[test]
fn tombstones_are_bounded_dropping_the_oldest() {
    let mut mb = Mailbox::default();
    // Pre-fill just under the limit through the same code path.
    for i in 0..TOMBSTONES_MAX as u64 {
        mb.record_tombstone(&format!("t{i:07}"), &ctx(i));
    }
    put(&mut mb, 1, "x", 1, "INBOX");
    mb.delete_mail(&ctx(TOMBSTONES_MAX as u64 + 1), "x")
        .unwrap();
    assert_eq!(mb.state.tombstones.len(), TOMBSTONES_MAX);
    assert!(!mb.state.tombstones.contains_key("t0000000"));
    assert!(mb.state.tombstones.contains_key("x"));
    assert_eq!(mb.delete_history(0, 1)[0].id, "t0000001");
}
