//! A move onto an older copy ships only the missing ops, on
//! real `dem` processes: bob's home host takes his mailbox, is SIGKILLed
//! (so it keeps a copy on disk), mail keeps arriving at the other
//! replicas, and when the home host starts again and pulls the mailbox
//! home, the holder sends it a delta (`MoveDelta`), not the whole state.
//! The home host's replication counters (`HostRequest::Traffic`) show it.
//! Loopback addresses 127.0.0.186–189.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use dem_client::Session;
use dem_identity::{HostId, KeyPair};
use dem_proto::host::ReplicationTraffic;
use dem_proto::{HostRequest, HostResponse};
use dem_tests::{
    Daemon, Result, User, admin_status, arg, free_udp_port, holders_in, inbox_ids, register_user,
    send_mail, temp_dir,
};

fn start_host(
    tmp: &std::path::Path,
    ip: &str,
    name: &str,
    dispatch: &str,
    home: Option<&std::path::Path>,
) -> Result<Daemon> {
    let listen = format!("{ip}:{}", free_udp_port(ip)?);
    let mut extra = vec!["--heartbeat-ms", "300", "--keeper-ms", "300"];
    if let Some(h) = home {
        extra.extend(["--home", arg(h)]);
    }
    dem_tests::start_host(&listen, dispatch, &tmp.join(name), &extra)
}

fn holders(user: &User) -> Result<Vec<String>> {
    holders_in(&admin_status(user)?, "bob")
}

fn wait_for(what: &str, cond: impl FnMut() -> Result<bool>) -> Result<()> {
    dem_tests::wait_for(what, Duration::from_secs(40), cond).map(drop)
}

/// `host`'s replication counters, asked over the wire.
fn traffic(dispatch: &str, host: &Daemon) -> Result<ReplicationTraffic> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let key = Arc::new(KeyPair::generate()?);
        let session = Session::new(key, vec![(dispatch.to_string(), None)])?;
        let id: HostId = host.id.parse().context("host id")?;
        let answer = session
            .host_request(&host.addr, id, &HostRequest::Traffic)
            .await;
        session.close().await;
        match answer? {
            HostResponse::Traffic(t) => Ok(t),
            other => bail!("unexpected answer {other:?}"),
        }
    })
}

#[test]
fn a_home_host_reconnecting_with_a_stale_copy_gets_only_the_missing_ops() -> Result<()> {
    let tmp = temp_dir();
    let t = tmp.path();
    let extra = [
        "--replicas",
        "2",
        "--write-quorum",
        "1",
        "--lease-ms",
        "2000",
    ];
    let dispatch = dem_tests::start_dispatch("127.0.0.186", &t.join("dispatch"), &extra)?;
    let a = start_host(t, "127.0.0.187", "host-a", &dispatch.addr, None)?;
    let b = start_host(t, "127.0.0.188", "host-b", &dispatch.addr, None)?;
    let alice = register_user(t, "alice", &dispatch.addr)?;
    let bob = register_user(t, "bob", &dispatch.addr)?;

    // Bob's host pulls the mailbox home (it holds nothing yet: a whole
    // move), then takes 20 mails.
    let mut home = start_host(
        t,
        "127.0.0.189",
        "bob-host",
        &dispatch.addr,
        Some(&bob.home),
    )?;
    wait_for("bob's mailbox to move home", || {
        Ok(holders(&bob)?.first() == Some(&home.id))
    })?;
    let mut sent = Vec::new();
    for i in 0..20 {
        sent.push(send_mail(&alice, "bob", &format!("before {i}"))?);
    }
    // Let the keeper's anti-entropy push them to the other replica.
    std::thread::sleep(Duration::from_secs(2));

    // The home host dies with its copy on disk; mail goes on elsewhere.
    home.kill();
    let home_id = home.id.clone();
    wait_for("the dead home host to be dropped", || {
        let h = holders(&bob)?;
        Ok(h.len() == 2 && !h.contains(&home_id))
    })?;
    for i in 0..5 {
        sent.push(send_mail(&alice, "bob", &format!("while away {i}"))?);
    }

    // It comes back and pulls the mailbox home again: a delta this time.
    let listen = home.addr.clone();
    drop(home);
    let home = dem_tests::start_host(
        &listen,
        &dispatch.addr,
        &t.join("bob-host"),
        &[
            "--heartbeat-ms",
            "300",
            "--keeper-ms",
            "300",
            "--home",
            arg(&bob.home),
        ],
    )?;
    ensure!(home.id == home_id, "the same host key");
    wait_for("bob's mailbox to move home again", || {
        Ok(holders(&bob)?.first() == Some(&home.id))
    })?;
    let got = traffic(&dispatch.addr, &home)?;
    println!("home host after the reconnect: {got:?}");
    if std::env::var_os("DEM_TEST_LOGS").is_some() {
        for d in [&a, &b, &home] {
            println!("--- {}\n{}", d.id, d.stderr());
        }
    }
    ensure!(got.delta_moves == 1, "one delta move: {got:?}");
    ensure!(got.full_moves == 0, "no whole move: {got:?}");
    ensure!(
        got.delta_bytes > 0 && got.delta_bytes < 64 * 1024,
        "5 mails' ops, not the mailbox: {got:?}"
    );
    let mut ids = inbox_ids(&bob)?;
    ids.sort();
    sent.sort();
    ensure!(ids == sent, "inbox {ids:?} against sent {sent:?}");
    let late = send_mail(&alice, "bob", "welcome back")?;
    ensure!(inbox_ids(&bob)?.contains(&late), "late mail missing");
    Ok(())
}
