//! The network end to end, as real processes: one dispatch unit and two
//! hosts on their own loopback addresses, users alice, bob and carol with
//! homes of their own and no host of their own (their mailboxes live on
//! the hosts, so they are "offline users"). Alice mails bob and carol a
//! file; bob reads the mail and fetches the attachment back (hash
//! compared); the same file sent again and to several recipients is stored
//! once. Refusals: another user's mailbox via `--mailbox`, a forged sender,
//! an unknown recipient. A dispatch list whose first unit is down still
//! works because clients fall back.

use anyhow::{Context as _, ensure};
use dem_tests::{
    Result, User, arg, count_files, decode_base64, free_udp_port, start_dispatch, start_host,
    temp_dir,
};
use serde_json::Value;

const DISPATCH_IP: &str = "127.0.0.41";
const HOST_IPS: [&str; 2] = ["127.0.0.42", "127.0.0.43"];
/// Nothing listens here: the first unit of the users' dispatch lists.
const DEAD_UNIT: &str = "127.0.0.49:9";

fn ensure_mentions(err: &str, words: &[&str]) -> Result<()> {
    println!("refused: {}", err.trim());
    for w in words {
        ensure!(err.contains(w), "the error does not mention {w:?}: {err}");
    }
    Ok(())
}

#[test]
fn mail_with_attachment_reaches_an_offline_user_and_refusals_hold() -> Result<()> {
    let tmp = temp_dir();
    // One copy per mailbox: these tests are about where *the* mailbox is;
    // replicas have their own tests (replication.rs).
    let one_copy = ["--replicas", "1", "--write-quorum", "1"];
    let dispatch = start_dispatch(DISPATCH_IP, &tmp.path().join("dispatch"), &one_copy)?;
    let mut hosts = Vec::new();
    for (i, ip) in HOST_IPS.iter().enumerate() {
        let listen = format!("{ip}:{}", free_udp_port(ip)?);
        let data = tmp.path().join(format!("host{i}"));
        let flags = ["--heartbeat-ms", "500"];
        hosts.push(start_host(&listen, &dispatch.addr, &data, &flags)?);
    }
    let list = format!("{DEAD_UNIT},{}", dispatch.addr);

    let users: Vec<User> = ["alice", "bob", "carol"]
        .iter()
        .map(|n| User::new(tmp.path().join(n)))
        .collect();
    let [alice, bob, carol] = &users[..] else {
        unreachable!()
    };
    for (user, name) in users.iter().zip(["alice", "bob", "carol"]) {
        user.run(["id", "new", name])?;
        // Alice's first unit is down: her commands fall back to the live
        // one (each fallback waits out a connect timeout, so only hers).
        let units = if name == "alice" {
            &list
        } else {
            &dispatch.addr
        };
        let out = user.run(["register", "--dispatch", units])?;
        ensure!(out.contains(&format!("registered {name}")), "{out}");
    }

    // Alice sends bob and carol a file: stored once, referenced twice.
    let file = tmp.path().join("report.bin");
    let content: Vec<u8> = (0..2_500_000u32)
        .map(|i| (i * 7 + i / 1000) as u8)
        .collect();
    std::fs::write(&file, &content)?;
    let out = alice.run([
        "send",
        "--to",
        "bob,carol",
        "--subject",
        "Quarterly",
        "--body",
        "See attached.",
        "--attach",
        arg(&file),
    ])?;
    let mail_id = out.trim().to_string();
    ensure!(mail_id.len() == 32, "send printed {out:?}");
    alice.run([
        "send",
        "--to",
        "bob",
        "--subject",
        "Again",
        "--body",
        "Same file.",
        "--attach",
        arg(&file),
    ])?;

    // Bob reads his inbox, the mail, and the attachment.
    let inbox: Value = serde_json::from_str(&bob.run(["inbox", "--json"])?)?;
    let items = inbox.as_array().context("inbox is an array")?;
    ensure!(items.len() == 2, "bob's inbox: {inbox}");
    let first = items
        .iter()
        .find(|m| m["id"] == mail_id.as_str())
        .context("the first mail is in bob's inbox")?;
    for key in [
        "id",
        "from",
        "subject",
        "date",
        "folder",
        "flags",
        "attachments",
    ] {
        ensure!(!first[key].is_null(), "inbox item lacks {key}: {first}");
    }
    ensure!(first["from"] == "alice@dem" && first["subject"] == "Quarterly");
    let mail: Value = serde_json::from_str(&bob.run(["read", &mail_id, "--json"])?)?;
    ensure!(mail["body"] == "See attached.", "{mail}");
    let att = &mail["attachments"][0];
    ensure!(att["size"] == content.len() as u64, "{att}");
    let att_id = att["id"].as_str().context("attachment id")?;
    let got = tmp.path().join("got.bin");
    bob.run([
        "attachment",
        "get",
        att_id,
        "-o",
        arg(&got),
        "--mail",
        &mail_id,
    ])?;
    // The floating part is the file's base64 lines, cut verbatim from
    // the message.
    let part_bytes = std::fs::read(&got)?;
    ensure!(
        decode_base64(&part_bytes)? == content,
        "the fetched attachment differs"
    );
    let part = tmp.path().join("part.bin");
    bob.run([
        "attachment",
        "get",
        att_id,
        "-o",
        arg(&part),
        "--range",
        "1000-1100",
        "--mail",
        &mail_id,
    ])?;
    ensure!(
        std::fs::read(&part)? == part_bytes[1000..1100],
        "the range differs"
    );
    let carols: Value = serde_json::from_str(&carol.run(["inbox", "--json"])?)?;
    ensure!(
        carols.as_array().map(Vec::len) == Some(1),
        "carol's inbox: {carols}"
    );

    // Stored once per send over all hosts, whatever the number of
    // recipients: each send seals the file under a fresh key (no
    // convergent encryption, which would show hosts equal files).
    let stored: usize = (0..HOST_IPS.len())
        .map(|i| count_files(&tmp.path().join(format!("host{i}/attachments/objects"))))
        .sum();
    ensure!(stored == 2, "the attachment is stored {stored} times");

    // Owner operations by the owner work.
    bob.run(["flag", &mail_id, "+seen"])?;
    bob.run(["folders", "create", "Work"])?;
    bob.run(["move", &mail_id, "Work"])?;
    let hits = bob.run(["search", "attached"])?;
    ensure!(hits.contains(&mail_id), "search: {hits}");

    // Refusals.
    let err = alice.fail(["inbox", "--mailbox", "bob"])?;
    ensure_mentions(&err, &["only the owner may read"])?;
    let err = alice.fail(["delete", &mail_id, "--mailbox", "bob"])?;
    ensure_mentions(&err, &["only the owner may"])?;
    let err = carol.fail([
        "send",
        "--to",
        "bob",
        "--body",
        "pay me",
        "--forge-sender",
        "alice",
    ])?;
    ensure_mentions(&err, &["forged"])?;
    let err = alice.fail(["send", "--to", "nobody", "--body", "hello?"])?;
    ensure_mentions(&err, &["nobody"])?;
    let inbox: Value = serde_json::from_str(&bob.run(["inbox", "--json", "--folder", "INBOX"])?)?;
    ensure!(
        inbox.as_array().map(Vec::len) == Some(1),
        "a refused mail reached bob: {inbox}"
    );
    bob.run(["delete", &mail_id])?;

    for h in &hosts {
        ensure!(
            !h.stderr().contains("panicked"),
            "a host panicked:\n{}",
            h.stderr()
        );
    }
    Ok(())
}
