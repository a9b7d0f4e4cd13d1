//! `dem bench mailbox`: the numbers BENCHMARKS.md records for the mobile
//! mailbox, all measured in one run so that ratios between them hold on a
//! noisy machine.
//!
//! Each measurement drives the same code paths the host uses: the code
//! store, `Runtime::instantiate_mailbox`, the actors of `Mailboxes` (with or
//! without the redb log) and hibernation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde_json::json;

use dem_builtin as builtin;
use dem_node::mailbox::clock::HybridClock;
use dem_node::mailbox::{Incoming, Mailboxes, MailboxesConfig, Request};
use dem_proto::ids::{CodeHash, MailboxId};
use dem_proto::mail::{MailFlags, Placement};
use dem_proto::mailbox::verbs::Stats;
use dem_runtime::{Runtime, RuntimeConfig};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub which: Bench,
}

#[derive(Debug, Subcommand)]
pub enum Bench {
    /// Compile, instantiate, deliver, snapshot, restore, wake, memory.
    Mailbox {
        /// Mails in the mailbox for snapshot, restore and wake.
        #[arg(long, default_value_t = 10_000)]
        mails: u32,
        /// Mailboxes the delivery benchmarks spread over.
        #[arg(long, default_value_t = 4)]
        mailboxes: u32,
        /// Deliveries in flight at once in the delivery benchmarks.
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Real processes over QUIC: lookups at one dispatch unit, deliveries
    /// from concurrent senders, a mailbox move against raw QUIC.
    Net {
        /// Mails in the mailbox that is moved.
        #[arg(long, default_value_t = 10_000)]
        mails: u32,
        /// Concurrent senders in the delivery benchmark.
        #[arg(long, default_value_t = 10)]
        senders: usize,
        /// Deliveries in the delivery benchmark, over all senders.
        #[arg(long, default_value_t = 5_000)]
        deliveries: u64,
        /// Lookups asked of the dispatch unit.
        #[arg(long, default_value_t = 200_000)]
        lookups: u64,
        /// Client connections the lookups spread over.
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// Lookups in flight per connection (the unit serves 64 streams
        /// per connection at once).
        #[arg(long, default_value_t = 64)]
        in_flight: usize,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Real processes with R=3: delivery at W=2 against W=1, regenerating
    /// a killed replica, catching up a paused one.
    Repl {
        /// Mails in the mailbox whose replica is regenerated.
        #[arg(long, default_value_t = 10_000)]
        mails: u32,
        /// Mails delivered while a replica is paused.
        #[arg(long, default_value_t = 100)]
        new_mails: u32,
        /// Deliveries per network in the W=1 / W=2 comparison.
        #[arg(long, default_value_t = 2_000)]
        deliveries: u64,
        /// The dispatch unit's lease: how soon a killed host is offline.
        #[arg(long, default_value_t = 2_000)]
        lease_ms: u64,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The size scenario (issue 16): one mailbox of 100k mails and more
    /// than 2 GB delivered, listed, read, moved and its host restarted, on
    /// real processes; state bytes per mail.
    Size {
        /// Mails in the mailbox.
        #[arg(long, default_value_t = 100_000)]
        mails: u32,
        /// The mean stored size of a mail (100k × 22 KiB is over 2 GB).
        #[arg(long, default_value_t = 22 << 10)]
        mail_bytes: usize,
        /// Mails read and checked byte for byte after each step.
        #[arg(long, default_value_t = 200)]
        sample: usize,
        /// Then set R=1 and move the mailbox onto the trimmed replica's
        /// unlisted copy, which names every blob: the nearest case to a move
        /// that sends only the index (a move onto a listed replica is
        /// refused).
        #[arg(long)]
        onto_copy: bool,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One host with a great many mailboxes, far more than its instance
    /// slots: creates, disk per mailbox, memory, deliveries spread over
    /// all of them against a few awake ones, wake times, restart.
    Host {
        /// Mailboxes on the host.
        #[arg(long, default_value_t = 100_000)]
        mailboxes: u32,
        /// Mailboxes that get one delivery just before memory is measured.
        #[arg(long, default_value_t = 1_000)]
        active: u32,
        /// Deliveries in each delivery benchmark.
        #[arg(long, default_value_t = 20_000)]
        deliveries: u64,
        /// Deliveries in flight at once.
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
        /// Instance slots; default: sized from the machine's memory.
        #[arg(long)]
        instance_slots: Option<u32>,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// What collecting the hosts' log events costs a dispatch unit: its
    /// CPU and memory while hosts ship events at a given rate.
    Logs {
        /// Events per second over all hosts.
        #[arg(long, default_value_t = 10_000)]
        rate: u64,
        /// How long the hosts ship, in seconds.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Hosts shipping.
        #[arg(long, default_value_t = 10)]
        hosts: usize,
        /// The unit's ring (`--log-ring`).
        #[arg(long, default_value_t = dem_core::logs::LOG_RING_DEFAULT)]
        ring: usize,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The monitor page at network scale: a unit whose tables hold a
    /// fixture of many hosts and users; first paint in headless chromium
    /// and the unit's CPU serving event streams.
    Monitor {
        /// Hosts in the fixture (two thirds online).
        #[arg(long, default_value_t = 1_000)]
        hosts: u32,
        /// Users in the fixture, each with a mailbox on 3 hosts.
        #[arg(long, default_value_t = 100_000)]
        users: u32,
        /// Event streams held open while the unit's CPU is measured.
        #[arg(long, default_value_t = 10)]
        watchers: usize,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// End-to-end sealing: a 4 KiB mail sealed and opened per second on
    /// every core and on one, each step's cost, and a large attachment
    /// streamed file to file (memory, speed against a plain copy).
    Seal {
        /// How long each throughput measurement runs, in seconds.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// The streamed attachment's size, in MiB.
        #[arg(long, default_value_t = 1024)]
        attachment_mib: u64,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The attachment half of `seal`, in a process of its own so that its
    /// peak memory is the streaming's alone.
    #[command(hide = true)]
    SealAttachment {
        #[arg(long)]
        mib: u64,
    },
    /// The receiving process of the raw-QUIC baseline (used by `net`).
    #[command(hide = true)]
    NetSink {
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// Where durable transfers are written.
        #[arg(long)]
        data: std::path::PathBuf,
    },
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    // `bench host` draws a bar per stage instead; the hidden sink takes
    // no spinner at all.
    let label = match &args.which {
        Bench::Mailbox { .. } => Some("bench mailbox"),
        Bench::Net { .. } => Some("bench net"),
        Bench::Repl { .. } => Some("bench repl"),
        Bench::Size { .. } => Some("bench size"),
        Bench::Logs { .. } => Some("bench logs"),
        Bench::Monitor { .. } => Some("bench monitor"),
        Bench::Seal { .. } => Some("bench seal"),
        Bench::Host { .. } | Bench::NetSink { .. } | Bench::SealAttachment { .. } => None,
    };
    let spinner = label.map(super::progress::spinner);
    let result = run_one(args).await;
    // Cleared before the results go to stdout, so the two never mix on a
    // terminal.
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    if let Some((value, json)) = result? {
        print(&value, json);
    }
    Ok(())
}

/// Runs a benchmark; its results and whether to print them as JSON.
async fn run_one(args: BenchArgs) -> anyhow::Result<Option<(serde_json::Value, bool)>> {
    match args.which {
        Bench::Mailbox {
            mails,
            mailboxes,
            concurrency,
            json,
        } => {
            let result = mailbox(mails, mailboxes.max(1), concurrency.max(1)).await?;
            Ok(Some((result, json)))
        }
        Bench::Net {
            mails,
            senders,
            deliveries,
            lookups,
            connections,
            in_flight,
            json,
        } => {
            let params = super::bench_net::NetParams {
                mails,
                senders: senders.max(1),
                deliveries,
                lookups,
                connections: connections.max(1),
                in_flight: in_flight.max(1),
            };
            Ok(Some((super::bench_net::run(params).await?, json)))
        }
        Bench::Repl {
            mails,
            new_mails,
            deliveries,
            lease_ms,
            json,
        } => {
            let params = super::bench_repl::ReplParams {
                mails,
                new_mails,
                deliveries,
                lease_ms: lease_ms.max(500),
            };
            Ok(Some((super::bench_repl::run(params).await?, json)))
        }
        Bench::Size {
            mails,
            mail_bytes,
            sample,
            onto_copy,
            json,
        } => {
            let params = super::bench_size::SizeParams {
                mails: mails.max(1),
                mail_bytes: mail_bytes.max(256),
                sample,
                onto_copy,
            };
            Ok(Some((super::bench_size::run(params).await?, json)))
        }
        Bench::Host {
            mailboxes,
            active,
            deliveries,
            concurrency,
            instance_slots,
            json,
        } => {
            let params = super::bench_host::HostParams {
                mailboxes: mailboxes.max(1),
                active: active.min(mailboxes),
                deliveries: deliveries.max(1),
                concurrency: concurrency.max(1),
                slots: instance_slots,
            };
            Ok(Some((super::bench_host::run(params).await?, json)))
        }
        Bench::Logs {
            rate,
            seconds,
            hosts,
            ring,
            json,
        } => {
            let params = super::bench_logs::LogsParams {
                rate,
                seconds,
                hosts,
                ring,
            };
            Ok(Some((super::bench_logs::run(params).await?, json)))
        }
        Bench::Monitor {
            hosts,
            users,
            watchers,
            json,
        } => {
            let params = super::bench_monitor::MonitorParams {
                hosts,
                users,
                watchers,
            };
            Ok(Some((super::bench_monitor::run(params).await?, json)))
        }
        Bench::Seal {
            seconds,
            attachment_mib,
            json,
        } => {
            let params = super::bench_seal::SealParams {
                seconds,
                attachment_mib,
            };
            Ok(Some((super::bench_seal::run(params).await?, json)))
        }
        Bench::SealAttachment { mib } => {
            tokio::task::spawn_blocking(move || super::bench_seal::attachment(mib))
                .await?
                .map(|()| None)
        }
        Bench::NetSink { listen, data } => {
            super::bench_sink::serve(listen, data).await.map(|()| None)
        }
    }
}

fn print(result: &serde_json::Value, json: bool) {
    if json {
        println!("{result}");
    } else {
        for (k, v) in result.as_object().into_iter().flatten() {
            println!("{k:<26} {v}");
        }
    }
}

/// A message of about 1 KiB from `from` to `to`: what a short real mail
/// looks like (text/plain, a few header fields), composed as `dem send`
/// composes.
/// `date_ms` and `message_id` (without brackets) make it unique.
pub fn sample_message(
    i: u64,
    from: &str,
    to: &str,
    date_ms: i64,
    message_id: &str,
) -> anyhow::Result<Vec<u8>> {
    let text = format!(
        "Hello number {i}.\n{}",
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(16)
    );
    let address = |email: &str| dem_message::Address {
        name: None,
        email: email.to_string(),
    };
    Ok(dem_message::compose(&dem_message::Compose {
        from: address(from),
        to: vec![address(to)],
        cc: vec![],
        subject: format!("Benchmark mail {i} about the quarterly numbers"),
        date_ms,
        message_id: message_id.to_string(),
        in_reply_to: None,
        references: vec![],
        text,
        html: None,
        attachments: vec![],
    })?)
}

/// Mail `bench-i` as a host takes it: a sample message parsed into its
/// index, as `Mailboxes::deliver` wants it.
pub fn sample_mail(i: u64) -> anyhow::Result<Incoming> {
    let from = format!("sender{}@example.org", i % 97);
    let date_ms = 1_700_000_000_000 + (i % (1 << 30)) as i64 * 1000;
    let message_id = format!("bench-{i}@example.org");
    let message = sample_message(i, &from, "owner@example.org", date_ms, &message_id)?;
    Ok(Incoming::parse(format!("bench-{i:08}"), message, vec![])?)
}

fn inbox() -> Placement {
    Placement {
        folder: "INBOX".into(),
        flags: MailFlags::empty(),
        keywords: vec![],
        spam_score: None,
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Resident set size of this process, in bytes.
pub(crate) fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Distinct realistic messages a benchmark draws from (see `bench_mail`).
const POOL_MAILS: u64 = 1000;
/// The stream they come from, fixed so runs compare.
const POOL_SEED: u64 = 16;

async fn mailbox(
    mails: u32,
    mailboxes: u32,
    concurrency: usize,
) -> anyhow::Result<serde_json::Value> {
    let dir = tempfile::tempdir().context("creating a temp dir")?;
    let code_dir = dir.path().join("code");
    let runtime = Runtime::new(&code_dir, RuntimeConfig::default())?;
    let code = runtime.code().insert(builtin::MAILBOX)?;

    // Compile from bytes, then load the cached artifact.
    let compile = median(
        (0..3)
            .map(|_| {
                let t = Instant::now();
                runtime
                    .code()
                    .compile_uncached(builtin::MAILBOX)
                    .map(|_| t.elapsed())
            })
            .collect::<Result<_, _>>()?,
    );
    runtime.code().component(&code)?;
    let mut loads = vec![];
    for _ in 0..5 {
        let t = Instant::now();
        runtime
            .code()
            .load_precompiled(&code)?
            .context("artifact missing after compile")?;
        loads.push(t.elapsed());
    }
    let load = median(loads);

    // Instantiate an empty mailbox from the pooled InstancePre.
    drop(runtime.instantiate_mailbox(&code, "warm".into()).await?);
    let rounds = 2000;
    let t = Instant::now();
    for _ in 0..rounds {
        drop(runtime.instantiate_mailbox(&code, "bench".into()).await?);
    }
    let instantiate_us = t.elapsed().as_secs_f64() * 1e6 / rounds as f64;

    // Realistic mail, made before any clock starts (`bench_mail`).
    let pool = Arc::new(super::bench_mail::pool(
        POOL_SEED,
        u64::from(mails).min(POOL_MAILS),
    )?);

    // Snapshot of an N-mail mailbox, and restore into a fresh Engine.
    let clock = HybridClock::new(1);
    let mut instance = runtime.instantiate_mailbox(&code, "snap".into()).await?;
    for i in 0..mails as u64 {
        let mut request = Request::Deliver {
            mail: super::bench_mail::incoming(&pool, i)?.mail,
            place: inbox(),
        };
        instance
            .call(Some(clock.context()), &mut request)
            .await?
            .map_err(|e| anyhow::anyhow!(e.describe()))?;
    }
    let mut snaps = vec![];
    let mut snapshot = (0, vec![]);
    for _ in 0..5 {
        let t = Instant::now();
        snapshot = instance.snapshot().await?;
        snaps.push(t.elapsed());
    }
    let fresh = Runtime::new(&code_dir, RuntimeConfig::default())?;
    drop(fresh.instantiate_mailbox(&code, "warm".into()).await?);
    let mut restores = vec![];
    for _ in 0..5 {
        let t = Instant::now();
        let mut restored = fresh.instantiate_mailbox(&code, "restore".into()).await?;
        restored
            .restore(snapshot.0, &snapshot.1)
            .await?
            .map_err(|e| anyhow::anyhow!(e.describe()))?;
        restores.push(t.elapsed());
        if restores.len() == 1
            && CodeHash::of(&restored.snapshot().await?.1) != CodeHash::of(&snapshot.1)
        {
            bail!("restored state differs from the snapshot");
        }
    }
    drop(instance);

    // Deliveries, durable (group commit) and in memory, three plugins each.
    let durable = Mailboxes::open(
        &dir.path().join("durable"),
        RuntimeConfig::default(),
        MailboxesConfig::default(),
    )?;
    let deliver_durable = deliveries(&durable, &pool, mails, mailboxes, concurrency).await?;
    // The same, sealed, into a store of its own, beside it in this run.
    let sealed_boxes = Mailboxes::open(
        &dir.path().join("sealed"),
        RuntimeConfig::default(),
        MailboxesConfig::default(),
    )?;
    let deliver_sealed =
        sealed_deliveries(&sealed_boxes, &pool, mails, mailboxes, concurrency).await?;
    sealed_boxes.shutdown().await;
    let memory = Mailboxes::in_memory(
        &dir.path().join("memory-code"),
        RuntimeConfig::default(),
        MailboxesConfig::default(),
    )?;
    let deliver_memory = deliveries(&memory, &pool, mails, mailboxes, concurrency).await?;
    memory.shutdown().await;

    // Search an N-mail mailbox for a word: one no mail has (the worst
    // case before the index: every message was read), and a common one,
    // first 20 hits. Deliveries do not index; the first search after them
    // brings the full-text index up to date, timed on its own.
    let big = MailboxId::new("bench-0")?;
    let search = |word: &str| dem_proto::mailbox::verbs::Search {
        query: dem_proto::mail::SearchQuery {
            text_terms: vec![word.to_string()],
            ..Default::default()
        },
        limit: 20,
    };
    let t = Instant::now();
    durable.ask(&big, search("zyzzyva")).await?;
    let search_index = t.elapsed();
    let mut searches = vec![];
    let mut hit_searches = vec![];
    for _ in 0..3 {
        let t = Instant::now();
        let found = durable.ask(&big, search("zyzzyva")).await?;
        searches.push(t.elapsed());
        anyhow::ensure!(found.is_empty(), "a made-up word was found");
        let t = Instant::now();
        durable.ask(&big, search("numbers")).await?;
        hit_searches.push(t.elapsed());
    }

    // Wake a hibernated N-mail mailbox from disk.
    let mut wakes = vec![];
    for _ in 0..7 {
        durable.hibernate(&big).await?;
        let t = Instant::now();
        durable.ask(&big, Stats).await?;
        wakes.push(t.elapsed());
    }

    // Host memory per hibernated and per awake, empty mailbox.
    let count = 200;
    let before = rss_bytes();
    for i in 0..count {
        let id = MailboxId::new(format!("idle-{i}"))?;
        durable.create(&id, None).await?;
        durable.ask(&id, Stats).await?;
    }
    let awake = rss_bytes();
    for i in 0..count {
        durable
            .hibernate(&MailboxId::new(format!("idle-{i}"))?)
            .await?;
    }
    let asleep = rss_bytes();
    let usage = durable
        .store()
        .map(|s| s.message_usage())
        .transpose()?
        .unwrap_or_default();
    let (messages_stored, message_bytes) = (usage.count, usage.bytes);
    durable.shutdown().await;

    Ok(json!({
        "mails": mails,
        "compile_ms": ms(compile),
        "load_precompiled_ms": ms(load),
        "instantiate_us": (instantiate_us * 10.0).round() / 10.0,
        "deliver_per_s_durable": deliver_durable.round(),
        "deliver_per_s_durable_sealed": deliver_sealed.round(),
        "deliver_per_s_memory": deliver_memory.round(),
        "snapshot_ms": ms(median(snaps)),
        "restore_ms": ms(median(restores)),
        "snapshot_bytes": snapshot.1.len(),
        "state_bytes_per_mail": (snapshot.1.len() as f64 / f64::from(mails.max(1))).round(),
        "wake_ms": ms(median(wakes)),
        "search_ms": ms(median(searches)),
        "search_hits_ms": ms(median(hit_searches)),
        "search_index_ms": ms(search_index),
        "message_bytes_stored": message_bytes,
        "messages_stored": messages_stored,
        "idle_mailbox_bytes": asleep.saturating_sub(before) / count,
        "active_mailbox_bytes": awake.saturating_sub(before) / count,
        "delivery_mailboxes": mailboxes,
        "delivery_concurrency": concurrency,
    }))
}

/// Delivers `mails` mails spread over `mailboxes` mailboxes with the three
/// standard plugins installed; returns deliveries per second.
async fn deliveries(
    boxes: &Arc<Mailboxes>,
    pool: &Arc<Vec<super::bench_mail::StoredMail>>,
    mails: u32,
    mailboxes: u32,
    concurrency: usize,
) -> anyhow::Result<f64> {
    let pool = pool.clone();
    deliveries_of(boxes, mails, mailboxes, concurrency, move |i| {
        super::bench_mail::incoming(&pool, i)
    })
    .await
}

/// [`deliveries`] of sealed mail: each delivery is checked as a host
/// checks `DeliverSealed` (the sender's signature, the recipient, the
/// window, the ciphertext's hash) inside the timed loop; sealing them, the
/// sender's work, happens before it.
async fn sealed_deliveries(
    boxes: &Arc<Mailboxes>,
    pool: &[super::bench_mail::StoredMail],
    mails: u32,
    mailboxes: u32,
    concurrency: usize,
) -> anyhow::Result<f64> {
    let sender = dem_identity::KeyPair::from_seed(&[7; 32]);
    let name = dem_identity::Name::new("bench")?;
    let recipients: Vec<dem_seal::Recipient> = (0..mailboxes)
        .map(|m| {
            let mut seed = [9u8; 32];
            seed[..4].copy_from_slice(&m.to_le_bytes());
            dem_seal::Recipient {
                user: dem_identity::KeyPair::from_seed(&seed).user_id(),
                key: dem_seal::EncryptionKeyPair::derive(&seed).public(),
            }
        })
        .collect();
    let now = dem_client::now_ms();
    let total = mails as u64 * mailboxes as u64;
    let mut sealed = Vec::with_capacity(total as usize);
    for i in 0..total {
        let m = super::bench_mail::unique(pool, i, &i.to_string());
        let r = recipients[(i % mailboxes as u64) as usize];
        let contents = dem_seal::MailContents {
            message: m.stored,
            attachments: vec![],
        };
        let mut one = dem_seal::seal_mail(&sender, &name, &contents, &[r], now)?;
        sealed.push((r.user, one.remove(0)));
    }
    let sealed = Arc::new(sealed);
    let from = sender.user_id();
    deliveries_of(boxes, mails, mailboxes, concurrency, move |i| {
        let (to, mail) = &sealed[i as usize];
        Ok(dem_node::node::verify::sealed_envelope(
            mail,
            *to,
            from,
            dem_client::now_ms(),
        )?)
    })
    .await
}

/// Delivers `mails` × `mailboxes` mails, delivery `i` made by `make`, to
/// mailboxes with the three standard plugins installed; returns
/// deliveries per second.
async fn deliveries_of(
    boxes: &Arc<Mailboxes>,
    mails: u32,
    mailboxes: u32,
    concurrency: usize,
    make: impl Fn(u64) -> anyhow::Result<Incoming> + Send + Sync + 'static,
) -> anyhow::Result<f64> {
    let make = Arc::new(make);
    let rules = "if subject contains \"invoice\" then fileinto \"Finance\"\n";
    let mut ids = vec![];
    for m in 0..mailboxes {
        let id = MailboxId::new(format!("bench-{m}"))?;
        boxes.create(&id, None).await?;
        for (order, (name, bytes)) in builtin::PLUGINS.iter().enumerate() {
            let config = if *name == "rules" { rules } else { "" };
            boxes
                .install_plugin(&id, name, bytes, config, order as u32)
                .await?;
        }
        ids.push(id);
    }
    // The first bench mailbox gets every mail of the wake benchmark's size.
    let total = mails as u64 * mailboxes as u64;
    let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    let t = Instant::now();
    for i in 0..total {
        let permit = semaphore.clone().acquire_owned().await?;
        let boxes = boxes.clone();
        let id = ids[(i % mailboxes as u64) as usize].clone();
        let make = make.clone();
        tasks.spawn(async move {
            let _permit = permit;
            boxes
                .deliver(&id, make(i)?)
                .await
                .map_err(anyhow::Error::from)
        });
        while let Some(done) = tasks.try_join_next() {
            done??;
        }
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(total as f64 / t.elapsed().as_secs_f64())
}
