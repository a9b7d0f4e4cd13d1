//! Attachment replication with real processes: five hosts,
//! R = 3, W = 2, short leases, keeper rounds and attachment grace period.
//! A mail with an attachment to two recipients leaves exactly 3 stored
//! copies (whatever the number of recipients); after SIGKILL of a holder
//! the attachment is back at exactly 3 live holders within 10 s and both
//! recipients still read it; it stays while referenced, and once both
//! mails are deleted it is collected after the grace period.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use dem_tests::{
    Daemon, Result, User, admin_status, arg, count_files, decode_base64, free_udp_port,
    register_user, start_dispatch, start_host, temp_dir, wait_for,
};
use serde_json::Value;

const DISPATCH_IP: &str = "127.0.0.160";
const HOST_IPS: [&str; 5] = [
    "127.0.0.161",
    "127.0.0.162",
    "127.0.0.163",
    "127.0.0.164",
    "127.0.0.165",
];
/// Short leases (a killed host is offline after 1.5 s), R = 3, W = 2, and
/// an unreferenced attachment is collected 3 s after its last renewal.
const DISPATCH_FLAGS: [&str; 8] = [
    "--lease-ms",
    "1500",
    "--replicas",
    "3",
    "--write-quorum",
    "2",
    "--attachment-grace-ms",
    "3000",
];
const GRACE: Duration = Duration::from_millis(3000);

/// The listed holders of attachment `id`, if it is located.
fn att_holders(status: &Value, id: &str) -> Option<Vec<String>> {
    let att = status["attachments"]
        .as_array()?
        .iter()
        .find(|a| a["id"] == id)?;
    Some(
        att["hosts"]
            .as_array()?
            .iter()
            .filter_map(|h| h.as_str().map(String::from))
            .collect(),
    )
}

fn online_hosts(status: &Value) -> BTreeSet<String> {
    status["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["online"] == true)
        .filter_map(|h| h["id"].as_str().map(String::from))
        .collect()
}

/// Exactly `r` distinct listed holders of `id`, all online.
fn at_r_live(status: &Value, id: &str, r: usize) -> bool {
    let online = online_hosts(status);
    att_holders(status, id).is_some_and(|hs| {
        let distinct: BTreeSet<&String> = hs.iter().collect();
        hs.len() == r && distinct.len() == r && hs.iter().all(|h| online.contains(h))
    })
}

/// Attachment files stored in the data dirs of the hosts still running.
fn stored_copies(root: &Path, hosts: &[Option<Daemon>]) -> usize {
    hosts
        .iter()
        .enumerate()
        .filter(|(_, h)| h.is_some())
        .map(|(i, _)| count_files(&root.join(format!("host{i}/attachments/objects"))))
        .sum()
}

fn fetch_matches(user: &User, mail: &str, id: &str, out: &Path, content: &[u8]) -> Result<()> {
    user.run(["attachment", "get", id, "-o", arg(out), "--mail", mail])?;
    ensure!(
        decode_base64(&std::fs::read(out)?)? == content,
        "the fetched attachment differs"
    );
    Ok(())
}

#[test]
fn attachments_keep_three_replicas_regenerate_and_are_collected() -> Result<()> {
    let tmp = temp_dir();
    let root = tmp.path().to_path_buf();
    let dispatch = start_dispatch(DISPATCH_IP, &root.join("dispatch"), &DISPATCH_FLAGS)?;
    let mut hosts: Vec<Option<Daemon>> = Vec::new();
    for (i, ip) in HOST_IPS.iter().enumerate() {
        let listen = format!("{ip}:{}", free_udp_port(ip)?);
        let flags = ["--heartbeat-ms", "300", "--keeper-ms", "300"];
        let data = root.join(format!("host{i}"));
        hosts.push(Some(start_host(&listen, &dispatch.addr, &data, &flags)?));
    }
    let alice = register_user(&root, "alice", &dispatch.addr)?;
    let bob = register_user(&root, "bob", &dispatch.addr)?;
    let carol = register_user(&root, "carol", &dispatch.addr)?;

    // Three chunks' worth, so copies stream several frames.
    let file = root.join("report.bin");
    let content: Vec<u8> = (0..2_500_000u32).map(|i| (i ^ (i >> 7)) as u8).collect();
    std::fs::write(&file, &content)?;
    let mail_id = alice
        .run([
            "send",
            "--to",
            "bob,carol",
            "--subject",
            "Report",
            "--body",
            "Attached.",
            "--attach",
            arg(&file),
        ])?
        .trim()
        .to_string();
    let mail: Value = serde_json::from_str(&bob.run(["read", &mail_id, "--json"])?)?;
    let att_id = mail["attachments"][0]["id"]
        .as_str()
        .context("an attachment reference")?
        .to_string();

    // Acknowledged once W hold it; R soon after, and never more.
    wait_for("3 live holders", Duration::from_secs(10), || {
        Ok(at_r_live(&admin_status(&alice)?, &att_id, 3))
    })?;
    wait_for("3 stored copies", Duration::from_secs(10), || {
        Ok(stored_copies(&root, &hosts) == 3)
    })?;

    // Kill a holder: back at exactly 3 live holders within 10 s.
    let holders = att_holders(&admin_status(&alice)?, &att_id).context("located")?;
    let victim = hosts
        .iter()
        .position(|h| h.as_ref().is_some_and(|h| h.id == holders[0]))
        .context("the first holder is one of ours")?;
    let killed = holders[0].clone();
    if let Some(mut h) = hosts[victim].take() {
        println!("SIGKILL host {victim} ({killed})");
        h.kill();
    }
    let regen = wait_for(
        "the attachment back at 3 live holders",
        Duration::from_secs(10),
        || {
            let status = admin_status(&carol)?;
            Ok(at_r_live(&status, &att_id, 3)
                && att_holders(&status, &att_id).is_some_and(|hs| !hs.contains(&killed)))
        },
    )?;
    println!("back at 3 holders {regen:?} after the kill");
    wait_for(
        "3 stored copies on live hosts",
        Duration::from_secs(10),
        || Ok(stored_copies(&root, &hosts) == 3),
    )?;
    fetch_matches(&bob, &mail_id, &att_id, &root.join("bob.bin"), &content)?;
    fetch_matches(&carol, &mail_id, &att_id, &root.join("carol.bin"), &content)?;

    // Referenced mails keep it past the grace period (their mailboxes'
    // hosts renew the lease).
    std::thread::sleep(GRACE * 2);
    let status = admin_status(&alice)?;
    ensure!(
        at_r_live(&status, &att_id, 3),
        "a referenced attachment must stay: {}",
        status["attachments"]
    );

    // Deleted from both mailboxes: collected after the grace period.
    bob.run(["delete", &mail_id])?;
    carol.run(["delete", &mail_id])?;
    let gone = wait_for("the attachment collected", Duration::from_secs(30), || {
        let status = admin_status(&alice)?;
        Ok(att_holders(&status, &att_id).is_none() && stored_copies(&root, &hosts) == 0)
    })?;
    println!("collected {gone:?} after the deletes");
    // A collected attachment cannot be fetched.
    bob.fail(["attachment", "get", &att_id, "-o", arg(&root.join("x.bin"))])?;
    drop(hosts);
    drop(dispatch);
    Ok(())
}
