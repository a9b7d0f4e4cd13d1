//! Config files for the daemons: `dem host --config FILE` and `dem
//! dispatch --config FILE` read TOML, and `dem config example host|
//! dispatch` prints a commented file to start from.
//!
//! A file holds the same settings as the daemon's flags, under the flags'
//! long names (`heartbeat-ms = 3000`; `heartbeat_ms` works too), so there
//! is one list of settings, documented once, in the clap definitions.
//! Before clap parses the command line, the file's settings become flags
//! placed ahead of the user's own; a setting the user also gives as a flag,
//! or through its environment variable, is left out, so the order of
//! precedence is flag, environment, file, default. A key that names no
//! setting is an error that names it: a typo must not silently fall back
//! to a default.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{Context as _, bail};
use clap::{Arg, ArgAction, Args, CommandFactory, Subcommand};

/// The subcommands that take `--config`.
pub const DAEMONS: [&str; 2] = ["host", "dispatch"];
/// Largest config file read.
pub const CONFIG_BYTES_MAX: u64 = 1 << 20;

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print a commented config file for `host` or `dispatch`, with every
    /// setting at its default.
    Example {
        #[arg(value_parser = DAEMONS)]
        daemon: String,
    },
}

pub fn run(args: ConfigArgs) -> anyhow::Result<()> {
    match args.command {
        ConfigCommand::Example { daemon } => {
            print!("{}", example(&daemon)?);
            Ok(())
        }
    }
}

/// The daemon's clap command, whose arguments are the settings.
fn daemon_command(daemon: &str) -> anyhow::Result<clap::Command> {
    super::Cli::command()
        .find_subcommand(daemon)
        .cloned()
        .with_context(|| format!("no daemon `{daemon}`"))
}

/// The settings a file may hold: every long flag except `--config` itself
/// and clap's own.
fn settings(command: &clap::Command) -> impl Iterator<Item = (&str, &Arg)> {
    command.get_arguments().filter_map(|a| {
        let long = a.get_long()?;
        (!matches!(long, "config" | "help" | "version")).then_some((long, a))
    })
}

/// Rewrites `argv` when it runs a daemon with `--config FILE`: the file's
/// settings become flags right after the subcommand. Any other command
/// line is returned as it was.
pub fn expand(argv: Vec<OsString>) -> anyhow::Result<Vec<OsString>> {
    let Some(daemon) = argv.get(1).and_then(|a| a.to_str()) else {
        return Ok(argv);
    };
    if !DAEMONS.contains(&daemon) {
        return Ok(argv);
    }
    let daemon = daemon.to_owned();
    let mut rest: Vec<OsString> = Vec::with_capacity(argv.len());
    let mut file = None;
    let mut args = argv[2..].iter();
    while let Some(a) = args.next() {
        let text = a.to_string_lossy();
        if text == "--" {
            rest.push(a.clone());
            rest.extend(args.by_ref().cloned());
            break;
        }
        if text == "--config" {
            let path = args.next().context("--config needs a file")?;
            file = Some(std::path::PathBuf::from(path));
        } else if let Some(path) = text.strip_prefix("--config=") {
            file = Some(path.into());
        } else {
            rest.push(a.clone());
        }
    }
    let Some(file) = file else {
        return Ok(argv);
    };
    let text = read_config(&file)?;
    let given: Vec<String> = rest
        .iter()
        .filter_map(|a| a.to_str()?.strip_prefix("--"))
        .map(|a| a.split('=').next().unwrap_or(a).to_owned())
        .collect();
    let from_file = flags_from(&daemon, &text, &given)
        .with_context(|| format!("in the config file {}", file.display()))?;
    let mut out = argv[..2].to_vec();
    out.extend(from_file.into_iter().map(OsString::from));
    out.extend(rest);
    Ok(out)
}

fn read_config(path: &Path) -> anyhow::Result<String> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("reading the config file {}", path.display()))?;
    if meta.len() > CONFIG_BYTES_MAX {
        bail!(
            "the config file {} is {} bytes; the limit is {CONFIG_BYTES_MAX}",
            path.display(),
            meta.len()
        );
    }
    std::fs::read_to_string(path)
        .with_context(|| format!("reading the config file {} (UTF-8 TOML)", path.display()))
}

/// The flags that `text`, a TOML config of `daemon`, stands for, leaving
/// out the settings in `given` (flags on the command line) and those set
/// in the environment.
fn flags_from(daemon: &str, text: &str, given: &[String]) -> anyhow::Result<Vec<String>> {
    let table: toml::Table = text.parse().context("not valid TOML")?;
    let command = daemon_command(daemon)?;
    let known: Vec<(&str, &Arg)> = settings(&command).collect();
    let mut flags = Vec::new();
    for (key, value) in &table {
        let long = key.replace('_', "-");
        let Some((long, arg)) = known.iter().find(|(l, _)| *l == long) else {
            let names: Vec<&str> = known.iter().map(|(l, _)| *l).collect();
            bail!(
                "unknown key `{key}`: `dem {daemon}` has no setting of that name (it has {})",
                names.join(", ")
            );
        };
        if given.iter().any(|g| g == long) {
            continue;
        }
        if arg
            .get_env()
            .is_some_and(|env| std::env::var_os(env).is_some())
        {
            continue;
        }
        push_flag(&mut flags, key, long, arg, value)?;
    }
    Ok(flags)
}

fn push_flag(
    flags: &mut Vec<String>,
    key: &str,
    long: &str,
    arg: &Arg,
    value: &toml::Value,
) -> anyhow::Result<()> {
    let switch = matches!(arg.get_action(), ArgAction::SetTrue);
    let many = matches!(arg.get_action(), ArgAction::Append);
    match value {
        toml::Value::Boolean(on) if switch => {
            if *on {
                flags.push(format!("--{long}"));
            }
        }
        _ if switch => bail!("`{key}` is a switch: give true or false"),
        toml::Value::Array(items) if many => {
            for item in items {
                flags.push(format!("--{long}={}", scalar(key, item)?));
            }
        }
        toml::Value::Array(_) => bail!("`{key}` takes one value, not a list"),
        other => flags.push(format!("--{long}={}", scalar(key, other)?)),
    }
    Ok(())
}

fn scalar(key: &str, value: &toml::Value) -> anyhow::Result<String> {
    Ok(match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(_) | toml::Value::Table(_) => {
            bail!("`{key}` takes a plain value, not a list or a table")
        }
    })
}

/// A commented config file of `daemon`: each setting's help as a comment,
/// then the setting at its default, or commented out where it has none.
pub fn example(daemon: &str) -> anyhow::Result<String> {
    let command = daemon_command(daemon)?;
    let mut out = format!(
        "# Config of `dem {daemon}`: run it with `dem {daemon} --config FILE`.\n\
         # Flags given on the command line win over this file. Every key is\n\
         # a flag's long name; a key that names no flag is an error.\n"
    );
    for (long, arg) in settings(&command) {
        out.push('\n');
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        for line in help.lines() {
            out.push_str(&format!("# {line}\n").replace("# \n", "#\n"));
        }
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let many = matches!(arg.get_action(), ArgAction::Append);
        let switch = matches!(arg.get_action(), ArgAction::SetTrue);
        let required = arg.is_required_set();
        if required {
            out.push_str("# Required: give it here or as a flag.\n");
        }
        let (value, commented) = match (defaults.as_slice(), switch) {
            (_, true) => ("false".to_owned(), false),
            ([], _) => (placeholder(arg, many), true),
            ([one], _) if !many => (toml_scalar(one), false),
            (many_values, _) => (
                format!(
                    "[{}]",
                    many_values
                        .iter()
                        .map(|v| toml_scalar(v))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                false,
            ),
        };
        let hash = if commented { "# " } else { "" };
        out.push_str(&format!("{hash}{long} = {value}\n"));
    }
    Ok(out)
}

/// A value to show for a setting without a default.
fn placeholder(arg: &Arg, many: bool) -> String {
    let name = arg
        .get_value_names()
        .and_then(|n| n.first())
        .map(|n| n.to_string())
        .unwrap_or_else(|| arg.get_id().to_string().to_uppercase());
    let one = format!("\"{name}\"");
    if many { format!("[{one}]") } else { one }
}

fn toml_scalar(v: &str) -> String {
    if v.parse::<i64>().is_ok() || v.parse::<f64>().is_ok() || v == "true" || v == "false" {
        v.to_owned()
    } else {
        toml::Value::String(v.to_owned()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn argv(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn with_file(text: &str, args: &[&str]) -> anyhow::Result<Vec<String>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("dem.toml");
        std::fs::write(&path, text)?;
        let mut full = vec!["dem"];
        full.extend_from_slice(&args[..1]);
        full.push("--config");
        let path = path.to_string_lossy().into_owned();
        full.push(&path);
        full.extend_from_slice(&args[1..]);
        Ok(expand(argv(&full))?
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect())
    }

    #[test]
    fn the_file_fills_in_and_flags_win() {
        let text = "listen = \"127.0.0.1:7100\"\ndispatch = \"127.0.0.1:7000\"\ndata = \"/tmp/x\"\nheartbeat_ms = 500\ncapacity = 7\n";
        let args = with_file(text, &["host", "--capacity", "9"]).unwrap();
        assert!(args.contains(&"--heartbeat-ms=500".to_owned()), "{args:?}");
        assert!(!args.iter().any(|a| a == "--capacity=7"), "{args:?}");
        let cli = crate::Cli::try_parse_from(&args).unwrap();
        let crate::Command::Host(host) = cli.command else {
            panic!("not host")
        };
        assert_eq!(host.capacity, 9);
        assert_eq!(host.heartbeat_ms, 500);
        assert_eq!(host.listen.port(), 7100);
    }

    #[test]
    fn an_unknown_key_is_an_error_that_names_it() {
        let err = with_file("heartbeet_ms = 5\n", &["host"]).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("unknown key `heartbeet_ms`"), "{text}");
        assert!(text.contains("heartbeat-ms"), "{text}");
    }

    #[test]
    fn lists_and_bad_types_are_handled() {
        let text = "listen = \"127.0.0.1:7000\"\ndata = \"/tmp/u\"\npeer = [\"127.0.0.1:7001\", \"127.0.0.1:7002\"]\n";
        let args = with_file(text, &["dispatch"]).unwrap();
        let cli = crate::Cli::try_parse_from(&args).unwrap();
        let crate::Command::Dispatch(d) = cli.command else {
            panic!("not dispatch")
        };
        assert_eq!(d.peers.len(), 2);
        let err = with_file("replicas = [1, 2]\n", &["dispatch"]).unwrap_err();
        assert!(format!("{err:#}").contains("one value"), "{err:#}");
        let err = with_file("replicas = {a = 1}\n", &["dispatch"]).unwrap_err();
        assert!(
            format!("{err:#}").contains("not a list or a table"),
            "{err:#}"
        );
        let err = with_file("not toml ==", &["dispatch"]).unwrap_err();
        assert!(format!("{err:#}").contains("not valid TOML"), "{err:#}");
    }

    #[test]
    fn no_config_leaves_the_command_line_alone() {
        let a = argv(&["dem", "host", "--listen", "127.0.0.1:1"]);
        assert_eq!(expand(a.clone()).unwrap(), a);
        let a = argv(&["dem", "send", "--config", "x"]);
        assert_eq!(expand(a.clone()).unwrap(), a);
    }

    #[test]
    fn the_examples_are_valid_configs_of_their_daemons() {
        for daemon in DAEMONS {
            let text = example(daemon).unwrap();
            assert!(text.contains("# "), "{text}");
            let table: toml::Table = text.parse().unwrap();
            assert!(!table.is_empty(), "{text}");
            // Every key it sets is accepted, and with the required
            // settings (commented out in it) it parses.
            let text = format!(
                "{text}\nlisten = \"127.0.0.1:7000\"\ndata = \"/tmp/d\"\n{}",
                if daemon == "host" {
                    "dispatch = [\"127.0.0.1:7001\"]\n"
                } else {
                    ""
                }
            );
            let args = with_file(&text, &[daemon]).unwrap();
            crate::Cli::try_parse_from(&args).unwrap();
        }
    }
}
