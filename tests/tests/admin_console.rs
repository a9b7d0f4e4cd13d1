//! The admin console with real processes: a dispatch unit with `--http`,
//! four hosts run by two operators, and the Python client's example
//! scripts (`clients/python/examples`) against it, with the `dem admin`
//! actions beside them.
//!
//! - `wait_in_sync.py` waits until every mailbox has R replicas in sync;
//! - `offline_users_on_one_operator.py` lists exactly the offline users
//!   whose replicas are all on one operator's hosts;
//! - `dem admin replication` raises R for the network: every mailbox gets
//!   a third replica, and actions without the token are refused;
//! - `drain_busiest_host.py` drains the busiest host: it moves everything
//!   away and exits by itself, everything is back at R in sync on the
//!   others; `dem admin drain --wait` follows a second drain to its end;
//!   and the unit's collected log names who ordered each action.
//!
//! Loopback addresses 127.0.0.110–114.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use dem_client::Session;
use dem_identity::{HostId, KeyPair};
use dem_proto::{HostRequest, HostResponse};
use dem_tests::{
    Daemon, Result, User, admin_status, free_tcp_port, free_udp_port, register_user,
    start_dispatch, start_host, temp_dir, wait_for,
};
use serde_json::Value;
use std::sync::Arc;

const DISPATCH_IP: &str = "127.0.0.110";
const HOST_IPS: [&str; 4] = ["127.0.0.111", "127.0.0.112", "127.0.0.113", "127.0.0.114"];
const OPERATORS: [&str; 4] = ["alice-ops", "alice-ops", "bob-ops", "bob-ops"];
const USERS: usize = 6;
const SYNC_WAIT_S: &str = "90";

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../clients/python/examples")
}

/// Runs an example script; its stdout, or an error with its stderr.
fn python(script: &str, args: &[&str]) -> Result<String> {
    let out = Command::new("python3")
        .arg(examples().join(script))
        .args(args)
        .output()
        .context("running python3: the admin console's scripts need Python 3 (`scripts/test.sh` installs it)")?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "{script} {args:?} failed ({}):\n{}\n{stdout}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

/// `dem admin replication` by "console-test"; its error if it failed.
fn replication(admin: &User, url: &str, token: Option<&str>, r: u8, w: u8) -> Result<String> {
    let (r, w) = (r.to_string(), w.to_string());
    let mut args = vec![
        "admin",
        "replication",
        "--replicas",
        &r,
        "--write-quorum",
        &w,
        "--http",
        url,
        "--by",
        "console-test",
    ];
    if let Some(token) = token {
        args.extend(["--token", token]);
    }
    admin.run(args)
}

/// Runs Python code with the client importable; its stdout.
fn python_code(code: &str) -> Result<String> {
    let out = Command::new("python3")
        .args(["-c", code])
        .env("PYTHONPATH", examples().join(".."))
        .output()
        .context("running python3")?;
    ensure!(
        out.status.success(),
        "python3 -c {code:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A user's id and holders in `dem admin status --json`.
fn status_user(status: &Value, name: &str) -> Result<(String, Vec<String>)> {
    let u = status["users"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|u| u["name"] == name)
        .with_context(|| format!("{name} in the status"))?;
    let hosts = u["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h.as_str().map(str::to_owned))
        .collect();
    Ok((u["id"].as_str().context("user id")?.to_owned(), hosts))
}

/// Asks `host` to describe `user`'s mailbox under a fresh key.
fn describe_as_stranger(dispatch: &str, host: &Daemon, user: &str) -> Result<HostResponse> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let session = Session::new(
            Arc::new(KeyPair::generate()?),
            vec![(dispatch.to_string(), None)],
        )?;
        let req = HostRequest::Describe {
            mailbox: user.parse().context("user id")?,
        };
        let id: HostId = host.id.parse().context("host id")?;
        let answer = tokio::time::timeout(
            Duration::from_secs(10),
            session.host_request(&host.addr, id, &req),
        )
        .await;
        session.close().await;
        Ok(answer.context("no answer")??)
    })
}

fn users_with_replicas(status: &Value, r: usize) -> Result<bool> {
    let users = status["users"].as_array().context("users")?;
    Ok(users.len() == USERS
        && users
            .iter()
            .all(|u| u["hosts"].as_array().is_some_and(|h| h.len() == r)))
}

#[test]
fn the_python_console_and_dem_admin_inspect_change_and_drain_a_running_network() -> Result<()> {
    let tmp = temp_dir();
    let root = tmp.path();
    let http = format!("{DISPATCH_IP}:{}", free_tcp_port(DISPATCH_IP)?);
    let url = format!("http://{http}");
    let dispatch_data = root.join("dispatch");
    let dispatch = start_dispatch(
        DISPATCH_IP,
        &dispatch_data,
        &[
            "--lease-ms",
            "1500",
            "--replicas",
            "2",
            "--write-quorum",
            "1",
            "--http",
            &http,
        ],
    )?;
    let mut hosts: Vec<Daemon> = Vec::new();
    for (i, ip) in HOST_IPS.iter().enumerate() {
        let listen = format!("{ip}:{}", free_udp_port(ip)?);
        hosts.push(start_host(
            &listen,
            &dispatch.addr,
            &root.join(format!("host{i}")),
            &[
                "--heartbeat-ms",
                "300",
                "--keeper-ms",
                "300",
                "--operator",
                OPERATORS[i],
            ],
        )?);
    }
    let operator_of: BTreeMap<String, &str> = hosts
        .iter()
        .zip(OPERATORS)
        .map(|(h, op)| (h.id.clone(), op))
        .collect();
    let mut admin: Option<User> = None;
    for i in 0..USERS {
        let user = register_user(root, &format!("user{i}"), &dispatch.addr)?;
        admin.get_or_insert(user);
    }
    let admin = admin.context("a user")?;
    let token = admin.run([
        "admin",
        "token",
        "--data",
        dispatch_data.to_str().context("path")?,
    ])?;
    let token = token.trim().to_owned();

    // Every mailbox at R = 2, in sync.
    let out = python("wait_in_sync.py", &[&url, "--timeout", SYNC_WAIT_S])?;
    ensure!(out.contains("6 of 6 mailboxes at R = 2 in sync"), "{out}");
    // One mailbox's vectors, as its two holders report them.
    let replicas: Value = serde_json::from_str(&python_code(&format!(
        "import json; from dem_admin import Unit; print(json.dumps(Unit({url:?}).replicas('user1')))"
    ))?)?;
    ensure!(
        replicas["vectors_agree"] == true
            && replicas["holders"].as_array().map(Vec::len) == Some(2),
        "{replicas}"
    );
    let first = &replicas["holders"][0];
    ensure!(
        first["stats"]["mails"].is_u64() && first["plugins"].is_array(),
        "a holder's description: {first}"
    );
    // Anyone else asking a host to describe a mailbox is refused: the
    // counts and plugin names are for the network's units only.
    let (user1, holders1) = status_user(&admin_status(&admin)?, "user1")?;
    let holder = hosts
        .iter()
        .find(|h| holders1.contains(&h.id))
        .context("a holder of user1")?;
    let refused = describe_as_stranger(&dispatch.addr, holder, &user1);
    ensure!(
        matches!(&refused, Err(e) if format!("{e:#}").contains("only a dispatch unit")),
        "a stranger's Describe: {refused:?}"
    );

    // The offline users on one operator: exactly those the status shows.
    let status = admin_status(&admin)?;
    let expected: BTreeSet<String> = status["users"]
        .as_array()
        .context("users")?
        .iter()
        .filter(|u| u["online"] == false)
        .filter(|u| {
            let ops: BTreeSet<&str> = u["hosts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|h| h.as_str().and_then(|h| operator_of.get(h).copied()))
                .collect();
            ops.len() == 1
        })
        .filter_map(|u| u["name"].as_str().map(str::to_owned))
        .collect();
    let listed: Vec<Value> = serde_json::from_str(&python(
        "offline_users_on_one_operator.py",
        &[&url, "--json"],
    )?)?;
    let listed: BTreeSet<String> = listed
        .iter()
        .filter_map(|r| r["user"].as_str().map(str::to_owned))
        .collect();
    println!("offline users on one operator: {listed:?}");
    ensure!(
        listed == expected,
        "listed {listed:?}, expected {expected:?}"
    );
    // The status carries the operator labels.
    for h in status["hosts"].as_array().context("hosts")? {
        let id = h["id"].as_str().context("id")?;
        ensure!(
            h["operator"].as_str() == operator_of.get(id).copied(),
            "host {id}: {h}"
        );
    }

    // Actions need the token, even from loopback.
    let refused = replication(&admin, &url, None, 3, 2)
        .err()
        .context("refused")?
        .to_string();
    ensure!(refused.contains("admin token"), "{refused}");
    let refused = replication(&admin, &url, Some("not-the-token"), 3, 2)
        .err()
        .context("refused")?
        .to_string();
    ensure!(refused.contains("401"), "{refused}");
    let refused = replication(&admin, &url, Some(&token), 2, 3)
        .err()
        .context("refused")?
        .to_string();
    ensure!(
        refused.contains("400") && refused.contains("W = 3"),
        "{refused}"
    );

    // R = 3 for the network: every mailbox gets a third replica.
    replication(&admin, &url, Some(&token), 3, 2)?;
    wait_for("every mailbox at R = 3", Duration::from_secs(60), || {
        users_with_replicas(&admin_status(&admin)?, 3)
    })?;
    admin.run(["admin", "sync", "--http", &url, "--wait", SYNC_WAIT_S])?;

    // Drain the busiest host: it moves everything away and leaves.
    let out = python(
        "drain_busiest_host.py",
        &[&url, "--token", &token, "--by", "drain-script"],
    )?;
    let drained = out
        .split_whitespace()
        .nth(1)
        .context("the script names the host")?
        .to_owned();
    let slot = hosts
        .iter()
        .position(|h| h.id == drained)
        .with_context(|| format!("{drained} is none of the hosts: {out}"))?;
    let exit = hosts[slot].wait_exit(Duration::from_secs(90))?;
    ensure!(exit.success(), "the drained host exited with {exit}");
    wait_for(
        "every mailbox at R = 3 without the drained host",
        Duration::from_secs(60),
        || {
            let s = admin_status(&admin)?;
            let off = s["users"].as_array().into_iter().flatten().all(|u| {
                !u["hosts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|h| h.as_str() == Some(drained.as_str()))
            });
            Ok(off && users_with_replicas(&s, 3)?)
        },
    )?;
    let out = python("wait_in_sync.py", &[&url, "--timeout", SYNC_WAIT_S])?;
    ensure!(out.contains("6 of 6 mailboxes at R = 3 in sync"), "{out}");
    let host = admin.run(["admin", "inspect", "host", &drained, "--http", &url])?;
    let host: Value = serde_json::from_str(&host)?;
    ensure!(
        host.to_string().contains("left"),
        "the drained host: {host}"
    );
    ensure!(
        host["recent_errors"].is_array(),
        "the host's recent errors: {host}"
    );

    // Back to R = 2, then `dem admin drain --wait` follows a second drain
    // until that host has left.
    replication(&admin, &url, Some(&token), 2, 1)?;
    let second = (0..hosts.len())
        .find(|i| *i != slot)
        .context("a second host")?;
    let second_id = hosts[second].id.clone();
    let out = admin.run([
        "admin",
        "drain",
        &second_id,
        "--http",
        &url,
        "--token",
        &token,
        "--by",
        "drain-cli",
        "--wait",
        SYNC_WAIT_S,
    ])?;
    ensure!(out.contains("and left"), "{out}");
    let exit = hosts[second].wait_exit(Duration::from_secs(30))?;
    ensure!(exit.success(), "the second drained host exited with {exit}");
    let out = python("wait_in_sync.py", &[&url, "--timeout", SYNC_WAIT_S])?;
    ensure!(out.contains("6 of 6 mailboxes at R = 2 in sync"), "{out}");

    // Every order is in the unit's log, with who gave it.
    let logs = admin.run(["admin", "logs", "--json", "--limit", "1000"])?;
    for who in ["console-test", "drain-script", "drain-cli"] {
        ensure!(
            logs.lines()
                .any(|l| l.contains("admin action") && l.contains(who)),
            "no admin action by {who} in the unit's log:\n{logs}"
        );
    }
    Ok(())
}
