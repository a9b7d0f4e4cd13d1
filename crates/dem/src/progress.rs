//! Progress bars for long CLI work (`dem bench`), drawn on stderr only when
//! it is a terminal: piped into a file or read by a script or a test, the
//! output stays exactly what it was, with no control characters.
//!
//! Attachment transfers have their own progress line in `dem-client`
//! (`progress.rs`), which follows the same rule.

use std::io::IsTerminal as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a spinner turns while nothing else redraws it.
const TICK: Duration = Duration::from_millis(120);

/// Stderr when it is a terminal, else nowhere.
fn target() -> ProgressDrawTarget {
    if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

/// A bar of `len` steps labelled `label`.
pub fn bar(label: &str, len: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), target());
    // The template is a constant: should it ever not parse, a bar without
    // style is still a bar.
    if let Ok(style) =
        ProgressStyle::with_template("{msg:24} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(label.to_owned());
    bar
}

/// A spinner with the time spent, for work of unknown length.
pub fn spinner(label: &str) -> ProgressBar {
    let spinner = ProgressBar::with_draw_target(None, target());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
        spinner.set_style(style);
    }
    spinner.set_message(label.to_owned());
    if !spinner.is_hidden() {
        spinner.enable_steady_tick(TICK);
    }
    spinner
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_off_a_terminal_are_hidden_and_still_count() {
        // Tests run with stderr captured or piped, never a terminal.
        if std::io::stderr().is_terminal() {
            return;
        }
        let b = bar("creating", 10);
        assert!(b.is_hidden());
        b.inc(4);
        assert_eq!(b.position(), 4);
        b.finish_and_clear();
        assert!(spinner("bench").is_hidden());
    }
}
