//! A progress line for large transfers, shown only when stderr is a
//! terminal (scripts and tests get clean output) and only for transfers big
//! enough to take a noticeable time.

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

/// Transfers smaller than this show no progress.
pub const PROGRESS_BYTES_MIN: u64 = 4 << 20;
/// How often the line is redrawn.
const REDRAW: Duration = Duration::from_millis(100);

/// One transfer's progress line.
#[derive(Debug)]
pub struct Progress {
    label: String,
    total_bytes: u64,
    done_bytes: u64,
    shown: bool,
    last_draw: Option<Instant>,
}

impl Progress {
    pub fn new(label: impl Into<String>, total_bytes: u64) -> Self {
        let shown = total_bytes >= PROGRESS_BYTES_MIN && std::io::stderr().is_terminal();
        Self {
            label: label.into(),
            total_bytes,
            done_bytes: 0,
            shown,
            last_draw: None,
        }
    }

    /// Counts `n` more bytes moved.
    pub fn advance(&mut self, n: u64) {
        self.done_bytes = self.done_bytes.saturating_add(n);
        if self.shown && self.last_draw.is_none_or(|t| t.elapsed() >= REDRAW) {
            self.draw();
        }
    }

    fn draw(&mut self) {
        self.last_draw = Some(Instant::now());
        let _ = write!(
            std::io::stderr(),
            "\r{}",
            line(&self.label, self.done_bytes, self.total_bytes)
        );
    }

    /// Draws the final state and ends the line.
    pub fn finish(mut self) {
        if self.shown {
            self.draw();
            let _ = writeln!(std::io::stderr());
        }
    }
}

/// `label  42% (12.0 of 28.5 MiB)`.
fn line(label: &str, done: u64, total: u64) -> String {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    // An empty transfer is complete.
    let pct = (done.min(total).saturating_mul(100))
        .checked_div(total)
        .map_or(100, |p| p as u32);
    format!(
        "{label} {pct:>3}% ({:.1} of {:.1} MiB)",
        mib(done),
        mib(total)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_percent_and_sizes() {
        assert_eq!(line("get", 3 << 20, 12 << 20), "get  25% (3.0 of 12.0 MiB)");
        assert_eq!(line("put", 0, 0), "put 100% (0.0 of 0.0 MiB)");
        assert_eq!(line("put", 20, 10), "put 100% (0.0 of 0.0 MiB)");
    }
}
