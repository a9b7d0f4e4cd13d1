//! `dem bench net` at a tiny size, so the command BENCHMARKS.md records
//! keeps working: it starts its own unit, hosts and sink as processes,
//! and reports every key with the move and both raw baselines measured.
//! The numbers mean nothing at this size and are not checked.

use std::process::Command;

use anyhow::{Context as _, ensure};
use dem_tests::{EXIT_WITH_PARENT_ENV, Result, dem_bin};
use serde_json::Value;

#[test]
fn bench_net_measures_every_key() -> Result<()> {
    let out = Command::new(dem_bin())
        .args(["bench", "net", "--json", "--mails", "300", "--senders", "2"])
        .args(["--deliveries", "100", "--lookups", "2000"])
        .args(["--connections", "2", "--in-flight", "8"])
        .env(EXIT_WITH_PARENT_ENV, "1")
        .output()
        .context("running dem bench net")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "dem bench net failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().context("no output")?;
    let report: Value = serde_json::from_str(line).context("the report is JSON")?;
    ensure!(report["move_note"].is_null(), "the move failed: {report}");
    for key in [
        "lookups_per_s",
        "deliver_per_s",
        "move_ms",
        "raw_quic_ms",
        "raw_quic_durable_ms",
        "move_vs_raw",
        "move_vs_raw_durable",
        "export_bytes",
    ] {
        ensure!(
            report[key].as_f64().is_some_and(|v| v > 0.0),
            "{key} missing or not positive in {report}"
        );
    }
    let runs = report["move_ms_runs"]
        .as_array()
        .context("no move_ms_runs")?;
    ensure!(
        runs.len() == 3,
        "three moves, one to each other host: {report}"
    );
    Ok(())
}
