//! `Mailboxes`: every mailbox a host holds, by id. It creates mailboxes,
//! spawns an actor the first time one is called (waking it from disk), and
//! exports and imports whole mailboxes — the primitive that migration and
//! replication build on.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::oneshot;

use super::actor::{
    ActorHandle, ActorParts, Command, DigestKind, ExportedState, MailboxActor, Reply, Tracked,
};
use super::clock::HybridClock;
use super::incoming::Incoming;
use super::request::verbs::{Deliver, InstallPlugin};
use super::request::{Request, Response, Verb};
use super::residents::Residents;
use super::{MailboxCallError as E, MailboxesConfig, MovedTo};
use crate::replica::{OpId, Since, VersionVector};
use dem_builtin as builtin;
use dem_proto::ids::{CodeHash, MailboxId};
use dem_proto::mail::{Delivered, PluginEntry};
use dem_runtime::{Evictor, Runtime, RuntimeConfig, RuntimeError, SlotStats};
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

/// How many times a call follows a mailbox from a retiring actor to the
/// next one before giving up; each retry means the mailbox hibernated in
/// between, so more than a couple never happen in practice.
const SEND_ATTEMPTS: usize = 8;

type ActorMap = Mutex<HashMap<MailboxId, ActorHandle>>;

/// All mailboxes of one host.
pub struct Mailboxes {
    runtime: Arc<Runtime>,
    /// `None` when running in memory only (benchmarks).
    store: Option<MailboxStore>,
    clock: Arc<HybridClock>,
    /// What every actor is started with.
    parts: ActorParts,
    /// The running actors. A hibernated mailbox has none: its actor
    /// retires, and the next call starts one.
    actors: Arc<ActorMap>,
    next_generation: AtomicU64,
    /// The awake mailboxes, which the runtime's slots evict from.
    residents: Arc<Residents>,
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
        let residents = Arc::new(Residents::default());
        let evictor: Weak<dyn Evictor> = Arc::downgrade(&(residents.clone() as Arc<dyn Evictor>));
        runtime.slots().set_evictor(evictor);
        let clock = Arc::new(HybridClock::new(replica));
        let parts = ActorParts {
            runtime: runtime.clone(),
            store: store.clone(),
            clock: clock.clone(),
            config,
            residents: residents.clone(),
            host: format!("{replica:016x}").into(),
        };
        Ok(Arc::new(Self {
            runtime,
            store,
            clock,
            parts,
            actors: Arc::default(),
            next_generation: AtomicU64::new(0),
            residents,
            moved: Mutex::default(),
            builtin_mailbox,
        }))
    }

    /// Mailboxes awake now (holding an instance) and the instance slots.
    pub fn awake(&self) -> (usize, SlotStats) {
        (self.residents.len(), self.runtime.slots().stats())
    }

    /// How long the most recent wakes took (up to 65,536 of them, oldest
    /// first): taking a slot, loading and restoring.
    pub fn wake_times(&self) -> Vec<std::time::Duration> {
        self.residents.wake_times()
    }

    /// Actors running now: awake mailboxes, and ones just started or
    /// finishing. A hibernated mailbox has none.
    pub fn actors_running(&self) -> usize {
        self.lock().len()
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

    /// Starts an actor, with a restored instance if there is one. When it
    /// finishes, it takes itself out of the map (not a later actor).
    fn spawn_with(
        &self,
        id: &MailboxId,
        meta: MailboxMeta,
        restored: Option<super::restore::Restored>,
    ) -> ActorHandle {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let actors = Arc::downgrade(&self.actors);
        let key = id.clone();
        let retire = Box::new(move || {
            let Some(actors) = actors.upgrade() else {
                return;
            };
            let mut actors = actors.lock().unwrap_or_else(|p| p.into_inner());
            if actors
                .get(&key)
                .is_some_and(|h| h.generation() == generation)
            {
                actors.remove(&key);
            }
        });
        MailboxActor::spawn(id.clone(), &self.parts, meta, restored, generation, retire)
    }

    /// Creates an empty mailbox running `code` (the built-in mailbox if
    /// `None`); durable before it returns.
    pub async fn create(&self, id: &MailboxId, code: Option<CodeHash>) -> Result<(), E> {
        let code = code.unwrap_or(self.builtin_mailbox);
        if !self.runtime.code().contains(&code) {
            return Err(E::MissingCode(code));
        }
        // Compile (or load) now, so a bad component fails the create; off
        // the async workers, since a first compile takes a while and the
        // other creates of a burst wait for this one.
        let runtime = self.runtime.clone();
        tokio::task::spawn_blocking(move || runtime.code().component(&code))
            .await
            .map_err(|e| E::Restore {
                id: id.clone(),
                reason: format!("compiling the mailbox's code panicked: {e}"),
            })?
            .map_err(RuntimeError::from)?;
        if self.lock().contains_key(id) {
            return Err(E::Exists(id.clone()));
        }
        let meta = MailboxMeta {
            code_hash: code.0,
            created_ms: HybridClock::wall_ms(),
        };
        if let Some(store) = &self.store {
            // Durable and done: the first call starts its actor.
            return store
                .create(id.as_str(), meta.clone())
                .await
                .map_err(|e| match e {
                    dem_store::CommitError::Exists(_) => E::Exists(id.clone()),
                    e => E::Commit(e),
                });
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

    /// The actor of `id`, spawning it if the mailbox is on disk. An actor
    /// that is retiring is waited for first: two actors of one mailbox
    /// must never run at once.
    async fn handle(&self, id: &MailboxId) -> Result<ActorHandle, E> {
        loop {
            if let Some(to) = self.moved_to(id) {
                return Err(E::Moved { id: id.clone(), to });
            }
            let current = self.lock().get(id).cloned();
            match current {
                Some(h) if !h.is_closed() => return Ok(h),
                Some(retiring) => {
                    retiring.exited().await;
                    let mut actors = self.lock();
                    if actors
                        .get(id)
                        .is_some_and(|h| h.generation() == retiring.generation())
                    {
                        actors.remove(id);
                    }
                    continue;
                }
                None => {}
            }
            let store = self.store.as_ref().ok_or_else(|| E::Unknown(id.clone()))?;
            let meta = store
                .meta(id.as_str())?
                .ok_or_else(|| E::Unknown(id.clone()))?;
            let mut actors = self.lock();
            if actors.contains_key(id) {
                // Another caller started one meanwhile: use (or wait for) it.
                continue;
            }
            let handle = self.spawn(id, meta);
            actors.insert(id.clone(), handle.clone());
            return Ok(handle);
        }
    }

    /// Sends a command to `id`'s actor and waits for the answer, following
    /// the mailbox to a fresh actor when the one found has just retired.
    async fn ask_actor<T>(
        &self,
        id: &MailboxId,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, E> {
        let (reply, answer) = oneshot::channel();
        let mut command = make(reply);
        for _ in 0..SEND_ATTEMPTS {
            let handle = self.handle(id).await?;
            match handle.send(command).await {
                Ok(()) => return answer.await.map_err(|_| E::Gone(id.clone()))?,
                Err(back) => command = back,
            }
        }
        Err(E::Gone(id.clone()))
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
        let r = self
            .ask_actor(id, |reply| Command::Call {
                request: Box::new(request),
                reply,
            })
            .await;
        self.or_moved(id, r)
    }

    /// Delivers an incoming mail through the mailbox's filters; its stored
    /// bytes are durable with the op that files it.
    pub async fn deliver(&self, id: &MailboxId, mail: Incoming) -> Result<Delivered, E> {
        self.deliver_tracked(id, mail).await.map(|(d, _)| d)
    }

    /// Delivers, and says which op the delivery was logged as.
    pub async fn deliver_tracked(
        &self,
        id: &MailboxId,
        mail: Incoming,
    ) -> Result<(Delivered, Option<OpId>), E> {
        let r = self
            .ask_actor(id, |reply| Command::Deliver {
                mail: Box::new(mail),
                reply,
            })
            .await;
        let tracked = self.or_moved(id, r)?;
        Ok((Deliver::answer(tracked.response)?, tracked.op))
    }

    /// Applies ops from another replica of `id`, with the message blobs
    /// their deliveries name; its version vector after.
    pub async fn apply(
        &self,
        id: &MailboxId,
        ops: Vec<Vec<u8>>,
        messages: Vec<Vec<u8>>,
    ) -> Result<VersionVector, E> {
        let r = self
            .ask_actor(id, |reply| Command::Apply {
                ops,
                messages,
                reply,
            })
            .await;
        self.or_moved(id, r)
    }

    /// The ops a replica at `peer` lacks, and this replica's vector.
    pub async fn since(
        &self,
        id: &MailboxId,
        peer: VersionVector,
        budget_bytes: usize,
    ) -> Result<(Since, Vec<Vec<u8>>, VersionVector), E> {
        let r = self
            .ask_actor(id, |reply| Command::Since {
                peer,
                budget_bytes,
                reply,
            })
            .await;
        self.or_moved(id, r)
    }

    /// BLAKE3 of a fresh snapshot of the mailbox's state: equal digests mean
    /// equal states, IMAP UIDs included (what a move must preserve).
    pub async fn digest(&self, id: &MailboxId) -> Result<[u8; 32], E> {
        self.ask_actor(id, |reply| Command::Digest {
            kind: DigestKind::Snapshot,
            reply,
        })
        .await
    }

    /// The guest's order-free `state-digest`: equal on replicas that applied
    /// the same ops in any order (UIDs, numbered locally, are left out).
    pub async fn state_digest(&self, id: &MailboxId) -> Result<[u8; 32], E> {
        self.ask_actor(id, |reply| Command::Digest {
            kind: DigestKind::State,
            reply,
        })
        .await
    }

    /// Snapshots and drops the instance now, as idleness would.
    pub async fn hibernate(&self, id: &MailboxId) -> Result<(), E> {
        self.handle(id).await?.hibernate().await;
        Ok(())
    }

    /// The mailbox's durable state: code hash, plugins, snapshot, log tail.
    pub async fn export(&self, id: &MailboxId) -> Result<ExportedState, E> {
        self.ask_actor(id, |reply| Command::Export { reply }).await
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
