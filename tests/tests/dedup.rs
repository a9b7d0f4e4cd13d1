//! Floating attachments are stored once: one file mailed to 20 recipients
//! whose mailboxes are spread over three hosts leaves exactly one stored
//! copy across all hosts' attachment stores, and every recipient's mail
//! references it and can fetch it back intact.

use anyhow::{Context as _, ensure};
use dem_tests::{
    Result, User, arg, count_files, decode_base64, free_udp_port, start_dispatch, start_host,
    temp_dir,
};
use serde_json::Value;

const DISPATCH_IP: &str = "127.0.0.81";
const HOST_IPS: [&str; 3] = ["127.0.0.82", "127.0.0.83", "127.0.0.84"];
const RECIPIENTS: usize = 20;

#[test]
fn one_stored_copy_for_twenty_recipients() -> Result<()> {
    let tmp = temp_dir();
    // One copy per mailbox: these tests are about where *the* mailbox is;
    // replicas have their own tests (replication.rs).
    let one_copy = ["--replicas", "1", "--write-quorum", "1"];
    let dispatch = start_dispatch(DISPATCH_IP, &tmp.path().join("dispatch"), &one_copy)?;
    let mut hosts = Vec::new();
    for (i, ip) in HOST_IPS.iter().enumerate() {
        let listen = format!("{ip}:{}", free_udp_port(ip)?);
        let data = tmp.path().join(format!("host{i}"));
        let flags = ["--heartbeat-ms", "300"];
        hosts.push(start_host(&listen, &dispatch.addr, &data, &flags)?);
    }
    let mut names = vec!["alice".to_string()];
    names.extend((0..RECIPIENTS).map(|i| format!("r{i:02}")));
    let mut users = Vec::new();
    for name in &names {
        let user = User::new(tmp.path().join(name));
        user.run(["id", "new", name])?;
        user.run(["register", "--dispatch", &dispatch.addr])?;
        users.push(user);
    }
    let file = tmp.path().join("slides.bin");
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i ^ (i >> 9)) as u8).collect();
    std::fs::write(&file, &content)?;
    let to = names[1..].join(",");
    let id = users[0]
        .run([
            "send",
            "--to",
            &to,
            "--subject",
            "Slides",
            "--body",
            "For all of you.",
            "--attach",
            arg(&file),
        ])?
        .trim()
        .to_string();

    // Every recipient has the mail and the same attachment reference.
    let mut att_ids = Vec::new();
    for user in &users[1..] {
        let mail: Value = serde_json::from_str(&user.run(["read", &id, "--json"])?)?;
        let att = mail["attachments"][0]["id"]
            .as_str()
            .context("an attachment reference")?;
        att_ids.push(att.to_string());
    }
    att_ids.dedup();
    ensure!(
        att_ids.len() == 1,
        "recipients reference different attachments: {att_ids:?}"
    );

    // One stored copy over all hosts.
    let stored: usize = (0..HOST_IPS.len())
        .map(|i| count_files(&tmp.path().join(format!("host{i}/attachments/objects"))))
        .sum();
    ensure!(
        stored == 1,
        "the attachment is stored {stored} times for {RECIPIENTS} recipients"
    );

    // And it comes back intact for a recipient.
    let got = tmp.path().join("got.bin");
    users[RECIPIENTS].run([
        "attachment",
        "get",
        &att_ids[0],
        "-o",
        arg(&got),
        "--mail",
        &id,
    ])?;
    ensure!(
        decode_base64(&std::fs::read(&got)?)? == content,
        "the fetched attachment differs"
    );
    drop(hosts);
    Ok(())
}
