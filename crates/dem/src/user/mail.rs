//! Mail commands: `send` (seal once, deliver to each recipient's host
//! directly, after storing attachments), `inbox`, `read`, `delete`,
//! `move`, `flag` and `search`, all signed owner calls.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde_json::Value;

use super::{HomeArg, UserCtx};
use crate::mail_json;
use dem_client::{MailboxRef, Target, attachments, now_ms};
use dem_node::mailbox::Verb;
use dem_proto::mail::{ByteRange, FlagState, GetParts, MailFlags, NewMail, SearchQuery};
use dem_proto::mailbox::verbs::{DeleteMail, Get, ListFolder, MoveMail, Search, SetFlags};
use dem_proto::{HostRequest, HostResponse, SignedMail};

/// The domain part of DEM addresses.
pub const DOMAIN: &str = "dem";
/// Largest body file read for `--body-file`.
const BODY_FILE_BYTES_MAX: u64 = 16 << 20;

#[derive(Debug, Subcommand)]
pub enum MailCommand {
    /// Send a mail; prints its id.
    Send(SendArgs),
    /// List a folder, newest first.
    Inbox {
        #[arg(long, default_value = "INBOX")]
        folder: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Another user's mailbox (refused unless you own it).
        #[arg(long)]
        mailbox: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        home: HomeArg,
    },
    /// Show one mail.
    Read {
        id: String,
        #[arg(long)]
        headers_only: bool,
        /// Body byte range `A-B` (end exclusive).
        #[arg(long)]
        range: Option<String>,
        #[arg(long)]
        mailbox: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        home: HomeArg,
    },
    /// Delete a mail.
    Delete {
        id: String,
        #[arg(long)]
        mailbox: Option<String>,
        #[command(flatten)]
        home: HomeArg,
    },
    /// Move a mail to another folder.
    Move {
        id: String,
        folder: String,
        #[command(flatten)]
        home: HomeArg,
    },
    /// Change flags: `+seen`, `-seen`, `+flagged`, or keywords.
    Flag {
        id: String,
        #[arg(required = true, allow_hyphen_values = true, num_args = 1..)]
        changes: Vec<String>,
        #[command(flatten)]
        home: HomeArg,
    },
    /// Search every folder for mails containing all the words.
    Search {
        query: String,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        home: HomeArg,
    },
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Recipients' names, comma separated.
    #[arg(long, value_delimiter = ',', required = true)]
    to: Vec<String>,
    #[arg(long, default_value = "")]
    subject: String,
    #[arg(long, conflicts_with = "body_file")]
    body: Option<String>,
    #[arg(long)]
    body_file: Option<PathBuf>,
    /// Files to attach (stored once, referenced by the mail).
    #[arg(long)]
    attach: Vec<PathBuf>,
    /// Claim another sender name (tests of forged mail only: hosts refuse it).
    #[arg(long, hide = true)]
    forge_sender: Option<String>,
    #[command(flatten)]
    home: HomeArg,
}

pub async fn run(cmd: MailCommand) -> anyhow::Result<()> {
    match cmd {
        MailCommand::Send(args) => send(args).await,
        MailCommand::Inbox {
            folder,
            limit,
            mailbox,
            json,
            home,
        } => {
            let ctx = UserCtx::open(&home)?;
            let list = ListFolder {
                folder,
                offset: 0,
                limit,
            };
            let page = ctx.ask(mailbox.as_deref(), list).await?;
            if json {
                let items: Vec<Value> = page.items.iter().map(mail_json::summary).collect();
                println!("{}", Value::Array(items));
            } else {
                for m in &page.items {
                    let seen = if m.flags.contains(MailFlags::SEEN) {
                        ' '
                    } else {
                        '*'
                    };
                    println!("{seen} {}  {:<24}  {}", m.id, m.from, m.subject);
                }
                println!("({} of {})", page.items.len(), page.total);
            }
            ctx.close().await;
            Ok(())
        }
        MailCommand::Read {
            id,
            headers_only,
            range,
            mailbox,
            json,
            home,
        } => {
            let body = if headers_only {
                None
            } else {
                let (start, end) = match &range {
                    Some(r) => parse_range(r)?,
                    None => (0, u64::MAX),
                };
                Some(ByteRange { start, end })
            };
            let parts = GetParts {
                headers: true,
                body,
                attachments: true,
            };
            let ctx = UserCtx::open(&home)?;
            let d = ctx.ask(mailbox.as_deref(), Get { id, parts }).await?;
            if json {
                println!("{}", mail_json::detail(&d));
            } else {
                let s = &d.summary;
                println!(
                    "From: {}\nTo: {}\nSubject: {}\nDate: {}",
                    s.from,
                    s.to.join(", "),
                    s.subject,
                    s.date_ms
                );
                for a in d.attachments.iter().flatten() {
                    println!(
                        "Attachment: {} {} ({} bytes, {})",
                        a.hash, a.name, a.size_bytes, a.media_type
                    );
                }
                if let Some(body) = &d.body {
                    println!("\n{}", String::from_utf8_lossy(body));
                }
            }
            ctx.close().await;
            Ok(())
        }
        MailCommand::Delete { id, mailbox, home } => {
            simple(&home, mailbox.as_deref(), DeleteMail { id }).await
        }
        MailCommand::Move { id, folder, home } => {
            simple(&home, None, MoveMail { id, folder }).await
        }
        MailCommand::Flag { id, changes, home } => {
            let (add, remove) = parse_flags(&changes)?;
            simple(&home, None, SetFlags { id, add, remove }).await
        }
        MailCommand::Search {
            query,
            limit,
            json,
            home,
        } => {
            let query = SearchQuery {
                from: None,
                to: None,
                subject: None,
                body_terms: vec![],
                text_terms: query.split_whitespace().map(str::to_string).collect(),
                folder: None,
                since_ms: None,
                before_ms: None,
                flags_set: MailFlags::empty(),
                flags_unset: MailFlags::empty(),
                keyword: None,
            };
            let ctx = UserCtx::open(&home)?;
            let items = ctx.ask(None, Search { query, limit }).await?;
            if json {
                println!(
                    "{}",
                    Value::Array(items.iter().map(mail_json::summary).collect())
                );
            } else {
                for m in &items {
                    println!("{}  {:<10} {:<24}  {}", m.id, m.folder, m.from, m.subject);
                }
            }
            ctx.close().await;
            Ok(())
        }
    }
}

/// An owner call whose answer is not shown: "ok" once it is done.
async fn simple(home: &HomeArg, mailbox: Option<&str>, verb: impl Verb) -> anyhow::Result<()> {
    let ctx = UserCtx::open(home)?;
    ctx.ask(mailbox, verb).await?;
    ctx.close().await;
    println!("ok");
    Ok(())
}

async fn send(args: SendArgs) -> anyhow::Result<()> {
    let ctx = UserCtx::open(&args.home)?;
    let name = match &args.forge_sender {
        Some(n) => n.clone(),
        None => ctx.name()?,
    };
    let body = match (&args.body, &args.body_file) {
        (Some(b), _) => b.clone(),
        (None, Some(f)) => {
            let len = std::fs::metadata(f)
                .with_context(|| f.display().to_string())?
                .len();
            if len > BODY_FILE_BYTES_MAX {
                bail!(
                    "{} is {len} bytes; a body is at most {BODY_FILE_BYTES_MAX}",
                    f.display()
                );
            }
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?
        }
        (None, None) => bail!("give --body TEXT or --body-file FILE"),
    };
    let mut refs = Vec::new();
    for path in &args.attach {
        let (r, _) = attachments::store(&ctx.session, path)
            .await
            .with_context(|| format!("attaching {}", path.display()))?;
        refs.push(r);
    }
    let now = now_ms();
    let mail = NewMail {
        id: String::new(),
        from: format!("{name}@{DOMAIN}"),
        to: args.to.iter().map(|n| format!("{n}@{DOMAIN}")).collect(),
        cc: vec![],
        subject: args.subject.clone(),
        date_ms: now,
        message_id: format!("<{}@{DOMAIN}>", dem_client::new_mail_id()?),
        in_reply_to: None,
        headers: vec![],
        body,
        attachments: refs,
    };
    let signed = SignedMail::seal(&ctx.key, name, mail);
    let mut failed = Vec::new();
    for to in &args.to {
        let mut r = MailboxRef::new(Target::Name(to.clone()));
        let answer = r
            .call(&ctx.session, |user| {
                Ok(HostRequest::Deliver {
                    to: user,
                    mail: Box::new(signed.clone()),
                })
            })
            .await;
        match answer {
            Ok(HostResponse::Delivered(_)) => {}
            Ok(other) => failed.push(format!("{to}: unexpected answer {other:?}")),
            Err(e) => failed.push(format!("{to}: {e}")),
        }
    }
    ctx.close().await;
    if !failed.is_empty() {
        bail!("not delivered to {}", failed.join("; "));
    }
    println!("{}", signed.mail.id);
    Ok(())
}

/// `A-B` → (A, B).
pub(super) fn parse_range(r: &str) -> anyhow::Result<(u64, u64)> {
    let (a, b) = r
        .split_once('-')
        .with_context(|| format!("range {r:?} is not A-B"))?;
    let a: u64 = a
        .trim()
        .parse()
        .with_context(|| format!("range start {a:?}"))?;
    let b: u64 = b
        .trim()
        .parse()
        .with_context(|| format!("range end {b:?}"))?;
    if a > b {
        bail!("range {r:?} ends before it starts");
    }
    Ok((a, b))
}

/// `+seen -flagged +work` → flags and keywords to add and remove.
fn parse_flags(changes: &[String]) -> anyhow::Result<(FlagState, FlagState)> {
    let empty = || FlagState {
        flags: MailFlags::empty(),
        keywords: vec![],
    };
    let (mut add, mut remove) = (empty(), empty());
    for c in changes {
        let (target, name) = match c.split_at_checked(1) {
            Some(("+", n)) => (&mut add, n),
            Some(("-", n)) => (&mut remove, n),
            _ => bail!("flag change {c:?} must start with + or -"),
        };
        match MailFlags::from_name(name) {
            Some(f) => target.flags |= f,
            None if !name.is_empty() => target.keywords.push(name.to_string()),
            None => bail!("empty flag in {c:?}"),
        }
    }
    Ok((add, remove))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_ranges_parse() {
        let (add, remove) =
            parse_flags(&["+seen".into(), "-flagged".into(), "+work".into()]).unwrap();
        assert_eq!(add.flags, MailFlags::SEEN);
        assert_eq!(add.keywords, vec!["work".to_string()]);
        assert_eq!(remove.flags, MailFlags::FLAGGED);
        assert!(parse_flags(&["seen".into()]).is_err());
        assert_eq!(parse_range("3-10").unwrap(), (3, 10));
        assert!(parse_range("10-3").is_err());
    }
}
