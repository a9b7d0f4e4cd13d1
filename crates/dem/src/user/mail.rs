//! Mail commands: `send` (`send.rs`: compose, store the large parts,
//! seal once, deliver to each recipient's host directly), `read`
//! (`read.rs`: the exact bytes back, shown), and `inbox`, `delete`,
//! `move`, `flag` and `search`, all signed owner calls.

use anyhow::{Context as _, bail};
use clap::Subcommand;
use serde_json::Value;

use super::read::ReadArgs;
use super::send::SendArgs;
use super::{HomeArg, UserCtx};
use crate::mail_json;
use dem_client::{MailboxRef, Target, sealed};
use dem_node::mailbox::Verb;
use dem_proto::mail::{FlagState, MailFlags, SearchQuery};
use dem_proto::mailbox::verbs::{DeleteMail, ListFolder, MoveMail, Search, SetFlags};

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
    /// Show one mail: its header fields, text and attachments, or
    /// (`--raw`) its exact bytes.
    Read(ReadArgs),
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
    /// Search every folder for mails having all the words, each as a whole
    /// word or the start of one ("numb" finds "numbers"), in the text or
    /// in From, To, Cc or Subject; case does not matter.
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

pub async fn run(cmd: MailCommand) -> anyhow::Result<()> {
    match cmd {
        MailCommand::Send(args) => super::send::run(args).await,
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
            let mut page = ctx.ask(mailbox.as_deref(), list).await?;
            let mut mref = match mailbox.as_deref() {
                Some(m) => MailboxRef::new(Target::parse(m)),
                None => MailboxRef::new(Target::User(ctx.key.user_id())),
            };
            for (id, why) in
                sealed::open_summaries(&ctx.session, &mut mref, &ctx.keyring, &mut page.items).await
            {
                eprintln!("mail {id} does not open: {why}");
            }
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
        MailCommand::Read(args) => super::read::run(args).await,
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
            let text_terms: Vec<String> = query.split_whitespace().map(str::to_string).collect();
            let parsed = dem_message::search::Query::parse(&[], &text_terms)?;
            let query = SearchQuery {
                from: None,
                to: None,
                subject: None,
                body_terms: vec![],
                text_terms,
                folder: None,
                since_ms: None,
                before_ms: None,
                flags_set: MailFlags::empty(),
                flags_unset: MailFlags::empty(),
                keyword: None,
            };
            let ctx = UserCtx::open(&home)?;
            // Hosts match plaintext mail from before sealing; sealed mail
            // is opened and matched here, on the owner's machine.
            let mut items = ctx.ask(None, Search { query, limit }).await?;
            let mut mref = MailboxRef::new(Target::User(ctx.key.user_id()));
            let sealed_hits = sealed::search_sealed(
                &ctx.session,
                &mut mref,
                &ctx.keyring,
                &parsed,
                limit as usize,
            )
            .await?;
            items.extend(sealed_hits);
            items.sort_by(|a, b| b.date_ms.cmp(&a.date_ms).then_with(|| a.id.cmp(&b.id)));
            items.dedup_by(|a, b| a.id == b.id);
            items.truncate(limit as usize);
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
