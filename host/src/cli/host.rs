//! `dem host`: runs the host daemon (`node`) until Ctrl-C or SIGTERM. It
//! prints `host <id-hex> listening on <addr>` once it serves and has
//! joined the backbone; scripts and tests wait for that line.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::node::{NodeConfig, run as run_node};

#[derive(Debug, Args)]
pub struct HostArgs {
    /// Address to listen on (and announce), `IP:PORT`.
    #[arg(long)]
    pub listen: SocketAddr,
    /// Dispatch units, comma separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub dispatch: Vec<String>,
    /// Data directory: host key, mailboxes, code, attachments.
    #[arg(long, env = "DEM_DATA")]
    pub data: PathBuf,
    /// The owner's home: this host becomes their own (not yet used).
    #[arg(long)]
    pub home: Option<PathBuf>,
    /// Lease renewal interval in milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub heartbeat_ms: u64,
    /// Mailboxes this host offers to hold.
    #[arg(long, default_value_t = 10_000)]
    pub capacity: u64,
}

pub async fn run(args: HostArgs) -> anyhow::Result<()> {
    if args.home.is_some() {
        eprintln!("warning: --home is not supported yet; the owner's mailbox stays where it is");
    }
    let config = NodeConfig {
        listen: args.listen,
        backbone: args.dispatch,
        data: args.data,
        heartbeat: Duration::from_millis(args.heartbeat_ms.max(100)),
        capacity: args.capacity,
    };
    run_node(config, |id, addr| {
        println!("host {} listening on {addr}", id.to_hex());
        let _ = std::io::stdout().flush();
    })
    .await?;
    Ok(())
}
