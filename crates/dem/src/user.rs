//! The user's commands, flattened into `dem`: `id` (`user/id.rs`),
//! `register`, then
//! the mail commands (`send`, `inbox`, `read`, ...) in `user/mail.rs`
//! (`user/send.rs`, `user/read.rs`) and
//! the mailbox settings and attachments in `user/manage.rs`. Every command
//! works under one user's home (`--home` or `DEM_HOME`): their key, name
//! and remembered dispatch units. Calls on a mailbox are signed owner
//! calls sent through a [`MailboxRef`]; the host decides who may do what.

mod id;
mod mail;
mod manage;
mod read;
mod send;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};

use dem_client::{MailboxRef, Session, Target, now_ms};
use dem_identity::{
    Home, KeyPair, KeyRole, Name, OWNER_CALL, Signed, SignedNameClaim, UserProfile,
};
use dem_node::dispatch::Placement;
use dem_node::mailbox::Verb;
use dem_proto::{CreateOrder, DispatchRequest, DispatchResponse, HostRequest};
use dem_seal::Keyring;

/// Where the user's key and profile are.
#[derive(Debug, Args, Clone)]
pub struct HomeArg {
    /// The user's home directory (default: `DEM_HOME`, then the XDG config dir).
    #[arg(long, global = true)]
    pub home: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Manage the user's identity.
    Id {
        #[command(subcommand)]
        cmd: id::IdCommand,
        #[command(flatten)]
        home: HomeArg,
    },
    /// Claim the name and create the mailbox; remembers the dispatch units.
    Register {
        /// Dispatch units, comma separated.
        #[arg(long, value_delimiter = ',', required = true)]
        dispatch: Vec<String>,
        #[command(flatten)]
        home: HomeArg,
    },
    #[command(flatten)]
    Mail(mail::MailCommand),
    #[command(flatten)]
    Manage(manage::ManageCommand),
}

pub async fn run(cmd: UserCommand) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Id { cmd, home } => id::run(cmd, &home).await,
        UserCommand::Register { dispatch, home } => register(&home, dispatch).await,
        UserCommand::Mail(cmd) => mail::run(cmd).await,
        UserCommand::Manage(cmd) => manage::run(cmd).await,
    }
}

/// The home, the user's key and profile.
fn load(home: &HomeArg) -> anyhow::Result<(Home, KeyPair, UserProfile)> {
    let home = Home::open(home.home.clone())?;
    let key_path = home.key_path(KeyRole::User);
    if !key_path.exists() {
        bail!(
            "no user key in {}: run `dem id new NAME` first",
            home.dir().display()
        );
    }
    let key = KeyPair::load(&key_path)?;
    let profile = UserProfile::load_or_default(&home.profile_path())?;
    Ok((home, key, profile))
}

async fn register(home_arg: &HomeArg, dispatch: Vec<String>) -> anyhow::Result<()> {
    let (home, key, mut profile) = load(home_arg)?;
    let Some(name) = profile.name.clone() else {
        bail!("no name in the profile: run `dem id new NAME` first");
    };
    let keyring = id::load_keyring(&home)?;
    let key = Arc::new(key);
    let session = Session::new(
        key.clone(),
        dispatch.iter().map(|a| (a.clone(), None)).collect(),
    )?;
    let placement = claim_and_create(&session, &key, &keyring, name.clone()).await?;
    // Remember the units, the first one given first, with learned keys.
    let units = session.dispatch_units();
    for addr in dispatch.iter().rev() {
        let id = units.iter().find(|(a, _)| a == addr).and_then(|(_, k)| *k);
        profile.remember_dispatch(addr, id)?;
    }
    profile.save(&home.profile_path())?;
    println!(
        "registered {} ({}); mailbox on host {} at {}",
        name.as_str(),
        key.user_id().to_hex(),
        placement.host.to_hex(),
        placement.addr
    );
    session.close().await;
    Ok(())
}

/// Claims `name` for `key` at a dispatch unit, then asks the host it
/// placed the mailbox on to create it: the two steps of `dem register`.
pub(crate) async fn claim_and_create(
    session: &Session,
    key: &KeyPair,
    keyring: &Keyring,
    name: Name,
) -> anyhow::Result<Placement> {
    let placement = claim_name(session, key, keyring, &name).await?;
    let order = CreateOrder {
        user: key.user_id(),
        host: placement.host,
    };
    let signed = Signed::sign(key, OWNER_CALL, now_ms(), &order)?;
    session
        .host_request(
            &placement.addr,
            placement.host,
            &HostRequest::Create(signed),
        )
        .await
        .with_context(|| format!("creating the mailbox on host {}", placement.addr))?;
    Ok(placement)
}

/// Claims `name` for `key`, publishing the keyring's current encryption
/// key in the signed claim; the unit answers where the mailbox is placed.
async fn claim_name(
    session: &Session,
    key: &KeyPair,
    keyring: &Keyring,
    name: &Name,
) -> anyhow::Result<Placement> {
    let claim = SignedNameClaim::sign(
        key,
        name.clone(),
        Some(keyring.current().public().0),
        now_ms(),
    )?;
    match session
        .dispatch(&DispatchRequest::Register { claim })
        .await
        .with_context(|| format!("registering the name {}", name.as_str()))?
    {
        DispatchResponse::Registered { placement, .. } => Ok(placement),
        other => bail!("unexpected answer from the dispatch unit: {other:?}"),
    }
}

/// `dem id rotate`: a new current encryption key, saved before it is
/// published so a crash can never publish a key whose secret is lost.
async fn rotate(home_arg: &HomeArg) -> anyhow::Result<()> {
    let ctx = UserCtx::open(home_arg)?;
    let home = Home::open(home_arg.home.clone())?;
    let mut keyring = id::load_keyring(&home)?;
    let name = Name::new(&ctx.name()?)?;
    keyring.rotate(now_ms())?;
    keyring.save(&id::keyring_path(&home))?;
    let result = claim_name(&ctx.session, &ctx.key, &keyring, &name).await;
    ctx.close().await;
    result.context(
        "the new key is in the keyring but not yet published: run `dem id rotate` again",
    )?;
    println!(
        "{}: new encryption key {} published; {} older key(s) kept for older mail",
        name.as_str(),
        keyring.current().public().to_hex(),
        keyring.entries().len() - 1
    );
    Ok(())
}

/// A user's session on the network, from their home.
pub(crate) struct UserCtx {
    pub key: Arc<KeyPair>,
    pub profile: UserProfile,
    pub session: Session,
    /// The keys sealed mail to this user opens with.
    pub keyring: Keyring,
}

impl UserCtx {
    pub fn open(home: &HomeArg) -> anyhow::Result<Self> {
        let (home_dir, key, profile) = load(home)?;
        let keyring = id::load_keyring(&home_dir)?;
        if profile.dispatch.is_empty() {
            bail!("no dispatch units known: run `dem register --dispatch ADDR` first");
        }
        let key = Arc::new(key);
        let units = profile
            .dispatch
            .iter()
            .map(|d| (d.addr.clone(), d.id))
            .collect();
        let session = Session::new(key.clone(), units)?;
        Ok(Self {
            key,
            profile,
            session,
            keyring,
        })
    }

    /// The user's sending name.
    pub fn name(&self) -> anyhow::Result<String> {
        match &self.profile.name {
            Some(n) => Ok(n.as_str().to_string()),
            None => bail!("no name in the profile: run `dem id new NAME` first"),
        }
    }

    /// A signed owner call on `mailbox` (a name or id; the user's own if
    /// `None`), answered with the verb's own answer type.
    pub async fn ask<V: Verb>(&self, mailbox: Option<&str>, verb: V) -> anyhow::Result<V::Answer> {
        let target = match mailbox {
            Some(m) => Target::parse(m),
            None => Target::User(self.key.user_id()),
        };
        Ok(MailboxRef::new(target).ask(&self.session, verb).await?)
    }

    pub async fn close(&self) {
        self.session.close().await;
    }
}
