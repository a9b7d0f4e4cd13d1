//! Placement spreads the load (issue 19), with real processes: 6 hosts
//! and 12 mailboxes at R = 3 (1.5 s leases, 300 ms keeper rounds). The
//! mailboxes are placed, then hosts are killed (SIGKILL) and restarted one
//! after another for a minute, each kill waiting for every mailbox to be
//! back at R live replicas. At the start, and at the end once the leaders'
//! rebalancing moves have filled the hosts that came back empty, no host
//! holds more than 1.5× the mean number of replicas.
//!
//! Which host goes down when is drawn from one seed: `DEM_SEED` if set,
//! else the clock; it is printed first and in every failure. Loopback
//! addresses 127.0.0.240–246.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, ensure};
use dem_tests::seed;
use dem_tests::{
    Daemon, Result, Rng, admin_status, free_udp_port, register_user, start_host, temp_dir, wait_for,
};
use serde_json::Value;

const R: usize = 3;
const DISPATCH_FLAGS: [&str; 6] = [
    "--lease-ms",
    "1500",
    "--replicas",
    "3",
    "--write-quorum",
    "2",
];
const HOST_FLAGS: [&str; 4] = ["--heartbeat-ms", "300", "--keeper-ms", "300"];
const DISPATCH_IP: &str = "127.0.0.240";
const HOST_IPS: [&str; 6] = [
    "127.0.0.241",
    "127.0.0.242",
    "127.0.0.243",
    "127.0.0.244",
    "127.0.0.245",
    "127.0.0.246",
];
const MAILBOXES: usize = 12;
/// How long hosts are killed and restarted.
const CHURN: Duration = Duration::from_secs(60);
/// Every mailbox back at R live replicas within this.
const REGENERATE_MAX: Duration = Duration::from_secs(30);
/// The spread back within bounds after the last restart. Hosts ask to
/// rebalance every 10 keeper rounds (3 s here) while nothing moves.
const REBALANCE_MAX: Duration = Duration::from_secs(40);

fn names() -> Vec<String> {
    (0..MAILBOXES).map(|i| format!("user{i}")).collect()
}

fn online(status: &Value) -> BTreeSet<&str> {
    status["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["online"] == true)
        .filter_map(|h| h["id"].as_str())
        .collect()
}

/// Whether every mailbox is listed on exactly R live hosts.
fn all_at_r(status: &Value) -> Result<bool> {
    let up = online(status);
    let users = status["users"].as_array().context("users")?;
    let mut n = 0;
    for u in users {
        let hosts = u["hosts"].as_array().context("hosts")?;
        let live = hosts
            .iter()
            .all(|h| h.as_str().is_some_and(|h| up.contains(h)));
        if hosts.len() != R || !live {
            return Ok(false);
        }
        n += 1;
    }
    Ok(n == MAILBOXES)
}

/// Replicas per host id, every host counted (also those holding none).
fn shares(status: &Value) -> Result<BTreeMap<String, usize>> {
    let mut per_host: BTreeMap<String, usize> = status["hosts"]
        .as_array()
        .context("hosts")?
        .iter()
        .filter_map(|h| h["id"].as_str().map(|id| (id.to_string(), 0)))
        .collect();
    for u in status["users"].as_array().context("users")? {
        for h in u["hosts"].as_array().into_iter().flatten() {
            if let Some(h) = h.as_str() {
                *per_host.entry(h.to_string()).or_default() += 1;
            }
        }
    }
    Ok(per_host)
}

/// Checks the largest share against 1.5× the mean.
fn spread_within_bounds(status: &Value, when: &str) -> Result<()> {
    let per_host = shares(status)?;
    let total: usize = per_host.values().sum();
    let max = per_host.values().copied().max().unwrap_or(0);
    let counts: Vec<usize> = per_host.values().copied().collect();
    ensure!(total == MAILBOXES * R, "{total} replicas listed");
    // max ≤ 1.5 × total / hosts, in integers.
    ensure!(
        2 * max * per_host.len() <= 3 * total,
        "{when}: the largest host holds {max} of {total} replicas over {} hosts: {counts:?}",
        per_host.len()
    );
    Ok(())
}

/// Prints the shares, then [`spread_within_bounds`].
fn check_spread(status: &Value, when: &str) -> Result<()> {
    let per_host = shares(status)?;
    let counts: Vec<usize> = per_host.values().copied().collect();
    let total: usize = counts.iter().sum();
    println!("{when}: replicas per host {counts:?} (total {total})");
    spread_within_bounds(status, when)
}

#[test]
fn twelve_mailboxes_stay_spread_over_six_hosts_through_restarts() -> Result<()> {
    let seed = seed();
    println!("spread: seed {seed} (replay with DEM_SEED={seed})");
    spread(seed).map_err(|e| anyhow!("seed {seed} (replay with DEM_SEED={seed}): {e:#}"))
}

fn spread(seed: u64) -> Result<()> {
    let mut rng = Rng::new(seed);
    let tmp = temp_dir();
    let root = tmp.path();
    let dispatch = dem_tests::start_dispatch(DISPATCH_IP, &root.join("dispatch"), &DISPATCH_FLAGS)?;
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
    let mut admin = None;
    for name in names() {
        let user = register_user(root, &name, &dispatch.addr)?;
        admin.get_or_insert(user);
    }
    let admin = admin.context("a user")?;
    wait_for("every mailbox at R live replicas", REGENERATE_MAX, || {
        all_at_r(&admin_status(&admin)?)
    })?;
    check_spread(&admin_status(&admin)?, "placed")?;

    let started = Instant::now();
    let mut step = 0;
    while started.elapsed() < CHURN {
        step += 1;
        let slot = rng.below(hosts.len() as u64) as usize;
        println!("step {step} at {:?}: kill host {slot}", started.elapsed());
        if let Some(mut h) = hosts[slot].take() {
            h.kill();
        }
        let took = wait_for(
            &format!("every mailbox back at R live replicas after step {step}"),
            REGENERATE_MAX,
            || all_at_r(&admin_status(&admin)?),
        )?;
        println!("  regenerated in {took:?}; restarting host {slot}");
        hosts[slot] = Some(start(slot)?);
        std::thread::sleep(Duration::from_millis(500 + rng.below(1000)));
    }
    wait_for("every mailbox at R live replicas", REGENERATE_MAX, || {
        let s = admin_status(&admin)?;
        Ok(all_at_r(&s)? && online(&s).len() == HOST_IPS.len())
    })?;
    // The last host killed came back empty, and no failure will place
    // anything on it: the leaders' rebalancing moves fill it.
    let took = wait_for("the replicas spread again", REBALANCE_MAX, || {
        let s = admin_status(&admin)?;
        Ok(all_at_r(&s)? && spread_within_bounds(&s, "rebalancing").is_ok())
    });
    let status = admin_status(&admin)?;
    check_spread(&status, "after the restarts")?;
    println!("rebalanced in {:?}", took?);
    Ok(())
}
