//! `Mailboxes`: every mailbox a host holds, by id. It creates mailboxes,
//! spawns an actor the first time one is called (waking it from disk), and
//! exports and imports whole mailboxes — the primitive that migration and
//! replication build on.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::actor::{ActorHandle, DigestKind, ExportedState, MailboxActor, Tracked};
use super::clock::HybridClock;
use super::request::verbs::{Deliver, InstallPlugin};
use super::request::{Request, Response, Verb};
use super::{MailboxCallError as E, MailboxesConfig, MovedTo};
use crate::replica::{OpId, Since, VersionVector};
use dem_builtin as builtin;
use dem_proto::ids::{CodeHash, MailboxId};
use dem_proto::mail::{Delivered, NewMail, PluginEntry};
use dem_runtime::{Runtime, RuntimeConfig, RuntimeError};
use dem_store::{MailboxMeta, MailboxStore, StoreConfig};

mod import;
mod migration;
pub use migration::Migration;

/// Why a host's mailboxes could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The wasm runtime or code store could not be set up.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The durable store could not be opened.
    #[error(transparent)]
    Store(#[from] dem_store::OpenError),
    /// The data directory is unusable.
    #[error("data directory {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// All mailboxes of one host.
pub struct Mailboxes {
    runtime: Arc<Runtime>,
    /// `None` when running in memory only (benchmarks).
    store: Option<MailboxStore>,
    clock: Arc<HybridClock>,
    config: MailboxesConfig,
    /// Names this host in logs and spans.
    host: Arc<str>,
    actors: Mutex<HashMap<MailboxId, ActorHandle>>,
    /// Mailboxes that moved away, and where: calls get a forwarding answer.
    moved: Mutex<HashMap<MailboxId, MovedTo>>,
    builtin_mailbox: CodeHash,
}

impl Mailboxes {
    /// Opens (or creates) a host's data dir: `code/` for components and
    /// `store/` for mailbox logs and snapshots.
    pub fn open(
        data_dir: &Path,
        runtime_config: RuntimeConfig,
        config: MailboxesConfig,
    ) -> Result<Arc<Self>, OpenError> {
        let io = |source| OpenError::Io {
            path: data_dir.into(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(io)?;
        let runtime = Runtime::new(&data_dir.join("code"), runtime_config)?;
        let store = MailboxStore::open(&data_dir.join("store"), StoreConfig::default())?;
        let replica = replica_id(data_dir).map_err(io)?;
        Self::with_parts(runtime, Some(store), replica, config)
    }

    /// Mailboxes that live only in memory: nothing is logged or survives.
    /// For benchmarks that measure the cost of persistence.
    pub fn in_memory(
        code_dir: &Path,
        runtime_config: RuntimeConfig,
        config: MailboxesConfig,
    ) -> Result<Arc<Self>, OpenError> {
        let runtime = Runtime::new(code_dir, runtime_config)?;
        Self::with_parts(runtime, None, 1, config)
    }

    /// Builds from an already opened runtime and store.
    pub fn with_parts(
        runtime: Arc<Runtime>,
        store: Option<MailboxStore>,
        replica: u64,
        config: MailboxesConfig,
    ) -> Result<Arc<Self>, OpenError> {
        let builtin_mailbox = runtime
            .code()
            .insert(builtin::MAILBOX)
            .map_err(RuntimeError::from)?;
        for (_, bytes) in builtin::PLUGINS {
            runtime.code().insert(bytes).map_err(RuntimeError::from)?;
        }
        Ok(Arc::new(Self {
            runtime,
            store,
            clock: Arc::new(HybridClock::new(replica)),
            config,
            host: format!("{replica:016x}").into(),
            actors: Mutex::default(),
            moved: Mutex::default(),
            builtin_mailbox,
        }))
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    pub fn store(&self) -> Option<&MailboxStore> {
        self.store.as_ref()
    }

    /// The code hash of the mailbox component this binary carries.
    pub fn builtin_mailbox_code(&self) -> CodeHash {
        self.builtin_mailbox
    }

    /// Compiles (or loads from the artifact cache) the components this
    /// binary carries: the mailbox and the standard filters. Blocking.
    pub fn prepare_builtin(&self) -> Result<(), RuntimeError> {
        self.runtime.prepare_mailbox(&self.builtin_mailbox)?;
        for (_, bytes) in builtin::PLUGINS {
            self.runtime.prepare_filter(&CodeHash::of(bytes))?;
        }
        Ok(())
    }

    /// The code hash of a standard plugin, by name.
    pub fn builtin_plugin(name: &str) -> Option<CodeHash> {
        builtin::PLUGINS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| CodeHash::of(b))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<MailboxId, ActorHandle>> {
        self.actors.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn spawn(&self, id: &MailboxId, meta: MailboxMeta) -> ActorHandle {
        self.spawn_with(id, meta, None)
    }

    /// Starts an actor, with a restored instance if there is one.
    fn spawn_with(
        &self,
        id: &MailboxId,
        meta: MailboxMeta,
        restored: Option<super::restore::Restored>,
    ) -> ActorHandle {
        MailboxActor::spawn(
            id.clone(),
            &self.host,
            meta,
            self.runtime.clone(),
            self.store.clone(),
            self.clock.clone(),
            self.config.clone(),
            restored,
        )
    }

    /// Creates an empty mailbox running `code` (the built-in mailbox if
    /// `None`); durable before it returns.
    pub async fn create(&self, id: &MailboxId, code: Option<CodeHash>) -> Result<(), E> {
        let code = code.unwrap_or(self.builtin_mailbox);
        if !self.runtime.code().contains(&code) {
            return Err(E::MissingCode(code));
        }
        // Compile (or load) now, so a bad component fails the create.
        self.runtime
            .code()
            .component(&code)
            .map_err(RuntimeError::from)?;
        if self.lock().contains_key(id) {
            return Err(E::Exists(id.clone()));
        }
        let meta = MailboxMeta {
            code_hash: code.0,
            created_ms: HybridClock::wall_ms(),
        };
        if let Some(store) = &self.store {
            store
                .create(id.as_str(), meta.clone())
                .await
                .map_err(|e| match e {
                    dem_store::CommitError::Exists(_) => E::Exists(id.clone()),
                    e => E::Commit(e),
                })?;
        }
        let mut actors = self.lock();
        if actors.contains_key(id) {
            return Err(E::Exists(id.clone()));
        }
        let handle = self.spawn(id, meta);
        actors.insert(id.clone(), handle);
        Ok(())
    }

    /// Where a mailbox that left this host went.
    pub fn moved_to(&self, id: &MailboxId) -> Option<MovedTo> {
        self.moved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Maps "actor gone" to the forwarding answer if the mailbox moved.
    fn or_moved<T>(&self, id: &MailboxId, r: Result<T, E>) -> Result<T, E> {
        match r {
            Err(E::Gone(_)) | Err(E::Unknown(_)) => match self.moved_to(id) {
                Some(to) => Err(E::Moved { id: id.clone(), to }),
                None => r,
            },
            r => r,
        }
    }

    /// The actor of `id`, spawning it if the mailbox is on disk.
    fn handle(&self, id: &MailboxId) -> Result<ActorHandle, E> {
        if let Some(to) = self.moved_to(id) {
            return Err(E::Moved { id: id.clone(), to });
        }
        if let Some(h) = self.lock().get(id).filter(|h| !h.is_closed()) {
            return Ok(h.clone());
        }
        let store = self.store.as_ref().ok_or_else(|| E::Unknown(id.clone()))?;
        let meta = store
            .meta(id.as_str())?
            .ok_or_else(|| E::Unknown(id.clone()))?;
        let mut actors = self.lock();
        if let Some(h) = actors.get(id).filter(|h| !h.is_closed()) {
            return Ok(h.clone());
        }
        let handle = self.spawn(id, meta);
        actors.insert(id.clone(), handle.clone());
        Ok(handle)
    }

    /// Whether this host holds the mailbox.
    pub fn contains(&self, id: &MailboxId) -> Result<bool, E> {
        if self.lock().contains_key(id) {
            return Ok(true);
        }
        Ok(match &self.store {
            Some(store) => store.meta(id.as_str())?.is_some(),
            None => false,
        })
    }

    /// Runs one call (use `deliver` for incoming mail: it runs the filters).
    pub async fn call(&self, id: &MailboxId, request: Request) -> Result<Response, E> {
        self.call_tracked(id, request).await.map(|t| t.response)
    }

    /// Runs one call and answers with the verb's own answer type (use
    /// `deliver` for incoming mail: it runs the filters).
    pub async fn ask<V: Verb>(&self, id: &MailboxId, verb: V) -> Result<V::Answer, E> {
        let response = self.call(id, verb.into()).await?;
        Ok(V::answer(response)?)
    }

    /// Runs one call and says which op it was logged as, if any, so the
    /// caller can wait for replicas to hold it.
    pub async fn call_tracked(&self, id: &MailboxId, request: Request) -> Result<Tracked, E> {
        let r = match self.handle(id) {
            Ok(h) => h.call_tracked(request).await,
            Err(e) => Err(e),
        };
        self.or_moved(id, r)
    }

    /// Delivers an incoming mail through the mailbox's filters.
    pub async fn deliver(&self, id: &MailboxId, mail: NewMail) -> Result<Delivered, E> {
        self.deliver_tracked(id, mail).await.map(|(d, _)| d)
    }

    /// Delivers, and says which op the delivery was logged as.
    pub async fn deliver_tracked(
        &self,
        id: &MailboxId,
        mail: NewMail,
    ) -> Result<(Delivered, Option<OpId>), E> {
        let r = match self.handle(id) {
            Ok(h) => h.deliver(mail).await,
            Err(e) => Err(e),
        };
        let tracked = self.or_moved(id, r)?;
        Ok((Deliver::answer(tracked.response)?, tracked.op))
    }

    /// Applies ops from another replica of `id`; its version vector after.
    pub async fn apply(&self, id: &MailboxId, ops: Vec<Vec<u8>>) -> Result<VersionVector, E> {
        let r = match self.handle(id) {
            Ok(h) => h.apply(ops).await,
            Err(e) => Err(e),
        };
        self.or_moved(id, r)
    }

    /// The ops a replica at `peer` lacks, and this replica's vector.
    pub async fn since(
        &self,
        id: &MailboxId,
        peer: VersionVector,
        budget_bytes: usize,
    ) -> Result<(Since, VersionVector), E> {
        let r = match self.handle(id) {
            Ok(h) => h.since(peer, budget_bytes).await,
            Err(e) => Err(e),
        };
        self.or_moved(id, r)
    }

    /// BLAKE3 of a fresh snapshot of the mailbox's state: equal digests mean
    /// equal states, IMAP UIDs included (what a move must preserve).
    pub async fn digest(&self, id: &MailboxId) -> Result<[u8; 32], E> {
        self.handle(id)?.digest(DigestKind::Snapshot).await
    }

    /// The guest's order-free `state-digest`: equal on replicas that applied
    /// the same ops in any order (UIDs, numbered locally, are left out).
    pub async fn state_digest(&self, id: &MailboxId) -> Result<[u8; 32], E> {
        self.handle(id)?.digest(DigestKind::State).await
    }

    /// Snapshots and drops the instance now, as idleness would.
    pub async fn hibernate(&self, id: &MailboxId) -> Result<(), E> {
        self.handle(id)?.hibernate().await;
        Ok(())
    }

    /// The mailbox's durable state: code hash, plugins, snapshot, log tail.
    pub async fn export(&self, id: &MailboxId) -> Result<ExportedState, E> {
        self.handle(id)?.export().await
    }

    /// Removes a mailbox and its durable state from this host (after it has
    /// moved away).
    pub async fn remove(&self, id: &MailboxId) -> Result<(), E> {
        let handle = self.lock().remove(id);
        if let Some(handle) = handle {
            handle.stop().await;
        }
        if let Some(store) = &self.store {
            store.remove(id.as_str()).await.map_err(|e| match e {
                dem_store::CommitError::UnknownMailbox(_) => E::Unknown(id.clone()),
                e => E::Commit(e),
            })?;
        }
        Ok(())
    }

    /// Every mailbox on this host, sorted.
    pub fn list(&self) -> Result<Vec<MailboxId>, E> {
        let mut ids: Vec<MailboxId> = self.lock().keys().cloned().collect();
        if let Some(store) = &self.store {
            for id in store.list()? {
                if let Ok(id) = MailboxId::new(id) {
                    ids.push(id);
                }
            }
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// Stores a plugin component and installs it into a mailbox.
    pub async fn install_plugin(
        &self,
        id: &MailboxId,
        name: &str,
        bytes: &[u8],
        config: &str,
        order: u32,
    ) -> Result<CodeHash, E> {
        let known = self.runtime.code().contains(&CodeHash::of(bytes));
        let code = self
            .runtime
            .code()
            .insert(bytes)
            .map_err(RuntimeError::from)?;
        // Type-check it as a filter now rather than at the first delivery,
        // and keep no bytes that failed.
        if let Err(e) = self.runtime.check_filter(&code) {
            if !known {
                self.runtime.code().remove(&code);
            }
            return Err(e.into());
        }
        let entry = PluginEntry {
            name: name.into(),
            code_hash: code.to_hex(),
            config: config.into(),
            order,
        };
        self.ask(id, InstallPlugin { entry }).await?;
        Ok(code)
    }

    /// Stops every actor, snapshotting awake mailboxes and letting in-flight
    /// commits finish.
    pub async fn shutdown(&self) {
        let handles: Vec<ActorHandle> = self.lock().drain().map(|(_, h)| h).collect();
        for h in handles {
            h.stop().await;
        }
    }
}

/// This host's replica number: random at first start, then kept in
/// `data_dir/replica-id` so HLC tie-breaks stay stable across restarts.
fn replica_id(data_dir: &Path) -> std::io::Result<u64> {
    let path = data_dir.join("replica-id");
    match std::fs::read_to_string(&path) {
        Ok(s) => u64::from_str_radix(s.trim(), 16).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Replica numbers break ties between concurrent changes: they must
            // differ between hosts, so they come from the OS's randomness.
            let id = getrandom::u64().map_err(std::io::Error::other)?;
            std::fs::write(&path, format!("{id:016x}\n"))?;
            Ok(id)
        }
        Err(e) => Err(e),
    }
}
