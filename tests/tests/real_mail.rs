//! Real mail end to end, with real processes: RFC 5322 messages go through
//! `dem send --raw` and come back from `dem read --raw` byte for byte, with
//! their large parts travelling as floating attachments and spliced back
//! (dispatch, two hosts, R = 2). The messages are `dem_message::corpus`'s:
//! every MIME shape, attachments from 0 bytes to 1 MiB, malformed ones,
//! and one with a 20 MB attachment. `dem send` composing and `dem read`
//! showing a message with a non-ASCII subject, and refusals of addresses
//! outside DEM, are checked too.
//!
//! A host refuses a message whose From is not the sender's address, so
//! each corpus message gets `From: alice@dem` in place of its own From
//! field (or in front, when it has none) before it is sent; the bytes sent
//! are the bytes compared.

use std::path::Path;

use anyhow::{Context as _, ensure};
use std::time::Duration;

use dem_tests::{
    Daemon, Result, User, admin_status, arg, free_udp_port, holders_in, register_user, seed,
    start_dispatch, start_host, temp_dir, wait_for,
};
use serde_json::Value;

/// Two copies of every mailbox and attachment, both written before an
/// answer.
const DISPATCH_FLAGS: [&str; 4] = ["--replicas", "2", "--write-quorum", "2"];

/// A dispatch unit, hosts and the users alice and bob.
struct Net {
    dispatch: Daemon,
    hosts: Vec<Daemon>,
    alice: User,
    bob: User,
}

impl Net {
    /// Dispatch on `ips[0]` with `flags`, a host on each other address.
    fn start(root: &Path, ips: &[&str], flags: &[&str]) -> Result<Self> {
        let dispatch = start_dispatch(ips[0], &root.join("dispatch"), flags)?;
        let mut hosts = Vec::new();
        for (i, ip) in ips[1..].iter().enumerate() {
            let listen = format!("{ip}:{}", free_udp_port(ip)?);
            let data = root.join(format!("host{i}"));
            hosts.push(start_host(&listen, &dispatch.addr, &data, &[])?);
        }
        let alice = register_user(root, "alice", &dispatch.addr)?;
        let bob = register_user(root, "bob", &dispatch.addr)?;
        Ok(Self {
            dispatch,
            hosts,
            alice,
            bob,
        })
    }

    /// Sends `raw` as alice with `dem send --raw` (to bob unless the
    /// message's own recipients are asked for) and reads it back as bob
    /// with `dem read --raw`; the mail id and the bytes read.
    fn round_trip(&self, dir: &Path, label: &str, raw: &[u8]) -> Result<(String, Vec<u8>)> {
        let file = dir.join(format!("{label}.eml"));
        std::fs::write(&file, raw)?;
        let out = self
            .alice
            .run(["send", "--raw", arg(&file), "--to", "bob"])
            .with_context(|| format!("sending {label}"))?;
        let id = out.trim().to_string();
        ensure!(id.len() == 32, "send printed {out:?}");
        let back = self
            .bob
            .run_bytes(["read", &id, "--raw"])
            .with_context(|| format!("reading {label} back"))?;
        Ok((id, back))
    }
}

/// `raw` with its first From field (continuation lines included) replaced
/// by `From: alice@dem`, or with that field in front if it has none.
fn from_alice(raw: &[u8]) -> Vec<u8> {
    let header_end = find(raw, b"\r\n\r\n")
        .or_else(|| find(raw, b"\n\n"))
        .unwrap_or(raw.len());
    let mut line_start = 0;
    while line_start < header_end {
        let line_end = find(&raw[line_start..], b"\n").map_or(raw.len(), |i| line_start + i + 1);
        if raw[line_start..].starts_with(b"From:") {
            let newline: &[u8] = if raw[..line_end].ends_with(b"\r\n") {
                b"\r\n"
            } else {
                b"\n"
            };
            // The field goes on over lines that begin with white space.
            let mut end = line_end;
            while end < header_end && matches!(raw.get(end), Some(b' ' | b'\t')) {
                end = find(&raw[end..], b"\n").map_or(raw.len(), |i| end + i + 1);
            }
            let mut out = raw[..line_start].to_vec();
            out.extend_from_slice(b"From: alice@dem");
            out.extend_from_slice(newline);
            out.extend_from_slice(&raw[end..]);
            return out;
        }
        line_start = line_end;
    }
    let mut out = b"From: alice@dem\r\n".to_vec();
    out.extend_from_slice(raw);
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn the_corpus_comes_back_byte_for_byte() -> Result<()> {
    let seed = seed();
    println!("corpus seed {seed} (replay with DEM_SEED={seed})");
    let tmp = temp_dir();
    let net = Net::start(
        tmp.path(),
        &["127.0.0.170", "127.0.0.171", "127.0.0.172"],
        &DISPATCH_FLAGS,
    )?;
    let corpus = dem_message::corpus::corpus(seed, false);
    ensure!(corpus.len() >= 10, "a corpus of {} messages", corpus.len());
    for (label, raw) in &corpus {
        let raw = from_alice(raw);
        let (id, back) = net
            .round_trip(tmp.path(), label, &raw)
            .with_context(|| format!("seed {seed}"))?;
        ensure!(
            back == raw,
            "{label} (seed {seed}, mail {id}) came back different: {} bytes sent, {} read",
            raw.len(),
            back.len()
        );
        println!("{label}: {} bytes back intact", raw.len());
    }

    // The attachments message has parts from 0 bytes to 1 MiB: the large
    // ones travelled as floating attachments, and the index counts them.
    let (_, raw) = corpus
        .iter()
        .find(|(l, _)| l.starts_with("attachments-"))
        .context("the corpus has its attachments message")?;
    let raw = from_alice(raw);
    let (id, _) = net.round_trip(tmp.path(), "attachments-again", &raw)?;
    let mail: Value = serde_json::from_str(&net.bob.run(["read", &id, "--json"])?)?;
    let parts = mail["parts"].as_array().context("parts")?;
    ensure!(!parts.is_empty(), "no part travelled apart: {mail}");
    ensure!(mail["size_bytes"] == raw.len() as u64, "{mail}");
    Ok(())
}

#[test]
fn a_20_mb_attachment_comes_back_byte_for_byte() -> Result<()> {
    let seed = seed();
    println!("corpus seed {seed} (replay with DEM_SEED={seed})");
    let tmp = temp_dir();
    let net = Net::start(
        tmp.path(),
        &["127.0.0.173", "127.0.0.174", "127.0.0.175"],
        &DISPATCH_FLAGS,
    )?;
    let (label, raw) = dem_message::corpus::corpus(seed, true)
        .pop()
        .context("the big corpus has its big message last")?;
    ensure!(raw.len() > 20_000_000, "{label} is {} bytes", raw.len());
    let raw = from_alice(&raw);
    let (id, back) = net.round_trip(tmp.path(), &label, &raw)?;
    ensure!(
        back == raw,
        "{label} (seed {seed}, mail {id}) came back different: {} bytes sent, {} read",
        raw.len(),
        back.len()
    );
    // The headers alone come without the 20 MB.
    let headers = net.bob.run(["read", &id, "--headers-only"])?;
    ensure!(headers.contains("Subject: Big"), "{headers}");
    Ok(())
}

#[test]
fn composed_mail_reads_as_text_and_foreign_addresses_are_refused() -> Result<()> {
    let tmp = temp_dir();
    let net = Net::start(
        tmp.path(),
        &["127.0.0.176", "127.0.0.177", "127.0.0.178"],
        &DISPATCH_FLAGS,
    )?;
    let (alice, bob) = (&net.alice, &net.bob);

    // Composed by `dem send`: a non-ASCII subject and body, an attachment
    // small enough to stay in the message and one large enough to float.
    let small = tmp.path().join("note.txt");
    std::fs::write(&small, "a small note\n")?;
    let big = tmp.path().join("data.bin");
    let content: Vec<u8> = (0..300_000u32).map(|i| (i ^ (i >> 3)) as u8).collect();
    std::fs::write(&big, &content)?;
    let subject = "Grüße aus Köln — ✓";
    let body = "Hallo Bob, schöne Grüße!";
    let out = alice.run([
        "send",
        "--to",
        "bob",
        "--subject",
        subject,
        "--body",
        body,
        "--attach",
        arg(&small),
        "--attach",
        arg(&big),
    ])?;
    let id = out.trim().to_string();
    ensure!(id.len() == 32, "send printed {out:?}");
    let shown = bob.run(["read", &id])?;
    for want in [
        "From: alice@dem".to_string(),
        "To: bob@dem".to_string(),
        format!("Subject: {subject}"),
        body.to_string(),
        "Attachment: note.txt (13 bytes, text/plain)".to_string(),
        format!(
            "Attachment: data.bin ({} bytes, application/octet-stream)",
            content.len()
        ),
    ] {
        ensure!(shown.contains(&want), "`dem read` lacks {want:?}:\n{shown}");
    }
    let mail: Value = serde_json::from_str(&bob.run(["read", &id, "--json"])?)?;
    ensure!(mail["subject"] == subject, "{mail}");
    ensure!(mail["body"] == body, "{mail}");
    ensure!(mail["from"] == "alice@dem", "{mail}");
    ensure!(
        mail["attachments"][1]["size"] == content.len() as u64,
        "{mail}"
    );
    ensure!(mail["attachments"][1]["id"].is_string(), "{mail}");
    ensure!(mail["attachments"][0]["id"].is_null(), "{mail}");

    // Saved attachments are the files sent; a range is of the exact bytes.
    let saved = tmp.path().join("saved");
    bob.run(["read", &id, "--save-attachments", arg(&saved)])?;
    ensure!(std::fs::read(saved.join("data.bin"))? == content);
    ensure!(std::fs::read(saved.join("note.txt"))? == b"a small note\n");
    let raw = bob.run_bytes(["read", &id, "--raw"])?;
    let range = bob.run_bytes(["read", &id, "--range", "10-100"])?;
    ensure!(
        range == raw[10..100],
        "the range differs from the raw bytes"
    );

    // A reply names what it replies to.
    let message_id = mail["message_id"].as_str().context("message_id")?;
    let reply = bob
        .run([
            "send",
            "--to",
            "alice",
            "--subject",
            "Re: Grüße",
            "--body",
            "Danke!",
            "--in-reply-to",
            message_id,
        ])?
        .trim()
        .to_string();
    let got: Value = serde_json::from_str(&alice.run(["read", &reply, "--json"])?)?;
    ensure!(got["in_reply_to"] == message_id, "{got}");

    // Bytes that are no message at all are delivered and read back raw.
    let mut junk = b"From: alice@dem\r\n".to_vec();
    junk.extend((0..5000u32).map(|i| (i * 31 % 251) as u8));
    let (_, back) = net.round_trip(tmp.path(), "junk", &junk)?;
    ensure!(back == junk, "the unparseable message came back different");

    // A file over the message limit is refused before it is read (a
    // sparse file: nothing is written).
    let huge = tmp.path().join("huge.bin");
    std::fs::File::create(&huge)?.set_len(65 << 20)?;
    let args = ["send", "--to", "bob", "--body", "x", "--attach", arg(&huge)];
    let err = alice.fail(args)?;
    ensure!(err.contains(&(64u64 << 20).to_string()), "{err}");
    let err = alice.fail(["send", "--raw", arg(&huge), "--to", "bob"])?;
    ensure!(err.contains(&(64u64 << 20).to_string()), "{err}");

    // `--raw` without `--to` goes to the DEM addresses in To and Cc, and
    // refuses addresses elsewhere, naming them.
    let to_bob = tmp.path().join("to-bob.eml");
    std::fs::write(
        &to_bob,
        "From: alice@dem\r\nTo: Bob <bob@dem>\r\nSubject: raw\r\n\r\nHi.\r\n",
    )?;
    let id = alice
        .run(["send", "--raw", arg(&to_bob)])?
        .trim()
        .to_string();
    ensure!(bob.run_bytes(["read", &id, "--raw"])? == std::fs::read(&to_bob)?);
    let foreign = tmp.path().join("foreign.eml");
    std::fs::write(
        &foreign,
        "From: alice@dem\r\nTo: bob@dem, eve@example.org\r\nSubject: x\r\n\r\nHi.\r\n",
    )?;
    let err = alice.fail(["send", "--raw", arg(&foreign)])?;
    ensure!(err.contains("eve@example.org"), "{err}");
    Ok(())
}

#[test]
fn a_moved_mailbox_gives_back_the_same_bytes() -> Result<()> {
    let seed = seed();
    println!("corpus seed {seed} (replay with DEM_SEED={seed})");
    let tmp = temp_dir();
    // One copy of each mailbox, so the move has somewhere to go.
    let flags = ["--replicas", "1", "--write-quorum", "1"];
    let net = Net::start(
        tmp.path(),
        &["127.0.0.179", "127.0.0.180", "127.0.0.181"],
        &flags,
    )?;
    let mut sent = Vec::new();
    for (label, raw) in dem_message::corpus::corpus(seed, false) {
        let raw = from_alice(&raw);
        let (id, back) = net.round_trip(tmp.path(), &label, &raw)?;
        ensure!(back == raw, "{label} (seed {seed}) came back different");
        sent.push((label, id, raw));
    }
    let source = holders_in(&admin_status(&net.bob)?, "bob")?;
    ensure!(source.len() == 1, "bob's mailbox on {source:?}");
    let target = net
        .hosts
        .iter()
        .find(|h| h.id != source[0])
        .context("a second host")?
        .id
        .clone();
    let out = net.bob.run(["admin", "move", "bob", "--to", &target])?;
    println!("{}", out.trim());
    let now = holders_in(&admin_status(&net.bob)?, "bob")?;
    ensure!(now == vec![target.clone()], "bob's mailbox on {now:?}");
    for (label, id, raw) in &sent {
        let back = net.bob.run_bytes(["read", id, "--raw"])?;
        ensure!(
            back == *raw,
            "{label} (seed {seed}, mail {id}) changed in the move"
        );
    }
    Ok(())
}

/// Flips the first byte of message `hash` in the store of the stopped host
/// whose data dir is `data`.
fn damage(data: &Path, hash: &[u8; 32]) -> Result<()> {
    let store = dem_store::MailboxStore::open(&data.join("store"), Default::default())?;
    ensure!(
        store.corrupt_message_for_tests(hash)?,
        "the host holds no message {}",
        blake3::Hash::from_bytes(*hash).to_hex()
    );
    store.shutdown();
    Ok(())
}

/// Whether the stopped host at `data` holds message `hash` intact.
fn intact(data: &Path, hash: &[u8; 32]) -> Result<bool> {
    let store = dem_store::MailboxStore::open(&data.join("store"), Default::default())?;
    let found = store.message(hash);
    store.shutdown();
    Ok(matches!(found, Ok(Some(bytes)) if blake3::hash(&bytes).as_bytes() == hash))
}

#[test]
fn a_damaged_copy_is_read_from_another_replica_and_repaired() -> Result<()> {
    let tmp = temp_dir();
    let ips = ["127.0.0.182", "127.0.0.183", "127.0.0.184"];
    let mut net = Net::start(tmp.path(), &ips, &DISPATCH_FLAGS)?;
    let raw = b"From: alice@dem\r\nTo: bob@dem\r\nSubject: keep me whole\r\n\r\nEvery byte.\r\n";
    let (id, back) = net.round_trip(tmp.path(), "whole", raw)?;
    ensure!(back == raw, "the message came back different");
    // The stored blob is the sealed mail; its hash is in the index.
    let detail: Value = serde_json::from_str(&net.bob.run(["read", &id, "--json"])?)?;
    let hash = blake3::Hash::from_hex(detail["stored"]["hash"].as_str().context("stored hash")?)?;
    let hash = *hash.as_bytes();
    // The holder a client reads first: flip a byte of its copy while it is
    // stopped, as a disk would.
    let holders = holders_in(&admin_status(&net.bob)?, "bob")?;
    ensure!(holders.len() == 2, "bob's mailbox on {holders:?}");
    let i = net
        .hosts
        .iter()
        .position(|h| h.id == holders[0])
        .context("the first holder")?;
    let listen = net.hosts[i].addr.clone();
    let data = tmp.path().join(format!("host{i}"));
    net.hosts[i].kill();
    damage(&data, &hash)?;
    // With info logs, where it says it repaired the message.
    net.hosts[i] = Daemon::start_env(
        [
            "host",
            "--listen",
            &listen,
            "--dispatch",
            &net.dispatch.addr,
            "--data",
            arg(&data),
        ],
        &[("RUST_LOG", "warn,dem_node=info")],
    )?;
    // The owner still reads the exact bytes: from the other replica.
    let back = net.bob.run_bytes(["read", &id, "--raw"])?;
    ensure!(back == raw, "the damaged copy was served");
    // The damaged host fetched the message from the other replica.
    let repaired = wait_for("the repair", Duration::from_secs(20), || {
        Ok(net.hosts[i]
            .stderr()
            .contains("repaired a message from another replica"))
    });
    if let Err(e) = repaired {
        println!("damaged host's log:\n{}", net.hosts[i].stderr());
        return Err(e);
    }
    net.hosts[i].kill();
    ensure!(intact(&data, &hash)?, "the copy was not repaired");
    // The mailbox keeps working on the repaired host.
    net.hosts[i] = start_host(&listen, &net.dispatch.addr, &data, &[])?;
    let back = net.bob.run_bytes(["read", &id, "--raw"])?;
    ensure!(back == raw, "read after the repair");
    Ok(())
}
