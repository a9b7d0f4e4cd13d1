//! Dispatch units failing under load, with real processes:
//! two units replicate their tables, four hosts (R = 3, W = 2) and the
//! users know both. While a sender keeps delivering, one unit is SIGKILLed:
//! every send still succeeds (clients fall back to the other unit), a host
//! crash after that is healed through the surviving unit alone, and a new
//! unit started with only the survivor as its peer bootstraps the tables
//! and serves a user who knows only it.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use dem_tests::{
    Daemon, Result, User, admin_status, free_udp_port, holders_in, inbox_ids, register_user,
    send_mail, start_dispatch, start_host, temp_dir, wait_for,
};
use serde_json::Value;

const UNIT_IPS: [&str; 3] = ["127.0.0.210", "127.0.0.211", "127.0.0.212"];
const HOST_IPS: [&str; 4] = ["127.0.0.213", "127.0.0.214", "127.0.0.215", "127.0.0.216"];
const UNIT_FLAGS: [&str; 6] = [
    "--lease-ms",
    "1500",
    "--replicas",
    "3",
    "--write-quorum",
    "2",
];

/// Whether every listed replica of `name` is an online host, `r` of them.
fn at_r(status: &Value, name: &str, r: usize) -> Result<bool> {
    let online: BTreeSet<&str> = status["hosts"]
        .as_array()
        .context("hosts")?
        .iter()
        .filter(|h| h["online"] == true)
        .filter_map(|h| h["id"].as_str())
        .collect();
    let reps = holders_in(status, name)?;
    Ok(reps.len() == r && reps.iter().all(|h| online.contains(h.as_str())))
}

fn unit_flags_with_peer(peer: &str) -> Vec<&str> {
    let mut flags = UNIT_FLAGS.to_vec();
    flags.extend(["--peer", peer]);
    flags
}

#[test]
fn a_dead_dispatch_unit_leaves_mail_flowing_and_healing_and_a_new_unit_bootstraps() -> Result<()> {
    let tmp = temp_dir();
    let root = tmp.path();
    let mut unit_a = start_dispatch(UNIT_IPS[0], &root.join("unit-a"), &UNIT_FLAGS)?;
    let unit_b = start_dispatch(
        UNIT_IPS[1],
        &root.join("unit-b"),
        &unit_flags_with_peer(&unit_a.addr),
    )?;
    let backbone = format!("{},{}", unit_a.addr, unit_b.addr);
    let mut hosts: Vec<Daemon> = Vec::new();
    for (i, ip) in HOST_IPS.iter().enumerate() {
        let listen = format!("{ip}:{}", free_udp_port(ip)?);
        let flags = ["--heartbeat-ms", "300", "--keeper-ms", "300"];
        hosts.push(start_host(
            &listen,
            &backbone,
            &root.join(format!("host{i}")),
            &flags,
        )?);
    }
    let alice = register_user(root, "alice", &backbone)?;
    let bob = register_user(root, "bob", &backbone)?;
    wait_for("3 replicas each", Duration::from_secs(15), || {
        let s = admin_status(&alice)?;
        Ok(at_r(&s, "alice", 3)? && at_r(&s, "bob", 3)?)
    })?;

    let mut acked: Vec<String> = Vec::new();
    for i in 0..4 {
        acked.push(send_mail(&alice, "bob", &format!("before {i}"))?);
    }
    unit_a.kill();
    println!("SIGKILL unit a {}", unit_a.addr);
    // Every send goes through: a client that picks the dead unit falls
    // back to the other.
    for i in 0..8 {
        acked.push(send_mail(&alice, "bob", &format!("after unit kill {i}"))?);
    }

    // A host crash is healed through the surviving unit alone.
    let victim_id = holders_in(&admin_status(&alice)?, "bob")?[0].clone();
    let victim = hosts
        .iter_mut()
        .find(|h| h.id == victim_id)
        .context("bob's first replica is one of the hosts")?;
    victim.kill();
    println!("SIGKILL host {victim_id}");
    wait_for(
        "bob back at 3 live replicas",
        Duration::from_secs(15),
        || {
            let s = admin_status(&alice)?;
            Ok(at_r(&s, "bob", 3)? && !holders_in(&s, "bob")?.contains(&victim_id))
        },
    )?;
    for i in 0..4 {
        acked.push(send_mail(&alice, "bob", &format!("after host kill {i}"))?);
    }

    // A new unit bootstraps from the survivor and serves a user who knows
    // only it.
    let unit_c = start_dispatch(
        UNIT_IPS[2],
        &root.join("unit-c"),
        &unit_flags_with_peer(&unit_b.addr),
    )?;
    let carol = register_user(root, "carol", &unit_c.addr)?;
    wait_for(
        "the new unit's tables list everyone",
        Duration::from_secs(15),
        || {
            let s = admin_status(&carol)?;
            Ok(at_r(&s, "alice", 3)? && at_r(&s, "bob", 3)? && at_r(&s, "carol", 3)?)
        },
    )?;
    acked.push(send_mail(&carol, "bob", "through the new unit")?);

    let inbox: BTreeSet<String> = inbox_ids(&bob)?.into_iter().collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !inbox.contains(*id)).collect();
    ensure!(lost.is_empty(), "acknowledged mail lost: {lost:?}");
    check_in_sync(&carol, "bob")?;
    Ok(())
}

/// Waits until `name`'s replicas report the same vector and state digest.
fn check_in_sync(asker: &User, name: &str) -> Result<()> {
    wait_for("replicas in sync", Duration::from_secs(15), || {
        let s = admin_status(asker)?;
        let u = s["users"]
            .as_array()
            .context("users")?
            .iter()
            .find(|u| u["name"] == name)
            .with_context(|| format!("{name} in the status"))?
            .clone();
        Ok(u["in_sync"] == true)
    })?;
    Ok(())
}
