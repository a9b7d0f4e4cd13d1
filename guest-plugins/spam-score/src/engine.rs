//! Turns a mail's spam score into the filter's verdict.
//!
//! - score ≥ `reject_threshold`: `reject("spam score X ≥ Y: reasons")`;
//! - score ≥ `junk_threshold`: `file-into(folder)`;
//! - otherwise `spam-score(score)`, which the host records on the mail.
//!
//! The reject check comes first, so a reject threshold below the junk
//! threshold simply means "reject instead of filing". Every mail's score
//! and the rules that fired are logged at debug level. A config that does
//! not parse is logged at error level and the mail accepted: a typo must
//! never lose mail.

use crate::Verdict;
use crate::config::{Config, parse_config};
use crate::dem::mail::log::Level;
use crate::dem::mail::types::MailView;
use crate::score::{Hit, hits, total};

/// Longest reject reason, in bytes; the reason travels back to the sender,
/// so a config with hundreds of matching rules must not make it huge.
pub const MAX_REASON_BYTES: usize = 1024;

/// Scores `mail` under `config`; `log` receives what the host should log.
pub fn evaluate(mail: &MailView, config: &str, log: &mut dyn FnMut(Level, &str)) -> Verdict {
    let config = match parse_config(config) {
        Ok(config) => config,
        Err(error) => {
            log(
                Level::Error,
                &format!("spam-score: bad config, accepting mail: {error}"),
            );
            return Verdict::Accept;
        }
    };
    let hits = hits(mail, &config);
    let score = total(&hits);
    log(
        Level::Debug,
        &format!(
            "spam-score: mail {} scored {score:.1} (junk {:.1}, reject {}): {}",
            mail.id,
            config.junk_threshold,
            config
                .reject_threshold
                .map_or("off".to_string(), |t| format!("{t:.1}")),
            describe(&hits)
        ),
    );
    decide(score, &hits, &config)
}

/// The verdict for `score`, reached through `hits`.
pub fn decide(score: f32, hits: &[Hit], config: &Config) -> Verdict {
    match config.reject_threshold {
        Some(threshold) if score >= threshold => Verdict::Reject(truncate(
            format!("spam score {score:.1} ≥ {threshold:.1}: {}", describe(hits)),
            MAX_REASON_BYTES,
        )),
        _ if score >= config.junk_threshold => Verdict::FileInto(config.folder.clone()),
        _ => Verdict::SpamScore(score),
    }
}

/// `label (+w), label (-w)`, or `no rules matched`.
fn describe(hits: &[Hit]) -> String {
    if hits.is_empty() {
        return "no rules matched".to_string();
    }
    hits.iter()
        .map(|hit| format!("{} ({:+.1})", hit.label, hit.weight))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Cuts `text` to at most `max` bytes on a character boundary, marking the
/// cut with `…` when there is room for it.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let ellipsis = if max >= '…'.len_utf8() { "…" } else { "" };
    let mut cut = max - ellipsis.len();
    // Index 0 is always a boundary, so this stops.
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push_str(ellipsis);
    text
}

#[cfg(test)]
mod tests;
