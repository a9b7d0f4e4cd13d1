//! `dem send`: composes an RFC 5322 message from the flags (or takes one
//! prepared elsewhere with `--raw`) and hands it to
//! `dem_client::message::send_message`, which uploads its large parts,
//! seals it and delivers it to each recipient's host. Only reading the
//! user's files and composing happen here; `read.rs` is the way back.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Args;

use super::{HomeArg, UserCtx};
use dem_client::message::{DOMAIN, dem_recipients, send_message};
use dem_client::{attachments, now_ms};
use dem_message::limits::MESSAGE_BYTES_MAX;
use dem_message::{Address, Compose, OutgoingAttachment};

/// Largest body file read for `--body-file` or `--html-file`.
const BODY_FILE_BYTES_MAX: u64 = 16 << 20;

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Recipients' names, comma separated (with `--raw`: instead of the
    /// message's own To and Cc).
    #[arg(long, value_delimiter = ',', required_unless_present = "raw")]
    to: Vec<String>,
    /// Copy recipients' names, comma separated.
    #[arg(long, value_delimiter = ',', conflicts_with = "raw")]
    cc: Vec<String>,
    #[arg(long, default_value = "", conflicts_with = "raw")]
    subject: String,
    #[arg(long, conflicts_with_all = ["body_file", "raw"])]
    body: Option<String>,
    #[arg(long, conflicts_with = "raw")]
    body_file: Option<PathBuf>,
    /// An HTML version of the body (sent beside the text).
    #[arg(long, conflicts_with = "raw")]
    html_file: Option<PathBuf>,
    /// Files to attach (large ones are stored once and referenced).
    #[arg(long, conflicts_with = "raw")]
    attach: Vec<PathBuf>,
    /// The Message-ID this mail replies to (with or without `<>`).
    #[arg(long, conflicts_with = "raw")]
    in_reply_to: Option<String>,
    /// Send this file's exact bytes, an RFC 5322 message prepared
    /// elsewhere, to the DEM addresses (`name@dem`) in its To and Cc
    /// unless `--to` is given. Its From must be your address.
    #[arg(long)]
    raw: Option<PathBuf>,
    /// Claim another sender name (tests of forged mail only: hosts refuse it).
    #[arg(long, hide = true)]
    forge_sender: Option<String>,
    #[command(flatten)]
    home: HomeArg,
}

pub async fn run(args: SendArgs) -> anyhow::Result<()> {
    let ctx = UserCtx::open(&args.home)?;
    let name = match &args.forge_sender {
        Some(n) => n.clone(),
        None => ctx.name()?,
    };
    let (raw, recipients) = match &args.raw {
        Some(path) => {
            let raw = read_bounded(path, MESSAGE_BYTES_MAX as u64)?;
            let recipients = if args.to.is_empty() {
                let parsed = dem_message::parse(&raw)
                    .with_context(|| format!("the message in {}", path.display()))?;
                dem_recipients(&parsed.envelope)
                    .with_context(|| format!("the recipients of {}", path.display()))?
            } else {
                args.to.clone()
            };
            (raw, recipients)
        }
        None => {
            // Each recipient once, though named in To and Cc.
            let mut recipients: Vec<String> = Vec::new();
            for n in args.to.iter().chain(&args.cc) {
                if !recipients.contains(n) {
                    recipients.push(n.clone());
                }
            }
            (compose(&args, &name)?, recipients)
        }
    };
    let report = send_message(&ctx.session, &ctx.key, &name, raw, &recipients).await;
    ctx.close().await;
    let report = report?;
    if !report.failed.is_empty() {
        let failed: Vec<String> = report
            .failed
            .iter()
            .map(|(to, why)| format!("{to}: {why}"))
            .collect();
        bail!("not delivered to {}", failed.join("; "));
    }
    println!("{}", report.id);
    Ok(())
}

/// The message the flags describe, from `name@dem`.
fn compose(args: &SendArgs, name: &str) -> anyhow::Result<Vec<u8>> {
    let text = match (&args.body, &args.body_file) {
        (Some(b), _) => b.clone(),
        (None, Some(f)) => read_text(f)?,
        (None, None) => bail!("give --body TEXT or --body-file FILE"),
    };
    let html = args.html_file.as_deref().map(read_text).transpose()?;
    let mut total = text.len() as u64 + html.as_ref().map_or(0, |h| h.len() as u64);
    let mut files = Vec::new();
    for path in &args.attach {
        let content = read_bounded(
            path,
            MESSAGE_BYTES_MAX as u64 - total.min(MESSAGE_BYTES_MAX as u64),
        )
        .with_context(|| format!("attaching {}", path.display()))?;
        total += content.len() as u64;
        let name = path
            .file_name()
            .map_or_else(|| "attachment".into(), |n| n.to_string_lossy().into_owned());
        files.push(OutgoingAttachment {
            media_type: attachments::media_type_of(&name).to_string(),
            name,
            content,
        });
    }
    let address = |n: &str| Address {
        name: None,
        email: format!("{n}@{DOMAIN}"),
    };
    let seed = dem_client::new_mail_id()?;
    let in_reply_to = args.in_reply_to.as_deref().map(|id| {
        id.trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_string()
    });
    let message = Compose {
        from: address(name),
        to: args.to.iter().map(|n| address(n)).collect(),
        cc: args.cc.iter().map(|n| address(n)).collect(),
        subject: args.subject.clone(),
        date_ms: now_ms(),
        message_id: dem_message::new_message_id(seed.as_bytes(), DOMAIN),
        references: in_reply_to.iter().cloned().collect(),
        in_reply_to,
        text,
        html,
        attachments: files,
    };
    Ok(dem_message::compose(&message)?)
}

/// A UTF-8 text file of at most `BODY_FILE_BYTES_MAX`.
fn read_text(path: &Path) -> anyhow::Result<String> {
    let bytes = read_bounded(path, BODY_FILE_BYTES_MAX)?;
    String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8 text", path.display()))
}

/// A file's bytes, refused past `max_bytes` before it is read.
fn read_bounded(path: &Path, max_bytes: u64) -> anyhow::Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .with_context(|| path.display().to_string())?
        .len();
    if len > max_bytes {
        bail!(
            "{} is {len} bytes; at most {max_bytes} fit (a message is at most {MESSAGE_BYTES_MAX} bytes)",
            path.display()
        );
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}
