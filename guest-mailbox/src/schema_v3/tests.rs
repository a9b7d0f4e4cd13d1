//! Tests of the schema-3 to 4 conversion on hand-built old mails: the
//! exact rendition, the References taken over, and the refusals.

use super::*;
use crate::snapshot::MAGIC;
use crate::state::Mailbox;

/// A schema-3 state of one mail in INBOX, as an old build held it.
fn old_state(mail: StoredMailV3) -> MailboxStateV3 {
    let fresh = MailboxState::default();
    MailboxStateV3 {
        mails: [("old".to_string(), mail)].into(),
        folders: [(
            "INBOX".to_string(),
            Folder {
                uid_validity: 1,
                uid_next: 2,
            },
        )]
        .into(),
        tombstones: BTreeMap::new(),
        contacts: fresh.contacts,
        allow: fresh.allow,
        block: fresh.block,
        preferences: fresh.preferences,
        plugins: fresh.plugins,
        next_uid_validity: 2,
        folder_log: fresh.folder_log,
    }
}

fn old_mail() -> StoredMailV3 {
    let stamp = Stamp { hlc: 5, replica: 2 };
    StoredMailV3 {
        folder: 1,
        uid: 1,
        from: "Zoë <zoe@example.com>".into(),
        to: vec!["a@example.com".into(), "B <b@example.com>".into()],
        cc: vec![],
        subject: "Ça va?".into(),
        date_ms: 1_796_119_200_000,
        received_ms: 1_796_119_201_000,
        message_id: "m@example.com".into(),
        in_reply_to: Some("<p@example.com>".into()),
        headers: vec![
            (
                "References".into(),
                "<q@example.com>  <p@example.com>".into(),
            ),
            ("Content-Type".into(), "text/html".into()),
            ("Bad Name".into(), "dropped".into()),
            ("X-Note".into(), "line\nbreak".into()),
        ],
        body: b"Hello\nworld\r\n".to_vec(),
        attachments: vec![AttachmentV3 {
            hash: "cd".repeat(32),
            name: "a.txt".into(),
            media_type: "text/plain".into(),
            size_bytes: 3,
        }],
        flags: 1,
        keywords: ["k".to_string()].into(),
        spam_score: None,
        delivered: stamp,
        moved: stamp,
        flag_stamps: BTreeMap::new(),
        keyword_stamps: BTreeMap::new(),
        place: "INBOX".into(),
    }
}

/// The snapshot an old build wrote of `state`.
fn schema_3_snapshot(state: &MailboxStateV3) -> Result<Vec<u8>, String> {
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&3u32.to_le_bytes());
    rmp_serde::encode::write(&mut bytes, state).map_err(|e| e.to_string())?;
    Ok(bytes)
}

const RENDERED: &str = "From: =?utf-8?b?Wm/Dqw==?= <zoe@example.com>\r\n\
    To: a@example.com, B <b@example.com>\r\n\
    Subject: =?utf-8?b?w4dhIHZhPw==?=\r\n\
    Date: Tue, 1 Dec 2026 10:00:00 +0000\r\n\
    Message-ID: <m@example.com>\r\n\
    In-Reply-To: <p@example.com>\r\n\
    References: <q@example.com>  <p@example.com>\r\n\
    X-Note: =?utf-8?b?bGluZQpicmVhaw==?=\r\n\
    MIME-Version: 1.0\r\n\
    Content-Type: text/plain; charset=utf-8\r\n\
    Content-Transfer-Encoding: 8bit\r\n\
    \r\n\
    Hello\r\nworld\r\n";

#[test]
fn an_old_mail_becomes_a_message_and_an_index_entry() -> Result<(), String> {
    let bytes = schema_3_snapshot(&old_state(old_mail()))?;
    let mut mb = Mailbox::default();
    mb.restore_begin(3, bytes.len() as u64)
        .and_then(|()| mb.restore_write(&bytes))
        .and_then(|()| mb.restore_finish())
        .map_err(|e| format!("{e:?}"))?;
    let taken = mb.take_converted(10);
    assert_eq!(taken.len(), 1);
    assert_eq!(String::from_utf8_lossy(&taken[0]), RENDERED);

    let m = &mb.state.mails["old"];
    assert_eq!(m.blob, *blake3::hash(RENDERED.as_bytes()).as_bytes());
    assert_eq!(m.blob_bytes, RENDERED.len() as u64);
    assert_eq!(m.size_bytes, RENDERED.len() as u64);
    assert_eq!(m.references, ["<q@example.com>", "<p@example.com>"]);
    assert_eq!(m.attachments[0].hash, [0xcd; 32]);
    assert_eq!(m.attachments[0].splice_at, None);
    assert_eq!(m.last_move, None, "never moved");
    assert_eq!((m.subject.as_str(), m.flags), ("Ça va?", 1));
    assert_eq!(mb.message_refs(0, 10), [crate::hash::to_hex(&m.blob)]);
    Ok(())
}

#[test]
fn references_keep_the_last_that_fit() {
    let many: Vec<String> = (0..REFERENCES_MAX + 5)
        .map(|i| format!("<{i}@x>"))
        .collect();
    let long = format!("<{}>", "x".repeat(MESSAGE_ID_BYTES_MAX));
    let value = format!("{long} {}", many.join(" "));
    let refs = references(&[
        ("references".into(), "<ignored@x>".into()),
        ("REFERENCES".into(), value),
    ]);
    assert_eq!(refs, many[5..]);
    assert!(references(&[]).is_empty());
}

#[test]
fn a_bad_old_attachment_hash_fails_the_restore() {
    let mut m = old_mail();
    m.attachments[0].hash = "not hex".into();
    assert!(old_state(m).convert().is_err());
}

#[test]
fn moved_mails_keep_their_move_stamp() -> Result<(), String> {
    let mut m = old_mail();
    m.moved = Stamp { hlc: 9, replica: 1 };
    let converted = old_state(m).convert()?;
    assert_eq!(
        converted.state.mails["old"].last_move,
        Some(Stamp { hlc: 9, replica: 1 })
    );
    Ok(())
}
