//! `dem bench repl`: the replication numbers BENCHMARKS.md records,
//! measured on real processes over loopback QUIC.
//!
//! Two networks run one after the other, each one `dem dispatch` unit with
//! R=3 and four `dem host` daemons (started with `bench_net`'s `Proc`,
//! driven with its `register`, `deliveries` and `fill`):
//!
//! - `deliver_per_s_w1` and `deliver_per_s_w2`: the same delivery load on
//!   a network with write quorum 1 (127.0.0.170–174) and one with 2
//!   (127.0.0.180–184); an answer means W replicas fsynced the mail.
//! - `regen_ms` (W=2 network): a mailbox of `mails` mails, SIGKILL one of
//!   its three holders, time until the listing names three online hosts
//!   that all report the same version vector (`Holds`). It includes the
//!   failure detection (the lease, `--lease-ms`) and the keeper's round;
//!   `regen_copy_bytes` is what the new replica received.
//! - `reconnect_bytes` against `new_mail_bytes`: SIGSTOP another holder,
//!   deliver `new_mails` mails, SIGCONT it, wait until it reports the
//!   others' vector; the replication bytes it received meanwhile (its
//!   `Traffic` counters: every `Sync`, `Copy`, `Migrate` and `MoveDelta`
//!   frame as it came off the wire) against the `Deliver` frames of those
//!   mails as the senders sent them.
//!
//! Every child is killed when its handle drops, so also on error.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::bench_net::{Proc, User, deliveries, fill, ms, register, sealed};
use dem_client::{MailboxRef, Target};
use dem_identity::HostId;
use dem_node::replica::VersionVector;
use dem_proto::host::ReplicationTraffic;
use dem_proto::{DispatchRequest, DispatchResponse, HostRequest, HostResponse};

/// Sizes of one run.
#[derive(Debug, Clone)]
pub struct ReplParams {
    /// Mails in the mailbox whose replica is regenerated.
    pub mails: u32,
    /// Mails delivered while a replica is stopped.
    pub new_mails: u32,
    /// Deliveries per network in the W=1 / W=2 comparison.
    pub deliveries: u64,
    /// The units' lease: how soon a killed host counts as offline.
    pub lease_ms: u64,
}

/// Longest wait for the replicas to settle after a kill or a resume.
const SETTLE_LIMIT: Duration = Duration::from_secs(120);
/// Alternating rounds of the delivery comparison.
const DELIVERY_ROUNDS: u64 = 4;
/// Concurrent senders in the delivery comparison.
const SENDERS: usize = 8;
/// Recipients in the delivery comparison.
const RECIPIENTS: usize = 8;

/// One unit and four hosts on `base`.0, `base`.1–4.
struct Net {
    hosts: Vec<Proc>,
    backbone: Vec<String>,
    _unit: Proc,
}

impl Net {
    fn start(dir: &std::path::Path, base: u8, w: usize, lease_ms: u64) -> anyhow::Result<Net> {
        let path = |name: String| -> anyhow::Result<String> {
            dir.join(name)
                .to_str()
                .map(String::from)
                .context("temp paths are UTF-8")
        };
        let lease = lease_ms.to_string();
        let unit = Proc::start(
            &[
                "dispatch",
                "--listen",
                &format!("127.0.0.{base}:0"),
                "--data",
                &path(format!("unit-{base}"))?,
                "--replicas",
                "3",
                "--write-quorum",
                &w.to_string(),
                "--lease-ms",
                &lease,
            ],
            &dir.join(format!("unit-{base}.log")),
        )?;
        let heartbeat = (lease_ms / 4).max(100).to_string();
        let mut hosts = Vec::new();
        for i in 1..=4u8 {
            hosts.push(Proc::start(
                &[
                    "host",
                    "--listen",
                    &format!("127.0.0.{}:0", base + i),
                    "--dispatch",
                    &unit.addr,
                    "--data",
                    &path(format!("host-{base}-{i}"))?,
                    "--heartbeat-ms",
                    &heartbeat,
                    "--keeper-ms",
                    "300",
                ],
                &dir.join(format!("host-{base}-{i}.log")),
            )?);
        }
        Ok(Net {
            backbone: vec![unit.addr.clone()],
            hosts,
            _unit: unit,
        })
    }

    fn host(&self, id: HostId) -> anyhow::Result<&Proc> {
        let hex = id.to_hex();
        self.hosts
            .iter()
            .find(|h| h.id == hex)
            .context("a listed host is not one of ours")
    }
}

/// Runs the whole benchmark; returns the JSON object to print.
pub async fn run(p: ReplParams) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir().context("creating a temp dir")?;
    let d = dir.path();

    // Both networks run side by side and take the delivery load in
    // alternating rounds, so that noise on the shared cores falls on both.
    let w1 = Net::start(d, 170, 1, p.lease_ms)?;
    let net = Net::start(d, 180, 2, p.lease_ms)?;
    let w1_users = load_users(&w1).await?;
    let load_users = load_users(&net).await?;
    // A whole number per sender, as `deliveries` sends.
    let per_round = (p.deliveries / DELIVERY_ROUNDS / SENDERS as u64).max(1) * SENDERS as u64;
    let (mut w1_s, mut w2_s) = (0.0, 0.0);
    for _ in 0..DELIVERY_ROUNDS {
        w1_s += per_round as f64 / deliver_round(&w1_users, per_round).await?;
        w2_s += per_round as f64 / deliver_round(&load_users, per_round).await?;
    }
    let delivered = (per_round * DELIVERY_ROUNDS) as f64;
    let (deliver_w1, deliver_w2) = (delivered / w1_s, delivered / w2_s);
    close(&w1_users).await;
    drop(w1);

    // A mailbox of `mails` mails with three replicas.
    let senders = users(&net, "filler", 4).await?;
    let big = register(&net.backbone, "bigbox").await?;
    fill(&senders, &big.name, p.mails).await?;
    let holders = wait_in_sync(&net, &big, None).await?;

    // Regenerate: kill a holder that is not the first listed.
    let victim = *holders.get(1).context("fewer than 2 holders")?;
    let before: Vec<(HostId, ReplicationTraffic)> = traffic_all(&net, &big).await?;
    net.host(victim)?.signal("KILL")?;
    let t = Instant::now();
    let detected = wait_offline(&big, victim).await?;
    let regenerated = wait_in_sync(&net, &big, Some(victim)).await?;
    let regen = t.elapsed();
    let newcomer = *regenerated
        .iter()
        .find(|h| !holders.contains(h))
        .context("no new replica")?;
    let copy_traffic = traffic(&net, &big, newcomer).await?;
    let was = before
        .iter()
        .find(|(h, _)| *h == newcomer)
        .map(|(_, t)| t.clone())
        .unwrap_or_default();
    let regen_copy_bytes = copy_traffic.full_bytes.saturating_sub(was.full_bytes);

    // The counters are per host: let every other mailbox the killed host
    // held finish regenerating first, so that its copies do not count.
    for u in load_users.iter().chain(&senders) {
        wait_in_sync(&net, u, Some(victim)).await?;
    }

    // Reconnect: stop another holder, deliver, resume.
    let paused = *regenerated
        .iter()
        .skip(1)
        .find(|h| **h != newcomer)
        .or(regenerated.get(1))
        .context("a holder to pause")?;
    let before = traffic(&net, &big, paused).await?;
    net.host(paused)?.signal("STOP")?;
    let sent = deliver_counted(&senders[0], &big.name, p.new_mails).await;
    net.host(paused)?.signal("CONT")?;
    let new_mail_bytes = sent?;
    let t = Instant::now();
    wait_in_sync(&net, &big, None).await?;
    let reconnect = t.elapsed();
    // Let pushes still in flight land before reading the counters.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = traffic(&net, &big, paused).await?;
    let total = |t: &ReplicationTraffic| t.sync_bytes + t.full_bytes + t.delta_bytes;
    let reconnect_bytes = total(&after).saturating_sub(total(&before));

    close(&load_users).await;
    close(&senders).await;
    close(std::slice::from_ref(&big)).await;
    drop(net);
    let ratio = |a: f64, b: f64| (a / b * 100.0).round() / 100.0;
    Ok(json!({
        "deliver_per_s_w1": deliver_w1.round(),
        "deliver_per_s_w2": deliver_w2.round(),
        "deliver_w2_vs_w1": ratio(deliver_w2, deliver_w1),
        "deliveries": p.deliveries,
        "mails": p.mails,
        "regen_ms": ms(regen),
        "regen_offline_ms": ms(detected),
        "regen_after_offline_ms": ms(regen.saturating_sub(detected)),
        "regen_copy_bytes": regen_copy_bytes,
        "lease_ms": p.lease_ms,
        "new_mails": p.new_mails,
        "new_mail_bytes": new_mail_bytes,
        "reconnect_bytes": reconnect_bytes,
        "reconnect_sync_bytes": after.sync_bytes.saturating_sub(before.sync_bytes),
        "reconnect_full_bytes": after.full_bytes.saturating_sub(before.full_bytes),
        "reconnect_vs_new_mail": ratio(reconnect_bytes as f64, new_mail_bytes as f64),
        "reconnect_ms": ms(reconnect),
        "replicas": 3,
        "hosts": 4,
    }))
}

/// `n` registered users named `prefix0..`.
async fn users(net: &Net, prefix: &str, n: usize) -> anyhow::Result<Vec<User>> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(register(&net.backbone, &format!("{prefix}{i}")).await?);
    }
    Ok(out)
}

async fn close(users: &[User]) {
    for u in users {
        u.session.close().await;
    }
}

/// [`SENDERS`] senders and then [`RECIPIENTS`] recipients, registered
/// and with their replicas in place.
async fn load_users(net: &Net) -> anyhow::Result<Vec<User>> {
    let mut all = users(net, "sender", SENDERS).await?;
    let rcpts = users(net, "rcpt", RECIPIENTS).await?;
    for r in &rcpts {
        wait_in_sync(net, r, None).await?;
    }
    all.extend(rcpts);
    Ok(all)
}

/// Deliveries per second of `total` mails from the senders of `users`
/// (see [`load_users`]) to its recipients, each sender with one mail in
/// flight.
async fn deliver_round(users: &[User], total: u64) -> anyhow::Result<f64> {
    let (senders, rcpts) = users.split_at(SENDERS.min(users.len()));
    let names: Vec<String> = rcpts.iter().map(|u| u.name.clone()).collect();
    deliveries(senders, &names, total).await
}

/// Waits until the units report `host` offline; how long that took.
async fn wait_offline(user: &User, host: HostId) -> anyhow::Result<Duration> {
    let t = Instant::now();
    loop {
        if let Ok(DispatchResponse::Mailbox(found)) = user
            .session
            .dispatch(&DispatchRequest::LookupUser { user: user.id() })
            .await
            && found.hosts.iter().all(|h| h.host != host || !h.online)
        {
            return Ok(t.elapsed());
        }
        if t.elapsed() > SETTLE_LIMIT {
            bail!("the killed host still counts as online");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Delivers `n` mails from `from` to `to`, 8 in flight; the bytes of their
/// `Deliver` request frames as sent.
async fn deliver_counted(from: &User, to: &str, n: u32) -> anyhow::Result<u64> {
    let mut r = MailboxRef::new(Target::Name(to.to_string()));
    r.lookup(&from.session).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..8u32 {
        let (from, mut r, to) = (from.clone(), r.clone(), to.to_string());
        tasks.spawn(async move {
            let mut bytes = 0u64;
            for i in (lane..n).step_by(8) {
                let signed = sealed(&from, &to, 2_000_000 + u64::from(i))?;
                let answer = r
                    .call(&from.session, |user| {
                        let req = HostRequest::Deliver {
                            to: user,
                            mail: Box::new(signed.clone()),
                        };
                        bytes += rmp_serde::to_vec_named(&req).map_or(0, |b| b.len() as u64 + 4);
                        Ok(req)
                    })
                    .await?;
                if !matches!(answer, HostResponse::Delivered(_)) {
                    bail!("unexpected answer to Deliver: {answer:?}");
                }
            }
            anyhow::Ok(bytes)
        });
    }
    let mut total = 0;
    while let Some(done) = tasks.join_next().await {
        total += done??;
    }
    Ok(total)
}

/// Waits until `user`'s mailbox is listed on three online hosts, none of
/// them `not`, that all report the same version vector; the listing.
async fn wait_in_sync(net: &Net, user: &User, not: Option<HostId>) -> anyhow::Result<Vec<HostId>> {
    let t = Instant::now();
    loop {
        if let Some(hosts) = in_sync(net, user, not).await {
            return Ok(hosts);
        }
        if t.elapsed() > SETTLE_LIMIT {
            bail!(
                "{}'s replicas did not settle within {SETTLE_LIMIT:?}",
                user.name
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn in_sync(net: &Net, user: &User, not: Option<HostId>) -> Option<Vec<HostId>> {
    let found = match user
        .session
        .dispatch(&DispatchRequest::LookupUser { user: user.id() })
        .await
    {
        Ok(DispatchResponse::Mailbox(found)) => found,
        _ => return None,
    };
    if found.hosts.len() != 3 || found.hosts.iter().any(|h| !h.online || Some(h.host) == not) {
        return None;
    }
    let mut first: Option<VersionVector> = None;
    for h in &found.hosts {
        let addr = net.host(h.host).ok()?.addr.clone();
        let req = HostRequest::Holds { mailbox: user.id() };
        let vv = match user.session.host_request(&addr, h.host, &req).await {
            Ok(HostResponse::Holds { vv: Some(vv) }) => vv,
            _ => return None,
        };
        match &first {
            Some(f) if *f != vv => return None,
            Some(_) => {}
            None => first = Some(vv),
        }
    }
    Some(found.hosts.iter().map(|h| h.host).collect())
}

/// The replication counters of `host`, asked as `user`.
async fn traffic(net: &Net, user: &User, host: HostId) -> anyhow::Result<ReplicationTraffic> {
    let addr = net.host(host)?.addr.clone();
    match user
        .session
        .host_request(&addr, host, &HostRequest::Traffic)
        .await?
    {
        HostResponse::Traffic(t) => Ok(t),
        other => bail!("unexpected answer to Traffic: {other:?}"),
    }
}

/// Every host's counters.
async fn traffic_all(net: &Net, user: &User) -> anyhow::Result<Vec<(HostId, ReplicationTraffic)>> {
    let mut out = Vec::new();
    for h in &net.hosts {
        let id: HostId = h.id.parse().context("host id from the child")?;
        out.push((id, traffic(net, user, id).await?));
    }
    Ok(out)
}
