//! `dem bench net`: the network numbers BENCHMARKS.md records, measured on
//! real processes so that QUIC, TLS, framing, the dispatch unit's tables
//! and the hosts' durable logs are all in the path.
//!
//! The bench process starts one `dem dispatch` unit and four `dem host`
//! daemons as children on their own 127.0.0.6x addresses and temp dirs,
//! then drives them as a client with the same library code `dem send` and
//! `dem register` use (`Session`, `MailboxRef`, sealed mails):
//!
//! - `lookups_per_s`: `LookupUser`/`LookupName` answered by the one unit,
//!   hundreds in flight over several connections, through `DispatchClient`
//!   (a lookup pipeline per connection); `lookups_per_s_stream_each`, the
//!   same with one stream per lookup, as the baseline (`bench_lookups.rs`).
//! - `deliver_per_s`: 10 senders, each with its own session, delivering one
//!   sealed mail at a time to mailboxes on the hosts; an answer means the
//!   host fsynced the delivery.
//! - `move_ms` against `raw_quic_ms`: one mailbox is filled with N
//!   realistic mails (`bench_mail`, as a host stores them) over the network and moved on to each of the three other hosts in
//!   turn (`bench_move.rs`; the median of the three, as for the raw
//!   baseline); the same number of bytes as its export is sent over plain
//!   QUIC streams to a `dem bench net-sink` child process, as they are
//!   (`raw_quic_ms`) and written to a file and fsynced before the answer
//!   (`raw_quic_durable_ms`, the floor of any move that persists before it
//!   acknowledges).
//!
//! Every child is killed when its handle drops, so also on error.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::bench_lookups::{Lookups, Path as LookupPath, lookups};
use super::bench_move::move_along;
use super::bench_sink::raw_transfers;
use dem_client::{MailboxRef, Session, Target, now_ms};
use dem_identity::{KeyPair, Name, UserId};
use dem_proto::{HostRequest, HostResponse, SignedMail};

/// Sizes of one run.
#[derive(Debug, Clone)]
pub struct NetParams {
    pub mails: u32,
    pub senders: usize,
    pub deliveries: u64,
    pub lookups: u64,
    pub connections: usize,
    pub in_flight: usize,
}

/// A child `dem` process, killed when dropped.
pub(super) struct Proc {
    child: Child,
    pub id: String,
    pub addr: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Starts `dem <args>` (stderr to `log`) and waits for its
    /// `<kind> <id> listening on <addr>` line.
    pub fn start(args: &[&str], log: &Path) -> anyhow::Result<Proc> {
        let exe = std::env::current_exe().context("finding the dem binary")?;
        // `DEM_BENCH_LOG_DIR` keeps the children's logs (with `RUST_LOG`,
        // e.g. the steps of a move) after the temp dir is gone.
        let kept;
        let log = match (std::env::var_os("DEM_BENCH_LOG_DIR"), log.file_name()) {
            (Some(dir), Some(name)) => {
                kept = Path::new(&dir).join(name);
                kept.as_path()
            }
            _ => log,
        };
        let err = std::fs::File::create(log).context("creating a child log")?;
        let mut child = Command::new(exe)
            .args(args)
            .env_remove("DEM_HOME")
            .env(super::EXIT_WITH_PARENT_ENV, "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting dem {}", args.join(" ")))?;
        let mut line = String::new();
        let read = match child.stdout.take() {
            Some(out) => tokio::task::block_in_place(|| BufReader::new(out).read_line(&mut line)),
            None => Ok(0),
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        let (Ok(_), [_, id, "listening", "on", addr]) = (read, &words[..]) else {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(log).unwrap_or_default();
            bail!("dem {} did not start: {line:?} {log}", args.join(" "));
        };
        Ok(Proc {
            id: id.to_string(),
            addr: addr.to_string(),
            child,
        })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`"STOP"`, `"CONT"`, `"KILL"`) to the child.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args([format!("-{signal}").as_str(), pid.as_str()])
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -{signal} {pid} failed");
        }
        Ok(())
    }
}

/// A registered bench user with an open session.
#[derive(Clone)]
pub(super) struct User {
    pub key: Arc<KeyPair>,
    pub name: String,
    pub session: Arc<Session>,
    /// The keys sealed mail to this user opens with.
    pub keyring: Arc<dem_seal::Keyring>,
}

impl User {
    pub fn id(&self) -> UserId {
        self.key.user_id()
    }
}

/// Runs the whole benchmark; returns the JSON object to print.
pub async fn run(p: NetParams) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir().context("creating a temp dir")?;
    let d = dir.path();
    let path = |name: &str| -> anyhow::Result<String> {
        d.join(name)
            .to_str()
            .map(String::from)
            .context("temp paths are UTF-8")
    };
    let unit = Proc::start(
        &[
            "dispatch",
            "--listen",
            "127.0.0.61:0",
            "--data",
            &path("unit")?,
            // The moves measured here are of the one copy;
            // `dem bench repl` measures replication.
            "--replicas",
            "1",
            "--write-quorum",
            "1",
        ],
        &d.join("unit.log"),
    )?;
    let mut hosts = Vec::new();
    for i in 0..4 {
        let data = path(&format!("host-{i}"))?;
        let listen = format!("127.0.0.{}:0", 62 + i);
        hosts.push(Some(Proc::start(
            &[
                "host",
                "--listen",
                &listen,
                "--dispatch",
                &unit.addr,
                "--data",
                &data,
                "--heartbeat-ms",
                "1000",
            ],
            &d.join(format!("host-{i}.log")),
        )?));
    }
    let backbone = vec![unit.addr.clone()];

    // Users: senders, recipients, and the owner of the big mailbox.
    let mut senders = Vec::new();
    for i in 0..p.senders {
        senders.push(register(&backbone, &format!("sender{i}")).await?);
    }
    let mut recipients = Vec::new();
    for i in 0..20 {
        recipients.push(register(&backbone, &format!("rcpt{i}")).await?);
    }
    let big = register(&backbone, "bigbox").await?;

    let lookup_targets: Vec<(UserId, String)> = recipients
        .iter()
        .chain(&senders)
        .map(|u| (u.id(), u.name.clone()))
        .collect();
    let lookup_sizes = Lookups {
        total: p.lookups,
        connections: p.connections,
        in_flight: p.in_flight,
    };
    // Each way twice, alternating, so a noisy moment hits both alike.
    let mut piped = Vec::new();
    let mut streamed = Vec::new();
    for _ in 0..2 {
        piped.push(
            lookups(
                &unit.addr,
                &lookup_targets,
                &lookup_sizes,
                LookupPath::Pipeline,
            )
            .await?,
        );
        streamed.push(
            lookups(
                &unit.addr,
                &lookup_targets,
                &lookup_sizes,
                LookupPath::StreamEach,
            )
            .await?,
        );
    }
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let (lookups_per_s, lookups_per_s_stream_each) = (best(&piped), best(&streamed));

    let names: Vec<String> = recipients.iter().map(|u| u.name.clone()).collect();
    let deliver = deliveries(&senders, &names, p.deliveries).await?;

    let fill_t = Instant::now();
    fill(&senders, &big.name, p.mails).await?;
    let fill_per_s = p.mails as f64 / fill_t.elapsed().as_secs_f64();

    let mut r = MailboxRef::new(Target::User(big.id()));
    r.lookup(&big.session).await?;
    let from = r.holder().context("the big mailbox has no holder")?.clone();
    let moves = move_along(&big, &from.addr, from.host, &hosts).await?;
    let (move_ms, move_runs, move_note) = (moves.median_ms(), moves.runs_ms, moves.note);
    // Whoever holds it now: stop that host and export the mailbox from its
    // data dir, which gives the exact export bytes a move sends.
    let holder_id = moves.holder.to_hex();
    let idx = hosts
        .iter()
        .position(|h| h.as_ref().is_some_and(|h| h.id == holder_id))
        .context("the holder is not one of ours")?;
    drop(hosts[idx].take());
    let export = d.join("big.export");
    let out = Command::new(std::env::current_exe()?)
        .args(["local", "--data", &path(&format!("host-{idx}"))?, "export"])
        .arg(big.id().to_hex())
        .arg("-o")
        .arg(&export)
        .output()
        .context("running dem local export")?;
    if !out.status.success() {
        bail!(
            "dem local export failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let bytes = std::fs::read(&export).context("reading the export")?;
    let sink = Proc::start(
        &[
            "bench",
            "net-sink",
            "--listen",
            "127.0.0.69:0",
            "--data",
            &path("sink")?,
        ],
        &d.join("sink.log"),
    )?;
    let (raw, raw_durable) = raw_transfers(&sink.addr, &bytes).await?;

    for u in senders.iter().chain(&recipients).chain([&big]) {
        u.session.close().await;
    }
    drop(sink);
    drop(hosts);
    drop(unit);
    let (raw_ms, raw_durable_ms) = (ms(raw), ms(raw_durable));
    Ok(json!({
        "lookups_per_s": lookups_per_s.round(),
        "lookups_per_s_stream_each": lookups_per_s_stream_each.round(),
        "pipeline_vs_stream_each": (lookups_per_s / lookups_per_s_stream_each * 100.0).round() / 100.0,
        "lookups": p.lookups,
        "lookup_connections": p.connections,
        "lookups_in_flight": p.in_flight * p.connections,
        "deliver_per_s": deliver.round(),
        "deliveries": p.deliveries,
        "senders": p.senders,
        "fill_per_s_pipelined": fill_per_s.round(),
        "mails": p.mails,
        "export_bytes": bytes.len(),
        "move_ms": move_ms,
        "move_ms_runs": move_runs,
        "move_note": move_note,
        "raw_quic_ms": raw_ms,
        "raw_quic_mb_per_s": (bytes.len() as f64 / raw.as_secs_f64() / 1e6 * 10.0).round() / 10.0,
        "move_vs_raw": move_ms.map(|m| (m / raw_ms * 100.0).round() / 100.0),
        "raw_quic_durable_ms": raw_durable_ms,
        "raw_durable_vs_raw": (raw_durable_ms / raw_ms * 100.0).round() / 100.0,
        "move_vs_raw_durable": move_ms.map(|m| (m / raw_durable_ms * 100.0).round() / 100.0),
        "hosts": 4,
        "dispatch_units": 1,
    }))
}

pub(super) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Registers `name` as `dem register` does: claim the name at the unit,
/// then ask the placed host to create the mailbox.
pub(super) async fn register(backbone: &[String], name: &str) -> anyhow::Result<User> {
    let key = Arc::new(KeyPair::generate()?);
    let units = backbone.iter().map(|a| (a.clone(), None)).collect();
    let session = Arc::new(Session::new(key.clone(), units)?);
    let keyring = Arc::new(dem_seal::Keyring::generate(now_ms())?);
    super::user::claim_and_create(&session, &key, &keyring, Name::new(name)?).await?;
    Ok(User {
        key,
        name: name.to_string(),
        session,
        keyring,
    })
}

/// A mail from `from` to `to` of about 1 KiB, sealed as `dem send` seals
/// (no part is large enough to be cut out).
pub(super) fn sealed(from: &User, to: &str, i: u64) -> anyhow::Result<SignedMail> {
    // The Message-ID has the time in ms: the mail id is the content's,
    // and two runs must not send the same mail.
    let now = now_ms();
    let message = super::bench::sample_message(
        i,
        &format!("{}@dem", from.name),
        &format!("{to}@dem"),
        now,
        &format!("bench-{i}-{now}@dem"),
    )?;
    Ok(SignedMail::seal(
        &from.key,
        from.name.clone(),
        message,
        vec![],
    ))
}

/// Delivers one sealed mail through `r`, checking the durable answer.
async fn send_one(from: &User, r: &mut MailboxRef, to: &str, i: u64) -> anyhow::Result<()> {
    deliver_signed(from, r, sealed(from, to, i)?).await
}

pub(super) async fn deliver_signed(
    from: &User,
    r: &mut MailboxRef,
    signed: SignedMail,
) -> anyhow::Result<()> {
    let answer = r
        .call(&from.session, |user| {
            Ok(HostRequest::Deliver {
                to: user,
                mail: Box::new(signed.clone()),
            })
        })
        .await?;
    match answer {
        HostResponse::Delivered(_) => Ok(()),
        other => bail!("unexpected answer to Deliver: {other:?}"),
    }
}

/// `total` deliveries from each sender in turn to the recipients, every
/// sender with one mail in flight; returns acknowledged deliveries per
/// second.
pub(super) async fn deliveries(senders: &[User], to: &[String], total: u64) -> anyhow::Result<f64> {
    let per = total / senders.len().max(1) as u64;
    let mut tasks = tokio::task::JoinSet::new();
    let t = Instant::now();
    for (s, sender) in senders.iter().enumerate() {
        let sender = sender.clone();
        let to = to.to_vec();
        tasks.spawn(async move {
            let mut refs: Vec<MailboxRef> = to
                .iter()
                .map(|n| MailboxRef::new(Target::Name(n.clone())))
                .collect();
            for j in 0..per {
                let k = (s + j as usize * 7) % to.len();
                send_one(&sender, &mut refs[k], &to[k], j).await?;
            }
            anyhow::Ok(per)
        });
    }
    let mut done = 0;
    while let Some(n) = tasks.join_next().await {
        done += n??;
    }
    Ok(done as f64 / t.elapsed().as_secs_f64())
}

/// Distinct realistic messages each sender fills the moved mailbox with.
const FILL_POOL: u64 = 100;

/// Fills `to`'s mailbox with `mails` realistic mails from all senders, 16
/// in flight per sender (a bulk load, not the measured delivery). Each is
/// what a host stores of real mail (`bench_mail`): its large parts would
/// be floating attachments, which a mailbox move does not carry, so they
/// are left out here.
pub(super) async fn fill(senders: &[User], to: &str, mails: u32) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let run = now_ms();
    for sender in senders {
        let from = format!("{}@dem", sender.name);
        let pool: Vec<super::bench_mail::StoredMail> = (0..FILL_POOL)
            .map(|i| super::bench_mail::realistic_from(16, i, Some(&from)))
            .collect::<anyhow::Result<_>>()?;
        let pool = Arc::new(pool);
        let mut r = MailboxRef::new(Target::Name(to.to_string()));
        r.lookup(&sender.session).await?;
        for _ in 0..16 {
            let sender = sender.clone();
            let (mut r, next, pool) = (r.clone(), next.clone(), pool.clone());
            tasks.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= u64::from(mails) {
                        return anyhow::Ok(());
                    }
                    let m = super::bench_mail::unique(&pool, i, &format!("{run}-{i}"));
                    let signed =
                        SignedMail::seal(&sender.key, sender.name.clone(), m.stored, vec![]);
                    deliver_signed(&sender, &mut r, signed).await?;
                }
            });
        }
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}
