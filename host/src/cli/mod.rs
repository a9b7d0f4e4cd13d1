//! The `dem` command line: one module per subcommand group.
//!
//! - `dispatch`, `host`: the daemons.
//! - `user`: what a mail user does (id, register, send, inbox, ...).
//! - `local`: operate a host's data dir directly (create, deliver, read,
//!   export, import) and `local serve`, a line-protocol host process used by
//!   the crash tests.
//! - `admin`: `admin status` and `admin move` (explicit migration).
//! - `bench`: the benchmarks recorded in BENCHMARKS.md.
//! - `demo`: the README's first command.

pub mod admin;
pub mod bench;
mod bench_lookups;
mod bench_net;
mod bench_repl;
mod bench_sink;
pub mod demo;
pub mod dispatch;
pub mod host;
pub mod limits;
pub mod local;
pub mod mail_json;
pub mod user;

use clap::{Parser, Subcommand};

/// DEM: decentralized e-mail on migrating WebAssembly mailboxes.
#[derive(Debug, Parser)]
#[command(
    name = "dem",
    version,
    about = "DEM: decentralized e-mail on migrating WebAssembly mailboxes"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a dispatch unit.
    Dispatch(dispatch::DispatchArgs),
    /// Run a host daemon.
    Host(Box<host::HostArgs>),
    #[command(flatten)]
    User(user::UserCommand),
    /// Work on a host's data dir directly, without the network.
    Local(Box<local::LocalArgs>),
    /// The network's status and explicit migrations.
    Admin(admin::AdminArgs),
    /// Run a benchmark and print its results.
    Bench(bench::BenchArgs),
    /// A local network in one command: dispatch units and hosts as child
    /// processes, mail to an offline user, a mailbox moving home and one
    /// moving off a leaving host.
    Demo,
}

/// Entry point of the `dem` binary.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(8 << 20)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Dispatch(args) => dispatch::run(args).await,
            Command::Host(args) => host::run(*args).await,
            Command::User(cmd) => user::run(cmd).await,
            Command::Local(args) => local::run(*args).await,
            Command::Admin(args) => admin::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Demo => demo::run().await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, filtered by `RUST_LOG` (default: warnings).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
