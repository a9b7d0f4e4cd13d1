//! `dem bench logs` at a tiny size, so the command BENCHMARKS.md records
//! keeps working: a unit as a process, hosts shipping to it, every key
//! reported, and the ring evicting rather than growing. The CPU and memory
//! numbers mean nothing at this size and are not checked.

use std::process::Command;

use anyhow::{Context as _, ensure};
use dem_tests::{EXIT_WITH_PARENT_ENV, Result, dem_bin};
use serde_json::Value;

#[test]
fn bench_logs_measures_every_key() -> Result<()> {
    let out = Command::new(dem_bin())
        .args([
            "bench",
            "logs",
            "--json",
            "--seconds",
            "1",
            "--rate",
            "2000",
        ])
        .args(["--hosts", "2", "--ring", "100"])
        .env(EXIT_WITH_PARENT_ENV, "1")
        .output()
        .context("running dem bench logs")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "dem bench logs failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().context("no output")?;
    let report: Value = serde_json::from_str(line).context("the report is JSON")?;
    for key in [
        "events_sent",
        "events_per_s",
        "unit_rss_bytes_before",
        "unit_rss_bytes_after",
        "ring_evicted",
    ] {
        ensure!(
            report[key].as_f64().is_some_and(|v| v > 0.0),
            "{key} missing or not positive in {report}"
        );
    }
    ensure!(
        report["unit_cpu_share_of_one_core"].as_f64().is_some(),
        "{report}"
    );
    // 2,048 events or more into a ring of 100.
    let (sent, evicted) = (
        report["events_sent"].as_u64().unwrap_or(0),
        report["ring_evicted"].as_u64().unwrap_or(0),
    );
    ensure!(
        evicted + 100 >= sent,
        "the ring kept more than 100: {report}"
    );
    Ok(())
}
