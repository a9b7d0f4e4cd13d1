//! `dem read`: one mail, read back as its exact bytes with
//! `dem_client::message::read_message` (stored bytes checked against their
//! hash, large parts fetched and spliced back) and shown as `render` sees
//! it: the header fields people read, the text, the attachments. `--raw`
//! writes the exact bytes; `--json` the shape of `mail_json::detail`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Args;

use super::{HomeArg, UserCtx};
use crate::mail_json;
use dem_client::message::read_message;
use dem_client::{MailboxRef, Target};
use dem_message::Rendered;

#[derive(Debug, Args)]
pub struct ReadArgs {
    id: String,
    /// Show the header fields only; the large parts are not fetched.
    #[arg(long, conflicts_with_all = ["raw", "range", "save_attachments"])]
    headers_only: bool,
    /// Write bytes `A-B` (end exclusive) of the exact message to stdout.
    #[arg(long)]
    range: Option<String>,
    /// Write the exact message to stdout, nothing else.
    #[arg(long, conflicts_with = "json")]
    raw: bool,
    /// Save the attachments, decoded, into this directory.
    #[arg(long)]
    save_attachments: Option<PathBuf>,
    /// Another user's mailbox (refused unless you own it).
    #[arg(long)]
    mailbox: Option<String>,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    home: HomeArg,
}

pub async fn run(args: ReadArgs) -> anyhow::Result<()> {
    let range = args
        .range
        .as_deref()
        .map(super::mail::parse_range)
        .transpose()?;
    let ctx = UserCtx::open(&args.home)?;
    let target = match args.mailbox.as_deref() {
        Some(m) => Target::parse(m),
        None => Target::User(ctx.key.user_id()),
    };
    let mut mailbox = MailboxRef::new(target);
    let read = read_message(
        &ctx.session,
        &mut mailbox,
        &args.id,
        !args.headers_only,
        &ctx.keyring,
    )
    .await;
    ctx.close().await;
    let read = read.with_context(|| format!("reading mail {}", args.id))?;
    let bytes = &read.bytes;
    if args.raw || range.is_some() {
        let (start, end) = range.unwrap_or((0, u64::MAX));
        let end = end.min(bytes.len() as u64) as usize;
        let start = (start as usize).min(end);
        let mut out = std::io::stdout().lock();
        out.write_all(&bytes[start..end])?;
        out.flush()?;
        return Ok(());
    }
    let rendered = dem_message::render(bytes)?;
    if let Some(dir) = &args.save_attachments {
        save_attachments(bytes, &rendered, dir)?;
    }
    if args.json {
        let shown = (!args.headers_only).then_some(&rendered);
        let mut v = mail_json::detail(&read.detail, shown);
        if args.headers_only {
            v["headers"] = mail_json::headers(&rendered.headers);
        }
        println!("{v}");
        return Ok(());
    }
    // Addresses as the index shows them (`Name <addr>` or `addr`), read
    // from the checked bytes here rather than taken from the host.
    let envelope = dem_message::parse(bytes)?.envelope;
    let date = rendered
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("Date"))
        .map(|(_, v)| v.as_str());
    println!("From: {}", envelope.from);
    println!("To: {}", envelope.to.join(", "));
    if !envelope.cc.is_empty() {
        println!("Cc: {}", envelope.cc.join(", "));
    }
    println!("Subject: {}", envelope.subject);
    if let Some(date) = date {
        println!("Date: {date}");
    }
    if args.headers_only {
        for a in &read.detail.attachments {
            println!(
                "Part: {} {} ({} bytes, {})",
                a.hash, a.name, a.size_bytes, a.media_type
            );
        }
        return Ok(());
    }
    for a in &rendered.attachments {
        println!(
            "Attachment: {} ({} bytes, {})",
            a.name.as_deref().unwrap_or("(unnamed)"),
            a.size_bytes,
            a.media_type
        );
    }
    if let Some(text) = &rendered.text {
        println!("\n{}", mail_json::lf_lines(text));
    }
    Ok(())
}

/// Writes each attachment, decoded, to `dir` under its own name made safe
/// (no path separators, no leading dot) or `attachment-N`; a name taken
/// twice gets `-N` appended. Never overwrites an existing file.
fn save_attachments(raw: &[u8], rendered: &Rendered, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut used: Vec<String> = Vec::new();
    for (i, info) in rendered.attachments.iter().enumerate() {
        let Some((_, content)) = dem_message::attachment_content(raw, i) else {
            bail!("attachment {} cannot be decoded", i + 1);
        };
        let base = info
            .name
            .as_deref()
            .map(safe_file_name)
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("attachment-{}", i + 1));
        let mut name = base.clone();
        let mut n = 1;
        while used.contains(&name) {
            n += 1;
            name = format!("{base}-{n}");
        }
        used.push(name.clone());
        let path = dir.join(&name);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        file.write_all(&content)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("saved {}", path.display());
    }
    Ok(())
}

/// A file name from an untrusted attachment name: path separators,
/// control characters and leading dots removed, at most 200 bytes.
fn safe_file_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() || c == ':' {
                '_'
            } else {
                c
            }
        })
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.');
    let mut cut = cleaned.len().min(200);
    while !cleaned.is_char_boundary(cut) {
        cut -= 1;
    }
    cleaned[..cut].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_names_cannot_escape_the_directory() {
        assert_eq!(safe_file_name("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(safe_file_name(".hidden"), "hidden");
        assert_eq!(safe_file_name("a\\b:c\n"), "a_b_c_");
        assert_eq!(safe_file_name("..."), "");
        assert_eq!(safe_file_name("report.pdf"), "report.pdf");
        assert!(safe_file_name(&"é".repeat(300)).len() <= 200);
    }
}
