//! `dem host`: runs the host daemon (`node`) until Ctrl-C or SIGTERM. It
//! prints `host <id-hex> listening on <addr>` once it serves and has
//! joined the backbone; scripts and tests wait for that line.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use dem_identity::{Home, KeyPair, KeyRole};

use dem_node::node::{NodeConfig, run as run_node};

#[derive(Debug, Args)]
pub struct HostArgs {
    /// A TOML file with any of these settings under their long names
    /// (`dem config example` prints one); flags win over it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on (and announce), `IP:PORT`.
    #[arg(long)]
    pub listen: SocketAddr,
    /// Dispatch units, comma separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub dispatch: Vec<String>,
    /// Data directory: host key, mailboxes, code, attachments.
    #[arg(long, env = "DEM_DATA")]
    pub data: PathBuf,
    /// The owner's home (their user key): this host becomes theirs and pulls
    /// their mailbox here once joined.
    #[arg(long)]
    pub home: Option<PathBuf>,
    /// Lease renewal interval in milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub heartbeat_ms: u64,
    /// Mailboxes this host offers to hold.
    #[arg(long, default_value_t = 10_000)]
    pub capacity: u64,
    /// How often the keeper checks each mailbox's replicas (anti-entropy,
    /// regenerating lost replicas), in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub keeper_ms: u64,
    /// Serve `/metrics` (Prometheus text) over HTTP on this address
    /// (`IP:PORT`); off unless given. Keep it on loopback or a private
    /// network: it shows load, not mail.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// Who runs this host (a person or organisation), shown on the monitor
    /// and in `dem admin status`; at most 64 printable characters.
    #[arg(long, value_name = "NAME")]
    pub operator: Option<String>,
    #[command(flatten)]
    pub limits: super::limits::LimitArgs,
    #[command(flatten)]
    pub log: crate::logging::LogArgs,
}

pub async fn run(args: HostArgs, logs: Option<dem_node::logs::LogFeed>) -> anyhow::Result<()> {
    let owner = match &args.home {
        Some(dir) => {
            let home = Home::open(Some(dir.clone()))?;
            let path = home.key_path(KeyRole::User);
            let key = KeyPair::load(&path)
                .with_context(|| format!("the owner's key in {}", dir.display()))?;
            Some(Arc::new(key))
        }
        None => None,
    };
    let config = NodeConfig {
        listen: args.listen,
        backbone: args.dispatch,
        data: args.data,
        heartbeat: Duration::from_millis(args.heartbeat_ms.max(100)),
        keeper: Duration::from_millis(args.keeper_ms.max(50)),
        capacity: args.capacity,
        owner,
        runtime: args.limits.runtime(),
        mailboxes: args.limits.mailboxes(),
        http: args.http,
        logs,
        operator: args.operator,
    };
    run_node(config, |id, addr| {
        println!("host {} listening on {addr}", id.to_hex());
        let _ = std::io::stdout().flush();
    })
    .await?;
    Ok(())
}
