//! Where a `dem` process's log goes: the daemons' `--log-format`,
//! `--log-file` and rotation settings, and the tracing subscriber built
//! from them.
//!
//! Every command logs to stderr in the human format, filtered by
//! `RUST_LOG` (default: warnings), so scripts and tests that read stderr
//! see what they always saw. The daemons (`dem host`, `dem dispatch`) may
//! instead log JSON (one object per line, with the fields of the event and
//! of its spans: host id, mailbox id, ...) and to a file rotated by size
//! (`dem_node::logs::rotate`); and they also catch their events at info
//! and above for the dispatch units' log ring (`dem_node::logs`), whatever
//! `RUST_LOG` lets through to stderr.

use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use dem_node::logs::rotate::{KEEP_DEFAULT, KEEP_MAX, MAX_BYTES_DEFAULT, RotatingFile};
use dem_node::logs::{FEED_CAPACITY, LogFeed};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per event, with its spans' fields.
    Json,
}

/// The daemons' log settings.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// How log lines are written: `text` or `json` (one object per line,
    /// with the event's and its spans' fields). `RUST_LOG` sets the levels.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Write the log to this file instead of stderr, rotated by size.
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    /// Rotate the log file when it would grow past this many bytes.
    #[arg(long, default_value_t = MAX_BYTES_DEFAULT)]
    pub log_max_bytes: u64,
    /// Rotated log files kept (`PATH.1` is the newest).
    #[arg(long, default_value_t = KEEP_DEFAULT)]
    pub log_keep: usize,
}

/// The events shipped to the units: DEM's own, at info and above. As a
/// static filter it also keeps the callsites below it disabled, so debug
/// events cost nothing unless `RUST_LOG` asks for them.
fn shipped() -> Targets {
    Targets::new()
        .with_target("dem", tracing::Level::INFO)
        .with_target("dem_node::logs", LevelFilter::OFF)
}

/// Sets up the process's log. With `daemon` settings, as those say, plus
/// the layer that catches events for the dispatch units; its feed is
/// returned. Without, the human format on stderr.
pub fn init(daemon: Option<&LogArgs>) -> anyhow::Result<Option<LogFeed>> {
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let Some(args) = daemon else {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .try_init();
        return Ok(None);
    };
    anyhow::ensure!(args.log_max_bytes > 0, "--log-max-bytes must be positive");
    anyhow::ensure!(
        args.log_keep <= KEEP_MAX,
        "--log-keep must be at most {KEEP_MAX}"
    );
    let (ship, feed) = dem_node::logs::layer(FEED_CAPACITY);
    let file = match &args.log_file {
        Some(path) => Some(Mutex::new(
            RotatingFile::open(path, args.log_max_bytes, args.log_keep)
                .with_context(|| format!("opening the log file {}", path.display()))?,
        )),
        None => None,
    };
    // Four combinations of format and destination, each its own type.
    let output = match (args.log_format, file) {
        (LogFormat::Text, None) => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        (LogFormat::Text, Some(file)) => tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(file)
            .boxed(),
        (LogFormat::Json, None) => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
        (LogFormat::Json, Some(file)) => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(file)
            .boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(output.with_filter(filter()))
        .with(ship.with_filter(shipped()))
        .try_init();
    Ok(Some(feed))
}
