//! An acknowledged attachment survives its holders' restarts (issue 19),
//! with real processes: 6 hosts, R = 3, W = 2, 1.5 s leases, 300 ms keeper
//! rounds.
//!
//! Two of an attachment's three holders are SIGKILLed together; the keeper
//! regenerates it from the third onto two new hosts. The two killed hosts
//! then restart while every listed holder is paused: their copies are
//! unlisted, and with no live listed holder to take them they must be held
//! back (shown by `dem admin status`), not deleted. Once the listed holders
//! resume, the copies are offered to them (already stored there) and go,
//! the attachment is back at exactly 3 stored copies, and the recipient
//! still reads it byte for byte.
//!
//! Which two holders are killed is drawn from one seed: `DEM_SEED` if set,
//! else the clock; it is printed first and in every failure. Loopback
//! addresses 127.0.0.217–223.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, anyhow, ensure};
use dem_tests::seed;
use dem_tests::{
    Daemon, Result, Rng, User, admin_status, arg, count_files, decode_base64, free_udp_port,
    register_user, start_dispatch, start_host, temp_dir, wait_for,
};
use serde_json::Value;

const DISPATCH_IP: &str = "127.0.0.217";
const HOST_IPS: [&str; 6] = [
    "127.0.0.218",
    "127.0.0.219",
    "127.0.0.220",
    "127.0.0.221",
    "127.0.0.222",
    "127.0.0.223",
];
const DISPATCH_FLAGS: [&str; 6] = [
    "--lease-ms",
    "1500",
    "--replicas",
    "3",
    "--write-quorum",
    "2",
];
const HOST_FLAGS: [&str; 4] = ["--heartbeat-ms", "300", "--keeper-ms", "300"];
const R: usize = 3;
const STEP_MAX: Duration = Duration::from_secs(40);

fn online(status: &Value) -> BTreeSet<String> {
    status["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["online"] == true)
        .filter_map(|h| h["id"].as_str().map(String::from))
        .collect()
}

/// The listed holders of attachment `id`, if it is located.
fn holders(status: &Value, id: &str) -> Vec<String> {
    status["attachments"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["id"] == id)
        .and_then(|a| a["hosts"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|h| h.as_str().map(String::from))
        .collect()
}

/// The listed holders, if they are exactly R live hosts.
fn at_r_live(status: &Value, id: &str) -> Option<Vec<String>> {
    let up = online(status);
    let hs = holders(status, id);
    (hs.len() == R && hs.iter().all(|h| up.contains(h))).then_some(hs)
}

/// The hosts holding back a copy of attachment `id`.
fn held_back(status: &Value, id: &str) -> BTreeSet<String> {
    status["held_back"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["attachment"] == id)
        .filter_map(|h| h["host"].as_str().map(String::from))
        .collect()
}

/// Attachment files stored in the data dirs of the hosts running.
fn stored_copies(root: &Path, hosts: &[Option<Daemon>]) -> usize {
    hosts
        .iter()
        .enumerate()
        .filter(|(_, h)| h.is_some())
        .map(|(i, _)| count_files(&root.join(format!("host{i}/attachments/objects"))))
        .sum()
}

#[test]
fn an_attachment_whose_holders_restart_after_its_regeneration_is_kept() -> Result<()> {
    let seed = seed();
    println!("handback_attachments: seed {seed} (replay with DEM_SEED={seed})");
    run(seed).map_err(|e| anyhow!("seed {seed} (replay with DEM_SEED={seed}): {e:#}"))
}

fn run(seed: u64) -> Result<()> {
    let mut rng = Rng::new(seed);
    let tmp = temp_dir();
    let root = tmp.path().to_path_buf();
    let dispatch = start_dispatch(DISPATCH_IP, &root.join("dispatch"), &DISPATCH_FLAGS)?;
    let addrs = HOST_IPS
        .iter()
        .map(|ip| Ok(format!("{ip}:{}", free_udp_port(ip)?)))
        .collect::<Result<Vec<_>>>()?;
    let start = |slot: usize| -> Result<Daemon> {
        let data = root.join(format!("host{slot}"));
        start_host(&addrs[slot], &dispatch.addr, &data, &HOST_FLAGS)
    };
    let mut hosts: Vec<Option<Daemon>> = (0..HOST_IPS.len())
        .map(|s| start(s).map(Some))
        .collect::<Result<_>>()?;
    let ids: Vec<String> = hosts.iter().flatten().map(|h| h.id.clone()).collect();
    let slot_of = |id: &str| ids.iter().position(|i| i == id).context("one of ours");
    let alice = register_user(&root, "alice", &dispatch.addr)?;
    let bob = register_user(&root, "bob", &dispatch.addr)?;

    let file = root.join("report.bin");
    let content: Vec<u8> = (0..300_000u32).map(|i| (i ^ (i >> 5)) as u8).collect();
    std::fs::write(&file, &content)?;
    let mail_id = alice
        .run([
            "send",
            "--to",
            "bob",
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
    let att = mail["attachments"][0]["id"]
        .as_str()
        .context("an attachment reference")?
        .to_string();
    let first = wait_until(&alice, "3 live holders", |s| Ok(at_r_live(s, &att)))?;

    // Two holders are killed together; the third regenerates it elsewhere.
    let spared = first[rng.below(R as u64) as usize].clone();
    let killed: Vec<usize> = first
        .iter()
        .filter(|h| **h != spared)
        .map(|h| slot_of(h))
        .collect::<Result<_>>()?;
    println!("killing holders {killed:?}");
    for slot in &killed {
        if let Some(mut h) = hosts[*slot].take() {
            h.kill();
        }
    }
    let regenerated = wait_until(&alice, "regenerated without the killed hosts", |s| {
        Ok(at_r_live(s, &att).filter(|hs| killed.iter().all(|k| !hs.contains(&ids[*k]))))
    })?;
    let listed: Vec<usize> = regenerated
        .iter()
        .map(|h| slot_of(h))
        .collect::<Result<_>>()?;
    println!("regenerated on {listed:?}");

    // The killed hosts restart while every listed holder is paused.
    for slot in &listed {
        hosts[*slot].as_ref().context("running")?.signal("STOP")?;
    }
    let resume = |hosts: &[Option<Daemon>]| -> Result<()> {
        for slot in &listed {
            hosts[*slot].as_ref().context("running")?.signal("CONT")?;
        }
        Ok(())
    };
    let held = (|| -> Result<()> {
        wait_until(&alice, "the listed holders offline", |s| {
            let up = online(s);
            Ok(listed.iter().all(|l| !up.contains(&ids[*l])).then_some(()))
        })?;
        for slot in &killed {
            hosts[*slot] = Some(start(*slot)?);
        }
        let want: BTreeSet<String> = killed.iter().map(|k| ids[*k].clone()).collect();
        wait_until(&alice, "the returning copies held back", |s| {
            Ok((held_back(s, &att) == want).then_some(()))
        })
    })();
    resume(&hosts)?;
    held?;
    println!("held back on {killed:?} while the listed holders were paused");

    // Once the listed holders are back, the copies go.
    wait_until(&alice, "nothing held back, 3 live holders", |s| {
        Ok((held_back(s, &att).is_empty() && at_r_live(s, &att).is_some()).then_some(()))
    })?;
    wait_for("3 stored copies", STEP_MAX, || {
        Ok(stored_copies(&root, &hosts) == R)
    })?;
    let out = root.join("fetched.bin");
    bob.run([
        "attachment",
        "get",
        &att,
        "-o",
        arg(&out),
        "--mail",
        &mail_id,
    ])?;
    ensure!(
        decode_base64(&std::fs::read(&out)?)? == content,
        "the fetched attachment differs"
    );
    Ok(())
}

/// Polls the status until `pick` finds what it wants.
fn wait_until<T>(
    admin: &User,
    what: &str,
    mut pick: impl FnMut(&Value) -> Result<Option<T>>,
) -> Result<T> {
    let mut found = None;
    let mut last = Value::Null;
    let waited = wait_for(what, STEP_MAX, || {
        last = admin_status(admin)?;
        found = pick(&last)?;
        Ok(found.is_some())
    });
    if let Err(e) = waited {
        let atts = &last["attachments"];
        let held = &last["held_back"];
        return Err(anyhow!("{e:#}; attachments: {atts}; held back: {held}"));
    }
    found.context("found")
}
