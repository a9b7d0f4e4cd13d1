//! Mailbox settings and attachments: `folders`, `contacts`, `allow`,
//! `block`, `plugin` (the component's bytes travel to the host in a signed
//! `PluginAdd`), and `attachment get`.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Subcommand;

use super::{HomeArg, UserCtx};
use dem_client::{MailboxRef, RefError, Target, attachments, now_ms, sealed};
use dem_identity::Signed;
use dem_node::mailbox::Verb;
use dem_proto::host::{PLUGIN_UPLOAD, PluginUpload};
use dem_proto::mail::{Contact, FolderInfo, PluginEntry, SenderList};
use dem_proto::mailbox::verbs::{
    AddContact, AddSender, CreateFolder, DeleteFolder, ListContacts, ListFolders, ListPlugins,
    RemoveContact, RemovePlugin, RenameFolder,
};
use dem_proto::{HostRequest, HostResponse};

/// Largest plugin component uploaded: it travels in one request frame.
const PLUGIN_BYTES_MAX: u64 = 3 << 20;

#[derive(Debug, Subcommand)]
pub enum ManageCommand {
    /// List folders, or create, rename or delete one.
    Folders {
        #[command(subcommand)]
        cmd: Option<FolderCommand>,
        #[command(flatten)]
        home: HomeArg,
    },
    /// The address book.
    Contacts {
        #[command(subcommand)]
        cmd: Option<ContactCommand>,
        #[command(flatten)]
        home: HomeArg,
    },
    /// Always accept mail from ADDR (a pattern such as `*@dem` works too).
    Allow {
        addr: String,
        #[command(flatten)]
        home: HomeArg,
    },
    /// Refuse mail from ADDR.
    Block {
        addr: String,
        #[command(flatten)]
        home: HomeArg,
    },
    /// Filter plugins of the mailbox.
    Plugin {
        #[command(subcommand)]
        cmd: PluginCommand,
        #[command(flatten)]
        home: HomeArg,
    },
    /// Floating attachments.
    Attachment {
        #[command(subcommand)]
        cmd: AttachmentCommand,
        #[command(flatten)]
        home: HomeArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum FolderCommand {
    List,
    Create { name: String },
    Rename { name: String, new_name: String },
    Delete { name: String },
}

#[derive(Debug, Subcommand)]
pub enum ContactCommand {
    List,
    Add {
        address: String,
        #[arg(long, default_value = "")]
        name: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    Remove {
        address: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Install a filter component.
    Add {
        file: PathBuf,
        /// The plugin's text configuration.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Name (default: the file stem).
        #[arg(long)]
        name: Option<String>,
        /// Filters run in ascending order.
        #[arg(long, default_value_t = 100)]
        order: u32,
    },
    List,
    Remove {
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AttachmentCommand {
    /// Fetch an attachment (checked against its id) into a file.
    Get {
        id: String,
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// Byte range `A-B` (end exclusive).
        #[arg(long)]
        range: Option<String>,
        /// The sealed mail that carries it: the attachment is opened with
        /// the key inside that mail (without it, a sealed attachment's
        /// ciphertext is refused rather than written).
        #[arg(long)]
        mail: Option<String>,
    },
}

pub async fn run(cmd: ManageCommand) -> anyhow::Result<()> {
    match cmd {
        ManageCommand::Folders { cmd, home } => match cmd.unwrap_or(FolderCommand::List) {
            FolderCommand::List => show(&home, ListFolders, print_folders).await,
            FolderCommand::Create { name } => {
                show(&home, CreateFolder { name }, print_folder).await
            }
            FolderCommand::Rename { name, new_name } => {
                show(&home, RenameFolder { name, new_name }, print_folder).await
            }
            FolderCommand::Delete { name } => show(&home, DeleteFolder { name }, print_ok).await,
        },
        ManageCommand::Contacts { cmd, home } => match cmd.unwrap_or(ContactCommand::List) {
            ContactCommand::List => show(&home, ListContacts, print_contacts).await,
            ContactCommand::Add {
                address,
                name,
                note,
            } => {
                let contact = Contact {
                    name,
                    address,
                    note,
                };
                show(&home, AddContact { contact }, print_ok).await
            }
            ContactCommand::Remove { address } => {
                show(&home, RemoveContact { address }, print_ok).await
            }
        },
        ManageCommand::Allow { addr, home } => {
            let add = AddSender {
                which: SenderList::Allow,
                pattern: addr,
            };
            show(&home, add, print_ok).await
        }
        ManageCommand::Block { addr, home } => {
            let add = AddSender {
                which: SenderList::Block,
                pattern: addr,
            };
            show(&home, add, print_ok).await
        }
        ManageCommand::Plugin { cmd, home } => match cmd {
            PluginCommand::Add {
                file,
                config,
                name,
                order,
            } => plugin_add(&home, file, config, name, order).await,
            PluginCommand::List => show(&home, ListPlugins, print_plugins).await,
            PluginCommand::Remove { name } => show(&home, RemovePlugin { name }, print_ok).await,
        },
        ManageCommand::Attachment {
            cmd:
                AttachmentCommand::Get {
                    id,
                    output,
                    range,
                    mail,
                },
            home,
        } => {
            let id: dem_node::dispatch::AttachmentId = id
                .parse()
                .with_context(|| format!("attachment id {id:?}"))?;
            let range = range.as_deref().map(super::mail::parse_range).transpose()?;
            let ctx = UserCtx::open(&home)?;
            let result = match &mail {
                Some(mail) => get_sealed(&ctx, mail, &id, range, &output).await,
                None => attachments::fetch(&ctx.session, &id, range, &output)
                    .await
                    .map_err(anyhow::Error::from),
            };
            ctx.close().await;
            let n = result?;
            if mail.is_none() && range.is_none_or(|(a, _)| a == 0) && is_sealed_file(&output)? {
                std::fs::remove_file(&output)?;
                bail!(
                    "attachment {id} is sealed: give --mail MAILID, the mail that carries it, to open it"
                );
            }
            println!("{n} bytes written to {}", output.display());
            Ok(())
        }
    }
}

/// Opens attachment `id` of sealed mail `mail` with the key inside it and
/// writes (the `range` of) its plaintext to `output`.
async fn get_sealed(
    ctx: &UserCtx,
    mail: &str,
    id: &dem_node::dispatch::AttachmentId,
    range: Option<(u64, u64)>,
    output: &std::path::Path,
) -> anyhow::Result<u64> {
    let mut mailbox = MailboxRef::new(Target::User(ctx.key.user_id()));
    let part = sealed::part_of(
        &ctx.session,
        &mut mailbox,
        &ctx.keyring,
        mail,
        id.as_bytes(),
    )
    .await
    .map_err(anyhow::Error::msg)?;
    let plain = sealed::fetch_sealed_part(&ctx.session, &part).await?;
    let (start, end) = range.unwrap_or((0, u64::MAX));
    let end = end.min(plain.len() as u64) as usize;
    let start = (start as usize).min(end);
    std::fs::write(output, &plain[start..end])
        .with_context(|| format!("writing {}", output.display()))?;
    Ok((end - start) as u64)
}

/// Whether the file starts like a sealed attachment's ciphertext.
fn is_sealed_file(path: &std::path::Path) -> anyhow::Result<bool> {
    use std::io::Read as _;
    let mut head = [0u8; 5];
    let mut f = std::fs::File::open(path)?;
    let n = f.read(&mut head)?;
    Ok(n == 5 && head[..4] == *dem_seal::attachment::ATTACHMENT_MAGIC && head[4] == 1)
}

/// Runs an owner call on the user's own mailbox and prints the answer
/// with `print`.
async fn show<V: Verb>(home: &HomeArg, verb: V, print: fn(V::Answer)) -> anyhow::Result<()> {
    let ctx = UserCtx::open(home)?;
    let answer = ctx.ask(None, verb).await?;
    ctx.close().await;
    print(answer);
    Ok(())
}

fn print_folders(list: Vec<FolderInfo>) {
    for f in list {
        println!("{:<20} {:>6} mails {:>6} unseen", f.name, f.total, f.unseen);
    }
}

fn print_folder(f: FolderInfo) {
    println!("{}", f.name);
}

fn print_contacts(list: Vec<Contact>) {
    for c in list {
        println!("{:<30} {} {}", c.address, c.name, c.note);
    }
}

fn print_plugins(list: Vec<PluginEntry>) {
    for p in list {
        println!("{:<20} order {:<4} {}", p.name, p.order, p.code_hash);
    }
}

/// For the calls whose answer says only that they were done.
fn print_ok(_done: ()) {
    println!("ok");
}

async fn plugin_add(
    home: &HomeArg,
    file: PathBuf,
    config: Option<PathBuf>,
    name: Option<String>,
    order: u32,
) -> anyhow::Result<()> {
    let len = std::fs::metadata(&file)
        .with_context(|| file.display().to_string())?
        .len();
    if len > PLUGIN_BYTES_MAX {
        bail!(
            "{} is {len} bytes; a plugin is at most {PLUGIN_BYTES_MAX}",
            file.display()
        );
    }
    let code = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let config = match config {
        Some(c) => {
            std::fs::read_to_string(&c).with_context(|| format!("reading {}", c.display()))?
        }
        None => String::new(),
    };
    let name = match name {
        Some(n) => n,
        None => file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .context("the plugin file has no name; give --name")?,
    };
    let ctx = UserCtx::open(home)?;
    let mut r = MailboxRef::new(Target::User(ctx.key.user_id()));
    let key = ctx.key.clone();
    let answer = r
        .call(&ctx.session, |user| {
            let upload = PluginUpload {
                mailbox: user,
                name: name.clone(),
                code: code.clone(),
                config: config.clone(),
                order,
            };
            Signed::sign(&key, PLUGIN_UPLOAD, now_ms(), &upload)
                .map(|s| HostRequest::PluginAdd(Box::new(s)))
                .map_err(RefError::Sign)
        })
        .await?;
    ctx.close().await;
    match answer {
        HostResponse::Done => {
            println!("installed {name}");
            Ok(())
        }
        other => bail!("unexpected answer {other:?}"),
    }
}
