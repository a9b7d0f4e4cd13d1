//! `dem demo`: a local DEM network in one command, as real processes.
//!
//! It starts two dispatch units and four hosts as child processes on their
//! own 127.0.0.x addresses, registers alice and bob, sends bob (who is
//! offline: no host of his own) a mail with an attachment, starts bob's own
//! host so his mailbox moves home, then lets the host holding alice's
//! mailbox leave gracefully so it moves off. Each step prints the mailbox
//! spread from `dem admin status`. Everything is stopped at the end.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;

/// A child process that is stopped when dropped.
struct Proc {
    child: Child,
    id: String,
    addr: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Starts `dem <args>` and waits for its `<kind> <id> listening on <addr>` line.
    fn start(args: &[&str]) -> anyhow::Result<Proc> {
        let mut child = Command::new(exe()?)
            .args(args)
            .env_remove("DEM_HOME")
            .env(super::EXIT_WITH_PARENT_ENV, "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting dem {}", args.join(" ")))?;
        let stdout = child.stdout.take().context("piped stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let [_, id, "listening", "on", addr] = words[..] else {
            let _ = child.kill();
            bail!("dem {} did not start: {line:?}", args.join(" "));
        };
        Ok(Proc {
            id: id.to_string(),
            addr: addr.to_string(),
            child,
        })
    }

    /// Asks it to stop as Ctrl-C would, and waits for it to finish.
    fn stop_gracefully(mut self, timeout: Duration) -> anyhow::Result<()> {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .context("sending SIGTERM")?;
        let started = Instant::now();
        while started.elapsed() < timeout {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("the host did not finish leaving within {timeout:?}")
    }
}

fn exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("finding the dem binary")
}

fn s(p: &Path) -> anyhow::Result<&str> {
    p.to_str().context("temp paths are UTF-8")
}

/// Runs a user command with `--home`, returning stdout.
fn user(home: &Path, args: &[&str]) -> anyhow::Result<String> {
    let mut all = vec![args[0], "--home", s(home)?];
    all.extend_from_slice(&args[1..]);
    let out = Command::new(exe()?)
        .args(&all)
        .output()
        .context("running dem")?;
    if !out.status.success() {
        bail!(
            "dem {} failed: {}",
            all.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Prints where each user's mailbox is, by host address.
fn spread(home: &Path) -> anyhow::Result<Value> {
    let status: Value = serde_json::from_str(&user(home, &["admin", "status", "--json"])?)?;
    let addr_of = |id: &str| {
        status["hosts"]
            .as_array()
            .and_then(|hs| hs.iter().find(|h| h["id"] == id))
            .and_then(|h| h["addr"].as_str())
            .unwrap_or("?")
            .to_string()
    };
    for u in status["users"].as_array().into_iter().flatten() {
        let hosts: Vec<String> = u["hosts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| h.as_str().or(h["id"].as_str()))
            .map(addr_of)
            .collect();
        let online = if u["online"] == true {
            "online"
        } else {
            "offline"
        };
        println!(
            "     {:<6} {online:<8} mailbox on {}",
            u["name"].as_str().unwrap_or("?"),
            hosts.join(", ")
        );
    }
    Ok(status)
}

/// Waits until `user`'s mailbox is on the host `host_id`.
fn wait_for_holder(home: &Path, name: &str, host_id: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let status: Value = serde_json::from_str(&user(home, &["admin", "status", "--json"])?)?;
        let holds = status["users"].as_array().into_iter().flatten().any(|u| {
            u["name"] == name
                && u["hosts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|h| h == host_id || h["id"] == host_id)
        });
        if holds {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("{name}'s mailbox did not reach host {host_id}")
}

pub async fn run() -> anyhow::Result<()> {
    tokio::task::spawn_blocking(demo).await?
}

fn demo() -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("creating a temp dir")?;
    let d = dir.path();
    println!("== 1. two dispatch units and four hosts on 127.0.0.x");
    // Both units hold the network key: only units it admits may join.
    let network_key = s(&d.join("network.key"))?.to_string();
    let unit_a = Proc::start(&[
        "dispatch",
        "--listen",
        "127.0.0.101:0",
        "--data",
        s(&d.join("unit-a"))?,
        "--network-key",
        &network_key,
        "--replicas",
        "2",
    ])?;
    let unit_b = Proc::start(&[
        "dispatch",
        "--listen",
        "127.0.0.102:0",
        "--data",
        s(&d.join("unit-b"))?,
        "--network-key",
        &network_key,
        "--replicas",
        "2",
        "--peer",
        &unit_a.addr,
    ])?;
    let backbone = format!("{},{}", unit_a.addr, unit_b.addr);
    println!("   dispatch {} at {}", &unit_a.id[..12], unit_a.addr);
    println!("   dispatch {} at {}", &unit_b.id[..12], unit_b.addr);
    let mut hosts = Vec::new();
    for i in 0..4 {
        let ip = format!("127.0.0.{}:0", 111 + i);
        let data = d.join(format!("host-{i}"));
        let host = Proc::start(&[
            "host",
            "--listen",
            &ip,
            "--dispatch",
            &backbone,
            "--data",
            s(&data)?,
            "--heartbeat-ms",
            "500",
        ])?;
        println!("   host     {} at {}", &host.id[..12], host.addr);
        hosts.push(Some(host));
    }

    println!("== 2. alice and bob register; their mailboxes are placed on hosts");
    let (alice, bob) = (d.join("alice"), d.join("bob"));
    for (home, name) in [(&alice, "alice"), (&bob, "bob")] {
        user(home, &["id", "new", name])?;
        print!("   {}", user(home, &["register", "--dispatch", &backbone])?);
    }
    spread(&alice)?;

    println!("== 3. alice mails bob, who is offline, with an attachment");
    let file = d.join("report.txt");
    std::fs::write(&file, "Quarterly numbers: all green.\n".repeat(50_000))?;
    let id = user(
        &alice,
        &[
            "send",
            "--to",
            "bob",
            "--subject",
            "Q3 report",
            "--body",
            "See attached.",
            "--attach",
            s(&file)?,
        ],
    )?;
    println!("   sent mail {}", id.trim());
    print!("{}", indent(&user(&bob, &["inbox"])?));

    println!("== 4. bob's own host comes online: his mailbox moves home");
    let bobs_host = Proc::start(&[
        "host",
        "--listen",
        "127.0.0.120:0",
        "--dispatch",
        &backbone,
        "--data",
        s(&d.join("bob-host"))?,
        "--home",
        s(&bob)?,
        "--heartbeat-ms",
        "500",
    ])?;
    wait_for_holder(&alice, "bob", &bobs_host.id)?;
    spread(&alice)?;
    print!("{}", indent(&user(&bob, &["inbox"])?));

    println!("== 5. the host holding alice's mailbox leaves gracefully");
    let status = spread(&alice)?;
    let alices: Vec<String> = status["users"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|u| u["name"] == "alice")
        .flat_map(|u| u["hosts"].as_array().cloned().unwrap_or_default())
        .filter_map(|h| {
            h.as_str()
                .map(String::from)
                .or(h["id"].as_str().map(String::from))
        })
        .collect();
    let holder = hosts
        .iter_mut()
        .position(|h| h.as_ref().is_some_and(|h| alices.contains(&h.id)))
        .context("no host holds alice's mailbox")?;
    let leaving = hosts[holder].take().context("holder already gone")?;
    println!("   host {} at {} leaves", &leaving.id[..12], leaving.addr);
    leaving.stop_gracefully(Duration::from_secs(60))?;
    spread(&alice)?;
    user(
        &alice,
        &[
            "send",
            "--to",
            "alice",
            "--subject",
            "still here",
            "--body",
            "after the move",
        ],
    )?;
    println!("   alice mails herself after the move; her inbox:");
    print!("{}", indent(&user(&alice, &["inbox"])?));

    println!("== done: stopping every process");
    drop(bobs_host);
    drop(hosts);
    drop((unit_a, unit_b));
    Ok(())
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("     {l}\n")).collect()
}
