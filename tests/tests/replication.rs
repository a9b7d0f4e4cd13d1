//! Replication under faults, with real processes: R = 3,
//! W = 2, short leases and keeper rounds.
//! - crash: SIGKILL two of five hosts (both holding bob's mailbox) while a
//!   sender keeps delivering; every acknowledged mail is readable after,
//!   and every mailbox is back to exactly 3 live replicas within 10 s;
//! - pause: SIGSTOP one replica's host while mail is delivered, deleted
//!   and flagged, and folders renamed and deleted, through the others,
//!   then SIGCONT; the replicas converge, the deleted mail stays deleted,
//!   a mail follows its folder's rename, and a plugin installed meanwhile
//!   reaches the paused replica with its code;
//! - full restart: SIGKILL everything, restart from the data dirs, all
//!   acknowledged mail is still there.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use dem_tests::{
    Daemon, Result, User, admin_status, arg, free_udp_port, holders_in, inbox_ids, register_user,
    send_mail, start_host, temp_dir, wait_for,
};
use serde_json::Value;

/// One network at a time: three five-process networks at once on two
/// cores make live hosts miss their short leases.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Short leases (a killed host is offline after 1.5 s), R = 3, W = 2.
const DISPATCH_FLAGS: [&str; 6] = [
    "--lease-ms",
    "1500",
    "--replicas",
    "3",
    "--write-quorum",
    "2",
];

struct Net {
    _tmp: tempfile::TempDir,
    root: std::path::PathBuf,
    dispatch: Daemon,
    hosts: Vec<Option<Daemon>>,
    host_addrs: Vec<String>,
}

impl Net {
    fn start(ips: &[&str], dispatch_ip: &str) -> Result<Self> {
        let tmp = temp_dir();
        let root = tmp.path().to_path_buf();
        let dispatch =
            dem_tests::start_dispatch(dispatch_ip, &root.join("dispatch"), &DISPATCH_FLAGS)?;
        let mut net = Net {
            _tmp: tmp,
            root,
            dispatch,
            hosts: Vec::new(),
            host_addrs: Vec::new(),
        };
        for ip in ips {
            let listen = format!("{ip}:{}", free_udp_port(ip)?);
            net.host_addrs.push(listen);
            net.hosts.push(None);
            net.start_host(net.hosts.len() - 1)?;
        }
        Ok(net)
    }

    fn start_host(&mut self, i: usize) -> Result<()> {
        let data = self.root.join(format!("host{i}"));
        let flags = ["--heartbeat-ms", "300", "--keeper-ms", "300"];
        let host = start_host(&self.host_addrs[i], &self.dispatch.addr, &data, &flags)?;
        self.hosts[i] = Some(host);
        Ok(())
    }

    fn user(&self, name: &str) -> Result<User> {
        register_user(&self.root, name, &self.dispatch.addr)
    }

    fn host_index(&self, id: &str) -> Option<usize> {
        self.hosts
            .iter()
            .position(|h| h.as_ref().is_some_and(|h| h.id == id))
    }
}

/// Whether every listed replica of every user is an online host, R of them.
fn all_at_r(status: &Value, names: &[&str], r: usize) -> Result<bool> {
    let online: BTreeSet<String> = status["hosts"]
        .as_array()
        .context("hosts")?
        .iter()
        .filter(|h| h["online"] == true)
        .filter_map(|h| h["id"].as_str().map(String::from))
        .collect();
    for name in names {
        let reps = holders_in(status, name)?;
        if reps.len() != r || !reps.iter().all(|h| online.contains(h)) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn inbox_set(user: &User) -> Result<BTreeSet<String>> {
    Ok(inbox_ids(user)?.into_iter().collect())
}

/// Sends, retrying a refusal a few times: right after a crash a replica
/// may still be catching up, and the refusal says a retry is safe
/// (delivery is idempotent by mail id).
fn send_retrying(from: &User, to: &str, subject: &str) -> Result<String> {
    let mut last = None;
    for _ in 0..3 {
        match send_mail(from, to, subject) {
            Ok(id) => return Ok(id),
            Err(e) => {
                println!("send refused, retrying: {e:#}");
                last = Some(e);
            }
        }
    }
    Err(last.context("no attempt")?)
}

#[test]
fn crash_of_two_hosts_loses_no_acknowledged_mail_and_replicas_regenerate() -> Result<()> {
    let _serial = serial();
    let ips = [
        "127.0.0.131",
        "127.0.0.132",
        "127.0.0.133",
        "127.0.0.134",
        "127.0.0.135",
    ];
    let mut net = Net::start(&ips, "127.0.0.130")?;
    let alice = net.user("alice")?;
    let bob = net.user("bob")?;
    let carol = net.user("carol")?;
    let names = ["alice", "bob", "carol"];
    wait_for("3 replicas each", Duration::from_secs(10), || {
        all_at_r(&admin_status(&alice)?, &names, 3)
    })?;

    let mut acked = Vec::new();
    for i in 0..5 {
        acked.push(send_mail(&alice, "bob", &format!("before {i}"))?);
    }
    // Kill two hosts holding bob's mailbox while alice keeps sending.
    let bobs = holders_in(&admin_status(&alice)?, "bob")?;
    let victims: Vec<usize> = bobs
        .iter()
        .take(2)
        .filter_map(|id| net.host_index(id))
        .collect();
    ensure!(victims.len() == 2, "bob's replicas {bobs:?}");
    let sender = {
        let alice = User::new(net.root.join("alice"));
        std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut refused = 0;
            for i in 0..25 {
                // A refusal is not an acknowledgement: only count the
                // mails whose id was printed.
                match send_mail(&alice, "bob", &format!("during {i}")) {
                    Ok(id) => acked.push(id),
                    Err(_) => refused += 1,
                }
            }
            (acked, refused)
        })
    };
    std::thread::sleep(Duration::from_millis(700));
    let killed_at = Instant::now();
    for &v in &victims {
        if let Some(mut h) = net.hosts[v].take() {
            println!("SIGKILL host {} ({})", v, h.id);
            h.kill();
        }
    }
    // Regeneration is timed while the sender carries on.
    let regen = wait_for(
        "every mailbox back at 3 live replicas",
        Duration::from_secs(20),
        || all_at_r(&admin_status(&carol)?, &names, 3),
    )?;
    let since_kill = killed_at.elapsed();
    println!("back at 3 replicas {since_kill:?} after the kill");
    ensure!(
        regen <= Duration::from_secs(10),
        "regeneration took {since_kill:?}"
    );
    let (during, refused) = sender
        .join()
        .map_err(|_| anyhow::anyhow!("sender panicked"))?;
    println!(
        "during the crash: {} acknowledged, {refused} refused",
        during.len()
    );
    acked.extend(during);
    for i in 0..5 {
        acked.push(send_retrying(&alice, "bob", &format!("after {i}"))?);
    }
    let have = inbox_set(&bob)?;
    let lost: Vec<&String> = acked.iter().filter(|id| !have.contains(*id)).collect();
    ensure!(lost.is_empty(), "acknowledged mails lost: {lost:?}");
    ensure!(
        have.len() == acked.len(),
        "{} mails, {} acknowledged",
        have.len(),
        acked.len()
    );
    Ok(())
}

#[test]
fn a_paused_replica_converges_and_deleted_mail_stays_deleted() -> Result<()> {
    let _serial = serial();
    let ips = ["127.0.0.141", "127.0.0.142", "127.0.0.143"];
    let net = Net::start(&ips, "127.0.0.140")?;
    let alice = net.user("alice")?;
    let bob = net.user("bob")?;
    wait_for("3 replicas each", Duration::from_secs(10), || {
        all_at_r(&admin_status(&alice)?, &["alice", "bob"], 3)
    })?;
    let keep = send_mail(&alice, "bob", "keep")?;
    let doomed = send_mail(&alice, "bob", "doomed")?;
    let filed = send_mail(&alice, "bob", "filed")?;
    bob.run(["folders", "create", "Projects/old"])?;
    bob.run(["folders", "create", "Trash"])?;
    bob.run(["move", &filed, "Projects/old"])?;
    // Pause the first replica (the one lookups prefer): the others serve.
    let first = holders_in(&admin_status(&alice)?, "bob")?[0].clone();
    let paused = net.hosts[net.host_index(&first).context("paused host")?]
        .as_ref()
        .context("host")?;
    let paused_code = net
        .root
        .join(format!(
            "host{}",
            net.host_index(&first).context("paused host")?
        ))
        .join("code");
    let (plugin_file, plugin_hash) = builtin_plugin(&net.root, "allowlist")?;
    paused.signal("STOP")?;
    println!("SIGSTOP {first}");
    let result = (|| -> Result<()> {
        // Wait for its lease to run out, so lookups stop naming it first.
        wait_for("the paused host offline", Duration::from_secs(10), || {
            let s = admin_status(&alice)?;
            Ok(s["hosts"]
                .as_array()
                .context("hosts")?
                .iter()
                .any(|h| h["id"] == first.as_str() && h["online"] == false))
        })?;
        let new = send_mail(&alice, "bob", "while paused")?;
        bob.run(["delete", &doomed])?;
        bob.run(["flag", &keep, "+seen"])?;
        // Folder changes the paused replica replays when it is back: a
        // rename whose subtree and mail go along, a delete.
        bob.run(["folders", "rename", "Projects", "Archive"])?;
        bob.run(["folders", "delete", "Trash"])?;
        // A plugin installed meanwhile: its op names the code by hash, and
        // the paused replica must fetch the code when it catches up.
        bob.run(["plugin", "add", arg(&plugin_file), "--name", "allowlist"])?;
        paused.signal("CONT")?;
        println!("SIGCONT {first}");
        // Everything converges: whichever replica answers, the state is
        // the same, the deleted mail gone, the flag set.
        wait_for("convergence", Duration::from_secs(20), || {
            let s = admin_status(&alice)?;
            if !all_at_r(&s, &["bob"], 3)? {
                return Ok(false);
            }
            let ids = inbox_set(&bob)?;
            Ok(ids.contains(&keep) && ids.contains(&new) && !ids.contains(&doomed))
        })?;
        let inbox: Value = serde_json::from_str(&bob.run(["inbox", "--json"])?)?;
        let kept = inbox
            .as_array()
            .context("inbox")?
            .iter()
            .find(|m| m["id"] == keep.as_str())
            .context("kept mail")?;
        ensure!(
            kept["flags"].to_string().contains("seen"),
            "the flag was lost: {kept}"
        );
        let folders = bob.run(["folders"])?;
        ensure!(
            folders.contains("Archive/old")
                && !folders.contains("Projects")
                && !folders.contains("Trash"),
            "folder changes were lost: {folders}"
        );
        let moved: Value =
            serde_json::from_str(&bob.run(["inbox", "--folder", "Archive/old", "--json"])?)?;
        ensure!(
            moved.to_string().contains(filed.as_str()),
            "the mail did not follow its folder's rename: {moved}"
        );
        Ok(())
    })();
    let _ = paused.signal("CONT");
    result?;
    // Replicas agree: every host holding bob's mailbox reports the same
    // version vector.
    wait_for("replicas in sync", Duration::from_secs(20), || {
        let s = admin_status(&alice)?;
        let u = s["users"]
            .as_array()
            .context("users")?
            .iter()
            .find(|u| u["name"] == "bob")
            .context("bob")?
            .clone();
        Ok(u["in_sync"] == true)
    })?;
    let code = paused_code.join(format!("{plugin_hash}.wasm"));
    ensure!(
        code.exists(),
        "the paused replica did not fetch the plugin's code: {}",
        code.display()
    );
    Ok(())
}

/// One of the standard plugins written to a file, and its code hash.
fn builtin_plugin(dir: &std::path::Path, name: &str) -> Result<(std::path::PathBuf, String)> {
    let bytes = dem_builtin::PLUGINS
        .iter()
        .find(|(n, _)| *n == name)
        .context("no such builtin plugin")?
        .1;
    let file = dir.join(format!("{name}.wasm"));
    std::fs::write(&file, bytes)?;
    Ok((file, dem_proto::ids::CodeHash::of(bytes).to_string()))
}

#[test]
fn full_restart_keeps_everything_acknowledged() -> Result<()> {
    let _serial = serial();
    let ips = ["127.0.0.151", "127.0.0.152", "127.0.0.153"];
    let mut net = Net::start(&ips, "127.0.0.150")?;
    let alice = net.user("alice")?;
    let bob = net.user("bob")?;
    wait_for("3 replicas each", Duration::from_secs(10), || {
        all_at_r(&admin_status(&alice)?, &["alice", "bob"], 3)
    })?;
    let mut acked = BTreeSet::new();
    for i in 0..8 {
        acked.insert(send_mail(&alice, "bob", &format!("mail {i}"))?);
    }
    let gone = acked.pop_first().context("a mail")?;
    bob.run(["delete", &gone])?;
    // Everything dies at once.
    for h in net.hosts.iter_mut() {
        if let Some(mut h) = h.take() {
            h.kill();
        }
    }
    net.dispatch.kill();
    let addr = net.dispatch.addr.clone();
    let data = net.root.join("dispatch");
    let mut args = vec!["dispatch", "--listen", &addr, "--data", arg(&data)];
    args.extend_from_slice(&DISPATCH_FLAGS);
    net.dispatch = Daemon::start(args)?;
    for i in 0..ips.len() {
        net.start_host(i)?;
    }
    wait_for(
        "all acknowledged mail back",
        Duration::from_secs(20),
        || {
            let ids = match inbox_set(&bob) {
                Ok(ids) => ids,
                Err(_) => return Ok(false),
            };
            Ok(acked.iter().all(|id| ids.contains(id)) && !ids.contains(&gone))
        },
    )?;
    Ok(())
}
