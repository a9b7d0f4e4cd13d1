use super::*;
use crate::state::Attachment;

fn sample(i: u32) -> StoredMail {
    StoredMail {
        folder: 1,
        uid: i + 1,
        from: format!("sender{i}@example.com"),
        to: vec!["a@example.com".into(), "b@example.com".into()],
        cc: vec![],
        subject: format!("subject {i} é"),
        date_ms: 1_000 * i64::from(i),
        received_ms: 1_000 * i64::from(i) + 5,
        message_id: format!("<{i}@example.com>"),
        in_reply_to: i
            .is_multiple_of(2)
            .then(|| "<parent@example.com>".to_string()),
        references: vec!["<r1@example.com>".into()],
        blob: [i as u8; 32],
        blob_bytes: 900,
        size_bytes: 2_000,
        attachments: vec![Attachment {
            hash: [7; 32],
            name: "a.pdf".into(),
            media_type: "application/pdf".into(),
            size_bytes: 1_100,
            splice_at: Some(400),
        }],
        flags: (i % 3) as u8,
        keywords: ["$Label1".to_string()].into(),
        spam_score: Some(0.5),
        delivered: Stamp { hlc: 9, replica: 1 },
        last_move: None,
        flag_stamps: [(
            1u8,
            Stamp {
                hlc: 10,
                replica: 2,
            },
        )]
        .into(),
        keyword_stamps: [(
            "work".to_string(),
            Stamp {
                hlc: 11,
                replica: 2,
            },
        )]
        .into(),
        place: "INBOX".into(),
    }
}

fn encoded(m: &StoredMail) -> Vec<u8> {
    let mut v = Vec::new();
    rmp_serde::encode::write(&mut v, m).unwrap();
    v
}

/// Mails restored from `mails`' own encoding, as a schema-5 restore
/// leaves them.
fn restored(mails: &[StoredMail]) -> Mails {
    let mut buf = vec![0xc1; 3]; // Not at offset 0, like a real snapshot.
    let mut entries = vec![];
    for (i, m) in mails.iter().enumerate() {
        let raw = encoded(m);
        entries.push((format!("m{i:03}"), (buf.len() as u32, raw.len() as u32)));
        buf.extend_from_slice(&raw);
    }
    Mails::restored(buf, entries)
}

/// The fast path takes every entry this build writes.
#[test]
fn walk_reads_what_this_build_writes() {
    for i in 0..7 {
        let mut m = sample(i);
        assert_eq!(walk::head(&encoded(&m)), Some(MailHead::of(&m)));
        m.spam_score = None;
        m.last_move = Some(Stamp {
            hlc: u64::MAX,
            replica: 3,
        });
        m.attachments[0].splice_at = None;
        m.date_ms = -5 - i64::from(i) * 1_000_000_000_000;
        m.folder = u32::MAX;
        m.flag_stamps.clear();
        m.subject = "x".repeat(70_000);
        assert_eq!(walk::head(&encoded(&m)), Some(MailHead::of(&m)));
    }
}

#[test]
fn heads_match_decoded_mails() {
    let mails: Vec<StoredMail> = (0..5).map(sample).collect();
    let r = restored(&mails);
    for ((_, head), m) in r.heads().zip(&mails) {
        assert_eq!(head.unwrap(), MailHead::of(m));
    }
    assert!(
        r.slots.values().all(|s| s.mail.get().is_none()),
        "heads decoded"
    );
    assert_eq!(r.get("m003"), Some(&mails[3]));
}

#[test]
fn restored_mails_encode_as_they_came_until_changed() {
    let mails: Vec<StoredMail> = (0..3).map(sample).collect();
    let fresh: Mails = mails
        .iter()
        .enumerate()
        .map(|(i, m)| (format!("m{i:03}"), m.clone()))
        .collect::<BTreeMap<_, _>>()
        .into();
    let mut r = restored(&mails);
    let bytes = rmp_serde::to_vec(&r).unwrap();
    assert_eq!(bytes, rmp_serde::to_vec(&fresh).unwrap());
    assert_eq!(r, fresh);
    // A read keeps the bytes; a change drops them and is encoded.
    let _ = r.get("m001");
    assert!(r.slots["m001"].raw.is_some());
    r.get_mut("m001").unwrap().flags = 0x7f;
    assert!(r.slots["m001"].raw.is_none());
    let mut changed = mails.clone();
    changed[1].flags = 0x7f;
    let expect: Mails = changed
        .into_iter()
        .enumerate()
        .map(|(i, m)| (format!("m{i:03}"), m))
        .collect::<BTreeMap<_, _>>()
        .into();
    assert_eq!(
        rmp_serde::to_vec(&r).unwrap(),
        rmp_serde::to_vec(&expect).unwrap()
    );
    assert_eq!(r.remove("m002"), Some(mails[2].clone()));
    assert_eq!(r.len(), 2);
}

/// xorshift64*, as elsewhere in the tests.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed >> 12;
    *seed ^= *seed << 25;
    *seed ^= *seed >> 27;
    seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// The view types must accept exactly what `StoredMail` accepts, with the
/// same index bytes: decoding a checked entry later must not fail. Random
/// corruptions of real entries probe the edges.
#[test]
fn views_accept_what_stored_mail_accepts() {
    let mut seed = 0x5eed_0005_u64;
    println!("seed {seed:#x}");
    let mut accepted = 0;
    for i in 0..4_000u32 {
        let mut raw = encoded(&sample(i % 7));
        let flips = 1 + next(&mut seed) % 3;
        for _ in 0..flips {
            let at = (next(&mut seed) % raw.len() as u64) as usize;
            raw[at] = next(&mut seed) as u8;
        }
        if next(&mut seed).is_multiple_of(8) {
            raw.truncate((next(&mut seed) % raw.len() as u64) as usize);
        }
        let real = rmp_serde::from_slice::<StoredMail>(&raw);
        let view = view_head(&raw);
        if let Some(fast) = walk::head(&raw) {
            let real = real
                .as_ref()
                .unwrap_or_else(|e| panic!("case {i}: walk took {e}"));
            assert_eq!(fast, MailHead::of(real), "case {i}");
        }
        match (real, view) {
            (Ok(m), Ok(head)) => {
                assert_eq!(head, MailHead::of(&m), "case {i}");
                accepted += 1;
            }
            (Err(_), Err(_)) => {}
            (real, view) => panic!("case {i}: real {real:?}, view {view:?}"),
        }
    }
    // Enough corruptions land in values for both sides to be exercised.
    assert!(accepted > 100, "{accepted}");
}

#[test]
fn raw_mails_refuse_ids_out_of_order() {
    // {"b": bin "x", "a": bin "y"} in that order (a BTreeMap would sort it).
    let unordered = [0x82, 0xa1, b'b', 0xc4, 1, b'x', 0xa1, b'a', 0xc4, 1, b'y'];
    assert!(rmp_serde::from_slice::<RawMails<'_>>(&unordered).is_err());
    let ordered = [0x82, 0xa1, b'a', 0xc4, 1, b'y', 0xa1, b'b', 0xc4, 1, b'x'];
    let ok = rmp_serde::from_slice::<RawMails<'_>>(&ordered).unwrap();
    assert_eq!(ok.0, [("a", &b"y"[..]), ("b", &b"x"[..])]);
}
