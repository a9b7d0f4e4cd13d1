//! `dem completions SHELL` prints a completion script that names the
//! subcommands, and the bash one is valid bash; a piped reader that stops
//! early is no reason to fail.

use std::io::Read as _;
use std::process::{Command, Stdio};

use anyhow::ensure;
use dem_tests::{Result, dem_bin};

fn script(shell: &str) -> Result<String> {
    let out = Command::new(dem_bin())
        .args(["completions", shell])
        .output()?;
    ensure!(out.status.success(), "dem completions {shell}: {out:?}");
    Ok(String::from_utf8(out.stdout)?)
}

#[test]
fn every_shell_gets_a_script_naming_the_subcommands() -> Result<()> {
    for shell in ["bash", "zsh", "fish"] {
        let text = script(shell)?;
        for sub in ["host", "dispatch", "admin", "send", "completions"] {
            ensure!(text.contains(sub), "the {shell} script lacks `{sub}`");
        }
    }
    let tmp = dem_tests::temp_dir();
    let path = tmp.path().join("dem.bash");
    std::fs::write(&path, script("bash")?)?;
    let check = Command::new("bash").arg("-n").arg(&path).output()?;
    ensure!(check.status.success(), "bash -n: {check:?}");
    Ok(())
}

#[test]
fn a_reader_that_closes_early_does_not_make_it_panic() -> Result<()> {
    let mut child = Command::new(dem_bin())
        .args(["completions", "zsh"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first)?;
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!stderr.contains("panicked"), "{stderr}");
    Ok(())
}
