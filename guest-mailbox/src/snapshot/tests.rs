use super::*;
use crate::lww::LwwMap;
use crate::testutil::*;
use crate::wit::{Contact, MailFlags, MailboxError, PluginEntry, SenderList};

fn snap(mb: &mut Mailbox) -> Vec<u8> {
    let info = mb.snapshot_begin();
    assert_eq!(info.schema_version, SCHEMA_VERSION);
    let mut out = Vec::new();
    loop {
        let chunk = mb.snapshot_read(out.len() as u64, 1000);
        if chunk.is_empty() {
            break;
        }
        out.extend_from_slice(&chunk);
    }
    mb.snapshot_end();
    assert_eq!(out.len() as u64, info.size_bytes);
    out
}

fn restore(mb: &mut Mailbox, schema: u32, bytes: &[u8]) -> Result<()> {
    mb.restore_begin(schema, bytes.len() as u64)?;
    for chunk in bytes.chunks(777) {
        mb.restore_write(chunk)?;
    }
    mb.restore_finish()
}

/// A small mailbox touching every part of the state, built from fixed
/// contexts so it is the same on every run and every build.
fn golden() -> Mailbox {
    let mut mb = Mailbox::default();
    let mut m = mail("m1", 1_000);
    m.attachments = vec![attachment()];
    m.in_reply_to = Some("<m0@example.com>".into());
    let mut p = place("Lists/rust");
    p.flags = MailFlags::FLAGGED;
    p.keywords = vec!["$Label1".into()];
    p.spam_score = Some(1.5);
    mb.deliver(&ctx(1), m, p).unwrap();
    put(&mut mb, 2, "m2", 2_000, "INBOX");
    put(&mut mb, 3, "m3", 3_000, "INBOX");
    mb.set_flags(&ctx(4), "m2", &flags(MailFlags::SEEN, &["work"]), &none())
        .unwrap();
    mb.set_flags(
        &ctx(5),
        "m2",
        &none(),
        &flags(MailFlags::empty(), &["work"]),
    )
    .unwrap();
    mb.create_folder(&ctx(6), "Archive").unwrap();
    mb.move_mail(&ctx(7), "m2", "Archive").unwrap();
    mb.delete_mail(&ctx(8), "m3").unwrap();
    mb.rename_folder(&ctx(9), "Lists", "Groups").unwrap();
    mb.add_contact(
        &ctx(10),
        Contact {
            name: "Bob".into(),
            address: "Bob@Example.com".into(),
            note: "note".into(),
        },
    )
    .unwrap();
    mb.add_sender(&ctx(11), SenderList::Allow, "example.com")
        .unwrap();
    mb.add_sender(&ctx(12), SenderList::Block, "spam@bad.example")
        .unwrap();
    mb.set_preference(&ctx(13), "theme".into(), "dark".into())
        .unwrap();
    mb.install_plugin(
        &ctx(14),
        PluginEntry {
            name: "spam-score".into(),
            code_hash: "0f".repeat(32),
            config: "{\"threshold\":5}".into(),
            order: 10,
        },
    )
    .unwrap();
    mb
}

#[test]
fn snapshot_restore_snapshot_is_byte_identical() {
    let mut a = golden();
    let bytes = snap(&mut a);
    assert_eq!(&bytes[..6], MAGIC);
    assert_eq!(bytes[6..10], SCHEMA_VERSION.to_le_bytes());
    let mut b = Mailbox::default();
    restore(&mut b, SCHEMA_VERSION, &bytes).unwrap();
    assert_eq!(b.state, a.state);
    assert_eq!(snap(&mut b), bytes);
    // Indices were rebuilt: listing and counters work after restore.
    assert_eq!(b.list_folders(), a.list_folders());
    assert_eq!(
        ids(&b.list_folder("Groups/rust", 0, 10).unwrap().items),
        ["m1"]
    );
    assert_eq!(b.delete_history(0, 10), a.delete_history(0, 10));
    assert_eq!(b.stats(), a.stats());
}

#[test]
fn same_ops_same_bytes() {
    assert_eq!(snap(&mut golden()), snap(&mut golden()));
}

/// Reads a checked-in fixture, or writes it under `DEM_BLESS=1`.
fn fixture(name: &str, fresh: &[u8]) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    match std::fs::read(&path) {
        Ok(f) => f,
        Err(_) if std::env::var_os("DEM_BLESS").is_some() => {
            std::fs::write(&path, fresh).unwrap();
            fresh.to_vec()
        }
        Err(e) => panic!("{path}: {e}; run with DEM_BLESS=1 to create it"),
    }
}

/// `state` as a schema-2 snapshot of the same operations converts to: a
/// folder history that starts from the folders as they are, and each
/// mail placed where it is.
fn as_converted_v2(mut state: MailboxState) -> MailboxState {
    let names: std::collections::BTreeMap<u32, String> = state
        .folders
        .iter()
        .map(|(n, f)| (f.uid_validity, n.clone()))
        .collect();
    for m in state.mails.values_mut() {
        m.place = names[&m.folder].clone();
    }
    state.folder_log = crate::folder_log::FolderLog {
        base: state.folders.keys().cloned().collect(),
        ops: Default::default(),
        filed: Default::default(),
    };
    state
}

/// `state` as a schema-1 snapshot of the same operations converts to:
/// what schema 2 converts to, with no stamps on the keyed collections, no
/// tombstones in the collections and no replica on mail tombstones.
fn as_converted_v1(state: MailboxState) -> MailboxState {
    let mut state = as_converted_v2(state);
    fn restamp<V: Default + Clone>(m: &LwwMap<V>) -> LwwMap<V> {
        m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
    state.contacts = restamp(&state.contacts);
    state.allow = restamp(&state.allow);
    state.block = restamp(&state.block);
    state.preferences = restamp(&state.preferences);
    state.plugins = restamp(&state.plugins);
    for t in state.tombstones.values_mut() {
        t.replica = 0;
    }
    state
}

/// Schema-1 snapshots, written by earlier builds, keep restoring.
#[test]
fn golden_fixture_v1() {
    let fixture = fixture("state-v1.bin", &[]);
    assert_eq!(fixture[6..10], 1u32.to_le_bytes());
    let mut mb = Mailbox::default();
    restore(&mut mb, 1, &fixture).unwrap();
    assert_eq!(mb.state, as_converted_v1(golden().state));
    let g = golden();
    assert_eq!(mb.list_folders(), g.list_folders());
    assert_eq!(mb.list_contacts(), g.list_contacts());
    assert_eq!(mb.list_plugins(), g.list_plugins());
    assert_eq!(mb.delete_history(0, 10), g.delete_history(0, 10));
    // Once restored it is written as the current schema.
    assert_eq!(snap(&mut mb)[6..10], SCHEMA_VERSION.to_le_bytes());
}

/// Schema-2 snapshots, written by earlier builds, keep restoring.
#[test]
fn golden_fixture_v2() {
    let fixture = fixture("state-v2.bin", &[]);
    assert_eq!(fixture[6..10], 2u32.to_le_bytes());
    let mut mb = Mailbox::default();
    restore(&mut mb, 2, &fixture).unwrap();
    assert_eq!(mb.state, as_converted_v2(golden().state));
    let g = golden();
    assert_eq!(mb.list_folders(), g.list_folders());
    assert_eq!(mb.state_digest(), g.state_digest());
}

#[test]
fn golden_fixture_v3() {
    let bytes = snap(&mut golden());
    let fixture = fixture("state-v3.bin", &bytes);
    let mut mb = Mailbox::default();
    restore(&mut mb, 3, &fixture).unwrap();
    assert_eq!(mb.state, golden().state);
    // While this build writes schema 3, it must write it unchanged. A
    // change to the state's shape needs schema 4 and a new fixture, never
    // an edit of this one.
    if SCHEMA_VERSION == 3 {
        assert!(
            bytes == fixture,
            "schema 3 encoding changed; bump SCHEMA_VERSION instead"
        );
    }
}

#[test]
fn snapshot_reads_are_chunked_and_capped() {
    let mut mb = Mailbox::default();
    assert!(mb.snapshot_read(0, 100).is_empty(), "nothing held");
    for i in 0..5 {
        let mut m = mail(&format!("big{i}"), i);
        m.body = "x".repeat(1 << 20);
        mb.deliver(&ctx(1), m, place("INBOX")).unwrap();
    }
    let info = mb.snapshot_begin();
    assert!(info.size_bytes > u64::from(SNAPSHOT_CHUNK_BYTES_MAX));
    let first = mb.snapshot_read(0, u32::MAX);
    assert_eq!(first.len(), SNAPSHOT_CHUNK_BYTES_MAX as usize);
    let rest = mb.snapshot_read(first.len() as u64, u32::MAX);
    assert_eq!((first.len() + rest.len()) as u64, info.size_bytes);
    assert!(mb.snapshot_read(info.size_bytes, 10).is_empty());
    assert!(mb.snapshot_read(u64::MAX, u32::MAX).is_empty());
    assert_eq!(mb.snapshot_read(3, 4), first[3..7]);
    // The held bytes do not change with later mutations.
    mb.delete_mail(&ctx(2), "big0").unwrap();
    assert_eq!(mb.snapshot_read(0, 64), first[..64]);
    mb.snapshot_end();
    assert!(mb.snapshot_read(0, 64).is_empty());
}

fn assert_refused(mb: &mut Mailbox, schema: u32, bytes: &[u8]) -> MailboxError {
    let before = snap(mb);
    let e = restore(mb, schema, bytes).unwrap_err();
    assert_eq!(snap(mb), before, "state changed after a failed restore");
    assert!(mb.restore.is_none() || mb.restore_finish().is_err());
    e
}

#[test]
fn restore_refuses_newer_schema_and_bad_sizes() {
    let mut mb = golden();
    match mb.restore_begin(7, 100).unwrap_err() {
        MailboxError::Snapshot(m) => assert_eq!(
            m,
            "snapshot schema 7 is newer than this mailbox build (schema 3)"
        ),
        e => panic!("{e:?}"),
    }
    assert!(matches!(
        mb.restore_begin(0, 100),
        Err(MailboxError::Snapshot(_))
    ));
    assert!(matches!(
        mb.restore_begin(1, RESTORE_BYTES_MAX + 1),
        Err(MailboxError::TooLarge(_))
    ));
    assert!(matches!(
        mb.restore_begin(1, 3),
        Err(MailboxError::Snapshot(_))
    ));
    assert!(matches!(
        mb.restore_write(b"x"),
        Err(MailboxError::Snapshot(_))
    ));
    assert!(matches!(
        mb.restore_finish(),
        Err(MailboxError::Snapshot(_))
    ));
}

#[test]
fn failed_restores_leave_state_intact() {
    let mut mb = golden();
    let good = snap(&mut golden());

    // More bytes than declared.
    mb.restore_begin(SCHEMA_VERSION, 10).unwrap();
    assert!(matches!(
        mb.restore_write(&good[..11]),
        Err(MailboxError::Snapshot(_))
    ));
    assert!(matches!(
        mb.restore_finish(),
        Err(MailboxError::Snapshot(_))
    ));
    // Fewer bytes than declared.
    mb.restore_begin(SCHEMA_VERSION, good.len() as u64).unwrap();
    mb.restore_write(&good[..good.len() - 1]).unwrap();
    assert!(matches!(
        mb.restore_finish(),
        Err(MailboxError::Snapshot(_))
    ));

    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    assert_refused(&mut mb, SCHEMA_VERSION, &bad_magic);
    let mut wrong_version = good.clone();
    wrong_version[6] = 1;
    assert_refused(&mut mb, SCHEMA_VERSION, &wrong_version);
    assert_refused(&mut mb, SCHEMA_VERSION, &good[..good.len() - 5]);
    let mut garbage = good[..10].to_vec();
    garbage.extend_from_slice(&[0xc1; 64]);
    assert_refused(&mut mb, SCHEMA_VERSION, &garbage);

    // Decodes, but breaks an invariant (mail in a missing folder).
    let mut broken = golden().state;
    broken.mails.get_mut("m1").unwrap().folder = 999;
    let bytes = encode(&broken, 0);
    match assert_refused(&mut mb, SCHEMA_VERSION, &bytes) {
        MailboxError::Snapshot(m) => assert!(m.contains("inconsistent"), "{m}"),
        e => panic!("{e:?}"),
    }
    // And a good restore still works afterwards.
    restore(&mut mb, SCHEMA_VERSION, &good).unwrap();
}

#[test]
fn stats_counts_and_state_bytes() {
    let mut mb = golden();
    let s = mb.stats();
    assert_eq!(
        (s.mails, s.folders, s.contacts, s.tombstones, s.plugins),
        (2, 4, 1, 1, 1)
    );
    let bytes: u64 = mb.state.mails.values().map(|m| m.size_bytes()).sum();
    assert_eq!(s.mail_bytes, bytes);
    assert_eq!(s.state_bytes, snap(&mut mb).len() as u64);
}

/// xorshift64*: a fixed-seed shuffle without a rand dependency.
fn shuffle<T>(v: &mut [T], mut seed: u64) {
    for i in (1..v.len()).rev() {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        let r = seed.wrapping_mul(0x2545_f491_4f6c_dd1d);
        v.swap(i, (r % (i as u64 + 1)) as usize);
    }
}

#[derive(Clone, Debug)]
enum Op {
    Flags(
        u64,
        usize,
        MailFlags,
        Vec<&'static str>,
        MailFlags,
        Vec<&'static str>,
    ),
    Move(u64, usize, &'static str),
}

fn ops(with_moves: bool) -> Vec<Op> {
    let fl = [
        MailFlags::SEEN,
        MailFlags::FLAGGED,
        MailFlags::ANSWERED,
        MailFlags::SEEN | MailFlags::DRAFT,
    ];
    let kw = ["a", "b", "c"];
    let folders = ["INBOX", "A", "B"];
    let mut out = Vec::new();
    for n in 0..120u64 {
        let mail = (n as usize * 7) % 4;
        let i = (n as usize * 5) % 4;
        let k = (n as usize * 3) % 3;
        if with_moves && n % 3 == 0 {
            out.push(Op::Move(100 + n, mail, folders[(n as usize / 3) % 3]));
        } else if n % 2 == 0 {
            out.push(Op::Flags(
                100 + n,
                mail,
                fl[i],
                vec![kw[k]],
                MailFlags::empty(),
                vec![],
            ));
        } else {
            out.push(Op::Flags(
                100 + n,
                mail,
                MailFlags::empty(),
                vec![],
                fl[i],
                vec![kw[k]],
            ));
        }
    }
    out
}

fn apply(ops: &[Op]) -> Mailbox {
    let mut mb = Mailbox::default();
    mb.create_folder(&ctx(1), "A").unwrap();
    mb.create_folder(&ctx(2), "B").unwrap();
    for i in 0..4 {
        put(&mut mb, 3 + i as u64, &format!("m{i}"), i, "INBOX");
    }
    for op in ops {
        match op {
            Op::Flags(n, m, af, ak, rf, rk) => {
                let mut c = ctx(*n);
                c.replica = n % 3;
                mb.set_flags(&c, &format!("m{m}"), &flags(*af, ak), &flags(*rf, rk))
                    .unwrap();
            }
            Op::Move(n, m, f) => {
                let mut c = ctx(*n);
                c.replica = n % 3;
                mb.move_mail(&c, &format!("m{m}"), f).unwrap();
            }
        }
    }
    mb
}

#[test]
fn flag_ops_in_any_order_give_identical_snapshots() {
    let base = ops(false);
    let want = snap(&mut apply(&base));
    for seed in [0x5eed_0001_u64, 0xdead_beef, 42] {
        println!("shuffle seed {seed:#x}");
        let mut shuffled = base.clone();
        shuffle(&mut shuffled, seed);
        assert_eq!(snap(&mut apply(&shuffled)), want, "seed {seed:#x}");
    }
}

/// With moves, each replica hands out UIDs in the order moves reach it
/// (as IMAP requires UIDs to grow), so UIDs and uid-next may differ; what
/// must converge is where each mail is and its flags and keywords.
#[test]
fn flag_and_move_ops_in_any_order_converge() {
    let logical = |mb: &Mailbox| -> Vec<(String, String, u8, Vec<String>)> {
        mb.state
            .mails
            .iter()
            .map(|(id, m)| {
                let folder = mb.folder_name_of(m.folder).to_string();
                (
                    id.clone(),
                    folder,
                    m.flags,
                    m.keywords.iter().cloned().collect(),
                )
            })
            .collect()
    };
    let base = ops(true);
    let want = logical(&apply(&base));
    for seed in [0x5eed_0002_u64, 7, 1234567] {
        println!("shuffle seed {seed:#x}");
        let mut shuffled = base.clone();
        shuffle(&mut shuffled, seed);
        assert_eq!(logical(&apply(&shuffled)), want, "seed {seed:#x}");
    }
}

#[test]
fn restore_of_ten_thousand_mails_is_fast() {
    let mut mb = Mailbox::default();
    let body = "Lorem ipsum dolor sit amet. ".repeat(30);
    for i in 0..10_000u64 {
        let mut m = mail(&format!("{i:064x}"), i as i64);
        m.body = body.clone();
        mb.deliver(
            &ctx(i),
            m,
            place(if i % 10 == 0 { "Lists" } else { "INBOX" }),
        )
        .unwrap();
    }
    let t = std::time::Instant::now();
    let bytes = snap(&mut mb);
    let encode_time = t.elapsed();
    let mut fresh = Mailbox::default();
    let t = std::time::Instant::now();
    fresh
        .restore_begin(SCHEMA_VERSION, bytes.len() as u64)
        .unwrap();
    for chunk in bytes.chunks(SNAPSHOT_CHUNK_BYTES_MAX as usize) {
        fresh.restore_write(chunk).unwrap();
    }
    let write_time = t.elapsed();
    fresh.restore_finish().unwrap();
    let restore_time = t.elapsed();
    println!("restore writes {write_time:?}");
    println!(
        "10k mails: {} bytes, snapshot {encode_time:?}, restore {restore_time:?}",
        bytes.len()
    );
    assert_eq!(fresh.stats().mails, 10_000);
    // Generous bound: unoptimised test builds are several times slower
    // than the release component.
    assert!(restore_time.as_secs() < 5);
}
