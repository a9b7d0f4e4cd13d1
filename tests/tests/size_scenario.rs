//! The size scenario of issue 16 scaled down for CI: `dem bench size` with
//! 2,000 mails of about 4 KiB, so that the command BENCHMARKS.md records
//! for 100,000 mails and more than 2 GB keeps working. It starts its own
//! unit and hosts on 127.0.0.250–253; every step must pass (the listing
//! counts every mail, every sampled read matches the bytes sent, before
//! and after the move and the restart) and the state must stay within 300
//! bytes a mail. Then the mailbox moves onto a copy the listing dropped,
//! and every sampled mail must still read back. Times are not checked:
//! they mean nothing at this size.

use std::process::Command;

use anyhow::{Context as _, ensure};
use dem_tests::{EXIT_WITH_PARENT_ENV, Result, dem_bin};
use serde_json::Value;

#[test]
fn a_big_mailbox_delivers_lists_reads_moves_and_restarts() -> Result<()> {
    let out = Command::new(dem_bin())
        .args(["bench", "size", "--json", "--mails", "2000"])
        .args(["--mail-bytes", "4096", "--sample", "50", "--onto-copy"])
        .env(EXIT_WITH_PARENT_ENV, "1")
        .output()
        .context("running dem bench size")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "dem bench size failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().context("no output")?;
    let report: Value = serde_json::from_str(line).context("the report is JSON")?;
    ensure!(report["passed"] == true, "a step failed: {report}");
    ensure!(report["listed"] == 2000, "listed: {report}");
    ensure!(report["listed_after_restart"] == 2000, "relisted: {report}");
    ensure!(report["sample"] == 50, "sample: {report}");
    let per_mail = report["state_bytes_per_mail"]
        .as_f64()
        .context("no state_bytes_per_mail")?;
    ensure!(per_mail <= 300.0, "{per_mail} state bytes a mail: {report}");
    for key in [
        "deliver_per_s",
        "stored_bytes",
        "list_ms",
        "read_ms_per_mail",
        "move_ms",
        "move_bytes",
        "restart_ms",
    ] {
        ensure!(
            report[key].as_f64().is_some_and(|v| v > 0.0),
            "{key} missing or not positive in {report}"
        );
    }
    // The move carried every blob.
    ensure!(
        report["move_bytes"].as_f64() > report["stored_bytes"].as_f64(),
        "the move carried less than the messages: {report}"
    );
    // Moving onto the copy the listing dropped: every sampled mail still
    // reads back (a delivery once reached the replica without its bytes,
    // and a delta move onto it lost those mails for good).
    let onto = &report["move_onto_unlisted_copy"];
    ensure!(
        onto["reads_failed"] == 0,
        "mails lost moving onto the copy: {report}"
    );
    ensure!(
        onto["delta_moves"].as_u64().unwrap_or(0) + onto["full_moves"].as_u64().unwrap_or(0) == 1,
        "no move onto the copy: {report}"
    );
    // Moving onto the replica is either measured or refused with a reason.
    ensure!(
        report["move_index_only_ms"].is_number() || report["move_index_only_note"].is_string(),
        "the index-only move is neither measured nor explained: {report}"
    );
    Ok(())
}
