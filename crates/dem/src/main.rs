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
//! - `completions`: shell completion scripts.
//! - `config`: example config files; `config.rs` also reads `--config`.

pub mod admin;
pub mod bench;
mod bench_host;
mod bench_lookups;
mod bench_move;
mod bench_net;
mod bench_repl;
mod bench_sink;
pub mod config;
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
    /// Config files of the daemons (`dem host|dispatch --config FILE`).
    Config(config::ConfigArgs),
    /// Print a shell completion script, e.g. `dem completions bash >
    /// ~/.local/share/bash-completion/completions/dem`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Entry point of the `dem` binary.
pub fn main() -> std::process::ExitCode {
    let argv = match config::expand(std::env::args_os().collect()) {
        Ok(argv) => argv,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(argv);
    if let Command::Completions { shell } = cli.command {
        let mut command = <Cli as clap::CommandFactory>::command();
        // Into memory first: clap_complete panics on a failed write, and a
        // closed pipe (`| head`) is no reason to.
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut command, "dem", &mut script);
        use std::io::Write as _;
        return match std::io::stdout().write_all(&script) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                eprintln!("error: writing the completion script: {e}");
                std::process::ExitCode::FAILURE
            }
            _ => std::process::ExitCode::SUCCESS,
        };
    }
    init_tracing();
    exit_with_parent();
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
            Command::Completions { .. } => Ok(()),
            Command::Config(args) => config::run(args),
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

/// Set by a `dem` process (a bench, the demo, the tests) in the
/// environment of the daemons it starts: such a daemon exits once the
/// process that started it is gone, so a parent that is killed, which
/// cannot clean up, leaves no daemons behind.
pub const EXIT_WITH_PARENT_ENV: &str = "DEM_EXIT_WITH_PARENT";

/// How often a daemon started with [`EXIT_WITH_PARENT_ENV`] checks on its
/// parent.
const PARENT_CHECK_MS: u64 = 250;

/// With [`EXIT_WITH_PARENT_ENV`] set, watches the parent process from a
/// plain thread (it must work even if the runtime is stuck) and exits when
/// this process is reparented, i.e. when the parent died.
fn exit_with_parent() {
    if std::env::var_os(EXIT_WITH_PARENT_ENV).is_none() {
        return;
    }
    #[cfg(unix)]
    {
        let parent = std::os::unix::process::parent_id();
        let watch = std::thread::Builder::new()
            .name("parent-watch".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(std::time::Duration::from_millis(PARENT_CHECK_MS));
                    if std::os::unix::process::parent_id() != parent {
                        eprintln!("the process that started this one is gone; exiting");
                        std::process::exit(1);
                    }
                }
            });
        if let Err(e) = watch {
            eprintln!("warning: cannot watch the parent process: {e}");
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
