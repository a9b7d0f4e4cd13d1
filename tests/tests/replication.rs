//! Replication under faults, with real processes (issue 4 §6): R = 3,
//! W = 2, short leases and keeper rounds.
//! - crash: SIGKILL two of five hosts (both holding bob's mailbox) while a
//!   sender keeps delivering; every acknowledged mail is readable after,
//!   and every mailbox is back to exactly 3 live replicas within 10 s;
//! - pause: SIGSTOP one replica's host while mail is delivered, deleted
//!   and flagged through the others, then SIGCONT; the replicas converge
//!   and the deleted mail stays deleted;
//! - full restart: SIGKILL everything, restart from the data dirs, all
//!   acknowledged mail is still there.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use dem_tests::{Daemon, Result, User, arg, free_udp_port, temp_dir};
use serde_json::Value;

/// One network at a time: three five-process networks at once on two
/// cores make live hosts miss their short leases.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Lease of a host in these tests: a killed host is offline after it.
const LEASE_MS: &str = "1500";

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
        let addr = format!("{dispatch_ip}:{}", free_udp_port(dispatch_ip)?);
        let dispatch = Daemon::start([
            "dispatch",
            "--listen",
            &addr,
            "--data",
            arg(&root.join("dispatch")),
            "--lease-ms",
            LEASE_MS,
            "--replicas",
            "3",
            "--write-quorum",
            "2",
        ])?;
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
        let host = Daemon::start([
            "host",
            "--listen",
            &self.host_addrs[i],
            "--dispatch",
            &self.dispatch.addr,
            "--data",
            arg(&data),
            "--heartbeat-ms",
            "300",
            "--keeper-ms",
            "300",
        ])?;
        self.hosts[i] = Some(host);
        Ok(())
    }

    fn user(&self, name: &str) -> Result<User> {
        let user = User::new(self.root.join(name));
        user.run(["id", "new", name])?;
        user.run(["register", "--dispatch", &self.dispatch.addr])?;
        Ok(user)
    }

    fn host_index(&self, id: &str) -> Option<usize> {
        self.hosts
            .iter()
            .position(|h| h.as_ref().is_some_and(|h| h.id == id))
    }
}

/// `dem admin status --json`.
fn status(user: &User) -> Result<Value> {
    Ok(serde_json::from_str(
        &user.run(["admin", "status", "--json"])?,
    )?)
}

/// The replica hosts of `name`'s mailbox, as listed.
fn replicas_of(status: &Value, name: &str) -> Result<Vec<String>> {
    let u = status["users"]
        .as_array()
        .context("users")?
        .iter()
        .find(|u| u["name"] == name)
        .with_context(|| format!("{name} in {status}"))?;
    Ok(u["hosts"]
        .as_array()
        .context("hosts")?
        .iter()
        .filter_map(|h| h.as_str().map(String::from))
        .collect())
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
        let reps = replicas_of(status, name)?;
        if reps.len() != r || !reps.iter().all(|h| online.contains(h)) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn inbox_ids(user: &User) -> Result<BTreeSet<String>> {
    let inbox: Value = serde_json::from_str(&user.run(["inbox", "--json", "--limit", "1000"])?)?;
    Ok(inbox
        .as_array()
        .context("inbox is an array")?
        .iter()
        .filter_map(|m| m["id"].as_str().map(String::from))
        .collect())
}

fn send(from: &User, to: &str, subject: &str) -> Result<String> {
    let out = from.run(["send", "--to", to, "--subject", subject, "--body", "hello"])?;
    Ok(out.trim().to_string())
}

/// Sends, retrying a refusal a few times: right after a crash a replica
/// may still be catching up, and the refusal says a retry is safe
/// (delivery is idempotent by mail id).
fn send_retrying(from: &User, to: &str, subject: &str) -> Result<String> {
    let mut last = None;
    for _ in 0..3 {
        match send(from, to, subject) {
            Ok(id) => return Ok(id),
            Err(e) => {
                println!("send refused, retrying: {e:#}");
                last = Some(e);
            }
        }
    }
    Err(last.context("no attempt")?)
}

/// Waits up to `limit` for `ok`.
fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> Result<bool>) -> Result<Duration> {
    let start = Instant::now();
    loop {
        if ok()? {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            bail!("{what} did not happen within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
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
        all_at_r(&status(&alice)?, &names, 3)
    })?;

    let mut acked = Vec::new();
    for i in 0..5 {
        acked.push(send(&alice, "bob", &format!("before {i}"))?);
    }
    // Kill two hosts holding bob's mailbox while alice keeps sending.
    let bobs = replicas_of(&status(&alice)?, "bob")?;
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
                match send(&alice, "bob", &format!("during {i}")) {
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
        || all_at_r(&status(&carol)?, &names, 3),
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
    let have = inbox_ids(&bob)?;
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
        all_at_r(&status(&alice)?, &["alice", "bob"], 3)
    })?;
    let keep = send(&alice, "bob", "keep")?;
    let doomed = send(&alice, "bob", "doomed")?;
    // Pause the first replica (the one lookups prefer): the others serve.
    let first = replicas_of(&status(&alice)?, "bob")?[0].clone();
    let paused = net.hosts[net.host_index(&first).context("paused host")?]
        .as_ref()
        .context("host")?;
    paused.signal("STOP")?;
    println!("SIGSTOP {first}");
    let result = (|| -> Result<()> {
        // Wait for its lease to run out, so lookups stop naming it first.
        wait_for("the paused host offline", Duration::from_secs(10), || {
            let s = status(&alice)?;
            Ok(s["hosts"]
                .as_array()
                .context("hosts")?
                .iter()
                .any(|h| h["id"] == first.as_str() && h["online"] == false))
        })?;
        let new = send(&alice, "bob", "while paused")?;
        bob.run(["delete", &doomed])?;
        bob.run(["flag", &keep, "+seen"])?;
        paused.signal("CONT")?;
        println!("SIGCONT {first}");
        // Everything converges: whichever replica answers, the state is
        // the same, the deleted mail gone, the flag set.
        wait_for("convergence", Duration::from_secs(20), || {
            let s = status(&alice)?;
            if !all_at_r(&s, &["bob"], 3)? {
                return Ok(false);
            }
            let ids = inbox_ids(&bob)?;
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
        Ok(())
    })();
    let _ = paused.signal("CONT");
    result?;
    // Replicas agree: every host holding bob's mailbox reports the same
    // version vector.
    wait_for("replicas in sync", Duration::from_secs(20), || {
        let s = status(&alice)?;
        let u = s["users"]
            .as_array()
            .context("users")?
            .iter()
            .find(|u| u["name"] == "bob")
            .context("bob")?
            .clone();
        Ok(u["in_sync"] == true)
    })?;
    Ok(())
}

#[test]
fn full_restart_keeps_everything_acknowledged() -> Result<()> {
    let _serial = serial();
    let ips = ["127.0.0.151", "127.0.0.152", "127.0.0.153"];
    let mut net = Net::start(&ips, "127.0.0.150")?;
    let alice = net.user("alice")?;
    let bob = net.user("bob")?;
    wait_for("3 replicas each", Duration::from_secs(10), || {
        all_at_r(&status(&alice)?, &["alice", "bob"], 3)
    })?;
    let mut acked = BTreeSet::new();
    for i in 0..8 {
        acked.insert(send(&alice, "bob", &format!("mail {i}"))?);
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
    net.dispatch = Daemon::start([
        "dispatch",
        "--listen",
        &addr,
        "--data",
        arg(&net.root.join("dispatch")),
        "--lease-ms",
        LEASE_MS,
        "--replicas",
        "3",
        "--write-quorum",
        "2",
    ])?;
    for i in 0..ips.len() {
        net.start_host(i)?;
    }
    wait_for(
        "all acknowledged mail back",
        Duration::from_secs(20),
        || {
            let ids = match inbox_ids(&bob) {
                Ok(ids) => ids,
                Err(_) => return Ok(false),
            };
            Ok(acked.iter().all(|id| ids.contains(id)) && !ids.contains(&gone))
        },
    )?;
    Ok(())
}
