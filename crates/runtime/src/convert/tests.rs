//! Tests of `convert`: each mirror encodes as its generated type does
//! (rmp-serde compact and named, JSON), decodes as it, and converts to it
//! and back unchanged, for every case, flag and set or unset option.

use std::fmt::Debug;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::*;

/// `wit` and `mirror` are the same value on both sides: every encoding
/// the host uses agrees, each decodes as the other, and converting
/// either way gives the other.
fn same<W, M>(wit: W, mirror: M)
where
    W: Serialize + DeserializeOwned + Clone + PartialEq + Debug + From<M>,
    M: Serialize + DeserializeOwned + Clone + PartialEq + Debug + From<W>,
{
    let compact = rmp_serde::to_vec(&wit).unwrap();
    assert_eq!(compact, rmp_serde::to_vec(&mirror).unwrap(), "{mirror:?}");
    let named = rmp_serde::to_vec_named(&wit).unwrap();
    assert_eq!(
        named,
        rmp_serde::to_vec_named(&mirror).unwrap(),
        "{mirror:?}"
    );
    let json = serde_json::to_string(&wit).unwrap();
    assert_eq!(json, serde_json::to_string(&mirror).unwrap(), "{mirror:?}");
    assert_eq!(rmp_serde::from_slice::<M>(&compact).unwrap(), mirror);
    assert_eq!(rmp_serde::from_slice::<W>(&compact).unwrap(), wit);
    assert_eq!(M::from(wit.clone()), mirror);
    assert_eq!(W::from(mirror.clone()), wit);
    assert_eq!(M::from(W::from(mirror.clone())), mirror);
}

fn flags(bits: u8) -> (w::MailFlags, m::MailFlags) {
    FLAGS
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .fold(
            (w::MailFlags::empty(), m::MailFlags::empty()),
            |(a, b), (_, (wf, mf))| (a | *wf, b | *mf),
        )
}

fn strings(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("s{i}")).collect()
}

/// A placement with no flags or score, and one with some of each.
fn placements() -> [(w::Placement, m::Placement); 2] {
    [(None, 0), (Some(-1.5f32), 0b10101)].map(|(score, bits)| {
        let (wf, mf) = flags(bits);
        (
            w::Placement {
                folder: "Junk".into(),
                flags: wf,
                keywords: strings(2),
                spam_score: score,
            },
            m::Placement {
                folder: "Junk".into(),
                flags: mf,
                keywords: strings(2),
                spam_score: score,
            },
        )
    })
}

#[test]
fn every_flag_set_encodes_alike() {
    for bits in 0u8..32 {
        let (wit, mirror) = flags(bits);
        assert_eq!(mirror.bits(), bits);
        same(wit, mirror);
    }
    // The generated flags compare only the known bits; so do the
    // converted ones.
    let (all, _) = flags(0x1f);
    assert_eq!(
        m::MailFlags::from(!w::MailFlags::empty()),
        m::MailFlags::from(all)
    );
}

#[test]
fn types_records_encode_alike() {
    same(
        w::OpContext {
            now_ms: -5,
            hlc: u64::MAX,
            replica: 7,
        },
        m::OpContext {
            now_ms: -5,
            hlc: u64::MAX,
            replica: 7,
        },
    );
    let wh = || w::Header {
        name: "X-A".into(),
        value: "é".into(),
    };
    let mh = || m::Header {
        name: "X-A".into(),
        value: "é".into(),
    };
    same(wh(), mh());
    let wa = || w::AttachmentRef {
        hash: "ab".into(),
        name: "a.pdf".into(),
        media_type: "application/pdf".into(),
        size_bytes: 1 << 40,
        splice_at: Some(77),
    };
    let ma = || m::AttachmentRef {
        hash: "ab".into(),
        name: "a.pdf".into(),
        media_type: "application/pdf".into(),
        size_bytes: 1 << 40,
        splice_at: Some(77),
    };
    same(wa(), ma());
    let wb = || w::BlobRef {
        hash: "cd".repeat(32),
        size_bytes: 4096,
    };
    let mb = || m::BlobRef {
        hash: "cd".repeat(32),
        size_bytes: 4096,
    };
    same(wb(), mb());
    for (reply, n) in [(None, 0), (Some("<0@x>".to_string()), 2)] {
        same(
            w::NewMail {
                id: "m1".into(),
                from: "a@x".into(),
                to: strings(n),
                cc: strings(n + 1),
                subject: "s".into(),
                date_ms: i64::MIN,
                message_id: "<1@x>".into(),
                in_reply_to: reply.clone(),
                references: strings(n),
                message: wb(),
                size_bytes: 1 << 33,
                attachments: vec![wa(); n],
            },
            m::NewMail {
                id: "m1".into(),
                from: "a@x".into(),
                to: strings(n),
                cc: strings(n + 1),
                subject: "s".into(),
                date_ms: i64::MIN,
                message_id: "<1@x>".into(),
                in_reply_to: reply,
                references: strings(n),
                message: mb(),
                size_bytes: 1 << 33,
                attachments: vec![ma(); n],
            },
        );
    }
    for (wp, mp) in placements() {
        same(wp, mp);
    }
    let statuses = [
        (w::SenderStatus::Unknown, m::SenderStatus::Unknown),
        (w::SenderStatus::Contact, m::SenderStatus::Contact),
        (w::SenderStatus::Allowed, m::SenderStatus::Allowed),
        (w::SenderStatus::Blocked, m::SenderStatus::Blocked),
    ];
    for (ws, ms) in statuses {
        same(ws, ms);
        same(
            w::MailView {
                id: "m1".into(),
                from: "a@x".into(),
                to: strings(1),
                cc: strings(2),
                subject: "s".into(),
                date_ms: 9,
                message_id: "<1@x>".into(),
                headers: vec![wh()],
                body_preview: "bo".into(),
                body_size_bytes: 4,
                attachments: vec![wa()],
                sender: ws,
            },
            m::MailView {
                id: "m1".into(),
                from: "a@x".into(),
                to: strings(1),
                cc: strings(2),
                subject: "s".into(),
                date_ms: 9,
                message_id: "<1@x>".into(),
                headers: vec![mh()],
                body_preview: "bo".into(),
                body_size_bytes: 4,
                attachments: vec![ma()],
                sender: ms,
            },
        );
    }
}

#[test]
fn every_verdict_encodes_alike() {
    let (wf, mf) = flags(0b01100);
    same(
        w::FlagChange {
            flags: wf,
            keywords: vec![],
        },
        m::FlagChange {
            flags: mf,
            keywords: vec![],
        },
    );
    let verdicts = [
        (w::Verdict::Accept, m::Verdict::Accept),
        (
            w::Verdict::Reject("no".into()),
            m::Verdict::Reject("no".into()),
        ),
        (
            w::Verdict::FileInto("Work".into()),
            m::Verdict::FileInto("Work".into()),
        ),
        (
            w::Verdict::AddFlags(w::FlagChange {
                flags: wf,
                keywords: strings(2),
            }),
            m::Verdict::AddFlags(m::FlagChange {
                flags: mf,
                keywords: strings(2),
            }),
        ),
        (w::Verdict::SpamScore(2.25), m::Verdict::SpamScore(2.25)),
    ];
    for (wv, mv) in verdicts {
        same(wv, mv);
    }
}

#[test]
fn every_mailbox_error_encodes_alike() {
    let wl = || w::Limit {
        what: "folders".into(),
        limit: 10,
        actual: 11,
    };
    let ml = || m::Limit {
        what: "folders".into(),
        limit: 10,
        actual: 11,
    };
    same(wl(), ml());
    let s = || "x".to_string();
    let errors = [
        (
            w::MailboxError::NotFound(s()),
            m::MailboxError::NotFound(s()),
        ),
        (
            w::MailboxError::AlreadyExists(s()),
            m::MailboxError::AlreadyExists(s()),
        ),
        (
            w::MailboxError::InvalidName(s()),
            m::MailboxError::InvalidName(s()),
        ),
        (
            w::MailboxError::InvalidArgument(s()),
            m::MailboxError::InvalidArgument(s()),
        ),
        (
            w::MailboxError::TooLarge(wl()),
            m::MailboxError::TooLarge(ml()),
        ),
        (
            w::MailboxError::LimitReached(wl()),
            m::MailboxError::LimitReached(ml()),
        ),
        (
            w::MailboxError::NotAllowed(s()),
            m::MailboxError::NotAllowed(s()),
        ),
        (
            w::MailboxError::Snapshot(s()),
            m::MailboxError::Snapshot(s()),
        ),
    ];
    for (we, me) in errors {
        // The text restore errors and logs carry stays what it was.
        assert_eq!(we.to_string(), me.to_string());
        same(we, me);
    }
}

fn summaries(n: u32) -> (w::MailSummary, m::MailSummary) {
    let (wf, mf) = flags(0b00011);
    let (reply, score) = if n.is_multiple_of(2) {
        (None, None)
    } else {
        (Some("<0@x>".to_string()), Some(0.5f32))
    };
    (
        w::MailSummary {
            id: format!("m{n}"),
            folder: "INBOX".into(),
            uid: n,
            from: "a@x".into(),
            to: strings(2),
            cc: strings(0),
            subject: "s".into(),
            date_ms: 1,
            received_ms: 2,
            message_id: "<1@x>".into(),
            in_reply_to: reply.clone(),
            flags: wf,
            keywords: strings(1),
            size_bytes: 300,
            attachment_count: 1,
            spam_score: score,
        },
        m::MailSummary {
            id: format!("m{n}"),
            folder: "INBOX".into(),
            uid: n,
            from: "a@x".into(),
            to: strings(2),
            cc: strings(0),
            subject: "s".into(),
            date_ms: 1,
            received_ms: 2,
            message_id: "<1@x>".into(),
            in_reply_to: reply,
            flags: mf,
            keywords: strings(1),
            size_bytes: 300,
            attachment_count: 1,
            spam_score: score,
        },
    )
}

#[test]
fn mail_reads_encode_alike() {
    for (duplicate, (wp, mp)) in [true, false].into_iter().zip(placements()) {
        same(
            w::Delivered {
                uid: 3,
                folder: "INBOX".into(),
                duplicate,
                placement: wp,
            },
            m::Delivered {
                uid: 3,
                folder: "INBOX".into(),
                duplicate,
                placement: mp,
            },
        );
    }
    let (ws, ms): (Vec<_>, Vec<_>) = (0..3).map(summaries).unzip();
    for (ws, ms) in ws.iter().cloned().zip(ms.iter().cloned()) {
        same(ws, ms);
    }
    same(
        w::MailPage {
            total: 7,
            items: ws.clone(),
        },
        m::MailPage {
            total: 7,
            items: ms.clone(),
        },
    );
    same(
        w::MailPage {
            total: 0,
            items: vec![],
        },
        m::MailPage {
            total: 0,
            items: vec![],
        },
    );
    let wa = w::AttachmentRef {
        hash: "h".into(),
        name: "n".into(),
        media_type: "t".into(),
        size_bytes: 1,
        splice_at: None,
    };
    let ma = m::AttachmentRef {
        hash: "h".into(),
        name: "n".into(),
        media_type: "t".into(),
        size_bytes: 1,
        splice_at: None,
    };
    for (i, n) in [(0, 0), (1, 2)] {
        same(
            w::MailDetail {
                summary: ws[i].clone(),
                references: strings(n),
                message: w::BlobRef {
                    hash: "ef".repeat(32),
                    size_bytes: 7,
                },
                attachments: vec![wa.clone(); n],
            },
            m::MailDetail {
                summary: ms[i].clone(),
                references: strings(n),
                message: m::BlobRef {
                    hash: "ef".repeat(32),
                    size_bytes: 7,
                },
                attachments: vec![ma.clone(); n],
            },
        );
    }
    let (wf, mf) = flags(0b11111);
    same(
        w::FlagState {
            flags: wf,
            keywords: strings(3),
        },
        m::FlagState {
            flags: mf,
            keywords: strings(3),
        },
    );
    same(
        w::Tombstone {
            id: "m1".into(),
            deleted_ms: -1,
            hlc: 5,
        },
        m::Tombstone {
            id: "m1".into(),
            deleted_ms: -1,
            hlc: 5,
        },
    );
}

#[test]
fn search_queries_encode_alike() {
    let (ws, ms) = flags(0b00001);
    let (wu, mu) = flags(0b10000);
    same(
        w::SearchQuery {
            from: None,
            to: None,
            subject: None,
            body_terms: vec![],
            text_terms: vec![],
            folder: None,
            since_ms: None,
            before_ms: None,
            flags_set: w::MailFlags::empty(),
            flags_unset: w::MailFlags::empty(),
            keyword: None,
        },
        m::SearchQuery::default(),
    );
    same(
        w::SearchQuery {
            from: Some("a".into()),
            to: Some("b".into()),
            subject: Some("c".into()),
            body_terms: strings(2),
            text_terms: strings(1),
            folder: Some("INBOX".into()),
            since_ms: Some(-3),
            before_ms: Some(i64::MAX),
            flags_set: ws,
            flags_unset: wu,
            keyword: Some("k".into()),
        },
        m::SearchQuery {
            from: Some("a".into()),
            to: Some("b".into()),
            subject: Some("c".into()),
            body_terms: strings(2),
            text_terms: strings(1),
            folder: Some("INBOX".into()),
            since_ms: Some(-3),
            before_ms: Some(i64::MAX),
            flags_set: ms,
            flags_unset: mu,
            keyword: Some("k".into()),
        },
    );
}

#[test]
fn mailbox_settings_encode_alike() {
    same(
        w::FolderInfo {
            name: "Work".into(),
            uid_validity: 1,
            uid_next: 2,
            total: 3,
            unseen: 4,
            size_bytes: 5,
        },
        m::FolderInfo {
            name: "Work".into(),
            uid_validity: 1,
            uid_next: 2,
            total: 3,
            unseen: 4,
            size_bytes: 5,
        },
    );
    same(
        w::Contact {
            name: "A".into(),
            address: "a@x".into(),
            note: "".into(),
        },
        m::Contact {
            name: "A".into(),
            address: "a@x".into(),
            note: "".into(),
        },
    );
    same(w::SenderList::Allow, m::SenderList::Allow);
    same(w::SenderList::Block, m::SenderList::Block);
    same(
        w::PluginEntry {
            name: "spam".into(),
            code_hash: "00ff".into(),
            config: "threshold 5\n".into(),
            order: 2,
        },
        m::PluginEntry {
            name: "spam".into(),
            code_hash: "00ff".into(),
            config: "threshold 5\n".into(),
            order: 2,
        },
    );
    same(
        w::MailboxStats {
            mails: 1,
            mail_bytes: 2,
            folders: 3,
            contacts: 4,
            tombstones: 5,
            plugins: 6,
            state_bytes: 7,
        },
        m::MailboxStats {
            mails: 1,
            mail_bytes: 2,
            folders: 3,
            contacts: 4,
            tombstones: 5,
            plugins: 6,
            state_bytes: 7,
        },
    );
    same(
        w::SnapshotInfo {
            schema_version: 3,
            size_bytes: 1 << 33,
        },
        m::SnapshotInfo {
            schema_version: 3,
            size_bytes: 1 << 33,
        },
    );
}
