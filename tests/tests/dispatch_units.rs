//! Dispatch units as real processes: two `dem dispatch` units on their own
//! loopback addresses, the second started with `--peer` the first. A host
//! joins through one unit and a user registers through the other; the
//! mailbox's location, reported to the first, is visible through the
//! second. One unit is SIGKILLed and the other keeps answering (a client
//! with both falls back); the killed unit restarts from its data dir with
//! its tables and key intact. A malformed frame gets an error answer while
//! the unit keeps serving another client.
//!
//! The test drives the units with `dem_client`'s `DispatchClient` over QUIC,
//! as hosts and the user CLI do.

use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use dem_client::dispatch::{ClientError, DispatchClient};
use dem_identity::{Epoch, HostId, KeyPair, Name, SignedNameClaim, UserId};
use dem_net::{self as net, Endpoint, Identity, WireError};
use dem_proto::dispatch::{MailboxLookup, ObjectRef};
use dem_proto::{DispatchRequest, DispatchResponse};
use dem_tests::{Daemon, Result, free_udp_port, start_dispatch_at, temp_dir};

const UNIT_IPS: [&str; 2] = ["127.0.0.21", "127.0.0.22"];
const CLIENT_IP: &str = "127.0.0.23";
/// The address the test's host claims (nothing needs to listen there).
const HOST_ADDR: &str = "127.0.0.24:4433";

fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A QUIC endpoint for a client whose key is made of byte `seed`.
fn endpoint(seed: u8) -> Result<Endpoint> {
    let identity = Identity::from_secret_bytes(&[seed; 32])?;
    Ok(Endpoint::bind(format!("{CLIENT_IP}:0").parse()?, identity)?)
}

fn client(seed: u8, units: &[&str]) -> Result<DispatchClient> {
    let backbone = units.iter().map(|u| u.to_string()).collect();
    Ok(DispatchClient::new(endpoint(seed)?, backbone)?.with_timeout(Duration::from_secs(3)))
}

fn start_unit(ip: &str, port: u16, data: &std::path::Path, peers: &[&str]) -> Result<Daemon> {
    let extra: Vec<&str> = peers.iter().flat_map(|p| ["--peer", p]).collect();
    start_dispatch_at(&format!("{ip}:{port}"), data, &extra)
}

/// Asks until `ok` accepts the answer (replication is asynchronous), for
/// at most 10 s; returns the accepted answer.
async fn eventually<T>(
    what: &str,
    c: &DispatchClient,
    req: &DispatchRequest,
    ok: impl Fn(&Result<DispatchResponse, ClientError>) -> Option<T>,
) -> Result<T> {
    let mut last = String::new();
    for _ in 0..100 {
        let r = c.request(req).await;
        if let Some(t) = ok(&r) {
            return Ok(t);
        }
        last = format!("{r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("timed out waiting for {what}; last answer: {last}")
}

fn located(r: &Result<DispatchResponse, ClientError>, host: HostId) -> Option<MailboxLookup> {
    match r {
        Ok(DispatchResponse::Mailbox(m)) if m.hosts.iter().any(|h| h.host == host) => {
            Some(m.clone())
        }
        _ => None,
    }
}

#[test]
fn units_replicate_survive_a_kill_and_restart_with_their_tables() -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(scenario())
}

async fn scenario() -> Result<()> {
    let dir = temp_dir();
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    let port_a = free_udp_port(UNIT_IPS[0])?;
    let port_b = free_udp_port(UNIT_IPS[1])?;
    let mut a = start_unit(UNIT_IPS[0], port_a, &data_a, &[])?;
    let b = start_unit(UNIT_IPS[1], port_b, &data_b, &[a.addr.as_str()])?;
    println!(
        "unit a {} at {}, unit b {} at {}",
        a.id, a.addr, b.id, b.addr
    );
    ensure!(a.id != b.id, "two units share a key");

    // A host joins through a; it learns the backbone from the lease.
    let host_key = [1u8; 32];
    let host = HostId(KeyPair::from_seed(&host_key).public_bytes());
    let via_a_host = client(1, &[&a.addr])?;
    let join = DispatchRequest::Join {
        addr: HOST_ADDR.into(),
        capacity: 100,
        load: 0,
        operator: None,
    };
    match via_a_host.request(&join).await? {
        DispatchResponse::Lease { units, .. } => println!("lease lists {} unit(s)", units.len()),
        other => bail!("join answered {other:?}"),
    }

    // Alice registers through b, once b has learned a's host.
    let alice = KeyPair::from_seed(&[7; 32]);
    let via_b = client(2, &[&b.addr])?;
    let claim = SignedNameClaim::sign(&alice, Name::new("alice")?, None, now_ms())?;
    let register = DispatchRequest::Register { claim };
    let placement = eventually("b to place alice", &via_b, &register, |r| match r {
        Ok(DispatchResponse::Registered { placement, .. }) => Some(placement.clone()),
        _ => None,
    })
    .await?;
    ensure!(placement.host == host, "placed on an unknown host");

    // The host reports holding the mailbox to a; b sees where it is.
    let update = DispatchRequest::LocationUpdate {
        object: ObjectRef::Mailbox(alice.user_id()),
        hosts: vec![host],
        epoch: Epoch(1),
    };
    eventually("a to accept the location", &via_a_host, &update, |r| {
        r.as_ref().ok().map(|_| ())
    })
    .await?;
    let lookup = DispatchRequest::LookupName {
        name: "alice".into(),
    };
    eventually("b to see alice's mailbox", &via_b, &lookup, |r| {
        located(r, host)
    })
    .await?;

    // A name taken through one unit is refused through the other, clearly.
    let bob = KeyPair::from_seed(&[8; 32]);
    let steal = DispatchRequest::Register {
        claim: SignedNameClaim::sign(&bob, Name::new("alice")?, None, now_ms())?,
    };
    let via_a = client(3, &[&a.addr])?;
    let err = via_a
        .request(&steal)
        .await
        .err()
        .context("a gave alice's name to bob")?;
    let refusal = err.wire().context("a refusal")?;
    println!("refused: {refusal}");
    ensure!(refusal.message.contains("is taken by"), "{refusal}");

    // SIGKILL a: b still answers, and a client of both falls back to b.
    let both = client(4, &[&a.addr, &b.addr])?;
    a.kill();
    for _ in 0..3 {
        let r = both.request(&lookup).await;
        ensure!(located(&r, host).is_some(), "after a's death: {r:?}");
    }

    // a restarts from its data dir: same key, tables intact, before any
    // peer has told it anything (it starts without --peer).
    let a = start_unit(UNIT_IPS[0], port_a, &data_a, &[])?;
    let via_a = client(5, &[&a.addr])?;
    let r = via_a.request(&lookup).await;
    ensure!(located(&r, host).is_some(), "restarted a lost alice: {r:?}");
    let user: UserId = alice.user_id();
    println!("a restarted as {} and still knows {user}", a.id);

    // A malformed frame gets an error answer; b keeps serving others.
    let raw = endpoint(6)?;
    let (conn, _) = raw.connect_unpinned(b.addr.parse()?).await?;
    let (mut send, mut recv) = conn.open_stream().await?;
    net::write_raw_frame(&mut send, b"\xc1\xc1 definitely not a request").await?;
    send.finish()?;
    let answer: Option<std::result::Result<DispatchResponse, WireError>> =
        net::read_frame(&mut recv, 1 << 20).await?;
    match answer {
        Some(Err(e)) if e.code == WireError::BAD_REQUEST => println!("malformed frame: {e}"),
        other => bail!("malformed frame answered {other:?}"),
    }
    let r = via_b.request(&lookup).await;
    ensure!(located(&r, host).is_some(), "b after the bad frame: {r:?}");

    // A key the network key never admitted cannot announce itself as a
    // unit, nor push changes, with or without a record of itself.
    let stranger = endpoint(7)?;
    let (conn, _) = stranger.connect_unpinned(b.addr.parse()?).await?;
    let announce = DispatchRequest::Announce {
        addr: "127.0.0.23:4000".into(),
        admission: vec![0; 64],
    };
    let leave = DispatchRequest::Replicate { updates: vec![] };
    for req in [announce, leave] {
        let r: std::result::Result<DispatchResponse, _> =
            conn.request(&req, 1 << 20, Duration::from_secs(3)).await;
        match r {
            Err(net::NetError::Remote(w)) if w.code == WireError::FORBIDDEN => {
                println!("stranger refused: {w}")
            }
            other => bail!("a stranger unit was answered {other:?}"),
        }
    }
    // A real unit of another network (its own network.key) is refused too.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere)?;
    let port_c = free_udp_port(CLIENT_IP)?;
    let _c = start_unit(CLIENT_IP, port_c, &elsewhere.join("unit-c"), &[&b.addr])?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    match via_b.request(&DispatchRequest::Status).await? {
        DispatchResponse::Status(s) => ensure!(
            s.units.iter().all(|u| !u.addr.starts_with(CLIENT_IP)),
            "b lists a unit of another network: {:?}",
            s.units
        ),
        other => bail!("status answered {other:?}"),
    }
    drop(b);
    Ok(())
}
