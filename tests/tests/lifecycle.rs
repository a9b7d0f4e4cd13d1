//! A daemon started with `DEM_EXIT_WITH_PARENT` (as `dem bench`, `dem demo`
//! and these tests start theirs) exits once the process that started it
//! is gone, so a parent that is SIGKILLed, and so cannot clean up, leaves
//! no daemons behind.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use dem_tests::{EXIT_WITH_PARENT_ENV, Result, dem_bin, free_udp_port, temp_dir, wait_for};

/// Whether `pid` runs (a zombie left for a reaper does not).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[test]
fn a_daemon_exits_once_its_parent_is_killed() -> Result<()> {
    let dir = temp_dir();
    let data = dir.path().join("unit");
    let ip = "127.0.0.198";
    let port = free_udp_port(ip)?;
    // A shell starts the unit in the background, says its pid, and then
    // becomes a `sleep`: the unit's parent, to be killed.
    let script = format!(
        "'{}' dispatch --listen {ip}:{port} --data '{}' >/dev/null 2>&1 & echo $!; exec sleep 60",
        dem_bin().display(),
        data.display()
    );
    let mut parent = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .env(EXIT_WITH_PARENT_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the parent shell")?;
    let mut line = String::new();
    BufReader::new(parent.stdout.take().context("piped stdout")?).read_line(&mut line)?;
    let pid: u32 = line.trim().parse().context("the daemon's pid")?;
    let result = (|| -> Result<()> {
        // Serving (its tables saved once) means it is well past start-up,
        // where it notes its parent.
        wait_for("the unit to start", Duration::from_secs(20), || {
            Ok(data.join("tables.bin").exists())
        })?;
        ensure!(alive(pid), "the unit is not running");
        parent.kill()?;
        parent.wait()?;
        println!("SIGKILL parent of {pid}");
        wait_for("the orphaned unit to exit", Duration::from_secs(10), || {
            Ok(!alive(pid))
        })?;
        Ok(())
    })();
    if alive(pid) {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    let _ = parent.kill();
    let _ = parent.wait();
    result
}
