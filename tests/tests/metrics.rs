//! A host started with `--http` serves `/metrics` in the Prometheus text
//! format, and what it shows follows what the host did: a delivery and its
//! latency, the requests by kind, the instance slots. Real processes over
//! QUIC; the scrape is a plain HTTP/1.1 GET.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use dem_tests::{
    Result, User, free_udp_port, send_mail, start_dispatch, start_host, temp_dir, wait_for,
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
        sample(&after, "dem_requests_total{kind=\"deliver\"}") == Some(1.0),
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
    // Nothing in it names a user or a subject.
    ensure!(
        !after.contains("counted") && !after.contains("alice"),
        "{after}"
    );
    Ok(())
}
