//! `dem dispatch`: runs one dispatch unit (see `dispatch::service`) until
//! SIGTERM or Ctrl-C, then saves its tables and closes its endpoint.
//!
//! On start it prints one line on stdout, `dispatch <id-hex> listening on
//! <addr>`, which scripts and the process tests read to learn the unit's
//! key and bound address; everything else goes to the log (stderr).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use dem_node::dispatch::service::{DispatchService, ServiceConfig};

#[derive(Debug, Args)]
pub struct DispatchArgs {
    /// A TOML file with any of these settings under their long names
    /// (`dem config example` prints one); flags win over it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on (`IP:PORT`); it is also the address announced
    /// to hosts and peer units, so it must be reachable by them.
    #[arg(long)]
    pub listen: SocketAddr,
    /// Data dir: holds the unit's key (`dispatch.key`) and its tables
    /// (`tables.bin`).
    #[arg(long)]
    pub data: PathBuf,
    /// Another dispatch unit to join (`IP:PORT`); repeat for several.
    #[arg(long = "peer")]
    pub peers: Vec<String>,
    /// The network key that admits dispatch units (created, mode 0600, if
    /// missing; default `network.key` in the data dir). Every unit of one
    /// network needs a copy: a unit whose key differs cannot join.
    #[arg(long)]
    pub network_key: Option<PathBuf>,
    /// Lease length given to hosts, in milliseconds (shorter in tests).
    #[arg(long)]
    pub lease_ms: Option<u64>,
    /// Replicas (R) of each mailbox and attachment; a network setting, so
    /// give every unit the same.
    #[arg(long, default_value_t = dem_node::dispatch::limits::REPLICAS)]
    pub replicas: usize,
    /// Replicas (W) a mutation must be durable on before it is
    /// acknowledged; at most R.
    #[arg(long, default_value_t = dem_node::dispatch::limits::WRITE_QUORUM)]
    pub write_quorum: usize,
    /// How long an attachment no mail references is kept before it is
    /// collected, in milliseconds (shorter in tests).
    #[arg(long, default_value_t = dem_node::dispatch::limits::ATTACHMENT_GRACE_MS)]
    pub attachment_grace_ms: u64,
    /// Log events (the hosts' and this unit's, info and above) kept for
    /// `dem admin logs`; the oldest go first.
    #[arg(long, default_value_t = dem_core::logs::LOG_RING_DEFAULT)]
    pub log_ring: usize,
    #[command(flatten)]
    pub log: crate::logging::LogArgs,
    /// Serve the monitor page, its JSON API (`/api/...`) and `/metrics` on
    /// this address (`IP:PORT`); off unless given. Peers off loopback must
    /// present the admin token (`dem admin token --data DIR`).
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
}

pub async fn run(args: DispatchArgs, logs: Option<dem_node::logs::LogFeed>) -> anyhow::Result<()> {
    let mut config = ServiceConfig::new(args.listen, args.data.clone());
    config.peers = args.peers;
    config.network_key = args.network_key;
    if let Some(lease_ms) = args.lease_ms {
        anyhow::ensure!(lease_ms > 0, "--lease-ms must be positive");
        config.limits.lease_ms = lease_ms;
    }
    anyhow::ensure!(
        (1..=config.limits.max_hosts_per_object).contains(&args.replicas),
        "--replicas must be between 1 and {}",
        config.limits.max_hosts_per_object
    );
    anyhow::ensure!(
        (1..=args.replicas).contains(&args.write_quorum),
        "--write-quorum must be between 1 and --replicas ({})",
        args.replicas
    );
    config.limits.replicas = args.replicas;
    config.limits.write_quorum = args.write_quorum;
    anyhow::ensure!(
        args.attachment_grace_ms > 0,
        "--attachment-grace-ms must be positive"
    );
    config.limits.attachment_grace_ms = args.attachment_grace_ms;
    anyhow::ensure!(
        (1..=dem_core::logs::LOG_RING_MAX).contains(&args.log_ring),
        "--log-ring must be between 1 and {}",
        dem_core::logs::LOG_RING_MAX
    );
    config.log_ring = args.log_ring;
    config.logs = logs;
    let service = DispatchService::bind(config)
        .await
        .with_context(|| format!("starting the dispatch unit in {}", args.data.display()))?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "dispatch {} listening on {}",
            service.id().to_hex(),
            service.local_addr()
        )?;
        out.flush()?;
    }
    tracing::info!(unit = %service.id().short(), addr = %service.local_addr(), "dispatch unit up");
    let monitor = match args.http {
        Some(addr) => {
            let (bound, serving) = dem_node::monitor::bind(addr, service.reader(), service.admin())
                .await
                .context("starting the monitor (--http)")?;
            if !bound.ip().is_loopback() {
                tracing::warn!(%bound, "the monitor listens off loopback: peers there need the admin token");
            }
            tracing::info!(%bound, "monitor on http://{bound}/");
            Some(tokio::spawn(serving))
        }
        None => None,
    };
    shutdown_signal().await?;
    tracing::info!(unit = %service.id().short(), "shutting down");
    if let Some(monitor) = monitor {
        monitor.abort();
    }
    service
        .shutdown()
        .await
        .context("saving the tables on shutdown")?;
    Ok(())
}

/// Waits for SIGTERM or Ctrl-C.
async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}
