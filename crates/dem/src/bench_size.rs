//! `dem bench size`: the size scenario of issue 16, on real processes. One
//! mailbox of 100,000 mails whose messages total more than 2 GB must work
//! end to end: deliver, list, read, move, restart, with the component's
//! state under 300 bytes a mail (the messages live in the hosts' blob
//! stores beside it).
//!
//! The bench starts one `dem dispatch` unit (R=2, W=1) and three `dem host`
//! daemons on 127.0.0.250–253 with `bench_net`'s `Proc`, and drives them as
//! a client with the library code `dem send`, `dem inbox` and `dem read
//! --raw` use:
//!
//! 1. fills one mailbox with `mails` text mails of about `mail_bytes` each
//!    (`bench_mail::sized_from`, each delivery made unique), 16 in flight
//!    per sender; `deliver_per_s` and `stored_bytes`;
//! 2. lists it whole in pages of 1,000 (`ListFolder`, as `dem inbox`) and
//!    checks the count (`list_ms`);
//! 3. reads a random sample raw (`read_message`, as `dem read --raw`) and
//!    checks each against the bytes sent (`read_ms_per_mail`);
//! 4. moves the holder's copy to the host that holds none (`move_ms`,
//!    `move_bytes`: every blob travels) and reads the sample there;
//! 5. tries to move it onto the host holding the replica, which already
//!    names every blob, so only the index would travel
//!    (`move_index_only_ms`, or why it was not measured: dispatch refuses
//!    a target already listed); with `--onto-copy`, then sets R=1 and
//!    moves onto the trimmed copy, unlisted but naming every blob, the
//!    nearest real case (`move_onto_unlisted_copy`);
//! 6. SIGKILLs the holder, starts it again on its data dir and address,
//!    and times the first answered listing (`restart_ms`), then checks the
//!    count and the sample again;
//! 7. asks the mailbox's `Stats` for its state bytes per mail (≤ 300).
//!
//! A failed check does not hide the others: the report lists every
//! failure and the command then fails. Every wait is bounded. Children
//! are killed when their handles drop, so also on error.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use serde_json::{Value, json};

use super::bench_mail::{StoredMail, sized_from, unique};
use super::bench_net::{Proc, User, deliver_signed, ms, register};
use super::bench_size_check::{
    Sample, first_list_at, holders, list_all, pull, stats, traffic, trim_to_one, wait_in_sync,
};
use dem_client::{MailboxRef, Target, now_ms};
use dem_identity::HostId;
use dem_proto::SignedMail;

/// Sizes of one run.
#[derive(Debug, Clone)]
pub struct SizeParams {
    pub mails: u32,
    /// The mean stored size of a mail.
    pub mail_bytes: usize,
    /// Mails read and checked after each step.
    pub sample: usize,
    /// Also set R=1 and move onto the trimmed replica's unlisted copy.
    pub onto_copy: bool,
}

/// Senders filling the mailbox, each with its own session.
const SENDERS: usize = 4;
/// Deliveries in flight per sender.
const IN_FLIGHT: usize = 16;
/// Distinct messages per sender; each delivery is made unique.
const POOL: u64 = 64;
/// The goal of issue 16.
const STATE_BYTES_PER_MAIL_MAX: f64 = 300.0;
/// Longest wait for a restarted host to answer, and for the replica to
/// catch up.
const SETTLE_LIMIT: Duration = Duration::from_secs(300);

/// One host's command line, kept to start it again.
struct HostSpec {
    args: Vec<String>,
    log: std::path::PathBuf,
}

/// Runs the scenario; returns the JSON object to print.
pub async fn run(p: SizeParams) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir().context("creating a temp dir")?;
    let d = dir.path();
    let path = |name: &str| -> anyhow::Result<String> {
        d.join(name)
            .to_str()
            .map(String::from)
            .context("temp paths are UTF-8")
    };
    // A long lease: the restart below must not look like a lost host
    // whose replica the keeper regenerates meanwhile.
    let http = free_tcp("127.0.0.250")?;
    let unit = Proc::start(
        &[
            "dispatch",
            "--listen",
            "127.0.0.250:0",
            "--http",
            &http,
            "--data",
            &path("unit")?,
            "--replicas",
            "2",
            "--write-quorum",
            "1",
            "--lease-ms",
            "600000",
        ],
        &d.join("unit.log"),
    )?;
    let mut specs = Vec::new();
    let mut hosts = Vec::new();
    for i in 0..3 {
        let spec = HostSpec {
            args: [
                "host",
                "--listen",
                &format!("127.0.0.{}:0", 251 + i),
                "--dispatch",
                &unit.addr,
                "--data",
                &path(&format!("host-{i}"))?,
                "--heartbeat-ms",
                "1000",
                // Rounds often enough to trim a replica soon after R drops
                // (step 5), with a grace of 5 rounds before an unlisted
                // copy may go: time for the move onto it.
                "--keeper-ms",
                "2000",
            ]
            .map(String::from)
            .to_vec(),
            log: d.join(format!("host-{i}.log")),
        };
        hosts.push(Some(start(&spec)?));
        specs.push(spec);
    }
    let backbone = vec![unit.addr.clone()];
    let mut senders = Vec::new();
    for i in 0..SENDERS {
        senders.push(register(&backbone, &format!("sizer{i}")).await?);
    }
    let big = register(&backbone, "bigbox").await?;
    let mut failed: Vec<String> = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            failed.push(what);
        }
    };

    // 1. Deliver.
    let run_tag = now_ms().to_string();
    let pools = pools(&senders, p.mail_bytes)?;
    let t = Instant::now();
    let stored_bytes = bounded(
        "filling the mailbox",
        Duration::from_secs(120) + Duration::from_millis(20) * p.mails,
        fill(&senders, &pools, &big.name, p.mails, &run_tag),
    )
    .await??;
    let fill_s = t.elapsed().as_secs_f64();

    // 2. List.
    let count = p.mails as usize;
    let t = Instant::now();
    let ids = list_all(&big).await?;
    let list_ms = ms(t.elapsed());
    check(
        ids.len() == count,
        format!("listed {} of {count}", ids.len()),
    );
    let sample = Sample::draw(&ids, p.sample, &pools, &run_tag);

    // 3. Read.
    let read = sample.check(&big).await?;
    check(read.bad.is_empty(), format!("read: {:?}", read.bad));

    // 4. Move to the host that holds none.
    let listed = holders(&big).await?;
    let [primary, replica] = listed[..] else {
        bail!("the mailbox is listed on {listed:?}, not on two hosts");
    };
    let proc_of = |hosts: &[Option<Proc>], id: HostId| -> anyhow::Result<usize> {
        hosts
            .iter()
            .position(|h| h.as_ref().is_some_and(|h| h.id == id.to_hex()))
            .context("a listed host is not one of ours")
    };
    let (pi, ri) = (proc_of(&hosts, primary)?, proc_of(&hosts, replica)?);
    let ti = (0..hosts.len())
        .find(|i| *i != pi && *i != ri)
        .context("no third host")?;
    let addr = |hosts: &[Option<Proc>], i: usize| -> anyhow::Result<(String, HostId)> {
        let h = hosts[i].as_ref().context("a stopped host")?;
        Ok((h.addr.clone(), h.id.parse().context("host id")?))
    };
    // The replica must name every blob before the index-only attempt.
    wait_in_sync(&big, &[addr(&hosts, pi)?, addr(&hosts, ri)?], SETTLE_LIMIT).await?;
    let target = addr(&hosts, ti)?;
    let before = traffic(&big, &target).await?;
    let moved = pull(&big, &addr(&hosts, pi)?, &target).await?;
    let move_bytes = traffic(&big, &target).await?.full_bytes - before.full_bytes;
    let move_ms = match moved {
        Ok(took) => Some(ms(took)),
        Err(e) => {
            check(false, format!("the move failed: {e}"));
            None
        }
    };
    let read_moved = sample.check(&big).await?;
    check(
        read_moved.bad.is_empty(),
        format!("read after the move: {:?}", read_moved.bad),
    );

    // 5. Move onto the replica, which names every blob already.
    let to_replica = addr(&hosts, ri)?;
    let before = traffic(&big, &to_replica).await?;
    let (mut holder, index_only_ms, index_only_note) =
        match pull(&big, &target, &to_replica).await? {
            Ok(took) => (ri, Some(ms(took)), None),
            Err(e) => (ti, None, Some(format!("not measured: {e}"))),
        };
    let index_only_bytes = traffic(&big, &to_replica).await?.full_bytes - before.full_bytes;
    if index_only_ms.is_some() {
        let read_again = sample.check(&big).await?;
        check(
            read_again.bad.is_empty(),
            format!("read after the index-only move: {:?}", read_again.bad),
        );
    }

    // 5b (`--onto-copy`). The nearest real case: R set to 1, so one copy is trimmed and
    // stays a while unlisted; a move onto it is authorized, and the
    // source sends only what that copy lacks.
    let onto_copy = if p.onto_copy && index_only_ms.is_none() {
        let token = std::fs::read_to_string(d.join("unit").join("admin.token"))
            .context("reading the unit's admin token")?;
        let kept = trim_to_one(&big, &format!("http://{http}"), token.trim(), SETTLE_LIMIT).await?;
        // The copy trimmed is whichever of the two the keeper let go.
        let ki = proc_of(&hosts, kept)?;
        let other = if ki == ti { ri } else { ti };
        let onto = addr(&hosts, other)?;
        let before = traffic(&big, &onto).await?;
        let moved = pull(&big, &addr(&hosts, ki)?, &onto).await?;
        let after = traffic(&big, &onto).await?;
        match moved {
            Ok(took) => {
                holder = other;
                let read = sample.check(&big).await?;
                let (read_ms, bad) = (round3(read.ms_per_mail), read.bad);
                let unread = bad.len();
                check(
                    bad.is_empty(),
                    format!("read after the move onto the copy: {bad:?}"),
                );
                Some(json!({
                    "ms": ms(took),
                    "full_bytes": after.full_bytes - before.full_bytes,
                    "delta_bytes": after.delta_bytes - before.delta_bytes,
                    "delta_moves": after.delta_moves - before.delta_moves,
                    "full_moves": after.full_moves - before.full_moves,
                    "read_ms_per_mail": read_ms,
                    "reads_failed": unread,
                }))
            }
            Err(e) => Some(json!({ "note": format!("not measured: {e}") })),
        }
    } else {
        None
    };

    // 6. Restart the holder.
    let now = holders(&big).await?;
    if let Some(first) = now.first() {
        holder = proc_of(&hosts, *first)?;
    }
    let at = addr(&hosts, holder)?;
    hosts[holder]
        .as_ref()
        .context("the holder is stopped")?
        .signal("KILL")?;
    drop(hosts[holder].take());
    // A fresh client (`dem inbox` is one process per call) has no
    // connection to the killed process; this session's cached one would
    // only time out.
    big.session.drop_connection(&at.0).await;
    let mut spec_args = specs[holder].args.clone();
    spec_args[2] = at.0.clone();
    let t = Instant::now();
    hosts[holder] = Some(start(&HostSpec {
        args: spec_args,
        log: specs[holder].log.with_extension("restart.log"),
    })?);
    let listening_ms = ms(t.elapsed());
    first_list_at(&big, &at, SETTLE_LIMIT).await?;
    let restart_ms = ms(t.elapsed());
    let ids_after = list_all(&big).await?;
    check(
        ids_after.len() == count,
        format!("listed {} of {count} after the restart", ids_after.len()),
    );
    let read_restarted = sample.check(&big).await?;
    check(
        read_restarted.bad.is_empty(),
        format!("read after the restart: {:?}", read_restarted.bad),
    );

    // 7. The state.
    let st = stats(&big).await?;
    let per_mail = st.state_bytes as f64 / f64::from(st.mails.max(1));
    check(
        st.mails as usize == count,
        format!("Stats counts {} mails", st.mails),
    );
    check(
        per_mail <= STATE_BYTES_PER_MAIL_MAX,
        format!("{per_mail:.0} state bytes a mail, over {STATE_BYTES_PER_MAIL_MAX}"),
    );
    let disk = dir_bytes(&d.join(format!("host-{holder}")));

    for u in senders.iter().chain([&big]) {
        u.session.close().await;
    }
    drop(hosts);
    drop(unit);
    let report = json!({
        "mails": p.mails,
        "mail_bytes_mean": (stored_bytes as f64 / f64::from(p.mails.max(1))).round(),
        "stored_bytes": stored_bytes,
        "stored_gib": (stored_bytes as f64 / f64::from(1u32 << 30) * 100.0).round() / 100.0,
        "holder_disk_bytes": disk,
        "deliver_per_s": (f64::from(p.mails) / fill_s).round(),
        "deliver_mb_per_s": (stored_bytes as f64 / fill_s / 1e5).round() / 10.0,
        "list_ms": list_ms,
        "listed": ids.len(),
        "sample": sample.len(),
        "read_ms_per_mail": round3(read.ms_per_mail),
        "move_ms": move_ms,
        "move_bytes": move_bytes,
        "read_ms_per_mail_after_move": round3(read_moved.ms_per_mail),
        "move_index_only_ms": index_only_ms,
        "move_index_only_bytes": index_only_bytes,
        "move_index_only_note": index_only_note,
        // What of the full move was not message bytes: the index, the log,
        // the framing; about what an index-only move would carry.
        "move_bytes_less_messages": move_bytes.saturating_sub(stored_bytes),
        "move_onto_unlisted_copy": onto_copy,
        "restart_listening_ms": listening_ms,
        "restart_ms": restart_ms,
        "listed_after_restart": ids_after.len(),
        "read_ms_per_mail_after_restart": round3(read_restarted.ms_per_mail),
        "state_bytes": st.state_bytes,
        "state_bytes_per_mail": per_mail.round(),
        "failed": failed,
        "passed": failed.is_empty(),
        "hosts": 3,
        "replicas": 2,
    });
    if !failed.is_empty() {
        bail!("the size scenario failed: {failed:?}\n{report}");
    }
    Ok(report)
}

/// `ip`:port of a TCP port free a moment ago, for the unit's HTTP
/// listener (its address is not printed).
fn free_tcp(ip: &str) -> anyhow::Result<String> {
    let l = std::net::TcpListener::bind((ip, 0)).context("finding a free TCP port")?;
    Ok(l.local_addr()?.to_string())
}

fn round3(v: f64) -> f64 {
    (v * 1e3).round() / 1e3
}

fn start(spec: &HostSpec) -> anyhow::Result<Proc> {
    let args: Vec<&str> = spec.args.iter().map(String::as_str).collect();
    Proc::start(&args, &spec.log)
}

/// `fut`'s output, or an error naming `what` once `limit` has passed.
pub(super) async fn bounded<T>(
    what: &str,
    limit: Duration,
    fut: impl Future<Output = T>,
) -> anyhow::Result<T> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| anyhow!("{what} took longer than {limit:?}"))
}

/// Each sender's messages, made before the clock starts.
fn pools(senders: &[User], mail_bytes: usize) -> anyhow::Result<Vec<Vec<StoredMail>>> {
    senders
        .iter()
        .enumerate()
        .map(|(s, sender)| {
            let from = format!("{}@dem", sender.name);
            (0..POOL)
                .map(|i| sized_from(s as u64, i, &from, mail_bytes))
                .collect()
        })
        .collect()
}

/// The tag delivery `i` from sender `s` carries in front: what
/// `Sample::check` reads back to know which bytes were sent.
pub(super) fn tag(run: &str, s: usize, i: u64) -> String {
    format!("{run}-{s}-{i}")
}

/// Delivers `mails` mails to `to`, [`IN_FLIGHT`] in flight per sender;
/// the stored bytes sent.
async fn fill(
    senders: &[User],
    pools: &[Vec<StoredMail>],
    to: &str,
    mails: u32,
    run: &str,
) -> anyhow::Result<u64> {
    let next = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for (s, sender) in senders.iter().enumerate() {
        let pool = Arc::new(pools[s].clone());
        let mut r = MailboxRef::new(Target::Name(to.to_string()));
        r.lookup(&sender.session).await?;
        for _ in 0..IN_FLIGHT {
            let (sender, mut r) = (sender.clone(), r.clone());
            let (next, bytes, pool, run) =
                (next.clone(), bytes.clone(), pool.clone(), run.to_string());
            tasks.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= u64::from(mails) {
                        return anyhow::Ok(());
                    }
                    let m = unique(&pool, i, &tag(&run, s, i));
                    bytes.fetch_add(m.stored.len() as u64, Ordering::Relaxed);
                    let signed =
                        SignedMail::seal(&sender.key, sender.name.clone(), m.stored, vec![]);
                    deliver_signed(&sender, &mut r, signed)
                        .await
                        .with_context(|| format!("delivering mail {i}"))?;
                }
            });
        }
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(bytes.load(Ordering::Relaxed))
}

/// Bytes of the files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
