//! A host started with `--http` serves `/metrics` in the Prometheus text
//! format, and what it shows follows what the host did: a delivery and its
//! latency, the requests by kind, the instance slots, the store's fsyncs
//! and the guests' fuel; a `dem admin move` on both ends; replica links'
//! pushes. Real processes over QUIC; the scrape is a plain HTTP/1.1 GET.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use dem_tests::{
    Daemon, Result, User, admin_status, free_udp_port, holders_in, register_user, send_mail,
    start_dispatch, start_host, temp_dir, wait_for,
};

const DISPATCH_IP: &str = "127.0.0.61";
const HOST_IP: &str = "127.0.0.62";

/// A free TCP port on `ip`.
fn free_tcp_port(ip: &str) -> Result<u16> {
    Ok(std::net::TcpListener::bind((ip, 0))?.local_addr()?.port())
}

fn scrape(addr: &str) -> Result<String> {
    let mut conn = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        conn,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer)?;
    ensure!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    Ok(answer)
}

/// The value of the sample `name` (with its labels) in a scrape.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Every family a host shows before it did anything (requests, refusals
/// and deliveries show by their label once one happened): each must be in
/// a scrape, with its HELP.
const FAMILIES: &[&str] = &[
    "dem_delivery_seconds",
    "dem_moves",
    "dem_move_seconds",
    "dem_regenerations",
    "dem_rebalance_moves",
    "dem_anti_entropy_bytes",
    "dem_store_fsync_seconds",
    "dem_mailboxes_awake",
    "dem_mailbox_actors",
    "dem_instance_slots",
    "dem_store_commits",
    "dem_guest_traps",
    "dem_guest_fuel_used",
    "dem_connections_open",
    "dem_connections_refused",
    "dem_replica_lag_ops",
    "dem_replica_lag_max_ops",
];

/// A host with `--http` on a free port of its IP; its scrape address.
fn host_with_http(
    ip: &str,
    dispatch: &str,
    data: &std::path::Path,
    extra: &[&str],
) -> Result<(Daemon, String)> {
    let http = format!("{ip}:{}", free_tcp_port(ip)?);
    let listen = format!("{ip}:{}", free_udp_port(ip)?);
    let mut args = vec!["--http", http.as_str()];
    args.extend_from_slice(extra);
    Ok((start_host(&listen, dispatch, data, &args)?, http))
}

#[test]
fn a_host_shows_its_deliveries_requests_and_slots_on_metrics() -> Result<()> {
    let tmp = temp_dir();
    let dispatch = start_dispatch(DISPATCH_IP, &tmp.path().join("unit"), &[])?;
    let http = format!("{HOST_IP}:{}", free_tcp_port(HOST_IP)?);
    let listen = format!("{HOST_IP}:{}", free_udp_port(HOST_IP)?);
    let _host = start_host(
        &listen,
        &dispatch.addr,
        &tmp.path().join("host"),
        &["--http", &http, "--instance-slots", "32"],
    )?;
    let before = scrape(&http)?;
    ensure!(
        sample(&before, "dem_instance_slots") == Some(32.0),
        "{before}"
    );
    ensure!(before.trim_end().ends_with("# EOF"), "{before}");
    for family in FAMILIES {
        ensure!(
            before.contains(&format!("# HELP {family} ")),
            "no {family}: {before}"
        );
    }
    // The refusal reasons show at 0 before any refusal.
    ensure!(
        sample(&before, "dem_connections_refused_total{reason=\"address\"}") == Some(0.0),
        "{before}"
    );

    let (alice, bob) = (
        User::new(tmp.path().join("alice")),
        User::new(tmp.path().join("bob")),
    );
    for (user, name) in [(&alice, "alice"), (&bob, "bob")] {
        user.run(["id", "new", name])?;
        user.run(["register", "--dispatch", &dispatch.addr])?;
    }
    send_mail(&alice, "bob", "counted")?;
    // The delivery is answered before the scrape, but let the counters of
    // a request still being answered settle.
    wait_for("the delivery on /metrics", Duration::from_secs(10), || {
        let text = scrape(&http)?;
        Ok(sample(&text, "dem_deliveries_total{outcome=\"delivered\"}") == Some(1.0))
    })?;
    let after = scrape(&http)?;
    ensure!(
        sample(&after, "dem_delivery_seconds_count") == Some(1.0),
        "{after}"
    );
    ensure!(
        sample(&after, "dem_requests_total{kind=\"deliver_sealed\"}") == Some(1.0),
        "{after}"
    );
    // Creating the mailboxes went through owner-signed orders.
    ensure!(
        sample(&after, "dem_requests_total{kind=\"create\"}").is_some_and(|n| n >= 2.0),
        "{after}"
    );
    ensure!(
        sample(&after, "dem_store_commits_total").is_some_and(|n| n >= 1.0),
        "{after}"
    );
    // Every commit's fsync is timed, and the mailboxes' guests burned fuel
    // creating the mailboxes and delivering.
    ensure!(
        sample(&after, "dem_store_fsync_seconds_count")
            == sample(&after, "dem_store_commits_total"),
        "{after}"
    );
    ensure!(
        sample(&after, "dem_guest_fuel_used_total").is_some_and(|n| n > 0.0),
        "{after}"
    );
    ensure!(
        sample(&after, "dem_guest_traps_total") == Some(0.0),
        "{after}"
    );
    // The connection to the dispatch unit at least.
    ensure!(
        sample(&after, "dem_connections_open").is_some_and(|n| n >= 1.0),
        "{after}"
    );
    // Nothing in it names a user or a subject.
    ensure!(
        !after.contains("counted") && !after.contains("alice"),
        "{after}"
    );
    Ok(())
}

#[test]
fn a_move_shows_on_both_hosts_metrics() -> Result<()> {
    let tmp = temp_dir();
    // One copy per mailbox, so that the move is of the one replica.
    let dispatch = start_dispatch(
        "127.0.0.63",
        &tmp.path().join("unit"),
        &["--replicas", "1", "--write-quorum", "1"],
    )?;
    let mut hosts = Vec::new();
    for (i, ip) in ["127.0.0.64", "127.0.0.65"].into_iter().enumerate() {
        let data = tmp.path().join(format!("host{i}"));
        hosts.push(host_with_http(ip, &dispatch.addr, &data, &[])?);
    }
    let bob = register_user(tmp.path(), "bob", &dispatch.addr)?;
    let held = holders_in(&admin_status(&bob)?, "bob")?;
    ensure!(held.len() == 1, "bob's mailbox on {held:?}");
    let source = hosts
        .iter()
        .position(|(h, _)| h.id == held[0])
        .context("the holder is one of the hosts")?;
    let (target, target_http) = &hosts[1 - source];
    bob.run(["admin", "move", "bob", "--to", &target.id])?;
    ensure!(holders_in(&admin_status(&bob)?, "bob")? == vec![target.id.clone()]);

    let from = scrape(&hosts[source].1)?;
    ensure!(
        sample(
            &from,
            "dem_moves_total{direction=\"out\",outcome=\"moved\"}"
        ) == Some(1.0),
        "{from}"
    );
    ensure!(
        sample(&from, "dem_move_seconds_count{direction=\"out\"}") == Some(1.0),
        "{from}"
    );
    // The target acknowledges before the source finishes: by the time the
    // command returned, it has counted.
    let to = scrape(target_http)?;
    ensure!(
        sample(&to, "dem_moves_total{direction=\"in\",outcome=\"moved\"}") == Some(1.0),
        "{to}"
    );
    ensure!(
        sample(&to, "dem_move_seconds_count{direction=\"in\"}") == Some(1.0),
        "{to}"
    );
    Ok(())
}

#[test]
fn replica_links_count_the_bytes_they_push() -> Result<()> {
    let tmp = temp_dir();
    let dispatch = start_dispatch(
        "127.0.0.66",
        &tmp.path().join("unit"),
        &["--replicas", "2", "--write-quorum", "2"],
    )?;
    let mut hosts = Vec::new();
    for (i, ip) in ["127.0.0.67", "127.0.0.68"].into_iter().enumerate() {
        let data = tmp.path().join(format!("host{i}"));
        hosts.push(host_with_http(ip, &dispatch.addr, &data, &[])?);
    }
    let alice = register_user(tmp.path(), "alice", &dispatch.addr)?;
    let _bob = register_user(tmp.path(), "bob", &dispatch.addr)?;
    send_mail(&alice, "bob", "replicated")?;
    // With W = 2 the delivery's ops reached the other replica over a link
    // before it was answered.
    let pushed = |kind: &str| -> Result<f64> {
        let mut total = 0.0;
        for (_, http) in &hosts {
            let name = format!("dem_anti_entropy_bytes_total{{kind=\"{kind}\"}}");
            total += sample(&scrape(http)?, &name).unwrap_or(0.0);
        }
        Ok(total)
    };
    wait_for("pushed ops on /metrics", Duration::from_secs(10), || {
        Ok(pushed("sync")? > 0.0)
    })?;
    // Once in sync, no link's peer lacks anything.
    wait_for("no replica lag", Duration::from_secs(10), || {
        let mut lag = 0.0;
        for (_, http) in &hosts {
            let text = scrape(http)?;
            lag += sample(&text, "dem_replica_lag_ops").context("a lag sample")?;
        }
        Ok(lag == 0.0)
    })?;
    Ok(())
}
