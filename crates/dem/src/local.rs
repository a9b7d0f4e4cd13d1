//! `dem local`: operate on a host's data dir directly, without the
//! network. Operators use it to inspect, export and import mailboxes; the
//! test suite uses `local serve` as a real host process that it can SIGKILL.
//!
//! `local serve` reads one JSON request per line on stdin and answers one
//! JSON line per request on stdout, each tagged with the request's `tag`.
//! Requests run concurrently, so many deliveries share one fsync; an
//! answer means the call is durable.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

use super::mail_json;
use dem_client::new_mail_id;
use dem_message::limits::STORED_BYTES_MAX;
use dem_message::{Address, Compose};
use dem_node::mailbox::clock::HybridClock;
use dem_node::mailbox::{Incoming, Mailboxes, Request};
use dem_proto::export;
use dem_proto::ids::{CodeHash, MailboxId};
use dem_proto::mail::{ByteRange, GetParts};
use dem_proto::mailbox::verbs::{Get, ListFolder};

/// Longest request line `local serve` accepts.
pub const SERVE_LINE_BYTES_MAX: usize = 40 << 20;

#[derive(Debug, Args)]
pub struct LocalArgs {
    /// The host's data directory.
    #[arg(long, env = "DEM_DATA")]
    pub data: PathBuf,
    #[command(flatten)]
    pub limits: super::limits::LimitArgs,
    #[command(subcommand)]
    pub command: LocalCommand,
}

#[derive(Debug, Subcommand)]
pub enum LocalCommand {
    /// Create an empty mailbox.
    Create { mailbox: String },
    /// List the mailboxes in the data dir.
    List,
    /// Deliver a mail composed from the flags (through the mailbox's
    /// filters); prints its id, folder and UID.
    Deliver {
        mailbox: String,
        #[arg(long)]
        from: String,
        #[arg(long, value_delimiter = ',')]
        to: Vec<String>,
        #[arg(long, default_value = "")]
        subject: String,
        #[arg(long, conflicts_with = "body_file")]
        body: Option<String>,
        #[arg(long)]
        body_file: Option<PathBuf>,
        /// Mail id; delivery is idempotent by it. Random if absent.
        #[arg(long)]
        id: Option<String>,
    },
    /// List a folder, newest first.
    Inbox {
        mailbox: String,
        #[arg(long, default_value = "INBOX")]
        folder: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Show one mail: its header fields and text, or (`--raw`) the
    /// message bytes this host stores (large parts sent as floating
    /// attachments are not here).
    Read {
        mailbox: String,
        id: String,
        #[arg(long)]
        json: bool,
        #[arg(long, conflicts_with = "json")]
        raw: bool,
    },
    /// Print the BLAKE3 digest of the mailbox state.
    Digest { mailbox: String },
    /// Write the mailbox (code, snapshot, log tail) to a file.
    Export {
        mailbox: String,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Rebuild a mailbox from an export file.
    Import {
        file: PathBuf,
        /// Overwrite a mailbox of the same id.
        #[arg(long)]
        replace: bool,
    },
    /// Install a filter plugin into a mailbox: a file, or a built-in name
    /// (spam-score, allowlist, rules).
    PluginAdd {
        mailbox: String,
        plugin: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value_t = 100)]
        order: u32,
    },
    /// Serve JSON-line requests on stdin/stdout until stdin closes.
    Serve,
}

pub async fn run(args: LocalArgs) -> anyhow::Result<()> {
    let boxes = Mailboxes::open(&args.data, args.limits.runtime(), args.limits.mailboxes())
        .with_context(|| format!("opening data dir {}", args.data.display()))?;
    let result = command(&boxes, args.command).await;
    boxes.shutdown().await;
    result
}

fn mailbox_id(name: &str) -> anyhow::Result<MailboxId> {
    MailboxId::new(name).map_err(Into::into)
}

async fn command(boxes: &Arc<Mailboxes>, command: LocalCommand) -> anyhow::Result<()> {
    match command {
        LocalCommand::Create { mailbox } => {
            boxes.create(&mailbox_id(&mailbox)?, None).await?;
            println!("created {mailbox}");
        }
        LocalCommand::List => {
            for id in boxes.list()? {
                println!("{id}");
            }
        }
        LocalCommand::Deliver {
            mailbox,
            from,
            to,
            subject,
            body,
            body_file,
            id,
        } => {
            let body = match (body, body_file) {
                (Some(b), _) => b,
                (None, Some(f)) => std::fs::read_to_string(&f).with_context(|| {
                    format!("reading {} (the body must be UTF-8 text)", f.display())
                })?,
                (None, None) => bail!("give --body or --body-file"),
            };
            let id = match id {
                Some(id) => id,
                None => new_mail_id()?,
            };
            let mail = new_mail(id, &from, &to, subject, body)?;
            let id = mail.mail.id.clone();
            let d = boxes.deliver(&mailbox_id(&mailbox)?, mail).await?;
            println!("{id} {} {}", d.folder, d.uid);
        }
        LocalCommand::Inbox {
            mailbox,
            folder,
            limit,
            json,
        } => {
            let list = ListFolder {
                folder,
                offset: 0,
                limit,
            };
            let page = boxes.ask(&mailbox_id(&mailbox)?, list).await?;
            if json {
                let items: Vec<Value> = page.items.iter().map(mail_json::summary).collect();
                println!("{}", Value::Array(items));
            } else {
                for m in &page.items {
                    println!("{}  {:<24}  {}", m.id, m.from, m.subject);
                }
                println!("({} of {})", page.items.len(), page.total);
            }
        }
        LocalCommand::Read {
            mailbox,
            id,
            json,
            raw,
        } => {
            let parts = GetParts {
                message: Some(ByteRange {
                    start: 0,
                    end: STORED_BYTES_MAX as u64,
                }),
            };
            let read = boxes.ask(&mailbox_id(&mailbox)?, Get { id, parts }).await?;
            let bytes = read.bytes.as_deref().unwrap_or_default();
            if raw {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()?;
                return Ok(());
            }
            let rendered = dem_message::render(bytes)?;
            if json {
                println!("{}", mail_json::detail(&read.detail, Some(&rendered)));
            } else {
                println!(
                    "From: {}\nTo: {}\nSubject: {}\n",
                    read.detail.summary.from,
                    read.detail.summary.to.join(", "),
                    read.detail.summary.subject
                );
                let text = rendered.text.as_deref().unwrap_or_default();
                println!("{}", mail_json::lf_lines(text));
            }
        }
        LocalCommand::Digest { mailbox } => {
            let digest = boxes.digest(&mailbox_id(&mailbox)?).await?;
            println!("{}", CodeHash(digest));
        }
        LocalCommand::Export { mailbox, output } => {
            let id = mailbox_id(&mailbox)?;
            let state = boxes.export(&id).await?;
            let mut code = vec![];
            let mut hashes = vec![CodeHash(state.meta.code_hash)];
            for p in &state.plugins {
                hashes.push(p.code_hash.parse()?);
            }
            hashes.sort();
            hashes.dedup();
            for h in hashes {
                code.push((h, boxes.runtime().code().bytes(&h)?));
            }
            let file = std::fs::File::create(&output)
                .with_context(|| format!("creating {}", output.display()))?;
            let mut w = std::io::BufWriter::new(file);
            // The message blobs the mailbox names come from the store
            // beside it; a damaged one fails the export.
            let store = boxes.store().cloned();
            let messages = move |hash: &[u8; 32]| -> Result<Option<Vec<u8>>, String> {
                match &store {
                    Some(store) => store.message(hash).map_err(|e| e.to_string()),
                    None => Ok(None),
                }
            };
            for frame in export::encode_export(&id, &state, &code, &messages) {
                export::write_frame(&mut w, &frame?)?;
            }
            w.flush()?;
            w.get_ref().sync_all()?;
            println!(
                "exported {mailbox} at log position {} to {}",
                state.last_seq(),
                output.display()
            );
        }
        LocalCommand::Import { file, replace } => {
            let f = std::fs::File::open(&file)
                .with_context(|| format!("opening {}", file.display()))?;
            let imported = export::read_export(&mut std::io::BufReader::new(f))?;
            for (hash, bytes) in &imported.code {
                boxes.runtime().code().insert_expecting(hash, bytes)?;
            }
            let position = imported.state.last_seq();
            // The message blobs first, one per write (each may be up to the
            // stored limit), so the mailbox never names a missing one.
            if let Some(store) = boxes.store() {
                for message in imported.messages {
                    store
                        .put_messages(imported.mailbox.as_str(), vec![message])
                        .await?;
                }
            }
            boxes
                .import(&imported.mailbox, imported.state, replace)
                .await?;
            println!("imported {} at log position {position}", imported.mailbox);
        }
        LocalCommand::PluginAdd {
            mailbox,
            plugin,
            name,
            config,
            order,
        } => {
            let (default_name, bytes) =
                match dem_builtin::PLUGINS.iter().find(|(n, _)| *n == plugin) {
                    Some((n, b)) => (n.to_string(), b.to_vec()),
                    None => {
                        let path = PathBuf::from(&plugin);
                        let bytes = std::fs::read(&path)
                            .with_context(|| format!("reading {}", path.display()))?;
                        let stem = path
                            .file_stem()
                            .and_then(|s| s.to_str())
                            .unwrap_or("plugin")
                            .to_string();
                        (stem, bytes)
                    }
                };
            let config = match config {
                Some(p) => std::fs::read_to_string(&p)
                    .with_context(|| format!("reading {}", p.display()))?,
                None => String::new(),
            };
            let name = name.unwrap_or(default_name);
            let code = boxes
                .install_plugin(&mailbox_id(&mailbox)?, &name, &bytes, &config, order)
                .await?;
            println!("installed {name} ({})", code.short());
        }
        LocalCommand::Serve => serve(boxes.clone()).await?,
    }
    Ok(())
}

/// Mail `id` as a host takes it: a message composed from the flags (sent
/// now, Message-ID `<id@dem>`), parsed into its index. A name without `@`
/// becomes `name@dem`.
fn new_mail(
    id: String,
    from: &str,
    to: &[String],
    subject: String,
    body: String,
) -> anyhow::Result<Incoming> {
    let address = |a: &str| Address {
        name: None,
        email: if a.contains('@') {
            a.to_string()
        } else {
            format!("{a}@dem")
        },
    };
    let message = dem_message::compose(&Compose {
        from: address(from),
        to: to.iter().map(|a| address(a)).collect(),
        cc: vec![],
        subject,
        date_ms: HybridClock::wall_ms(),
        message_id: if !id.is_empty()
            && id
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>')
        {
            format!("{id}@dem")
        } else {
            dem_message::new_message_id(id.as_bytes(), "dem")
        },
        in_reply_to: None,
        references: vec![],
        text: body,
        html: None,
        attachments: vec![],
    })?;
    Ok(Incoming::parse(id, message, vec![])?)
}

/// One line of `local serve` input.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
enum ServeRequest {
    Create {
        tag: Value,
        mailbox: String,
    },
    Deliver {
        tag: Value,
        mailbox: String,
        id: String,
        from: String,
        #[serde(default)]
        to: Vec<String>,
        #[serde(default)]
        subject: String,
        #[serde(default)]
        body: String,
    },
    Call {
        tag: Value,
        mailbox: String,
        /// Boxed: a `Request` is far larger than the other variants.
        request: Box<Request>,
    },
    Digest {
        tag: Value,
        mailbox: String,
    },
}

async fn serve(boxes: Arc<Mailboxes>) -> anyhow::Result<()> {
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<String>(1024);
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(line) = out_rx.recv().await {
            if stdout.write_all(line.as_bytes()).await.is_err() || stdout.flush().await.is_err() {
                break;
            }
        }
    });
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(line) = lines.next_line().await? {
        if line.len() > SERVE_LINE_BYTES_MAX {
            let _ = out_tx
                .send(format!("{}\n", json!({"error": "request line too long"})))
                .await;
            continue;
        }
        let boxes = boxes.clone();
        let out = out_tx.clone();
        tasks.spawn(async move {
            let answer = match serde_json::from_str::<ServeRequest>(&line) {
                Ok(req) => answer(&boxes, req).await,
                Err(e) => json!({"error": format!("bad request: {e}")}),
            };
            let _ = out.send(format!("{answer}\n")).await;
        });
    }
    while tasks.join_next().await.is_some() {}
    drop(out_tx);
    let _ = writer.await;
    Ok(())
}

async fn answer(boxes: &Mailboxes, req: ServeRequest) -> Value {
    let (tag, result): (Value, anyhow::Result<Value>) = match req {
        ServeRequest::Create { tag, mailbox } => (
            tag,
            async {
                boxes.create(&mailbox_id(&mailbox)?, None).await?;
                Ok(json!("created"))
            }
            .await,
        ),
        ServeRequest::Deliver {
            tag,
            mailbox,
            id,
            from,
            to,
            subject,
            body,
        } => (
            tag,
            async {
                let d = boxes
                    .deliver(
                        &mailbox_id(&mailbox)?,
                        new_mail(id, &from, &to, subject, body)?,
                    )
                    .await?;
                Ok(json!({"uid": d.uid, "folder": d.folder, "duplicate": d.duplicate}))
            }
            .await,
        ),
        ServeRequest::Call {
            tag,
            mailbox,
            request,
        } => (
            tag,
            async {
                let r = boxes.call(&mailbox_id(&mailbox)?, *request).await?;
                Ok(serde_json::to_value(r)?)
            }
            .await,
        ),
        ServeRequest::Digest { tag, mailbox } => (
            tag,
            async {
                Ok(json!(
                    CodeHash(boxes.digest(&mailbox_id(&mailbox)?).await?).to_hex()
                ))
            }
            .await,
        ),
    };
    match result {
        Ok(v) => json!({"tag": tag, "ok": v}),
        Err(e) => json!({"tag": tag, "error": format!("{e:#}")}),
    }
}
