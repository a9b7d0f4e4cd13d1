//! `dem id`: the user's identity, that is the ed25519 key that names them
//! and the keyring of X25519 keys their mail is sealed to.
//!
//! `new` makes both; `rotate` adds an encryption key and publishes it in a
//! new signed name claim (old keys stay in the keyring so old mail still
//! opens); `export` and `import` move the whole identity through one
//! passphrase-protected file, because a lost home directory otherwise
//! loses the name and every sealed mail for good.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Subcommand;
use zeroize::Zeroizing;

use dem_client::now_ms;
use dem_identity::{Home, KeyPair, KeyRole, Name, UserProfile};
use dem_seal::{IdentityBundle, KEYRING_FILE, Keyring, StretchCost};

use super::HomeArg;

#[derive(Debug, Subcommand)]
pub enum IdCommand {
    /// Create the user's signing key, first encryption key and name.
    New { name: String },
    /// Show the user's name, id and encryption keys.
    Show,
    /// Make a new encryption key current and publish it in the name claim;
    /// older keys stay so older mail still opens.
    Rotate,
    /// Write the whole identity (signing key and every encryption key) to
    /// FILE, sealed under a passphrase.
    Export {
        file: PathBuf,
        /// Read the passphrase from this file's first line instead of the
        /// terminal (or `DEM_PASSPHRASE`).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Restore an identity written by `dem id export`.
    Import {
        file: PathBuf,
        /// As for `export`.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// Dispatch units to remember, comma separated (the mailbox and
        /// name already exist; `dem register` is for new ones).
        #[arg(long, value_delimiter = ',')]
        dispatch: Vec<String>,
    },
}

pub async fn run(cmd: IdCommand, home: &HomeArg) -> anyhow::Result<()> {
    match cmd {
        IdCommand::New { name } => new(home, &name),
        IdCommand::Show => show(home),
        IdCommand::Rotate => super::rotate(home).await,
        IdCommand::Export {
            file,
            passphrase_file,
        } => export(home, &file, passphrase_file.as_deref()),
        IdCommand::Import {
            file,
            passphrase_file,
            dispatch,
        } => import(home, &file, passphrase_file.as_deref(), &dispatch),
    }
}

/// The keyring's path in `home`.
pub(crate) fn keyring_path(home: &Home) -> PathBuf {
    home.dir().join(KEYRING_FILE)
}

/// The user's keyring, made on first use: homes from before sealing have a
/// signing key and no keyring, and get one the first time it is needed.
pub(crate) fn load_keyring(home: &Home) -> anyhow::Result<Keyring> {
    let path = keyring_path(home);
    let (ring, created) = Keyring::load_or_create(&path, now_ms())
        .with_context(|| format!("the keyring in {}", home.dir().display()))?;
    if created {
        eprintln!(
            "made an encryption key in {}; `dem id export` keeps a copy safe",
            path.display()
        );
    }
    Ok(ring)
}

fn new(home: &HomeArg, name: &str) -> anyhow::Result<()> {
    let name = Name::new(name).with_context(|| format!("the name {name:?}"))?;
    let home = Home::open(home.home.clone())?;
    home.ensure()?;
    let key_path = home.key_path(KeyRole::User);
    if key_path.exists() {
        bail!("{} already holds a user key", home.dir().display());
    }
    let key = KeyPair::generate()?;
    key.save(&key_path)?;
    let ring = Keyring::generate(now_ms())?;
    ring.save(&keyring_path(&home))?;
    let mut profile = UserProfile::load_or_default(&home.profile_path())?;
    profile.name = Some(name.clone());
    profile.save(&home.profile_path())?;
    println!("{} {}", name.as_str(), key.user_id().to_hex());
    Ok(())
}

fn show(home: &HomeArg) -> anyhow::Result<()> {
    let (home, key, profile) = super::load(home)?;
    let name = profile.name.map(|n| n.as_str().to_string());
    println!(
        "{} {}",
        name.as_deref().unwrap_or("-"),
        key.user_id().to_hex()
    );
    let path = keyring_path(&home);
    if !path.exists() {
        println!("no encryption key yet (one is made at `dem register`)");
        return Ok(());
    }
    let ring = Keyring::load(&path)?;
    let current = ring.current().public();
    for e in ring.entries().iter().rev() {
        let mark = if e.key.public() == current {
            "current"
        } else {
            "old"
        };
        println!(
            "encryption key {} {mark} created_ms={}",
            e.key.public().to_hex(),
            e.created_ms
        );
    }
    Ok(())
}

fn export(home: &HomeArg, file: &Path, passphrase_file: Option<&Path>) -> anyhow::Result<()> {
    let (home, key, profile) = super::load(home)?;
    let keyring = load_keyring(&home)?;
    if file.exists() {
        bail!("{} exists; choose a new file", file.display());
    }
    let pass = passphrase(passphrase_file, true)?;
    let bundle = IdentityBundle {
        name: profile.name,
        user_key: key,
        keyring,
    };
    let bytes = dem_seal::export_identity(&bundle, &pass, StretchCost::RECOMMENDED)?;
    write_private(file, &bytes)?;
    println!(
        "exported {} with {} encryption key(s) to {}",
        bundle.user_key.user_id().to_hex(),
        bundle.keyring.entries().len(),
        file.display()
    );
    Ok(())
}

fn import(
    home_arg: &HomeArg,
    file: &Path,
    passphrase_file: Option<&Path>,
    dispatch: &[String],
) -> anyhow::Result<()> {
    let bytes = read_bounded(file, dem_seal::export::EXPORT_FILE_BYTES_MAX)?;
    let pass = passphrase(passphrase_file, false)?;
    let bundle = dem_seal::import_identity(&bytes, &pass)
        .with_context(|| format!("importing {}", file.display()))?;
    let home = Home::open(home_arg.home.clone())?;
    home.ensure()?;
    let key_path = home.key_path(KeyRole::User);
    let ring_path = keyring_path(&home);
    if key_path.exists() {
        // The same user again: merge keyrings (a key made since the export
        // stays current). Another user's home is never overwritten.
        let existing = KeyPair::load(&key_path)?;
        if existing.user_id() != bundle.user_key.user_id() {
            bail!(
                "{} already holds user {}, not {}: import into an empty home (--home DIR)",
                home.dir().display(),
                existing.user_id().to_hex(),
                bundle.user_key.user_id().to_hex()
            );
        }
        let mut ring = if ring_path.exists() {
            Keyring::load(&ring_path)?
        } else {
            bundle.keyring.clone()
        };
        let added = ring.absorb(&bundle.keyring)?;
        ring.save(&ring_path)?;
        println!(
            "{} was already here; {added} encryption key(s) added",
            existing.user_id().to_hex()
        );
        return Ok(());
    }
    bundle.user_key.save(&key_path)?;
    bundle.keyring.save(&ring_path)?;
    let mut profile = UserProfile::load_or_default(&home.profile_path())?;
    if let Some(name) = &bundle.name {
        profile.name = Some(name.clone());
    }
    for addr in dispatch.iter().rev() {
        profile.remember_dispatch(addr, None)?;
    }
    profile.save(&home.profile_path())?;
    println!(
        "imported {} {} with {} encryption key(s) into {}",
        bundle.name.as_ref().map_or("-", |n| n.as_str()),
        bundle.user_key.user_id().to_hex(),
        bundle.keyring.entries().len(),
        home.dir().display()
    );
    Ok(())
}

/// The passphrase: from `file`'s first line, `DEM_PASSPHRASE`, or the
/// terminal (asked twice when making an export).
fn passphrase(file: Option<&Path>, confirm: bool) -> anyhow::Result<Zeroizing<String>> {
    if let Some(f) = file {
        let text = Zeroizing::new(read_bounded(f, 4096)?);
        let text = std::str::from_utf8(&text).context("the passphrase file is not UTF-8")?;
        return Ok(Zeroizing::new(
            text.lines().next().unwrap_or("").to_string(),
        ));
    }
    if let Ok(p) = std::env::var("DEM_PASSPHRASE") {
        return Ok(Zeroizing::new(p));
    }
    if !std::io::stdin().is_terminal() {
        bail!("no passphrase: give --passphrase-file FILE or DEM_PASSPHRASE, or run on a terminal");
    }
    let first = Zeroizing::new(rpassword::prompt_password("passphrase: ")?);
    if confirm {
        let again = Zeroizing::new(rpassword::prompt_password("again: ")?);
        if *again != *first {
            bail!("the passphrases differ");
        }
    }
    Ok(first)
}

fn read_bounded(path: &Path, max_bytes: usize) -> anyhow::Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    if len > max_bytes as u64 {
        bail!("{} has {len} bytes, more than {max_bytes}", path.display());
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}
