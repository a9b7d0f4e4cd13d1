//! The export format's round trips, checksums, frame orders and refusals.

use super::*;
use crate::export::{MailboxMeta, SnapshotRecord};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A host holding no message blobs.
const NO_MESSAGES: MessageSource<'static> = &|_| Ok(None);

fn state(snapshot: &[u8], ops: u64) -> ExportedState {
    ExportedState {
        meta: MailboxMeta {
            code_hash: [7; 32],
            created_ms: 5,
        },
        snapshot: Some(SnapshotRecord {
            seq: 10,
            schema_version: 1,
            bytes: snapshot.to_vec().into(),
            vv: [(3, 10)].into_iter().collect(),
        }),
        tail: (11..11 + ops).map(|s| (s, vec![s as u8; 3])).collect(),
        plugins: vec![],
        snapshot_checksum: None,
        messages: vec![],
    }
}

#[test]
fn a_stream_digest_does_not_depend_on_how_it_was_fed() {
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let whole = CodeHash(*blake3::hash(&bytes).as_bytes());
    for piece in [1, 1000, 65_535, 65_536, 70_000, 300_000] {
        let mut d = StreamDigest::default();
        for p in bytes.chunks(piece) {
            d.update(p);
        }
        assert_eq!(d.digest(), whole, "pieces of {piece}");
    }
    let mut d = StreamDigest::default();
    d.update(&bytes[..10]);
    let _ = d.digest();
    d.update(&bytes[10..]);
    assert_eq!(d.digest(), whole, "a digest midway changes nothing");
}

/// Length-prefixes encoded frames into one stream.
fn encode(
    frames: impl IntoIterator<Item = Result<EncodedFrame, ImportError>>,
) -> Result<Vec<u8>, ImportError> {
    let mut out = Vec::new();
    for f in frames {
        write_frame(&mut out, &f?)?;
    }
    Ok(out)
}

/// Re-encodes decoded frames with a correct stream digest, so a test
/// can check the structural checks behind the checksum.
fn reseal(frames: Vec<Frame>) -> Result<Vec<u8>, ImportError> {
    let mut hasher = blake3::Hasher::new();
    let format = match frames.first() {
        Some(Frame::Header(h)) => h.format_version,
        _ => EXPORT_FORMAT_VERSION,
    };
    let mut encoded = Vec::new();
    for f in frames {
        let f = match f {
            Frame::End { .. } => Frame::End {
                digest: CodeHash(*hasher.finalize().as_bytes()),
            },
            f => f,
        };
        let b = encode_frame(&f)?;
        if format < 2 || !matches!(f, Frame::Snapshot(_)) {
            hasher.update(&b);
        }
        encoded.push(Ok(EncodedFrame::from(b)));
    }
    encode(encoded)
}

fn decoded(id: &MailboxId, s: &ExportedState) -> Result<Vec<Frame>, ImportError> {
    encode_export(id, s, &[], NO_MESSAGES)
        .map(|b| rmp_serde::from_slice(&b?.to_vec()).map_err(ImportError::Decode))
        .collect()
}

/// `frames` in the order of formats 1 and 2: the ops after the snapshot.
fn ops_after_snapshot(frames: Vec<Frame>) -> Vec<Frame> {
    let (ops, rest): (Vec<Frame>, Vec<Frame>) = frames
        .into_iter()
        .partition(|f| matches!(f, Frame::Op { .. }));
    let end = rest.len().saturating_sub(1);
    let mut out: Vec<Frame> = rest.iter().take(end).cloned().collect();
    out.extend(ops);
    out.extend(rest.into_iter().skip(end));
    out
}

/// One letter per frame: Header, Code, Message, Op, Snapshot, End.
fn kinds(frames: &[Frame]) -> String {
    frames
        .iter()
        .map(|f| match f {
            Frame::Header(_) => 'H',
            Frame::Code { .. } => 'C',
            Frame::Op { .. } => 'O',
            Frame::Snapshot(_) => 'S',
            Frame::End { .. } => 'E',
            Frame::Message(_) => 'M',
        })
        .collect()
}

fn alice() -> Result<MailboxId, Box<dyn std::error::Error>> {
    Ok(MailboxId::new("alice")?)
}

#[test]
fn round_trips_with_chunks_code_and_ops() -> TestResult {
    let id = alice()?;
    let big = vec![42u8; EXPORT_CHUNK_BYTES * 2 + 17];
    let code = vec![(CodeHash::of(b"code"), b"code".to_vec())];
    let bytes = encode(encode_export(&id, &state(&big, 3), &code, NO_MESSAGES))?;
    let imported = read_export(&mut &bytes[..])?;
    assert_eq!(imported.mailbox, id);
    assert_eq!(imported.state.snapshot.map(|s| s.bytes), Some(big.into()));
    assert_eq!(imported.state.tail.len(), 3);
    assert_eq!(imported.code, code);
    Ok(())
}

#[test]
fn borrowed_frames_encode_like_owned_ones() -> TestResult {
    let id = alice()?;
    let code = vec![(CodeHash::of(b"code"), b"code".to_vec())];
    let s = state(b"snapshot", 2);
    let sent = encode_export(&id, &s, &code, NO_MESSAGES)
        .map(|f| f.map(|f| f.to_vec()))
        .collect::<Result<Vec<_>, _>>()?;
    let owned = sent
        .iter()
        .map(|b| rmp_serde::from_slice::<Frame>(b))
        .collect::<Result<Vec<_>, _>>()?;
    let reencoded = owned
        .iter()
        .map(encode_frame)
        .collect::<Result<Vec<_>, _>>()?;
    assert_eq!(sent, reencoded);
    assert_eq!(owned.len(), 1 + 1 + 1 + 2 + 1);
    Ok(())
}

#[test]
fn snapshot_chunks_go_out_as_head_and_shared_body() -> TestResult {
    let id = alice()?;
    // Every bin length encoding (8, 16 and 32 bits) and a partial last chunk.
    for size in [1, 255, 256, 65_535, 65_536, EXPORT_CHUNK_BYTES * 2 + 17] {
        let big: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let s = state(&big, 1);
        let mut chunks = Vec::new();
        for frame in encode_export(&id, &s, &[], NO_MESSAGES) {
            let frame = frame?;
            if frame.body.is_empty() {
                continue;
            }
            let reencoded = encode_frame(&Frame::Snapshot(frame.body.to_vec()))?;
            assert_eq!(frame.to_vec(), reencoded, "size {size}");
            chunks.extend_from_slice(&frame.body);
        }
        assert_eq!(chunks, big, "size {size}");
    }
    Ok(())
}

#[test]
fn reads_format_1_and_checks_the_keyed_checksum_of_format_2() -> TestResult {
    let id = alice()?;
    let s = state(b"snapshot", 1);
    // Format 1: the plain BLAKE3 of the snapshot.
    let mut v1 = ops_after_snapshot(decoded(&id, &s)?);
    if let Frame::Header(h) = &mut v1[0] {
        h.format_version = 1;
        if let Some(snap) = &mut h.snapshot {
            snap.blake3 = CodeHash::of(b"snapshot");
        }
    }
    let imported = read_export(&mut &reseal(v1.clone())?[..])?;
    assert_eq!(
        imported.state.snapshot.map(|s| s.bytes),
        Some(b"snapshot".to_vec().into())
    );
    // Format 2 with a plain BLAKE3, or one keyed by another mailbox.
    if let Frame::Header(h) = &mut v1[0] {
        h.format_version = 2;
    }
    assert!(matches!(
        read_export(&mut &reseal(v1.clone())?[..]),
        Err(ImportError::Checksum)
    ));
    let bob = MailboxId::new("bob")?;
    if let Frame::Header(h) = &mut v1[0]
        && let Some(snap) = &mut h.snapshot
    {
        snap.blake3 = snapshot_checksum(&bob, b"snapshot");
    }
    assert!(matches!(
        read_export(&mut &reseal(v1)?[..]),
        Err(ImportError::Checksum)
    ));
    // A known checksum is sent as is: the receiver checks the bytes.
    let mut known = state(b"snapshot", 0);
    known.snapshot_checksum = Some([9; 32]);
    assert!(matches!(
        read_export(&mut &encode(encode_export(&id, &known, &[], NO_MESSAGES))?[..]),
        Err(ImportError::Checksum)
    ));
    Ok(())
}

#[test]
fn a_streaming_importer_hands_the_snapshot_back_in_chunks() -> TestResult {
    let id = alice()?;
    let big = vec![7u8; EXPORT_CHUNK_BYTES + 5];
    let mut importer = Importer::streaming();
    let mut chunks = Vec::new();
    for frame in encode_export(&id, &state(&big, 2), &[], NO_MESSAGES) {
        let frame = frame?.to_vec();
        if let Some(range) = importer.handle_encoded(&frame)? {
            assert_eq!(range.end, frame.len(), "the chunk ends its frame");
            chunks.push(
                frame
                    .get(range)
                    .ok_or("a range outside the frame")?
                    .to_vec(),
            );
        }
    }
    assert_eq!(chunks.len(), 2);
    assert_eq!(chunks.concat(), big);
    let imported = importer.finish()?;
    assert!(imported.state.snapshot.is_none());
    assert_eq!(imported.state.tail.len(), 2);
    let streamed = imported.streamed.ok_or("no streamed snapshot")?.header;
    assert_eq!(streamed.size_bytes, big.len() as u64);
    assert_eq!(streamed.blake3, snapshot_checksum(&id, &big));
    Ok(())
}

#[test]
fn refuses_damaged_or_malformed_streams() -> TestResult {
    let id = alice()?;
    let mut all = decoded(&id, &state(b"snapshot", 2))?;
    // A flipped snapshot byte.
    let mut damaged = all.clone();
    damaged[3] = Frame::Snapshot(b"snapshoT".to_vec());
    assert!(matches!(
        read_export(&mut &reseal(damaged)?[..]),
        Err(ImportError::Checksum)
    ));
    // A changed header, even one that still decodes, breaks the stream digest.
    let mut renamed = all.clone();
    if let Frame::Header(h) = &mut renamed[0] {
        h.mailbox = MailboxId::new("alicd")?;
    }
    let with_old_end = renamed
        .iter()
        .map(|f| encode_frame(f).map(EncodedFrame::from));
    assert!(matches!(
        read_export(&mut &encode(with_old_end)?[..]),
        Err(ImportError::StreamChecksum)
    ));
    // Ops out of order.
    all.swap(2, 3);
    assert!(matches!(
        read_export(&mut &reseal(all)?[..]),
        Err(ImportError::Malformed(_))
    ));
    // Truncated: no End.
    let small = state(b"s", 0);
    let cut = encode_export(&id, &small, &[], NO_MESSAGES).take(2);
    assert!(matches!(
        read_export(&mut &encode(cut)?[..]),
        Err(ImportError::Malformed(_))
    ));
    // An oversized frame length.
    let huge = ((FRAME_BYTES_MAX + 1) as u32).to_be_bytes();
    assert!(matches!(
        read_frame(&mut &huge[..]),
        Err(ImportError::TooLarge { .. })
    ));
    // Garbage.
    let garbage = [0, 0, 0, 3, 0xc1, 0xc1, 0xc1];
    assert!(matches!(
        read_export(&mut &garbage[..]),
        Err(ImportError::Decode(_))
    ));
    // A frame cut short.
    let short = [0, 0, 0, 9, 1, 2];
    assert!(matches!(
        read_export(&mut &short[..]),
        Err(ImportError::Malformed(_))
    ));
    Ok(())
}

#[test]
fn format_3_sends_the_ops_first_for_a_receiver_to_take_early() -> TestResult {
    let id = alice()?;
    let big = vec![7u8; EXPORT_CHUNK_BYTES + 5];
    let s = state(&big, 3);
    assert_eq!(kinds(&decoded(&id, &s)?), "HOOOSSE");
    let mut importer = Importer::streaming();
    let (mut taken, mut chunks_before) = (None, 0);
    for frame in encode_export(&id, &s, &[], NO_MESSAGES) {
        if importer.handle_encoded(&frame?.to_vec())?.is_some() && taken.is_none() {
            chunks_before += 1;
        }
        if taken.is_none() {
            taken = importer.take_tail();
        }
    }
    let taken = taken.ok_or("the tail was never handed out")?;
    assert_eq!(chunks_before, 0, "the tail is whole before the snapshot");
    assert_eq!(
        taken.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        vec![11, 12, 13]
    );
    assert!(importer.take_tail().is_none(), "it is handed out once");
    let imported = importer.finish()?;
    assert!(imported.state.tail.is_empty());
    assert!(imported.streamed.is_some());

    // Formats 1 and 2 keep theirs: it comes last.
    let mut v2 = ops_after_snapshot(decoded(&id, &s)?);
    if let Some(Frame::Header(h)) = v2.first_mut() {
        h.format_version = 2;
    }
    let mut importer = Importer::new();
    let bytes = reseal(v2)?;
    let mut r = &bytes[..];
    while let Some(frame) = read_frame(&mut r)? {
        importer.handle_encoded(&frame)?;
        assert!(importer.take_tail().is_none());
    }
    assert_eq!(importer.finish()?.state.tail.len(), 3);
    Ok(())
}

#[test]
fn format_3_refuses_ops_and_snapshot_chunks_out_of_their_order() -> TestResult {
    let id = alice()?;
    let frames = decoded(&id, &state(b"snapshot", 2))?;
    assert_eq!(kinds(&frames), "HOOSE");
    // Format 2's order under a format 3 header: the snapshot comes first.
    let late = ops_after_snapshot(frames.clone());
    assert!(matches!(
        read_export(&mut &reseal(late)?[..]),
        Err(ImportError::Malformed(m)) if m.contains("Snapshot before the last Op")
    ));
    // The snapshot between two ops.
    let mut between = frames.clone();
    between.swap(2, 3);
    assert_eq!(kinds(&between), "HOSOE");
    assert!(matches!(
        read_export(&mut &reseal(between)?[..]),
        Err(ImportError::Malformed(m)) if m.contains("Snapshot before the last Op")
    ));
    // An op after the whole snapshot (one too many, but refused first for its place).
    let mut extra = frames;
    extra.insert(
        4,
        Frame::Op {
            seq: 13,
            bytes: vec![1],
        },
    );
    assert_eq!(kinds(&extra), "HOOSOE");
    assert!(matches!(
        read_export(&mut &reseal(extra)?[..]),
        Err(ImportError::Malformed(m)) if m.contains("Op after Snapshot")
    ));
    Ok(())
}

#[test]
fn message_blobs_travel_before_the_ops_and_are_handed_over() -> TestResult {
    let id = MailboxId::new("m1")?;
    let blobs: Vec<Vec<u8>> = vec![b"first message".to_vec(), vec![7; 300_000]];
    let mut s = state(b"snap", 2);
    s.messages = blobs.iter().map(|b| *blake3::hash(b).as_bytes()).collect();
    // A blob the host lost since the list was taken is left out.
    s.messages.push([9; 32]);
    let source = |h: &[u8; 32]| -> Result<Option<Vec<u8>>, String> {
        Ok(blobs
            .iter()
            .find(|b| blake3::hash(b).as_bytes() == h)
            .cloned())
    };
    let bytes = encode(encode_export(&id, &s, &[], &source))?;
    let imported = read_export(&mut &bytes[..])?;
    assert_eq!(imported.messages, blobs);
    // Streaming: taken as they come, none left at the end.
    let mut importer = Importer::streaming();
    let mut taken = Vec::new();
    let mut r = &bytes[..];
    while let Some(frame) = read_frame(&mut r)? {
        importer.handle_encoded(&frame)?;
        taken.extend(importer.take_messages());
    }
    assert!(importer.finish()?.messages.is_empty());
    assert_eq!(taken, blobs);
    // A failing source stops the export with its error.
    let failing = |_: &[u8; 32]| -> Result<Option<Vec<u8>>, String> { Err("disk gone".into()) };
    let out: Result<Vec<_>, _> = encode_export(&id, &s, &[], &failing).collect();
    assert!(matches!(out, Err(ImportError::MessageSource(_))));
    Ok(())
}
