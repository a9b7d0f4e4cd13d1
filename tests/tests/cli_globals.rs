//! `--home` and `--json` are global options, as in git and cargo: they
//! work before or after the subcommand, and a command that has no use for
//! one refuses it with a message instead of ignoring it.

use std::process::{Command, Stdio};

use anyhow::{Context as _, ensure};
use dem_tests::{Result, arg, dem_bin, temp_dir};

/// Runs `dem ARGS` with no `DEM_HOME`; (success, stdout, stderr).
fn dem(args: &[&str]) -> Result<(bool, String, String)> {
    let out = Command::new(dem_bin())
        .args(args)
        .env_remove("DEM_HOME")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running dem {args:?}"))?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn home_and_json_work_before_or_after_the_subcommand() -> Result<()> {
    let tmp = temp_dir();
    let home = tmp.path().join("alice");
    let home = arg(&home);
    let (ok, _, err) = dem(&["--home", home, "id", "new", "alice"])?;
    ensure!(ok, "{err}");
    let mut shown = Vec::new();
    for args in [
        &["--home", home, "id", "show"][..],
        &["id", "--home", home, "show"],
        &["id", "show", "--home", home],
    ] {
        let (ok, out, err) = dem(args)?;
        ensure!(ok, "dem {args:?}: {err}");
        ensure!(out.starts_with("alice "), "dem {args:?}: {out}");
        shown.push(out);
    }
    ensure!(shown.iter().all(|s| *s == shown[0]), "{shown:?}");

    // `--json` before the subcommand reaches it: with no dispatch unit
    // known the command fails the same way, not with a usage error.
    for args in [
        &["--json", "--home", home, "inbox"][..],
        &["inbox", "--home", home, "--json"],
    ] {
        let (ok, _, err) = dem(args)?;
        ensure!(!ok && err.contains("no dispatch units known"), "{err}");
    }

    // Where there is nothing to apply them to, they are refused.
    let (ok, _, err) = dem(&["--json", "config", "example", "host"])?;
    ensure!(
        !ok && err.contains("`dem config example` takes no --json"),
        "{err}"
    );
    let (ok, _, err) = dem(&["--home", home, "completions", "bash"])?;
    ensure!(!ok && err.contains("takes no --home"), "{err}");
    Ok(())
}
