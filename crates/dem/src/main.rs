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
mod bench_logs;
mod bench_lookups;
mod bench_mail;
mod bench_monitor;
mod bench_move;
mod bench_net;
mod bench_repl;
mod bench_seal;
mod bench_sink;
mod bench_size;
mod bench_size_check;
pub mod config;
pub mod demo;
pub mod dispatch;
pub mod host;
pub mod limits;
pub mod local;
pub mod logging;
pub mod mail_json;
pub mod progress;
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
    /// The user's home directory (default: `DEM_HOME`, then the XDG config
    /// dir); before or after the subcommand, as the subcommands that use a
    /// home take it too.
    #[arg(long, global = true, value_name = "DIR")]
    pub home: Option<std::path::PathBuf>,
    /// Machine-readable output, for the commands that have it; before or
    /// after the subcommand.
    #[arg(long, global = true)]
    pub json: bool,
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
    if let Err(e) = check_globals(&argv) {
        eprintln!("error: {e}");
        return std::process::ExitCode::from(2);
    }
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
    let log_args = match &cli.command {
        Command::Dispatch(args) => Some(&args.log),
        Command::Host(args) => Some(&args.log),
        _ => None,
    };
    let log_feed = match logging::init(log_args) {
        Ok(feed) => feed,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
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
            Command::Dispatch(args) => dispatch::run(args, log_feed).await,
            Command::Host(args) => host::run(*args, log_feed).await,
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

/// `--home` and `--json` are global so they may come before the
/// subcommand, but clap then accepts them for every command: refuse them
/// where no command on the way (`admin` for `admin status`'s home) has
/// such an option of its own, rather than ignore them (`dem bench net
/// --json` would print text, `dem --home X dispatch` would not use X).
fn check_globals(argv: &[std::ffi::OsString]) -> Result<(), String> {
    let top = <Cli as clap::CommandFactory>::command();
    // A command line clap refuses gets clap's own message later.
    let Ok(matches) = top.clone().try_get_matches_from(argv) else {
        return Ok(());
    };
    let (mut command, mut leaf, mut path) = (&top, &matches, String::from("dem"));
    let mut own = Vec::new();
    while let Some((name, sub)) = leaf.subcommand() {
        let Some(found) = command.find_subcommand(name) else {
            return Ok(());
        };
        // The unbuilt command: the top's globals are not copied into
        // its subcommands yet, so every argument found is their own.
        own.extend(
            found
                .get_arguments()
                .map(|a| a.get_id().as_str().to_owned()),
        );
        command = found;
        leaf = sub;
        path.push(' ');
        path.push_str(name);
    }
    for id in ["home", "json"] {
        let given = leaf.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
        if given && !own.iter().any(|o| o == id) {
            return Err(format!("`{path}` takes no --{id}"));
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What `argv` parsed to, as text: the subcommand's own `json` and
    /// `home` fields must carry the global options.
    fn parsed(argv: &[&str]) -> String {
        format!("{:?}", Cli::try_parse_from(argv).unwrap().command)
    }

    #[test]
    fn home_and_json_go_before_or_after_the_subcommand() {
        for argv in [
            &["dem", "--json", "--home", "h", "inbox"][..],
            &["dem", "inbox", "--json", "--home", "h"],
            &["dem", "--home", "h", "inbox", "--json"],
        ] {
            let p = parsed(argv);
            assert!(p.contains("json: true"), "{argv:?}: {p}");
            assert!(p.contains("home: Some(\"h\")"), "{argv:?}: {p}");
        }
        let argv = |a: &[&str]| a.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        assert!(check_globals(&argv(&["dem", "--json", "inbox"])).is_ok());
        assert!(check_globals(&argv(&["dem", "--home", "h", "admin", "status"])).is_ok());
        let err = check_globals(&argv(&["dem", "--json", "config", "example", "host"]));
        assert_eq!(err, Err("`dem config example` takes no --json".into()));
        assert!(check_globals(&argv(&["dem", "bench", "net", "--home", "h"])).is_err());
        let p = parsed(&["dem", "inbox"]);
        assert!(p.contains("json: false") && p.contains("home: None"), "{p}");
        let p = parsed(&["dem", "--home", "h", "admin", "status", "--json"]);
        assert!(
            p.contains("json: true") && p.contains("home: Some(\"h\")"),
            "{p}"
        );
    }
}
